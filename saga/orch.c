/*
 * The orchestrator's life (orch_int.h): open, close, a graceful stop, the
 * counters, and the scheduler that hands the one connection to what is
 * due next: the rest of a claimed batch, a claim when deadlines are due
 * (taking turns with replies so neither starves), or the next replies.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc_int.h"
#include "log_int.h"
#include "loom/alloc.h"
#include "loom/inbox.h"
#include "loom/topics.h"
#include "orch_int.h"
#include "pgwire.h"

#define ORCH_DEFAULT_GROUP "loom-saga"
#define ORCH_CHANNEL       "loom_saga"

static const loom__stmt release_stmt = {LOOM__STMT_SAGA_RELEASE,
                                        "loom_saga_release",
                                        "SELECT loom.saga_release($1)",
                                        1,
                                        {LOOM__OID_TEXT}};

static unsigned orch_seq; /* numbers the orchestrators of this process */

const loom_saga_def *
loom__orch_def(const loom_orchestrator *o, const char *type, uint32_t version)
{
    for (size_t i = 0; i < o->n_defs; i++) {
        if (o->defs[i]->version == version &&
            strcmp(o->defs[i]->name, type) == 0) {
            return o->defs[i];
        }
    }
    return NULL;
}

int
loom__orch_transient(const loom_orchestrator *o, loom_err rc)
{
    return rc == LOOM_ECONN || rc == LOOM_ENOMEM || rc == LOOM_EIO ||
           rc == LOOM_EBUSY ||
           (o->conn.store != NULL &&
            loom__sqlstate_transient(loom_store_sqlstate(o->conn.store)));
}

/* ---- after a transaction --------------------------------------------- */

void
loom__orch_committed(loom_orchestrator *o)
{
    const loom__saga_counts *c = &o->b.counts;
    int64_t next = -1;

    o->stats.transitions += c->transitions;
    o->stats.replies += c->replies;
    o->stats.late += c->late;
    o->stats.timeouts += c->timeouts;
    o->stats.retries += c->retries;
    o->stats.completed += c->completed;
    o->stats.compensated += c->compensated;
    o->stats.failed += c->failed;
    o->stats.operator_ops += c->operator_ops;
    loom__backoff_reset(&o->backoff);
    for (size_t i = 0; i < o->b.n_works; i++) {
        const loom__saga_work *w = &o->b.works[i];
        if (w->s.def != NULL) {
            loom__saga_cache_put(&o->cache, &w->s);
        }
        if (w->touched && w->has_deadline &&
            (next < 0 || w->deadline_ms < next)) {
            next = w->deadline_ms;
        }
    }
    /* A few ms late, so that the database's clock has passed it too. */
    if (next >= 0) {
        loom__orch_arm(o, (uint64_t) next + 5);
    }
    for (size_t i = 0; i < o->b.n_works && o->ended != NULL; i++) {
        const loom__saga_work *w = &o->b.works[i];
        if (w->ended != 0) {
            o->ended(o->ended_arg, w->s.id, w->ended);
        }
    }
}

void
loom__orch_invalidate(loom_orchestrator *o)
{
    for (size_t i = 0; i < o->b.n_works; i++) {
        loom__saga_cache_drop(&o->cache, o->b.works[i].s.id);
    }
}

void
loom__orch_tx_done(void *arg, loom_err rc, PGresult *r)
{
    loom_orchestrator *o = arg;

    PQclear(r);
    if (o->kind == ORCH_REPLIES) {
        loom__orch_replies_done(o, rc);
    } else {
        loom__orch_claims_done(o, rc);
    }
    loom__orch_next(o);
}

/* ---- the scheduler --------------------------------------------------- */

static void orch_finish_stop(loom_orchestrator *o);

static void
orch_on_retry(uv_timer_t *t)
{
    loom_orchestrator *o = t->data;

    if (o->state != ORCH_BACKOFF) {
        return;
    }
    o->state = ORCH_IDLE;
    loom__orch_next(o);
}

void
loom__orch_backoff(loom_orchestrator *o, const char *why)
{
    uint64_t ms = loom__backoff_next(&o->backoff);

    loom__log(LOOM_LOG_WARN, "orchestrator %s: %s; retrying in %llu ms",
              o->group, why, (unsigned long long) ms);
    o->state = ORCH_BACKOFF;
    if (o->stopping) {
        o->state = ORCH_IDLE; /* no retry while stopping: finish now */
        return;
    }
    uv_timer_start(&o->retry, orch_on_retry, ms, 0);
}

/* Skips settled replies at the head of the queue. */
static int
orch_replies_waiting(loom_orchestrator *o)
{
    while (o->head < o->n && o->q[o->head].settled) {
        o->head++;
    }
    if (o->head == o->n) {
        o->head = o->n = 0;
    }
    return o->head < o->n;
}

