# Sourced by the benchmarks/run_gpu*.sh scripts: on a lent GPU machine that has torch but not the rest of
# MetaBonk's dependencies, install the pure-Python wheels carried in .whl/ and put src/ on PYTHONPATH.
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
