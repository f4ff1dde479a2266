/*
 * The "nats" transport: open and close, the runtime component, the ops
 * table, the events other threads queue for the loop, and the registry
 * through which libnats' callbacks reach a transport.
 *
 * Why a registry: libnats calls its callbacks (publish acknowledgements,
 * connection events) on threads of its own, and may still do so while or
 * after the transport closes; it has no hook telling when it is done with
 * a closure. So libnats never gets a pointer: it gets the transport's
 * registry id, and a callback enters the registry to find the transport.
 * Closing removes the transport and waits for callbacks already inside,
 * after which nothing from libnats can reach it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "alloc_int.h"
#include "loom/alloc.h"
#include "nats_int.h"
#include "redact.h"

/* ---- the registry -------------------------------------------------------- */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reg_cond = PTHREAD_COND_INITIALIZER;
static nt_transport *reg_list;
static uintptr_t reg_next_id = 1;

static void
reg_add(nt_transport *tr)
{
    pthread_mutex_lock(&reg_lock);
    tr->reg_id = reg_next_id++;
    tr->reg_next = reg_list;
    reg_list = tr;
    pthread_mutex_unlock(&reg_lock);
}

/* After this no libnats callback touches tr. */
static void
reg_remove(nt_transport *tr)
{
    nt_transport **pp;

    pthread_mutex_lock(&reg_lock);
    for (pp = &reg_list; *pp != NULL; pp = &(*pp)->reg_next)
        if (*pp == tr) {
            *pp = tr->reg_next;
            break;
        }
    while (tr->reg_active > 0)
        pthread_cond_wait(&reg_cond, &reg_lock);
    pthread_mutex_unlock(&reg_lock);
}

nt_transport *
loom__nt_enter(void *closure)
{
    uintptr_t id = (uintptr_t) closure;
    nt_transport *tr;

    pthread_mutex_lock(&reg_lock);
    for (tr = reg_list; tr != NULL && tr->reg_id != id; tr = tr->reg_next)
        ;
    if (tr != NULL)
        tr->reg_active++;
    pthread_mutex_unlock(&reg_lock);
    return tr;
}

void
loom__nt_leave(nt_transport *tr)
{
    pthread_mutex_lock(&reg_lock);
    if (--tr->reg_active == 0)
        pthread_cond_broadcast(&reg_cond);
    pthread_mutex_unlock(&reg_lock);
}

static void *
reg_closure(const nt_transport *tr)
{
    return (void *) tr->reg_id;
}

/* ---- events for the loop ------------------------------------------------- */

#define NT_EVENTS_PER_TURN 1024

typedef struct nt_logev {
    nt_event ev; /* first */
    loom_log_level level;
    char text[512];
} nt_logev;

void
loom__nt_post_locked(nt_transport *tr, nt_event *ev)
{
    ev->next = NULL;
    if (tr->ev_tail != NULL)
        tr->ev_tail->next = ev;
    else
        tr->ev_head = ev;
    tr->ev_tail = ev;
    uv_async_send(tr->async);
}

void
loom__nt_post(nt_transport *tr, nt_event *ev)
{
    pthread_mutex_lock(&tr->mu);
    loom__nt_post_locked(tr, ev);
    pthread_mutex_unlock(&tr->mu);
}

void
loom__nt_log(nt_transport *tr, loom_log_level level, const char *fmt, ...)
{
    nt_logev *l = loom_malloc(sizeof *l);
    va_list ap;

    if (l == NULL)
        return;
    l->ev.type = NT_EV_LOG;
    l->level = level;
    va_start(ap, fmt);
    vsnprintf(l->text, sizeof l->text, fmt, ap);
    va_end(ap);
    loom__nt_post(tr, &l->ev);
}

void
loom__nt_errf(nt_transport *tr, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(tr->errmsg, sizeof tr->errmsg, fmt, ap);
    va_end(ap);
}

static nt_event *
nt_pop(nt_transport *tr)
{
    nt_event *ev;

    pthread_mutex_lock(&tr->mu);
    ev = tr->ev_head;
    if (ev != NULL) {
        tr->ev_head = ev->next;
        if (tr->ev_head == NULL)
            tr->ev_tail = NULL;
    }
    pthread_mutex_unlock(&tr->mu);
    return ev;
}

