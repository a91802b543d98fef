# One target per chore. `make run` and `make test` work on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

.PHONY: run test lint bench bench-tracking services vendor clean

run: $(VENV)/.run-installed  ## set up and start the portal on the embedded default
	$(BIN)/mlplatform db upgrade
	$(BIN)/mlplatform serve

test: $(VENV)/.test-installed services  ## set up and run every test
	$(BIN)/python -m pytest

services:  ## PostgreSQL and Redis must answer; start them if they are installed but down
	@scripts/ensure-services.sh

bench: bench-tracking bench-serving  ## every benchmark

bench-tracking: $(VENV)/.run-installed bench/.venv-mlflow/.installed services  ## mlplatform vs MLflow 3 tracking (bench/README.md); BENCH_ARGS=--quick for a smoke run
	$(BIN)/python bench/tracking.py $(BENCH_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check mlplatform api plugins_contrib tests
	$(BIN)/ruff format --check mlplatform api plugins_contrib tests

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

$(VENV)/.run-installed: setup.cfg pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.test-installed: setup.cfg pyproject.toml package.json examples/inhouse-plugin/setup.cfg | $(BIN)/python
	$(PIP) install --quiet -e '.[all,test]' -e examples/inhouse-plugin
	npm ci --silent --no-audit --no-fund
	@command -v chromium >/dev/null || scripts/install-chromium.sh
	touch $@ $(VENV)/.run-installed

vendor: ## refresh the portal's vendored Chart.js from node_modules (package.json pins it)
	npm ci --silent --no-audit --no-fund
	cp node_modules/chart.js/dist/chart.umd.min.js api/static/vendor/chart.umd.min.js

clean:
	rm -rf $(VENV) node_modules build *.egg-info

bench-drift: $(VENV)/.test-installed bench/.venv-evidently/.installed  ## monitoring: our windows vs Evidently 0.7, ingest, series query
	$(BIN)/python bench/drift.py

bench/.venv-mlflow/.installed:  ## the MLflow 3 the tracking and serving benchmarks compare with
	$(PYTHON) -m venv bench/.venv-mlflow
	bench/.venv-mlflow/bin/python -m pip install --quiet "mlflow==3.*" psycopg2-binary scikit-learn
	touch $@

bench/.venv-evidently/.installed:
	$(PYTHON) -m venv bench/.venv-evidently
	bench/.venv-evidently/bin/python -m pip install --quiet "evidently==0.7.*" "pandas<3"
	touch $@

bench-serving: $(VENV)/.test-installed bench/.venv-mlflow/.installed services  ## registry writes and the prediction gateway vs MLflow 3 (bench/README.md); BENCH_ARGS=--quick for a smoke run
	$(BIN)/python bench/registry_gateway.py $(BENCH_ARGS)
