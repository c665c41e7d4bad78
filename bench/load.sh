#!/usr/bin/env bash
# Write throughput during a repair: CLIENTS pgbench clients on table t (ROWS
# random DIM-dimensional vectors, an HNSW index) run a mix of 3 reads
#   SELECT id FROM t ORDER BY embedding <-> '<random vector>' LIMIT 10
# to 1 write (BEGIN; INSERT a random vector; UPDATE a random row's vector;
# COMMIT). Committed write transactions per second are counted as in the
# integration test repair_under_pgbench_fails_no_transaction: rows inserted
# (created_at, server clock) during a pgbench run of BEFORE_S seconds, and,
# under the same load, between the repair's started_at and finished_at, the
# repair being ruvector_dag_repair_index('t_idx', 'rebuild') requested LEAD_S
# seconds into the load. That load is pgbench runs of SEG_S seconds back to
# back until the repair is done (its length is not known in advance, and only
# a pgbench that ends by itself reports its failed transactions). Reads per
# second come from pgbench's transaction log over the same windows. REPEAT
# runs, each on a freshly generated table.
# Goal: no failed transaction, the repair ends 'done', writes go on. The check
# fails (exit 1) on any failed transaction, a repair not 'done', or a median
# ratio (writes/s during / before) below 0.25 (generous: the machine has 2
# shared cores and the index build competes with the clients).
# Own server (port 28872 or LOAD_BENCH_PORT, data $RV_HOME/bench-load-data,
# recreated on every run, stopped on exit), release build, run from a private
# copy of the Postgres install ($RV_HOME/bench-load-pg).
#   REPEAT (3) ROWS (30000) DIM (16) CLIENTS (4) THREADS (2)
#   BEFORE_S (20) LEAD_S (3) SEG_S (10)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/../scripts/setup.sh" >/dev/null
# shellcheck source-path=SCRIPTDIR source=../scripts/common.sh
source "$here/../scripts/common.sh"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

REPEAT="${REPEAT:-3}"
ROWS="${ROWS:-30000}"
DIM="${DIM:-16}"
CLIENTS="${CLIENTS:-4}"
THREADS="${THREADS:-2}"
BEFORE_S="${BEFORE_S:-20}"
LEAD_S="${LEAD_S:-3}"
SEG_S="${SEG_S:-10}"
PORT="${LOAD_BENCH_PORT:-28872}"
for v in REPEAT ROWS DIM CLIENTS THREADS BEFORE_S LEAD_S SEG_S PORT; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
(( THREADS <= CLIENTS )) || die "THREADS ($THREADS) must not exceed CLIENTS ($CLIENTS)"
DATA="$RV_HOME/bench-load-data"
DB=bench
BOUND=0.25

q() { pg_psql "$PORT" -d "$DB" -tA -F '|' "$@"; }

PRIV="$RV_HOME/bench-load-pg"

tmp="$(mktemp -d)"
load_pid=""
cleanup() {
    if [[ -n "$load_pid" ]]; then
        touch "$tmp/stop"
        [[ -f "$tmp/pgbench.pid" ]] && kill "$(cat "$tmp/pgbench.pid")" 2>/dev/null
        wait "$load_pid" 2>/dev/null
    fi
    pg_stop "$DATA" && rm -rf "$PRIV"
    rm -rf "$tmp"
}
trap 'cleanup || true' EXIT
pg_stop "$DATA" || true
private_install "$PRIV"
rm -rf "$DATA"
pg_initdb "$DATA"
# A day between healing cycles: no background cycle (recall probes,
# automatic repairs) during the measurement; the first one would come one
# interval after the start.
pg_write_conf "$DATA" "$PORT" "ruvector.dag_healing_interval_ms = 86400000"
pg_start "$DATA"
pg_psql "$PORT" -d postgres -c "CREATE DATABASE $DB"
PGOPTIONS="-c client_min_messages=warning" q -c "CREATE EXTENSION vector" -c "CREATE EXTENSION ruvector_healing"

