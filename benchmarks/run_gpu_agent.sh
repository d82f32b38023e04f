#!/usr/bin/env bash
# One device call: `metabonk train agent` from scratch with --frame-skip SKIP (default 4) and --compare-ppo, one run
# per ENV:SEED pair in JOBS side by side on the one GPU (default "arena:0 arena:1 arena-hard:0"), STEPS real steps
# each (default 20000), every run killed at LIMIT seconds. Each finished run's eval.json / report.md / curve.png /
# loop.json come back in $OUT/<env>-s<seed>.tar (eval.json is the verb's output; benchmarks/results/agent-h200/
# keeps them).
set -uo pipefail
JOBS=${JOBS:-arena:0 arena:1 arena-hard:0}; STEPS=${STEPS:-20000}; SKIP=${SKIP:-4}; LIMIT=${LIMIT:-540}
PRESET=${PRESET:-full}; EXTRA=${EXTRA:-}
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c "import rliable.library" || exit 1
for job in $JOBS; do
  env=${job%:*}; s=${job#*:}
  ( run=/tmp/r/$env-s$s
    timeout $LIMIT python3 -m metabonk train agent --env "$env" --preset "$PRESET" --frame-skip "$SKIP" \
      --env-steps "$STEPS" --device cuda --compare-ppo --seed "$s" --out "$run" $EXTRA > "$OUT/$env-s$s.log" 2>&1
    echo "exit $?" >> "$OUT/$env-s$s.log"
    (cd "$run" && tar cf "$OUT/$env-s$s.tar" $(ls eval.json report.md curve.png loop.json 2>/dev/null)) ) &
done
wait
