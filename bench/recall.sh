#!/usr/bin/env bash
# Recall estimate cost, measured side by side in one run:
#   exact part of ruvector_dag_recall_estimate (one batched heap pass for 100
#   queries) / the same 100 exact queries run one by one as
#   ORDER BY embedding <-> q LIMIT 10 with index scans disabled (goal <= 0.1),
#   and the whole function / the 100 ANN queries alone.
# Own server (port 28850, data $RV_HOME/bench-recall-data), release build.
#   ROWS (200000) DIM (128) REPEAT (3) SAMPLE (100) K (10)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/../scripts/setup.sh" >/dev/null
# shellcheck source-path=SCRIPTDIR source=../scripts/common.sh
source "$here/../scripts/common.sh"

ROWS="${ROWS:-200000}"
DIM="${DIM:-128}"
REPEAT="${REPEAT:-3}"
SAMPLE="${SAMPLE:-100}"
K="${K:-10}"
PORT="${RECALL_BENCH_PORT:-28850}"
DATA="$RV_HOME/bench-recall-data"
DB=bench
LISTS=$(( ROWS / 1000 > 1 ? ROWS / 1000 : 1 ))

q() { pg_psql "$PORT" -d "$DB" -tA -F '|' "$@"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
calc() { awk "BEGIN {printf \"%.4f\", $1}"; }

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

# Data and indexes, kept between runs.
have="$(q -c "SELECT count(*) FROM bench_recall" 2>/dev/null || echo 0)"
if [[ "$have" != "$ROWS" ]] || [[ "$(q -c "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'bench_recall'::regclass AND attname = 'embedding'")" != "$DIM" ]]; then
    log "Generating $ROWS x $DIM random vectors"
    q -c "DROP TABLE IF EXISTS bench_recall" \
      -c "CREATE TABLE bench_recall (id bigserial PRIMARY KEY, embedding vector($DIM))" \
      -c "INSERT INTO bench_recall (embedding) SELECT array(SELECT random() + g * 0 FROM generate_series(1, $DIM))::vector FROM generate_series(1, $ROWS) g" \
      -c "VACUUM ANALYZE bench_recall"
    log "Building HNSW (m = 16, ef_construction = 64) and IVFFlat (lists = $LISTS)"
    q -c "CREATE INDEX bench_recall_hnsw ON bench_recall USING hnsw (embedding vector_l2_ops)" \
      -c "CREATE INDEX bench_recall_ivf ON bench_recall USING ivfflat (embedding vector_l2_ops) WITH (lists = $LISTS)"
fi
q -c "SELECT pg_prewarm('bench_recall'), pg_prewarm('bench_recall_hnsw'), pg_prewarm('bench_recall_ivf')" >/dev/null

# bench_queries(idx, exact, n, k): runs n queries (random rows' vectors) one by
# one, through the index or exactly, and returns the elapsed ms.
q >/dev/null <<'SQL'
CREATE OR REPLACE FUNCTION bench_queries(use_index bool, n int, k int) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
    qs vector[];
    v vector;
    t0 timestamptz;
    got bigint[];
BEGIN
    SELECT array_agg(embedding) INTO qs FROM (SELECT embedding FROM bench_recall ORDER BY random() LIMIT n) s;
    IF use_index THEN
        PERFORM set_config('enable_seqscan', 'off', true);
    ELSE
        PERFORM set_config('enable_indexscan', 'off', true);
        PERFORM set_config('enable_bitmapscan', 'off', true);
    END IF;
    t0 := clock_timestamp();
    FOREACH v IN ARRAY qs LOOP
        SELECT array_agg(id) INTO got FROM
            (SELECT id FROM bench_recall ORDER BY embedding <-> v LIMIT k) s;
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;
SQL

printf '\n%-8s %-9s %10s %10s %10s %10s %12s %12s %8s\n' index run exact_ms seq_1by1 seq_1by1_p0 ratio ratio_p0 est/ann recall
summary=()
for idx in bench_recall_hnsw bench_recall_ivf; do
    exact=(); seqs=(); seqs0=(); totals=(); anns=(); recalls=()
    for r in $(seq 1 "$REPEAT"); do
        row="$(q -c "SELECT e->>'exact_ms', e->>'total_ms', e->>'recall' FROM ruvector_dag_recall_estimate('$idx', $SAMPLE, $K) e")"
        IFS='|' read -r ex tot rec <<<"$row"
        seq_ms="$(q -c "SELECT bench_queries(false, $SAMPLE, $K)")"
        seq0_ms="$(q -c "SET max_parallel_workers_per_gather = 0" -c "SELECT bench_queries(false, $SAMPLE, $K)" | tail -n1)"
        ann_ms="$(q -c "SELECT bench_queries(true, $SAMPLE, $K)")"
        exact+=("$ex"); seqs+=("$seq_ms"); seqs0+=("$seq0_ms"); totals+=("$tot"); anns+=("$ann_ms"); recalls+=("$rec")
        printf '%-8s %-9s %10.1f %10.1f %10.1f %10s %12s %12s %8s\n' "${idx#bench_recall_}" "$r" "$ex" "$seq_ms" "$seq0_ms" \
            "$(calc "$ex / $seq_ms")" "$(calc "$ex / $seq0_ms")" "$(calc "$tot / $ann_ms")" "$rec"
    done
    me="$(median "${exact[@]}")"; ms="$(median "${seqs[@]}")"; ms0="$(median "${seqs0[@]}")"
    mt="$(median "${totals[@]}")"; ma="$(median "${anns[@]}")"
    verdict=MISS; awk "BEGIN {exit !($me / $ms <= 0.1)}" && verdict=PASS
    summary+=("$(printf '%-8s exact part %.0f ms / %d exact queries one by one %.0f ms = %s (goal <= 0.1: %s; with parallel workers off: %.0f ms, %s) | whole estimate %.0f ms / %d ANN queries %.0f ms = %s | recall %s' \
        "${idx#bench_recall_}" "$me" "$SAMPLE" "$ms" "$(calc "$me / $ms")" "$verdict" "$ms0" "$(calc "$me / $ms0")" \
        "$mt" "$SAMPLE" "$ma" "$(calc "$mt / $ma")" "$(median "${recalls[@]}")")")
done
printf '\n%s x %s, k = %s, %s sampled queries, medians of %s (commit %s)\n' "$ROWS" "$DIM" "$K" "$SAMPLE" "$REPEAT" \
    "$(git -C "$ROOT" rev-parse --short HEAD)"
printf '%s\n' "${summary[@]}"
