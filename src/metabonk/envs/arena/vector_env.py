"""Gymnasium faces of the Arena: a SAME_STEP-autoreset `VectorEnv` and a single-env `gymnasium.Env`.

Observations are `{"pixels": uint8 [N,H,W,3], "state": float32 [N,D]}` as numpy arrays; info holds
numpy arrays [N] (see docs/architecture.md): episode_return/episode_length (valid where an episode
ended), menu_open, card_options [N,3], r_<component>, event counts, and final_obs at episode ends
(its finished rows, marked by `_final_obs`; zeros elsewhere, as the loop vector env of envs/autoreset.py).
A step copies its outputs to the host once, and an autoreset rebuilds only the finished games.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from metabonk.common.errors import MetabonkError
from metabonk.envs.arena.config import ArenaConfig
from metabonk.envs.arena.game import ArenaGame
from metabonk.envs.arena.spec import ACTION_MEANINGS, NUM_ACTIONS
from metabonk.envs.host_copy import to_host

_OBS, _OUT = "obs:", "out:"
"""Key prefixes that keep observations and step outputs apart from info keys inside one host copy."""


def _obs_space(cfg: ArenaConfig, dim: int, pixels: bool) -> gym.spaces.Dict:
    spaces: dict[str, gym.Space[Any]] = {
        "state": gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32),
    }
    if pixels:
        spaces["pixels"] = gym.spaces.Box(0, 255, (cfg.frame_size, cfg.frame_size, 3), np.uint8)
    return gym.spaces.Dict(spaces)


class ArenaVectorEnv(VectorEnv):
    """N Arena games as one Gymnasium vector env (numpy in, numpy out; the game runs on `device`)."""

    metadata: ClassVar[dict[str, Any]] = {
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": ["rgb_array"],
    }

    def __init__(
        self,
        num_envs: int = 1,
        config: ArenaConfig | None = None,
        device: str = "cpu",
        seed: int = 0,
        pixels: bool = True,
    ) -> None:
        self.config = config or ArenaConfig()
        self.game = ArenaGame(self.config, num_envs, device, seed)
        self.num_envs = num_envs
        self.pixels = pixels
        self.render_mode = "rgb_array"
        self.single_action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.single_observation_space = _obs_space(self.config, self.game.state_dim, pixels)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_meanings = ACTION_MEANINGS
        self._return = np.zeros(num_envs, np.float64)
        self._length = np.zeros(num_envs, np.int64)
        self._seed = seed

    def _outputs(
        self, info_t: dict[str, torch.Tensor], step: tuple[torch.Tensor, ...] = ()
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[np.ndarray]]:
        """(obs, info, step) as numpy, observing the current games, in one host copy (see `to_host`);
        `step` is (reward, terminated, truncated) of a step, or nothing on reset."""
        obs_t = self.game.observe(self.game.s, self.pixels)
        host = to_host({**{_OBS + k: v for k, v in obs_t.items()}, **{f"{_OUT}{i}": v for i, v in enumerate(step)},
                        **info_t})
        obs = {k[len(_OBS) :]: host.pop(k) for k in list(host) if k.startswith(_OBS)}
        return obs, host, [host.pop(f"{_OUT}{i}") for i in range(len(step))]

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if isinstance(seed, list):
            seed = seed[0]
        self.game.reset(seed if seed is not None else None)
        self._return[:] = 0
        self._length[:] = 0
        s = self.game.s
        obs, info, _ = self._outputs({"menu_open": s["menu_open"].clone(), "card_options": s["card_options"].clone()})
        return obs, info

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        a = np.asarray(actions, dtype=np.int64).reshape(-1)
        if a.shape[0] != self.num_envs:
            raise MetabonkError(f"expected {self.num_envs} actions, got {a.shape[0]}")
        if (a < 0).any() or (a >= NUM_ACTIONS).any():
            raise MetabonkError(f"arena actions must be in [0, {NUM_ACTIONS}), got {a.min()}..{a.max()}")
        reward_t, term_t, trunc_t, info_t = self.game.step(torch.from_numpy(a))
        obs, info, (reward, term, trunc) = self._outputs(info_t, (reward_t, term_t, trunc_t))
        reward = reward.astype(np.float32)
        done = term | trunc
        self._return += reward
        self._length += 1
        info["episode_return"] = self._return.astype(np.float32)
        info["episode_length"] = self._length.copy()
        info["_episode"] = done.copy()
        if done.any():
            rows = np.flatnonzero(done)
            # final_obs holds the finished rows (zeros elsewhere, as `_final_obs` says): no copy of the batch
            info["final_obs"] = {k: _rows_of(v, rows) for k, v in obs.items()}
            info["_final_obs"] = done.copy()
            info["final_info"] = {
                "episode_return": info["episode_return"],
                "episode_length": info["episode_length"],
            }
            self._restart(rows, obs, info)
        return obs, reward, term, trunc, info

    def _restart(self, rows: np.ndarray, obs: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        """SAME_STEP autoreset of the finished games `rows`: only they are rebuilt, observed and copied."""
        fresh = self.game.restart(torch.from_numpy(rows))
        obs_t = self.game.observe(fresh, self.pixels)
        host = to_host(
            {**{_OBS + k: v for k, v in obs_t.items()}, "menu_open": fresh["menu_open"],
             "card_options": fresh["card_options"]}
        )
        for k in obs:
            obs[k][rows] = host[_OBS + k]
        info["menu_open"][rows] = host["menu_open"]
        info["card_options"][rows] = host["card_options"]
        self._return[rows] = 0
        self._length[rows] = 0

    def render(self) -> np.ndarray:
        """uint8 [N,H,W,3] frames of the current states."""
        return self.game.render().cpu().numpy()

    def close_extras(self, **kwargs: Any) -> None:
        return None


class ArenaSingleEnv(gym.Env):
    """One Arena game as a plain `gymnasium.Env` (obs dict without the batch dimension)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        config: ArenaConfig | None = None,
        device: str = "cpu",
        seed: int = 0,
        pixels: bool = True,
        render_mode: str | None = "rgb_array",
    ) -> None:
        self.vec = ArenaVectorEnv(1, config, device, seed, pixels)
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        self.render_mode = render_mode

    @property
    def game(self) -> ArenaGame:
        return self.vec.game

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        obs, info = self.vec.reset(seed=seed)
        return _row(obs), _row(info)

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        # No autoreset here: a finished game stays frozen until reset(), as gymnasium.Env expects.
        a = torch.tensor([int(action)], dtype=torch.long)
        if not 0 <= int(action) < NUM_ACTIONS:
            raise MetabonkError(f"arena action must be in [0, {NUM_ACTIONS}), got {action}")
        reward, term, trunc, info_t = self.game.step(a)
        obs, info, (r, te, tr) = self.vec._outputs(info_t, (reward, term, trunc))
        return _row(obs), float(r[0]), bool(te[0]), bool(tr[0]), _row(info)

    def render(self) -> np.ndarray:
        return self.game.render()[0].cpu().numpy()


def _rows_of(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Zeros shaped like x except the given rows, copied from x (np.zeros maps fresh pages lazily)."""
    out = np.zeros(x.shape, x.dtype)
    out[rows] = x[rows]
    return out


def _row(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v[0] if isinstance(v, np.ndarray) else v) for k, v in d.items()}
