/* Helpers for the topic-stream tests (tptest.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <uv.h>

#include "tptest.h"

static void
tpt_on_tick(uv_timer_t *t)
{
    tpt_env *e = t->data;

    if (e->done != NULL && e->done(e->done_arg)) {
        uv_stop(t->loop);
        return;
    }
    if (uv_now(t->loop) >= e->deadline_ms) {
        e->timed_out = 1;
        uv_stop(t->loop);
    }
}

void
tpt_open(tpt_env *e, const char *options)
{
    tpt_open_polling(e, options, 200);
}

void
tpt_open_polling(tpt_env *e, const char *options, unsigned poll_ms)
{
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    char url[256], err[512] = "";
    loom_err rc;

    memset(e, 0, sizeof *e);
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    cfg.poll_ms = poll_ms;
    assert_int_equal(loom_runtime_open(&e->rt, &cfg), LOOM_OK);
    snprintf(url, sizeof url, "topics://%s", options);
    rc = loom_transport_open(e->rt, url, &e->t, err, sizeof err);
    if (rc != LOOM_OK)
        fail_msg("loom_transport_open(%s): %s: %s", url, loom_strerror(rc),
                 err);
    uv_timer_init(loom_runtime_loop(e->rt), &e->tick);
    e->tick.data = e;
}

loom_relay_config
tpt_relay_config(loom_transport *t)
{
    loom_relay_config cfg = LOOM_RELAY_CONFIG_INIT;

    cfg.transport = t;
    cfg.poll_ms = 50;
    cfg.standby_ms = 100;
    cfg.backoff_ms = 20;
    cfg.backoff_max_ms = 100;
    cfg.cleanup_ms = 100;
    cfg.batch = 100;
    return cfg;
}

loom_relay *
tpt_relay_start(tpt_env *e, const loom_relay_config *cfg)
{
    loom_relay *r = NULL;
    char err[512] = "";
    loom_err rc = loom_relay_start(e->rt, cfg, &r, err, sizeof err);

    if (rc != LOOM_OK)
        fail_msg("loom_relay_start: %s: %s", loom_strerror(rc), err);
    return r;
}

void
tpt_close(tpt_env *e)
{
    loom_transport_close(e->t);
    e->t = NULL;
    uv_close((uv_handle_t *) &e->tick, NULL);
    uv_run(loom_runtime_loop(e->rt), UV_RUN_NOWAIT);
    loom_runtime_close(e->rt);
    e->rt = NULL;
}

int
tpt_run(tpt_env *e, int (*done)(void *), void *arg, uint64_t ms)
{
    uv_loop_t *loop = loom_runtime_loop(e->rt);

    e->done = done;
    e->done_arg = arg;
    e->timed_out = 0;
    uv_update_time(loop);
    e->deadline_ms = uv_now(loop) + ms;
    uv_timer_start(&e->tick, tpt_on_tick, 5, 5);
    /* The transport's handles are enough to keep the loop running. */
    while (!e->timed_out && !(done != NULL && done(arg)))
        if (uv_run(loop, UV_RUN_DEFAULT) == 0)
            break;
    uv_timer_stop(&e->tick);
    return done != NULL && done(arg);
}

void
tpt_record(loom_consumer *c, const loom_message *const *msgs, size_t n,
           void *arg)
{
    tpt_seen *s = arg;

    s->c = c;
    for (size_t i = 0; i < n; i++) {
        const loom_message *m = msgs[i];
        char buf[32] = "";
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 1024;
            s->keys = realloc(s->keys, s->cap * sizeof *s->keys);
            s->seq = realloc(s->seq, s->cap * sizeof *s->seq);
            s->partition = realloc(s->partition, s->cap * sizeof *s->partition);
            s->offset = realloc(s->offset, s->cap * sizeof *s->offset);
            s->attempt = realloc(s->attempt, s->cap * sizeof *s->attempt);
        }
        snprintf(s->keys[s->n], sizeof s->keys[0], "%.*s",
                 (int) (m->key_len < 31 ? m->key_len : 31),
                 m->key ? (const char *) m->key : "");
        snprintf(buf, sizeof buf, "%.*s",
                 (int) (m->payload_len < 31 ? m->payload_len : 31),
                 (const char *) m->payload);
        s->seq[s->n] = strtoll(buf, NULL, 10);
        s->partition[s->n] = m->partition;
        s->offset[s->n] = m->offset;
        s->attempt[s->n] = m->attempt;
        s->n++;
        if (s->hold)
            continue;
        if ((int) m->attempt < s->fail_until &&
            (s->fail_seq < 0 || s->fail_seq == strtoll(buf, NULL, 10)))
            loom_consumer_fail(c, m, "test failure");
        else
            loom_consumer_ack(c, m);
    }
}

