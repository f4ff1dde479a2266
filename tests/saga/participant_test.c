/*
 * The participant helper (loom/saga.h, "Participants") against a real
 * PostgreSQL with the topics transport. The test plays the orchestrator:
 * it writes commands into an outbox ("ptcmd") with the wire headers of
 * saga/wire.h, a relay publishes them to the participant's topic, and
 * the participant's replies go through its own outbox ("ptrep") and a
 * second relay to a reply topic, where a recording consumer reads them.
 *
 * The participant serves stock reservations: aggregate "stock-<sku>"
 * holds a limit (event ptest.Stocked) and what was reserved
 * (ptest.Reserved), and refusals are recorded too (ptest.Refused); every
 * event's data is "<qty> <saga id>", so each saga's effect can be
 * counted. Proved: a command is handled with its reply; a failure
 * replies with code, message and payload and commits what was emitted; a
 * redelivered command changes nothing twice; 200 commands on 3 SKUs from
 * two participants with batches lose no update, oversell nothing and
 * dead-letter nothing; a transient handler error commits nothing and the
 * command comes again; commands that can never be handled end in the
 * dead letters with their reason while the others go on (those that do
 * not decode on their first delivery); bad arguments
 * are refused.
 *
 * Loop callbacks (handlers included) never call cmocka: they record, and
 * the checks run after the loop returns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "loom/outbox.h"
#include "loom/saga.h"
#include "participant_test.pb-c.h"
#include "tptest.h"
#include "wire.h"

#define PT_SAGA    "ptest.Order"
#define PT_CMD_BOX "ptcmd"
#define PT_REP_BOX "ptrep"

/* ---- the stock aggregate ------------------------------------------------- */

typedef struct stock {
    int32_t limit;
    int32_t reserved;
} stock;

static loom_err
stock_apply(void *state, const loom_event *ev)
{
    stock *s = state;
    char buf[64];
    size_t n = ev->data_len < sizeof buf - 1 ? ev->data_len : sizeof buf - 1;

    memcpy(buf, ev->data, n);
    buf[n] = '\0';
    if (strcmp(ev->type, "ptest.Stocked") == 0)
        s->limit = atoi(buf);
    else if (strcmp(ev->type, "ptest.Reserved") == 0)
        s->reserved += atoi(buf);
    return LOOM_OK;
}

static const loom_aggregate_type stock_type = {"stock", sizeof(stock), 1,
                                               NULL,    stock_apply,   0};

/* ---- the handlers -------------------------------------------------------- */

/* What handlers do beyond their step, set by the tests. */
static struct {
    int flaky_left; /* Flaky: transient failures still to give */
    int flaky_calls;
    int checks_run;    /* Check: times its argument checks ran */
    int checks_failed; /* of which a check did not hold */
    char checks_what[256];
} hs;

/* Queues event `type` with data "<qty> <saga id>" on stock-<sku>. */
static loom_err
stock_emit(loom_participant_ctx *ctx, const char *sku, const char *type,
           int32_t qty, int64_t expected)
{
    char stream[128];
    char *data = loom_participant_alloc(ctx, 300);
    loom_event_data ev;

    if (data == NULL)
        return LOOM_ENOMEM;
    snprintf(data, 300, "%d %s", (int) qty, loom_participant_saga_id(ctx));
    snprintf(stream, sizeof stream, "stock-%s", sku);
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.data = data;
    ev.data_len = strlen(data);
    return loom_participant_emit(ctx, stream, expected, &ev, 1);
}

/* Reserve: qty of sku if the stock holds it, else OUT_OF_STOCK (the
 * refusal is recorded as an event, which commits with the failure). */
static loom_err
reserve_fn(loom_participant_ctx *ctx, const ProtobufCMessage *command,
           ProtobufCMessage *reply, ProtobufCMessage *failure)
{
    const Ptest__Reserve *cmd = (const Ptest__Reserve *) command;
    Ptest__Reserved *ok = (Ptest__Reserved *) reply;
    Ptest__OutOfStock *no = (Ptest__OutOfStock *) failure;
    stock st;
    int64_t v = -1;
    loom_err rc;

    rc = loom_participant_load(ctx, &stock_type, cmd->sku, &st, &v);
    if (rc != LOOM_OK)
        return rc;
    if (st.reserved + cmd->qty > st.limit) {
        rc = stock_emit(ctx, cmd->sku, "ptest.Refused", cmd->qty, v);
        if (rc != LOOM_OK)
            return rc;
        no->sku = cmd->sku; /* borrowed from the command */
        no->available = st.limit - st.reserved;
        return loom_participant_fail(ctx, "OUT_OF_STOCK",
                                     "sku %s: %d left, %d asked", cmd->sku,
                                     (int) no->available, (int) cmd->qty);
    }
    rc = stock_emit(ctx, cmd->sku, "ptest.Reserved", cmd->qty, v);
    if (rc != LOOM_OK)
        return rc;
    ok->sku = loom_participant_strdup(ctx, cmd->sku);
    ok->remaining = st.limit - st.reserved - cmd->qty;
    ok->note = loom_participant_alloc(ctx, 320);
    if (ok->sku == NULL || ok->note == NULL)
        return LOOM_ENOMEM;
    snprintf(ok->note, 320, "saga %s attempt %u", loom_participant_saga_id(ctx),
             (unsigned) loom_participant_attempt(ctx));
    return LOOM_OK;
}

/* Release: a step without a failure type; sku "none" fails. */
static loom_err
release_fn(loom_participant_ctx *ctx, const ProtobufCMessage *command,
           ProtobufCMessage *reply, ProtobufCMessage *failure)
{
    const Ptest__Release *cmd = (const Ptest__Release *) command;

    if (failure != NULL)
        return LOOM_EINVAL; /* the step has no failure type */
    if (strcmp(cmd->sku, "none") == 0)
        return loom_participant_fail(ctx, "NOTHING_RESERVED", NULL);
    ((Ptest__Released *) reply)->sku = cmd->sku;
    return LOOM_OK;
}

/* Flaky: records a try (event on flaky-<saga id>) and a statement, then
 * fails transiently while hs.flaky_left says so. */
