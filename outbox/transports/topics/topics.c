/*
 * The "topics" transport: URL parsing, open and close, the ops table that
 * loom/transport.h calls, the runtime component that a graceful stop
 * waits for, the retention timer and the partition counts a custom
 * partitioner needs.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_int.h"
#include "log_int.h"
#include "loom/alloc.h"
#include "pgwire.h"
#include "topics_int.h"
#include "topics_local.h"

static const loom__stmt meta_stmt = {
    LOOM__STMT_TOPIC_META,
    "loom_topic_meta",
    "SELECT partitions FROM loom.topics WHERE name = $1",
    1,
    {LOOM__OID_TEXT}};

static const loom__stmt retention_stmt = {
    LOOM__STMT_TOPIC_RETENTION,
    "loom_topic_retention",
    "SELECT loom.topic_retention_step($1)",
    1,
    {LOOM__OID_INT4}};

/* ---- life cycle ------------------------------------------------------ */

static void
tp_free(tp_transport *tr)
{
    for (size_t i = 0; i < tr->n_counts; i++)
        loom_free(tr->counts[i].topic);
    loom_free(tr->counts);
    loom_free(tr->conninfo);
    loom_free(tr);
}

void
loom__tp_released(tp_transport *tr)
{
    tr->open_handles--;
    if (tr->closed && tr->open_handles == 0)
        tp_free(tr);
}

static void
tp_handle_opened(void *tr)
{
    ((tp_transport *) tr)->open_handles++;
}

static void
tp_handle_released(void *tr)
{
    loom__tp_released(tr);
}

loom_err
loom__tp_conn_open(tp_conn *c, tp_transport *tr, const char *role, char *err,
                   size_t errlen)
{
    loom__pgconn_config cfg = {0};
    char app[64];

    snprintf(app, sizeof app, "eventloom topics %s", role);
    cfg.rt = tr->rt;
    cfg.conninfo = tr->conninfo;
    cfg.application_name = app;
    cfg.what = "topics";
    cfg.opened = tp_handle_opened;
    cfg.released = tp_handle_released;
    cfg.owner = tr;
    return loom__pgconn_open(c, &cfg, err, errlen);
}

static void
tp_timer_closed(uv_handle_t *h)
{
    loom__tp_released(h->data);
}

static void
tp_close_timer(tp_transport *tr)
{
    if (!tr->retention_started)
        return;
    tr->retention_started = 0;
    uv_timer_stop(&tr->retention);
    uv_close((uv_handle_t *) &tr->retention, tp_timer_closed);
}

void
loom__tp_maybe_stopped(tp_transport *tr)
{
    loom__done_fn done = tr->stop_done;

    if (!tr->stopping || done == NULL || loom__tp_producer_busy(tr))
        return;
    for (tp_consumer *c = tr->consumers; c != NULL; c = c->next)
        if (c->state != TP_C_DONE)
            return;
    tr->stop_done = NULL;
    done(tr->comp);
}

/* The runtime is stopping: finish what is in flight, close handles. */
static void
tp_stop(void *arg, loom__component *comp, loom__done_fn done)
{
    tp_transport *tr = arg;

    tr->stopping = 1;
    tr->stop_done = done;
    (void) comp;
    tp_close_timer(tr);
    if (tr->admin_open) {
        loom__pgconn_close(&tr->admin);
        tr->admin_open = 0;
    }
    for (tp_consumer *c = tr->consumers; c != NULL; c = c->next)
        loom__tp_consume_stop(c);
    loom__tp_maybe_stopped(tr);
}

/* ---- retention ------------------------------------------------------- */

static void tp_retention_step(tp_transport *tr);

static void
tp_retention_done(void *arg, loom_err rc, PGresult *r)
{
    tp_transport *tr = arg;
    int64_t n = 0;

    if (rc == LOOM_OK && PQntuples(r) == 1)
        loom__pg_get_i64(r, 0, 0, &n);
    else if (rc != LOOM_OK)
        loom__log(LOOM_LOG_WARN, "topics retention: %s",
                  loom__pgconn_errmsg(&tr->admin));
    PQclear(r);
    /* Another step at once while there is work; else wait a period. */
    if (rc == LOOM_OK && n > 0 && !tr->stopping && !tr->closed)
        tp_retention_step(tr);
}

