#!/usr/bin/env bash
# curvewatch's local service 'postgres' (infra/services.py; table in infra/README.md).
# Usage: infra/postgres.sh start|stop|status|url [db]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
export VENV
exec "$VENV/bin/python" "$ROOT/infra/services.py" postgres "$@"
