"""`metabonk bench quant`: System 1 step latency, p50/p99 at batch 1 and steps/s at a larger batch, for the same
agent as torch eager fp32 (the reference), torch eager with torchao int8 / fp8 weights, torch.compile, and the
ONNX export under onnxruntime (fp32, and onnxruntime's own dynamic int8) — all in one run.

Every variant carries the recurrent state tick to tick as a control loop does. Small nets can get slower when
quantized (the quantize/dequantize work outweighs the smaller matmuls); the table says so where they do.
"""

from __future__ import annotations

import copy
import logging
import os
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
            except Exception as e:  # one failing variant (e.g. onnx shape inference) is a row, not a crash
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            log(f"{name}: {row}")
            rows.append(row)
    ref = next((r for r in rows if r["variant"] == "eager_fp32" and "p50_ms" in r), None)
    if ref is not None:
        for r in rows:
            if "p50_ms" in r:
                r["p50_speedup_vs_eager_fp32"] = ref["p50_ms"] / r["p50_ms"]
                r["throughput_vs_eager_fp32"] = r["steps_per_s"] / ref["steps_per_s"]
    return {"device": str(device), "torch_threads": torch.get_num_threads(), "latency_steps": steps,
            "load_average_1min": os.getloadavg()[0],  # a shared CPU: how crowded it was
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


def run_system2(levels: tuple[str, ...], n: int, threads: int, out_dir: str | Path, lookup_tokens: int = 10,
                seed: int = 0, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Decision latency and agreement with the bundled Q4_1 of each requantized level, and of Q4_1 decoded with
    prompt lookup, on `threads` CPU threads. Every row runs the same 2n decisions (n cards, n intents)."""
    from metabonk.planner.embedded import find_gguf
    from metabonk.quant.gguf import LookupClient, decisions, requantize

    base_path = find_gguf()
    runs: list[tuple[str, Path, int]] = [("bundled Q4_1", base_path, 0)]
    runs += [(level, requantize(level, out_dir, threads=threads), 0) for level in levels]
    if lookup_tokens > 0:
        runs.append((f"bundled Q4_1 + prompt lookup ({lookup_tokens} tokens)", base_path, lookup_tokens))
    rows: list[dict[str, Any]] = []
    base: dict[str, Any] | None = None
    chosen: dict[str, list[str]] = {}
    for name, path, look in runs:
        d = decisions(LookupClient(path, n_threads=threads, lookup_tokens=look), n, seed)
        base = base or d
        chosen[name] = d["chosen"]
        lat = np.asarray(d["latency_s"])
        row = {"level": name, "file": path.name, "size_mb": path.stat().st_size / 1e6,
               "p50_s": float(np.percentile(lat, 50)), "p99_s": float(np.percentile(lat, 99)),
               "mean_s": float(lat.mean()), "llm_answered_fraction": d["llm_fraction"],
               "agreement_with_bundled": float(np.mean([a == b for a, b in zip(d["chosen"], base["chosen"],
                                                                              strict=True)]))}
        row["speedup_vs_bundled"] = float(np.mean(base["latency_s"])) / row["mean_s"]
        row["meets_target"] = bool(row["speedup_vs_bundled"] >= 1.5 and row["agreement_with_bundled"] >= 0.95)
        log(f"{name}: {row}")
        rows.append(row)
    if "F32" in chosen:  # the bundled weights in exact arithmetic: how far each row is from the model itself
        for row in rows:
            row["agreement_with_f32"] = float(np.mean([a == b for a, b in zip(chosen[row["level"]], chosen["F32"],
                                                                             strict=True)]))
    return {"threads": threads, "decisions": 2 * n, "source": base_path.name, "rows": rows,
            "load_average_1min": os.getloadavg()[0],
            "target": "decision latency cut >= 1.5x with >= 95 % of decisions unchanged"}


def print_and_write_system2(res: dict[str, Any], json_path: str | Path | None) -> Path:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"System 2 decisions at llama.cpp levels ({res['decisions']} decisions, {res['threads']} "
              "threads)")
    exact = any("agreement_with_f32" in r for r in res["rows"])
    for col in ("level", "MB", "p50 s", "p99 s", "speed-up", "agreement", *(["agreement with F32"] if exact else []),
                "target"):
        t.add_column(col)
    for r in res["rows"]:
        t.add_row(r["level"], f"{r['size_mb']:.0f}", f"{r['p50_s']:.3f}", f"{r['p99_s']:.3f}",
                  f"{r['speedup_vs_bundled']:.2f}x", f"{r['agreement_with_bundled']:.0%}",
                  *([f"{r['agreement_with_f32']:.0%}"] if exact else []),
                  "met" if r["meets_target"] else "not met")
    Console().print(t)
    path = Path(json_path or "benchmarks/results/quant-system2-cpu.json")
    write_result(path, res)
    return path


WORLD_VARIANTS = ("eager_fp32", "eager_bf16", "torchao_int8", "torchao_fp8", "fused_fp8")


def _world_variant(name: str, world: Any) -> tuple[Any, bool, str]:
    """(model, bf16 autocast, kernels) of a world-model variant; quantized ones are deep copies."""
    from metabonk.quant.apply import quantize_model
    from metabonk.quant.formats import Recipe

    model = copy.deepcopy(world)
    if name == "torchao_int8":
        quantize_model(model, Recipe("int8"), device=model.device)
        return model, False, "eager"
    if name == "torchao_fp8":
        quantize_model(model, Recipe("fp8"), device=model.device)
        return model, True, "eager"
    if name == "fused_fp8":
        return model, True, "fused_fp8"
    return model, name == "eager_bf16", "eager"


def run_world(world: Any, probe: Any, variants: tuple[str, ...], batch: int = 1024, steps: int = 8,
              dream_steps: int = 16, seed: int = 0, log: Callable[[str], None] = print,
              partial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Dream frames/s at `batch` and the PSNR of each variant's 16-step dream against the eager fp32 dream from
    the same noise (same start frames, actions and DreamEnv seed), per step."""
    from metabonk.common.errors import MetabonkError
    from metabonk.quant.drift import _psnr
    from metabonk.world.dream_env import DreamEnv

    k = world.config.num_context
    acts = probe.actions.clamp(max=world.config.num_actions - 1)
    reps = -(-batch // probe.frames.shape[0])
    big_frames = probe.frames[:, :k].repeat(reps, 1, 1, 1, 1)[:batch]
    big_acts = acts[:, :k].repeat(reps, 1)[:batch]
    rows: list[dict[str, Any]] = []
    ref_dream: torch.Tensor | None = None
    for name in variants:
        row: dict[str, Any] = {"variant": name, "batch": batch}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model, bf16, kernels = _world_variant(name, world)
                env = DreamEnv(model, bf16=bf16, seed=seed, kernels=kernels)
                env.reset(probe.frames[:, :k], acts[:, :k])
                dream = torch.stack([env.step(acts[:, k - 1 + i])[0].cpu() for i in range(dream_steps)], 1)
                env.reset(big_frames, big_acts)
                a = big_acts[:, -1]
                for _ in range(2):  # warm-up (fused kernels tune their launches here)
                    env.step(a)
                sync = torch.cuda.synchronize if world.device.type == "cuda" else (lambda: None)
                sync()
                t0 = time.perf_counter()
                for _ in range(steps):
                    env.step(a)
                sync()
                row["frames_per_s"] = batch * steps / (time.perf_counter() - t0)
            if ref_dream is None and name == "eager_fp32":
                ref_dream = dream
            if ref_dream is not None:
                row["psnr_vs_fp32_dream_db"] = [float(_psnr(dream[:, t], ref_dream[:, t]).mean())
                                                for t in range(dream_steps)]
                real = probe.frames[:, k: k + dream_steps]
                if real.shape[1] == dream_steps:
                    row["psnr_vs_real_db"] = [float(_psnr(dream[:, t], real[:, t]).mean()) for t in range(dream_steps)]
        except (MetabonkError, RuntimeError, ImportError, AssertionError, NotImplementedError) as e:
            row["error"] = str(e).splitlines()[0][:200]
        log(f"{name}: { {k2: v for k2, v in row.items() if not isinstance(v, list)} }")
        rows.append(row)
        if partial is not None:  # a GPU call can be cut short: keep what is measured
            partial({"batch": batch, "partial": True, "rows": rows})
    fp32 = next((r for r in rows if r["variant"] == "eager_fp32" and "psnr_vs_real_db" in r), None)
    bf16 = next((r for r in rows if r["variant"] == "eager_bf16" and "frames_per_s" in r), None)
    for r in rows:
        if fp32 is not None and "psnr_vs_real_db" in r:
            d = [a - b for a, b in zip(r["psnr_vs_real_db"], fp32["psnr_vs_real_db"], strict=True)]
            r["psnr_delta_vs_fp32_db"] = d
            r["within_0p1_db_every_step"] = bool(max(abs(x) for x in d) <= 0.1)
        if bf16 is not None and "frames_per_s" in r:
            r["speed_vs_eager_bf16"] = r["frames_per_s"] / bf16["frames_per_s"]
    return {"batch": batch, "dream_steps": dream_steps, "dreams_compared": int(probe.frames.shape[0]),
            "params": sum(p.numel() for p in world.parameters()), "rows": rows}


def main(argv: list[str] | None = None) -> None:
    """`python -m metabonk.bench.quant PART OUT.json [DEVICE]` for the GPU script (no typer needed):
    PART is system1 or world; POLICY_CKPT / WORLD_CKPT choose checkpoints (default: fresh models)."""
    import sys

    from metabonk.common.device import resolve_device

    args = list(sys.argv[1:] if argv is None else argv)
    part, out, device = args[0], args[1], resolve_device(args[2] if len(args) > 2 else "auto")
    torch.manual_seed(0)
    if part == "system1":
        from metabonk.policy.agent import Agent
        from metabonk.policy.config import PolicyConfig

        ckpt = os.environ.get("POLICY_CKPT")
        agent = Agent.load(ckpt) if ckpt else Agent(PolicyConfig()).eval()
        small = device.type == "cpu"
        res = run_system1(agent, device, VARIANTS, steps=50 if small else 500, big_batch=16 if small else 4096)
        print_and_write(res, device, out)
        return
    if part == "world":
        from metabonk.quant.models import arena_rollout
        from metabonk.world.config import diamond_atari_config, tiny_config
        from metabonk.world.world_model import WorldModel

        ckpt = os.environ.get("WORLD_CKPT")
        if ckpt:
            world = WorldModel.load(ckpt, device)
        else:
            world = WorldModel(tiny_config(frame_size=32) if device.type == "cpu" else diamond_atari_config(21))
            torch.nn.init.normal_(world.denoiser.inner.unet.conv_out.weight, std=0.02)  # zero-init: would copy
            world = world.to(device).eval()
        small = device.type == "cpu"
        probe = arena_rollout(4 if small else 64, world.config.num_context + 16, world.config.frame_size, seed=7)
        variants = tuple(v for v in WORLD_VARIANTS if not (small and v in ("torchao_fp8", "fused_fp8")))
        res = run_world(world, probe, variants, batch=8 if small else 1024, steps=2 if small else 8,
                        partial=lambda r: write_result(out, r, device))
        res["checkpoint"] = ckpt or "fresh model (untrained: speed is real; PSNR deltas measure quantization error "\
            "of random weights, not of a trained dream)"
        write_result(out, res, device)
        print(f"wrote {out}")
        return
    raise SystemExit(f"unknown part {part!r} (system1 | world)")


if __name__ == "__main__":
    main()
