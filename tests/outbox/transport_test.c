/*
 * The transport registry and the handles above a transport's operations:
 * registration refuses incomplete or clashing transports, URLs find their
 * transport by scheme (or say which ones exist), bad calls are refused
 * before a transport sees them, closing a transport closes its
 * consumers, and a reject reaches the transport's reject (or its fail
 * when it has none, or speaks version 1). The transport here records what it is
 * asked to do; the real ones are tested against their servers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "loom/transport.h"

/* What the recording transport saw. */
static struct {
    int opens, closes, publishes, subscribes, acks, fails, rejects,
        unsubscribes;
    size_t published;
    char url[128];
    char error[64];
    loom_consumer *consumer;
} seen;

static int rec_state, rec_cstate;

static loom_err
rec_open(loom_runtime *rt, const char *url, void **state, char *err,
         size_t errlen)
{
    (void) rt;
    seen.opens++;
    snprintf(seen.url, sizeof seen.url, "%s", url);
    if (strstr(url, "refuse") != NULL) {
        snprintf(err, errlen, "refused by the transport");
        return LOOM_ECONN;
    }
    *state = &rec_state;
    return LOOM_OK;
}

static void
rec_close(void *state)
{
    assert_ptr_equal(state, &rec_state);
    seen.closes++;
}

static loom_err
rec_publish(void *state, const loom_message *msgs, size_t n, loom_publish_cb cb,
            void *arg)
{
    (void) msgs;
    assert_ptr_equal(state, &rec_state);
    seen.publishes++;
    seen.published += n;
    if (cb != NULL)
        cb(LOOM_OK, n, arg);
    return LOOM_OK;
}

static loom_err
rec_subscribe(void *state, const loom_consumer_config *cfg, loom_consumer *c,
              void **cstate)
{
    (void) cfg;
    assert_ptr_equal(state, &rec_state);
    seen.subscribes++;
    seen.consumer = c;
    *cstate = &rec_cstate;
    return LOOM_OK;
}

static loom_err
rec_ack(void *cstate, const loom_message *m)
{
    (void) m;
    assert_ptr_equal(cstate, &rec_cstate);
    seen.acks++;
    return LOOM_OK;
}

static loom_err
rec_fail(void *cstate, const loom_message *m, const char *error)
{
    (void) m;
    assert_ptr_equal(cstate, &rec_cstate);
    seen.fails++;
    snprintf(seen.error, sizeof seen.error, "%s", error);
    return LOOM_OK;
}

static void
rec_unsubscribe(void *cstate)
{
    assert_ptr_equal(cstate, &rec_cstate);
    seen.unsubscribes++;
}

static loom_err
rec_reject(void *cstate, const loom_message *m, const char *error)
{
    (void) m;
    assert_ptr_equal(cstate, &rec_cstate);
    seen.rejects++;
    snprintf(seen.error, sizeof seen.error, "%s", error);
    return LOOM_OK;
}

static const loom_transport_ops rec_ops = {LOOM_TRANSPORT_OPS_VERSION,
                                           "rec",
                                           rec_open,
                                           rec_close,
                                           rec_publish,
                                           rec_subscribe,
                                           rec_ack,
                                           rec_fail,
                                           rec_unsubscribe,
                                           rec_reject};

static loom_runtime *rt;

static int
setup(void **state)
{
    loom_runtime_config c = LOOM_RUNTIME_CONFIG_INIT;

    (void) state;
    memset(&seen, 0, sizeof seen);
    c.conninfo = "dbname=never_connected";
    return loom_runtime_open(&rt, &c) == LOOM_OK ? 0 : -1;
}

static int
teardown(void **state)
{
    (void) state;
    loom_runtime_close(rt);
    return 0;
}

static void
test_registration_refuses_incomplete_or_clashing_transports(void **state)
{
    loom_transport_ops bad = rec_ops;

    (void) state;
    assert_int_equal(loom_transport_register(NULL), LOOM_EINVAL);
    bad.version = LOOM_TRANSPORT_OPS_VERSION + 1;
    assert_int_equal(loom_transport_register(&bad), LOOM_EINVAL);
    bad = rec_ops;
    bad.ack = NULL;
    assert_int_equal(loom_transport_register(&bad), LOOM_EINVAL);
    bad = rec_ops;
    bad.unsubscribe = NULL;
    assert_int_equal(loom_transport_register(&bad), LOOM_EINVAL);
    bad = rec_ops;
    bad.fail = NULL; /* reject does not stand in for fail */
    assert_int_equal(loom_transport_register(&bad), LOOM_EINVAL);
    bad.fail = rec_fail;
    bad.version = 0;
    assert_int_equal(loom_transport_register(&bad), LOOM_EINVAL);
    bad = rec_ops;
    bad.scheme = "Topics"; /* schemes are lower case */
    assert_int_equal(loom_transport_register(&bad), LOOM_EINVAL);
    bad.scheme = "";
    assert_int_equal(loom_transport_register(&bad), LOOM_EINVAL);
    bad.scheme = NULL;
    assert_int_equal(loom_transport_register(&bad), LOOM_EINVAL);
    assert_int_equal(loom_transport_register(&rec_ops), LOOM_OK);
    assert_int_equal(loom_transport_register(&rec_ops), LOOM_EDUPLICATE);
}

