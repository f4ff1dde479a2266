/*
 * Delivery guarantees of the topic streams against a real PostgreSQL, one
 * test per promise of loom/topics.h: redelivery with backoff and dead
 * letters, re-drive, delays, deduplication, patterns, independent groups,
 * offsets across restarts, start positions, exactly-once effects with a
 * transactional handler, fencing, bad input, Kafka's key partitioning and
 * retention.
 *
 * The tests of this executable share one database: each creates its own
 * topics and groups under names no other test uses (and no other test
 * creates a topic under "orders.", which the pattern test reads whole).
 * Loop callbacks only record; the checks run after tpt_run().
 *
 * tpt_run() turns the loop itself, so the runtime's LISTEN connection
 * (started by loom_runtime_run() only) never runs: consumers here find
 * new messages and rebalances by polling and heartbeats, hence the short
 * poll_ms and heartbeat_ms of fast_topts().
 *
 * TPT_FILTER=<glob> runs only the matching tests; TPT_LOG=1 prints every
 * log line of the library (info included) with a millisecond clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <uv.h>

#include "inproc.h"
#include "tptest.h"

/* Short periods keep redelivery, polling and rebalancing fast. */
#define POLL_MS      50
#define BACKOFF_MS   50
#define HEARTBEAT_MS 100
#define WAIT_MS      20000 /* the most any single wait may take */
#define QUIET_MS     300   /* extra run to catch late duplicates */

/* ---- SQL --------------------------------------------------------------- */

static void sqlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
sqlf(const char *fmt, ...)
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

/* Creates a topic; -1 leaves a setting at its default (NULL). */
static void
topic_create(const char *name, int partitions, long long retention_ms,
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
    sqlf("SELECT loom.topic_create('%s', %d, %s, %s, %s, %s)", name, partitions,
         a, b, c, d);
}

/* Runs the loop until `sql` (trusted text) returns `want`; the query runs
 * at most every 20 ms, on a connection of its own. */
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

static void sql_wait(tpt_env *e, long long want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
sql_wait(tpt_env *e, long long want, const char *fmt, ...)
{
    sql_until w;
    va_list ap;
    int ok;

    memset(&w, 0, sizeof w);
    va_start(ap, fmt);
    vsnprintf(w.sql, sizeof w.sql, fmt, ap);
    va_end(ap);
    w.want = want;
    w.last = -1;
    ok = tpt_run(e, sql_until_done, &w, WAIT_MS);
    PQfinish(w.conn);
    if (!ok)
        fail_msg("waited for %s to return %lld; it returned %lld", w.sql, want,
                 w.last);
}

static int64_t
realtime_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- a recording consumer ---------------------------------------------- */

typedef struct rmsg {
    char topic[80];
    char key[48];
    char payload[48];
    char headers[512]; /* "key=value;" each */
    loom_uuid id;
    int32_t partition;
    int64_t offset;
    int64_t deliver_at;
    uint32_t attempt;
    int64_t at_ms;            /* monotonic, when the handler got it */
    int64_t at_us;            /* wall clock, when the handler got it */
    const loom_message *held; /* hold mode: not acknowledged yet */
} rmsg;

typedef struct rec {
    rmsg *m;
    size_t n, cap;
    size_t want; /* rec_wait(): deliveries to wait for */
    int hold;    /* do not acknowledge: the test does */
    /* Fail deliveries of this payload while their attempt is below
     * fail_until. */
    const char *fail_payload;
    uint32_t fail_until;
    const char *fail_error;
    int oom;
    loom_consumer *c;
} rec;

static void
rec_handle(loom_consumer *c, const loom_message *const *msgs, size_t n,
           void *arg)
{
    rec *r = arg;

    r->c = c;
    for (size_t i = 0; i < n; i++) {
        const loom_message *m = msgs[i];
        rmsg *x;

        if (r->n == r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 256;
            rmsg *grown = realloc(r->m, cap * sizeof *grown);
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
        x->at_us = realtime_us();
        if (r->hold) {
            x->held = m;
            continue;
        }
        if (r->fail_payload != NULL &&
            strcmp(x->payload, r->fail_payload) == 0 &&
            m->attempt < r->fail_until)
            loom_consumer_fail(c, m, r->fail_error ? r->fail_error : "boom");
        else
            loom_consumer_ack(c, m);
    }
}

static void
rec_free(rec *r)
{
    free(r->m);
    memset(r, 0, sizeof *r);
}

/* NULL-terminated array of recs: each has `want` deliveries. */
static int
recs_done(void *arg)
{
    rec **rs = arg;

    for (; *rs != NULL; rs++)
        if ((*rs)->n < (*rs)->want)
            return 0;
    return 1;
}

static void
rec_wait(tpt_env *e, rec *r, size_t want)
{
    rec *rs[2] = {r, NULL};

    r->want = want;
    if (!tpt_run(e, recs_done, rs, WAIT_MS))
        fail_msg("waited for %zu deliveries, got %zu", want, r->n);
    assert_false(r->oom);
}

/* Deliveries of `payload`. */
static size_t
rec_count(const rec *r, const char *payload)
{
    size_t k = 0;

    for (size_t i = 0; i < r->n; i++)
        k += strcmp(r->m[i].payload, payload) == 0;
    return k;
}

/* The k-th delivery of `payload` (fails the test when there is none). */
static const rmsg *
rec_nth(const rec *r, const char *payload, size_t k)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->m[i].payload, payload) == 0 && k-- == 0)
            return &r->m[i];
    fail_msg("delivery %zu of \"%s\" is missing", k, payload);
    return NULL;
}

/* Fails unless each of payloads first..first+n-1 ("%d") was delivered
 * exactly once and nothing else was. */
static void
rec_check_once(const rec *r, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        char p[16];
        snprintf(p, sizeof p, "%d", i);
        if (rec_count(r, p) != 1)
            fail_msg("payload %s delivered %zu times", p, rec_count(r, p));
    }
    assert_int_equal(r->n, (size_t) n);
}

static loom_topics_consumer_config
fast_topts(void)
{
    loom_topics_consumer_config t = LOOM_TOPICS_CONSUMER_INIT;

    t.poll_ms = POLL_MS;
    t.backoff_ms = BACKOFF_MS;
    t.heartbeat_ms = HEARTBEAT_MS;
    return t;
}

static loom_consumer *
rec_open(tpt_env *e, const char *group, const char *topic,
         const loom_topics_consumer_config *topts, rec *r)
{
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    const char *topics[1] = {topic};
    loom_topics_consumer_config t = fast_topts();
    loom_consumer *c = NULL;
    loom_err rc;

    cfg.group = group;
    cfg.topics = topics;
    cfg.n_topics = 1;
    rc = loom_topics_consumer_open(e->t, &cfg, topts ? topts : &t, rec_handle,
                                   NULL, r, &c);
    if (rc != LOOM_OK)
        fail_msg("loom_topics_consumer_open(%s, %s): %s", group, topic,
                 loom_err_name(rc));
    r->c = c;
    return c;
}

static loom_topics_consumer_stats
stats_of(loom_consumer *c)
{
    loom_topics_consumer_stats st;

    assert_int_equal(loom_topics_consumer_stats_get(c, &st), LOOM_OK);
    return st;
}

/* Runs the loop until the consumer holds `n` partitions. */
typedef struct parts_until {
    loom_consumer *c;
    size_t n;
} parts_until;

static int
parts_done(void *arg)
{
    parts_until *w = arg;
    loom_topics_consumer_stats st;

    return loom_topics_consumer_stats_get(w->c, &st) == LOOM_OK &&
           st.partitions == w->n;
}

static void
parts_wait(tpt_env *e, loom_consumer *c, size_t n)
{
    parts_until w = {c, n};

    if (!tpt_run(e, parts_done, &w, WAIT_MS))
        fail_msg("waited for %zu partitions, have %zu", n,
                 stats_of(c).partitions);
}

/* ---- publishing ---------------------------------------------------------- */

typedef struct pcall {
    int done;
    loom_err rc;
    size_t n;
} pcall;

static void
on_published(loom_err rc, size_t n, void *arg)
{
    pcall *p = arg;

    p->done++;
    p->rc = rc;
    p->n = n;
}

/* NULL-terminated array of pcalls: each called back. */
static int
pcalls_done(void *arg)
{
    pcall **ps = arg;

    for (; *ps != NULL; ps++)
        if ((*ps)->done == 0)
            return 0;
    return 1;
}

static void
msg_init(loom_message *m, const char *topic, const char *key,
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

/* Publishes `n` messages in one call and returns what its callback got. */
static loom_err
publish_wait(tpt_env *e, const loom_message *msgs, size_t n)
{
    pcall p = {0, LOOM_OK, 0};
    pcall *ps[2] = {&p, NULL};

    assert_int_equal(loom_transport_publish(e->t, msgs, n, on_published, &p),
                     LOOM_OK);
    assert_true(tpt_run(e, pcalls_done, ps, WAIT_MS));
    assert_int_equal(p.done, 1);
    return p.rc;
}

/* Publishes payloads "first".."first+n-1" in one call, keyed "k<i % keys>"
 * (keys 0: no key), and fails the test unless all are taken. */
static void
publish_seq(tpt_env *e, const char *topic, int first, int n, int keys)
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
        msg_init(&msgs[i], topic, keys ? keybuf[i] : NULL, paybuf[i]);
    }
    rc = publish_wait(e, msgs, (size_t) n);
    free(msgs);
    free(keybuf);
    free(paybuf);
    if (rc != LOOM_OK)
        fail_msg("publishing to %s: %s", topic, loom_err_name(rc));
}

