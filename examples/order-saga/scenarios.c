/*
 * The shop and the orders the demo places.
 *
 * Each run is a shop of its own (the run tag): its customers' credit
 * accounts and its stock are streams named after it, and its order ids
 * start with it, so the demo can run again and again on one database.
 *
 *   1 happy path      ada buys 2 APPLE and 1 PEAR: reserved, authorised,
 *                     confirmed
 *   2 declined        bob's credit (5.00) does not cover a FIG (12.00):
 *                     the payment is declined, the reservation released
 *   3 out of stock    cy wants a DURIAN, of which there are none: the
 *                     first step fails, there is nothing to undo
 *   4 kill            the payment service hangs on dee's order and is
 *                     killed (SIGKILL); started again, it handles the
 *                     command once more and the saga completes
 *   5 burst           N orders at once on APPLE and PEAR, more than the
 *                     stock: optimistic versioning makes concurrent
 *                     reservations retry on fresh stock, none oversells
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"

typedef struct sku_def {
    const char *sku;
    int32_t stock;
    int64_t price_cents;
} sku_def;

static const sku_def skus[] = {{"APPLE", 30, 120},
                               {"PEAR", 30, 95},
                               {"FIG", 5, 1200},
                               {"DURIAN", 0, 2500}};

static const struct {
    const char *name;
    int64_t limit_cents;
} customers[] = {{"ada", 10000}, {"bob", 500},   {"cy", 10000},
                 {"dee", 10000}, {"eve", 50000}, {"fay", 50000},
                 {"gus", 50000}, {"hal", 50000}};

#define N_SKUS      (sizeof skus / sizeof skus[0])
#define N_CUSTOMERS (sizeof customers / sizeof customers[0])

static int64_t
price(const char *sku)
{
    for (size_t i = 0; i < N_SKUS; i++)
        if (strcmp(skus[i].sku, sku) == 0)
            return skus[i].price_cents;
    return 0;
}

static int
create_topics(demo_run *r)
{
    const char *topic = "";

    if (os_create_topics(r->s, &topic) == LOOM_OK)
        return 0;
    fprintf(stderr, "loom-order-saga: creating topic %s: %s\n", topic,
            loom_store_errmsg(r->s));
    return -1;
}

int
demo_setup(demo_run *r)
{
    loom_tx *tx = NULL;
    loom_err rc = LOOM_OK;

    if (strncmp(r->o->transport, "topics:", 7) == 0 && create_topics(r) != 0)
        return -1;
    if (loom_tx_new(&tx) != LOOM_OK)
        return -1;
    for (size_t i = 0; i < N_SKUS && rc == LOOM_OK; i++)
        rc = os_queue_stock(tx, r->o->tag, skus[i].sku, skus[i].stock);
    for (size_t i = 0; i < N_CUSTOMERS && rc == LOOM_OK; i++)
        rc = os_queue_credit(tx, r->o->tag, customers[i].name,
                             customers[i].limit_cents);
    if (rc == LOOM_OK)
        rc = loom_store_commit(r->s, tx);
    if (rc != LOOM_OK)
        fprintf(stderr, "loom-order-saga: opening shop %s: %s: %s\n", r->o->tag,
                loom_err_name(rc), loom_store_errmsg(r->s));
    loom_tx_free(tx);
    if (rc != LOOM_OK)
        return -1;
    demo_heading("The shop");
    printf("Run %s: a shop of its own (streams stock-%s-*, customer-%s-*, "
           "order-%s-*).\n\n",
           r->o->tag, r->o->tag, r->o->tag, r->o->tag);
    printf("  %-8s %6s %8s      %-9s %12s\n", "SKU", "STOCK", "PRICE",
           "CUSTOMER", "CREDIT LIMIT");
    for (size_t i = 0; i < N_CUSTOMERS; i++) {
        if (i < N_SKUS)
            printf("  %-8s %6d %8.2f      ", skus[i].sku, (int) skus[i].stock,
                   (double) skus[i].price_cents / 100);
        else
            printf("  %-8s %6s %8s      ", "", "", "");
        printf("%-9s %12.2f\n", customers[i].name,
               (double) customers[i].limit_cents / 100);
    }
    return 0;
}

/* One order: "<sku>:<qty>" pairs. */
typedef struct order_line {
    const char *sku;
    int32_t qty;
} order_line;

/* Queues an order's OrderPlaced and the start of its saga in tx, at the
 * shop's prices. */
static loom_err
queue_order(demo_run *r, loom_tx *tx, const char *id, const char *customer,
            const order_line *lines, size_t n)
{
    os_line priced[OS_MAX_LINES];

    for (size_t i = 0; i < n && i < OS_MAX_LINES; i++) {
        priced[i].sku = lines[i].sku;
        priced[i].qty = lines[i].qty;
        priced[i].price_cents = price(lines[i].sku);
    }
    return os_queue_order(tx, r->o->tag, id, customer, priced, n);
}

