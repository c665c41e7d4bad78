#!/usr/bin/env bash
# Shadow rebuild cost, measured side by side in one run: end-to-end time of
#   ruvector_dag_repair_index(hnsw, 'rebuild') + CALL ruvector_dag_wait_repair
# (health of the old index, CREATE INDEX CONCURRENTLY of the shadow,
# validation, swap, DROP INDEX CONCURRENTLY of the old one) / a plain
# CREATE INDEX CONCURRENTLY of the same definition on the same table
# (goal <= 1.15), alternating CIC, repair, CIC, repair, ...
# Own server (port 28870, data $RV_HOME/bench-repair-data), release build.
#   ROWS (100000) DIM (128) REPEAT (3)
#   EF_SEARCH (unset: pgvector's default 40): hnsw.ef_search of the requesting
#   session, at which validation compares old and new index (no effect on builds)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/../scripts/setup.sh" >/dev/null
# shellcheck source-path=SCRIPTDIR source=../scripts/common.sh
source "$here/../scripts/common.sh"

ROWS="${ROWS:-100000}"
DIM="${DIM:-128}"
REPEAT="${REPEAT:-3}"
PORT="${REPAIR_BENCH_PORT:-28870}"
EF_SEARCH="${EF_SEARCH:-}"
[[ -z "$EF_SEARCH" || "$EF_SEARCH" =~ ^[0-9]+$ ]] || die "EF_SEARCH must be a positive integer (got '$EF_SEARCH')"
for v in ROWS DIM REPEAT PORT; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
DATA="$RV_HOME/bench-repair-data"
DB=bench
TABLE=bench_repair
IDX=bench_repair_hnsw
PLAIN=bench_repair_plain
WITH="WITH (m = 16, ef_construction = 64)"

