/*
 * One saga command in a participant: read its headers (saga/wire.h),
 * find the step it is for, decode it, run the step's handler with a
 * fresh ctx, and queue the reply in the outbox, all into the inbox
 * consumer's unit of work for this message. Everything a handler touches
 * lives in the participant's arena, dropped before the next command: no
 * field of a command, reply or failure is ever freed one by one.
 *
 * Also the ctx functions handlers call (loom_participant_alloc() ...).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "loom/outbox.h"
#include "participant_int.h"
#include "pgwire.h"
#include "text.h"
#include "tx_int.h"

/* Longest failure code and message put in a reply's headers. */
#define PT_MAX_CODE    255
#define PT_MAX_MESSAGE 1024

static void why_set(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
why_set(char *why, size_t whylen, const char *fmt, ...)
{
    if (why != NULL && whylen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
}

/* The step of `saga` named `step` among p's defs, or NULL. Steps are
 * told apart by both names: two sagas may each have a "Reserve". */
static const loom_participant_step *
pt_find(const loom_participant *p, const char *saga, const char *step)
{
    for (size_t d = 0; d < p->n_defs; d++) {
        const loom_participant_def *def = p->defs[d];
        for (size_t i = 0; i < def->n_steps; i++) {
            const loom_participant_step *st = &def->steps[i];
            if (strcmp(st->step, step) == 0 && strcmp(st->saga, saga) == 0) {
                return st;
            }
        }
    }
    return NULL;
}

/* A fresh message of type `d` in the arena (fields at their defaults). */
static ProtobufCMessage *
pt_new(loom_participant *p, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *msg = loom__arena_alloc(&p->arena, d->sizeof_message);
    if (msg != NULL) {
        protobuf_c_message_init(d, msg);
    }
    return msg;
}

/* Packs what a handler filled into the arena. */
static loom_err
pt_pack(loom_participant *p, const ProtobufCMessage *msg, const void **out,
        size_t *len, char *why, size_t whylen)
{
    const char *type = msg->descriptor->name;
    if (!protobuf_c_message_check(msg)) {
        why_set(why, whylen,
                "the handler left its %s incomplete (a required field or "
                "sub-message unset)",
                type);
        return LOOM_EHANDLER;
    }
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > LOOM_OUTBOX_MAX_PAYLOAD) {
        why_set(why, whylen, "the handler's %s is %zu bytes, over %zu", type, n,
                (size_t) LOOM_OUTBOX_MAX_PAYLOAD);
        return LOOM_ETOOBIG;
    }
    void *buf = loom__arena_alloc(&p->arena, n);
    if (buf == NULL) {
        why_set(why, whylen, "out of memory packing %s", type);
        return LOOM_ENOMEM;
    }
    *len = protobuf_c_message_pack(msg, buf);
    *out = buf;
    return LOOM_OK;
}

/* Queues the reply: to the command's reply-to topic, keyed by the saga
 * id, correlated with the command's message id. */
static loom_err
pt_reply(loom_participant *p, loom_participant_ctx *ctx,
         const ProtobufCMessage *payload, char *why, size_t whylen)
{
    const loom__saga_wire *w = ctx->w;
    loom_header h[LOOM__SAGA_WIRE_MAX_HEADERS];
    loom__saga_wire_text text;
    loom_outbox_message om;
    loom_err rc;

    memset(&om, 0, sizeof om);
    if (payload != NULL) {
        rc = pt_pack(p, payload, &om.payload, &om.payload_len, why, whylen);
        if (rc != LOOM_OK) {
            return rc;
        }
        om.type = payload->descriptor->name;
    }
    const char *message =
        ctx->failed && ctx->message[0] != '\0' ? ctx->message : NULL;
    om.n_headers = loom__saga_wire_reply(
        h, &text, w->saga_id, w->saga_type, w->step, w->attempt, &ctx->m->id,
        ctx->failed ? ctx->code : NULL, message);
    om.headers = h;
    om.topic = w->reply_to;
    om.key = w->saga_id;
    om.key_len = strlen(w->saga_id);
    /* Queued with the transaction's other replies after its last
     * handler (participant_batch.c), checked now. */
    rc = loom__outbox_batch_add(&p->replies, ctx->tx, &om);
    if (rc != LOOM_OK) {
        why_set(why, whylen, "the reply to %s could not be queued: %s",
                w->reply_to, loom_tx_errmsg(ctx->tx));
    }
    return rc;
}

/* Reads what the command says and finds its step: LOOM_OK, or the
 * reason it can never be handled here (it ends in the dead letters):
 * LOOM_EDECODE when no redelivery can change that (the inbox consumer
 * rejects it at once), LOOM_EINVAL for a step this process does not
 * serve (a newer one may: failed, so it is retried first). */
static loom_err
pt_command(loom_participant *p, const loom_message *m, loom__saga_wire *w,
           const loom_participant_step **step, char *why, size_t whylen)
{
    char bad[256];
    if (loom__saga_wire_read(m, 0, w, bad, sizeof bad) != LOOM_OK) {
        why_set(why, whylen, "participant %s: not a saga command: %s", p->group,
                bad);
        return LOOM_EDECODE;
    }
    *step = pt_find(p, w->saga_type, w->step);
    if (*step == NULL) {
        why_set(why, whylen,
                "participant %s serves no step %s of saga %s (unknown "
                "step: is this process older than the saga?)",
                p->group, w->step, w->saga_type);
        return LOOM_EINVAL;
    }
    if (w->type != NULL && w->type[0] != '\0' &&
        strcmp(w->type, (*step)->command->name) != 0) {
        why_set(why, whylen,
                "participant %s: step %s of saga %s takes a %s, the "
                "command is a %s",
                p->group, w->step, w->saga_type, (*step)->command->name,
                w->type);
        return LOOM_EDECODE;
    }
    return LOOM_OK;
}

loom_err
loom__participant_handle(loom_participant *p, const loom_message *m,
                         loom_tx *tx, char *why, size_t whylen, int *failure)
{
    static const uint8_t empty[1] = {0};
    const loom_participant_step *st = NULL;
    loom__saga_wire w;
    loom_err rc;

    *failure = 0;
    rc = pt_command(p, m, &w, &st, why, whylen);
    if (rc != LOOM_OK) {
        return rc;
    }
    const ProtobufCMessage *cmd =
        protobuf_c_message_unpack(st->command, &p->arena.pb, m->payload_len,
                                  m->payload != NULL ? m->payload : empty);
    if (cmd == NULL) {
        why_set(why, whylen,
                "participant %s: the payload of step %s of saga %s is not "
                "a valid %s (%zu bytes)",
                p->group, w.step, w.saga_type, st->command->name,
                m->payload_len);
        return LOOM_EDECODE;
    }
    loom_participant_ctx *ctx = loom__arena_alloc(&p->arena, sizeof *ctx);
    ProtobufCMessage *reply = pt_new(p, st->reply);
    ProtobufCMessage *fail = st->failure ? pt_new(p, st->failure) : NULL;
    if (ctx == NULL || reply == NULL || (st->failure != NULL && !fail)) {
        why_set(why, whylen, "participant %s: out of memory", p->group);
        return LOOM_ENOMEM;
    }
    memset(ctx, 0, sizeof *ctx);
    ctx->p = p;
    ctx->tx = tx;
    ctx->m = m;
    ctx->w = &w;
    loom_uuid_format(&m->id, ctx->message_id);

    rc = st->handle(ctx, cmd, reply, fail);
    if (ctx->failed && (rc == LOOM_OK || rc == LOOM_EHANDLER)) {
        *failure = 1;
        return pt_reply(p, ctx, fail, why, whylen);
    }
    if (rc == LOOM_OK) {
        return pt_reply(p, ctx, reply, why, whylen);
    }
    /* Transient: nothing of it commits, the command comes again; but
     * LOOM_EDECODE says it never can be handled: rejected at once. */
    why_set(why, whylen,
            "participant %s: the handler of step %s of saga %s returned %s "
            "(%s)",
            p->group, w.step, w.saga_type, loom_err_name(rc),
            rc == LOOM_EDECODE ? "dead-lettered" : "delivered again later");
    return rc;
}

/* ---- what handlers call ------------------------------------------------ */

void *
loom_participant_alloc(loom_participant_ctx *ctx, size_t n)
{
    if (ctx == NULL) {
        return NULL;
    }
    return loom__arena_alloc(&ctx->p->arena, n);
}

char *
loom_participant_strdup(loom_participant_ctx *ctx, const char *s)
{
    if (ctx == NULL || s == NULL) {
        return NULL;
    }
    return loom__arena_strdup(&ctx->p->arena, s);
}

const char *
loom_participant_saga_id(const loom_participant_ctx *ctx)
{
    return ctx != NULL ? ctx->w->saga_id : "";
}

uint32_t
loom_participant_attempt(const loom_participant_ctx *ctx)
{
    return ctx != NULL ? ctx->w->attempt : 0;
}

loom_err
loom_participant_load(loom_participant_ctx *ctx, const loom_aggregate_type *t,
                      const char *id, void *state, int64_t *version)
{
    if (ctx == NULL) {
        return LOOM_EINVAL;
    }
    return loom_aggregate_load(ctx->p->store, t, id, state, version);
}

loom_err
loom_participant_emit(loom_participant_ctx *ctx, const char *stream,
                      int64_t expected, loom_event_data *events, size_t n)
{
    if (ctx == NULL) {
        return LOOM_EINVAL;
    }
    if (events == NULL || n == 0 || n > LOOM_DEFAULT_MAX_APPEND) {
        /* Refused with its own reason. */
        return loom__append_many_add(&ctx->p->appends, stream, expected, events,
                                     n, &ctx->tx->err);
    }
    /* Events say which saga and which command caused them, unless the
     * handler said otherwise: a copy, so the caller's array is only
     * written where loom_tx_append() promises (the ids). */
    loom_event_data *ev = loom__arena_alloc(&ctx->p->arena, n * sizeof *ev);
    if (ev == NULL) {
        return LOOM_ENOMEM;
    }
    memcpy(ev, events, n * sizeof *ev);
    for (size_t i = 0; i < n; i++) {
        if (ev[i].correlation_id == NULL) {
            ev[i].correlation_id = ctx->w->saga_id;
        }
        if (ev[i].causation_id == NULL) {
            ev[i].causation_id = ctx->message_id;
        }
    }
    /* Written with the transaction's other appends after its last
     * handler (participant_batch.c), checked now. */
    loom_err rc = loom__append_many_add(&ctx->p->appends, stream, expected, ev,
                                        n, &ctx->tx->err);
    if (rc == LOOM_OK) {
        for (size_t i = 0; i < n; i++) {
            events[i].id = ev[i].id;
        }
    }
    return rc;
}

loom_tx *
loom_participant_tx(loom_participant_ctx *ctx)
{
    return ctx != NULL ? ctx->tx : NULL;
}

/* 1 when `code` can travel as a header and be matched by a retry
 * policy: 1 to 255 bytes of UTF-8 without control characters. */
static int
pt_code_ok(const char *code)
{
    return loom__saga_text_problem(code, PT_MAX_CODE) == NULL;
}

/* Cuts `s` (arena) to PT_MAX_MESSAGE bytes of valid UTF-8: a header
 * value must be text, whatever the handler formatted. */
static void
pt_message_clean(char *s)
{
    size_t n = strlen(s), i = 0;
    while (i < n) {
        size_t k = loom__utf8_seq((const unsigned char *) s + i, n - i);
        if (k == 0) {
            s[i] = '?';
            k = 1;
        }
        if (i + k > PT_MAX_MESSAGE) {
            break;
        }
        i += k;
    }
    s[i] = '\0';
}

loom_err
loom_participant_fail(loom_participant_ctx *ctx, const char *code,
                      const char *fmt, ...)
{
    if (ctx == NULL || !pt_code_ok(code)) {
        return LOOM_EINVAL;
    }
    char *c = loom__arena_strdup(&ctx->p->arena, code);
    char *msg = NULL;
    if (c == NULL) {
        return LOOM_ENOMEM;
    }
    if (fmt == NULL) {
        msg = loom__arena_strdup(&ctx->p->arena, "");
    } else {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            n = 0;
        }
        msg = loom__arena_alloc(&ctx->p->arena, (size_t) n + 1);
        if (msg != NULL) {
            va_start(ap, fmt);
            vsnprintf(msg, (size_t) n + 1, fmt, ap);
            va_end(ap);
            pt_message_clean(msg);
        }
    }
    if (msg == NULL) {
        return LOOM_ENOMEM;
    }
    ctx->failed = 1;
    ctx->code = c;
    ctx->message = msg;
    return LOOM_EHANDLER;
}
