/*
 * The demo's three services and the saga between them, as the demo and
 * its test use them.
 *
 * Aggregates (each the fold of its stream, loaded and checked against
 * its version on every command):
 *   order-<order id>           OrderPlaced, OrderConfirmed, OrderCancelled
 *   customer-<shop>-<name>     CreditLimitSet, PaymentAuthorised,
 *                              PaymentDeclined, PaymentRefunded
 *   stock-<shop>-<sku>         StockAdded, StockReserved, StockReleased,
 *                              OutOfStock
 * A "shop" is one run of the demo: its customers' credit and its stock
 * are streams of their own, so runs never disturb each other.
 *
 * The participants' handlers (services/order.c, payment.c, inventory.c)
 * and the orchestrator's (checkout.c) are the prototypes protoc-gen-loom
 * generated from protos/ordersaga/create_order.proto.
 */
#ifndef ORDERSAGA_SERVICES_H
#define ORDERSAGA_SERVICES_H

#include <stddef.h>
#include <stdint.h>

#include "loom/loom.h"
#include "ordersaga/create_order.loom.h"

/* The longest aggregate id this demo builds ("<shop>-<name>"). */
#define OS_ID_MAX 128

/* An aggregate's state, with what it holds for one order: the "ledger
 * key" set before a load makes apply() count that order's reservations
 * or authorisations net of releases or refunds, and note a refusal
 * already recorded, so a step run twice for one saga (a retry after a
 * timeout) acts once and answers as the first time, and a compensation
 * with nothing to undo does nothing. Participants run one handler at a time
 * on their loop, so one key per thread is enough. */
typedef struct os_stock {
    int64_t on_hand; /* units that can be reserved */
    int64_t held;    /* units reserved for the ledger key's order */
    int refused;     /* OutOfStock recorded for the ledger key's order */
    int released;    /* its reservation released: the saga compensated */
} os_stock;

typedef struct os_account {
    int64_t limit_cents;
    int64_t used_cents; /* authorised and not refunded */
    int64_t held_cents; /* of which for the ledger key's order */
    int declined;       /* PaymentDeclined recorded for the ledger key's */
    int refunded;       /* its payment refunded: the saga compensated */
} os_account;

typedef struct os_order {
    int placed, confirmed, cancelled;
    int64_t total_cents;
} os_order;

extern const loom_aggregate_type os_stock_type;   /* "stock" */
extern const loom_aggregate_type os_account_type; /* "customer" */
extern const loom_aggregate_type os_order_type;   /* "order" */

/* Sets the order whose holdings the next loads count ("" for none). */
void os_ledger_key(const char *order_id);
/* 1 when `order_id` is the ledger key. */
int os_ledger_is(const char *order_id);

/* "<shop>-<name>" into buf (cut to fit). */
void os_id(char *buf, size_t len, const char *shop, const char *name);

/* Packs `m` into an event of its own type (memory from ctx) with the
 * saga id as correlation id. LOOM_ENOMEM when out of memory. */
loom_err os_event(loom_participant_ctx *ctx, const ProtobufCMessage *m,
                  loom_event_data *ev);
/* As os_event() and loom_participant_emit() of that one event. */
loom_err os_emit(loom_participant_ctx *ctx, const char *stream,
                 int64_t expected, const ProtobufCMessage *m);

/* ---- the checkout's write side (services/place.c) ---- */

/* The most lines an order may have. */
#define OS_MAX_LINES 4

/* One line of an order. */
typedef struct os_line {
    const char *sku;
    int32_t qty;
    int64_t price_cents;
} os_line;

/* Queues one event of m's type on `stream` in tx, expecting `expected`
 * (loom_tx_append); `correlation` may be NULL. LOOM_ETOOBIG over 1 KiB. */
loom_err os_queue_event(loom_tx *tx, const char *stream, int64_t expected,
                        const ProtobufCMessage *m, const char *correlation);
/* Queues the opening stock of a shop's SKU (a new stream
 * stock-<shop>-<sku>) or the credit limit of its customer (a new stream
 * customer-<shop>-<customer>). */
loom_err os_queue_stock(loom_tx *tx, const char *shop, const char *sku,
                        int32_t qty);
loom_err os_queue_credit(loom_tx *tx, const char *shop, const char *customer,
                         int64_t limit_cents);
/* Queues order `id`'s OrderPlaced (a new stream order-<id>) and the start
 * of its CreateOrder saga (saga id `id`) in tx: they commit together or
 * not at all. Committed once, the same call commits again never: the
 * order's stream exists (LOOM_ECONFLICT at commit), so an order whose
 * commit's outcome was unknown can be placed again safely.
 * LOOM_EINVAL when n is 0 or over OS_MAX_LINES. */
loom_err os_queue_order(loom_tx *tx, const char *shop, const char *id,
                        const char *customer, const os_line *lines, size_t n);

/* topics:// only: creates the saga's topics (the three participants'
 * and "ordersaga.replies", 4 partitions each) unless they exist. On
 * failure *failed names the topic (loom_store_errmsg(s) says why). */
loom_err os_create_topics(loom_store *s, const char **failed);

/* The kill scenario: the payment service stops dead (never returns
 * from its handler) on the command for `order_id`, after writing one
 * byte to `notify_fd` (-1: none) so the demo knows when to kill it. */
void os_payment_hang_on(const char *order_id, int notify_fd);

/* The order service's policy: a transactional subscription that cancels
 * an order when its saga reports OutOfStock or PaymentDeclined (the
 * saga's steps before ConfirmOrder cannot touch the order). */
loom_err os_order_policy_start(loom_runtime *rt, const char *conninfo,
                               loom_subscription **out);

/* The roles a process can play (bit mask). */
enum {
    OS_ROLE_ORCHESTRATOR = 1,
    OS_ROLE_ORDER = 2,
    OS_ROLE_PAYMENT = 4,
    OS_ROLE_INVENTORY = 8,
    OS_ROLE_SUMMARY = 16, /* the read model's projection */
    OS_ROLE_ALL = 31,
    /* Nothing but the outbox relay every host runs: a process the fault
     * campaign can kill to kill the relay alone. */
    OS_ROLE_RELAY = 32
};

/* What a process's participants counted. */
typedef struct os_counts {
    uint64_t handled, failures, duplicates, conflicts, errors;
} os_counts;

/* A runtime with a transport, an outbox relay and the components of
 * `roles`: what one process of the demo runs (services/host.c). */
typedef struct os_host os_host;

typedef struct os_host_config {
    const char *conninfo;  /* NULL: $LOOM_DATABASE_URL */
    const char *transport; /* URL */
    int roles;
    const char *name; /* shown as the relay's name */
    int handle_signals;
} os_host_config;

/* Opens everything (blocking connects). Errors: those of the parts; err
 * says which part and why. */
loom_err os_host_open(os_host **out, const os_host_config *cfg, char *err,
                      size_t errlen);
/* Runs the loop until os_host_stop() (or a signal with handle_signals).
 * `running` (may be NULL) is called once on the loop's first turn, when
 * the runtime's signal handlers are in place. */
loom_err os_host_run(os_host *h, void (*running)(void *arg), void *arg);
/* Any thread: asks the loop to stop. */
void os_host_stop(os_host *h);
/* Any thread, while the loop runs: closes (on = 0) or opens again
 * (on = 1) the payment participant, and waits until done. */
loom_err os_host_payment(os_host *h, int on);
/* The participants' counters (after run returned, or any time on the
 * loop thread). */
void os_host_counts(const os_host *h, os_counts *out);
void os_host_close(os_host *h);

#endif /* ORDERSAGA_SERVICES_H */
