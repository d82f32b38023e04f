"""The measuring code behind `bench quant` and benchmarks/run_gpu_quant.sh, at toy sizes on the CPU: every
variant yields a row (a figure or the reason it could not run), with the references in the same run."""

from __future__ import annotations

import warnings

import torch

from metabonk.bench.quant import run_system1, run_world
from metabonk.quant.models import arena_rollout
from tests.test_quant_formats import tiny_agent, tiny_world

warnings.filterwarnings("ignore")
CPU = torch.device("cpu")


def test_world_rows_speed_and_psnr_from_the_same_noise() -> None:
    torch.set_num_threads(1)
    world = tiny_world()
    probe = arena_rollout(2, world.config.num_context + 3, 16, seed=8)
    res = run_world(world, probe, ("eager_fp32", "torchao_int8", "torchao_fp8"), batch=4, steps=1, dream_steps=3,
                    log=lambda s: None)
    rows = {r["variant"]: r for r in res["rows"]}
    assert rows["eager_fp32"]["psnr_vs_fp32_dream_db"][0] > 90  # itself, from the same noise
    assert 20 < rows["torchao_int8"]["psnr_vs_fp32_dream_db"][0] < 90  # quantized: close, not identical
    assert len(rows["torchao_int8"]["psnr_delta_vs_fp32_db"]) == 3 and rows["torchao_int8"]["frames_per_s"] > 0
    assert "GPU" in rows["torchao_fp8"]["error"]  # fp8 matmuls cannot run on a CPU: the row says so


def test_system1_rows_with_the_eager_reference() -> None:
    torch.set_num_threads(1)
    res = run_system1(tiny_agent(), CPU, ("eager_fp32", "eager_int8_wo"), steps=5, big_batch=4, log=lambda s: None)
    rows = {r["variant"]: r for r in res["rows"]}
    assert rows["eager_fp32"]["p50_speedup_vs_eager_fp32"] == 1.0
    assert rows["eager_int8_wo"]["recipe"] == "int8-wo" and rows["eager_int8_wo"]["p99_ms"] >= \
        rows["eager_int8_wo"]["p50_ms"] > 0
