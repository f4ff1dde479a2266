/*
 * Consuming from NATS JetStream, against a real nats-server: members of a
 * group share its messages and groups each get all of them; a failed
 * message comes back with its attempt counted and a growing delay, then
 * goes to "<topic>.dlq" with headers saying why; a rejected one goes there
 * on its first delivery, and never comes back; one never answered comes
 * back after ack_wait and is dead-lettered after max_deliveries; patterns
 * ("*", a trailing "#", never a dead-letter topic) and the "#" NATS cannot
 * express; max_in_flight and batch bound what the handler holds; closing
 * a member gives its messages back to the group at once, and what is
 * published after the close goes to the members left at once; the
 * runtime's stop ends a run.
 *
 * Loop callbacks only record; the checks run after tpt_run().
 * TPT_FILTER=<glob> runs only the matching tests; TPT_LOG=1 prints every
 * log line of the library.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "ntest.h"

/* The ack_wait of tests whose handler holds messages unanswered for a
 * while (NTT_OPTIONS: 5 s, which a loaded machine can outlast). */
#define NTT_HOLD_MS "30000"
/* What "at once" may take on a loaded machine: well below that
 * ack_wait. */
#define NTT_SOON_MS 10000

/* Whether every payload "first".."first+n-1" is in exactly one of a, b. */
static void
assert_each_once(const tpt_rec *a, const tpt_rec *b, int first, int n)
{
    char p[32];

    for (int i = first; i < first + n; i++) {
        snprintf(p, sizeof p, "%d", i);
        if (tpt_rec_count(a, p) + (b ? tpt_rec_count(b, p) : 0) != 1)
            fail_msg("payload %s delivered %zu + %zu times", p,
                     tpt_rec_count(a, p), b ? tpt_rec_count(b, p) : 0);
    }
}

/* Acknowledges every message r holds. */
static void
ack_held(tpt_rec *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->m[i].held != NULL) {
            assert_int_equal(loom_consumer_ack(r->c, r->m[i].held), LOOM_OK);
            r->m[i].held = NULL;
        }
}

/* Checks the deliveries of `payload` in r and copies them to p (room
 * for `max`): their attempts rise from 1, each above the one before, all
 * but the last below `lo`, the last from `lo` to `hi`. nats-server 2.9
 * can skip a delivery count (ntest.h), so 1, 2, 4 passes as 1, 2, 3, 4
 * does: what counts is that each delivery is counted, and when the
 * counting stops. Returns how many there are. */
static size_t
attempts_rising(const tpt_rec *r, const char *payload, uint32_t lo, uint32_t hi,
                const tpt_rmsg **p, size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < r->n; i++) {
        const tpt_rmsg *m = &r->m[i];
        uint32_t before = n == 0 ? 0 : p[n - 1]->attempt;
        if (strcmp(m->payload, payload) != 0)
            continue;
        if (n == max || (n == 0 && m->attempt != 1) || m->attempt <= before ||
            before >= lo || m->attempt > hi)
            fail_msg("delivery %zu of \"%s\" has attempt %u, after %u", n,
                     payload, m->attempt, before);
        p[n++] = m;
    }
    if (n == 0 || p[n - 1]->attempt < lo)
        fail_msg("\"%s\": %zu deliveries, the last with attempt %u (want "
                 "%u at least)",
                 payload, n, n == 0 ? 0 : p[n - 1]->attempt, lo);
    if (n != p[n - 1]->attempt)
        printf("nats_consume_test: \"%s\" delivered %zu times, the last "
               "counted %u (the server skipped a count)\n",
               payload, n, p[n - 1]->attempt);
    return n;
}

/* ---- 1. groups ----------------------------------------------------------- */

