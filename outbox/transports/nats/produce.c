/*
 * Publishing. loom_transport_publish() checks every message, builds its
 * natsMsg (copying what it keeps) and queues the call for the I/O
 * thread, which hands the messages to js_PublishMsgAsync() in order,
 * with up to max_pending awaiting JetStream's acknowledgement at once.
 * Each acknowledgement (or its absence after publish_timeout_ms, or a
 * JetStream error) arrives on a libnats thread in loom__nt_on_pub_ack(),
 * which finds its publish by the natsMsg pointer in a small hash table;
 * once every message of a call has its outcome the call is queued for
 * the loop, where its callback runs.
 *
 * A call succeeds when JetStream acknowledged all its messages: they are
 * stored (file storage) and will be delivered. Otherwise its callback
 * gets the first failure and the number acknowledged: LOOM_ECONN for a
 * lost connection or a missing acknowledgement (the message may or may
 * not be stored: publishing it again with the same id is safe within
 * the stream's duplicate window), LOOM_ETOOBIG or LOOM_EIO for what
 * JetStream refused.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "loom/alloc.h"
#include "nats_int.h"

#define PROD_SUBJECT_MAX 512

loom_err
loom__nt_err(natsStatus s)
{
    switch (s) {
    case NATS_OK:
        return LOOM_OK;
    case NATS_NO_MEMORY:
        return LOOM_ENOMEM;
    case NATS_MAX_PAYLOAD:
        return LOOM_ETOOBIG;
    case NATS_INVALID_ARG:
    case NATS_INVALID_SUBJECT:
        return LOOM_EINVAL;
    default:
        /* Closed, disconnected, timed out, no responders (JetStream not
         * ready after a restart), reconnect buffer full: retry later. */
        return LOOM_ECONN;
    }
}

const char *
loom__nt_why(natsStatus s)
{
    const char *last = nats_GetLastError(NULL), *end;

    if (last == NULL || last[0] == '\0')
        return natsStatus_GetText(s);
    /* "(conn.c:2088): No server available": where is for libnats. */
    if (last[0] == '(' && (end = strstr(last, "): ")) != NULL)
        last = end + 3;
    return last;
}

/* libnats 3.4 creates a JetStream context's table of pending async
 * publishes only when a js_PublishMsgAsync() gets that far, and
 * js_PublishAsyncGetPendingList() dereferences it unchecked: the close
 * may ask only once a call succeeded. Setting the flag before the call,
 * as this did, crashed a relay stopped after its connection had closed
 * before any publish went through (found under AddressSanitizer). */
static void
nt_async_used(nt_transport *tr)
{
    tr->js_async = 1;
}

/* ---- the table of publishes awaiting acknowledgement --------------------- */

static size_t
pub_bucket(const natsMsg *m)
{
    uint64_t x = (uint64_t) (uintptr_t) m;

    x ^= x >> 29;
    x *= 0x9e3779b97f4a7c15ULL;
    return (size_t) (x >> 40) & (NT_PUB_BUCKETS - 1);
}

void
loom__nt_pub_add(nt_transport *tr, nt_pub *p)
{
    size_t b = pub_bucket(p->m);

    p->next = tr->pubs[b];
    tr->pubs[b] = p;
    tr->pub_in_flight++;
}

int
loom__nt_pub_remove(nt_transport *tr, nt_pub *p)
{
    for (nt_pub **pp = &tr->pubs[pub_bucket(p->m)]; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            tr->pub_in_flight--;
            return 1;
        }
    return 0;
}

static nt_pub *
pub_take(nt_transport *tr, const natsMsg *m)
{
    for (nt_pub **pp = &tr->pubs[pub_bucket(m)]; *pp; pp = &(*pp)->next)
        if ((*pp)->m == m) {
            nt_pub *p = *pp;
            *pp = p->next;
            tr->pub_in_flight--;
            return p;
        }
    return NULL;
}

