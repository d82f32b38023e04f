"""A tiny scrolling game for tests: the camera follows a player over tiles; gems pay, lava ends the episode.

Actions follow Arena's move encoding (0 = stand, 1..8 = E, NE, N, NW, W, SW, S, SE), one pixel per step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MOVES = np.array([(0, 0), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1)])
"""(dx, dy) of each move action, y pointing down (N is up)."""
GEM, LAVA = 1, 2


def make_world(size: int, tile: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A torus world: RGB uint8 [W,W,3] and a cell-kind map [W,W] (0 ground, 1 gem, 2 lava)."""
    n = size // tile
    palette = np.array([[40, 90, 40], [70, 130, 60], [90, 90, 110], [30, 60, 90], [120, 110, 70]], np.uint8)
    kinds = rng.choice(3, size=(n, n), p=[0.9, 0.06, 0.04])
    colors = palette[rng.integers(0, len(palette), (n, n))]
    colors[kinds == GEM] = (240, 220, 40)
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


def play_episode(
    rng: np.random.Generator,
    size: int = 16,
    max_steps: int = 120,
    sticky: float = 0.8,
    world_size: int = 64,
    tile: int = 4,
) -> dict[str, np.ndarray]:
    """One episode under a sticky random policy, in episode-store format."""
    world, kinds = make_world(world_size, tile, rng)
    pos = rng.integers(0, world_size, 2)
    while kinds[pos[1], pos[0]] != 0:
        pos = rng.integers(0, world_size, 2)
    frames, actions, rewards, terms = [render(world, pos, size)], [], [], []
    a = int(rng.integers(0, 9))
    for _ in range(max_steps):
        if rng.random() > sticky:
            a = int(rng.integers(0, 9))
        pos = (pos + MOVES[a]) % world_size
        kind = kinds[pos[1], pos[0]]
        frames.append(render(world, pos, size))
        actions.append(a)
        rewards.append(1.0 if kind == GEM else 0.0)
        terms.append(kind == LAVA)
        if kind == LAVA:
            break
    T = len(actions)
    return {
        "obs": np.stack(frames),
        "action": np.array(actions, np.int64),
        "reward": np.array(rewards, np.float32),
        "terminated": np.array(terms, bool),
        "truncated": np.array([False] * (T - 1) + [not terms[-1]], bool),
    }


def write_store(path: str | Path, episodes: int = 40, size: int = 16, max_steps: int = 120, seed: int = 0):
    """A new episode store of synthetic episodes (9 actions); returns the opened EpisodeStore."""
    from metabonk.data.store import EpisodeStore

    rng = np.random.default_rng(seed)
    store = EpisodeStore.create(path, env_spec="synthetic:scroll", num_actions=9, frame_size=size)
    for _ in range(episodes):
        ep = play_episode(rng, size=size, max_steps=max_steps)
        store.append(ep, meta={"return": float(ep["reward"].sum())})
    return store