void
tpt_seen_free(tpt_seen *s)
{
    free(s->keys);
    free(s->seq);
    free(s->partition);
    free(s->offset);
    free(s->attempt);
    memset(s, 0, sizeof *s);
}

typedef struct tpt_pub {
    int calls;
    int done;
    int failed;
    loom_err rc;
} tpt_pub;

static void
tpt_on_published(loom_err rc, size_t n, void *arg)
{
    tpt_pub *p = arg;

    (void) n;
    p->done++;
    if (rc != LOOM_OK) {
        p->failed++;
        p->rc = rc;
    }
}

static int
tpt_pub_done(void *arg)
{
    tpt_pub *p = arg;

    return p->done == p->calls;
}

void
tpt_publish(tpt_env *e, const char *topic, int n, int keys, int64_t first)
{
    tpt_pub p = {0, 0, 0, LOOM_OK};
    int64_t *next = calloc((size_t) (keys > 0 ? keys : 1), sizeof *next);

    for (int i = 0; i < n; i++) {
        char key[32], payload[32];
        loom_message m;
        int k = keys > 0 ? i % keys : 0;

        memset(&m, 0, sizeof m);
        m.topic = topic;
        m.partition = LOOM_PARTITION_ANY;
        snprintf(key, sizeof key, "k%d", k);
        snprintf(payload, sizeof payload, "%lld",
                 (long long) (first + next[k]++));
        if (keys > 0) {
            m.key = key;
            m.key_len = strlen(key);
        }
        m.payload = payload;
        m.payload_len = strlen(payload);
        assert_int_equal(
            loom_transport_publish(e->t, &m, 1, tpt_on_published, &p), LOOM_OK);
        p.calls++;
    }
    free(next);
    assert_true(tpt_run(e, tpt_pub_done, &p, 60000));
    if (p.failed)
        fail_msg("%d publishes failed: %s", p.failed, loom_strerror(p.rc));
}

/* ---- SQL (topics_delivery_test, topics_consumer_test) ------------------ */

void
tpt_sqlf(const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t) n < sizeof sql);
    loomt_sql_exec(sql);
}

void
tpt_topic_create(const char *name, int partitions, long long retention_ms,
                 long long retention_bytes, long long dedup_window_ms,
                 int max_deliveries)
{
    char a[32] = "NULL", b[32] = "NULL", c[32] = "NULL", d[32] = "NULL";

    if (retention_ms >= 0)
        snprintf(a, sizeof a, "%lld", retention_ms);
    if (retention_bytes >= 0)
        snprintf(b, sizeof b, "%lld", retention_bytes);
    if (dedup_window_ms >= 0)
        snprintf(c, sizeof c, "%lld", dedup_window_ms);
    if (max_deliveries >= 0)
        snprintf(d, sizeof d, "%d", max_deliveries);
    tpt_sqlf("SELECT loom.topic_create('%s', %d, %s, %s, %s, %s)", name,
             partitions, a, b, c, d);
}

/* The state of tpt_sql_wait(). */
typedef struct sql_until {
    PGconn *conn;
    char sql[1024];
    long long want;
    long long last;
    int64_t next_ms;
} sql_until;

static int
sql_until_done(void *arg)
{
    sql_until *w = arg;
    int64_t now = est_now_ms();

    if (w->last == w->want)
        return 1; /* reached (tpt_run asks once more at the end) */
    if (now < w->next_ms)
        return 0;
    w->next_ms = now + 20;
    w->last = est_try_ll_on(&w->conn, "%s", w->sql);
    return w->last == w->want;
}

/* Runs the loop until the query returns `want`: within TPT_WAIT_MS, or
 * with `progress` for as long as each TPT_WAIT_MS brings a new answer.
 * Fails the test if not. */
