#!/usr/bin/env bash
# One H200 session (< 8 min) for issue 18's GPU figures, through the public verbs:
#  1. `metabonk bench env --device cuda`: the make_env("arena") vector env a user steps (numpy out, autoreset)
#     beside the bare game kernel and its CUDA graph, batch 1 .. 131,072, 64x64 pixels (README's "rendered
#     frames/s" line is the kernel's figure at batch 131,072).
#  0. tests/test_arena_vector_env.py's check on CUDA (packed host copy, restart of finished games only).
#  2. `metabonk bench world --device cuda`: eager fp32 / bf16 / fused kernels; every variant now starts from the
#     same noise, so `agreement` (PSNR vs eager fp32) measures arithmetic, not two different samples.
# Needs .whl/ carried (gymnasium, typer, rich, ... as pure-Python wheels; see gpu_env.sh). Writes into $OUT.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-benchmarks/results}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
# the vector env on the GPU steps bit for bit as the game with a whole-batch reset (one host copy per step)
timeout 60 python3 -c "from tests.test_arena_vector_env import check_against_reference as c; c('cuda'); print('cuda vector env == reference')"
label=$(python3 -c "import torch; from metabonk.common.device import device_label; print(device_label(torch.device('cuda')))")
timeout 300 python3 -m metabonk bench env --device cuda --batches 1,1024,8192,131072 --seconds 1 --repeats 3 \
    --json "$OUT/env-$label.json"
timeout 150 python3 -m metabonk bench world --device cuda --variants eager_fp32,bf16_cl,fused_bf16,fused_fp8 \
    --json "$OUT/world-agreement-$label.json"
