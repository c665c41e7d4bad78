#!/usr/bin/env bash
# Start a local Postgres 18 with pgvector and ruvector_healing preloaded, or,
# if that server is already running, stop it (run the same command again).
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/setup.sh"
source "$here/common.sh"

DATA="$RV_HOME/data"
DB=ruvector

# `run.sh restart`: build and install the new library while the server
# runs (each file renamed into place, never overwritten), then restart it
# so that every process loads the new library.
if [[ "${1:-}" == restart ]]; then
    log "Building and installing ruvector_healing (release) beside the running server"
    install_extension release
    if pg_running "$DATA"; then
        log "Restarting the server on port $RUN_PORT to load the new library"
        as_pg "$PG_BIN/pg_ctl" stop -w -D "$DATA" -m fast
    fi
elif pg_running "$DATA"; then
    # Second invocation: stop the running server and exit.
    log "Server on port $RUN_PORT is running; stopping it"
    as_pg "$PG_BIN/pg_ctl" stop -w -D "$DATA" -m fast
    log "Stopped. Run 'bash scripts/run.sh' again to start it."
    exit 0
else
    # Optimised build, installed into the wheel's lib/ and share/extension/.
    log "Building and installing ruvector_healing (release)"
    install_extension release
fi

if [[ ! -f "$DATA/PG_VERSION" ]]; then
    if [[ -d "$DATA" && -n "$(ls -A "$DATA")" ]]; then
        die "$DATA exists but is not a Postgres data directory; move it away first"
    fi
    log "Initialising data directory $DATA"
    pg_initdb "$DATA"
fi
pg_write_conf "$DATA" "$RUN_PORT"

log "Starting server on 127.0.0.1:$RUN_PORT (log: $DATA/server.log)"
pg_start "$DATA"
# From here on, don't leave a half-set-up server behind if something fails.
trap 'rc=$?; if (( rc != 0 )); then warn "setup failed; stopping the server"; pg_stop "$DATA" || true; fi' EXIT

if [[ -z "$(pg_psql "$RUN_PORT" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]]; then
    log "Creating database $DB"
    pg_psql "$RUN_PORT" -d postgres -c "CREATE DATABASE $DB"
fi
PGOPTIONS="-c client_min_messages=warning" pg_psql "$RUN_PORT" -d "$DB" \
    -c "CREATE EXTENSION IF NOT EXISTS vector" \
    -c "CREATE EXTENSION IF NOT EXISTS ruvector_healing"
# A database made by an earlier release is brought up to the library's.
installed="$(pg_psql "$RUN_PORT" -d "$DB" -tAc "SELECT extversion FROM pg_extension WHERE extname = 'ruvector_healing'")"
default="$(pg_psql "$RUN_PORT" -d "$DB" -tAc "SELECT default_version FROM pg_available_extensions WHERE name = 'ruvector_healing'")"
if [[ "$installed" != "$default" ]]; then
    log "Updating ruvector_healing in database $DB from $installed to $default"
    pg_psql "$RUN_PORT" -d "$DB" -c "ALTER EXTENSION ruvector_healing UPDATE"
fi

launcher="$(pg_psql "$RUN_PORT" -d "$DB" -tAc "SELECT ruvector_dag_healing_status()->'healing'->'launcher'->>'pid'")"
cat <<EOF

==> Postgres is running with ruvector_healing (data: $DATA, log: $DATA/server.log).
    Connect with:
      $PG_BIN/psql -h 127.0.0.1 -p $RUN_PORT -U postgres $DB
    The healing launcher runs (pid ${launcher:-not started yet}); each database's first
    cycle starts one ruvector.dag_healing_interval_ms (5 min) after the server started.
    Example:
      SELECT ruvector_dag_healing_status()->'healing';
    Run 'bash scripts/run.sh' again to stop the server, or
    'bash scripts/run.sh restart' to install a new build and restart it.
EOF
