/*
 * The shared object that `loomctl projection rebuild --plugin` loads in
 * loomctl_projection_test: two projections, "orders" (a PostgreSQL read
 * model counting orders per stream) and "cache" (in memory). The loom_tx
 * functions resolve to the copies inside loomctl, which exports them.
 *
 * An event of type loomctl.Interrupt makes "orders" raise SIGINT in the
 * process running it, as an operator's Ctrl-C would at that point, so
 * the test can stop a rebuild at a known event.
 */
#include <signal.h>
#include <stddef.h>

#include "loom/projection.h"

LOOM_API const loom_projection_def *const *loom_projections(size_t *n);

static loom_err
orders_setup(loom_tx *tx, void *arg)
{
    (void) arg;
    return loom_tx_exec(tx,
                        "CREATE TABLE orders (stream text PRIMARY KEY, "
                        "placed bigint NOT NULL)",
                        0, NULL);
}

static loom_err
orders_placed(loom_tx *tx, const loom_event *ev, void *arg)
{
    const char *params[1] = {ev->stream};

    (void) arg;
    return loom_tx_exec(tx,
                        "INSERT INTO orders VALUES ($1, 1) ON CONFLICT "
                        "(stream) DO UPDATE SET placed = orders.placed + 1",
                        1, params);
}

static loom_err
orders_interrupt(loom_tx *tx, const loom_event *ev, void *arg)
{
    (void) tx;
    (void) ev;
    (void) arg;
    raise(SIGINT);
    return LOOM_OK;
}

static const loom_projection_handler orders_handlers[] = {
    {"shop.OrderPlaced", orders_placed},
    {"loomctl.Interrupt", orders_interrupt},
};

static const loom_projection_def orders_def = {
    .name = "orders",
    .schema = "loomctl_orders",
    .handlers = orders_handlers,
    .n_handlers = 2,
    .setup = orders_setup,
};

static long cache_events;

static loom_err
cache_any(loom_tx *tx, const loom_event *ev, void *arg)
{
    (void) tx;
    (void) ev;
    (void) arg;
    cache_events++;
    return LOOM_OK;
}

static void
cache_reset(void *arg)
{
    (void) arg;
    cache_events = 0;
}

static const loom_projection_handler cache_handlers[] = {
    {"shop.OrderPlaced", cache_any},
};

static const loom_projection_def cache_def = {
    .name = "cache",
    .handlers = cache_handlers,
    .n_handlers = 1,
    .reset = cache_reset,
};

static const loom_projection_def *const all_defs[] = {&orders_def, &cache_def};

const loom_projection_def *const *
loom_projections(size_t *n)
{
    *n = sizeof all_defs / sizeof all_defs[0];
    return all_defs;
}
