/*
 * A consumer group for the topics case: each member on its own thread
 * with its own loom_runtime, topics transport and consumer, as members
 * would be in separate processes. A member connects and joins before the
 * group is released; then every member's loop runs until someone sets
 * g->stop. Every delivered message goes to g->on_msg and is acknowledged
 * at once, so offsets commit after each batch (the transport's default).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "bench_topics.h"
#include "loom/alloc.h"
#include "loom/runtime.h"
#include "loom/transport.h"

#define GR_CHECK_MS 5 /* how often a member looks at g->stop */

struct tb_member {
    tb_group *g;
    int index;
    pthread_t thread;
    int started;
    loom_runtime *rt;
    loom_transport *t;
    loom_consumer *c;
    uv_timer_t check;
    int state; /* 0 opening, 1 joined, -1 failed; under g->lock */
};

static void
gr_on_batch(loom_consumer *c, const loom_message *const *msgs, size_t n,
            void *arg)
{
    tb_member *m = arg;
    int64_t now = bench_now_ns();

    for (size_t i = 0; i < n; i++) {
        loom_err rc;
        m->g->on_msg(m->g->arg, msgs[i]->payload, msgs[i]->payload_len, now);
        if ((rc = loom_consumer_ack(c, msgs[i])) != LOOM_OK) {
            fprintf(stderr, "%s: topics member %d: loom_consumer_ack: %s\n",
                    BENCH_PROGRAM, m->index, loom_err_name(rc));
            atomic_store(&m->g->failed, 1);
        }
    }
    atomic_fetch_add(&m->g->batches, 1);
}

static void
gr_on_check(uv_timer_t *t)
{
    tb_member *m = t->data;

    if (atomic_load(&m->g->stop) || atomic_load(&m->g->failed) ||
        atomic_load(&bench_stopped))
        loom_runtime_stop(m->rt);
}

/* Opens the member's runtime, transport and consumer (joining). */
static int
gr_open(tb_member *m)
{
    loom_runtime_config rc = LOOM_RUNTIME_CONFIG_INIT;
    loom_consumer_config cc = LOOM_CONSUMER_CONFIG_INIT;
    const char *topics[1] = {m->g->topic};
    char *url = tb_loom_url(m->g->env), err[512] = "";
    loom_err e;

    rc.conninfo = m->g->env->conninfo;
    rc.application_name = "loom-bench-member";
    cc.group = m->g->group;
    cc.topics = topics;
    cc.n_topics = 1;
    cc.batch = m->g->batch;
    /* The transport fetches at most max_in_flight (default 1000) less
     * what the handler holds: raise it with a larger batch. */
    cc.max_in_flight = m->g->batch > 1000 ? m->g->batch : 0;
    if (url == NULL)
        return -1;
    if ((e = loom_runtime_open(&m->rt, &rc)) == LOOM_OK &&
        (e = loom_transport_open(m->rt, url, &m->t, err, sizeof err)) ==
            LOOM_OK)
        e = loom_consumer_open(m->t, &cc, gr_on_batch, m, &m->c);
    loom_free(url);
    if (e != LOOM_OK) {
        fprintf(stderr, "%s: topics member %d: %s%s%s\n", BENCH_PROGRAM,
                m->index, loom_err_name(e), err[0] ? ": " : "", err);
        return -1;
    }
    uv_timer_init(loom_runtime_loop(m->rt), &m->check);
    m->check.data = m;
    uv_timer_start(&m->check, gr_on_check, GR_CHECK_MS, GR_CHECK_MS);
    return 0;
}

static void
gr_close(tb_member *m)
{
    if (m->rt != NULL && m->check.data != NULL) {
        uv_close((uv_handle_t *) &m->check, NULL);
        uv_run(loom_runtime_loop(m->rt), UV_RUN_NOWAIT);
    }
    loom_consumer_close(m->c);
    loom_transport_close(m->t);
    loom_runtime_close(m->rt);
}

static void *
gr_main(void *arg)
{
    tb_member *m = arg;
    tb_group *g = m->g;
    int ok = gr_open(m) == 0;
    loom_err rc;

    pthread_mutex_lock(&g->lock);
    m->state = ok ? 1 : -1;
    pthread_cond_broadcast(&g->cond);
    while (ok && !g->go)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    if (ok && (rc = loom_runtime_run(m->rt)) != LOOM_OK) {
        fprintf(stderr, "%s: topics member %d: loom_runtime_run: %s\n",
                BENCH_PROGRAM, m->index, loom_err_name(rc));
        atomic_store(&g->failed, 1);
    }
    gr_close(m);
    return NULL;
}

/* Waits until every started member has joined or failed; -1 if any
 * failed. */
static int
gr_wait_joined(tb_group *g, int started)
{
    int rc = 0;

    pthread_mutex_lock(&g->lock);
    for (int i = 0; i < started; i++) {
        while (g->m[i].state == 0)
            pthread_cond_wait(&g->cond, &g->lock);
        rc |= g->m[i].state < 0 ? -1 : 0;
    }
    /* Released either way: failed members have already left gr_main's
     * wait, the others must run into the stop below. */
    g->go = 1;
    g->go_ns = bench_now_ns();
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    return rc;
}

int
tb_group_start(tb_group *g)
{
    int started = 0;

    atomic_init(&g->stop, 0);
    atomic_init(&g->failed, 0);
    atomic_init(&g->batches, 0);
    g->go = 0;
    g->m = calloc((size_t) g->members, sizeof *g->m);
    if (g->m == NULL || pthread_mutex_init(&g->lock, NULL) != 0 ||
        pthread_cond_init(&g->cond, NULL) != 0) {
        free(g->m);
        g->m = NULL;
        return -1;
    }
    for (; started < g->members; started++) {
        tb_member *m = &g->m[started];
        m->g = g;
        m->index = started;
        if (pthread_create(&m->thread, NULL, gr_main, m) != 0)
            break;
        m->started = 1;
    }
    if (gr_wait_joined(g, started) != 0 || started < g->members) {
        tb_group_stop(g);
        return -1;
    }
    return 0;
}

void
tb_group_stop(tb_group *g)
{
    if (g->m == NULL)
        return;
    atomic_store(&g->stop, 1);
    for (int i = 0; i < g->members; i++)
        if (g->m[i].started)
            pthread_join(g->m[i].thread, NULL);
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
    free(g->m);
    g->m = NULL;
}
