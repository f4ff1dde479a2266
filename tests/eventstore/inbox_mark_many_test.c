/*
 * The inbox marks of a batch as one statement (loom.inbox_mark_many(),
 * schema 9), which the inbox consumer queues first in each delivered
 * batch's transaction: all of them recorded, or LM015 and none.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "estest.h"

/* Marks of a batch: LM015 when any is recorded already or repeated, and
 * then none of them is; all recorded otherwise. */
static void
test_inbox_mark_many_is_all_or_nothing(void **state)
{
    PGconn *c = est_connect(loomt_dsn());

    (void) state;
    est_exec(c, "SELECT loom.inbox_mark_many('amc', ARRAY["
                "'00000000-0000-7000-8000-000000000001'::uuid, "
                "'00000000-0000-7000-8000-000000000002'])");
    assert_int_equal(est_ll("SELECT count(*) FROM loom.inbox WHERE consumer = "
                            "'amc'"),
                     2);
    est_exec_fails(c,
                   "SELECT loom.inbox_mark_many('amc', ARRAY["
                   "'00000000-0000-7000-8000-000000000003'::uuid, "
                   "'00000000-0000-7000-8000-000000000002'])",
                   "LM015");
    est_exec_fails(c,
                   "SELECT loom.inbox_mark_many('amc', ARRAY["
                   "'00000000-0000-7000-8000-000000000004'::uuid, "
                   "'00000000-0000-7000-8000-000000000004'])",
                   "LM015");
    assert_int_equal(est_ll("SELECT count(*) FROM loom.inbox WHERE consumer = "
                            "'amc'"),
                     2);
    /* Another consumer has an inbox of its own. */
    est_exec(c, "SELECT loom.inbox_mark_many('amd', ARRAY["
                "'00000000-0000-7000-8000-000000000002'::uuid])");
    PQfinish(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_inbox_mark_many_is_all_or_nothing,
                                        est_setup, est_teardown),
    };
    return cmocka_run_group_tests(tests, est_group_setup, est_group_teardown);
}
