/*
 * Eventloom quickstart: an Order aggregate whose events are protobuf
 * messages. It runs commands against the aggregate (load, decide, append
 * with optimistic versioning), shows a stale writer being refused, reads
 * the stream back with decoded payloads, replays the "order" category in
 * commit order, and runs the projection "order_summary" (summary.c) on
 * the libuv runtime until it has handled this run's order, then prints
 * its row from the read model in PostgreSQL.
 *
 * Run it with `make demo`, or: LOOM_DATABASE_URL=... loom-quickstart
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "loom/loom.h"
#include "loom/projection.h"
#include "order.pb-c.h"
#include "summary.h"

/* The aggregate's state: a flat struct, so snapshots are its bytes. */
typedef struct order_state {
    int placed;
    int confirmed;
    int32_t items;
    int64_t total_cents;
    char customer[64];
} order_state;

static loom_err
order_apply(void *state, const loom_event *ev)
{
    order_state *o = state;

    if (strcmp(ev->type, "shop.OrderPlaced") == 0) {
        Shop__OrderPlaced *m =
            shop__order_placed__unpack(NULL, ev->data_len, ev->data);
        if (m == NULL)
            return LOOM_EDECODE;
        o->placed = 1;
        snprintf(o->customer, sizeof o->customer, "%s", m->customer);
        shop__order_placed__free_unpacked(m, NULL);
    } else if (strcmp(ev->type, "shop.ItemAdded") == 0) {
        Shop__ItemAdded *m =
            shop__item_added__unpack(NULL, ev->data_len, ev->data);
        if (m == NULL)
            return LOOM_EDECODE;
        o->items += m->quantity;
        o->total_cents += m->quantity * m->price_cents;
        shop__item_added__free_unpacked(m, NULL);
    } else if (strcmp(ev->type, "shop.OrderConfirmed") == 0) {
        o->confirmed = 1;
    }
    return LOOM_OK;
}

static const loom_aggregate_type order_type = {
    .name = "order",
    .state_size = sizeof(order_state),
    .state_version = 1,
    .init = NULL,
    .apply = order_apply,
    .snapshot_every = 3,
};

/* Packs `msg` and adds it to the decision as an event of its own type. */
static loom_err
emit(loom_decision *out, const ProtobufCMessage *msg)
{
    uint8_t buf[256];
    size_t len = protobuf_c_message_get_packed_size(msg);
    loom_event_data ev;

    if (len > sizeof buf)
        return LOOM_ETOOBIG;
    memset(&ev, 0, sizeof ev);
    ev.type = msg->descriptor->name;
    ev.schema_version = 1;
    ev.data = buf;
    ev.data_len = protobuf_c_message_pack(msg, buf);
    ev.correlation_id = "quickstart";
    return loom_decision_emit(out, &ev);
}

/* Commands: each decides from the current state, or refuses. */
static loom_err
place(const void *state, int64_t version, loom_decision *out, void *arg)
{
    Shop__OrderPlaced m = SHOP__ORDER_PLACED__INIT;

    (void) version;
    if (((const order_state *) state)->placed)
        return LOOM_EHANDLER; /* placing twice is refused */
    m.order_id = arg;
    m.customer = "ada";
    return emit(out, &m.base);
}

typedef struct item_cmd {
    const char *sku;
    int32_t quantity;
    int64_t price_cents;
} item_cmd;

static loom_err
add_item(const void *state, int64_t version, loom_decision *out, void *arg)
{
    const item_cmd *c = arg;
    Shop__ItemAdded m = SHOP__ITEM_ADDED__INIT;

    (void) version;
    if (!((const order_state *) state)->placed ||
        ((const order_state *) state)->confirmed)
        return LOOM_EHANDLER;
    m.sku = (char *) c->sku;
    m.quantity = c->quantity;
    m.price_cents = c->price_cents;
    return emit(out, &m.base);
}

static loom_err
confirm(const void *state, int64_t version, loom_decision *out, void *arg)
{
    const order_state *o = state;
    Shop__OrderConfirmed m = SHOP__ORDER_CONFIRMED__INIT;

    (void) version;
    (void) arg;
    if (!o->placed || o->confirmed || o->items == 0)
        return LOOM_EHANDLER;
    m.total_cents = o->total_cents;
    return emit(out, &m.base);
}

