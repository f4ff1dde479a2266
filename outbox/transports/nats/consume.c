/*
 * Consumers. Each pattern of a consumer is a durable JetStream pull
 * consumer (one subject filter each, all NATS 2.9 allows), created or
 * updated on subscribe and bound to; members of a group share it, so
 * each message goes to one of them, and other groups have their own.
 *
 * Pulling blocks, so each pattern has a thread that sends pull requests
 * to the consumer (reply to an inbox of its own) while the consumer has
 * room (max_in_flight, counted from the request until the message is
 * settled) and queues what arrives for the loop, a batch at a time. On
 * the loop the batch goes to the handler, whose acknowledgements and
 * failures become jobs for the I/O thread:
 *
 *   ack   +ACK
 *   fail  -NAK with a delay of backoff_ms * 2^(n-1) (at most
 *         backoff_max_ms), where n counts deliveries (JetStream's
 *         NumDelivered); at n == max_deliveries the message is published
 *         to "<topic>.dlq" instead, and once JetStream has the dead letter
 *         the original is terminated (+TERM). A message arriving with
 *         n > max_deliveries (ack_wait ran out each time, or its dead
 *         letter failed) goes to the dead-letter topic without the
 *         handler.
 *   reject the same dead letter and +TERM as at max_deliveries, now,
 *         whatever n is: the message can never be handled.
 *   close -NAK at once for what the consumer still holds, so another
 *         member gets it without waiting for ack_wait.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc_int.h"
#include "loom/alloc.h"
#include "loom/topics.h"
#include "nats_int.h"

#define CN_BATCH      500
#define CN_BATCH_MAX  10000
#define CN_IN_FLIGHT  1000
#define CN_DELIVERIES 5
/* How often a thread waiting on a pull request checks for a
 * reconnection. */
#define CN_SLICE_MS 250
/* The JetStream consumer's bound on unacknowledged messages, shared by
 * the members of a group (each bounds itself with max_in_flight). */
#define CN_MAX_ACK_PENDING 100000

/* ---- references and release ---------------------------------------------- */

static void
cn_free(nt_consumer *c)
{
    for (size_t i = 0; i < c->n_subs; i++) {
        loom_free(c->subs[i].filter);
        loom_free(c->subs[i].durable);
        loom_free(c->subs[i].inbox);
        loom_free(c->subs[i].next_subject);
    }
    loom_free(c->subs);
    loom_free(c->group);
    pthread_cond_destroy(&c->cond);
    loom_free(c);
}

static void
cn_ref(nt_consumer *c)
{
    pthread_mutex_lock(&c->tr->mu);
    c->refs++;
    pthread_mutex_unlock(&c->tr->mu);
}

static void
cn_unref(nt_consumer *c)
{
    int last;

    pthread_mutex_lock(&c->tr->mu);
    last = --c->refs == 0;
    pthread_mutex_unlock(&c->tr->mu);
    if (last)
        cn_free(c);
}

void
loom__nt_entry_release(nt_entry *e)
{
    nt_consumer *c = e->c;
    nt_transport *tr = c->tr;
    int last;

    pthread_mutex_lock(&tr->mu);
    c->in_flight--;
    pthread_cond_broadcast(&c->cond);
    last = --c->refs == 0;
    pthread_mutex_unlock(&tr->mu);
    natsMsg_Destroy(e->nm);
    natsMsg_Destroy(e->dead);
    loom_free(e->mem);
    e->magic = 0;
    loom_free(e);
    if (last)
        cn_free(c);
}

/* ---- the fetching threads ------------------------------------------------ */

static int
cn_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);

    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* An entry for a fetched message, or NULL (the message is dropped:
 * JetStream delivers it again after ack_wait). */
