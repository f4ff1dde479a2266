/*
 * Opening "nats://" URLs: every malformed URL or option is refused with
 * LOOM_EINVAL and a sentence naming what is wrong, before anything
 * connects; an unreachable server is LOOM_ECONN; a stream that exists
 * but does not capture the prefix is refused; of several servers a live
 * one is used; processes that start together and all find the stream
 * missing share the one that the first of them creates.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <nats/nats.h>

#include "ntest.h"

static loom_err
try_open(const char *url, char *err, size_t errlen)
{
    loom_runtime *rt = NULL;
    loom_transport *t = NULL;
    loom_err rc;

    assert_int_equal(loom_runtime_open(&rt, NULL), LOOM_OK);
    rc = loom_transport_open(rt, url, &t, err, errlen);
    if (rc == LOOM_OK) {
        assert_non_null(t);
        assert_string_equal(loom_transport_scheme(t), "nats");
    } else {
        assert_null(t);
    }
    loom_transport_close(t);
    loom_runtime_close(rt);
    return rc;
}

static void
test_nats_url_malformed_urls_are_refused_with_a_reason(void **state)
{
    static const struct {
        const char *url;
        const char *says;
    } bad[] = {
        {"nats://host:0", "bad server \"host:0\""},
        {"nats://host:65536", "bad server"},
        {"nats://host:42x", "bad server"},
        {"nats://a:4222,,b:4222", "bad server \"\""},
        {"nats://:4222", "bad server"},
        {"nats://host/path", "bad server"},
        {"nats://[::1", "bad server"},
        {"nats://h?bogus=1", "unknown option \"bogus=1\""},
        {"nats://h?stream=a.b", "bad value in \"stream=a.b\""},
        {"nats://h?stream=", "bad value"},
        {"nats://h?prefix=a..b", "bad value in \"prefix=a..b\""},
        {"nats://h?prefix=a.*", "bad value"},
        {"nats://h?ack_wait_ms=abc", "bad value in \"ack_wait_ms=abc\""},
        /* A number out of range says the range. */
        {"nats://h?ack_wait_ms=1",
         "bad value in \"ack_wait_ms=1\": it takes a whole number from 100 "
         "to 86400000"},
        {"nats://h?max_pending=0", "from 1 to 1000000"},
        {"nats://h?max_reconnect=-2", "from -1 to 1000000000"},
        /* The NATS clients' reply subjects are not a prefix to capture. */
        {"nats://h?prefix=_INBOX", "bad value in \"prefix=_INBOX\""},
        {"nats://h?prefix=_INBOX.loom", "not starting with _INBOX"},
        {"nats://h?dedup_window_ms=-5", "bad value"},
        {"nats://h?backoff_ms=500&backoff_max_ms=100",
         "backoff_max_ms is below backoff_ms"},
    };
    char err[512];

    (void) state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (try_open(bad[i].url, err, sizeof err) != LOOM_EINVAL)
            fail_msg("%s was not refused with LOOM_EINVAL", bad[i].url);
        if (strstr(err, bad[i].says) == NULL)
            fail_msg("%s: error \"%s\" does not say \"%s\"", bad[i].url, err,
                     bad[i].says);
    }
    /* No error buffer is fine too. */
    assert_int_equal(try_open("nats://h?x=1", NULL, 0), LOOM_EINVAL);
}

static void
test_nats_url_unreachable_server_is_a_connection_error(void **state)
{
    char err[512] = "";

    (void) state;
    assert_int_equal(
        try_open("nats://127.0.0.1:1?connect_timeout_ms=500", err, sizeof err),
        LOOM_ECONN);
    assert_non_null(strstr(err, "cannot connect to nats://127.0.0.1:1"));
}

static void
test_nats_url_a_live_server_among_several_is_used(void **state)
{
    char url[1024], err[512] = "";
    const char *server = ntt_server() + strlen("nats://");

    (void) state;
    snprintf(url, sizeof url, "nats://127.0.0.1:1,%s?stream=%s&prefix=%s",
             server, ntt_stream(), ntt_prefix());
    if (try_open(url, err, sizeof err) != LOOM_OK)
        fail_msg("%s: %s", url, err);
}

static void
test_nats_url_stream_must_capture_the_prefix(void **state)
{
    char url[1024], err[512] = "";

    (void) state;
    /* Creates the stream with subjects "<prefix>.>". */
    assert_int_equal(try_open(ntt_url(""), err, sizeof err), LOOM_OK);
    snprintf(url, sizeof url, "%s?stream=%s&prefix=elsewhere", ntt_server(),
             ntt_stream());
    assert_int_equal(try_open(url, err, sizeof err), LOOM_EINVAL);
    assert_non_null(strstr(err, "does not capture \"elsewhere.>\""));
    /* A longer prefix inside the captured one is fine. */
    snprintf(url, sizeof url, "%s?stream=%s&prefix=%s.sub", ntt_server(),
             ntt_stream(), ntt_prefix());
    assert_int_equal(try_open(url, err, sizeof err), LOOM_OK);
}

