/*
 * A consumer's membership of its group, on its own connection: join,
 * then a heartbeat every heartbeat_ms. The heartbeat returns the group's
 * generation; when it moved (a member joined, left or was expelled, or a
 * topic changed) the member reads its assignment again. A member told it
 * is no longer in the group (its session timed out) joins again.
 *
 * The server does the coordination (framework/migrations/
 * 0005_topics.sql): every change happens under the group row's lock, and
 * commits are fenced by the assignment's generation, so a member acting
 * on an old assignment can fetch (and deliver duplicates, as any
 * at-least-once consumer may) but never commit.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log_int.h"
#include "loom/alloc.h"
#include "pgwire.h"
#include "topics_int.h"

static const loom__stmt join_stmt = {
    LOOM__STMT_GROUP_JOIN,
    "loom_group_join",
    "SELECT loom.group_join($1, $2, $3, $4, $5, $6)",
    6,
    {LOOM__OID_TEXT, LOOM__OID_UUID, LOOM__OID_TEXT, LOOM__OID_ATEXT,
     LOOM__OID_TEXT, LOOM__OID_INT4}};

static const loom__stmt heartbeat_stmt = {LOOM__STMT_GROUP_HEARTBEAT,
                                          "loom_group_heartbeat",
                                          "SELECT loom.group_heartbeat($1, $2)",
                                          2,
                                          {LOOM__OID_TEXT, LOOM__OID_UUID}};

static const loom__stmt leave_stmt = {LOOM__STMT_GROUP_LEAVE,
                                      "loom_group_leave",
                                      "SELECT loom.group_leave($1, $2)",
                                      2,
                                      {LOOM__OID_TEXT, LOOM__OID_UUID}};

static const loom__stmt assignment_stmt = {
    LOOM__STMT_GROUP_ASSIGNMENT,
    "loom_group_assignment",
    "SELECT topic, topic_id, partition, generation, \"offset\", "
    "max_deliveries FROM loom.group_assignment($1, $2, $3, $4, $5)",
    5,
    {LOOM__OID_TEXT, LOOM__OID_UUID, LOOM__OID_TEXT, LOOM__OID_TSTZ,
     LOOM__OID_INT8}};

static const char *const start_names[] = {"earliest", "latest", "time",
                                          "offset"};

/* Parameters of join: built into `b`, pointed at by values/lengths. */
static void
group_join_params(tp_consumer *c, loom__buf *arr, char *client, size_t clen,
                  char *timeout, const char **values, int *lengths)
{
    char host[64] = "?";
    unsigned ms = c->topts.session_timeout_ms;

    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(client, clen, "%s pid %ld", host, (long) getpid());
    loom__pg_array_begin(arr, LOOM__OID_TEXT, (uint32_t) c->n_patterns);
    for (size_t i = 0; i < c->n_patterns; i++)
        loom__pg_array_add(arr, c->patterns[i], strlen(c->patterns[i]));
    timeout[0] = (char) (ms >> 24);
    timeout[1] = (char) (ms >> 16);
    timeout[2] = (char) (ms >> 8);
    timeout[3] = (char) ms;
    values[0] = c->group;
    lengths[0] = (int) strlen(c->group);
    values[1] = (const char *) c->member.bytes;
    lengths[1] = 16;
    values[2] = client;
    lengths[2] = (int) strlen(client);
    values[3] = arr->data;
    lengths[3] = (int) arr->len;
    values[4] = c->topts.assignor;
    lengths[4] = (int) strlen(c->topts.assignor);
    values[5] = timeout;
    lengths[5] = 4;
}

static void
group_assignment_params(tp_consumer *c, char *ts, char *off,
                        const char **values, int *lengths)
{
    const loom_topic_position *pos = &c->topts.start;

    loom__pg_put_be64(ts, (uint64_t) loom__pg_time_from_unix(pos->time));
    loom__pg_put_be64(off, (uint64_t) pos->offset);
    values[0] = c->group;
    lengths[0] = (int) strlen(c->group);
    values[1] = (const char *) c->member.bytes;
    lengths[1] = 16;
    values[2] = start_names[pos->start];
    lengths[2] = (int) strlen(values[2]);
    values[3] = pos->start == LOOM_START_TIME ? ts : NULL;
    lengths[3] = 8;
    values[4] = pos->start == LOOM_START_OFFSET ? off : NULL;
    lengths[4] = 8;
}

static tp_part *
group_find(tp_consumer *c, int32_t topic_id, int32_t partition)
{
    for (tp_part *p = c->parts; p != NULL; p = p->next)
        if (p->topic_id == topic_id && p->partition == partition)
            return p;
    return NULL;
}

