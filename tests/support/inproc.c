/*
 * The in-process test transport (inproc.h). One broker per open: topics
 * are arrays of owned messages; a cursor per (group, topic) says what the
 * group has taken; every taken message is a delivery, in flight with one
 * consumer or waiting for a retry, until it is acknowledged or
 * dead-lettered. A zero-delay timer "pumps": it hands one batch to one
 * consumer and runs again, so a handler may ack, fail, publish or close
 * anything without invalidating the pump's own iteration.
 */
#include "inproc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define IP_RETRY_BASE_MS 10

typedef struct ip_msg { /* one allocation: the view, then its bytes */
    loom_message m;
} ip_msg;

typedef struct ip_topic {
    char *name;
    ip_msg **log;
    size_t n, cap;
    struct ip_topic *next;
} ip_topic;

typedef struct ip_cons ip_cons;
typedef struct ip_cursor ip_cursor;

typedef struct ip_delivery {
    ip_msg *msg;
    ip_cursor *cur;
    ip_cons *owner; /* in flight with it, or NULL: waiting */
    uint64_t due_ms;
    loom_message view; /* msg->m with attempt and partition; handed out */
    struct ip_delivery *next;
} ip_delivery;

struct ip_cursor {
    char *group;
    ip_topic *topic;
    size_t next; /* offset of the next message to take */
    ip_delivery *taken;
    ip_cursor *link;
};

typedef struct ip_broker {
    uv_loop_t *loop;
    uv_timer_t pump;
    ip_topic *topics;
    ip_cursor *cursors;
    ip_cons *consumers;
    ip_cons *turn; /* the consumer the next pump starts with */
} ip_broker;

struct ip_cons {
    ip_broker *b;
    loom_consumer *c;
    char *group;
    char **patterns;
    size_t n_patterns;
    size_t batch, max_in_flight, in_flight;
    unsigned max_deliveries;
    ip_cons *next;
};

static char *
ip_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);

    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

static uint64_t
ip_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/* Copies `src` (and everything it points to) into one allocation. */
static ip_msg *
ip_copy(const loom_message *src, const char *topic)
{
    size_t size = sizeof(ip_msg) + strlen(topic) + 1 + src->key_len +
                  src->payload_len + src->n_headers * sizeof(loom_header);
    ip_msg *m;
    char *p;

    for (size_t i = 0; i < src->n_headers; i++)
        size += strlen(src->headers[i].key) + strlen(src->headers[i].value) + 2;
    m = malloc(size);
    if (m == NULL)
        return NULL;
    m->m = *src;
    p = (char *) (m + 1);
    m->m.headers = (loom_header *) (void *) p;
    p += src->n_headers * sizeof(loom_header);
    for (size_t i = 0; i < src->n_headers; i++) {
        loom_header *h = (loom_header *) &m->m.headers[i];
        size_t kl = strlen(src->headers[i].key) + 1;
        size_t vl = strlen(src->headers[i].value) + 1;
        memcpy(p, src->headers[i].key, kl);
        h->key = p;
        p += kl;
        memcpy(p, src->headers[i].value, vl);
        h->value = p;
        p += vl;
    }
    memcpy(p, topic, strlen(topic) + 1);
    m->m.topic = p;
    p += strlen(topic) + 1;
    if (src->key != NULL)
        memcpy(p, src->key, src->key_len);
    m->m.key = src->key ? p : NULL;
    p += src->key_len;
    if (src->payload_len > 0)
        memcpy(p, src->payload, src->payload_len);
    m->m.payload = p;
    return m;
}

