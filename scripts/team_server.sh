#!/usr/bin/env bash
# A team tracking server: MLflow on a PostgreSQL backend store, artifacts served by the server itself.
# Used by `make server` and by the integration test. Binds to 127.0.0.1 unless HOST says otherwise.
#
#   BACKEND_STORE_URI  an existing PostgreSQL database; when unset, a local cluster is created in PGDATA
#   PGDATA, PGPORT     the local cluster's folder and port (default .pgdata, 5433)
#   HOST, PORT         where MLflow listens (default 127.0.0.1:5000)
#   ARTIFACTS          where the server keeps artifacts (default mlruns/served-artifacts)
#   WORKERS            server workers (default 2)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${BIN:-$ROOT/.venv/bin}"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-5000}"
PGPORT="${PGPORT:-5433}"
PGDATA="${PGDATA:-$ROOT/.pgdata}"
ARTIFACTS="${ARTIFACTS:-$ROOT/mlruns/served-artifacts}"
WORKERS="${WORKERS:-2}"

as_postgres() {  # PostgreSQL refuses to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

SERVER=""
STARTED_CLUSTER=""
# On any exit (Ctrl-C, or the MLflow server failing to start) the server stops, then the cluster this script
# started: left running, it held the folder, and the next `make server` failed to start its own.
stop() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  if [ -n "$STARTED_CLUSTER" ]; then as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null || true; fi
}
trap stop EXIT
trap 'exit 0' INT TERM

# MLflow would only log the bind error and exit 0, after the lines below had named the other program's address
if "$BIN/python" -c "import sys; from explab.tracking.ui import port_taken; sys.exit(not port_taken(sys.argv[1]))" \
  "http://$HOST:$PORT"; then
  echo "http://$HOST:$PORT is taken by another program (an earlier make server still running?): stop it, or" \
    "serve on another port: make server PORT=$((PORT + 1))" >&2
  exit 1
fi

if [ -z "${BACKEND_STORE_URI:-}" ]; then
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -z "$PG_BIN" ]; then
    echo "PostgreSQL is not installed: apt-get install postgresql (or set BACKEND_STORE_URI)" >&2
    exit 1
  fi
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    [ "$(id -u)" = 0 ] && chown postgres "$PGDATA"
    as_postgres "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust >/dev/null
  fi
  if as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null; then
    STARTED_CLUSTER=""  # already running (another server of this folder): used, and left running
  else
    as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDATA" start >/dev/null
    STARTED_CLUSTER=1
  fi
  for db in mlflow optuna; do
    as_postgres "$PG_BIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 ||
      as_postgres "$PG_BIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres "$db"
  done
  BACKEND_STORE_URI="postgresql://postgres@127.0.0.1:$PGPORT/mlflow"
  echo "Optuna storage for sweeps: hydra.sweeper.storage=postgresql://postgres@127.0.0.1:$PGPORT/optuna"
fi

mkdir -p "$ARTIFACTS"
echo "Tracking server: export MLFLOW_TRACKING_URI=http://$HOST:$PORT"
"$BIN/mlflow" server --backend-store-uri "$BACKEND_STORE_URI" --artifacts-destination "$ARTIFACTS" \
  --serve-artifacts --host "$HOST" --port "$PORT" --workers "$WORKERS" &
SERVER=$!
wait $SERVER