/* ---- calls --------------------------------------------------------------- */

void
loom__nt_call_resolve_locked(nt_transport *tr, nt_call *call, size_t k,
                             loom_err rc)
{
    if (rc == LOOM_OK)
        call->acked += k;
    else if (call->rc == LOOM_OK)
        call->rc = rc;
    call->unresolved -= k;
    if (call->unresolved == 0)
        loom__nt_post_locked(tr, &call->ev);
}

void
loom__nt_call_release_locked(nt_transport *tr, nt_call *call)
{
    if (--call->unresolved == 0)
        loom__nt_post_locked(tr, &call->ev);
}

void
loom__nt_call_finish(nt_transport *tr, nt_call *call)
{
    if (call->prev != NULL)
        call->prev->next = call->next;
    else
        tr->calls = call->next;
    if (call->next != NULL)
        call->next->prev = call->prev;
    if (call->cb != NULL)
        call->cb(call->rc, call->acked, call->arg);
    for (size_t i = 0; i < call->n; i++)
        natsMsg_Destroy(call->msgs[i]);
    loom_free(call);
    loom__nt_maybe_stopped(tr);
}

static int64_t
prod_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static loom_err
prod_check(nt_transport *tr, const loom_message *m, size_t i, int64_t max,
           int64_t now_us)
{
    size_t size;

    if (!loom__nt_topic_ok(m->topic)) {
        loom__nt_errf(tr,
                      "nats: message %zu: bad topic \"%.*s\" (words of ASCII "
                      "letters, digits, '_' and '-' separated by dots, at "
                      "most %d bytes)",
                      i, 300, m->topic, NT_MAX_TOPIC);
        return LOOM_EINVAL;
    }
    if (m->partition != LOOM_PARTITION_ANY && m->partition != 0) {
        loom__nt_errf(tr,
                      "nats: message %zu: partition %d (NATS subjects have "
                      "no partitions: publish with LOOM_PARTITION_ANY)",
                      i, (int) m->partition);
        return LOOM_EINVAL;
    }
    if (m->deliver_at > now_us) {
        loom__nt_errf(tr,
                      "nats: message %zu: deliver_at is in the future; NATS "
                      "JetStream 2.9 has no delayed delivery",
                      i);
        return LOOM_EINVAL;
    }
    for (size_t h = 0; h < m->n_headers; h++)
        if (!loom__nt_header_key_ok(m->headers[h].key)) {
            loom__nt_errf(
                tr,
                "nats: message %zu: bad header name \"%.*s\" "
                "(printable ASCII without ':' or ','; names "
                "starting \"Nats-\", \"Loom-Key\" and \"Loom-Encoded\" are "
                "reserved)",
                i, 100, m->headers[h].key);
            return LOOM_EINVAL;
        }
    size = loom__nt_wire_size(m, LOOM_UUID_STRLEN - 1, NULL, 0);
    if (max > 0 && size > (size_t) max) {
        loom__nt_errf(tr,
                      "nats: message %zu to \"%s\" takes %zu bytes with its "
                      "headers; the server takes at most %lld (its "
                      "max_payload)",
                      i, m->topic, size, (long long) max);
        return LOOM_ETOOBIG;
    }
    return LOOM_OK;
}

static loom_err
prod_build(nt_transport *tr, nt_call *call, size_t i, const loom_message *m)
{
    char subject[PROD_SUBJECT_MAX], id_text[LOOM_UUID_STRLEN];
    loom_uuid id = m->id;

    if (loom_uuid_is_nil(&id) && loom_uuid_generate(&id) != LOOM_OK)
        return LOOM_EIO;
    loom_uuid_format(&id, id_text);
    snprintf(subject, sizeof subject, "%s.%s", tr->cfg.prefix, m->topic);
    return loom__nt_msg_build(&call->msgs[i], subject, id_text, m, NULL, 0);
}

