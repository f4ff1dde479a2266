/*
 * Tutorial step 1 (docs/tutorial.md): open two accounts, move money with
 * commands, watch one refused, and load an account back.
 *
 *     LOOM_DATABASE_URL=postgresql://... build/examples/tutorial/tutorial-step1
 *
 * Run again, it finds the accounts open and deposits once more.
 */
#include <inttypes.h>
#include <stdio.h>

#include "account.h"

/* Runs one command on account `id`; prints what happened. */
static loom_err
run(loom_store *s, const char *id, loom_decide_fn cmd, void *arg,
    const char *what)
{
    loom_execute_result r;
    loom_err rc =
        loom_aggregate_execute(s, &account_type, id, cmd, arg, NULL, &r);

    if (rc == LOOM_OK)
        printf("%-6s %-22s -> version %" PRId64 "\n", id, what, r.version);
    else
        printf("%-6s %-22s -> refused (%s)\n", id, what, loom_err_name(rc));
    return rc;
}

int
main(void)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT; /* $LOOM_DATABASE_URL */
    loom_store *s;
    char err[512];
    money salary = {5000, "salary"}, rent = {1200, "rent"};
    money too_much = {1000000, "a yacht"};
    account a;
    int64_t version;

    cfg.migrate = LOOM_MIGRATE_AUTO; /* create or upgrade schema loom */
    if (loom_store_open(&s, &cfg, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "step1: %s\n", err);
        return 1;
    }
    run(s, "alice", account_open, "Alice", "open"); /* refused the 2nd time */
    run(s, "bob", account_open, "Bob", "open");
    if (run(s, "alice", account_deposit, &salary, "deposit 5000") ||
        run(s, "alice", account_withdraw, &rent, "withdraw 1200") ||
        run(s, "bob", account_deposit, &salary, "deposit 5000") ||
        run(s, "alice", account_withdraw, &too_much, "withdraw 1000000") !=
            LOOM_EHANDLER)
        goto fail;
    if (loom_aggregate_load(s, &account_type, "alice", &a, &version) != LOOM_OK)
        goto fail;
    printf("account-alice: owner %s, balance %" PRId64
           " cents, version %" PRId64 "\n",
           a.owner, a.balance, version);
    loom_store_close(s);
    return 0;
fail:
    fprintf(stderr, "step1: %s\n", loom_store_errmsg(s));
    loom_store_close(s);
    return 1;
}
