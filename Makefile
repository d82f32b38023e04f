# MetaBonk: `make demo` runs the main job, `make test` the test suite; both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.metabonk-installed

.PHONY: demo test test-slow test-learning test-matrix lint bench-cpu clean-venv

$(STAMP): pyproject.toml
	bash .ci/system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# CPU-only machines get the CPU build of torch first, so nothing pulls a multi-GB CUDA build.
	@if ! command -v nvidia-smi >/dev/null 2>&1 && ! $(PY) -c 'import torch' >/dev/null 2>&1; then \
		echo "no GPU found: installing CPU torch==2.13.0"; \
		$(PY) -m pip install -q torch==2.13.0; \
	fi
	$(PY) -m pip install -q -e '.[llm,quant,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/metabonk demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# The slow learning tests CI runs too (each measured over >= 2 seeds; ~5 min on 2 cores): the online loop beats
# random and PPO on Scroll, and intent-conditioned BC beats its shuffled-intent control.
LEARNING_TESTS := tests/test_train_agent_learns.py tests/test_intents_bc.py
test-learning: $(STAMP)
	$(PY) -m pytest -q -m slow $(LEARNING_TESTS)

# The default suite again with 1 thread / seed offset 1 and 2 threads / seed offset 2 (~45 min on 2 cores):
# benchmarks/results/test-matrix.json
test-matrix: $(STAMP)
	$(PY) benchmarks/test_matrix.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench-cpu: $(STAMP)
	$(VENV)/bin/metabonk bench env --device cpu

clean-venv:
	rm -rf $(VENV)