static void
tp_retention_step(tp_transport *tr)
{
    static const char limit[4] = {0, 0, 0x27, 0x10}; /* 10000 */
    const char *values[1] = {limit};
    int lengths[1] = {4};

    if (!tr->admin_open || tr->admin.busy)
        return;
    if (loom__pgconn_query(&tr->admin, &retention_stmt, values, lengths,
                           tp_retention_done, tr) != LOOM_OK)
        loom__log(LOOM_LOG_WARN, "topics retention: %s",
                  loom__pgconn_errmsg(&tr->admin));
}

static void
tp_on_retention(uv_timer_t *t)
{
    tp_retention_step(t->data);
}

/* ---- partition counts (custom partitioners) -------------------------- */

static void
tp_on_meta(void *arg, const char *channel, const char *payload)
{
    tp_transport *tr = arg;

    (void) channel;
    (void) payload;
    /* A topic was created or altered: read counts again when needed. */
    for (size_t i = 0; i < tr->n_counts; i++)
        loom_free(tr->counts[i].topic);
    tr->n_counts = 0;
}

loom_err
loom__tp_partition_count(tp_transport *tr, const char *topic, int32_t *n)
{
    const char *values[1] = {topic};
    int lengths[1] = {(int) strlen(topic)};
    struct tp_count *grown;
    PGresult *r;
    loom_err rc;

    for (size_t i = 0; i < tr->n_counts; i++)
        if (strcmp(tr->counts[i].topic, topic) == 0) {
            *n = tr->counts[i].n;
            return LOOM_OK;
        }
    if (!tr->admin_open || tr->admin.busy)
        return LOOM_EBUSY;
    rc = loom__pgconn_query_now(&tr->admin, &meta_stmt, values, lengths, &r);
    if (rc != LOOM_OK)
        return rc;
    if (PQntuples(r) != 1 || !loom__pg_get_i32(r, 0, 0, n)) {
        PQclear(r);
        return loom__store_fail(tr->admin.store, LOOM_ENOTFOUND,
                                "topic \"%s\" does not exist (create it: "
                                "loomctl topics create %s --partitions N)",
                                topic, topic);
    }
    PQclear(r);
    grown = loom_realloc(tr->counts, (tr->n_counts + 1) * sizeof *grown);
    if (grown == NULL)
        return LOOM_OK; /* not cached; correct all the same */
    tr->counts = grown;
    tr->counts[tr->n_counts].topic = loom__strdup(topic);
    tr->counts[tr->n_counts].n = *n;
    if (tr->counts[tr->n_counts].topic != NULL)
        tr->n_counts++;
    return LOOM_OK;
}

/* ---- the URL ----------------------------------------------------------- */

/* Reads an unsigned option value; returns 0 when it is not a number. */
static int
tp_number(const char *v, size_t len, uint64_t *out)
{
    uint64_t x = 0;

    if (len == 0 || len > 12)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 0;
        x = x * 10 + (uint64_t) (v[i] - '0');
    }
    *out = x;
    return 1;
}

/* Splits "topics://rest?query" into the transport's options and the
 * libpq URI (NULL when nothing is left: environment and defaults). Not
 * static: the fuzz target tests/fuzz/topics_url.c calls it. */
