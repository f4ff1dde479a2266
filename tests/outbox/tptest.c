/* Helpers for the topic-stream tests (tptest.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    char url[256], err[512] = "";
    loom_err rc;

    memset(e, 0, sizeof *e);
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    cfg.poll_ms = 200;
    assert_int_equal(loom_runtime_open(&e->rt, &cfg), LOOM_OK);
    snprintf(url, sizeof url, "topics://%s", options);
    rc = loom_transport_open(e->rt, url, &e->t, err, sizeof err);
    if (rc != LOOM_OK)
        fail_msg("loom_transport_open(%s): %s: %s", url, loom_strerror(rc),
                 err);
    uv_timer_init(loom_runtime_loop(e->rt), &e->tick);
    e->tick.data = e;
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
