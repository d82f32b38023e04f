#!/usr/bin/env bash
# One device call: the online loop on Arena from scratch (full preset, 100k real steps) beside PPO from scratch at
# the same steps, evaluated on the same 32 seeds; two more Scroll seeds; the world-learning test's spread at 2400
# steps on the CPU cores.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
[ -n "${WL:-}" ] && for s in 2 3 4 5; do python3 benchmarks/wl_probe.py $s 1 2400 >> "$OUT/wl.jsonl" 2>/dev/null & done
[ -n "${WL:-}" ] && for s in 0 1; do python3 benchmarks/wl_probe.py $s 2 2400 >> "$OUT/wl.jsonl" 2>/dev/null & done
for s in 1 2; do ( timeout 400 python3 -m metabonk train agent --env scroll --preset tiny --env-steps 6000 \
    --device cuda --compare-ppo --seed $s --out /tmp/runs/scroll-$s --eval-episodes 32 >> "$OUT/scroll.log" 2>&1;
    cp /tmp/runs/scroll-$s/eval.json "$OUT/scroll-$s-eval.json" ) & done
( timeout 520 python3 -m metabonk train policy --algo ppo --env arena --steps 100000 --num-envs 16 --device cuda \
    --out /tmp/runs/arena-ppo > "$OUT/arena-ppo.log" 2>&1;
  timeout 60 python3 -m metabonk eval policy /tmp/runs/arena-ppo --env arena --episodes 32 --seed 10000 \
    --device cuda --json "$OUT/arena-ppo-eval.json" >> "$OUT/arena-ppo.log" 2>&1 ) &
timeout 540 python3 -m metabonk train agent --env arena --preset full --env-steps 100000 --device cuda \
    --out /tmp/runs/arena > "$OUT/arena.log" 2>&1
cp /tmp/runs/arena/eval.json "$OUT/arena-eval.json" 2>/dev/null || cp /tmp/runs/arena/loop.json "$OUT/arena-loop.json"
wait
