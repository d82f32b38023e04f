"""A synthetic labelled video for tests and demos: a textured ground scrolled by Arena-encoded actions."""

from __future__ import annotations

import numpy as np

from metabonk.envs.arena.spec import STEPS, dashes, direction_of
from metabonk.latent.data import TransitionData
from metabonk.latent.frames import ARENA_NUM_ACTIONS

_DIRS = np.array(STEPS) * np.array([1, -1])
"""Unit pixel step of each Arena direction (x right, y down: image rows grow southwards)."""


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
    """Random-policy episodes over all Arena actions; the camera moves by speed (x2 when dashing)."""
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
                pos = pos + _DIRS[direction_of(a)] * speed * (1 + int(dashes(a)))
        out.append({"obs": np.stack(frames), "action": acts})
    return TransitionData.from_episodes(out, env="arena-synthetic", num_actions=ARENA_NUM_ACTIONS)


def inertia_video(episodes: int = 8, steps: int = 200, size: int = 32, accel: int = 2, max_speed: int = 4,
                  seed: int = 0, lag: int = 0) -> TransitionData:
    """Random-policy episodes of a paddle with inertia, as in Pong: actions 0/1/2 = none/up/down change the
    paddle's vertical speed by 0/-accel/+accel px per step (clipped to +-max_speed; walls stop it), so where the paddle
    went is its speed, and the action is the change of speed. A ball bouncing off the walls moves on its own.
    `lag` > 0 delays every action by that many steps (the move from x_t to x_{t+1} applies a_{t-lag}): what a
    press did shows only in later frames."""
    rng = np.random.default_rng(seed)
    h, pw, col = 8, 3, size - 6
    out = []
    for _ in range(episodes):
        acts = rng.integers(0, 3, size=steps)
        y, v = int(rng.integers(0, size - h)), 0
        ball = rng.integers(2, size - 8, size=2).astype(int)
        bv = np.array([rng.choice([-1, 1]), rng.choice([-2, 2])])
        frames = []
        for t in range(steps + 1):
            f = np.full((size, size, 3), 40, dtype=np.uint8)
            f[y: y + h, col: col + pw] = (90, 200, 90)
            f[ball[0]: ball[0] + 2, ball[1]: ball[1] + 2] = 230
            frames.append(f)
            if t < steps:
                applied = int(acts[t - lag]) if t >= lag else 0
                v = int(np.clip(v + accel * (0, -1, 1)[applied], -max_speed, max_speed))
                y += v
                if not 0 <= y <= size - h:
                    y, v = int(np.clip(y, 0, size - h)), 0
                ball = ball + bv
                for i, hi in enumerate((size - 2, size - 8)):  # bounce (the ball stays left of the paddle)
                    if not 0 <= ball[i] <= hi:
                        bv[i] = -bv[i]
                        ball[i] = int(np.clip(ball[i], 0, hi))
        out.append({"obs": np.stack(frames), "action": acts})
    return TransitionData.from_episodes(out, env="inertia-synthetic", num_actions=3)
