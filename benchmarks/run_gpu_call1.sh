#!/usr/bin/env bash
# One device call: the world-learning test's spread over seeds on the machine's CPU cores, and the online loop
# on Scroll (tiny) and Arena on the GPU.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c "import metabonk.train.online, metabonk.envs.scroll; print('imports ok')" || exit 1
for s in 0 1 2 3 4 5 6 7; do python3 benchmarks/wl_probe.py $s 1 1200 >> "$OUT/wl.jsonl" 2>>"$OUT/wl.err" & done
for s in 0 1; do python3 benchmarks/wl_probe.py $s 2 1200 >> "$OUT/wl.jsonl" 2>>"$OUT/wl.err" & done
for s in 0 1; do python3 benchmarks/wl_probe.py $s 1 2400 >> "$OUT/wl.jsonl" 2>>"$OUT/wl.err" & done
( timeout 500 python3 -m metabonk train agent --env scroll --preset tiny --env-steps 6000 --device cuda --compare-ppo \
    --out /tmp/runs/scroll --eval-episodes 32 > "$OUT/scroll.log" 2>&1; cp /tmp/runs/scroll/eval.json "$OUT/scroll-eval.json" ) &
timeout 300 python3 -m metabonk bench loop --env arena --preset full --epochs 1 --device cuda \
    --json "$OUT/loop-arena-full-h200.json" > "$OUT/bench-loop.log" 2>&1
wait
