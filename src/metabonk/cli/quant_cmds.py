"""CLI verbs of the quant area: `quantize` (torchao formats, hybrid precision, drift check) and `export-onnx`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from metabonk.cli.app import app, bench_app
from metabonk.common.errors import MetabonkError


@app.command("quantize")
def quantize_cmd(
    ckpt: Annotated[Path, typer.Argument(help="fp32 checkpoint: policy, world, lam or idm.")],
    format: Annotated[str, typer.Option("--format", help="int8 | int4 | fp8 | nvfp4 | mxfp4")],
    out: Annotated[Path, typer.Option(help="Quantized checkpoint directory to write.")],
    weight_only: Annotated[bool, typer.Option("--weight-only", help="Quantize weights only; activations stay "
                                              "fp32/bf16 (int8, fp8, nvfp4; int4 is always weight-only).")] = False,
    keep: Annotated[str, typer.Option(help="Comma-separated layer names kept in full precision.")] = "",
    budget: Annotated[float | None, typer.Option(help="Hybrid precision: per-layer sensitivity report, keeping the "
                                                 "most sensitive layers so the relative output error stays under "
                                                 "this (e.g. 0.02).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Measure drift against the fp32 checkpoint.")] = False,
    data: Annotated[Path | None, typer.Option(help="Episode store for the held-out frames (default: seeded "
                                              "Arena rollouts).")] = None,
    episodes: Annotated[int, typer.Option(min=0, help="--check, policy: Arena seeds for the return delta "
                                          "(0 = skip).")]
    = 32,
    max_steps: Annotated[int, typer.Option(help="--check, policy: step cap per episode.")] = 2000,
    dream_steps: Annotated[int, typer.Option(help="--check, world: dream steps compared.")] = 16,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed of the probe frames, dreams and episodes.")] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Result file (default "
                                                   "benchmarks/results/quant-KIND-FORMAT-DEVICE.json).")] = None,
) -> None:
    """Quantize a model with torchao; the result loads through the normal `load` and runs in every verb."""
    from metabonk.quant.run import QuantizeArgs, quantize_checkpoint

    if episodes < 0 or max_steps < 1 or dream_steps < 1:
        raise MetabonkError("--episodes must be >= 0, --max-steps and --dream-steps >= 1")
    if budget is not None and budget <= 0:
        raise MetabonkError(f"--budget must be > 0, got {budget}")
    if device == "cpu":
        import torch

        torch.set_num_threads(1)  # small models on a shared CPU: one thread is fastest and steadiest
    res = quantize_checkpoint(QuantizeArgs(
        ckpt=ckpt, out=out, format=format, weight_only=weight_only,
        keep=tuple(k.strip() for k in keep.split(",") if k.strip()), budget=budget, check=check, data=data,
        episodes=episodes, max_steps=max_steps, dream_steps=dream_steps, device=device, seed=seed,
        json_path=json_path, log=typer.echo))
    if "drift" in res:
        _print_drift(res["kind"], res["drift"])
    typer.echo(f"wrote {res['json']}")


def _print_drift(kind: str, d: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{kind}: drift of the quantized model from fp32")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for key, v in d.items():
        if isinstance(v, list):
            v = ", ".join(f"{x:.2f}" for x in v[:16])
        elif isinstance(v, float):
            v = f"{v:.4f}"
        t.add_row(key, str(v))
    Console(soft_wrap=True).print(t)


@app.command("export-onnx")
def export_onnx_cmd(
    ckpt: Annotated[Path, typer.Argument(help="fp32 policy checkpoint.")],
    out: Annotated[Path, typer.Option(help="ONNX file to write.")],
) -> None:
    """System 1's step as ONNX (recurrent state as input/output) for onnxruntime; checks it against torch."""
    import numpy as np
    import torch

    from metabonk.policy.agent import Agent
    from metabonk.quant.onnx_export import OrtPolicy, example_inputs, export_onnx

    agent = Agent.load(ckpt)
    export_onnx(agent, out)
    x = example_inputs(agent, batch=3)
    got = OrtPolicy(out).step(x)
    with torch.no_grad():
        obs = {"pixels": torch.from_numpy(x["pixels"])}
        if "card_options" in x:
            obs["card_options"] = torch.from_numpy(x["card_options"])
        logits, _, _, h = agent.step(obs, torch.from_numpy(x["hidden"]), torch.from_numpy(x["intent"]))
    err = max(float(np.abs(got["logits"] - logits.numpy()).max()), float(np.abs(got["hidden_out"] - h.numpy()).max()))
    if err > 1e-3:
        raise MetabonkError(f"the ONNX graph disagrees with torch by {err:.2e}; not kept")
    typer.echo(f"wrote {out} (onnxruntime matches torch to {err:.1e})")


