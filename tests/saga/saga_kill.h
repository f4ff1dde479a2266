/*
 * What saga_kill_test's two files share: the plan of each saga (which
 * SKU it reserves, where it fails), the names of its streams, and the
 * aggregates the participants keep (saga_kill_handlers.c holds every
 * handler of proto/sagakill/checkout.proto).
 *
 * Every participant handler, for each command it handles, appends one
 * event with an expected version and inserts one row into kill_effects
 * (saga_id, step, outcome, pid) with loom_participant_tx(): no unique
 * constraint, so a command handled twice would leave two rows.
 */
#ifndef LOOM_SAGA_KILL_H
#define LOOM_SAGA_KILL_H

#include <stdint.h>

#include "loom/aggregate.h"
#include "sagakill/checkout.loom.h"

/* Shared stock aggregates: sku-0 .. sku-<KILL_SKUS - 1>. */
#define KILL_SKUS 8

/* Where saga number i fails for good (Order.fail_at): every 7th saga,
 * alternately at Charge (2: card declined, so Reserve is compensated) and
 * at Ship (3: refused, so Charge then Reserve are compensated); 0 for
 * the others, which complete. */
int kill_fail_at(int i);
/* The SKU saga i reserves. */
int kill_sku(int i);

/* The stock of one SKU: how many reservations and releases it holds. */
typedef struct kill_sku_state {
    int64_t reserved;
    int64_t released;
} kill_sku_state;

/* Aggregate "sku" (streams sku-<n>): StockReserved and StockReleased. */
extern const loom_aggregate_type kill_sku_type;

#endif /* LOOM_SAGA_KILL_H */