static loom_err
flaky_fn(loom_participant_ctx *ctx, const ProtobufCMessage *command,
         ProtobufCMessage *reply, ProtobufCMessage *failure)
{
    const Ptest__Reserve *cmd = (const Ptest__Reserve *) command;
    const char *v[1] = {loom_participant_saga_id(ctx)};
    char stream[300];
    loom_event_data ev;
    loom_err rc;

    (void) failure;
    hs.flaky_calls++;
    snprintf(stream, sizeof stream, "flaky-%s", loom_participant_saga_id(ctx));
    memset(&ev, 0, sizeof ev);
    ev.type = "ptest.Tried";
    rc = loom_participant_emit(ctx, stream, LOOM_EXPECT_ANY, &ev, 1);
    if (rc == LOOM_OK)
        rc = loom_tx_exec(loom_participant_tx(ctx),
                          "INSERT INTO pt_fx (saga) VALUES ($1)", 1, v);
    if (rc != LOOM_OK)
        return rc;
    if (hs.flaky_left > 0) {
        hs.flaky_left--;
        return LOOM_EHANDLER;
    }
    ((Ptest__Reserved *) reply)->sku = cmd->sku;
    return LOOM_OK;
}

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond) && hs.checks_failed++ == 0)                                \
            snprintf(hs.checks_what, sizeof hs.checks_what, "%s", #cond);      \
    } while (0)

/* Check: the ctx functions refuse bad arguments from inside a handler,
 * then it fails with a message too long and not UTF-8. */
static loom_err
check_fn(loom_participant_ctx *ctx, const ProtobufCMessage *command,
         ProtobufCMessage *reply, ProtobufCMessage *failure)
{
    loom_event_data ev;
    stock st;
    char big[2100];

    (void) command;
    (void) reply;
    (void) failure;
    hs.checks_run++;
    memset(&ev, 0, sizeof ev);
    ev.type = "ptest.X";
    CHECK(loom_participant_fail(ctx, NULL, "x") == LOOM_EINVAL);
    CHECK(loom_participant_fail(ctx, "", "x") == LOOM_EINVAL);
    CHECK(loom_participant_fail(ctx, "BAD\nCODE", "x") == LOOM_EINVAL);
    CHECK(loom_participant_emit(ctx, NULL, LOOM_EXPECT_ANY, &ev, 1) ==
          LOOM_EINVAL);
    CHECK(loom_participant_emit(ctx, "s-1", LOOM_EXPECT_ANY, NULL, 1) ==
          LOOM_EINVAL);
    CHECK(loom_participant_emit(ctx, "s-1", LOOM_EXPECT_ANY, &ev, 0) ==
          LOOM_EINVAL);
    CHECK(loom_participant_emit(ctx, "s-1", -9, &ev, 1) == LOOM_EINVAL);
    CHECK(loom_participant_load(ctx, NULL, "a", &st, NULL) == LOOM_EINVAL);
    CHECK(loom_participant_load(ctx, &stock_type, NULL, &st, NULL) ==
          LOOM_EINVAL);
    CHECK(loom_participant_strdup(ctx, NULL) == NULL);
    CHECK(loom_participant_alloc(ctx, 0) != NULL);
    CHECK(loom_participant_tx(ctx) != NULL);
    CHECK(loom_participant_attempt(ctx) == 1);
    memset(big, 'm', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    big[10] = (char) 0xff; /* not UTF-8 */
    return loom_participant_fail(ctx, "CHECKED", "%s", big);
}

static const loom_participant_step main_steps[] = {
    {PT_SAGA, "Reserve", &ptest__reserve__descriptor,
     &ptest__reserved__descriptor, &ptest__out_of_stock__descriptor,
     reserve_fn},
    {PT_SAGA, "Release", &ptest__release__descriptor,
     &ptest__released__descriptor, NULL, release_fn},
};

static const loom_participant_step more_steps[] = {
    {PT_SAGA, "Flaky", &ptest__reserve__descriptor,
     &ptest__reserved__descriptor, NULL, flaky_fn},
    {PT_SAGA, "Check", &ptest__reserve__descriptor,
     &ptest__reserved__descriptor, NULL, check_fn},
};

/* Two defs on one topic: the participant subscribes to it once. */
typedef struct pt_defs {
    loom_participant_def d[2];
    const loom_participant_def *p[2];
} pt_defs;

static void
pt_defs_init(pt_defs *d, const char *topic)
{
    d->d[0].abi = LOOM_SAGA_ABI_VERSION;
    d->d[0].name = topic;
    d->d[0].steps = main_steps;
    d->d[0].n_steps = 2;
    d->d[1] = d->d[0];
    d->d[1].steps = more_steps;
    d->p[0] = &d->d[0];
    d->p[1] = &d->d[1];
}

/* ---- the orchestrator's side: commands and replies ------------------------
 */

/* A command to send: step, key (saga id), attempt, payload. */
typedef struct pt_cmd {
    const char *saga_id;
    const char *step;
    uint32_t attempt;
    const ProtobufCMessage *payload; /* NULL: raw below */
    const void *raw;
    size_t raw_len;
    const char *type; /* NULL: the payload's */
    int no_headers;   /* send without the saga headers */
    loom_uuid id;     /* in/out */
} pt_cmd;

/* Commits `n` commands to `topic` (replies to `reply_to`) in one unit of
 * work through outbox PT_CMD_BOX, as the orchestrator would. */
static void
pt_send(loom_store *s, const char *topic, const char *reply_to, pt_cmd *c,
        size_t n)
{
    loom_outbox_message *om = calloc(n, sizeof *om);
    loom_header(*h)[LOOM__SAGA_WIRE_MAX_HEADERS] = calloc(n, sizeof *h);
    loom__saga_wire_text *text = calloc(n, sizeof *text);
    uint8_t **bufs = calloc(n, sizeof *bufs);
    loom_tx *tx = NULL;

    assert_non_null(om);
    assert_non_null(h);
    assert_non_null(text);
    assert_non_null(bufs);
    for (size_t i = 0; i < n; i++) {
        om[i].topic = topic;
        om[i].key = c[i].saga_id;
        om[i].key_len = strlen(c[i].saga_id);
        if (c[i].payload != NULL) {
            size_t len = protobuf_c_message_get_packed_size(c[i].payload);
            bufs[i] = malloc(len + 1);
            assert_non_null(bufs[i]);
            om[i].payload = bufs[i];
            om[i].payload_len = protobuf_c_message_pack(c[i].payload, bufs[i]);
            om[i].type = c[i].payload->descriptor->name;
        } else {
            om[i].payload = c[i].raw;
            om[i].payload_len = c[i].raw_len;
        }
        if (c[i].type != NULL)
            om[i].type = c[i].type;
        if (!c[i].no_headers) {
            om[i].headers = h[i];
            om[i].n_headers = loom__saga_wire_command(
                h[i], &text[i], c[i].saga_id, PT_SAGA, c[i].step,
                c[i].attempt ? c[i].attempt : 1, reply_to);
        }
        om[i].id = c[i].id;
    }
    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    assert_int_equal(loom_outbox_add(tx, PT_CMD_BOX, om, n), LOOM_OK);
    assert_int_equal(loom_store_commit(s, tx), LOOM_OK);
    for (size_t i = 0; i < n; i++) {
        c[i].id = om[i].id;
        free(bufs[i]);
    }
    loom_tx_free(tx);
    free(bufs);
    free(text);
    free(h);
    free(om);
}

/* One reply as the recording consumer saw it. */
typedef struct pt_reply {
    char *key;
    char *hk[16], *hv[16];
    size_t n_headers;
    uint8_t *payload;
    size_t payload_len;
} pt_reply;

typedef struct pt_replies {
    pt_reply *r;
    size_t n, cap;
    loom_consumer *c;
} pt_replies;

static char *
pt_strndup(const void *p, size_t n)
{
    char *s = malloc(n + 1);

    if (s != NULL) {
        if (n > 0)
            memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* The reply topic's consumer: copies each reply and acknowledges it. */
static void
pt_record(loom_consumer *c, const loom_message *const *msgs, size_t n,
          void *arg)
{
    pt_replies *rs = arg;

    for (size_t i = 0; i < n; i++) {
        const loom_message *m = msgs[i];
        pt_reply *r;

        if (rs->n == rs->cap) {
            size_t cap = rs->cap ? rs->cap * 2 : 64;
            pt_reply *g = realloc(rs->r, cap * sizeof *g);
            if (g == NULL) {
                loom_consumer_fail(c, m, "test: out of memory");
                continue;
            }
            rs->r = g;
            rs->cap = cap;
        }
        r = &rs->r[rs->n++];
        memset(r, 0, sizeof *r);
        r->key = pt_strndup(m->key, m->key_len);
        for (size_t k = 0; k < m->n_headers && k < 16; k++) {
            r->hk[k] = pt_strndup(m->headers[k].key, strlen(m->headers[k].key));
            r->hv[k] =
                pt_strndup(m->headers[k].value, strlen(m->headers[k].value));
            r->n_headers++;
        }
        r->payload = (uint8_t *) pt_strndup(m->payload, m->payload_len);
        r->payload_len = m->payload_len;
        loom_consumer_ack(c, m);
    }
}

static void
pt_replies_open(tpt_env *e, pt_replies *rs, const char *topic)
{
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_topics_consumer_config topts = tpt_fast_topts();
    const char *topics[1] = {topic};

    memset(rs, 0, sizeof *rs);
    cfg.group = "pt-orchestrator";
    cfg.topics = topics;
    cfg.n_topics = 1;
    assert_int_equal(loom_topics_consumer_open(e->t, &cfg, &topts, pt_record,
                                               NULL, rs, &rs->c),
                     LOOM_OK);
}

static void
pt_replies_close(pt_replies *rs)
{
    loom_consumer_close(rs->c);
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->r[i].key);
        for (size_t k = 0; k < rs->r[i].n_headers; k++) {
            free(rs->r[i].hk[k]);
            free(rs->r[i].hv[k]);
        }
        free(rs->r[i].payload);
    }
    free(rs->r);
}

/* Header `k` of r, or NULL. */
static const char *
pt_hdr(const pt_reply *r, const char *k)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcmp(r->hk[i], k) == 0)
            return r->hv[i];
    return NULL;
}

