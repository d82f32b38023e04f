#!/usr/bin/env bash
# Fused-kernel world-model measurements on a lent GPU machine (torch and Triton there): a per-layer profile of the
# fused denoiser (bf16 and FP8), then `bench world` with the eager fp32 reference and the fused variants in one run.
# Usage: OUT=DIR bash benchmarks/run_gpu_fused.sh [batches] [variants]
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
label=$(python3 -c "import torch; from metabonk.common.device import device_label; print(device_label(torch.device('cuda')))")
timeout 200 python3 benchmarks/fused_profile.py 1024 bf16 "$OUT/fused-profile-bf16-$label.json"
timeout 200 python3 benchmarks/fused_profile.py 1024 fp8 "$OUT/fused-profile-fp8-$label.json"
timeout 400 python3 -m metabonk.bench.world "$OUT/world-fused-$label.json" "${2:-eager_fp32,fused_bf16,fused_fp8}" "${1:-1,1024,4096}"
