"""Bridge benchmark: steps/s of an env played locally vs through `metabonk serve-env` in another process.

Reports, per frame encoding, steps/s, the ratio to local play, the per-step overhead, latency percentiles
and bytes per frame, so a plugin author sees what the protocol costs on this machine.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any

import numpy as np

from metabonk.common.errors import MetabonkError


def _play(env: Any, steps: int, seed: int) -> tuple[float, list[float]]:
    """Steps/s and per-step latencies (ms) of `steps` random actions after a seeded reset."""
    rng = np.random.default_rng(seed)
    n = int(env.single_action_space.n)
    env.reset(seed=seed)
    lat = []
    t0 = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        env.step(rng.integers(0, n, 1))
        lat.append((time.perf_counter() - t) * 1e3)
    return steps / (time.perf_counter() - t0), lat


def _start_server(env_spec: str, size: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "metabonk", "serve-env", env_spec, "--port", "0",
                             "--size", str(size)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"bridge://[^:]+:(\d+)", line)
    if match is None:
        proc.kill()
        raise MetabonkError(f"serve-env {env_spec} did not start (said {line!r})")
    return proc, int(match.group(1))


def run_bridge_bench(env_spec: str = "arena", size: int = 64, steps: int = 200, repeats: int = 3,
                     encodings: tuple[str, ...] = ("raw_rgb", "png", "jpeg"),
                     seed: int = 0) -> dict[str, Any]:
    """Median over `repeats` of local and bridged play; the server runs in its own process."""
    from metabonk.envs import make_env
    from metabonk.envs.bridge.client import BridgeVectorEnv
    from metabonk.envs.bridge.frames import encode_frame

    local = make_env(env_spec, num_envs=1, size=size, seed=seed)
    _play(local, 10, seed)  # warm-up
    runs = [_play(local, steps, seed + r) for r in range(repeats)]
    frame = local.reset(seed=seed)[0]["pixels"][0]
    local.close()
    local_sps = float(np.median([r[0] for r in runs]))
    figures: dict[str, Any] = {"env": env_spec, "frame_size": size, "steps": steps, "repeats": repeats,
                               "local_steps_per_s": local_sps,
                               "local_p50_ms": float(np.median(np.concatenate([r[1] for r in runs])))}
    proc, port = _start_server(env_spec, size)
    try:
        for enc in encodings:
            env = BridgeVectorEnv("127.0.0.1", port, size=size, timeout=60, frame_encodings=(enc,))
            _play(env, 10, seed)
            runs = [_play(env, steps, seed + r) for r in range(repeats)]
            env.close()
            sps = float(np.median([r[0] for r in runs]))
            lat = np.concatenate([r[1] for r in runs])
            figures[enc] = {
                "steps_per_s": sps, "ratio_to_local": sps / local_sps,
                "overhead_ms_per_step": 1e3 / sps - 1e3 / local_sps,
                "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                "frame_bytes": len(encode_frame(frame, enc)[1]),
            }
    finally:
        proc.terminate()
        proc.wait(15)
    return figures
