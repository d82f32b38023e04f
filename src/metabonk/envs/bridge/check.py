"""Conformance check of a bridge game (`metabonk bridge-check HOST:PORT`): what a plugin author runs first.

Every message the game sends is schema-checked by the client; this drives a handshake, a seeded reset, random
steps through episode ends, a repeated seeded reset (to report determinism) and a close, then prints a table.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from metabonk.common.logging import progress_bar
from metabonk.envs.bridge.client import BridgeVectorEnv


def run_check(host: str, port: int, steps: int = 200, seed: int = 0, timeout: float = 10.0,
              show: bool = True) -> dict[str, Any]:
    """Run the check; returns the figures (a BridgeError propagates with the first problem found)."""
    rng = np.random.default_rng(seed)
    env = BridgeVectorEnv(host, port, timeout=timeout, seed=seed)
    report: dict[str, Any] = {"game": env.game_info.get("name", "?"), "num_actions": env.num_actions,
                              "action_layout": env.action_layout,
                              "state_vector": "game's own" if env.game_state_dim else "from JSON state"}
    try:
        obs, _ = env.reset(seed=seed)
        first = obs["pixels"].copy()
        episodes, rewards, lat_ms = 0, 0.0, []
        with progress_bar("bridge-check", total=steps, disable=not show) as advance:
            for _ in range(steps):
                t0 = time.perf_counter()
                obs, reward, terminated, truncated, _ = env.step(rng.integers(0, env.num_actions, size=1))
                lat_ms.append((time.perf_counter() - t0) * 1e3)
                episodes += int(terminated[0] or truncated[0])
                rewards += float(reward[0])
                advance()
        again, _ = env.reset(seed=seed)
        report.update({
            "steps": steps, "episodes_ended": episodes, "reward_sum": rewards,
            "step_p50_ms": float(np.median(lat_ms)) if lat_ms else 0.0,
            "step_p99_ms": float(np.percentile(lat_ms, 99)) if lat_ms else 0.0,
            "seeded_reset_repeats": bool(np.array_equal(first, again["pixels"])),
        })
    finally:
        env.close()
    if show:
        out = Console()
        out.print(f"bridge check of {host}:{port}: all messages valid", highlight=False)
        table = Table()
        table.add_column("figure")
        table.add_column("value")
        for k, v in report.items():
            table.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
        out.print(table)
    return report