static int
check(loom_store *s, loom_err rc, const char *what)
{
    if (rc == LOOM_OK)
        return 0;
    fprintf(stderr, "quickstart: %s: %s: %s\n", what, loom_err_name(rc),
            loom_store_errmsg(s));
    return 1;
}

static int
run_commands(loom_store *s, const char *id)
{
    static const item_cmd items[] = {
        {"SKU-APPLE", 3, 120}, {"SKU-PEAR", 2, 95}, {"SKU-FIG", 1, 410}};
    loom_execute_result r;
    loom_err rc;

    printf("== commands on order-%s\n", id);
    rc = loom_aggregate_execute(s, &order_type, id, place, (void *) id, NULL,
                                &r);
    if (check(s, rc, "place"))
        return 1;
    printf("  place         -> version %" PRId64 "\n", r.version);
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        rc = loom_aggregate_execute(s, &order_type, id, add_item,
                                    (void *) &items[i], NULL, &r);
        if (check(s, rc, "add item"))
            return 1;
        printf("  add %-10s-> version %" PRId64 "\n", items[i].sku, r.version);
    }
    rc = loom_aggregate_execute(s, &order_type, id, confirm, NULL, NULL, &r);
    if (check(s, rc, "confirm"))
        return 1;
    printf("  confirm       -> version %" PRId64 "\n", r.version);
    rc = loom_aggregate_execute(s, &order_type, id, place, (void *) id, NULL,
                                &r);
    printf("  place again   -> refused by the aggregate (%s)\n",
           loom_err_name(rc));
    return rc == LOOM_EHANDLER ? 0 : 1;
}

/* A writer that loaded version 0 and appends after others moved on. */
static int
stale_writer(loom_store *s, const char *stream)
{
    loom_event_data ev;
    loom_append_result r;
    loom_err rc;

    memset(&ev, 0, sizeof ev);
    ev.type = "shop.OrderConfirmed";
    rc = loom_store_append(s, stream, 0, &ev, 1, &r);
    printf("\n== a stale writer appends expecting version 0\n  %s: %s\n",
           loom_err_name(rc), loom_store_errmsg(s));
    return rc == LOOM_ECONFLICT && r.actual_version == 4 ? 0 : 1;
}

static int
print_stream(loom_store *s, const loom_registry *reg, const char *stream)
{
    loom_events *page = NULL;
    loom_err rc =
        loom_store_read_stream(s, stream, 0, LOOM_FORWARD, 100, &page);

    if (check(s, rc, "read"))
        return 1;
    printf("\n== %s, read back\n  %-7s  %-20s  %s\n", stream, "VERSION", "TYPE",
           "DATA");
    for (size_t i = 0; i < loom_events_count(page); i++) {
        const loom_event *ev = loom_events_at(page, i);
        char *json = NULL;
        if (loom_registry_to_json(reg, ev->type, ev->data, ev->data_len,
                                  &json) != LOOM_OK)
            json = NULL;
        printf("  %7" PRId64 "  %-20s  %s\n", ev->version, ev->type,
               json ? json : "<undecodable>");
        loom_free(json);
    }
    loom_events_free(page);
    return 0;
}

/* Rebuilds "revenue of confirmed orders" from every order event ever
 * written, in commit order, a page at a time. */
static int
replay(loom_store *s, int64_t *revenue, size_t *events)
{
    loom_position cursor = {0, 0};
    loom_events *page = NULL;
    size_t got;
    loom_err rc;

    *revenue = 0;
    *events = 0;
    do {
        rc = loom_store_read_category(s, "order", cursor, NULL, 1000, &page);
        if (check(s, rc, "replay"))
            return 1;
        for (size_t i = 0; i < loom_events_count(page); i++) {
            const loom_event *ev = loom_events_at(page, i);
            if (strcmp(ev->type, "shop.OrderConfirmed") == 0) {
                Shop__OrderConfirmed *m =
                    shop__order_confirmed__unpack(NULL, ev->data_len, ev->data);
                *revenue += m ? m->total_cents : 0;
                shop__order_confirmed__free_unpacked(m, NULL);
            }
        }
        got = loom_events_count(page);
        *events += got;
        cursor = loom_events_next(page);
        loom_events_free(page);
        page = NULL;
    } while (got == 1000); /* a short page: caught up */
    return 0;
}

/* Stops the runtime once the projection has handled our order's
 * confirmation: the graceful stop commits that batch before run()
 * returns. */
typedef struct live_wait {
    loom_runtime *rt;
    const char *order_id;
} live_wait;

