/*
 * The checks, from the database alone, once the load and the faults are
 * over and the services stopped:
 *
 *   stuck           every placed order's saga is COMPLETED or COMPENSATED
 *   lost            every placed order has its saga and its OrderPlaced;
 *                   every message written to the outbox reached an inbox
 *                   (faults.sent, filled by a trigger on loom.outbox, is
 *                   the list of what was written); every effect a saga's
 *                   outcome implies is there (a completed order: each
 *                   line reserved, payment authorised, order confirmed;
 *                   a compensated one: what was reserved released, what
 *                   was authorised refunded); no stream has a version gap
 *   duplicated      no effect happened twice: per order, at most one
 *                   reservation per line, one authorisation, one
 *                   confirmation, one cancellation; no saga nobody placed
 *   replay_mismatch the read model equals a fresh replay of every event
 *                   (rebuilt blue/green, compared row by row); each row's
 *                   status agrees with its saga; replaying each SKU's
 *                   stream never goes below zero and ends at the opening
 *                   stock minus what completed orders bought; no account
 *                   ends over its limit or owing other than its
 *                   completed orders
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"
#include "ordersaga/inventory.pb-c.h"
#include "ordersaga/order.pb-c.h"
#include "ordersaga/payment.pb-c.h"
#include "summary.h"

/* The server's notices (a connection cut by a restart says so) would
 * only clutter the printout. */
static void
quiet(void *arg, const char *message)
{
    (void) arg;
    (void) message;
}

int
fl_pg_usable(PGconn **pg, const char *conninfo)
{
    if (*pg != NULL && PQstatus(*pg) == CONNECTION_OK) {
        /* A connection cut by the server shows only on use. */
        PGresult *r = PQexec(*pg, "SELECT 1");
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        if (ok)
            return 0;
    }
    if (*pg != NULL)
        PQfinish(*pg);
    *pg = PQconnectdb(conninfo);
    PQsetNoticeProcessor(*pg, quiet, NULL);
    return PQstatus(*pg) == CONNECTION_OK ? 0 : -1;
}

/* One number from SQL with $1 = the shop; -1 on error. */
static long
num(PGconn *pg, const char *shop, const char *sql)
{
    const char *p[1] = {shop};
    PGresult *r = PQexecParams(pg, sql, shop ? 1 : 0, NULL, p, NULL, NULL, 0);
    long n = -1;

    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        n = atol(PQgetvalue(r, 0, 0));
    else
        fl_say("audit query failed: %s: %s", sql, PQerrorMessage(pg));
    PQclear(r);
    return n;
}

static int
exec_ok(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
             PQresultStatus(r) == PGRES_TUPLES_OK;

    if (!ok)
        fprintf(stderr, "loom-faults: %s: %s\n", sql, PQerrorMessage(pg));
    PQclear(r);
    return ok ? 0 : -1;
}

int
fl_audit_install(PGconn *pg)
{
    return exec_ok(pg,
                   "CREATE SCHEMA IF NOT EXISTS faults;"
                   "CREATE TABLE IF NOT EXISTS faults.sent ("
                   "  message_id uuid NOT NULL, topic text NOT NULL,"
                   "  type text, key bytea,"
                   "  written_at timestamptz NOT NULL DEFAULT now());"
                   "CREATE OR REPLACE FUNCTION faults.note_sent() RETURNS "
                   "trigger LANGUAGE plpgsql AS $$ BEGIN"
                   "  INSERT INTO faults.sent (message_id, topic, type, key)"
                   "  VALUES (NEW.message_id, NEW.topic, NEW.type, NEW.key);"
                   "  RETURN NULL;"
                   "END $$;"
                   "DROP TRIGGER IF EXISTS faults_sent ON loom.outbox;"
                   "CREATE TRIGGER faults_sent AFTER INSERT ON loom.outbox "
                   "FOR EACH ROW EXECUTE FUNCTION faults.note_sent();");
}

#define SHOP_SAGAS "FROM loom.saga_instances WHERE id LIKE $1 || '-%' "

long
fl_audit_in_flight(PGconn **pg, const fl_opts *o, const char *shop)
{
    if (fl_pg_usable(pg, o->conninfo) != 0)
        return -1;
    return num(*pg, shop,
               "SELECT count(*) " SHOP_SAGAS
               "AND state NOT IN ('COMPLETED', 'COMPENSATED')");
}