static void
test_nats_consume_members_share_and_groups_each_get_all(void **state)
{
    tpt_env e;
    tpt_rec a = {0}, b = {0}, other = {0};

    (void) state;
    /* A holds 10 messages to the end: ack_wait must not run out. */
    ntt_open(&e, "ack_wait_ms=" NTT_HOLD_MS);
    tpt_publish_seq(&e, "share.t", 0, 200, 4);
    /* A holds what it gets, so it stops at max_in_flight: 10. */
    a.hold = 1;
    ntt_rec_open(&e, "share-g", "share.t", 10, 0, &a);
    tpt_rec_wait(&e, &a, 10);
    ntt_rec_open(&e, "share-g", "share.t", 0, 0, &b);
    ntt_rec_open(&e, "share-other", "share.t", 0, 0, &other);
    tpt_rec_wait(&e, &b, 190);
    tpt_rec_wait(&e, &other, 200);
    ack_held(&a);
    ntt_quiet(&e, 500);
    assert_int_equal(a.n, 10);
    assert_int_equal(b.n, 190);
    assert_each_once(&a, &b, 0, 200);
    assert_int_equal(other.n, 200);
    assert_each_once(&other, NULL, 0, 200);
    tpt_close(&e);
    tpt_rec_free(&a);
    tpt_rec_free(&b);
    tpt_rec_free(&other);
}

static void
test_nats_consume_closed_member_gives_its_messages_back_at_once(void **state)
{
    tpt_env e;
    tpt_rec a = {0}, b = {0};
    loom_consumer *ca;
    int64_t closed_at;

    (void) state;
    ntt_open(&e, "ack_wait_ms=" NTT_HOLD_MS);
    tpt_publish_seq(&e, "giveback.t", 0, 20, 0);
    a.hold = 1;
    ca = ntt_rec_open(&e, "giveback-g", "giveback.t", 5, 0, &a);
    tpt_rec_wait(&e, &a, 5);
    ntt_rec_open(&e, "giveback-g", "giveback.t", 0, 0, &b);
    tpt_rec_wait(&e, &b, 15);
    closed_at = est_now_ms();
    loom_consumer_close(ca);
    tpt_rec_wait(&e, &b, 20);
    /* Negatively acknowledged on close, not left to ack_wait (30 s). */
    assert_true(est_now_ms() - closed_at < NTT_SOON_MS);
    ntt_quiet(&e, 300);
    assert_int_equal(b.n, 20);
    assert_each_once(&b, NULL, 0, 20);
    /* A's, delivered again (2, or more if the server skipped a count). */
    for (size_t i = 0; i < b.n; i++)
        if (tpt_rec_count(&a, b.m[i].payload) == 1)
            assert_true(b.m[i].attempt >= 2);
    tpt_close(&e);
    tpt_rec_free(&a);
    tpt_rec_free(&b);
}

/* A member closed while its pull request waits on the server (an idle
 * member always has one): messages published after the close go to the
 * members still there at once, not to the closed member's request, where
 * they would wait for ack_wait. */
static void
test_nats_consume_messages_after_a_close_go_to_the_members_left(void **state)
{
    tpt_env e;
    tpt_rec a = {0}, b = {0};
    loom_consumer *ca;
    int64_t closed_at;

    (void) state;
    ntt_open(&e, "ack_wait_ms=" NTT_HOLD_MS);
    ca = ntt_rec_open(&e, "after-g", "after.t", 0, 0, &a);
    ntt_rec_open(&e, "after-g", "after.t", 0, 0, &b);
    ntt_quiet(&e, 500); /* both idle, each with a request waiting */
    loom_consumer_close(ca);
    closed_at = est_now_ms();
    tpt_publish_seq(&e, "after.t", 0, 20, 0);
    tpt_rec_wait(&e, &b, 20);
    printf("nats_consume_test: all 20 within %lld ms of the close\n",
           (long long) (est_now_ms() - closed_at));
    assert_true(est_now_ms() - closed_at < NTT_SOON_MS);
    assert_int_equal(a.n, 0);
    assert_each_once(&b, NULL, 0, 20);
    tpt_close(&e);
    tpt_rec_free(&a);
    tpt_rec_free(&b);
}

/* ---- 2. failures and dead letters ---------------------------------------- */

