/*
 * Aggregates: load (snapshot + newer events), decide, append with the
 * loaded version as expected version, retry on conflict.
 */
#include "loom/aggregate.h"

#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "loom/alloc.h"
#include "store_int.h"

/* Events per read while loading. */
#define AGG_PAGE 1000

struct loom_decision {
    loom_event_data *ev; /* each ev[i] and what it points to is one block */
    void **blocks;
    size_t n, cap;
};

static size_t
agg_strsize(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Copies `s` into *cursor (advancing it); NULL stays NULL. */
static const char *
agg_place(char **cursor, const char *s)
{
    size_t n = agg_strsize(s);
    char *p = *cursor;

    if (s == NULL)
        return NULL;
    memcpy(p, s, n);
    *cursor += n;
    return p;
}

static size_t
agg_event_size(const loom_event_data *ev)
{
    size_t size = ev->n_headers * sizeof(loom_header) + ev->data_len +
                  agg_strsize(ev->type) + agg_strsize(ev->correlation_id) +
                  agg_strsize(ev->causation_id);

    for (size_t i = 0; i < ev->n_headers; i++)
        size +=
            agg_strsize(ev->headers[i].key) + agg_strsize(ev->headers[i].value);
    return size;
}

static loom_err
decision_grow(loom_decision *d)
{
    size_t cap = d->cap ? d->cap * 2 : 8;
    loom_event_data *ev = loom_realloc(d->ev, cap * sizeof *ev);
    void **blocks;

    if (ev == NULL)
        return LOOM_ENOMEM;
    d->ev = ev;
    blocks = loom_realloc(d->blocks, cap * sizeof *blocks);
    if (blocks == NULL)
        return LOOM_ENOMEM;
    d->blocks = blocks;
    d->cap = cap;
    return LOOM_OK;
}

loom_err
loom_decision_emit(loom_decision *d, const loom_event_data *ev)
{
    loom_event_data *copy;
    loom_header *hs;
    char *block, *cursor;

    if (d == NULL || ev == NULL || ev->type == NULL ||
        (ev->data == NULL && ev->data_len > 0) ||
        (ev->headers == NULL && ev->n_headers > 0))
        return LOOM_EINVAL;
    for (size_t i = 0; i < ev->n_headers; i++)
        if (ev->headers[i].key == NULL || ev->headers[i].value == NULL)
            return LOOM_EINVAL;
    if (d->n == d->cap && decision_grow(d) != LOOM_OK)
        return LOOM_ENOMEM;
    block = loom_malloc(agg_event_size(ev));
    if (block == NULL)
        return LOOM_ENOMEM;
    copy = &d->ev[d->n];
    *copy = *ev;
    hs = (loom_header *) block;
    cursor = block + ev->n_headers * sizeof *hs;
    for (size_t i = 0; i < ev->n_headers; i++) {
        hs[i].key = agg_place(&cursor, ev->headers[i].key);
        hs[i].value = agg_place(&cursor, ev->headers[i].value);
    }
    copy->headers = ev->n_headers ? hs : NULL;
    if (ev->data_len > 0)
        memcpy(cursor, ev->data, ev->data_len);
    copy->data = ev->data_len ? cursor : NULL;
    cursor += ev->data_len;
    copy->type = agg_place(&cursor, ev->type);
    copy->correlation_id = agg_place(&cursor, ev->correlation_id);
    copy->causation_id = agg_place(&cursor, ev->causation_id);
    d->blocks[d->n++] = block;
    return LOOM_OK;
}

static void
decision_clear(loom_decision *d)
{
    for (size_t i = 0; i < d->n; i++)
        loom_free(d->blocks[i]);
    d->n = 0;
}

/* LOOM_OK, or LOOM_EINVAL naming what is wrong with aggregate type `t`.
 * The state must fit a snapshot (max_payload), which also keeps an absurd
 * state_size away from the memset() and malloc() sized by it. */
static loom_err
agg_check_type(loom_store *s, const loom_aggregate_type *t)
{
    if (t == NULL)
        return loom__store_fail(s, LOOM_EINVAL, "the aggregate type is NULL");
    if (t->name == NULL || t->name[0] == '\0' || strchr(t->name, '-'))
        return loom__store_fail(
            s, LOOM_EINVAL,
            "the aggregate type's name %s%s%s: it must be "
            "a category without '-', such as \"order\"",
            t->name == NULL ? "is NULL"
            : t->name[0]    ? "\""
                            : "is empty",
            t->name != NULL ? t->name : "",
            t->name != NULL && t->name[0] ? "\" contains '-'" : "");
    if (t->apply == NULL)
        return loom__store_fail(
            s, LOOM_EINVAL, "aggregate type \"%s\": apply is NULL", t->name);
    if (t->state_size == 0 || t->state_size > s->cfg.max_payload)
        return loom__store_fail(s, LOOM_EINVAL,
                                "aggregate type \"%s\": state_size %zu is "
                                "out of range: it must be 1 to %zu bytes "
                                "(the store's max_payload: a snapshot holds "
                                "the state)",
                                t->name, t->state_size, s->cfg.max_payload);
    if (t->state_version < 0)
        return loom__store_fail(s, LOOM_EINVAL,
                                "aggregate type \"%s\": state_version %d "
                                "is negative",
                                t->name, (int) t->state_version);
    return LOOM_OK;
}

/* "<name>-<id>" into b, checking the parts (LOOM_EINVAL with why). */
static loom_err
agg_stream(loom_store *s, loom__buf *b, const loom_aggregate_type *t,
           const char *id)
{
    loom_err rc = agg_check_type(s, t);

    if (rc != LOOM_OK)
        return rc;
    if (id == NULL || id[0] == '\0')
        return loom__store_fail(s, LOOM_EINVAL,
                                "aggregate type \"%s\": the id is %s: give "
                                "the instance's id, such as \"42\"",
                                t->name, id == NULL ? "NULL" : "empty");
    loom__buf_printf(b, "%s-%s", t->name, id);
    if (b->failed)
        return loom__store_fail(s, LOOM_ENOMEM,
                                "out of memory naming the stream of "
                                "aggregate type \"%s\"",
                                t->name);
    return LOOM_OK;
}

static void
agg_init(const loom_aggregate_type *t, void *state)
{
    memset(state, 0, t->state_size);
    if (t->init != NULL)
        t->init(state);
}

/* Starts from the snapshot if there is a usable one; else *version = -1. */
static loom_err
agg_from_snapshot(loom_store *s, const loom_aggregate_type *t,
                  const char *stream, void *state, int64_t *version)
{
    void *data = NULL;
    size_t len = 0;
    int64_t v = -1;
    loom_err rc;

    *version = -1;
    if (t->snapshot_every == 0)
        return LOOM_OK;
    rc = loom_store_snapshot_load(s, stream, t->state_version, &data, &len, &v);
    if (rc == LOOM_OK && len == t->state_size) {
        memcpy(state, data, len);
        *version = v;
    }
    loom_free(data);
    return rc == LOOM_ENOTFOUND ? LOOM_OK : rc;
}

static loom_err
agg_load(loom_store *s, const loom_aggregate_type *t, const char *stream,
         void *state, int64_t *version)
{
    loom_events *page = NULL;
    size_t page_size = s->cfg.max_read < AGG_PAGE ? s->cfg.max_read : AGG_PAGE;
    loom_err rc;

    agg_init(t, state);
    rc = agg_from_snapshot(s, t, stream, state, version);
    while (rc == LOOM_OK) {
        size_t n;
        rc = loom_store_read_stream(s, stream, *version + 1, LOOM_FORWARD,
                                    page_size, &page);
        n = loom_events_count(page);
        for (size_t i = 0; rc == LOOM_OK && i < n; i++) {
            const loom_event *ev = loom_events_at(page, i);
            rc = t->apply(state, ev);
            if (rc == LOOM_OK)
                *version = ev->version;
        }
        loom_events_free(page);
        page = NULL;
        if (n < page_size)
            break;
    }
    return rc;
}

loom_err
loom_aggregate_load(loom_store *s, const loom_aggregate_type *t, const char *id,
                    void *state, int64_t *version)
{
    loom__buf stream = LOOM__BUF_INIT;
    int64_t v = -1;
    loom_err rc;

    if (version != NULL)
        *version = -1;
    if (s == NULL)
        return LOOM_EINVAL;
    loom__store_enter(s);
    if (state == NULL)
        return loom__store_fail(s, LOOM_EINVAL,
                                "loom_aggregate_load: state is NULL (pass a "
                                "buffer of the type's state_size bytes)");
    rc = agg_stream(s, &stream, t, id);
    if (rc == LOOM_OK)
        rc = agg_load(s, t, stream.data, state, &v);
    if (rc == LOOM_OK && version != NULL)
        *version = v;
    loom__buf_free(&stream);
    return rc;
}

/* Folds the appended events into `state` and stores it as a snapshot. */
static void
agg_snapshot(loom_store *s, const loom_aggregate_type *t, const char *stream,
             void *state, const loom_decision *d, const loom_append_result *ar)
{
    for (size_t i = 0; i < d->n; i++) {
        const loom_event_data *e = &d->ev[i];
        loom_event ev;
        memset(&ev, 0, sizeof ev);
        ev.stream = stream;
        ev.version = ar->first_version + (int64_t) i;
        ev.position = ar->first_position + (int64_t) i;
        ev.id = e->id;
        ev.type = e->type;
        ev.schema_version = e->schema_version;
        ev.data = e->data ? e->data : (const uint8_t *) "";
        ev.data_len = e->data_len;
        ev.correlation_id = e->correlation_id;
        ev.causation_id = e->causation_id;
        ev.headers = e->headers;
        ev.n_headers = e->n_headers;
        if (t->apply(state, &ev) != LOOM_OK)
            return; /* the next load replays from the old snapshot */
    }
    loom_store_snapshot_save(s, stream, ar->last_version, t->state_version,
                             state, t->state_size);
}

static int
agg_crosses(const loom_aggregate_type *t, int64_t before, int64_t after)
{
    int64_t every = t->snapshot_every;

    return every > 0 && (before + 1) / every < (after + 1) / every;
}

/* One load-decide-append attempt. */
static loom_err
agg_attempt(loom_store *s, const loom_aggregate_type *t, const char *stream,
            void *state, loom_decision *d, loom_decide_fn decide, void *arg,
            loom_execute_result *res)
{
    loom_append_result ar;
    int64_t version = -1;
    loom_err rc = agg_load(s, t, stream, state, &version);

    res->version = version;
    res->n_events = 0;
    if (rc == LOOM_OK)
        rc = decide(state, version, d, arg);
    if (rc != LOOM_OK || d->n == 0)
        return rc;
    rc = loom_store_append(s, stream, version, d->ev, d->n, &ar);
    if (rc != LOOM_OK)
        return rc;
    res->version = ar.last_version;
    res->n_events = d->n;
    if (agg_crosses(t, version, ar.last_version))
        agg_snapshot(s, t, stream, state, d, &ar);
    return LOOM_OK;
}

loom_err
loom_aggregate_execute(loom_store *s, const loom_aggregate_type *t,
                       const char *id, loom_decide_fn decide, void *arg,
                       const loom_execute_options *opt,
                       loom_execute_result *res)
{
    loom_execute_result tmp = {-1, 0, 0};
    loom_decision d = {NULL, NULL, 0, 0};
    loom__buf stream = LOOM__BUF_INIT;
    unsigned max = opt && opt->max_attempts ? opt->max_attempts : 10;
    void *state = NULL;
    loom_err rc;

    if (s == NULL)
        return LOOM_EINVAL;
    loom__store_enter(s);
    if (decide == NULL)
        return loom__store_fail(s, LOOM_EINVAL,
                                "loom_aggregate_execute: decide is NULL");
    rc = agg_stream(s, &stream, t, id);
    if (rc == LOOM_OK && (state = loom_malloc(t->state_size)) == NULL)
        rc = loom__store_fail(s, LOOM_ENOMEM,
                              "out of memory for the %zu-byte state of "
                              "aggregate type \"%s\"",
                              t->state_size, t->name);
    for (tmp.attempts = 1; rc == LOOM_OK; tmp.attempts++) {
        decision_clear(&d);
        rc = agg_attempt(s, t, stream.data, state, &d, decide, arg, &tmp);
        if (rc != LOOM_ECONFLICT || tmp.attempts >= max)
            break;
        rc = LOOM_OK;
    }
    if (rc == LOOM_ECONFLICT)
        loom__store_fail(s, rc,
                         "command on \"%s\" lost the race for its version %u "
                         "times (max_attempts): the aggregate is too "
                         "contended",
                         stream.data, tmp.attempts);
    decision_clear(&d);
    loom_free(d.ev);
    loom_free(d.blocks);
    loom_free(state);
    loom__buf_free(&stream);
    if (res != NULL)
        *res = tmp;
    return rc;
}