long
fl_audit_drain(PGconn **pg, const fl_opts *o, const char *shop, long placed,
               fl_fleet *fleet)
{
    int64_t end = fl_now_ms() + (int64_t) o->drain_s * 1000, shown = 0;
    long left = -1;

    for (;;) {
        fl_fleet_tend(fleet);
        left = fl_audit_in_flight(pg, o, shop);
        if (left == 0 || fl_now_ms() > end)
            break;
        if (fl_now_ms() - shown >= 5000) {
            shown = fl_now_ms();
            fl_say("draining: %ld of %ld sagas still in flight", left, placed);
        }
        fl_sleep_ms(200);
    }
    return left;
}

void
fl_audit_settle(PGconn **pg, const fl_opts *o, const char *shop, long placed)
{
    /* Quiet: every order in the read model with its final status, and
     * nothing in it changed for two seconds. */
    const char *sql =
        "SELECT count(*) FILTER (WHERE s.status IN ('confirmed', "
        "'cancelled')) || ':' || md5(coalesce(string_agg(s::text, '|' "
        "ORDER BY order_id), '')) FROM " OS_SUMMARY_TABLE
        " s WHERE order_id LIKE $1 || '-%'";
    char last[128] = "";
    int64_t end = fl_now_ms() + (int64_t) o->drain_s * 1000,
            stable_since = fl_now_ms();

    while (fl_now_ms() < end) {
        const char *p[1] = {shop};
        PGresult *r = NULL;
        if (fl_pg_usable(pg, o->conninfo) == 0)
            r = PQexecParams(*pg, sql, 1, NULL, p, NULL, NULL, 0);
        if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK) {
            const char *now = PQgetvalue(r, 0, 0);
            if (strcmp(now, last) != 0) {
                snprintf(last, sizeof last, "%s", now);
                stable_since = fl_now_ms();
            } else if (fl_now_ms() - stable_since >= 2000) {
                PQclear(r);
                return;
            }
        }
        PQclear(r);
        fl_sleep_ms(250);
    }
    fl_say("the read model was still changing after %d s (%ld orders)",
           o->drain_s, placed);
}

/* ---- effects, per order -------------------------------------------------- */

typedef struct tally {
    int lines;  /* OrderPlaced's items; 0: no OrderPlaced */
    char state; /* C completed, X compensated, ? other, 0 no saga */
    int reserved, released, oos;
    int authorised, refunded, declined;
    int confirmed, cancelled;
} tally;

typedef struct audit {
    const fl_opts *o;
    const char *shop;
    PGconn *pg;
    tally *t; /* by order number, 1..placed */
    long placed;
    /* Units bought by completed orders, per SKU stream, and per
     * customer the cents they were charged: from OrderPlaced. */
    struct sold {
        char stream[80];
        int64_t units;
    } * sold;
    size_t n_sold, cap_sold;
} audit;

static long
order_no(const audit *a, const char *order_id)
{
    size_t len = strlen(a->shop);
    long n;

    if (order_id == NULL || strncmp(order_id, a->shop, len) != 0 ||
        order_id[len] != '-')
        return -1;
    n = atol(order_id + len + 1);
    return n >= 1 && n <= a->placed ? n : -1;
}

static int64_t *
sold_at(audit *a, const char *stream)
{
    for (size_t i = 0; i < a->n_sold; i++)
        if (strcmp(a->sold[i].stream, stream) == 0)
            return &a->sold[i].units;
    if (a->n_sold == a->cap_sold) {
        size_t cap = a->cap_sold ? a->cap_sold * 2 : 128;
        struct sold *s = realloc(a->sold, cap * sizeof *s);
        if (s == NULL)
            return NULL;
        a->sold = s;
        a->cap_sold = cap;
    }
    snprintf(a->sold[a->n_sold].stream, sizeof a->sold[a->n_sold].stream, "%s",
             stream);
    a->sold[a->n_sold].units = 0;
    return &a->sold[a->n_sold++].units;
}

/* Runs sql ($1 the shop) and hands each row (stream, type, data) to fn,
 * in the order the query gives. */
