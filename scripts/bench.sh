#!/usr/bin/env bash
# Body of `make bench`: the append, read, rebuild and live benchmarks
# against a durable (fsync=on, synchronous_commit=on) database, about 8
# minutes on the reference machine (docs/benchmarks.md).
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
say "benchmark: rebuild"
"$bench" rebuild "${ARGS[@]}"
say "benchmark: live"
"$bench" live "${ARGS[@]}"
