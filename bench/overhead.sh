#!/usr/bin/env bash
# CPU overhead of background healing on healthy indexes: TABLES tables of ROWS
# random DIM-dimensional vectors, an HNSW index each, in one database. With
# ruvector.dag_healing_interval_ms = 1500 the script reads the CPU time the
# status reports (getrusage of the cycle worker and of the launcher), as the
# integration test overhead_of_twenty_healthy_indexes does: 2 cycles (the
# first also probes the recall of every index), then CYCLES more; from them
#   plain  = CPU ms per ordinary cycle (inspect, detect, record),
#   probes = CPU of the first cycle's recall probes (cpu0 - n0 * plain),
#   launcher CPU ms per wake-up,
# and the CPU of an hour at the defaults (12 cycles, each index probed once,
# 720 launcher wake-ups) as a % of one core. Goal < 1 %; the check fails
# (exit 1) when the median of REPEAT runs exceeds 2 % or when no cycle runs.
# Each run uses a new database (the previous one is dropped), so each has its
# own first cycle with probes.
# Own server (port 28871 or OVERHEAD_BENCH_PORT, data
# $RV_HOME/bench-overhead-data, recreated on every run, stopped on exit),
# release build, run from a private copy of the Postgres install
# ($RV_HOME/bench-overhead-pg).
#   REPEAT (3) TABLES (20) ROWS (2000) DIM (16) CYCLES (5) WAIT_S (120)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/../scripts/setup.sh" >/dev/null
# shellcheck source-path=SCRIPTDIR source=../scripts/common.sh
source "$here/../scripts/common.sh"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

REPEAT="${REPEAT:-3}"
TABLES="${TABLES:-20}"
ROWS="${ROWS:-2000}"
DIM="${DIM:-16}"
CYCLES="${CYCLES:-5}"
WAIT_S="${WAIT_S:-120}"
PORT="${OVERHEAD_BENCH_PORT:-28871}"
for v in REPEAT TABLES ROWS DIM CYCLES WAIT_S PORT; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
DATA="$RV_HOME/bench-overhead-data"
INTERVAL_MS=1500       # during the measurement
IDLE_INTERVAL_MS=86400000   # otherwise: no cycle while tables are created or dropped
GOAL_PCT=1
BOUND_PCT=2

sql() { pg_psql "$PORT" -tA -F '|' "$@"; }

PRIV="$RV_HOME/bench-overhead-pg"

trap 'pg_stop "$DATA" && rm -rf "$PRIV" || true' EXIT
pg_stop "$DATA" || true
private_install "$PRIV"
# A fresh server: the counters in the status start at zero.
rm -rf "$DATA"
pg_initdb "$DATA"
pg_write_conf "$DATA" "$PORT" "ruvector.dag_healing_interval_ms = $IDLE_INTERVAL_MS"
pg_start "$DATA"

# Cycles and CPU of database $1 ("0|0" until it is listed), and the launcher's
# CPU ms and wake-ups.
db_counters() {
    sql -d "$1" -c "SELECT coalesce(max((d->>'cycles')::bigint), 0), coalesce(max((d->>'total_cpu_ms')::bigint), 0)
                      FROM jsonb_array_elements(ruvector_dag_healing_status()->'healing'->'databases') d
                     WHERE d->>'database' = '$1'"
}
launcher_counters() {
    sql -d "$1" -c "SELECT h->'launcher'->>'cpu_ms', h->'launcher'->>'wakeups'
                      FROM (SELECT ruvector_dag_healing_status()->'healing' AS h) s"
}
set_interval() {
    sql -d postgres -c "ALTER SYSTEM SET ruvector.dag_healing_interval_ms = $1" -c "SELECT pg_reload_conf()" >/dev/null
}
# Waits until database $1 has run $2 cycles, at most WAIT_S seconds.
wait_cycles() {
    local db="$1" want="$2" deadline=$((SECONDS + WAIT_S)) n
    while :; do
        IFS='|' read -r n _ <<<"$(db_counters "$db")"
        (( n >= want )) && return 0
        if (( SECONDS >= deadline )); then
            grep -v checkpoint "$DATA/server.log" | tail -n 20 >&2 || true
            die "CHECK FAILED: database $db ran $n of $want healing cycles within $WAIT_S s (server log: $DATA/server.log)"
        fi
        sleep 0.3
    done
}

