/*
 * The in-process test transport keeps the promises of the transport
 * interface that code above it relies on: groups each get every message,
 * members share them, patterns select topics, order within a topic,
 * manual acks with a bounded number in flight, redelivery with the
 * attempt count, dead letters with their reason, delays, deduplication by
 * message id, and publish confirmations on the loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <uv.h>

#include "inproc.h"

#define MAX_SEEN 256

typedef struct seen {
    int n;
    char topic[MAX_SEEN][64];
    int64_t offset[MAX_SEEN];
    uint32_t attempt[MAX_SEEN];
    char payload[MAX_SEEN][32];
    const loom_message *held[MAX_SEEN]; /* not acknowledged yet */
    int n_held;
    int ack;         /* acknowledge on delivery */
    int fail_offset; /* fail this offset (-1: none) ... */
    int fail_times;  /* ... this many times */
    char last_error[64];
} seen;

typedef struct fx {
    loom_runtime *rt;
    loom_transport *t;
} fx;

static int
setup(void **state)
{
    static fx f;
    loom_runtime_config c = LOOM_RUNTIME_CONFIG_INIT;

    memset(&f, 0, sizeof f);
    c.conninfo = "dbname=never_connected";
    if (loomt_inproc_register() != LOOM_OK ||
        loom_runtime_open(&f.rt, &c) != LOOM_OK ||
        loom_transport_open(f.rt, "inproc://test", &f.t, NULL, 0) != LOOM_OK)
        return -1;
    *state = &f;
    return 0;
}

static int
teardown(void **state)
{
    fx *f = *state;

    loom_transport_close(f->t);
    uv_run(loom_runtime_loop(f->rt), UV_RUN_NOWAIT);
    loom_runtime_close(f->rt);
    return 0;
}

static void
on_msgs(loom_consumer *c, const loom_message *const *msgs, size_t n, void *arg)
{
    seen *s = arg;

    for (size_t i = 0; i < n; i++) {
        const loom_message *m = msgs[i];
        int k = s->n++;
        assert_true(k < MAX_SEEN);
        snprintf(s->topic[k], sizeof s->topic[k], "%s", m->topic);
        s->offset[k] = m->offset;
        s->attempt[k] = m->attempt;
        snprintf(s->payload[k], sizeof s->payload[k], "%.*s",
                 (int) m->payload_len, (const char *) m->payload);
        if (m->offset == s->fail_offset && s->fail_times > 0) {
            s->fail_times--;
            assert_int_equal(loom_consumer_fail(c, m, "boom"), LOOM_OK);
        } else if (s->ack) {
            assert_int_equal(loom_consumer_ack(c, m), LOOM_OK);
        } else {
            s->held[s->n_held++] = m;
        }
    }
}

/* Runs the loop until `*count` reaches `want` or `ms` pass. */
static void
run_until(fx *f, const int *count, int want, int ms)
{
    uv_loop_t *loop = loom_runtime_loop(f->rt);
    uint64_t end = uv_now(loop) + (uint64_t) ms;

    while (*count < want && uv_now(loop) < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        uv_sleep(1);
        uv_update_time(loop);
    }
}

static void
publish(fx *f, const char *topic, const char *payload, const loom_uuid *id,
        int64_t deliver_at)
{
    loom_message m;

    memset(&m, 0, sizeof m);
    m.topic = topic;
    m.payload = payload;
    m.payload_len = strlen(payload);
    m.partition = LOOM_PARTITION_ANY;
    m.deliver_at = deliver_at;
    if (id != NULL)
        m.id = *id;
    assert_int_equal(loom_transport_publish(f->t, &m, 1, NULL, NULL), LOOM_OK);
}

static loom_consumer *
consume(fx *f, const char *group, const char *pattern, seen *s,
        size_t max_in_flight, unsigned max_deliveries)
{
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_consumer *c = NULL;
    const char *topics[1] = {pattern};

    cfg.group = group;
    cfg.topics = topics;
    cfg.n_topics = 1;
    cfg.max_in_flight = max_in_flight;
    cfg.max_deliveries = max_deliveries;
    assert_int_equal(loom_consumer_open(f->t, &cfg, on_msgs, s, &c), LOOM_OK);
    return c;
}