void
loom__orch_next(loom_orchestrator *o)
{
    if (o->in_next) {
        return; /* the loop below sees what a nested call would do */
    }
    o->in_next = 1;
    while (!o->closed && o->state == ORCH_IDLE) {
        if (o->stopping) {
            orch_finish_stop(o);
            break;
        }
        if (o->claimed != NULL) {
            loom__orch_claims_start(o); /* the rest of a claimed batch */
            continue;
        }
        if (o->scan_due && (o->scan_turn || !orch_replies_waiting(o))) {
            o->scan_due = 0;
            o->scan_turn = 0;
            loom__orch_claims_start(o);
            continue;
        }
        if (!orch_replies_waiting(o)) {
            break;
        }
        o->scan_turn = o->scan_due;
        loom__orch_replies_start(o);
    }
    o->in_next = 0;
}

/* ---- stopping and closing -------------------------------------------- */

/* Gives back what this orchestrator claimed and did not transition
 * (blocking, best effort: the lease runs out anyway). */
static void
orch_release(loom_orchestrator *o)
{
    const char *values[1] = {o->me};
    int lengths[1] = {(int) strlen(o->me)};
    PGresult *r = NULL;

    if (o->released || !o->conn_open || o->conn.busy || o->conn.reconnecting ||
        o->conn.store == NULL ||
        PQstatus(o->conn.store->conn) != CONNECTION_OK) {
        return;
    }
    o->released = 1;
    if (loom__pgconn_query_now(&o->conn, &release_stmt, values, lengths, &r) !=
        LOOM_OK) {
        loom__log(LOOM_LOG_DEBUG, "orchestrator %s: releasing claims: %s",
                  o->group, loom__pgconn_errmsg(&o->conn));
    }
    PQclear(r);
}

/* Nothing in flight during a stop: give back claims, report done. The
 * replies not yet committed are delivered again after a restart. */
static void
orch_finish_stop(loom_orchestrator *o)
{
    loom__done_fn done = o->stop_done;

    o->state = ORCH_STOPPED;
    uv_timer_stop(&o->timer);
    uv_timer_stop(&o->retry);
    PQclear(o->claimed);
    o->claimed = NULL;
    orch_release(o);
    o->stop_done = NULL;
    if (done != NULL) {
        done(o->comp);
    }
}

static void
orch_stop(void *arg, loom__component *comp, loom__done_fn done)
{
    loom_orchestrator *o = arg;

    (void) comp;
    o->stopping = 1;
    o->stop_done = done;
    uv_timer_stop(&o->timer);
    o->timer_due = 0;
    if (o->state == ORCH_BACKOFF) {
        uv_timer_stop(&o->retry);
        o->state = ORCH_IDLE;
    }
    loom__orch_next(o);
}

static void
orch_free(loom_orchestrator *o)
{
    loom__saga_cache_free(&o->cache);
    loom__saga_batch_free(&o->b);
    loom__arena_free(&o->h);
    loom__tx_free(&o->tx);
    loom_free(o->q);
    loom_free(o->defs);
    loom_free(o->group);
    loom_free(o->inbox);
    loom_free(o->me);
    loom_free(o);
}

static void
orch_handle_opened(void *owner)
{
    ((loom_orchestrator *) owner)->open_handles++;
}

static void
orch_handle_released(void *owner)
{
    loom_orchestrator *o = owner;

    if (--o->open_handles == 0 && o->release) {
        orch_free(o);
    }
}

static void
orch_timer_closed(uv_handle_t *h)
{
    orch_handle_released(h->data);
}

static void
orch_destroy(loom_orchestrator *o)
{
    o->closed = 1; /* nothing more is started */
    if (o->stop_done != NULL) {
        loom__done_fn done = o->stop_done;
        o->stop_done = NULL;
        done(o->comp);
    }
    loom__runtime_remove_component(o->comp);
    o->comp = NULL;
    if (o->consumer != NULL) {
        loom_consumer_close(o->consumer);
        o->consumer = NULL;
    }
    loom_listener_close(o->listener);
    o->listener = NULL;
    orch_release(o);
    PQclear(o->claimed);
    o->claimed = NULL;
    if (o->timers) {
        o->timers = 0;
        uv_close((uv_handle_t *) &o->timer, orch_timer_closed);
        uv_close((uv_handle_t *) &o->retry, orch_timer_closed);
    }
    if (o->conn_open) {
        loom__pgconn_close(&o->conn);
        o->conn_open = 0;
    }
    /* Outside the loop's run, close callbacks only run when it turns. */
    if (!o->rt->running) {
        for (int i = 0; i < 1000 && o->open_handles > 0; i++) {
            uv_run(loom_runtime_loop(o->rt), UV_RUN_NOWAIT);
        }
    }
    if (o->open_handles == 0) {
        orch_free(o);
    } else {
        o->release = 1; /* the last close callback frees it */
    }
}