# pgbench scripts. The read's query vector is a literal built from pgbench
# variables (random() returns integers; the division makes doubles).
{
    for i in $(seq 1 "$DIM"); do printf '\\set x%d random(0, 999999) / 1000000.0\n' "$i"; done
    printf "SELECT id FROM t ORDER BY embedding <-> '[%s]' LIMIT 10;\n" "$(seq -s, -f ':x%g' 1 "$DIM")"
} > "$tmp/read.sql"
cat > "$tmp/write.sql" <<SQL
\set id random(1, $ROWS)
BEGIN;
INSERT INTO t (embedding) SELECT array(SELECT random() FROM generate_series(1, $DIM))::vector;
UPDATE t SET embedding = array(SELECT random() + :id * 0 FROM generate_series(1, $DIM))::vector WHERE id = :id;
COMMIT;
SQL

# pgbench for $1 seconds, logging every transaction to $tmp/$2.*; output in
# $tmp/$2.out, exit status in $tmp/$2.rc.
run_pgbench() {
    local rc=0
    "$PG_BIN/pgbench" -n -c "$CLIENTS" -j "$THREADS" -T "$1" -l --log-prefix="$tmp/$2" \
        -f "$tmp/read.sql@3" -f "$tmp/write.sql@1" -h 127.0.0.1 -p "$PORT" -U postgres "$DB" > "$tmp/$2.out" 2>&1 &
    echo $! > "$tmp/pgbench.pid"
    wait $! || rc=$?
    echo "$rc" > "$tmp/$2.rc"
    return "$rc"
}
# Runs of SEG_S seconds (during-1, during-2, ...) until $tmp/stop exists or one fails.
load_until_stopped() {
    local seg=0
    while [[ ! -e "$tmp/stop" ]]; do
        seg=$((seg + 1))
        run_pgbench "$SEG_S" "during-$seg" || return 0
    done
}
# Fails unless pgbench run $1 exited 0 with no failed transaction.
check_pgbench() {
    local failed rc
    rc="$(cat "$tmp/$1.rc")"
    failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$tmp/$1.out")"
    if [[ "$rc" != 0 || "${failed:-x}" != 0 ]]; then
        cat "$tmp/$1.out" >&2
        die "CHECK FAILED: pgbench ($1) exited $rc with ${failed:-unknown} failed transactions"
    fi
}
# Committed writes per second between two server timestamps: rows inserted.
writes_between() {
    q -c "SELECT count(*)::float8 / greatest(extract(epoch FROM '$2'::timestamptz - '$1'::timestamptz), 0.001)
            FROM t WHERE created_at >= '$1' AND created_at < '$2'"
}
# Reads per second between two server timestamps, from pgbench's logs of the
# runs named $1 (a glob; lines: client, transaction, latency, script, epoch s,
# us; script 0 is the read, a failed transaction has no latency).
reads_between() {
    local from to
    IFS='|' read -r from to <<<"$(q -c "SELECT extract(epoch FROM '$2'::timestamptz), extract(epoch FROM '$3'::timestamptz)")"
    # shellcheck disable=SC2086  # $1 is a glob
    cat "$tmp"/$1.[0-9]* | awk -v a="$from" -v b="$to" '
        $4 == 0 && $3 ~ /^[0-9]+$/ { t = $5 + $6 / 1e6; if (t >= a && t < b) n++ }
        END { printf "%.4f", n / ((b - a) > 0.001 ? (b - a) : 0.001) }'
}
# Phases of repair $1 in seconds, from the journal: start (request -> worker
# started), plan (-> building), build (-> validating: the shadow's CREATE
# INDEX CONCURRENTLY), validate (-> swapping), swap+retire (-> done).
phases() {
    q -c "WITH s AS (SELECT step, min(at) AS at FROM ruvector_healing.repair_steps WHERE repair_id = $1 GROUP BY step),
               r AS (SELECT requested_at, started_at FROM ruvector_healing.repairs WHERE repair_id = $1)
          SELECT format('start %s s, plan %s s, build %s s, validate %s s, swap+retire %s s',
                        round(extract(epoch FROM r.started_at - r.requested_at), 2),
                        round(extract(epoch FROM (SELECT at FROM s WHERE step = 'building') - r.started_at), 2),
                        round(extract(epoch FROM (SELECT at FROM s WHERE step = 'validating') - (SELECT at FROM s WHERE step = 'building')), 2),
                        round(extract(epoch FROM (SELECT at FROM s WHERE step = 'swapping') - (SELECT at FROM s WHERE step = 'validating')), 2),
                        round(extract(epoch FROM (SELECT at FROM s WHERE step = 'done') - (SELECT at FROM s WHERE step = 'swapping')), 2))
            FROM r"
}
# Exactly the primary key and t_idx, both valid.
check_indexes() {
    local got
    got="$(q -c "SELECT string_agg(c.relname || CASE WHEN i.indisvalid THEN '' ELSE ' (invalid)' END, ', ' ORDER BY c.relname)
                   FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 't'::regclass")"
    [[ "$got" == "t_idx, t_pkey" ]] || die "indexes on t are: $got (expected t_idx, t_pkey)"
}

