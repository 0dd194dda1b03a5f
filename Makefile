# Murmur — the two commands of the quickstart are `make run` and `make test`.
# Everything a test needs is installed from here: the Python venv and, for the
# negentropy interop test, the pinned npm packages under tests/interop.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin

.PHONY: help install dev lint test test-fast run clean browser-deps pg-deps

help:
	@echo "make run    create .venv, install Murmur, start a 3-node local devnet with a demo and"
	@echo "            the web client (murmur web) for its alice; prints the web URL to open"
	@echo "make test   create .venv if needed, install dev deps, run lint + the whole test suite"
	@echo "make lint   ruff + mypy --strict on protocol/, node/, client/, bench/"
	@echo "make browser-deps  Debian's chromium for the browser tests (apt-get; sudo -n if not root)"
	@echo "make pg-deps       Debian's postgresql for the PostgreSQL store tests (apt-get; sudo -n if not root)"

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

# The browser tests (tests/web) drive Debian's Chromium through Playwright's
# executable_path (never `playwright install`). The script is a no-op when
# /usr/bin/chromium is there; MURMUR_SKIP_BROWSER=1 skips it (developers, never CI).
browser-deps:
	@sh scripts/browser-deps.sh

# The PostgreSQL store tests start a throwaway cluster of Debian's postgresql
# (tests/pg.py: initdb + pg_ctl in a temp dir, as the system user murmur-pg when run
# as root). A no-op when installed; MURMUR_SKIP_POSTGRES=1 skips it (developers,
# never CI: without it the PostgreSQL tests fail rather than skip).
pg-deps:
	@sh scripts/pg-deps.sh

# axe-core, injected into pages by the browser tests (pinned by the lockfile).
tests/web/node_modules/.installed: tests/web/package.json tests/web/package-lock.json
	cd tests/web && npm ci --prefer-offline --no-audit --no-fund --loglevel=error
	@touch $@

lint: dev
	$(BIN)/ruff check .
	$(BIN)/mypy --strict protocol node client bench

test: lint browser-deps pg-deps tests/web/node_modules/.installed $(if $(wildcard tests/interop/package-lock.json),tests/interop/node_modules/.installed)
	$(PY) -m pytest

test-fast: dev
	$(PY) -m pytest -x -q -m "not e2e"

# A local devnet: 3 real nodes on ports 8701-8703 (data in .murmur-dev/), a seeded
# demo (people, posts, replies, a labeler), a supervisor and, once the demo is on every
# node, the web client for alice on 127.0.0.1:8700 (its URL with the secret token is
# printed last); Ctrl-C stops everything.
RUN_NODES ?= 3
RUN_WEB_PORT ?= 8700
# More devnet up options, e.g. RUN_ARGS="--feed long=./my_feed.py:LongPosts"
RUN_ARGS ?=
run: install
	$(BIN)/murmur devnet up --nodes $(RUN_NODES) --seed-demo --web --web-port $(RUN_WEB_PORT) $(RUN_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache tests/interop/node_modules \
		tests/web/node_modules tests/web/output
