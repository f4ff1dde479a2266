/*
 * The runtime: the loop, the components that a graceful stop waits for,
 * and signal handling. The LISTEN connection is in listen.c.
 *
 * Stopping goes through three flags, in order: `stopping` (stop() called;
 * components asked to finish), `closing` (every component reported done;
 * the runtime's handles are being closed) and `stopped` (every close
 * callback has run, so the loop holds nothing of ours and run() returns).
 * Handles are created by run(), never by open(), so a runtime that never
 * ran has nothing to close.
 */
#include "runtime_int.h"

#include <assert.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_int.h"
#include "log_int.h"
#include "loom/alloc.h"

static void
rt_free(loom_runtime *rt)
{
    loom_free(rt->conninfo);
    loom_free(rt->appname);
    loom_free(rt);
}

/* Copies `in` with defaults applied; LOOM_EINVAL on inconsistent bounds. */
static loom_err
rt_config(loom_runtime *rt, const loom_runtime_config *in)
{
    static const loom_runtime_config defaults = LOOM_RUNTIME_CONFIG_INIT;
    const char *conninfo;

    rt->cfg = in ? *in : defaults;
    if (rt->cfg.reconnect_min_ms == 0)
        rt->cfg.reconnect_min_ms = LOOM_DEFAULT_RECONNECT_MIN_MS;
    if (rt->cfg.reconnect_max_ms == 0)
        rt->cfg.reconnect_max_ms = LOOM_DEFAULT_RECONNECT_MAX_MS;
    if (rt->cfg.poll_ms == 0)
        rt->cfg.poll_ms = LOOM_DEFAULT_POLL_MS;
    if (rt->cfg.reconnect_min_ms > rt->cfg.reconnect_max_ms)
        return LOOM_EINVAL;
    conninfo =
        rt->cfg.conninfo ? rt->cfg.conninfo : getenv("LOOM_DATABASE_URL");
    rt->conninfo = loom__strdup(conninfo ? conninfo : "");
    if (rt->conninfo == NULL)
        return LOOM_ENOMEM;
    if (rt->cfg.application_name != NULL) {
        rt->appname = loom__strdup(rt->cfg.application_name);
        if (rt->appname == NULL)
            return LOOM_ENOMEM;
    }
    /* The copies replace the caller's pointers, which may not outlive us. */
    rt->cfg.conninfo = rt->conninfo;
    rt->cfg.application_name = rt->appname;
    return LOOM_OK;
}

loom_err
loom_runtime_open(loom_runtime **out, const loom_runtime_config *cfg)
{
    loom_runtime *rt;
    loom_err rc;

    if (out == NULL)
        return LOOM_EINVAL;
    *out = NULL;
    rt = loom_malloc(sizeof *rt);
    if (rt == NULL)
        return LOOM_ENOMEM;
    memset(rt, 0, sizeof *rt);
    rt->lsn.poll_fd = -1;
    rc = rt_config(rt, cfg);
    if (rc != LOOM_OK) {
        rt_free(rt);
        return rc;
    }
    if (rt->cfg.loop != NULL) {
        rt->loop = rt->cfg.loop;
    } else if (uv_loop_init(&rt->own_loop) == 0) {
        rt->loop = &rt->own_loop;
        rt->owns_loop = 1;
    } else {
        rt_free(rt);
        return LOOM_EIO;
    }
    loom__backoff_init(&rt->lsn.backoff, rt->cfg.reconnect_min_ms,
                       rt->cfg.reconnect_max_ms);
    *out = rt;
    return LOOM_OK;
}

uv_loop_t *
loom_runtime_loop(loom_runtime *rt)
{
    return rt ? rt->loop : NULL;
}

/* The last close callback: nothing of ours is left on the loop. */
static void
rt_finished(loom_runtime *rt)
{
    rt->stopped = 1;
    /* A borrowed loop may have the caller's handles: stop it anyway. */
    if (rt->running)
        uv_stop(rt->loop);
}

void
loom__runtime_handle_closed(uv_handle_t *h)
{
    loom_runtime *rt = h->data;

    assert(rt->open_handles > 0);
    rt->open_handles--;
    if (rt->closing && rt->open_handles == 0)
        rt_finished(rt);
}

static void
rt_close_handles(loom_runtime *rt)
{
    rt->closing = 1;
    loom__lsn_shutdown(rt);
    if (rt->started) {
        uv_close((uv_handle_t *) &rt->keepalive, loom__runtime_handle_closed);
        /* data is set once a signal handle is initialised. */
        if (rt->sigint.data)
            uv_close((uv_handle_t *) &rt->sigint, loom__runtime_handle_closed);
        if (rt->sigterm.data)
            uv_close((uv_handle_t *) &rt->sigterm, loom__runtime_handle_closed);
    }
    if (rt->open_handles == 0)
        rt_finished(rt);
}

/* Closes the handles once stopping and every component is done. */
static void
rt_maybe_close(loom_runtime *rt)
{
    if (!rt->stopping || rt->closing)
        return;
    for (loom__component *c = rt->components; c; c = c->next)
        if (!c->done)
            return;
    rt_close_handles(rt);
}

static void
rt_component_done(loom__component *c)
{
    assert(c->asked && !c->done);
    c->done = 1;
    rt_maybe_close(c->rt);
}

