#!/usr/bin/env bash
# The single test command: runs every suite in order and stops at the first
# failure.
#   a. cargo test --lib            pure-logic unit tests, no server
#   b. cargo pgrx test pg18        #[pg_test]s in a pgrx-managed server
#   c. pg_regress                  SQL regression tests in pg_regress/
#   d. integration tests           tests/integration against the test server
# c and d share a dedicated test server (port $TEST_PORT, data $RV_HOME/test-data)
# that is recreated on every run and always stopped on exit.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/setup.sh"
source "$here/common.sh"
cd "$ROOT"

TEST_DATA="$RV_HOME/test-data"
PGRX_DATA="$RV_HOME/pgrx-test-data"
REGRESS_DIR="$ROOT/pg_regress"
REGRESS_OUT="$ROOT/target/pg_regress"
REGRESS_DB=ruvector_regress

SUITES=4
passed=0
current=""
current_desc=""
skipped=()

# pgrx's framework puts each run's cluster in $PGRX_DATA/<pgmajor>-<pid of the
# test binary> and removes it on a clean exit. Stop and remove the clusters of
# test binaries that are no longer alive (crashed or killed runs).
cleanup_pgrx_clusters() {
    local d pid
    for d in "$PGRX_DATA"/*-*; do
        [[ -d "$d" ]] || continue
        pid="${d##*-}"
        [[ "$pid" =~ ^[0-9]+$ ]] || continue
        kill -0 "$pid" 2>/dev/null && continue
        pg_stop "$d" || true
        rm -rf "$d"
    done
}

on_exit() {
    local rc=$?
    trap - EXIT
    pg_stop "$TEST_DATA" || true
    cleanup_pgrx_clusters
    if (( rc != 0 )); then
        if [[ -n "$current" ]]; then
            printf '\n==> FAILED: suite "%s" (%s), exit code %d\n' "$current" "$current_desc" "$rc" >&2
        else
            printf '\n==> FAILED before/between suites (exit code %d)\n' "$rc" >&2
        fi
        echo "$passed passed, 1 failed"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# begin SHORT-NAME DESCRIPTION / pass / skip REASON
begin() { current="$1"; current_desc="$2"; printf '\n'; log "[$((passed + ${#skipped[@]} + 1))/$SUITES] $1: $2"; }
pass()  { log "PASSED: $current"; passed=$((passed + 1)); current=""; }
skip()  { log "SKIPPED: $current: $1"; skipped+=("$current"); current=""; }

# Fresh test server for suites c and d: created once per run; a server left
# over from an earlier, killed run is stopped and thrown away first.
test_server_started=0
start_test_server() {
    if (( test_server_started )) && pg_running "$TEST_DATA"; then
        return 0
    fi
    pg_stop "$TEST_DATA"
    log "Starting test server on 127.0.0.1:$TEST_PORT (data: $TEST_DATA)"
    rm -rf "$TEST_DATA"
    pg_initdb "$TEST_DATA"
    # A day between healing cycles: the background worker stays out of the
    # other tests' databases; the worker tests shorten it with ALTER SYSTEM.
    pg_write_conf "$TEST_DATA" "$TEST_PORT" "max_connections = 50" \
        "ruvector.dag_healing_interval_ms = 86400000"
    pg_start "$TEST_DATA"
    test_server_started=1
}

# ---------------------------------------------------------------------------
begin unit "cargo test --lib"
cargo test --lib
pass

# ---------------------------------------------------------------------------
begin pgrx "cargo pgrx test pg18"
runas=()
if (( IS_ROOT )); then
    # The framework creates its cluster dir inside PGRX_DATA as the server user
    # (sudo -u ... mkdir) and puts the unix socket there, so that user owns it.
    make_pg_dir "$PGRX_DATA" 755
    runas=(--runas "$PG_OS_USER")
else
    mkdir -p "$PGRX_DATA"
fi
cleanup_pgrx_clusters
rm -f "$PG_INSTALL/lib/ruvector_healing.so"
cargo pgrx test pg18 "${runas[@]}" --pgdata "$PGRX_DATA"
pass

# ---------------------------------------------------------------------------
begin pg_regress "SQL regression tests in pg_regress/"
regress_args=()
if [[ -f "$REGRESS_DIR/schedule" ]]; then
    regress_args=(--schedule="$REGRESS_DIR/schedule")
else
    # No schedule yet: run every sql/*.sql in name order.
    for f in "$REGRESS_DIR"/sql/*.sql; do
        [[ -f "$f" ]] && regress_args+=("$(basename "$f" .sql)")
    done
    if (( ${#regress_args[@]} )); then
        log "NOTE: $REGRESS_DIR/schedule not found; running sql/*.sql: ${regress_args[*]}"
    fi
fi
if (( ${#regress_args[@]} == 0 )); then
    skip "no $REGRESS_DIR/schedule and no $REGRESS_DIR/sql/*.sql"
else
    # Debug build is enough here; replaces the pg_test build from suite b.
    install_extension debug
    start_test_server
    # pg_regress --use-existing neither creates nor drops the database.
    PGOPTIONS="-c client_min_messages=warning" \
        pg_psql "$TEST_PORT" -d postgres -c "DROP DATABASE IF EXISTS $REGRESS_DB" -c "CREATE DATABASE $REGRESS_DB"
    rm -rf "$REGRESS_OUT"
    mkdir -p "$REGRESS_OUT"
    # --bindir: the wheel's compiled-in bindir is a build-machine path.
    if ! "$PG_REGRESS" --use-existing --bindir="$PG_BIN" \
            --host=127.0.0.1 --port="$TEST_PORT" --user=postgres \
            --inputdir="$REGRESS_DIR" --expecteddir="$REGRESS_DIR" --outputdir="$REGRESS_OUT" \
            --dbname="$REGRESS_DB" "${regress_args[@]}"; then
        if [[ -f "$REGRESS_OUT/regression.diffs" ]]; then
            printf '\n==> %s:\n' "$REGRESS_OUT/regression.diffs" >&2
            cat "$REGRESS_OUT/regression.diffs" >&2
        fi
        exit 1
    fi
    pg_psql "$TEST_PORT" -d postgres -c "DROP DATABASE IF EXISTS $REGRESS_DB"
    pass
fi

# ---------------------------------------------------------------------------
begin integration "cargo test --features integration --test integration"
if [[ ! -f "$ROOT/tests/integration/main.rs" ]]; then
    skip "tests/integration/main.rs does not exist yet"
else
    if (( ! test_server_started )); then
        # Suite c was skipped, so the normal (non pg_test) build isn't installed yet.
        install_extension debug
    fi
    start_test_server
    RUVECTOR_TEST_HOST=127.0.0.1 \
    RUVECTOR_TEST_PORT="$TEST_PORT" \
    RUVECTOR_TEST_PGBIN="$PG_BIN" \
    RUVECTOR_TEST_DATA="$TEST_DATA" \
    RUVECTOR_TEST_OS_USER="$PG_OS_USER" \
        cargo test --features integration --test integration -- --test-threads=1
    pass
fi

# ---------------------------------------------------------------------------
printf '\n'
if (( ${#skipped[@]} )); then
    echo "$passed passed, 0 failed (${#skipped[@]} skipped: ${skipped[*]})"
else
    echo "$passed passed, 0 failed"
fi
