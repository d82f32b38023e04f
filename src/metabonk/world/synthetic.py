"""Random-play episode stores of the Scroll game (envs/scroll.py) for world-model tests; here gems stay where
they are (a store of the older, static-gem variant the tests were tuned on)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metabonk.envs.scroll import GEM, LAVA, MOVES, make_world, render


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
