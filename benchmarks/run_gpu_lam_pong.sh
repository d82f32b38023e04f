#!/usr/bin/env bash
# Pong latent-action sweep on a GPU machine: unpack a carried store (a .tar.xz of `metabonk record ale:Pong`),
# train every variant of benchmarks/lam_pong_sweep.py side by side, write OUT/<variant>.json and copy the
# best LAM (by probe accuracy) to OUT/best/. Usage: bash benchmarks/run_gpu_lam_pong.sh STORE.tar.xz STEPS
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-benchmarks/results/lam-pong}
CKPT=/tmp/lam-pong-ckpt
mkdir -p "$OUT" "$CKPT" /tmp/store && tar -xJf "$1" -C /tmp/store
DATA=$(dirname "$(find /tmp/store -name store.json | head -1)")
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
VARIANTS=${VARIANTS:-"fullres_cw20_db3_os6 pooled_cw20_db3_os6 idm_fullres_1000 idm_pooled_1000"}
for v in $VARIANTS; do
  python3 benchmarks/lam_pong_sweep.py "$DATA" "$OUT" "$v" "$2" "$CKPT" > "$CKPT/$v.log" 2>&1 &
done
wait
tail -n 2 "$CKPT"/*.log | cut -c1-2000
best=$(python3 - "$OUT" <<'PY'
import json, pathlib, sys
runs = [json.loads(p.read_text()) for p in pathlib.Path(sys.argv[1]).glob("*.json")]
lams = [r["results"] for r in runs if "probe_accuracy" in r["results"]]
print(max(lams, key=lambda r: r["probe_accuracy"])["variant"] if lams else "")
PY
)
if [ -n "$best" ]; then
  mkdir -p "$OUT/best" && cp "$CKPT/$best/model.safetensors" "$CKPT/$best/config.json" "$OUT/best/" && echo "best: $best"
fi