static long long
topic_id(const char *name)
{
    return est_ll("SELECT id FROM loom.topics WHERE name = '%s'", name);
}

/* ---- 1. redelivery with backoff, then the dead-letter topic ------------- */

static void
failed_message_is_redelivered_with_backoff_then_dead_lettered(void **state)
{
    tpt_env e;
    rec r = {0}, dlq = {0};
    loom_message msgs[3];
    loom_header hdr[1] = {{"trace", "t-1"}};
    loom_uuid poison_id;
    const rmsg *p[4], *d;
    char want[160];
    long long tid, dlq_tid;
    loom_topics_consumer_stats st;

    (void) state;
    topic_create("dl.orders", 2, -1, -1, -1, 4);
    tpt_open(&e, "");
    r.fail_payload = "poison";
    r.fail_until = 1000; /* always */
    r.fail_error = "card declined";
    rec_open(&e, "dl-g", "dl.orders", NULL, &r);
    /* One key: one partition, the poison between two good ones. */
    msg_init(&msgs[0], "dl.orders", "cust-7", "ok-1");
    msg_init(&msgs[1], "dl.orders", "cust-7", "poison");
    msg_init(&msgs[2], "dl.orders", "cust-7", "ok-2");
    msgs[1].headers = hdr;
    msgs[1].n_headers = 1;
    assert_int_equal(loom_uuid_generate(&poison_id), LOOM_OK);
    msgs[1].id = poison_id;
    assert_int_equal(publish_wait(&e, msgs, 3), LOOM_OK);

    rec_wait(&e, &r, 6); /* 2 good ones, 4 deliveries of the poison */
    sql_wait(&e, 1,
             "SELECT count(*) FROM loom.topic_dead_letters "
             "WHERE group_name = 'dl-g'");
    sql_wait(&e, 0,
             "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag "
             "WHERE group_name = 'dl-g'");
    tpt_run(&e, NULL, NULL, QUIET_MS);

    /* The good ones once each, not held up by the poison before them. */
    assert_int_equal(rec_count(&r, "ok-1"), 1);
    assert_int_equal(rec_count(&r, "ok-2"), 1);
    assert_int_equal(rec_nth(&r, "ok-2", 0)->attempt, 1);
    assert_int_equal(rec_count(&r, "poison"), 4);
    for (size_t i = 0; i < 4; i++) {
        p[i] = rec_nth(&r, "poison", i);
        assert_int_equal(p[i]->attempt, i + 1);
        assert_int_equal(p[i]->offset, p[0]->offset);
        assert_string_equal(p[i]->headers, "trace=t-1;");
    }
    assert_true(rec_nth(&r, "ok-2", 0)->at_ms <= p[1]->at_ms);
    /* Exponential backoff: 50, 100, 200 ms at least, each longer. */
    for (size_t i = 1; i < 4; i++) {
        int64_t gap = p[i]->at_ms - p[i - 1]->at_ms;
        int64_t min = (int64_t) BACKOFF_MS << (i - 1);
        if (gap < min - 2)
            fail_msg("redelivery %zu came after %lld ms, backoff is %lld", i,
                     (long long) gap, (long long) min);
    }
    assert_true(p[3]->at_ms - p[2]->at_ms > p[1]->at_ms - p[0]->at_ms);
    st = stats_of(r.c);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.redelivered, 3);

    /* The record of the dead letter. */
    tid = topic_id("dl.orders");
    dlq_tid = topic_id("dl.orders.dlq");
    assert_true(dlq_tid > 0);
    assert_int_equal(est_ll("SELECT partitions FROM loom.topics "
                            "WHERE id = %lld",
                            dlq_tid),
                     2);
    assert_int_equal(
        est_ll("SELECT count(*) FROM loom.topic_dead_letters "
               "WHERE group_name = 'dl-g' AND topic_id = %lld "
               "AND partition = %d AND \"offset\" = %lld AND deliveries = 4 "
               "AND error = 'card declined' AND redriven_at IS NULL "
               "AND dlq_topic_id = %lld AND dlq_partition = %d",
               tid, (int) p[0]->partition, (long long) p[0]->offset, dlq_tid,
               (int) p[0]->partition),
        1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_retries "
                            "WHERE group_name = 'dl-g'"),
                     0);

    /* The copy in "<topic>.dlq", read by a consumer of its own. */
    rec_open(&e, "dl-reader", "dl.orders.dlq", NULL, &dlq);
    rec_wait(&e, &dlq, 1);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    assert_int_equal(dlq.n, 1);
    d = &dlq.m[0];
    assert_string_equal(d->topic, "dl.orders.dlq");
    assert_string_equal(d->payload, "poison");
    assert_string_equal(d->key, "cust-7");
    assert_memory_equal(d->id.bytes, poison_id.bytes, 16);
    assert_int_equal(d->partition, p[0]->partition);
    assert_int_equal(d->attempt, 1);
    snprintf(want, sizeof want,
             "trace=t-1;x-error=card declined;x-group=dl-g;x-deliveries=4;"
             "x-topic=dl.orders;x-partition=%d;x-offset=%lld;",
             (int) p[0]->partition, (long long) p[0]->offset);
    assert_string_equal(d->headers, want);

    tpt_close(&e);
    rec_free(&r);
    rec_free(&dlq);
}

/* ---- 2. re-drive ----------------------------------------------------------
 */

