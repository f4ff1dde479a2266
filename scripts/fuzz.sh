#!/usr/bin/env bash
# Body of `make fuzz` (long runs) and of the fuzzing step of `make test`
# (--quick): builds the libFuzzer targets of tests/fuzz with clang,
# ASan and UBSan in build-fuzz/, then runs each for FUZZ_SECONDS.
#
#   scripts/fuzz.sh            every target, FUZZ_SECONDS each (default 300)
#   scripts/fuzz.sh --quick    every target, FUZZ_QUICK_SECONDS each
#                              (default 5): what `make test` runs
#   scripts/fuzz.sh [--quick] TARGET...   only those
#
# Each run starts from the seeds (tests/fuzz/corpus/<target>/), the saved
# crashes (tests/fuzz/regressions/<target>/) and what earlier runs found
# (build-fuzz/corpus/<target>/, kept between runs). An input that
# crashes, leaks, hits undefined behaviour, breaks a property or runs
# over FUZZ_TIMEOUT seconds (default 10) is saved in
# build-fuzz/crashes/<target>/ and reported, and the script fails once
# every target has run. FUZZ_JOBS targets run at a time (default: the
# cores, at most 2). Extra libFuzzer flags: FUZZ_ARGS='-dict=... ...'.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

quick=0
if [[ ${1:-} == --quick ]]; then
    quick=1
    shift
fi
if ((quick)); then
    seconds=${FUZZ_QUICK_SECONDS:-5}
else
    seconds=${FUZZ_SECONDS:-300}
fi
timeout=${FUZZ_TIMEOUT:-10}
for n in "$seconds" "$timeout"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] ||
        die "FUZZ_SECONDS, FUZZ_QUICK_SECONDS and FUZZ_TIMEOUT are whole" \
            "numbers of seconds, not \"$n\""
done
loom_split_args "${FUZZ_ARGS:-}"
extra=("${ARGS[@]}")

dir=build-fuzz
command -v clang >/dev/null || die "clang not found; run scripts/deps.sh"

# -O1 with line tables: a fuzzing build wants speed and stack traces, and
# keeps assert() (no NDEBUG). Configuring every time is cheap and makes
# these options win over an older cache.
say "building the fuzz targets in $dir/ (clang, libFuzzer, ASan, UBSan)"
cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Fuzz \
    -DCMAKE_C_FLAGS_FUZZ='-O1 -gline-tables-only' -DLOOM_FUZZ=ON \
    -DLOOM_BUILD_TESTS=OFF -DLOOM_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$dir" -j"$(nproc 2>/dev/null || echo 2)" --target fuzz

targets=("$@")
if ((${#targets[@]} == 0)); then
    for bin in "$dir"/tests/fuzz/fuzz_*; do
        [[ -x $bin ]] && targets+=("${bin##*/fuzz_}")
    done
fi
((${#targets[@]} > 0)) || die "no fuzz target was built in $dir/tests/fuzz"

# Sanitizer reports end the run; leaks are checked after every input.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Runs target $1; its summary goes to $dir/logs/$1.log.result, its status
# is the run's.
run_target() {
    local t=$1 bin work crashes log stamp seeds flags runs secs rate
    bin=$LOOM_ROOT/$dir/tests/fuzz/fuzz_$t
    work=$LOOM_ROOT/$dir/corpus/$t
    crashes=$LOOM_ROOT/$dir/crashes/$t
    log=$LOOM_ROOT/$dir/logs/$t.log
    stamp=$LOOM_ROOT/$dir/logs/$t.start
    mkdir -p "$work" "$crashes" "$(dirname "$log")"
    touch "$stamp"
    seeds=("$LOOM_ROOT/tests/fuzz/corpus/$t")
    if [[ -d $LOOM_ROOT/tests/fuzz/regressions/$t ]]; then
        seeds+=("$LOOM_ROOT/tests/fuzz/regressions/$t")
    fi
    flags=(-max_total_time="$seconds" -timeout="$timeout"
        -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$crashes/")
    # loomctl prints its usage errors; they would drown the report.
    [[ $t == loomctl_args ]] && flags+=(-close_fd_mask=3)
    # The first directory receives what the run finds; seeds stay as
    # they are in the repository.
    if "$bin" "${flags[@]}" "${extra[@]}" "$work" "${seeds[@]}" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log")
        rate=$(awk -v r="${runs:-0}" -v s="${secs:-0}" \
            'BEGIN { printf "%d", (s > 0 ? r / s : 0) }')
        say "$t: ${runs:-?} inputs in ${secs:-?} s ($rate/s)," \
            "corpus of $(find "$work" -type f | wc -l) inputs" >"$log.result"
        return 0
    fi
    {
        say "$t: FAILED (log: $log)"
        grep -E 'ERROR|ALARM|runtime error|property failed|SUMMARY|^    #[0-9]' \
            "$log" | head -n 30 || true
        # This run's inputs only (older ones may be there too).
        find "$crashes" -type f -newer "$stamp" | while read -r f; do
            say "  input: $f (once fixed: cp it to tests/fuzz/regressions/$t/)"
        done
    } >"$log.result"
    return 1
}

for t in "${targets[@]}"; do
    [[ -x $dir/tests/fuzz/fuzz_$t ]] ||
        die "no fuzz target \"$t\" (see tests/fuzz/CMakeLists.txt)"
done

# FUZZ_JOBS targets at a time (default: one per core, at most 2, as the
# rest of `make test`); each run is single-threaded.
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
((jobs > 2)) && [[ -z ${FUZZ_JOBS:-} ]] && jobs=2
say "fuzzing ${#targets[@]} targets, $seconds s each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
    if ((running >= jobs)); then
        wait -n || true
        running=$((running - 1))
    fi
    rm -f "$dir/logs/$t.log.result"
    run_target "$t" &
    running=$((running + 1))
done
wait || true
# A run that died before writing its summary failed too.
failed=()
for t in "${targets[@]}"; do
    result=$dir/logs/$t.log.result
    if [[ -f $result ]]; then
        cat "$result"
    else
        say "$t: FAILED (no summary; log: $dir/logs/$t.log)"
    fi
    grep -q "^==> $t: FAILED" "$result" 2>/dev/null && failed+=("$t")
    [[ -f $result ]] || failed+=("$t")
done

if ((${#failed[@]} > 0)); then
    say "fuzzing FAILED: ${failed[*]}; inputs in $dir/crashes/<target>/"
    exit 1
fi
say "fuzzing passed: ${#targets[@]} targets, ${seconds} s each"
