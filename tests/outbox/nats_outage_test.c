/*
 * A publish the server cannot acknowledge fails, and the transport lives
 * on: with a nats-server of its own (scripts/nats.sh in a temporary
 * directory, so no other test is disturbed), the test stops the server,
 * publishes, and gets LOOM_ECONN after publish_timeout_ms; starts it
 * again and publishes the same message (same id) until it is taken, as
 * an outbox relay does; and the consumer then gets the message once,
 * though libnats may have sent the first attempt too once reconnected
 * (JetStream's deduplication drops the second copy). And publishes
 * racing the server's stop each call back once, and touch no call that
 * has finished; nor does a dead letter refused once the connection closed.
 *
 * Needs nats-server on PATH (Debian package nats-server, installed by
 * scripts/deps.sh); it fails without it.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <nats/nats.h>
#include <uv.h>

#include "ntest.h"

static char og_dir[64];

static int
og_setup(void **state)
{
    (void) state;
    snprintf(og_dir, sizeof og_dir, "/tmp/loom-nats-outage.XXXXXX");
    if (mkdtemp(og_dir) == NULL)
        return -1;
    return 0;
}

static int
og_teardown(void **state)
{
    char line[256];

    (void) state;
    snprintf(line, sizeof line, "%s destroy %s >/dev/null 2>&1", LOOM_NATS_SH,
             og_dir);
    return system(line) == 0 ? 0 : -1;
}

/* Opens e's runtime and a transport on `base` with the test's stream and
 * the given options. Fails the test on error. */
static void
og_open(tpt_env *e, const char *base, const char *options)
{
    char url[512], err[512];

    snprintf(url, sizeof url,
             "%s?prefix=outage&publish_timeout_ms=500&connect_timeout_ms=1000&"
             "%s&" NTT_OPTIONS,
             base, options);
    memset(e, 0, sizeof *e);
    assert_int_equal(loom_runtime_open(&e->rt, NULL), LOOM_OK);
    if (loom_transport_open(e->rt, url, &e->t, err, sizeof err) != LOOM_OK)
        fail_msg("%s: %s", url, err);
    uv_timer_init(loom_runtime_loop(e->rt), &e->tick);
    e->tick.data = e;
}

static void
test_nats_outage_unacknowledged_publish_fails_then_goes_once(void **state)
{
    char base[256], url[512];
    tpt_env e;
    tpt_rec r = {0};
    loom_message m;
    loom_uuid id;
    loom_err rc = LOOM_ECONN;
    int64_t t0, waited;

    (void) state;
    ntt_nats_sh(og_dir, "start", base, sizeof base);
    og_open(&e, base, "stream=OUTAGE&reconnect_wait_ms=100");
    tpt_msg_init(&m, "outage.t", "k", "before");
    assert_int_equal(tpt_publish_wait(&e, &m, 1), LOOM_OK);

    ntt_nats_sh(og_dir, "stop", NULL, 0);
    assert_int_equal(loom_uuid_generate(&id), LOOM_OK);
    tpt_msg_init(&m, "outage.t", "k", "during");
    m.id = id;
    t0 = est_now_ms();
    /* Not acknowledged: LOOM_ECONN after publish_timeout_ms. */
    assert_int_equal(tpt_publish_wait(&e, &m, 1), LOOM_ECONN);
    waited = est_now_ms() - t0;
    if (waited < 400 || waited > 5000)
        fail_msg("the failure came after %lld ms (publish_timeout_ms 500)",
                 (long long) waited);

    ntt_nats_sh(og_dir, "start", url, sizeof url);
    assert_true(strncmp(url, base, strlen(base)) == 0); /* same port */
    /* Again with the same id until it is taken, as a relay would. */
    t0 = est_now_ms();
    while (rc != LOOM_OK && est_now_ms() - t0 < 20000) {
        rc = tpt_publish_wait(&e, &m, 1);
        if (rc != LOOM_OK)
            tpt_run(&e, NULL, NULL, 100);
    }
    assert_int_equal(rc, LOOM_OK);
    tpt_msg_init(&m, "outage.t", "k", "after");
    assert_int_equal(tpt_publish_wait(&e, &m, 1), LOOM_OK);

    ntt_rec_open(&e, "outage-g", "outage.t", 0, 0, &r);
    tpt_rec_wait(&e, &r, 3);
    ntt_quiet(&e, 500);
    assert_int_equal(r.n, 3);
    assert_int_equal(tpt_rec_count(&r, "before"), 1);
    assert_int_equal(tpt_rec_count(&r, "during"), 1);
    assert_int_equal(tpt_rec_count(&r, "after"), 1);
    assert_memory_equal(ntt_nth(&r, "during", 0)->id.bytes, id.bytes, 16);
    tpt_close(&e);
    tpt_rec_free(&r);
}

/* A transport whose connection closed for good (max_reconnect 0) before
 * any publish went through: publishing fails, and closing it is clean.
 * libnats 3.4 has no table of pending publishes then, and the close
 * asked for it: a NULL dereference (a relay stopped with Ctrl-C after
 * its nats-server had gone away crashed so). */
static void
test_nats_outage_closed_before_any_publish_closes_cleanly(void **state)
{
    char base[256];
    tpt_env e;
    loom_message m;
    tpt_pcall p = {0, LOOM_OK, 0};
    tpt_pcall *ps[2] = {&p, NULL};
    loom_err rc;

    (void) state;
    ntt_nats_sh(og_dir, "start", base, sizeof base);
    og_open(&e, base, "stream=OUTAGE3&max_reconnect=0");
    ntt_nats_sh(og_dir, "stop", NULL, 0);
    tpt_run(&e, NULL, NULL, 500); /* the connection is closed by now */
    tpt_msg_init(&m, "outage.closed", "k", "never");
    /* Refused at the call or in the callback: either way not stored. */
    rc = loom_transport_publish(e.t, &m, 1, tpt_pcall_record, &p);
    if (rc == LOOM_OK) {
        assert_true(tpt_run(&e, tpt_pcalls_done, ps, TPT_WAIT_MS));
        rc = p.rc;
    }
    assert_int_not_equal(rc, LOOM_OK);
    tpt_close(&e); /* crashed here */
}

