#!/usr/bin/env bash
# Body of `make test`: run the CTest suites of build/ and build-asan/ against
# a PostgreSQL database (see loom_db_up in lib.sh) and, when they are built
# with NATS (LOOM_WITH_NATS), a nats-server with JetStream (loom_nats_up).
#
# Then a short libFuzzer run of every fuzz target (scripts/fuzz.sh --quick,
# FUZZ_QUICK_SECONDS each, in build-fuzz/); the seed corpora and saved
# crashes also run as ctests in both builds.
#
# The Makefile has already run deps, build, build-asan and format-check.
# Extra ctest arguments: CTEST_ARGS='-R append' make test
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

for dir in build build-asan; do
    [[ -f $dir/CMakeCache.txt ]] ||
        die "$dir/ is not configured; run 'make test' (or 'make build build-asan')"
done
loom_split_args "${CTEST_ARGS:-}"
extra=("${ARGS[@]}")

# pg_restart_test restarts the server mid-run, so it may only ever touch
# the private cluster: remember whether the database is someone else's.
external_db=${LOOM_DATABASE_URL:+1}

loom_db_up

# The tests labelled `nats` exist in builds with NATS; they fail, never
# skip, without LOOM_TEST_NATS_URL.
if grep -qs '^LOOM_WITH_NATS:BOOL=ON$' build/CMakeCache.txt build-asan/CMakeCache.txt; then
    loom_nats_up
fi

# Single-quotes $1 for /bin/sh (system() in the test runs the command).
sh_quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

if [[ -z $external_db ]]; then
    # Stop and start again (pg.sh keeps the port when it is still free);
    # fails unless the connection string, and so LOOM_TEST_PG_DSN, is
    # unchanged.
    pg="$(sh_quote "$LOOM_ROOT/scripts/pg.sh")"
    pg_dir="$(sh_quote "$(realpath -m -- "$LOOM_PG_DIR")")"
    restart="$pg stop $pg_dir"
    restart+=" && test \"\$($pg start $pg_dir | tail -n 1)\""
    restart+=" = \"\$LOOM_TEST_PG_DSN\""
    export LOOM_TEST_PG_RESTART=$restart
elif [[ -z ${LOOM_TEST_PG_RESTART:-} ]]; then
    say "LOOM_TEST_PG_RESTART is not set: pg_restart_test will skip" \
        "(it never restarts the server in LOOM_DATABASE_URL by itself)"
fi

# --no-tests=error: a suite that silently registers no tests is a failure.
ctest_run() {
    ctest --test-dir "$1" --output-on-failure --no-tests=error -j2 \
        --timeout 600 "${extra[@]}"
}

# Run both suites even if the first fails: one CI run shows everything.
failed=()
say "running tests (build/)"
ctest_run build || failed+=(build)

say "running tests (build-asan/, sanitizers on)"
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    ctest_run build-asan || failed+=(build-asan)

say "fuzzing each target briefly (build-fuzz/)"
scripts/fuzz.sh --quick || failed+=(fuzz)

if ((${#failed[@]} > 0)); then
    say "tests FAILED in: ${failed[*]}"
    exit 1
fi
say "all tests passed"
