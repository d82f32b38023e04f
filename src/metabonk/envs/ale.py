"""ALE (Atari) games behind the MetaBonk env contract: size×size RGB pixels, RAM/255 state, flat actions."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from PIL import Image

from metabonk.common.errors import MetabonkError
from metabonk.envs.autoreset import LoopVectorEnv

RAM_SIZE = 128


def rom_id(game: str) -> str:
    """'Pong' / 'SpaceInvaders' / 'space_invaders' → the ale-py ROM id; unknown games are a MetabonkError."""
    from ale_py.roms import get_all_rom_ids

    rid = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", game.strip()).lower()
    ids = get_all_rom_ids()
    if rid not in ids:
        close = [i for i in ids if i.startswith(rid[:3])] or ids[:8]
        raise MetabonkError(f"unknown ALE game '{game}' (ROM id '{rid}'); e.g. {', '.join(close)}")
    return rid


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """Resize an RGB uint8 frame to size×size (bilinear, like the video ingest)."""
    if frame.shape[0] == size and frame.shape[1] == size:
        return frame
    return np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR))


class AleGame:
    """One ALE game instance (ale_py.AtariEnv) as a GameAdapter."""

    def __init__(
        self,
        game: str,
        size: int,
        frameskip: int = 4,
        sticky_actions: float = 0.25,
        max_episode_steps: int | None = None,
        full_action_space: bool = False,
    ) -> None:
        from ale_py.env import AtariEnv

        kwargs: dict[str, Any] = {}
        if max_episode_steps is not None:
            kwargs["max_num_frames_per_episode"] = int(max_episode_steps) * frameskip
        self.env = AtariEnv(
            game=rom_id(game),
            obs_type="rgb",
            frameskip=frameskip,
            repeat_action_probability=sticky_actions,
            full_action_space=full_action_space,
            **kwargs,
        )
        self.size = size
        self.num_actions = int(self.env.action_space.n)
        self.state_dim = RAM_SIZE
        self.action_meanings = list(self.env.get_action_meanings())

    def _state(self) -> np.ndarray:
        return self.env.ale.getRAM().astype(np.float32) / 255.0

    def reset(self, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
        frame, _ = self.env.reset(seed=seed)
        return resize_frame(frame, self.size), self._state()

    def step(self, action: int) -> tuple[np.ndarray, np.ndarray, float, bool, bool]:
        frame, reward, terminated, truncated, _ = self.env.step(action)
        return resize_frame(frame, self.size), self._state(), float(reward), bool(terminated), bool(truncated)

    def close(self) -> None:
        self.env.close()


def make_ale_env(game: str, num_envs: int = 1, size: int = 64, seed: int = 0, **kw: Any) -> LoopVectorEnv:
    """A vector env of `num_envs` copies of ALE `game` (kw: frameskip, sticky_actions, max_episode_steps)."""
    allowed = {"frameskip", "sticky_actions", "max_episode_steps", "full_action_space"}
    unknown = set(kw) - allowed
    if unknown:
        raise MetabonkError(f"unknown ALE option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    games = [AleGame(game, size, **kw) for _ in range(num_envs)]
    env = LoopVectorEnv(games, seed=seed, spec_name=f"ale:{game}")
    env.action_meanings = games[0].action_meanings  # type: ignore[attr-defined]
    return env