#define RACE_OPENERS 8
#define RACE_ROUNDS  10

typedef struct race_opener {
    pthread_t thread;
    pthread_barrier_t *go;
    const char *url;
    loom_err rc;
    char err[512];
} race_opener;

/* Opens a transport on this executable's stream once every opener is
 * ready (no cmocka asserts here: they are not for other threads). */
static void *
race_open(void *arg)
{
    race_opener *o = arg;
    loom_runtime *rt = NULL;
    loom_transport *t = NULL;

    o->rc = loom_runtime_open(&rt, NULL);
    pthread_barrier_wait(o->go);
    if (o->rc == LOOM_OK)
        o->rc = loom_transport_open(rt, o->url, &t, o->err, sizeof o->err);
    loom_transport_close(t);
    loom_runtime_close(rt);
    return NULL;
}

/* Service processes that start together each find the stream missing
 * and create it: the losers of that race are told the name exists or,
 * from nats-server, that their subjects overlap the stream just made.
 * Every one of them must open on the stream the winner made (found by
 * the fault campaign: the inventory process exited at start-up). */
static void
test_nats_url_processes_starting_together_share_one_new_stream(void **state)
{
    race_opener o[RACE_OPENERS];
    pthread_barrier_t go;
    char url[1024];

    (void) state;
    /* ntt_url() is static storage: built once, before the threads. */
    snprintf(url, sizeof url, "%s", ntt_url(""));
    for (int round = 0; round < RACE_ROUNDS; round++) {
        ntt_stream_delete();
        assert_int_equal(pthread_barrier_init(&go, NULL, RACE_OPENERS), 0);
        for (int i = 0; i < RACE_OPENERS; i++) {
            memset(&o[i], 0, sizeof o[i]);
            o[i].go = &go;
            o[i].url = url;
            assert_int_equal(
                pthread_create(&o[i].thread, NULL, race_open, &o[i]), 0);
        }
        for (int i = 0; i < RACE_OPENERS; i++)
            pthread_join(o[i].thread, NULL);
        pthread_barrier_destroy(&go);
        for (int i = 0; i < RACE_OPENERS; i++)
            if (o[i].rc != LOOM_OK)
                fail_msg("round %d, opener %d of %s: %s: %s", round, i, url,
                         loom_err_name(o[i].rc), o[i].err);
    }
}

/* A stream of another name that already captures the prefix is an
 * overlap the transport must not paper over: the open fails and says so,
 * where the race above ends in the stream of the right name. */
static void
test_nats_url_another_stream_on_the_subjects_is_an_error(void **state)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamConfig sc;
    jsErrCode jerr = 0;
    char other[64], subject[96], err[512] = "";
    const char *subjects[1] = {subject};

    (void) state;
    ntt_stream_delete();
    snprintf(other, sizeof other, "%sOTHER", ntt_stream());
    snprintf(subject, sizeof subject, "%s.>", ntt_prefix());
    assert_int_equal(natsConnection_ConnectTo(&nc, ntt_server()), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    jsStreamConfig_Init(&sc);
    sc.Name = other;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_MemoryStorage;
    assert_int_equal(js_AddStream(NULL, js, &sc, NULL, &jerr), NATS_OK);
    assert_int_equal(try_open(ntt_url(""), err, sizeof err), LOOM_EIO);
    assert_non_null(strstr(err, "cannot create stream"));
    assert_non_null(strstr(err, "10065"));
    assert_int_equal(js_DeleteStream(js, other, NULL, &jerr), NATS_OK);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

static void
test_nats_url_registration_and_errmsg(void **state)
{
    (void) state;
    assert_int_equal(loom_nats_register(), LOOM_OK);
    assert_int_equal(loom_nats_register(), LOOM_OK); /* again: fine */
    assert_string_equal(loom_nats_errmsg(NULL), "");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_nats_url_malformed_urls_are_refused_with_a_reason),
        cmocka_unit_test(
            test_nats_url_unreachable_server_is_a_connection_error),
        cmocka_unit_test(test_nats_url_a_live_server_among_several_is_used),
        cmocka_unit_test(test_nats_url_stream_must_capture_the_prefix),
        cmocka_unit_test(
            test_nats_url_processes_starting_together_share_one_new_stream),
        cmocka_unit_test(
            test_nats_url_another_stream_on_the_subjects_is_an_error),
        cmocka_unit_test(test_nats_url_registration_and_errmsg),
    };
    tpt_debug_from_env();
    return cmocka_run_group_tests_name("outbox.nats_url", tests,
                                       ntt_group_setup, ntt_group_teardown);
}
