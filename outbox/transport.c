/*
 * The transport registry and the handles above the operations
 * (loom/transport.h): argument checks happen here once, so a transport
 * only sees well-formed calls.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "loom/alloc.h"
#include "loom/nats.h"
#include "loom/topics.h"
#include "loom/transport.h"
#include "transport_int.h"

struct loom_transport {
    const loom_transport_ops *ops;
    loom_runtime *rt; /* the one it was opened on */
    void *state;
    loom_consumer *consumers; /* open consumers, closed with the transport */
};

struct loom_consumer {
    loom_transport *t;
    void *cstate;
    loom_consume_fn fn;
    void *arg;
    loom_consumer *next;
};

static pthread_mutex_t tr_lock = PTHREAD_MUTEX_INITIALIZER;
static const loom_transport_ops *tr_registered[LOOM_MAX_TRANSPORTS];
static size_t tr_count;

static int
tr_scheme_ok(const char *s, size_t n)
{
    if (n == 0 || n > LOOM_MAX_SCHEME || s[0] < 'a' || s[0] > 'z')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '+' || s[i] == '-' || s[i] == '.'))
            return 0;
    return 1;
}

static const loom_transport_ops *
tr_find(const char *scheme, size_t n)
{
    for (size_t i = 0; i < tr_count; i++)
        if (strlen(tr_registered[i]->scheme) == n &&
            memcmp(tr_registered[i]->scheme, scheme, n) == 0)
            return tr_registered[i];
    return NULL;
}

loom_err
loom_transport_register(const loom_transport_ops *ops)
{
    loom_err rc = LOOM_OK;

    if (ops == NULL ||
        (ops->version != LOOM_TRANSPORT_OPS_VERSION &&
         ops->version != LOOM_TRANSPORT_OPS_V1) ||
        ops->scheme == NULL ||
        !tr_scheme_ok(ops->scheme, strlen(ops->scheme)) || ops->open == NULL ||
        ops->close == NULL || ops->publish == NULL || ops->subscribe == NULL ||
        ops->ack == NULL || ops->fail == NULL || ops->unsubscribe == NULL)
        return LOOM_EINVAL;
    pthread_mutex_lock(&tr_lock);
    if (tr_find(ops->scheme, strlen(ops->scheme)) != NULL)
        rc = LOOM_EDUPLICATE;
    else if (tr_count == LOOM_MAX_TRANSPORTS)
        rc = LOOM_ENOMEM;
    else
        tr_registered[tr_count++] = ops;
    pthread_mutex_unlock(&tr_lock);
    return rc;
}