server="$(sql -d postgres -c "SHOW server_version")"
log "$TABLES tables x $ROWS x $DIM, HNSW (m = 16, ef_construction = 64) each; interval $INTERVAL_MS ms; PostgreSQL $server"
printf '\n%-4s %7s %12s %10s %12s %9s %12s %9s\n' run cycles ms/cycle probes_ms launcher_ms wakeups ms/hour "% core"
plains=(); probess=(); wakes=(); hours=(); pcts=()
for r in $(seq 1 "$REPEAT"); do
    db="bench_overhead_$r"
    sql -d postgres -c "CREATE DATABASE $db"
    PGOPTIONS="-c client_min_messages=warning" sql -d "$db" \
        -c "CREATE EXTENSION vector" -c "CREATE EXTENSION ruvector_healing"
    for i in $(seq 0 $((TABLES - 1))); do
        printf 'CREATE TABLE t%d (id bigserial PRIMARY KEY, embedding vector(%d));\n' "$i" "$DIM"
        printf 'INSERT INTO t%d (embedding) SELECT array(SELECT 0 + random() * 1 + g * 0 FROM generate_series(1, %d))::vector FROM generate_series(1, %d) g;\n' "$i" "$DIM" "$ROWS"
        printf 'CREATE INDEX t%d_idx ON t%d USING hnsw (embedding vector_l2_ops);\n' "$i" "$i"
    done | sql -d "$db"
    [[ "$(sql -d "$db" -c "SELECT count(DISTINCT embedding) > 1 FROM (SELECT embedding FROM t0 LIMIT 100) s")" == t ]] \
        || die "t0 holds identical vectors"

    IFS='|' read -r lcpu_a lwake_a <<<"$(launcher_counters "$db")"
    set_interval "$INTERVAL_MS"
    # The first cycle probes the recall of every index (due once an hour by
    # default); the next ones only inspect.
    wait_cycles "$db" 2
    probed="$(sql -d "$db" -c "SELECT count(*) FROM ruvector_healing.observations WHERE recall IS NOT NULL")"
    (( probed == TABLES )) || die "CHECK FAILED: $probed recall probes in the first two cycles of $db, expected $TABLES (one per index)"
    IFS='|' read -r n0 cpu0 <<<"$(db_counters "$db")"
    wait_cycles "$db" $((n0 + CYCLES))
    IFS='|' read -r n1 cpu1 <<<"$(db_counters "$db")"
    IFS='|' read -r lcpu_b lwake_b <<<"$(launcher_counters "$db")"
    set_interval "$IDLE_INTERVAL_MS"
    repairs="$(sql -d "$db" -c "SELECT count(*) FROM ruvector_healing.repairs")"
    (( repairs == 0 )) || warn "run $r: $repairs repairs were requested on healthy indexes"

    plain="$(calc "($cpu1 - $cpu0) / ($n1 - $n0)")"
    # The first cycle also probed the recall of every index.
    probes="$(calc "($cpu0 - $n0 * $plain) > 0 ? $cpu0 - $n0 * $plain : 0")"
    # The launcher's wake-ups during this run (all at the short interval).
    (( lwake_b > lwake_a )) || die "CHECK FAILED: the launcher did not wake up during run $r"
    per_wake="$(calc "($lcpu_b - $lcpu_a) / ($lwake_b - $lwake_a)")"
    # An hour at the defaults: a cycle every 300 s (12), each index's recall
    # probed once (ruvector.dag_healing_recall_interval_s = 3600), the launcher
    # waking every 5 s (720).
    hour="$(calc "12 * $plain + $probes + 720 * $per_wake")"
    pct="$(calc "$hour / 3600000 * 100")"
    plains+=("$plain"); probess+=("$probes"); wakes+=("$per_wake"); hours+=("$hour"); pcts+=("$pct")
    printf '%-4s %7s %12.1f %10.0f %12.2f %9s %12.0f %9.4f\n' "$r" "$n0+$((n1 - n0))" "$plain" "$probes" "$per_wake" \
        "$((lwake_b - lwake_a))" "$hour" "$pct"

    if (( r < REPEAT )); then
        # Cycles have stopped (the interval is a day again); wait until no
        # worker is connected to the database, then drop it.
        sleep 1
        deadline=$((SECONDS + WAIT_S))
        until [[ "$(sql -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$db' AND pid <> pg_backend_pid()")" == 0 ]]; do
            (( SECONDS < deadline )) || die "a process is still connected to $db after $WAIT_S s"
            sleep 0.3
        done
        sql -d postgres -c "DROP DATABASE $db WITH (FORCE)"
    fi
done

mp="$(median "${pcts[@]}")"
goal=MISS; awk "BEGIN {exit !($mp < $GOAL_PCT)}" && goal=PASS
check=PASS; awk "BEGIN {exit !($mp <= $BOUND_PCT)}" || check=FAIL
printf '\n%s healthy HNSW indexes (%s x %s each), PostgreSQL %s, medians of %s (commit %s)\n' "$TABLES" "$ROWS" "$DIM" \
    "$server" "$REPEAT" "$(git -C "$ROOT" describe --always --dirty)"
printf 'overhead: %.0f ms CPU per cycle, %.0f ms for the %s recall probes, %.2f ms per launcher wake-up; an hour at the defaults: %.1f s CPU = %.2f %% of one core (goal < %s %%: %s; check <= %s %%: %s)\n' \
    "$(median "${plains[@]}")" "$(median "${probess[@]}")" "$TABLES" "$(median "${wakes[@]}")" \
    "$(calc "$(median "${hours[@]}") / 1000")" "$mp" "$GOAL_PCT" "$goal" "$BOUND_PCT" "$check"
[[ "$check" == PASS ]] || die "CHECK FAILED: background healing costs $mp % of one core (median of $REPEAT), above the bound of $BOUND_PCT %"
