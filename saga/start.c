/*
 * Starting a saga and reading one back (loom/saga.h). A start is ONE
 * statement, loom.saga_start() (framework/migrations/0007_saga.sql),
 * queued in the caller's unit of work: it inserts the instance and, only
 * when the insert happened, its log entries and step 0's command in the
 * outbox. So a start commits with the change that called for it, and
 * starting an id twice is one saga.
 */
#include <stdio.h>
#include <string.h>

#include "headers.h"
#include "loom/outbox.h"
#include "outbox_int.h"
#include "pgwire.h"
#include "saga_int.h"
#include "store_int.h"
#include "tx_int.h"
#include "wire.h"

#define START_SQL                                                              \
    "SELECT loom.saga_start($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "    \
    "$12)"

static const loom__stmt started_stmt = {
    LOOM__STMT_SAGA_STARTED,
    "loom_saga_started",
    "SELECT EXISTS (SELECT 1 FROM loom.saga_log WHERE saga_id = $1 AND "
    "kind = 'command' AND step = 0 AND message_id = $2)",
    2,
    {LOOM__OID_TEXT, LOOM__OID_UUID}};

static const loom__stmt get_stmt = {
    LOOM__STMT_SAGA_GET,
    "loom_saga_get",
    "SELECT id, type, def_version, state, step, attempt, version, "
    "started_at, updated_at, ended_at, last_error FROM loom.saga_instances "
    "WHERE id = $1",
    1,
    {LOOM__OID_TEXT}};

/* Whether `data` is a message of def->data's type: the same descriptor,
 * or one of the same name (a second copy of the generated code). */
static int
start_data_ok(const loom_saga_def *def, const ProtobufCMessage *data)
{
    const ProtobufCMessageDescriptor *d = data->descriptor;

    if (d == def->data) {
        return 1;
    }
    return d != NULL && d->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC &&
           d->name != NULL && strcmp(d->name, def->data->name) == 0;
}

/* Everything but the command: the arguments and the definition. */
static loom_err
start_check(loom_tx *tx, const loom_saga_def *def, const char *id,
            const ProtobufCMessage *data, const char *outbox)
{
    char why[512];

    if (def == NULL || id == NULL || data == NULL) {
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "starting a saga needs a definition, an id and "
                             "its data (one of them is NULL)");
    }
    if (!loom__saga_id_ok(id)) {
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "saga id \"%.80s\" is not 1 to %d bytes of "
                             "UTF-8 without control characters",
                             id, LOOM_SAGA_MAX_ID);
    }
    if (loom_saga_def_check(def, why, sizeof why) != LOOM_OK) {
        return loom__tx_fail(tx, LOOM_EINVAL, "starting saga \"%s\": %s", id,
                             why);
    }
    if (!start_data_ok(def, data)) {
        return loom__tx_fail(
            tx, LOOM_EINVAL,
            "starting saga \"%s\" of type %s: its data must be a %s message, "
            "not %s",
            id, def->name, def->data->name,
            data->descriptor != NULL && data->descriptor->magic ==
                                            PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC
                ? data->descriptor->name
                : "an unknown message");
    }
    if (!loom__outbox_name_ok(outbox)) {
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "starting saga \"%s\": outbox name \"%.80s\" is "
                             "not 1 to %d letters, digits, '_', '-' or '.'",
                             id, outbox, LOOM_OUTBOX_MAX_NAME);
    }
    if (strlen(def->steps[0].command->name) > LOOM_MAX_TYPE_NAME) {
        return loom__tx_fail(tx, LOOM_ETOOBIG,
                             "starting saga \"%s\": the command type name "
                             "%.80s... is over LOOM_MAX_TYPE_NAME",
                             id, def->steps[0].command->name);
    }
    return LOOM_OK;
}

/* The parts of the statement that need building. */
typedef struct start_parts {
    void *data;
    size_t data_len;
    void *payload;
    size_t payload_len;
    loom__buf headers;
} start_parts;