/* The reply correlated with command id `id`, or NULL. */
static const pt_reply *
pt_reply_to(const pt_replies *rs, const loom_uuid *id)
{
    char text[LOOM_UUID_STRLEN];

    loom_uuid_format(id, text);
    for (size_t i = 0; i < rs->n; i++) {
        const char *c = pt_hdr(&rs->r[i], LOOM_SAGA_HDR_CORRELATION);
        if (c != NULL && strcmp(c, text) == 0)
            return &rs->r[i];
    }
    return NULL;
}

struct pt_until {
    pt_replies *rs;
    size_t replies;
    loom_participant *p[2];
    uint64_t handled, errors;
};

/* Done when `replies` replies arrived and the participants (together)
 * handled and failed back at least so many commands. */
static int
pt_reached(void *arg)
{
    struct pt_until *u = arg;
    uint64_t handled = 0, errors = 0;

    for (int i = 0; i < 2; i++) {
        loom_participant_stats st;
        if (u->p[i] != NULL &&
            loom_participant_stats_get(u->p[i], &st) == LOOM_OK) {
            handled += st.handled;
            errors += st.errors;
        }
    }
    return (u->rs == NULL || u->rs->n >= u->replies) && handled >= u->handled &&
           errors >= u->errors;
}

static void
pt_wait(tpt_env *e, struct pt_until *u)
{
    if (!tpt_run(e, pt_reached, u, 30000))
        fail_msg("waited for %zu replies, %llu handled, %llu errors; got "
                 "%zu replies",
                 u->replies, (unsigned long long) u->handled,
                 (unsigned long long) u->errors, u->rs ? u->rs->n : 0);
}

/* ---- fixtures --------------------------------------------------------------
 */

