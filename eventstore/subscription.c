/*
 * Live subscriptions (loom/subscription.h): configuration, start, and the
 * life cycle around the state machine of sub_loop.c, i.e. the graceful
 * stop (asked by the runtime or by loom_subscription_close()), closing
 * the libuv handles, and freeing.
 */
#include <stdio.h>
#include <string.h>

#include "alloc_int.h"
#include "log_int.h"
#include "loom/alloc.h"
#include "pgwire.h"
#include "sub_int.h"
#include "tx_int.h"

/* Where loomctl's replay requests arrive (loom.parked_request_replay). */
#define SUB_PARKED_CHANNEL "loom_parked"

/* A periodic wake-up (no payload) looks for replay requests whose NOTIFY
 * was lost at most this often. */
#define SUB_PARKED_RECHECK_MS 30000u

static void
sub_free(loom_subscription *s)
{
    loom_listener_close(s->listener);
    loom_listener_close(s->parked_listener);
    loom__runtime_remove_component(s->comp);
    loom_events_free(s->page);
    loom__tx_free(&s->tx);
    loom__buf_free(&s->why);
    loom_free(s->search_path);
    loom_store_close(s->store);
    for (size_t i = 0; i < s->n_types; i++)
        loom_free(s->types[i]);
    loom_free(s->types);
    loom_free(s->sel);
    loom_free(s->target);
    loom_free(s);
}

/* Every handle is closed: report done, or free after a close(). */
static void
sub_finished(loom_subscription *s)
{
    loom__done_fn done = s->done;

    s->finished = 1;
    if (s->close_requested) {
        if (!s->keep && s->state != LOOM__SUB_DELIVER)
            sub_free(s);
        return;
    }
    if (done != NULL) {
        s->done = NULL;
        done(s->comp);
    }
}

static void
sub_handle_closed(uv_handle_t *h)
{
    loom_subscription *s;

    if (h->type == UV_POLL) {
        sub_poll *p = h->data;
        s = p->sub;
        loom_free(p);
    } else {
        s = h->data;
    }
    if (--s->open_handles == 0 && s->state == LOOM__SUB_DONE)
        sub_finished(s);
}

void
loom__sub_close_poll(loom_subscription *s)
{
    if (s->poll == NULL)
        return;
    uv_close((uv_handle_t *) &s->poll->h, sub_handle_closed);
    s->poll = NULL;
    s->poll_fd = -1;
}

/* Stopped: closes the handles; sub_finished() runs when they are. */
void
loom__sub_finish(loom_subscription *s)
{
    s->state = LOOM__SUB_DONE;
    loom_events_free(s->page);
    s->page = NULL;
    loom_listener_close(s->listener);
    s->listener = NULL;
    loom_listener_close(s->parked_listener);
    s->parked_listener = NULL;
    loom__sub_close_poll(s);
    if (!uv_is_closing((uv_handle_t *) &s->timer))
        uv_close((uv_handle_t *) &s->timer, sub_handle_closed);
    if (s->open_handles == 0)
        sub_finished(s);
}

/* Stops after the step in hand: a step in flight (or the handler) will see
 * `stopping` when it completes; an idle one stops now. */
static void
sub_begin_stop(loom_subscription *s)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    switch (s->state) {
    case LOOM__SUB_LOAD:
    case LOOM__SUB_READ:
    case LOOM__SUB_DELIVER:
    case LOOM__SUB_SAVE:
    case LOOM__SUB_ARM:
    case LOOM__SUB_COMMIT:
    case LOOM__SUB_PARKED:
    case LOOM__SUB_HORIZON:
        return;
    default:
        uv_timer_stop(&s->timer);
        loom__sub_finish(s);
    }
}

static void
sub_on_stop(void *arg, loom__component *c, loom__done_fn done)
{
    loom_subscription *s = arg;

    (void) c;
    if (s->finished) {
        done(s->comp);
        return;
    }
    s->done = done;
    sub_begin_stop(s);
}

static void
sub_on_wake(void *arg, const char *channel, const char *payload)
{
    loom_subscription *s = arg;

    (void) channel;
    (void) payload; /* a wake-up, never data */
    s->listening = 1;
    s->stats.wakeups++;
    if (s->stopping)
        return;
    if (s->state == LOOM__SUB_SLEEP) {
        s->armed = 0;
        loom__sub_step(s, LOOM__SUB_READ);
    } else {
        s->woken = 1;
    }
}