static nt_entry *
cn_entry(nt_sub *s, natsMsg *nm)
{
    nt_consumer *c = s->c;
    jsMsgMetaData *md = NULL;
    nt_entry *e = loom_malloc(sizeof *e);

    if (e == NULL)
        return NULL;
    memset(e, 0, sizeof *e);
    e->magic = NT_ENTRY_MAGIC;
    e->c = c;
    e->nm = nm;
    if (natsMsg_GetMetaData(&md, nm) != NATS_OK) {
        loom_free(e);
        return NULL;
    }
    e->deliveries = md->NumDelivered;
    e->msg.offset = (int64_t) md->Sequence.Stream;
    e->msg.timestamp = md->Timestamp / 1000;
    jsMsgMetaData_Destroy(md);
    e->msg.attempt =
        e->deliveries > UINT32_MAX ? UINT32_MAX : (uint32_t) e->deliveries;
    e->msg.partition = 0;
    if (loom__nt_entry_decode(e, c->tr->cfg.prefix) != LOOM_OK) {
        loom_free(e);
        return NULL;
    }
    e->skip = s->wild && cn_ends_with(e->msg.topic, LOOM_DLQ_SUFFIX);
    return e;
}

static void
cn_pause(nt_consumer *c, int64_t ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long) (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&c->cond, &c->tr->mu, &ts);
}

static int64_t
cn_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Hands the batch in hand to the loop (mu not held). */
static void
cn_post(nt_consumer *c, nt_batch **bp)
{
    nt_batch *b = *bp;

    if (b == NULL)
        return;
    *bp = NULL;
    pthread_mutex_lock(&c->tr->mu);
    c->refs += b->n;
    loom__nt_post_locked(c->tr, &b->ev);
    pthread_mutex_unlock(&c->tr->mu);
}

/* Which connection this is: libnats' reconnection callback counts. */
static unsigned
cn_connection(nt_transport *tr)
{
    unsigned n;

    pthread_mutex_lock(&tr->mu);
    n = tr->reconnects;
    pthread_mutex_unlock(&tr->mu);
    return n;
}

/* What a message without a JetStream reply subject means: a status that
 * ends the pull request (404 no messages, 408 expired, 409 too many
 * requests or the consumer changed), or nothing. */
static int
cn_request_ended(natsMsg *m)
{
    const char *status = NULL;

    if (natsMsgHeader_Get(m, "Status", &status) != NATS_OK || status == NULL)
        return 0;
    return strcmp(status, "404") == 0 || strcmp(status, "408") == 0 ||
           strcmp(status, "409") == 0;
}

/*
 * One pull request for up to `want` messages: sends it, then takes what
 * arrives until it is fulfilled, ends, or expires. Messages go to the
 * loop as they come: whatever is queued is one batch. Returns how many
 * were taken, and in *st the status that ended it (NATS_OK or
 * NATS_TIMEOUT are normal).
 *
 * Not natsSubscription_Fetch(): in libnats 3.4 it overflows its array
 * when messages of an earlier request are still queued when it starts
 * (nats.c #749, fixed in later releases), which a reconnection makes
 * likely; and it holds what it has until the batch is full.
 */
