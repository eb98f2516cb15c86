# `make demo`: venv + tiffin + an end-to-end run on a built-in model.
# `make test`: test dependencies + ruff + mypy + the whole test suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# uv does not read pip's configuration; pass its sources (find-links, extra indexes,
# constraints) on, so a machine whose pip points at a CPU build of torch gets that one
# rather than a multi-GB CUDA build from PyPI.
PIP_SOURCES := $(shell $(PYTHON) -m pip config list 2>/dev/null | sed -n "s/^[^.]*\.\(find-links\|extra-index-url\|index-url\|constraint\)='\(.*\)'$$/\1 \2/p" | sort -u | awk '{for (i = 2; i <= NF; i++) printf "--%s %s ", $$1, $$i}')
UV_PIP := $(UV) pip install --python $(PY) $(PIP_SOURCES) --index-strategy unsafe-best-match

.PHONY: demo test lint typecheck pytest bench clean venv

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "uv>=0.4"

venv: $(PY)

$(VENV)/.demo-installed: $(PY) pyproject.toml
	$(UV_PIP) -e ".[demo]"
	touch $@

demo: $(VENV)/.demo-installed
	$(PY) examples/demo.py

$(VENV)/.test-installed: $(PY) pyproject.toml
	$(UV_PIP) -e ".[test]"
	touch $@

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

typecheck: $(VENV)/.test-installed
	$(VENV)/bin/mypy

pytest: $(VENV)/.test-installed
	$(VENV)/bin/pytest -n 2 -q

test: lint typecheck pytest

bench: $(VENV)/.test-installed
	command -v wrk >/dev/null || (apt-get install -y -q wrk || (apt-get update -q && apt-get install -y -q wrk))
	$(PY) benchmarks/cold_start.py
	$(PY) benchmarks/env_build.py
	$(PY) benchmarks/serve.py
	$(PY) benchmarks/protocol.py
	$(PY) benchmarks/batching.py
	$(PY) benchmarks/pack.py

clean:
	rm -rf $(VENV) build dist demo-out bench-results