static void
test_nats_consume_failed_message_is_redelivered_then_dead_lettered(void **state)
{
    tpt_env e;
    tpt_rec r = {0}, dlq = {0};
    loom_message msgs[3];
    loom_header hdr[1] = {{"trace", "t-1"}};
    loom_uuid poison_id;
    const tpt_rmsg *p[4], *d;
    char want[256];
    size_t n;

    (void) state;
    ntt_open(&e, "");
    r.fail_payload = "poison";
    r.fail_until = 1000; /* always */
    r.fail_error = "card declined";
    ntt_rec_open(&e, "dl-g", "dl.orders", 0, 4, &r);
    ntt_rec_open(&e, "dl-reader", "dl.orders.dlq", 0, 0, &dlq);
    tpt_msg_init(&msgs[0], "dl.orders", "cust-7", "ok-1");
    tpt_msg_init(&msgs[1], "dl.orders", "cust-7", "poison");
    tpt_msg_init(&msgs[2], "dl.orders", "cust-7", "ok-2");
    msgs[1].headers = hdr;
    msgs[1].n_headers = 1;
    assert_int_equal(loom_uuid_generate(&poison_id), LOOM_OK);
    msgs[1].id = poison_id;
    assert_int_equal(tpt_publish_wait(&e, msgs, 3), LOOM_OK);

    /* The dead letter comes after the poison's last delivery. */
    tpt_rec_wait(&e, &dlq, 1);
    ntt_quiet(&e, 800); /* terminated: no further delivery */
    assert_int_equal(tpt_rec_count(&r, "ok-1"), 1);
    assert_int_equal(tpt_rec_count(&r, "ok-2"), 1);
    /* Attempts 1, 2, 3, 4 (or with a count the server skipped). */
    n = attempts_rising(&r, "poison", 4, 4, p, 4);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(p[i]->offset, p[0]->offset);
        assert_string_equal(p[i]->headers, "trace=t-1;");
    }
    /* Not held up by the poison before it. */
    assert_true(ntt_nth(&r, "ok-2", 0)->at_ms <= p[1]->at_ms);
    /* Backoff: 50, 100, 200 ms at least after attempts 1, 2, 3. */
    for (size_t i = 1; i < n; i++) {
        int64_t gap = p[i]->at_ms - p[i - 1]->at_ms;
        int64_t min = (int64_t) NTT_BACKOFF_MS << (p[i - 1]->attempt - 1);
        if (gap < min - 5)
            fail_msg("redelivery %zu came after %lld ms, backoff is %lld", i,
                     (long long) gap, (long long) min);
    }

    assert_int_equal(dlq.n, 1);
    d = &dlq.m[0];
    assert_string_equal(d->topic, "dl.orders.dlq");
    assert_string_equal(d->payload, "poison");
    assert_string_equal(d->key, "cust-7");
    assert_memory_equal(d->id.bytes, poison_id.bytes, 16);
    assert_int_equal(d->attempt, 1);
    snprintf(want, sizeof want,
             "trace=t-1;x-deliveries=4;x-error=card declined;x-group=dl-g;"
             "x-offset=%lld;x-partition=0;x-topic=dl.orders;",
             (long long) p[0]->offset);
    assert_string_equal(d->headers, want);
    tpt_close(&e);
    tpt_rec_free(&r);
    tpt_rec_free(&dlq);
}