static size_t
cn_pull(nt_sub *s, size_t want, natsStatus *st)
{
    nt_consumer *c = s->c;
    nt_transport *tr = c->tr;
    int64_t deadline = cn_now_ms() + tr->cfg.fetch_wait_ms + 1000;
    unsigned gen = cn_connection(tr);
    nt_batch *b = NULL;
    size_t got = 0;
    char req[96];

    snprintf(req, sizeof req, "{\"batch\":%zu,\"expires\":%lld}", want,
             (long long) tr->cfg.fetch_wait_ms * 1000000);
    *st = natsConnection_PublishRequestString(tr->nc, s->next_subject, s->inbox,
                                              req);
    while (*st == NATS_OK && got < want) {
        int64_t wait = deadline - cn_now_ms();
        natsMsg *m = NULL;
        nt_entry *e;
        const char *reply;

        if (wait <= 0) {
            *st = NATS_TIMEOUT;
            break;
        }
        /* With a batch in hand only what is queued joins it. */
        if (wait > CN_SLICE_MS)
            wait = CN_SLICE_MS;
        *st = natsSubscription_NextMsg(&m, s->sub, b != NULL ? 0 : wait);
        if (*st == NATS_TIMEOUT && b != NULL) {
            cn_post(c, &b);
            *st = NATS_OK;
            continue;
        }
        if (*st == NATS_TIMEOUT) {
            /* A reconnection loses the request (the server may have
             * restarted): ask again instead of waiting it out. */
            *st = NATS_OK;
            if (cn_connection(tr) != gen)
                break;
            continue;
        }
        if (*st != NATS_OK)
            break;
        reply = natsMsg_GetReply(m);
        if (reply == NULL || strncmp(reply, "$JS.ACK.", 8) != 0) {
            int ended = cn_request_ended(m);
            natsMsg_Destroy(m);
            if (ended)
                break;
            continue;
        }
        if ((e = cn_entry(s, m)) == NULL) {
            natsMsg_Destroy(m);
            continue;
        }
        if (b == NULL) {
            b = loom_malloc(sizeof *b + 2 * (want - got) * sizeof(void *));
            if (b == NULL) { /* dropped: JetStream redelivers it */
                natsMsg_Destroy(e->nm);
                loom_free(e->mem);
                loom_free(e);
                continue;
            }
            memset(b, 0, sizeof *b);
            b->ev.type = NT_EV_BATCH;
            b->c = c;
            b->msgs = (const loom_message **) (void *) &b->e[want - got];
        }
        b->e[b->n++] = e;
        got++;
    }
    cn_post(c, &b);
    return got;
}

static void *
cn_fetcher(void *arg)
{
    nt_sub *s = arg;
    nt_consumer *c = s->c;
    nt_transport *tr = c->tr;
    int64_t pause = 0;

    pthread_mutex_lock(&tr->mu);
    while (!c->stop) {
        size_t want, got;
        natsStatus st;

        if (c->in_flight >= c->max_in_flight) {
            pthread_cond_wait(&c->cond, &tr->mu);
            continue;
        }
        want = c->max_in_flight - c->in_flight;
        if (want > c->batch)
            want = c->batch;
        c->in_flight += want; /* reserved: other patterns see it */
        pthread_mutex_unlock(&tr->mu);
        got = cn_pull(s, want, &st);
        if (st != NATS_OK && st != NATS_TIMEOUT && pause == 0)
            loom__nt_log(tr, LOOM_LOG_DEBUG,
                         "nats: pulling from consumer \"%s\": %s; retrying",
                         s->durable, natsStatus_GetText(st));
        pthread_mutex_lock(&tr->mu);
        c->in_flight -= want - got; /* taken ones are released one by one */
        if (st == NATS_OK || st == NATS_TIMEOUT || c->stop) {
            pause = 0;
            continue;
        }
        /* Disconnected (libnats reconnects), JetStream not ready after a
         * restart (no responders), or refused: wait, then try again. */
        pause = pause == 0 ? 50 : pause * 2 > 2000 ? 2000 : pause * 2;
        cn_pause(c, pause);
    }
    pthread_mutex_unlock(&tr->mu);
    return NULL;
}

/* ---- subscribe ----------------------------------------------------------- */

/* Creates (or updates) the durable JetStream consumer and subscribes its
 * inbox for pulled messages. */
