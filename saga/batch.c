/*
 * A batch of transitions (batch.h): the records the decisions append, and
 * their encoding as ONE loom.saga_apply() statement whose parameters are
 * arrays (a row per statement would cost a round trip's worth of server
 * CPU each: DESIGN.md, "What this machine taught us about speed"), plus
 * the commands through loom_outbox_add().
 */
#include <stdint.h>
#include <string.h>

#include "batch.h"
#include "loom/alloc.h"
#include "loom/outbox.h"
#include "pgwire.h"
#include "tx_int.h"
#include "wire.h"

#define APPLY_SQL                                                              \
    "SELECT loom.saga_apply($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "    \
    "$12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
#define APPLY_PARAMS 23

void
loom__saga_batch_init(loom__saga_batch *b)
{
    memset(b, 0, sizeof *b);
    loom__arena_init(&b->arena);
}

void
loom__saga_batch_reset(loom__saga_batch *b)
{
    loom__arena_reset(&b->arena);
    if (b->index != NULL) {
        memset(b->index, 0, b->n_index * sizeof *b->index);
    }
    b->n_works = b->n_logs = b->n_cmds = b->n_inbox = 0;
    memset(&b->counts, 0, sizeof b->counts);
    b->oom = 0;
}

void
loom__saga_batch_free(loom__saga_batch *b)
{
    loom__arena_free(&b->arena);
    loom_free(b->works);
    loom_free(b->index);
    loom_free(b->logs);
    loom_free(b->cmds);
    loom_free(b->inbox);
    memset(b, 0, sizeof *b);
}

/* Makes room for one more element of `size` in *arr; -1 when out of
 * memory. */
static int
batch_grow(loom__saga_batch *b, void **arr, size_t n, size_t *cap, size_t size)
{
    size_t want;
    void *p;

    if (n < *cap) {
        return 0;
    }
    want = *cap ? *cap * 2 : 64;
    p = loom_malloc(want * size);
    if (p == NULL) {
        b->oom = 1;
        return -1;
    }
    if (n > 0) {
        memcpy(p, *arr, n * size);
    }
    loom_free(*arr);
    *arr = p;
    *cap = want;
    return 0;
}

