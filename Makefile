# Two commands on a fresh machine (Python 3.11+ and make): `make run` and `make test`.
# Everything installs into .venv from the pinned requirements.lock.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
INSTALLED := $(VENV)/.installed

export DAGSTER_HOME ?= $(CURDIR)

RECORDS ?= 100000
# make dev's UI port and the simulator's port (make dev, make simulator); 0 picks a free one.
PORT ?= 3000
SIMULATOR_PORT ?= 8765
# VERBOSE=1: tracebacks and every Dagster event instead of one line per mistake.
export VERBOSE

.DEFAULT_GOAL := help
.PHONY: help install run test dev psql stop simulator lint format lock validate bench bench-marts estimate rebuild clean

help: ## this list (times measured on a 2-core machine)
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-z-]+:[^#]*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: PORT=$(PORT) SIMULATOR_PORT=$(SIMULATOR_PORT) RECORDS=$(RECORDS) VERBOSE=1 (tracebacks)"

# Bytecode is compiled once at install: where PYTHONDONTWRITEBYTECODE is set (containers, CI),
# every process (each Dagster run, each test's subprocess) would compile Dagster's sources again.
$(INSTALLED): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

install: $(INSTALLED) ## create .venv with the locked dependencies

run: $(INSTALLED) ## load the last 30 days of every app through Dagster, with a demo history (about 20 s from a clone, 10 s installed)
	$(BIN)/python -m devenv.run

test: $(INSTALLED) ## the whole test suite, real PostgreSQL and HTTP on loopback (5 to 10 minutes)
	$(BIN)/python -m pytest

dev: $(INSTALLED) ## the Dagster UI on http://127.0.0.1:3000 (PORT=), the simulator on 8765 (SIMULATOR_PORT=), same defaults as run
	$(BIN)/python -m devenv.dev --port $(PORT) --simulator-port $(SIMULATOR_PORT)

psql: $(INSTALLED) ## psql on the warehouse (DATABASE_URL, else the embedded one), the client bundled with the server
	$(BIN)/python -m devenv.psql

stop: $(INSTALLED) ## stop the embedded PostgreSQL
	$(BIN)/python -m devenv.stop

simulator: $(INSTALLED) ## the CINNOX simulator alone, on port SIMULATOR_PORT= (8765)
	$(BIN)/python -m cinnox.simulator --port $(SIMULATOR_PORT)

bench: $(INSTALLED) ## every benchmark figure, 4 to 7 minutes at 100k (RECORDS=1000000 for the 1M figures, 6 to 11)
	$(BIN)/python -m bench --records $(RECORDS)

bench-marts: $(INSTALLED) ## time docs/warehouse.md's example queries on RECORDS campaigns
	$(BIN)/python -m bench.marts --records $(RECORDS)

estimate: $(INSTALLED) ## requests and time of a backfill: make estimate APP=id START=YYYY-MM-DD END=YYYY-MM-DD
	$(BIN)/python -m pipelines.estimate --app "$(APP)" --start "$(START)" --end "$(END)"

rebuild: $(INSTALLED) ## re-derive the star from cinnox_raw, no API request: make rebuild [APP=id] (default every app)
	$(BIN)/python -m pipelines.rebuild $(if $(APP),--app "$(APP)")

validate: $(INSTALLED) ## check the Dagster code location loads
	$(BIN)/dagster definitions validate -w workspace.yaml

lint: $(INSTALLED) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(INSTALLED) ## ruff format and ruff check --fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lock: ## re-resolve requirements.lock from pyproject.toml (then check dagster-* versions match)
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 -o requirements.lock

clean: stop ## stop the embedded server, delete .venv and .local
	rm -rf $(VENV) .local
