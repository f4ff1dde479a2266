/*
 * A saga out of a service: its (loom.saga) and (loom.step) options
 * decoded, forward steps told from compensations, names resolved, and
 * every rule of the definition language checked (docs/saga-reference.md
 * lists them). Each problem becomes one error line naming the file, the
 * service and the rpc.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "loom/options.pb-c.h"
#include "model.h"
#include "names.h"
#include "optdecode.h"

/* Where a problem is: the file and the service, and the rpc if any. */
typedef struct saga_at {
    gen_errors *errs;
    const char *file;
    const char *service; /* full name */
} saga_at;

static void saga_error(const saga_at *at, const char *rpc, const char *fmt, ...)
    GEN_PRINTF(3, 4);

static void
saga_error(const saga_at *at, const char *rpc, const char *fmt, ...)
{
    gen_buf b = GEN_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    gen_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (rpc != NULL) {
        gen_error(at->errs, "%s: service %s, rpc %s: %s", at->file, at->service,
                  rpc, gen_buf_str(&b));
    } else {
        gen_error(at->errs, "%s: service %s: %s", at->file, at->service,
                  gen_buf_str(&b));
    }
    gen_buf_free(&b);
}

/* The saga-level options: 1 for a saga, 0 when the service is not one,
 * -1 when its option is malformed (reported). */