static void
sub_on_parked(void *arg, const char *channel, const char *payload)
{
    loom_subscription *s = arg;

    (void) channel;
    if (s->stopping)
        return;
    if (payload == NULL) {
        /* The periodic or reconnect wake-up: a NOTIFY may have been lost. */
        if (uv_now(s->rt->loop) - s->parked_checked < SUB_PARKED_RECHECK_MS)
            return;
    } else if (strcmp(payload, s->name) != 0) {
        return; /* another subscription's replay */
    }
    s->parked_due = 1;
    if (s->state == LOOM__SUB_SLEEP)
        loom__sub_step(s, LOOM__SUB_READ);
}

static int
sub_name_ok(const char *p, size_t max)
{
    size_t n;

    if (p == NULL)
        return 0;
    n = strlen(p);
    return n > 0 && n <= max && loom__utf8_valid(p, n);
}

static loom_err
sub_check(const loom_subscription_config *c)
{
    if (!sub_name_ok(c->name, LOOM_MAX_SUBSCRIPTION_NAME))
        return LOOM_EINVAL;
    switch (c->source) {
    case LOOM_SUB_ALL:
        break;
    case LOOM_SUB_CATEGORY:
        if (!sub_name_ok(c->category, LOOM_MAX_STREAM_NAME_LIMIT) ||
            strchr(c->category, '-') != NULL)
            return LOOM_EINVAL;
        if (c->group.size == 0 ? c->group.member != 0
                               : (c->group.member >= c->group.size ||
                                  c->group.size > INT32_MAX))
            return LOOM_EINVAL;
        break;
    case LOOM_SUB_STREAM:
        if (!sub_name_ok(c->stream, LOOM_MAX_STREAM_NAME_LIMIT))
            return LOOM_EINVAL;
        break;
    default:
        return LOOM_EINVAL;
    }
    if (c->n_types > 0 && c->types == NULL)
        return LOOM_EINVAL;
    for (size_t i = 0; i < c->n_types; i++)
        if (!sub_name_ok(c->types[i], LOOM_MAX_TYPE_NAME))
            return LOOM_EINVAL;
    if (c->batch > LOOM_DEFAULT_MAX_READ)
        return LOOM_EINVAL;
    return LOOM_OK;
}

/* Copies the configuration; LOOM_ENOMEM leaves the rest to sub_free(). */
static loom_err
sub_copy(loom_subscription *s, const loom_subscription_config *c)
{
    const char *target = c->source == LOOM_SUB_CATEGORY ? c->category
                         : c->source == LOOM_SUB_STREAM ? c->stream
                                                        : NULL;

    snprintf(s->name, sizeof s->name, "%s", c->name);
    s->source = c->source;
    s->group = c->source == LOOM_SUB_CATEGORY ? c->group : (loom_group){0, 0};
    s->batch = c->batch ? c->batch : LOOM_DEFAULT_SUB_BATCH;
    s->version = -1;
    s->max_attempts =
        c->max_attempts ? c->max_attempts : LOOM_DEFAULT_SUB_ATTEMPTS;
    s->horizon_ms =
        c->horizon_warn_ms ? c->horizon_warn_ms : LOOM_DEFAULT_HORIZON_WARN_MS;
    loom__tx_init(&s->tx);
    if (target != NULL && (s->target = loom__strdup(target)) == NULL)
        return LOOM_ENOMEM;
    s->sel = loom_malloc(s->batch * sizeof *s->sel);
    if (s->sel == NULL)
        return LOOM_ENOMEM;
    if (c->n_types > 0) {
        s->types = loom_malloc(c->n_types * sizeof *s->types);
        if (s->types == NULL)
            return LOOM_ENOMEM;
        for (; s->n_types < c->n_types; s->n_types++) {
            s->types[s->n_types] = loom__strdup(c->types[s->n_types]);
            if (s->types[s->n_types] == NULL)
                return LOOM_ENOMEM;
        }
    }
    return LOOM_OK;
}

static loom_err
sub_open_store(loom_subscription *s, const loom_subscription_config *c,
               const char *appname)
{
    loom_store_config sc = LOOM_STORE_CONFIG_INIT;
    char err[512];
    loom_err rc;

    sc.conninfo = c->conninfo;
    sc.application_name = appname ? appname : "eventloom-subscription";
    rc = loom_store_open(&s->store, &sc, err, sizeof err);
    if (rc != LOOM_OK)
        loom__log(LOOM_LOG_ERROR, "subscription \"%s\" cannot start: %s",
                  s->name, err);
    return rc;
}

