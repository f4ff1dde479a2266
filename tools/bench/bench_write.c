/*
 * The writers behind the append cases and the read case's loader: some
 * threads, each with its own connection and its own streams, appending
 * batches of events either with loom_store_append() or as plain INSERTs
 * of the identical rows into loom_bench.events.
 *
 * Both sides write the same columns and bytes: a v7 UUID per event, the
 * type name, schema version 1, the same 200-byte payload and the same
 * metadata (a correlation id and one header, encoded by Eventloom's own
 * encoder). Each stream receives WRITE_APPENDS_PER_STREAM appends with
 * the exact expected version, the common event-sourcing pattern: the
 * first creates the stream, the others extend it. The rebuild's loader
 * instead spreads its appends round robin over a fixed set of streams.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "buf.h"
#include "loom/alloc.h"
#include "loom/eventstore.h"
#include "pgwire.h"
#include "store_int.h"

#define WRITE_APPENDS_PER_STREAM 10
#define WRITE_COLS               8
#define WRITE_PROGRESS_NS        INT64_C(2000000000)

#define WRITE_INSERT                                                           \
    "INSERT INTO loom_bench.events (stream, category, version, event_id, "     \
    "type, schema_version, data, metadata) "

/* One statement for the whole batch, as loom.append() does it. */
static const char write_unnest_sql[] = WRITE_INSERT
    "SELECT $1, $2, $3 + u.ord - 1, u.id, u.type, u.sv, u.data, u.meta "
    "FROM unnest($4::uuid[], $5::text[], $6::int4[], $7::bytea[], "
    "$8::bytea[]) WITH ORDINALITY AS u(id, type, sv, data, meta, ord)";

static const Oid write_row_types[WRITE_COLS] = {
    LOOM__OID_TEXT, LOOM__OID_TEXT, LOOM__OID_INT8,  LOOM__OID_UUID,
    LOOM__OID_TEXT, LOOM__OID_INT4, LOOM__OID_BYTEA, LOOM__OID_BYTEA};

static const Oid write_unnest_types[WRITE_COLS] = {
    LOOM__OID_TEXT,  LOOM__OID_TEXT,  LOOM__OID_INT8,   LOOM__OID_AUUID,
    LOOM__OID_ATEXT, LOOM__OID_AINT4, LOOM__OID_ABYTEA, LOOM__OID_ABYTEA};

static const loom_header write_headers[1] = {{"tenant", "acme-industries"}};

static unsigned char write_payload[BENCH_PAYLOAD_BYTES];
static const char write_sv_be[4] = {0, 0, 0, 1}; /* schema version 1 */

/* State shared by the threads of one bench_write() call. */
typedef struct write_shared {
    const bench_write_spec *spec;
    pthread_barrier_t start;
    atomic_int failed; /* one thread failed: the others stop too */
} write_shared;

typedef struct write_worker {
    write_shared *sh;
    int index;
    pthread_t thread;
    loom_store *store;   /* loom side */
    loom_event_data *ev; /* loom side: the batch */
    PGconn *conn;        /* raw side */
    loom__buf meta;      /* raw side: the encoded metadata */
    loom__buf keys;      /* raw side: each row's version and id */
    loom__buf params;    /* raw side: binary array parameters */
    char *values_sql;    /* raw side: the multi-row VALUES statement */
    const char **values; /* raw side: WRITE_COLS * batch parameters */
    int *lengths, *formats;
    Oid *types;
    char corr[LOOM_UUID_STRLEN];
    char stream[96];
    size_t events;
    bench_samples latency;
} write_worker;

/* ------------------------------------------------------------------ */
/* Set-up                                                              */

/* A fixed pseudo-random payload: incompressible like protobuf bytes. */
static void
write_init_payload(void)
{
    uint32_t x = 2463534242u;

    for (size_t i = 0; i < sizeof write_payload; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        write_payload[i] = (unsigned char) x;
    }
}

static void
write_fail(write_worker *w, const char *what, const char *why)
{
    fprintf(stderr, "%s: %s (thread %d): %s: %s\n", BENCH_PROGRAM,
            w->sh->spec->label, w->index, what, why);
    atomic_store(&w->sh->failed, 1);
}

