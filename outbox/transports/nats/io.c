/*
 * The I/O thread: everything the transport writes to the NATS
 * connection after open. libnats writes to the socket in the calling
 * thread once its 32 KiB buffer fills, and waits there while the server
 * is slow; on this thread that never holds up the loop.
 *
 * Two queues under tr->mu: settling jobs (acknowledge, negatively
 * acknowledge with a delay, terminate) are small and always go first;
 * publishing jobs (a publish call, a dead letter) wait while max_pending
 * publishes await JetStream's acknowledgement, which frees a place (the
 * acknowledgement handler signals io_cond).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "loom/alloc.h"
#include "nats_int.h"

static nt_entry *
io_entry(nt_job *j)
{
    return NT_CONTAINER(j, nt_entry, job);
}

static nt_call *
io_call(nt_job *j)
{
    return NT_CONTAINER(j, nt_call, job);
}

static void
io_append(nt_job **head, nt_job **tail, nt_job *j)
{
    j->next = NULL;
    if (*tail != NULL)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

void
loom__nt_io_push_locked(nt_transport *tr, nt_job *job)
{
    if (job->type == NT_JOB_PUBLISH || job->type == NT_JOB_DEAD)
        io_append(&tr->pubq_head, &tr->pubq_tail, job);
    else
        io_append(&tr->settle_head, &tr->settle_tail, job);
    pthread_cond_signal(&tr->io_cond);
}

void
loom__nt_io_push(nt_transport *tr, nt_job *job)
{
    pthread_mutex_lock(&tr->mu);
    loom__nt_io_push_locked(tr, job);
    pthread_mutex_unlock(&tr->mu);
}

void
loom__nt_settle_now(nt_transport *tr, nt_entry *e, nt_job_type type,
                    int64_t delay_ms)
{
    const char *reply = natsMsg_GetReply(e->nm);
    char body[64];
    natsStatus s;

    if (type == NT_JOB_ACK)
        snprintf(body, sizeof body, "+ACK");
    else if (type == NT_JOB_TERM)
        snprintf(body, sizeof body, "+TERM");
    else if (delay_ms > 0) /* JetStream takes the delay in nanoseconds */
        snprintf(body, sizeof body, "-NAK {\"delay\":%lld}",
                 (long long) delay_ms * 1000000);
    else
        snprintf(body, sizeof body, "-NAK");
    /* The reply subject is all an acknowledgement needs: no subscription
     * (it may be gone after its consumer closed), just the connection.
     * A lost one is buffered until reconnection, or dropped when the
     * buffer is full: JetStream then redelivers after ack_wait, which
     * at-least-once allows. */
    if (reply != NULL && reply[0] != '\0') {
        s = natsConnection_PublishString(tr->nc, reply, body);
        if (s != NATS_OK && s != NATS_CONNECTION_CLOSED)
            loom__nt_log(tr, LOOM_LOG_DEBUG, "nats: %s on %s: %s", body, reply,
                         natsStatus_GetText(s));
    }
}

static void *
io_main(void *arg)
{
    nt_transport *tr = arg;
    nt_job *j;

    pthread_mutex_lock(&tr->mu);
    while (!tr->io_stop) {
        if ((j = tr->settle_head) != NULL) {
            tr->settle_head = j->next;
            if (tr->settle_head == NULL)
                tr->settle_tail = NULL;
            pthread_mutex_unlock(&tr->mu);
            loom__nt_settle_now(tr, io_entry(j), j->type, j->delay_ms);
            loom__nt_entry_release(io_entry(j));
            pthread_mutex_lock(&tr->mu);
            continue;
        }
        if ((j = tr->pubq_head) != NULL &&
            tr->pub_in_flight < tr->cfg.max_pending && j->type == NT_JOB_DEAD) {
            /* Off the queue first: it is published in one go, and once
             * libnats has it, its acknowledgement may queue the same job
             * for settling (or a failure release the entry) at once. */
            tr->pubq_head = j->next;
            if (tr->pubq_head == NULL)
                tr->pubq_tail = NULL;
            pthread_mutex_unlock(&tr->mu);
            loom__nt_publish_dead(tr, io_entry(j));
            pthread_mutex_lock(&tr->mu);
            continue;
        }
        if ((j = tr->pubq_head) != NULL &&
            tr->pub_in_flight < tr->cfg.max_pending) {
            int done;
            pthread_mutex_unlock(&tr->mu);
            done = loom__nt_publish_some(tr, io_call(j));
            pthread_mutex_lock(&tr->mu);
            /* Only this thread takes from the queue: j is still first. */
            if (done) {
                tr->pubq_head = j->next;
                if (tr->pubq_head == NULL)
                    tr->pubq_tail = NULL;
                loom__nt_call_release_locked(tr, io_call(j));
            }
            continue;
        }
        pthread_cond_wait(&tr->io_cond, &tr->mu);
    }
    pthread_mutex_unlock(&tr->mu);
    return NULL;
}

loom_err
loom__nt_io_start(nt_transport *tr)
{
    if (pthread_create(&tr->io, NULL, io_main, tr) != 0)
        return LOOM_EIO;
    tr->io_started = 1;
    return LOOM_OK;
}

void
loom__nt_io_stop(nt_transport *tr)
{
    if (!tr->io_started)
        return;
    pthread_mutex_lock(&tr->mu);
    tr->io_stop = 1;
    pthread_cond_signal(&tr->io_cond);
    pthread_mutex_unlock(&tr->mu);
    pthread_join(tr->io, NULL);
    tr->io_started = 0;
}

void
loom__nt_io_drain(nt_transport *tr)
{
    nt_job *settle, *pubq, *j;

    pthread_mutex_lock(&tr->mu);
    settle = tr->settle_head;
    pubq = tr->pubq_head;
    tr->settle_head = tr->settle_tail = NULL;
    tr->pubq_head = tr->pubq_tail = NULL;
    pthread_mutex_unlock(&tr->mu);
    while ((j = settle) != NULL) {
        settle = j->next;
        if (tr->nc != NULL)
            loom__nt_settle_now(tr, io_entry(j), j->type, j->delay_ms);
        loom__nt_entry_release(io_entry(j));
    }
    while ((j = pubq) != NULL) {
        pubq = j->next;
        if (j->type == NT_JOB_DEAD) {
            nt_entry *e = io_entry(j);
            /* Not dead-lettered: back to the stream for another try. */
            if (tr->nc != NULL)
                loom__nt_settle_now(tr, e, NT_JOB_NAK, 0);
            loom__nt_entry_release(e);
        } else {
            nt_call *call = io_call(j);
            pthread_mutex_lock(&tr->mu);
            loom__nt_call_resolve_locked(tr, call, call->n - call->sent,
                                         LOOM_ECONN);
            loom__nt_call_release_locked(tr, call);
            pthread_mutex_unlock(&tr->mu);
        }
    }
}