loom_err
loom__tp_parse_url(tp_transport *tr, const char *url, char *err, size_t errlen)
{
    const char *rest = url + strlen("topics://");
    const char *q = strchr(rest, '?');
    size_t base = q ? (size_t) (q - rest) : strlen(rest);
    loom__buf kept = {0};
    loom_err rc = LOOM_OK;

    tr->acks = LOOM_TOPICS_ACKS_ALL;
    tr->linger_ms = 0;
    tr->batch = 1000;
    tr->retention_ms = 10000;
    tr->session_timeout_ms = 0;
    while (q != NULL && rc == LOOM_OK) {
        const char *item = q + 1, *amp = strchr(item, '&');
        size_t len = amp ? (size_t) (amp - item) : strlen(item);
        const char *eq = memchr(item, '=', len);
        size_t klen = eq ? (size_t) (eq - item) : len;
        const char *v = eq ? eq + 1 : item + len;
        size_t vlen = eq ? len - klen - 1 : 0;
        uint64_t x = 0;

        q = amp;
        if (len == 0)
            continue;
        if (klen == 4 && memcmp(item, "acks", 4) == 0) {
            if (vlen == 1 && v[0] == '0')
                tr->acks = LOOM_TOPICS_ACKS_NONE;
            else if (vlen == 1 && v[0] == '1')
                tr->acks = LOOM_TOPICS_ACKS_LOCAL;
            else if (vlen == 3 && memcmp(v, "all", 3) == 0)
                tr->acks = LOOM_TOPICS_ACKS_ALL;
            else
                rc = LOOM_EINVAL;
        } else if (klen == 9 && memcmp(item, "linger_ms", 9) == 0) {
            if (!tp_number(v, vlen, &x) || x > 60000)
                rc = LOOM_EINVAL;
            tr->linger_ms = (unsigned) x;
        } else if (klen == 5 && memcmp(item, "batch", 5) == 0) {
            if (!tp_number(v, vlen, &x) || x == 0 || x > 100000)
                rc = LOOM_EINVAL;
            tr->batch = (unsigned) x;
        } else if (klen == 12 && memcmp(item, "retention_ms", 12) == 0) {
            if (!tp_number(v, vlen, &x))
                rc = LOOM_EINVAL;
            tr->retention_ms = x;
        } else if (klen == 18 && memcmp(item, "session_timeout_ms", 18) == 0) {
            if (!tp_number(v, vlen, &x) || x < 100 || x > 3600000)
                rc = LOOM_EINVAL;
            tr->session_timeout_ms = (unsigned) x;
        } else {
            /* A libpq parameter: kept for the connection. */
            loom__buf_puts(&kept, kept.len ? "&" : "?");
            loom__buf_put(&kept, item, len);
        }
        if (rc != LOOM_OK && err != NULL && errlen > 0)
            snprintf(err, errlen,
                     "topics URL: bad option \"%.*s\" (acks=0|1|all, "
                     "linger_ms=0..60000, batch=1..100000, retention_ms=N, "
                     "session_timeout_ms=100..3600000)",
                     (int) len, item);
    }
    if (rc == LOOM_OK && (base > 0 || kept.len > 0)) {
        loom__buf uri = {0};
        loom__buf_puts(&uri, "postgresql://");
        loom__buf_put(&uri, rest, base);
        loom__buf_put(&uri, kept.data, kept.len);
        tr->conninfo = loom__buf_take(&uri);
        if (tr->conninfo == NULL)
            rc = LOOM_ENOMEM;
    }
    loom__buf_free(&kept);
    return rc;
}

/* ---- the ops ----------------------------------------------------------- */

static void tp_close(void *state);

