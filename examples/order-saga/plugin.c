/*
 * The demo's loomctl plugin (order-saga-plugin.so):
 *     loomctl --types order-saga-plugin.so tail ...       decoded payloads
 *     loomctl --types order-saga-plugin.so saga show ID   decoded saga data
 *     loomctl projection rebuild ordersaga_summary --plugin
 * order-saga-plugin.so The library functions it calls are resolved from loomctl
 * itself.
 */
#include "ordersaga/inventory.loom.h"
#include "ordersaga/order.loom.h"
#include "ordersaga/payment.loom.h"
#include "ordersaga/saga_data.loom.h"
#include "summary.h"

LOOM_API loom_err loom_register_types(loom_registry *r);
LOOM_API const loom_projection_def *const *loom_projections(size_t *n);

loom_err
loom_register_types(loom_registry *r)
{
    loom_err rc = ordersaga__order__register_types(r);

    if (rc == LOOM_OK)
        rc = ordersaga__payment__register_types(r);
    if (rc == LOOM_OK)
        rc = ordersaga__inventory__register_types(r);
    if (rc == LOOM_OK)
        rc = ordersaga__saga_data__register_types(r);
    return rc;
}

const loom_projection_def *const *
loom_projections(size_t *n)
{
    static const loom_projection_def *defs[1];

    defs[0] = os_summary_def();
    *n = 1;
    return defs;
}