typedef struct pt_fx {
    loom_store *s;
    tpt_env e;
    loom_relay *relays[2];
    pt_replies rs;
} pt_fx;

static loom_relay *
pt_relay(tpt_env *e, const char *outbox)
{
    loom_relay_config cfg = LOOM_RELAY_CONFIG_INIT;
    loom_relay *r = NULL;
    char err[512] = "";

    cfg.transport = e->t;
    cfg.outbox = outbox;
    cfg.poll_ms = 50;
    cfg.standby_ms = 50;
    if (loom_relay_start(e->rt, &cfg, &r, err, sizeof err) != LOOM_OK)
        fail_msg("loom_relay_start(%s): %s", outbox, err);
    return r;
}

/* Topics `cmd` (4 partitions, no deduplication window, max_deliveries
 * `max_del`) and `reply`; the relays of both outboxes; the recording
 * consumer of the replies. */
static void
pt_fx_open(pt_fx *f, const char *cmd, const char *reply, int max_del)
{
    memset(f, 0, sizeof *f);
    f->s = est_store_open(NULL);
    tpt_topic_create(cmd, 4, -1, -1, 0, max_del);
    tpt_topic_create(reply, 2, -1, -1, 0, -1);
    tpt_open(&f->e, "");
    f->relays[0] = pt_relay(&f->e, PT_CMD_BOX);
    f->relays[1] = pt_relay(&f->e, PT_REP_BOX);
    pt_replies_open(&f->e, &f->rs, reply);
}

static void
pt_fx_close(pt_fx *f)
{
    pt_replies_close(&f->rs);
    loom_relay_close(f->relays[0]);
    loom_relay_close(f->relays[1]);
    tpt_close(&f->e);
    loom_store_close(f->s);
}

static loom_participant *
pt_open(pt_fx *f, pt_defs *d, const char *topic, size_t batch)
{
    loom_participant_config cfg = LOOM_PARTICIPANT_CONFIG_INIT;
    loom_participant *p = NULL;
    char err[512] = "";
    loom_err rc;

    pt_defs_init(d, topic);
    cfg.transport = f->e.t;
    cfg.defs = d->p;
    cfg.n_defs = 2;
    cfg.outbox = PT_REP_BOX;
    cfg.batch = batch;
    rc = loom_participant_open(f->e.rt, &cfg, &p, err, sizeof err);
    if (rc != LOOM_OK)
        fail_msg("loom_participant_open: %s: %s", loom_err_name(rc), err);
    assert_string_equal(err, "");
    return p;
}

static loom_participant_stats
pt_stats(const loom_participant *p)
{
    loom_participant_stats st;

    assert_int_equal(loom_participant_stats_get(p, &st), LOOM_OK);
    return st;
}

/* Stocks `sku` with `limit` units. */
static void
pt_stock(loom_store *s, const char *sku, int limit)
{
    char stream[64], data[16];
    loom_event_data ev;

    snprintf(stream, sizeof stream, "stock-%s", sku);
    snprintf(data, sizeof data, "%d", limit);
    est_event(&ev, "ptest.Stocked", data, strlen(data));
    assert_int_equal(
        loom_store_append(s, stream, LOOM_EXPECT_NO_STREAM, &ev, 1, NULL),
        LOOM_OK);
}

static int
group_setup(void **state)
{
    int rc = est_group_setup(state);

    loomt_sql_exec("CREATE TABLE pt_fx (saga text NOT NULL)");
    return rc;
}

/* ---- 1. a command handled -------------------------------------------------
 */

static void
test_participant_handles_a_command_and_replies(void **state)
{
    Ptest__Reserve cmd = PTEST__RESERVE__INIT;
    Ptest__Reserved *out;
    pt_cmd c;
    pt_fx f;
    pt_defs d;
    loom_participant *p;
    loom_participant_stats st;
    loom_events *page = NULL;
    const loom_event *ev;
    const pt_reply *r;
    char id[LOOM_UUID_STRLEN];

    (void) state;
    pt_fx_open(&f, "pt1.inventory", "pt1.replies", -1);
    pt_stock(f.s, "apple", 10);
    p = pt_open(&f, &d, "pt1.inventory", 0);
    cmd.sku = "apple";
    cmd.qty = 3;
    memset(&c, 0, sizeof c);
    c.saga_id = "order-1";
    c.step = "Reserve";
    c.attempt = 2;
    c.payload = &cmd.base;
    pt_send(f.s, "pt1.inventory", "pt1.replies", &c, 1);
    pt_wait(&f.e, &(struct pt_until){&f.rs, 1, {p, NULL}, 1, 0});
    tpt_run(&f.e, NULL, NULL, TPT_QUIET_MS);

    /* The reply: on the reply-to topic, keyed by the saga id, with the
     * saga's headers and the command's id as correlation. */
    assert_int_equal(f.rs.n, 1);
    r = &f.rs.r[0];
    loom_uuid_format(&c.id, id);
    assert_string_equal(r->key, "order-1");
    assert_string_equal(pt_hdr(r, LOOM_SAGA_HDR_ID), "order-1");
    assert_string_equal(pt_hdr(r, LOOM_SAGA_HDR_TYPE), PT_SAGA);
    assert_string_equal(pt_hdr(r, LOOM_SAGA_HDR_STEP), "Reserve");
    assert_string_equal(pt_hdr(r, LOOM_SAGA_HDR_ATTEMPT), "2");
    assert_string_equal(pt_hdr(r, LOOM_SAGA_HDR_CORRELATION), id);
    assert_string_equal(pt_hdr(r, LOOM_SAGA_HDR_OUTCOME), "success");
    assert_null(pt_hdr(r, LOOM_SAGA_HDR_FAILURE_CODE));
    assert_null(pt_hdr(r, LOOM_SAGA_HDR_FAILURE_MESSAGE));
    assert_string_equal(pt_hdr(r, "x-type"), "ptest.Reserved");
    out = ptest__reserved__unpack(NULL, r->payload_len, r->payload);
    assert_non_null(out);
    assert_string_equal(out->sku, "apple");
    assert_int_equal(out->remaining, 7);
    assert_string_equal(out->note, "saga order-1 attempt 2");
    ptest__reserved__free_unpacked(out, NULL);

    /* The event, with the saga as correlation and the command as
     * causation. */
    assert_int_equal(
        loom_store_read_stream(f.s, "stock-apple", 0, LOOM_FORWARD, 10, &page),
        LOOM_OK);
    assert_int_equal(loom_events_count(page), 2);
    ev = loom_events_at(page, 1);
    assert_string_equal(ev->type, "ptest.Reserved");
    assert_int_equal(ev->data_len, strlen("3 order-1"));
    assert_memory_equal(ev->data, "3 order-1", ev->data_len);
    assert_non_null(ev->correlation_id);
    assert_string_equal(ev->correlation_id, "order-1");
    assert_non_null(ev->causation_id);
    assert_string_equal(ev->causation_id, id);
    loom_events_free(page);

    st = pt_stats(p);
    assert_int_equal(st.handled, 1);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.duplicates, 0);
    assert_int_equal(st.errors, 0);
    /* The inbox holds the command, under the default group's name. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.inbox WHERE consumer "
                            "= 'pt1.inventory-participant' AND message_id = "
                            "'%s'",
                            id),
                     1);
    loom_participant_close(p);
    pt_fx_close(&f);
}

/* ---- 2. failures ----------------------------------------------------------
 */

