#!/usr/bin/env bash
# Quantization measurements on a lent GPU machine (issue 22), one run, < 8 min on one H200:
#   1. System 1: the policy step at batch 1 (p50/p99) and batch 4096 (steps/s) as torch eager fp32 (reference),
#      torchao int8 (dynamic and weight-only), torchao fp8 (fp8 activations, sm89+), torch.compile and the ONNX
#      export under onnxruntime (its CUDA provider when onnxruntime-gpu is there, else the row says why);
#   2. World model: dream frames/s at batch 1024 and the 16-step dream PSNR against the eager fp32 dream from the
#      same noise, for eager fp32, eager bf16, torchao int8, torchao fp8 and the fused FP8 Triton kernels.
# torchao is not in the GPU image: carry it as a wheel in .whl/ (gpu_env.sh installs .whl/*.whl), with the
# project's other pure-Python wheels; without it the torchao rows record the ImportError and the rest still runs.
# POLICY_CKPT / WORLD_CKPT pick trained checkpoints (default: fresh models: speed figures hold, PSNR deltas are
# those of random weights). DEVICE=cpu runs the same steps at toy sizes on a CPU (the dry path).
# Usage: OUT=DIR bash benchmarks/run_gpu_quant.sh
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-benchmarks/results}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  label=$(python3 -c "import torch; from metabonk.common.device import device_label; print(device_label(torch.device('cuda')))")
else
  label=cpu-dry
fi
PY=${PY:-python3}
# per-step limits keep the GPU run under 8 minutes; the CPU dry path runs unlimited (0 = no limit)
if [ "$DEVICE" = cuda ]; then T1=${T1:-240} T2=${T2:-230}; else T1=${T1:-0} T2=${T2:-0}; fi
$PY -c "import torchao; print('torchao', torchao.__version__)" 2>/dev/null || echo "note: torchao is not installed here; the torchao rows will say so"
$PY -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" 2>/dev/null \
  || echo "note: onnxruntime is not installed here; the ONNX rows will say so"
$PY -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null \
  || echo "note: no onnxruntime CUDA provider (onnxruntime-gpu missing): the CUDA ONNX rows record why"
for step in ${STEPS:-system1 world}; do
  case $step in
    system1) timeout $T1 $PY -m metabonk.bench.quant system1 "$OUT/quant-system1-$label.json" "$DEVICE" ;;
    world) timeout $T2 $PY -m metabonk.bench.quant world "$OUT/quant-world-$label.json" "$DEVICE" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