static void
redriven_dead_letter_is_delivered_again_counting_from_one(void **state)
{
    tpt_env e;
    rec r = {0};
    size_t mark;

    (void) state;
    topic_create("rd.jobs", 1, -1, -1, -1, 2);
    tpt_open(&e, "");
    r.fail_payload = "poison";
    r.fail_until = 1000;
    rec_open(&e, "rd-g", "rd.jobs", NULL, &r);
    publish_seq(&e, "rd.jobs", 0, 1, 0);
    {
        loom_message m;
        msg_init(&m, "rd.jobs", NULL, "poison");
        assert_int_equal(publish_wait(&e, &m, 1), LOOM_OK);
    }
    rec_wait(&e, &r, 3);
    sql_wait(&e, 1,
             "SELECT count(*) FROM loom.topic_dead_letters "
             "WHERE group_name = 'rd-g'");
    assert_int_equal(rec_count(&r, "poison"), 2);

    /* From now on the poison fails once more, then succeeds. */
    mark = r.n;
    r.fail_until = 2;
    assert_int_equal(est_ll("SELECT loom.topic_redrive('rd.jobs', 'rd-g', "
                            "NULL, NULL)"),
                     1);
    rec_wait(&e, &r, mark + 2);
    sql_wait(&e, 0,
             "SELECT count(*) FROM loom.topic_retries "
             "WHERE group_name = 'rd-g'");
    tpt_run(&e, NULL, NULL, QUIET_MS);
    assert_int_equal(r.n, mark + 2);
    assert_string_equal(r.m[mark].payload, "poison");
    assert_int_equal(r.m[mark].attempt, 1);
    assert_string_equal(r.m[mark + 1].payload, "poison");
    assert_int_equal(r.m[mark + 1].attempt, 2);
    /* Re-driven once: not dead again, and not re-driven twice. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'rd-g' "
                            "AND redriven_at IS NOT NULL"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'rd-g'"),
                     1);
    assert_int_equal(est_ll("SELECT loom.topic_redrive('rd.jobs', NULL, "
                            "NULL, NULL)"),
                     0);
    assert_int_equal(rec_count(&r, "0"), 1);
    tpt_close(&e);
    rec_free(&r);
}

/* ---- 3. delays -------------------------------------------------------------
 */

static void
delayed_message_waits_while_later_ones_in_its_partition_flow(void **state)
{
    tpt_env e;
    rec r = {0};
    loom_message msgs[3];
    int64_t t0, at;
    const rmsg *late;

    (void) state;
    topic_create("dly.q", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    rec_open(&e, "dly-g", "dly.q", NULL, &r);
    msg_init(&msgs[0], "dly.q", "same", "late");
    msg_init(&msgs[1], "dly.q", "same", "a");
    msg_init(&msgs[2], "dly.q", "same", "b");
    t0 = est_now_ms();
    at = realtime_us() + 1500000;
    msgs[0].deliver_at = at;
    assert_int_equal(publish_wait(&e, msgs, 3), LOOM_OK);

    rec_wait(&e, &r, 2);
    assert_int_equal(rec_count(&r, "late"), 0);
    assert_int_equal(rec_count(&r, "a"), 1);
    assert_int_equal(rec_count(&r, "b"), 1);
    assert_true(rec_nth(&r, "b", 0)->at_ms - t0 < 1500);
    /* Their offset commits past the delayed one, which waits. */
    sql_wait(&e, 3,
             "SELECT committed FROM loom.topic_lag "
             "WHERE group_name = 'dly-g'");

    rec_wait(&e, &r, 3);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    assert_int_equal(r.n, 3);
    late = rec_nth(&r, "late", 0);
    assert_int_equal(late->attempt, 1);
    assert_int_equal(late->offset, 0);
    assert_int_equal(late->deliver_at, at);
    if (late->at_us < at)
        fail_msg("delivered %lld µs before its time",
                 (long long) (at - late->at_us));
    assert_true(late->at_ms - t0 >= 1500 - 2);
    assert_true(late->at_ms - t0 < 10000);
    sql_wait(&e, 0,
             "SELECT count(*) FROM loom.topic_retries "
             "WHERE group_name = 'dly-g'");
    tpt_close(&e);
    rec_free(&r);
}

/* At most once: offsets commit before the handler sees a batch, so a
 * failed message is dropped, not redelivered; a delayed message (alone
 * in its fetch) still arrives once, when due. */
static void
at_most_once_drops_failures_and_still_delivers_delayed_messages(void **state)
{
    tpt_env e;
    rec r = {0};
    loom_topics_consumer_config t = fast_topts();
    loom_message m;
    int64_t at;

    (void) state;
    topic_create("amo.q", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    t.at_most_once = 1;
    r.fail_payload = "x";
    r.fail_until = 1000;
    rec_open(&e, "amo-g", "amo.q", &t, &r);
    msg_init(&m, "amo.q", NULL, "later");
    at = realtime_us() + 500000;
    m.deliver_at = at;
    assert_int_equal(publish_wait(&e, &m, 1), LOOM_OK);
    rec_wait(&e, &r, 1);
    assert_string_equal(r.m[0].payload, "later");
    assert_true(r.m[0].at_us >= at);
    assert_int_equal(r.m[0].attempt, 1);

    publish_seq(&e, "amo.q", 0, 2, 0);
    msg_init(&m, "amo.q", NULL, "x");
    assert_int_equal(publish_wait(&e, &m, 1), LOOM_OK);
    publish_seq(&e, "amo.q", 2, 2, 0);
    rec_wait(&e, &r, 6);
    sql_wait(&e, 6,
             "SELECT committed FROM loom.topic_lag "
             "WHERE group_name = 'amo-g'");
    tpt_run(&e, NULL, NULL, 4 * POLL_MS + QUIET_MS);
    assert_int_equal(r.n, 6);
    assert_int_equal(rec_count(&r, "x"), 1);
    assert_int_equal(rec_count(&r, "later"), 1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_retries "
                            "WHERE group_name = 'amo-g'"),
                     0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'amo-g'"),
                     0);
    tpt_close(&e);
    rec_free(&r);
}

/* Stored headers that are not a header list (written by another tool,
 * say) cost the message its headers, never its body, its delay or its
 * redelivery. */
static void
undecodable_headers_are_dropped_but_the_message_is_not(void **state)
{
    tpt_env e;
    rec r = {0};
    long long at;
    const rmsg *late;

    (void) state;
    topic_create("hd.bad", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    r.fail_payload = "body";
    r.fail_until = 2;
    rec_open(&e, "hd-g", "hd.bad", NULL, &r);
    at = est_ll("SELECT (extract(epoch FROM clock_timestamp() + "
                "interval '500 ms') * 1000000)::bigint");
    /* 0x63 = field 12, wire type 3: not what headers.c writes. */
    sqlf("SELECT count(*) FROM loom.topic_publish('hd.bad', NULL, NULL, 0, "
         "ARRAY[gen_random_uuid(), gen_random_uuid()], NULL, "
         "ARRAY['\\x63757374'::bytea, '\\x63757374'::bytea], "
         "ARRAY[convert_to('body', 'UTF8'), convert_to('body-late', "
         "'UTF8')], ARRAY[NULL, to_timestamp(%lld / 1e6)])",
         at);
    rec_wait(&e, &r, 3);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    assert_int_equal(r.n, 3);
    assert_int_equal(rec_count(&r, "body"), 2);
    assert_int_equal(rec_nth(&r, "body", 0)->attempt, 1);
    assert_int_equal(rec_nth(&r, "body", 1)->attempt, 2);
    assert_string_equal(rec_nth(&r, "body", 1)->headers, "");
    late = rec_nth(&r, "body-late", 0);
    assert_string_equal(late->headers, "");
    assert_int_equal(late->attempt, 1);
    assert_true(late->at_us >= at);
    tpt_close(&e);
    rec_free(&r);
}

/* ---- 4. deduplication ------------------------------------------------------
 */

/* Publishes the same id as two calls queued together (one transaction)
 * and as two calls one after the other, and as two messages of one
 * call. */
static void
publish_twice_each_way(tpt_env *e, const char *topic, const char *ids[3])
{
    loom_message m[2];
    pcall a = {0, LOOM_OK, 0}, b = {0, LOOM_OK, 0};
    pcall filler = {0, LOOM_OK, 0};
    pcall *ps[4] = {&filler, &a, &b, NULL};
    loom_uuid id;

    /* After one another. */
    assert_int_equal(loom_uuid_parse(&id, ids[0]), LOOM_OK);
    msg_init(&m[0], topic, "k", "seq-1");
    m[0].id = id;
    assert_int_equal(publish_wait(e, m, 1), LOOM_OK);
    assert_int_equal(publish_wait(e, m, 1), LOOM_OK);
    /* Two calls queued while another is in flight: they go out together,
     * in one transaction. */
    msg_init(&m[0], topic, "k", "filler");
    assert_int_equal(loom_transport_publish(e->t, m, 1, on_published, &filler),
                     LOOM_OK);
    assert_int_equal(loom_uuid_parse(&id, ids[1]), LOOM_OK);
    msg_init(&m[0], topic, "k", "queued");
    m[0].id = id;
    assert_int_equal(loom_transport_publish(e->t, m, 1, on_published, &a),
                     LOOM_OK);
    assert_int_equal(loom_transport_publish(e->t, m, 1, on_published, &b),
                     LOOM_OK);
    assert_true(tpt_run(e, pcalls_done, ps, WAIT_MS));
    assert_int_equal(filler.rc, LOOM_OK);
    assert_int_equal(a.rc, LOOM_OK);
    assert_int_equal(b.rc, LOOM_OK);
    /* Twice in one call. */
    assert_int_equal(loom_uuid_parse(&id, ids[2]), LOOM_OK);
    msg_init(&m[0], topic, "k", "one-call");
    msg_init(&m[1], topic, "k", "one-call");
    m[0].id = m[1].id = id;
    assert_int_equal(publish_wait(e, m, 2), LOOM_OK);
}

static void
duplicate_message_id_within_window_is_stored_and_delivered_once(void **state)
{
    static const char *ids[3] = {"0190a1b2-0000-7000-8000-000000000001",
                                 "0190a1b2-0000-7000-8000-000000000002",
                                 "0190a1b2-0000-7000-8000-000000000003"};
    tpt_env e;
    rec r = {0};
    long long tid;

    (void) state;
    topic_create("dd.win", 2, -1, -1, -1, -1); /* window 300 s */
    tpt_open(&e, "");
    rec_open(&e, "dd-win-g", "dd.win", NULL, &r);
    publish_twice_each_way(&e, "dd.win", ids);
    tid = topic_id("dd.win");
    for (int i = 0; i < 3; i++)
        assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages "
                                "WHERE topic_id = %lld AND id = '%s'",
                                tid, ids[i]),
                         1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages "
                            "WHERE topic_id = %lld",
                            tid),
                     4);
    rec_wait(&e, &r, 4);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    assert_int_equal(r.n, 4);
    assert_int_equal(rec_count(&r, "filler"), 1);
    assert_int_equal(rec_count(&r, "seq-1"), 1);
    assert_int_equal(rec_count(&r, "queued"), 1);
    assert_int_equal(rec_count(&r, "one-call"), 1);
    tpt_close(&e);
    rec_free(&r);
}

static void
without_dedup_window_the_same_id_is_stored_each_time(void **state)
{
    static const char *ids[3] = {"0190a1b2-0000-7000-8000-000000000011",
                                 "0190a1b2-0000-7000-8000-000000000012",
                                 "0190a1b2-0000-7000-8000-000000000013"};
    tpt_env e;
    rec r = {0};
    long long tid;

    (void) state;
    topic_create("dd.off", 2, -1, -1, 0, -1);
    tpt_open(&e, "");
    rec_open(&e, "dd-off-g", "dd.off", NULL, &r);
    publish_twice_each_way(&e, "dd.off", ids);
    tid = topic_id("dd.off");
    for (int i = 0; i < 3; i++)
        if (est_ll("SELECT count(*) FROM loom.topic_messages "
                   "WHERE topic_id = %lld AND id = '%s'",
                   tid, ids[i]) != 2)
            fail_msg("id %s (%s) stored %lld times, expected 2", ids[i],
                     i == 0   ? "two calls in turn"
                     : i == 1 ? "two calls queued together"
                              : "twice in one call",
                     est_ll("SELECT count(*) FROM loom.topic_messages "
                            "WHERE topic_id = %lld AND id = '%s'",
                            tid, ids[i]));
    /* Offsets stay dense. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages m "
                            "JOIN loom.topic_partitions tp USING (topic_id, "
                            "partition) WHERE topic_id = %lld "
                            "AND m.\"offset\" >= tp.next_offset",
                            tid),
                     0);
    rec_wait(&e, &r, 7);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    assert_int_equal(r.n, 7);
    assert_int_equal(rec_count(&r, "filler"), 1);
    assert_int_equal(rec_count(&r, "seq-1"), 2);
    assert_int_equal(rec_count(&r, "queued"), 2);
    assert_int_equal(rec_count(&r, "one-call"), 2);
    tpt_close(&e);
    rec_free(&r);
}

/* ---- 5. patterns ------------------------------------------------------------
 */

static int
rec_has_topic(const rec *r, const char *topic)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->m[i].topic, topic) == 0)
            return 1;
    return 0;
}