static void
test_participant_failure_replies_with_code_message_and_payload(void **state)
{
    Ptest__Reserve cmd = PTEST__RESERVE__INIT;
    Ptest__Release rel = PTEST__RELEASE__INIT;
    Ptest__OutOfStock *out;
    pt_cmd c[2];
    pt_fx f;
    pt_defs d;
    loom_participant *p;
    loom_participant_stats st;
    const pt_reply *r;

    (void) state;
    pt_fx_open(&f, "pt2.inventory", "pt2.replies", -1);
    pt_stock(f.s, "pear", 4);
    p = pt_open(&f, &d, "pt2.inventory", 0);
    cmd.sku = "pear";
    cmd.qty = 5;
    rel.sku = "none";
    memset(c, 0, sizeof c);
    c[0].saga_id = "order-2";
    c[0].step = "Reserve";
    c[0].payload = &cmd.base;
    c[1].saga_id = "order-3";
    c[1].step = "Release";
    c[1].payload = &rel.base;
    pt_send(f.s, "pt2.inventory", "pt2.replies", c, 2);
    pt_wait(&f.e, &(struct pt_until){&f.rs, 2, {p, NULL}, 2, 0});
    tpt_run(&f.e, NULL, NULL, TPT_QUIET_MS);
    assert_int_equal(f.rs.n, 2);

    /* With the step's failure payload. */
    r = pt_reply_to(&f.rs, &c[0].id);
    assert_non_null(r);
    assert_string_equal(r->key, "order-2");
    assert_string_equal(pt_hdr(r, LOOM_SAGA_HDR_OUTCOME), "failure");
    assert_string_equal(pt_hdr(r, LOOM_SAGA_HDR_STEP), "Reserve");
    assert_string_equal(pt_hdr(r, LOOM_SAGA_HDR_FAILURE_CODE), "OUT_OF_STOCK");
    assert_string_equal(pt_hdr(r, LOOM_SAGA_HDR_FAILURE_MESSAGE),
                        "sku pear: 4 left, 5 asked");
    assert_string_equal(pt_hdr(r, "x-type"), "ptest.OutOfStock");
    out = ptest__out_of_stock__unpack(NULL, r->payload_len, r->payload);
    assert_non_null(out);
    assert_string_equal(out->sku, "pear");
    assert_int_equal(out->available, 4);
    ptest__out_of_stock__free_unpacked(out, NULL);
    /* What the handler emitted before failing committed with it. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream = "
                            "'stock-pear' AND type = 'ptest.Refused' AND "
                            "convert_from(data, 'UTF8') = '5 order-2'"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream = "
                            "'stock-pear'"),
                     2);

    /* A step without a failure type: no payload, no type, no message. */
    r = pt_reply_to(&f.rs, &c[1].id);
    assert_non_null(r);
    assert_string_equal(pt_hdr(r, LOOM_SAGA_HDR_OUTCOME), "failure");
    assert_string_equal(pt_hdr(r, LOOM_SAGA_HDR_FAILURE_CODE),
                        "NOTHING_RESERVED");
    assert_null(pt_hdr(r, LOOM_SAGA_HDR_FAILURE_MESSAGE));
    assert_null(pt_hdr(r, "x-type"));
    assert_int_equal(r->payload_len, 0);

    st = pt_stats(p);
    assert_int_equal(st.handled, 2);
    assert_int_equal(st.failures, 2);
    assert_int_equal(st.errors, 0);
    loom_participant_close(p);
    pt_fx_close(&f);
}

/* ---- 3. a redelivered command ---------------------------------------------
 */

static void
test_participant_redelivered_command_changes_nothing_twice(void **state)
{
    Ptest__Reserve cmd = PTEST__RESERVE__INIT;
    pt_cmd c;
    pt_fx f;
    pt_defs d;
    loom_participant *p;
    loom_participant_stats st;
    char id[LOOM_UUID_STRLEN];

    (void) state;
    pt_fx_open(&f, "pt3.inventory", "pt3.replies", -1);
    pt_stock(f.s, "plum", 10);
    p = pt_open(&f, &d, "pt3.inventory", 0);
    cmd.sku = "plum";
    cmd.qty = 1;
    memset(&c, 0, sizeof c);
    c.saga_id = "order-4";
    c.step = "Reserve";
    c.payload = &cmd.base;
    pt_send(f.s, "pt3.inventory", "pt3.replies", &c, 1);
    pt_wait(&f.e, &(struct pt_until){&f.rs, 1, {p, NULL}, 1, 0});
    /* The same command, same message id, once more (the topic keeps no
     * deduplication window: it is delivered again). */
    pt_send(f.s, "pt3.inventory", "pt3.replies", &c, 1);
    loom_uuid_format(&c.id, id);
    tpt_sql_wait(&f.e, 2,
                 "SELECT count(*) FROM loom.topic_messages m JOIN "
                 "loom.topics t ON t.id = m.topic_id WHERE t.name = "
                 "'pt3.inventory'");
    tpt_sql_wait(&f.e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag WHERE "
                 "group_name = 'pt3.inventory-participant'");
    tpt_run(&f.e, NULL, NULL, 1000);

    st = pt_stats(p);
    assert_int_equal(st.handled, 1);
    assert_int_equal(st.duplicates, 1);
    assert_int_equal(st.errors, 0);
    assert_int_equal(f.rs.n, 1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream = "
                            "'stock-plum'"),
                     2);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_messages m JOIN "
                            "loom.topics t ON t.id = m.topic_id WHERE t.name "
                            "= 'pt3.replies'"),
                     1);
    loom_participant_close(p);
    pt_fx_close(&f);
}

