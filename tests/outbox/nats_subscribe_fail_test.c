/*
 * A nats consumer whose opening fails after its first fetching thread has
 * started (the thread of a later subject cannot be created: too many
 * threads) gives back what that thread already fetched and frees nothing
 * a queued batch still points to. It used to free the consumer at once:
 * the loop then delivered that batch through freed memory (the test
 * crashed with a segmentation fault).
 *
 * pthread_create() is replaced for the library's own calls at link time
 * (-Wl,--wrap=pthread_create): while fail_at is set, the call of that
 * index fails with EAGAIN, after a pause in which the fetcher already
 * running pulls the messages waiting for it and hands them to the loop.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "ntest.h"

int __real_pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                          void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                          void *(*fn)(void *), void *arg);

static atomic_int fail_at = -1; /* the call that fails; -1: none */
static atomic_int calls;        /* calls since fail_at was set */

int
__wrap_pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                      void *(*fn)(void *), void *arg)
{
    if (atomic_load(&fail_at) >= 0 &&
        atomic_fetch_add(&calls, 1) == atomic_load(&fail_at)) {
        uv_sleep(1500);
        return EAGAIN;
    }
    return __real_pthread_create(thread, attr, fn, arg);
}

/* For tpt_run(): done when the tpt_rec has seen payloads "0".."4". */
static int
all_five_seen(void *arg)
{
    const tpt_rec *r = arg;
    char p[16];

    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%d", i);
        if (tpt_rec_count(r, p) == 0)
            return 0;
    }
    return 1;
}

static void
test_nats_a_consumer_that_fails_to_open_gives_back_what_it_fetched(void **state)
{
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    const char *topics[2] = {"sf.a", "sf.b"};
    loom_consumer *c = NULL;
    tpt_rec r = {0};
    tpt_env e;

    (void) state;
    ntt_open(&e, NTT_OPTIONS);
    tpt_publish_seq(&e, "sf.a", 0, 5, 1);

    /* Two subjects, two fetching threads: the second cannot start. */
    cfg.group = "sf-g";
    cfg.topics = topics;
    cfg.n_topics = 2;
    atomic_store(&calls, 0);
    atomic_store(&fail_at, 1);
    assert_int_equal(loom_consumer_open(e.t, &cfg, tpt_rec_handle, &r, &c),
                     LOOM_EIO);
    atomic_store(&fail_at, -1);
    assert_null(c);
    assert_int_equal(atomic_load(&calls), 2);
    /* What the first thread handed the loop is dealt with now: given
     * back, never delivered to the handler of a consumer that failed. */
    ntt_quiet(&e, 300);
    assert_int_equal(r.n, 0);

    /* The group gets all five: those given back at once, any the server
     * sent to the stopped thread after its acknowledgement wait (at least
     * once: one may come twice). */
    ntt_rec_open(&e, "sf-g", "sf.a", 0, 0, &r);
    if (!tpt_run(&e, all_five_seen, &r, TPT_WAIT_MS))
        fail_msg("the group got %zu deliveries, not all of \"0\"..\"4\"", r.n);
    tpt_close(&e);
    tpt_rec_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_nats_a_consumer_that_fails_to_open_gives_back_what_it_fetched),
    };
    tpt_debug_from_env();
    return cmocka_run_group_tests_name("outbox.nats_subscribe_fail", tests,
                                       ntt_group_setup, ntt_group_teardown);
}
