/*
 * The order-saga demo (examples/order-saga) end to end: runs the demo
 * binary once, in one process (as order_saga_demo_processes_test with
 * --processes, as order_saga_demo_nats_test over nats://), against this test's
 * database with run tag "t", then checks each scenario's outcome from the
 * database, not from the printout:
 *
 *   - saga states: t-001 and t-004 (the participant killed mid-saga)
 *     COMPLETED, t-002 (declined) and t-003 (out of stock) COMPENSATED,
 *     the burst (t-005 .. t-044) 28 COMPLETED and 12 COMPENSATED;
 *   - the saga logs: t-002 compensated by ReleaseStock, t-003 with
 *     nothing to compensate;
 *   - events per order stream: placed then confirmed, or placed then
 *     cancelled;
 *   - stock: replayed event by event, never below zero, and at the end
 *     the opening stock minus what confirmed orders bought;
 *   - payments: every confirmed order authorised exactly once (t-004's
 *     too, though its first payment process was killed), nothing
 *     authorised and not refunded for a compensated one, no account over
 *     its limit;
 *   - the read model order_saga.order_summary equal to a rebuild by
 *     replay, and each order's status its saga's outcome.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "loom/loom.h"
#include "ordersaga/inventory.pb-c.h"
#include "ordersaga/order.pb-c.h"
#include "ordersaga/payment.pb-c.h"
#include "pgtest.h"
#include "summary.h"
#ifdef DEMO_NATS
#include "ntest.h"
#endif

#define TAG "t"

static PGresult *
q(const char *sql)
{
    PGconn *c = PQconnectdb(loomt_dsn());
    PGresult *r = PQexec(c, sql);

    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQfinish(c);
    return r;
}

/* The demo, run to its end; its exit status. */
static int
run_demo(void)
{
    const char *url = "topics://";
    pid_t pid;
    int status;

#ifdef DEMO_NATS
    url = ntt_url("");
#endif
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The printout goes to the test's log. */
#ifdef DEMO_PROCESSES
        execl(DEMO_BIN, DEMO_BIN, "--run", TAG, "--transport", url,
              "--processes", (char *) NULL);
#else
        execl(DEMO_BIN, DEMO_BIN, "--run", TAG, "--transport", url,
              (char *) NULL);
#endif
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void
check_sagas(void)
{
    PGresult *r = q("SELECT id, state FROM loom.saga_instances WHERE id IN "
                    "('t-001','t-002','t-003','t-004') ORDER BY id");
    static const char *const want[] = {"COMPLETED", "COMPENSATED",
                                       "COMPENSATED", "COMPLETED"};

    assert_int_equal(PQntuples(r), 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(PQgetvalue(r, i, 1), want[i]);
    PQclear(r);
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM loom.saga_instances "
                                  "WHERE id BETWEEN 't-005' AND 't-044' AND "
                                  "state = 'COMPLETED'"),
                     28);
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM loom.saga_instances "
                                  "WHERE id BETWEEN 't-005' AND 't-044' AND "
                                  "state = 'COMPENSATED' AND last_error LIKE "
                                  "'%OUT_OF_STOCK%'"),
                     12);
    /* Declined: the reservation released; out of stock: nothing sent
     * after the failed reservation. */
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM loom.saga_log WHERE "
                                  "saga_id = 't-002' AND kind = 'reply' AND "
                                  "step_name = 'ReleaseStock'"),
                     1);
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM loom.saga_log WHERE "
                                  "saga_id = 't-003' AND kind = 'command'"),
                     1);
}