static void
test_open_finds_the_transport_by_scheme(void **state)
{
    loom_transport *t = (loom_transport *) &seen;
    char err[256];

    (void) state;
    assert_int_equal(
        loom_transport_open(rt, "rec://a/b?x=1", &t, err, sizeof err), LOOM_OK);
    assert_string_equal(seen.url, "rec://a/b?x=1");
    assert_string_equal(loom_transport_scheme(t), "rec");
    loom_transport_close(t);
    assert_int_equal(seen.closes, 1);

    /* Unknown scheme: the error lists what is registered. */
    assert_int_equal(
        loom_transport_open(rt, "kafka://broker:9092", &t, err, sizeof err),
        LOOM_ENOTFOUND);
    assert_null(t);
    assert_non_null(strstr(err, "\"kafka\""));
    assert_non_null(strstr(err, "rec"));
    /* Not a URL. */
    assert_int_equal(loom_transport_open(rt, "rec", &t, err, sizeof err),
                     LOOM_EINVAL);
    assert_int_equal(loom_transport_open(rt, "://x", &t, err, sizeof err),
                     LOOM_EINVAL);
    assert_int_equal(loom_transport_open(NULL, "rec://", &t, err, sizeof err),
                     LOOM_EINVAL);
    /* The transport's own refusal, with its reason. */
    assert_int_equal(
        loom_transport_open(rt, "rec://refuse", &t, err, sizeof err),
        LOOM_ECONN);
    assert_string_equal(err, "refused by the transport");
}

static void
on_published(loom_err rc, size_t n, void *arg)
{
    size_t *got = arg;

    assert_int_equal(rc, LOOM_OK);
    *got += n;
}

static void
test_publish_checks_every_message_before_the_transport(void **state)
{
    loom_transport *t = NULL;
    loom_header h = {"k", "v"}, null_h = {"k", NULL};
    loom_message m[2];
    size_t got = 0;

    (void) state;
    assert_int_equal(loom_transport_open(rt, "rec://", &t, NULL, 0), LOOM_OK);
    memset(m, 0, sizeof m);
    m[0].topic = m[1].topic = "orders";
    m[0].partition = m[1].partition = LOOM_PARTITION_ANY;
    m[0].headers = &h;
    m[0].n_headers = 1;
    assert_int_equal(loom_transport_publish(t, m, 2, on_published, &got),
                     LOOM_OK);
    assert_int_equal(got, 2);
    m[1].topic = "";
    assert_int_equal(loom_transport_publish(t, m, 2, NULL, NULL), LOOM_EINVAL);
    m[1].topic = "orders";
    m[1].payload_len = 3; /* payload NULL */
    assert_int_equal(loom_transport_publish(t, m, 2, NULL, NULL), LOOM_EINVAL);
    m[1].payload_len = 0;
    m[1].key_len = 1; /* key NULL */
    assert_int_equal(loom_transport_publish(t, m, 2, NULL, NULL), LOOM_EINVAL);
    m[1].key_len = 0;
    m[1].partition = -2;
    assert_int_equal(loom_transport_publish(t, m, 2, NULL, NULL), LOOM_EINVAL);
    m[1].partition = 0;
    m[1].headers = &null_h;
    m[1].n_headers = 1;
    assert_int_equal(loom_transport_publish(t, m, 2, NULL, NULL), LOOM_EINVAL);
    assert_int_equal(loom_transport_publish(t, m, 0, NULL, NULL), LOOM_EINVAL);
    assert_int_equal(loom_transport_publish(NULL, m, 1, NULL, NULL),
                     LOOM_EINVAL);
    assert_int_equal(seen.publishes, 1); /* none of the bad ones got through */
    loom_transport_close(t);
}

static void
on_batch(loom_consumer *c, const loom_message *const *msgs, size_t n, void *arg)
{
    int *calls = arg;

    (*calls)++;
    assert_int_equal(loom_consumer_ack(c, msgs[0]), LOOM_OK);
    if (n > 1)
        assert_int_equal(loom_consumer_fail(c, msgs[1], "no stock"), LOOM_OK);
}

