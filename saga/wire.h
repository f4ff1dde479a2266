/*
 * Private to saga/: the headers that carry a saga's commands and replies
 * (LOOM_SAGA_HDR_* in loom/saga.h, "The wire"), read from a delivered
 * message and written for a new one.
 */
#ifndef LOOM_SAGA_WIRE_H
#define LOOM_SAGA_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "loom/saga.h"
#include "loom/uuid.h"

/* What a command or reply says about its saga. Strings are borrowed from
 * the message (NULL when the header is absent). */
typedef struct loom__saga_wire {
    const char *saga_id;
    const char *saga_type;
    const char *step;
    const char *reply_to;        /* commands */
    const char *outcome;         /* replies: "success" or "failure" */
    const char *failure_code;    /* replies that failed */
    const char *failure_message; /* replies that failed; may be NULL */
    const char *type;            /* header "x-type": the payload's type */
    uint32_t attempt;            /* 0 when absent */
    int has_correlation;
    loom_uuid correlation; /* replies: the command's message id */
} loom__saga_wire;

/* The most headers a command or a reply carries. */
#define LOOM__SAGA_WIRE_MAX_HEADERS 10

/*
 * Reads m's saga headers into w. `reply` 1 demands what a reply needs (id,
 * type, step, correlation, an outcome of "success" or "failure", a code
 * with "failure"), 0 what a command needs (id, type, step, attempt >= 1,
 * reply_to). Returns LOOM_OK, or LOOM_EINVAL with the reason in why.
 */
loom_err loom__saga_wire_read(const loom_message *m, int reply,
                              loom__saga_wire *w, char *why, size_t whylen);

/* Buffers for the text of the numbers and ids written as headers. */
typedef struct loom__saga_wire_text {
    char attempt[16];
    char correlation[LOOM_UUID_STRLEN];
} loom__saga_wire_text;

/*
 * Fills h (room for LOOM__SAGA_WIRE_MAX_HEADERS) with a command's
 * headers; strings are borrowed from the arguments and `text`. Returns
 * how many.
 */
size_t loom__saga_wire_command(loom_header *h, loom__saga_wire_text *text,
                               const char *saga_id, const char *saga_type,
                               const char *step, uint32_t attempt,
                               const char *reply_to);

/* The same for a reply; `failure_code` NULL for a success. */
size_t loom__saga_wire_reply(loom_header *h, loom__saga_wire_text *text,
                             const char *saga_id, const char *saga_type,
                             const char *step, uint32_t attempt,
                             const loom_uuid *correlation,
                             const char *failure_code,
                             const char *failure_message);

#endif /* LOOM_SAGA_WIRE_H */