static void
test_nats_consume_rejected_message_is_dead_lettered_on_its_first_delivery(
    void **state)
{
    tpt_env e;
    tpt_rec r = {0}, dlq = {0};
    loom_message msgs[3];
    const tpt_rmsg *p;
    char want[256];

    (void) state;
    ntt_open(&e, "");
    r.fail_payload = "poison";
    r.fail_until = 1000;
    r.reject = 1;
    r.fail_error = "does not decode";
    /* max_deliveries 5 (the default): a failure would come back 4 times. */
    ntt_rec_open(&e, "rj-g", "rj.orders", 0, 0, &r);
    tpt_msg_init(&msgs[0], "rj.orders", "cust-9", "ok-1");
    tpt_msg_init(&msgs[1], "rj.orders", "cust-9", "poison");
    tpt_msg_init(&msgs[2], "rj.orders", "cust-9", "ok-2");
    assert_int_equal(tpt_publish_wait(&e, msgs, 3), LOOM_OK);

    tpt_rec_wait(&e, &r, 3);
    ntt_rec_open(&e, "rj-reader", "rj.orders.dlq", 0, 0, &dlq);
    tpt_rec_wait(&e, &dlq, 1);
    /* Past the backoffs (50 ms, doubling to 400): no second delivery. */
    ntt_quiet(&e, 1500);
    assert_int_equal(tpt_rec_count(&r, "poison"), 1);
    assert_int_equal(tpt_rec_count(&r, "ok-1"), 1);
    assert_int_equal(tpt_rec_count(&r, "ok-2"), 1);
    p = ntt_nth(&r, "poison", 0);
    assert_int_equal(p->attempt, 1);
    assert_true(ntt_nth(&r, "ok-2", 0)->offset > p->offset);

    assert_int_equal(dlq.n, 1);
    assert_string_equal(dlq.m[0].payload, "poison");
    snprintf(want, sizeof want,
             "x-deliveries=1;x-error=does not decode;x-group=rj-g;"
             "x-offset=%lld;x-partition=0;x-topic=rj.orders;",
             (long long) p->offset);
    assert_string_equal(dlq.m[0].headers, want);
    tpt_close(&e);
    tpt_rec_free(&r);
    tpt_rec_free(&dlq);
}

/* For tpt_run(): "ok-1" and a delivery of "poison" the handler takes
 * (attempt 3 or more) are in r. */
static int
poison_taken(void *arg)
{
    const tpt_rec *r = arg;
    int ok = 0, taken = 0;

    for (size_t i = 0; i < r->n; i++) {
        ok |= strcmp(r->m[i].payload, "ok-1") == 0;
        taken |= strcmp(r->m[i].payload, "poison") == 0 && r->m[i].attempt >= 3;
    }
    return ok && taken;
}

/* A topic whose name leaves no room for ".dlq" (a dead-letter topic of
 * a 245-byte name) has no dead-letter topic a consumer could open: a
 * rejected message comes back after the longest backoff instead, and
 * the messages after it flow (as with topics://). */
static void
test_nats_consume_a_topic_too_long_for_a_dead_letter_topic_redelivers(
    void **state)
{
    tpt_env e;
    tpt_rec r = {0};
    loom_message msgs[2];
    char name[LOOM_MAX_TOPIC_NAME + 1];
    const tpt_rmsg *p[3];

    (void) state;
    memset(name, 'n', sizeof name);
    memcpy(name + LOOM_MAX_TOPIC_NAME - 4, ".dlq", 5);
    ntt_open(&e, "");
    r.fail_payload = "poison";
    r.fail_until = 3; /* rejected twice, then handled */
    r.reject = 1;
    ntt_rec_open(&e, "tl-g", name, 0, 0, &r);
    tpt_msg_init(&msgs[0], name, NULL, "poison");
    tpt_msg_init(&msgs[1], name, NULL, "ok-1");
    assert_int_equal(tpt_publish_wait(&e, msgs, 2), LOOM_OK);
    if (!tpt_run(&e, poison_taken, &r, TPT_WAIT_MS))
        fail_msg("the rejected message was not taken at its third attempt: "
                 "%zu deliveries of it",
                 tpt_rec_count(&r, "poison"));
    ntt_quiet(&e, 500);
    assert_int_equal(tpt_rec_count(&r, "ok-1"), 1);
    /* Rejected at attempts 1 and 2, taken at 3 (or with a count the
     * server skipped), and then never again. */
    attempts_rising(&r, "poison", 3, UINT32_MAX, p, 3);
    tpt_close(&e);
    tpt_rec_free(&r);
}