static void
on_confirmed(const char *order_id, void *arg)
{
    live_wait *w = arg;

    if (strcmp(order_id, w->order_id) == 0)
        loom_runtime_stop(w->rt);
}

/* Prints the order's row of the read model, as any reader would see it. */
static int
print_summary(const char *id)
{
    const char *url = getenv("LOOM_DATABASE_URL");
    PGconn *c = PQconnectdb(url ? url : "");
    const char *v[1] = {id};
    PGresult *r = NULL;
    int rc = 1;

    if (PQstatus(c) == CONNECTION_OK)
        r = PQexecParams(c,
                         "SELECT customer, items, total_cents, status FROM "
                         "quickstart_read.orders WHERE order_id = $1",
                         1, NULL, v, NULL, NULL, 0);
    if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK &&
        PQntuples(r) == 1) {
        printf("  quickstart_read.orders: order %s, customer %s, %s items, "
               "%s cents, %s\n",
               id, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
               PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3));
        rc = strcmp(PQgetvalue(r, 0, 2), "960") == 0 ? 0 : 1;
    } else {
        fprintf(stderr, "quickstart: reading the read model: %s\n",
                PQerrorMessage(c));
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

/* Runs the projection until it has handled this order, then shows it. */
static int
run_projection(const char *id)
{
    loom_runtime_config rc = LOOM_RUNTIME_CONFIG_INIT;
    loom_runtime *rt = NULL;
    loom_projection *p = NULL;
    live_wait w = {NULL, id};
    summary_watch watch = {on_confirmed, &w};
    loom_projection_def def = summary_def(&watch);
    loom_err err;

    rc.handle_signals = 1;
    if (loom_runtime_open(&rt, &rc) != LOOM_OK)
        return 1;
    w.rt = rt;
    err = loom_projection_start(rt, &def, NULL, &p);
    if (err == LOOM_OK)
        err = loom_runtime_run(rt);
    loom_projection_close(p);
    loom_runtime_close(rt);
    if (err != LOOM_OK) {
        fprintf(stderr, "quickstart: projection: %s\n", loom_err_name(err));
        return 1;
    }
    printf("\n== projection \"order_summary\" (exactly-once, in "
           "PostgreSQL)\n");
    return print_summary(id);
}

static int
run(loom_store *s, loom_registry *reg, const char *id)
{
    char stream[64];
    order_state st;
    int64_t version, revenue;
    size_t n;

    snprintf(stream, sizeof stream, "order-%s", id);
    if (run_commands(s, id) || stale_writer(s, stream) ||
        print_stream(s, reg, stream))
        return 1;
    if (check(s, loom_aggregate_load(s, &order_type, id, &st, &version),
              "load"))
        return 1;
    printf("\n== order-%s loaded (snapshot + newer events)\n"
           "  version %" PRId64 ", customer %s, %d items, total %" PRId64
           " cents, %s\n",
           id, version, st.customer, (int) st.items, st.total_cents,
           st.confirmed ? "confirmed" : "open");
    if (replay(s, &revenue, &n))
        return 1;
    printf("\n== replay of category \"order\" in commit order\n"
           "  %zu events, revenue of confirmed orders: %" PRId64 " cents\n",
           n, revenue);
    if (st.total_cents != 960 || !st.confirmed)
        return 1;
    return run_projection(id);
}

int
main(void)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s = NULL;
    loom_registry *reg = NULL;
    loom_uuid u;
    char id[LOOM_UUID_STRLEN], err[512];
    int status = 1;

    cfg.migrate = LOOM_MIGRATE_AUTO;
    cfg.application_name = "loom-quickstart";
    if (loom_store_open(&s, &cfg, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "quickstart: %s\n", err);
        return 1;
    }
    if (loom_registry_new(&reg) != LOOM_OK ||
        loom_registry_add(reg, NULL, &shop__order_placed__descriptor) ||
        loom_registry_add(reg, NULL, &shop__item_added__descriptor) ||
        loom_registry_add(reg, NULL, &shop__order_confirmed__descriptor))
        goto out;
    /* A fresh order id per run, so the demo can run again and again. */
    if (loom_uuid_generate(&u) != LOOM_OK)
        goto out;
    loom_uuid_format(&u, id);
    status = run(s, reg, id + 24);
    printf("\n%s\n", status == 0 ? "quickstart: OK" : "quickstart: FAILED");
out:
    loom_registry_free(reg);
    loom_store_close(s);
    return status;
}