static loom_err
start_build(loom_tx *tx, loom__arena *a, const loom_saga_def *def,
            const char *id, const ProtobufCMessage *data, start_parts *p)
{
    const loom_saga_step *st = &def->steps[0];
    loom_header h[LOOM__SAGA_WIRE_MAX_HEADERS];
    loom__saga_wire_text text;
    char why[512];
    size_t n;
    loom_err rc;

    if (loom__saga_pack(a, data, &p->data, &p->data_len) != LOOM_OK) {
        return loom__tx_fail(tx, LOOM_ENOMEM, "out of memory");
    }
    if (p->data_len > LOOM_OUTBOX_MAX_PAYLOAD) {
        return loom__tx_fail(tx, LOOM_ETOOBIG,
                             "starting saga \"%s\": its data packs to %zu "
                             "bytes, over the limit of %zu "
                             "(LOOM_OUTBOX_MAX_PAYLOAD)",
                             id, p->data_len, LOOM_OUTBOX_MAX_PAYLOAD);
    }
    rc = loom__saga_build(a, a, st, id, 1, data, &p->payload, &p->payload_len,
                          why, sizeof why);
    if (rc != LOOM_OK) {
        return loom__tx_fail(tx, rc, "starting saga \"%s\": %s", id, why);
    }
    n = loom__saga_wire_command(h, &text, id, def->name, st->name, 1,
                                def->reply_topic);
    loom__headers_encode(&p->headers, h, n);
    if (p->headers.failed) {
        return loom__tx_fail(tx, LOOM_ENOMEM, "out of memory");
    }
    return LOOM_OK;
}

static loom_err
start_queue(loom_tx *tx, const loom_saga_def *def, const char *id,
            const char *outbox, const loom_uuid *command_id,
            const start_parts *p)
{
    static const uint32_t types[12] = {
        LOOM__OID_TEXT,  LOOM__OID_TEXT, LOOM__OID_INT4,  LOOM__OID_TEXT,
        LOOM__OID_BYTEA, LOOM__OID_TEXT, LOOM__OID_UUID,  LOOM__OID_INT8,
        LOOM__OID_TEXT,  LOOM__OID_TEXT, LOOM__OID_BYTEA, LOOM__OID_BYTEA};
    const loom_saga_step *st = &def->steps[0];
    char version[4], timeout[8];
    const char *values[12];
    int lengths[12];

    version[0] = (char) (def->version >> 24);
    version[1] = (char) (def->version >> 16);
    version[2] = (char) (def->version >> 8);
    version[3] = (char) def->version;
    loom__pg_put_be64(timeout, st->timeout_ms);
    values[0] = id;
    values[1] = def->name;
    values[2] = version;
    values[3] = outbox;
    values[4] = p->data_len ? p->data : "";
    values[5] = st->name;
    values[6] = (const char *) command_id->bytes;
    values[7] = timeout;
    values[8] = st->participant;
    values[9] = st->command->name;
    values[10] = p->headers.data;
    values[11] = p->payload_len ? p->payload : "";
    lengths[0] = (int) strlen(id);
    lengths[1] = (int) strlen(def->name);
    lengths[2] = 4;
    lengths[3] = (int) strlen(outbox);
    lengths[4] = (int) p->data_len;
    lengths[5] = (int) strlen(st->name);
    lengths[6] = 16;
    lengths[7] = 8;
    lengths[8] = (int) strlen(st->participant);
    lengths[9] = (int) strlen(st->command->name);
    lengths[10] = (int) p->headers.len;
    lengths[11] = (int) p->payload_len;
    return loom_tx_exec_binary(tx, START_SQL, 12, types, values, lengths);
}

/* loom_saga_start_tx() that also says which command id it used. */
static loom_err
start_tx(loom_tx *tx, const loom_saga_def *def, const char *id,
         const ProtobufCMessage *data, const loom_saga_start_options *opt,
         loom_uuid *command_id)
{
    const char *outbox =
        opt != NULL && opt->outbox != NULL ? opt->outbox : LOOM_OUTBOX_DEFAULT;
    start_parts p = {NULL, 0, NULL, 0, LOOM__BUF_INIT};
    loom__arena a;
    loom_err rc;

    if (tx == NULL) {
        return LOOM_EINVAL;
    }
    rc = start_check(tx, def, id, data, outbox);
    if (rc != LOOM_OK) {
        return rc;
    }
    if (loom_uuid_generate(command_id) != LOOM_OK) {
        return loom__tx_fail(tx, LOOM_EIO, "the system's random source failed");
    }
    loom__arena_init(&a);
    rc = start_build(tx, &a, def, id, data, &p);
    if (rc == LOOM_OK) {
        rc = start_queue(tx, def, id, outbox, command_id, &p);
    }
    loom__buf_free(&p.headers);
    loom__arena_free(&a);
    return rc;
}

loom_err
loom_saga_start_tx(loom_tx *tx, const loom_saga_def *def, const char *id,
                   const ProtobufCMessage *data,
                   const loom_saga_start_options *opt)
{
    loom_uuid command_id;

    return start_tx(tx, def, id, data, opt, &command_id);
}

/* Whether the command of step 0 logged for `id` is ours: then this call
 * created the saga (a command id is never reused). */