static ip_topic *
ip_topic_get(ip_broker *b, const char *name, int create)
{
    ip_topic *t;

    for (t = b->topics; t != NULL; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    if (!create || (t = calloc(1, sizeof *t)) == NULL)
        return NULL;
    if ((t->name = ip_strdup(name)) == NULL) {
        free(t);
        return NULL;
    }
    t->next = b->topics;
    b->topics = t;
    return t;
}

static void ip_pump(uv_timer_t *timer);

static void
ip_schedule(ip_broker *b, uint64_t ms)
{
    if (!uv_is_closing((uv_handle_t *) &b->pump))
        uv_timer_start(&b->pump, ip_pump, ms, 0);
}

/* Appends one message; a message id already in the topic is dropped. */
static loom_err
ip_append(ip_broker *b, const loom_message *src, const char *topic)
{
    ip_topic *t = ip_topic_get(b, topic, 1);
    loom_message m = *src;
    ip_msg *copy;

    if (t == NULL)
        return LOOM_ENOMEM;
    if (loom_uuid_is_nil(&m.id) && loom_uuid_generate(&m.id) != LOOM_OK)
        return LOOM_EIO;
    for (size_t i = 0; i < t->n; i++)
        if (memcmp(&t->log[i]->m.id, &m.id, sizeof m.id) == 0)
            return LOOM_OK; /* deduplicated */
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        ip_msg **log = realloc(t->log, cap * sizeof *log);
        if (log == NULL)
            return LOOM_ENOMEM;
        t->log = log;
        t->cap = cap;
    }
    m.partition = 0;
    m.offset = (int64_t) t->n;
    m.timestamp = (int64_t) ip_now_us();
    m.attempt = 0;
    if ((copy = ip_copy(&m, topic)) == NULL)
        return LOOM_ENOMEM;
    t->log[t->n++] = copy;
    return LOOM_OK;
}

static ip_cursor *
ip_cursor_get(ip_broker *b, const char *group, ip_topic *t)
{
    ip_cursor *c;

    for (c = b->cursors; c != NULL; c = c->link)
        if (c->topic == t && strcmp(c->group, group) == 0)
            return c;
    if ((c = calloc(1, sizeof *c)) == NULL)
        return NULL;
    if ((c->group = ip_strdup(group)) == NULL) {
        free(c);
        return NULL;
    }
    c->topic = t;
    c->link = b->cursors;
    b->cursors = c;
    return c;
}

static int
ip_wants(const ip_cons *c, const char *topic)
{
    for (size_t i = 0; i < c->n_patterns; i++)
        if (loom_topic_matches(c->patterns[i], topic))
            return 1;
    return 0;
}

/* Fills `out` with up to `room` deliveries for consumer `c`: due retries
 * first, then new messages in offset order. Sets *wait_ms to the
 * earliest time something not yet due becomes due. */
static size_t
ip_collect(ip_cons *c, const loom_message **out, size_t room, uint64_t *wait_ms)
{
    ip_broker *b = c->b;
    uint64_t now_ms = uv_now(b->loop), now_us = ip_now_us();
    size_t n = 0;

    for (ip_topic *t = b->topics; t != NULL && n < room; t = t->next) {
        ip_cursor *cur;
        if (!ip_wants(c, t->name) ||
            (cur = ip_cursor_get(b, c->group, t)) == NULL)
            continue;
        for (ip_delivery *d = cur->taken; d != NULL && n < room; d = d->next) {
            if (d->owner != NULL)
                continue;
            if (d->due_ms > now_ms) {
                if (d->due_ms - now_ms < *wait_ms)
                    *wait_ms = d->due_ms - now_ms;
                continue;
            }
            d->owner = c;
            d->view.attempt++;
            out[n++] = &d->view;
        }
        while (cur->next < t->n && n < room) {
            ip_msg *m = t->log[cur->next];
            ip_delivery *d;
            if (m->m.deliver_at > 0 && (uint64_t) m->m.deliver_at > now_us) {
                uint64_t ms = ((uint64_t) m->m.deliver_at - now_us) / 1000 + 1;
                if (ms < *wait_ms)
                    *wait_ms = ms;
                break; /* order within the partition */
            }
            if ((d = calloc(1, sizeof *d)) == NULL)
                break;
            d->msg = m;
            d->cur = cur;
            d->owner = c;
            d->view = m->m;
            d->view.attempt = 1;
            d->next = cur->taken;
            cur->taken = d;
            cur->next++;
            out[n++] = &d->view;
        }
    }
    c->in_flight += n;
    return n;
}

