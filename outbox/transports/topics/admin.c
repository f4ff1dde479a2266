/*
 * Administering topics (loom/topics.h): create, alter and describe a
 * topic, move a consumer group's offsets, re-drive dead letters, apply
 * retention. Each call blocks on the store's connection, checks every
 * argument first (so errmsg names what is wrong and how to fix it), then
 * runs one function of framework/migrations/0005_topics.sql with binary
 * parameters. The SQL checks again, since other clients reach it too; its
 * errors (LM010 unknown topic, LM011 bad argument, LM014 topic exists)
 * map to loom_err in loom__store_result_error().
 */
#include <stdio.h>
#include <string.h>

#include "loom/partitioner.h"
#include "loom/topics.h"
#include "pgwire.h"
#include "store_int.h"

/* The longest retention or deduplication window, 100 years in ms: the
 * SQL computes now() minus it, which must stay inside timestamptz's
 * range (the topics table checks the same bound). */
#define ADM_MAX_MS INT64_C(3155760000000)

/* The earliest timestamptz, 4714-11-24 00:00 BC, in µs since 1970. */
#define ADM_MIN_TIME INT64_C(-210866803200000000)

/* Rows one retention step deletes at most: small enough that each step's
 * transaction is short, large enough that few round trips are needed. */
#define ADM_RETENTION_STEP 10000

#define OID_T  LOOM__OID_TEXT
#define OID_4  LOOM__OID_INT4
#define OID_8  LOOM__OID_INT8
#define OID_TS LOOM__OID_TSTZ

static const loom__stmt adm_create_stmt = {
    LOOM__STMT_TOPIC_CREATE,
    "loom_topic_create",
    "SELECT loom.topic_create($1, $2, $3, $4, $5, $6)",
    6,
    {OID_T, OID_4, OID_8, OID_8, OID_8, OID_4}};

static const loom__stmt adm_alter_stmt = {
    LOOM__STMT_TOPIC_ALTER,
    "loom_topic_alter",
    "SELECT loom.topic_alter($1, $2, $3, $4, $5, $6)",
    6,
    {OID_T, OID_4, OID_8, OID_8, OID_8, OID_4}};

/*
 * Stored bytes per partition come from the running byte count (pos) that
 * each message records: everything published (tp.bytes) minus what came
 * before the first stored message, i.e. its pos less its own size. That
 * is one primary-key lookup per partition instead of a scan of the
 * messages; with nothing stored there is no first message and the
 * partition counts 0.
 */
static const loom__stmt adm_describe_stmt = {
    LOOM__STMT_TOPIC_DESCRIBE,
    "loom_topic_describe",
    "SELECT t.name, t.partitions, t.retention_ms, t.retention_bytes, "
    "t.dedup_window_ms, t.max_deliveries, t.created_at, "
    "sum(tp.next_offset - tp.start_offset)::bigint, "
    "sum(tp.bytes - coalesce(m.pos - octet_length(m.payload) "
    "- coalesce(octet_length(m.key), 0) "
    "- coalesce(octet_length(m.headers), 0), tp.bytes))::bigint "
    "FROM loom.topics t "
    "JOIN loom.topic_partitions tp ON tp.topic_id = t.id "
    "LEFT JOIN loom.topic_messages m ON m.topic_id = tp.topic_id "
    "AND m.partition = tp.partition AND m.\"offset\" = tp.start_offset "
    "WHERE t.name = $1 GROUP BY t.name",
    1,
    {OID_T}};

static const loom__stmt adm_reset_stmt = {
    LOOM__STMT_TOPIC_RESET,
    "loom_topic_reset",
    "SELECT loom.topic_reset($1, $2, $3, $4, $5, $6)",
    6,
    {OID_T, OID_T, OID_4, OID_T, OID_TS, OID_8}};

static const loom__stmt adm_redrive_stmt = {
    LOOM__STMT_TOPIC_REDRIVE,
    "loom_topic_redrive",
    "SELECT loom.topic_redrive($1, $2, $3, $4)",
    4,
    {OID_T, OID_T, OID_4, OID_8}};

