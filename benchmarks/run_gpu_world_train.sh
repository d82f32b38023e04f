#!/usr/bin/env bash
# The Arena world-model fidelity figures through the public verbs, on one GPU in under 8 minutes: record random
# Arena play with the batched env on the GPU (`metabonk record`), train the DIAMOND-size model on the shared
# fit loop in bf16 (`metabonk train world --bf16`: AdamW, warm-up, EMA 0.999), and evaluate it on the held-out
# episodes (`metabonk eval world --json`: dream vs copy-last PSNR/SSIM per step, controllability, reward and
# termination). Its JSON, benchmarks/results/eval-world-arena-verbs-h200.json, is the fidelity table of
# docs/world.md. Usage: OUT=DIR bash benchmarks/run_gpu_world_train.sh
# (EPISODES, NUM_ENVS, STEPS, BATCH, DEVICE override the defaults; DEVICE=cpu with tiny values is a smoke test.
# RECORD_ENV=ale:Pong POLICY=scripted MAX_STEPS=1000 RECORD_S=300 records the scripted Pong expert instead; the JSON
# is then eval-world-ale-pong-verbs-<gpu>.json. TARGETS="delta frame delta:0" trains one model per entry at once on
# the same GPU (--target, and --context-noise after a colon) and writes eval-world-<env>-<entry>-verbs-<gpu>.json.)
set -euo pipefail
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-benchmarks/results}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
work=$(mktemp -d)
label=$(python3 -c "import torch; from metabonk.common.device import device_label, resolve_device; print(device_label(resolve_device('$DEVICE')))")
t0=$(date +%s)
RECORD_ENV=${RECORD_ENV:-arena}
name=$(echo "$RECORD_ENV" | tr ':' '-' | tr 'A-Z' 'a-z')
timeout "${RECORD_S:-100}" python3 -m metabonk record "$RECORD_ENV" --out "$work/store" --policy "${POLICY:-random}" \
  --episodes "${EPISODES:-128}" --num-envs "${NUM_ENVS:-128}" --max-steps "${MAX_STEPS:-450}" --size 64 \
  --device "$DEVICE" --seed 0
t1=$(date +%s)
# 2,500 steps took 235 s on an H200 in bf16; a timeout keeps the last save
# TARGETS: one model per entry, trained at once on the same GPU: "delta", "frame", or TARGET:NOISE for
# --context-noise NOISE ("delta:0")
TARGETS=${TARGETS:-delta}
for v in $TARGETS; do
  t=${v%%:*}; noise=$([ "$t" = "$v" ] || echo "--context-noise ${v#*:}")
  timeout ${TRAIN_S:-300} python3 -m metabonk train world --data "$work/store" --out "$work/world-$v" \
    --steps "${STEPS:-2500}" --batch "${BATCH:-128}" --lr 3e-4 --device "$DEVICE" --target "$t" $noise \
    $([ "$DEVICE" = cpu ] || echo --bf16) --no-resume > "$work/train-$v.log" 2>&1 || echo "train world ($v) stopped early" &
done
wait
for v in $TARGETS; do tail -n 1 "$work/train-$v.log"; done
t2=$(date +%s)
for v in $TARGETS; do
  json="$OUT/eval-world-$name-verbs-$label.json"
  [ "$TARGETS" = delta ] || json="$OUT/eval-world-$name-${v/:/-noise-}-verbs-$label.json"
  timeout ${EVAL_S:-140} python3 -m metabonk eval world "$work/world-$v" --data "$work/store" --device "$DEVICE" \
    --json "$json" &
done
wait
t3=$(date +%s)
echo "record $((t1 - t0)) s, train $((t2 - t1)) s, eval $((t3 - t2)) s"
rm -rf "$work"