static int
each_event(audit *a, const char *sql,
           void (*fn)(audit *, const char *stream, const char *type,
                      const uint8_t *data, size_t len, void *arg),
           void *arg)
{
    const char *p[1] = {a->shop};
    /* Binary results: data comes as its bytes. */
    PGresult *r = PQexecParams(a->pg, sql, 1, NULL, p, NULL, NULL, 1);

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "loom-faults: %s: %s\n", sql, PQerrorMessage(a->pg));
        PQclear(r);
        return -1;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        char stream[256], type[128];
        snprintf(stream, sizeof stream, "%.*s", PQgetlength(r, i, 0),
                 PQgetvalue(r, i, 0));
        snprintf(type, sizeof type, "%.*s", PQgetlength(r, i, 1),
                 PQgetvalue(r, i, 1));
        fn(a, stream, type, (const uint8_t *) PQgetvalue(r, i, 2),
           (size_t) PQgetlength(r, i, 2), arg);
    }
    PQclear(r);
    return 0;
}

static void
on_order_event(audit *a, const char *stream, const char *type,
               const uint8_t *data, size_t len, void *arg)
{
    long n = order_no(a, stream + strlen("order-"));

    (void) arg;
    if (n < 0)
        return;
    if (strcmp(type, "ordersaga.OrderPlaced") == 0) {
        Ordersaga__OrderPlaced *m =
            ordersaga__order_placed__unpack(NULL, len, data);
        if (m == NULL)
            return;
        a->t[n].lines = (int) m->n_items;
        if (a->t[n].state == 'C') {
            for (size_t k = 0; k < m->n_items; k++) {
                char s[80];
                int64_t *u;
                snprintf(s, sizeof s, "stock-%s-%s", a->shop, m->items[k]->sku);
                if ((u = sold_at(a, s)) != NULL)
                    *u += m->items[k]->qty;
            }
            char c[80];
            int64_t *u;
            snprintf(c, sizeof c, "customer-%s-%s", a->shop, m->customer);
            if ((u = sold_at(a, c)) != NULL)
                *u += m->total_cents;
        }
        ordersaga__order_placed__free_unpacked(m, NULL);
    } else if (strcmp(type, "ordersaga.OrderConfirmed") == 0) {
        a->t[n].confirmed++;
    } else if (strcmp(type, "ordersaga.OrderCancelled") == 0) {
        a->t[n].cancelled++;
    }
}

/* Per stock or customer stream, the replay's running state. */
typedef struct replay {
    char stream[80];
    int64_t level;   /* stock on hand, or credit used */
    int64_t opening; /* stock added, or the credit limit */
    int below_zero;  /* the stock went negative, or credit over limit */
    long mismatches; /* streams found wrong, at their end */
    long over;
} replay;

static void
replay_end(audit *a, replay *rp)
{
    int64_t *sold;

    if (rp->stream[0] == '\0')
        return;
    sold = sold_at(a, rp->stream);
    if (strncmp(rp->stream, "stock-", 6) == 0) {
        if (rp->below_zero || sold == NULL ||
            rp->level != rp->opening - *sold) {
            rp->mismatches++;
            fl_say("audit: %s replays to %lld on hand: opening %lld minus "
                   "%lld sold%s",
                   rp->stream, (long long) rp->level, (long long) rp->opening,
                   sold ? (long long) *sold : -1LL,
                   rp->below_zero ? ", and went below zero" : "");
        }
    } else if (rp->below_zero || sold == NULL || rp->level != *sold) {
        rp->over += rp->below_zero;
        rp->mismatches += !rp->below_zero;
        fl_say("audit: %s replays to %lld used of %lld, completed orders "
               "charged %lld%s",
               rp->stream, (long long) rp->level, (long long) rp->opening,
               sold ? (long long) *sold : -1LL,
               rp->below_zero ? ", and went over its limit" : "");
    }
}

