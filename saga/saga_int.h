/*
 * Private to saga/: what starting a saga and the orchestrator share. A
 * saga instance as the orchestrator knows it, the handler context, and
 * building a step's command (the same code for step 0 at the start and for
 * every later attempt).
 */
#ifndef LOOM_SAGA_INT_H
#define LOOM_SAGA_INT_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "arena.h"
#include "buf.h"
#include "loom/saga.h"
#include "loom/uuid.h"

/* Handlers get this as their loom_saga_ctx: memory in `arena` lives until
 * the transition that called them is encoded. */
struct loom_saga_ctx {
    loom__arena *arena;
    const char *id;
    uint32_t attempt;
};

/* What a saga waits for until its deadline (saga_instances.waiting). */
typedef enum loom__saga_wait {
    LOOM__WAIT_NONE = 0, /* final, or COMPENSATION_FAILED */
    LOOM__WAIT_REPLY,    /* the reply to command_id; deadline: timeout */
    LOOM__WAIT_RETRY     /* a backoff; deadline: the next attempt */
} loom__saga_wait;

/* "reply", "retry", or NULL for none. */
const char *loom__saga_wait_name(loom__saga_wait w);
/* The value called `s` (NULL or unknown: LOOM__WAIT_NONE). */
loom__saga_wait loom__saga_wait_parse(const char *s);

/* The part of a saga_instances row that decisions read. Who owns the
 * strings and the data depends on where it lives: a cache entry owns
 * copies (loom_malloc); a batch's working copy points into its arena. */
typedef struct loom__saga_inst {
    char *id;
    const loom_saga_def *def; /* NULL: a type and version not run here */
    char *outbox;
    loom_saga_state state;
    int32_t step; /* the forward step, or the one being compensated */
    uint32_t attempt;
    loom__saga_wait waiting;
    loom_uuid command_id; /* the command in flight; nil: none */
    int64_t version;
    unsigned char *data; /* the saga data, packed */
    size_t data_len;
} loom__saga_inst;

/* 1 when `id` is a saga id: 1 to LOOM_SAGA_MAX_ID bytes of UTF-8 without
 * control characters. */
int loom__saga_id_ok(const char *id);

/* The step a saga in `state` at forward step `step` runs now: the forward
 * step while RUNNING, its compensation while COMPENSATING or
 * COMPENSATION_FAILED; NULL when there is none. */
const loom_saga_step *loom__saga_current(const loom_saga_def *def,
                                         loom_saga_state state, int32_t step);

/* The latest forward step at or before `from` that has a compensation,
 * or -1: where compensation goes next. */
int32_t loom__saga_next_comp(const loom_saga_def *def, int32_t from);

/* Packs `m` into arena memory. Errors: LOOM_ENOMEM. */
loom_err loom__saga_pack(loom__arena *a, const ProtobufCMessage *m, void **out,
                         size_t *len);

/*
 * Builds the command of `st` for attempt `attempt` of saga `id`: the
 * message is made in `work` (handler memory) and filled by st->build from
 * `data`; its packed bytes go to `out` (memory that must outlive `work`'s
 * next reset). `why` gets the reason of a failure. Errors: LOOM_EHANDLER
 * (the builder returned an error), LOOM_ETOOBIG (over
 * LOOM_OUTBOX_MAX_PAYLOAD), LOOM_ENOMEM.
 */
loom_err loom__saga_build(loom__arena *work, loom__arena *out,
                          const loom_saga_step *st, const char *id,
                          uint32_t attempt, const ProtobufCMessage *data,
                          void **payload, size_t *len, char *why,
                          size_t whylen);

/* The binary-format type oids the saga statements use beyond pgwire.h's. */
#define LOOM__OID_AINT8 1016
#define LOOM__OID_ABOOL 1000

#endif /* LOOM_SAGA_INT_H */
