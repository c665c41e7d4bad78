#!/usr/bin/env bash
# Benchmark of ruvector_dag_index_health() on a pgvector HNSW and IVFFlat index,
# measured against pg_prewarm() of the same index (see bench/README.md).
#
#   bash bench/inspect.sh                      # 200,000 x 128, 5 repeats
#   ROWS=50000 REPEAT=3 bash bench/inspect.sh  # smaller / quicker
#   IO_METHOD=sync bash bench/inspect.sh       # io_method for the measured runs
#
# Runs its own server (port $BENCH_PORT, default 28840, data $RV_HOME/bench-data)
# with the RELEASE build of the extension, keeps the generated table and
# indexes between runs (only regenerated when ROWS/DIM change), and stops the
# server on exit. Raw measurements and one full report per index are kept in
# $RV_HOME/bench-results/<timestamp>/.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
bash "$here/../scripts/setup.sh"
# shellcheck source=../scripts/common.sh
source "$here/../scripts/common.sh"

# ------------------------------------------------------------------ parameters
ROWS="${ROWS:-200000}"
DIM="${DIM:-128}"
REPEAT="${REPEAT:-5}"
PORT="${BENCH_PORT:-28840}"
IO_METHOD="${IO_METHOD:-}"        # empty: the server default (worker)
SETTLE="${SETTLE:-1}"             # seconds to let a fresh server settle
BATCH="${BATCH:-20000}"           # rows per INSERT while generating data
for v in ROWS DIM REPEAT PORT SETTLE BATCH; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ -z "$IO_METHOD" || "$IO_METHOD" =~ ^(sync|worker|io_uring)$ ]] \
    || die "IO_METHOD must be sync, worker or io_uring (got '$IO_METHOD')"
LISTS=$(( ROWS / 1000 > 0 ? ROWS / 1000 : 1 ))

DATA="$RV_HOME/bench-data"
DB=bench
TABLE=bench_items
HNSW_IDX=bench_items_hnsw
IVF_IDX=bench_items_ivfflat
RESULTS="$RV_HOME/bench-results/inspect-$(date +%Y%m%d-%H%M%S)"
RAW="$RESULTS/raw.tsv"
RELEASE_SO="$ROOT/target/release/libruvector_healing.so"
INSTALLED_SO="$PG_INSTALL/lib/ruvector_healing.so"

# Server settings: shared_buffers must hold the index; no autovacuum, so that
# nothing but the measured call reads the index after a restart.
SERVER_CONF=(
    "shared_buffers = 2GB"
    "maintenance_work_mem = 2GB"
    "max_parallel_maintenance_workers = 1"
    "autovacuum = off"
)
[[ -n "$IO_METHOD" ]] && SERVER_CONF+=("io_method = $IO_METHOD")

# ------------------------------------------------------------------ helpers
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# psql on the bench database: tuples only, unaligned, '|' between fields.
bsql() { pg_psql "$PORT" -d "$DB" -tA -F '|' "$@"; }

# Median / min / max of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
minimum() { printf '%s\n' "$@" | sort -g | head -n1; }
maximum() { printf '%s\n' "$@" | sort -g | tail -n1; }
# calc EXPR: floating-point arithmetic via awk.
calc() { awk "BEGIN {print $1}"; }
fmt() { awk -v x="$2" "BEGIN {printf \"$1\", x}"; }

# Other sessions on this machine sometimes install a debug build into the same
# Postgres: before every server start make sure the release build is installed.
ensure_release() {
    if [[ ! -f "$RELEASE_SO" ]] || ! cmp -s "$RELEASE_SO" "$INSTALLED_SO"; then
        log "Installed ruvector_healing.so is not the release build; reinstalling (release)"
        install_extension --release >/dev/null
        cmp -s "$RELEASE_SO" "$INSTALLED_SO" || die "release build not installed at $INSTALLED_SO"
    fi
}

start_server() {
    ensure_release
    pg_write_conf "$DATA" "$PORT" "${SERVER_CONF[@]}"
    pg_start "$DATA"
    sleep "$SETTLE"
}

stop_server() { pg_stop "$DATA"; }

# Main-fork segment files of relation $1 (a name), as absolute paths.
relation_files() {
    local rel
    rel="$(bsql -c "SELECT pg_relation_filepath('$1')")"
    local f
    for f in "$DATA/$rel" "$DATA/$rel".[0-9]*; do
        [[ -f "$f" ]] && echo "$f"
    done
    return 0
}