/* Hands one batch to one consumer (taking turns), then runs again. */
static void
ip_pump(uv_timer_t *timer)
{
    ip_broker *b = timer->data;
    uint64_t wait_ms = UINT64_MAX;
    ip_cons *c = b->turn ? b->turn : b->consumers;

    for (ip_cons *start = c; c != NULL;) {
        size_t room = c->max_in_flight > c->in_flight
                          ? c->max_in_flight - c->in_flight
                          : 0;
        const loom_message *msgs[256];
        size_t n;

        if (room > c->batch)
            room = c->batch;
        if (room > sizeof msgs / sizeof msgs[0])
            room = sizeof msgs / sizeof msgs[0];
        n = room ? ip_collect(c, msgs, room, &wait_ms) : 0;
        b->turn = c->next;
        if (n > 0) {
            ip_schedule(b, 0); /* before the handler: it may close us */
            loom_consumer_deliver(c->c, msgs, n);
            return;
        }
        c = c->next ? c->next : b->consumers;
        if (c == start)
            break;
    }
    if (wait_ms != UINT64_MAX)
        ip_schedule(b, wait_ms);
}

static loom_err
ip_open(loom_runtime *rt, const char *url, void **state, char *err,
        size_t errlen)
{
    ip_broker *b = calloc(1, sizeof *b);

    (void) url;
    if (b == NULL) {
        snprintf(err, errlen, "out of memory");
        return LOOM_ENOMEM;
    }
    b->loop = loom_runtime_loop(rt);
    uv_timer_init(b->loop, &b->pump);
    b->pump.data = b;
    *state = b;
    return LOOM_OK;
}

static void
ip_free_broker(uv_handle_t *h)
{
    ip_broker *b = h->data;

    while (b->cursors != NULL) {
        ip_cursor *c = b->cursors;
        b->cursors = c->link;
        while (c->taken != NULL) {
            ip_delivery *d = c->taken;
            c->taken = d->next;
            free(d);
        }
        free(c->group);
        free(c);
    }
    while (b->topics != NULL) {
        ip_topic *t = b->topics;
        b->topics = t->next;
        for (size_t i = 0; i < t->n; i++)
            free(t->log[i]);
        free(t->log);
        free(t->name);
        free(t);
    }
    free(b);
}

static void
ip_close(void *state)
{
    ip_broker *b = state;

    uv_timer_stop(&b->pump);
    uv_close((uv_handle_t *) &b->pump, ip_free_broker);
}

typedef struct ip_publish_done {
    uv_timer_t t;
    loom_publish_cb cb;
    void *arg;
    size_t n;
} ip_publish_done;

static void
ip_publish_closed(uv_handle_t *h)
{
    free(h->data);
}

static void
ip_publish_fire(uv_timer_t *t)
{
    ip_publish_done *p = t->data;

    p->cb(LOOM_OK, p->n, p->arg);
    uv_close((uv_handle_t *) &p->t, ip_publish_closed);
}

static loom_err
ip_publish(void *state, const loom_message *msgs, size_t n, loom_publish_cb cb,
           void *arg)
{
    ip_broker *b = state;

    for (size_t i = 0; i < n; i++) {
        loom_err rc = ip_append(b, &msgs[i], msgs[i].topic);
        if (rc != LOOM_OK)
            return rc; /* the ones before it are published */
    }
    ip_schedule(b, 0);
    if (cb != NULL) { /* always later, on the loop, as real transports do */
        ip_publish_done *p = calloc(1, sizeof *p);
        if (p == NULL)
            return LOOM_ENOMEM;
        p->cb = cb;
        p->arg = arg;
        p->n = n;
        uv_timer_init(b->loop, &p->t);
        p->t.data = p;
        uv_timer_start(&p->t, ip_publish_fire, 0, 0);
    }
    return LOOM_OK;
}

static void
ip_cons_free(ip_cons *c)
{
    for (size_t i = 0; i < c->n_patterns; i++)
        free(c->patterns[i]);
    free(c->patterns);
    free(c->group);
    free(c);
}