static void
nt_dispatch(nt_transport *tr, nt_event *ev)
{
    switch (ev->type) {
    case NT_EV_CALL:
        loom__nt_call_finish(tr, NT_CONTAINER(ev, nt_call, ev));
        break;
    case NT_EV_BATCH:
        loom__nt_deliver(tr, (nt_batch *) (void *) ev);
        break;
    case NT_EV_LOG: {
        nt_logev *l = (nt_logev *) (void *) ev;
        loom__log(l->level, "%s", l->text);
        loom_free(l);
        break;
    }
    }
}

static void nt_free(nt_transport *tr);

static void
nt_on_async(uv_async_t *a)
{
    nt_transport *tr = a->data;
    nt_event *ev;

    if (tr == NULL)
        return;
    tr->dispatching++;
    /* A bounded turn, so a busy transport leaves the loop to others too;
     * the rest waits for the next one. */
    for (int i = 0; i < NT_EVENTS_PER_TURN && !tr->closed; i++) {
        if ((ev = nt_pop(tr)) == NULL)
            break;
        nt_dispatch(tr, ev);
        if (i + 1 == NT_EVENTS_PER_TURN && !tr->closed)
            uv_async_send(a);
    }
    tr->dispatching--;
    /* Closed by a callback: the close left the memory to us. */
    if (tr->closed && tr->dispatching == 0)
        nt_free(tr);
}

/* ---- libnats' connection events ------------------------------------------ */

static void
nt_url(natsConnection *nc, char *buf, size_t len)
{
    char raw[256];
    loom__buf shown = LOOM__BUF_INIT;

    /* The URL as configured: "nats://user:password@host" shows "***". */
    if (natsConnection_GetConnectedUrl(nc, raw, sizeof raw) != NATS_OK ||
        !raw[0]) {
        snprintf(buf, len, "the server");
        return;
    }
    loom__conninfo_redact(raw, &shown);
    snprintf(buf, len, "%s",
             shown.failed ? "the server" : loom__buf_str(&shown));
    loom__buf_free(&shown);
}

static void
nt_on_disconnected(natsConnection *nc, void *closure)
{
    nt_transport *tr = loom__nt_enter(closure);

    (void) nc;
    if (tr == NULL)
        return;
    loom__nt_log(tr, LOOM_LOG_WARN,
                 "nats: connection lost; reconnecting every %lld ms",
                 (long long) tr->cfg.reconnect_wait_ms);
    loom__nt_leave(tr);
}

int64_t
loom__nt_max_payload(nt_transport *tr)
{
    int64_t max;

    pthread_mutex_lock(&tr->mu);
    max = tr->max_payload;
    pthread_mutex_unlock(&tr->mu);
    return max;
}

static void
nt_on_reconnected(natsConnection *nc, void *closure)
{
    nt_transport *tr = loom__nt_enter(closure);
    char url[256] = "";
    int64_t max;

    if (tr == NULL)
        return;
    max = natsConnection_GetMaxPayload(nc); /* another server may differ */
    pthread_mutex_lock(&tr->mu);
    tr->max_payload = max;
    tr->reconnects++; /* pull requests died with the old connection */
    pthread_mutex_unlock(&tr->mu);
    nt_url(nc, url, sizeof url);
    loom__nt_log(tr, LOOM_LOG_INFO, "nats: reconnected to %s", url);
    loom__nt_leave(tr);
}

static void
nt_on_closed(natsConnection *nc, void *closure)
{
    nt_transport *tr = loom__nt_enter(closure);

    (void) nc;
    if (tr == NULL)
        return;
    /* Only max_reconnect attempts failing get here while open. */
    loom__nt_log(tr, LOOM_LOG_ERROR,
                 "nats: connection closed after %d failed reconnection "
                 "attempts; publishing and consuming fail until the "
                 "transport is opened again",
                 tr->cfg.max_reconnect);
    loom__nt_leave(tr);
}

static void
nt_on_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
            void *closure)
{
    nt_transport *tr = loom__nt_enter(closure);
    const char *text = NULL;

    (void) sub;
    if (tr == NULL)
        return;
    if (natsConnection_GetLastError(nc, &text) == NATS_OK || text == NULL)
        text = natsStatus_GetText(err);
    loom__nt_log(tr, LOOM_LOG_WARN, "nats: %s", text);
    loom__nt_leave(tr);
}

/* ---- open ---------------------------------------------------------------- */