static loom_err
cn_sub_open(nt_transport *tr, nt_sub *s)
{
    jsConsumerInfo *ci = NULL;
    jsConsumerConfig cc;
    jsErrCode jerr = 0;
    natsStatus st;
    const char *what = "create";
    natsInbox *inbox = NULL;
    char next[512];

    jsConsumerConfig_Init(&cc);
    cc.Durable = s->durable;
    cc.FilterSubject = s->filter;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = tr->cfg.ack_wait_ms * 1000000;
    cc.DeliverPolicy = js_DeliverAll;
    cc.MaxAckPending = CN_MAX_ACK_PENDING;
    st = js_AddConsumer(&ci, tr->js, tr->cfg.stream, &cc, NULL, &jerr);
    if (st != NATS_OK && jerr == JSConsumerNameExistErr) {
        what = "update";
        jerr = 0;
        st = js_UpdateConsumer(&ci, tr->js, tr->cfg.stream, &cc, NULL, &jerr);
    }
    jsConsumerInfo_Destroy(ci);
    if (st == NATS_OK) {
        what = "subscribe to";
        snprintf(next, sizeof next, "$JS.API.CONSUMER.MSG.NEXT.%s.%s",
                 tr->cfg.stream, s->durable);
        s->next_subject = loom__strdup(next);
        st = natsInbox_Create(&inbox);
        if (st == NATS_OK && (s->inbox = loom__strdup(inbox)) == NULL)
            st = NATS_NO_MEMORY;
        natsInbox_Destroy(inbox);
        if (st == NATS_OK && s->next_subject == NULL)
            st = NATS_NO_MEMORY;
    }
    if (st == NATS_OK)
        st = natsConnection_SubscribeSync(&s->sub, tr->nc, s->inbox);
    if (st != NATS_OK) {
        s->sub = NULL;
        loom__nt_errf(tr,
                      "nats: cannot %s consumer \"%s\" (subjects \"%s\") of "
                      "stream \"%s\": %s",
                      what, s->durable, s->filter, tr->cfg.stream,
                      loom__nt_why(st));
        return st == NATS_ERR ? LOOM_EIO : loom__nt_err(st);
    }
    return LOOM_OK;
}

/* Adds the filters of `pattern` that c does not have yet. */
static loom_err
cn_add_pattern(nt_transport *tr, nt_consumer *c, const char *pattern,
               size_t *cap)
{
    char *filters[2], err[512];
    size_t n = 0;
    loom_err rc;

    rc =
        loom__nt_filters(tr->cfg.prefix, pattern, filters, &n, err, sizeof err);
    if (rc == LOOM_EINVAL)
        loom__nt_errf(tr, "%s", err);
    for (size_t i = 0; i < n; i++) {
        int dup = 0;
        for (size_t j = 0; j < c->n_subs; j++)
            dup |= strcmp(c->subs[j].filter, filters[i]) == 0;
        if (dup || rc != LOOM_OK) {
            loom_free(filters[i]);
            continue;
        }
        if (c->n_subs == *cap) {
            nt_sub *grown =
                loom_realloc(c->subs, (*cap * 2 + 2) * sizeof *grown);
            if (grown == NULL) {
                loom_free(filters[i]);
                rc = LOOM_ENOMEM;
                continue;
            }
            c->subs = grown;
            *cap = *cap * 2 + 2;
        }
        memset(&c->subs[c->n_subs], 0, sizeof c->subs[0]);
        c->subs[c->n_subs].c = c;
        c->subs[c->n_subs].filter = filters[i];
        c->subs[c->n_subs].wild = strpbrk(filters[i], "*>") != NULL;
        c->subs[c->n_subs].durable = loom__nt_durable(c->group, filters[i]);
        c->n_subs++;
        if (c->subs[c->n_subs - 1].durable == NULL)
            rc = LOOM_ENOMEM;
    }
    return rc;
}

/* Stops the fetching threads and frees the subscriptions (not the
 * JetStream consumers: they are durable). */
static void
cn_close_subs(nt_consumer *c)
{
    nt_transport *tr = c->tr;

    pthread_mutex_lock(&tr->mu);
    c->stop = 1;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&tr->mu);
    /* Unsubscribing wakes a thread waiting for messages. */
    for (size_t i = 0; i < c->n_subs; i++)
        if (c->subs[i].sub != NULL)
            natsSubscription_Unsubscribe(c->subs[i].sub);
    for (size_t i = 0; i < c->n_subs; i++) {
        nt_sub *s = &c->subs[i];
        if (s->started)
            pthread_join(s->thread, NULL);
        s->started = 0;
        natsSubscription_Destroy(s->sub);
        s->sub = NULL;
    }
}

