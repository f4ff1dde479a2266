#!/usr/bin/env bash
# Body of `make test`: run the CTest suites of build/ and build-asan/ against
# a PostgreSQL database (see loom_db_up in lib.sh).
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

loom_db_up

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

if ((${#failed[@]} > 0)); then
    say "tests FAILED in: ${failed[*]}"
    exit 1
fi
say "all tests passed"
