#!/usr/bin/env bash
# One device call: `metabonk train agent` from scratch on ENV (default arena) with --frame-skip SKIP (default 4) and
# --compare-ppo, one run per seed in SEEDS side by side on the one GPU, STEPS real steps each (default 28000), every
# run killed at LIMIT seconds. Each finished run's eval.json / report.md / curve.png / loop.json come back in
# $OUT/<env>-s<seed>.tar (its eval.json is the public verb's output: benchmarks/results/agent-h200/ keeps them).
set -uo pipefail
ENV=${ENV:-arena}; STEPS=${STEPS:-28000}; SEEDS=${SEEDS:-0 1}; SKIP=${SKIP:-4}; LIMIT=${LIMIT:-540}
PRESET=${PRESET:-full}; EXTRA=${EXTRA:-}
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c "import rliable.library" || exit 1
for s in $SEEDS; do
  ( run=/tmp/r/$ENV-s$s
    timeout $LIMIT python3 -m metabonk train agent --env "$ENV" --preset "$PRESET" --frame-skip "$SKIP" \
      --env-steps "$STEPS" --device cuda --compare-ppo --seed "$s" --out "$run" $EXTRA > "$OUT/$ENV-s$s.log" 2>&1
    echo "exit $?" >> "$OUT/$ENV-s$s.log"
    (cd "$run" && tar cf "$OUT/$ENV-s$s.tar" $(ls eval.json report.md curve.png loop.json 2>/dev/null)) ) &
done
wait
