/*
 * The load: a shop and a steady stream of orders, each placed with the
 * start of its saga in one transaction (os_queue_order), as a checkout
 * front end would, through every outage the campaign causes.
 *
 * The shop is sized so that both compensations happen: the stock of
 * each SKU covers about 92% of what the orders will ask of it, so late
 * orders find it gone (the reservation fails, nothing to undo), and one
 * customer in ten has credit for about one order, so their later orders
 * are declined (the reservation is released).
 *
 * An order's lines and customer follow from the seed and its number
 * alone, so a retried order is the same order. A commit whose outcome is
 * unknown (the connection broke) is retried; if it had committed, the
 * retry fails on the order stream that now exists (LOOM_ECONFLICT), and
 * the orders count as placed: exactly what a client of an event store
 * does with an idempotent write.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"
#include "services.h"

#define N_SKUS      64
#define N_CUSTOMERS 200
#define N_POOR      20 /* customers with credit for about one order */
#define TX_ORDERS   10 /* orders per transaction at most */
#define POOR_CREDIT 2000

struct fl_load {
    const fl_opts *o;
    loom_store *s;
    char shop[32];
    int64_t t0;
    long placed;  /* orders 1..placed are committed */
    long unknown; /* commits whose outcome was unknown */
    long unknown_committed;
    int64_t retry_at; /* after a failure: not before */
    int failing;      /* consecutive failures */
};

static int64_t
sku_price(int i)
{
    return 100 + 7 * i;
}

static void
sku_name(char *buf, size_t len, int i)
{
    snprintf(buf, len, "SKU%02d", i);
}

static void
customer_name(char *buf, size_t len, int i)
{
    snprintf(buf, len, "%s%03d", i < N_POOR ? "poor" : "c", i);
}

static int
load_topics(fl_load *l)
{
    const char *topic = "";

    if (os_create_topics(l->s, &topic) == LOOM_OK)
        return 0;
    fprintf(stderr, "loom-faults: creating topic %s: %s\n", topic,
            loom_store_errmsg(l->s));
    return -1;
}

static int
load_shop(fl_load *l)
{
    /* Orders ask for 1.5 lines of 2 units on average: 3 units each. */
    int64_t demand = (int64_t) l->o->sagas * 3 / N_SKUS;
    int32_t stock = (int32_t) (demand * 92 / 100);
    char name[32];
    loom_tx *tx = NULL;
    loom_err rc = loom_tx_new(&tx);

    if (stock < 3)
        stock = 3;
    for (int i = 0; i < N_SKUS && rc == LOOM_OK; i++) {
        sku_name(name, sizeof name, i);
        rc = os_queue_stock(tx, l->shop, name, stock);
    }
    for (int i = 0; i < N_CUSTOMERS && rc == LOOM_OK; i++) {
        customer_name(name, sizeof name, i);
        rc = os_queue_credit(tx, l->shop, name,
                             i < N_POOR ? POOR_CREDIT : INT64_C(1000000000));
    }
    if (rc == LOOM_OK)
        rc = loom_store_commit(l->s, tx);
    loom_tx_free(tx);
    if (rc != LOOM_OK) {
        fprintf(stderr, "loom-faults: opening shop %s: %s: %s\n", l->shop,
                loom_err_name(rc), loom_store_errmsg(l->s));
        return -1;
    }
    fl_say("shop %s: %d SKUs of %d units, %d customers (%d with %d.%02d of "
           "credit)",
           l->shop, N_SKUS, (int) stock, N_CUSTOMERS, N_POOR, POOR_CREDIT / 100,
           POOR_CREDIT % 100);
    return 0;
}

fl_load *
fl_load_open(const fl_opts *o, fl_rng *rng)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    fl_load *l = calloc(1, sizeof *l);
    char err[512];

    if (l == NULL)
        return NULL;
    l->o = o;
    /* The shop's tag: a run of its own on this database. */
    snprintf(l->shop, sizeof l->shop, "f%llx",
             (unsigned long long) (fl_rand(rng) & 0xffffff));
    cfg.conninfo = o->conninfo;
    cfg.application_name = "loom-faults load";
    cfg.migrate = LOOM_MIGRATE_AUTO; /* a fresh cluster */
    if (loom_store_open(&l->s, &cfg, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom-faults: %s\n", err);
        free(l);
        return NULL;
    }
    if ((strncmp(o->transport, "topics:", 7) == 0 && load_topics(l) != 0) ||
        load_shop(l) != 0) {
        fl_load_close(l);
        return NULL;
    }
    l->t0 = fl_now_ms();
    return l;
}