static void
test_nats_consume_unanswered_message_returns_then_is_dead_lettered(void **state)
{
    tpt_env e;
    tpt_rec r = {0}, dlq = {0};
    const tpt_rmsg *d;
    const char *dv;

    (void) state;
    ntt_open(&e, "ack_wait_ms=300");
    r.hold = 1; /* never answers */
    ntt_rec_open(&e, "silent-g", "silent.t", 0, 2, &r);
    tpt_publish_seq(&e, "silent.t", 0, 1, 0);
    tpt_rec_wait(&e, &r, 2);
    assert_int_equal(r.m[0].attempt, 1);
    assert_int_equal(r.m[1].attempt, 2);
    assert_true(r.m[1].at_ms - r.m[0].at_ms >= 250);
    /* The third arrival exceeds max_deliveries: dead-lettered unseen. */
    ntt_rec_open(&e, "silent-reader", "silent.t.dlq", 0, 0, &dlq);
    tpt_rec_wait(&e, &dlq, 1);
    ntt_quiet(&e, 800);
    /* The handler never sees a delivery past max_deliveries. */
    for (size_t i = 0; i < r.n; i++)
        if (r.m[i].attempt > 2)
            fail_msg("delivery %zu reached the handler with attempt %u", i,
                     r.m[i].attempt);
    d = &dlq.m[0];
    assert_string_equal(d->payload, "0");
    /* After the third delivery; nats-server 2.9 may skip a count (see
     * ntest.h), so "at least 3". */
    dv = strstr(d->headers, "x-deliveries=");
    if (dv == NULL || atoi(dv + strlen("x-deliveries=")) < 3 ||
        strstr(d->headers, " times without an acknowledgement") == NULL)
        fail_msg("dead letter headers: %s", d->headers);
    tpt_close(&e);
    tpt_rec_free(&r);
    tpt_rec_free(&dlq);
}

/* ---- 3. patterns --------------------------------------------------------- */

static void
test_nats_consume_patterns_map_to_subjects(void **state)
{
    static const char *const topics[] = {"pt.a.eu", "pt.b.eu", "pt.a.us",
                                         "pt",      "pt.a",    "pt.a.b.c",
                                         "other.x", "pt.x.dlq"};
    tpt_env e;
    tpt_rec star = {0}, hash = {0}, tail = {0}, dlq = {0};
    loom_message m;

    (void) state;
    ntt_open(&e, "");
    ntt_rec_open(&e, "pt-star", "pt.*.eu", 0, 0, &star);
    ntt_rec_open(&e, "pt-hash", "pt.#", 0, 0, &hash);
    ntt_rec_open(&e, "pt-tail", "pt.a.#", 0, 0, &tail);
    ntt_rec_open(&e, "pt-dlq", "pt.x.dlq", 0, 0, &dlq);
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
        tpt_msg_init(&m, topics[i], NULL, topics[i]);
        assert_int_equal(tpt_publish_wait(&e, &m, 1), LOOM_OK);
    }
    tpt_rec_wait(&e, &hash, 6);
    tpt_rec_wait(&e, &star, 2);
    tpt_rec_wait(&e, &tail, 4);
    tpt_rec_wait(&e, &dlq, 1);
    ntt_quiet(&e, 500);
    assert_int_equal(star.n, 2);
    assert_int_equal(tpt_rec_count(&star, "pt.a.eu"), 1);
    assert_int_equal(tpt_rec_count(&star, "pt.b.eu"), 1);
    /* "#" is zero or more words, "pt" included; never a ".dlq" topic. */
    assert_int_equal(hash.n, 6);
    assert_int_equal(tpt_rec_count(&hash, "pt"), 1);
    assert_int_equal(tpt_rec_count(&hash, "pt.x.dlq"), 0);
    assert_int_equal(tpt_rec_count(&hash, "other.x"), 0);
    assert_int_equal(tail.n, 4);
    assert_int_equal(tpt_rec_count(&tail, "pt.a"), 1);
    assert_int_equal(tpt_rec_count(&tail, "pt.a.b.c"), 1);
    for (size_t i = 0; i < hash.n; i++)
        assert_string_equal(hash.m[i].topic, hash.m[i].payload);
    assert_int_equal(dlq.n, 1);
    tpt_close(&e);
    tpt_rec_free(&star);
    tpt_rec_free(&hash);
    tpt_rec_free(&tail);
    tpt_rec_free(&dlq);
}

