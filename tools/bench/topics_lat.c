/*
 * The latency part of the topics case: end-to-end, from the publish call
 * to the consumer's handler, under a steady rate.
 *
 * A consumer group of TB_MEMBERS members (topics_group.c) reads
 * TB_LAT_TOPIC; the main thread runs a producer on its own runtime whose
 * 1 ms timer publishes every message that is due (message k at start +
 * k / rate, whatever earlier publishes cost), one message per publish
 * call, with the time of the call in its payload. The handler takes now
 * minus that time (CLOCK_MONOTONIC, one process). The first LT_WARMUP_S
 * seconds of messages are not counted: members join and the group
 * settles then.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "bench_topics.h"
#include "loom/alloc.h"
#include "loom/runtime.h"
#include "loom/transport.h"

#define LT_WARMUP_S 2.0
#define LT_TICK_MS  1
#define LT_DRAIN_NS INT64_C(10000000000) /* stragglers after the last */
#define LT_GROUP    "bench-latency"

typedef struct lt_run lt_run;

/* The argument of one message's publish callback. */
typedef struct lt_pub {
    lt_run *r;
    size_t k;
} lt_pub;

struct lt_run {
    const tb_spec *spec;
    size_t n_warm, n_total;
    int64_t period_ns, start_ns;
    int64_t *sent, *acked; /* main thread */
    atomic_llong *seen;    /* delivery times, written by the members */
    atomic_size_t n_seen;
    lt_pub *pubs;
    size_t next, n_acked;
    int failed;
    int64_t behind_ns; /* the latest a measured publish started */
    loom_runtime *rt;
    loom_transport *t;
    uv_timer_t tick;
};

static void
lt_on_msg(void *arg, const void *payload, size_t len, int64_t now)
{
    lt_run *r = arg;
    long long none = 0;
    uint64_t i;
    int64_t stamp;

    if (tb_parse(payload, len, &i, &stamp) != 0 || i >= r->n_total)
        return;
    if (atomic_compare_exchange_strong(&r->seen[i], &none, (long long) now))
        atomic_fetch_add(&r->n_seen, 1);
}

static void
lt_on_published(loom_err rc, size_t n, void *arg)
{
    lt_pub *p = arg;
    lt_run *r = p->r;

    (void) n;
    if (rc != LOOM_OK) {
        fprintf(stderr, "%s: topics latency: publish callback: %s\n",
                BENCH_PROGRAM, loom_err_name(rc));
        r->failed = 1;
        loom_runtime_stop(r->rt);
        return;
    }
    r->acked[p->k] = bench_now_ns();
    if (++r->n_acked == r->n_total)
        loom_runtime_stop(r->rt);
}

static int
lt_publish(lt_run *r, size_t k)
{
    char payload[TB_PAYLOAD_BYTES], key[TB_KEY_MAX];
    loom_message m;
    loom_err rc;

    memset(&m, 0, sizeof m);
    m.topic = TB_LAT_TOPIC;
    m.key = key;
    m.key_len = tb_key(key, k);
    m.payload = payload;
    m.payload_len = sizeof payload;
    m.partition = LOOM_PARTITION_ANY;
    r->pubs[k].r = r;
    r->pubs[k].k = k;
    r->sent[k] = bench_now_ns();
    tb_payload(payload, k, r->sent[k]);
    rc = loom_transport_publish(r->t, &m, 1, lt_on_published, &r->pubs[k]);
    if (rc != LOOM_OK) {
        fprintf(stderr, "%s: topics latency: loom_transport_publish: %s\n",
                BENCH_PROGRAM, loom_err_name(rc));
        r->failed = 1;
        loom_runtime_stop(r->rt);
        return -1;
    }
    return 0;
}

/* Publishes every message that is due by now. */
static void
lt_on_tick(uv_timer_t *t)
{
    lt_run *r = t->data;
    int64_t now = bench_now_ns();

    if (r->start_ns == 0)
        r->start_ns = now;
    if (atomic_load(&bench_stopped)) {
        loom_runtime_stop(r->rt);
        return;
    }
    while (r->next < r->n_total &&
           r->start_ns + (int64_t) r->next * r->period_ns <= now) {
        int64_t due = r->start_ns + (int64_t) r->next * r->period_ns;
        if (r->next >= r->n_warm && now - due > r->behind_ns)
            r->behind_ns = now - due;
        if (lt_publish(r, r->next) != 0)
            return;
        r->next++;
    }
    if (r->next == r->n_total)
        uv_timer_stop(t);
}

