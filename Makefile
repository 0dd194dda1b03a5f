# Murmur — the two commands of the quickstart are `make run` and `make test`.
# Everything a test needs is installed from here: the Python venv and, for the
# negentropy interop test, the pinned npm packages under tests/interop.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin

.PHONY: help install dev lint test test-fast run clean

help:
	@echo "make run    create .venv, install Murmur, start a local node on port 8701"
	@echo "make test   create .venv if needed, install dev deps, run lint + the whole test suite"
	@echo "make lint   ruff + mypy --strict on protocol/, node/, client/"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Stamp files make re-runs fast; they are redone when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	@touch $@

# The example filter package is installed too: a test loads it by its entry point.
EXAMPLE_FILTER := examples/filters/murmur-filter-example
$(VENV)/.installed-dev: pyproject.toml $(EXAMPLE_FILTER)/pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]' ./$(EXAMPLE_FILTER)
	@touch $(VENV)/.installed $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

tests/interop/node_modules/.installed: tests/interop/package.json tests/interop/package-lock.json
	cd tests/interop && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint: dev
	$(BIN)/ruff check .
	$(BIN)/mypy --strict protocol node client

test: lint $(if $(wildcard tests/interop/package-lock.json),tests/interop/node_modules/.installed)
	$(PY) -m pytest

test-fast: dev
	$(PY) -m pytest -x -q -m "not e2e"

# Until `murmur devnet up` exists (multi-node devnet), this runs one real node.
RUN_PORT ?= 8701
RUN_DATA ?= .murmur-dev/node1
run: install
	@echo "Starting a Murmur node on http://127.0.0.1:$(RUN_PORT) (data in $(RUN_DATA)); Ctrl-C stops it."
	@echo "In another terminal:  curl http://127.0.0.1:$(RUN_PORT)/v1/info"
	$(BIN)/murmur node run --port $(RUN_PORT) --data $(RUN_DATA)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache tests/interop/node_modules
