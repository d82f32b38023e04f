#!/usr/bin/env bash
# Fused-kernel world-model measurements on a lent GPU machine (torch and Triton there), as recorded in
# docs/world.md: `bench world` with the eager fp32 reference and the fused variants in one run, a per-layer profile
# of the FP8 forward, the torch.compile variant (the previous best) at batch 1024 (Arena fidelity through the public verbs:
# run_gpu_world_train.sh). Usage: OUT=DIR bash benchmarks/run_gpu_fused.sh
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
gpu_setup  # $OUT, the GPU printed, $label
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
# STEPS picks a subset (a lent machine's call lasts 10 minutes: the tuning compiles each kernel variant once per
# process, ~2 minutes for the FP8 network), e.g. STEPS="fp8 eager" then STEPS="profile compile".
for step in ${STEPS:-all fp8 eager profile compile}; do
  case $step in
    all) timeout 420 python3 -m metabonk.bench.world "$OUT/world-fused-$label.json" eager_fp32,fused_bf16,fused_fp8 1,1024,4096 ;;
    fp8) timeout 200 python3 -m metabonk.bench.world "$OUT/world-fused-fp8-$label.json" fused_fp8 1024,4096 ;;
    eager) timeout 120 python3 -m metabonk.bench.world "$OUT/world-eager-$label.json" eager_fp32 1024,4096 ;;
    profile) timeout 200 python3 benchmarks/fused_profile.py 1024 fp8 "$OUT/fused-profile-fp8-$label.json" | tail -n 13 ;;
    compile) timeout 180 python3 -m metabonk.bench.world "$OUT/world-compile-$label.json" bf16_cl_compile 1024 ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
