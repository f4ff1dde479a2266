/*
 * One process of the demo: a runtime, a transport, an outbox relay on the
 * default outbox (the process that leads publishes everyone's commands,
 * replies and starts; the others stand by), and the parts named by its
 * roles: the orchestrator, the three participants, the read model's
 * projection (and, with the order service, its cancellation policy).
 *
 * The one-process demo runs a host with every role on a thread of its
 * own; os_host_payment() lets it hand the payment service over to a child
 * process for the kill scenario and take it back afterwards.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "loom/outbox.h"

#include "services.h"
#include "summary.h"

struct os_host {
    os_host_config cfg;
    char *conninfo, *url, *name;
    loom_runtime *rt;
    loom_transport *t;
    loom_relay *relay;
    loom_orchestrator *orch;
    loom_participant *parts[3]; /* order, payment, inventory */
    loom_subscription *policy;
    loom_projection *summary;
    os_counts closed; /* of participants closed before the end */
    /* Requests from other threads (one at a time). */
    uv_async_t async;
    int has_async;
    uv_mutex_t lock;
    uv_cond_t done_cond;
    /* os_host_run()'s `running` call, on the loop's first turn. */
    uv_timer_t first_turn;
    int first_turn_open;
    void (*running)(void *arg);
    void *running_arg;
    int op;   /* 0 none, 1 stop, 2 payment off, 3 payment on */
    int done; /* the op ran */
    loom_err op_rc;
};

static const loom_participant_def *const host_pdefs[3] = {
    &ordersaga__order__participant, &ordersaga__payment__participant,
    &ordersaga__inventory__participant};
static const int host_proles[3] = {OS_ROLE_ORDER, OS_ROLE_PAYMENT,
                                   OS_ROLE_INVENTORY};

static void
host_add_counts(os_counts *c, const loom_participant *p)
{
    loom_participant_stats s;

    if (p == NULL || loom_participant_stats_get(p, &s) != LOOM_OK)
        return;
    c->handled += s.handled;
    c->failures += s.failures;
    c->duplicates += s.duplicates;
    c->conflicts += s.conflicts;
    c->errors += s.errors;
}

static loom_err
host_participant(os_host *h, int i, char *err, size_t errlen)
{
    loom_participant_config pc = LOOM_PARTICIPANT_CONFIG_INIT;

    pc.conninfo = h->conninfo;
    pc.transport = h->t;
    pc.defs = &host_pdefs[i];
    pc.n_defs = 1;
    return loom_participant_open(h->rt, &pc, &h->parts[i], err, errlen);
}

static loom_err
host_orchestrator(os_host *h, char *err, size_t errlen)
{
    static const loom_saga_def *const defs[] = {&ordersaga__create_order__saga};
    loom_orchestrator_config oc = LOOM_ORCHESTRATOR_CONFIG_INIT;

    oc.conninfo = h->conninfo;
    oc.transport = h->t;
    oc.defs = defs;
    oc.n_defs = 1;
    oc.poll_ms = 200;
    oc.lease_ms = 5000;
    return loom_orchestrator_open(h->rt, &oc, &h->orch, err, errlen);
}

static loom_err
host_relay(os_host *h, char *err, size_t errlen)
{
    loom_relay_config rc = LOOM_RELAY_CONFIG_INIT;

    rc.conninfo = h->conninfo;
    rc.transport = h->t;
    rc.name = h->name;
    rc.poll_ms = 200;
    rc.standby_ms = 200; /* a killed leader is replaced quickly */
    rc.backoff_max_ms = 2000;
    return loom_relay_start(h->rt, &rc, &h->relay, err, errlen);
}

static void
host_on_async(uv_async_t *a)
{
    os_host *h = a->data;
    char err[256];
    int op;

    uv_mutex_lock(&h->lock);
    op = h->op;
    uv_mutex_unlock(&h->lock);
    if (op == 0)
        return;
    if (op == 1) {
        uv_close((uv_handle_t *) &h->async, NULL);
        loom_runtime_stop(h->rt);
        h->op_rc = LOOM_OK;
    } else if (op == 2) {
        host_add_counts(&h->closed, h->parts[1]);
        loom_participant_close(h->parts[1]);
        h->parts[1] = NULL;
        h->op_rc = LOOM_OK;
    } else if (h->parts[1] == NULL) {
        h->op_rc = host_participant(h, 1, err, sizeof err);
    }
    uv_mutex_lock(&h->lock);
    h->op = 0;
    h->done = 1;
    uv_cond_broadcast(&h->done_cond);
    uv_mutex_unlock(&h->lock);
}

/* Copies what cfg points at. */
static loom_err
host_copy(os_host *h, const os_host_config *cfg)
{
    const char *url = cfg->transport ? cfg->transport : "topics://";

    h->cfg = *cfg;
    h->url = strdup(url);
    h->name = strdup(cfg->name ? cfg->name : "order-saga");
    h->conninfo = cfg->conninfo ? strdup(cfg->conninfo) : NULL;
    if (h->url == NULL || h->name == NULL ||
        (cfg->conninfo != NULL && h->conninfo == NULL))
        return LOOM_ENOMEM;
    return LOOM_OK;
}