static loom_err
start_was_ours(loom_store *s, const char *id, const loom_uuid *command_id,
               int *created)
{
    const char *values[2] = {id, (const char *) command_id->bytes};
    int lengths[2] = {(int) strlen(id), 16};
    PGresult *r = NULL;
    int yes = 0;
    loom_err rc = loom__store_begin(s);

    if (rc == LOOM_OK) {
        rc = loom__store_query(s, &started_stmt, values, lengths, &r);
    }
    if (rc == LOOM_OK &&
        (PQntuples(r) != 1 || !loom__pg_get_bool(r, 0, 0, &yes))) {
        rc = loom__store_fail(s, LOOM_ESCHEMA,
                              "reading saga \"%s\" back returned no row: run "
                              "`loomctl migrate`",
                              id);
    }
    PQclear(r);
    *created = rc == LOOM_OK && yes;
    return rc;
}

loom_err
loom_saga_start(loom_store *s, const loom_saga_def *def, const char *id,
                const ProtobufCMessage *data,
                const loom_saga_start_options *opt, int *created)
{
    loom_uuid command_id;
    loom_tx *tx = NULL;
    int ours = 0;
    loom_err rc;

    if (created != NULL) {
        *created = 0;
    }
    if (s == NULL) {
        return LOOM_EINVAL;
    }
    rc = loom_tx_new(&tx);
    if (rc != LOOM_OK) {
        return loom__store_fail(s, rc, "out of memory");
    }
    rc = start_tx(tx, def, id, data, opt, &command_id);
    if (rc != LOOM_OK) {
        loom__store_fail(s, rc, "%s", loom_tx_errmsg(tx));
    } else {
        rc = loom_store_commit(s, tx);
    }
    loom_tx_free(tx);
    if (rc == LOOM_OK && created != NULL) {
        rc = start_was_ours(s, id, &command_id, &ours);
        *created = ours;
    }
    return rc;
}

/* Copies a text cell into a fixed buffer (truncated, NUL-terminated). */
static void
get_text(const PGresult *r, int col, char *out, size_t cap)
{
    int len = PQgetisnull(r, 0, col) ? 0 : PQgetlength(r, 0, col);
    size_t n = (size_t) len < cap - 1 ? (size_t) len : cap - 1;

    memcpy(out, PQgetvalue(r, 0, col), n);
    out[n] = '\0';
}

/* A timestamptz cell in µs since 1970; 0 when NULL. */
static int64_t
get_time(const PGresult *r, int col)
{
    int64_t t;

    return loom__pg_get_i64(r, 0, col, &t) ? loom__pg_time_to_unix(t) : 0;
}

static loom_err
get_info(loom_store *s, const PGresult *r, loom_saga_info *out)
{
    char state[32];
    int32_t v32 = 0;

    if (PQnfields(r) != 11) {
        return loom__store_fail(s, LOOM_ESCHEMA,
                                "loom.saga_instances is not the table this "
                                "library expects: run `loomctl migrate`");
    }
    get_text(r, 0, out->id, sizeof out->id);
    get_text(r, 1, out->type, sizeof out->type);
    loom__pg_get_i32(r, 0, 2, &v32);
    out->def_version = (uint32_t) v32;
    get_text(r, 3, state, sizeof state);
    out->state = loom_saga_state_parse(state);
    loom__pg_get_i32(r, 0, 4, &out->step);
    v32 = 0;
    loom__pg_get_i32(r, 0, 5, &v32);
    out->attempt = (uint32_t) v32;
    loom__pg_get_i64(r, 0, 6, &out->version);
    out->started_at = get_time(r, 7);
    out->updated_at = get_time(r, 8);
    out->ended_at = get_time(r, 9);
    get_text(r, 10, out->last_error, sizeof out->last_error);
    return LOOM_OK;
}

loom_err
loom_saga_get(loom_store *s, const char *id, loom_saga_info *out)
{
    PGresult *r = NULL;
    loom_err rc;

    if (out != NULL) {
        memset(out, 0, sizeof *out);
    }
    if (s == NULL) {
        return LOOM_EINVAL;
    }
    rc = loom__store_begin(s);
    if (rc != LOOM_OK) {
        return rc;
    }
    if (out == NULL || !loom__saga_id_ok(id)) {
        return loom__store_fail(s, LOOM_EINVAL,
                                "loom_saga_get needs a saga id (1 to %d bytes "
                                "of UTF-8) and somewhere to put it",
                                LOOM_SAGA_MAX_ID);
    }
    {
        const char *values[1] = {id};
        int lengths[1] = {(int) strlen(id)};
        rc = loom__store_query(s, &get_stmt, values, lengths, &r);
    }
    if (rc == LOOM_OK && PQntuples(r) == 0) {
        rc = loom__store_fail(s, LOOM_ENOTFOUND,
                              "saga \"%s\" does not exist (list them with: "
                              "loomctl saga list)",
                              id);
    }
    if (rc == LOOM_OK) {
        rc = get_info(s, r, out);
    }
    PQclear(r);
    return rc;
}