static int
write_open_loom(write_worker *w)
{
    const bench_write_spec *sp = w->sh->spec;
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    char err[512];
    loom_err rc;

    w->ev = calloc(sp->batch, sizeof *w->ev);
    if (w->ev == NULL) {
        write_fail(w, "allocating", "out of memory");
        return -1;
    }
    for (size_t i = 0; i < sp->batch; i++) {
        w->ev[i].type = BENCH_EVENT_TYPE;
        w->ev[i].schema_version = 1;
        w->ev[i].data = write_payload;
        w->ev[i].data_len = sizeof write_payload;
        w->ev[i].correlation_id = w->corr;
        w->ev[i].headers = write_headers;
        w->ev[i].n_headers = 1;
    }
    cfg.conninfo = sp->env->conninfo;
    cfg.application_name = "loom-bench";
    rc = loom_store_open(&w->store, &cfg, err, sizeof err);
    if (rc != LOOM_OK) {
        write_fail(w, "loom_store_open", err);
        return -1;
    }
    return 0;
}

/* "INSERT ... VALUES ($1, ..., $8), ($9, ...)" for `rows` rows. */
static char *
write_values_sql(size_t rows)
{
    loom__buf b = LOOM__BUF_INIT;

    loom__buf_puts(&b, WRITE_INSERT "VALUES ");
    for (size_t r = 0; r < rows; r++) {
        loom__buf_puts(&b, r ? ", (" : "(");
        for (int c = 0; c < WRITE_COLS; c++)
            loom__buf_printf(&b, c ? ", $%zu" : "$%zu",
                             r * WRITE_COLS + (size_t) c + 1);
        loom__buf_putc(&b, ')');
    }
    return loom__buf_take(&b);
}

