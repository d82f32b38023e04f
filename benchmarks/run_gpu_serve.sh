#!/usr/bin/env bash
# `metabonk bench serve` (16 workers x 30 fps for 120 s, SQLite) on the lent machine's 16 CPU cores: the
# orchestrator needs no GPU, but the shared 2-core dev box cannot drive 16 workers at 30 fps. Needs the
# orchestrator's pure-Python wheels (fastapi, starlette, uvicorn, h11, sqlalchemy, alembic, mako, websockets,
# prometheus-client, httpx, httpcore, anyio, pydantic, safetensors, ...) in .whl/ like the other scripts.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-/tmp/serve-out}
mkdir -p "$OUT"
nproc
timeout 480 python3 -c "from metabonk.bench.serve import ServeBenchArgs, main; \
main(ServeBenchArgs(workers=16, seconds=120, fps=30, json_path='$OUT/serve-h200-host.json'))" 2>&1 | tee "$OUT/serve-log.txt"
ls -la "$OUT"
