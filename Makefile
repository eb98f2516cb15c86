# `make demo`: venv + tiffin + an end-to-end run on a built-in model.
# `make test`: test dependencies + ruff + mypy + the whole test suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# torch must come from the CPU wheel on local disk (see README, "Development").
FIND_LINKS := $(shell [ -d /opt/wheels ] && echo --find-links /opt/wheels)
EXTRA_INDEX := $(shell for d in /opt/pypi/simple /opt/pypi-more/simple; do [ -d $$d ] && printf -- '--extra-index-url file://%s ' $$d; done)
UV_PIP := $(UV) pip install --python $(PY) $(FIND_LINKS) $(EXTRA_INDEX) --index-strategy unsafe-best-match

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

clean:
	rm -rf $(VENV) build dist demo-out bench-results
