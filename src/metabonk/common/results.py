"""Benchmark and evaluation results: a JSON file with the machine, GPU, torch version, commit and figures."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


DIRTY_IGNORED = (":(top,exclude)benchmarks/results", ":(top,exclude)runs")
"""Paths whose changes do not make a result's tree dirty: results themselves and run outputs."""


def git_dirty() -> bool | None:
    """Whether tracked or new (not ignored) files differ from HEAD, results aside; None outside a checkout."""
    out = _git("status", "--porcelain", "--", ":/", *DIRTY_IGNORED)
    return None if out is None else bool(out.strip())


def git_commit() -> str:
    """HEAD's short hash, with '-dirty' when the tree that produced a result was not HEAD's."""
    out = _git("rev-parse", "--short", "HEAD")
    commit = (out or "").strip() or "unknown"
    return f"{commit}-dirty" if commit != "unknown" and git_dirty() else commit


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv),
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        info["gpu"] = None
    return info


def write_json_atomic(path: str | Path, doc: dict[str, Any]) -> Path:
    """Write `doc` as pretty JSON via a temp file + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2, default=float)
        f.write("\n")
    os.replace(tmp, path)
    return path


def write_result(path: str | Path, figures: dict[str, Any], device: torch.device | None = None) -> Path:
    """Write a benchmark/eval result with machine info under 'machine' and figures under 'results'."""
    return write_json_atomic(path, {"machine": machine_info(device), "results": figures})