static void
check_order_streams(void)
{
    PGresult *r =
        q("SELECT i.id, i.state, string_agg(e.type, ',' ORDER BY e.version) "
          "FROM loom.saga_instances i JOIN loom.events e ON e.stream = "
          "'order-' || i.id WHERE i.id LIKE 't-%' GROUP BY i.id, i.state");

    assert_int_equal(PQntuples(r), 44);
    for (int i = 0; i < PQntuples(r); i++) {
        const char *want =
            strcmp(PQgetvalue(r, i, 1), "COMPLETED") == 0
                ? "ordersaga.OrderPlaced,ordersaga.OrderConfirmed"
                : "ordersaga.OrderPlaced,ordersaga.OrderCancelled";
        if (strcmp(PQgetvalue(r, i, 2), want) != 0)
            fail_msg("order-%s (%s): %s", PQgetvalue(r, i, 0),
                     PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
    }
    PQclear(r);
}

/* Sold units per SKU of the confirmed orders, from their OrderPlaced. */
static void
confirmed_demand(loom_store *s, const char *sku, int64_t *sold)
{
    PGresult *r = q("SELECT id FROM loom.saga_instances WHERE id LIKE 't-%' "
                    "AND state = 'COMPLETED'");

    *sold = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        char stream[64];
        loom_events *page = NULL;
        snprintf(stream, sizeof stream, "order-%s", PQgetvalue(r, i, 0));
        assert_int_equal(
            loom_store_read_stream(s, stream, 0, LOOM_FORWARD, 10, &page),
            LOOM_OK);
        const loom_event *ev = loom_events_at(page, 0);
        Ordersaga__OrderPlaced *m =
            ordersaga__order_placed__unpack(NULL, ev->data_len, ev->data);
        assert_non_null(m);
        for (size_t k = 0; k < m->n_items; k++)
            if (strcmp(m->items[k]->sku, sku) == 0)
                *sold += m->items[k]->qty;
        ordersaga__order_placed__free_unpacked(m, NULL);
        loom_events_free(page);
    }
    PQclear(r);
}

static void
check_stock(loom_store *s)
{
    static const char *const skus[] = {"APPLE", "PEAR", "FIG", "DURIAN"};

    for (size_t k = 0; k < 4; k++) {
        char stream[64];
        loom_events *page = NULL;
        int64_t on_hand = 0, opening = -1, sold;

        snprintf(stream, sizeof stream, "stock-" TAG "-%s", skus[k]);
        assert_int_equal(
            loom_store_read_stream(s, stream, 0, LOOM_FORWARD, 1000, &page),
            LOOM_OK);
        for (size_t i = 0; i < loom_events_count(page); i++) {
            const loom_event *ev = loom_events_at(page, i);
            if (strcmp(ev->type, "ordersaga.StockAdded") == 0) {
                Ordersaga__StockAdded *m = ordersaga__stock_added__unpack(
                    NULL, ev->data_len, ev->data);
                on_hand += m->qty;
                opening = on_hand;
                ordersaga__stock_added__free_unpacked(m, NULL);
            } else if (strcmp(ev->type, "ordersaga.StockReserved") == 0) {
                Ordersaga__StockReserved *m = ordersaga__stock_reserved__unpack(
                    NULL, ev->data_len, ev->data);
                on_hand -= m->qty;
                ordersaga__stock_reserved__free_unpacked(m, NULL);
            } else if (strcmp(ev->type, "ordersaga.StockReleased") == 0) {
                Ordersaga__StockReleased *m = ordersaga__stock_released__unpack(
                    NULL, ev->data_len, ev->data);
                on_hand += m->qty;
                ordersaga__stock_released__free_unpacked(m, NULL);
            }
            if (on_hand < 0)
                fail_msg("%s below zero at version %lld", stream,
                         (long long) ev->version);
        }
        loom_events_free(page);
        confirmed_demand(s, skus[k], &sold);
        if (on_hand != opening - sold)
            fail_msg("%s: %lld left, opening %lld minus %lld sold", stream,
                     (long long) on_hand, (long long) opening,
                     (long long) sold);
    }
    /* The burst sold every APPLE. */
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM loom.events WHERE "
                                  "stream = 'stock-t-APPLE' AND type = "
                                  "'ordersaga.StockReserved'"),
                     1 + 28);
}

/* Per saga (the events' correlation id): authorisations, refunds and
 * declines on the customers' accounts. */
typedef struct pay_tally {
    int auth[45], ref[45], decl[45];
} pay_tally;

