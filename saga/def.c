/*
 * Saga states by name, and the check every definition passes before an
 * orchestrator or loom_saga_start_tx() trusts it. protoc-gen-loom refuses
 * bad .proto definitions at build time; this catches hand-written tables
 * and tables generated for another ABI.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "loom/saga.h"
#include "loom/transport.h"
#include "text.h"

static const char *const state_names[] = {
    [LOOM_SAGA_RUNNING] = "RUNNING",
    [LOOM_SAGA_COMPENSATING] = "COMPENSATING",
    [LOOM_SAGA_COMPLETED] = "COMPLETED",
    [LOOM_SAGA_COMPENSATED] = "COMPENSATED",
    [LOOM_SAGA_COMPENSATION_FAILED] = "COMPENSATION_FAILED",
    [LOOM_SAGA_ABORTED] = "ABORTED",
};

#define N_STATES (sizeof state_names / sizeof state_names[0])

const char *
loom_saga_state_name(loom_saga_state s)
{
    if ((unsigned) s >= N_STATES || state_names[s] == NULL) {
        return "UNKNOWN";
    }
    return state_names[s];
}

loom_saga_state
loom_saga_state_parse(const char *name)
{
    if (name == NULL) {
        return (loom_saga_state) 0;
    }
    for (size_t i = 1; i < N_STATES; i++) {
        if (state_names[i] != NULL && strcmp(state_names[i], name) == 0) {
            return (loom_saga_state) i;
        }
    }
    return (loom_saga_state) 0;
}

/* Writes "saga <name>: <what>" to err and returns LOOM_EINVAL. */
static loom_err
refuse(char *err, size_t errlen, const loom_saga_def *def, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        int n = snprintf(err, errlen, "saga %s: ",
                         def != NULL && def->name != NULL ? def->name : "?");
        if (n >= 0 && (size_t) n < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + n, errlen - (size_t) n, fmt, ap);
            va_end(ap);
        }
    }
    return LOOM_EINVAL;
}

static int
is_message(const ProtobufCMessageDescriptor *d)
{
    return d != NULL && d->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC;
}

static int
name_ok(const char *s, size_t max)
{
    return loom__saga_text_problem(s, max) == NULL;
}

/* One step, forward (`forward` 1) or compensation. */
static loom_err
check_step(const loom_saga_def *def, const loom_saga_step *st, int forward,
           size_t i, char *err, size_t errlen)
{
    const char *what = forward ? "step" : "compensation";
    if (!name_ok(st->name, 255)) {
        return refuse(err, errlen, def, "%s %zu has no valid name", what, i);
    }
    if (!loom_topic_name_valid(st->participant, 0)) {
        return refuse(err, errlen, def,
                      "%s %s: participant \"%s\" is not a topic name (1 to "
                      "249 bytes of words of letters, digits, '_' and '-' "
                      "separated by single dots)",
                      what, st->name, st->participant ? st->participant : "");
    }
    if (strcmp(st->participant, def->reply_topic) == 0) {
        return refuse(err, errlen, def,
                      "%s %s: participant \"%s\" is the saga's reply topic: "
                      "commands and replies on one topic would be consumed "
                      "by both sides",
                      what, st->name, st->participant);
    }
    if (!is_message(st->command) || !is_message(st->reply)) {
        return refuse(err, errlen, def,
                      "%s %s needs command and reply message descriptors", what,
                      st->name);
    }
    if (st->failure != NULL && !is_message(st->failure)) {
        return refuse(err, errlen, def,
                      "%s %s: failure is not a message descriptor", what,
                      st->name);
    }
    if (st->timeout_ms == 0) {
        return refuse(err, errlen, def, "%s %s: timeout_ms must be at least 1",
                      what, st->name);
    }
    const loom_saga_retry *r = &st->retry;
    if (r->max_attempts == 0 || r->initial_backoff_ms == 0 ||
        !(r->multiplier >= 1.0) || !isfinite(r->multiplier) ||
        r->max_backoff_ms < r->initial_backoff_ms) {
        return refuse(err, errlen, def,
                      "%s %s: retry needs max_attempts >= 1, "
                      "initial_backoff_ms >= 1, a finite multiplier >= 1 and "
                      "max_backoff_ms >= initial_backoff_ms",
                      what, st->name);
    }
    if (r->n_non_retryable > 0 && r->non_retryable == NULL) {
        return refuse(err, errlen, def, "%s %s: non_retryable is NULL", what,
                      st->name);
    }
    for (size_t k = 0; k < r->n_non_retryable; k++) {
        const char *why = loom__saga_text_problem(r->non_retryable[k], 255);
        if (why != NULL) {
            return refuse(err, errlen, def,
                          "%s %s: non_retryable code %zu %s (a code is 1 to "
                          "255 bytes of UTF-8 without control characters)",
                          what, st->name, k, why);
        }
    }
    if (st->build == NULL || st->on_reply == NULL) {
        return refuse(err, errlen, def,
                      "%s %s needs its build and on_reply handlers", what,
                      st->name);
    }
    if (forward) {
        if (st->on_failed == NULL) {
            return refuse(err, errlen, def,
                          "step %s needs its on_failed handler", st->name);
        }
        if (st->compensation < -1 ||
            (st->compensation >= 0 &&
             (size_t) st->compensation >= def->n_compensations)) {
            return refuse(err, errlen, def,
                          "step %s: compensation index %d is out of range",
                          st->name, (int) st->compensation);
        }
        if (st->compensation >= 0 && i + 1 == def->n_steps) {
            return refuse(err, errlen, def,
                          "step %s is the last step: its compensation could "
                          "never run",
                          st->name);
        }
    } else if (st->compensation != -1) {
        return refuse(err, errlen, def,
                      "compensation %s cannot have a compensation", st->name);
    }
    return LOOM_OK;
}