loom_err
loom__nt_publish(nt_transport *tr, const loom_message *msgs, size_t n,
                 loom_publish_cb cb, void *arg)
{
    int64_t max = loom__nt_max_payload(tr), now = prod_now_us();
    nt_call *call;
    loom_err rc;

    if (tr->stopping) {
        loom__nt_errf(tr, "nats: the runtime is stopping");
        return LOOM_EBUSY;
    }
    for (size_t i = 0; i < n; i++)
        if ((rc = prod_check(tr, &msgs[i], i, max, now)) != LOOM_OK)
            return rc;
    call = loom_malloc(sizeof *call + n * (sizeof(natsMsg *) + sizeof(nt_pub)));
    if (call == NULL)
        return LOOM_ENOMEM;
    memset(call, 0, sizeof *call);
    call->msgs = (natsMsg **) (void *) (call + 1);
    call->pubs = (nt_pub *) (void *) (call->msgs + n);
    memset(call->msgs, 0, n * (sizeof(natsMsg *) + sizeof(nt_pub)));
    for (size_t i = 0; i < n; i++)
        if ((rc = prod_build(tr, call, i, &msgs[i])) != LOOM_OK) {
            for (size_t j = 0; j < i; j++)
                natsMsg_Destroy(call->msgs[j]);
            loom_free(call);
            return rc;
        }
    call->cb = cb;
    call->arg = arg;
    call->n = n;
    call->unresolved = n + 1; /* + the I/O thread's queue's hold */
    call->rc = LOOM_OK;
    call->job.type = NT_JOB_PUBLISH;
    call->ev.type = NT_EV_CALL;
    call->next = tr->calls;
    if (tr->calls != NULL)
        tr->calls->prev = call;
    tr->calls = call;
    loom__nt_io_push(tr, &call->job);
    return LOOM_OK;
}

/* ---- the I/O thread's side ----------------------------------------------- */

static void
prod_opts(const nt_transport *tr, jsPubOptions *po)
{
    jsPubOptions_Init(po);
    po->MaxWait = tr->cfg.publish_timeout_ms;
}

int
loom__nt_publish_some(nt_transport *tr, nt_call *call)
{
    jsPubOptions po;

    prod_opts(tr, &po);
    while (call->sent < call->n) {
        size_t i = call->sent;
        nt_pub *p = &call->pubs[i];
        natsStatus s;

        pthread_mutex_lock(&tr->mu);
        if (tr->io_stop || tr->pub_in_flight >= tr->cfg.max_pending) {
            pthread_mutex_unlock(&tr->mu);
            return 0;
        }
        /* In the table first: the acknowledgement may come back before
         * js_PublishMsgAsync() returns. */
        p->m = call->msgs[i];
        p->call = call;
        loom__nt_pub_add(tr, p);
        pthread_mutex_unlock(&tr->mu);
        /* The call is held (see nt_call): its acknowledgement cannot
         * free it under us. */
        s = js_PublishMsgAsync(tr->js, &call->msgs[i], &po);
        call->sent++;
        if (s == NATS_OK) {
            nt_async_used(tr);
            continue; /* libnats has the message (msgs[i] is NULL) */
        }
        natsMsg_Destroy(call->msgs[i]);
        call->msgs[i] = NULL;
        pthread_mutex_lock(&tr->mu);
        if (loom__nt_pub_remove(tr, p))
            loom__nt_call_resolve_locked(tr, call, 1, loom__nt_err(s));
        pthread_mutex_unlock(&tr->mu);
    }
    return 1;
}

