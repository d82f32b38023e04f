"""Per-layer profile of the fused world-model denoiser on a GPU: for each layer shape of one forward (DIAMOND's
Atari size), the tuned launch's time, its share, and achieved TFLOP/s and GB/s; then the sum against the whole
forward, and the forward's RMS error against the eager fp32 network (random weights).
Usage: python3 benchmarks/fused_profile.py [batch] [bf16|fp8] [json]"""

from __future__ import annotations

import json
import sys

import torch

from metabonk.world.config import diamond_atari_config
from metabonk.world.fused_unet import fuse_denoiser
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
        rel_err = float((out - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt())
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
    res = {"gpu": torch.cuda.get_device_name(), "batch": batch, "precision": precision, "forward_ms": whole_ms,
           "kernel_ms_sum": kernel_ms, "rel_err_vs_eager_fp32": rel_err, "rows": rows}
    print(f"one forward {whole_ms:.2f} ms (eager launches); kernels (tuned times) sum {kernel_ms:.2f} ms; "
          f"RMS error vs eager fp32 (random weights) {100 * rel_err:.2f} %")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    a = sys.argv[1:]
    main(int(a[0]) if a else 1024, a[1] if len(a) > 1 else "bf16", a[2] if len(a) > 2 else None)
