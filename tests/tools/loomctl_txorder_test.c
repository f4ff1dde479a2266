/*
 * loomctl orders events by their transaction id as a number: `tail`
 * (newest events), `stats` (the event rate) and `outbox dlq` select
 * tx::text, and an unqualified "ORDER BY tx" would sort that text column
 * ("999" after "1000"). Events are inserted with transaction ids 999 and
 * 1000 to meet that case, whatever the server's own ids are.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lctest.h"
#include "pgtest.h"

static void
test_loomctl_tail_and_stats_order_transaction_ids_as_numbers(void **state)
{
    char line[4096], stream[64];
    run r;

    (void) state;
    r = lc("tail --limit 1 --json");
    assert_int_equal(r.rc, 0);
    line_at(r.out, 0, line, sizeof line);
    get_str(line, "stream", stream, sizeof stream);
    assert_string_equal(stream, "a-2");
    run_free(&r);

    r = lc("tail --category a --limit 1 --json");
    assert_int_equal(r.rc, 0);
    line_at(r.out, 0, line, sizeof line);
    get_str(line, "stream", stream, sizeof stream);
    assert_string_equal(stream, "a-2");
    run_free(&r);

    r = lc("stats");
    if (r.rc != 0)
        fail_msg("loomctl stats: %s", r.err);
    run_free(&r);
}

static int
group_setup(void **state)
{
    run r;

    (void) state;
    loomt_db_create("loomctl_txorder");
    setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
    r = lc("migrate");
    assert_int_equal(r.rc, 0);
    run_free(&r);
    loomt_sql_exec("INSERT INTO loom.events (tx, stream, category, version, "
                   "event_id, type, schema_version, data) VALUES "
                   "('999', 'a-1', 'a', 0, gen_random_uuid(), 't', 1, ''), "
                   "('1000', 'a-2', 'a', 0, gen_random_uuid(), 't', 1, '')");
    return 0;
}

static int
group_teardown(void **state)
{
    (void) state;
    loomt_db_drop();
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_loomctl_tail_and_stats_order_transaction_ids_as_numbers),
    };
    return cmocka_run_group_tests_name("loomctl.txorder", tests, group_setup,
                                       group_teardown);
}
