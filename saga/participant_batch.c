/*
 * A participant's writes per transaction (participant_int.h): handlers
 * emit events and reply one command at a time, but what they write goes
 * to the database as two statements for the whole delivered batch, after
 * the last handler: the appends (loom.append_many(), schema 9) and the
 * replies (one loom_outbox_add()). One statement per command each was
 * the participant's largest server cost (docs/benchmarks.md, saga).
 *
 * The inbox consumer builds a transaction again when one fails (each
 * message alone), so `begin` drops whatever an unsent build collected.
 */
#include <stdio.h>
#include <string.h>

#include "loom/alloc.h"
#include "participant_int.h"

void
loom__participant_begin(void *arg)
{
    loom_participant *p = arg;

    loom__append_many_reset(&p->appends);
    loom__arena_reset(&p->batch);
    p->n_replies = 0;
}

/* A copy of n bytes in the batch arena (NULL stays NULL). */
static const void *
pb_dup(loom_participant *p, const void *src, size_t n, int *failed)
{
    if (src == NULL)
        return NULL;
    void *d = loom__arena_alloc(&p->batch, n ? n : 1);
    if (d == NULL) {
        *failed = 1;
        return NULL;
    }
    memcpy(d, src, n);
    return d;
}

static const char *
pb_strdup(loom_participant *p, const char *s, int *failed)
{
    return pb_dup(p, s, s != NULL ? strlen(s) + 1 : 0, failed);
}

loom_err
loom__participant_add_reply(loom_participant *p, const loom_outbox_message *om)
{
    int failed = 0;

    if (p->n_replies == p->cap_replies) {
        size_t cap = p->cap_replies ? p->cap_replies * 2 : 64;
        void *grown = loom_realloc(p->replies, cap * sizeof *p->replies);
        if (grown == NULL)
            return LOOM_ENOMEM;
        p->replies = grown;
        p->cap_replies = cap;
    }
    loom_outbox_message *c = &p->replies[p->n_replies];
    *c = *om;
    c->topic = pb_strdup(p, om->topic, &failed);
    c->key = pb_dup(p, om->key, om->key_len, &failed);
    c->type = pb_strdup(p, om->type, &failed);
    c->payload = pb_dup(p, om->payload, om->payload_len, &failed);
    if (om->n_headers > 0) {
        loom_header *h =
            loom__arena_alloc(&p->batch, om->n_headers * sizeof *h);
        if (h == NULL)
            return LOOM_ENOMEM;
        for (size_t i = 0; i < om->n_headers; i++) {
            h[i].key = pb_strdup(p, om->headers[i].key, &failed);
            h[i].value = pb_strdup(p, om->headers[i].value, &failed);
        }
        c->headers = h;
    }
    if (failed)
        return LOOM_ENOMEM;
    p->n_replies++;
    return LOOM_OK;
}

loom_err
loom__participant_end(loom_tx *tx, char *why, size_t whylen, void *arg)
{
    loom_participant *p = arg;
    loom_err rc = loom__append_many_queue(&p->appends, tx);

    if (rc == LOOM_OK && p->n_replies > 0)
        rc = loom_outbox_add(tx, p->outbox, p->replies, p->n_replies);
    if (rc != LOOM_OK)
        snprintf(why, whylen, "participant %s: %s", p->group,
                 loom_tx_errmsg(tx));
    loom__participant_begin(p);
    return rc;
}
