"""Per-layer profile of the fused world-model denoiser on a GPU: for each layer shape of one forward (DIAMOND's
Atari size), the tuned launch's time, its share, and achieved TFLOP/s and GB/s; then the sum against the whole
forward, and the forward's RMS error against the eager fp32 network (random weights); then every GPU kernel of
one whole 3-step sampler call (torch.profiler), the fused kernels apart from the rest (the EDM and Euler arithmetic,
input packing, conditioning), so the glue around the fused network is measured too.
Usage: python3 benchmarks/fused_profile.py [batch] [bf16|fp8] [json]"""

from __future__ import annotations

import json
import sys

import torch

from metabonk.world.config import diamond_atari_config
from metabonk.world.fused_unet import FusedInner, fuse_denoiser
from metabonk.world.world_model import WorldModel


def main(batch: int = 1024, precision: str = "bf16", json_path: str | None = None) -> dict[str, object]:
    dev = torch.device("cuda")
    cfg = diamond_atari_config()
    torch.manual_seed(0)
    model = WorldModel(cfg).to(dev).eval()
    with torch.no_grad():  # away from the zero-initialised output layers, so the check below sees every layer
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    eager = model.denoiser.inner  # fp32 eager reference (its modules stay shared with the fused network)
    fused = fuse_denoiser(model, precision)
    k, s = cfg.num_context, cfg.frame_size
    acts = torch.randint(0, cfg.num_actions, (batch, k), device=dev)
    ctx = torch.rand(batch, k, 3, s, s, device=dev) * 2 - 1
    args = (torch.randn(batch, 3, s, s, device=dev), torch.randn(batch, device=dev), ctx, acts,
            torch.zeros(batch, device=dev))
    with torch.no_grad():
        with fused.tuning():
            fused(*args)
        fused.calls.clear()
        out = fused(*args)  # one forward through the tuned shapes: launches per shape
        calls = dict(fused.calls)
        ref = eager(*args)
        rms = ref.pow(2).mean().sqrt()
        rel_err = float((out - ref).pow(2).mean().sqrt() / rms)
        out16 = FusedInner(eager, "bf16")(*args)  # the bf16 kernels' error too (untuned launches: same result)
        rel_err_bf16 = float((out16 - ref).pow(2).mean().sqrt() / rms)
        for _ in range(3):
            fused(*args)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            fused(*args)
        end.record()
        torch.cuda.synchronize()
        whole_ms = start.elapsed_time(end) / 10
    rows = []
    for key, ms in fused.tuned_ms.items():
        n = calls.get(key, 0)
        rows.append({"key": [str(x) for x in key], "ms": ms, "count": n, "config": fused.best.get(key),
                     "candidates": [{**c, "ms": t} for c, t in fused.tuned_all.get(key, [])]})
    kernel_ms = sum(r["ms"] * r["count"] for r in rows)
    print(f"{'layer':90s} {'ms':>8s} {'n':>3s}")
    for r in sorted(rows, key=lambda r: -r["ms"] * r["count"]):
        print(f"{' '.join(r['key'])[:90]:90s} {r['ms']:8.3f} {r['count']!s:>3s} {r['config']}")
    sampler = sampler_kernels(model, ctx, acts)
    res = {"gpu": torch.cuda.get_device_name(), "batch": batch, "precision": precision, "forward_ms": whole_ms,
           "kernel_ms_sum": kernel_ms, "rel_err_vs_eager_fp32": rel_err,
           "rel_err_bf16_vs_eager_fp32": rel_err_bf16, "rows": rows, "sampler": sampler}
    print(f"one forward {whole_ms:.2f} ms (eager launches); kernels (tuned times) sum {kernel_ms:.2f} ms; "
          f"RMS error vs eager fp32 (random weights) {100 * rel_err:.2f} % ({precision}), "
          f"{100 * rel_err_bf16:.2f} % (bf16)")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(res, f, indent=1)
    return res


FUSED_KERNELS = ("conv_kernel", "conv_tma_kernel", "norm_act_kernel", "pack_input_kernel")


def sampler_kernels(model: WorldModel, ctx: torch.Tensor, acts: torch.Tensor, steps: int = 3) -> dict[str, object]:
    """GPU time of every kernel in one sampler call (eager launches), grouped by kernel name."""
    from torch.profiler import ProfilerActivity, profile

    noise = torch.randn_like(ctx[:, 0])
    with torch.no_grad():
        for _ in range(2):
            model.sampler.sample(ctx, acts, steps, noise_BCHW=noise)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            model.sampler.sample(ctx, acts, steps, noise_BCHW=noise)
            torch.cuda.synchronize()
    kernels = []
    for e in prof.key_averages():
        us = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0.0)
        if us > 0 and e.key != "cudaDeviceSynchronize":
            kernels.append({"name": e.key[:120], "ms": us / 1000, "count": e.count})
    kernels.sort(key=lambda k: -k["ms"])
    fused_ms = sum(k["ms"] for k in kernels if k["name"].startswith(FUSED_KERNELS))
    other = [k for k in kernels if not k["name"].startswith(FUSED_KERNELS)]
    other_ms = sum(k["ms"] for k in other)
    print(f"sampler call ({steps} steps): fused kernels {fused_ms:.2f} ms, other kernels {other_ms:.2f} ms "
          f"in {sum(k['count'] for k in other)} launches; largest other:")
    for k in other[:10]:
        print(f"  {k['ms']:8.3f} ms {k['count']:4d}x {k['name'][:100]}")
    return {"steps": steps, "fused_ms": fused_ms, "other_ms": other_ms, "kernels": kernels}


if __name__ == "__main__":
    a = sys.argv[1:]
    main(int(a[0]) if a else 1024, a[1] if len(a) > 1 else "bf16", a[2] if len(a) > 2 else None)