/* ---- 4. contention ----------------------------------------------------------
 */

#define PT_N_CMDS 200
#define PT_N_SKUS 3
#define PT_LIMIT  60
#define PT_BATCH  20
static const char *const pt_skus[PT_N_SKUS] = {"s0", "s1", "s2"};

static void
test_participant_contention_loses_no_update_and_oversells_nothing(void **state)
{
    static Ptest__Reserve cmds[PT_N_CMDS];
    static char ids[PT_N_CMDS][32];
    pt_cmd *c = calloc(PT_N_CMDS, sizeof *c);
    pt_fx f;
    pt_defs d[2];
    loom_participant *p[2];
    loom_participant_stats st[2];
    size_t ok = 0, refused = 0;
    uint64_t conflicts, failures;

    (void) state;
    assert_non_null(c);
    pt_fx_open(&f, "pt4.inventory", "pt4.replies", -1);
    for (int i = 0; i < PT_N_SKUS; i++)
        pt_stock(f.s, pt_skus[i], PT_LIMIT);
    /* All commands first, so the participants meet full batches with
     * several commands on each SKU. */
    for (int i = 0; i < PT_N_CMDS; i++) {
        ptest__reserve__init(&cmds[i]);
        cmds[i].sku = (char *) pt_skus[i % PT_N_SKUS];
        cmds[i].qty = 1;
        snprintf(ids[i], sizeof ids[i], "order-c%d", i);
        c[i].saga_id = ids[i];
        c[i].step = "Reserve";
        c[i].payload = &cmds[i].base;
    }
    pt_send(f.s, "pt4.inventory", "pt4.replies", c, PT_N_CMDS);
    tpt_sql_wait(&f.e, PT_N_CMDS,
                 "SELECT count(*) FROM loom.topic_messages m JOIN "
                 "loom.topics t ON t.id = m.topic_id WHERE t.name = "
                 "'pt4.inventory'");
    p[0] = pt_open(&f, &d[0], "pt4.inventory", PT_BATCH);
    p[1] = pt_open(&f, &d[1], "pt4.inventory", PT_BATCH);
    pt_wait(&f.e,
            &(struct pt_until){&f.rs, PT_N_CMDS, {p[0], p[1]}, PT_N_CMDS, 0});
    tpt_sql_wait(&f.e, 0,
                 "SELECT coalesce(sum(lag), -1) FROM loom.topic_lag WHERE "
                 "group_name = 'pt4.inventory-participant'");
    tpt_run(&f.e, NULL, NULL, TPT_QUIET_MS);

    st[0] = pt_stats(p[0]);
    st[1] = pt_stats(p[1]);
    conflicts = st[0].conflicts + st[1].conflicts;
    failures = st[0].failures + st[1].failures;
    print_message("contention: handled %llu+%llu, conflicts %llu, "
                  "duplicates %llu, failures %llu\n",
                  (unsigned long long) st[0].handled,
                  (unsigned long long) st[1].handled,
                  (unsigned long long) conflicts,
                  (unsigned long long) (st[0].duplicates + st[1].duplicates),
                  (unsigned long long) failures);
    /* Every command took effect once: one event per saga, one reply. */
    assert_int_equal(st[0].handled + st[1].handled, PT_N_CMDS);
    assert_int_equal(st[0].errors + st[1].errors, 0);
    assert_true(conflicts > 0);
    assert_int_equal(est_ll("SELECT count(DISTINCT split_part(convert_from("
                            "data, 'UTF8'), ' ', 2)) FROM loom.events WHERE "
                            "stream LIKE 'stock-s_' AND type <> "
                            "'ptest.Stocked'"),
                     PT_N_CMDS);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream "
                            "LIKE 'stock-s_' AND type <> 'ptest.Stocked'"),
                     PT_N_CMDS);
    /* No overselling, and none refused while stock was left. */
    for (int i = 0; i < PT_N_SKUS; i++) {
        long long asked = (PT_N_CMDS - i + PT_N_SKUS - 1) / PT_N_SKUS;
        long long want = asked < PT_LIMIT ? asked : PT_LIMIT;
        assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE "
                                "stream = 'stock-%s' AND type = "
                                "'ptest.Reserved'",
                                pt_skus[i]),
                         want);
        assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE "
                                "stream = 'stock-%s' AND type = "
                                "'ptest.Refused'",
                                pt_skus[i]),
                         asked - want);
    }
    /* One reply per command, correlated, matching the events. */
    assert_int_equal(f.rs.n, PT_N_CMDS);
    for (int i = 0; i < PT_N_CMDS; i++) {
        const pt_reply *r = pt_reply_to(&f.rs, &c[i].id);
        assert_non_null(r);
        assert_string_equal(r->key, ids[i]);
        if (strcmp(pt_hdr(r, LOOM_SAGA_HDR_OUTCOME), "success") == 0)
            ok++;
        else
            refused++;
    }
    assert_int_equal(ok, PT_N_SKUS * PT_LIMIT);
    assert_int_equal(refused, PT_N_CMDS - PT_N_SKUS * PT_LIMIT);
    assert_int_equal(failures, refused);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = "
                            "'pt4.inventory-participant'"),
                     0);
    loom_participant_close(p[0]);
    loom_participant_close(p[1]);
    pt_fx_close(&f);
    free(c);
}