loom_err
loom__subscribe(loom_runtime *rt, const loom_subscription_config *cfg,
                loom_sub_fn fn, loom_sub_tx_fn tx_fn, void *arg,
                const loom__sub_extra *extra, loom_subscription **out)
{
    static const loom__sub_extra none = {NULL, NULL, 0};
    loom_subscription *s;
    loom_err rc;

    if (out != NULL)
        *out = NULL;
    if (rt == NULL || cfg == NULL || (fn == NULL) == (tx_fn == NULL) ||
        out == NULL)
        return LOOM_EINVAL;
    rc = sub_check(cfg);
    if (rc != LOOM_OK)
        return rc;
    if (rt->stopping)
        return LOOM_EBUSY;
    s = loom_malloc(sizeof *s);
    if (s == NULL)
        return LOOM_ENOMEM;
    memset(s, 0, sizeof *s);
    s->rt = rt;
    s->fn = fn;
    s->tx_fn = tx_fn;
    s->arg = arg;
    s->poll_fd = -1;
    s->parked_due = 1; /* replays requested while nothing ran */
    if (extra == NULL)
        extra = &none;
    s->volatile_cursor = extra->volatile_cursor;
    rc = sub_copy(s, cfg);
    if (rc == LOOM_OK && extra->search_path != NULL &&
        (s->search_path = loom__strdup(extra->search_path)) == NULL)
        rc = LOOM_ENOMEM;
    if (rc == LOOM_OK)
        rc = sub_open_store(s, cfg, extra->appname);
    if (rc == LOOM_OK)
        rc = loom__runtime_add_component(rt, sub_on_stop, s, &s->comp);
    if (rc == LOOM_OK)
        rc = loom_runtime_listen(rt, LOOM__SUB_CHANNEL, sub_on_wake, s,
                                 &s->listener);
    if (rc == LOOM_OK)
        rc = loom_runtime_listen(rt, SUB_PARKED_CHANNEL, sub_on_parked, s,
                                 &s->parked_listener);
    if (rc == LOOM_OK && uv_timer_init(rt->loop, &s->timer) != 0)
        rc = LOOM_EIO;
    if (rc != LOOM_OK) {
        sub_free(s);
        return rc;
    }
    s->timer.data = s;
    s->open_handles++;
    loom__backoff_init(&s->backoff, rt->cfg.reconnect_min_ms,
                       rt->cfg.reconnect_max_ms);
    /* The first step runs on the loop: load the checkpoint, or overwrite
     * it with the beginning. */
    s->state = LOOM__SUB_BACKOFF;
    s->retry = s->volatile_cursor ? LOOM__SUB_READ
               : cfg->from_start  ? LOOM__SUB_SAVE
                                  : LOOM__SUB_LOAD;
    uv_timer_start(&s->timer, loom__sub_on_timer, 0, 0);
    *out = s;
    return LOOM_OK;
}

loom_err
loom_subscribe(loom_runtime *rt, const loom_subscription_config *cfg,
               loom_sub_fn fn, void *arg, loom_subscription **out)
{
    if (fn == NULL) {
        if (out != NULL)
            *out = NULL;
        return LOOM_EINVAL;
    }
    return loom__subscribe(rt, cfg, fn, NULL, arg, NULL, out);
}

loom_err
loom_subscribe_tx(loom_runtime *rt, const loom_subscription_config *cfg,
                  loom_sub_tx_fn fn, void *arg, loom_subscription **out)
{
    if (fn == NULL) {
        if (out != NULL)
            *out = NULL;
        return LOOM_EINVAL;
    }
    return loom__subscribe(rt, cfg, NULL, fn, arg, NULL, out);
}

void
loom_subscription_close(loom_subscription *s)
{
    uv_loop_t *loop;

    if (s == NULL)
        return;
    s->close_requested = 1;
    if (s->finished) {
        if (s->state != LOOM__SUB_DELIVER)
            sub_free(s);
        return;
    }
    if (s->rt->running) {
        /* On the loop: finish the step in hand, then free. */
        sub_begin_stop(s);
        return;
    }
    /* Not on a running loop (the runtime never ran): nothing will drive a
     * step in flight, so abandon it, and run the loop just long enough
     * for the close callbacks. */
    loop = s->rt->loop;
    s->keep = 1;
    s->stopping = 1;
    uv_timer_stop(&s->timer);
    loom__sub_finish(s);
    for (int i = 0; i < 100 && !s->finished; i++)
        uv_run(loop, UV_RUN_NOWAIT);
    sub_free(s);
}

loom_err
loom_subscription_stats_get(const loom_subscription *s,
                            loom_subscription_stats *out)
{
    if (s == NULL || out == NULL)
        return LOOM_EINVAL;
    *out = s->stats;
    return LOOM_OK;
}