server="$(q -c "SHOW server_version")"
pgvector="$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'")"
mwm="$(q -c "SHOW maintenance_work_mem")"
mpmw="$(q -c "SHOW max_parallel_maintenance_workers")"
log "$ROWS x $DIM, HNSW (m = 16, ef_construction = 64), $CLIENTS clients / $THREADS threads, reads:writes 3:1; pgvector $pgvector, PostgreSQL $server, maintenance_work_mem = $mwm, max_parallel_maintenance_workers = $mpmw"
printf '\n%-4s %10s %10s %7s %10s %10s %7s %9s %8s %5s\n' run writes/s w/s_rep ratio reads/s r/s_rep ratio repair_s build_s runs
ratios=(); befores=(); durings=(); rratios=(); rbefores=(); rdurings=(); durs=()
for r in $(seq 1 "$REPEAT"); do
    rm -f "$tmp"/before* "$tmp"/during* "$tmp/stop"
    PGOPTIONS="-c client_min_messages=warning" q -c "DROP TABLE IF EXISTS t" \
      -c "CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector($DIM),
                          created_at timestamptz NOT NULL DEFAULT clock_timestamp())" \
      -c "INSERT INTO t (embedding) SELECT array(SELECT random() + g * 0 FROM generate_series(1, $DIM))::vector FROM generate_series(1, $ROWS) g" \
      -c "VACUUM ANALYZE t"
    # The index build without load, for comparison with the repair's build.
    out="$(q <<SQL
