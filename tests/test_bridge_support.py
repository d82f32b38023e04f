"""Stand-in game and helpers for the bridge tests (a tiny deterministic 21-action game behind LoopVectorEnv).

`python tests/test_bridge_support.py PORT_FILE [arena|toy]` serves a game over the bridge in a subprocess and
writes its port to PORT_FILE (used by the kill-the-server test).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np

from metabonk.envs.autoreset import LoopVectorEnv

SIZE = 32


class ToyGame:
    """A square moving with the arena-21 directions over a seeded noisy background; random-length episodes."""

    num_actions = 21
    state_dim = 4
    size = SIZE

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.pos = np.zeros(2, np.int64)
        self.t = 0
        self.limit = 10
        self.bg = np.zeros((SIZE, SIZE, 3), np.uint8)

    def _obs(self) -> tuple[np.ndarray, np.ndarray]:
        px = self.bg.copy()
        x, y = self.pos
        px[y:y + 4, x:x + 4] = (255, 255, 0)
        state = np.array([x / SIZE, y / SIZE, self.t / self.limit, self.rng.random()], np.float32)
        return px, state

    def reset(self, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.bg = self.rng.integers(0, 80, (SIZE, SIZE, 3), dtype=np.uint8)
        self.pos = self.rng.integers(4, SIZE - 8, 2)
        self.t = 0
        self.limit = int(self.rng.integers(8, 20))
        return self._obs()

    def step(self, action: int) -> tuple[np.ndarray, np.ndarray, float, bool, bool]:
        move = action % 9 if action < 18 else 0
        dx = (0, 1, 1, 0, -1, -1, -1, 0, 1)[move] * (2 if 9 <= action < 18 else 1)
        dy = (0, 0, -1, -1, -1, 0, 1, 1, 1)[move] * (2 if 9 <= action < 18 else 1)
        self.pos = np.clip(self.pos + np.array([dx, dy]), 0, SIZE - 4)
        self.t += 1
        reward = float(self.rng.normal()) + 0.1 * move
        terminated = bool(self.rng.random() < 0.03)
        truncated = self.t >= self.limit and not terminated
        return (*self._obs(), reward, terminated, truncated)

    def close(self) -> None:
        return None


def make_toy_env(seed: int = 0) -> LoopVectorEnv:
    return LoopVectorEnv([ToyGame()], seed=seed, spec_name="toy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(port_file: str, which: str) -> None:
    from metabonk.envs.bridge.server import BridgeServer

    if which == "arena":
        from metabonk.envs import make_env

        def factory() -> object:
            return make_env("arena", num_envs=1, size=SIZE, seed=0, stage_steps=60)
    else:
        factory = make_toy_env  # type: ignore[assignment]
    server = BridgeServer(factory, port=0, name=which).bind()  # type: ignore[arg-type]
    tmp = Path(port_file + ".tmp")
    tmp.write_text(str(server.address[1]))
    tmp.rename(port_file)
    server.serve_forever()


def arena_available() -> bool:
    """Whether engineer A's Arena is importable yet (the tests serve real Arena once it is)."""
    try:
        from metabonk.envs.arena import make_arena_env  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "toy")