void
loom__nt_publish_dead(nt_transport *tr, nt_entry *e)
{
    nt_pub *p = &e->pub;
    jsPubOptions po;
    natsStatus s;
    int removed;

    prod_opts(tr, &po);
    pthread_mutex_lock(&tr->mu);
    p->m = e->dead;
    p->call = NULL;
    p->dead = e;
    loom__nt_pub_add(tr, p);
    pthread_mutex_unlock(&tr->mu);
    s = js_PublishMsgAsync(tr->js, &e->dead, &po);
    if (s == NATS_OK) {
        nt_async_used(tr);
        return; /* loom__nt_on_pub_ack() terminates or retries it */
    }
    pthread_mutex_lock(&tr->mu);
    removed = loom__nt_pub_remove(tr, p);
    pthread_mutex_unlock(&tr->mu);
    if (!removed)
        return;
    loom__nt_log(tr, LOOM_LOG_WARN,
                 "nats: dead letter of \"%s\" (stream sequence %lld) not "
                 "published (%s); it is delivered again",
                 e->msg.topic, (long long) e->msg.offset,
                 natsStatus_GetText(s));
    loom__nt_settle_now(tr, e, NT_JOB_NAK, tr->cfg.backoff_ms);
    loom__nt_entry_release(e);
}

/* What a failed acknowledgement means for the caller. */
static loom_err
prod_ack_err(nt_transport *tr, const jsPubAckErr *pae, const char *topic)
{
    if (pae->Err != NATS_ERR)
        return loom__nt_err(pae->Err);
    loom__nt_log(tr, LOOM_LOG_WARN,
                 "nats: JetStream refused a message to %s: %s", topic,
                 pae->ErrText ? pae->ErrText : "?");
    return pae->ErrCode == JSStreamMessageExceedsMaximumErr ? LOOM_ETOOBIG
                                                            : LOOM_EIO;
}

void
loom__nt_on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                    void *closure)
{
    nt_transport *tr = loom__nt_enter(closure);
    loom_err rc = LOOM_OK;
    nt_pub *p;

    (void) js;
    if (tr == NULL) {
        natsMsg_Destroy(msg);
        return;
    }
    if (pa == NULL)
        rc = pae != NULL ? prod_ack_err(tr, pae, natsMsg_GetSubject(msg))
                         : LOOM_ECONN;
    if (rc != LOOM_OK && pae != NULL && pae->Err != NATS_ERR)
        loom__nt_log(tr, LOOM_LOG_DEBUG, "nats: publish to %s failed: %s",
                     natsMsg_GetSubject(msg), natsStatus_GetText(pae->Err));
    pthread_mutex_lock(&tr->mu);
    p = pub_take(tr, msg);
    if (p != NULL && p->call != NULL) {
        loom__nt_call_resolve_locked(tr, p->call, 1, rc);
    } else if (p != NULL) {
        nt_entry *e = p->dead;
        /* Stored in the dead-letter topic: done with the original. If
         * not, it comes back and its dead letter is tried again. */
        e->job.type = rc == LOOM_OK ? NT_JOB_TERM : NT_JOB_NAK;
        e->job.delay_ms = tr->cfg.backoff_ms;
        loom__nt_io_push_locked(tr, &e->job);
    }
    pthread_cond_signal(&tr->io_cond); /* a place in the window */
    pthread_mutex_unlock(&tr->mu);
    loom__nt_leave(tr);
    natsMsg_Destroy(msg);
}

void
loom__nt_produce_close(nt_transport *tr)
{
    nt_job *dead = NULL;

    pthread_mutex_lock(&tr->mu);
    for (size_t b = 0; b < NT_PUB_BUCKETS; b++) {
        nt_pub *p;
        while ((p = tr->pubs[b]) != NULL) {
            tr->pubs[b] = p->next;
            tr->pub_in_flight--;
            if (p->call != NULL) {
                loom__nt_call_resolve_locked(tr, p->call, 1, LOOM_ECONN);
            } else {
                p->dead->job.next = dead;
                dead = &p->dead->job;
            }
        }
    }
    pthread_mutex_unlock(&tr->mu);
    while (dead != NULL) {
        nt_entry *e = NT_CONTAINER(dead, nt_entry, job);
        dead = dead->next;
        loom__nt_settle_now(tr, e, NT_JOB_NAK, 0);
        loom__nt_entry_release(e);
    }
}
