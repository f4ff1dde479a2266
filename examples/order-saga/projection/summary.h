/*
 * The read model: projection "ordersaga_summary", one row per order in
 * table order_saga.order_summary (order, customer, items, total, status,
 * and how its saga went, as the services' events tell it). Built from
 * events only, so a rebuild by replay gives the same table:
 *     loomctl projection rebuild ordersaga_summary \
 *         --plugin build/examples/order-saga/order-saga-plugin.so
 */
#ifndef ORDERSAGA_SUMMARY_H
#define ORDERSAGA_SUMMARY_H

#include "loom/projection.h"

/* The schema and table readers query. */
#define OS_SUMMARY_SCHEMA "order_saga"
#define OS_SUMMARY_TABLE  "order_saga.order_summary"

/* The definition (static; borrowed). */
const loom_projection_def *os_summary_def(void);

#endif /* ORDERSAGA_SUMMARY_H */