static void
on_party_event(audit *a, const char *stream, const char *type,
               const uint8_t *data, size_t len, void *arg)
{
    replay *rp = arg;
    long n;
    int *count = NULL;
    int64_t delta = 0;

    if (strcmp(rp->stream, stream) != 0) {
        replay_end(a, rp);
        snprintf(rp->stream, sizeof rp->stream, "%s", stream);
        rp->level = rp->opening = 0;
        rp->below_zero = 0;
    }
#define DECODE(T, fn, field_delta, counter)                                    \
    do {                                                                       \
        T *m = fn##__unpack(NULL, len, data);                                  \
        if (m == NULL)                                                         \
            return;                                                            \
        n = order_no(a, m->order_id);                                          \
        delta = (field_delta);                                                 \
        if (n >= 0)                                                            \
            count = &a->t[n].counter;                                          \
        fn##__free_unpacked(m, NULL);                                          \
    } while (0)
    if (strcmp(type, "ordersaga.StockAdded") == 0) {
        Ordersaga__StockAdded *m =
            ordersaga__stock_added__unpack(NULL, len, data);
        if (m == NULL)
            return;
        rp->level += m->qty;
        rp->opening += m->qty;
        ordersaga__stock_added__free_unpacked(m, NULL);
    } else if (strcmp(type, "ordersaga.CreditLimitSet") == 0) {
        Ordersaga__CreditLimitSet *m =
            ordersaga__credit_limit_set__unpack(NULL, len, data);
        if (m == NULL)
            return;
        rp->opening = m->limit_cents;
        ordersaga__credit_limit_set__free_unpacked(m, NULL);
    } else if (strcmp(type, "ordersaga.StockReserved") == 0) {
        DECODE(Ordersaga__StockReserved, ordersaga__stock_reserved, -m->qty,
               reserved);
    } else if (strcmp(type, "ordersaga.StockReleased") == 0) {
        DECODE(Ordersaga__StockReleased, ordersaga__stock_released, m->qty,
               released);
    } else if (strcmp(type, "ordersaga.OutOfStock") == 0) {
        DECODE(Ordersaga__OutOfStock, ordersaga__out_of_stock, 0, oos);
    } else if (strcmp(type, "ordersaga.PaymentAuthorised") == 0) {
        DECODE(Ordersaga__PaymentAuthorised, ordersaga__payment_authorised,
               m->amount_cents, authorised);
    } else if (strcmp(type, "ordersaga.PaymentRefunded") == 0) {
        DECODE(Ordersaga__PaymentRefunded, ordersaga__payment_refunded,
               -m->amount_cents, refunded);
    } else if (strcmp(type, "ordersaga.PaymentDeclined") == 0) {
        DECODE(Ordersaga__PaymentDeclined, ordersaga__payment_declined, 0,
               declined);
    }
#undef DECODE
    if (count != NULL)
        (*count)++;
    rp->level += delta;
    if (rp->level < 0 ||
        (strncmp(stream, "customer-", 9) == 0 && rp->level > rp->opening))
        rp->below_zero = 1;
}

/* Names the first lost messages and where each one stopped, so that a
 * failed run says what to look for even after its cluster is gone: still
 * in the outbox (the relay never published it), set aside as a dead
 * letter, in a topic (topics://: published, and no inbox marked it), or gone
 * from the outbox (published to the transport, which never delivered it). The
 * time is the campaign's, as the faults' lines print it. */
static void
show_lost_messages(const audit *a)
{
    char now[32];
    const char *p[1] = {now};
    PGresult *r;

    snprintf(now, sizeof now, "%.3f", (double) fl_elapsed_ms() / 1000);
    r = PQexecParams(
        a->pg,
        "SELECT s.message_id, s.topic, coalesce(s.type, '?'), "
        "coalesce(encode(s.key, 'escape'), ''), "
        "round($1::numeric - extract(epoch FROM now() - s.written_at), 1), "
        /* Each aggregate is NULL when nothing matches: the first place
         * that has the message names it. */
        "coalesce(CASE WHEN EXISTS (SELECT 1 FROM loom.outbox o WHERE "
        "o.message_id = s.message_id) THEN 'still in the outbox' END, "
        "'set aside: ' || (SELECT max(error) FROM loom.outbox_dead_letters "
        "d WHERE d.message_id = s.message_id), "
        "'in topic ' || (SELECT string_agg(DISTINCT t.name, ', ') FROM "
        "loom.topic_messages m JOIN loom.topics t ON t.id = m.topic_id "
        "WHERE m.id = s.message_id), "
        "'published: gone from the outbox') "
        "FROM faults.sent s WHERE NOT EXISTS (SELECT 1 FROM loom.inbox i "
        "WHERE i.message_id = s.message_id) ORDER BY s.written_at LIMIT 10",
        1, NULL, p, NULL, NULL, 0);

    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fl_say("audit: listing the lost messages failed: %s",
               PQerrorMessage(a->pg));
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r);
         i++)
        fl_say("audit: message %s (%s to %s, key \"%s\", written at [%s s]) "
               "reached no inbox: %s",
               PQgetvalue(r, i, 0), PQgetvalue(r, i, 2), PQgetvalue(r, i, 1),
               PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 5));
    PQclear(r);
}

