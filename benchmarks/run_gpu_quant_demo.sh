#!/usr/bin/env bash
# One device call: `bench quant` System 1 rows on the GPU (pinned to CPU cores 0-3) while the default demo preset
# (`make demo`'s job, on the CPU) runs pinned to the other cores; the demo resumes in a later call on the same warm
# machine (its run folder stays under /tmp/runs). Usage: OUT=DIR DEMO_S=seconds bash benchmarks/run_gpu_quant_demo.sh
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
pin() { if command -v taskset >/dev/null; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
n=$(nproc)
( pin 4-$((n - 1)) timeout "${DEMO_S:-540}" python3 -c "from metabonk.demo.pipeline import run_demo; \
run_demo('default', device='cpu', root='/tmp/runs')" 2>&1 | grep -v "━" > "$OUT/demo-log.txt" ) &
if [ "${QUANT:-1}" = 1 ]; then
  label=$(python3 -c "import torch; from metabonk.common.device import device_label; print(device_label(torch.device('cuda')))")
  pin 0-3 timeout 240 python3 -m metabonk.bench.quant system1 "$OUT/quant-system1-$label.json" cuda
fi
wait
run=/tmp/runs/demo-default-arena
cp "$run/report.md" "$OUT/" 2>/dev/null; cp "$run/eval/done.json" "$OUT/demo-eval-done.json" 2>/dev/null
cp "$run/dream/done.json" "$OUT/demo-dream-done.json" 2>/dev/null
ls "$run" 2>/dev/null; tail -5 "$OUT/demo-log.txt"
