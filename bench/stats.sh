#!/usr/bin/env bash
# Cost of a scrape: the statistics view and the metrics function over
# INDEXES pgvector indexes (half HNSW, half IVFFlat, ROWS x DIM each) with
# DAYS of observation history at the default 5-minute cycle (recall every
# hour), as a Prometheus scrape every 15 s would read them. pgbench runs
# each query for DURATION_S seconds in one session and reports its mean latency, beside
# pg_stat_user_indexes over the same indexes for scale. Goal: both under
# 5 ms; the check fails (exit 1) above 3 x the goal.
# Own server (port 28873 or STATS_BENCH_PORT, data $RV_HOME/bench-stats-data,
# recreated, stopped on exit), release build from a private copy of the
# Postgres install ($RV_HOME/bench-stats-pg).
#   INDEXES (100) ROWS (1000) DIM (16) DAYS (30) DURATION_S (10)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/../scripts/setup.sh" >/dev/null
# shellcheck source-path=SCRIPTDIR source=../scripts/common.sh
source "$here/../scripts/common.sh"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

INDEXES="${INDEXES:-100}"
ROWS="${ROWS:-1000}"
DIM="${DIM:-16}"
DAYS="${DAYS:-30}"
SECONDS_EACH="${DURATION_S:-10}"
PORT="${STATS_BENCH_PORT:-28873}"
for v in INDEXES ROWS DIM DAYS SECONDS_EACH PORT; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
(( INDEXES % 2 == 0 )) || die "INDEXES must be even (half HNSW, half IVFFlat)"
DATA="$RV_HOME/bench-stats-data"
PRIV="$RV_HOME/bench-stats-pg"
GOAL_MS=5
DB=bench
sql() { pg_psql "$PORT" -d "$DB" -tA -F '|' "$@"; }

tmp="$(mktemp -d)"
trap 'pg_stop "$DATA"; rm -rf "$PRIV" "$tmp" || true' EXIT
pg_stop "$DATA" || true
private_install "$PRIV"
rm -rf "$DATA"
pg_initdb "$DATA"
pg_write_conf "$DATA" "$PORT" "ruvector.dag_healing_interval_ms = 86400000" "ruvector.dag_healing_auto_repair = off"
pg_start "$DATA"
pg_psql "$PORT" -d postgres -c "CREATE DATABASE $DB" >/dev/null
PGOPTIONS="-c client_min_messages=warning" sql -c "CREATE EXTENSION vector" -c "CREATE EXTENSION ruvector_healing"

log "creating $INDEXES indexes ($ROWS x $DIM each)"
for i in $(seq 0 $((INDEXES - 1))); do
    am=hnsw; opts=""
    (( i % 2 )) && { am=ivfflat; opts="WITH (lists = 10)"; }
    printf 'CREATE TABLE t%d (id bigserial PRIMARY KEY, embedding vector(%d));\n' "$i" "$DIM"
    printf 'INSERT INTO t%d (embedding) SELECT array(SELECT random() + g * 0 FROM generate_series(1, %d))::vector FROM generate_series(1, %d) g;\n' "$i" "$DIM" "$ROWS"
    printf 'CREATE INDEX t%d_idx ON t%d USING %s (embedding vector_l2_ops) %s;\n' "$i" "$i" "$am" "$opts"
done | PGOPTIONS="-c client_min_messages=warning" sql >/dev/null

# One real cycle (inspection and recall of every index), then its
# observations copied back in time: DAYS of cycles every 5 minutes.
sql -c "SELECT ruvector_dag_run_cycle()" >/dev/null
deadline=$((SECONDS + 600))
until [[ "$(sql -c "SELECT count(DISTINCT index_oid) FROM ruvector_healing.observations")" == "$INDEXES" ]]; do
    (( SECONDS < deadline )) || die "the cycle did not observe $INDEXES indexes within 600 s"
    sleep 1
done
sleep 2
sql -c "INSERT INTO ruvector_healing.observations
            (index_oid, schema_name, index_name, table_oid, observed_at, metrics, recall, probe_ms)
        SELECT o.index_oid, o.schema_name, o.index_name, o.table_oid, o.observed_at - k * interval '5 minutes',
               o.metrics, CASE WHEN k % 12 = 0 THEN o.recall END, o.probe_ms
          FROM ruvector_healing.observations o, generate_series(1, $DAYS * 288 - 1) k" >/dev/null
sql -c "VACUUM ANALYZE ruvector_healing.observations" >/dev/null
obs="$(sql -c "SELECT count(*) FROM ruvector_healing.observations")"
rows="$(sql -c "SELECT count(*) FROM ruvector_dag_stat_indexes")"
(( rows == INDEXES )) || die "CHECK FAILED: the view has $rows rows, expected $INDEXES"
scored="$(sql -c "SELECT count(*) FROM ruvector_dag_stat_indexes WHERE health_score IS NOT NULL AND recall IS NOT NULL")"
(( scored == INDEXES )) || die "CHECK FAILED: $scored of $INDEXES rows have a recall and a health score"
series="$(sql -c "SELECT count(*) FROM regexp_split_to_table(ruvector_dag_metrics(), E'\n') l WHERE l LIKE 'ruvector_%'")"

# Mean latency (ms) of one query over SECONDS_EACH seconds in one session,
# with the simple protocol (parsed and planned every time, as psql and most
# scrapers send it) or, with a second argument "prepared", planned once.
latency() {
    printf '%s\n' "$1" > "$tmp/q.sql"
    "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -n -c 1 -T "$SECONDS_EACH" -M "${2:-simple}" \
        -f "$tmp/q.sql" "$DB" 2>/dev/null \
        | awk -F'= ' '/latency average/ {print $2+0}'
}
view_ms="$(latency "SELECT * FROM ruvector_dag_stat_indexes;")"
view_prepared_ms="$(latency "SELECT * FROM ruvector_dag_stat_indexes;" prepared)"
metrics_ms="$(latency "SELECT ruvector_dag_metrics();")"
pg_ms="$(latency "SELECT * FROM pg_stat_user_indexes;")"
[[ -n "$view_ms" && -n "$metrics_ms" && -n "$pg_ms" ]] || die "pgbench reported no latency"

verdict() { awk "BEGIN {exit !($1 < $GOAL_MS)}" && echo PASS || echo MISS; }
printf '\n%s indexes (%s HNSW, %s IVFFlat; %s x %s each), %s observations (%s days), %s series, PostgreSQL %s (commit %s)\n' \
    "$INDEXES" $((INDEXES / 2)) $((INDEXES / 2)) "$ROWS" "$DIM" "$obs" "$DAYS" "$series" \
    "$(sql -c "SHOW server_version")" "$(git -C "$ROOT" describe --always --dirty)"
printf 'per call: ruvector_dag_stat_indexes %.2f ms (%s; %.2f ms prepared), ruvector_dag_metrics() %.2f ms (%s); pg_stat_user_indexes %.2f ms; ratios %.1f and %.1f (goal < %s ms)\n' \
    "$view_ms" "$(verdict "$view_ms")" "$view_prepared_ms" "$metrics_ms" "$(verdict "$metrics_ms")" "$pg_ms" \
    "$(calc "$view_ms / $pg_ms")" "$(calc "$metrics_ms / $pg_ms")" "$GOAL_MS"
for v in "$view_ms" "$metrics_ms"; do
    awk "BEGIN {exit !($v <= 3 * $GOAL_MS)}" || die "CHECK FAILED: a scrape costs $v ms, above 3 x the goal of $GOAL_MS ms"
done