static uint64_t
batch_hash(const char *id)
{
    uint64_t h = 14695981039346656037ull;

    for (const unsigned char *p = (const unsigned char *) id; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return h;
}

/* Rebuilds the index at twice the works' capacity (load <= 1/2). */
static int
batch_reindex(loom__saga_batch *b)
{
    size_t n = 64;

    while (n < b->cap_works * 2) {
        n <<= 1;
    }
    if (n != b->n_index) {
        size_t *p = loom_malloc(n * sizeof *p);
        if (p == NULL) {
            b->oom = 1;
            return -1;
        }
        loom_free(b->index);
        b->index = p;
        b->n_index = n;
    }
    memset(b->index, 0, n * sizeof *b->index);
    for (size_t i = 0; i < b->n_works; i++) {
        size_t k = batch_hash(b->works[i].s.id) & (n - 1);
        while (b->index[k] != 0) {
            k = (k + 1) & (n - 1);
        }
        b->index[k] = i + 1;
    }
    return 0;
}

size_t
loom__saga_batch_find(const loom__saga_batch *b, const char *id)
{
    size_t k;

    if (b->n_index == 0) {
        return SIZE_MAX;
    }
    k = batch_hash(id) & (b->n_index - 1);
    while (b->index[k] != 0) {
        size_t i = b->index[k] - 1;
        if (strcmp(b->works[i].s.id, id) == 0) {
            return i;
        }
        k = (k + 1) & (b->n_index - 1);
    }
    return SIZE_MAX;
}

size_t
loom__saga_batch_add(loom__saga_batch *b, const loom__saga_inst *inst)
{
    loom__saga_work *w;
    size_t cap = b->cap_works;

    if (batch_grow(b, (void **) &b->works, b->n_works, &b->cap_works,
                   sizeof *b->works) != 0) {
        return SIZE_MAX;
    }
    w = &b->works[b->n_works];
    memset(w, 0, sizeof *w);
    w->s = *inst;
    w->s.id = loom__arena_strdup(&b->arena, inst->id);
    w->s.outbox = loom__arena_strdup(&b->arena, inst->outbox);
    w->s.data = loom__arena_alloc(&b->arena, inst->data_len);
    if (w->s.id == NULL || w->s.outbox == NULL || w->s.data == NULL) {
        b->oom = 1;
        return SIZE_MAX;
    }
    if (inst->data_len > 0) {
        memcpy(w->s.data, inst->data, inst->data_len);
    }
    w->expected = inst->version;
    b->n_works++;
    if (cap != b->cap_works || b->n_index == 0) {
        if (batch_reindex(b) != 0) {
            b->n_works--;
            return SIZE_MAX;
        }
    } else {
        size_t k = batch_hash(w->s.id) & (b->n_index - 1);
        while (b->index[k] != 0) {
            k = (k + 1) & (b->n_index - 1);
        }
        b->index[k] = b->n_works;
    }
    return b->n_works - 1;
}

int
loom__saga_batch_log(loom__saga_batch *b, const loom__saga_logrec *l)
{
    if (batch_grow(b, (void **) &b->logs, b->n_logs, &b->cap_logs,
                   sizeof *b->logs) != 0) {
        return -1;
    }
    b->logs[b->n_logs++] = *l;
    return 0;
}

int
loom__saga_batch_cmd(loom__saga_batch *b, const loom__saga_cmdrec *c)
{
    if (batch_grow(b, (void **) &b->cmds, b->n_cmds, &b->cap_cmds,
                   sizeof *b->cmds) != 0) {
        return -1;
    }
    b->cmds[b->n_cmds++] = *c;
    return 0;
}

int
loom__saga_batch_mark(loom__saga_batch *b, const loom_uuid *id)
{
    if (batch_grow(b, (void **) &b->inbox, b->n_inbox, &b->cap_inbox,
                   sizeof *b->inbox) != 0) {
        return -1;
    }
    b->inbox[b->n_inbox++] = *id;
    return 0;
}

int
loom__saga_batch_pending(const loom__saga_batch *b)
{
    if (b->n_inbox > 0 || b->n_logs > 0 || b->n_cmds > 0) {
        return 1;
    }
    for (size_t i = 0; i < b->n_works; i++) {
        if (b->works[i].in_tx) {
            return 1;
        }
    }
    return 0;
}

/* ---- binary array elements ------------------------------------------- */

static void
put_text(loom__buf *p, const char *s)
{
    if (s == NULL) {
        loom__pg_array_add(p, NULL, LOOM__PG_NULL);
    } else {
        loom__pg_array_add(p, s, strlen(s));
    }
}

static void
put_i32(loom__buf *p, int32_t v, int null)
{
    char x[4] = {(char) ((uint32_t) v >> 24), (char) ((uint32_t) v >> 16),
                 (char) ((uint32_t) v >> 8), (char) v};

    if (null) {
        loom__pg_array_add(p, NULL, LOOM__PG_NULL);
    } else {
        loom__pg_array_add(p, x, 4);
    }
}

static void
put_i64(loom__buf *p, int64_t v, int null)
{
    char x[8];

    if (null) {
        loom__pg_array_add(p, NULL, LOOM__PG_NULL);
        return;
    }
    loom__pg_put_be64(x, (uint64_t) v);
    loom__pg_array_add(p, x, 8);
}

static void
put_bool(loom__buf *p, int v)
{
    char x = v ? 1 : 0;

    loom__pg_array_add(p, &x, 1);
}

static void
put_uuid(loom__buf *p, const loom_uuid *u)
{
    if (u == NULL || loom_uuid_is_nil(u)) {
        loom__pg_array_add(p, NULL, LOOM__PG_NULL);
    } else {
        loom__pg_array_add(p, u->bytes, 16);
    }
}

/* ---- the statement --------------------------------------------------- */

/* The instances' arrays, $3 .. $16 (offs[2..15]). */
static void
encode_works(const loom__saga_batch *b, loom__buf *p, size_t offs[])
{
    uint32_t n = 0;
    int k = 2;

    for (size_t i = 0; i < b->n_works; i++) {
        n += b->works[i].in_tx != 0;
    }
#define EACH(oid, stmt)                                                        \
    offs[k++] = p->len;                                                        \
    loom__pg_array_begin(p, oid, n);                                           \
    for (size_t i = 0; i < b->n_works; i++) {                                  \
        const loom__saga_work *w = &b->works[i];                               \
        if (w->in_tx) {                                                        \
            stmt;                                                              \
        }                                                                      \
    }
    EACH(LOOM__OID_TEXT, put_text(p, w->s.id))
    EACH(LOOM__OID_INT8, put_i64(p, w->expected, 0))
    EACH(LOOM__OID_INT8, put_i64(p, w->s.version, 0))
    EACH(LOOM__OID_BOOL, put_bool(p, w->touched))
    EACH(LOOM__OID_TEXT, put_text(p, loom_saga_state_name(w->s.state)))
    EACH(LOOM__OID_INT4, put_i32(p, w->s.step, 0))
    EACH(LOOM__OID_INT4, put_i32(p, (int32_t) w->s.attempt, 0))
    EACH(LOOM__OID_TEXT, put_text(p, loom__saga_wait_name(w->s.waiting)))
    EACH(LOOM__OID_UUID, put_uuid(p, &w->s.command_id))
    EACH(LOOM__OID_BOOL, put_bool(p, w->sent))
    EACH(LOOM__OID_INT8, put_i64(p, w->deadline_ms, !w->has_deadline))
    EACH(LOOM__OID_BYTEA,
         loom__pg_array_add(p,
                            w->data_changed ? (const void *) w->s.data : NULL,
                            w->data_changed ? w->s.data_len : LOOM__PG_NULL))
    EACH(LOOM__OID_TEXT, put_text(p, w->error))
    EACH(LOOM__OID_BOOL, put_bool(p, w->clear_op))
#undef EACH
}

/* The log's arrays, $17 .. $23 (offs[16..22]). */
static void
encode_logs(const loom__saga_batch *b, loom__buf *p, size_t offs[])
{
    uint32_t n = (uint32_t) b->n_logs;
    int k = 16;

#define EACH(oid, stmt)                                                        \
    offs[k++] = p->len;                                                        \
    loom__pg_array_begin(p, oid, n);                                           \
    for (size_t i = 0; i < b->n_logs; i++) {                                   \
        const loom__saga_logrec *l = &b->logs[i];                              \
        stmt;                                                                  \
    }
    EACH(LOOM__OID_TEXT, put_text(p, b->works[l->work].s.id))
    EACH(LOOM__OID_TEXT, put_text(p, l->kind))
    EACH(LOOM__OID_INT4, put_i32(p, l->step, l->step < 0))
    EACH(LOOM__OID_TEXT, put_text(p, l->step_name))
    EACH(LOOM__OID_INT4, put_i32(p, (int32_t) l->attempt, l->attempt == 0))
    EACH(LOOM__OID_UUID, put_uuid(p, l->has_msg ? &l->msg : NULL))
    EACH(LOOM__OID_TEXT, put_text(p, l->detail))
#undef EACH
}

static loom_err
encode_apply(loom__saga_batch *b, const char *consumer, loom_tx *tx)
{
    static const uint32_t types[APPLY_PARAMS] = {
        LOOM__OID_TEXT,  LOOM__OID_AUUID,  LOOM__OID_ATEXT, LOOM__OID_AINT8,
        LOOM__OID_AINT8, LOOM__OID_ABOOL,  LOOM__OID_ATEXT, LOOM__OID_AINT4,
        LOOM__OID_AINT4, LOOM__OID_ATEXT,  LOOM__OID_AUUID, LOOM__OID_ABOOL,
        LOOM__OID_AINT8, LOOM__OID_ABYTEA, LOOM__OID_ATEXT, LOOM__OID_ABOOL,
        LOOM__OID_ATEXT, LOOM__OID_ATEXT,  LOOM__OID_AINT4, LOOM__OID_ATEXT,
        LOOM__OID_AINT4, LOOM__OID_AUUID,  LOOM__OID_ATEXT};
    loom__buf p = LOOM__BUF_INIT;
    size_t offs[APPLY_PARAMS];
    const char *values[APPLY_PARAMS];
    int lengths[APPLY_PARAMS];
    loom_err rc;

    offs[0] = 0;
    loom__buf_puts(&p, consumer);
    offs[1] = p.len;
    loom__pg_array_begin(&p, LOOM__OID_UUID, (uint32_t) b->n_inbox);
    for (size_t i = 0; i < b->n_inbox; i++) {
        put_uuid(&p, &b->inbox[i]);
    }
    encode_works(b, &p, offs);
    encode_logs(b, &p, offs);
    if (p.failed) {
        loom__buf_free(&p);
        return loom__tx_fail(tx, LOOM_ENOMEM,
                             "out of memory encoding a batch of transitions");
    }
    if (p.len > LOOM_TX_MAX_BYTES) {
        loom__buf_free(&p);
        return loom__tx_fail(tx, LOOM_ETOOBIG,
                             "a batch of transitions takes %zu bytes, over "
                             "LOOM_TX_MAX_BYTES: lower the batch size",
                             p.len);
    }
    for (int i = 0; i < APPLY_PARAMS; i++) {
        values[i] = p.data + offs[i];
        lengths[i] =
            (int) ((i + 1 < APPLY_PARAMS ? offs[i + 1] : p.len) - offs[i]);
    }
    rc = loom_tx_exec_binary(tx, APPLY_SQL, APPLY_PARAMS, types, values,
                             lengths);
    loom__buf_free(&p);
    return rc;
}

/* The commands of the works whose outbox is `outbox`, from `first` on,
 * through one loom_outbox_add(); sets done[i] for those sent. */
static loom_err
encode_outbox(loom__saga_batch *b, size_t first, unsigned char *done,
              loom_tx *tx)
{
    const char *outbox = b->works[b->cmds[first].work].s.outbox;
    size_t n = 0;
    loom_outbox_message *m =
        loom__arena_alloc(&b->arena, (b->n_cmds - first) * sizeof *m);
    loom_header *h = loom__arena_alloc(
        &b->arena,
        (b->n_cmds - first) * LOOM__SAGA_WIRE_MAX_HEADERS * sizeof *h);
    loom__saga_wire_text *text =
        loom__arena_alloc(&b->arena, (b->n_cmds - first) * sizeof *text);

    if (m == NULL || h == NULL || text == NULL) {
        return loom__tx_fail(tx, LOOM_ENOMEM,
                             "out of memory encoding saga commands");
    }
    for (size_t i = first; i < b->n_cmds; i++) {
        const loom__saga_cmdrec *c = &b->cmds[i];
        const loom__saga_work *w = &b->works[c->work];
        loom_header *hh = h + n * LOOM__SAGA_WIRE_MAX_HEADERS;

        if (done[i] || strcmp(w->s.outbox, outbox) != 0) {
            continue;
        }
        done[i] = 1;
        memset(&m[n], 0, sizeof m[n]);
        m[n].topic = c->st->participant;
        m[n].key = w->s.id;
        m[n].key_len = strlen(w->s.id);
        m[n].type = c->st->command->name;
        m[n].headers = hh;
        m[n].n_headers = loom__saga_wire_command(
            hh, &text[n], w->s.id, w->s.def->name, c->st->name, c->attempt,
            w->s.def->reply_topic);
        m[n].payload = c->payload;
        m[n].payload_len = c->len;
        m[n].id = c->id;
        n++;
    }
    return loom_outbox_add(tx, outbox, m, n);
}

loom_err
loom__saga_batch_encode(loom__saga_batch *b, const char *consumer, loom_tx *tx)
{
    unsigned char *done;
    loom_err rc;

    loom__tx_reset(tx);
    if (b->oom) {
        return loom__tx_fail(tx, LOOM_ENOMEM,
                             "out of memory deciding a batch of transitions");
    }
    rc = encode_apply(b, consumer, tx);
    if (rc != LOOM_OK || b->n_cmds == 0) {
        return rc;
    }
    done = loom__arena_alloc(&b->arena, b->n_cmds);
    if (done == NULL) {
        return loom__tx_fail(tx, LOOM_ENOMEM,
                             "out of memory encoding saga commands");
    }
    memset(done, 0, b->n_cmds);
    for (size_t i = 0; i < b->n_cmds && rc == LOOM_OK; i++) {
        if (!done[i]) {
            rc = encode_outbox(b, i, done, tx);
        }
    }
    return rc;
}
