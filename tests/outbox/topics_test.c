/*
 * The built-in topic streams against a real PostgreSQL: what a producer
 * publishes reaches every group once, in key order; members of one group
 * share the partitions; offsets survive a restart; failures come back
 * after a backoff and end in the dead-letter topic; delays, deduplication
 * and patterns; bad input is refused with a clear error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "tptest.h"

static loom_consumer *members[2];

/* Each of the two members holds half of the 8 partitions. */
static int
balanced(void *arg)
{
    loom_topics_consumer_stats st[2];

    (void) arg;
    for (int i = 0; i < 2; i++)
        if (loom_topics_consumer_stats_get(members[i], &st[i]) != LOOM_OK ||
            st[i].partitions != 4)
            return 0;
    return 1;
}

static int
two_seen(void *arg)
{
    tpt_seen **s = arg;
    return s[0]->n + s[1]->n >= 2000;
}

/* Per key, the sequence numbers arrive in order from 0 without gaps;
 * returns how many keys `s` saw. */
static int
check_key_order(const tpt_seen *s, int keys)
{
    int64_t *next = calloc((size_t) keys, sizeof *next);
    int seen = 0;

    for (size_t i = 0; i < s->n; i++) {
        int k = atoi(s->keys[i] + 1);
        assert_in_range(k, 0, keys - 1);
        if (s->seq[i] != next[k])
            fail_msg("key k%d: got %lld, expected %lld (delivery %zu)", k,
                     (long long) s->seq[i], (long long) next[k], i);
        seen += next[k]++ == 0;
    }
    free(next);
    return seen;
}

static void
one_group_two_members_share_partitions_in_key_order(void **state)
{
    tpt_env e;
    tpt_seen a = {0}, b = {0};
    tpt_seen *both[2] = {&a, &b};
    const char *topics[] = {"orders"};
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_consumer *ca, *cb;

    (void) state;
    a.fail_seq = b.fail_seq = -1;
    loomt_sql_exec("SELECT loom.topic_create('orders', 8, NULL, NULL, NULL, "
                   "NULL)");
    tpt_open(&e, "");
    cfg.group = "billing";
    cfg.topics = topics;
    cfg.n_topics = 1;
    assert_int_equal(loom_consumer_open(e.t, &cfg, tpt_record, &a, &ca),
                     LOOM_OK);
    assert_int_equal(loom_consumer_open(e.t, &cfg, tpt_record, &b, &cb),
                     LOOM_OK);
    members[0] = ca;
    members[1] = cb;
    /* The second join rebalances the group: the first member hands over
     * half its partitions (within a heartbeat at most). */
    assert_true(tpt_run(&e, balanced, NULL, 10000));
    tpt_publish(&e, "orders", 2000, 20, 0);
    assert_true(tpt_run(&e, two_seen, both, 60000));
    /* Both got partitions; no message twice (no failures here). */
    assert_true(a.n > 0);
    assert_true(b.n > 0);
    assert_int_equal(a.n + b.n, 2000);
    /* A key lives in one partition, so one member sees all of it, in
     * order. */
    assert_int_equal(check_key_order(&a, 20) + check_key_order(&b, 20), 20);
    loom_consumer_close(ca);
    loom_consumer_close(cb);
    assert_int_equal(est_ll("SELECT sum(lag) FROM loom.topic_lag "
                            "WHERE group_name = 'billing'"),
                     0);
    tpt_close(&e);
    tpt_seen_free(&a);
    tpt_seen_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            one_group_two_members_share_partitions_in_key_order, est_setup,
            est_teardown),
    };
    return cmocka_run_group_tests(tests, est_group_setup, est_group_teardown);
}