void
loom_runtime_stop(loom_runtime *rt)
{
    loom__component *c;

    if (rt == NULL || rt->stopping)
        return;
    rt->stopping = 1;
    loom__log(LOOM_LOG_DEBUG, "runtime stopping");
    /* Rescan from the head after each call: a stop function may remove
     * other components (which counts as done). */
    for (;;) {
        for (c = rt->components; c && c->asked; c = c->next)
            ;
        if (c == NULL)
            break;
        c->asked = 1;
        c->stop(c->arg, c, rt_component_done);
    }
    rt_maybe_close(rt);
}

static void
rt_on_signal(uv_signal_t *h, int signum)
{
    loom__log(LOOM_LOG_INFO, "received %s: stopping",
              signum == SIGINT ? "SIGINT" : "SIGTERM");
    loom_runtime_stop(h->data);
}

static loom_err
rt_start_signal(loom_runtime *rt, uv_signal_t *h, int signum)
{
    if (uv_signal_init(rt->loop, h) != 0)
        return LOOM_EIO;
    h->data = rt;
    rt->open_handles++;
    if (uv_signal_start(h, rt_on_signal, signum) != 0)
        return LOOM_EIO;
    return LOOM_OK;
}

/* Installs the runtime's handles. On failure the ones installed stay
 * recorded, and the stop that follows closes them. */
static loom_err
rt_start(loom_runtime *rt)
{
    loom_err rc;

    /* Never sent: it only keeps the loop running until stop(). */
    if (uv_async_init(rt->loop, &rt->keepalive, NULL) != 0)
        return LOOM_EIO;
    rt->keepalive.data = rt;
    rt->open_handles++;
    rt->started = 1;
    if (rt->cfg.handle_signals) {
        rc = rt_start_signal(rt, &rt->sigint, SIGINT);
        if (rc == LOOM_OK)
            rc = rt_start_signal(rt, &rt->sigterm, SIGTERM);
        if (rc != LOOM_OK)
            return rc;
    }
    rc = loom__lsn_start(rt);
    if (rc != LOOM_OK)
        return rc;
    loom__lsn_kick(rt);
    return LOOM_OK;
}

loom_err
loom_runtime_run(loom_runtime *rt)
{
    loom_err rc = LOOM_OK;

    if (rt == NULL)
        return LOOM_EINVAL;
    if (rt->running)
        return LOOM_EBUSY;
    if (rt->stopped || rt->started)
        return LOOM_OK; /* it ran (or stopped) before */
    /* After an early stop(), only the components' wind-down is left. */
    if (!rt->stopping) {
        rc = rt_start(rt);
        if (rc != LOOM_OK) {
            loom__log(LOOM_LOG_ERROR, "runtime cannot start: %s",
                      loom_strerror(rc));
            loom_runtime_stop(rt);
        }
    }
    rt->running = 1;
    while (!rt->stopped) {
        int alive = uv_run(rt->loop, UV_RUN_DEFAULT);
        if (rt->stopped)
            break;
        if (!alive && !uv_loop_alive(rt->loop)) {
            /* Only a component that never called done() gets here: the
             * keepalive handle is open until every component has. */
            loom__log(LOOM_LOG_ERROR, "runtime: a component did not finish "
                                      "stopping and nothing is left to run");
            rc = LOOM_EBUSY;
            break;
        }
    }
    rt->running = 0;
    return rc;
}

loom_err
loom__runtime_add_component(loom_runtime *rt, loom__stop_fn stop, void *arg,
                            loom__component **out)
{
    loom__component *c;

    if (out != NULL)
        *out = NULL;
    if (rt == NULL || stop == NULL || out == NULL)
        return LOOM_EINVAL;
    if (rt->stopping)
        return LOOM_EBUSY;
    c = loom_malloc(sizeof *c);
    if (c == NULL)
        return LOOM_ENOMEM;
    memset(c, 0, sizeof *c);
    c->rt = rt;
    c->stop = stop;
    c->arg = arg;
    c->next = rt->components;
    rt->components = c;
    *out = c;
    return LOOM_OK;
}

void
loom__runtime_remove_component(loom__component *c)
{
    loom__component **pp;
    loom_runtime *rt;

    if (c == NULL)
        return;
    rt = c->rt;
    for (pp = &rt->components; *pp && *pp != c; pp = &(*pp)->next)
        ;
    if (*pp)
        *pp = c->next;
    loom_free(c);
    rt_maybe_close(rt);
}

void
loom_runtime_close(loom_runtime *rt)
{
    if (rt == NULL)
        return;
    /* run() returned early (LOOM_EBUSY): force the stop to completion. */
    if (rt->started && !rt->stopped) {
        loom_runtime_stop(rt);
        for (loom__component *c = rt->components; c; c = c->next)
            c->asked = c->done = 1;
        rt_maybe_close(rt);
        for (int i = 0; i < 100 && !rt->stopped; i++)
            uv_run(rt->loop, UV_RUN_NOWAIT);
    }
    while (rt->components) {
        loom__component *c = rt->components;
        rt->components = c->next;
        loom_free(c);
    }
    loom__lsn_free(rt);
    if (rt->owns_loop && uv_loop_close(&rt->own_loop) != 0)
        loom__log(LOOM_LOG_ERROR, "runtime: its loop still had handles open "
                                  "when closed; they leak");
    rt_free(rt);
}