/* `have` against `want`: the excess is duplicated, the shortfall lost. */
static void
expect(fl_verdict *v, long n, const char *what, int have, int want)
{
    if (have > want) {
        v->dup_effects += have - want;
        if (v->dup_effects <= 10)
            fl_say("audit: order %ld: %s %d times, expected %d", n, what, have,
                   want);
    } else if (have < want) {
        v->lost_effects += want - have;
        if (v->lost_effects <= 10)
            fl_say("audit: order %ld: %s %d times, expected %d", n, what, have,
                   want);
    }
}

static void
check_effects(const audit *a, fl_verdict *v)
{
    for (long n = 1; n <= a->placed; n++) {
        const tally *t = &a->t[n];
        if (t->state == 'C') {
            expect(v, n, "reserved", t->reserved, t->lines);
            expect(v, n, "released", t->released, 0);
            expect(v, n, "authorised", t->authorised, 1);
            expect(v, n, "refunded", t->refunded, 0);
            expect(v, n, "confirmed", t->confirmed, 1);
            expect(v, n, "cancelled", t->cancelled, 0);
        } else if (t->state == 'X') {
            /* All or nothing: each line reserved once, or none. */
            expect(v, n, "reserved", t->reserved,
                   t->reserved > 0 ? t->lines : 0);
            expect(v, n, "released", t->released, t->reserved);
            expect(v, n, "authorised", t->authorised, t->authorised ? 1 : 0);
            expect(v, n, "refunded", t->refunded, t->authorised);
            expect(v, n, "confirmed", t->confirmed, 0);
            /* The order policy cancels what stock or payment refused. */
            expect(v, n, "cancelled", t->cancelled,
                   t->oos > 0 || t->declined > 0 ? 1 : 0);
        }
        if (t->state == 'C' || t->state == 'X') {
            expect(v, n, "out of stock", t->oos, t->oos ? 1 : 0);
            expect(v, n, "declined", t->declined, t->declined ? 1 : 0);
        }
    }
}

static int
load_states(audit *a)
{
    const char *p[1] = {a->shop};
    PGresult *r = PQexecParams(a->pg, "SELECT id, state " SHOP_SAGAS, 1, NULL,
                               p, NULL, NULL, 0);

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return -1;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        long n = order_no(a, PQgetvalue(r, i, 0));
        const char *s = PQgetvalue(r, i, 1);
        if (n < 0)
            continue;
        a->t[n].state = strcmp(s, "COMPLETED") == 0     ? 'C'
                        : strcmp(s, "COMPENSATED") == 0 ? 'X'
                                                        : '?';
    }
    PQclear(r);
    return 0;
}

static void
rebuild_progress(const loom_rebuild_progress *p, void *arg)
{
    (void) arg;
    fl_say("rebuilding the read model by replay: %lld of %lld events%s",
           (long long) p->done, (long long) p->total,
           p->finished ? ", done" : "");
}

/* The live model's rows, as the services left them, against what the
 * events say of each order: confirmed when its saga completed, cancelled
 * when stock or payment refused it, else still placed. Returns the rows
 * that disagree or are missing (-1 when the query fails). */
static long
live_statuses(audit *a)
{
    const char *p[1] = {a->shop};
    PGresult *r = PQexecParams(a->pg,
                               "SELECT order_id, status FROM "
                               "faults.summary_live WHERE order_id LIKE $1 "
                               "|| '-%'",
                               1, NULL, p, NULL, NULL, 0);
    char *seen;
    long bad = 0;

    if (PQresultStatus(r) != PGRES_TUPLES_OK ||
        (seen = calloc((size_t) a->placed + 1, 1)) == NULL) {
        PQclear(r);
        return -1;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        long n = order_no(a, PQgetvalue(r, i, 0));
        const tally *t;
        const char *want;
        if (n < 0)
            continue;
        seen[n] = 1;
        t = &a->t[n];
        want = t->state == 'C'                 ? "confirmed"
               : t->oos > 0 || t->declined > 0 ? "cancelled"
                                               : "placed";
        if ((t->state == 'C' || t->state == 'X') &&
            strcmp(PQgetvalue(r, i, 1), want) != 0 && bad++ < 10)
            fl_say("audit: read model: order %ld is %s, its events say %s", n,
                   PQgetvalue(r, i, 1), want);
    }
    for (long n = 1; n <= a->placed; n++)
        if (!seen[n] && bad++ < 10)
            fl_say("audit: read model: order %ld has no row", n);
    free(seen);
    PQclear(r);
    return bad;
}

