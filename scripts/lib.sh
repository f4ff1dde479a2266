# shellcheck shell=bash
# Helpers shared by the scripts/ entry points. Source it, don't run it.
# Sourcing it changes to the repository root.

LOOM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$LOOM_ROOT" || exit 1

# Where the throwaway cluster lives (relative to the repository root).
LOOM_PG_DIR=${LOOM_PG_DIR:-build/pg}
# Where the throwaway nats-server keeps its store (scripts/nats.sh).
LOOM_NATS_DIR=${LOOM_NATS_DIR:-build/nats}

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
    loom_nats_down
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

# Make a NATS server with JetStream available for the tests labelled
# `nats` and export LOOM_TEST_NATS_URL (and LOOM_TEST_NATS_RESTART).
#
# Uses LOOM_TEST_NATS_URL if already set (then LOOM_TEST_NATS_RESTART only
# if the caller set it too: nobody else's server is restarted); otherwise
# starts the throwaway server in $LOOM_NATS_DIR (scripts/nats.sh), stopped
# again by the EXIT trap of loom_db_up. Call loom_db_up first.
loom_nats_up() {
    local url nats dir
    if [[ -n ${LOOM_TEST_NATS_URL:-} ]]; then
        say "using the NATS server in LOOM_TEST_NATS_URL"
        [[ -n ${LOOM_TEST_NATS_RESTART:-} ]] ||
            say "LOOM_TEST_NATS_RESTART is not set: nats_restart_test will" \
                "skip (it never restarts a server it was given)"
        return 0
    fi
    # Set before starting so a half-started server is stopped too.
    if ! scripts/nats.sh status "$LOOM_NATS_DIR" >/dev/null 2>&1; then
        _LOOM_NATS_STARTED=1
    fi
    url=$(scripts/nats.sh start "$LOOM_NATS_DIR" | tail -n 1)
    [[ $url == nats://* ]] || die "scripts/nats.sh start printed no URL"
    # Stop, start again on the same port and store, and fail unless the
    # URL (and so LOOM_TEST_NATS_URL) is unchanged; run by /bin/sh.
    nats=$(_loom_sh_quote "$LOOM_ROOT/scripts/nats.sh")
    dir=$(_loom_sh_quote "$(realpath -m -- "$LOOM_NATS_DIR")")
    LOOM_TEST_NATS_RESTART="$nats stop $dir && test \"\$($nats start $dir"
    LOOM_TEST_NATS_RESTART+=" | tail -n 1)\" = \"\$LOOM_TEST_NATS_URL\""
    export LOOM_TEST_NATS_URL=$url LOOM_TEST_NATS_RESTART
}

# Stop the server if loom_nats_up started it; never fails.
loom_nats_down() {
    if [[ ${_LOOM_NATS_STARTED:-0} == 1 ]]; then
        _LOOM_NATS_STARTED=0
        scripts/nats.sh stop "$LOOM_NATS_DIR" ||
            say "warning: could not stop nats-server in $LOOM_NATS_DIR"
    fi
    return 0
}

# Single-quotes $1 for /bin/sh.
_loom_sh_quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# Split an extra-arguments variable (DEMO_ARGS etc.) into the array ARGS.
loom_split_args() {
    # shellcheck disable=SC2034 # ARGS is the result, used by the caller
    read -r -a ARGS <<<"${1:-}"
}

# Fail with a hint if a program from the CMake build is missing.
loom_need_binary() {
    [[ -x $1 ]] || die "$1 not found; build it first with 'make build'"
}
