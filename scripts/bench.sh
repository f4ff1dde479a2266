#!/usr/bin/env bash
# Body of `make bench`: the append, read, rebuild, live, topics, relay and
# saga benchmarks against a durable (fsync=on, synchronous_commit=on) database,
# about 8 minutes on the reference machine (docs/benchmarks.md).
#
#   scripts/bench.sh             all seven
#   scripts/bench.sh topics ...  only the loom-bench commands named
#
# Installs what the benchmarks compare against (PgQ, for topics) when it
# is missing; relay also runs through NATS JetStream, on the throwaway
# nats-server of scripts/nats.sh unless LOOM_BENCH_NATS_URL names one.
# Extra loom-bench arguments: make bench BENCH_ARGS='...'
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

bench=build/tools/loom-bench
loom_need_binary "$bench"
loom_split_args "${BENCH_ARGS:-}"

commands=("$@")
if ((${#commands[@]} == 0)); then
    commands=(append read rebuild live topics relay saga)
fi
for cmd in "${commands[@]}"; do
    case $cmd in
    append | read | rebuild | live | saga) ;;
    topics) need_pgq=1 ;;
    relay) need_nats=1 ;;
    *) die "unknown benchmark \"$cmd\" (append, read, rebuild, live, topics, relay, saga)" ;;
    esac
done
if [[ ${need_pgq:-0} == 1 ]]; then
    scripts/deps.sh --bench
fi

loom_db_up
if [[ ${need_nats:-0} == 1 && -z ${LOOM_BENCH_NATS_URL:-} ]] &&
    [[ -f build/CMakeCache.txt ]] &&
    grep -q '^LOOM_WITH_NATS:BOOL=ON' build/CMakeCache.txt; then
    loom_nats_up
    export LOOM_BENCH_NATS_URL=$LOOM_TEST_NATS_URL
fi
for cmd in "${commands[@]}"; do
    say "benchmark: $cmd"
    "$bench" "$cmd" "${ARGS[@]}"
done
