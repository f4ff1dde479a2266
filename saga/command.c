/*
 * A saga's steps and their commands: which step runs in a given state,
 * where compensation goes next, and building one attempt's command with
 * the step's builder. Starting a saga (start.c) and the orchestrator's
 * transitions (decide.c) share it, so step 0's command is built exactly
 * as every later one.
 */
#include <stdio.h>
#include <string.h>

#include "loom/outbox.h"
#include "pgwire.h"
#include "saga_int.h"
#include "text.h"

const char *
loom__saga_wait_name(loom__saga_wait w)
{
    switch (w) {
    case LOOM__WAIT_REPLY:
        return "reply";
    case LOOM__WAIT_RETRY:
        return "retry";
    case LOOM__WAIT_NONE:
        break;
    }
    return NULL;
}

loom__saga_wait
loom__saga_wait_parse(const char *s)
{
    if (s != NULL && strcmp(s, "reply") == 0) {
        return LOOM__WAIT_REPLY;
    }
    if (s != NULL && strcmp(s, "retry") == 0) {
        return LOOM__WAIT_RETRY;
    }
    return LOOM__WAIT_NONE;
}

int
loom__saga_id_ok(const char *id)
{
    return loom__saga_text_problem(id, LOOM_SAGA_MAX_ID) == NULL;
}

const loom_saga_step *
loom__saga_current(const loom_saga_def *def, loom_saga_state state,
                   int32_t step)
{
    const loom_saga_step *fwd;

    if (def == NULL || step < 0 || (size_t) step >= def->n_steps) {
        return NULL;
    }
    fwd = &def->steps[step];
    if (state == LOOM_SAGA_RUNNING) {
        return fwd;
    }
    if ((state == LOOM_SAGA_COMPENSATING ||
         state == LOOM_SAGA_COMPENSATION_FAILED) &&
        fwd->compensation >= 0 &&
        (size_t) fwd->compensation < def->n_compensations) {
        return &def->compensations[fwd->compensation];
    }
    return NULL;
}

int32_t
loom__saga_next_comp(const loom_saga_def *def, int32_t from)
{
    if (from >= (int32_t) def->n_steps) {
        from = (int32_t) def->n_steps - 1;
    }
    for (int32_t k = from; k >= 0; k--) {
        if (def->steps[k].compensation >= 0) {
            return k;
        }
    }
    return -1;
}

loom_err
loom__saga_pack(loom__arena *a, const ProtobufCMessage *m, void **out,
                size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    void *p = loom__arena_alloc(a, n);

    if (p == NULL) {
        return LOOM_ENOMEM;
    }
    *len = protobuf_c_message_pack(m, p);
    *out = p;
    return LOOM_OK;
}

loom_err
loom__saga_build(loom__arena *work, loom__arena *out, const loom_saga_step *st,
                 const char *id, uint32_t attempt, const ProtobufCMessage *data,
                 void **payload, size_t *len, char *why, size_t whylen)
{
    loom_saga_ctx ctx = {work, id, attempt};
    ProtobufCMessage *cmd =
        loom__arena_alloc(work, st->command->sizeof_message);
    loom_err rc;

    if (cmd == NULL) {
        snprintf(why, whylen, "out of memory building %s", st->name);
        return LOOM_ENOMEM;
    }
    protobuf_c_message_init(st->command, cmd);
    rc = st->build(&ctx, data, cmd);
    if (rc != LOOM_OK) {
        snprintf(why, whylen, "the builder of %s returned %s", st->name,
                 loom_err_name(rc));
        return LOOM_EHANDLER;
    }
    if (loom__saga_pack(out, cmd, payload, len) != LOOM_OK) {
        snprintf(why, whylen, "out of memory packing the command of %s",
                 st->name);
        return LOOM_ENOMEM;
    }
    if (*len > LOOM_OUTBOX_MAX_PAYLOAD) {
        snprintf(why, whylen,
                 "the command of %s packs to %zu bytes, over "
                 "LOOM_OUTBOX_MAX_PAYLOAD (%zu)",
                 st->name, *len, LOOM_OUTBOX_MAX_PAYLOAD);
        return LOOM_ETOOBIG;
    }
    return LOOM_OK;
}
