#!/usr/bin/env bash
# `make ui`: the MLflow UI on the configured store. With MLFLOW_TRACKING_URI set to a tracking server
# it checks the server answers and prints its address; otherwise it serves the SQLite store
# <repo>/mlflow.db (or $MLFLOW_TRACKING_URI) on 127.0.0.1 and exits non-zero when the port is taken.
# Usage: infra/mlflow-ui.sh [port]   (default $CURVEWATCH_UI_PORT or 5000)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
export VENV
exec "$VENV/bin/python" "$ROOT/infra/services.py" ui "$@"
