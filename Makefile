# Two commands on a fresh machine (Python 3.11+ and make): `make run` and `make test`.
# Everything installs into .venv from the pinned requirements.lock.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
INSTALLED := $(VENV)/.installed

export DAGSTER_HOME ?= $(CURDIR)

RECORDS ?= 100000

.PHONY: install run test dev psql stop simulator lint format lock validate bench bench-marts estimate rebuild clean

$(INSTALLED): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

install: $(INSTALLED) ## create .venv with the locked dependencies

run: $(INSTALLED) ## load the last 30 days of every app through Dagster and print a summary
	$(BIN)/python -m devenv.run

test: $(INSTALLED) ## the whole test suite (real PostgreSQL and HTTP on loopback)
	$(BIN)/python -m pytest

dev: $(INSTALLED) ## the Dagster UI on http://127.0.0.1:3000, same defaults as run
	$(BIN)/python -m devenv.dev

psql: $(INSTALLED) ## psql on the warehouse
	$(BIN)/python -m devenv.psql

stop: $(INSTALLED) ## stop the embedded PostgreSQL
	$(BIN)/python -m devenv.stop

simulator: $(INSTALLED) ## the CINNOX simulator alone, on port 8765
	$(BIN)/python -m cinnox.simulator --port 8765

bench: $(INSTALLED) ## every benchmark figure (RECORDS=1000000 for the 1M load figures)
	$(BIN)/python -m bench --records $(RECORDS)

bench-marts: $(INSTALLED) ## time docs/warehouse.md's example queries on RECORDS campaigns
	$(BIN)/python -m bench.marts --records $(RECORDS)

estimate: $(INSTALLED) ## API requests and time a backfill will take: make estimate APP=id START=YYYY-MM-DD END=YYYY-MM-DD
	$(BIN)/python -m pipelines.estimate --app "$(APP)" --start "$(START)" --end "$(END)"

rebuild: $(INSTALLED) ## re-derive the star from cinnox_raw, no API request: make rebuild [APP=id] (default every app)
	$(BIN)/python -m pipelines.rebuild $(if $(APP),--app "$(APP)")

validate: $(INSTALLED) ## check the Dagster code location loads
	$(BIN)/dagster definitions validate -w workspace.yaml

lint: $(INSTALLED) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(INSTALLED)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lock: ## re-resolve requirements.lock from pyproject.toml (then check dagster-* versions match)
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 -o requirements.lock

clean: stop
	rm -rf $(VENV) .local