static void
pattern_subscriptions_match_words_and_pick_up_new_topics(void **state)
{
    static const char *topics[] = {"orders.created.eu", "orders.created.us",
                                   "orders.paid.eu", "billing",
                                   "orders.created.eu.dlq"};
    tpt_env e;
    rec eu = {0}, all = {0};

    (void) state;
    for (size_t i = 0; i < 5; i++)
        topic_create(topics[i], 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    rec_open(&e, "pat-eu", "orders.*.eu", NULL, &eu);
    rec_open(&e, "pat-all", "orders.#", NULL, &all);
    parts_wait(&e, eu.c, 2);
    parts_wait(&e, all.c, 3);
    for (size_t i = 0; i < 5; i++) {
        loom_message m;
        msg_init(&m, topics[i], NULL, topics[i]);
        assert_int_equal(publish_wait(&e, &m, 1), LOOM_OK);
    }
    rec_wait(&e, &eu, 2);
    rec_wait(&e, &all, 3);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    assert_int_equal(eu.n, 2);
    assert_true(rec_has_topic(&eu, "orders.created.eu"));
    assert_true(rec_has_topic(&eu, "orders.paid.eu"));
    assert_int_equal(all.n, 3);
    assert_true(rec_has_topic(&all, "orders.created.eu"));
    assert_true(rec_has_topic(&all, "orders.created.us"));
    assert_true(rec_has_topic(&all, "orders.paid.eu"));
    for (size_t i = 0; i < all.n; i++)
        assert_string_equal(all.m[i].topic, all.m[i].payload);

    /* A topic created now joins both subscriptions (the heartbeat sees
     * loom.topic_meta move and the group rebalances). */
    topic_create("orders.refunded.eu", 1, -1, -1, -1, -1);
    parts_wait(&e, eu.c, 3);
    parts_wait(&e, all.c, 4);
    {
        loom_message m;
        msg_init(&m, "orders.refunded.eu", NULL, "refund");
        assert_int_equal(publish_wait(&e, &m, 1), LOOM_OK);
    }
    rec_wait(&e, &eu, 3);
    rec_wait(&e, &all, 4);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    assert_int_equal(eu.n, 3);
    assert_int_equal(all.n, 4);
    assert_string_equal(eu.m[2].topic, "orders.refunded.eu");
    assert_string_equal(all.m[3].topic, "orders.refunded.eu");
    tpt_close(&e);
    rec_free(&eu);
    rec_free(&all);
}

/* ---- 6. independent groups
 * ---------------------------------------------------- */

static void
independent_groups_each_receive_every_message(void **state)
{
    tpt_env e;
    rec r[3];
    rec *rs[4] = {&r[0], &r[1], &r[2], NULL};
    const char *groups[3] = {"ind-a", "ind-b", "ind-c"};

    (void) state;
    memset(r, 0, sizeof r);
    topic_create("ind.t", 3, -1, -1, -1, -1);
    tpt_open(&e, "");
    for (int i = 0; i < 3; i++)
        rec_open(&e, groups[i], "ind.t", NULL, &r[i]);
    publish_seq(&e, "ind.t", 0, 60, 7);
    for (int i = 0; i < 3; i++)
        r[i].want = 60;
    assert_true(tpt_run(&e, recs_done, rs, WAIT_MS));
    tpt_run(&e, NULL, NULL, QUIET_MS);
    for (int i = 0; i < 3; i++) {
        rec_check_once(&r[i], 0, 60);
        assert_int_equal(stats_of(r[i].c).partitions, 3);
    }
    tpt_close(&e);
    for (int i = 0; i < 3; i++)
        rec_free(&r[i]);
}

/* ---- 7. offsets across restarts ---------------------------------------------
 */

static void
committed_offsets_survive_a_restart_of_the_group(void **state)
{
    tpt_env e;
    rec a = {0}, b = {0};
    int64_t count[2] = {0, 0};
    size_t acked = 0;
    char *was_acked;

    (void) state;
    topic_create("rs.t", 2, -1, -1, -1, -1);
    tpt_open(&e, "");
    a.hold = 1;
    rec_open(&e, "rs-g", "rs.t", NULL, &a);
    publish_seq(&e, "rs.t", 0, 40, 5);
    rec_wait(&e, &a, 40);
    /* Acknowledge the first half of each partition. */
    for (size_t i = 0; i < a.n; i++)
        count[a.m[i].partition]++;
    assert_true(count[0] > 0 && count[1] > 0);
    was_acked = calloc(a.n, 1);
    assert_non_null(was_acked);
    for (size_t i = 0; i < a.n; i++)
        if (a.m[i].offset < count[a.m[i].partition] / 2) {
            assert_int_equal(loom_consumer_ack(a.c, a.m[i].held), LOOM_OK);
            was_acked[i] = 1;
            acked++;
        }
    sql_wait(&e, (long long) (count[0] / 2 + count[1] / 2),
             "SELECT sum(\"offset\") FROM loom.topic_offsets o "
             "JOIN loom.topics t ON t.id = o.topic_id "
             "WHERE o.group_name = 'rs-g' AND t.name = 'rs.t'");
    loom_consumer_close(a.c);

    /* The group again: exactly the unacknowledged ones, once each. */
    rec_open(&e, "rs-g", "rs.t", NULL, &b);
    rec_wait(&e, &b, 40 - acked);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    assert_int_equal(b.n, 40 - acked);
    for (size_t i = 0; i < a.n; i++)
        assert_int_equal(rec_count(&b, a.m[i].payload), was_acked[i] ? 0 : 1);
    for (size_t i = 0; i < b.n; i++) {
        assert_true(b.m[i].offset >= count[b.m[i].partition] / 2);
        assert_int_equal(b.m[i].attempt, 1);
    }
    sql_wait(&e, 0,
             "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag "
             "WHERE group_name = 'rs-g'");
    free(was_acked);
    tpt_close(&e);
    rec_free(&a);
    rec_free(&b);
}

/* loom/transport.h: an acknowledged message "is not delivered to this
 * group again", and closing redelivers the unacknowledged ones; so a
 * graceful close writes what was acknowledged (as Kafka's close() makes
 * a last commit). Here every message is acknowledged, then the consumer
 * is closed at once: the commit of the first acknowledgement may be in
 * flight, the others are not yet written. */
static void
acknowledged_messages_are_not_redelivered_after_close(void **state)
{
    tpt_env e;
    rec a = {0}, b = {0};

    (void) state;
    topic_create("cl.t", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    a.hold = 1;
    rec_open(&e, "cl-g", "cl.t", NULL, &a);
    publish_seq(&e, "cl.t", 0, 10, 0);
    rec_wait(&e, &a, 10);
    for (size_t i = 0; i < a.n; i++)
        assert_int_equal(loom_consumer_ack(a.c, a.m[i].held), LOOM_OK);
    loom_consumer_close(a.c);

    rec_open(&e, "cl-g", "cl.t", NULL, &b);
    parts_wait(&e, b.c, 1);
    tpt_run(&e, NULL, NULL, 10 * POLL_MS + QUIET_MS);
    if (b.n != 0)
        fail_msg("%zu acknowledged messages were delivered again after "
                 "close (first: %s)",
                 b.n, b.m[0].payload);
    tpt_close(&e);
    rec_free(&a);
    rec_free(&b);
}

static void
manual_commit_writes_offsets_only_when_asked(void **state)
{
    tpt_env e;
    rec r = {0};
    loom_topics_consumer_config t = fast_topts();

    (void) state;
    topic_create("mc.t", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    t.manual_commit = 1;
    rec_open(&e, "mc-g", "mc.t", &t, &r);
    publish_seq(&e, "mc.t", 0, 10, 0);
    rec_wait(&e, &r, 10);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    assert_int_equal(est_ll("SELECT committed FROM loom.topic_lag "
                            "WHERE group_name = 'mc-g'"),
                     0);
    assert_int_equal(loom_topics_commit(r.c), LOOM_OK);
    sql_wait(&e, 10,
             "SELECT committed FROM loom.topic_lag "
             "WHERE group_name = 'mc-g'");
    rec_check_once(&r, 0, 10);
    tpt_close(&e);
    rec_free(&r);
}

/* ---- 8. start positions
 * ------------------------------------------------------- */

static void
new_groups_start_where_their_start_position_says(void **state)
{
    tpt_env e;
    rec latest = {0}, bytime = {0}, byoff = {0}, past_end = {0}, earliest = {0},
        again = {0};
    loom_topics_consumer_config t = fast_topts();
    long long t1;

    (void) state;
    topic_create("sp.t", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    publish_seq(&e, "sp.t", 0, 5, 0); /* offsets 0..4 */
    t1 = est_ll("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)"
                "::bigint");
    publish_seq(&e, "sp.t", 5, 5, 0); /* 5..9, published after t1 */

    t.start.start = LOOM_START_LATEST;
    rec_open(&e, "sp-latest", "sp.t", &t, &latest);
    t.start.start = LOOM_START_TIME;
    t.start.time = t1;
    rec_open(&e, "sp-time", "sp.t", &t, &bytime);
    t.start.start = LOOM_START_OFFSET;
    t.start.time = 0;
    t.start.offset = 7;
    rec_open(&e, "sp-offset", "sp.t", &t, &byoff);
    t.start.offset = 1000; /* clamped to the end */
    rec_open(&e, "sp-past-end", "sp.t", &t, &past_end);
    rec_open(&e, "sp-earliest", "sp.t", NULL, &earliest);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    assert_int_equal(latest.n, 0);
    assert_int_equal(past_end.n, 0);

    publish_seq(&e, "sp.t", 10, 3, 0); /* 10..12 */
    rec_wait(&e, &latest, 3);
    rec_wait(&e, &bytime, 8);
    rec_wait(&e, &byoff, 6);
    rec_wait(&e, &past_end, 3);
    rec_wait(&e, &earliest, 13);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    rec_check_once(&latest, 10, 3);
    rec_check_once(&bytime, 5, 8);
    rec_check_once(&byoff, 7, 6);
    rec_check_once(&past_end, 10, 3);
    rec_check_once(&earliest, 0, 13);

    /* The start position only counts without a committed offset. */
    sql_wait(&e, 13,
             "SELECT committed FROM loom.topic_lag "
             "WHERE group_name = 'sp-latest'");
    loom_consumer_close(latest.c);
    rec_open(&e, "sp-latest", "sp.t", NULL, &again); /* earliest */
    publish_seq(&e, "sp.t", 13, 1, 0);
    rec_wait(&e, &again, 1);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    rec_check_once(&again, 13, 1);
    tpt_close(&e);
    rec_free(&latest);
    rec_free(&bytime);
    rec_free(&byoff);
    rec_free(&past_end);
    rec_free(&earliest);
    rec_free(&again);
}

/* ---- 9. exactly-once effects
 * ------------------------------------------------- */

typedef struct eo {
    const char *table;
    const char *poison;
    int fail_by_error; /* return an error (else the INSERT fails) */
    size_t calls;
    size_t poison_in_batch; /* deliveries of the poison with others */
    uint32_t alone[16];     /* attempts of the poison delivered alone */
    size_t n_alone;
    loom_err queue_rc;
} eo;

static loom_err
eo_handle(loom_tx *tx, const loom_message *const *msgs, size_t n, void *arg)
{
    eo *s = arg;
    char sql[128];
    int poison = 0;

    snprintf(sql, sizeof sql, "INSERT INTO %s (id) VALUES ($1)", s->table);
    s->calls++;
    for (size_t i = 0; i < n; i++) {
        char id[48];
        const char *v[1] = {id};
        loom_err rc;

        snprintf(id, sizeof id, "%.*s",
                 (int) (msgs[i]->payload_len < sizeof id ? msgs[i]->payload_len
                                                         : sizeof id - 1),
                 (const char *) msgs[i]->payload);
        rc = loom_tx_exec(tx, sql, 1, v);
        if (rc != LOOM_OK && s->queue_rc == LOOM_OK)
            s->queue_rc = rc;
        if (strcmp(id, s->poison) != 0)
            continue;
        poison = 1;
        if (n > 1)
            s->poison_in_batch++;
        else if (s->n_alone < 16)
            s->alone[s->n_alone++] = msgs[i]->attempt;
    }
    return poison && s->fail_by_error ? LOOM_EHANDLER : LOOM_OK;
}

static void
exactly_once_run(eo *s, const char *topic, const char *group)
{
    tpt_env e;
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_topics_consumer_config t = fast_topts();
    const char *topics[1] = {topic};
    loom_consumer *c = NULL;
    loom_message msgs[31];
    char pay[31][16];

    topic_create(topic, 2, -1, -1, -1, 3);
    tpt_open(&e, "");
    cfg.group = group;
    cfg.topics = topics;
    cfg.n_topics = 1;
    cfg.batch = 8;
    assert_int_equal(
        loom_topics_consumer_open(e.t, &cfg, &t, NULL, eo_handle, s, &c),
        LOOM_OK);
    /* All on one key: one partition, batches of 8, the poison in the
     * middle of one. */
    for (int i = 0; i < 31; i++) {
        snprintf(pay[i], sizeof pay[i], "m%d", i);
        msg_init(&msgs[i], topic, "one-key", i == 12 ? s->poison : pay[i]);
    }
    assert_int_equal(publish_wait(&e, msgs, 31), LOOM_OK);
    sql_wait(&e, 1,
             "SELECT count(*) FROM loom.topic_dead_letters "
             "WHERE group_name = '%s'",
             group);
    sql_wait(&e, 0,
             "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag "
             "WHERE group_name = '%s'",
             group);
    sql_wait(&e, 0,
             "SELECT count(*) FROM loom.topic_retries "
             "WHERE group_name = '%s'",
             group);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    tpt_close(&e);

    assert_int_equal(s->queue_rc, LOOM_OK);
    /* Each good message's effect once; none of the poison's. */
    assert_int_equal(est_ll("SELECT count(*) FROM %s", s->table), 30);
    assert_int_equal(est_ll("SELECT count(DISTINCT id) FROM %s", s->table), 30);
    assert_int_equal(
        est_ll("SELECT count(*) FROM %s WHERE id = '%s'", s->table, s->poison),
        0);
    /* The poison failed in its batch, then alone: attempt 1 isolated,
     * then its two redeliveries, then the dead-letter topic. */
    assert_true(s->poison_in_batch >= 1);
    assert_int_equal(s->n_alone, 3);
    assert_int_equal(s->alone[0], 1);
    assert_int_equal(s->alone[1], 2);
    assert_int_equal(s->alone[2], 3);
    assert_int_equal(est_ll("SELECT deliveries FROM loom.topic_dead_letters "
                            "WHERE group_name = '%s'",
                            group),
                     3);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages "
                            "WHERE topic_id = loom.topic_id('%s.dlq') "
                            "AND payload = convert_to('%s', 'UTF8')",
                            topic, s->poison),
                     1);
}

static void
tx_handler_effects_apply_once_when_a_statement_fails(void **state)
{
    eo s;

    (void) state;
    memset(&s, 0, sizeof s);
    s.table = "eo_stmt";
    s.poison = "poison";
    loomt_sql_exec("CREATE TABLE eo_stmt (id text NOT NULL "
                   "CHECK (id <> 'poison'))");
    exactly_once_run(&s, "eo.stmt", "eo-stmt-g");
}

static void
tx_handler_effects_apply_once_when_the_handler_fails(void **state)
{
    eo s;

    (void) state;
    memset(&s, 0, sizeof s);
    s.table = "eo_err";
    s.poison = "bad";
    s.fail_by_error = 1;
    loomt_sql_exec("CREATE TABLE eo_err (id text NOT NULL)");
    exactly_once_run(&s, "eo.err", "eo-err-g");
}

/* ---- 10. fencing
 * ----------------------------------------------------------------- */

static void
stale_generation_cannot_commit_in_sql(void **state)
{
    tpt_env e;
    rec r = {0};
    PGconn *pg;
    PGresult *res;
    char member[64], sql[512];
    long long gen, tid;

    (void) state;
    topic_create("fn.sql", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    rec_open(&e, "fn-sql", "fn.sql", NULL, &r);
    parts_wait(&e, r.c, 1);
    tid = topic_id("fn.sql");
    pg = est_connect(NULL);
    res = est_query(pg, "SELECT member::text, generation "
                        "FROM loom.topic_assignments "
                        "WHERE group_name = 'fn-sql'");
    assert_int_equal(PQntuples(res), 1);
    snprintf(member, sizeof member, "%s", PQgetvalue(res, 0, 0));
    gen = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    PQclear(res);

    snprintf(sql, sizeof sql,
             "SELECT loom.topic_commit('fn-sql', '%s', %lld, %lld, 0, 0)",
             member, gen - 1, tid);
    est_exec_fails(pg, sql, "LM012");
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_commit('fn-sql', "
             "'0190a1b2-0000-7000-8000-0000000000ff', %lld, %lld, 0, 0)",
             gen, tid);
    est_exec_fails(pg, sql, "LM012");
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_retry('fn-sql', '%s', %lld, %lld, 0, 0, 1, "
             "now(), 'x')",
             member, gen - 1, tid);
    est_exec_fails(pg, sql, "LM012");
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_dead_letter('fn-sql', '%s', %lld, %lld, 0, "
             "0, 1, 'x', NULL)",
             member, gen - 1, tid);
    est_exec_fails(pg, sql, "LM012");
    /* The owner at its generation may. */
    snprintf(sql, sizeof sql,
             "SELECT loom.topic_commit('fn-sql', '%s', %lld, %lld, 0, 0)",
             member, gen, tid);
    est_exec(pg, sql);
    PQfinish(pg);
    tpt_close(&e);
    rec_free(&r);
}

static void
member_that_lost_a_partition_cannot_commit_and_the_new_owner_redelivers(
    void **state)
{
    tpt_env e;
    rec a = {0}, b = {0};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_topics_consumer_config t = fast_topts();
    const char *topics[1] = {"fn.api"};
    loom_consumer *ca = NULL;
    int b_part[4] = {0, 0, 0, 0};
    size_t on_b = 0;
    loom_topics_consumer_stats st;

    (void) state;
    topic_create("fn.api", 4, -1, -1, -1, -1);
    tpt_open(&e, "");
    cfg.group = "fn-api";
    cfg.topics = topics;
    cfg.n_topics = 1;
    /* Manual commit: A's acknowledgements are written by one commit,
     * asked for after B joined and sent before A can hear of it. A long
     * poll: caught up, A sleeps until then. (Published first: under
     * tpt_run() the runtime's LISTEN connection never starts, so no
     * publish would wake A before its poll either.) */
    publish_seq(&e, "fn.api", 0, 40, 16);
    t.manual_commit = 1;
    t.poll_ms = 10000;
    a.hold = 1;
    assert_int_equal(
        loom_topics_consumer_open(e.t, &cfg, &t, rec_handle, NULL, &a, &ca),
        LOOM_OK);
    a.c = ca;
    parts_wait(&e, ca, 4);
    rec_wait(&e, &a, 40);
    assert_int_equal(stats_of(ca).in_flight, 40);
    for (size_t i = 0; i < a.n; i++)
        assert_int_equal(loom_consumer_ack(ca, a.m[i].held), LOOM_OK);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    assert_int_equal(est_ll("SELECT sum(committed) FROM loom.topic_lag "
                            "WHERE group_name = 'fn-api'"),
                     0);

    /* B joins (blocking: the rebalance has committed when it returns) and
     * A, not having seen it, commits. */
    rec_open(&e, "fn-api", "fn.api", NULL, &b);
    assert_int_equal(loom_topics_commit(ca), LOOM_OK);
    parts_wait(&e, ca, 2);
    parts_wait(&e, b.c, 2);
    sql_wait(&e, 0,
             "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag "
             "WHERE group_name = 'fn-api'");
    tpt_run(&e, NULL, NULL, QUIET_MS);

    /* Refused on the moved partitions; what stayed A's committed after
     * all (the lag is 0) without another loom_topics_commit(). */
    st = stats_of(ca);
    assert_true(st.fenced > 0);
    /* B got every message of its partitions, whose acknowledgement by A
     * was refused; nothing of A's. */
    for (size_t i = 0; i < b.n; i++)
        b_part[b.m[i].partition] = 1;
    for (size_t i = 0; i < a.n; i++) {
        size_t k = rec_count(&b, a.m[i].payload);
        if (b_part[a.m[i].partition]) {
            assert_int_equal(k, 1);
            on_b++;
        } else {
            assert_int_equal(k, 0);
        }
    }
    assert_int_equal(b.n, on_b);
    assert_true(on_b > 0 && on_b < 40);
    tpt_close(&e);
    rec_free(&a);
    rec_free(&b);
}

/* ---- members without partitions ---------------------------------------- */

/* Runs the loop until A and B of one group hold `n` partitions between
 * them, each as many as stats say. */
typedef struct pair_until {
    loom_consumer *a, *b;
    size_t n;
} pair_until;

static int
pair_done(void *arg)
{
    pair_until *w = arg;
    loom_topics_consumer_stats sa, sb;

    return loom_topics_consumer_stats_get(w->a, &sa) == LOOM_OK &&
           loom_topics_consumer_stats_get(w->b, &sb) == LOOM_OK &&
           sa.partitions + sb.partitions == w->n;
}

static void
consumer_without_a_partition_waits_then_takes_over(void **state)
{
    tpt_env e;
    rec a = {0}, b = {0}, p = {0};
    rec *owner, *other;
    pair_until w;
    PGconn *locker;
    int64_t t0;

    (void) state;
    topic_create("idle.one", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    /* More members than partitions: one of them joins with none. */
    rec_open(&e, "idle-g", "idle.one", NULL, &a);
    rec_open(&e, "idle-g", "idle.one", NULL, &b);
    /* A pattern that matches no topic yet: no partition either. */
    rec_open(&e, "idle-pat", "idle.later.#", NULL, &p);
    w.a = a.c;
    w.b = b.c;
    w.n = 1;
    assert_true(tpt_run(&e, pair_done, &w, WAIT_MS));
    tpt_run(&e, NULL, NULL, QUIET_MS);
    assert_int_equal(stats_of(a.c).partitions + stats_of(b.c).partitions, 1);
    assert_int_equal(stats_of(p.c).partitions, 0);
    owner = stats_of(a.c).partitions == 1 ? &a : &b;
    other = owner == &a ? &b : &a;
    publish_seq(&e, "idle.one", 0, 5, 0);
    rec_wait(&e, owner, 5);

    /* The owner closes while its heartbeat waits for the group's lock
     * (held 500 ms by another session): it still leaves at once, and the
     * other member takes over long before the 10 s session timeout. */
    locker = est_connect(NULL);
    assert_int_equal(PQsendQuery(locker, "SELECT 1 FROM loom.topic_groups "
                                         "WHERE name = 'idle-g' FOR UPDATE; "
                                         "SELECT pg_sleep(0.5)"),
                     1);
    tpt_run(&e, NULL, NULL, 3 * HEARTBEAT_MS);
    t0 = est_now_ms();
    loom_consumer_close(owner->c);
    parts_wait(&e, other->c, 1);
    assert_true(est_now_ms() - t0 < 5000);
    for (PGresult *r; (r = PQgetResult(locker)) != NULL;)
        PQclear(r);
    PQfinish(locker);
    publish_seq(&e, "idle.one", 5, 5, 0);
    rec_wait(&e, other, 5);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    rec_check_once(owner, 0, 5);
    rec_check_once(other, 5, 5);

    /* The pattern's first topic. */
    topic_create("idle.later.x", 1, -1, -1, -1, -1);
    parts_wait(&e, p.c, 1);
    publish_seq(&e, "idle.later.x", 0, 3, 0);
    rec_wait(&e, &p, 3);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    rec_check_once(&p, 0, 3);
    tpt_close(&e);
    rec_free(&a);
    rec_free(&b);
    rec_free(&p);
}

/* ---- 11. bad input
 * --------------------------------------------------------------- */

static void
publish_refuses_bad_messages_and_reports_per_call(void **state)
{
    tpt_env e;
    loom_message m[2], big;
    pcall good1 = {0, LOOM_OK, 0}, unknown = {0, LOOM_OK, 0},
          good2 = {0, LOOM_OK, 0}, beyond = {0, LOOM_OK, 0},
          never = {0, LOOM_OK, 0};
    pcall *ps[5] = {&good1, &unknown, &good2, &beyond, NULL};
    loom_header nullhdr[1] = {{"k", NULL}};
    char longname[LOOM_MAX_TOPIC_NAME + 2];
    char *payload;
    static const char *bad_names[] = {"",    ".a", "a.",  "a..b", "a b",
                                      "a/b", "ä",  "a.*", "#"};

    (void) state;
    topic_create("bad.ok", 2, -1, -1, -1, -1);
    /* Linger: the four calls below go out as one transaction. */
    tpt_open(&e, "?linger_ms=200");

    msg_init(&m[0], "bad.ok", "x", "first");
    assert_int_equal(loom_transport_publish(e.t, m, 1, on_published, &good1),
                     LOOM_OK);
    msg_init(&m[0], "bad.no-such-topic", "x", "lost");
    assert_int_equal(loom_transport_publish(e.t, m, 1, on_published, &unknown),
                     LOOM_OK);
    msg_init(&m[0], "bad.ok", "x", "second");
    assert_int_equal(loom_transport_publish(e.t, m, 1, on_published, &good2),
                     LOOM_OK);
    msg_init(&m[0], "bad.ok", NULL, "beyond");
    m[0].partition = 2; /* the topic has 0 and 1 */
    assert_int_equal(loom_transport_publish(e.t, m, 1, on_published, &beyond),
                     LOOM_OK);
    assert_true(tpt_run(&e, pcalls_done, ps, WAIT_MS));
    assert_int_equal(good1.rc, LOOM_OK);
    assert_int_equal(good1.n, 1);
    assert_int_equal(unknown.rc, LOOM_ENOTFOUND);
    assert_int_equal(unknown.n, 0);
    assert_int_equal(good2.rc, LOOM_OK);
    assert_int_equal(beyond.rc, LOOM_EINVAL);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(ps[i]->done, 1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages "
                            "WHERE topic_id = loom.topic_id('bad.ok')"),
                     2);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topics "
                            "WHERE name = 'bad.no-such-topic'"),
                     0);

    /* Refused at once; the callback never runs. */
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        msg_init(&m[0], bad_names[i], NULL, "x");
        if (loom_transport_publish(e.t, m, 1, on_published, &never) !=
            LOOM_EINVAL)
            fail_msg("topic name \"%s\" was not refused", bad_names[i]);
    }
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0'; /* 250 bytes */
    msg_init(&m[0], longname, NULL, "x");
    assert_int_equal(loom_transport_publish(e.t, m, 1, on_published, &never),
                     LOOM_EINVAL);
    msg_init(&m[0], "bad.ok", NULL, "x");
    m[0].partition = LOOM_MAX_PARTITIONS;
    assert_int_equal(loom_transport_publish(e.t, m, 1, on_published, &never),
                     LOOM_EINVAL);
    m[0].partition = -2;
    assert_int_equal(loom_transport_publish(e.t, m, 1, on_published, &never),
                     LOOM_EINVAL);
    /* One bad message refuses the whole call. */
    msg_init(&m[0], "bad.ok", NULL, "x");
    msg_init(&m[1], "bad..ok", NULL, "x");
    assert_int_equal(loom_transport_publish(e.t, m, 2, on_published, &never),
                     LOOM_EINVAL);
    msg_init(&m[0], NULL, NULL, "x");
    assert_int_equal(loom_transport_publish(e.t, m, 1, on_published, &never),
                     LOOM_EINVAL);
    msg_init(&m[0], "bad.ok", NULL, "x");
    m[0].payload = NULL;
    assert_int_equal(loom_transport_publish(e.t, m, 1, on_published, &never),
                     LOOM_EINVAL);
    msg_init(&m[0], "bad.ok", NULL, "x");
    m[0].key_len = 3; /* key NULL */
    assert_int_equal(loom_transport_publish(e.t, m, 1, on_published, &never),
                     LOOM_EINVAL);
    msg_init(&m[0], "bad.ok", NULL, "x");
    m[0].n_headers = 1; /* headers NULL */
    assert_int_equal(loom_transport_publish(e.t, m, 1, on_published, &never),
                     LOOM_EINVAL);
    m[0].headers = nullhdr;
    assert_int_equal(loom_transport_publish(e.t, m, 1, on_published, &never),
                     LOOM_EINVAL);
    assert_int_equal(loom_transport_publish(NULL, m, 1, on_published, &never),
                     LOOM_EINVAL);
    assert_int_equal(loom_transport_publish(e.t, NULL, 1, on_published, &never),
                     LOOM_EINVAL);
    assert_int_equal(loom_transport_publish(e.t, m, 0, on_published, &never),
                     LOOM_EINVAL);

    /* Too big: the payload alone, or key and payload together. */
    payload = calloc(1, LOOM_MAX_MESSAGE_BYTES + 1);
    assert_non_null(payload);
    msg_init(&big, "bad.ok", NULL, "x");
    big.payload = payload;
    big.payload_len = LOOM_MAX_MESSAGE_BYTES + 1;
    assert_int_equal(loom_transport_publish(e.t, &big, 1, on_published, &never),
                     LOOM_ETOOBIG);
    big.payload_len = LOOM_MAX_MESSAGE_BYTES / 2 + 1;
    big.key = payload;
    big.key_len = LOOM_MAX_MESSAGE_BYTES / 2;
    assert_int_equal(loom_transport_publish(e.t, &big, 1, on_published, &never),
                     LOOM_ETOOBIG);
    free(payload);

    tpt_run(&e, NULL, NULL, QUIET_MS);
    assert_int_equal(never.done, 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages "
                            "WHERE topic_id = loom.topic_id('bad.ok')"),
                     2);
    tpt_close(&e);
}