/* Whether a stream subject captures every subject under `prefix`. */
static int
nt_covers(const char *subj, const char *prefix)
{
    for (;;) {
        const char *sd = strchr(subj, '.'), *pd = strchr(prefix, '.');
        size_t sl = sd ? (size_t) (sd - subj) : strlen(subj);
        size_t pl = pd ? (size_t) (pd - prefix) : strlen(prefix);

        if (sl == 1 && subj[0] == '>')
            return 1;
        if (!(sl == 1 && subj[0] == '*') &&
            (sl != pl || memcmp(subj, prefix, sl) != 0))
            return 0;
        if (sd == NULL)
            return 0; /* the prefix itself, not what lies below it */
        subj = sd + 1;
        if (pd == NULL)
            return strcmp(subj, ">") == 0;
        prefix = pd + 1;
    }
}

static loom_err
nt_js_fail(natsStatus s, jsErrCode jerr, const char *what, const char *name,
           char *err, size_t errlen)
{
    snprintf(err, errlen, "nats: %s \"%s\": %s (JetStream error %d)%s", what,
             name, loom__nt_why(s), (int) jerr,
             s == NATS_NO_RESPONDERS || s == NATS_TIMEOUT
                 ? "; is JetStream enabled on the server (nats-server -js)?"
                 : "");
    return s == NATS_ERR ? LOOM_EIO : loom__nt_err(s);
}

/* Uses the stream, or creates it when missing. */
static loom_err
nt_stream(nt_transport *tr, char *err, size_t errlen)
{
    char subject[256];
    const char *subjects[1] = {subject};
    jsStreamInfo *si = NULL;
    jsStreamConfig sc;
    jsErrCode jerr = 0;
    natsStatus s;
    int covered = 0;

    snprintf(subject, sizeof subject, "%s.>", tr->cfg.prefix);
    s = js_GetStreamInfo(&si, tr->js, tr->cfg.stream, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
        jsStreamConfig_Init(&sc);
        sc.Name = tr->cfg.stream;
        sc.Subjects = subjects;
        sc.SubjectsLen = 1;
        sc.Storage = js_FileStorage;
        sc.Duplicates = tr->cfg.dedup_window_ms * 1000000;
        jerr = 0;
        s = js_AddStream(&si, tr->js, &sc, NULL, &jerr);
        if (s != NATS_OK && (jerr == JSStreamNameExistErr ||
                             jerr == JSStreamSubjectOverlapErr)) {
            /* Another process created it first (processes starting
             * together race; the loser is told the name exists, or, as
             * nats-server also answers, that its subjects overlap those
             * of the stream just made). Use that stream if it is there;
             * an overlap with a stream of another name stays an error. */
            jsErrCode again = 0;
            if (js_GetStreamInfo(&si, tr->js, tr->cfg.stream, NULL, &again) ==
                NATS_OK)
                s = NATS_OK;
        }
        if (s != NATS_OK)
            return nt_js_fail(s, jerr, "cannot create stream", sc.Name, err,
                              errlen);
    } else if (s != NATS_OK) {
        return nt_js_fail(s, jerr, "cannot read stream", tr->cfg.stream, err,
                          errlen);
    }
    for (int i = 0; si->Config != NULL && i < si->Config->SubjectsLen; i++)
        covered |= nt_covers(si->Config->Subjects[i], tr->cfg.prefix);
    jsStreamInfo_Destroy(si);
    if (!covered) {
        snprintf(err, errlen,
                 "nats: stream \"%s\" exists but does not capture \"%s\"; "
                 "choose another stream= or prefix=, or add the subject to "
                 "the stream",
                 tr->cfg.stream, subject);
        return LOOM_EINVAL;
    }
    return LOOM_OK;
}