/* Order n's customer and lines: from the seed and n alone. */
static void
order_of(const fl_load *l, long n, char *customer, size_t clen, os_line *lines,
         size_t *n_lines, char (*skus)[16])
{
    fl_rng r = {l->o->seed ^ ((uint64_t) n * UINT64_C(0x9e3779b97f4a7c15))};
    int first;

    customer_name(customer, clen, (int) fl_below(&r, N_CUSTOMERS));
    *n_lines = 1 + fl_below(&r, 2);
    first = (int) fl_below(&r, N_SKUS);
    for (size_t i = 0; i < *n_lines; i++) {
        /* Two lines are two different SKUs. */
        int sku =
            (first + (int) i * (1 + (int) fl_below(&r, N_SKUS - 1))) % N_SKUS;
        sku_name(skus[i], sizeof skus[i], sku);
        lines[i].sku = skus[i];
        lines[i].qty = 1 + (int32_t) fl_below(&r, 3);
        lines[i].price_cents = sku_price(sku);
    }
}

/* Places orders first .. first + n - 1 in one transaction. */
static loom_err
place(fl_load *l, long first, long n)
{
    loom_tx *tx = NULL;
    loom_err rc = loom_tx_new(&tx);

    for (long k = first; k < first + n && rc == LOOM_OK; k++) {
        char id[64], customer[32], skus[OS_MAX_LINES][16];
        os_line lines[OS_MAX_LINES];
        size_t n_lines;

        snprintf(id, sizeof id, "%s-%06ld", l->shop, k);
        order_of(l, k, customer, sizeof customer, lines, &n_lines, skus);
        rc = os_queue_order(tx, l->shop, id, customer, lines, n_lines);
    }
    if (rc == LOOM_OK)
        rc = loom_store_commit(l->s, tx);
    loom_tx_free(tx);
    return rc;
}

long
fl_load_step(fl_load *l, long in_flight)
{
    int64_t now = fl_now_ms();
    long due = (long) ((now - l->t0) * l->o->rate / 1000);

    if (due > l->o->sagas)
        due = l->o->sagas;
    while (l->placed < due && now >= l->retry_at &&
           (in_flight < 0 || in_flight < l->o->backlog)) {
        long n = due - l->placed;
        loom_err rc;

        if (n > TX_ORDERS)
            n = TX_ORDERS;
        rc = place(l, l->placed + 1, n);
        if (rc == LOOM_ECONFLICT && l->failing > 0) {
            /* The commit we did not hear back from had happened. */
            l->unknown_committed++;
            rc = LOOM_OK;
        }
        if (rc != LOOM_OK) {
            if (l->failing++ == 0) {
                l->unknown++;
                fl_say("placing orders %ld..%ld: %s: %s; retrying",
                       l->placed + 1, l->placed + n, loom_err_name(rc),
                       loom_store_errmsg(l->s));
            }
            /* Back off up to a second while the database is away. */
            l->retry_at = now + (l->failing < 10 ? 100 * l->failing : 1000);
            break;
        }
        if (l->failing > 0)
            fl_say("placing orders again after %d failed attempts", l->failing);
        l->failing = 0;
        l->placed += n;
        in_flight += n;
    }
    return l->placed;
}

long
fl_load_placed(const fl_load *l)
{
    return l->placed;
}

void
fl_load_unknown(const fl_load *l, long *unknown, long *committed)
{
    *unknown = l->unknown;
    *committed = l->unknown_committed;
}

const char *
fl_load_shop(const fl_load *l)
{
    return l->shop;
}

void
fl_load_close(fl_load *l)
{
    if (l == NULL)
        return;
    loom_store_close(l->s);
    free(l);
}