/* Publishes racing a server that stops: one-message calls, up to 64
 * awaiting their callbacks, started from an idle handle for 0.8 s before
 * the stop and 0.5 s after it. Publishes that fail at once, acknowledged
 * ones and lost ones all finish their call on the loop while the I/O
 * thread may still be handing the call's message to libnats: a call freed
 * under that thread was a use-after-free (and a double natsMsg_Destroy),
 * which AddressSanitizer (build-asan/) aborts on. */
typedef struct og_race {
    loom_transport *t;
    uv_idle_t idle;
    long started, called_back, failed;
    int stop;
} og_race;

static void
og_race_cb(loom_err rc, size_t n, void *arg)
{
    og_race *r = arg;

    (void) n;
    r->called_back++;
    r->failed += rc != LOOM_OK;
}

static void
og_race_idle(uv_idle_t *h)
{
    og_race *r = h->data;
    loom_message m;

    if (r->stop || r->started - r->called_back >= 64)
        return;
    tpt_msg_init(&m, "outage.race", NULL, "x");
    if (loom_transport_publish(r->t, &m, 1, og_race_cb, r) == LOOM_OK)
        r->started++;
}

static int
og_race_settled(void *arg)
{
    og_race *r = arg;

    return r->stop && r->called_back == r->started;
}

static void
test_nats_outage_publishes_racing_a_stop_call_back_once_each(void **state)
{
    char base[256];
    tpt_env e;
    og_race r;

    (void) state;
    ntt_nats_sh(og_dir, "start", base, sizeof base);
    /* No reconnect: once the server is gone every publish fails at once,
     * the fastest way through the race. */
    og_open(&e, base, "stream=RACE&max_reconnect=0");
    memset(&r, 0, sizeof r);
    r.t = e.t;
    r.idle.data = &r;
    uv_idle_init(loom_runtime_loop(e.rt), &r.idle);
    uv_idle_start(&r.idle, og_race_idle);
    tpt_run(&e, NULL, NULL, 800);
    ntt_nats_sh(og_dir, "stop", NULL, 0);
    tpt_run(&e, NULL, NULL, 500);
    r.stop = 1;
    uv_idle_stop(&r.idle);
    uv_close((uv_handle_t *) &r.idle, NULL);
    /* Acknowledgements lost with the connection come back when the
     * transport closes, if not before. */
    tpt_run(&e, og_race_settled, &r, 3000);
    loom_transport_close(e.t);
    e.t = NULL;
    tpt_run(&e, og_race_settled, &r, 3000);
    if (r.called_back != r.started)
        fail_msg("%ld calls started, %ld called back", r.started,
                 r.called_back);
    assert_true(r.started > 100);
    assert_true(r.failed > 0); /* the stop was raced */
    tpt_close(&e);
}

/* A message rejected once the connection has closed for good: its dead
 * letter cannot be published (libnats refuses it at once) and the entry
 * is released on the I/O thread, which must not read the entry's job
 * afterwards (it did, to unlink it from its queue: a use-after-free that
 * AddressSanitizer aborts on). The transport then closes cleanly. */
static void
test_nats_outage_a_dead_letter_refused_at_once_is_let_go(void **state)
{
    char base[256];
    tpt_env e;
    tpt_rec r = {0};
    loom_message m;

    (void) state;
    ntt_nats_sh(og_dir, "start", base, sizeof base);
    og_open(&e, base, "stream=DEADCLOSED&max_reconnect=0");
    tpt_msg_init(&m, "outage.dead", "k", "poison");
    assert_int_equal(tpt_publish_wait(&e, &m, 1), LOOM_OK);
    r.hold = 1;
    ntt_rec_open(&e, "outage-dead-g", "outage.dead", 0, 0, &r);
    tpt_rec_wait(&e, &r, 1);
    ntt_nats_sh(og_dir, "stop", NULL, 0);
    tpt_run(&e, NULL, NULL, 500); /* libnats closes the connection */
    assert_int_equal(loom_consumer_reject(r.c, r.m[0].held, "poison"), LOOM_OK);
    r.m[0].held = NULL;
    tpt_run(&e, NULL, NULL, 500);
    tpt_close(&e);
    tpt_rec_free(&r);
}

/* Every libnats object was destroyed (see ntt_group_teardown()). */
static int
og_group_teardown(void **state)
{
    (void) state;
    return nats_CloseAndWait(10000) == NATS_OK ? 0 : -1;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_nats_outage_unacknowledged_publish_fails_then_goes_once,
            og_setup, og_teardown),
        cmocka_unit_test_setup_teardown(
            test_nats_outage_publishes_racing_a_stop_call_back_once_each,
            og_setup, og_teardown),
        cmocka_unit_test_setup_teardown(
            test_nats_outage_a_dead_letter_refused_at_once_is_let_go, og_setup,
            og_teardown),
        cmocka_unit_test_setup_teardown(
            test_nats_outage_closed_before_any_publish_closes_cleanly, og_setup,
            og_teardown),
    };
    tpt_debug_from_env();
    return cmocka_run_group_tests_name("outbox.nats_outage", tests, NULL,
                                       og_group_teardown);
}