static loom_err
nt_connect(nt_transport *tr, char *err, size_t errlen)
{
    natsOptions *o = NULL;
    natsStatus s;
    jsOptions jo;

    s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetServers(o, (const char **) tr->cfg.servers,
                                   tr->cfg.n_servers);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, tr->cfg.connect_timeout_ms);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, "eventloom");
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, tr->cfg.max_reconnect);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, tr->cfg.reconnect_wait_ms);
    /* A dead peer that never closes the socket is noticed in ~15 s. */
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(o, 5000);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(o, nt_on_disconnected,
                                          reg_closure(tr));
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(o, nt_on_reconnected, reg_closure(tr));
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(o, nt_on_closed, reg_closure(tr));
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(o, nt_on_error, reg_closure(tr));
    if (s == NATS_OK)
        s = natsConnection_Connect(&tr->nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        tr->nc = NULL;
        snprintf(err, errlen, "nats: cannot connect to %s%s: %s",
                 tr->cfg.servers[0],
                 tr->cfg.n_servers > 1 ? " (and others)" : "", loom__nt_why(s));
        return s == NATS_NO_MEMORY ? LOOM_ENOMEM : LOOM_ECONN;
    }
    tr->max_payload = natsConnection_GetMaxPayload(tr->nc);
    jsOptions_Init(&jo);
    jo.Wait = tr->cfg.connect_timeout_ms;
    jo.PublishAsync.AckHandler = loom__nt_on_pub_ack;
    jo.PublishAsync.AckHandlerClosure = reg_closure(tr);
    s = natsConnection_JetStream(&tr->js, tr->nc, &jo);
    if (s != NATS_OK) {
        tr->js = NULL;
        snprintf(err, errlen, "nats: no JetStream context: %s",
                 natsStatus_GetText(s));
        return LOOM_ENOMEM;
    }
    return nt_stream(tr, err, errlen);
}

static void
nt_async_closed(uv_handle_t *h)
{
    loom_free(h);
}

static void nt_close(void *state);

static void
nt_stop(void *arg, loom__component *comp, loom__done_fn done)
{
    nt_transport *tr = arg;

    (void) comp;
    tr->stopping = 1;
    tr->stop_done = done;
    for (nt_consumer *c = tr->consumers; c != NULL; c = c->next)
        loom__nt_consumer_stop(c);
    loom__nt_maybe_stopped(tr);
}

void
loom__nt_maybe_stopped(nt_transport *tr)
{
    loom__done_fn done = tr->stop_done;

    if (!tr->stopping || done == NULL || tr->calls != NULL)
        return;
    tr->stop_done = NULL;
    /* The loop may end now; the handle stays open for close. */
    uv_unref((uv_handle_t *) tr->async);
    done(tr->comp);
}

static loom_err
nt_open(loom_runtime *rt, const char *url, void **state, char *err,
        size_t errlen)
{
    char scratch[512];
    nt_transport *tr;
    loom_err rc;

    if (err == NULL || errlen == 0) {
        err = scratch;
        errlen = sizeof scratch;
    }
    tr = loom_malloc(sizeof *tr);
    if (tr == NULL)
        return LOOM_ENOMEM;
    memset(tr, 0, sizeof *tr);
    tr->rt = rt;
    tr->loop = loom_runtime_loop(rt);
    rc = loom__nt_config_parse(&tr->cfg, url, err, errlen);
    if (rc != LOOM_OK) {
        loom_free(tr);
        return rc;
    }
    pthread_mutex_init(&tr->mu, NULL);
    pthread_cond_init(&tr->io_cond, NULL);
    tr->async = loom_malloc(sizeof *tr->async);
    if (tr->async == NULL ||
        uv_async_init(tr->loop, tr->async, nt_on_async) != 0) {
        loom_free(tr->async);
        tr->async = NULL;
        nt_free(tr);
        return LOOM_ENOMEM;
    }
    tr->async->data = tr;
    reg_add(tr);
    rc = nt_connect(tr, err, errlen);
    if (rc == LOOM_OK)
        rc = loom__nt_io_start(tr);
    if (rc == LOOM_OK) {
        rc = loom__runtime_add_component(rt, nt_stop, tr, &tr->comp);
        if (rc != LOOM_OK)
            snprintf(err, errlen, "the runtime is stopping");
    }
    if (rc != LOOM_OK) {
        tr->closed = 1; /* nt_close frees at once: nothing dispatches */
        nt_close(tr);
        return rc;
    }
    *state = tr;
    return LOOM_OK;
}

/* ---- close --------------------------------------------------------------- */

static void
nt_free(nt_transport *tr)
{
    loom__nt_config_free(&tr->cfg);
    pthread_cond_destroy(&tr->io_cond);
    pthread_mutex_destroy(&tr->mu);
    loom_free(tr);
}

/* Events queued but not dispatched: their callbacks run now. */
static void
nt_drain_events(nt_transport *tr)
{
    nt_event *ev;

    while ((ev = nt_pop(tr)) != NULL)
        nt_dispatch(tr, ev);
}

