#!/usr/bin/env bash
# DDP scaling of world-model training (issue 24), on a multi-GPU machine (nvidia-h200-x2 or -x4), in under 8 min:
# record one Arena store on GPU 0 (`metabonk record arena`), then train the DIAMOND-size world model in bf16 with
# `torchrun --nproc-per-node N -m metabonk train world` for N = 1, 2 (and 4 when that many GPUs exist) at the same
# per-GPU batch (global batch = N x BATCH_PER_GPU). Samples/s per N come from rank 0's in-loop `steps_per_s`
# TensorBoard scalar (the first log interval, which holds start-up and cuDNN autotuning, is dropped) times the
# global batch; scaling efficiency = samples/s(N) / (N x samples/s(1)). Targets (issue 24): >= 90 % on 2 GPUs,
# >= 85 % on 4. Writes $OUT/ddp-world-<gpu>.json (GPU names and count, the commands, per-N figures).
# Usage: OUT=DIR bash benchmarks/run_gpu_ddp.sh   (BATCH_PER_GPU, STEPS, EPISODES, NGPUS override the defaults;
# DEVICE=cpu NGPUS=2 STEPS=60 BATCH_PER_GPU=4 SIZE=tiny is a CPU smoke test with gloo ranks).
set -euo pipefail
source "$(dirname "$0")/gpu_env.sh"
export NCCL_NVLS_ENABLE=0  # NVLink multicast off, as the device notes ask
OUT=${OUT:-benchmarks/results}
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-diamond}
BPG=${BATCH_PER_GPU:-64}
STEPS=${STEPS:-400}
if [ "$DEVICE" = cpu ]; then avail=${NGPUS:-2}; else avail=$(python3 -c "import torch; print(torch.cuda.device_count())"); fi
NGPUS=${NGPUS:-$avail}
mkdir -p "$OUT"
work=$(mktemp -d)
timeout 100 python3 -m metabonk record arena --out "$work/store" --policy random --episodes "${EPISODES:-128}" \
  --num-envs "${EPISODES:-128}" --max-steps 450 --size 64 --device "$DEVICE" --seed 0
counts=""
for n in 1 2 4; do
  [ "$n" -le "$NGPUS" ] || continue
  cmd="torchrun --nproc-per-node $n -m metabonk train world --data STORE --out CKPT --steps $STEPS --batch $((n * BPG)) --lr 3e-4 --size $SIZE --device $DEVICE --no-resume $([ "$DEVICE" = cpu ] || echo --bf16)"
  echo "== $cmd"
  t0=$(date +%s)
  timeout 150 python3 -m torch.distributed.run --nproc-per-node "$n" --master-addr 127.0.0.1 --master-port $((29500 + n)) \
    -m metabonk train world --data "$work/store" --out "$work/w$n" --steps "$STEPS" --batch $((n * BPG)) --lr 3e-4 \
    --size "$SIZE" --device "$DEVICE" --no-resume $([ "$DEVICE" = cpu ] || echo --bf16) \
    || echo "N=$n stopped early (timeout keeps the figures logged so far)"
  echo "N=$n wall $(( $(date +%s) - t0 )) s"
  counts="$counts $n"
done
python3 - "$work" "$OUT" "$BPG" "$DEVICE" "$STEPS" "$SIZE" $counts <<'EOF'
"""Reads rank 0's steps_per_s from each run's TensorBoard folder and writes the scaling JSON."""
import sys
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from metabonk.common.device import device_label, resolve_device
from metabonk.common.results import write_result

work, out, bpg, device, steps, size = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
rows = []
for n in map(int, sys.argv[7:]):
    acc = EventAccumulator(str(work / f"w{n}.tb"))
    acc.Reload()
    sps = [e.value for e in acc.Scalars("steps_per_s")][1:] if "steps_per_s" in acc.Tags()["scalars"] else []
    if not sps:
        rows.append({"gpus": n, "error": "no steps_per_s logged after the first interval"})
        continue
    sps.sort()
    med = sps[len(sps) // 2]
    rows.append({"gpus": n, "global_batch": n * bpg, "per_gpu_batch": bpg, "steps_per_s": med,
                 "samples_per_s": med * n * bpg, "intervals": len(sps)})
base = next((r["samples_per_s"] for r in rows if r["gpus"] == 1 and "samples_per_s" in r), None)
for r in rows:
    if base and "samples_per_s" in r:
        r["scaling_efficiency"] = r["samples_per_s"] / (r["gpus"] * base)
targets = {2: 0.90, 4: 0.85}
for r in rows:
    if r["gpus"] in targets and "scaling_efficiency" in r:
        r["target"], r["target_met"] = targets[r["gpus"]], r["scaling_efficiency"] >= targets[r["gpus"]]
dev = resolve_device(device)
names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if dev.type == "cuda" else []
figures = {"command": "OUT=DIR bash benchmarks/run_gpu_ddp.sh (each run: torchrun --nproc-per-node N -m metabonk "
           f"train world --steps {steps} --batch N*{bpg} --size {size} --lr 3e-4 --bf16)",
           "what": "world-model training samples/s at a fixed per-GPU batch, DDP over N GPUs (median in-loop "
           "steps/s of rank 0 over log intervals after the first, times the global batch)",
           "gpu_names": names, "gpu_count": len(names), "rows": rows}
path = write_result(Path(out) / f"ddp-world-{device_label(dev)}.json", figures, dev)
print(f"{'GPUs':>4} {'batch':>6} {'samples/s':>10} {'efficiency':>10}")
for r in rows:
    print(f"{r['gpus']:>4} {r.get('global_batch', '-'):>6} {r.get('samples_per_s', float('nan')):>10.1f} "
          f"{r.get('scaling_efficiency', float('nan')):>10.3f}")
print(f"wrote {path}")
EOF
rm -rf "$work"
