/* The orchestrator tests' sagas, participant and environment (sagatest.h). */
#include <pthread.h>
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

#include "loom/inbox_consumer.h"
#include "loom/log.h"
#include "loom/outbox.h"
#include "sagatest.h"
#include "tptest.h"
#include "wire.h"

/* ---- the sagas ----------------------------------------------------------- */

/* What the script of `o` says for `step` ("ok" when nothing). */
static const char *
script_for(const Sagatest__Order *o, const char *step)
{
    size_t n = strlen(step);

    for (size_t i = 0; i < o->n_script; i++) {
        if (strncmp(o->script[i], step, n) == 0 && o->script[i][n] == '=') {
            return o->script[i] + n + 1;
        }
    }
    return "ok";
}

static loom_err
st_build(loom_saga_ctx *ctx, const ProtobufCMessage *data,
         ProtobufCMessage *command, const char *step)
{
    const Sagatest__Order *o = (const Sagatest__Order *) data;
    Sagatest__Cmd *c = (Sagatest__Cmd *) command;

    (void) ctx;
    c->order = o->id;
    c->step = (char *) step;
    c->behave = (char *) script_for(o, step);
    return strcmp(c->behave, "buildfail") == 0 ? LOOM_EINVAL : LOOM_OK;
}

/* Appends `s` (borrowed: it must outlive the transition) to the trail. */
static loom_err
trail_add(loom_saga_ctx *ctx, Sagatest__Order *o, char *s)
{
    char **t = loom_saga_alloc(ctx, (o->n_trail + 1) * sizeof *t);

    if (t == NULL || s == NULL) {
        return LOOM_ENOMEM;
    }
    if (o->n_trail > 0) {
        memcpy(t, o->trail, o->n_trail * sizeof *t);
    }
    t[o->n_trail++] = s;
    o->trail = t;
    return LOOM_OK;
}

static loom_err
st_on_reply(loom_saga_ctx *ctx, ProtobufCMessage *data,
            const ProtobufCMessage *reply)
{
    const Sagatest__Ok *r = (const Sagatest__Ok *) reply;

    /* The note is borrowed from the reply, which outlives the packing. */
    return trail_add(ctx, (Sagatest__Order *) data, r->note);
}

static loom_err
st_failed(loom_saga_ctx *ctx, ProtobufCMessage *data,
          const ProtobufCMessage *failure, const loom_saga_failure *why,
          const char *step)
{
    Sagatest__Order *o = (Sagatest__Order *) data;
    char buf[300];

    (void) failure;
    snprintf(buf, sizeof buf, "%s!%s", step, why->code);
    o->failures++;
    return trail_add(ctx, o, loom_saga_strdup(ctx, buf));
}

