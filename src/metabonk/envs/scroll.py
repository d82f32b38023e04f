"""Scroll: a tiny game for fast CPU tests of learning loops — the camera follows a player over a tiled torus;
gems pay 1 and vanish when collected, lava ends the episode.

It is small enough (16×16 pixels, 9 actions) that a world model and an agent trained in its dreams learn it on
CPU in minutes, and hard enough that a random policy scores low: gems must be seen and walked to, lava avoided.
Actions follow Arena's move encoding (0 = stand, 1..8 = E, NE, N, NW, W, SW, S, SE), one pixel per step.
`make_env("scroll", num_envs=N, size=16)` builds the vector env; `world.synthetic` records random-play stores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metabonk.common.errors import MetabonkError
from metabonk.envs.autoreset import LoopVectorEnv

MOVES = np.array([(0, 0), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1)])
"""(dx, dy) of each move action, y pointing down (N is up)."""
GROUND, GEM, LAVA = 0, 1, 2
GEM_COLOR = (240, 220, 40)
PALETTE = np.array([[40, 90, 40], [70, 130, 60], [90, 90, 110], [30, 60, 90], [120, 110, 70]], np.uint8)


def make_world(
    size: int, tile: int, rng: np.random.Generator, p_gem: float = 0.06, p_lava: float = 0.04
) -> tuple[np.ndarray, np.ndarray]:
    """A torus world: RGB uint8 [W,W,3] and a cell-kind map [W,W] (0 ground, 1 gem, 2 lava)."""
    n = size // tile
    kinds = rng.choice(3, size=(n, n), p=[round(1.0 - p_gem - p_lava, 12), p_gem, p_lava])
    colors = PALETTE[rng.integers(0, len(PALETTE), (n, n))]
    colors[kinds == GEM] = GEM_COLOR
    colors[kinds == LAVA] = (220, 40, 30)
    world = np.kron(colors, np.ones((tile, tile, 1), np.uint8)).astype(np.uint8)
    kind_px = np.kron(kinds, np.ones((tile, tile), np.int64))
    return world, kind_px


def render(world: np.ndarray, pos: np.ndarray, size: int) -> np.ndarray:
    """The view of `size` px centred on the player at `pos` (x, y), with the player as a white 2x2 block."""
    W = world.shape[0]
    ys = (pos[1] - size // 2 + np.arange(size)) % W
    xs = (pos[0] - size // 2 + np.arange(size)) % W
    frame = world[ys][:, xs].copy()
    c = size // 2
    frame[c - 1 : c + 1, c - 1 : c + 1] = 255
    return frame


class ScrollGame:
    """One Scroll game as a GameAdapter (`envs.autoreset`): collected gems turn to ground tiles."""

    num_actions = len(MOVES)
    state_dim = 2

    def __init__(
        self,
        size: int = 16,
        max_steps: int = 200,
        world_size: int = 64,
        tile: int = 4,
        p_gem: float = 0.1,
        p_lava: float = 0.04,
    ) -> None:
        if world_size % tile or size > world_size:
            raise MetabonkError(f"scroll: world_size {world_size} must be a multiple of tile {tile} and ≥ size")
        self.size, self.max_steps, self.world_size, self.tile = size, max_steps, world_size, tile
        self.p_gem, self.p_lava = p_gem, p_lava
        self.rng = np.random.default_rng(0)

    def _obs(self) -> tuple[np.ndarray, np.ndarray]:
        return render(self.world, self.pos, self.size), self.pos.astype(np.float32) / self.world_size

    def reset(self, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.world, self.kinds = make_world(self.world_size, self.tile, self.rng, self.p_gem, self.p_lava)
        self.pos = self.rng.integers(0, self.world_size, 2)
        while self.kinds[self.pos[1], self.pos[0]] != GROUND:
            self.pos = self.rng.integers(0, self.world_size, 2)
        self.t = 0
        return self._obs()

    def step(self, action: int) -> tuple[np.ndarray, np.ndarray, float, bool, bool]:
        self.pos = (self.pos + MOVES[action]) % self.world_size
        x, y = self.pos
        kind = self.kinds[y, x]
        reward = 0.0
        if kind == GEM:  # the whole tile is collected: it becomes a plain ground tile
            reward = 1.0
            ty, tx = (y // self.tile) * self.tile, (x // self.tile) * self.tile
            self.kinds[ty : ty + self.tile, tx : tx + self.tile] = GROUND
            self.world[ty : ty + self.tile, tx : tx + self.tile] = PALETTE[0]
        self.t += 1
        terminated = bool(kind == LAVA)
        truncated = not terminated and self.t >= self.max_steps
        px, st = self._obs()
        return px, st, reward, terminated, truncated

    def close(self) -> None:
        pass


def make_scroll_env(num_envs: int = 1, size: int = 16, seed: int = 0, **kw: Any) -> LoopVectorEnv:
    """A vector env of `num_envs` Scroll games (kw: max_steps, world_size, tile, p_gem, p_lava)."""
    allowed = {"max_steps", "world_size", "tile", "p_gem", "p_lava"}
    unknown = set(kw) - allowed
    if unknown:
        raise MetabonkError(f"unknown scroll option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return LoopVectorEnv([ScrollGame(size=size, **kw) for _ in range(num_envs)], seed=seed, spec_name="scroll")
