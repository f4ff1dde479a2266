/*
 * The quickstart's projection as a loomctl plugin, so an operator can
 * rebuild its read model by replay:
 *     loomctl projection rebuild order_summary \
 *         --plugin build/examples/quickstart/quickstart-projections.so
 * The library functions the handlers call (loom_tx_exec) are resolved
 * from loomctl itself when it loads the plugin.
 */
#include "summary.h"

LOOM_API const loom_projection_def *const *loom_projections(size_t *n);

const loom_projection_def *const *
loom_projections(size_t *n)
{
    static loom_projection_def def;
    static const loom_projection_def *const defs[] = {&def};

    def = summary_def(NULL);
    *n = 1;
    return defs;
}