static void
test_consumers_ack_fail_and_close_with_their_transport(void **state)
{
    static const char *const topics[] = {"orders.*.eu"};
    static const char *const empty[] = {""};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_transport *t = NULL;
    loom_consumer *c = NULL, *c2 = NULL;
    loom_message m[2];
    const loom_message *batch[2] = {&m[0], &m[1]};
    int calls = 0;

    (void) state;
    memset(m, 0, sizeof m);
    assert_int_equal(loom_transport_open(rt, "rec://", &t, NULL, 0), LOOM_OK);
    cfg.topics = topics;
    cfg.n_topics = 1;
    assert_int_equal(loom_consumer_open(t, &cfg, on_batch, &calls, &c),
                     LOOM_EINVAL); /* no group */
    assert_null(c);
    cfg.group = "billing";
    cfg.topics = empty;
    assert_int_equal(loom_consumer_open(t, &cfg, on_batch, &calls, &c),
                     LOOM_EINVAL);
    cfg.topics = topics;
    assert_int_equal(loom_consumer_open(t, &cfg, NULL, &calls, &c),
                     LOOM_EINVAL);
    assert_int_equal(seen.subscribes, 0);
    assert_int_equal(loom_consumer_open(t, &cfg, on_batch, &calls, &c),
                     LOOM_OK);
    assert_ptr_equal(seen.consumer, c);
    loom_consumer_deliver(c, batch, 2);
    assert_int_equal(calls, 1);
    assert_int_equal(seen.acks, 1);
    assert_int_equal(seen.fails, 1);
    assert_string_equal(seen.error, "no stock");
    assert_int_equal(loom_consumer_ack(NULL, &m[0]), LOOM_EINVAL);
    assert_int_equal(loom_consumer_fail(c, NULL, "x"), LOOM_EINVAL);

    assert_int_equal(loom_consumer_open(t, &cfg, on_batch, &calls, &c2),
                     LOOM_OK);
    loom_consumer_close(c2);
    assert_int_equal(seen.unsubscribes, 1);
    /* The transport closes the consumer still open, then itself. */
    loom_transport_close(t);
    assert_int_equal(seen.unsubscribes, 2);
    assert_int_equal(seen.closes, 1);
}

/* Opens a consumer of `scheme` (registered with ops) and rejects the
 * first message of a delivered batch of one. */
static void
reject_on(const loom_transport_ops *ops, const char *error)
{
    static const char *const topics[] = {"orders"};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_transport *t = NULL;
    loom_consumer *c = NULL;
    loom_message m;
    char url[32];

    memset(&m, 0, sizeof m);
    assert_int_equal(loom_transport_register(ops), LOOM_OK);
    snprintf(url, sizeof url, "%s://", ops->scheme);
    assert_int_equal(loom_transport_open(rt, url, &t, NULL, 0), LOOM_OK);
    cfg.group = "billing";
    cfg.topics = topics;
    cfg.n_topics = 1;
    assert_int_equal(loom_consumer_open(t, &cfg, on_batch, NULL, &c), LOOM_OK);
    assert_int_equal(loom_consumer_reject(c, &m, error), LOOM_OK);
    assert_int_equal(loom_consumer_reject(c, NULL, "x"), LOOM_EINVAL);
    assert_int_equal(loom_consumer_reject(NULL, &m, "x"), LOOM_EINVAL);
    loom_transport_close(t);
}

static void
test_reject_reaches_the_transports_reject_or_else_its_fail(void **state)
{
    loom_transport_ops v2 = rec_ops, none = rec_ops, v1 = rec_ops;

    (void) state;
    v2.scheme = "rej";
    reject_on(&v2, "undecodable");
    assert_int_equal(seen.rejects, 1);
    assert_int_equal(seen.fails, 0);
    assert_string_equal(seen.error, "undecodable");

    /* No reject: dead-lettered only after max_deliveries, by fail. */
    none.scheme = "rej-none";
    none.reject = NULL;
    reject_on(&none, NULL);
    assert_int_equal(seen.rejects, 1);
    assert_int_equal(seen.fails, 1);
    assert_string_equal(seen.error, "rejected");

    /* A version 1 table ends before reject: whatever lies there is never
     * called (here a reject that would count). */
    v1.scheme = "rej-v1";
    v1.version = LOOM_TRANSPORT_OPS_V1;
    reject_on(&v1, "too big");
    assert_int_equal(seen.rejects, 1);
    assert_int_equal(seen.fails, 2);
    assert_string_equal(seen.error, "too big");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_registration_refuses_incomplete_or_clashing_transports),
        cmocka_unit_test_setup_teardown(test_open_finds_the_transport_by_scheme,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_publish_checks_every_message_before_the_transport, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_consumers_ack_fail_and_close_with_their_transport, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_reject_reaches_the_transports_reject_or_else_its_fail, setup,
            teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