loom_err
loom__nt_subscribe(nt_transport *tr, const loom_consumer_config *cfg,
                   loom_consumer *h, nt_consumer **out)
{
    nt_consumer *c;
    size_t cap = 0;
    loom_err rc = LOOM_OK;

    *out = NULL;
    if (tr->stopping) {
        loom__nt_errf(tr, "nats: the runtime is stopping");
        return LOOM_EBUSY;
    }
    if (strlen(cfg->group) > NT_MAX_GROUP) {
        loom__nt_errf(tr, "nats: group name longer than %d bytes",
                      NT_MAX_GROUP);
        return LOOM_EINVAL;
    }
    c = loom_malloc(sizeof *c);
    if (c == NULL)
        return LOOM_ENOMEM;
    memset(c, 0, sizeof *c);
    c->tr = tr;
    c->handle = h;
    c->refs = 1; /* the handle's */
    c->max_deliveries =
        cfg->max_deliveries ? cfg->max_deliveries : CN_DELIVERIES;
    c->batch = cfg->batch ? cfg->batch : CN_BATCH;
    if (c->batch > CN_BATCH_MAX)
        c->batch = CN_BATCH_MAX;
    c->max_in_flight = cfg->max_in_flight ? cfg->max_in_flight : CN_IN_FLIGHT;
    pthread_cond_init(&c->cond, NULL);
    c->group = loom__strdup(cfg->group);
    if (c->group == NULL)
        rc = LOOM_ENOMEM;
    for (size_t i = 0; rc == LOOM_OK && i < cfg->n_topics; i++)
        rc = cn_add_pattern(tr, c, cfg->topics[i], &cap);
    for (size_t i = 0; rc == LOOM_OK && i < c->n_subs; i++)
        rc = cn_sub_open(tr, &c->subs[i]);
    for (size_t i = 0; rc == LOOM_OK && i < c->n_subs; i++) {
        nt_sub *s = &c->subs[i];
        if (pthread_create(&s->thread, NULL, cn_fetcher, s) != 0)
            rc = LOOM_EIO;
        else
            s->started = 1;
    }
    if (rc != LOOM_OK) {
        /* Not cn_free(): a fetcher started before the failure may have
         * handed the loop a batch, whose entries hold c. Unsubscribing
         * stops the fetchers, gives those batches back to the stream and
         * frees c once the last entry is settled. */
        loom__nt_unsubscribe(c);
        return rc;
    }
    c->next = tr->consumers;
    tr->consumers = c;
    *out = c;
    return LOOM_OK;
}

/* ---- delivery, acknowledgement, failure ---------------------------------- */

static void
cn_settle(nt_entry *e, nt_job_type type, int64_t delay_ms)
{
    e->state = NT_E_SETTLING;
    e->job.type = type;
    e->job.delay_ms = delay_ms;
    loom__nt_io_push(e->c->tr, &e->job);
}

static void
cn_hold(nt_consumer *c, nt_entry *e)
{
    e->state = NT_E_HANDLER;
    e->prev = NULL;
    e->next = c->held;
    if (c->held != NULL)
        c->held->prev = e;
    c->held = e;
}

static void
cn_unhold(nt_consumer *c, nt_entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        c->held = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    e->prev = e->next = NULL;
}

/* The delay before redelivery after the n-th delivery failed. */
static int64_t
cn_backoff(const nt_transport *tr, uint64_t n)
{
    int64_t d = tr->cfg.backoff_ms;

    for (uint64_t i = 1; i < n && d < tr->cfg.backoff_max_ms; i++)
        d *= 2;
    return d < tr->cfg.backoff_max_ms ? d : tr->cfg.backoff_max_ms;
}

