/*
 * The quickstart's read model: projection "order_summary", one row per
 * order in table quickstart_read.orders, kept by the live runner and
 * rebuildable with
 *     loomctl projection rebuild order_summary \
 *         --plugin build/examples/quickstart/quickstart-projections.so
 */
#ifndef QUICKSTART_SUMMARY_H
#define QUICKSTART_SUMMARY_H

#include "loom/projection.h"

/* Called (when set) after the handler queued an order's confirmation. */
typedef void (*summary_confirmed_fn)(const char *order_id, void *arg);

typedef struct summary_watch {
    summary_confirmed_fn fn;
    void *arg;
} summary_watch;

/* The definition; `watch` (borrowed, may be NULL) is told about each
 * confirmation as it is handled. */
loom_projection_def summary_def(summary_watch *watch);

#endif /* QUICKSTART_SUMMARY_H */
