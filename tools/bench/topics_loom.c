/*
 * The Eventloom side of the topics case: the "topics://" transport with
 * its defaults (acks=all, so each publish transaction commits with
 * synchronous_commit on; batches of up to 1000; offsets committed after
 * each fully acknowledged batch).
 *
 * Produce: one runtime and transport on the main thread; publish calls of
 * TB_BATCH messages, the next one made from the previous one's callback,
 * so one transaction is in flight at a time, as on the PgQ side. Timed
 * from the first call to the last callback.
 *
 * Consume: a new group of `members` members (topics_group.c) from the
 * earliest offset, acknowledging every message; timed from the release
 * of the joined members until the group's committed offsets cover every
 * message, the counterpart of PgQ's last finish_batch COMMIT.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "bench_topics.h"
#include "buf.h"
#include "loom/alloc.h"
#include "loom/runtime.h"
#include "loom/transport.h"

#define LM_WAIT_NS   INT64_C(2000000)     /* consume: poll period, 2 ms */
#define LM_STALL_NS  INT64_C(60000000000) /* nothing new for 60 s: fail */
#define LM_COMMIT_NS INT64_C(10000000000) /* offsets after the last: 10 s */

/* ------------------------------------------------------------------ */
/* URL and topic                                                       */

/* Percent-encodes everything but RFC 3986's unreserved characters. */
static void
lm_put_encoded(loom__buf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char) *s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
            c == '~')
            loom__buf_putc(b, (char) c);
        else
            loom__buf_printf(b, "%%%02X", c);
    }
}

/* libpq takes any connection keyword in a URI's query string, so the
 * scratch database's settings (a socket directory included) become
 * "topics://?host=...&port=...&dbname=...". */
char *
tb_loom_url(const bench_env *env)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(env->conninfo, &err);
    loom__buf b = LOOM__BUF_INIT;
    char sep = '?';

    if (opts == NULL) {
        fprintf(stderr, "%s: topics: bad connection string: %s", BENCH_PROGRAM,
                err ? err : "out of memory\n");
        PQfreemem(err);
        return NULL;
    }
    loom__buf_puts(&b, "topics://");
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        loom__buf_printf(&b, "%c%s=", sep, o->keyword);
        lm_put_encoded(&b, o->val);
        sep = '&';
    }
    PQconninfoFree(opts);
    /* The transport's documented defaults, spelled out: durable
     * acknowledgements and batches of up to 1000 messages. */
    loom__buf_printf(&b, "%cacks=all&batch=%d", sep, TB_BATCH);
    return loom__buf_take(&b);
}

