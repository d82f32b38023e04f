"""Gymnasium faces of the Arena: a SAME_STEP-autoreset `VectorEnv` and a single-env `gymnasium.Env`.

Observations are `{"pixels": uint8 [N,H,W,3], "state": float32 [N,D]}` as numpy arrays; info holds
numpy arrays [N] (see docs/architecture.md): episode_return/episode_length (valid where an episode
ended), menu_open, card_options [N,3], r_<component>, event counts, and final_obs at episode ends.
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

    def _obs(self, idx: torch.Tensor | None = None) -> dict[str, np.ndarray]:
        out = {"state": self.game.state_vector(idx).cpu().numpy()}
        if self.pixels:
            out["pixels"] = self.game.render(idx).cpu().numpy()
        return out

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if isinstance(seed, list):
            seed = seed[0]
        self.game.reset(seed if seed is not None else None)
        self._return[:] = 0
        self._length[:] = 0
        s = self.game.s
        info = {"menu_open": s["menu_open"].cpu().numpy(), "card_options": s["card_options"].cpu().numpy()}
        return self._obs(), info

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        a = np.asarray(actions, dtype=np.int64).reshape(-1)
        if a.shape[0] != self.num_envs:
            raise MetabonkError(f"expected {self.num_envs} actions, got {a.shape[0]}")
        if (a < 0).any() or (a >= NUM_ACTIONS).any():
            raise MetabonkError(f"arena actions must be in [0, {NUM_ACTIONS}), got {a.min()}..{a.max()}")
        reward_t, term_t, trunc_t, info_t = self.game.step(torch.from_numpy(a))
        reward = reward_t.cpu().numpy().astype(np.float32)
        term, trunc = term_t.cpu().numpy(), trunc_t.cpu().numpy()
        done = term | trunc
        info: dict[str, Any] = {k: v.cpu().numpy() for k, v in info_t.items()}
        self._return += reward
        self._length += 1
        info["episode_return"] = self._return.astype(np.float32).copy()
        info["episode_length"] = self._length.copy()
        info["_episode"] = done.copy()
        obs = self._obs()
        if done.any():
            idx = np.flatnonzero(done)
            info["final_obs"] = {k: v.copy() for k, v in obs.items()}
            info["_final_obs"] = done.copy()
            info["final_info"] = {
                "episode_return": info["episode_return"],
                "episode_length": info["episode_length"],
            }
            mask = torch.from_numpy(done).to(self.game.device)
            self.game.reset_done(mask)
            fresh = self._obs(torch.from_numpy(idx).to(self.game.device))
            for k in obs:
                obs[k][idx] = fresh[k]
            s = self.game.s
            info["menu_open"] = s["menu_open"].cpu().numpy()
            info["card_options"] = s["card_options"].cpu().numpy()
            self._return[idx] = 0
            self._length[idx] = 0
        return obs, reward, term, trunc, info

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
        info = {k: v.cpu().numpy()[0] for k, v in info_t.items()}
        return _row(self.vec._obs()), float(reward[0]), bool(term[0]), bool(trunc[0]), info

    def render(self) -> np.ndarray:
        return self.game.render()[0].cpu().numpy()


def _row(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v[0] if isinstance(v, np.ndarray) else v) for k, v in d.items()}
