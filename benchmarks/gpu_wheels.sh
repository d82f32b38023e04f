#!/usr/bin/env bash
# Download into .whl/ the wheels the lent GPU machine lacks (its image has torch, numpy, pandas, httpx,
# prometheus-client, typer, rich ... but none of the packages below, and a pandas older than arch needs; PyAV, 35 MB, is left out: the 64 MiB a
# call carries), at the versions of this checkout's
# .venv, for the machine's Python 3.12. benchmarks/gpu_env.sh installs them there. Run from the repo root
# after `make` has built .venv; `.whl/` must be ignored (`echo /.whl/ >> .git/info/exclude`).
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="gymnasium farama-notifications ale-py ncps mambapy rliable arch torchao tzdata jsonschema
jsonschema-specifications referencing rpds-py fastapi starlette uvicorn sqlalchemy greenlet alembic mako
websockets pydantic pydantic-core annotated-types typing-inspection python-multipart pandas pytz opentelemetry-api
annotated-doc"
mkdir -p .whl
for name in $PKGS; do
  ver=$(.venv/bin/python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null) \
    || { echo "skip $name (not in .venv)"; continue; }
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64 -d .whl "$name==$ver" \
    || .venv/bin/python -m pip wheel -q --no-deps -w .whl "$name==$ver" \
    || echo "no wheel for $name==$ver"  # a pure-Python sdist (rliable) is built here instead
done
du -sh .whl