static const loom__stmt adm_retention_stmt = {
    LOOM__STMT_TOPIC_RETENTION,
    "loom_topic_retention",
    "SELECT loom.topic_retention_step($1)",
    1,
    {OID_4}};

/* ------------------------------------------------------------------ */
/* Binary parameters                                                   */

/* Up to 6 parameters; numbers live in `num`, text is borrowed. */
typedef struct adm_params {
    const char *values[6];
    int lengths[6];
    char num[6][8];
    int n;
} adm_params;

static void
adm_text(adm_params *p, const char *s)
{
    p->values[p->n] = s;
    p->lengths[p->n++] = s != NULL ? (int) strlen(s) : 0;
}

static void
adm_null(adm_params *p)
{
    p->values[p->n] = NULL;
    p->lengths[p->n++] = 0;
}

static void
adm_i32(adm_params *p, int32_t v)
{
    char *b = p->num[p->n];

    for (int i = 0; i < 4; i++)
        b[i] = (char) ((uint32_t) v >> (24 - 8 * i));
    p->values[p->n] = b;
    p->lengths[p->n++] = 4;
}

static void
adm_i64(adm_params *p, int64_t v)
{
    loom__pg_put_be64(p->num[p->n], (uint64_t) v);
    p->values[p->n] = p->num[p->n];
    p->lengths[p->n++] = 8;
}

/* A setting that SQL takes as NULL when it is `null_if` or below. */
static void
adm_i64_or_null(adm_params *p, int64_t v, int64_t null_if)
{
    if (v <= null_if)
        adm_null(p);
    else
        adm_i64(p, v);
}

static void
adm_i32_or_null(adm_params *p, int32_t v, int32_t null_if)
{
    if (v <= null_if)
        adm_null(p);
    else
        adm_i32(p, v);
}

/* ------------------------------------------------------------------ */
/* Checking arguments                                                  */

/* Whether the first n bytes of `s` are printable ASCII: only then does
 * an error message quote a bad name, which may hold anything (escape
 * sequences included) and is printed by whoever reads errmsg. */
static int
adm_printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char) s[i] < 0x20 || (unsigned char) s[i] >= 0x7f)
            return 0;
    }
    return 1;
}

/* Whether `name` ends in LOOM_DLQ_SUFFIX. */
static int
adm_is_dlq(const char *name)
{
    size_t n = strlen(name), k = strlen(LOOM_DLQ_SUFFIX);

    return n > k && strcmp(name + n - k, LOOM_DLQ_SUFFIX) == 0;
}

/* A topic name: 1..LOOM_MAX_TOPIC_NAME bytes of words made of
 * [A-Za-z0-9_-], separated by single dots (the topics table's CHECK). */
static loom_err
adm_check_topic(loom_store *s, const char *name)
{
    size_t n, i;
    int quote;

    if (name == NULL || name[0] == '\0')
        return loom__store_fail(s, LOOM_EINVAL,
                                "topic name is %s: give a name such as "
                                "\"orders.created\"",
                                name == NULL ? "NULL" : "empty");
    n = strnlen(name, LOOM_MAX_TOPIC_NAME + 1);
    quote = adm_printable(name, n);
    if (n > LOOM_MAX_TOPIC_NAME)
        return loom__store_fail(s, LOOM_EINVAL,
                                "topic name%s%.*s%s is longer than %d bytes: "
                                "use a shorter name",
                                quote ? " \"" : "", quote ? 40 : 0, name,
                                quote ? "...\"" : "", LOOM_MAX_TOPIC_NAME);
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) name[i];
        int word = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
        if (word)
            continue;
        if (ch == '.' && i > 0 && i + 1 < n && name[i + 1] != '.')
            continue;
        if (ch == '.')
            return loom__store_fail(s, LOOM_EINVAL,
                                    "topic name%s%s%s has an empty word at "
                                    "byte %zu: dots separate words, one "
                                    "between two words (\"orders.created\")",
                                    quote ? " \"" : "", quote ? name : "",
                                    quote ? "\"" : "", i);
        if (quote)
            return loom__store_fail(s, LOOM_EINVAL,
                                    "topic name \"%s\" has '%c' at byte "
                                    "%zu: use letters, digits, '_' and '-', "
                                    "with dots between words",
                                    name, ch, i);
        return loom__store_fail(s, LOOM_EINVAL,
                                "topic name has byte 0x%02x at byte %zu: "
                                "use letters, digits, '_' and '-', with dots "
                                "between words",
                                ch, i);
    }
    return LOOM_OK;
}

