"""`metabonk quantize` end to end: the quantized checkpoint works in the other verbs (eval, play agent, dream,
the demo's report GIFs); formats the CPU cannot run exit with one error line."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
from click.testing import Result
from typer.testing import CliRunner

from tests.test_quant_formats import tiny_agent, tiny_world

warnings.filterwarnings("ignore")


def metabonk(*args: str) -> Result:
    """Run a verb in this process (torch is imported once for the whole file)."""
    from metabonk.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def metabonk_process(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `metabonk` entry point (exit codes and the one-line error)."""
    exe = Path(sys.executable).parent / "metabonk"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, check=False)


def test_quantize_policy_check_then_eval_and_play(tmp_path: Path) -> None:
    tiny_agent().save(tmp_path / "fp32")
    js = tmp_path / "q.json"
    r = metabonk("quantize", str(tmp_path / "fp32"), "--format", "int8", "--out", str(tmp_path / "q"), "--check",
                 "--episodes", "2", "--max-steps", "40", "--json", str(js))
    assert r.exit_code == 0, r.output
    res = json.loads(js.read_text())["results"]
    assert res["drift"]["action_agreement"] > 0.8 and res["drift"]["episodes"] == 2
    assert "return_delta" in res["drift"] and res["quant"]["layers"]
    r = metabonk("play", "agent", str(tmp_path / "q"), "--planner", "none", "--max-steps", "20", "--json",
                 str(tmp_path / "play.json"))
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "play.json").read_text())["results"]["ticks"] >= 20
    from metabonk.demo.report import agent_gif

    assert agent_gif(tmp_path / "q", "arena", tmp_path / "a.gif", steps=10, seed=0, device="cpu")["frames"] > 1


def test_cpu_cannot_run_fp8_activations_one_line(tmp_path: Path) -> None:
    tiny_agent().save(tmp_path / "fp32")
    r = metabonk_process("quantize", str(tmp_path / "fp32"), "--format", "fp8", "--out", str(tmp_path / "q"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error:")]) == 1
    assert not (tmp_path / "q").exists()


def test_quantized_world_dreams_in_the_dream_verb(tmp_path: Path) -> None:
    from metabonk.data.store import EpisodeStore
    from metabonk.quant.models import arena_rollout

    tiny_world().save(tmp_path / "w")
    roll = arena_rollout(1, 12, 16, seed=5)
    store = EpisodeStore.create(tmp_path / "store", "arena", 21, 16)
    n = roll.frames.shape[1] - 1
    store.append({"obs": roll.frames[0].numpy(), "action": roll.actions[0, :n].numpy(),
                  "reward": np.zeros(n, np.float32), "terminated": np.zeros(n, bool),
                  "truncated": np.zeros(n, bool)})
    r = metabonk("quantize", str(tmp_path / "w"), "--format", "int8", "--out", str(tmp_path / "wq"), "--json",
                 str(tmp_path / "wq.json"))  # never the default benchmarks/results/ path from a test
    assert r.exit_code == 0, r.output
    r = metabonk("dream", str(tmp_path / "wq"), "--data", str(tmp_path / "store"), "--out",
                 str(tmp_path / "d.gif"), "--steps", "4", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "d.gif").stat().st_size > 0 and "PSNR" in r.output


def test_bench_unified_without_a_gpu_is_one_line(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():  # the GPU path is measured by benchmarks/run_gpu_unified.sh, not in tests
        return
    r = metabonk_process("bench", "unified", "--seconds", "1", "--json", str(tmp_path / "u.json"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "needs CUDA" in r.stderr
    assert not (tmp_path / "u.json").exists()
