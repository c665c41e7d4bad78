#!/usr/bin/env bash
# Benchmark of ruvector_dag_index_health() on a pgvector HNSW and IVFFlat
# index, and of its verification (ruvector_dag_verify_index), measured against
# pg_prewarm() of the same index. See bench/README.md.
#
#   bash bench/inspect.sh                      # 200,000 x 128, 5 repeats
#   ROWS=50000 REPEAT=3 bash bench/inspect.sh  # smaller / quicker
#   IO_METHOD=sync bash bench/inspect.sh       # io_method of the bench server
#
# Runs its own server (port BENCH_PORT, default 28840, data $RV_HOME/bench-data)
# with the RELEASE build of the extension, keeps the generated table and
# indexes between runs (rebuilt only when ROWS/DIM or their definition change),
# and stops the server on exit. Raw measurements and one full report per index
# go to $RV_HOME/bench-results/inspect-<timestamp>/.
#
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
bash "$here/../scripts/setup.sh"
source "$here/../scripts/common.sh"

# ------------------------------------------------------------------ parameters
ROWS="${ROWS:-200000}"
DIM="${DIM:-128}"
REPEAT="${REPEAT:-5}"
PORT="${BENCH_PORT:-28840}"
IO_METHOD="${IO_METHOD:-}"        # empty: the server default (worker)
SETTLE="${SETTLE:-1}"             # seconds to let a freshly started server settle
BATCH="${BATCH:-20000}"           # rows per INSERT while generating the table
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

# shared_buffers must hold the index. No autovacuum: after a restart nothing
# but the measured call may read the index.
SERVER_CONF=(
    "shared_buffers = 2GB"
    "maintenance_work_mem = 2GB"
    "max_parallel_maintenance_workers = 1"
    "autovacuum = off"
)
if [[ -n "$IO_METHOD" ]]; then SERVER_CONF+=("io_method = $IO_METHOD"); fi

# ------------------------------------------------------------------ helpers
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# psql on the bench database: tuples only, unaligned, '|' between fields.
bsql() { pg_psql "$PORT" -d "$DB" -tA -F '|' "$@"; }

# Statistics of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
minimum() { printf '%s\n' "$@" | sort -g | head -n1; }
maximum() { printf '%s\n' "$@" | sort -g | tail -n1; }
# calc EXPR: floating-point arithmetic; fmt FORMAT X: printf one number.
calc() { awk "BEGIN {print $1}"; }
fmt() { awk -v x="$2" -v f="$1" 'BEGIN {printf f, x}'; }

# Other sessions on this machine sometimes install a debug build into the same
# Postgres: before every server start make sure the release build is installed.
# (A running server is not affected: it mapped its library at start, and
# install_extension unlinks the file instead of overwriting it.)
ensure_release() {
    if [[ ! -f "$RELEASE_SO" ]] || ! cmp -s "$RELEASE_SO" "$INSTALLED_SO"; then
        log "Installed ruvector_healing.so is not the release build; reinstalling (release)"
        install_extension --release >/dev/null
        cmp -s "$RELEASE_SO" "$INSTALLED_SO" || die "release build not installed at $INSTALLED_SO"
    fi
}

LIB=""   # sha256 prefix of the library the running server loaded
start_server() {
    ensure_release
    LIB="$(sha256sum "$INSTALLED_SO" | cut -c1-12)"
    pg_write_conf "$DATA" "$PORT" "${SERVER_CONF[@]}"
    pg_start "$DATA"
    sleep "$SETTLE"
}

stop_server() { pg_stop "$DATA"; }

# Main-fork segment files of relation $1 (a name), as absolute paths.
relation_files() {
    local rel f
    rel="$(bsql -c "SELECT pg_relation_filepath('$1')")"
    for f in "$DATA/$rel" "$DATA/$rel".[0-9]*; do
        if [[ -f "$f" ]]; then echo "$f"; fi
    done
}

# Restart with empty shared buffers, both indexes' files read into the OS
# page cache just before the start (reading them then costs no disk I/O).
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
code_version="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$ROOT" status --porcelain -- src sql Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
    code_version+=" + uncommitted changes in src/sql/Cargo"
fi
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"

