#!/usr/bin/env bash
# The unified one-GPU stack (issue 22) on a lent GPU machine: System 1 at 120 Hz on a high-priority stream while
# the fused FP8 dream (batch 1024) and a SmolLM2-135M-shaped LLM decode in the same process
# (`metabonk bench unified`, < 6 min on one H200, most of it the FP8 kernels' launch tuning).
# Needs .whl/ (benchmarks/gpu_wheels.sh) for ncps / mambapy. Usage: OUT=DIR bash benchmarks/run_gpu_unified.sh
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
gpu_setup  # $OUT, the GPU printed, $label
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.Stream.priority_range())"
python3 -c "import torch.cuda.green_contexts as g; print('green contexts', g.SUPPORTED if hasattr(g, 'SUPPORTED') else '?', [m for m in dir(g.GreenContext) if not m.startswith('_')])" || true
# DREAM_SMS=120 confines the dream to a green context of 120 SMs (of the H200's 132); unset: every SM
timeout ${T:-420} python3 -m metabonk.bench.unified "$OUT/unified-$label${DREAM_SMS:+-dream${DREAM_SMS}sm}.json" \
  "${SECONDS_PER_PHASE:-15}" "${DREAM_SMS:-all}"