# Restart with empty shared buffers, both indexes' files read into the OS
# page cache just before the start (so that reading them costs no disk I/O).
restart_cold() {
    stop_server
    cat "${INDEX_FILES[@]}" >/dev/null
    start_server
}

BG_PID=""
cleanup() {
    local rc=$?
    if [[ -n "$BG_PID" ]] && kill -0 "$BG_PID" 2>/dev/null; then
        kill "$BG_PID" 2>/dev/null || true
        wait "$BG_PID" 2>/dev/null || true
    fi
    pg_stop "$DATA" || true
    if (( rc != 0 )); then warn "benchmark failed (exit $rc); server log: $DATA/server.log"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ server
log "Building and installing ruvector_healing (release)"
install_extension --release >/dev/null
ensure_release

if [[ ! -f "$DATA/PG_VERSION" ]]; then
    if [[ -d "$DATA" && -n "$(ls -A "$DATA")" ]]; then
        die "$DATA exists but is not a Postgres data directory; move it away first"
    fi
    log "Initialising $DATA"
    pg_initdb "$DATA"
fi
stop_server   # a server left over from an interrupted run
log "Starting the bench server on port $PORT (data $DATA)"
start_server

if [[ -z "$(pg_psql "$PORT" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]]; then
    pg_psql "$PORT" -d postgres -c "CREATE DATABASE $DB"
fi
# Recreate ruvector_healing every run so its SQL matches the installed library.
PGOPTIONS="-c client_min_messages=warning" bsql \
    -c "CREATE EXTENSION IF NOT EXISTS vector" \
    -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
    -c "DROP EXTENSION IF EXISTS ruvector_healing CASCADE" \
    -c "CREATE EXTENSION ruvector_healing" \
    -c "CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value text NOT NULL,
                                               at timestamptz NOT NULL DEFAULT now())"

# bench_time(what, idx): runs 'inspect' (ruvector_dag_index_health), 'prewarm'
# (pg_prewarm) or 'noop' and returns the elapsed server-side time between two
# clock_timestamp() calls around it, plus the backend's memory figures from
# /proc/self/status read just before and just after (outside the timed part).
bsql -q <<'SQL'
CREATE OR REPLACE FUNCTION bench_time(what text, idx regclass,
    OUT ms double precision, OUT report jsonb, OUT blocks bigint,
    OUT rss0_kb bigint, OUT hwm0_kb bigint, OUT hwm1_kb bigint,
    OUT shmem0_kb bigint, OUT shmem1_kb bigint)
LANGUAGE plpgsql AS $$
DECLARE
    s0 text;
    s1 text;
    t0 timestamptz;
    t1 timestamptz;
BEGIN
    s0 := pg_read_file('/proc/self/status');
    t0 := clock_timestamp();
    IF what = 'inspect' THEN
        report := ruvector_dag_index_health(idx);
    ELSIF what = 'prewarm' THEN
        blocks := pg_prewarm(idx);
    ELSIF what <> 'noop' THEN
        RAISE EXCEPTION 'unknown bench_time mode %', what;
    END IF;
    t1 := clock_timestamp();
    s1 := pg_read_file('/proc/self/status');
    ms := extract(epoch FROM t1 - t0) * 1000;
    rss0_kb   := (regexp_match(s0, 'VmRSS:\s+(\d+)'))[1]::bigint;
    hwm0_kb   := (regexp_match(s0, 'VmHWM:\s+(\d+)'))[1]::bigint;
    hwm1_kb   := (regexp_match(s1, 'VmHWM:\s+(\d+)'))[1]::bigint;
    shmem0_kb := (regexp_match(s0, 'RssShmem:\s+(\d+)'))[1]::bigint;
    shmem1_kb := (regexp_match(s1, 'RssShmem:\s+(\d+)'))[1]::bigint;
END
$$;
SQL

meta_get() { bsql -c "SELECT value FROM bench_meta WHERE key = '$1'"; }
meta_set() {
    bsql -q -c "INSERT INTO bench_meta (key, value) VALUES ('$1', '$2')
                ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, at = now()"
}

# ------------------------------------------------------------------ data
# Is the table there with ROWS rows of vector(DIM), and not all one vector?
table_ready() {
    local ok
    ok="$(bsql -c "
        SELECT to_regclass('$TABLE') IS NOT NULL
           AND (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = to_regclass('$TABLE') AND attname = 'embedding') = 'vector($DIM)'")"
    [[ "$ok" == t ]] || return 1
    ok="$(bsql -c "
        SELECT (SELECT count(*) FROM $TABLE) = $ROWS
           AND (SELECT count(DISTINCT embedding) FROM (SELECT embedding FROM $TABLE LIMIT 100) s)
               = least($ROWS, 100)")"
    [[ "$ok" == t ]]
}

if table_ready; then
    log "Table $TABLE already holds $ROWS vectors of $DIM dimensions; keeping it"
else
    log "Generating $TABLE: $ROWS random vectors of $DIM dimensions (batches of $BATCH)"
    bsql -q -c "DROP TABLE IF EXISTS $TABLE CASCADE" \
        -c "CREATE TABLE $TABLE (id bigserial PRIMARY KEY, embedding vector($DIM))" \
        -c "DELETE FROM bench_meta WHERE key LIKE '%build_ms' OR key = 'load_ms'"
    t0=$(now_ms)
    for (( lo = 1; lo <= ROWS; lo += BATCH )); do
        hi=$(( lo + BATCH - 1 < ROWS ? lo + BATCH - 1 : ROWS ))
        # The "+ g*0" correlates the subquery with the row, so it is evaluated
        # per row; without it every row would get the same vector.
        bsql -q -c "INSERT INTO $TABLE (embedding)
                    SELECT array(SELECT random() + g*0 FROM generate_series(1, $DIM))::vector($DIM)
                      FROM generate_series($lo, $hi) g"
        log "  $hi / $ROWS rows ($(( ($(now_ms) - t0) / 1000 )) s)"
    done
    bsql -q -c "VACUUM (ANALYZE) $TABLE"
    meta_set load_ms "$(( $(now_ms) - t0 ))"
    table_ready || die "generated table failed its check (row count or distinct vectors)"
fi

# Runs CREATE INDEX ($2) in the background, printing its progress every 15 s;
# stores the wall-clock build time under "$1_build_ms".
build_index() {
    local key="$1" sql="$2" t0 tick=0 progress
    log "Building $key index: $sql"
    t0=$(now_ms)
    bsql -q -c "$sql" &
    BG_PID=$!
    while kill -0 "$BG_PID" 2>/dev/null; do
        sleep 1
        if (( ++tick % 15 == 0 )); then
            progress="$(bsql -c "
                SELECT phase || ', blocks ' || blocks_done || '/' || blocks_total
                       || ', tuples ' || tuples_done || '/' || tuples_total
                  FROM pg_stat_progress_create_index
                 WHERE relid = '$TABLE'::regclass" 2>/dev/null || true)"
            log "  $key: ${tick} s: ${progress:-(no progress row)}"
        fi
    done
    if ! wait "$BG_PID"; then BG_PID=""; die "CREATE INDEX for $key failed"; fi
    BG_PID=""
    meta_set "${key}_build_ms" "$(( $(now_ms) - t0 ))"
    log "  $key built in $(( ($(now_ms) - t0) / 1000 )) s"
}

# (Re)builds an index unless one with exactly the expected definition exists.
ensure_index() {
    local key="$1" name="$2" using="$3" want have
    want="CREATE INDEX $name ON public.$TABLE USING $using"
    have="$(bsql -c "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
                      WHERE i.indexrelid = to_regclass('$name') AND i.indisvalid")"
    if [[ "$have" == "$want" ]]; then
        log "Index $name exists as expected; keeping it"
        return
    fi
    bsql -q -c "DROP INDEX IF EXISTS $name"
    build_index "$key" "$want"
}
ensure_index hnsw "$HNSW_IDX" "hnsw (embedding vector_l2_ops)"
ensure_index ivfflat "$IVF_IDX" "ivfflat (embedding vector_l2_ops) WITH (lists='$LISTS')"
bsql -q -c "CHECKPOINT"

mkdir -p "$RESULTS"
printf 'index\tstate\twhat\trep\tms\tinspection_ms\tpage_reads\tpages\titems\twalk_mem_bytes\twalk_mem_per_elem\tblocks\trss0_kb\thwm0_kb\thwm1_kb\tshmem0_kb\tshmem1_kb\n' > "$RAW"

# Files of both indexes, read into the OS cache before every cold start.
INDEX_FILES=()
declare -A SIZE PAGES
for idx in "$HNSW_IDX" "$IVF_IDX"; do
    mapfile -t files < <(relation_files "$idx")
    INDEX_FILES+=("${files[@]}")
    IFS='|' read -r "SIZE[$idx]" "PAGES[$idx]" < <(bsql -c "
        SELECT pg_relation_size('$idx'), pg_relation_size('$idx') / current_setting('block_size')::int")
    log "$idx: $(( ${SIZE[$idx]} / 1048576 )) MB, ${PAGES[$idx]} pages, files: ${files[*]}"
done

# The projection of one bench_time() call into a '|'-separated line.
PROJ="round(b.ms::numeric, 3), coalesce(b.report->>'inspection_ms', '-'),
      coalesce(b.report#>>'{walk,page_reads}', '-'), coalesce(b.report->>'pages', '-'),
      coalesce(b.report->>'elements_total', b.report->>'tuples', '-'),
      coalesce(b.report#>>'{walk,memory_bytes}', '-'),
      coalesce(b.report#>>'{walk,memory_bytes_per_element}', '-'),
      coalesce(b.blocks::text, '-'), b.rss0_kb, b.hwm0_kb, b.hwm1_kb, b.shmem0_kb, b.shmem1_kb"

# Appends '|'-separated result lines ($3) to the raw file as index/state/what/rep.
record() {
    local idx="$1" state="$2" lines="$3" what rest
    local -A rep=()
    while IFS='|' read -r what rest; do
        [[ -n "$what" ]] || continue
        rep[$what]=$(( ${rep[$what]:-0} + 1 ))
        printf '%s\t%s\t%s\t%s\t%s\n' "$idx" "$state" "$what" "${rep[$what]}" "${rest//|/$'\t'}" >> "$RAW"
    done <<< "$lines"
}

# One measurement in a fresh session: load pg_prewarm and compile bench_time
# first (same for both modes), then the timed call.
measure_fresh() {
    local what="$1" idx="$2"
    bsql -c "LOAD 'pg_prewarm'" \
         -c "SELECT FROM bench_time('noop', '$idx')" \
         -c "SELECT '$what', $PROJ FROM bench_time('$what', '$idx') b" | tail -n1
}

# ------------------------------------------------------------------ cold
# Each measurement right after its own restart (shared buffers empty, index
# file in the OS cache). Inspection and prewarm alternate, so that the
# machine's background load affects both alike.
log "Cold runs: $REPEAT x {restart, inspect} and {restart, pg_prewarm} per index"
for (( r = 1; r <= REPEAT; r++ )); do
    for idx in "$HNSW_IDX" "$IVF_IDX"; do
        for what in inspect prewarm; do
            restart_cold
            line="$(measure_fresh "$what" "$idx")"
            record "$idx" cold "$line"
            log "  cold $r/$REPEAT $idx $what: $(cut -d'|' -f2 <<< "$line") ms"
        done
    done
done
if command -v fincore >/dev/null 2>&1; then
    log "OS page cache residency of the index files (resident, size, file):"
    fincore -n -o RES,SIZE,FILE "${INDEX_FILES[@]}" | sed 's/^/      /'
fi

# ------------------------------------------------------------------ warm
# Index in shared buffers: one session per index, a pg_prewarm and an
# inspection first (not counted), then REPEAT x {inspect, prewarm}.
log "Warm runs: $REPEAT x {inspect, pg_prewarm} per index, index in shared buffers"
restart_cold
for idx in "$HNSW_IDX" "$IVF_IDX"; do
    args=(-c "LOAD 'pg_prewarm'" -c "SELECT FROM bench_time('noop', '$idx')"
          -c "SELECT 'warmup_prewarm', $PROJ FROM bench_time('prewarm', '$idx') b"
          -c "SELECT 'warmup_inspect', $PROJ FROM bench_time('inspect', '$idx') b")
    for (( r = 1; r <= REPEAT; r++ )); do
        args+=(-c "SELECT 'inspect', $PROJ FROM bench_time('inspect', '$idx') b"
               -c "SELECT 'prewarm', $PROJ FROM bench_time('prewarm', '$idx') b")
    done
    record "$idx" warm "$(bsql "${args[@]}")"
done

# One full report per index, for reference.
for idx in "$HNSW_IDX" "$IVF_IDX"; do
    bsql -c "SELECT jsonb_pretty(ruvector_dag_index_health('$idx'))" > "$RESULTS/$idx.json"
done
# Facts for the summary, read while the server is up.
server_io_method="$(bsql -c "SHOW io_method")"
pgvector_version="$(bsql -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'")"
pg_version="$(bsql -c "SHOW server_version")"
declare -A BUILT
for key in load hnsw_build ivfflat_build; do
    BUILT[$key]="$(bsql -c "SELECT value || '|' || to_char(at, 'YYYY-MM-DD HH24:MI') FROM bench_meta
                             WHERE key = '${key}_ms'")"
done
stop_server

# ------------------------------------------------------------------ summary
# Column $1 of the raw rows for index $2, state $3, what $4.
col() {
    awk -F'\t' -v c="$1" -v i="$2" -v s="$3" -v w="$4" \
        'NR > 1 && $1 == i && $2 == s && $3 == w {print $c}' "$RAW"
}
# Per-row private memory estimate in kB: peak RSS growth over the RSS at the
# start of the call, less the shared-buffer pages the call mapped in.
private_kb() {
    awk -F'\t' -v i="$1" -v s="$2" -v w="$3" \
        'NR > 1 && $1 == i && $2 == s && $3 == w {print ($15 - $13) - ($17 - $16)}' "$RAW"
}
shmem_kb() {
    awk -F'\t' -v i="$1" -v s="$2" -v w="$3" \
        'NR > 1 && $1 == i && $2 == s && $3 == w {print $17 - $16}' "$RAW"
}
# "median (min–max)" of a series.
spread() { echo "$(median "$@") ($(minimum "$@")–$(maximum "$@"))"; }
# 1234567 -> 1.23M
human() { awk -v x="$1" 'BEGIN {if (x >= 1e6) printf "%.2fM", x/1e6; else if (x >= 1e3) printf "%.1fk", x/1e3; else printf "%.0f", x}'; }
built() {
    local v="${BUILT[$1]}"
    if [[ -z "$v" ]]; then echo "unknown"; else echo "$(fmt '%.1f' "$(calc "${v%%|*} / 1000")") s (${v#*|})"; fi
}

C_MS=5; C_INSP=6; C_READS=7; C_PAGES=8; C_ITEMS=9; C_MEM=10; C_MEMPE=11

echo
echo "================================================================== results"
echo "PostgreSQL $pg_version, pgvector $pgvector_version, ruvector_healing release build"
echo "ROWS=$ROWS DIM=$DIM REPEAT=$REPEAT io_method=$server_io_method shared_buffers=2GB lists=$LISTS"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "data generation: $(built load); HNSW build: $(built hnsw_build); IVFFlat build: $(built ivfflat_build)"
echo "(times in ms are server-side clock_timestamp() around the call: median (min–max) of $REPEAT)"

declare -a SUMMARY=()
goals_ok=1
for idx in "$HNSW_IDX" "$IVF_IDX"; do
    kind=hnsw; unit=elements
    [[ "$idx" == "$IVF_IDX" ]] && { kind=ivfflat; unit=entries; }
    mapfile -t ci < <(col $C_MS "$idx" cold inspect)
    mapfile -t cp < <(col $C_MS "$idx" cold prewarm)
    mapfile -t cx < <(col $C_INSP "$idx" cold inspect)
    mapfile -t wi < <(col $C_MS "$idx" warm inspect)
    mapfile -t wp < <(col $C_MS "$idx" warm prewarm)
    mapfile -t wx < <(col $C_INSP "$idx" warm inspect)
    mapfile -t pc < <(private_kb "$idx" cold inspect)
    mapfile -t pp < <(private_kb "$idx" cold prewarm)
    mapfile -t sc < <(shmem_kb "$idx" cold inspect)
    mapfile -t sp < <(shmem_kb "$idx" cold prewarm)
    mapfile -t pw < <(private_kb "$idx" warm warmup_inspect)
    items="$(col $C_ITEMS "$idx" cold inspect | tail -n1)"
    reads="$(col $C_READS "$idx" cold inspect | tail -n1)"
    pages="$(col $C_PAGES "$idx" cold inspect | tail -n1)"
    mem="$(col $C_MEM "$idx" cold inspect | tail -n1)"
    mempe="$(col $C_MEMPE "$idx" cold inspect | tail -n1)"
    mci="$(median "${ci[@]}")"; mcp="$(median "${cp[@]}")"
    mwi="$(median "${wi[@]}")"; mwp="$(median "${wp[@]}")"
    cold_ratio="$(calc "$mci / $mcp")"; warm_ratio="$(calc "$mwi / $mwp")"
    rate_cold="$(calc "$items / ($mci / 1000)")"; rate_warm="$(calc "$items / ($mwi / 1000)")"
    rss_pe="$(calc "$(median "${pc[@]}") * 1024 / $items")"

    echo
    echo "--- $idx ($kind): ${SIZE[$idx]} bytes ($(( ${SIZE[$idx]} / 1048576 )) MB), ${PAGES[$idx]} pages, $items $unit"
    echo "  walk page_reads:          $reads (= $(fmt '%.2f' "$(calc "$reads / $pages")") x the $pages pages)"
    echo "  cold inspect:             $(spread "${ci[@]}") ms; extension's inspection_ms $(spread "${cx[@]}")"
    echo "  cold pg_prewarm:          $(spread "${cp[@]}") ms"
    echo "  cold ratio (medians):     $(fmt '%.2f' "$cold_ratio")"
    echo "  warm inspect:             $(spread "${wi[@]}") ms; extension's inspection_ms $(spread "${wx[@]}")"
    echo "  warm pg_prewarm:          $(spread "${wp[@]}") ms"
    echo "  warm ratio (medians):     $(fmt '%.2f' "$warm_ratio")"
    echo "  $unit/s:               $(human "$rate_cold") cold, $(human "$rate_warm") warm"
    if [[ "$kind" == hnsw ]]; then
        echo "  walk memory (own count):  $mem bytes = $mempe bytes/element"
    fi
    echo "  backend RSS, fresh session after restart (kB, median):"
    echo "    inspect: shared-buffer pages mapped $(median "${sc[@]}"), private peak ≈ $(spread "${pc[@]}")" \
         "= $(fmt '%.1f' "$rss_pe") bytes/$unit"
    echo "    prewarm: shared-buffer pages mapped $(median "${sp[@]}"), private peak ≈ $(spread "${pp[@]}")"
    echo "    inspect in a session whose index pages were already mapped: private peak ≈ ${pw[*]} kB"

    line="$(printf '%-8s cold: inspect %s ms / prewarm %s ms = %s | warm: %s ms / %s ms = %s | %s %s/s' \
        "$kind" "$(fmt '%.0f' "$mci")" "$(fmt '%.0f' "$mcp")" "$(fmt '%.2f' "$cold_ratio")" \
        "$(fmt '%.1f' "$mwi")" "$(fmt '%.1f' "$mwp")" "$(fmt '%.1f' "$warm_ratio")" \
        "$(human "$rate_cold")" "$unit")"
    if [[ "$kind" == hnsw ]]; then
        line+=" | $(fmt '%.1f' "$mempe") B/element (RSS check $(fmt '%.1f' "$rss_pe"))"
    else
        line+=" | RSS check $(fmt '%.1f' "$rss_pe") B/entry"
    fi
    SUMMARY+=("$line")
    if awk -v r="$cold_ratio" 'BEGIN {exit !(r <= 2)}'; then
        SUMMARY+=("         goal cold ratio <= 2: PASS")
    else
        SUMMARY+=("         goal cold ratio <= 2: MISS"); goals_ok=0
    fi
    if [[ "$kind" == hnsw ]]; then
        if awk -v m="$mempe" 'BEGIN {exit !(m <= 32)}'; then
            SUMMARY+=("         goal memory <= 32 B/element: PASS")
        else
            SUMMARY+=("         goal memory <= 32 B/element: MISS"); goals_ok=0
        fi
    fi
done

echo
echo "================================================================== summary"
printf '%s\n' "${SUMMARY[@]}"
echo
if (( goals_ok )); then echo "all goals met"; else echo "some goals missed"; fi
echo "raw measurements: $RAW; full reports: $RESULTS/*.json"