/* ---- 5. transient errors ----------------------------------------------------
 */

static void
test_participant_transient_error_commits_nothing_and_retries(void **state)
{
    Ptest__Reserve cmd = PTEST__RESERVE__INIT;
    pt_cmd c;
    pt_fx f;
    pt_defs d;
    loom_participant *p;
    loom_participant_stats st;
    const pt_reply *r;

    (void) state;
    pt_fx_open(&f, "pt5.inventory", "pt5.replies", 5);
    hs.flaky_left = 2;
    hs.flaky_calls = 0;
    p = pt_open(&f, &d, "pt5.inventory", 0);
    cmd.sku = "fig";
    cmd.qty = 1;
    memset(&c, 0, sizeof c);
    c.saga_id = "order-5";
    c.step = "Flaky";
    c.payload = &cmd.base;
    pt_send(f.s, "pt5.inventory", "pt5.replies", &c, 1);
    /* Refused twice, each time delivered again after a backoff. */
    pt_wait(&f.e, &(struct pt_until){&f.rs, 1, {p, NULL}, 1, 2});
    tpt_run(&f.e, NULL, NULL, TPT_QUIET_MS);

    st = pt_stats(p);
    assert_int_equal(hs.flaky_calls, 3);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.handled, 1);
    assert_int_equal(f.rs.n, 1);
    r = pt_reply_to(&f.rs, &c.id);
    assert_non_null(r);
    assert_string_equal(pt_hdr(r, LOOM_SAGA_HDR_OUTCOME), "success");
    /* Only the accepted try's event and statement committed. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream = "
                            "'flaky-order-5'"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM pt_fx WHERE saga = "
                            "'order-5'"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = "
                            "'pt5.inventory-participant'"),
                     0);
    loom_participant_close(p);
    pt_fx_close(&f);
}

/* ---- 6. commands that can never be handled ---------------------------------
 */

static void
test_participant_unknown_step_and_bad_payload_are_dead_lettered(void **state)
{
    static const uint8_t garbage[] = {0x0a, 0x05, 'a', 'b'};
    Ptest__Reserve cmd = PTEST__RESERVE__INIT;
    pt_cmd c[5];
    pt_fx f;
    pt_defs d;
    loom_participant *p;
    loom_participant_stats st;

    (void) state;
    pt_fx_open(&f, "pt6.inventory", "pt6.replies", 2);
    pt_stock(f.s, "kiwi", 10);
    p = pt_open(&f, &d, "pt6.inventory", 0);
    cmd.sku = "kiwi";
    cmd.qty = 1;
    memset(c, 0, sizeof c);
    /* One saga id: one key, one partition, one batch, in this order. */
    for (int i = 0; i < 5; i++) {
        c[i].saga_id = "order-6";
        c[i].step = "Reserve";
        c[i].payload = &cmd.base;
    }
    c[0].step = "Nope";
    c[1].payload = NULL;
    c[1].raw = garbage;
    c[1].raw_len = sizeof garbage;
    c[1].type = "ptest.Reserve";
    c[3].no_headers = 1;
    c[4].type = "ptest.Release";
    pt_send(f.s, "pt6.inventory", "pt6.replies", c, 5);
    tpt_sql_wait(&f.e, 4,
                 "SELECT count(*) FROM loom.topic_dead_letters WHERE "
                 "group_name = 'pt6.inventory-participant'");
    tpt_run(&f.e, NULL, NULL, TPT_QUIET_MS);

    /* The good one went on. */
    st = pt_stats(p);
    assert_int_equal(st.handled, 1);
    /* The unknown step is failed (a newer process may serve it): 2
     * deliveries. The other three can never be handled: rejected on their
     * first delivery. */
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.rejected, 3);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'pt6.inventory-participant' "
                            "AND deliveries = 1 AND error NOT LIKE "
                            "'%%serves no step%%'"),
                     3);
    assert_int_equal(f.rs.n, 1);
    assert_non_null(pt_reply_to(&f.rs, &c[2].id));
    /* Each of the others dead-lettered with its reason. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'pt6.inventory-participant' "
                            "AND error LIKE '%%serves no step Nope of saga "
                            "ptest.Order%%'"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'pt6.inventory-participant' "
                            "AND error LIKE '%%is not a valid "
                            "ptest.Reserve%%'"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'pt6.inventory-participant' "
                            "AND error LIKE '%%not a saga command: missing "
                            "or empty header loom-saga-id%%'"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.topic_dead_letters "
                            "WHERE group_name = 'pt6.inventory-participant' "
                            "AND error LIKE '%%takes a ptest.Reserve, the "
                            "command is a ptest.Release%%'"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.events WHERE stream = "
                            "'stock-kiwi'"),
                     2);
    loom_participant_close(p);
    pt_fx_close(&f);
}

/* ---- 7. bad arguments ------------------------------------------------------
 */

static void
pt_open_refused(loom_runtime *rt, const loom_participant_config *cfg,
                loom_err want, const char *err_has)
{
    loom_participant *p = (loom_participant *) &p;
    char err[512] = "";

    assert_int_equal(loom_participant_open(rt, cfg, &p, err, sizeof err), want);
    assert_null(p);
    if (err_has != NULL && strstr(err, err_has) == NULL)
        fail_msg("error \"%s\" does not say \"%s\"", err, err_has);
}

static const ProtobufCMessageDescriptor not_a_descriptor; /* magic 0 */

