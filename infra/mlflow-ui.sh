#!/usr/bin/env bash
# Open the MLflow UI on curvewatch's runs: the embedded SQLite store <repo>/mlflow.db (or
# $MLFLOW_TRACKING_URI), served on 127.0.0.1 only. Usage: infra/mlflow-ui.sh [port]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PORT=${1:-${CURVEWATCH_MLFLOW_PORT:-5000}}
STORE=${MLFLOW_TRACKING_URI:-sqlite:///$ROOT/mlflow.db}
echo "MLflow UI on http://127.0.0.1:$PORT (store: $STORE); Ctrl-C stops it"
exec "$VENV/bin/mlflow" ui --backend-store-uri "$STORE" --host 127.0.0.1 --port "$PORT"