/* A short, header-safe tag of the group for dead-letter ids. */
static uint64_t
cn_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++) {
        h ^= (unsigned char) *s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* Publishes e's dead letter (through the I/O thread), then terminates e;
 * when that cannot be, e is delivered again later. */
static void
cn_dead(nt_consumer *c, nt_entry *e, const char *error)
{
    nt_transport *tr = c->tr;
    char subject[512], id[LOOM_UUID_STRLEN], id_text[96], deliveries[24],
        offset[24];
    loom_header extra[6] = {
        {LOOM_HEADER_ERROR, error},           {LOOM_HEADER_GROUP, c->group},
        {LOOM_HEADER_DELIVERIES, deliveries}, {LOOM_HEADER_TOPIC, e->msg.topic},
        {LOOM_HEADER_PARTITION, "0"},         {LOOM_HEADER_OFFSET, offset}};
    int64_t max = loom__nt_max_payload(tr);
    size_t size;

    snprintf(deliveries, sizeof deliveries, "%llu",
             (unsigned long long) e->deliveries);
    snprintf(offset, sizeof offset, "%lld", (long long) e->msg.offset);
    snprintf(subject, sizeof subject, "%s.%s%s", tr->cfg.prefix, e->msg.topic,
             LOOM_DLQ_SUFFIX);
    /* Its own Nats-Msg-Id (the original's is taken within the window),
     * the same for a retry of this group's dead letter, starting with
     * the original id so a consumer of the dead letters sees that. */
    if (!loom_uuid_is_nil(&e->msg.id)) {
        loom_uuid_format(&e->msg.id, id);
        snprintf(id_text, sizeof id_text, "%s:dlq:%016llx", id,
                 (unsigned long long) cn_hash(c->group));
    } else {
        snprintf(id_text, sizeof id_text, "seq-%lld:dlq:%016llx",
                 (long long) e->msg.offset,
                 (unsigned long long) cn_hash(c->group));
    }
    /* A topic of more than 245 bytes (only a dead-letter topic's name can
     * be) has no ".dlq" of its own that a consumer could open: as with
     * topics://, the message comes back instead. */
    if (strlen(e->msg.topic) + strlen(LOOM_DLQ_SUFFIX) > NT_MAX_TOPIC) {
        loom__log(LOOM_LOG_WARN,
                  "nats: message on \"%.40s...\" (stream sequence %lld, "
                  "group \"%s\") failed (%s) and has no dead-letter topic: "
                  "its name plus \"%s\" would pass %d bytes; it comes back "
                  "in %lld ms",
                  e->msg.topic, (long long) e->msg.offset, c->group, error,
                  LOOM_DLQ_SUFFIX, NT_MAX_TOPIC,
                  (long long) tr->cfg.backoff_max_ms);
        cn_settle(e, NT_JOB_NAK, tr->cfg.backoff_max_ms);
        return;
    }
    size = loom__nt_wire_size(&e->msg, strlen(id_text), extra, 6);
    if (max > 0 && size > (size_t) max) {
        loom__log(LOOM_LOG_ERROR,
                  "nats: the dead letter of \"%s\" (stream sequence %lld, "
                  "group \"%s\") would exceed the server's max_payload; it "
                  "stays in the stream and comes back in %lld ms",
                  e->msg.topic, (long long) e->msg.offset, c->group,
                  (long long) tr->cfg.backoff_max_ms);
        cn_settle(e, NT_JOB_NAK, tr->cfg.backoff_max_ms);
        return;
    }
    if (loom__nt_msg_build(&e->dead, subject, id_text, &e->msg, extra, 6) !=
        LOOM_OK) {
        cn_settle(e, NT_JOB_NAK, tr->cfg.backoff_ms);
        return;
    }
    cn_settle(e, NT_JOB_DEAD, 0);
}

void
loom__nt_deliver(nt_transport *tr, nt_batch *b)
{
    nt_consumer *c = b->c;
    size_t k = 0;

    for (size_t i = 0; i < b->n; i++) {
        nt_entry *e = b->e[i];
        if (c->stopped) {
            cn_settle(e, NT_JOB_NAK, 0);
        } else if (e->skip) {
            cn_settle(e, NT_JOB_ACK, 0);
        } else if (e->deliveries > c->max_deliveries) {
            char why[160];
            snprintf(why, sizeof why,
                     "delivered %llu times without an acknowledgement "
                     "(ack_wait_ms %lld)",
                     (unsigned long long) e->deliveries,
                     (long long) tr->cfg.ack_wait_ms);
            /* The handler never sees it, so nothing else would say so. */
            loom__nt_log(tr, LOOM_LOG_WARN,
                         "nats: message on \"%s\" (stream sequence %lld, "
                         "group \"%s\") goes to \"%s%s\" without the "
                         "handler: %s",
                         e->msg.topic, (long long) e->msg.offset, c->group,
                         e->msg.topic, LOOM_DLQ_SUFFIX, why);
            cn_dead(c, e, why);
        } else {
            cn_hold(c, e);
            b->msgs[k++] = &e->msg;
        }
    }
    if (k > 0) {
        cn_ref(c); /* the handler may close the consumer */
        loom_consumer_deliver(c->handle, b->msgs, k);
        cn_unref(c);
    }
    loom_free(b);
}

/* The entry behind a message the handler holds, or NULL. */
static nt_entry *
cn_held(nt_consumer *c, const loom_message *m)
{
    nt_entry *e = (nt_entry *) (void *) (uintptr_t) m;

    if (e->magic != NT_ENTRY_MAGIC || e->c != c || e->state != NT_E_HANDLER)
        return NULL;
    return e;
}

loom_err
loom__nt_ack(nt_consumer *c, const loom_message *m)
{
    nt_entry *e = cn_held(c, m);

    if (e == NULL)
        return LOOM_EINVAL;
    cn_unhold(c, e);
    cn_settle(e, NT_JOB_ACK, 0);
    return LOOM_OK;
}

loom_err
loom__nt_fail(nt_consumer *c, const loom_message *m, const char *error)
{
    nt_entry *e = cn_held(c, m);

    if (e == NULL)
        return LOOM_EINVAL;
    cn_unhold(c, e);
    if (e->deliveries >= c->max_deliveries)
        cn_dead(c, e, error);
    else
        cn_settle(e, NT_JOB_NAK, cn_backoff(c->tr, e->deliveries));
    return LOOM_OK;
}

loom_err
loom__nt_reject(nt_consumer *c, const loom_message *m, const char *error)
{
    nt_entry *e = cn_held(c, m);

    if (e == NULL)
        return LOOM_EINVAL;
    cn_unhold(c, e);
    cn_dead(c, e, error);
    return LOOM_OK;
}

/* ---- stop and close ------------------------------------------------------ */

void
loom__nt_consumer_stop(nt_consumer *c)
{
    pthread_mutex_lock(&c->tr->mu);
    c->stop = 1;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->tr->mu);
    c->stopped = 1;
    for (size_t i = 0; i < c->n_subs; i++)
        if (c->subs[i].sub != NULL)
            natsSubscription_Unsubscribe(c->subs[i].sub);
}