\set t0 \`date +%s%N\`
CREATE INDEX t_idx ON t USING hnsw (embedding vector_l2_ops);
\set t1 \`date +%s%N\`
\echo :t0 :t1
SQL
)"
    read -r b0 b1 <<<"${out##*$'\n'}"
    q -c "CHECKPOINT"
    [[ "$(q -c "SELECT count(DISTINCT embedding) > 1 FROM (SELECT embedding FROM t LIMIT 100) s")" == t ]] \
        || die "t holds identical vectors"

    # Before: a run of its own.
    t0="$(q -c "SELECT clock_timestamp()")"
    run_pgbench "$BEFORE_S" before || true
    t1="$(q -c "SELECT clock_timestamp()")"
    check_pgbench before
    before="$(writes_between "$t0" "$t1")"
    rbefore="$(reads_between before "$t0" "$t1")"

    # During: the repair is requested LEAD_S seconds into the load, which
    # goes on until the repair is done. The session's settings travel with
    # the request: no backup kept (one index remains), no cooldown and
    # attempts limit (every run rebuilds t_idx).
    load_until_stopped &
    load_pid=$!
    sleep "$LEAD_S"
    out="$(q <<SQL
SET ruvector.dag_healing_rollback_enabled = off;
SET ruvector.dag_healing_cooldown_s = 0;
SET ruvector.dag_healing_max_attempts = 100;
SET ruvector.dag_healing_repair_timeout_s = 3600;
SELECT ruvector_dag_repair_index('t_idx'::regclass, 'rebuild') AS id \gset
CALL ruvector_dag_wait_repair(:id, 3600, NULL) \g /dev/null
\echo :id
SQL
)"
    id="${out##*$'\n'}"
    touch "$tmp/stop"
    wait "$load_pid"
    load_pid=""
    segs=0
    while [[ -f "$tmp/during-$((segs + 1)).rc" ]]; do
        segs=$((segs + 1))
        check_pgbench "during-$segs"
    done
    IFS='|' read -r status started finished dur err <<<"$(q -c "SELECT status, started_at, finished_at, duration_ms, coalesce(error, '')
                                                              FROM ruvector_dag_repair_history('t'::regclass, 1) WHERE repair_id = $id")"
    if [[ "$status" != done ]]; then
        q -c "SELECT step, at, detail FROM ruvector_healing.repair_steps WHERE repair_id = $id ORDER BY step_id" >&2 || true
        grep -v checkpoint "$DATA/server.log" | tail -n 20 >&2 || true
        die "CHECK FAILED: repair $id ended '$status' (not 'done'): $err (server log: $DATA/server.log)"
    fi
    check_indexes
    during="$(writes_between "$started" "$finished")"
    rduring="$(reads_between 'during-*' "$started" "$finished")"

    ratio="$(calc "$during / ($before > 0 ? $before : 0.001)")"
    rratio="$(calc "$rduring / ($rbefore > 0 ? $rbefore : 0.001)")"
    ratios+=("$ratio"); befores+=("$before"); durings+=("$during")
    rratios+=("$rratio"); rbefores+=("$rbefore"); rdurings+=("$rduring"); durs+=("$dur")
    printf '%-4s %10.1f %10.1f %7.2f %10.1f %10.1f %7.2f %9.2f %8.2f %5s\n' "$r" "$before" "$during" "$ratio" \
        "$rbefore" "$rduring" "$rratio" "$(calc "$dur / 1000")" "$(calc "($b1 - $b0) / 1e9")" "1+$segs"
    printf '     repair %s: %s\n' "$id" "$(phases "$id")"
done

mr="$(median "${ratios[@]}")"
check=PASS; awk "BEGIN {exit !($mr >= $BOUND)}" || check=FAIL
printf '\n%s x %s, HNSW m = 16, ef_construction = 64, %s pgbench clients (reads:writes 3:1), PostgreSQL %s, pgvector %s, medians of %s (commit %s)\n' \
    "$ROWS" "$DIM" "$CLIENTS" "$server" "$pgvector" "$REPEAT" "$(git -C "$ROOT" describe --always --dirty)"
printf 'under load: 0 failed transactions, every repair done (%.1f s); writes/s %.1f before, %.1f during the repair: ratio %.2f (runs %s; check >= %s: %s); reads/s %.1f before, %.1f during: ratio %.2f\n' \
    "$(calc "$(median "${durs[@]}") / 1000")" "$(median "${befores[@]}")" "$(median "${durings[@]}")" "$mr" \
    "$(printf '%.2f ' "${ratios[@]}" | sed 's/ $//; s/ /, /g')" "$BOUND" "$check" "$(median "${rbefores[@]}")" \
    "$(median "${rdurings[@]}")" "$(median "${rratios[@]}")"
[[ "$check" == PASS ]] || die "CHECK FAILED: write throughput during the repair / before it is $mr (median of $REPEAT), below the bound of $BOUND"