static loom_err
ip_subscribe(void *state, const loom_consumer_config *cfg, loom_consumer *lc,
             void **cstate)
{
    ip_broker *b = state;
    ip_cons *c = calloc(1, sizeof *c);

    if (c == NULL)
        return LOOM_ENOMEM;
    c->b = b;
    c->c = lc;
    c->batch = cfg->batch ? cfg->batch : 100;
    c->max_in_flight = cfg->max_in_flight ? cfg->max_in_flight : 1000;
    c->max_deliveries = cfg->max_deliveries ? cfg->max_deliveries : 5;
    c->group = ip_strdup(cfg->group);
    c->patterns = calloc(cfg->n_topics, sizeof *c->patterns);
    if (c->group == NULL || c->patterns == NULL) {
        ip_cons_free(c);
        return LOOM_ENOMEM;
    }
    for (; c->n_patterns < cfg->n_topics; c->n_patterns++)
        if ((c->patterns[c->n_patterns] =
                 ip_strdup(cfg->topics[c->n_patterns])) == NULL) {
            ip_cons_free(c);
            return LOOM_ENOMEM;
        }
    c->next = b->consumers;
    b->consumers = c;
    *cstate = c;
    ip_schedule(b, 0);
    return LOOM_OK;
}

/* The delivery handing out `m` to `c`, unlinked from its cursor. */
static ip_delivery *
ip_take(ip_cons *c, const loom_message *m)
{
    for (ip_cursor *cur = c->b->cursors; cur != NULL; cur = cur->link)
        for (ip_delivery **pp = &cur->taken; *pp != NULL; pp = &(*pp)->next)
            if (&(*pp)->view == m && (*pp)->owner == c) {
                ip_delivery *d = *pp;
                *pp = d->next;
                c->in_flight--;
                return d;
            }
    return NULL;
}

static loom_err
ip_ack(void *cstate, const loom_message *m)
{
    ip_cons *c = cstate;
    ip_delivery *d = ip_take(c, m);

    if (d == NULL)
        return LOOM_ENOTFOUND; /* not in flight with this consumer */
    free(d);
    ip_schedule(c->b, 0);
    return LOOM_OK;
}

static loom_err
ip_fail(void *cstate, const loom_message *m, const char *error)
{
    ip_cons *c = cstate;
    ip_delivery *d = ip_take(c, m);
    loom_err rc = LOOM_OK;

    if (d == NULL)
        return LOOM_ENOTFOUND;
    if (d->view.attempt >= c->max_deliveries) {
        char attempts[16], dlq[512];
        loom_header h[3] = {{"x-error", error},
                            {"x-group", c->group},
                            {"x-attempts", attempts}};
        loom_message dead = d->msg->m;
        snprintf(attempts, sizeof attempts, "%u", d->view.attempt);
        snprintf(dlq, sizeof dlq, "%s.dlq", d->msg->m.topic);
        dead.headers = h;
        dead.n_headers = 3;
        dead.deliver_at = 0;
        rc = ip_append(c->b, &dead, dlq);
        free(d);
    } else {
        d->owner = NULL;
        d->due_ms = uv_now(c->b->loop) +
                    ((uint64_t) IP_RETRY_BASE_MS << (d->view.attempt - 1));
        d->next = d->cur->taken;
        d->cur->taken = d;
    }
    ip_schedule(c->b, 0);
    return rc;
}

static void
ip_unsubscribe(void *cstate)
{
    ip_cons *c = cstate;
    ip_broker *b = c->b;

    /* Unacknowledged messages go back to the group, due now. */
    for (ip_cursor *cur = b->cursors; cur != NULL; cur = cur->link)
        for (ip_delivery *d = cur->taken; d != NULL; d = d->next)
            if (d->owner == c) {
                d->owner = NULL;
                d->due_ms = 0;
            }
    for (ip_cons **pp = &b->consumers; *pp != NULL; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    if (b->turn == c)
        b->turn = NULL;
    ip_cons_free(c);
    ip_schedule(b, 0);
}

static const loom_transport_ops ip_ops = {LOOM_TRANSPORT_OPS_VERSION,
                                          "inproc",
                                          ip_open,
                                          ip_close,
                                          ip_publish,
                                          ip_subscribe,
                                          ip_ack,
                                          ip_fail,
                                          ip_unsubscribe,
                                          NULL /* reject: fail stands in */};

loom_err
loomt_inproc_register(void)
{
    loom_err rc = loom_transport_register(&ip_ops);

    return rc == LOOM_EDUPLICATE ? LOOM_OK : rc;
}