static void
tally_account(loom_store *s, const char *customer, pay_tally *t)
{
    char stream[64];
    loom_events *page = NULL;

    snprintf(stream, sizeof stream, "customer-" TAG "-%s", customer);
    assert_int_equal(
        loom_store_read_stream(s, stream, 0, LOOM_FORWARD, 1000, &page),
        LOOM_OK);
    for (size_t i = 0; i < loom_events_count(page); i++) {
        const loom_event *ev = loom_events_at(page, i);
        int n = -1;
        if (strcmp(ev->type, "ordersaga.CreditLimitSet") == 0)
            continue;
        if (ev->correlation_id == NULL ||
            sscanf(ev->correlation_id, TAG "-%d", &n) != 1 || n < 1 || n > 44)
            fail_msg("%s v%lld: correlation id %s", stream,
                     (long long) ev->version,
                     ev->correlation_id ? ev->correlation_id : "(none)");
        if (strcmp(ev->type, "ordersaga.PaymentAuthorised") == 0)
            t->auth[n]++;
        else if (strcmp(ev->type, "ordersaga.PaymentRefunded") == 0)
            t->ref[n]++;
        else
            t->decl[n]++;
    }
    loom_events_free(page);
}

static void
check_payments(loom_store *s)
{
    static const char *const customers[] = {"ada", "bob", "cy",  "dee",
                                            "eve", "fay", "gus", "hal"};
    PGresult *r = q("SELECT substr(id, 3)::int, state = 'COMPLETED' FROM "
                    "loom.saga_instances WHERE id LIKE 't-%'");
    pay_tally t;

    memset(&t, 0, sizeof t);
    for (size_t c = 0; c < 8; c++)
        tally_account(s, customers[c], &t);
    for (int i = 0; i < PQntuples(r); i++) {
        int n = atoi(PQgetvalue(r, i, 0));
        int completed = PQgetvalue(r, i, 1)[0] == 't';
        if ((completed && (t.auth[n] != 1 || t.ref[n] != 0)) ||
            (!completed && t.auth[n] != t.ref[n]))
            fail_msg(TAG "-%03d (%s): %d authorised, %d refunded", n,
                     completed ? "COMPLETED" : "COMPENSATED", t.auth[n],
                     t.ref[n]);
    }
    PQclear(r);
    assert_int_equal(t.decl[2], 1); /* bob's FIG */
    assert_int_equal(t.auth[4], 1); /* once, though its process was killed */
}

/* The read model: equal to a rebuild by replay, statuses as the sagas. */
static void
check_read_model(void)
{
    const char *digest = "SELECT md5(string_agg(s::text, '|' ORDER BY "
                         "order_id)) FROM " OS_SUMMARY_TABLE " s";
    PGresult *before = q(digest), *after;
    loom_rebuild_options opt = LOOM_REBUILD_OPTIONS_INIT;
    char err[512] = "";

    opt.conninfo = loomt_dsn();
    if (loom_projection_rebuild(os_summary_def(), &opt, err, sizeof err) !=
        LOOM_OK)
        fail_msg("rebuild: %s", err);
    after = q(digest);
    assert_string_equal(PQgetvalue(before, 0, 0), PQgetvalue(after, 0, 0));
    PQclear(before);
    PQclear(after);
    assert_int_equal(
        loomt_sql_ll("SELECT count(*) FROM " OS_SUMMARY_TABLE " s JOIN "
                     "loom.saga_instances i ON i.id = s.order_id WHERE "
                     "(i.state = 'COMPLETED') = (s.status = 'confirmed') AND "
                     "s.status IN ('confirmed', 'cancelled')"),
        44);
}

static void
order_saga_demo_outcomes_hold_in_the_database(void **state)
{
    loom_store *s;

    (void) state;
    assert_int_equal(run_demo(), 0);
    s = loomt_store_open();
    check_sagas();
    check_order_streams();
    check_stock(s);
    check_payments(s);
    check_read_model();
    loom_store_close(s);
}

static int
setup(void **state)
{
#ifdef DEMO_NATS
    ntt_group_setup(state);
#endif
    (void) state;
#ifdef DEMO_PROCESSES
    loomt_db_create("order_saga_demo_proc");
#else
    loomt_db_create("order_saga_demo");
#endif
    return 0;
}

static int
teardown(void **state)
{
#ifdef DEMO_NATS
    ntt_group_teardown(state);
#endif
    (void) state;
    loomt_db_drop();
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(order_saga_demo_outcomes_hold_in_the_database),
    };
    return cmocka_run_group_tests_name("examples.order_saga", tests, setup,
                                       teardown);
}
