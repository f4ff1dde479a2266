#!/usr/bin/env bash
# Body of `make faults` (the full campaign) and of the ctest faults_short
# (--short): runs tests/faults' loom-faults, the order-saga services under
# load while processes are SIGKILLed, PostgreSQL crashes and restarts,
# connections are cut and (nats://) nats-server restarts; then checks the
# database. See docs/reliability.md.
#
#   scripts/faults.sh [--short] [--sabotage] [--bin PATH] [--demo PATH]
#                     [--dir DIR]
#
# --sabotage is the checks' own test: the campaign damages the database
# before checking it (a saga stuck, an inbox mark deleted, an effect
# written twice, a read-model row altered), and every count must show it.
#
# Sized and seeded from the environment (the full run's defaults, then
# --short's):
#   FAULT_SAGAS        orders, so sagas               10000 / 600
#   FAULT_KILLS        SIGKILLs of service processes     50 / 8
#   FAULT_PG_RESTARTS  PostgreSQL crashes                 2 / 1
#   FAULT_TERMINATIONS rounds of pg_terminate_backend    10 / 3
#   FAULT_SEED         the schedule's seed           random / 20261129
#   FAULT_RATE         orders per second                250 / 30
#   FAULT_TRANSPORT    topics, nats or both           both / topics
#                      (both: one campaign on each, the same seed, and a
#                      last FAULTS line adding them up)
#   FAULT_NATS_RESTARTS nats-server restarts (nats)       2 / 1
#   FAULT_KEEP=1       leave the cluster (and nats-server) running at the
#                      end, to look into it; scripts/pg.sh destroy DIR/pg
#
# The campaign always runs on a PostgreSQL cluster of its own (it crashes
# it), created afresh in DIR/pg (default build/faults), and, for nats, a
# nats-server of its own in DIR/nats; both are deleted at the end. The
# services' log is DIR/services.log, PostgreSQL's DIR/postgresql.log, the
# printout DIR/faults.out. Its last line:
#   FAULTS sagas=<n> kills=<k> pg_restarts=<r> lost=<x> duplicated=<y>
#          stuck=<z> replay_mismatch=<w>
# and the exit status is 0 only when the last four are 0.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

orig=("$@")
short=0
extra=()
bin=build/tests/faults/loom-faults
demo=build/examples/order-saga/loom-order-saga
dir=build/faults
while (($# > 0)); do
    case $1 in
    --short) short=1 ;;
    --sabotage) extra+=(--sabotage) ;;
    --bin) bin=$2 && shift ;;
    --demo) demo=$2 && shift ;;
    --dir) dir=$2 && shift ;;
    *) die "unknown argument $1 (see the top of $0)" ;;
    esac
    shift
done
loom_need_binary "$bin"
loom_need_binary "$demo"

if ((short)); then
    sagas=${FAULT_SAGAS:-600} kills=${FAULT_KILLS:-8}
    restarts=${FAULT_PG_RESTARTS:-1} terms=${FAULT_TERMINATIONS:-3}
    seed=${FAULT_SEED:-20261129} rate=${FAULT_RATE:-30} drain=240
    nats_restarts=${FAULT_NATS_RESTARTS:-1}
else
    sagas=${FAULT_SAGAS:-10000} kills=${FAULT_KILLS:-50}
    restarts=${FAULT_PG_RESTARTS:-2} terms=${FAULT_TERMINATIONS:-10}
    seed=${FAULT_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
    rate=${FAULT_RATE:-250} drain=600
    nats_restarts=${FAULT_NATS_RESTARTS:-2}
fi
transport=${FAULT_TRANSPORT:-both}
((short)) && transport=${FAULT_TRANSPORT:-topics}

# both: the campaign on each transport with the same seed, each with its
# own cluster and printout (DIR/topics, DIR/nats), then one FAULTS line
# adding both up.
if [[ $transport == both ]]; then
    rc=0
    for t in topics nats; do
        say "the campaign over $t://"
        FAULT_TRANSPORT=$t FAULT_SEED=$seed "$0" "${orig[@]}" --dir "$dir/$t" ||
            rc=1
    done
    for t in topics nats; do
        [[ -f $dir/$t/faults.out ]] || die "no printout in $dir/$t"
    done
    echo
    awk '/^FAULTS / {
             for (i = 2; i <= NF; i++) {
                 split($i, kv, "="); key[i] = kv[1]; sum[kv[1]] += kv[2]
             }
             n = NF; runs++
         }
         END {
             if (runs != 2) exit 1
             line = "FAULTS"
             for (i = 2; i <= n; i++) line = line " " key[i] "=" sum[key[i]]
             print line
         }' "$dir/topics/faults.out" "$dir/nats/faults.out" || rc=1
    exit "$rc"