loom_err
loom_saga_def_check(const loom_saga_def *def, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (def == NULL) {
        return refuse(err, errlen, def, "the definition is NULL");
    }
    if (def->abi != LOOM_SAGA_ABI_VERSION) {
        return refuse(err, errlen, def,
                      "generated for ABI %u, this library reads %u: "
                      "regenerate it with this protoc-gen-loom",
                      (unsigned) def->abi, LOOM_SAGA_ABI_VERSION);
    }
    if (!name_ok(def->name, 255)) {
        return refuse(err, errlen, def, "the name is empty or too long");
    }
    if (def->version == 0) {
        return refuse(err, errlen, def, "version must be at least 1");
    }
    if (!loom_topic_name_valid(def->reply_topic, 0)) {
        return refuse(err, errlen, def,
                      "reply_topic \"%s\" is not a topic name (1 to 249 "
                      "bytes of words of letters, digits, '_' and '-' "
                      "separated by single dots)",
                      def->reply_topic ? def->reply_topic : "");
    }
    if (!is_message(def->data)) {
        return refuse(err, errlen, def, "data is not a message descriptor");
    }
    if (def->n_steps == 0 || def->steps == NULL) {
        return refuse(err, errlen, def, "it has no steps");
    }
    if (def->n_compensations > 0 && def->compensations == NULL) {
        return refuse(err, errlen, def, "compensations is NULL");
    }
    for (size_t i = 0; i < def->n_steps; i++) {
        loom_err rc = check_step(def, &def->steps[i], 1, i, err, errlen);
        if (rc != LOOM_OK) {
            return rc;
        }
    }
    for (size_t i = 0; i < def->n_compensations; i++) {
        loom_err rc =
            check_step(def, &def->compensations[i], 0, i, err, errlen);
        if (rc != LOOM_OK) {
            return rc;
        }
    }
    /* A compensation undoes one step: shared, it would run once for each
     * (protoc-gen-loom refuses it too). */
    for (size_t i = 0; i < def->n_steps; i++) {
        for (size_t j = i + 1;
             def->steps[i].compensation >= 0 && j < def->n_steps; j++) {
            if (def->steps[j].compensation == def->steps[i].compensation) {
                return refuse(
                    err, errlen, def,
                    "steps %s and %s share compensation %s: each "
                    "step has its own",
                    def->steps[i].name, def->steps[j].name,
                    def->compensations[def->steps[i].compensation].name);
            }
        }
    }
    /* Step names identify steps on the wire (LOOM_SAGA_HDR_STEP). */
    size_t n = def->n_steps + def->n_compensations;
    for (size_t i = 0; i < n; i++) {
        const loom_saga_step *a = i < def->n_steps
                                      ? &def->steps[i]
                                      : &def->compensations[i - def->n_steps];
        for (size_t j = i + 1; j < n; j++) {
            const loom_saga_step *b =
                j < def->n_steps ? &def->steps[j]
                                 : &def->compensations[j - def->n_steps];
            if (strcmp(a->name, b->name) == 0) {
                return refuse(err, errlen, def, "two steps are named %s",
                              a->name);
            }
        }
    }
    return LOOM_OK;
}