static void
test_nats_consume_refuses_patterns_nats_cannot_express(void **state)
{
    static const char *const bad[] = {"a.#.b", "#.a", "a..b", "a.b*",
                                      "a.>",   "",    "a b"};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    const char *topics[2];
    loom_consumer *c = NULL;
    tpt_rec r = {0};
    tpt_env e;

    (void) state;
    ntt_open(&e, "");
    cfg.group = "refused";
    cfg.topics = topics;
    cfg.n_topics = 1;
    topics[0] = "orders.#.eu";
    assert_int_equal(loom_consumer_open(e.t, &cfg, tpt_rec_handle, &r, &c),
                     LOOM_EINVAL);
    assert_null(c);
    assert_non_null(strstr(loom_nats_errmsg(e.t), "last word"));
    assert_non_null(strstr(loom_nats_errmsg(e.t), "orders.#.eu"));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        topics[0] = bad[i];
        if (loom_consumer_open(e.t, &cfg, tpt_rec_handle, &r, &c) !=
            LOOM_EINVAL)
            fail_msg("pattern \"%s\" was not refused", bad[i]);
    }
    /* One bad pattern among good ones refuses the consumer. */
    topics[0] = "fine.*";
    topics[1] = "x.#.y";
    cfg.n_topics = 2;
    assert_int_equal(loom_consumer_open(e.t, &cfg, tpt_rec_handle, &r, &c),
                     LOOM_EINVAL);
    tpt_close(&e);
}

/* ---- 4. flow control ----------------------------------------------------- */

typedef struct batches {
    tpt_rec r;
    size_t largest;
    size_t calls;
} batches;

static void
batches_handle(loom_consumer *c, const loom_message *const *msgs, size_t n,
               void *arg)
{
    batches *b = arg;

    b->calls++;
    if (n > b->largest)
        b->largest = n;
    tpt_rec_handle(c, msgs, n, &b->r);
}

static void
test_nats_consume_max_in_flight_and_batch_bound_the_handler(void **state)
{
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    const char *topics[1] = {"flow.t"};
    loom_consumer *c;
    batches b;
    tpt_env e;

    (void) state;
    memset(&b, 0, sizeof b);
    /* The handler holds messages for a second or more. */
    ntt_open(&e, "ack_wait_ms=" NTT_HOLD_MS);
    tpt_publish_seq(&e, "flow.t", 0, 50, 0);
    b.r.hold = 1;
    cfg.group = "flow-g";
    cfg.topics = topics;
    cfg.n_topics = 1;
    cfg.max_in_flight = 7;
    cfg.batch = 3;
    assert_int_equal(loom_consumer_open(e.t, &cfg, batches_handle, &b, &c),
                     LOOM_OK);
    b.r.c = c;
    tpt_rec_wait(&e, &b.r, 7);
    ntt_quiet(&e, 500);
    assert_int_equal(b.r.n, 7);
    assert_true(b.largest <= 3);
    /* Room for three more, and no more. */
    assert_int_equal(loom_consumer_ack(c, b.r.m[0].held), LOOM_OK);
    b.r.m[0].held = NULL;
    assert_int_equal(loom_consumer_fail(c, b.r.m[1].held, "later"), LOOM_OK);
    b.r.m[1].held = NULL;
    assert_int_equal(loom_consumer_ack(c, b.r.m[2].held), LOOM_OK);
    b.r.m[2].held = NULL;
    tpt_rec_wait(&e, &b.r, 10);
    ntt_quiet(&e, 500);
    assert_int_equal(b.r.n, 10);
    /* Then everything, acknowledged as it comes. */
    b.r.hold = 0;
    ack_held(&b.r);
    tpt_rec_wait(&e, &b.r, 51); /* 50 and the failed one again */
    ntt_quiet(&e, 300);
    assert_int_equal(b.r.n, 51);
    assert_true(b.largest <= 3);
    tpt_close(&e);
    tpt_rec_free(&b.r);
}

