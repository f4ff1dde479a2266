/*
 * The saga state machine in memory (decide.h). One event at a time: it
 * bumps the saga's version once, logs what happened, and may send the
 * next command, schedule a retry, start or continue compensation, or end
 * the saga. An event that fails half-way (a handler error) is rolled back
 * from a snapshot, so a batch only ever holds whole transitions.
 *
 * The rules (loom/saga.h): a failure reply with a non-retryable code, or
 * the last attempt failing or timing out, fails a step for good. A forward
 * step that fails for good runs its on_failed handler, then the completed
 * steps are compensated in reverse order, skipping those without a
 * compensation; the failed step itself is compensated only when its last
 * attempt timed out (its outcome is unknown). A compensation that fails
 * for good parks the saga in COMPENSATION_FAILED for an operator.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "decide.h"

/* What an event works on. */
typedef struct ev {
    loom__saga_decider *d;
    size_t w;
    ProtobufCMessage *data; /* unpacked on first use, in d->h */
    int data_dirty;         /* a handler may have changed it */
} ev;

static loom_err send_attempt(ev *e, uint32_t attempt);

static loom__saga_work *
W(const ev *e)
{
    return &e->d->b->works[e->w];
}

static loom_err
fail_why(ev *e, loom_err rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(e->d->why, sizeof e->d->why, fmt, ap);
    va_end(ap);
    return rc;
}

/* A string in the batch's arena (log details, errors); NULL when out of
 * memory, which the batch records. */
static const char *
bfmt(ev *e, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    char *s;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    s = loom__arena_strdup(&e->d->b->arena, buf);
    if (s == NULL) {
        e->d->b->oom = 1;
    }
    return s;
}