static void
test_participant_bad_arguments(void **state)
{
    loom_participant_config cfg = LOOM_PARTICIPANT_CONFIG_INIT;
    loom_participant_step bad_steps[2];
    loom_participant_def bad;
    const loom_participant_def *defs[2];
    const loom_participant_def *twice[3];
    Ptest__Reserve cmd = PTEST__RESERVE__INIT;
    loom_participant_stats st;
    pt_defs d;
    pt_fx f;
    tpt_env other;
    loom_participant *p = NULL;
    const pt_reply *r;
    pt_cmd c;

    (void) state;
    pt_fx_open(&f, "pt7.inventory", "pt7.replies", -1);
    pt_defs_init(&d, "pt7.inventory");
    cfg.transport = f.e.t;
    cfg.defs = d.p;
    cfg.n_defs = 2;

    /* NULLs. */
    assert_int_equal(loom_participant_open(NULL, &cfg, &p, NULL, 0),
                     LOOM_EINVAL);
    pt_open_refused(NULL, &cfg, LOOM_EINVAL, "runtime");
    pt_open_refused(f.e.rt, NULL, LOOM_EINVAL, "config");
    assert_int_equal(loom_participant_open(f.e.rt, &cfg, NULL, NULL, 0),
                     LOOM_EINVAL);
    cfg.transport = NULL;
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, "transport");
    cfg.transport = f.e.t;
    cfg.n_defs = 0;
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, "def");
    cfg.n_defs = 2;
    cfg.defs = NULL;
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, "def");
    /* Bad defs. */
    defs[0] = d.p[0];
    defs[1] = NULL;
    cfg.defs = defs;
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, "def 1 is NULL");
    bad = d.d[0];
    defs[1] = &bad;
    bad.abi = 99;
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, "ABI 99");
    bad = d.d[1];
    bad.name = "";
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, "name");
    bad = d.d[1];
    bad.n_steps = 0;
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, "no steps");
    memcpy(bad_steps, more_steps, sizeof bad_steps);
    bad = d.d[1];
    bad.steps = bad_steps;
    bad_steps[1].handle = NULL;
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, "step Check has no handler");
    memcpy(bad_steps, more_steps, sizeof bad_steps);
    bad_steps[0].reply = NULL;
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, "descriptors");
    memcpy(bad_steps, more_steps, sizeof bad_steps);
    bad_steps[0].failure = &not_a_descriptor;
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, "descriptors");
    memcpy(bad_steps, more_steps, sizeof bad_steps);
    bad_steps[1].saga = NULL;
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, "saga and a step name");
    memcpy(bad_steps, more_steps, sizeof bad_steps);
    bad_steps[1].step = "Flaky"; /* twice in one def */
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, "served twice");
    /* One step served by two defs. */
    twice[0] = d.p[0];
    twice[1] = d.p[1];
    twice[2] = d.p[0];
    cfg.defs = twice;
    cfg.n_defs = 3;
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL,
                    "step Reserve of saga ptest.Order is served twice");
    cfg.defs = d.p;
    cfg.n_defs = 2;
    /* Other settings. */
    cfg.outbox = "no spaces";
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, "outbox");
    cfg.outbox = PT_REP_BOX;
    cfg.max_conflicts = 1001;
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, "max_conflicts");
    cfg.max_conflicts = 0;
    cfg.group = "";
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, NULL);
    cfg.group = NULL;
    tpt_open(&other, "");
    cfg.transport = other.t;
    pt_open_refused(f.e.rt, &cfg, LOOM_EINVAL, "another runtime");
    cfg.transport = f.e.t;
    tpt_close(&other);
    cfg.conninfo = "host=/nonexistent port=1 connect_timeout=1";
    pt_open_refused(f.e.rt, &cfg, LOOM_ECONN, NULL);
    cfg.conninfo = NULL;

    /* The ctx functions with no ctx. */
    assert_null(loom_participant_alloc(NULL, 8));
    assert_null(loom_participant_strdup(NULL, "x"));
    assert_string_equal(loom_participant_saga_id(NULL), "");
    assert_int_equal(loom_participant_attempt(NULL), 0);
    assert_int_equal(loom_participant_load(NULL, &stock_type, "a", NULL, NULL),
                     LOOM_EINVAL);
    assert_int_equal(
        loom_participant_emit(NULL, "s-1", LOOM_EXPECT_ANY, NULL, 0),
        LOOM_EINVAL);
    assert_null(loom_participant_tx(NULL));
    assert_int_equal(loom_participant_fail(NULL, "X", "y"), LOOM_EINVAL);
    loom_participant_close(NULL);
    assert_int_equal(loom_participant_stats_get(NULL, &st), LOOM_EINVAL);

    /* A good one; its handler checks the ctx functions' refusals. */
    p = pt_open(&f, &d, "pt7.inventory", 0);
    assert_int_equal(loom_participant_stats_get(p, NULL), LOOM_EINVAL);
    hs.checks_run = hs.checks_failed = 0;
    cmd.sku = "x";
    memset(&c, 0, sizeof c);
    c.saga_id = "order-7";
    c.step = "Check";
    c.payload = &cmd.base;
    pt_send(f.s, "pt7.inventory", "pt7.replies", &c, 1);
    pt_wait(&f.e, &(struct pt_until){&f.rs, 1, {p, NULL}, 1, 0});
    if (hs.checks_failed)
        fail_msg("in the handler: %s", hs.checks_what);
    assert_int_equal(hs.checks_run, 1);
    /* Its failure message, cut to 1024 bytes of UTF-8. */
    r = pt_reply_to(&f.rs, &c.id);
    assert_non_null(r);
    assert_string_equal(pt_hdr(r, LOOM_SAGA_HDR_FAILURE_CODE), "CHECKED");
    assert_int_equal(strlen(pt_hdr(r, LOOM_SAGA_HDR_FAILURE_MESSAGE)), 1024);
    assert_int_equal(pt_hdr(r, LOOM_SAGA_HDR_FAILURE_MESSAGE)[10], '?');
    loom_participant_close(p);
    pt_fx_close(&f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_participant_handles_a_command_and_replies),
        cmocka_unit_test(
            test_participant_failure_replies_with_code_message_and_payload),
        cmocka_unit_test(
            test_participant_redelivered_command_changes_nothing_twice),
        cmocka_unit_test(
            test_participant_contention_loses_no_update_and_oversells_nothing),
        cmocka_unit_test(
            test_participant_transient_error_commits_nothing_and_retries),
        cmocka_unit_test(
            test_participant_unknown_step_and_bad_payload_are_dead_lettered),
        cmocka_unit_test(test_participant_bad_arguments),
    };
    tpt_debug_from_env();
    return cmocka_run_group_tests_name("saga.participant", tests, group_setup,
                                       est_group_teardown);
}