/* ---- 5. the runtime's stop ----------------------------------------------- */

typedef struct stopper {
    loom_runtime *rt;
    size_t seen;
    int published;
} stopper;

static void
stopper_handle(loom_consumer *c, const loom_message *const *msgs, size_t n,
               void *arg)
{
    stopper *s = arg;

    for (size_t i = 0; i < n; i++)
        loom_consumer_ack(c, msgs[i]);
    s->seen += n;
    if (s->seen >= 20)
        loom_runtime_stop(s->rt);
}

static void
stopper_published(loom_err rc, size_t n, void *arg)
{
    stopper *s = arg;

    (void) n;
    s->published += rc == LOOM_OK;
}

static void
test_nats_consume_runtime_stop_ends_the_run(void **state)
{
    loom_runtime_config rcfg = LOOM_RUNTIME_CONFIG_INIT;
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    const char *topics[1] = {"stop.t"};
    loom_consumer *c;
    loom_transport *t;
    loom_message m[20];
    char err[512];
    stopper s;

    (void) state;
    memset(&s, 0, sizeof s);
    assert_int_equal(loom_runtime_open(&s.rt, &rcfg), LOOM_OK);
    assert_int_equal(
        loom_transport_open(s.rt, ntt_url(""), &t, err, sizeof err), LOOM_OK);
    cfg.group = "stop-g";
    cfg.topics = topics;
    cfg.n_topics = 1;
    assert_int_equal(loom_consumer_open(t, &cfg, stopper_handle, &s, &c),
                     LOOM_OK);
    for (int i = 0; i < 20; i++)
        tpt_msg_init(&m[i], "stop.t", NULL, "x");
    assert_int_equal(loom_transport_publish(t, m, 20, stopper_published, &s),
                     LOOM_OK);
    /* Returns once the handler stopped the runtime and the transport
     * let it (its publish called back, its fetching stopped). */
    assert_int_equal(loom_runtime_run(s.rt), LOOM_OK);
    assert_int_equal(s.published, 1);
    assert_true(s.seen >= 20);
    /* After a stop, nothing new starts. */
    assert_int_equal(loom_transport_publish(t, m, 1, NULL, NULL), LOOM_EBUSY);
    loom_consumer_close(c);
    loom_transport_close(t);
    loom_runtime_close(s.rt);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_nats_consume_members_share_and_groups_each_get_all),
        cmocka_unit_test(
            test_nats_consume_closed_member_gives_its_messages_back_at_once),
        cmocka_unit_test(
            test_nats_consume_messages_after_a_close_go_to_the_members_left),
        cmocka_unit_test(
            test_nats_consume_failed_message_is_redelivered_then_dead_lettered),
        cmocka_unit_test(
            test_nats_consume_rejected_message_is_dead_lettered_on_its_first_delivery),
        cmocka_unit_test(
            test_nats_consume_unanswered_message_returns_then_is_dead_lettered),
        cmocka_unit_test(
            test_nats_consume_a_topic_too_long_for_a_dead_letter_topic_redelivers),
        cmocka_unit_test(test_nats_consume_patterns_map_to_subjects),
        cmocka_unit_test(
            test_nats_consume_refuses_patterns_nats_cannot_express),
        cmocka_unit_test(
            test_nats_consume_max_in_flight_and_batch_bound_the_handler),
        cmocka_unit_test(test_nats_consume_runtime_stop_ends_the_run),
    };
    tpt_debug_from_env();
    return cmocka_run_group_tests_name("outbox.nats_consume", tests,
                                       ntt_group_setup, ntt_group_teardown);
}
