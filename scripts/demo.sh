#!/usr/bin/env bash
# Body of `make demo`: migrate a database and run the quickstart example.
# Extra quickstart arguments: make demo DEMO_ARGS='...'
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

loomctl=build/tools/loomctl/loomctl
quickstart=build/examples/quickstart/loom-quickstart
loom_need_binary "$loomctl"
loom_need_binary "$quickstart"
loom_split_args "${DEMO_ARGS:-}"

loom_db_up
say "migrating the database"
"$loomctl" migrate
say "running $quickstart${ARGS[*]:+ ${ARGS[*]}}"
"$quickstart" "${ARGS[@]}"
say "the newest order events, as an operator sees them"
"$loomctl" --types build/examples/quickstart/quickstart-types.so tail --category order --limit 6
say "the projection's read model, rebuilt by replay beside the live one and swapped in"
"$loomctl" projection rebuild order_summary \
    --plugin build/examples/quickstart/quickstart-projections.so
"$loomctl" projection list
say "store statistics"
"$loomctl" stats
