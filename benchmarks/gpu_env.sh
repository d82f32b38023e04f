# Sourced by the benchmarks/run_gpu*.sh scripts: on a lent GPU machine that has torch but not the rest of
# MetaBonk's dependencies, install the pure-Python wheels carried in .whl/ and put src/ on PYTHONPATH.
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1

# gpu_setup: create $OUT (default benchmarks/results), print the GPU, and set $label (h200, h100, ...) for file names.
gpu_setup() {
  OUT=${OUT:-benchmarks/results}
  mkdir -p "$OUT"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  label=$(python3 -c "import torch; from metabonk.common.device import device_label; print(device_label(torch.device('cuda')))")
}