q() { pg_psql "$PORT" -d "$DB" -tA -F '|' "$@"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
calc() { awk "BEGIN {printf \"%.4f\", $1}"; }
sec() { awk "BEGIN {printf \"%.2f\", ($1) / 1000}"; }   # ms -> s
fmt3() { awk "BEGIN {printf \"%.3f\", $1}"; }

# The release build, also when someone installed another one meanwhile.
lib="$PG_INSTALL/lib/ruvector_healing.so"
(cd "$ROOT" && cargo build --release --quiet)
cmp -s "$ROOT/target/release/libruvector_healing.so" "$lib" || install_extension --release >/dev/null

trap 'pg_stop "$DATA" || true' EXIT
if [[ ! -f "$DATA/PG_VERSION" ]]; then
    pg_initdb "$DATA"
fi
pg_write_conf "$DATA" "$PORT" "shared_buffers = 2GB" "maintenance_work_mem = 2GB" \
    "max_parallel_maintenance_workers = 1" "autovacuum = off"
pg_stop "$DATA"
pg_start "$DATA"
pg_psql "$PORT" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 \
    || pg_psql "$PORT" -d postgres -c "CREATE DATABASE $DB"
PGOPTIONS="-c client_min_messages=warning" q -c "CREATE EXTENSION IF NOT EXISTS vector" \
    -c "CREATE EXTENSION IF NOT EXISTS ruvector_healing" -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm"

# Data and index, kept between runs. A plain index left by an interrupted run
# is dropped; the HNSW index is (re)built when missing or defined otherwise.
export PGOPTIONS="-c client_min_messages=warning"   # no NOTICEs from IF EXISTS
q -c "DROP INDEX IF EXISTS $PLAIN" 2>/dev/null || true
have="$(q -c "SELECT count(*) FROM $TABLE" 2>/dev/null || echo 0)"
if [[ "$have" != "$ROWS" ]] || [[ "$(q -c "SELECT atttypmod FROM pg_attribute WHERE attrelid = '$TABLE'::regclass AND attname = 'embedding'")" != "$DIM" ]]; then
    log "Generating $ROWS x $DIM random vectors"
    q -c "DROP TABLE IF EXISTS $TABLE" \
      -c "CREATE TABLE $TABLE (id bigserial PRIMARY KEY, embedding vector($DIM))" \
      -c "INSERT INTO $TABLE (embedding) SELECT array(SELECT random() + g * 0 FROM generate_series(1, $DIM))::vector FROM generate_series(1, $ROWS) g" \
      -c "VACUUM ANALYZE $TABLE"
fi
want="CREATE INDEX $IDX ON public.$TABLE USING hnsw (embedding vector_l2_ops) WITH (m='16', ef_construction='64')"
if [[ "$(q -c "SELECT pg_get_indexdef(to_regclass('$IDX'))")" != "$want" ]]; then
    log "Building HNSW $IDX (m = 16, ef_construction = 64)"
    q -c "DROP INDEX IF EXISTS $IDX" -c "CREATE INDEX $IDX ON $TABLE USING hnsw (embedding vector_l2_ops) $WITH"
fi
[[ "$(q -c "SELECT count(DISTINCT embedding) FROM (SELECT embedding FROM $TABLE LIMIT 100) s")" -gt 1 ]] \
    || die "$TABLE holds identical vectors; drop it and re-run"
q -c "SELECT pg_prewarm('$TABLE')" >/dev/null
unset PGOPTIONS

# Exactly the primary key and $IDX, both valid: the same starting point for
# every measurement (an interrupted repair may have left a shadow or backup).
check_indexes() {
    local got
    got="$(q -c "SELECT string_agg(c.relname || CASE WHEN i.indisvalid THEN '' ELSE ' (invalid)' END, ', ' ORDER BY c.relname)
                   FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = '$TABLE'::regclass")"
    [[ "$got" == "$IDX, ${TABLE}_pkey" ]] || die "indexes on $TABLE are: $got (expected $IDX, ${TABLE}_pkey)"
}

# One psql session per measurement. psql's backtick \set runs `date` on the
# client right before the first timed statement and right after the last one
# returns; connecting and the session settings are outside the timed span.
plain_cic() {
    q <<SQL
\set t0 \`date +%s%N\`
CREATE INDEX CONCURRENTLY $PLAIN ON $TABLE USING hnsw (embedding vector_l2_ops) $WITH;
\set t1 \`date +%s%N\`
\echo :t0 :t1
SQL
}
# The rollback and cooldown settings are captured with the request and used by
# the worker; so are maintenance_work_mem and max_parallel_maintenance_workers,
# which this session takes unchanged from the server configuration, as the
# plain CIC session does. The repair timeout only matters for large ROWS; the
# attempts limit keeps failures of earlier runs from pausing this index's
# repairs for a day (circuit breaker).
shadow_rebuild() {
    q <<SQL
SET ruvector.dag_healing_rollback_enabled = off;
SET ruvector.dag_healing_cooldown_s = 0;
SET ruvector.dag_healing_repair_timeout_s = 3600;
SET ruvector.dag_healing_max_attempts = 100;
${EF_SEARCH:+SET hnsw.ef_search = $EF_SEARCH;}
\set t0 \`date +%s%N\`
SELECT ruvector_dag_repair_index('$IDX'::regclass, 'rebuild') AS id \gset
CALL ruvector_dag_wait_repair(:id, 3600, NULL) \g /dev/null
\set t1 \`date +%s%N\`
\echo :id :t0 :t1
SQL
}

# Worker phases of repair $1 in ms, from the journal (server clock):
# start = requested -> worker started, plan = started -> 'building' (health of
# the old index, the plan), build = 'building' -> 'validating' (CIC of the
# shadow), validate = -> 'swapping' (health of the new index, recall of 100
# sampled queries on both indexes vs exact answers), swap_retire = -> 'done'
# (renames, DROP INDEX CONCURRENTLY of the old index), and done_epoch_ns.
phases() {
    q -c "WITH s AS (SELECT step, min(at) AS at FROM ruvector_healing.repair_steps WHERE repair_id = $1 GROUP BY step),
               r AS (SELECT requested_at, started_at FROM ruvector_healing.repairs WHERE repair_id = $1)
          SELECT round(extract(epoch FROM r.started_at - r.requested_at) * 1000),
                 round(extract(epoch FROM b.at - r.started_at) * 1000),
                 round(extract(epoch FROM v.at - b.at) * 1000),
                 round(extract(epoch FROM w.at - v.at) * 1000),
                 round(extract(epoch FROM d.at - w.at) * 1000),
                 round(extract(epoch FROM d.at) * 1e9)::bigint
            FROM r, (SELECT at FROM s WHERE step = 'building') b, (SELECT at FROM s WHERE step = 'validating') v,
                 (SELECT at FROM s WHERE step = 'swapping') w, (SELECT at FROM s WHERE step = 'done') d"
}

pgvector="$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'")"
server="$(q -c "SHOW server_version")"
mwm="$(q -c "SHOW maintenance_work_mem")"
mpmw="$(q -c "SHOW max_parallel_maintenance_workers")"
log "$ROWS x $DIM, pgvector $pgvector, PostgreSQL $server, maintenance_work_mem = $mwm, max_parallel_maintenance_workers = $mpmw${EF_SEARCH:+, validation at hnsw.ef_search = $EF_SEARCH}"

printf '\n%-4s %9s %9s %7s %9s %7s %7s %9s %9s %9s %7s %10s\n' run cic_s repair_s ratio worker_s start plan build validate swap+ret tail build/cic
cics=(); reps=(); ratios=(); workers=(); starts=(); plans=(); builds=(); vals=(); swaps=(); tails=()
for r in $(seq 1 "$REPEAT"); do
    check_indexes
    q -c "CHECKPOINT"
    out="$(plain_cic)"
    read -r t0 t1 <<<"${out##*$'\n'}"
    cic_ms="$(calc "($t1 - $t0) / 1e6")"
    q -c "DROP INDEX $PLAIN"

    check_indexes
    q -c "CHECKPOINT"
    out="$(shadow_rebuild)"
    read -r id t0 t1 <<<"${out##*$'\n'}"
    rep_ms="$(calc "($t1 - $t0) / 1e6")"
    hist="$(q -c "SELECT status, duration_ms, coalesce(error, '') FROM ruvector_dag_repair_history('$TABLE'::regclass, 1) WHERE repair_id = $id")"
    IFS='|' read -r status dur err <<<"$hist"
    if [[ "$status" != done ]]; then
        warn "repair $id ended '$status': $err"
        q -c "SELECT step, at, detail FROM ruvector_healing.repair_steps WHERE repair_id = $id ORDER BY step_id" >&2 || true
        q -c "SELECT 'recall: ' || coalesce(after->>'recall', '-'), 'validation: ' || coalesce(after->>'validation', '-') FROM ruvector_healing.repairs WHERE repair_id = $id" >&2 || true
        grep -v checkpoint "$DATA/server.log" | tail -n 20 >&2 || true
        die "repair $id did not finish as 'done' (server log: $DATA/server.log)"
    fi
    ph="$(phases "$id")"
    IFS='|' read -r p_start p_plan p_build p_val p_swap done_ns <<<"$ph"
    tail_ms="$(calc "($t1 - $done_ns) / 1e6")"
    if (( r == 1 )); then
        settings="$(q -c "SELECT plan->'settings'->>'maintenance_work_mem', plan->'settings'->>'max_parallel_maintenance_workers', plan->>'statement' FROM ruvector_healing.repairs WHERE repair_id = $id")"
    fi

    cics+=("$cic_ms"); reps+=("$rep_ms"); ratios+=("$(calc "$rep_ms / $cic_ms")"); workers+=("$dur")
    starts+=("$p_start"); plans+=("$p_plan"); builds+=("$p_build"); vals+=("$p_val"); swaps+=("$p_swap"); tails+=("$tail_ms")
    printf '%-4s %9s %9s %7s %9s %7s %7s %9s %9s %9s %7s %10s\n' "$r" "$(sec "$cic_ms")" "$(sec "$rep_ms")" \
        "$(fmt3 "$rep_ms / $cic_ms")" "$(sec "$dur")" "$(sec "$p_start")" "$(sec "$p_plan")" "$(sec "$p_build")" \
        "$(sec "$p_val")" "$(sec "$p_swap")" "$(sec "$tail_ms")" "$(fmt3 "$p_build / $cic_ms")"
done
check_indexes

IFS='|' read -r w_mwm w_mpmw w_stmt <<<"$settings"
mr="$(median "${ratios[@]}")"
verdict=MISS; awk "BEGIN {exit !($mr <= 1.15)}" && verdict=PASS
printf '\n%s x %s, pgvector %s, PostgreSQL %s, medians of %s (commit %s)\n' "$ROWS" "$DIM" "$pgvector" "$server" "$REPEAT" \
    "$(git -C "$ROOT" describe --always --dirty)"
printf 'both builds: maintenance_work_mem = %s, max_parallel_maintenance_workers = %s (worker: %s, %s)\n' "$mwm" "$mpmw" "$w_mwm" "$w_mpmw"
printf 'worker statement: %s\n' "$w_stmt"
printf 'plain CIC %.2f s | shadow rebuild %.2f s end to end (client), worker duration_ms %.0f\n' \
    "$(sec "$(median "${cics[@]}")")" "$(sec "$(median "${reps[@]}")")" "$(median "${workers[@]}")"
printf 'phases (s): start %.2f  plan %.2f  build %.2f  validate %.2f  swap+retire %.2f  tail %.2f (wait polls every 0.1 s)\n' \
    "$(sec "$(median "${starts[@]}")")" "$(sec "$(median "${plans[@]}")")" "$(sec "$(median "${builds[@]}")")" \
    "$(sec "$(median "${vals[@]}")")" "$(sec "$(median "${swaps[@]}")")" "$(sec "$(median "${tails[@]}")")"
printf 'shadow rebuild / plain CIC (median of %s): %.2f (goal <= 1.15: %s)\n' "$REPEAT" "$mr" "$verdict"