static int
saga_options(gen_pool *p, const gen_types *types, const gen_file_names *fn,
             const gen_sdp *sd, const saga_at *at, gen_saga *s)
{
    ProtobufCMessage *m;
    char err[256];
    gen_opt_rc rc =
        gen_opt_unpack((const ProtobufCMessage *) sd->options, GEN_OPT_SAGA,
                       &loom__saga_options__descriptor, &m, err, sizeof err);
    if (rc == GEN_OPT_ABSENT) {
        return 0;
    }
    if (rc == GEN_OPT_BAD) {
        /* Nothing else about this service can be trusted or checked. */
        saga_error(at, NULL, "option (loom.saga) is malformed: %s", err);
        return -1;
    }
    const Loom__SagaOptions *o = (const Loom__SagaOptions *) m;
    s->version = o->version;
    if (o->version == 0) {
        saga_error(at, NULL, "(loom.saga).version must be at least 1");
    }
    if (o->data == NULL || o->data[0] == '\0') {
        saga_error(at, NULL,
                   "(loom.saga).data is missing: name the message that "
                   "holds the saga's data");
    } else if ((s->data = gen_types_resolve(types, o->data, fn->package)) ==
               NULL) {
        saga_error(at, NULL,
                   "(loom.saga).data \"%s\" is not a message of this file or "
                   "of a file it imports",
                   o->data);
    }
    s->reply_topic = o->reply_topic != NULL
                         ? gen_pool_strdup(p, o->reply_topic)
                         : gen_pool_printf(p, "%s.replies", s->full);
    if (!gen_topic_ok(s->reply_topic)) {
        saga_error(at, NULL,
                   "reply topic \"%s\" is not a topic name (words of ASCII "
                   "letters, digits, '_' and '-' separated by dots, at most "
                   "%d bytes)",
                   s->reply_topic, GEN_MAX_TOPIC);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 1;
}

/* The retry policy of a step, defaults where unset; checks it. */
static void
saga_retry(gen_pool *p, const Loom__RetryPolicy *r, const saga_at *at,
           const char *rpc, gen_retry *out)
{
    /* The defaults of options.proto, for a step without `retry`. */
    out->max_attempts = 3;
    out->initial_backoff_ms = 100;
    out->multiplier = 2.0;
    out->max_backoff_ms = 10000;
    if (r == NULL) {
        return;
    }
    out->max_attempts = r->max_attempts;
    out->initial_backoff_ms = r->initial_backoff_ms;
    out->multiplier = r->multiplier;
    out->max_backoff_ms = r->max_backoff_ms;
    if (r->max_attempts == 0) {
        saga_error(at, rpc, "retry.max_attempts must be at least 1");
    }
    if (r->initial_backoff_ms == 0) {
        saga_error(at, rpc, "retry.initial_backoff_ms must be at least 1");
    }
    if (!isfinite(r->multiplier) || r->multiplier < 1.0) {
        saga_error(at, rpc,
                   "retry.multiplier must be a finite number >= 1 (it is %g)",
                   r->multiplier);
    }
    if (r->max_backoff_ms < r->initial_backoff_ms) {
        saga_error(at, rpc,
                   "retry.max_backoff_ms (%u) must be at least "
                   "retry.initial_backoff_ms (%u)",
                   (unsigned) r->max_backoff_ms,
                   (unsigned) r->initial_backoff_ms);
    }
    out->non_retryable = gen_pool_array(p, r->n_non_retryable, sizeof(char *));
    out->n_non_retryable = r->n_non_retryable;
    for (size_t i = 0; i < r->n_non_retryable; i++) {
        const char *code = GEN_S(r->non_retryable[i]);
        if (!gen_text_ok(code, GEN_MAX_NAME)) {
            saga_error(at, rpc,
                       "retry.non_retryable code %zu is empty, longer than %d "
                       "bytes, not UTF-8 or has control characters",
                       i, GEN_MAX_NAME);
        }
        out->non_retryable[i] = gen_pool_strdup(p, code);
    }
}

/* A step's participant topic; "" when missing (reported). */
static const char *
saga_participant(gen_pool *p, const Loom__StepOptions *o, int bad_options,
                 const saga_at *at, const char *rpc)
{
    if (bad_options) {
        return ""; /* reported: nothing more to say */
    }
    if (o == NULL || o->participant == NULL || o->participant[0] == '\0') {
        saga_error(at, rpc,
                   "(loom.step).participant is missing: name the topic its "
                   "commands are sent to");
        return "";
    }
    if (!gen_topic_ok(o->participant)) {
        saga_error(at, rpc,
                   "participant \"%s\" is not a topic name (words of "
                   "ASCII letters, digits, '_' and '-' separated by "
                   "dots, at most %d bytes)",
                   o->participant, GEN_MAX_TOPIC);
    }
    return gen_pool_strdup(p, o->participant);
}

/* A step's timeout (default 30 s); 0 when out of range (reported). */
static uint32_t
saga_timeout(const Loom__StepOptions *o, const saga_at *at, const char *rpc)
{
    int64_t timeout = o != NULL ? o->timeout_ms : 30000;
    if (timeout <= 0) {
        saga_error(at, rpc, "timeout_ms must be positive (it is %lld)",
                   (long long) timeout);
        return 0;
    }
    if (timeout > (int64_t) UINT32_MAX) {
        saga_error(at, rpc, "timeout_ms must be at most %lu (it is %lld)",
                   (unsigned long) UINT32_MAX, (long long) timeout);
        return 0;
    }
    return (uint32_t) timeout;
}

/* A step (forward or compensation) from its rpc and options. */
static void
saga_step(gen_pool *p, const gen_types *types, const gen_file_names *fn,
          const gen_saga *s, const gen_rdp *rd, const Loom__StepOptions *o,
          int bad_options, const saga_at *at, gen_step *st)
{
    const char *rpc = st->name;
    st->c_lower =
        gen_pool_printf(p, "%s__%s", s->c_lower, gen_camel_to_lower(p, rpc));
    st->compensation = -1;
    st->forward = -1;
    if (rd->client_streaming || rd->server_streaming) {
        saga_error(at, rpc, "a step cannot stream: remove `stream`");
    }
    st->command = gen_types_find(types, GEN_S(rd->input_type));
    st->reply = gen_types_find(types, GEN_S(rd->output_type));
    if (st->command == NULL || st->reply == NULL) {
        saga_error(at, rpc,
                   "its request or response type is not a message of the "
                   "request (%s, %s)",
                   GEN_S(rd->input_type), GEN_S(rd->output_type));
    }
    if (!gen_text_ok(rpc, GEN_MAX_NAME)) {
        saga_error(at, rpc, "the rpc name is longer than %d bytes",
                   GEN_MAX_NAME);
    }
    st->participant = saga_participant(p, o, bad_options, at, rpc);
    if (o != NULL && o->failure != NULL && o->failure[0] != '\0') {
        st->failure = gen_types_resolve(types, o->failure, fn->package);
        if (st->failure == NULL) {
            saga_error(at, rpc,
                       "failure type \"%s\" is not a message of this file or "
                       "of a file it imports",
                       o->failure);
        }
    }
    st->timeout_ms = saga_timeout(o, at, rpc);
    saga_retry(p, o != NULL ? o->retry : NULL, at, rpc, &st->retry);
}

/* The index of the rpc called `name` in sd, or -1. */
static long
saga_find_rpc(const gen_sdp *sd, const char *name)
{
    for (size_t i = 0; i < sd->n_method; i++) {
        if (strcmp(GEN_S(sd->method[i]->name), name) == 0) {
            return (long) i;
        }
    }
    return -1;
}

/* 1 when the options name a compensation ("" does not). */
static int
saga_has_comp(const Loom__StepOptions *o)
{
    return o != NULL && o->compensation != NULL && o->compensation[0] != '\0';
}

/*
 * Tells forward steps from compensations: comp_of[j] is the rpc that
 * names rpc j as its compensation, or -1. Refuses unknown names, an rpc
 * that undoes itself, and one compensation shared by two steps.
 */
static void
saga_classify(const gen_sdp *sd, Loom__StepOptions *const *opts, long *comp_of,
              const saga_at *at)
{
    size_t n = sd->n_method;
    for (size_t i = 0; i < n; i++) {
        comp_of[i] = -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *rpc = GEN_S(sd->method[i]->name);
        if (!saga_has_comp(opts[i])) {
            continue;
        }
        const char *c = opts[i]->compensation;
        long j = saga_find_rpc(sd, c);
        if (j < 0) {
            saga_error(at, rpc,
                       "compensation \"%s\" is not an rpc of this service", c);
        } else if ((size_t) j == i) {
            saga_error(at, rpc, "a step cannot be its own compensation");
        } else if (comp_of[j] >= 0) {
            saga_error(at, rpc,
                       "compensation \"%s\" already undoes rpc %s: each step "
                       "needs an rpc of its own",
                       c, GEN_S(sd->method[comp_of[j]]->name));
        } else {
            comp_of[j] = (long) i;
        }
    }
    for (size_t j = 0; j < n; j++) {
        if (comp_of[j] >= 0 && saga_has_comp(opts[j])) {
            saga_error(at, GEN_S(sd->method[j]->name),
                       "it is the compensation of rpc %s, so it cannot have "
                       "a compensation of its own (\"%s\")",
                       GEN_S(sd->method[comp_of[j]]->name),
                       opts[j]->compensation);
        }
    }
}

/* Fills s->steps and s->comps from the classified rpcs. */
static void
saga_steps(gen_pool *p, const gen_types *types, const gen_file_names *fn,
           const gen_sdp *sd, Loom__StepOptions *const *opts, const int *bad,
           const long *comp_of, long *comp_idx, const saga_at *at, gen_saga *s)
{
    size_t n = sd->n_method, nf = 0, nc = 0;
    for (size_t i = 0; i < n; i++) {
        if (comp_of[i] >= 0) {
            comp_idx[i] = (long) nc++;
        } else {
            comp_idx[i] = (long) nf++;
        }
    }
    s->steps = gen_pool_array(p, nf, sizeof(gen_step));
    s->comps = gen_pool_array(p, nc, sizeof(gen_step));
    s->n_steps = nf;
    s->n_comps = nc;
    for (size_t i = 0; i < n; i++) {
        gen_step *st =
            comp_of[i] >= 0 ? &s->comps[comp_idx[i]] : &s->steps[comp_idx[i]];
        st->name = GEN_S(sd->method[i]->name);
        st->is_compensation = comp_of[i] >= 0;
        saga_step(p, types, fn, s, sd->method[i], opts[i], bad[i], at, st);
    }
    /* Link each forward step and its compensation both ways. */
    for (size_t j = 0; j < n; j++) {
        if (comp_of[j] < 0 || comp_of[comp_of[j]] >= 0) {
            continue; /* not a compensation, or undoes one (refused) */
        }
        gen_step *fwd = &s->steps[comp_idx[comp_of[j]]];
        fwd->compensation = (int32_t) comp_idx[j];
        s->comps[comp_idx[j]].forward = (int32_t) comp_idx[comp_of[j]];
    }
    if (n == 0) {
        saga_error(at, NULL, "a saga needs at least one rpc (its steps)");
    } else if (nf == 0) {
        saga_error(at, NULL,
                   "a saga needs at least one forward step (an rpc that is "
                   "not a compensation)");
    } else if (s->steps[nf - 1].compensation >= 0) {
        const gen_step *last = &s->steps[nf - 1];
        saga_error(at, last->name,
                   "compensation \"%s\" on the last forward step can never "
                   "run (the saga completes when this step succeeds): "
                   "remove it, or add a step after it",
                   s->comps[last->compensation].name);
    }
}

/* Step options in a service that is not a saga: a forgotten (loom.saga),
 * most likely; silence would generate nothing and say nothing. */
static void
saga_stray_steps(const gen_sdp *sd, const saga_at *at)
{
    for (size_t i = 0; i < sd->n_method; i++) {
        uint8_t *bytes;
        size_t len;
        gen_opt_rc rc =
            gen_opt_join((const ProtobufCMessage *) sd->method[i]->options,
                         GEN_OPT_STEP, &bytes, &len, NULL, 0);
        free(bytes);
        if (rc != GEN_OPT_ABSENT) {
            saga_error(at, GEN_S(sd->method[i]->name),
                       "it has option (loom.step) but the service has no "
                       "option (loom.saga): add one to make the service a "
                       "saga, or remove the step options");
            return;
        }
    }
}

/* Commands and replies on one topic would be consumed by both sides. */
static void
saga_reply_topic_apart(const gen_saga *s, const saga_at *at)
{
    for (size_t i = 0; i < s->n_steps + s->n_comps; i++) {
        const gen_step *st =
            i < s->n_steps ? &s->steps[i] : &s->comps[i - s->n_steps];
        if (strcmp(st->participant, s->reply_topic) == 0) {
            saga_error(at, st->name,
                       "participant \"%s\" is the saga's reply topic: "
                       "commands and replies need topics of their own",
                       st->participant);
        }
    }
}

gen_saga *
gen_saga_build(gen_pool *p, const gen_types *types, const gen_fdp *fd,
               const gen_file_names *fn, const gen_sdp *sd, gen_errors *errs)
{
    gen_saga *s = gen_pool_alloc(p, sizeof(*s));
    s->name = GEN_S(sd->name);
    s->full = fn->package[0] != '\0'
                  ? gen_pool_printf(p, "%s.%s", fn->package, s->name)
                  : gen_pool_strdup(p, s->name);
    s->c_lower = gen_full_to_lower(p, s->full, fn->package, fn->c_package);
    saga_at at = {errs, GEN_S(fd->name), s->full};
    int is_saga = saga_options(p, types, fn, sd, &at, s);
    if (is_saga == 0) {
        saga_stray_steps(sd, &at);
    }
    if (is_saga <= 0) {
        return NULL;
    }
    if (!gen_text_ok(s->full, GEN_MAX_NAME)) {
        saga_error(&at, NULL, "the saga's name is longer than %d bytes",
                   GEN_MAX_NAME);
    }
    size_t n = sd->n_method;
    Loom__StepOptions **opts = gen_pool_array(p, n, sizeof(*opts));
    long *comp_of = gen_pool_array(p, n, sizeof(long));
    long *comp_idx = gen_pool_array(p, n, sizeof(long));
    int *bad = gen_pool_array(p, n, sizeof(int));
    for (size_t i = 0; i < n; i++) {
        const gen_rdp *rd = sd->method[i];
        ProtobufCMessage *m;
        char err[256];
        gen_opt_rc rc = gen_opt_unpack(
            (const ProtobufCMessage *) rd->options, GEN_OPT_STEP,
            &loom__step_options__descriptor, &m, err, sizeof err);
        if (rc == GEN_OPT_BAD) {
            saga_error(&at, GEN_S(rd->name),
                       "option (loom.step) is malformed: %s", err);
            bad[i] = 1;
        }
        opts[i] = (Loom__StepOptions *) m;
    }
    saga_classify(sd, opts, comp_of, &at);
    saga_steps(p, types, fn, sd, opts, bad, comp_of, comp_idx, &at, s);
    saga_reply_topic_apart(s, &at);
    for (size_t i = 0; i < n; i++) {
        if (opts[i] != NULL) {
            protobuf_c_message_free_unpacked(&opts[i]->base, NULL);
        }
    }
    return s;
}