int
tb_loom_topic(const bench_env *env, const char *name, int dedup)
{
    /* NULL: the default (a 5 minute window); 0: no deduplication. */
    const char *params[3] = {name, NULL, dedup ? NULL : "0"};
    char parts[16];
    PGresult *r;
    int ok;

    snprintf(parts, sizeof parts, "%d", TB_PARTITIONS);
    params[1] = parts;
    r = PQexecParams(env->scratch,
                     "SELECT loom.topic_create($1, $2::integer, NULL, NULL, "
                     "$3::bigint, NULL)",
                     3, NULL, params, NULL, NULL, 0);
    ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "%s: topics: creating topic %s: %s", BENCH_PROGRAM,
                name, PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Produce                                                             */

typedef struct lm_producer {
    const tb_spec *spec;
    const char *topic;
    loom_runtime *rt;
    loom_transport *t;
    uv_timer_t kick;
    size_t next;  /* the first message not yet handed to publish */
    size_t acked; /* messages whose publish called back with LOOM_OK */
    size_t calls;
    int failed;
    int64_t t0, t1;
    loom_message msgs[TB_BATCH];
    char payloads[TB_BATCH][TB_PAYLOAD_BYTES];
    char keys[TB_BATCH][TB_KEY_MAX];
} lm_producer;

static void lm_publish_next(lm_producer *p);

static void
lm_on_published(loom_err rc, size_t n, void *arg)
{
    lm_producer *p = arg;

    if (rc != LOOM_OK) {
        fprintf(stderr, "%s: topics loom: publish callback: %s (%zu taken)\n",
                BENCH_PROGRAM, loom_err_name(rc), n);
        p->failed = 1;
        loom_runtime_stop(p->rt);
        return;
    }
    p->acked += n;
    if (p->acked >= p->spec->messages) {
        p->t1 = bench_now_ns();
        loom_runtime_stop(p->rt);
        return;
    }
    lm_publish_next(p);
}

/* Hands the next TB_BATCH messages to the transport, which copies them
 * before returning, so the buffers are reused for the next call. */
static void
lm_publish_next(lm_producer *p)
{
    size_t n = p->spec->messages - p->next;
    loom_err rc;

    if (n == 0 || atomic_load(&bench_stopped)) {
        loom_runtime_stop(p->rt);
        return;
    }
    if (n > TB_BATCH)
        n = TB_BATCH;
    for (size_t k = 0; k < n; k++) {
        loom_message *m = &p->msgs[k];
        uint64_t i = p->next + k;
        memset(m, 0, sizeof *m);
        tb_payload(p->payloads[k], i, 0);
        m->topic = p->topic;
        m->key = p->keys[k];
        m->key_len = tb_key(p->keys[k], i);
        m->payload = p->payloads[k];
        m->payload_len = TB_PAYLOAD_BYTES;
        m->partition = LOOM_PARTITION_ANY;
    }
    rc = loom_transport_publish(p->t, p->msgs, n, lm_on_published, p);
    if (rc != LOOM_OK) {
        fprintf(stderr, "%s: topics loom: loom_transport_publish: %s\n",
                BENCH_PROGRAM, loom_err_name(rc));
        p->failed = 1;
        loom_runtime_stop(p->rt);
        return;
    }
    p->next += n;
    p->calls++;
}

static void
lm_on_kick(uv_timer_t *t)
{
    lm_producer *p = t->data;

    p->t0 = bench_now_ns();
    lm_publish_next(p);
}

/* Opens a runtime and a topics transport on the calling thread; the
 * error is printed. */
static int
lm_open(const bench_env *env, const char *app, loom_runtime **rt,
        loom_transport **t)
{
    loom_runtime_config rc = LOOM_RUNTIME_CONFIG_INIT;
    char *url = tb_loom_url(env), err[512] = "";
    loom_err e = LOOM_ENOMEM;

    rc.conninfo = env->conninfo;
    rc.application_name = app;
    if (url != NULL && (e = loom_runtime_open(rt, &rc)) == LOOM_OK)
        e = loom_transport_open(*rt, url, t, err, sizeof err);
    loom_free(url);
    if (e != LOOM_OK)
        fprintf(stderr, "%s: topics loom: opening the transport: %s%s%s\n",
                BENCH_PROGRAM, loom_err_name(e), err[0] ? ": " : "", err);
    return e == LOOM_OK ? 0 : -1;
}

int
tb_loom_produce(const tb_spec *spec, const char *topic, tb_phase *out)
{
    lm_producer *p = calloc(1, sizeof *p);
    loom_err e = LOOM_OK;
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (p == NULL)
        return -1;
    p->spec = spec;
    p->topic = topic;
    if (lm_open(spec->env, "loom-bench-producer", &p->rt, &p->t) == 0) {
        uv_timer_init(loom_runtime_loop(p->rt), &p->kick);
        p->kick.data = p;
        uv_timer_start(&p->kick, lm_on_kick, 0, 0);
        e = loom_runtime_run(p->rt);
        uv_close((uv_handle_t *) &p->kick, NULL);
        uv_run(loom_runtime_loop(p->rt), UV_RUN_NOWAIT);
        if (e != LOOM_OK)
            fprintf(stderr, "%s: topics loom: loom_runtime_run: %s\n",
                    BENCH_PROGRAM, loom_err_name(e));
        rc = e == LOOM_OK && !p->failed && p->acked == spec->messages ? 0 : -1;
    }
    out->messages = p->acked;
    out->batches = p->calls;
    out->seconds = p->t1 > p->t0 ? (double) (p->t1 - p->t0) / 1e9 : 0.0;
    loom_transport_close(p->t);
    loom_runtime_close(p->rt);
    free(p);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Consume                                                             */

static void
lm_on_msg(void *arg, const void *payload, size_t len, int64_t now)
{
    (void) now;
    tb_seen_add(arg, payload, len);
}

/* The messages below the group's committed offsets, all partitions;
 * -1 on an error (printed). */
static long long
lm_committed(const bench_env *env, const char *group)
{
    const char *params[1] = {group};
    PGresult *r = PQexecParams(
        env->scratch,
        "SELECT coalesce(sum(\"offset\"), 0) FROM loom.topic_offsets "
        "WHERE group_name = $1",
        1, NULL, params, NULL, NULL, 0);
    long long v = -1;

    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        v = atoll(PQgetvalue(r, 0, 0));
    else
        fprintf(stderr, "%s: topics loom: reading offsets: %s", BENCH_PROGRAM,
                PQresultErrorMessage(r));
    PQclear(r);
    return v;
}

static void
lm_sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t) (ns / 1000000000), (long) (ns % 1000000000)};

    nanosleep(&ts, NULL);
}