static void
nt_close(void *state)
{
    nt_transport *tr = state;
    int freeing = tr->closed; /* a failed open */

    /* loom_transport_close() closed the consumers. */
    loom__nt_io_stop(tr);
    loom__nt_io_drain(tr);
    if (tr->js != NULL && tr->js_async) {
        natsMsgList pending = {0};
        /* Publishes still awaiting acknowledgement: libnats hands them
         * back (or would keep them forever). Their calls fail below.
         * (libnats 3.4 crashes here before a first async publish has
         * succeeded: produce.c sets js_async only then.) */
        if (js_PublishAsyncGetPendingList(&pending, tr->js) == NATS_OK)
            natsMsgList_Destroy(&pending);
    }
    reg_remove(tr);
    /* No libnats callback runs from here on; one that was running may
     * have queued a settle (a dead letter's acknowledgement) after the
     * drain above: settle and release it too. */
    loom__nt_io_drain(tr);
    loom__nt_produce_close(tr);
    nt_drain_events(tr);
    /* Every call has its outcome by now (each message was unsent, awaited
     * or answered); one that has not would be a bug, and still gets its
     * callback. */
    while (tr->calls != NULL) {
        if (tr->calls->rc == LOOM_OK)
            tr->calls->rc = LOOM_ECONN;
        loom__nt_call_finish(tr, tr->calls);
    }
    /* The acknowledgements settled above go out before the connection. */
    if (tr->nc != NULL &&
        natsConnection_Status(tr->nc) == NATS_CONN_STATUS_CONNECTED)
        natsConnection_FlushTimeout(tr->nc, 1000);
    jsCtx_Destroy(tr->js);
    tr->js = NULL;
    natsConnection_Destroy(tr->nc);
    tr->nc = NULL;
    if (tr->stop_done != NULL) {
        loom__done_fn done = tr->stop_done;
        tr->stop_done = NULL;
        done(tr->comp);
    }
    loom__runtime_remove_component(tr->comp);
    tr->comp = NULL;
    tr->closed = 1;
    if (tr->async != NULL) {
        tr->async->data = NULL;
        uv_close((uv_handle_t *) tr->async, nt_async_closed);
        /* Outside the loop's run, close callbacks only run when it turns. */
        if (!tr->rt->running)
            uv_run(tr->loop, UV_RUN_NOWAIT);
        tr->async = NULL;
    }
    if (freeing || tr->dispatching == 0)
        nt_free(tr);
}

/* ---- the ops ------------------------------------------------------------- */

static loom_err
nt_ops_publish(void *state, const loom_message *msgs, size_t n,
               loom_publish_cb cb, void *arg)
{
    return loom__nt_publish(state, msgs, n, cb, arg);
}

static loom_err
nt_ops_subscribe(void *state, const loom_consumer_config *cfg, loom_consumer *c,
                 void **cstate)
{
    nt_consumer *nc = NULL;
    loom_err rc = loom__nt_subscribe(state, cfg, c, &nc);

    *cstate = nc;
    return rc;
}

static loom_err
nt_ops_ack(void *cstate, const loom_message *m)
{
    return loom__nt_ack(cstate, m);
}

static loom_err
nt_ops_fail(void *cstate, const loom_message *m, const char *error)
{
    return loom__nt_fail(cstate, m, error);
}

static loom_err
nt_ops_reject(void *cstate, const loom_message *m, const char *error)
{
    return loom__nt_reject(cstate, m, error);
}

static void
nt_ops_unsubscribe(void *cstate)
{
    loom__nt_unsubscribe(cstate);
}

static const loom_transport_ops nt_ops = {
    .version = LOOM_TRANSPORT_OPS_VERSION,
    .scheme = "nats",
    .open = nt_open,
    .close = nt_close,
    .publish = nt_ops_publish,
    .subscribe = nt_ops_subscribe,
    .ack = nt_ops_ack,
    .fail = nt_ops_fail,
    .unsubscribe = nt_ops_unsubscribe,
    .reject = nt_ops_reject,
};

loom_err
loom_nats_register(void)
{
    loom_err rc = loom_transport_register(&nt_ops);

    return rc == LOOM_EDUPLICATE ? LOOM_OK : rc;
}

const char *
loom_nats_errmsg(const loom_transport *t)
{
    const nt_transport *tr;

    if (loom__transport_ops(t) != &nt_ops)
        return "";
    tr = loom__transport_state(t);
    return tr->errmsg;
}