void
loom__tp_group_apply(tp_consumer *c, PGresult *r)
{
    int rows = PQntuples(r);
    int changed = 0;
    tp_part **pp;

    c->stats.rebalances++;
    /* Partitions that left us, or came back under a new generation. */
    for (pp = &c->parts; *pp != NULL;) {
        tp_part *p = *pp;
        int keep = 0;
        for (int i = 0; i < rows; i++) {
            int32_t tid = 0, part = 0;
            int64_t gen = 0;
            loom__pg_get_i32(r, i, 1, &tid);
            loom__pg_get_i32(r, i, 2, &part);
            loom__pg_get_i64(r, i, 3, &gen);
            if (tid == p->topic_id && part == p->partition &&
                gen == p->generation) {
                keep = 1;
                loom__pg_get_i32(r, i, 5, &p->max_deliveries);
            }
        }
        if (keep) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        c->n_parts--;
        loom__tp_consume_drop_part(c, p);
        changed = 1;
    }
    for (int i = 0; i < rows; i++) {
        tp_part *p;
        int32_t tid = 0, part = 0;

        loom__pg_get_i32(r, i, 1, &tid);
        loom__pg_get_i32(r, i, 2, &part);
        if (group_find(c, tid, part) != NULL)
            continue;
        p = loom_malloc(sizeof *p);
        if (p == NULL)
            continue; /* picked up at the next assignment read */
        memset(p, 0, sizeof *p);
        p->topic_id = tid;
        p->partition = part;
        loom__pg_get_i64(r, i, 3, &p->generation);
        loom__pg_get_i64(r, i, 4, &p->fetch);
        loom__pg_get_i32(r, i, 5, &p->max_deliveries);
        p->committed = p->fetch;
        p->topic = loom_malloc((size_t) PQgetlength(r, i, 0) + 1);
        if (p->topic == NULL) {
            loom_free(p);
            continue;
        }
        memcpy(p->topic, PQgetvalue(r, i, 0), (size_t) PQgetlength(r, i, 0));
        p->topic[PQgetlength(r, i, 0)] = '\0';
        p->next = c->parts;
        c->parts = p;
        c->n_parts++;
        changed = 1;
    }
    PQclear(r);
    if (changed) {
        c->assign_epoch++;
        loom__log(LOOM_LOG_INFO,
                  "topics group \"%s\": member %.8s has %zu partitions "
                  "(generation %lld)",
                  c->group, c->member_text, c->n_parts,
                  (long long) c->generation);
        loom__tp_consume_listen(c);
    }
    loom__tp_consume_kick(c);
}

loom_err
loom__tp_group_join_now(tp_consumer *c, char *err, size_t errlen)
{
    loom__buf arr = LOOM__BUF_INIT;
    char client[128], timeout[4], ts[8], off[8];
    const char *values[6];
    int lengths[6];
    PGresult *r = NULL;
    loom_err rc;

    group_join_params(c, &arr, client, sizeof client, timeout, values, lengths);
    rc = arr.failed ? LOOM_ENOMEM
                    : loom__pgconn_query_now(&c->gconn, &join_stmt, values,
                                             lengths, &r);
    loom__buf_free(&arr);
    if (rc == LOOM_OK)
        loom__pg_get_i64(r, 0, 0, &c->generation);
    PQclear(r);
    if (rc == LOOM_OK) {
        group_assignment_params(c, ts, off, values, lengths);
        rc = loom__pgconn_query_now(&c->gconn, &assignment_stmt, values,
                                    lengths, &r);
    }
    if (rc != LOOM_OK) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "joining group \"%s\": %s", c->group,
                     loom__pgconn_errmsg(&c->gconn));
        return rc;
    }
    loom__tp_group_apply(c, r);
    return LOOM_OK;
}

/* ---- asynchronous: heartbeat, assignment, rejoin ----------------------- */

static void group_on_assignment(void *arg, loom_err rc, PGresult *r);
static void group_on_heartbeat(void *arg, loom_err rc, PGresult *r);

static void
group_send_assignment(tp_consumer *c)
{
    char ts[8], off[8];
    const char *values[5];
    int lengths[5];

    group_assignment_params(c, ts, off, values, lengths);
    if (loom__pgconn_query(&c->gconn, &assignment_stmt, values, lengths,
                           group_on_assignment, c) == LOOM_OK)
        c->g_busy = 1;
}

static void
group_on_assignment(void *arg, loom_err rc, PGresult *r)
{
    tp_consumer *c = arg;

    c->g_busy = 0;
    if (rc != LOOM_OK) {
        PQclear(r);
        loom__log(LOOM_LOG_WARN,
                  "topics group \"%s\": reading the "
                  "assignment: %s",
                  c->group, loom__pgconn_errmsg(&c->gconn));
        c->g_refresh = 1;
        return;
    }
    c->g_refresh = 0;
    loom__tp_group_apply(c, r);
}

static void
group_on_join(void *arg, loom_err rc, PGresult *r)
{
    tp_consumer *c = arg;

    c->g_busy = 0;
    if (rc == LOOM_OK)
        loom__pg_get_i64(r, 0, 0, &c->generation);
    PQclear(r);
    if (rc != LOOM_OK) {
        loom__log(LOOM_LOG_WARN, "topics group \"%s\": joining: %s", c->group,
                  loom__pgconn_errmsg(&c->gconn));
        return; /* the next heartbeat tries again */
    }
    if (!c->stopping)
        group_send_assignment(c);
}