static int
check_read_model(audit *a, fl_verdict *v)
{
    loom_rebuild_options opt = LOOM_REBUILD_OPTIONS_INIT;
    char err[512] = "";

    if (exec_ok(a->pg, "DROP TABLE IF EXISTS faults.summary_live;"
                       "CREATE TABLE faults.summary_live AS SELECT * "
                       "FROM " OS_SUMMARY_TABLE) != 0)
        return -1;
    opt.conninfo = a->o->conninfo;
    opt.progress = rebuild_progress;
    opt.progress_ms = 2000;
    if (loom_projection_rebuild(os_summary_def(), &opt, err, sizeof err) !=
        LOOM_OK) {
        fprintf(stderr, "loom-faults: rebuilding the read model: %s\n", err);
        return -1;
    }
    v->model_diff =
        num(a->pg, NULL,
            "SELECT count(*) FROM ((SELECT * FROM "
            "faults.summary_live EXCEPT ALL SELECT * FROM " OS_SUMMARY_TABLE
            ") UNION ALL (SELECT * FROM " OS_SUMMARY_TABLE
            " EXCEPT ALL SELECT * FROM faults.summary_live)) d");
    v->model_status = live_statuses(a);
    return v->model_diff < 0 || v->model_status < 0 ? -1 : 0;
}

int
fl_audit_run(const fl_opts *o, const char *shop, long placed, fl_verdict *v)
{
    audit a = {o, shop, NULL, NULL, placed, NULL, 0, 0};
    replay rp;
    int rc = -1;

    memset(v, 0, sizeof *v);
    memset(&rp, 0, sizeof rp);
    if (fl_pg_usable(&a.pg, o->conninfo) != 0) {
        fprintf(stderr, "loom-faults: audit: %s", PQerrorMessage(a.pg));
        goto out;
    }
    a.t = calloc((size_t) placed + 1, sizeof *a.t);
    if (a.t == NULL || load_states(&a) != 0)
        goto out;
    v->sagas = num(a.pg, shop, "SELECT count(*) " SHOP_SAGAS);
    v->completed = num(a.pg, shop,
                       "SELECT count(*) " SHOP_SAGAS "AND state = 'COMPLETED'");
    v->compensated = num(
        a.pg, shop, "SELECT count(*) " SHOP_SAGAS "AND state = 'COMPENSATED'");
    for (long n = 1; n <= placed; n++) {
        v->stuck += a.t[n].state == '?';
        v->lost_orders += a.t[n].state == 0;
    }
    v->phantoms = v->sagas - (placed - v->lost_orders);
    v->messages = num(a.pg, NULL, "SELECT count(*) FROM faults.sent");
    v->lost_messages = num(a.pg, NULL,
                           "SELECT count(*) FROM faults.sent s WHERE NOT "
                           "EXISTS (SELECT 1 FROM loom.inbox i WHERE "
                           "i.message_id = s.message_id)");
    if (v->lost_messages > 0)
        show_lost_messages(&a);
    v->gaps = num(a.pg, NULL,
                  "SELECT count(*) FROM (SELECT stream, min(version) lo, "
                  "max(version) hi, count(*) n FROM loom.events GROUP BY "
                  "stream) e FULL JOIN loom.streams s USING (stream) WHERE "
                  "e.lo IS DISTINCT FROM 0 OR e.hi - e.lo + 1 <> e.n OR "
                  "s.version IS DISTINCT FROM e.hi");
    v->events = num(a.pg, shop,
                    "SELECT count(*) FROM loom.events WHERE stream LIKE "
                    "'%-' || $1 || '-%'");
    if (each_event(&a,
                   "SELECT stream, type, data FROM loom.events WHERE stream "
                   "LIKE 'order-' || $1 || '-%' ORDER BY stream, version",
                   on_order_event, NULL) != 0 ||
        each_event(&a,
                   "SELECT stream, type, data FROM loom.events WHERE stream "
                   "LIKE 'stock-' || $1 || '-%' OR stream LIKE 'customer-' "
                   "|| $1 || '-%' ORDER BY stream, version",
                   on_party_event, &rp) != 0)
        goto out;
    replay_end(&a, &rp);
    v->stock_diff = rp.mismatches;
    v->credit_over = rp.over;
    for (long n = 1; n <= placed; n++)
        v->lost_orders += a.t[n].state != 0 && a.t[n].lines == 0;
    check_effects(&a, v);
    if (v->sagas < 0 || v->messages < 0 || v->lost_messages < 0 ||
        v->gaps < 0 || check_read_model(&a, v) != 0)
        goto out;
    v->lost = v->lost_orders + v->lost_messages + v->lost_effects + v->gaps;
    v->duplicated = v->dup_effects + v->phantoms;
    v->replay_mismatch =
        v->model_diff + v->model_status + v->stock_diff + v->credit_over;
    rc = 0;
out:
    free(a.t);
    free(a.sold);
    if (a.pg != NULL)
        PQfinish(a.pg);
    return rc;
}