/* A group name: 1..LOOM_MAX_GROUP_NAME bytes of UTF-8. */
static loom_err
adm_check_group(loom_store *s, const char *group)
{
    size_t n;

    if (group == NULL || group[0] == '\0')
        return loom__store_fail(s, LOOM_EINVAL,
                                "consumer group name is %s: give the "
                                "group's name, such as \"billing\"",
                                group == NULL ? "NULL" : "empty");
    n = strnlen(group, LOOM_MAX_GROUP_NAME + 1);
    if (n > LOOM_MAX_GROUP_NAME)
        return loom__store_fail(s, LOOM_EINVAL,
                                "consumer group name is longer than %d "
                                "bytes: use a shorter name",
                                LOOM_MAX_GROUP_NAME);
    if (!loom__utf8_valid(group, n))
        return loom__store_fail(s, LOOM_EINVAL,
                                "consumer group name is not valid UTF-8");
    return LOOM_OK;
}

/* A duration or size setting: -1 (default or unchanged), else 0..max. */
static loom_err
adm_check_i64(loom_store *s, const char *topic, const char *field, int64_t v,
              int64_t max, const char *zero, const char *minus_one)
{
    if (v >= -1 && v <= max)
        return LOOM_OK;
    return loom__store_fail(s, LOOM_EINVAL,
                            "topic \"%s\": %s %lld is out of range: give 1 "
                            "to %lld, 0 for %s, or -1 for %s",
                            topic, field, (long long) v, (long long) max, zero,
                            minus_one);
}

/* The settings of `cfg`, for create (`create` 1) or alter. */
static loom_err
adm_check_cfg(loom_store *s, const char *topic, const loom_topic_config *cfg,
              int create)
{
    const char *keep = create ? "the default" : "unchanged";
    int32_t p = cfg->partitions;
    loom_err rc;

    if (create && (p < 1 || p > LOOM_MAX_PARTITIONS))
        return loom__store_fail(s, LOOM_EINVAL,
                                "topic \"%s\": %d partitions; a topic has 1 "
                                "to %d (partitions is required)",
                                topic, (int) p, LOOM_MAX_PARTITIONS);
    if (!create && p != -1 && (p < 1 || p > LOOM_MAX_PARTITIONS))
        return loom__store_fail(s, LOOM_EINVAL,
                                "topic \"%s\": %d partitions; give more than "
                                "it has now, up to %d, or -1 to keep them",
                                topic, (int) p, LOOM_MAX_PARTITIONS);
    rc = adm_check_i64(s, topic, "retention_ms", cfg->retention_ms, ADM_MAX_MS,
                       "no age limit", create ? "no age limit" : keep);
    if (rc == LOOM_OK)
        rc = adm_check_i64(s, topic, "retention_bytes", cfg->retention_bytes,
                           INT64_MAX, "no size limit",
                           create ? "no size limit" : keep);
    if (rc == LOOM_OK)
        rc = adm_check_i64(s, topic, "dedup_window_ms", cfg->dedup_window_ms,
                           ADM_MAX_MS, "no deduplication",
                           create ? "the default (300000)" : keep);
    if (rc == LOOM_OK && cfg->max_deliveries != -1 &&
        (cfg->max_deliveries < 1 || cfg->max_deliveries > 1000))
        rc = loom__store_fail(s, LOOM_EINVAL,
                              "topic \"%s\": max_deliveries %d is out of "
                              "range: give 1 to 1000, or -1 for %s",
                              topic, (int) cfg->max_deliveries,
                              create ? "the default (5)" : keep);
    return rc;
}

/* loom__store_begin(), then the topic's name (a NULL store has no errmsg
 * to set, so it is checked by the callers). */
static loom_err
adm_begin(loom_store *s, const char *topic)
{
    loom_err rc = loom__store_begin(s);

    if (rc == LOOM_OK)
        rc = adm_check_topic(s, topic);
    return rc;
}

