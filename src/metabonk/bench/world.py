"""`metabonk bench world`: dream frames/s of the world model's sampler at batch 1 and at large batch.

Variants of the same model (DIAMOND's Atari size by default) in one run: eager fp32; bf16 weights +
channels_last; that plus torch.compile (default mode, max-autotune, or coordinate-descent tuning); and the whole
k-step sampler captured as a CUDA graph. Variant names are tokens joined by "_": compile | cdt | autotune | graph,
and gn (F.group_norm instead of the channelwise group norm that channels_last CUDA input gets by default); and
fused_bf16 / fused_fp8: the denoiser network replaced by `metabonk.world.fused_unet.FusedInner` (Triton
implicit-GEMM convolutions with the group norms folded in; FP8 e4m3 tensor cores for the convolutions of normalised
activations), launch configurations tuned per layer shape, the sampler captured as a CUDA graph. Timed with
CUDA events after warm-up, median of repeats, random non-zero inputs. Also counts FLOPs per frame and
reports measured / ceiling. Imports only torch so it runs on bare GPU machines.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from metabonk.common.cuda_graphs import GraphReplay
from metabonk.world.blocks import AdaGroupNorm, GroupNorm
from metabonk.world.config import WorldConfig, diamond_atari_config
from metabonk.world.world_model import WorldModel

_BF16_BASE = ("bf16_cl", "bf16_cl_graph", "bf16_cl_compile", "bf16_cl_compile_cdt", "bf16_cl_autotune")
VARIANTS = ("eager_fp32", *_BF16_BASE, *(f"{v}_gn" for v in _BF16_BASE), "fused_bf16", "fused_fp8")
"""Every variant run_bench knows: the name's "_"-joined tokens say what it does (see the module docstring)."""

BF16_PEAK_TFLOPS = {"h100": 989.0, "h200": 989.0}
"""Dense bf16 tensor-core peak (datasheet); the project measured 782 TFLOP/s on an H100 matmul."""
FP8_PEAK_TFLOPS = {"h100": 1979.0, "h200": 1979.0}
"""Dense FP8 tensor-core peak (datasheet)."""
HBM_TB_S = {"h100": 3.35, "h200": 4.8}
"""HBM bandwidth (datasheet), for the bytes-per-frame ceiling of the fused variants."""


def flops_per_frame(model: WorldModel, num_steps: int) -> float:
    """FLOPs of one dreamed frame: one denoiser call per Euler step (counted by torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = model.config
    ctx, acts = _inputs(cfg, 1, next(model.parameters()).device, torch.float32)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.denoiser.denoise(torch.randn_like(ctx[:, 0]), torch.ones(1, device=ctx.device), ctx, acts)
    return float(counter.get_total_flops()) * num_steps


def random_world(cfg: WorldConfig, device: torch.device) -> WorldModel:
    """A world model with seeded, non-trivial random weights (zero-initialised output layers would make every
    variant agree): speed does not depend on the weights, and variants compared on it differ only by arithmetic."""
    torch.manual_seed(0)
    model = WorldModel(cfg).to(device).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _inputs(
    cfg: WorldConfig, batch: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device="cpu").manual_seed(0)
    s, k = cfg.frame_size, cfg.num_context
    ctx = (torch.rand(batch, k, cfg.img_channels, s, s, generator=g) * 2 - 1).to(device, dtype)
    acts = torch.randint(0, cfg.num_actions, (batch, k), generator=g).to(device)
    return ctx, acts


def _time(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _noise(ctx: torch.Tensor) -> torch.Tensor:
    """The sampler's starting noise for a batch: the same draw (seeded, made in fp32 on the CPU) for every
    variant of that batch size, so their outputs differ only by their arithmetic and can be compared."""
    g = torch.Generator(device="cpu").manual_seed(1)
    return torch.randn(ctx[:, 0].shape, generator=g).to(ctx.device, ctx.dtype)


def _sampler_fn(
    model: WorldModel, ctx: torch.Tensor, acts: torch.Tensor, num_steps: int
) -> Callable[[], torch.Tensor]:
    noise = _noise(ctx)
    return lambda: model.sampler.sample(ctx, acts, num_steps, noise_BCHW=noise)


def _graphed(
    fn: Callable[[], torch.Tensor], capture_error_mode: str = "global", stream: torch.cuda.Stream | None = None
) -> Callable[[], torch.Tensor]:
    """Capture fn (fixed inputs) as one CUDA graph; replay is the whole sampler in one launch, on the caller's
    current stream. capture_error_mode="thread_local" lets other threads launch kernels during the capture;
    `stream`: warm up and capture on it (e.g. a green context's stream) instead of fresh side streams."""
    s = stream or torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream, capture_error_mode=capture_error_mode):  # type: ignore[arg-type]
        out = fn()
    return GraphReplay(graph, out, keep=(fn,))  # fn holds the inputs the graph reads


