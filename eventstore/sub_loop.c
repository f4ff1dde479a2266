/*
 * The subscription's state machine (see sub_int.h): each step sends one
 * prepared statement through the store's non-blocking path, watches the
 * socket with uv_poll until loom_store_poll() has the result, then takes
 * the next step. Failures go to a backoff timer that retries the step.
 */
#include <string.h>

#include "log_int.h"
#include "loom/alloc.h"
#include "pgwire.h"
#include "sub_int.h"

static const loom__stmt checkpoint_load_stmt = {
    LOOM__STMT_CHECKPOINT_LOAD,
    "loom_checkpoint_load",
    "SELECT tx, position, version FROM loom.checkpoints WHERE name = $1",
    1,
    {LOOM__OID_TEXT}};

static const loom__stmt checkpoint_save_stmt = {
    LOOM__STMT_CHECKPOINT_SAVE,
    "loom_checkpoint_save",
    "INSERT INTO loom.checkpoints AS c (name, tx, position, version) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE "
    "SET tx = EXCLUDED.tx, position = EXCLUDED.position, "
    "version = EXCLUDED.version, updated_at = now()",
    4,
    {LOOM__OID_TEXT, LOOM__OID_XID8, LOOM__OID_INT8, LOOM__OID_INT8}};

static const loom__stmt arm_wakeup_stmt = {
    LOOM__STMT_ARM_WAKEUP,
    "loom_arm_wakeup",
    "SELECT loom.arm_wakeup('" LOOM__SUB_CHANNEL "')",
    0,
    {0}};

static void sub_read(loom_subscription *s);
static void sub_save(loom_subscription *s);
static void sub_load(loom_subscription *s);
static void sub_deliver(loom_subscription *s);
static void sub_arm(loom_subscription *s);
static void sub_drive(loom_subscription *s);

static void
sub_on_poll(uv_poll_t *h, int status, int events)
{
    sub_poll *p = h->data;

    (void) status; /* an error shows in loom_store_poll() */
    (void) events;
    sub_drive(p->sub);
}

/* Watches the store's socket for `want` (LOOM_POLL_*). A new socket (after
 * a reconnect) gets a new handle. Returns 0, or -1 when libuv refused. */
static int
sub_watch(loom_subscription *s, int want)
{
    int fd = loom_store_socket(s->store);
    int ev = (want & LOOM_POLL_READ ? UV_READABLE : 0) |
             (want & LOOM_POLL_WRITE ? UV_WRITABLE : 0);

    if (s->poll != NULL && s->poll_fd != fd)
        loom__sub_close_poll(s);
    if (s->poll == NULL) {
        sub_poll *p = loom_malloc(sizeof *p);
        if (p == NULL)
            return -1;
        p->sub = s;
        if (uv_poll_init(s->rt->loop, &p->h, fd) != 0) {
            loom_free(p);
            return -1;
        }
        p->h.data = p;
        s->open_handles++;
        s->poll = p;
        s->poll_fd = fd;
    }
    return uv_poll_start(&s->poll->h, ev, sub_on_poll) == 0 ? 0 : -1;
}

static const char *
sub_step_name(loom__sub_state st)
{
    switch (st) {
    case LOOM__SUB_LOAD:
        return "loading the checkpoint";
    case LOOM__SUB_READ:
        return "reading events";
    case LOOM__SUB_SAVE:
        return "saving the checkpoint";
    case LOOM__SUB_ARM:
        return "arming the wake-up";
    default:
        return "delivering a batch";
    }
}

/* A step failed: log, then retry it after the backoff (unless stopping,
 * when the batch in hand is left for the next run). The poll handle goes:
 * the next store call reconnects, on a new socket. */
static void
sub_fail(loom_subscription *s, loom__sub_state step, loom_err rc,
         const char *why)
{
    uint64_t ms;

    loom__sub_close_poll(s);
    if (s->stopping) {
        loom__log(LOOM_LOG_WARN,
                  "subscription \"%s\": %s failed while "
                  "stopping (%s: %s); the batch will be delivered again "
                  "by the next run",
                  s->name, sub_step_name(step), loom_err_name(rc), why);
        loom__sub_finish(s);
        return;
    }
    ms = loom__backoff_next(&s->backoff);
    loom__log(LOOM_LOG_WARN,
              "subscription \"%s\": %s failed (%s: %s); "
              "retrying in %llu ms",
              s->name, sub_step_name(step), loom_err_name(rc), why,
              (unsigned long long) ms);
    s->state = LOOM__SUB_BACKOFF;
    s->retry = step;
    uv_timer_start(&s->timer, loom__sub_on_timer, ms, 0);
}

