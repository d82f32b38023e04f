"""`metabonk serve-env` and `metabonk bridge-check` as a user runs them (real processes, real sockets)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from metabonk.envs import make_env
from metabonk.envs.bridge import BridgeVectorEnv

METABONK = [sys.executable, "-m", "metabonk"]


def _serve(*args: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([*METABONK, "serve-env", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "serving ENV on bridge://HOST:PORT", printed once listening
    match = re.search(r"bridge://127\.0\.0\.1:(\d+)", line)
    if match is None:
        proc.kill()
        raise AssertionError(f"serve-env did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, int(match.group(1))


def _interrupt(proc: subprocess.Popen) -> None:
    """Ctrl-C the server; kill it if it has not exited 15 s later (then its return code is -9)."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def test_serve_env_serves_ale_pong_identically_and_passes_the_check(tmp_path: Path) -> None:
    proc, port = _serve("ale:Pong", "--port", "0", "--size", "48", "--seed", "3",
                        "--frame-encoding", "raw_rgb")
    try:
        bridge = BridgeVectorEnv("127.0.0.1", port, size=48, timeout=20)
        local = make_env("ale:Pong", num_envs=1, size=48, seed=3)
        ob, _ = bridge.reset()
        ol, _ = local.reset()
        assert np.array_equal(ob["pixels"], ol["pixels"])
        for t in range(60):
            a = np.array([t % bridge.num_actions])
            ob, rb, *_ = bridge.step(a)
            ol, rl, *_ = local.step(a)
            assert np.array_equal(ob["pixels"], ol["pixels"]) and np.array_equal(rb, rl), t
        assert bridge.action_layout == "discrete"
        bridge.close()
        local.close()
        check = subprocess.run([*METABONK, "bridge-check", f"127.0.0.1:{port}", "--steps", "30"],
                               capture_output=True, text=True, timeout=120,
                               env={**os.environ, "COLUMNS": "200"})
        assert check.returncode == 0, check.stderr
        assert "all messages valid" in check.stdout
        assert re.search(r"seeded_reset_repeats\s*│\s*True", check.stdout), check.stdout
    finally:
        _interrupt(proc)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def test_cli_errors_are_one_line_without_traceback() -> None:
    env = {**os.environ, "COLUMNS": "300"}
    for args, needle in [
        (["serve-env", "nonsense", "--port", "0"], "unknown env spec"),
        (["serve-env", "ale:Pong", "--port", "0", "--frame-encoding", "gif"], "unknown frame encoding"),
        (["bridge-check", "127.0.0.1:1"], "cannot connect to the bridge game at 127.0.0.1:1"),
        (["bridge-check", "nohost"], "expected HOST:PORT"),
    ]:
        t0 = time.perf_counter()
        out = subprocess.run([*METABONK, *args], capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode != 0 and needle in out.stderr, (args, out.stderr)
        errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        assert "Traceback" not in out.stderr and len(errors) == 1, out.stderr
        assert time.perf_counter() - t0 < 30


def test_record_through_served_arena_then_server_dies(tmp_path: Path) -> None:
    """`metabonk record bridge://...` against `metabonk serve-env arena`; the server is killed mid-episode."""
    from metabonk.data.store import EpisodeStore

    proc, port = _serve("arena", "--port", "0", "--size", "32")
    out = tmp_path / "store"
    rec = subprocess.Popen([*METABONK, "record", f"bridge://127.0.0.1:{port}", "--out", str(out),
                            "--size", "32", "--episodes", "1000", "--max-steps", "15"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "COLUMNS": "300"})
    try:
        deadline = time.monotonic() + 90
        while len(list(out.glob("episodes/ep_*.safetensors"))) < 2:
            assert rec.poll() is None, rec.stderr.read() if rec.stderr else ""
            assert time.monotonic() < deadline, "recording through the bridge made no progress"
            time.sleep(0.2)
        proc.kill()  # SIGKILL: the game vanishes mid-episode
        proc.wait(10)
        _, err = rec.communicate(timeout=60)
    finally:
        for p in (proc, rec):
            if p.poll() is None:
                p.kill()
                p.wait(10)
    assert rec.returncode != 0 and "Traceback" not in err, err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and f"127.0.0.1:{port}" in error_lines[0], err
    store = EpisodeStore.open(out)
    assert len(store) >= 2
    for i in range(len(store)):
        ep = store.episode(i)
        assert ep["obs"].shape[1:] == (32, 32, 3) and ep["obs"].shape[0] == ep["action"].shape[0] + 1


def test_serve_env_stops_on_sigint_even_if_the_parent_ignored_it() -> None:
    # A child inherits an ignored SIGINT, and Python then installs no KeyboardInterrupt handler: serve-env must
    # install its own (this once left CI's server running until it was killed).
    proc = subprocess.Popen([*METABONK, "serve-env", "arena", "--port", "0", "--size", "32"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.stdout is not None and "bridge://" in proc.stdout.readline()
    _interrupt(proc)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