static loom_err
tp_open(loom_runtime *rt, const char *url, void **state, char *err,
        size_t errlen)
{
    tp_transport *tr = loom_malloc(sizeof *tr);
    loom_err rc;

    if (tr == NULL)
        return LOOM_ENOMEM;
    memset(tr, 0, sizeof *tr);
    tr->rt = rt;
    rc = loom__tp_parse_url(tr, url, err, errlen);
    if (rc == LOOM_OK)
        rc = loom__tp_conn_open(&tr->admin, tr, "admin", err, errlen);
    if (rc != LOOM_OK) {
        loom_free(tr->conninfo);
        loom_free(tr);
        return rc;
    }
    tr->admin_open = 1;
    rc = loom__runtime_add_component(rt, tp_stop, tr, &tr->comp);
    if (rc != LOOM_OK) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "the runtime is stopping");
        loom__pgconn_close(&tr->admin);
        loom_free(tr->conninfo);
        loom_free(tr);
        return rc;
    }
    if (tr->retention_ms > 0 &&
        uv_timer_init(loom_runtime_loop(rt), &tr->retention) == 0) {
        tr->retention.data = tr;
        tr->open_handles++;
        tr->retention_started = 1;
        uv_timer_start(&tr->retention, tp_on_retention, tr->retention_ms,
                       tr->retention_ms);
        uv_unref((uv_handle_t *) &tr->retention);
    }
    if (loom_runtime_listen(rt, "loom_topics", tp_on_meta, tr,
                            &tr->meta_listener) != LOOM_OK)
        tr->meta_listener = NULL; /* counts then never go stale in tests */
    *state = tr;
    return LOOM_OK;
}

static void
tp_close(void *state)
{
    tp_transport *tr = state;

    loom__tp_producer_free(tr);
    tp_close_timer(tr);
    if (tr->admin_open) {
        loom__pgconn_close(&tr->admin);
        tr->admin_open = 0;
    }
    loom_listener_close(tr->meta_listener);
    tr->meta_listener = NULL;
    if (tr->stop_done != NULL) {
        loom__done_fn done = tr->stop_done;
        tr->stop_done = NULL;
        done(tr->comp);
    }
    loom__runtime_remove_component(tr->comp);
    tr->comp = NULL;
    /* Outside the loop's run, close callbacks only run when it turns. */
    if (!tr->rt->running)
        for (int i = 0; i < 1000 && tr->open_handles > 0; i++)
            uv_run(loom_runtime_loop(tr->rt), UV_RUN_NOWAIT);
    /* From here the last close callback frees it, if one is pending. */
    tr->closed = 1;
    if (tr->open_handles == 0)
        tp_free(tr);
}

static loom_err
tp_ops_publish(void *state, const loom_message *msgs, size_t n,
               loom_publish_cb cb, void *arg)
{
    return loom__tp_publish(state, msgs, n, cb, arg);
}

static loom_err
tp_ops_subscribe(void *state, const loom_consumer_config *cfg, loom_consumer *c,
                 void **cstate)
{
    return loom__tp_subscribe(state, cfg, c, NULL, cstate);
}

static loom_err
tp_ops_ack(void *cstate, const loom_message *m)
{
    return loom__tp_consume_ack(cstate, m);
}

static loom_err
tp_ops_fail(void *cstate, const loom_message *m, const char *error)
{
    return loom__tp_consume_fail(cstate, m, error);
}

static loom_err
tp_ops_reject(void *cstate, const loom_message *m, const char *error)
{
    return loom__tp_consume_reject(cstate, m, error);
}

static void
tp_ops_unsubscribe(void *cstate)
{
    loom__tp_consume_free(cstate);
}

static const loom_transport_ops tp_ops = {LOOM_TRANSPORT_OPS_VERSION,
                                          "topics",
                                          tp_open,
                                          tp_close,
                                          tp_ops_publish,
                                          tp_ops_subscribe,
                                          tp_ops_ack,
                                          tp_ops_fail,
                                          tp_ops_unsubscribe,
                                          tp_ops_reject};

loom_err
loom_topics_register(void)
{
    loom_err rc = loom_transport_register(&tp_ops);

    return rc == LOOM_EDUPLICATE ? LOOM_OK : rc;
}

static tp_transport *
tp_of(loom_transport *t)
{
    return loom__transport_ops(t) == &tp_ops ? loom__transport_state(t) : NULL;
}

/* ---- standing in for the producer (topics_local.h) --------------------- */

static const loom__stmt identity_stmt = {LOOM__STMT_DB_IDENTITY,
                                         "loom_db_identity",
                                         "SELECT loom.database_identity()",
                                         0,
                                         {0}};

