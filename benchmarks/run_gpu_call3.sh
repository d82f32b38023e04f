#!/usr/bin/env bash
# One device call (what the session's device time left allows): the online loop on Arena from scratch at 20k real
# steps beside PPO from scratch at the same steps, both evaluated on the same 32 seeds; Scroll seeds 1 and 2.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c "import rliable.library" || exit 1
for s in 1 2; do ( timeout 330 python3 -m metabonk train agent --env scroll --preset tiny --env-steps 6000 \
    --device cuda --compare-ppo --seed $s --out /tmp/r/scroll-$s --eval-episodes 32 >> "$OUT/scroll.log" 2>&1;
    cp /tmp/r/scroll-$s/eval.json "$OUT/scroll-$s-eval.json" ) & done
( timeout 300 python3 -m metabonk train policy --algo ppo --env arena --steps 20000 --num-envs 16 --device cuda \
    --out /tmp/r/arena-ppo > "$OUT/arena-ppo.log" 2>&1;
  timeout 90 python3 -m metabonk eval policy /tmp/r/arena-ppo --env arena --episodes 32 --seed 10000 \
    --device cuda --json "$OUT/arena-ppo-eval.json" >> "$OUT/arena-ppo.log" 2>&1 ) &
timeout 390 python3 -m metabonk train agent --env arena --preset full --env-steps 20000 --device cuda \
    --out /tmp/r/arena > "$OUT/arena.log" 2>&1
cp /tmp/r/arena/eval.json "$OUT/arena-eval.json" 2>/dev/null || cp /tmp/r/arena/loop.json "$OUT/arena-loop.json"
wait
