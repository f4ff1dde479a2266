/*
 * The shared object that `loomctl --types` loads in loomctl_test: it
 * registers loomctltest.OrderPlaced. loom_registry_add() resolves to the
 * copy inside loomctl, which exports it.
 */
#include "loom/registry.h"
#include "loomctl_types.pb-c.h"

LOOM_API loom_err loom_register_types(loom_registry *r);

loom_err
loom_register_types(loom_registry *r)
{
    return loom_registry_add(r, "shop.OrderPlaced",
                             &loomctltest__order_placed__descriptor);
}
