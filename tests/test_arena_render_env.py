"""Arena frames (camera motion, colours, menu overlay) and the Gymnasium vector/single env contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metabonk.envs.arena import (
    ACTION_MEANINGS,
    NUM_ACTIONS,
    ArenaConfig,
    ArenaGame,
    ArenaSingleEnv,
    StateView,
    make_arena_env,
    state_dim,
)
from metabonk.envs.arena.render import BOSS, ELITE, ENEMY, GEM, PLAYER, PROJECTILE


def _quiet(**kw: object) -> ArenaGame:
    cfg = ArenaConfig().replace(spawn_rate_start=0.0, spawn_rate_end=0.0, **kw)
    return ArenaGame(cfg, num_envs=1, seed=0)


def _has(frame: torch.Tensor, color: tuple[int, int, int]) -> bool:
    return bool((frame == torch.tensor(color, dtype=torch.uint8)).all(-1).any())


def test_player_motion_shifts_the_ground_every_frame() -> None:
    g = _quiet()
    g.s["pos"][0] = torch.tensor([20.3, 20.3])
    f0 = g.render()[0]
    g.step(torch.zeros(1, dtype=torch.long))
    assert torch.equal(f0, g.render()[0]), "standing still in an empty arena must not change the frame"
    g.step(torch.tensor([1]))  # east, 0.25 units = 1 pixel at 64x64
    f1 = g.render()[0]
    assert not torch.equal(f0, f1)
    body = slice(
        8, 64
    )  # below the HP/XP bars; away from the centre sprite, the ground shifted one pixel left
    left = f0[body, 1:40][:, :24].to(torch.int32)
    assert torch.equal(f1[body, 0:24].to(torch.int32)[:20], left[:20])
    assert (f0 != f1).any(-1).float().mean() > 0.05


def test_entities_have_distinct_colours_and_walls_show() -> None:
    colours = [PLAYER, ENEMY, ELITE, BOSS, PROJECTILE, GEM]
    assert len(set(colours)) == len(colours)
    g = _quiet(fire_range=20.0)
    g.s["pos"][0] = torch.tensor([3.0, 20.0])  # near the west wall
    for slot, (dx, elite) in enumerate([(3.0, False), (-1.5, True)], start=4):
        g.s["e_pos"][0, slot] = g.s["pos"][0] + torch.tensor([dx, 3.0])
        g.s["e_alive"][0, slot] = True
        g.s["e_hp"][0, slot] = 50.0
        g.s["e_elite"][0, slot] = elite
    g.s["e_pos"][0, 0] = g.s["pos"][0] + torch.tensor([4.0, -4.0])
    g.s["e_alive"][0, 0] = True
    g.s["e_hp"][0, 0] = 50.0
    g.s["g_pos"][0, 0] = g.s["pos"][0] + torch.tensor([-1.0, -3.0])
    g.s["g_alive"][0, 0] = True
    g.s["g_life"][0, 0] = 100.0
    g.s["p_pos"][0, 0] = g.s["pos"][0] + torch.tensor([2.0, 2.0])
    g.s["p_alive"][0, 0] = True
    f = g.render()[0]
    for c in colours:
        assert _has(f, c), c
    assert (f[:, :4].float().mean() - f[:, -4:].float().mean()).abs() > 5  # wall on the left, ground right


def test_menu_overlay_and_hud_bars() -> None:
    g = _quiet()
    f_closed = g.render()[0]
    g.s["menu_open"][0] = True
    f_open = g.render()[0]
    rows = slice(int(64 * 0.3), int(64 * 0.72))
    assert (f_open[rows] != f_closed[rows]).any(-1).float().mean() > 0.5
    g.s["hp"][0] = 25.0
    f_low = g.render()[0]
    assert (f_low[0] != f_closed[0]).any(-1).sum() > 30  # HP bar shrank


@pytest.mark.parametrize("size", [32, 64, 128])
def test_frame_sizes(size: int) -> None:
    env = make_arena_env(num_envs=2, size=size, seed=0)
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == (2, size, size, 3) and obs["pixels"].dtype == np.uint8


def test_vector_env_contract_and_same_step_autoreset() -> None:
    env = make_arena_env(num_envs=3, seed=0, stage_steps=25, menu_timeout_steps=2)
    assert env.single_action_space.n == NUM_ACTIONS == len(ACTION_MEANINGS) == 21
    obs, info = env.reset(seed=0)
    assert obs["state"].shape == (3, state_dim(env.config)) and obs["state"].dtype == np.float32
    assert info["card_options"].shape == (3, 3)
    ended = None
    for _ in range(60):
        obs, rew, term, trunc, info = env.step(np.full(3, 3, dtype=np.int64))
        assert rew.shape == (3,) and info["menu_open"].dtype == bool
        for k in ("r_survive", "r_kill", "r_damage", "kills", "damage_taken", "level_ups", "boss_spawned"):
            assert info[k].shape == (3,), k
        if (term | trunc).any():
            ended = term | trunc
            break
    assert ended is not None and ended.all()
    assert (info["episode_length"][ended] >= 25).all()
    # the returned obs is the next episode's first obs; the final obs is in info
    assert not np.array_equal(info["final_obs"]["state"], obs["state"])
    assert np.allclose(StateView(obs["state"], env.config).time_frac, 0.0)  # the clock is back to zero
    with pytest.raises(Exception, match="actions must be in"):
        env.step(np.full(3, 21))


def test_single_env_wrapper() -> None:
    env = ArenaSingleEnv(ArenaConfig().replace(stage_steps=10))
    obs, _ = env.reset(seed=3)
    assert obs["pixels"].shape == (64, 64, 3)
    for _ in range(10):
        obs, r, term, trunc, _ = env.step(1)
    assert trunc and not term and isinstance(r, float)