static void __attribute__((format(printf, 4, 0)))
sql_wait(tpt_env *e, long long want, int progress, const char *fmt, va_list ap)
{
    sql_until w;
    long long before;
    int ok;

    memset(&w, 0, sizeof w);
    vsnprintf(w.sql, sizeof w.sql, fmt, ap);
    w.want = want;
    w.last = -1;
    do {
        before = w.last;
        ok = tpt_run(e, sql_until_done, &w, TPT_WAIT_MS);
    } while (!ok && progress && w.last != before);
    PQfinish(w.conn);
    if (!ok && progress)
        fail_msg("waited for %s to return %lld; it returned %lld, the same "
                 "for %d ms",
                 w.sql, want, w.last, TPT_WAIT_MS);
    else if (!ok)
        fail_msg("waited for %s to return %lld; it returned %lld", w.sql, want,
                 w.last);
}

void
tpt_sql_wait(tpt_env *e, long long want, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    sql_wait(e, want, 0, fmt, ap);
    va_end(ap);
}

void
tpt_sql_wait_progress(tpt_env *e, long long want, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    sql_wait(e, want, 1, fmt, ap);
    va_end(ap);
}

int64_t
tpt_realtime_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- a recording consumer ---------------------------------------------- */

void
tpt_rec_handle(loom_consumer *c, const loom_message *const *msgs, size_t n,
               void *arg)
{
    tpt_rec *r = arg;

    r->c = c;
    for (size_t i = 0; i < n; i++) {
        const loom_message *m = msgs[i];
        tpt_rmsg *x;

        if (r->n == r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 256;
            tpt_rmsg *grown = realloc(r->m, cap * sizeof *grown);
            if (grown == NULL) {
                r->oom = 1;
                loom_consumer_ack(c, m);
                continue;
            }
            r->m = grown;
            r->cap = cap;
        }
        x = &r->m[r->n++];
        memset(x, 0, sizeof *x);
        snprintf(x->topic, sizeof x->topic, "%s", m->topic);
        snprintf(
            x->key, sizeof x->key, "%.*s",
            (int) (m->key_len < sizeof x->key ? m->key_len : sizeof x->key - 1),
            m->key != NULL ? (const char *) m->key : "");
        snprintf(x->payload, sizeof x->payload, "%.*s",
                 (int) (m->payload_len < sizeof x->payload
                            ? m->payload_len
                            : sizeof x->payload - 1),
                 (const char *) m->payload);
        for (size_t h = 0; h < m->n_headers; h++) {
            size_t at = strlen(x->headers);
            snprintf(x->headers + at, sizeof x->headers - at, "%s=%s;",
                     m->headers[h].key, m->headers[h].value);
        }
        x->id = m->id;
        x->partition = m->partition;
        x->offset = m->offset;
        x->deliver_at = m->deliver_at;
        x->attempt = m->attempt;
        x->at_ms = est_now_ms();
        x->at_us = tpt_realtime_us();
        if (r->hold) {
            x->held = m;
            continue;
        }
        if (r->fail_payload != NULL &&
            strcmp(x->payload, r->fail_payload) == 0 &&
            m->attempt < r->fail_until)
            (r->reject ? loom_consumer_reject : loom_consumer_fail)(
                c, m, r->fail_error ? r->fail_error : "boom");
        else
            loom_consumer_ack(c, m);
    }
}

void
tpt_rec_free(tpt_rec *r)
{
    free(r->m);
    memset(r, 0, sizeof *r);
}

int
tpt_recs_done(void *arg)
{
    tpt_rec **rs = arg;

    for (; *rs != NULL; rs++)
        if ((*rs)->n < (*rs)->want)
            return 0;
    return 1;
}

void
tpt_rec_wait(tpt_env *e, tpt_rec *r, size_t want)
{
    tpt_rec *rs[2] = {r, NULL};

    r->want = want;
    if (!tpt_run(e, tpt_recs_done, rs, TPT_WAIT_MS))
        fail_msg("waited for %zu deliveries, got %zu", want, r->n);
    assert_false(r->oom);
}

size_t
tpt_rec_count(const tpt_rec *r, const char *payload)
{
    size_t k = 0;

    for (size_t i = 0; i < r->n; i++)
        k += strcmp(r->m[i].payload, payload) == 0;
    return k;
}

loom_topics_consumer_config
tpt_fast_topts(void)
{
    loom_topics_consumer_config t = LOOM_TOPICS_CONSUMER_INIT;

    t.poll_ms = TPT_POLL_MS;
    t.backoff_ms = TPT_BACKOFF_MS;
    t.heartbeat_ms = TPT_HEARTBEAT_MS;
    return t;
}