static uint64_t
rng_next(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

uint64_t
loom__saga_backoff(const loom_saga_retry *r, uint32_t failed, uint64_t *rng)
{
    double ms = r->initial_backoff_ms;

    for (uint32_t i = 1; i < failed && ms < r->max_backoff_ms; i++) {
        ms *= r->multiplier;
    }
    if (ms > r->max_backoff_ms) {
        ms = r->max_backoff_ms;
    }
    /* Up to 20% more: orchestrators retrying many sagas that failed
     * together do not send their next attempts in lockstep. */
    ms += ms * 0.2 * ((double) (rng_next(rng) >> 11) / 9007199254740992.0);
    return (uint64_t) ms;
}

/* The forward index of the step called `name` (or of the forward step
 * whose compensation it is); -1 when none. */
static int32_t
step_index(const loom_saga_def *def, const char *name)
{
    if (name == NULL) {
        return -1;
    }
    for (size_t i = 0; i < def->n_steps; i++) {
        const loom_saga_step *st = &def->steps[i];
        if (strcmp(st->name, name) == 0 ||
            (st->compensation >= 0 &&
             strcmp(def->compensations[st->compensation].name, name) == 0)) {
            return (int32_t) i;
        }
    }
    return -1;
}

static int
log_add(ev *e, const char *kind, const char *step_name, uint32_t attempt,
        const loom_uuid *msg, const char *detail)
{
    loom__saga_logrec l;

    memset(&l, 0, sizeof l);
    l.work = e->w;
    l.kind = kind;
    l.step = W(e)->s.step;
    l.step_name = step_name;
    l.attempt = attempt;
    if (msg != NULL && !loom_uuid_is_nil(msg)) {
        l.has_msg = 1;
        l.msg = *msg;
    }
    l.detail = detail;
    return loom__saga_batch_log(e->d->b, &l);
}

/* Counts one transition of the saga. */
static void
bump(ev *e)
{
    loom__saga_work *w = W(e);

    w->s.version++;
    w->touched = 1;
    w->in_tx = 1;
    e->d->b->counts.transitions++;
}

static loom_err
ev_data(ev *e)
{
    loom__saga_work *w = W(e);

    if (e->data != NULL) {
        return LOOM_OK;
    }
    e->data = protobuf_c_message_unpack(w->s.def->data, &e->d->h->pb,
                                        w->s.data_len, w->s.data);
    if (e->data == NULL) {
        return fail_why(e, LOOM_EDECODE,
                        "saga \"%s\": its stored data does not decode as %s",
                        w->s.id, w->s.def->data->name);
    }
    return LOOM_OK;
}

static loom_saga_ctx
ev_ctx(ev *e)
{
    loom_saga_ctx c = {e->d->h, W(e)->s.id, W(e)->s.attempt};

    return c;
}

/* The saga ends (or parks) in `state`, logged as `kind`. */
static loom_err
finish(ev *e, loom_saga_state state, const char *kind, const char *detail)
{
    loom__saga_work *w = W(e);

    w->s.state = state;
    w->s.waiting = LOOM__WAIT_NONE;
    w->has_deadline = 0;
    w->ended = state;
    if (state == LOOM_SAGA_COMPLETED) {
        e->d->b->counts.completed++;
    } else if (state == LOOM_SAGA_COMPENSATED) {
        e->d->b->counts.compensated++;
    } else if (state == LOOM_SAGA_COMPENSATION_FAILED) {
        e->d->b->counts.failed++;
    }
    log_add(e, kind, NULL, 0, NULL, detail);
    return LOOM_OK;
}

/* Compensation goes on at the latest step at or before `from` that has
 * one, or the saga is COMPENSATED. */
static loom_err
compensate_from(ev *e, int32_t from, const char *why)
{
    loom__saga_work *w = W(e);
    int32_t k = loom__saga_next_comp(w->s.def, from);
    const loom_saga_step *st;

    if (k < 0) {
        return finish(e, LOOM_SAGA_COMPENSATED, "compensated", why);
    }
    w->s.state = LOOM_SAGA_COMPENSATING;
    w->s.step = k;
    st = loom__saga_current(w->s.def, w->s.state, k);
    log_add(e, "compensate", st->name, 0, NULL, why);
    return send_attempt(e, 1);
}

static int
non_retryable(const loom_saga_step *st, const char *code)
{
    for (size_t i = 0; i < st->retry.n_non_retryable; i++) {
        if (strcmp(st->retry.non_retryable[i], code) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The current step failed for good: a forward step runs on_failed and
 * compensation starts; a compensation parks the saga. */
static loom_err
failed_for_good(ev *e, const char *code, const char *message,
                const ProtobufCMessage *failure, int timed_out)
{
    loom__saga_work *w = W(e);
    const loom_saga_step *st =
        loom__saga_current(w->s.def, w->s.state, w->s.step);
    loom_saga_failure why = {code, message ? message : "", w->s.attempt,
                             timed_out};
    loom_saga_ctx ctx;
    loom_err rc;

    if (w->s.state == LOOM_SAGA_COMPENSATING) {
        w->error = bfmt(e,
                        "compensation %s of step %s failed after %u "
                        "attempt(s): %s: %s",
                        st->name, w->s.def->steps[w->s.step].name, w->s.attempt,
                        code, why.message);
        return finish(e, LOOM_SAGA_COMPENSATION_FAILED, "compensation_failed",
                      w->error);
    }
    rc = ev_data(e);
    if (rc != LOOM_OK) {
        return rc;
    }
    ctx = ev_ctx(e);
    rc = st->on_failed(&ctx, e->data, failure, &why);
    if (rc != LOOM_OK) {
        return fail_why(e, LOOM_EHANDLER,
                        "saga \"%s\": the on_failed handler of step %s "
                        "returned %s (fix the handler; the event is retried)",
                        w->s.id, st->name, loom_err_name(rc));
    }
    e->data_dirty = 1;
    w->error = bfmt(e, "step %s failed after %u attempt(s): %s: %s", st->name,
                    w->s.attempt, code, why.message);
    return compensate_from(e, timed_out ? w->s.step : w->s.step - 1, w->error);
}

/* The attempt in flight failed (a failure reply, a timeout, a builder
 * error): another attempt after a backoff, or the step fails for good. */
static loom_err
attempt_failed(ev *e, const char *code, const char *message,
               const ProtobufCMessage *failure, int timed_out)
{
    loom__saga_work *w = W(e);
    const loom_saga_step *st =
        loom__saga_current(w->s.def, w->s.state, w->s.step);
    uint64_t ms;

    if ((!timed_out && non_retryable(st, code)) ||
        w->s.attempt >= st->retry.max_attempts) {
        return failed_for_good(e, code, message, failure, timed_out);
    }
    ms = loom__saga_backoff(&st->retry, w->s.attempt, &e->d->rng);
    w->s.waiting = LOOM__WAIT_RETRY;
    w->has_deadline = 1;
    w->deadline_ms = (int64_t) ms;
    w->error = bfmt(e, "%s attempt %u failed: %s: %s", st->name, w->s.attempt,
                    code, message ? message : "");
    log_add(e, "retry", st->name, w->s.attempt + 1, NULL,
            bfmt(e, "attempt %u in %llu ms", w->s.attempt + 1,
                 (unsigned long long) ms));
    return LOOM_OK;
}

/* Sends attempt `attempt` of the current step: builds its command, and
 * waits for the reply until the step's timeout. A builder that fails
 * fails the attempt with code "BUILD". */
static loom_err
send_attempt(ev *e, uint32_t attempt)
{
    loom__saga_work *w = W(e);
    const loom_saga_step *st =
        loom__saga_current(w->s.def, w->s.state, w->s.step);
    loom__saga_cmdrec c;
    char why[512];
    loom_err rc = ev_data(e);

    if (rc != LOOM_OK) {
        return rc;
    }
    w->s.attempt = attempt;
    memset(&c, 0, sizeof c);
    rc = loom__saga_build(e->d->h, &e->d->b->arena, st, w->s.id, attempt,
                          e->data, &c.payload, &c.len, why, sizeof why);
    if (rc == LOOM_EHANDLER || rc == LOOM_ETOOBIG) {
        const char *msg = bfmt(e, "%s", why);
        log_add(e, "failure", st->name, attempt, NULL,
                bfmt(e, "BUILD: %s", why));
        return attempt_failed(e, "BUILD", msg, NULL, 0);
    }
    if (rc != LOOM_OK) {
        return fail_why(e, rc, "saga \"%s\": %s", w->s.id, why);
    }
    if (loom_uuid_generate(&c.id) != LOOM_OK) {
        return fail_why(e, LOOM_EIO, "the system's random source failed");
    }
    c.work = e->w;
    c.st = st;
    c.attempt = attempt;
    if (loom__saga_batch_cmd(e->d->b, &c) != 0) {
        return fail_why(e, LOOM_ENOMEM, "out of memory");
    }
    w->s.waiting = LOOM__WAIT_REPLY;
    w->s.command_id = c.id;
    w->sent = 1;
    w->has_deadline = 1;
    w->deadline_ms = st->timeout_ms;
    log_add(e, "command", st->name, attempt, &c.id, st->participant);
    return LOOM_OK;
}

/* A success reply: the step's handler, then the next step, the next
 * compensation, or the end. */
static loom_err
on_success(ev *e, const loom_message *m)
{
    loom__saga_work *w = W(e);
    const loom_saga_step *st =
        loom__saga_current(w->s.def, w->s.state, w->s.step);
    ProtobufCMessage *reply;
    loom_saga_ctx ctx;
    loom_err rc = ev_data(e);

    if (rc != LOOM_OK) {
        return rc;
    }
    reply = protobuf_c_message_unpack(st->reply, &e->d->h->pb, m->payload_len,
                                      m->payload);
    if (reply == NULL) {
        return fail_why(e, LOOM_EDECODE,
                        "saga \"%s\": the reply to %s does not decode as %s",
                        w->s.id, st->name, st->reply->name);
    }
    ctx = ev_ctx(e);
    rc = st->on_reply(&ctx, e->data, reply);
    if (rc != LOOM_OK) {
        return fail_why(e, LOOM_EHANDLER,
                        "saga \"%s\": the reply handler of %s returned %s "
                        "(fix the handler; the reply is delivered again)",
                        w->s.id, st->name, loom_err_name(rc));
    }
    e->data_dirty = 1;
    log_add(e, "reply", st->name, w->s.attempt, &m->id, NULL);
    if (w->s.state == LOOM_SAGA_RUNNING) {
        if ((size_t) w->s.step + 1 < w->s.def->n_steps) {
            w->s.step++;
            return send_attempt(e, 1);
        }
        return finish(e, LOOM_SAGA_COMPLETED, "completed", NULL);
    }
    return compensate_from(e, w->s.step - 1, NULL);
}

/* A failure reply: retried, or the step fails for good. */
static loom_err
on_failure(ev *e, const loom__saga_wire *wire, const loom_message *m)
{
    loom__saga_work *w = W(e);
    const loom_saga_step *st =
        loom__saga_current(w->s.def, w->s.state, w->s.step);
    const char *message = wire->failure_message ? wire->failure_message : "";
    ProtobufCMessage *failure = NULL;

    if (st->failure != NULL && m->payload_len > 0) {
        failure = protobuf_c_message_unpack(st->failure, &e->d->h->pb,
                                            m->payload_len, m->payload);
        if (failure == NULL) {
            return fail_why(e, LOOM_EDECODE,
                            "saga \"%s\": the failure reply to %s does not "
                            "decode as %s",
                            w->s.id, st->name, st->failure->name);
        }
    }
    log_add(e, "failure", st->name, w->s.attempt, &m->id,
            bfmt(e, "%s: %s", wire->failure_code, message));
    return attempt_failed(e, bfmt(e, "%s", wire->failure_code),
                          bfmt(e, "%s", message), failure, 0);
}

/* ---- events ------------------------------------------------------------ */

typedef struct ev_snap {
    loom__saga_work work;
    size_t n_logs, n_cmds;
    loom__saga_counts counts;
} ev_snap;

static void
ev_begin(ev *e, loom__saga_decider *d, size_t w, ev_snap *snap)
{
    e->d = d;
    e->w = w;
    e->data = NULL;
    e->data_dirty = 0;
    d->why[0] = '\0';
    snap->work = d->b->works[w];
    snap->n_logs = d->b->n_logs;
    snap->n_cmds = d->b->n_cmds;
    snap->counts = d->b->counts;
}

/* Keeps the event (packing the data a handler may have changed) or rolls
 * it back; the handler memory goes either way. */
static loom_err
ev_end(ev *e, const ev_snap *snap, loom_err rc)
{
    loom__saga_work *w = W(e);

    if (rc == LOOM_OK && e->data_dirty) {
        void *p;
        size_t n;
        if (loom__saga_pack(&e->d->b->arena, e->data, &p, &n) != LOOM_OK) {
            rc = fail_why(e, LOOM_ENOMEM, "out of memory");
        } else {
            w->s.data = p;
            w->s.data_len = n;
            w->data_changed = 1;
        }
    }
    if (rc == LOOM_OK && e->d->b->oom) {
        rc = fail_why(e, LOOM_ENOMEM, "out of memory");
    }
    if (rc != LOOM_OK) {
        e->d->b->works[e->w] = snap->work;
        e->d->b->n_logs = snap->n_logs;
        e->d->b->n_cmds = snap->n_cmds;
        e->d->b->counts = snap->counts;
    }
    loom__arena_reset(e->d->h);
    return rc;
}

static int
is_final(loom_saga_state s)
{
    return s == LOOM_SAGA_COMPLETED || s == LOOM_SAGA_COMPENSATED ||
           s == LOOM_SAGA_ABORTED;
}

loom_err
loom__saga_decide_reply(loom__saga_decider *d, size_t w,
                        const loom__saga_wire *wire, const loom_message *m,
                        int *late)
{
    ev e;
    ev_snap snap;
    loom__saga_work *wk;
    loom_err rc;

    ev_begin(&e, d, w, &snap);
    wk = W(&e);
    *late = !(wk->s.waiting == LOOM__WAIT_REPLY &&
              (wk->s.state == LOOM_SAGA_RUNNING ||
               wk->s.state == LOOM_SAGA_COMPENSATING) &&
              wire->has_correlation &&
              memcmp(wire->correlation.bytes, wk->s.command_id.bytes, 16) == 0);
    if (*late) {
        char corr[LOOM_UUID_STRLEN];
        loom__saga_logrec l;

        loom_uuid_format(&wire->correlation, corr);
        memset(&l, 0, sizeof l);
        l.work = w;
        l.kind = "late_reply";
        l.step = step_index(wk->s.def, wire->step);
        l.step_name = bfmt(&e, "%s", wire->step);
        l.attempt = wire->attempt;
        l.has_msg = 1;
        l.msg = m->id;
        l.detail = bfmt(&e, "%s to command %s", wire->outcome, corr);
        wk->in_tx = 1;
        d->b->counts.late++;
        loom__saga_batch_log(d->b, &l);
        return ev_end(&e, &snap, LOOM_OK);
    }
    bump(&e);
    d->b->counts.replies++;
    if (strcmp(wire->outcome, "success") == 0) {
        rc = on_success(&e, m);
    } else {
        rc = on_failure(&e, wire, m);
    }
    return ev_end(&e, &snap, rc);
}

/* An operator's request, applied as a transition. */
static loom_err
apply_op(ev *e, const char *op, const char *who)
{
    loom__saga_work *w = W(e);
    const char *state = loom_saga_state_name(w->s.state);
    int parked = w->s.state == LOOM_SAGA_COMPENSATION_FAILED;
    const char *detail;

    w->clear_op = 1;
    e->d->b->counts.operator_ops++;
    if (strcmp(op, "abort") == 0 && !is_final(w->s.state)) {
        log_add(e, "operator", NULL, 0, NULL, bfmt(e, "abort by %s", who));
        w->error = bfmt(e, "aborted by %s", who);
        return finish(e, LOOM_SAGA_ABORTED, "aborted", w->error);
    }
    if ((strcmp(op, "retry") == 0 || strcmp(op, "skip") == 0) && parked) {
        log_add(e, "operator", NULL, 0, NULL, bfmt(e, "%s by %s", op, who));
        if (strcmp(op, "skip") == 0) {
            return compensate_from(e, w->s.step - 1,
                                   bfmt(e, "skipped by %s", who));
        }
        w->s.state = LOOM_SAGA_COMPENSATING;
        return send_attempt(e, 1);
    }
    /* The saga moved on since the request (it ended, say): nothing to do
     * but say so, and keep what it waits for. */
    detail = bfmt(e, "%s by %s ignored: the saga is %s", op, who, state);
    log_add(e, "operator", NULL, 0, NULL, detail);
    if (w->s.waiting == LOOM__WAIT_REPLY) {
        const loom_saga_step *st =
            loom__saga_current(w->s.def, w->s.state, w->s.step);
        w->has_deadline = 1;
        w->deadline_ms = st != NULL ? st->timeout_ms : 0;
    } else {
        w->has_deadline = w->s.waiting == LOOM__WAIT_RETRY;
        w->deadline_ms = 0;
    }
    return LOOM_OK;
}

loom_err
loom__saga_decide_due(loom__saga_decider *d, size_t w, const char *op,
                      const char *who)
{
    ev e;
    ev_snap snap;
    loom__saga_work *wk;
    const loom_saga_step *st;
    loom_err rc = LOOM_OK;

    ev_begin(&e, d, w, &snap);
    wk = W(&e);
    st = loom__saga_current(wk->s.def, wk->s.state, wk->s.step);
    bump(&e);
    if (op != NULL) {
        rc = apply_op(&e, op, who != NULL ? who : "?");
    } else if (wk->s.waiting == LOOM__WAIT_REPLY && st != NULL &&
               !is_final(wk->s.state)) {
        d->b->counts.timeouts++;
        log_add(&e, "timeout", st->name, wk->s.attempt, &wk->s.command_id,
                bfmt(&e, "no reply within %u ms", (unsigned) st->timeout_ms));
        rc = attempt_failed(
            &e, "TIMEOUT",
            bfmt(&e, "no reply within %u ms", (unsigned) st->timeout_ms), NULL,
            1);
    } else if (wk->s.waiting == LOOM__WAIT_RETRY && st != NULL &&
               !is_final(wk->s.state)) {
        d->b->counts.retries++;
        rc = send_attempt(&e, wk->s.attempt + 1);
    } else {
        wk->has_deadline = 0; /* nothing waits: a stale deadline */
    }
    return ev_end(&e, &snap, rc);
}