static int
place(demo_run *r, const char *id, const char *customer,
      const order_line *lines, size_t n)
{
    loom_tx *tx = NULL;
    loom_err rc = loom_tx_new(&tx);

    if (rc == LOOM_OK)
        rc = queue_order(r, tx, id, customer, lines, n);
    if (rc == LOOM_OK)
        rc = loom_store_commit(r->s, tx);
    if (rc != LOOM_OK)
        fprintf(stderr, "loom-order-saga: placing %s: %s: %s\n", id,
                loom_err_name(rc),
                tx ? loom_tx_errmsg(tx) : loom_store_errmsg(r->s));
    loom_tx_free(tx);
    return rc == LOOM_OK ? 0 : -1;
}

/* Places one order, waits for its saga and shows its timeline; counts a
 * failure when it did not end in `want`. */
static int
single(demo_run *r, int n, const char *customer, const order_line *lines,
       size_t nl, const char *want)
{
    char id[64], state[32] = "";

    snprintf(id, sizeof id, "%s-%03d", r->o->tag, n);
    if (place(r, id, customer, lines, nl) != 0)
        return -1;
    if (demo_wait_saga(r->pg, id, state, sizeof state, 60000) != 0) {
        printf("  saga %s did not end within 60 s (%s)\n", id, state);
        r->failures++;
        return -1;
    }
    demo_timeline(r->pg, id);
    if (strcmp(state, want) != 0) {
        printf("  expected %s, got %s\n", want, state);
        r->failures++;
    }
    return 0;
}

/* topics://: waits (up to 15 s) until the killed process's member has
 * left the payment service's consumer group (its session expired), so
 * the burst's figures do not include that wait. */
static void
settle(demo_run *r)
{
    int64_t end = demo_now_ms() + 15000;
    int shown = 0;

    if (strncmp(r->o->transport, "topics:", 7) != 0)
        return;
    for (;;) {
        PGresult *res = demo_query(r->pg,
                                   "SELECT count(*) FROM loom.topic_members "
                                   "WHERE group_name = 'payment-participant'",
                                   0, NULL);
        long long n = res != NULL ? atoll(PQgetvalue(res, 0, 0)) : 1;
        PQclear(res);
        if (n <= 1 || demo_now_ms() > end)
            break;
        if (!shown++)
            printf("  waiting for the dead process's 10 s consumer session to "
                   "expire before the burst\n");
        demo_sleep_ms(100);
    }
}

/* Scenario 4: the payment service stops dead on the order's command and
 * is killed; a new process takes over. */
static int
kill_scenario(demo_run *r, int n)
{
    static const order_line lines[] = {{"PEAR", 1}, {"FIG", 1}};
    demo_child *victim = r->o->processes ? &r->kids[2] : &r->victim;
    char id[64], state[32] = "";
    int64_t t0;

    snprintf(id, sizeof id, "%s-%03d", r->o->tag, n);
    if (!r->o->processes) {
        /* Hand the payment service to a child process for this. */
        if (os_host_payment(r->host, 0) != LOOM_OK ||
            demo_spawn(victim, r->o, r->self, "payment", id) != 0 ||
            demo_expect(victim, "ready", 30000) != 0) {
            printf("  could not start the payment process\n");
            r->failures++;
            return -1;
        }
    }
    printf("  payment service: process %ld\n", (long) victim->pid);
    if (place(r, id, "dee", lines, 2) != 0)
        return -1;
    if (demo_expect(victim, "hang", 30000) != 0) {
        printf("  the payment process never received the command\n");
        r->failures++;
        return -1;
    }
    printf("  it received AuthorisePayment for %s and hangs mid-command\n", id);
    demo_kill(victim);
    t0 = demo_now_ms();
    printf("  SIGKILL: process killed; nothing of the command committed\n");
    if (demo_spawn(victim, r->o, r->self, "payment", NULL) != 0 ||
        demo_expect(victim, "ready", 30000) != 0) {
        printf("  could not start the payment process again\n");
        r->failures++;
        return -1;
    }
    printf("  payment service restarted: process %ld; the command is delivered "
           "again\n  (at the latest when the dead process's consumer session "
           "expires)\n",
           (long) victim->pid);
    if (demo_wait_saga(r->pg, id, state, sizeof state, 60000) != 0 ||
        strcmp(state, "COMPLETED") != 0) {
        printf("  saga %s is %s, expected COMPLETED\n", id, state);
        r->failures++;
    } else {
        printf("  saga completed %.1f s after the kill\n",
               (double) (demo_now_ms() - t0) / 1000);
    }
    demo_timeline(r->pg, id);
    if (!r->o->processes) {
        /* Give the payment service back to this process. */
        if (demo_stop(victim) != 0)
            r->failures++;
        r->victim_counts = victim->counts;
        if (os_host_payment(r->host, 1) != LOOM_OK)
            r->failures++;
    }
    settle(r);
    return 0;
}

