/*
 * Outbox messages collected over several calls (outbox_batch.h). Every
 * field is copied into one buffer and remembered by offset, since the
 * buffer moves as it grows; pointers are made only when the batch is
 * queued.
 */
#include <string.h>

#include "loom/alloc.h"
#include "outbox_batch.h"
#include "outbox_int.h"
#include "tx_int.h"

#define OB_NONE ((size_t) -1)

struct loom__outbox_item {
    size_t topic, key, type, payload, headers; /* offsets; OB_NONE: absent */
    size_t key_len, payload_len, n_headers;
    loom_uuid id;
    int64_t deliver_at;
};

void
loom__outbox_batch_init(loom__outbox_batch *b)
{
    memset(b, 0, sizeof *b);
}

void
loom__outbox_batch_reset(loom__outbox_batch *b)
{
    loom__buf_reset(&b->data);
    b->n = 0;
}

void
loom__outbox_batch_free(loom__outbox_batch *b)
{
    loom__buf_free(&b->data);
    loom_free(b->items);
    loom__outbox_batch_init(b);
}

/* Copies `len` bytes (and a NUL) into the buffer; their offset. */
static size_t
ob_put(loom__outbox_batch *b, const void *p, size_t len)
{
    size_t at = b->data.len;

    if (len > 0)
        loom__buf_put(&b->data, p, len);
    loom__buf_putc(&b->data, '\0');
    return at;
}

loom_err
loom__outbox_batch_add(loom__outbox_batch *b, loom_tx *tx,
                       const loom_outbox_message *m)
{
    loom__outbox_item *it;
    loom_err rc;

    if (b == NULL || tx == NULL || m == NULL)
        return LOOM_EINVAL;
    rc = loom__outbox_check_msg(tx, b->n, m);
    if (rc != LOOM_OK)
        return rc;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        loom__outbox_item *items =
            loom_realloc(b->items, cap * sizeof *b->items);
        if (items == NULL)
            return loom__tx_fail(tx, LOOM_ENOMEM,
                                 "out of memory collecting outbox messages");
        b->items = items;
        b->cap = cap;
    }
    it = &b->items[b->n];
    it->topic = ob_put(b, m->topic, strlen(m->topic));
    it->key_len = m->key_len;
    it->key = m->key_len > 0 ? ob_put(b, m->key, m->key_len) : OB_NONE;
    it->type = m->type != NULL ? ob_put(b, m->type, strlen(m->type)) : OB_NONE;
    it->payload_len = m->payload_len;
    it->payload = ob_put(b, m->payload, m->payload_len);
    it->n_headers = m->n_headers;
    it->headers = m->n_headers > 0 ? b->data.len : OB_NONE;
    for (size_t h = 0; h < m->n_headers; h++) {
        ob_put(b, m->headers[h].key, strlen(m->headers[h].key));
        ob_put(b, m->headers[h].value, strlen(m->headers[h].value));
    }
    it->id = m->id;
    it->deliver_at = m->deliver_at;
    if (b->data.failed)
        return loom__tx_fail(tx, LOOM_ENOMEM,
                             "out of memory collecting outbox messages");
    b->n++;
    return LOOM_OK;
}

loom_err
loom__outbox_batch_queue(loom__outbox_batch *b, loom_tx *tx, const char *outbox)
{
    loom_outbox_message *msgs;
    loom_header *hdrs;
    const char *d = b->data.data;
    size_t n_headers = 0;
    loom_err rc;

    if (b->n == 0)
        return LOOM_OK;
    for (size_t i = 0; i < b->n; i++)
        n_headers += b->items[i].n_headers;
    msgs = loom_malloc(b->n * sizeof *msgs);
    hdrs = loom_malloc((n_headers ? n_headers : 1) * sizeof *hdrs);
    if (msgs == NULL || hdrs == NULL) {
        loom_free(msgs);
        loom_free(hdrs);
        return loom__tx_fail(tx, LOOM_ENOMEM,
                             "out of memory queueing %zu outbox messages",
                             b->n);
    }
    for (size_t i = 0, k = 0; i < b->n; i++) {
        const loom__outbox_item *it = &b->items[i];
        loom_outbox_message *m = &msgs[i];
        memset(m, 0, sizeof *m);
        m->topic = d + it->topic;
        m->key = it->key != OB_NONE ? d + it->key : NULL;
        m->key_len = it->key_len;
        m->type = it->type != OB_NONE ? d + it->type : NULL;
        m->payload = d + it->payload;
        m->payload_len = it->payload_len;
        m->id = it->id;
        m->deliver_at = it->deliver_at;
        m->n_headers = it->n_headers;
        m->headers = it->n_headers > 0 ? &hdrs[k] : NULL;
        for (size_t h = 0, at = it->headers; h < it->n_headers; h++, k++) {
            hdrs[k].key = d + at;
            at += strlen(d + at) + 1;
            hdrs[k].value = d + at;
            at += strlen(d + at) + 1;
        }
    }
    rc = loom_outbox_add(tx, outbox, msgs, b->n);
    loom_free(msgs);
    loom_free(hdrs);
    loom__outbox_batch_reset(b);
    return rc;
}
