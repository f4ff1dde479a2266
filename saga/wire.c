/*
 * The saga headers of commands and replies. Header values are text, so a
 * participant in any language can speak the protocol.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static void
why_set(char *why, size_t whylen, const char *what, const char *hdr)
{
    if (why != NULL && whylen > 0) {
        snprintf(why, whylen, "%s header %s", what, hdr);
    }
}

loom_err
loom__saga_wire_read(const loom_message *m, int reply, loom__saga_wire *w,
                     char *why, size_t whylen)
{
    memset(w, 0, sizeof *w);
    const char *attempt = NULL, *correlation = NULL;
    for (size_t i = 0; i < m->n_headers; i++) {
        const char *k = m->headers[i].key, *v = m->headers[i].value;
        if (k == NULL || v == NULL) {
            continue;
        }
        if (strcmp(k, LOOM_SAGA_HDR_ID) == 0) {
            w->saga_id = v;
        } else if (strcmp(k, LOOM_SAGA_HDR_TYPE) == 0) {
            w->saga_type = v;
        } else if (strcmp(k, LOOM_SAGA_HDR_STEP) == 0) {
            w->step = v;
        } else if (strcmp(k, LOOM_SAGA_HDR_ATTEMPT) == 0) {
            attempt = v;
        } else if (strcmp(k, LOOM_SAGA_HDR_REPLY_TO) == 0) {
            w->reply_to = v;
        } else if (strcmp(k, LOOM_SAGA_HDR_CORRELATION) == 0) {
            correlation = v;
        } else if (strcmp(k, LOOM_SAGA_HDR_OUTCOME) == 0) {
            w->outcome = v;
        } else if (strcmp(k, LOOM_SAGA_HDR_FAILURE_CODE) == 0) {
            w->failure_code = v;
        } else if (strcmp(k, LOOM_SAGA_HDR_FAILURE_MESSAGE) == 0) {
            w->failure_message = v;
        } else if (strcmp(k, "x-type") == 0) {
            w->type = v;
        }
    }
    const char *missing = w->saga_id == NULL     ? LOOM_SAGA_HDR_ID
                          : w->saga_type == NULL ? LOOM_SAGA_HDR_TYPE
                          : w->step == NULL      ? LOOM_SAGA_HDR_STEP
                                                 : NULL;
    if (missing == NULL && w->saga_id[0] == '\0') {
        missing = LOOM_SAGA_HDR_ID;
    }
    if (missing != NULL) {
        why_set(why, whylen, "missing or empty", missing);
        return LOOM_EINVAL;
    }
    if (strlen(w->saga_id) > LOOM_SAGA_MAX_ID) {
        why_set(why, whylen, "too long:", LOOM_SAGA_HDR_ID);
        return LOOM_EINVAL;
    }
    if (attempt != NULL) {
        char *end = NULL;
        errno = 0;
        unsigned long a = strtoul(attempt, &end, 10);
        if (errno != 0 || end == attempt || *end != '\0' || a == 0 ||
            a > UINT32_MAX || attempt[0] == '-' || attempt[0] == '+') {
            why_set(why, whylen, "bad", LOOM_SAGA_HDR_ATTEMPT);
            return LOOM_EINVAL;
        }
        w->attempt = (uint32_t) a;
    }
    if (correlation != NULL) {
        if (loom_uuid_parse(&w->correlation, correlation) != LOOM_OK) {
            why_set(why, whylen, "bad", LOOM_SAGA_HDR_CORRELATION);
            return LOOM_EINVAL;
        }
        w->has_correlation = 1;
    }
    if (!reply) {
        if (w->attempt == 0) {
            why_set(why, whylen, "missing", LOOM_SAGA_HDR_ATTEMPT);
            return LOOM_EINVAL;
        }
        if (w->reply_to == NULL || w->reply_to[0] == '\0') {
            why_set(why, whylen, "missing or empty", LOOM_SAGA_HDR_REPLY_TO);
            return LOOM_EINVAL;
        }
        return LOOM_OK;
    }
    if (!w->has_correlation) {
        why_set(why, whylen, "missing", LOOM_SAGA_HDR_CORRELATION);
        return LOOM_EINVAL;
    }
    if (w->outcome == NULL || (strcmp(w->outcome, "success") != 0 &&
                               strcmp(w->outcome, "failure") != 0)) {
        why_set(why, whylen, "missing or bad (success|failure)",
                LOOM_SAGA_HDR_OUTCOME);
        return LOOM_EINVAL;
    }
    if (strcmp(w->outcome, "failure") == 0 &&
        (w->failure_code == NULL || w->failure_code[0] == '\0')) {
        why_set(why, whylen, "a failure needs", LOOM_SAGA_HDR_FAILURE_CODE);
        return LOOM_EINVAL;
    }
    return LOOM_OK;
}

static size_t
put(loom_header *h, size_t n, const char *k, const char *v)
{
    h[n].key = k;
    h[n].value = v;
    return n + 1;
}

size_t
loom__saga_wire_command(loom_header *h, loom__saga_wire_text *text,
                        const char *saga_id, const char *saga_type,
                        const char *step, uint32_t attempt,
                        const char *reply_to)
{
    snprintf(text->attempt, sizeof text->attempt, "%u", (unsigned) attempt);
    size_t n = 0;
    n = put(h, n, LOOM_SAGA_HDR_ID, saga_id);
    n = put(h, n, LOOM_SAGA_HDR_TYPE, saga_type);
    n = put(h, n, LOOM_SAGA_HDR_STEP, step);
    n = put(h, n, LOOM_SAGA_HDR_ATTEMPT, text->attempt);
    n = put(h, n, LOOM_SAGA_HDR_REPLY_TO, reply_to);
    return n;
}

size_t
loom__saga_wire_reply(loom_header *h, loom__saga_wire_text *text,
                      const char *saga_id, const char *saga_type,
                      const char *step, uint32_t attempt,
                      const loom_uuid *correlation, const char *failure_code,
                      const char *failure_message)
{
    snprintf(text->attempt, sizeof text->attempt, "%u", (unsigned) attempt);
    loom_uuid_format(correlation, text->correlation);
    size_t n = 0;
    n = put(h, n, LOOM_SAGA_HDR_ID, saga_id);
    n = put(h, n, LOOM_SAGA_HDR_TYPE, saga_type);
    n = put(h, n, LOOM_SAGA_HDR_STEP, step);
    n = put(h, n, LOOM_SAGA_HDR_ATTEMPT, text->attempt);
    n = put(h, n, LOOM_SAGA_HDR_CORRELATION, text->correlation);
    if (failure_code == NULL) {
        n = put(h, n, LOOM_SAGA_HDR_OUTCOME, "success");
    } else {
        n = put(h, n, LOOM_SAGA_HDR_OUTCOME, "failure");
        n = put(h, n, LOOM_SAGA_HDR_FAILURE_CODE, failure_code);
        if (failure_message != NULL) {
            n = put(h, n, LOOM_SAGA_HDR_FAILURE_MESSAGE, failure_message);
        }
    }
    return n;
}
