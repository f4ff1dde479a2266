#!/usr/bin/env bash
# Body of `make demo`: migrate a database, run the order-saga demo
# (examples/order-saga, see its README.md), then show what an operator
# sees of it with loomctl. Extra demo arguments go in DEMO_ARGS:
#   make demo DEMO_ARGS='--processes'        one process per service
#   make demo DEMO_ARGS='--transport nats://127.0.0.1:4222'
#   make demo DEMO_ARGS='--transport nats'   a throwaway nats-server
#                                            (scripts/nats.sh, build/nats)
#                                            started and stopped here
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

loomctl=build/tools/loomctl/loomctl
demo=build/examples/order-saga/loom-order-saga
plugin=build/examples/order-saga/order-saga-plugin.so
loom_need_binary "$loomctl"
loom_need_binary "$demo"
[[ -f $plugin ]] || die "$plugin not found; build it first with 'make build'"
loom_split_args "${DEMO_ARGS:-}"

loom_db_up
# "--transport nats" without a URL: a nats-server of our own.
for i in "${!ARGS[@]}"; do
    if [[ ${ARGS[i]} == --transport && ${ARGS[i + 1]:-} == nats ]]; then
        loom_nats_up
        ARGS[i + 1]=$LOOM_TEST_NATS_URL
    fi
done

say "migrating the database"
"$loomctl" migrate
say "running $demo${ARGS[*]:+ ${ARGS[*]}}"
out=build/demo.out # the printout, kept for a second look
"$demo" "${ARGS[@]}" | tee "$out"
run=$(sed -n 's/^Run \([a-z0-9]*\): .*/\1/p' "$out" | head -n 1)

say "loomctl saga list: this run's first sagas, as an operator sees them"
"$loomctl" saga list --limit 100 | { grep -E "^(ID|$run-00[1-4] )" || true; }
say "loomctl saga show $run-002: the declined payment, its data decoded"
"$loomctl" --types "$plugin" saga show "$run-002"
say "order $run-004 (the kill scenario) and the newest events, decoded"
"$loomctl" --types "$plugin" read "order-$run-004"
"$loomctl" --types "$plugin" tail --limit 6
say "loomctl projection list"
"$loomctl" projection list
say "store statistics"
"$loomctl" stats
