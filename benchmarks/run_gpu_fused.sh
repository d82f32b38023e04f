#!/usr/bin/env bash
# Fused-kernel world-model measurements on a lent GPU machine (torch and Triton there), as recorded in
# docs/world.md: `bench world` with the eager fp32 reference and the fused variants in one run, a per-layer profile
# of the FP8 forward, the torch.compile variant (the previous best) at batch 1024, and the Arena fidelity of the
# fused kernels beside eager fp32 (a short GPU training run). Usage: OUT=DIR bash benchmarks/run_gpu_fused.sh
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
label=$(python3 -c "import torch; from metabonk.common.device import device_label; print(device_label(torch.device('cuda')))")
timeout 300 python3 -m metabonk.bench.world "$OUT/world-fused-$label.json" eager_fp32,fused_bf16,fused_fp8 1,1024,4096
timeout 60 python3 benchmarks/fused_profile.py 1024 fp8 "$OUT/fused-profile-fp8-$label.json" | tail -n 1
timeout 180 python3 -m metabonk.bench.world "$OUT/world-compile-$label.json" bf16_cl_compile 1024
[ "${FIDELITY:-1}" = 1 ] && timeout 300 python3 -m metabonk.world.arena_gpu "$OUT/arena" "${TRAIN_SECONDS:-140}"