loom_consumer *
tpt_rec_open(tpt_env *e, const char *group, const char *topic,
             const loom_topics_consumer_config *topts, tpt_rec *r)
{
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    const char *topics[1] = {topic};
    loom_topics_consumer_config t = tpt_fast_topts();
    loom_consumer *c = NULL;
    loom_err rc;

    cfg.group = group;
    cfg.topics = topics;
    cfg.n_topics = 1;
    rc = loom_topics_consumer_open(e->t, &cfg, topts ? topts : &t,
                                   tpt_rec_handle, NULL, r, &c);
    if (rc != LOOM_OK)
        fail_msg("loom_topics_consumer_open(%s, %s): %s", group, topic,
                 loom_err_name(rc));
    r->c = c;
    return c;
}

loom_topics_consumer_stats
tpt_stats_of(loom_consumer *c)
{
    loom_topics_consumer_stats st;

    assert_int_equal(loom_topics_consumer_stats_get(c, &st), LOOM_OK);
    return st;
}

/* ---- publishing ---------------------------------------------------------- */

void
tpt_pcall_record(loom_err rc, size_t n, void *arg)
{
    tpt_pcall *p = arg;

    p->done++;
    p->rc = rc;
    p->n = n;
}

int
tpt_pcalls_done(void *arg)
{
    tpt_pcall **ps = arg;

    for (; *ps != NULL; ps++)
        if ((*ps)->done == 0)
            return 0;
    return 1;
}

void
tpt_msg_init(loom_message *m, const char *topic, const char *key,
             const char *payload)
{
    memset(m, 0, sizeof *m);
    m->topic = topic;
    m->partition = LOOM_PARTITION_ANY;
    if (key != NULL) {
        m->key = key;
        m->key_len = strlen(key);
    }
    m->payload = payload;
    m->payload_len = strlen(payload);
}

loom_err
tpt_publish_wait(tpt_env *e, const loom_message *msgs, size_t n)
{
    tpt_pcall p = {0, LOOM_OK, 0};
    tpt_pcall *ps[2] = {&p, NULL};

    assert_int_equal(
        loom_transport_publish(e->t, msgs, n, tpt_pcall_record, &p), LOOM_OK);
    assert_true(tpt_run(e, tpt_pcalls_done, ps, TPT_WAIT_MS));
    assert_int_equal(p.done, 1);
    return p.rc;
}

void
tpt_publish_seq(tpt_env *e, const char *topic, int first, int n, int keys)
{
    loom_message *msgs = calloc((size_t) n, sizeof *msgs);
    char(*keybuf)[16] = calloc((size_t) n, sizeof *keybuf);
    char(*paybuf)[16] = calloc((size_t) n, sizeof *paybuf);
    loom_err rc;

    assert_non_null(msgs);
    assert_non_null(keybuf);
    assert_non_null(paybuf);
    for (int i = 0; i < n; i++) {
        snprintf(keybuf[i], sizeof keybuf[i], "k%d", keys ? i % keys : 0);
        snprintf(paybuf[i], sizeof paybuf[i], "%d", first + i);
        tpt_msg_init(&msgs[i], topic, keys ? keybuf[i] : NULL, paybuf[i]);
    }
    rc = tpt_publish_wait(e, msgs, (size_t) n);
    free(msgs);
    free(keybuf);
    free(paybuf);
    if (rc != LOOM_OK)
        fail_msg("publishing to %s: %s", topic, loom_err_name(rc));
}

long long
tpt_topic_id(const char *name)
{
    return est_ll("SELECT id FROM loom.topics WHERE name = '%s'", name);
}

/* ---- debugging ---------------------------------------------------------- */

static void
tpt_log_all(void *arg, loom_log_level level, const char *line)
{
    (void) arg;
    fprintf(stderr, "%lld %s: %s\n", (long long) est_now_ms(),
            loom_log_level_name(level), line);
}

void
tpt_debug_from_env(void)
{
    if (getenv("TPT_LOG") != NULL)
        loom_log_set(tpt_log_all, NULL);
    if (getenv("TPT_FILTER") != NULL)
        cmocka_set_test_filter(getenv("TPT_FILTER"));
}
