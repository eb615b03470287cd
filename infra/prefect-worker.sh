#!/usr/bin/env bash
# curvewatch's local service 'prefect-worker' (infra/services.py; table in infra/README.md).
# Usage: infra/prefect-worker.sh start|stop|status
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
export VENV
exec "$VENV/bin/python" "$ROOT/infra/services.py" prefect-worker "$@"