static void
group_send_join(tp_consumer *c)
{
    loom__buf arr = LOOM__BUF_INIT;
    char client[128], timeout[4];
    const char *values[6];
    int lengths[6];

    group_join_params(c, &arr, client, sizeof client, timeout, values, lengths);
    if (!arr.failed && loom__pgconn_query(&c->gconn, &join_stmt, values,
                                          lengths, group_on_join, c) == LOOM_OK)
        c->g_busy = 1;
    loom__buf_free(&arr);
}

static void
group_on_heartbeat(void *arg, loom_err rc, PGresult *r)
{
    tp_consumer *c = arg;
    int64_t gen = c->generation;

    c->g_busy = 0;
    if (rc == LOOM_OK)
        loom__pg_get_i64(r, 0, 0, &gen);
    PQclear(r);
    if (c->stopping)
        return;
    if (rc == LOOM_ENOTFOUND) {
        /* Expelled (our session timed out): everything we hold is
         * someone else's now. Join again. */
        loom__log(LOOM_LOG_WARN,
                  "topics group \"%s\": member %.8s was expelled (session "
                  "timeout %u ms); joining again",
                  c->group, c->member_text, c->topts.session_timeout_ms);
        group_send_join(c);
        return;
    }
    if (rc != LOOM_OK) {
        loom__log(LOOM_LOG_WARN, "topics group \"%s\": heartbeat: %s", c->group,
                  loom__pgconn_errmsg(&c->gconn));
        return;
    }
    if (gen != c->generation || c->g_refresh) {
        c->generation = gen;
        group_send_assignment(c);
    }
}

static void
group_heartbeat(tp_consumer *c)
{
    const char *values[2] = {c->group, (const char *) c->member.bytes};
    int lengths[2] = {(int) strlen(c->group), 16};

    if (c->g_busy || c->stopping)
        return;
    if (loom__pgconn_query(&c->gconn, &heartbeat_stmt, values, lengths,
                           group_on_heartbeat, c) == LOOM_OK)
        c->g_busy = 1;
    else
        loom__log(LOOM_LOG_WARN, "topics group \"%s\": heartbeat: %s", c->group,
                  loom__pgconn_errmsg(&c->gconn));
}

static void
group_on_timer(uv_timer_t *t)
{
    group_heartbeat(t->data);
}

/* Any rebalance of our group NOTIFYs "loom_group" with its name: read
 * the assignment at once instead of at the next heartbeat, so partitions
 * change hands in milliseconds. */
static void
group_on_notify(void *arg, const char *channel, const char *payload)
{
    tp_consumer *c = arg;

    (void) channel;
    if (c->stopping || (payload != NULL && strcmp(payload, c->group) != 0))
        return;
    if (payload == NULL)
        return; /* (re)connected: the heartbeat catches up */
    loom__tp_group_refresh(c);
}

void
loom__tp_group_start(tp_consumer *c)
{
    if (loom_runtime_listen(c->tr->rt, "loom_group", group_on_notify, c,
                            &c->group_listener) != LOOM_OK)
        c->group_listener = NULL; /* heartbeats still find changes */
    uv_timer_start(&c->heartbeat, group_on_timer, c->topts.heartbeat_ms,
                   c->topts.heartbeat_ms);
}

void
loom__tp_group_refresh(tp_consumer *c)
{
    c->g_refresh = 1;
    group_heartbeat(c);
}

void
loom__tp_group_leave(tp_consumer *c)
{
    loom_err rc;
    const char *values[2] = {c->group, (const char *) c->member.bytes};
    int lengths[2] = {(int) strlen(c->group), 16};
    PGresult *r = NULL;

    loom_listener_close(c->group_listener);
    c->group_listener = NULL;
    if (c->gconn.store == NULL)
        return;
    if (c->g_busy) {
        /* Abandon the heartbeat in flight: leaving matters more. Leave on
         * a new connection (returning here kept the member in the group,
         * holding its partitions until its session timed out). */
        char err[256];
        loom__pgconn_close(&c->gconn);
        c->g_busy = 0;
        if (loom__tp_conn_open(&c->gconn, c->tr, "group", err, sizeof err) !=
            LOOM_OK) {
            loom__log(LOOM_LOG_WARN, "topics group \"%s\": leaving: %s",
                      c->group, err);
            return; /* the session timeout expels us instead */
        }
    }
    rc = loom__pgconn_query_now(&c->gconn, &leave_stmt, values, lengths, &r);
    if (rc == LOOM_ECONN) {
        /* The connection died unnoticed (a server restart): once more, on
         * a new one. */
        PQclear(r);
        r = NULL;
        rc =
            loom__pgconn_query_now(&c->gconn, &leave_stmt, values, lengths, &r);
    }
    if (rc != LOOM_OK)
        loom__log(LOOM_LOG_WARN, "topics group \"%s\": leaving: %s", c->group,
                  loom__pgconn_errmsg(&c->gconn));
    PQclear(r);
}