void
loom__nt_unsubscribe(nt_consumer *c)
{
    nt_transport *tr = c->tr;
    nt_event *purged = NULL, **pp, *prev = NULL;

    cn_close_subs(c);
    /* Batches queued for the loop: back to the stream. */
    pthread_mutex_lock(&tr->mu);
    for (pp = &tr->ev_head; *pp != NULL;) {
        nt_event *ev = *pp;
        if (ev->type == NT_EV_BATCH && ((nt_batch *) (void *) ev)->c == c) {
            *pp = ev->next;
            ev->next = purged;
            purged = ev;
        } else {
            prev = ev;
            pp = &ev->next;
        }
    }
    tr->ev_tail = prev;
    pthread_mutex_unlock(&tr->mu);
    while (purged != NULL) {
        nt_batch *b = (nt_batch *) (void *) purged;
        purged = purged->next;
        for (size_t i = 0; i < b->n; i++)
            cn_settle(b->e[i], NT_JOB_NAK, 0);
        loom_free(b);
    }
    while (c->held != NULL) {
        nt_entry *e = c->held;
        cn_unhold(c, e);
        cn_settle(e, NT_JOB_NAK, 0);
    }
    for (nt_consumer **cp = &tr->consumers; *cp != NULL; cp = &(*cp)->next)
        if (*cp == c) {
            *cp = c->next;
            break;
        }
    c->handle = NULL;
    cn_unref(c);
}
