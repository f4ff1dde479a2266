#!/usr/bin/env bash
# Body of `make bench`: append and read benchmarks against a durable
# (fsync=on, synchronous_commit=on) database.
# Extra loom-bench arguments: make bench BENCH_ARGS='...'
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

bench=build/tools/loom-bench
loom_need_binary "$bench"
loom_split_args "${BENCH_ARGS:-}"

loom_db_up
say "benchmark: append"
"$bench" append "${ARGS[@]}"
say "benchmark: read"
"$bench" read "${ARGS[@]}"