/* The identity of the database `c` reaches: owned by the caller; NULL
 * with *rc set: -1 when it could not answer, 0 when the schema has no
 * loom.database_identity() (before 13). */
static char *
tp_identity(loom__pgconn *c, int *rc)
{
    PGresult *res = NULL;
    char *id = NULL;

    *rc = -1;
    if (loom__pgconn_query_now(c, &identity_stmt, NULL, NULL, &res) ==
        LOOM_OK) {
        *rc = 0;
        if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
            id = loom__strdup(PQgetvalue(res, 0, 0));
        if (id == NULL)
            *rc = -1; /* out of memory: ask again later */
    } else if (c->store != NULL &&
               strcmp(loom_store_sqlstate(c->store), "42883") == 0) {
        *rc = 0;
    }
    PQclear(res);
    return id;
}

int
loom__topics_same_database(loom_transport *t, loom__pgconn *conn)
{
    tp_transport *tr = tp_of(t);
    char *mine, *theirs;
    int rc, same;

    if (tr == NULL || conn == NULL)
        return 0;
    if (!tr->admin_open)
        return -1;
    if ((theirs = tp_identity(conn, &rc)) == NULL)
        return rc;
    if ((mine = tp_identity(&tr->admin, &rc)) == NULL) {
        loom_free(theirs);
        return rc;
    }
    same = strcmp(mine, theirs) == 0;
    loom_free(mine);
    loom_free(theirs);
    return same;
}

int
loom__topics_local_ok(loom_transport *t, const char **sync)
{
    tp_transport *tr = tp_of(t);

    if (tr == NULL || tr->partitioner != NULL || tr->stopping || tr->closed)
        return 0;
    *sync = tr->acks == LOOM_TOPICS_ACKS_ALL    ? "on"
            : tr->acks == LOOM_TOPICS_ACKS_NONE ? "off"
                                                : "local";
    return 1;
}

loom_err
loom_topics_set_partitioner(loom_transport *t, loom_partitioner_fn fn,
                            void *arg)
{
    tp_transport *tr = tp_of(t);

    if (tr == NULL)
        return LOOM_EINVAL;
    tr->partitioner = fn;
    tr->partitioner_arg = arg;
    return LOOM_OK;
}

loom_err
loom_topics_consumer_open(loom_transport *t, const loom_consumer_config *cfg,
                          const loom_topics_consumer_config *topts,
                          loom_consume_fn fn, loom_topics_tx_fn tx_fn,
                          void *arg, loom_consumer **out)
{
    static const loom_topics_consumer_config defaults =
        LOOM_TOPICS_CONSUMER_INIT;
    struct {
        const loom_topics_consumer_config *topts;
        loom_topics_tx_fn tx_fn;
    } extra = {topts ? topts : &defaults, tx_fn};

    if (out != NULL)
        *out = NULL;
    if (tp_of(t) == NULL || (fn == NULL) == (tx_fn == NULL))
        return LOOM_EINVAL;
    return loom__consumer_open(t, cfg, fn, arg, loom__tp_subscribe, &extra,
                               out);
}

static tp_consumer *
tp_consumer_of(const loom_consumer *c)
{
    return loom__consumer_ops(c) == &tp_ops ? loom__consumer_state(c) : NULL;
}

loom_err
loom_topics_commit(loom_consumer *c)
{
    tp_consumer *tc = tp_consumer_of(c);

    if (tc == NULL)
        return LOOM_EINVAL;
    tc->commit_asked = 1;
    loom__tp_consume_kick(tc);
    return LOOM_OK;
}

loom_err
loom_topics_consumer_stats_get(const loom_consumer *c,
                               loom_topics_consumer_stats *out)
{
    tp_consumer *tc = tp_consumer_of(c);

    if (tc == NULL || out == NULL)
        return LOOM_EINVAL;
    *out = tc->stats;
    out->generation = tc->generation;
    out->partitions = tc->n_parts;
    out->in_flight = tc->in_flight;
    return LOOM_OK;
}