if [[ ! -f "$DATA/PG_VERSION" ]]; then
    if [[ -d "$DATA" && -n "$(ls -A "$DATA")" ]]; then
        die "$DATA exists but is not a Postgres data directory; move it away first"
    fi
    log "Initialising $DATA"
    pg_initdb "$DATA"
fi
stop_server   # one left over from an interrupted run
log "Starting the bench server on port $PORT (data $DATA)"
start_server

if [[ -z "$(pg_psql "$PORT" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]]; then
    pg_psql "$PORT" -d postgres -c "CREATE DATABASE $DB"
fi
# ruvector_healing is recreated every run so that its SQL matches the library.
PGOPTIONS="-c client_min_messages=warning" bsql \
    -c "CREATE EXTENSION IF NOT EXISTS vector" \
    -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
    -c "DROP EXTENSION IF EXISTS ruvector_healing CASCADE" \
    -c "CREATE EXTENSION ruvector_healing" \
    -c "CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value text NOT NULL,
                                               at timestamptz NOT NULL DEFAULT now())"

# bench_time(what, idx) runs 'inspect' (ruvector_dag_index_health), 'prewarm'
# (pg_prewarm) or 'noop', and returns:
#   ms       wall-clock time between two clock_timestamp() calls around it;
#   cpu_ms   CPU time of this backend meanwhile, wait_ms time it sat runnable
#            waiting for a CPU (from /proc/self/schedstat, in ns): a large
#            wait_ms means other processes on the machine took the cores;
#   memory   VmRSS/VmHWM/RssShmem of this backend from /proc/self/status,
#            read before and after (outside the timed part).
bsql -q <<'SQL'
DROP FUNCTION IF EXISTS bench_time(text, regclass);
CREATE FUNCTION bench_time(what text, idx regclass,
    OUT ms double precision, OUT cpu_ms double precision, OUT wait_ms double precision,
    OUT report jsonb, OUT blocks bigint,
    OUT rss0_kb bigint, OUT hwm0_kb bigint, OUT hwm1_kb bigint,
    OUT shmem0_kb bigint, OUT shmem1_kb bigint)
LANGUAGE plpgsql AS $$
DECLARE
    s0 text;
    s1 text;
    q0 bigint[];
    q1 bigint[];
    t0 timestamptz;
    t1 timestamptz;
BEGIN
    s0 := pg_read_file('/proc/self/status');
    q0 := string_to_array(trim(pg_read_file('/proc/self/schedstat')), ' ')::bigint[];
    t0 := clock_timestamp();
    IF what = 'inspect' THEN
        report := ruvector_dag_index_health(idx);
    ELSIF what = 'prewarm' THEN
        blocks := pg_prewarm(idx);
    ELSIF what = 'verify' THEN
        SELECT count(*) INTO blocks FROM ruvector_dag_verify_index(idx, false);
    ELSIF what = 'verify_heap' THEN
        SELECT count(*) INTO blocks FROM ruvector_dag_verify_index(idx, true);
    ELSIF what <> 'noop' THEN
        RAISE EXCEPTION 'unknown bench_time mode %', what;
    END IF;
    t1 := clock_timestamp();
    q1 := string_to_array(trim(pg_read_file('/proc/self/schedstat')), ' ')::bigint[];
    s1 := pg_read_file('/proc/self/status');
    ms := extract(epoch FROM t1 - t0) * 1000;
    cpu_ms := (q1[1] - q0[1]) / 1e6;
    wait_ms := (q1[2] - q0[2]) / 1e6;
    rss0_kb   := (regexp_match(s0, 'VmRSS:\s+(\d+)'))[1]::bigint;
    hwm0_kb   := (regexp_match(s0, 'VmHWM:\s+(\d+)'))[1]::bigint;
    hwm1_kb   := (regexp_match(s1, 'VmHWM:\s+(\d+)'))[1]::bigint;
    shmem0_kb := (regexp_match(s0, 'RssShmem:\s+(\d+)'))[1]::bigint;
    shmem1_kb := (regexp_match(s1, 'RssShmem:\s+(\d+)'))[1]::bigint;
END
$$;
SQL

meta_set() {
    bsql -q -c "INSERT INTO bench_meta (key, value) VALUES ('$1', '$2')
                ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, at = now()"
}

# ------------------------------------------------------------------ data
# Is the table there with ROWS rows of vector(DIM), all different?
table_ready() {
    local ok
    ok="$(bsql -c "
        SELECT (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = to_regclass('$TABLE') AND attname = 'embedding')
               IS NOT DISTINCT FROM 'vector($DIM)'")"
    [[ "$ok" == t ]] || return 1
    ok="$(bsql -c "
        SELECT (SELECT count(*) FROM $TABLE) = $ROWS
           AND (SELECT count(DISTINCT embedding) FROM (SELECT embedding FROM $TABLE LIMIT 1000) s)
               = least($ROWS, 1000)")"
    [[ "$ok" == t ]]
}

if table_ready; then
    log "Table $TABLE already holds $ROWS vectors of $DIM dimensions; keeping it"
else
    log "Generating $TABLE: $ROWS random vectors of $DIM dimensions (batches of $BATCH)"
    PGOPTIONS="-c client_min_messages=warning" bsql -q \
        -c "DROP TABLE IF EXISTS $TABLE CASCADE" \
        -c "DROP TABLE IF EXISTS bench_tiny" \
        -c "CREATE TABLE $TABLE (id bigserial PRIMARY KEY, embedding vector($DIM))" \
        -c "DELETE FROM bench_meta WHERE key LIKE '%build_ms' OR key = 'load_ms'"
    t0=$(now_ms)
    for (( lo = 1; lo <= ROWS; lo += BATCH )); do
        hi=$(( lo + BATCH - 1 < ROWS ? lo + BATCH - 1 : ROWS ))
        # "+ g*0" correlates the subquery with the row so that it runs per
        # row; without it every row would get the same vector.
        bsql -q -c "INSERT INTO $TABLE (embedding)
                    SELECT array(SELECT random() + g*0 FROM generate_series(1, $DIM))::vector($DIM)
                      FROM generate_series($lo, $hi) g"
        log "  $hi / $ROWS rows ($(( ($(now_ms) - t0) / 1000 )) s)"
    done
    bsql -q -c "VACUUM (ANALYZE) $TABLE"
    meta_set load_ms "$(( $(now_ms) - t0 ))"
    table_ready || die "the generated table failed its check (row count or distinct vectors)"
fi

# A 100-row copy with the same two kinds of index: inspecting it first primes
# a session (catalog caches, plans) for the memory check.
if [[ "$(bsql -c "SELECT to_regclass('bench_tiny_hnsw') IS NOT NULL
                     AND to_regclass('bench_tiny_ivfflat') IS NOT NULL")" != t ]]; then
    log "Creating bench_tiny (100 rows) and its indexes"
    PGOPTIONS="-c client_min_messages=warning" bsql -q \
        -c "DROP TABLE IF EXISTS bench_tiny" \
        -c "CREATE TABLE bench_tiny AS SELECT * FROM $TABLE ORDER BY id LIMIT 100" \
        -c "CREATE INDEX bench_tiny_hnsw ON bench_tiny USING hnsw (embedding vector_l2_ops)" \
        -c "CREATE INDEX bench_tiny_ivfflat ON bench_tiny USING ivfflat (embedding vector_l2_ops) WITH (lists = 1)"
fi

# Runs CREATE INDEX ($2) in the background, printing its progress every 15 s;
# stores the wall-clock build time under "$1_build_ms".
build_index() {
    local key="$1" sql="$2" t0 tick=0 progress
    log "Building the $key index: $sql"
    t0=$(now_ms)
    bsql -q -c "$sql" &
    BG_PID=$!
    while kill -0 "$BG_PID" 2>/dev/null; do
        sleep 1
        if (( ++tick % 15 == 0 )); then
            progress="$(bsql -c "
                SELECT phase || ', blocks ' || blocks_done || '/' || blocks_total
                       || ', tuples ' || tuples_done
                  FROM pg_stat_progress_create_index
                 WHERE relid = '$TABLE'::regclass" 2>/dev/null || true)"
            log "  $key: ${tick} s: ${progress:-(no progress row)}"
        fi
    done
    if ! wait "$BG_PID"; then BG_PID=""; die "CREATE INDEX for $key failed"; fi
    BG_PID=""
    meta_set "${key}_build_ms" "$(( $(now_ms) - t0 ))"
    log "  $key index built in $(( ($(now_ms) - t0) / 1000 )) s"
}

# (Re)builds index $2 unless a valid one exists on $TABLE(embedding) with
# access method $3, operator class vector_l2_ops and reloptions $4.
ensure_index() {
    local key="$1" name="$2" am="$3" opts="$4" have with=""
    have="$(bsql -c "
        SELECT am.amname || ' ' || opc.opcname || ' ' || coalesce(array_to_string(c.reloptions, ','), '')
          FROM pg_index i
          JOIN pg_class c ON c.oid = i.indexrelid
          JOIN pg_am am ON am.oid = c.relam
          JOIN pg_opclass opc ON opc.oid = i.indclass[0]
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indexrelid = to_regclass('$name') AND i.indrelid = to_regclass('$TABLE')
           AND i.indisvalid AND i.indnatts = 1 AND a.attname = 'embedding'")"
    if [[ "$have" == "$am vector_l2_ops $opts" ]]; then
        log "Index $name exists as expected ($am, vector_l2_ops${opts:+, $opts}); keeping it"
        return
    fi
    bsql -q -c "DROP INDEX IF EXISTS $name"
    if [[ -n "$opts" ]]; then with=" WITH ($opts)"; fi
    build_index "$key" "CREATE INDEX $name ON $TABLE USING $am (embedding vector_l2_ops)$with"
}
ensure_index hnsw "$HNSW_IDX" hnsw ""                   # defaults: m = 16, ef_construction = 64
ensure_index ivfflat "$IVF_IDX" ivfflat "lists=$LISTS"
bsql -q -c "CHECKPOINT"

# ------------------------------------------------------------------ measuring
mkdir -p "$RESULTS"
COLS=(index state what rep lib ms cpu_ms wait_ms inspection_ms page_reads pages items
      walk_mem_bytes walk_mem_per_elem blocks rss0_kb hwm0_kb hwm1_kb shmem0_kb shmem1_kb)
(IFS=$'\t'; echo "${COLS[*]}") > "$RAW"

# The projection of one bench_time() call, '|'-separated ('-' for none),
# in the order of COLS from "ms" on.
PROJ="round(b.ms::numeric, 3), round(b.cpu_ms::numeric, 3), round(b.wait_ms::numeric, 3),
      coalesce(round((b.report->>'inspection_ms')::numeric, 3)::text, '-'),
      coalesce(b.report#>>'{walk,page_reads}', '-'), coalesce(b.report->>'pages', '-'),
      coalesce(b.report->>'elements_total', b.report->>'tuples', '-'),
      coalesce(b.report#>>'{walk,memory_bytes}', '-'),
      coalesce(b.report#>>'{walk,memory_bytes_per_element}', '-'),
      coalesce(b.blocks::text, '-'),
      b.rss0_kb, b.hwm0_kb, b.hwm1_kb, b.shmem0_kb, b.shmem1_kb"

# Appends result lines ($3: "what|ms|...") to the raw file, numbering the
# repetitions of each (index, state, what).
declare -A REPN=()
record() {
    local idx="$1" state="$2" lines="$3" what rest key
    while IFS='|' read -r what rest; do
        if [[ -z "$what" ]]; then continue; fi
        key="$idx/$state/$what"
        REPN[$key]=$(( ${REPN[$key]:-0} + 1 ))
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$idx" "$state" "$what" "${REPN[$key]}" "$LIB" \
            "${rest//|/$'\t'}" >> "$RAW"
    done <<< "$lines"
}

# One measurement in a fresh session. Both modes get the same preparation:
# pg_prewarm's library loaded and bench_time compiled by a 'noop' call.
measure_fresh() {
    local what="$1" idx="$2"
    bsql -c "LOAD 'pg_prewarm'" \
         -c "SELECT FROM bench_time('noop', '$idx')" \
         -c "SELECT '$what', $PROJ FROM bench_time('$what', '$idx') b" | tail -n1
}

# Files of both indexes (read into the OS cache before every cold start),
# sizes and pages.
INDEX_FILES=()
declare -A SIZE PAGES
for idx in "$HNSW_IDX" "$IVF_IDX"; do
    mapfile -t files < <(relation_files "$idx")
    INDEX_FILES+=("${files[@]}")
    IFS='|' read -r "SIZE[$idx]" "PAGES[$idx]" < <(bsql -c "
        SELECT pg_relation_size('$idx'), pg_relation_size('$idx') / current_setting('block_size')::int")
    log "$idx: $(( ${SIZE[$idx]} / 1048576 )) MB, ${PAGES[$idx]} pages, files: ${files[*]}"
done

# --- cold: each measurement right after its own restart (shared buffers
# empty, index files in the OS page cache). Inspection and prewarm alternate,
# so that background load on the machine hits both alike.
log "Cold runs: $REPEAT x {restart, X} per index for X in inspect, pg_prewarm, verify, verify with heapallindexed"
for (( r = 1; r <= REPEAT; r++ )); do
    for idx in "$HNSW_IDX" "$IVF_IDX"; do
        for what in inspect prewarm verify verify_heap; do
            restart_cold
            line="$(measure_fresh "$what" "$idx")"
            record "$idx" cold "$line"
            IFS="|" read -r _ ms cpu wt _ <<< "$line"
            log "  cold $r/$REPEAT $idx $what: $ms ms (cpu $cpu, waiting for a cpu $wt)"
        done
    done
done
if command -v fincore >/dev/null 2>&1; then
    log "OS page cache residency of the index files (resident, size, file):"
    fincore -n -o RES,SIZE,FILE "${INDEX_FILES[@]}" | sed 's/^/      /'
fi

# --- warm: index in shared buffers. One session per index: a pg_prewarm and
# an inspection first (not counted), then REPEAT x {inspect, prewarm}.
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

# --- memory: the backend's peak RSS growth during the call (VmHWM after -
# VmRSS before) less the shared-buffer pages it mapped meanwhile (RssShmem
# growth), in a new session primed by inspecting the same kind of index on
# bench_tiny, so that catalog caches and plans (about 2 MB) are already there.
log "Memory check: $REPEAT x {new session, inspect the tiny index, inspect the index}"
for (( r = 1; r <= REPEAT; r++ )); do
    for idx in "$HNSW_IDX" "$IVF_IDX"; do
        tiny=bench_tiny_hnsw
        if [[ "$idx" == "$IVF_IDX" ]]; then tiny=bench_tiny_ivfflat; fi
        record "$idx" mem "$(bsql -c "LOAD 'pg_prewarm'" -c "SELECT FROM bench_time('noop', '$idx')" \
            -c "SELECT FROM bench_time('inspect', '$tiny')" \
            -c "SELECT 'inspect', $PROJ FROM bench_time('inspect', '$idx') b" | tail -n1)"
    done
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
    BUILT[$key]="$(bsql -c "SELECT value || '|' || to_char(at, 'YYYY-MM-DD HH24:MI')
                              FROM bench_meta WHERE key = '${key}_ms'")"
done
stop_server

# ------------------------------------------------------------------ summary
# col NAME INDEX STATE WHAT: that column of the matching raw rows.
col() {
    awk -F'\t' -v name="$1" -v i="$2" -v s="$3" -v w="$4" '
        NR == 1 {for (k = 1; k <= NF; k++) c[$k] = k; next}
        $1 == i && $2 == s && $3 == w {print $c[name]}' "$RAW"
}
# Private memory (kB) of each matching call: peak RSS growth over the RSS at
# the start, less the shared-buffer pages the call mapped; and the latter.
private_kb() {
    awk -F'\t' -v i="$1" -v s="$2" -v w="$3" '
        NR == 1 {for (k = 1; k <= NF; k++) c[$k] = k; next}
        $1 == i && $2 == s && $3 == w {
            print ($c["hwm1_kb"] - $c["rss0_kb"]) - ($c["shmem1_kb"] - $c["shmem0_kb"])}' "$RAW"
}
shmem_kb() {
    awk -F'\t' -v i="$1" -v s="$2" -v w="$3" '
        NR == 1 {for (k = 1; k <= NF; k++) c[$k] = k; next}
        $1 == i && $2 == s && $3 == w {print $c["shmem1_kb"] - $c["shmem0_kb"]}' "$RAW"
}
# "median (min–max)" of a series.
spread() { echo "$(fmt '%.1f' "$(median "$@")") ($(fmt '%.1f' "$(minimum "$@")")–$(fmt '%.1f' "$(maximum "$@")"))"; }
# 1234567 -> 1.23M
human() { awk -v x="$1" 'BEGIN {if (x >= 1e6) printf "%.2fM", x/1e6; else if (x >= 1e3) printf "%.0fk", x/1e3; else printf "%.0f", x}'; }
built() {
    local v="${BUILT[$1]}"
    if [[ -z "$v" ]]; then echo "unknown"; else echo "$(fmt '%.1f' "$(calc "${v%%|*} / 1000")") s (${v#*|})"; fi
}

mapfile -t libs < <(awk -F'\t' 'NR > 1 {print $5}' "$RAW" | sort -u)

echo
echo "================================================================== results"
echo "PostgreSQL $pg_version, pgvector $pgvector_version, io_method=$server_io_method, shared_buffers=2GB"
echo "ruvector_healing release build of $code_version (library sha256 ${libs[*]})"
echo "ROWS=$ROWS DIM=$DIM REPEAT=$REPEAT lists=$LISTS; $(nproc) cores," \
     "load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "data generation $(built load), HNSW build $(built hnsw_build), IVFFlat build $(built ivfflat_build)"
echo "times: server-side clock_timestamp() around the call, median (min–max) of $REPEAT;"
echo "       cpu = the backend's CPU time, wait = time it was runnable but had no CPU (other load)"
if (( ${#libs[@]} > 1 )); then
    echo "WARNING: the installed library changed during the run (someone rebuilt it);"
    echo "         the figures mix ${#libs[@]} builds: see the lib column of $RAW"
fi

SUMMARY=()
goals_ok=1
for idx in "$HNSW_IDX" "$IVF_IDX"; do
    kind=hnsw; unit=elements; short=B/element
    if [[ "$idx" == "$IVF_IDX" ]]; then kind=ivfflat; unit=entries; short=B/entry; fi
    mapfile -t ci < <(col ms "$idx" cold inspect)
    mapfile -t cic < <(col cpu_ms "$idx" cold inspect)
    mapfile -t ciw < <(col wait_ms "$idx" cold inspect)
    mapfile -t cix < <(col inspection_ms "$idx" cold inspect)
    mapfile -t cp < <(col ms "$idx" cold prewarm)
    mapfile -t cpc < <(col cpu_ms "$idx" cold prewarm)
    mapfile -t wi < <(col ms "$idx" warm inspect)
    mapfile -t wic < <(col cpu_ms "$idx" warm inspect)
    mapfile -t wiw < <(col wait_ms "$idx" warm inspect)
    mapfile -t wp < <(col ms "$idx" warm prewarm)
    mapfile -t pc < <(private_kb "$idx" cold inspect)
    mapfile -t sc < <(shmem_kb "$idx" cold inspect)
    mapfile -t pp < <(private_kb "$idx" cold prewarm)
    mapfile -t sp < <(shmem_kb "$idx" cold prewarm)
    mapfile -t pm < <(private_kb "$idx" mem inspect)
    items="$(col items "$idx" cold inspect | tail -n1)"
    reads="$(col page_reads "$idx" cold inspect | tail -n1)"
    pages="$(col pages "$idx" cold inspect | tail -n1)"
    mem="$(col walk_mem_bytes "$idx" cold inspect | tail -n1)"
    mempe="$(col walk_mem_per_elem "$idx" cold inspect | tail -n1)"
    mci="$(median "${ci[@]}")"; mcp="$(median "${cp[@]}")"
    mwi="$(median "${wi[@]}")"; mwp="$(median "${wp[@]}")"
    cold_ratio="$(calc "$mci / $mcp")"; warm_ratio="$(calc "$mwi / $mwp")"
    rate_cold="$(calc "$items / ($mci / 1000)")"; rate_warm="$(calc "$items / ($mwi / 1000)")"
    rss_pe="$(calc "$(median "${pm[@]}") * 1024 / $items")"

    echo
    echo "--- $idx ($kind): ${SIZE[$idx]} bytes ($(( ${SIZE[$idx]} / 1048576 )) MB), $pages pages, $items $unit"
    echo "  walk page_reads       $reads ($(fmt '%.2f' "$(calc "$reads / $pages")") x the pages)"
    echo "  cold inspect          $(spread "${ci[@]}") ms, cpu $(spread "${cic[@]}"), wait $(spread "${ciw[@]}")"
    echo "                        (the report's own inspection_ms: $(spread "${cix[@]}"))"
    echo "  cold pg_prewarm       $(spread "${cp[@]}") ms, cpu $(spread "${cpc[@]}")"
    echo "  cold ratio            $(fmt '%.2f' "$cold_ratio") (of the medians)"
    echo "  warm inspect          $(spread "${wi[@]}") ms, cpu $(spread "${wic[@]}"), wait $(spread "${wiw[@]}")"
    echo "  warm pg_prewarm       $(spread "${wp[@]}") ms"
    echo "  warm ratio            $(fmt '%.1f' "$warm_ratio")"
    echo "  cold - warm inspect   $(fmt '%.1f' "$(calc "$mci - $mwi")") ms wall," \
         "$(fmt '%.1f' "$(calc "$(median "${cic[@]}") - $(median "${wic[@]}")")") ms cpu" \
         "(bringing the pages into shared buffers inside the walk; cpu is less sensitive to other load)"
    echo "  $unit/s            $(human "$rate_cold") cold, $(human "$rate_warm") warm"
    if [[ "$kind" == hnsw ]]; then
        echo "  walk memory           $mem bytes = $mempe bytes/element (the walk's own count)"
    fi
    echo "  backend memory (kB; private = VmHWM growth - RssShmem growth):"
    echo "    after restart, inspect     private $(spread "${pc[@]}") (with ~2 MB of session caches)," \
         "shared buffers mapped $(median "${sc[@]}")"
    echo "    after restart, prewarm     private $(spread "${pp[@]}"), shared buffers mapped $(median "${sp[@]}")"
    echo "    primed session, inspect    private $(spread "${pm[@]}") = $(fmt '%.1f' "$rss_pe") $short"

    line="$(printf '%-8s cold: inspect %s ms / prewarm %s ms = %s | warm: %s ms / %s ms = %s | %s %s/s' \
        "$kind" "$(fmt '%.1f' "$mci")" "$(fmt '%.1f' "$mcp")" "$(fmt '%.2f' "$cold_ratio")" \
        "$(fmt '%.1f' "$mwi")" "$(fmt '%.1f' "$mwp")" "$(fmt '%.1f' "$warm_ratio")" \
        "$(human "$rate_cold")" "$unit")"
    if [[ "$kind" == hnsw ]]; then
        line+=" | $(fmt '%.1f' "$mempe") B/element (RSS check $(fmt '%.1f' "$rss_pe"))"
    else
        line+=" | RSS check $(fmt '%.1f' "$rss_pe") B/entry"
    fi
    SUMMARY+=("$line")
    # Verification (bench_time returns the violations in "blocks": none
    # for these sound indexes).
    mapfile -t cv < <(col ms "$idx" cold verify)
    mapfile -t cvh < <(col ms "$idx" cold verify_heap)
    bad="$( (col blocks "$idx" cold verify; col blocks "$idx" cold verify_heap) | awk '$1 != 0' | wc -l)"
    v_ratio="$(calc "$(median "${cv[@]}") / $mcp")"; vh_ratio="$(calc "$(median "${cvh[@]}") / $mcp")"
    echo "  cold verify           $(spread "${cv[@]}") ms = $(fmt '%.2f' "$v_ratio") x pg_prewarm;" \
         "with heapallindexed $(spread "${cvh[@]}") ms = $(fmt '%.2f' "$vh_ratio") x"
    SUMMARY+=("$(printf '%-8s verify: %s ms = %s x prewarm, with heapallindexed %s ms = %s x' "$kind" \
        "$(fmt '%.1f' "$(median "${cv[@]}")")" "$(fmt '%.2f' "$v_ratio")" \
        "$(fmt '%.1f' "$(median "${cvh[@]}")")" "$(fmt '%.2f' "$vh_ratio")")")
    if (( bad > 0 )); then
        SUMMARY+=("         verification reported violations on a sound index: FAIL"); goals_ok=0
    elif awk -v r="$v_ratio" 'BEGIN {exit !(r <= 3)}'; then
        SUMMARY+=("         goal verify / prewarm <= 3: PASS")
    else
        SUMMARY+=("         goal verify / prewarm <= 3: MISS"); goals_ok=0
    fi
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
echo "raw measurements: $RAW"
echo "full reports:     $RESULTS/*.json"