static void
test_each_group_gets_every_message_of_its_patterns_in_order(void **state)
{
    fx *f = *state;
    seen *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    char p[16];

    a->ack = b->ack = 1;
    a->fail_offset = b->fail_offset = -1;
    for (int i = 0; i < 10; i++) {
        snprintf(p, sizeof p, "eu-%d", i);
        publish(f, "orders.created.eu", p, NULL, 0);
    }
    for (int i = 0; i < 5; i++)
        publish(f, "orders.paid.us", "us", NULL, 0);
    consume(f, "all", "orders.#", a, 0, 0);
    consume(f, "eu", "orders.*.eu", b, 0, 0);
    run_until(f, &a->n, 15, 2000);
    run_until(f, &b->n, 10, 2000);
    assert_int_equal(a->n, 15);
    assert_int_equal(b->n, 10);
    for (int i = 0, last = -1; i < b->n; i++) {
        assert_string_equal(b->topic[i], "orders.created.eu");
        assert_true(b->offset[i] > last); /* order within the topic */
        last = (int) b->offset[i];
        snprintf(p, sizeof p, "eu-%d", (int) b->offset[i]);
        assert_string_equal(b->payload[i], p);
        assert_int_equal(b->attempt[i], 1);
    }
    free(a);
    free(b);
}

static void
test_members_of_a_group_share_the_messages(void **state)
{
    fx *f = *state;
    seen *m1 = calloc(1, sizeof *m1), *m2 = calloc(1, sizeof *m2);
    int total = 0;

    m1->ack = m2->ack = 1;
    m1->fail_offset = m2->fail_offset = -1;
    consume(f, "g", "jobs", m1, 0, 0);
    consume(f, "g", "jobs", m2, 0, 0);
    for (int i = 0; i < 300; i++)
        publish(f, "jobs", "j", NULL, 0);
    for (int i = 0; i < 2000 && total < 300; i++) {
        run_until(f, &m1->n, m1->n + 1, 5);
        total = m1->n + m2->n;
    }
    assert_int_equal(m1->n + m2->n, 300); /* each message once */
    assert_true(m1->n > 0);
    assert_true(m2->n > 0);
    free(m1);
    free(m2);
}

static void
test_failed_messages_come_back_then_go_to_the_dead_letter_topic(void **state)
{
    fx *f = *state;
    seen *s = calloc(1, sizeof *s), *d = calloc(1, sizeof *d);

    s->ack = d->ack = 1;
    s->fail_offset = 1;
    s->fail_times = 100; /* always */
    d->fail_offset = -1;
    publish(f, "pay", "p0", NULL, 0);
    publish(f, "pay", "p1", NULL, 0);
    consume(f, "billing", "pay", s, 0, 3);
    consume(f, "ops", "pay.dlq", d, 0, 0);
    run_until(f, &d->n, 1, 3000);
    assert_int_equal(d->n, 1);
    assert_string_equal(d->payload[0], "p1");
    /* p0 once; p1 delivered 3 times with attempts 1, 2, 3. */
    assert_int_equal(s->n, 4);
    for (int i = 0, k = 1; i < s->n; i++)
        if (s->offset[i] == 1)
            assert_int_equal(s->attempt[i], (uint32_t) k++);
    free(s);
    free(d);
}

static void
dlq_headers(loom_consumer *c, const loom_message *const *msgs, size_t n,
            void *arg)
{
    int *ok = arg;

    for (size_t i = 0; i < n; i++) {
        const loom_message *m = msgs[i];
        int found = 0;
        for (size_t h = 0; h < m->n_headers; h++)
            if ((strcmp(m->headers[h].key, "x-error") == 0 &&
                 strcmp(m->headers[h].value, "boom") == 0) ||
                (strcmp(m->headers[h].key, "x-group") == 0 &&
                 strcmp(m->headers[h].value, "billing") == 0) ||
                (strcmp(m->headers[h].key, "x-attempts") == 0 &&
                 strcmp(m->headers[h].value, "2") == 0))
                found++;
        *ok += found == 3;
        loom_consumer_ack(c, m);
    }
}

