/*
 * The quickstart's event types as a loomctl plugin:
 *     loomctl --types build/examples/quickstart/quickstart-types.so read ...
 * prints payloads with field names instead of field numbers.
 */
#include "loom/registry.h"
#include "order.pb-c.h"

LOOM_API loom_err loom_register_types(loom_registry *r);

loom_err
loom_register_types(loom_registry *r)
{
    loom_err rc = loom_registry_add(r, NULL, &shop__order_placed__descriptor);

    if (rc == LOOM_OK)
        rc = loom_registry_add(r, NULL, &shop__item_added__descriptor);
    if (rc == LOOM_OK)
        rc = loom_registry_add(r, NULL, &shop__order_confirmed__descriptor);
    return rc;
}
