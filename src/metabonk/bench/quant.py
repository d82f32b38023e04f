"""`metabonk bench quant`: System 1 step latency, p50/p99 at batch 1 and steps/s at a larger batch, for the same
agent as torch eager fp32 (the reference), torch eager with torchao int8 / fp8 weights, torch.compile, and the
ONNX export under onnxruntime (fp32, and onnxruntime's own dynamic int8) — all in one run.

Every variant carries the recurrent state tick to tick as a control loop does. Small nets can get slower when
quantized (the quantize/dequantize work outweighs the smaller matmuls); the table says so where they do.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metabonk.common.device import device_label
from metabonk.common.results import write_result

VARIANTS = ("eager_fp32", "eager_int8", "eager_int8_wo", "eager_fp8", "compiled_fp32", "onnx_fp32", "onnx_int8")


def _torch_tick(agent: Any, inputs: dict[str, np.ndarray], device: torch.device) -> Callable[[], None]:
    t = {k: torch.from_numpy(v).to(device) for k, v in inputs.items()}
    obs = {"pixels": t["pixels"], **({"card_options": t["card_options"]} if "card_options" in t else {})}
    state = {"h": t["hidden"]}

    @torch.inference_mode()
    def tick() -> None:
        state["h"] = agent.step(obs, state["h"], t["intent"])[3]

    return tick


def _ort_tick(session: Any, inputs: dict[str, np.ndarray]) -> Callable[[], None]:
    feed = dict(inputs)

    def tick() -> None:
        feed["hidden"] = session.step(feed)["hidden_out"]

    return tick


def _time(tick: Callable[[], None], steps: int, device: torch.device, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        tick()
    out = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        tick()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out.append(time.perf_counter() - t0)
    return out


def variant_recipe(name: str, device: torch.device) -> Any:
    """The torchao recipe of a quantized variant: fp8 is weight-only on the CPU (fp8 matmuls need sm89+)."""
    from metabonk.quant.formats import Recipe

    if name == "eager_fp8":
        return Recipe("fp8", weight_only=device.type == "cpu")
    return Recipe("int8", weight_only=name == "eager_int8_wo")


def _variant(name: str, agent: Any, onnx_path: Path, device: torch.device, batch: int,
             inputs: dict[str, np.ndarray]) -> Callable[[], None]:
    from metabonk.quant.onnx_export import OrtPolicy

    if name.startswith("onnx"):
        path = onnx_path
        if name == "onnx_int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            path = onnx_path.with_name("step-int8.onnx")
            if not path.exists():
                logging.getLogger().setLevel(logging.ERROR)  # its advice on pre-processing, once per tensor
                quantize_dynamic(str(onnx_path), str(path), weight_type=QuantType.QInt8)
        return _ort_tick(OrtPolicy(path, device.type, threads=torch.get_num_threads()), inputs)
    model = copy.deepcopy(agent).to(device)
    if name in ("eager_int8", "eager_int8_wo", "eager_fp8"):
        from metabonk.quant.apply import quantize_model

        quantize_model(model, variant_recipe(name, device), device=device)
    if name == "compiled_fp32":
        model.compile_for_inference()
    return _torch_tick(model, inputs, device)


def run_system1(agent: Any, device: torch.device, variants: tuple[str, ...], steps: int = 300,
                big_batch: int = 64, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Latency rows per variant: batch 1 p50/p99 (ms) and batch `big_batch` steps/s; errors are recorded."""
    from metabonk.common.errors import MetabonkError
    from metabonk.quant.onnx_export import example_inputs, export_onnx

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "step.onnx"
        if any(v.startswith("onnx") for v in variants):
            export_onnx(copy.deepcopy(agent), onnx_path)
        for name in variants:
            row: dict[str, Any] = {"variant": name}
            if name.startswith("eager_") and name != "eager_fp32":
                row["recipe"] = variant_recipe(name, device).name
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    lat = _time(_variant(name, agent, onnx_path, device, 1, example_inputs(agent, 1)), steps, device)
                    big = _time(_variant(name, agent, onnx_path, device, big_batch,
                                         example_inputs(agent, big_batch)), max(steps // 10, 5), device, warmup=3)
                row.update(p50_ms=1e3 * float(np.percentile(lat, 50)), p99_ms=1e3 * float(np.percentile(lat, 99)),
                           batch=big_batch, steps_per_s=big_batch / float(np.median(big)))
            except (MetabonkError, RuntimeError, ImportError, AssertionError, NotImplementedError) as e:
                row["error"] = str(e).splitlines()[0][:200]
            log(f"{name}: {row}")
            rows.append(row)
    ref = next((r for r in rows if r["variant"] == "eager_fp32" and "p50_ms" in r), None)
    if ref is not None:
        for r in rows:
            if "p50_ms" in r:
                r["p50_speedup_vs_eager_fp32"] = ref["p50_ms"] / r["p50_ms"]
                r["throughput_vs_eager_fp32"] = r["steps_per_s"] / ref["steps_per_s"]
    return {"device": str(device), "torch_threads": torch.get_num_threads(), "latency_steps": steps,
            "params": sum(p.numel() for p in agent.parameters()), "rows": rows}


def print_and_write(res: dict[str, Any], device: torch.device, json_path: str | Path | None) -> Path:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"System 1 step, {res['params'] / 1e3:.0f}k params, {res['device']}")
    for col in ("variant", "p50 ms", "p99 ms", "p50 vs eager fp32", "steps/s (batch)", "note"):
        t.add_column(col)
    for r in res["rows"]:
        if "error" in r:
            t.add_row(r["variant"], "", "", "", "", r["error"][:60])
            continue
        speed = r.get("p50_speedup_vs_eager_fp32", 1.0)
        t.add_row(r["variant"], f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{speed:.2f}x",
                  f"{r['steps_per_s']:.0f} ({r['batch']})", "slower than eager fp32" if speed < 1 else "")
    Console().print(t)
    path = Path(json_path or Path("benchmarks/results") / f"quant-system1-{device_label(device)}.json")
    write_result(path, res, device)
    return path