static void
test_dead_letters_name_the_error_the_group_and_the_attempts(void **state)
{
    fx *f = *state;
    seen *s = calloc(1, sizeof *s);
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    const char *dlq[1] = {"pay.dlq"};
    loom_consumer *c = NULL;
    int ok = 0;

    s->fail_offset = 0;
    s->fail_times = 100;
    publish(f, "pay", "x", NULL, 0);
    consume(f, "billing", "pay", s, 0, 2);
    cfg.group = "ops";
    cfg.topics = dlq;
    cfg.n_topics = 1;
    assert_int_equal(loom_consumer_open(f->t, &cfg, dlq_headers, &ok, &c),
                     LOOM_OK);
    run_until(f, &ok, 1, 3000);
    assert_int_equal(ok, 1);
    free(s);
}

static void
test_in_flight_is_bounded_until_acknowledged(void **state)
{
    fx *f = *state;
    seen *s = calloc(1, sizeof *s);
    loom_consumer *c;

    s->fail_offset = -1; /* hold everything */
    for (int i = 0; i < 10; i++)
        publish(f, "q", "m", NULL, 0);
    c = consume(f, "g", "q", s, 2, 0);
    run_until(f, &s->n, 3, 200);
    assert_int_equal(s->n, 2); /* paused at two unacknowledged */
    assert_int_equal(loom_consumer_ack(c, s->held[0]), LOOM_OK);
    /* Acknowledging twice, or a message it does not hold, is refused. */
    assert_int_equal(loom_consumer_ack(c, s->held[0]), LOOM_ENOTFOUND);
    run_until(f, &s->n, 3, 1000);
    assert_int_equal(s->n, 3);
    /* Closing returns the unacknowledged ones to the group. */
    loom_consumer_close(c);
    s->ack = 1;
    consume(f, "g", "q", s, 0, 0);
    run_until(f, &s->n, 3 + 2 + 7, 2000);
    assert_int_equal(s->n, 12); /* the two held ones again, then the rest */
    free(s);
}

static uint64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static void
test_delays_and_duplicate_ids(void **state)
{
    fx *f = *state;
    seen *s = calloc(1, sizeof *s);
    loom_uuid id;
    uint64_t start = now_us();

    s->ack = 1;
    s->fail_offset = -1;
    assert_int_equal(loom_uuid_generate(&id), LOOM_OK);
    publish(f, "d", "once", &id, 0);
    publish(f, "d", "once", &id, 0); /* the same id: dropped */
    publish(f, "d", "later", NULL, (int64_t) (start + 80000));
    consume(f, "g", "d", s, 0, 0);
    run_until(f, &s->n, 2, 2000);
    assert_int_equal(s->n, 2);
    assert_string_equal(s->payload[0], "once");
    assert_string_equal(s->payload[1], "later");
    assert_true(now_us() >= start + 80000); /* not before its time */
    run_until(f, &s->n, 3, 100);
    assert_int_equal(s->n, 2);
    free(s);
}

static void
on_published(loom_err rc, size_t n, void *arg)
{
    int *done = arg;

    assert_int_equal(rc, LOOM_OK);
    *done += (int) n;
}

static void
test_publish_confirms_on_the_loop(void **state)
{
    fx *f = *state;
    loom_message m[3];
    int done = 0;

    memset(m, 0, sizeof m);
    for (int i = 0; i < 3; i++) {
        m[i].topic = "c";
        m[i].partition = LOOM_PARTITION_ANY;
    }
    assert_int_equal(loom_transport_publish(f->t, m, 3, on_published, &done),
                     LOOM_OK);
    assert_int_equal(done, 0); /* never from inside publish */
    run_until(f, &done, 3, 1000);
    assert_int_equal(done, 3);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_each_group_gets_every_message_of_its_patterns_in_order),
        T(test_members_of_a_group_share_the_messages),
        T(test_failed_messages_come_back_then_go_to_the_dead_letter_topic),
        T(test_dead_letters_name_the_error_the_group_and_the_attempts),
        T(test_in_flight_is_bounded_until_acknowledged),
        T(test_delays_and_duplicate_ids),
        T(test_publish_confirms_on_the_loop),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