static loom_err
host_parts(os_host *h, char *err, size_t errlen)
{
    int roles = h->cfg.roles;
    loom_projection_options po = LOOM_PROJECTION_OPTIONS_INIT;
    loom_err rc;

    if ((rc = host_relay(h, err, errlen)) != LOOM_OK)
        return rc;
    if ((roles & OS_ROLE_ORCHESTRATOR) &&
        (rc = host_orchestrator(h, err, errlen)) != LOOM_OK)
        return rc;
    for (int i = 0; i < 3; i++)
        if ((roles & host_proles[i]) &&
            (rc = host_participant(h, i, err, errlen)) != LOOM_OK)
            return rc;
    if ((roles & OS_ROLE_ORDER) &&
        (rc = os_order_policy_start(h->rt, h->conninfo, &h->policy)) !=
            LOOM_OK) {
        snprintf(err, errlen, "order policy: %s", loom_strerror(rc));
        return rc;
    }
    if (roles & OS_ROLE_SUMMARY) {
        po.conninfo = h->conninfo;
        rc = loom_projection_start(h->rt, os_summary_def(), &po, &h->summary);
        if (rc != LOOM_OK) {
            snprintf(err, errlen, "projection %s: %s", os_summary_def()->name,
                     loom_strerror(rc));
            return rc;
        }
    }
    return LOOM_OK;
}

loom_err
os_host_open(os_host **out, const os_host_config *cfg, char *err, size_t errlen)
{
    loom_runtime_config rcfg = LOOM_RUNTIME_CONFIG_INIT;
    os_host *h;
    loom_err rc;

    *out = NULL;
    h = calloc(1, sizeof *h);
    if (h == NULL)
        return LOOM_ENOMEM;
    uv_mutex_init(&h->lock);
    uv_cond_init(&h->done_cond);
    if ((rc = host_copy(h, cfg)) != LOOM_OK)
        goto fail;
    rcfg.conninfo = h->conninfo;
    rcfg.handle_signals = cfg->handle_signals;
    rcfg.poll_ms = 500;
    if ((rc = loom_runtime_open(&h->rt, &rcfg)) != LOOM_OK) {
        snprintf(err, errlen, "runtime: %s", loom_strerror(rc));
        goto fail;
    }
    rc = loom_transport_open(h->rt, h->url, &h->t, err, errlen);
    if (rc != LOOM_OK)
        goto fail;
    if ((rc = host_parts(h, err, errlen)) != LOOM_OK)
        goto fail;
    if (!cfg->handle_signals) {
        /* Requests from the demo's thread; children stop on signals. */
        uv_async_init(loom_runtime_loop(h->rt), &h->async, host_on_async);
        h->async.data = h;
        h->has_async = 1;
    }
    *out = h;
    return LOOM_OK;
fail:
    os_host_close(h);
    return rc;
}

static void
host_first_turn_closed(uv_handle_t *t)
{
    os_host *h = t->data;

    h->first_turn_open = 0;
}

static void
host_on_first_turn(uv_timer_t *t)
{
    os_host *h = t->data;

    uv_close((uv_handle_t *) t, host_first_turn_closed);
    h->running(h->running_arg);
}

loom_err
os_host_run(os_host *h, void (*running)(void *arg), void *arg)
{
    loom_err rc;

    if (running != NULL) {
        /* The runtime installs its signal handlers when it starts to run:
         * a "ready" said before that could be answered with a SIGTERM
         * that kills the process instead of stopping it. */
        h->running = running;
        h->running_arg = arg;
        uv_timer_init(loom_runtime_loop(h->rt), &h->first_turn);
        h->first_turn.data = h;
        h->first_turn_open = 1;
        uv_timer_start(&h->first_turn, host_on_first_turn, 0, 0);
    }
    rc = loom_runtime_run(h->rt);
    if (h->first_turn_open) {
        /* Stopped before its first turn: the handle must still close. */
        if (!uv_is_closing((uv_handle_t *) &h->first_turn))
            uv_close((uv_handle_t *) &h->first_turn, host_first_turn_closed);
        while (h->first_turn_open)
            uv_run(loom_runtime_loop(h->rt), UV_RUN_NOWAIT);
    }
    return rc;
}

static loom_err
host_request(os_host *h, int op)
{
    loom_err rc;

    if (!h->has_async)
        return LOOM_EINVAL;
    uv_mutex_lock(&h->lock);
    while (h->op != 0)
        uv_cond_wait(&h->done_cond, &h->lock);
    h->op = op;
    h->done = 0;
    uv_async_send(&h->async);
    while (!h->done)
        uv_cond_wait(&h->done_cond, &h->lock);
    rc = h->op_rc;
    uv_mutex_unlock(&h->lock);
    return rc;
}

void
os_host_stop(os_host *h)
{
    if (h != NULL)
        host_request(h, 1);
}

loom_err
os_host_payment(os_host *h, int on)
{
    return h != NULL ? host_request(h, on ? 3 : 2) : LOOM_EINVAL;
}

void
os_host_counts(const os_host *h, os_counts *out)
{
    *out = h->closed;
    for (int i = 0; i < 3; i++)
        host_add_counts(out, h->parts[i]);
}

void
os_host_close(os_host *h)
{
    if (h == NULL)
        return;
    loom_projection_close(h->summary);
    loom_subscription_close(h->policy);
    for (int i = 0; i < 3; i++)
        loom_participant_close(h->parts[i]);
    loom_orchestrator_close(h->orch);
    loom_relay_close(h->relay);
    loom_transport_close(h->t);
    loom_runtime_close(h->rt);
    uv_cond_destroy(&h->done_cond);
    uv_mutex_destroy(&h->lock);
    free(h->url);
    free(h->name);
    free(h->conninfo);
    free(h);
}
