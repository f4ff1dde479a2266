/*
 * The tutorial's programs (examples/tutorial, docs/tutorial.md) run in
 * order against a database of their own, as a reader runs them: each
 * must exit 0, print what the tutorial says it prints, and leave the
 * database as the tutorial describes. The tests run in order: each step
 * builds on what the previous one wrote.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "pgtest.h"

/* Runs a tutorial program with LOOM_DATABASE_URL pointing at the test
 * database; returns its stdout (static storage), failing the test unless
 * it exits 0. */
static const char *
run_step(const char *path)
{
    static char out[16384];
    char cmd[4200];
    size_t n = 0, got;
    FILE *p;
    int status;

    snprintf(cmd, sizeof cmd, "'%s'", path);
    p = popen(cmd, "r");
    assert_non_null(p);
    while (n + 1 < sizeof out &&
           (got = fread(out + n, 1, sizeof out - 1 - n, p)) > 0) {
        n += got;
    }
    out[n] = '\0';
    status = pclose(p);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail_msg("%s failed (status %d), its output:\n%s", path, status, out);
    }
    return out;
}

static void
assert_prints(const char *out, const char *line)
{
    if (strstr(out, line) == NULL) {
        fail_msg("expected \"%s\" in the output:\n%s", line, out);
    }
}

static int
group_setup(void **state)
{
    (void) state;
    setenv("LOOM_DATABASE_URL", loomt_db_create("tutorial"), 1);
    return 0;
}

static int
group_teardown(void **state)
{
    (void) state;
    loomt_db_drop();
    return 0;
}

static void
test_tutorial_step1_runs_commands_and_refuses_an_overdraft(void **state)
{
    const char *out;

    (void) state;
    out = run_step(TUTORIAL_STEP1);
    assert_prints(out, "alice  withdraw 1200          -> version 2");
    assert_prints(out, "alice  withdraw 1000000       -> refused "
                       "(LOOM_EHANDLER)");
    assert_prints(out, "account-alice: owner Alice, balance 3800 cents, "
                       "version 2");
    /* The refused command appended nothing. */
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM loom.events WHERE "
                                  "stream = 'account-alice'"),
                     3);
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM loom.events WHERE "
                                  "stream = 'account-bob'"),
                     2);
}

static void
test_tutorial_step2_projection_holds_every_balance(void **state)
{
    const char *out;

    (void) state;
    out = run_step(TUTORIAL_STEP2);
    assert_prints(out, "bank_read.accounts: alice  Alice  3825 cents");
    assert_prints(out, "bank_read.accounts: bob    Bob    5000 cents");
    assert_int_equal(loomt_sql_ll("SELECT balance_cents FROM "
                                  "bank_read.accounts WHERE id = 'alice'"),
                     3825);
}

static void
test_tutorial_step3_transfers_complete_or_compensate(void **state)
{
    const char *out;

    (void) state;
    out = run_step(TUTORIAL_STEP3);
    assert_prints(out, "transfer 1: COMPLETED after 3 transitions");
    assert_prints(out, "transfer 2: COMPENSATED after 4 transitions");
    assert_prints(out, "transfer 3: COMPENSATED after 2 transitions");
    /* 3825 - 1000 to bob; the 500 to carol came back. */
    assert_prints(out, "account-alice: 2825 cents");
    assert_prints(out, "account-bob: 6000 cents");
    /* Transfer 2 was debited, failed to credit and was refunded: its
     * log, in order. */
    assert_int_equal(
        loomt_sql_ll("SELECT count(*) FROM loom.saga_instances i WHERE "
                     "state = 'COMPENSATED' AND (SELECT string_agg(kind || "
                     "coalesce(':' || step_name, ''), ',' ORDER BY id) FROM "
                     "loom.saga_log WHERE saga_id = i.id) = "
                     "'started,command:Debit,reply:Debit,command:Credit,"
                     "failure:Credit,compensate:Refund,command:Refund,"
                     "reply:Refund,compensated'"),
        1);
    /* Transfer 3's debit was refused: nothing to compensate. */
    assert_int_equal(
        loomt_sql_ll("SELECT count(*) FROM loom.saga_instances i WHERE "
                     "state = 'COMPENSATED' AND (SELECT string_agg(kind || "
                     "coalesce(':' || step_name, ''), ',' ORDER BY id) FROM "
                     "loom.saga_log WHERE saga_id = i.id) = "
                     "'started,command:Debit,failure:Debit,compensated'"),
        1);
    /* The participant's ledger: two debits, one credit, one refund. */
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM loom.events WHERE "
                                  "type = 'bank.TransferDebited'"),
                     2);
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM loom.events WHERE "
                                  "type = 'bank.TransferCredited'"),
                     1);
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM loom.events WHERE "
                                  "type = 'bank.TransferRefunded'"),
                     1);
    /* Nothing was dead-lettered. */
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM loom.topics WHERE "
                                  "name LIKE '%.dlq'"),
                     0);
}

/* The projection resumes from its checkpoint and handles the transfers'
 * events once each: the model equals the aggregates (plus the interest
 * this run deposits). */
static void
test_tutorial_step2_again_catches_up_exactly_once(void **state)
{
    const char *out;

    (void) state;
    out = run_step(TUTORIAL_STEP2);
    assert_prints(out, "bank_read.accounts: alice  Alice  2850 cents");
    assert_prints(out, "bank_read.accounts: bob    Bob    6000 cents");
    assert_int_equal(loomt_sql_ll("SELECT count(*) FROM bank_read.accounts"),
                     2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_tutorial_step1_runs_commands_and_refuses_an_overdraft),
        cmocka_unit_test(test_tutorial_step2_projection_holds_every_balance),
        cmocka_unit_test(test_tutorial_step3_transfers_complete_or_compensate),
        cmocka_unit_test(test_tutorial_step2_again_catches_up_exactly_once),
    };

    return cmocka_run_group_tests_name("tutorial", tests, group_setup,
                                       group_teardown);
}
