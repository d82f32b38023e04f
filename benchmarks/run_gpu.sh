#!/usr/bin/env bash
# One GPU session's measurements (env and policy benchmarks) on a machine that has torch but not
# the rest of MetaBonk's dependencies: pure-Python wheels travel in .whl/ (see docs/benchmarks.md).
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
OUT=${OUT:-benchmarks/results}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 - <<PY
from metabonk.bench.env import run_env_bench
run_env_bench(device="cuda", batches=[1, 1024, 8192, 65536, 131072], seconds=1.0, repeats=3,
              references=False, json_path="$OUT/env-h100.json")
PY
python3 - <<PY
from metabonk.bench.policy import BenchArgs, main
main(BenchArgs(device="cuda", json_path="$OUT/policy-h100.json"))
PY
# World model speed: metabonk.bench.world; fidelity: benchmarks/run_gpu_world_train.sh (see docs/world.md).
