#!/usr/bin/env bash
# One device call: the online loop on Arena from scratch at ARENA_STEPS real steps (default 20k; the 28k-of-100k run
# used ARENA_STEPS=100000 with a 540 s limit) beside PPO from scratch at the same steps, both evaluated on the same 32
# seeds; the loop on Scroll (tiny) for SCROLL_SEEDS with PPO at the same steps. Results: benchmarks/results/agent-h200/.
set -uo pipefail
ARENA_STEPS=${ARENA_STEPS:-20000}; SCROLL_SEEDS=${SCROLL_SEEDS:-1 2}; LIMIT=${LIMIT:-390}
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c "import rliable.library" || exit 1
for s in $SCROLL_SEEDS; do ( timeout 330 python3 -m metabonk train agent --env scroll --preset tiny --env-steps 6000 \
    --device cuda --compare-ppo --seed $s --out /tmp/r/scroll-$s --eval-episodes 32 >> "$OUT/scroll.log" 2>&1;
    cp /tmp/r/scroll-$s/eval.json "$OUT/scroll-$s-eval.json" ) & done
( timeout 300 python3 -m metabonk train policy --algo ppo --env arena --steps $ARENA_STEPS --num-envs 16 --device cuda \
    --out /tmp/r/arena-ppo > "$OUT/arena-ppo.log" 2>&1;
  timeout 90 python3 -m metabonk eval policy /tmp/r/arena-ppo --env arena --episodes 32 --seed 10000 \
    --device cuda --json "$OUT/arena-ppo-eval.json" >> "$OUT/arena-ppo.log" 2>&1 ) &
timeout $LIMIT python3 -m metabonk train agent --env arena --preset full --env-steps $ARENA_STEPS --device cuda \
    --out /tmp/r/arena > "$OUT/arena.log" 2>&1
cp /tmp/r/arena/eval.json "$OUT/arena-eval.json" 2>/dev/null || cp /tmp/r/arena/loop.json "$OUT/arena-loop.json"
wait
