# curvewatch: `make run` sets everything up and runs the retrain flow; `make test` runs the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
DATASET_DIR := /usr/share/datasets/fashion-mnist
PROFILE ?=
PROFILE_ARG := $(if $(PROFILE),--profile $(PROFILE),)
TUNE_UI_PORT ?= 8080
# `make test` runs pytest on this many processes (pytest-xdist); 1 runs it in one.
TEST_WORKERS ?= 2
export PREFECT_HOME ?= $(CURDIR)/.prefect

.PHONY: help setup uv venv dataset system-deps run run-full repro test test-slow lint ui services-up services-down serve bench clean tune tune-ui

help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

uv: ## install uv (the lock-file installer) when it is missing
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

# --compile-bytecode: the packages' .pyc files are written once, at install. Python writes them
# lazily on first import otherwise, and never where PYTHONDONTWRITEBYTECODE is set (as on these
# machines): every process then compiled each module it imported (measured: import mlflow 2.8 s
# against 1.1 s; Keras with TensorFlow 5.8 s against 1.8 s, both with collection off as
# pipelines/heap.py imports it). 16 s once; a later sync 0.5 s.
venv: uv ## create .venv from the committed lock file (uv.lock), exactly, with its bytecode compiled
	$(UV) sync --frozen --python 3.11 --compile-bytecode

dataset: ## install Debian's dataset-fashion-mnist when apt exists and the IDX files are missing
	@if ls $(DATASET_DIR)/train-images-idx3-ubyte* >/dev/null 2>&1; then \
	  echo "Fashion-MNIST found in $(DATASET_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  echo "no apt: the fetch stage will download Fashion-MNIST from params.yaml's fetch.url"; \
	fi

system-deps: ## install Debian's postgresql and chromium (for the server and browser tests) when absent
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing$$missing (apt-get)"; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing; \
	fi

setup: venv dataset ## everything `run` needs: environment and dataset

run: setup ## run the Prefect flow `retrain` (quick profile; PROFILE=full for the full one)
	$(UV) run --frozen curvewatch flow retrain $(PROFILE_ARG)

tune: setup ## run the Prefect flow `tune`: tune.n_trials Optuna trials pruned by their curves, in MLflow, best gated
	$(UV) run --frozen curvewatch flow tune $(PROFILE_ARG)

tune-ui: venv ## optuna-dashboard on the tuning studies (CURVEWATCH_OPTUNA_STORAGE, else paths.tune_dir), 127.0.0.1:8080 (TUNE_UI_PORT)
	$(UV) run --frozen curvewatch tune-ui $(PROFILE_ARG) --port $(TUNE_UI_PORT)

run-full: ## the full profile (small CNN, 20 epochs, more dropout: see profiles.full in params.yaml)
	$(MAKE) run PROFILE=full

repro: setup ## run the same stages with DVC (`dvc repro`)
	$(UV) run --frozen dvc repro

test: venv dataset system-deps ## install what the tests need (Fashion-MNIST, postgresql, chromium), check the environment (uv pip check) and the code (ruff), then run the tests (not the `slow` ones) on TEST_WORKERS (2) processes
	$(UV) pip check
	$(UV) run --frozen ruff check pipelines flows tests benchmarks infra
	$(UV) run --frozen pytest -n $(TEST_WORKERS) --dist loadgroup

test-slow: venv dataset ## run only the slow tests (Fashion-MNIST end-to-end, slow reliability rows, JAX augmentation)
	$(UV) run --frozen pytest -m slow

lint: venv ## ruff
	$(UV) run --frozen ruff check pipelines flows tests benchmarks infra

ui: venv ## the MLflow UI on the configured store (MLFLOW_TRACKING_URI's server, else mlflow.db on :5000)
	infra/mlflow-ui.sh

services-up: venv system-deps ## start PostgreSQL, the MLflow server, the Prefect server (UI) and a worker
	infra/postgres.sh start
	infra/mlflow-server.sh start
	infra/prefect-server.sh start
	infra/prefect-worker.sh start
	@echo; echo "MLflow UI and tracking server: $$(infra/mlflow-server.sh url)"; \
	echo "Prefect UI: $$(infra/prefect-server.sh url | sed 's|/api$$||')"; \
	echo "Point runs at them with:"; \
	echo "  export MLFLOW_TRACKING_URI=$$(infra/mlflow-server.sh url)"; \
	echo "  export PREFECT_API_URL=$$(infra/prefect-server.sh url)"

serve: services-up ## services-up, then register the Prefect deployments retrain/scheduled (cron: params.yaml schedule) and tune/on-demand
	PREFECT_API_URL=$$(infra/prefect-server.sh url) $(UV) run --frozen python -m flows.deployments
	@echo "Prefect UI: $$(infra/prefect-server.sh url | sed 's|/api$$||')/deployments"

services-down: ## stop the worker, the Prefect server, the MLflow server and PostgreSQL
	-infra/prefect-worker.sh stop
	-infra/prefect-server.sh stop
	-infra/mlflow-server.sh stop
	-infra/postgres.sh stop

bench: setup ## benchmark: the retrain flow vs a bare Keras fit (prints both and the ratio)
	$(UV) run --frozen python benchmarks/overhead.py

clean: ## remove run outputs (keeps the MLflow store, the DVC cache and the services' state)
	rm -rf data/prepared reports metrics plots models
	@if [ -d .curvewatch ]; then find .curvewatch -mindepth 1 -maxdepth 1 ! -name services -exec rm -rf {} +; fi