/* After a _send: the step is in flight, or failed at once. */
static void
sub_sent(loom_subscription *s, loom__sub_state step, loom_err rc)
{
    s->state = step;
    if (rc != LOOM_OK) {
        sub_fail(s, step, rc, loom_store_errmsg(s->store));
        return;
    }
    sub_drive(s);
}

void
loom__sub_step(loom_subscription *s, loom__sub_state step)
{
    s->state = LOOM__SUB_IDLE;
    switch (step) {
    case LOOM__SUB_LOAD:
        sub_load(s);
        break;
    case LOOM__SUB_SAVE:
        sub_save(s);
        break;
    case LOOM__SUB_DELIVER:
        sub_deliver(s);
        break;
    case LOOM__SUB_ARM:
        sub_arm(s);
        break;
    default:
        sub_read(s);
        break;
    }
}

void
loom__sub_on_timer(uv_timer_t *t)
{
    loom_subscription *s = t->data;

    loom__sub_step(s, s->retry);
}

static loom_err
sub_begin_query(loom_subscription *s, const loom__stmt *st,
                const char *const *values, const int *lengths)
{
    loom_err rc = loom__store_begin(s->store);

    if (rc == LOOM_OK)
        rc = loom__store_send(s->store, LOOM__OP_QUERY, st, values, lengths);
    return rc;
}

static void
sub_load(loom_subscription *s)
{
    const char *values[1] = {s->name};
    int lengths[1] = {(int) strlen(s->name)};

    sub_sent(s, LOOM__SUB_LOAD,
             sub_begin_query(s, &checkpoint_load_stmt, values, lengths));
}

/* Saves next_cursor/next_version as the checkpoint. */
static void
sub_save(loom_subscription *s)
{
    char num[24];
    const char *values[4] = {s->name, num, num + 8, num + 16};
    int lengths[4] = {(int) strlen(s->name), 8, 8, 8};
    uint64_t v[3] = {s->next_cursor.tx, (uint64_t) s->next_cursor.position,
                     (uint64_t) s->next_version};

    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 8; j++)
            num[8 * i + j] = (char) (v[i] >> (56 - 8 * j));
    sub_sent(s, LOOM__SUB_SAVE,
             sub_begin_query(s, &checkpoint_save_stmt, values, lengths));
}

static void
sub_arm(loom_subscription *s)
{
    sub_sent(s, LOOM__SUB_ARM,
             sub_begin_query(s, &arm_wakeup_stmt, NULL, NULL));
}

static void
sub_read(loom_subscription *s)
{
    loom_err rc;

    switch (s->source) {
    case LOOM_SUB_CATEGORY:
        rc = loom_store_read_category_send(s->store, s->target, s->cursor,
                                           s->group.size ? &s->group : NULL,
                                           s->batch);
        break;
    case LOOM_SUB_STREAM:
        rc = loom_store_read_stream_send(s->store, s->target, s->version + 1,
                                         LOOM_FORWARD, s->batch);
        break;
    default:
        rc = loom_store_read_all_send(s->store, s->cursor, s->batch);
        break;
    }
    sub_sent(s, LOOM__SUB_READ, rc);
}

static int
sub_wanted(const loom_subscription *s, const char *type)
{
    if (s->n_types == 0)
        return 1;
    for (size_t i = 0; i < s->n_types; i++)
        if (strcmp(s->types[i], type) == 0)
            return 1;
    return 0;
}

/* Hands the filtered page to the handler, then saves the checkpoint. A
 * page with nothing wanted still moves the cursor, so it is saved too. */