void
loom_orchestrator_close(loom_orchestrator *o)
{
    if (o != NULL) {
        orch_destroy(o);
    }
}

loom_err
loom_orchestrator_stats_get(const loom_orchestrator *o,
                            loom_orchestrator_stats *out)
{
    if (o == NULL || out == NULL) {
        return LOOM_EINVAL;
    }
    *out = o->stats;
    return LOOM_OK;
}

/* ---- opening --------------------------------------------------------- */

static loom_err orch_err(char *err, size_t errlen, loom_err rc, const char *fmt,
                         ...) __attribute__((format(printf, 4, 5)));

static loom_err
orch_err(char *err, size_t errlen, loom_err rc, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* The arguments and the defs, before anything is allocated. */
static loom_err
orch_check(loom_runtime *rt, const loom_orchestrator_config *cfg,
           loom_orchestrator **out, char *err, size_t errlen)
{
    const char *group;
    char why[512];

    if (rt == NULL || cfg == NULL || out == NULL || cfg->transport == NULL ||
        cfg->defs == NULL || cfg->n_defs == 0) {
        return orch_err(err, errlen, LOOM_EINVAL,
                        "orchestrator: a runtime, a config with a transport "
                        "and at least one saga definition, and a result "
                        "pointer are required");
    }
    for (size_t i = 0; i < cfg->n_defs; i++) {
        if (loom_saga_def_check(cfg->defs[i], why, sizeof why) != LOOM_OK) {
            return orch_err(err, errlen, LOOM_EINVAL, "orchestrator: %s", why);
        }
        for (size_t j = 0; j < i; j++) {
            if (cfg->defs[j]->version == cfg->defs[i]->version &&
                strcmp(cfg->defs[j]->name, cfg->defs[i]->name) == 0) {
                return orch_err(err, errlen, LOOM_EINVAL,
                                "orchestrator: %s version %u is given twice",
                                cfg->defs[i]->name,
                                (unsigned) cfg->defs[i]->version);
            }
        }
    }
    group = cfg->group != NULL ? cfg->group : ORCH_DEFAULT_GROUP;
    if (group[0] == '\0' ||
        strnlen(group, LOOM_MAX_GROUP_NAME + 1) > LOOM_MAX_GROUP_NAME ||
        !loom__utf8_valid(group, strlen(group))) {
        return orch_err(err, errlen, LOOM_EINVAL,
                        "orchestrator: the group \"%.80s\" is not 1 to 249 "
                        "bytes of UTF-8",
                        group);
    }
    if (cfg->batch > ORCH_MAX_BATCH) {
        return orch_err(err, errlen, LOOM_EINVAL,
                        "orchestrator: batch %zu is over %d", cfg->batch,
                        ORCH_MAX_BATCH);
    }
    return LOOM_OK;
}

/* Copies the configuration. Errors: LOOM_ENOMEM. */
static loom_err
orch_config(loom_orchestrator *o, const loom_orchestrator_config *cfg)
{
    const char *group = cfg->group != NULL ? cfg->group : ORCH_DEFAULT_GROUP;
    char host[256], me[400];
    size_t len = strlen(group) + 6;
    loom_uuid seed;

    o->tp = cfg->transport;
    o->n_defs = cfg->n_defs;
    o->defs = loom_malloc(cfg->n_defs * sizeof *o->defs);
    o->group = loom__strdup(group);
    o->inbox = loom_malloc(len);
    if (gethostname(host, sizeof host) != 0) {
        snprintf(host, sizeof host, "unknown");
    }
    host[sizeof host - 1] = '\0';
    snprintf(me, sizeof me, "%s pid %ld #%u", host, (long) getpid(),
             __atomic_add_fetch(&orch_seq, 1, __ATOMIC_RELAXED));
    o->me = loom__strdup(me);
    if (o->defs == NULL || o->group == NULL || o->inbox == NULL ||
        o->me == NULL) {
        return LOOM_ENOMEM;
    }
    memcpy(o->defs, cfg->defs, cfg->n_defs * sizeof *o->defs);
    snprintf(o->inbox, len, "saga:%s", group);
    o->batch = cfg->batch ? cfg->batch : 100;
    o->poll_ms = cfg->poll_ms ? cfg->poll_ms : 1000;
    o->lease_ms = cfg->lease_ms ? cfg->lease_ms : 30000;
    o->ended = cfg->ended;
    o->ended_arg = cfg->ended_arg;
    loom__backoff_init(&o->backoff, 100, 10000);
    if (loom_uuid_generate(&seed) != LOOM_OK) {
        memset(seed.bytes, 0x5a, sizeof seed.bytes);
    }
    memcpy(&o->dec.rng, seed.bytes, sizeof o->dec.rng);
    o->dec.rng |= 1; /* xorshift needs a non-zero state */
    return loom__saga_cache_init(&o->cache, cfg->cache ? cfg->cache : 10000);
}

/* Subscribes to the defs' reply topics (each once). */
static loom_err
orch_subscribe(loom_orchestrator *o, char *err, size_t errlen)
{
    loom_consumer_config cc = LOOM_CONSUMER_CONFIG_INIT;
    const char **topics = loom_malloc(o->n_defs * sizeof *topics);
    size_t n = 0;
    loom_err rc;

    if (topics == NULL) {
        return LOOM_ENOMEM;
    }
    for (size_t i = 0; i < o->n_defs; i++) {
        size_t j = 0;
        while (j < n && strcmp(topics[j], o->defs[i]->reply_topic) != 0) {
            j++;
        }
        if (j == n) {
            topics[n++] = o->defs[i]->reply_topic;
        }
    }
    cc.group = o->group;
    cc.topics = topics;
    cc.n_topics = n;
    cc.batch = o->batch;
    rc = loom_consumer_open(o->tp, &cc, loom__orch_deliver, o, &o->consumer);
    loom_free(topics);
    if (rc != LOOM_OK) {
        o->consumer = NULL;
        orch_err(err, errlen, rc,
                 "orchestrator %s: the transport refused to subscribe to the "
                 "reply topics: %s",
                 o->group, loom_strerror(rc));
    }
    return rc;
}

/* Connects, records the defs, joins the runtime and the transport. */
static loom_err
orch_start(loom_orchestrator *o, const loom_orchestrator_config *cfg, char *err,
           size_t errlen)
{
    loom__pgconn_config pc = {0};
    uv_loop_t *loop = loom_runtime_loop(o->rt);
    loom_err rc;

    pc.rt = o->rt;
    pc.conninfo = cfg->conninfo;
    pc.application_name = "eventloom saga orchestrator";
    pc.what = "orchestrator";
    pc.opened = orch_handle_opened;
    pc.released = orch_handle_released;
    pc.owner = o;
    rc = loom__pgconn_open(&o->conn, &pc, err, errlen);
    if (rc != LOOM_OK) {
        return rc;
    }
    o->conn_open = 1;
    rc = loom__orch_register(o, err, errlen);
    if (rc != LOOM_OK) {
        return rc;
    }
    rc = loom__runtime_add_component(o->rt, orch_stop, o, &o->comp);
    if (rc != LOOM_OK) {
        return orch_err(err, errlen, rc,
                        "orchestrator: the runtime is stopping");
    }
    uv_timer_init(loop, &o->timer);
    uv_timer_init(loop, &o->retry);
    o->timer.data = o->retry.data = o;
    o->open_handles += 2;
    o->timers = 1;
    rc = loom_runtime_listen(o->rt, ORCH_CHANNEL, loom__orch_wake, o,
                             &o->listener);
    if (rc != LOOM_OK) {
        o->listener = NULL;
        return orch_err(err, errlen, rc,
                        "orchestrator: cannot listen to channel %s: %s",
                        ORCH_CHANNEL, loom_strerror(rc));
    }
    return orch_subscribe(o, err, errlen);
}

loom_err
loom_orchestrator_open(loom_runtime *rt, const loom_orchestrator_config *cfg,
                       loom_orchestrator **out, char *err, size_t errlen)
{
    loom_orchestrator *o;
    loom_err rc;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (out != NULL) {
        *out = NULL;
    }
    rc = orch_check(rt, cfg, out, err, errlen);
    if (rc != LOOM_OK) {
        return rc;
    }
    o = loom_malloc(sizeof *o);
    if (o == NULL) {
        return orch_err(err, errlen, LOOM_ENOMEM, "out of memory");
    }
    memset(o, 0, sizeof *o);
    o->rt = rt;
    loom__saga_batch_init(&o->b);
    loom__arena_init(&o->h);
    loom__tx_init(&o->tx);
    o->dec.b = &o->b;
    o->dec.h = &o->h;
    rc = orch_config(o, cfg);
    if (rc != LOOM_OK) {
        orch_err(err, errlen, rc, "out of memory");
        orch_free(o);
        return rc;
    }
    rc = orch_start(o, cfg, err, errlen);
    if (rc != LOOM_OK) {
        orch_destroy(o);
        return rc;
    }
    /* Deadlines that passed while no orchestrator ran are served now. */
    o->scan_due = 1;
    loom__orch_next(o);
    *out = o;
    return LOOM_OK;
}
