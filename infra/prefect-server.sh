#!/usr/bin/env bash
# Local Prefect server for curvewatch, bound to 127.0.0.1, started once and reused by every run
# (Prefect's temporary per-run server takes 23-30 s to start on these machines).
# Usage: infra/prefect-server.sh start|stop|status|url
# State (SQLite database, pid, log) lives in $PREFECT_HOME (default: <repo>/.prefect).
# The web UI is off by default: with the fastapi 0.135 pin that the API needs (see pyproject.toml)
# Prefect 3.8.8's UI app fails to mount (FastAPI has no `frontend`); the API and flows are unaffected.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
export PREFECT_HOME=${PREFECT_HOME:-$ROOT/.prefect}
HOST=127.0.0.1
PORT=${CURVEWATCH_PREFECT_PORT:-4200}
URL="http://$HOST:$PORT/api"
PIDFILE=$PREFECT_HOME/server.pid
LOG=$PREFECT_HOME/server.log
STARTUP_TIMEOUT=${CURVEWATCH_PREFECT_STARTUP_TIMEOUT:-120}

healthy() {
  "$VENV/bin/python" - "$URL/health" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()
PY
}

start() {
  if healthy; then echo "prefect server already running at $URL"; return 0; fi
  mkdir -p "$PREFECT_HOME"
  echo "starting prefect server at $URL (log: $LOG)"
  PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_UI_ENABLED=${PREFECT_UI_ENABLED:-false} \
    nohup "$VENV/bin/prefect" server start --host "$HOST" --port "$PORT" >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 "$STARTUP_TIMEOUT"); do
    if healthy; then echo "prefect server ready at $URL"; return 0; fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      echo "prefect server exited during start-up; last lines of $LOG:" >&2; tail -20 "$LOG" >&2; return 1
    fi
    sleep 1
  done
  echo "prefect server did not answer within ${STARTUP_TIMEOUT}s; see $LOG" >&2
  return 1
}

stop() {
  if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    kill "$(cat "$PIDFILE")"; rm -f "$PIDFILE"; echo "prefect server stopped"
  else
    echo "prefect server not running (no live pid in $PIDFILE)"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if healthy; then echo "running at $URL"; else echo "not running"; exit 1; fi ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
