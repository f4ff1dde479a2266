# shellcheck shell=bash
# Helpers shared by the scripts/ entry points. Source it, don't run it.
# Sourcing it changes to the repository root.

LOOM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$LOOM_ROOT" || exit 1

# Where the throwaway cluster lives (relative to the repository root).
LOOM_PG_DIR=${LOOM_PG_DIR:-build/pg}

say() { printf '==> %s\n' "$*"; }
die() {
    printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2
    exit 1
}

# Make a database available and export its connection string as
# LOOM_DATABASE_URL and LOOM_TEST_PG_DSN.
#
# Uses LOOM_DATABASE_URL if already set; otherwise starts the throwaway
# cluster in $LOOM_PG_DIR (scripts/pg.sh). Installs an EXIT trap that stops
# that cluster again, but only if it was not already running before, and
# keeps the script's exit status.
loom_db_up() {
    trap _loom_on_exit EXIT
    # Without these, Ctrl-C or a CI timeout would skip the EXIT trap.
    trap 'exit 130' INT
    trap 'exit 143' TERM

    local dsn
    if [[ -n ${LOOM_DATABASE_URL:-} ]]; then
        say "using the database in LOOM_DATABASE_URL"
        dsn=$LOOM_DATABASE_URL
        if command -v psql >/dev/null &&
            ! psql "$dsn" -X -q -c 'SELECT 1' >/dev/null; then
            die "cannot connect to LOOM_DATABASE_URL ($dsn);" \
                "fix it or unset it to use a throwaway cluster"
        fi
    else
        if ! scripts/pg.sh status "$LOOM_PG_DIR" >/dev/null 2>&1; then
            # Set before starting so a half-started server is stopped too.
            _LOOM_DB_STARTED=1
        fi
        dsn=$(scripts/pg.sh start "$LOOM_PG_DIR" | tail -n 1)
        [[ -n $dsn ]] || die "scripts/pg.sh start printed no connection string"
    fi
    export LOOM_DATABASE_URL=$dsn LOOM_TEST_PG_DSN=$dsn
}

_loom_on_exit() {
    local rc=$?
    loom_db_down
    exit "$rc"
}

# Stop the cluster if loom_db_up started it; never fails.
loom_db_down() {
    if [[ ${_LOOM_DB_STARTED:-0} == 1 ]]; then
        _LOOM_DB_STARTED=0
        scripts/pg.sh stop "$LOOM_PG_DIR" ||
            say "warning: could not stop PostgreSQL in $LOOM_PG_DIR"
    fi
    return 0
}

# Split an extra-arguments variable (DEMO_ARGS etc.) into the array ARGS.
loom_split_args() {
    # shellcheck disable=SC2034 # ARGS is the result, used by the caller
    read -r -a ARGS <<<"${1:-}"
}

# Fail with a hint if a program from the CMake build is missing.
loom_need_binary() {
    [[ -x $1 ]] || die "$1 not found; build it first with 'make build'"
}