@bench_app.command("quant")
def bench_quant_cmd(
    ckpt: Annotated[Path | None, typer.Argument(help="Policy checkpoint (default: a fresh default-size agent).")]
    = None,
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    variants: Annotated[str, typer.Option(help="Comma-separated: eager_fp32, eager_int8, eager_int8_wo, eager_fp8, "
                                          "compiled_fp32, onnx_fp32, onnx_int8.")] =
        "eager_fp32,eager_int8,eager_int8_wo,eager_fp8,compiled_fp32,onnx_fp32,onnx_int8",
    steps: Annotated[int, typer.Option(help="Timed ticks at batch 1.")] = 300,
    big_batch: Annotated[int, typer.Option(help="Batch of the throughput figure.")] = 64,
    threads: Annotated[int, typer.Option(help="CPU threads (torch and onnxruntime).")] = 1,
    json_path: Annotated[Path | None, typer.Option("--json", help="Result file (default "
                                                   "benchmarks/results/quant-system1-DEVICE.json).")] = None,
) -> None:
    """System 1 latency: torch eager fp32 vs torchao int8/fp8, torch.compile and ONNX Runtime, in one run."""
    import torch

    from metabonk.bench.quant import VARIANTS, print_and_write, run_system1
    from metabonk.common.device import resolve_device
    from metabonk.policy.agent import Agent
    from metabonk.policy.config import PolicyConfig

    chosen = tuple(v.strip() for v in variants.split(",") if v.strip())
    if not chosen or set(chosen) - set(VARIANTS):
        raise MetabonkError(f"--variants must name some of {', '.join(VARIANTS)}; got '{variants}'")
    torch.set_num_threads(threads)
    dev = resolve_device(device)
    torch.manual_seed(0)
    agent = Agent.load(ckpt) if ckpt else Agent(PolicyConfig()).eval()
    res = run_system1(agent, dev, chosen, steps=steps, big_batch=big_batch, log=lambda s: None)
    res["checkpoint"] = str(ckpt) if ckpt else "fresh PolicyConfig() agent (weights do not change speed)"
    typer.echo(f"wrote {print_and_write(res, dev, json_path)}")


@bench_app.command("gguf")
def bench_gguf_cmd(
    levels: Annotated[str, typer.Option(help="Comma-separated llama.cpp levels made from the bundled GGUF.")] =
        "Q8_0,Q5_K_M,Q4_K_M,Q4_0,Q3_K_M,Q2_K",
    decisions: Annotated[int, typer.Option(help="Card decisions (as many intent decisions follow each).")] = 20,
    threads: Annotated[int, typer.Option(help="CPU threads of llama.cpp.")] = 2,
    lookup_tokens: Annotated[int, typer.Option(help="Prompt-lookup draft tokens for the extra row (0 = none).")]
    = 10,
    out_dir: Annotated[Path, typer.Option(help="Where the requantized GGUF files go (reused).")] = Path("runs/gguf"),
    json_path: Annotated[Path | None, typer.Option("--json", help="Result file (default "
                                                   "benchmarks/results/quant-system2-cpu.json).")] = None,
) -> None:
    """System 2: decision latency and agreement per llama.cpp quantization level, and prompt-lookup decoding."""
    from metabonk.bench.quant import print_and_write_system2, run_system2
    from metabonk.quant.gguf import ftype

    chosen = tuple(v.strip() for v in levels.split(",") if v.strip())
    for level in chosen:
        ftype(level)  # unknown levels fail before any work
    if decisions < 1 or threads < 1 or lookup_tokens < 0:
        raise MetabonkError("--decisions and --threads must be >= 1, --lookup-tokens >= 0")
    res = run_system2(chosen, decisions, threads, out_dir, lookup_tokens=lookup_tokens, log=lambda s: None)
    typer.echo(f"wrote {print_and_write_system2(res, json_path)}")


@bench_app.command("unified")
def bench_unified_cmd(
    seconds: Annotated[float, typer.Option(help="Length of each measured phase.")] = 15.0,
    hz: Annotated[float, typer.Option(help="System 1's paced tick rate.", min=1.0, max=10_000.0)] = 120.0,
    dream: Annotated[str, typer.Option(help="fused_fp8 | fused_bf16 | bf16_graph")] = "fused_fp8",
    dream_batch: Annotated[int, typer.Option(help="Dreams per sampler call.", min=1, max=65_536)] = 1024,
    llm: Annotated[bool, typer.Option(help="Also decode with a SmolLM2-135M-shaped model (transformers).")] = True,
    dream_sms: Annotated[int | None, typer.Option(help="Confine the dream to a green context of this many SMs "
                                                  "(default: every SM).", min=1, max=1024)] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Result file (default "
                                                   "benchmarks/results/unified-GPU.json).")] = None,
) -> None:
    """System 1 at batch 1 on a high-priority stream while the dream and an LLM share the GPU, in one process."""
    import torch

    from metabonk.bench.unified import UnifiedArgs, run_unified
    from metabonk.common.device import device_label
    from metabonk.common.results import write_result

    res = run_unified(UnifiedArgs(seconds=seconds, hz=hz, dream=dream, dream_batch=dream_batch, llm=llm,
                                  dream_sms=dream_sms))
    dev = torch.device("cuda")
    out = json_path or Path("benchmarks/results") / f"unified-{device_label(dev)}.json"
    typer.echo(f"wrote {write_result(out, res, dev)}")
