#!/usr/bin/env bash
# `metabonk demo --preset $PRESET --env $DEMO_ENV --device cuda` (default: full, arena) on a lent GPU machine (torch
# there, the rest of MetaBonk's pure-Python dependencies carried as wheels in .whl/), then the files worth keeping
# copied to $OUT. Re-running on the warm machine resumes the run (finished stages are skipped).
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-/tmp/demo-out}
PRESET=${PRESET:-full}
DEMO_ENV=${DEMO_ENV:-arena}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
# run_demo directly: the CLI module also loads the planner's service dependencies, which GPU images lack
timeout "${DEMO_TIMEOUT:-540}" python3 -c "from metabonk.demo.pipeline import run_demo; \
run_demo('$PRESET', device='cuda', env='$DEMO_ENV', root='/tmp/runs')" 2>&1 | grep -v "━" | tee "$OUT/demo-log.txt"
name=demo-$PRESET-$(echo "$DEMO_ENV" | tr ':' '-' | tr 'A-Z' 'a-z')
run=/tmp/runs/$name
cp "$run/report.md" "$run/report/curves.png" "$run/report/agent.gif" "$run/report/dream.gif" "$OUT/" 2>/dev/null
cp "$run/eval/done.json" "$OUT/eval-done.json" 2>/dev/null
cp "$run/eval.json" "$OUT/demo-eval.json" 2>/dev/null
tar czf "$OUT/stages.tgz" --exclude='*.safetensors' --exclude='*.pt' --exclude='video' --exclude='labelled' \
  -C /tmp/runs "$name" 2>/dev/null
ls -la "$OUT"