fi

mkdir -p "$dir"
dir=$(realpath -- "$dir")
pg_dir=$dir/pg
nats_dir=$dir/nats
log=$dir/services.log
: >"$log"

cleanup() {
    local rc=$?
    local root=$pg_dir
    [[ -f $pg_dir.path ]] && root=$(<"$pg_dir.path")
    [[ -f $root/log ]] && cp -- "$root/log" "$dir/postgresql.log" 2>/dev/null
    if [[ -n ${FAULT_KEEP:-} ]]; then
        say "kept: $LOOM_DATABASE_URL (scripts/pg.sh destroy $pg_dir)"
        exit "$rc"
    fi
    scripts/pg.sh destroy "$pg_dir" >>"$log" 2>&1 || true
    if [[ $transport == nats ]]; then
        scripts/nats.sh destroy "$nats_dir" >>"$log" 2>&1 || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "a PostgreSQL cluster of the campaign's own in $pg_dir"
scripts/pg.sh destroy "$pg_dir" >>"$log" 2>&1 || true
dsn=$(scripts/pg.sh start "$pg_dir" 2>>"$log" | tail -n 1)
[[ -n $dsn ]] || die "scripts/pg.sh start printed no connection string (log: $log)"
export LOOM_DATABASE_URL=$dsn

args=()
case $transport in
topics)
    # A killed participant's partitions move on 3 s after its last
    # heartbeat, not the default 10 s.
    args+=(--transport 'topics://?session_timeout_ms=3000')
    ;;
nats)
    scripts/nats.sh destroy "$nats_dir" >>"$log" 2>&1 || true
    url=$(scripts/nats.sh start "$nats_dir" 2>>"$log" | tail -n 1)
    [[ -n $url ]] || die "scripts/nats.sh start printed no URL (log: $log)"
    args+=(--transport "$url?ack_wait_ms=5000" --nats-dir "$nats_dir"
        --nats-restarts "$nats_restarts")
    ;;
*) die "FAULT_TRANSPORT must be topics, nats or both, not $transport" ;;
esac

say "loom-faults: $sagas sagas, $kills kills, $restarts PostgreSQL restarts," \
    "seed $seed (again: FAULT_SEED=$seed)"
rc=0
"$bin" --demo "$demo" --pg-dir "$pg_dir" --scripts "$LOOM_ROOT/scripts" \
    --log "$log" --sagas "$sagas" --kills "$kills" --pg-restarts "$restarts" \
    --terminations "$terms" --seed "$seed" --rate "$rate" --drain-s "$drain" \
    "${args[@]}" "${extra[@]}" | tee "$dir/faults.out" || rc=$?
# A service that crashed left its last words (a sanitizer's report, an
# assertion) in the services' log, which CI does not keep: show them.
if ((rc != 0)); then
    report='^==[0-9]+==(ERROR|WARNING)|runtime error|Assertion'
    for pid in $(sed -n 's/.*(pid \([0-9]*\)) exited on its own.*/\1/p' \
        "$dir/faults.out"); do
        echo "==> the last lines process $pid logged (from $log):"
        grep -F "[$pid] " "$log" | tail -n 20 || true
    done
    # Messages a transport dead-lettered on its own (nats: delivered too
    # often without an acknowledgement) reach no inbox: the audit counts
    # them lost.
    if grep -q 'without the handler' "$log"; then
        echo "==> dead letters the transport sent on its own (from $log):"
        grep 'without the handler' "$log" | head -n 20 || true
    fi
    if grep -qE "$report" "$log"; then
        echo "==> reports in $log:"
        grep -E -A 60 "$report" "$log" | head -n 300 || true
    fi
fi
exit "$rc"