static void
tr_err(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

/* "no transport for scheme "x" (registered: a, b)" */
static void
tr_not_found(char *err, size_t errlen, const char *scheme, size_t n)
{
    size_t at;

    if (err == NULL || errlen == 0)
        return;
    snprintf(err, errlen,
             "no transport for scheme \"%.*s\" (registered:", (int) n, scheme);
    for (size_t i = 0; i < tr_count; i++) {
        at = strlen(err);
        snprintf(err + at, errlen - at, "%s %s", i ? "," : "",
                 tr_registered[i]->scheme);
    }
    at = strlen(err);
    snprintf(err + at, errlen - at, "%s)", tr_count ? "" : " none");
}

loom_err
loom_transport_open(loom_runtime *rt, const char *url, loom_transport **out,
                    char *err, size_t errlen)
{
    const loom_transport_ops *ops;
    const char *sep;
    loom_transport *t;
    loom_err rc;

    tr_err(err, errlen, "");
    if (out != NULL)
        *out = NULL;
    if (rt == NULL || url == NULL || out == NULL) {
        tr_err(err, errlen, "no runtime, URL or result pointer (NULL)");
        return LOOM_EINVAL;
    }
    /* The built-in transport is always there; NATS when built in. */
    loom_topics_register();
    (void) loom_nats_register();
    sep = strstr(url, "://");
    if (sep == NULL || !tr_scheme_ok(url, (size_t) (sep - url))) {
        tr_err(err, errlen,
               "a transport URL looks like \"topics://\" or "
               "\"nats://host:4222\"");
        return LOOM_EINVAL;
    }
    pthread_mutex_lock(&tr_lock);
    ops = tr_find(url, (size_t) (sep - url));
    if (ops == NULL)
        tr_not_found(err, errlen, url, (size_t) (sep - url));
    pthread_mutex_unlock(&tr_lock);
    if (ops == NULL)
        return LOOM_ENOTFOUND;
    t = loom_malloc(sizeof *t);
    if (t == NULL)
        return LOOM_ENOMEM;
    memset(t, 0, sizeof *t);
    t->ops = ops;
    t->rt = rt;
    rc = ops->open(rt, url, &t->state, err, errlen);
    if (rc != LOOM_OK) {
        loom_free(t);
        return rc;
    }
    *out = t;
    return LOOM_OK;
}

void
loom_transport_close(loom_transport *t)
{
    if (t == NULL)
        return;
    while (t->consumers != NULL)
        loom_consumer_close(t->consumers);
    t->ops->close(t->state);
    loom_free(t);
}

const char *
loom_transport_scheme(const loom_transport *t)
{
    return t != NULL ? t->ops->scheme : "";
}

loom_err
loom_transport_publish(loom_transport *t, const loom_message *msgs, size_t n,
                       loom_publish_cb cb, void *arg)
{
    if (t == NULL || msgs == NULL || n == 0)
        return LOOM_EINVAL;
    for (size_t i = 0; i < n; i++) {
        const loom_message *m = &msgs[i];
        if (m->topic == NULL || m->topic[0] == '\0' ||
            (m->payload == NULL && m->payload_len > 0) ||
            (m->key == NULL && m->key_len > 0) ||
            (m->headers == NULL && m->n_headers > 0) ||
            m->partition < LOOM_PARTITION_ANY)
            return LOOM_EINVAL;
        for (size_t h = 0; h < m->n_headers; h++)
            if (m->headers[h].key == NULL || m->headers[h].value == NULL)
                return LOOM_EINVAL;
    }
    return t->ops->publish(t->state, msgs, n, cb, arg);
}

static loom_err
tr_subscribe(void *state, const loom_consumer_config *cfg, loom_consumer *c,
             const void *extra, void **cstate)
{
    (void) extra;
    return c->t->ops->subscribe(state, cfg, c, cstate);
}

loom_err
loom__consumer_open(loom_transport *t, const loom_consumer_config *cfg,
                    loom_consume_fn fn, void *arg, loom__subscribe_fn sub,
                    const void *extra, loom_consumer **out)
{
    loom_consumer *c;
    loom_err rc;

    if (out != NULL)
        *out = NULL;
    if (t == NULL || cfg == NULL || out == NULL || sub == NULL ||
        cfg->group == NULL || cfg->group[0] == '\0' || cfg->topics == NULL ||
        cfg->n_topics == 0)
        return LOOM_EINVAL;
    for (size_t i = 0; i < cfg->n_topics; i++)
        if (cfg->topics[i] == NULL || cfg->topics[i][0] == '\0')
            return LOOM_EINVAL;
    c = loom_malloc(sizeof *c);
    if (c == NULL)
        return LOOM_ENOMEM;
    memset(c, 0, sizeof *c);
    c->t = t;
    c->fn = fn;
    c->arg = arg;
    rc = sub(t->state, cfg, c, extra, &c->cstate);
    if (rc != LOOM_OK) {
        loom_free(c);
        return rc;
    }
    c->next = t->consumers;
    t->consumers = c;
    *out = c;
    return LOOM_OK;
}

loom_err
loom_consumer_open(loom_transport *t, const loom_consumer_config *cfg,
                   loom_consume_fn fn, void *arg, loom_consumer **out)
{
    if (out != NULL)
        *out = NULL;
    if (fn == NULL)
        return LOOM_EINVAL;
    return loom__consumer_open(t, cfg, fn, arg, tr_subscribe, NULL, out);
}

const loom_transport_ops *
loom__transport_ops(const loom_transport *t)
{
    return t != NULL ? t->ops : NULL;
}

void *
loom__transport_state(const loom_transport *t)
{
    return t != NULL ? t->state : NULL;
}

loom_runtime *
loom__transport_runtime(const loom_transport *t)
{
    return t != NULL ? t->rt : NULL;
}

const loom_transport_ops *
loom__consumer_ops(const loom_consumer *c)
{
    return c != NULL ? c->t->ops : NULL;
}

void *
loom__consumer_state(const loom_consumer *c)
{
    return c != NULL ? c->cstate : NULL;
}

void *
loom__consumer_arg(const loom_consumer *c)
{
    return c != NULL ? c->arg : NULL;
}

loom_err
loom_consumer_ack(loom_consumer *c, const loom_message *m)
{
    if (c == NULL || m == NULL)
        return LOOM_EINVAL;
    return c->t->ops->ack(c->cstate, m);
}

loom_err
loom_consumer_fail(loom_consumer *c, const loom_message *m, const char *error)
{
    if (c == NULL || m == NULL)
        return LOOM_EINVAL;
    return c->t->ops->fail(c->cstate, m, error ? error : "failed");
}

/* A version 1 table ends before reject: never read past it. */
loom_err
loom_consumer_reject(loom_consumer *c, const loom_message *m, const char *error)
{
    const loom_transport_ops *ops;

    if (c == NULL || m == NULL)
        return LOOM_EINVAL;
    ops = c->t->ops;
    if (error == NULL)
        error = "rejected";
    if (ops->version >= 2 && ops->reject != NULL)
        return ops->reject(c->cstate, m, error);
    return ops->fail(c->cstate, m, error);
}

void
loom_consumer_close(loom_consumer *c)
{
    loom_consumer **pp;

    if (c == NULL)
        return;
    for (pp = &c->t->consumers; *pp != NULL; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    c->t->ops->unsubscribe(c->cstate);
    loom_free(c);
}

void
loom_consumer_deliver(loom_consumer *c, const loom_message *const *msgs,
                      size_t n)
{
    if (c != NULL && c->fn != NULL && msgs != NULL && n > 0)
        c->fn(c, msgs, n, c->arg);
}