def _inductor_options(cdt: bool) -> contextlib.AbstractContextManager[Any]:
    """Inductor settings while a variant compiles (compilation happens at its first call)."""
    if not torch.cuda.is_available():
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch(coordinate_descent_tuning=cdt)


def run_bench(
    device: torch.device,
    batches: tuple[int, ...] = (1, 1024),
    num_steps: int = 3,
    variants: tuple[str, ...] = ("eager_fp32", "bf16_cl", "bf16_cl_graph", "bf16_cl_compile"),
    repeats: int = 20,
    config: WorldConfig | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Frames/s per (variant, batch), FLOPs per frame, ceilings, and each variant's agreement with eager fp32
    (PSNR of the dreamed frames, every variant starting from the same inputs and the same noise)."""
    cfg = config or diamond_atari_config()
    base = random_world(cfg, device)
    flops = flops_per_frame(base, num_steps)
    params = sum(p.numel() for p in base.denoiser.parameters())
    rows: list[dict[str, Any]] = []
    outputs: dict[tuple[str, int], torch.Tensor] = {}
    traffic: dict[tuple[str, int], float] = {}
    models: dict[str, WorldModel] = {}
    tokens_of = {v: set(v.split("_")) for v in variants}
    for v in variants:
        if v != "eager_fp32" and device.type != "cuda":
            continue
        if v == "eager_fp32":
            models[v] = base
            continue
        tokens = tokens_of[v]
        m = WorldModel(cfg).to(device)
        m.load_state_dict(base.state_dict())
        if "fused" in tokens:  # fp32 modules; the fused kernels keep their own bf16 / FP8 weight copies
            from metabonk.world.fused_unet import fuse_denoiser

            fuse_denoiser(m.eval(), "fp8" if "fp8" in tokens else "bf16")
            models[v] = m
            continue
        models[v] = m.to(dtype=torch.bfloat16, memory_format=torch.channels_last).eval()
        if "gn" in tokens:  # F.group_norm instead of the NHWC-friendly channelwise_group_norm
            for mod in m.modules():
                if isinstance(mod, AdaGroupNorm | GroupNorm):
                    mod.channelwise = False
        if tokens & {"compile", "cdt"}:  # cdt: + inductor's coordinate-descent tuning of its kernels' launch configs
            m.denoiser.inner = torch.compile(m.denoiser.inner, dynamic=False)  # type: ignore[assignment]
        elif "autotune" in tokens:  # Triton/cuDNN kernel search per shape; graphs captured below
            m.denoiser.inner = torch.compile(  # type: ignore[assignment]
                m.denoiser.inner, dynamic=False, mode="max-autotune-no-cudagraphs"
            )
    for v, m in models.items():
        for b in batches:
            fused = "fused" in tokens_of[v]
            dtype = torch.float32 if v == "eager_fp32" or fused else torch.bfloat16
            ctx, acts = _inputs(cfg, b, device, dtype)
            if dtype == torch.bfloat16:
                ctx = ctx.contiguous()
            t_build = time.perf_counter()
            tokens = tokens_of[v]
            try:
                with torch.inference_mode(), _inductor_options(cdt="cdt" in tokens):
                    fn = _sampler_fn(m, ctx, acts, num_steps)
                    if fused:  # time each layer shape's launch configurations once, before graph capture
                        inner = m.denoiser.inner
                        with inner.tuning():  # type: ignore[operator]
                            fn()
                        inner.traffic_bytes = 0  # type: ignore[union-attr]
                        fn()
                        traffic[(v, b)] = inner.traffic_bytes / b  # type: ignore[union-attr,operator]
                    if tokens & {"graph", "compile", "autotune", "cdt", "fused"}:
                        fn = _graphed(fn) if device.type == "cuda" else fn
                    sec = _time(fn, device, repeats if b > 64 else repeats * 5, warmup=3)
                    outputs[(v, b)] = fn().float().clone()
            except Exception as e:  # a compiler/graph failure is reported as a row, the other variants go on
                rows.append({"variant": v, "batch": b, "error": f"{type(e).__name__}: {e}"[:300]})
                log(f"{v} batch {b}: failed: {type(e).__name__}: {e}"[:300])
                continue
            fps = b / sec
            row = {
                "variant": v,
                "batch": b,
                "ms_per_batch": sec * 1000,
                "frames_per_s": fps,
                "tflops": fps * flops / 1e12,
                "setup_s": time.perf_counter() - t_build,
            }
            if (v, b) in traffic:
                row["hbm_bytes_per_frame"] = traffic[(v, b)]
                row["hbm_tb_s"] = traffic[(v, b)] * fps / 1e12
            rows.append(row)
            log(
                f"{v:16s} batch {b:5d}: {fps:10.1f} frames/s {sec * 1000:8.2f} ms {row['tflops']:.1f} TFLOP/s"
            )
    agree = {}
    for (v, b), out in outputs.items():
        if v != "eager_fp32" and ("eager_fp32", b) in outputs:
            ref = outputs[("eager_fp32", b)]
            mse = (out - ref).pow(2).mean().clamp_min(1e-12)
            agree[f"{v}_b{b}_psnr_vs_fp32_db"] = float(10 * torch.log10(4 / mse))
    label = "cpu"
    if device.type == "cuda":
        from metabonk.common.device import device_label

        label = device_label(device)
    peak = BF16_PEAK_TFLOPS.get(label)
    ceiling = peak * 1e12 / flops if peak else None
    hbm = HBM_TB_S.get(label)
    mem_ceiling = {f"{v}_b{b}": hbm * 1e12 / t for (v, b), t in traffic.items()} if hbm else {}
    best = max((r["frames_per_s"] for r in rows), default=0.0)
    return {
        "model": "DIAMOND Atari size" if config is None else "custom",
        "denoiser_params": params,
        "frame_size": cfg.frame_size,
        "num_context": cfg.num_context,
        "sampler_steps": num_steps,
        "flops_per_frame": flops,
        "bytes_per_frame_io_bf16": (cfg.num_context + 1) * cfg.img_channels * cfg.frame_size**2 * 2,
        "bf16_peak_tflops": peak,
        "fp8_peak_tflops": FP8_PEAK_TFLOPS.get(label),
        "hbm_tb_s": hbm,
        "compute_ceiling_frames_per_s": ceiling,
        "compute_ceiling_fp8_frames_per_s": FP8_PEAK_TFLOPS[label] * 1e12 / flops if label in FP8_PEAK_TFLOPS else None,
        "fused_hbm_bytes_per_frame": {f"{v}_b{b}": t for (v, b), t in traffic.items()},
        "memory_ceiling_frames_per_s": mem_ceiling,
        "best_frames_per_s": best,
        "best_over_ceiling": best / ceiling if ceiling else None,
        "rows": rows,
        "agreement": agree,
    }


if __name__ == "__main__":
    import json
    import sys

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kw: dict[str, Any] = {}
    if len(sys.argv) > 2:  # e.g. eager_fp32,bf16_cl_compile,bf16_cl_autotune
        kw["variants"] = tuple(sys.argv[2].split(","))
    if len(sys.argv) > 3:  # e.g. 1,1024,4096
        kw["batches"] = tuple(int(b) for b in sys.argv[3].split(","))
    res = run_bench(dev, **kw)
    if len(sys.argv) > 1:
        from metabonk.common.results import write_result

        write_result(sys.argv[1], res, dev)
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}, indent=1))