static void
consumer_open_refuses_bad_arguments(void **state)
{
    tpt_env e;
    rec r = {0};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_topics_consumer_config t = fast_topts(), bad;
    const char *topics[1] = {"bad.c"};
    static const char *bad_patterns[] = {"a..b", "a.*x", "a.**", "*a", ".a",
                                         "a.",   "a b",  "a.#.", "a/b"};
    char longname[LOOM_MAX_GROUP_NAME + 2];
    loom_transport *inproc = NULL;
    loom_consumer *c = NULL, *ic = NULL;
    loom_consumer *const sentinel = (loom_consumer *) (void *) &e;
    loom_topics_consumer_stats st;

    (void) state;
    topic_create("bad.c", 1, -1, -1, -1, -1);
    tpt_open(&e, "");
    cfg.group = "bad-c";
    cfg.topics = topics;
    cfg.n_topics = 1;

    for (size_t i = 0; i < sizeof bad_patterns / sizeof bad_patterns[0]; i++) {
        const char *p[2] = {"bad.c", bad_patterns[i]};
        loom_consumer_config k = cfg;
        k.topics = p;
        k.n_topics = 2;
        c = sentinel;
        if (loom_topics_consumer_open(e.t, &k, &t, rec_handle, NULL, &r, &c) !=
            LOOM_EINVAL)
            fail_msg("pattern \"%s\" was not refused", bad_patterns[i]);
        assert_null(c);
        if (loom_consumer_open(e.t, &k, rec_handle, &r, &c) != LOOM_EINVAL)
            fail_msg("pattern \"%s\" was not refused by "
                     "loom_consumer_open",
                     bad_patterns[i]);
    }
    /* NULL and missing arguments. */
    c = sentinel;
    assert_int_equal(
        loom_topics_consumer_open(NULL, &cfg, &t, rec_handle, NULL, &r, &c),
        LOOM_EINVAL);
    assert_null(c);
    assert_int_equal(
        loom_topics_consumer_open(e.t, NULL, &t, rec_handle, NULL, &r, &c),
        LOOM_EINVAL);
    assert_int_equal(
        loom_topics_consumer_open(e.t, &cfg, &t, rec_handle, NULL, &r, NULL),
        LOOM_EINVAL);
    assert_int_equal(
        loom_topics_consumer_open(e.t, &cfg, &t, NULL, NULL, &r, &c),
        LOOM_EINVAL);
    assert_int_equal(
        loom_topics_consumer_open(e.t, &cfg, &t, rec_handle, eo_handle, &r, &c),
        LOOM_EINVAL);
    {
        loom_consumer_config k = cfg;
        k.group = NULL;
        assert_int_equal(
            loom_topics_consumer_open(e.t, &k, &t, rec_handle, NULL, &r, &c),
            LOOM_EINVAL);
        k.group = "";
        assert_int_equal(
            loom_topics_consumer_open(e.t, &k, &t, rec_handle, NULL, &r, &c),
            LOOM_EINVAL);
        memset(longname, 'g', sizeof longname - 1);
        longname[sizeof longname - 1] = '\0';
        k.group = longname;
        assert_int_equal(
            loom_topics_consumer_open(e.t, &k, &t, rec_handle, NULL, &r, &c),
            LOOM_EINVAL);
        k.group = "\xff\xfe";
        assert_int_equal(
            loom_topics_consumer_open(e.t, &k, &t, rec_handle, NULL, &r, &c),
            LOOM_EINVAL);
        k = cfg;
        k.n_topics = 0;
        assert_int_equal(
            loom_topics_consumer_open(e.t, &k, &t, rec_handle, NULL, &r, &c),
            LOOM_EINVAL);
        k.n_topics = 1;
        k.topics = NULL;
        assert_int_equal(
            loom_topics_consumer_open(e.t, &k, &t, rec_handle, NULL, &r, &c),
            LOOM_EINVAL);
        k = cfg;
        k.max_deliveries = 1001;
        assert_int_equal(
            loom_topics_consumer_open(e.t, &k, &t, rec_handle, NULL, &r, &c),
            LOOM_EINVAL);
    }
    /* Bad topics options. */
    bad = t;
    bad.assignor = "sticky";
    assert_int_equal(
        loom_topics_consumer_open(e.t, &cfg, &bad, rec_handle, NULL, &r, &c),
        LOOM_EINVAL);
    bad = t;
    bad.session_timeout_ms = 99;
    assert_int_equal(
        loom_topics_consumer_open(e.t, &cfg, &bad, rec_handle, NULL, &r, &c),
        LOOM_EINVAL);
    bad = t;
    bad.start.start = (loom_start) 9;
    assert_int_equal(
        loom_topics_consumer_open(e.t, &cfg, &bad, rec_handle, NULL, &r, &c),
        LOOM_EINVAL);
    assert_null(c);
    /* Nothing joined the group. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_members "
                            "WHERE group_name = 'bad-c'"),
                     0);

    /* Not a topics transport, not a topics consumer. */
    assert_int_equal(loomt_inproc_register(), LOOM_OK);
    assert_int_equal(
        loom_transport_open(e.rt, "inproc://bad", &inproc, NULL, 0), LOOM_OK);
    c = sentinel;
    assert_int_equal(
        loom_topics_consumer_open(inproc, &cfg, &t, rec_handle, NULL, &r, &c),
        LOOM_EINVAL);
    assert_null(c);
    assert_int_equal(loom_topics_set_partitioner(inproc, NULL, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_consumer_open(inproc, &cfg, rec_handle, &r, &ic),
                     LOOM_OK);
    assert_int_equal(loom_topics_commit(ic), LOOM_EINVAL);
    assert_int_equal(loom_topics_consumer_stats_get(ic, &st), LOOM_EINVAL);
    loom_transport_close(inproc);
    assert_int_equal(loom_topics_commit(NULL), LOOM_EINVAL);
    assert_int_equal(loom_topics_consumer_stats_get(NULL, &st), LOOM_EINVAL);
    assert_int_equal(loom_topics_set_partitioner(NULL, NULL, NULL),
                     LOOM_EINVAL);

    /* A good one still opens, and its stats need somewhere to go. */
    rec_open(&e, "bad-c", "bad.c", NULL, &r);
    assert_int_equal(loom_topics_consumer_stats_get(r.c, NULL), LOOM_EINVAL);
    assert_int_equal(loom_consumer_ack(NULL, NULL), LOOM_EINVAL);
    assert_int_equal(loom_consumer_ack(r.c, NULL), LOOM_EINVAL);
    assert_int_equal(loom_consumer_fail(r.c, NULL, "x"), LOOM_EINVAL);
    tpt_close(&e);
    rec_free(&r);
}

/* ---- 12. Kafka's partitions for keys
 * ------------------------------------------- */

/* Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), written
 * here from its description: seed 0x9747b28c ^ length, four little-endian
 * bytes at a time mixed with m = 0x5bd1e995 and r = 24, the 1-3 byte tail
 * xored in (bytes unsigned), then h ^= h >>> 13; h *= m; h ^= h >>> 15. All
 * arithmetic is 32-bit wrap-around, as Java's int. */
static int32_t
kafka_murmur2(const unsigned char *d, size_t len)
{
    const uint32_t m = 0x5bd1e995u;
    uint32_t h = 0x9747b28cu ^ (uint32_t) len;
    size_t body = len & ~(size_t) 3, tail = len & 3;

    for (size_t i = 0; i < body; i += 4) {
        uint32_t k = (uint32_t) d[i] | (uint32_t) d[i + 1] << 8 |
                     (uint32_t) d[i + 2] << 16 | (uint32_t) d[i + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    if (tail == 3)
        h ^= (uint32_t) d[body + 2] << 16;
    if (tail >= 2)
        h ^= (uint32_t) d[body + 1] << 8;
    if (tail >= 1) {
        h ^= (uint32_t) d[body];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t) h;
}

typedef struct kkey {
    const char *bytes;
    size_t len;
} kkey;

static void
keyed_messages_land_in_kafkas_partitions(void **state)
{
    /* Kafka's own reference values (UtilsTest.testMurmur2) check the
     * hash above before it judges anything. */
    static const struct {
        const char *key;
        int32_t hash;
    } ref[] = {{"21", -973932308},
               {"foobar", -790332482},
               {"a-little-bit-long-string", -985981536},
               {"a-little-bit-longer-string", -1486304829},
               {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
               {"abc", 479470107},
               {"", 275646681}};
#define K(s)                                                                   \
    {                                                                          \
        s, sizeof s - 1                                                        \
    }
    static const kkey keys[] = {
        K(""),
        K("a"),
        K("ab"),
        K("abc"),
        K("abcd"),
        K("abcde"),
        K("21"),
        K("foobar"),
        K("order-42"),
        K("customer:1001"),
        K("a-little-bit-long-string"),
        K("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
        K("\xc5\xbc\xc3\xb3\xc5\x82w"), /* "żółw" */
        K("\xff"),                      /* high bytes in the tail */
        K("\x80\x81"),
        K("\xde\xad\xbe\xef\xfe"),
        K("\xff\xff\xff\xff\xff\xff\xff"),
        K("\x00"), /* a zero byte */
        K("a\x00"
          "b"),
        K("\x7f\x80\xfe\xff"), /* high bytes in the body */
    };
#undef K
    enum { NK = sizeof keys / sizeof keys[0] };
    tpt_env e;
    loom_message msgs[NK];
    char pay[NK][8];
    long long tid;

    (void) state;
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++)
        assert_int_equal(kafka_murmur2((const unsigned char *) ref[i].key,
                                       strlen(ref[i].key)),
                         ref[i].hash);
    topic_create("mm.t", 12, -1, -1, -1, -1);
    tpt_open(&e, "");
    for (size_t i = 0; i < NK; i++) {
        snprintf(pay[i], sizeof pay[i], "%zu", i);
        msg_init(&msgs[i], "mm.t", NULL, pay[i]);
        msgs[i].key = keys[i].bytes;
        msgs[i].key_len = keys[i].len;
    }
    assert_int_equal(publish_wait(&e, msgs, NK), LOOM_OK);
    tid = topic_id("mm.t");
    for (size_t i = 0; i < NK; i++) {
        int32_t h =
            kafka_murmur2((const unsigned char *) keys[i].bytes, keys[i].len);
        long long want = (long long) (((uint32_t) h & 0x7fffffffu) % 12u);
        long long got = est_ll("SELECT partition FROM loom.topic_messages "
                               "WHERE topic_id = %lld "
                               "AND payload = convert_to('%zu', 'UTF8')",
                               tid, i);
        if (got != want)
            fail_msg("key %zu (%zu bytes): partition %lld, Kafka's is %lld", i,
                     keys[i].len, got, want);
        /* The key is stored as given. */
        assert_int_equal(est_ll("SELECT octet_length(key) FROM "
                                "loom.topic_messages WHERE topic_id = %lld "
                                "AND payload = convert_to('%zu', 'UTF8')",
                                tid, i),
                         (long long) keys[i].len);
    }
    tpt_close(&e);
}

/* ---- 13. retention
 * ---------------------------------------------------------------- */

static long long
retention_to_completion(void)
{
    long long total = 0, n;

    while ((n = est_ll("SELECT loom.topic_retention_step(10000)")) > 0)
        total += n;
    return total;
}

/* Payloads "m000000000".. of exactly 10 bytes, no key: 10 bytes each. */
static void
publish_ten_byte(tpt_env *e, const char *topic, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        loom_message m;
        char p[16];
        snprintf(p, sizeof p, "m%09d", i);
        msg_init(&m, topic, NULL, p);
        assert_int_equal(publish_wait(e, &m, 1), LOOM_OK);
    }
}

static void
retention_by_size_removes_oldest_and_lagging_group_restarts_at_start(
    void **state)
{
    tpt_env e;
    rec first = {0}, later = {0};
    long long tid;

    (void) state;
    topic_create("rt.size", 1, -1, 100, -1, -1); /* 100 bytes */
    tpt_open(&e, "?retention_ms=0");
    tid = topic_id("rt.size");
    publish_ten_byte(&e, "rt.size", 0, 3);
    rec_open(&e, "rt-g", "rt.size", NULL, &first);
    rec_wait(&e, &first, 3);
    sql_wait(&e, 3,
             "SELECT committed FROM loom.topic_lag WHERE group_name = 'rt-g'");
    loom_consumer_close(first.c);

    publish_ten_byte(&e, "rt.size", 3, 17); /* 200 bytes in all */
    assert_true(retention_to_completion() >= 10);
    /* The newest 100 bytes stay: offsets 10..19. */
    assert_int_equal(est_ll("SELECT start_offset FROM loom.topic_partitions "
                            "WHERE topic_id = %lld",
                            tid),
                     10);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages "
                            "WHERE topic_id = %lld",
                            tid),
                     10);
    assert_int_equal(est_ll("SELECT min(\"offset\") FROM loom.topic_messages "
                            "WHERE topic_id = %lld",
                            tid),
                     10);
    assert_int_equal(est_ll("SELECT lag FROM loom.topic_lag "
                            "WHERE group_name = 'rt-g'"),
                     10);

    /* The group committed 3, now below the start: it goes on at 10. */
    rec_open(&e, "rt-g", "rt.size", NULL, &later);
    rec_wait(&e, &later, 10);
    tpt_run(&e, NULL, NULL, QUIET_MS);
    assert_int_equal(later.n, 10);
    for (size_t i = 0; i < later.n; i++) {
        char p[16];
        snprintf(p, sizeof p, "m%09zu", i + 10);
        assert_string_equal(later.m[i].payload, p);
        assert_int_equal(later.m[i].offset, (int64_t) (i + 10));
    }
    sql_wait(&e, 20,
             "SELECT committed FROM loom.topic_lag WHERE group_name = 'rt-g'");
    tpt_close(&e);
    rec_free(&first);
    rec_free(&later);
}

static void
retention_by_age_runs_on_the_transports_timer(void **state)
{
    tpt_env e;
    long long tid;

    (void) state;
    topic_create("rt.age", 2, 300, -1, -1, -1);
    tpt_open(&e, "?retention_ms=100");
    tid = topic_id("rt.age");
    publish_seq(&e, "rt.age", 0, 20, 4);
    /* Nothing older than 300 ms is kept; the transport's own timer
     * removes them. */
    sql_wait(&e, 0,
             "SELECT count(*) FROM loom.topic_messages WHERE topic_id = %lld",
             tid);
    assert_int_equal(est_ll("SELECT sum(start_offset) FROM "
                            "loom.topic_partitions WHERE topic_id = %lld",
                            tid),
                     20);
    tpt_close(&e);
}

static void
log_all(void *arg, loom_log_level level, const char *line)
{
    (void) arg;
    fprintf(stderr, "%lld %s: %s\n", (long long) est_now_ms(),
            loom_log_level_name(level), line);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, est_setup, est_teardown)
        T(failed_message_is_redelivered_with_backoff_then_dead_lettered),
        T(redriven_dead_letter_is_delivered_again_counting_from_one),
        T(delayed_message_waits_while_later_ones_in_its_partition_flow),
        T(at_most_once_drops_failures_and_still_delivers_delayed_messages),
        T(undecodable_headers_are_dropped_but_the_message_is_not),
        T(duplicate_message_id_within_window_is_stored_and_delivered_once),
        T(without_dedup_window_the_same_id_is_stored_each_time),
        T(pattern_subscriptions_match_words_and_pick_up_new_topics),
        T(independent_groups_each_receive_every_message),
        T(committed_offsets_survive_a_restart_of_the_group),
        T(acknowledged_messages_are_not_redelivered_after_close),
        T(manual_commit_writes_offsets_only_when_asked),
        T(new_groups_start_where_their_start_position_says),
        T(tx_handler_effects_apply_once_when_a_statement_fails),
        T(tx_handler_effects_apply_once_when_the_handler_fails),
        T(stale_generation_cannot_commit_in_sql),
        T(member_that_lost_a_partition_cannot_commit_and_the_new_owner_redelivers),
        T(consumer_without_a_partition_waits_then_takes_over),
        T(publish_refuses_bad_messages_and_reports_per_call),
        T(consumer_open_refuses_bad_arguments),
        T(keyed_messages_land_in_kafkas_partitions),
        T(retention_by_size_removes_oldest_and_lagging_group_restarts_at_start),
        T(retention_by_age_runs_on_the_transports_timer),
#undef T
    };
    if (getenv("TPT_LOG") != NULL)
        loom_log_set(log_all, NULL);
    if (getenv("TPT_FILTER") != NULL)
        cmocka_set_test_filter(getenv("TPT_FILTER"));
    return cmocka_run_group_tests_name("outbox.topics_delivery", tests,
                                       est_group_setup, est_group_teardown);
}