/* Scenario 5: N orders in one transaction, so N sagas at once. */
static int
burst(demo_run *r, int first)
{
    static const order_line two[] = {{"APPLE", 1}, {"PEAR", 1}};
    loom_tx *tx = NULL;
    char id[64];
    loom_err rc = loom_tx_new(&tx);
    PGresult *res;
    const char *params[1];
    char like[64];
    int64_t end = demo_now_ms() + 120000;

    for (int i = 0; i < r->o->burst && rc == LOOM_OK; i++) {
        snprintf(id, sizeof id, "%s-%03d", r->o->tag, first + i);
        rc = queue_order(r, tx, id, customers[4 + i % 4].name, two,
                         i % 2 ? 2 : 1);
    }
    if (rc == LOOM_OK)
        rc = loom_store_commit(r->s, tx);
    loom_tx_free(tx);
    if (rc != LOOM_OK) {
        fprintf(stderr, "loom-order-saga: burst: %s: %s\n", loom_err_name(rc),
                loom_store_errmsg(r->s));
        return -1;
    }
    r->burst_first = first;
    r->burst_n = r->o->burst;
    printf("  %d orders placed in one transaction: %d sagas in flight at "
           "once\n",
           r->o->burst, r->o->burst);
    snprintf(like, sizeof like, "%s-%%", r->o->tag);
    params[0] = like;
    for (;;) {
        res = demo_query(r->pg,
                         "SELECT count(*) FILTER (WHERE state NOT IN "
                         "('COMPLETED','COMPENSATED','ABORTED')) FROM "
                         "loom.saga_instances WHERE id LIKE $1",
                         1, params);
        if (res == NULL || atoll(PQgetvalue(res, 0, 0)) == 0 ||
            demo_now_ms() > end)
            break;
        PQclear(res);
        demo_sleep_ms(50);
    }
    PQclear(res);
    return 0;
}

/* What the burst left: sagas by outcome, stock sold. */
static void
burst_report(demo_run *r)
{
    char lo[64], hi[64];
    const char *p[2] = {lo, hi};
    PGresult *res;

    snprintf(lo, sizeof lo, "%s-%03lld", r->o->tag, (long long) r->burst_first);
    snprintf(hi, sizeof hi, "%s-%03lld", r->o->tag,
             (long long) (r->burst_first + r->burst_n - 1));
    res = demo_query(r->pg,
                     "SELECT state, count(*), coalesce(min(last_error), '') "
                     "FROM loom.saga_instances WHERE id BETWEEN $1 AND $2 "
                     "GROUP BY state ORDER BY state",
                     2, p);
    for (int i = 0; res != NULL && i < PQntuples(res); i++)
        printf("  %-12s %4s sagas  %s\n", PQgetvalue(res, i, 0),
               PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
    PQclear(res);
    printf("  stock now (opening stock):");
    for (size_t i = 0; i < N_SKUS; i++) {
        char id[OS_ID_MAX];
        os_stock st;
        os_id(id, sizeof id, r->o->tag, skus[i].sku);
        if (loom_aggregate_load(r->s, &os_stock_type, id, &st, NULL) == LOOM_OK)
            printf(" %s %lld (%d)", skus[i].sku, (long long) st.on_hand,
                   (int) skus[i].stock);
    }
    printf("\n");
}

int
demo_scenarios(demo_run *r)
{
    static const order_line happy[] = {{"APPLE", 2}, {"PEAR", 1}};
    static const order_line fig[] = {{"FIG", 1}};
    static const order_line durian[] = {{"APPLE", 1}, {"DURIAN", 1}};

    demo_heading("1. Happy path: ada orders 2 APPLE and 1 PEAR");
    single(r, 1, "ada", happy, 2, "COMPLETED");
    demo_heading("2. Payment declined: bob (credit 5.00) orders a FIG (12.00)");
    single(r, 2, "bob", fig, 1, "COMPENSATED");
    demo_heading(
        "3. Out of stock: cy orders an APPLE and a DURIAN (none left)");
    single(r, 3, "cy", durian, 2, "COMPENSATED");
    demo_heading("4. A participant killed mid-saga: the payment service");
    kill_scenario(r, 4);
    demo_heading("5. A burst of concurrent orders on the same SKUs");
    if (burst(r, 5) == 0)
        burst_report(r);
    return r->failures == 0 ? 0 : -1;
}