#define ST_BUILD(name)                                                         \
    static loom_err build_##name(loom_saga_ctx *ctx,                           \
                                 const ProtobufCMessage *data,                 \
                                 ProtobufCMessage *command)                    \
    {                                                                          \
        return st_build(ctx, data, command, #name);                            \
    }
#define ST_STEP(name)                                                          \
    ST_BUILD(name)                                                             \
    static loom_err failed_##name(loom_saga_ctx *ctx, ProtobufCMessage *data,  \
                                  const ProtobufCMessage *failure,             \
                                  const loom_saga_failure *why)                \
    {                                                                          \
        return st_failed(ctx, data, failure, why, #name);                      \
    }

ST_STEP(Reserve)
ST_STEP(Charge)
ST_STEP(Ship)
ST_BUILD(Unreserve)
ST_BUILD(Refund)
ST_STEP(A)
ST_STEP(B)
ST_STEP(C)
ST_STEP(D)
ST_BUILD(UndoA)
ST_BUILD(UndoC)

static const char *const nope[] = {"NOPE"};

#define FWD                                                                    \
    {                                                                          \
        3, 150, 2.0, 1000, nope, 1                                             \
    }
#define COMP                                                                   \
    {                                                                          \
        2, 50, 2.0, 200, nope, 1                                               \
    }

/* Every step of the test sagas exchanges the same messages. */
#define STEP(step, topic, comp, policy, timeout, failed)                       \
    {                                                                          \
        .name = #step, .participant = topic,                                   \
        .command = &sagatest__cmd__descriptor,                                 \
        .reply = &sagatest__ok__descriptor,                                    \
        .failure = &sagatest__nope__descriptor, .compensation = comp,          \
        .timeout_ms = timeout, .retry = policy, .build = build_##step,         \
        .on_reply = st_on_reply, .on_failed = failed                           \
    }
#define FSTEP(step, topic, comp)                                               \
    STEP(step, topic, comp, FWD, ST_FORWARD_TIMEOUT_MS, failed_##step)
/* No test waits for a compensation to time out, and one that did under a
 * loaded make test (a reply later than 2 s) ran twice: room for load. */
#define COMPSTEP(step, topic) STEP(step, topic, -1, COMP, 10000, NULL)

/* Not const: st_forward_timeouts() sets their timeouts. */
static loom_saga_step three_steps[] = {
    FSTEP(Reserve, "stp.inv", 0),
    FSTEP(Charge, "stp.pay", 1),
    FSTEP(Ship, "stp.ship", -1),
};
static const loom_saga_step three_comps[] = {
    COMPSTEP(Unreserve, "stp.inv"),
    COMPSTEP(Refund, "stp.pay"),
};

const loom_saga_def st_three = {LOOM_SAGA_ABI_VERSION,
                                "sagatest.Three",
                                1,
                                ST_REPLIES,
                                &sagatest__order__descriptor,
                                three_steps,
                                3,
                                three_comps,
                                2,
                                "graph LR; Reserve-->Charge-->Ship",
                                "// tests/saga/sagatest.c"};

static loom_saga_step four_steps[] = {
    /* The poison test answers A itself after much else: room for load. */
    STEP(A, "stp.a", 0, FWD, 30000, failed_A),
    FSTEP(B, "stp.b", -1),
    FSTEP(C, "stp.c", 1),
    FSTEP(D, "stp.d", -1),
};
static const loom_saga_step four_comps[] = {
    COMPSTEP(UndoA, "stp.a"),
    COMPSTEP(UndoC, "stp.c"),
};

const loom_saga_def st_four = {LOOM_SAGA_ABI_VERSION,
                               "sagatest.Four",
                               1,
                               ST_REPLIES,
                               &sagatest__order__descriptor,
                               four_steps,
                               4,
                               four_comps,
                               2,
                               NULL,
                               NULL};

static const char *const participant_topics[] = {
    "stp.inv", "stp.pay", "stp.ship", "stp.a", "stp.b", "stp.c", "stp.d"};
#define N_PTOPICS (sizeof participant_topics / sizeof participant_topics[0])

/* ---- the environment ---------------------------------------------------- */

typedef struct st_call {
    void (*fn)(st_env *v, void *arg);
    void *arg;
    int done;
} st_call;

struct st_env {
    loom_runtime *rt;
    loom_transport *t;
    loom_relay *relay;
    loom_inbox_consumer *part;
    pthread_t thread;
    uv_async_t async;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    st_call *call;
    int ready;
    char err[512];
    loom_err rc;
    /* Loop thread only: */
    char fixed[64][LOOM_SAGA_MAX_ID + 1];
    int n_fixed;
    int ended;
    loom_orchestrator *orchs[16];
};

static int
st_is_fixed(const st_env *v, const char *id)
{
    for (int i = 0; i < v->n_fixed; i++) {
        if (strcmp(v->fixed[i], id) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The participant's reply(ies) in tx: `code` NULL for a success. */
static loom_err
part_reply(loom_tx *tx, const loom__saga_wire *w, const loom_message *m,
           const char *code, int64_t deliver_at, int copies)
{
    loom_header h[LOOM__SAGA_WIRE_MAX_HEADERS];
    loom__saga_wire_text text;
    uint8_t buf[512];
    loom_outbox_message om;
    loom_err rc = LOOM_OK;

    memset(&om, 0, sizeof om);
    if (code == NULL) {
        Sagatest__Ok ok = SAGATEST__OK__INIT;
        ok.note = (char *) w->step;
        om.payload_len = sagatest__ok__pack(&ok, buf);
        om.type = "sagatest.Ok";
    } else {
        Sagatest__Nope no = SAGATEST__NOPE__INIT;
        no.reason = (char *) code;
        om.payload_len = sagatest__nope__pack(&no, buf);
        om.type = "sagatest.Nope";
    }
    om.payload = buf;
    om.topic = w->reply_to;
    om.key = w->saga_id;
    om.key_len = strlen(w->saga_id);
    om.headers = h;
    om.n_headers = loom__saga_wire_reply(h, &text, w->saga_id, w->saga_type,
                                         w->step, w->attempt, &m->id, code,
                                         code ? "the test said so" : NULL);
    om.deliver_at = deliver_at;
    /* The second copy keeps the id the first one got. */
    for (int i = 0; i < copies && rc == LOOM_OK; i++) {
        rc = loom_outbox_add(tx, NULL, &om, 1);
    }
    return rc;
}

static int64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static loom_err
part_handle(const loom_message *m, loom_tx *tx, char *why, size_t whylen,
            void *arg)
{
    st_env *v = arg;
    loom__saga_wire w;
    Sagatest__Cmd *c;
    const char *b, *code = NULL, *outcome;
    char codebuf[64], attempt[16], id[LOOM_UUID_STRLEN];
    const char *values[5];
    unsigned n = 0;
    int copies = 1;
    int64_t deliver_at = 0;
    loom_err rc;

    if (m->payload_len == 4 && memcmp(m->payload, "ping", 4) == 0) {
        /* st_open()'s warm-up: the relay and this consumer are live. */
        loom_uuid_format(&m->id, id);
        values[0] = id;
        return loom_tx_exec(tx,
                            "INSERT INTO st_effects (saga_id, step, attempt, "
                            "command_id, outcome) VALUES ('ping', 'ping', 0, "
                            "$1::uuid, 'ping')",
                            1, values);
    }
    if (loom__saga_wire_read(m, 0, &w, why, whylen) != LOOM_OK) {
        return LOOM_EINVAL;
    }
    c = sagatest__cmd__unpack(NULL, m->payload_len, m->payload);
    if (c == NULL) {
        snprintf(why, whylen, "not a sagatest.Cmd");
        return LOOM_EDECODE;
    }
    b = c->behave;
    if (strncmp(b, "fail:", 5) == 0 && !st_is_fixed(v, w.saga_id)) {
        code = b + 5;
    } else if (sscanf(b, "failn:%u:%63s", &n, codebuf) == 2 && w.attempt <= n) {
        code = codebuf;
    } else if (strcmp(b, "never") == 0 ||
               (sscanf(b, "nevern:%u", &n) == 1 && w.attempt <= n)) {
        copies = 0;
    } else if (strcmp(b, "twice") == 0) {
        copies = 2;
    } else if (sscanf(b, "late:%u", &n) == 1 && w.attempt == 1) {
        deliver_at = now_us() + (int64_t) n * 1000;
    }
    outcome = copies == 0 ? "silent" : code != NULL ? "fail" : "ok";
    snprintf(attempt, sizeof attempt, "%u", (unsigned) w.attempt);
    loom_uuid_format(&m->id, id);
    values[0] = w.saga_id;
    values[1] = w.step;
    values[2] = attempt;
    values[3] = id;
    values[4] = outcome;
    rc = loom_tx_exec(tx,
                      "INSERT INTO st_effects (saga_id, step, attempt, "
                      "command_id, outcome) VALUES ($1, $2, $3::integer, "
                      "$4::uuid, $5)",
                      5, values);
    if (rc == LOOM_OK && copies > 0) {
        rc = part_reply(tx, &w, m, code, deliver_at, copies);
    }
    sagatest__cmd__free_unpacked(c, NULL);
    return rc;
}

/* ---- the loop thread ----------------------------------------------------- */

static void
st_on_async(uv_async_t *h)
{
    st_env *v = h->data;
    st_call *c;

    pthread_mutex_lock(&v->mu);
    c = v->call;
    v->call = NULL;
    pthread_mutex_unlock(&v->mu);
    if (c == NULL) {
        return;
    }
    c->fn(v, c->arg);
    pthread_mutex_lock(&v->mu);
    c->done = 1;
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
}

/* Runs fn(v, arg) on the loop thread and waits for it. */
static void
st_on_loop(st_env *v, void (*fn)(st_env *, void *), void *arg)
{
    st_call c = {fn, arg, 0};

    pthread_mutex_lock(&v->mu);
    while (v->call != NULL) {
        pthread_cond_wait(&v->cv, &v->mu);
    }
    v->call = &c;
    uv_async_send(&v->async);
    while (!c.done) {
        pthread_cond_wait(&v->cv, &v->mu);
    }
    pthread_mutex_unlock(&v->mu);
}

static loom_err
st_setup_loop(st_env *v)
{
    loom_relay_config rc = LOOM_RELAY_CONFIG_INIT;
    loom_consumer_config cc = LOOM_CONSUMER_CONFIG_INIT;
    loom_err e;

    e = loom_transport_open(v->rt, "topics://", &v->t, v->err, sizeof v->err);
    if (e != LOOM_OK) {
        return e;
    }
    rc.transport = v->t;
    rc.poll_ms = 50;
    rc.standby_ms = 100;
    rc.backoff_ms = 20;
    rc.backoff_max_ms = 200;
    rc.cleanup_ms = 200;
    e = loom_relay_start(v->rt, &rc, &v->relay, v->err, sizeof v->err);
    if (e != LOOM_OK) {
        return e;
    }
    cc.group = "st-participant";
    cc.topics = participant_topics;
    cc.n_topics = N_PTOPICS;
    return loom_inbox_consumer_open(v->t, &cc, NULL, part_handle, v, &v->part,
                                    v->err, sizeof v->err);
}

static void *
st_loop_main(void *arg)
{
    st_env *v = arg;
    loom_err rc = st_setup_loop(v);

    pthread_mutex_lock(&v->mu);
    v->rc = rc;
    v->ready = 1;
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
    if (rc == LOOM_OK) {
        loom_runtime_run(v->rt);
    }
    for (size_t i = 0; i < sizeof v->orchs / sizeof v->orchs[0]; i++) {
        loom_orchestrator_close(v->orchs[i]);
        v->orchs[i] = NULL;
    }
    loom_inbox_consumer_close(v->part);
    loom_relay_close(v->relay);
    loom_transport_close(v->t);
    uv_close((uv_handle_t *) &v->async, NULL);
    uv_run(loom_runtime_loop(v->rt), UV_RUN_NOWAIT);
    return NULL;
}

st_env *
st_open(void)
{
    st_env *v = calloc(1, sizeof *v);
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    long long pings;

    assert_non_null(v);
    pthread_mutex_init(&v->mu, NULL);
    pthread_cond_init(&v->cv, NULL);
    assert_int_equal(loom_runtime_open(&v->rt, &cfg), LOOM_OK);
    assert_int_equal(
        uv_async_init(loom_runtime_loop(v->rt), &v->async, st_on_async), 0);
    v->async.data = v;
    assert_int_equal(pthread_create(&v->thread, NULL, st_loop_main, v), 0);
    pthread_mutex_lock(&v->mu);
    while (!v->ready) {
        pthread_cond_wait(&v->cv, &v->mu);
    }
    pthread_mutex_unlock(&v->mu);
    if (v->rc != LOOM_OK) {
        fail_msg("setting up the saga test environment: %s: %s",
                 loom_err_name(v->rc), v->err);
    }
    /* Warm up: a message through the relay to the participant, so that
     * the first saga does not wait for connections and wake-ups that are
     * still being set up. */
    pings = est_ll("SELECT count(*) FROM st_effects WHERE outcome = 'ping'");
    loomt_sql_exec("SELECT loom.outbox_add('default', ARRAY['stp.inv'], "
                   "ARRAY['ping'::bytea], ARRAY[NULL], ARRAY[NULL::bytea], "
                   "ARRAY['ping'::bytea], ARRAY[gen_random_uuid()], "
                   "ARRAY[NULL::timestamptz])");
    st_wait(pings + 1, 20000,
            "SELECT count(*) FROM st_effects WHERE outcome = 'ping'");
    return v;
}

static void
call_stop(st_env *v, void *arg)
{
    (void) arg;
    loom_runtime_stop(v->rt);
}

void
st_close(st_env *v)
{
    st_on_loop(v, call_stop, NULL);
    pthread_join(v->thread, NULL);
    loom_runtime_close(v->rt);
    pthread_mutex_destroy(&v->mu);
    pthread_cond_destroy(&v->cv);
    free(v);
}

/* ---- orchestrators --------------------------------------------------------
 */

static void
st_on_ended(void *arg, const char *id, loom_saga_state state)
{
    st_env *v = arg;

    (void) id;
    (void) state;
    v->ended++;
}

void
st_forward_timeouts(const char *step, uint32_t ms)
{
    int found = 0;

    for (size_t i = 0; i < sizeof three_steps / sizeof three_steps[0]; i++) {
        if (step == NULL || strcmp(three_steps[i].name, step) == 0) {
            three_steps[i].timeout_ms = ms;
            found = 1;
        }
    }
    /* Not A: it always waits 30 s (sagatest.h). */
    for (size_t i = 1; i < sizeof four_steps / sizeof four_steps[0]; i++) {
        if (step == NULL || strcmp(four_steps[i].name, step) == 0) {
            four_steps[i].timeout_ms = ms;
            found = 1;
        }
    }
    if (!found) {
        fail_msg("st_forward_timeouts: no forward step %s", step);
    }
}

static const loom_saga_def *const st_defs[] = {&st_three, &st_four};

loom_orchestrator_config
st_orch_config(st_env *v)
{
    loom_orchestrator_config cfg = LOOM_ORCHESTRATOR_CONFIG_INIT;

    cfg.transport = v->t;
    cfg.defs = st_defs;
    cfg.n_defs = 2;
    cfg.poll_ms = 100;
    cfg.lease_ms = 2000;
    cfg.ended = st_on_ended;
    cfg.ended_arg = v;
    return cfg;
}

typedef struct open_call {
    const loom_orchestrator_config *cfg;
    loom_orchestrator *o;
    char *err;
    size_t errlen;
    loom_err rc;
} open_call;

static void
call_open(st_env *v, void *arg)
{
    open_call *c = arg;

    c->rc = loom_orchestrator_open(v->rt, c->cfg, &c->o, c->err, c->errlen);
    for (size_t i = 0; c->rc == LOOM_OK && i < 16; i++) {
        if (v->orchs[i] == NULL) {
            v->orchs[i] = c->o;
            break;
        }
    }
}

loom_err
st_orch_try(st_env *v, const loom_orchestrator_config *cfg,
            loom_orchestrator **out, char *err, size_t errlen)
{
    open_call c = {cfg, NULL, err, errlen, LOOM_OK};

    st_on_loop(v, call_open, &c);
    if (out != NULL) {
        *out = c.o;
    }
    return c.rc;
}

loom_orchestrator *
st_orch_open(st_env *v, const loom_orchestrator_config *cfg)
{
    loom_orchestrator_config def = st_orch_config(v);
    loom_orchestrator *o = NULL;
    char err[512] = "";
    loom_err rc = st_orch_try(v, cfg != NULL ? cfg : &def, &o, err, sizeof err);

    if (rc != LOOM_OK) {
        fail_msg("loom_orchestrator_open: %s: %s", loom_err_name(rc), err);
    }
    return o;
}

loom_runtime *
st_runtime(st_env *v)
{
    return v->rt;
}

static void
call_close(st_env *v, void *arg)
{
    for (size_t i = 0; i < 16; i++) {
        if (v->orchs[i] == arg) {
            v->orchs[i] = NULL;
        }
    }
    loom_orchestrator_close(arg);
}

void
st_orch_close(st_env *v, loom_orchestrator *o)
{
    st_on_loop(v, call_close, o);
}

typedef struct stats_call {
    loom_orchestrator *o;
    loom_orchestrator_stats st;
} stats_call;

static void
call_stats(st_env *v, void *arg)
{
    stats_call *c = arg;

    (void) v;
    loom_orchestrator_stats_get(c->o, &c->st);
}

loom_orchestrator_stats
st_stats(st_env *v, loom_orchestrator *o)
{
    stats_call c;

    memset(&c, 0, sizeof c);
    c.o = o;
    st_on_loop(v, call_stats, &c);
    return c.st;
}

static void
call_ended(st_env *v, void *arg)
{
    *(int *) arg = v->ended;
}

int
st_ended_count(st_env *v)
{
    int n = 0;

    st_on_loop(v, call_ended, &n);
    return n;
}

static void
call_fix(st_env *v, void *arg)
{
    if (v->n_fixed < 64) {
        snprintf(v->fixed[v->n_fixed++], sizeof v->fixed[0], "%s",
                 (const char *) arg);
    }
}

void
st_fix(st_env *v, const char *id)
{
    st_on_loop(v, call_fix, (void *) id);
}

/* ---- sagas and the database ---------------------------------------------- */

const Sagatest__Order *
st_order(const char *id, const char *const *script)
{
    static Sagatest__Order o;
    static char idbuf[LOOM_SAGA_MAX_ID + 1];
    static char *lines[16];
    size_t n = 0;

    sagatest__order__init(&o);
    snprintf(idbuf, sizeof idbuf, "%s", id);
    o.id = idbuf;
    while (script != NULL && script[n] != NULL && n < 16) {
        lines[n] = (char *) script[n];
        n++;
    }
    o.script = lines;
    o.n_script = n;
    return &o;
}

int
st_start(loom_store *s, const loom_saga_def *def, const char *id,
         const char *const *script)
{
    int created = -1;
    loom_err rc = loom_saga_start(s, def, id, &st_order(id, script)->base, NULL,
                                  &created);

    if (rc != LOOM_OK) {
        fail_msg("loom_saga_start(%s): %s: %s", id, loom_err_name(rc),
                 loom_store_errmsg(s));
    }
    return created;
}

void
st_wait(long long want, int timeout_ms, const char *fmt, ...)
{
    char sql[2048];
    PGconn *c = NULL;
    int64_t end = est_now_ms() + timeout_ms;
    long long got = -1;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    while ((got = est_try_ll_on(&c, "%s", sql)) != want && est_now_ms() < end) {
        est_sleep_ms(10);
    }
    PQfinish(c);
    if (got != want) {
        fail_msg("waited %d ms for %lld from: %s (last: %lld)", timeout_ms,
                 want, sql, got);
    }
}

void
st_wait_state(const char *id, const char *state, int timeout_ms)
{
    st_wait(1, timeout_ms,
            "SELECT count(*) FROM loom.saga_instances WHERE id = '%s' AND "
            "state = '%s'",
            id, state);
}

const char *
st_str(char *buf, size_t len, const char *fmt, ...)
{
    char sql[2048];
    PGconn *c = est_connect(NULL);
    PGresult *r;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    r = est_query(c, sql);
    snprintf(buf, len, "%s",
             PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 0)
                                                       : "");
    PQclear(r);
    PQfinish(c);
    return buf;
}

Sagatest__Order *
st_data(const char *id)
{
    char sql[512];
    PGconn *c = est_connect(NULL);
    PGresult *r;
    Sagatest__Order *o;

    snprintf(sql, sizeof sql,
             "SELECT data FROM loom.saga_instances WHERE id = '%s'", id);
    r = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 1);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1);
    o = sagatest__order__unpack(NULL, (size_t) PQgetlength(r, 0, 0),
                                (const uint8_t *) PQgetvalue(r, 0, 0));
    assert_non_null(o);
    PQclear(r);
    PQfinish(c);
    return o;
}

const char *
st_effects(char *buf, size_t len, const char *id, const char *outcome)
{
    return st_str(buf, len,
                  "SELECT string_agg(step, ',' ORDER BY seq) FROM st_effects "
                  "WHERE saga_id = '%s' AND outcome = '%s'",
                  id, outcome);
}

void
st_send_reply(loom_store *s, const loom_saga_def *def, const char *saga_id,
              const char *step, const loom_uuid *correlation,
              const void *payload, size_t len)
{
    loom_header h[LOOM__SAGA_WIRE_MAX_HEADERS];
    loom__saga_wire_text text;
    loom_outbox_message om;
    loom_tx *tx = NULL;

    memset(&om, 0, sizeof om);
    om.topic = ST_REPLIES;
    om.key = saga_id;
    om.key_len = strlen(saga_id);
    om.headers = h;
    om.n_headers = loom__saga_wire_reply(h, &text, saga_id, def->name, step, 1,
                                         correlation, NULL, NULL);
    om.payload = payload;
    om.payload_len = len;
    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    assert_int_equal(loom_outbox_add(tx, NULL, &om, 1), LOOM_OK);
    if (loom_store_commit(s, tx) != LOOM_OK) {
        fail_msg("commit: %s", loom_store_errmsg(s));
    }
    loom_tx_free(tx);
}

const char *
st_log_of(char *buf, size_t len, const char *id)
{
    return st_str(buf, len,
                  "SELECT string_agg(kind || coalesce(':' || step_name, ''), "
                  "',' ORDER BY id) FROM loom.saga_log WHERE saga_id = '%s'",
                  id);
}

const char *
st_trail_of(char *buf, size_t len, const char *id)
{
    Sagatest__Order *o = st_data(id);
    size_t at = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < o->n_trail && at < len; i++) {
        at += (size_t) snprintf(buf + at, len - at, "%s%s", i ? "," : "",
                                o->trail[i]);
    }
    sagatest__order__free_unpacked(o, NULL);
    return buf;
}

void
st_wait_ended(st_env *v, int want)
{
    int64_t end = est_now_ms() + 15000;

    while (st_ended_count(v) < want && est_now_ms() < end) {
        est_sleep_ms(10);
    }
    assert_int_equal(st_ended_count(v), want);
}

/* Counter `at` (an offset) of `st`. */
static uint64_t
stat_at(const loom_orchestrator_stats *st, size_t at)
{
    uint64_t n;

    memcpy(&n, (const char *) st + at, sizeof n);
    return n;
}

loom_orchestrator_stats
st_wait_stat_at(st_env *v, loom_orchestrator *o, size_t at, const char *name,
                uint64_t want)
{
    int64_t end = est_now_ms() + 15000;
    loom_orchestrator_stats st = st_stats(v, o);

    while (stat_at(&st, at) < want && est_now_ms() < end) {
        est_sleep_ms(10);
        st = st_stats(v, o);
    }
    if (stat_at(&st, at) < want) {
        fail_msg("waited 15 s for stats.%s >= %llu (last: %llu)", name,
                 (unsigned long long) want,
                 (unsigned long long) stat_at(&st, at));
    }
    return st;
}

int
st_fx_setup(void **state)
{
    st_fx *f = calloc(1, sizeof *f);

    assert_non_null(f);
    st_forward_timeouts(NULL, ST_FORWARD_TIMEOUT_MS);
    f->v = st_open();
    f->s = loomt_store_open();
    *state = f;
    return 0;
}

int
st_fx_teardown(void **state)
{
    st_fx *f = *state;

    loom_store_close(f->s);
    if (f->v != NULL) {
        st_close(f->v);
    }
    free(f);
    return 0;
}

/* ---- per executable -------------------------------------------------------
 */

static void
st_log(void *arg, loom_log_level level, const char *message)
{
    (void) arg;
    if (getenv("LOOM_TEST_VERBOSE") != NULL) {
        fprintf(stderr, "%lld eventloom: %s: %s\n",
                (long long) (est_now_ms() % 100000), loom_log_level_name(level),
                message);
    }
}

int
st_group_setup(void **state)
{
    loom_store *s;

    est_group_setup(state);
    s = loomt_store_open(); /* migrates */
    loom_store_close(s);
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    loom_log_set(st_log, NULL);
    for (size_t i = 0; i < N_PTOPICS; i++) {
        tpt_topic_create(participant_topics[i], 2, -1, -1, 0, -1);
    }
    /* Two deliveries: a reply the orchestrator fails back is
     * dead-lettered at its second. */
    tpt_topic_create(ST_REPLIES, 4, -1, -1, 0, 2);
    loomt_sql_exec(
        "CREATE TABLE st_effects (seq bigserial PRIMARY KEY, "
        "saga_id text NOT NULL, step text NOT NULL, attempt "
        "integer NOT NULL, command_id uuid NOT NULL, outcome text "
        "NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())");
    return 0;
}

int
st_group_teardown(void **state)
{
    loom_log_set(NULL, NULL);
    return est_group_teardown(state);
}