static void
sub_deliver(loom_subscription *s)
{
    size_t n = 0, count = loom_events_count(s->page);
    loom_err rc = LOOM_OK;

    for (size_t i = 0; i < count; i++) {
        const loom_event *ev = loom_events_at(s->page, i);
        if (sub_wanted(s, ev->type))
            s->sel[n++] = ev;
    }
    if (n > 0) {
        s->state = LOOM__SUB_DELIVER;
        rc = s->fn(s->sel, n, s->arg);
        s->state = LOOM__SUB_IDLE;
    }
    if (rc == LOOM_OK) {
        loom__backoff_reset(&s->backoff);
        sub_save(s);
        return;
    }
    sub_fail(s, LOOM__SUB_DELIVER, rc, "the handler refused the batch");
}

/* An empty page: caught up for now. */
static void
sub_caught_up(loom_subscription *s)
{
    if (s->woken) {
        /* Woken while busy: a NOTIFY disarmed the wake-up, or one may have
         * been missed. Read again, and arm again before sleeping. */
        s->woken = 0;
        s->armed = 0;
        sub_read(s);
    } else if (s->listening && !s->armed) {
        sub_arm(s);
    } else {
        /* Not listening yet: the listener's first call (its LISTEN is
         * acknowledged) wakes us, and only then is arming safe. */
        s->state = LOOM__SUB_SLEEP;
    }
}

static void
sub_read_done(loom_subscription *s)
{
    loom_err rc = loom_store_events_recv(s->store, &s->page);
    size_t n;

    if (rc != LOOM_OK) {
        sub_fail(s, LOOM__SUB_READ, rc, loom_store_errmsg(s->store));
        return;
    }
    n = loom_events_count(s->page);
    if (n == 0) {
        loom_events_free(s->page);
        s->page = NULL;
        loom__backoff_reset(&s->backoff);
        if (s->stopping)
            loom__sub_finish(s);
        else
            sub_caught_up(s);
        return;
    }
    s->armed = 0;
    s->next_cursor = loom_events_next(s->page);
    s->next_version = s->source == LOOM_SUB_STREAM
                          ? loom_events_at(s->page, n - 1)->version
                          : s->version;
    sub_deliver(s);
}

/* A query (load, save, arm) finished: take its result. */
static void
sub_query_done(loom_subscription *s, loom__sub_state step)
{
    PGresult *r = NULL;
    loom_err rc = loom__store_take(s->store, LOOM__OP_QUERY, &r);
    int64_t pos = 0, ver = -1;
    uint64_t tx = 0;

    if (rc == LOOM_OK && step == LOOM__SUB_LOAD && PQntuples(r) == 1 &&
        (!loom__pg_get_u64(r, 0, 0, &tx) || !loom__pg_get_i64(r, 0, 1, &pos) ||
         !loom__pg_get_i64(r, 0, 2, &ver)))
        rc = LOOM_ESCHEMA;
    PQclear(r);
    if (rc != LOOM_OK) {
        sub_fail(s, step, rc,
                 rc == LOOM_ESCHEMA && step == LOOM__SUB_LOAD
                     ? "bad loom.checkpoints row"
                     : loom_store_errmsg(s->store));
        return;
    }
    loom__backoff_reset(&s->backoff);
    if (step == LOOM__SUB_LOAD) {
        s->cursor.tx = tx;
        s->cursor.position = pos;
        s->version = ver;
    } else if (step == LOOM__SUB_SAVE) {
        s->cursor = s->next_cursor;
        s->version = s->next_version;
        loom_events_free(s->page);
        s->page = NULL;
    } else {
        s->armed = 1;
    }
    if (s->stopping)
        loom__sub_finish(s);
    else
        sub_read(s);
}

/* Moves the step in flight forward; called after a send and whenever the
 * socket is ready. */
static void
sub_drive(loom_subscription *s)
{
    int want = 0;
    loom_err rc = loom_store_poll(s->store, &want);

    if (rc == LOOM_EAGAIN) {
        if (sub_watch(s, want) != 0) {
            /* The result is abandoned with the connection's next reset. */
            sub_fail(s, s->state, LOOM_EIO, "libuv cannot poll the socket");
        }
        return;
    }
    if (s->poll != NULL)
        uv_poll_stop(&s->poll->h);
    /* On LOOM_ECONN the receive below reports the lost connection. */
    if (s->state == LOOM__SUB_READ)
        sub_read_done(s);
    else
        sub_query_done(s, s->state);
}