static int
write_open_raw(write_worker *w)
{
    const bench_write_spec *sp = w->sh->spec;
    size_t n = sp->batch * WRITE_COLS;
    loom_event_data e = {
        .correlation_id = w->corr, .headers = write_headers, .n_headers = 1};

    loom__metadata_encode(&w->meta, &e);
    w->values = calloc(n, sizeof *w->values);
    w->lengths = calloc(n, sizeof *w->lengths);
    w->formats = calloc(n, sizeof *w->formats);
    w->types = calloc(n, sizeof *w->types);
    w->values_sql = write_values_sql(sp->batch);
    if (w->values == NULL || w->lengths == NULL || w->formats == NULL ||
        w->types == NULL || w->values_sql == NULL || w->meta.failed) {
        write_fail(w, "allocating", "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        w->formats[i] = 1;
        w->types[i] = write_row_types[i % WRITE_COLS];
    }
    w->conn = bench_db_connect(sp->env->conninfo, "loom-bench-raw");
    if (w->conn == NULL) {
        write_fail(w, "connecting", "see above");
        return -1;
    }
    return 0;
}

static int
write_open(write_worker *w)
{
    loom_uuid u;

    if (loom_uuid_generate(&u) != LOOM_OK) {
        write_fail(w, "loom_uuid_generate", "no random source");
        return -1;
    }
    loom_uuid_format(&u, w->corr);
    return w->sh->spec->raw ? write_open_raw(w) : write_open_loom(w);
}

static void
write_close(write_worker *w)
{
    loom_store_close(w->store);
    PQfinish(w->conn);
    free(w->ev);
    loom__buf_free(&w->meta);
    loom__buf_free(&w->keys);
    loom__buf_free(&w->params);
    loom_free(w->values_sql);
    free(w->values);
    free(w->lengths);
    free(w->formats);
    free(w->types);
}

/* ------------------------------------------------------------------ */
/* One transaction                                                     */

static int
write_loom_batch(write_worker *w, int64_t base)
{
    size_t n = w->sh->spec->batch;
    loom_err rc;

    /* A nil id asks Eventloom for a fresh one, as an application would. */
    for (size_t i = 0; i < n; i++)
        memset(&w->ev[i].id, 0, sizeof w->ev[i].id);
    rc = loom_store_append(w->store, w->stream, base - 1, w->ev, n, NULL);
    if (rc != LOOM_OK) {
        write_fail(w, loom_err_name(rc), loom_store_errmsg(w->store));
        return -1;
    }
    return 0;
}

/* Runs a raw INSERT with the parameters in w->values and w->lengths. */
static int
write_raw_exec(write_worker *w, const char *sql, int n, const Oid *types)
{
    PGresult *r = PQexecParams(w->conn, sql, n, types, w->values, w->lengths,
                               w->formats, 1);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;

    if (!ok)
        write_fail(w, "INSERT", PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

/* Builds the versions and UUIDs of a batch into w->keys: row i has its
 * version at 24 * i and its id at 24 * i + 8. */
static int
write_raw_keys(write_worker *w, int64_t base)
{
    loom__buf *b = &w->keys;
    loom_uuid u;

    loom__buf_reset(b);
    for (size_t i = 0; i < w->sh->spec->batch; i++) {
        if (loom_uuid_generate(&u) != LOOM_OK) {
            write_fail(w, "loom_uuid_generate", "no random source");
            return -1;
        }
        loom__buf_put_be64(b, (uint64_t) (base + (int64_t) i));
        loom__buf_put(b, u.bytes, 16);
    }
    if (b->failed) {
        write_fail(w, "allocating", "out of memory");
        return -1;
    }
    return 0;
}

/* INSERT ... VALUES: eight parameters per row, payloads not copied. */
static int
write_raw_values(write_worker *w, int64_t base)
{
    size_t n = w->sh->spec->batch;
    int slen = (int) strlen(w->stream);
    int clen = (int) strcspn(w->stream, "-");

    if (write_raw_keys(w, base) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char **v = w->values + i * WRITE_COLS;
        int *l = w->lengths + i * WRITE_COLS;
        v[0] = v[1] = w->stream;
        l[0] = slen;
        l[1] = clen;
        v[2] = w->keys.data + 24 * i;
        l[2] = 8;
        v[3] = w->keys.data + 24 * i + 8;
        l[3] = 16;
        v[4] = BENCH_EVENT_TYPE;
        l[4] = (int) strlen(BENCH_EVENT_TYPE);
        v[5] = write_sv_be;
        l[5] = 4;
        v[6] = (const char *) write_payload;
        l[6] = (int) sizeof write_payload;
        v[7] = w->meta.data;
        l[7] = (int) w->meta.len;
    }
    return write_raw_exec(w, w->values_sql, (int) (n * WRITE_COLS), w->types);
}

/* Builds the five arrays of INSERT ... SELECT FROM unnest into w->params,
 * recording where each parameter starts (the buffer may move). */
static void
write_raw_arrays(write_worker *w, size_t off[WRITE_COLS + 1])
{
    loom__buf *b = &w->params;
    size_t n = w->sh->spec->batch;

    loom__buf_reset(b);
    off[3] = b->len;
    loom__pg_array_begin(b, LOOM__OID_UUID, (uint32_t) n);
    for (size_t i = 0; i < n; i++)
        loom__pg_array_add(b, w->keys.data + 24 * i + 8, 16);
    off[4] = b->len;
    loom__pg_array_begin(b, LOOM__OID_TEXT, (uint32_t) n);
    for (size_t i = 0; i < n; i++)
        loom__pg_array_add(b, BENCH_EVENT_TYPE, strlen(BENCH_EVENT_TYPE));
    off[5] = b->len;
    loom__pg_array_begin(b, LOOM__OID_INT4, (uint32_t) n);
    for (size_t i = 0; i < n; i++)
        loom__pg_array_add(b, write_sv_be, 4);
    off[6] = b->len;
    loom__pg_array_begin(b, LOOM__OID_BYTEA, (uint32_t) n);
    for (size_t i = 0; i < n; i++)
        loom__pg_array_add(b, write_payload, sizeof write_payload);
    off[7] = b->len;
    loom__pg_array_begin(b, LOOM__OID_BYTEA, (uint32_t) n);
    for (size_t i = 0; i < n; i++)
        loom__pg_array_add(b, w->meta.data, w->meta.len);
    off[8] = b->len;
}

static int
write_raw_unnest(write_worker *w, int64_t base)
{
    size_t off[WRITE_COLS + 1];

    if (write_raw_keys(w, base) != 0)
        return -1;
    write_raw_arrays(w, off);
    if (w->params.failed) {
        write_fail(w, "allocating", "out of memory");
        return -1;
    }
    w->values[0] = w->values[1] = w->stream;
    w->lengths[0] = (int) strlen(w->stream);
    w->lengths[1] = (int) strcspn(w->stream, "-");
    w->values[2] = w->keys.data; /* the first row's version: the base */
    w->lengths[2] = 8;
    for (int i = 3; i < WRITE_COLS; i++) {
        w->values[i] = w->params.data + off[i];
        w->lengths[i] = (int) (off[i + 1] - off[i]);
    }
    return write_raw_exec(w, write_unnest_sql, WRITE_COLS, write_unnest_types);
}

/* ------------------------------------------------------------------ */
/* The thread                                                          */

static int
write_stop(write_worker *w, int64_t now, int64_t deadline)
{
    const bench_write_spec *sp = w->sh->spec;

    return atomic_load(&bench_stopped) || atomic_load(&w->sh->failed) ||
           (deadline > 0 && now >= deadline) ||
           (sp->max_events > 0 && w->events >= sp->max_events);
}

static void
write_progress(write_worker *w, int64_t now, int64_t *next)
{
    if (w->index != 0 || now < *next)
        return;
    bench_progress("%s: %zu events", w->sh->spec->label, w->events);
    *next = now + WRITE_PROGRESS_NS;
}

/* Append k of this thread: by default streams of 10 appends one after
 * the other; with spec->streams, round robin over that many streams. */
static int
write_one(write_worker *w, size_t k)
{
    const bench_write_spec *sp = w->sh->spec;
    size_t nth = sp->streams ? k / sp->streams : k % WRITE_APPENDS_PER_STREAM;
    size_t stream =
        sp->streams ? k % sp->streams : k / WRITE_APPENDS_PER_STREAM;
    int64_t base = (int64_t) (nth * sp->batch);

    snprintf(w->stream, sizeof w->stream, "account-%u.%d.%zu", sp->run,
             w->index, stream);
    if (!sp->raw)
        return write_loom_batch(w, base);
    if (sp->batch == 1 || sp->form == BENCH_RAW_VALUES)
        return write_raw_values(w, base);
    return write_raw_unnest(w, base);
}

static void
write_loop(write_worker *w)
{
    const bench_write_spec *sp = w->sh->spec;
    int64_t now = bench_now_ns(), t;
    int64_t deadline =
        sp->seconds > 0 ? now + (int64_t) (sp->seconds * 1e9) : 0;
    int64_t next = now + WRITE_PROGRESS_NS;

    for (size_t k = 0; !write_stop(w, now, deadline); k++) {
        t = now;
        if (write_one(w, k) != 0)
            return;
        now = bench_now_ns();
        w->events += sp->batch;
        if (bench_samples_push(&w->latency, now - t) != 0) {
            write_fail(w, "recording latency", "out of memory");
            return;
        }
        write_progress(w, now, &next);
    }
}

static void *
write_thread(void *arg)
{
    write_worker *w = arg;
    int ok = write_open(w) == 0;

    /* Everyone, failed or not, meets at the start line, so nobody waits
     * forever and the measurement starts with every connection open. */
    pthread_barrier_wait(&w->sh->start);
    if (ok)
        write_loop(w);
    write_close(w);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* The driver                                                          */

static void
write_start(write_shared *sh, write_worker *ws, int n)
{
    for (int i = 0; i < n; i++) {
        ws[i].sh = sh;
        ws[i].index = i;
        if (pthread_create(&ws[i].thread, NULL, write_thread, &ws[i]) != 0) {
            /* The barrier counts on every thread: give up on the process. */
            fprintf(stderr, "%s: cannot start a thread\n", BENCH_PROGRAM);
            exit(1);
        }
    }
}

int
bench_write(const bench_write_spec *spec, bench_write_result *res)
{
    write_shared sh = {.spec = spec};
    write_worker *ws = calloc((size_t) spec->threads, sizeof *ws);
    int64_t t0;
    int rc = 0;

    memset(res, 0, sizeof *res);
    if (ws == NULL) {
        fprintf(stderr, "%s: out of memory\n", BENCH_PROGRAM);
        return -1;
    }
    write_init_payload(); /* idempotent; before any thread reads it */
    atomic_init(&sh.failed, 0);
    pthread_barrier_init(&sh.start, NULL, (unsigned) spec->threads + 1);
    write_start(&sh, ws, spec->threads);
    pthread_barrier_wait(&sh.start);
    t0 = bench_now_ns();
    for (int i = 0; i < spec->threads; i++) {
        pthread_join(ws[i].thread, NULL);
        res->events += ws[i].events;
        if (bench_samples_merge(&res->latency, &ws[i].latency) != 0)
            rc = -1;
        bench_samples_free(&ws[i].latency);
    }
    res->seconds = (double) (bench_now_ns() - t0) / 1e9;
    pthread_barrier_destroy(&sh.start);
    free(ws);
    return atomic_load(&sh.failed) || rc != 0 ? -1 : 0;
}