/* ---- the checks' own test ------------------------------------------------ */

int
fl_audit_sabotage(const fl_opts *o, const char *shop)
{
    /* One of each kind of damage, on orders the run completed: a saga
     * left stuck, a message that never reached its inbox, an effect
     * written twice, a read-model row that a replay would not give. */
    static const char *const sql[] = {
        "UPDATE loom.saga_instances SET state = 'COMPENSATION_FAILED' "
        "WHERE id = (SELECT min(id) FROM loom.saga_instances WHERE id "
        "LIKE $1 || '-%' AND state = 'COMPLETED')",
        "DELETE FROM loom.inbox WHERE message_id = (SELECT message_id "
        "FROM faults.sent ORDER BY written_at LIMIT 1)",
        "UPDATE " OS_SUMMARY_TABLE " SET total_cents = total_cents + 1 "
        "WHERE order_id = (SELECT max(id) FROM loom.saga_instances WHERE "
        "id LIKE $1 || '-%' AND state = 'COMPLETED')",
        "SELECT max(id) FROM loom.saga_instances WHERE id LIKE $1 || "
        "'-%' AND state = 'COMPLETED'"};
    const char *p[1] = {shop};
    PGconn *pg = NULL;
    loom_store *s = NULL;
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    Ordersaga__OrderConfirmed m = ORDERSAGA__ORDER_CONFIRMED__INIT;
    loom_event_data ev;
    uint8_t buf[256];
    char stream[128] = "", err[256];
    int rc = -1;

    if (fl_pg_usable(&pg, o->conninfo) != 0)
        goto out;
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        PGresult *r = PQexecParams(pg, sql[i], strstr(sql[i], "$1") ? 1 : 0,
                                   NULL, p, NULL, NULL, 0);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
                 PQresultStatus(r) == PGRES_TUPLES_OK;
        if (ok && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            snprintf(stream, sizeof stream, "order-%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        if (!ok)
            goto out;
    }
    /* The same order confirmed a second time. */
    cfg.conninfo = o->conninfo;
    if (stream[0] == '\0' || loom_store_open(&s, &cfg, err, sizeof err) != 0)
        goto out;
    m.order_id = stream + strlen("order-");
    memset(&ev, 0, sizeof ev);
    ev.type = "ordersaga.OrderConfirmed";
    ev.schema_version = 1;
    ev.data = buf;
    ev.data_len = protobuf_c_message_pack(&m.base, buf);
    if (loom_store_append(s, stream, LOOM_EXPECT_ANY, &ev, 1, NULL) != LOOM_OK)
        goto out;
    fl_say("sabotage: one saga stuck, one inbox mark deleted, %s confirmed "
           "twice and its read-model row altered",
           stream);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "loom-faults: sabotage failed: %s\n",
                pg ? PQerrorMessage(pg) : "no connection");
    loom_store_close(s);
    if (pg != NULL)
        PQfinish(pg);
    return rc;
}
