"""A synthetic labelled video for tests and demos: a textured ground scrolled by Arena-encoded actions."""

from __future__ import annotations

import numpy as np

from metabonk.latent.data import TransitionData
from metabonk.latent.frames import ARENA_NUM_ACTIONS

# Unit steps of move classes 1..8 = E, NE, N, NW, W, SW, S, SE (x right, y down).
_DIRS = np.array([(0, 0), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1)])


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """A tileable coloured texture: random blocks of several scales, so any shift is visible."""
    tex = np.zeros((size, size, 3), dtype=np.float32)
    for block in (2, 4, 8):
        coarse = rng.random((size // block, size // block, 3)).astype(np.float32)
        tex += np.kron(coarse, np.ones((block, block, 1), dtype=np.float32))
    tex /= 3
    return (tex * 255).astype(np.uint8)


def scrolled_video(episodes: int = 8, steps: int = 200, size: int = 32, speed: int = 2,
                   seed: int = 0) -> TransitionData:
    """Random-policy episodes over the 21 Arena actions; the camera moves by speed (x2 when dashing)."""
    rng = np.random.default_rng(seed)
    world = 4 * size
    tex = _texture(world, rng)
    out = []
    for _ in range(episodes):
        acts = rng.integers(0, ARENA_NUM_ACTIONS, size=steps)
        pos = rng.integers(0, world, size=2)
        frames = []
        for t in range(steps + 1):
            ys = (pos[1] + np.arange(size)) % world
            xs = (pos[0] + np.arange(size)) % world
            frames.append(tex[ys][:, xs])
            if t < steps:
                a = int(acts[t])
                move, dash = (a % 9, a // 9) if a < 18 else (0, 0)
                pos = pos + _DIRS[move] * speed * (1 + dash)
        out.append({"obs": np.stack(frames), "action": acts})
    return TransitionData.from_episodes(out, env="arena-synthetic", num_actions=ARENA_NUM_ACTIONS)