/* Runs `st` and reads the int4 or int8 in its only cell into *out. */
static loom_err
adm_query_count(loom_store *s, const loom__stmt *st, const adm_params *p,
                int64_t *out)
{
    PGresult *r = NULL;
    int32_t v32;
    loom_err rc = loom__store_query(s, st, p->values, p->lengths, &r);

    if (rc != LOOM_OK)
        return rc;
    if (PQntuples(r) == 1 && loom__pg_get_i32(r, 0, 0, &v32))
        *out = v32;
    else if (PQntuples(r) != 1 || !loom__pg_get_i64(r, 0, 0, out))
        rc = loom__store_fail(s, LOOM_ESCHEMA,
                              "%s returned no count: the schema is not the "
                              "one this library expects (run `loomctl "
                              "migrate`)",
                              st->name);
    PQclear(r);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Topics                                                              */

loom_err
loom_topic_create(loom_store *s, const char *name, const loom_topic_config *cfg)
{
    adm_params p = {.n = 0};
    PGresult *r = NULL;
    loom_err rc;

    if (s == NULL)
        return LOOM_EINVAL;
    rc = adm_begin(s, name);
    if (rc != LOOM_OK)
        return rc;
    if (cfg == NULL)
        return loom__store_fail(s, LOOM_EINVAL,
                                "topic \"%s\": no settings (NULL): give at "
                                "least the partitions",
                                name);
    rc = adm_check_cfg(s, name, cfg, 1);
    if (rc != LOOM_OK)
        return rc;
    if (strlen(name) > LOOM_MAX_TOPIC_NAME - strlen(LOOM_DLQ_SUFFIX) &&
        !adm_is_dlq(name))
        return loom__store_fail(
            s, LOOM_EINVAL,
            "topic \"%.40s...\" is longer than %d "
            "bytes, which leaves no room for its "
            "dead-letter topic (\"%s\" is added): use "
            "a shorter name",
            name, (int) (LOOM_MAX_TOPIC_NAME - strlen(LOOM_DLQ_SUFFIX)),
            LOOM_DLQ_SUFFIX);
    /* -1 is "the default" and a retention of 0 "forever": both are NULL
     * to topic_create(), which fills in the defaults. */
    adm_text(&p, name);
    adm_i32(&p, cfg->partitions);
    adm_i64_or_null(&p, cfg->retention_ms, 0);
    adm_i64_or_null(&p, cfg->retention_bytes, 0);
    adm_i64_or_null(&p, cfg->dedup_window_ms, -1);
    adm_i32_or_null(&p, cfg->max_deliveries, -1);
    rc = loom__store_query(s, &adm_create_stmt, p.values, p.lengths, &r);
    PQclear(r);
    return rc;
}

loom_err
loom_topic_alter(loom_store *s, const char *name, const loom_topic_config *cfg)
{
    adm_params p = {.n = 0};
    PGresult *r = NULL;
    loom_err rc;

    if (s == NULL)
        return LOOM_EINVAL;
    rc = adm_begin(s, name);
    if (rc != LOOM_OK)
        return rc;
    if (cfg == NULL)
        return loom__store_fail(s, LOOM_EINVAL,
                                "topic \"%s\": no settings (NULL): start "
                                "from LOOM_TOPIC_CONFIG_INIT and set what "
                                "changes",
                                name);
    rc = adm_check_cfg(s, name, cfg, 0);
    if (rc != LOOM_OK)
        return rc;
    /* -1 is "unchanged" (NULL); a retention of 0 goes as 0, which
     * topic_alter() turns into "no limit". */
    adm_text(&p, name);
    adm_i32_or_null(&p, cfg->partitions, -1);
    adm_i64_or_null(&p, cfg->retention_ms, -1);
    adm_i64_or_null(&p, cfg->retention_bytes, -1);
    adm_i64_or_null(&p, cfg->dedup_window_ms, -1);
    adm_i32_or_null(&p, cfg->max_deliveries, -1);
    rc = loom__store_query(s, &adm_alter_stmt, p.values, p.lengths, &r);
    PQclear(r);
    return rc;
}

/* Fills *out from the describe statement's only row. */
static loom_err
adm_info_from_row(loom_store *s, const PGresult *r, loom_topic_info *out)
{
    int64_t created;
    int ok;

    snprintf(out->name, sizeof out->name, "%s", PQgetvalue(r, 0, 0));
    ok = loom__pg_get_i32(r, 0, 1, &out->cfg.partitions) &&
         loom__pg_get_i64(r, 0, 4, &out->cfg.dedup_window_ms) &&
         loom__pg_get_i32(r, 0, 5, &out->cfg.max_deliveries) &&
         loom__pg_get_i64(r, 0, 6, &created) &&
         loom__pg_get_i64(r, 0, 7, &out->messages) &&
         loom__pg_get_i64(r, 0, 8, &out->bytes);
    if (!ok)
        return loom__store_fail(s, LOOM_ESCHEMA,
                                "bad loom.topics row for \"%s\" (run "
                                "`loomctl migrate`)",
                                out->name);
    /* No limit is NULL in the table and 0 here. */
    if (!loom__pg_get_i64(r, 0, 2, &out->cfg.retention_ms))
        out->cfg.retention_ms = 0;
    if (!loom__pg_get_i64(r, 0, 3, &out->cfg.retention_bytes))
        out->cfg.retention_bytes = 0;
    out->created_at = loom__pg_time_to_unix(created);
    return LOOM_OK;
}

loom_err
loom_topic_describe(loom_store *s, const char *name, loom_topic_info *out)
{
    adm_params p = {.n = 0};
    PGresult *r = NULL;
    loom_err rc;

    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (s == NULL)
        return LOOM_EINVAL;
    rc = adm_begin(s, name);
    if (rc != LOOM_OK)
        return rc;
    if (out == NULL)
        return loom__store_fail(s, LOOM_EINVAL,
                                "describing topic \"%s\": nowhere to put it "
                                "(out is NULL)",
                                name);
    adm_text(&p, name);
    rc = loom__store_query(s, &adm_describe_stmt, p.values, p.lengths, &r);
    if (rc == LOOM_OK && PQntuples(r) == 0)
        rc = loom__store_fail(s, LOOM_ENOTFOUND,
                              "topic \"%s\" does not exist (create it: "
                              "loomctl topics create %s --partitions N)",
                              name, name);
    if (rc == LOOM_OK)
        rc = adm_info_from_row(s, r, out);
    if (rc != LOOM_OK)
        memset(out, 0, sizeof *out);
    PQclear(r);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Consumer groups and dead letters                                    */

/* The start position as topic_reset() takes it: a word, and the time or
 * the offset it needs. */
static loom_err
adm_position(loom_store *s, const char *topic, const loom_topic_position *pos,
             adm_params *p)
{
    static const char *const words[] = {"earliest", "latest", "time", "offset"};

    if (pos == NULL)
        return loom__store_fail(s, LOOM_EINVAL,
                                "resetting offsets on \"%s\": no position "
                                "(NULL)",
                                topic);
    if ((int) pos->start < LOOM_START_EARLIEST ||
        (int) pos->start > LOOM_START_OFFSET)
        return loom__store_fail(s, LOOM_EINVAL,
                                "resetting offsets on \"%s\": unknown start "
                                "%d (use a LOOM_START_* value)",
                                topic, (int) pos->start);
    if (pos->start == LOOM_START_OFFSET && pos->offset < 0)
        return loom__store_fail(s, LOOM_EINVAL,
                                "resetting offsets on \"%s\": offset %lld "
                                "is negative (offsets count from 0)",
                                topic, (long long) pos->offset);
    /* timestamptz starts in 4713 BC; its binary form counts µs from
     * 2000, so an earlier time would also overflow the subtraction below.
     * Every int64 time after 1970 fits (the range ends in 294276 AD). */
    if (pos->start == LOOM_START_TIME && pos->time < ADM_MIN_TIME)
        return loom__store_fail(s, LOOM_EINVAL,
                                "resetting offsets on \"%s\": time %lld µs "
                                "is before 4713 BC, outside what PostgreSQL "
                                "can store",
                                topic, (long long) pos->time);
    adm_text(p, words[pos->start]);
    if (pos->start == LOOM_START_TIME)
        adm_i64(p, loom__pg_time_from_unix(pos->time));
    else
        adm_null(p);
    if (pos->start == LOOM_START_OFFSET)
        adm_i64(p, pos->offset);
    else
        adm_null(p);
    return LOOM_OK;
}

loom_err
loom_topic_reset(loom_store *s, const char *group, const char *topic,
                 int32_t partition, const loom_topic_position *pos, int *n)
{
    adm_params p = {.n = 0};
    int64_t moved = 0;
    loom_err rc;

    if (n != NULL)
        *n = 0;
    if (s == NULL)
        return LOOM_EINVAL;
    rc = adm_begin(s, topic);
    if (rc == LOOM_OK)
        rc = adm_check_group(s, group);
    if (rc != LOOM_OK)
        return rc;
    if (partition >= LOOM_MAX_PARTITIONS)
        return loom__store_fail(s, LOOM_EINVAL,
                                "resetting offsets on \"%s\": partition %d "
                                "is out of range (0 to %d, or -1 for all)",
                                topic, (int) partition,
                                LOOM_MAX_PARTITIONS - 1);
    adm_text(&p, group);
    adm_text(&p, topic);
    /* Any negative partition means all of them, as documented (>= 0). */
    adm_i32_or_null(&p, partition, -1);
    rc = adm_position(s, topic, pos, &p);
    if (rc == LOOM_OK)
        rc = adm_query_count(s, &adm_reset_stmt, &p, &moved);
    if (rc == LOOM_OK && n != NULL)
        *n = (int) moved;
    return rc;
}

loom_err
loom_topic_redrive(loom_store *s, const char *topic, const char *group,
                   int32_t dlq_partition, int64_t dlq_offset, int *n)
{
    adm_params p = {.n = 0};
    int64_t done = 0;
    loom_err rc;

    if (n != NULL)
        *n = 0;
    if (s == NULL)
        return LOOM_EINVAL;
    rc = adm_begin(s, topic);
    if (rc == LOOM_OK && group != NULL)
        rc = adm_check_group(s, group);
    if (rc != LOOM_OK)
        return rc;
    /* A partition without an offset would silently re-drive everything;
     * refuse it rather than guess. */
    if (dlq_offset < -1 || (dlq_offset == -1 && dlq_partition != -1) ||
        (dlq_offset >= 0 &&
         (dlq_partition < 0 || dlq_partition >= LOOM_MAX_PARTITIONS)))
        return loom__store_fail(s, LOOM_EINVAL,
                                "re-driving dead letters of \"%s\": "
                                "partition %d, offset %lld; give a partition "
                                "of \"%s%s\" (0 to %d) and an offset for one "
                                "dead letter, or -1 and -1 for all",
                                topic, (int) dlq_partition,
                                (long long) dlq_offset, topic, LOOM_DLQ_SUFFIX,
                                LOOM_MAX_PARTITIONS - 1);
    adm_text(&p, topic);
    if (group != NULL)
        adm_text(&p, group);
    else
        adm_null(&p);
    adm_i32_or_null(&p, dlq_partition, -1);
    adm_i64_or_null(&p, dlq_offset, -1);
    rc = adm_query_count(s, &adm_redrive_stmt, &p, &done);
    if (rc == LOOM_OK && n != NULL)
        *n = (int) done;
    return rc;
}

/* ------------------------------------------------------------------ */
/* Retention                                                           */

loom_err
loom_topics_retention(loom_store *s, int64_t *removed)
{
    adm_params p = {.n = 0};
    int64_t total = 0, step;
    loom_err rc;

    if (removed != NULL)
        *removed = 0;
    if (s == NULL)
        return LOOM_EINVAL;
    adm_i32(&p, ADM_RETENTION_STEP);
    /* Each step is its own autocommitted statement: locks are held for
     * one step only, and vacuum can reclaim what earlier steps freed. */
    do {
        step = 0;
        rc = loom__store_begin(s);
        if (rc == LOOM_OK)
            rc = adm_query_count(s, &adm_retention_stmt, &p, &step);
        total += step;
    } while (rc == LOOM_OK && step > 0);
    if (removed != NULL)
        *removed = total;
    return rc;
}
