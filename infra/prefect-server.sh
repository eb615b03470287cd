#!/usr/bin/env bash
# curvewatch's local service 'prefect' (infra/services.py; table in infra/README.md).
# Usage: infra/prefect-server.sh start|stop|status|url
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
export VENV
exec "$VENV/bin/python" "$ROOT/infra/services.py" prefect "$@"