static int
lt_produce(lt_run *r)
{
    loom_runtime_config rc = LOOM_RUNTIME_CONFIG_INIT;
    char *url = tb_loom_url(r->spec->env), err[512] = "";
    loom_err e = LOOM_ENOMEM;

    rc.conninfo = r->spec->env->conninfo;
    rc.application_name = "loom-bench-latency";
    if (url != NULL && (e = loom_runtime_open(&r->rt, &rc)) == LOOM_OK)
        e = loom_transport_open(r->rt, url, &r->t, err, sizeof err);
    loom_free(url);
    if (e == LOOM_OK) {
        uv_timer_init(loom_runtime_loop(r->rt), &r->tick);
        r->tick.data = r;
        uv_timer_start(&r->tick, lt_on_tick, 0, LT_TICK_MS);
        e = loom_runtime_run(r->rt);
        uv_close((uv_handle_t *) &r->tick, NULL);
        uv_run(loom_runtime_loop(r->rt), UV_RUN_NOWAIT);
    }
    if (e != LOOM_OK)
        fprintf(stderr, "%s: topics latency producer: %s%s%s\n", BENCH_PROGRAM,
                loom_err_name(e), err[0] ? ": " : "", err);
    loom_transport_close(r->t);
    loom_runtime_close(r->rt);
    return e == LOOM_OK && !r->failed && r->n_acked == r->n_total ? 0 : -1;
}

/* Waits for the stragglers; 0 when every message arrived. */
static int
lt_drain(lt_run *r, tb_group *g)
{
    int64_t until = bench_now_ns() + LT_DRAIN_NS;
    struct timespec ms = {0, 1000000};

    while (atomic_load(&r->n_seen) < r->n_total && bench_now_ns() < until &&
           !atomic_load(&g->failed) && !atomic_load(&bench_stopped))
        nanosleep(&ms, NULL);
    if (atomic_load(&r->n_seen) == r->n_total)
        return 0;
    fprintf(stderr,
            "%s: topics latency: %zu of %zu messages delivered "
            "within 10 s of the last publish\n",
            BENCH_PROGRAM, atomic_load(&r->n_seen), r->n_total);
    return -1;
}

static int
lt_collect(lt_run *r, tb_latency *out)
{
    size_t first = r->n_warm, last = r->n_total - 1;
    int64_t worst = -1;

    for (size_t k = first; k <= last; k++) {
        int64_t lat = (int64_t) atomic_load(&r->seen[k]) - r->sent[k];
        if (bench_samples_push(&out->lat, lat) != 0 ||
            bench_samples_push(&out->publish, r->acked[k] - r->sent[k]) != 0)
            return -1;
        if (lat > worst) {
            worst = lat;
            out->slowest_at_s = (double) (r->sent[k] - r->sent[first]) / 1e9;
        }
    }
    out->messages = last - first + 1;
    out->behind_ms = (double) r->behind_ns / 1e6;
    out->rate = r->sent[last] > r->sent[first]
                    ? (double) (out->messages - 1) * 1e9 /
                          (double) (r->sent[last] - r->sent[first])
                    : 0.0;
    return 0;
}

static int
lt_alloc(lt_run *r, const tb_spec *spec)
{
    memset(r, 0, sizeof *r);
    r->spec = spec;
    r->period_ns = (int64_t) (1e9 / spec->rate);
    r->n_warm = (size_t) (spec->rate * LT_WARMUP_S);
    r->n_total = r->n_warm + (size_t) (spec->rate * spec->seconds);
    atomic_init(&r->n_seen, 0);
    r->sent = calloc(r->n_total, sizeof *r->sent);
    r->acked = calloc(r->n_total, sizeof *r->acked);
    r->seen = calloc(r->n_total, sizeof *r->seen);
    r->pubs = calloc(r->n_total, sizeof *r->pubs);
    return r->sent && r->acked && r->seen && r->pubs && r->n_total > r->n_warm
               ? 0
               : -1;
}

static void
lt_free(lt_run *r)
{
    free(r->sent);
    free(r->acked);
    free((void *) r->seen);
    free(r->pubs);
}

int
tb_loom_latency(const tb_spec *spec, tb_latency *out)
{
    tb_group g;
    lt_run r;
    int rc = -1;

    memset(out, 0, sizeof *out);
    memset(&g, 0, sizeof g);
    if (lt_alloc(&r, spec) != 0) {
        lt_free(&r);
        return -1;
    }
    g.env = spec->env;
    g.topic = TB_LAT_TOPIC;
    g.group = LT_GROUP;
    g.members = TB_MEMBERS;
    g.on_msg = lt_on_msg;
    g.arg = &r;
    if (tb_group_start(&g) == 0) {
        rc = lt_produce(&r);
        if (rc == 0)
            rc = lt_drain(&r, &g);
        tb_group_stop(&g);
        if (atomic_load(&g.failed))
            rc = -1;
    }
    if (rc == 0)
        rc = lt_collect(&r, out);
    lt_free(&r);
    return rc;
}
