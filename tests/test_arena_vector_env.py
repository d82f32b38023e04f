"""The Arena vector env's fast path is the plain one: it copies once per step, restarts only finished games
and fills only their rows of final_obs, yet steps exactly as the game with a whole-batch mask reset does."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from metabonk.envs.arena import ArenaConfig, ArenaGame, make_arena_env
from metabonk.envs.host_copy import to_host

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _reference(cfg: ArenaConfig, n: int, seed: int, actions: np.ndarray, device: str) -> list[dict]:
    """The env's contract written plainly on the game: observe all, copy all, reset all with a mask."""
    game = ArenaGame(cfg, n, device, seed)
    out = []
    for a in actions:
        reward, term, trunc, info = game.step(torch.from_numpy(a))
        final = {"state": game.state_vector().clone(), "pixels": game.render().clone()}
        done = term | trunc
        if done.any():  # (a reset draws the players' start positions from the game's generator)
            game.reset_done(done)
        step = {
            "obs": {"state": game.state_vector(), "pixels": game.render()},
            "final": final, "reward": reward, "done": done, "info": info,
            "menu_open": game.s["menu_open"].clone(), "card_options": game.s["card_options"].clone(),
        }
        out.append(_cpu(step))
    return out


def _cpu(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _cpu(v) for k, v in x.items()}
    return x.cpu() if isinstance(x, torch.Tensor) else x


def test_vector_env_steps_as_the_whole_batch_reference() -> None:
    for device in DEVICES:  # the GPU too where there is one (benchmarks/run_gpu_env.sh runs it there)
        check_against_reference(device)


def check_against_reference(device: str) -> None:
    n, steps = 12, 160
    cfg = ArenaConfig(frame_size=32, stage_steps=40, menu_timeout_steps=3, xp_base=1.0)
    actions = np.random.default_rng(0).integers(0, 21, size=(steps, n))
    env = make_arena_env(n, size=32, seed=5, device=device, stage_steps=40, menu_timeout_steps=3, xp_base=1.0)
    env.reset(seed=5)
    ref = _reference(cfg, n, 5, actions, device)
    ended = 0
    for t in range(steps):
        obs, reward, term, trunc, info = env.step(actions[t])
        r = ref[t]
        for k in ("state", "pixels"):
            np.testing.assert_array_equal(obs[k], r["obs"][k].numpy(), err_msg=f"step {t} obs {k}")
        np.testing.assert_array_equal(reward, r["reward"].numpy())
        done = term | trunc
        np.testing.assert_array_equal(done, r["done"].numpy())
        np.testing.assert_array_equal(info["menu_open"], r["menu_open"].numpy())
        np.testing.assert_array_equal(info["card_options"], r["card_options"].numpy())
        for k in ("kills", "r_survive", "r_damage", "xp_collected", "card_picked"):
            np.testing.assert_array_equal(info[k], r["info"][k].numpy(), err_msg=k)
        if done.any():
            ended += int(done.sum())
            np.testing.assert_array_equal(info["_final_obs"], done)
            for k in ("state", "pixels"):
                np.testing.assert_array_equal(info["final_obs"][k][done], r["final"][k].numpy()[done])
                assert not info["final_obs"][k][~done].any(), "unfinished rows of final_obs stay zero"
            assert (info["episode_length"][done] >= 1).all()
    assert ended >= 2 * n, "the test should cover many autoresets"


def test_pixels_off_and_single_env_match_the_vector_env() -> None:
    env_px = make_arena_env(3, size=32, seed=1, stage_steps=30)
    env_st = make_arena_env(3, size=32, seed=1, stage_steps=30, pixels=False)
    a = np.random.default_rng(1).integers(0, 21, size=(70, 3))
    o1, _ = env_px.reset(seed=1)
    o2, _ = env_st.reset(seed=1)
    assert "pixels" not in o2
    for t in range(70):
        o1, r1, *_ = env_px.step(a[t])
        o2, r2, *_ = env_st.step(a[t])
        np.testing.assert_array_equal(o1["state"], o2["state"])
        np.testing.assert_array_equal(r1, r2)


def test_one_buffer_host_copy_matches_per_tensor_copies() -> None:
    g = torch.Generator().manual_seed(0)
    tensors = {
        "u8": torch.randint(0, 255, (3, 4, 5, 3), generator=g, dtype=torch.uint8),
        "f32": torch.randn(3, 7, generator=g),
        "i64": torch.randint(-5, 5, (3,), generator=g),
        "b": torch.rand(3, generator=g) > 0.5,
        "f64": torch.randn(3, 2, generator=g, dtype=torch.float64),
        "t": torch.randn(4, 3, generator=g).t(),  # not contiguous
    }
    packed, plain = to_host(tensors, pack=True), to_host(tensors, pack=False)
    for k, t in tensors.items():
        assert packed[k].dtype == plain[k].dtype and packed[k].shape == tuple(t.shape), k
        np.testing.assert_array_equal(packed[k], plain[k])
        np.testing.assert_array_equal(packed[k], t.numpy())