/* Waits until every message was received and the group's offsets are
 * committed past them; returns when that happened (0 on failure). */
static int64_t
lm_wait_done(tb_group *g, tb_seen *seen, const char *group)
{
    size_t last = 0;
    int64_t progress = bench_now_ns(), complete = 0;

    for (;;) {
        int64_t now = bench_now_ns();
        size_t d = atomic_load(&seen->distinct);
        if (atomic_load(&g->failed) || atomic_load(&bench_stopped))
            return 0;
        if (d != last) {
            last = d;
            progress = now;
        }
        if (d < seen->n && now - progress > LM_STALL_NS) {
            fprintf(stderr, "%s: topics loom: stalled at %zu of %zu\n",
                    BENCH_PROGRAM, d, seen->n);
            return 0;
        }
        if (d == seen->n) {
            long long c = lm_committed(g->env, group);
            if (c < 0)
                return 0;
            if ((size_t) c >= seen->n)
                return bench_now_ns();
            if (complete == 0)
                complete = now;
            if (now - complete > LM_COMMIT_NS) {
                fprintf(stderr,
                        "%s: topics loom: all %zu received, but only "
                        "%lld committed after 10 s\n",
                        BENCH_PROGRAM, seen->n, c);
                return 0;
            }
        }
        lm_sleep_ns(LM_WAIT_NS);
    }
}

int
tb_loom_consume(const tb_spec *spec, const char *group, int members,
                tb_phase *out)
{
    tb_group g;
    tb_seen seen;
    int64_t end;

    memset(out, 0, sizeof *out);
    memset(&g, 0, sizeof g);
    if (tb_seen_init(&seen, spec->messages) != 0)
        return -1;
    g.env = spec->env;
    g.topic = TB_TOPIC;
    g.group = group;
    g.members = members;
    g.batch = spec->batch;
    g.on_msg = lm_on_msg;
    g.arg = &seen;
    if (tb_group_start(&g) != 0) {
        tb_seen_free(&seen);
        return -1;
    }
    end = lm_wait_done(&g, &seen, group);
    tb_group_stop(&g);
    tb_seen_phase(&seen, g.go_ns, out);
    out->batches = atomic_load(&g.batches);
    if (end > g.go_ns)
        out->seconds = (double) (end - g.go_ns) / 1e9;
    tb_seen_free(&seen);
    return end != 0 && !atomic_load(&g.failed) ? 0 : -1;
}
