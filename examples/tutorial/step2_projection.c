/*
 * Tutorial step 2 (docs/tutorial.md): projection "balances", a read
 * model of every account in table bank_read.accounts, kept up to date
 * from the events exactly once.
 *
 * It deposits interest on account alice, runs the projection on the
 * runtime until it has handled that deposit (a service would run until
 * SIGTERM), and prints the table.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "account.h"
#include "loom/projection.h"

/* The handlers write the model through `tx`: their statements commit
 * with the projection's checkpoint, so each event counts once. */
static loom_err
balances_setup(loom_tx *tx, void *arg)
{
    (void) arg;
    return loom_tx_exec(tx,
                        "CREATE TABLE accounts (id text PRIMARY KEY, "
                        "owner text NOT NULL, balance_cents bigint NOT NULL)",
                        0, NULL);
}

static loom_err
on_opened(loom_tx *tx, const loom_event *ev, void *arg)
{
    Bank__AccountOpened *m =
        bank__account_opened__unpack(NULL, ev->data_len, ev->data);
    const char *v[2] = {ev->stream + strlen("account-"), NULL};
    loom_err rc;

    (void) arg;
    if (m == NULL)
        return LOOM_EDECODE;
    v[1] = m->owner;
    rc = loom_tx_exec(tx, "INSERT INTO accounts VALUES ($1, $2, 0)", 2, v);
    bank__account_opened__free_unpacked(m, NULL);
    return rc;
}

/* Adds `cents` to the balance of the event's account. */
static loom_err
add(loom_tx *tx, const loom_event *ev, int64_t cents)
{
    char amount[32];
    const char *v[2] = {ev->stream + strlen("account-"), amount};

    snprintf(amount, sizeof amount, "%" PRId64, cents);
    return loom_tx_exec(tx,
                        "UPDATE accounts SET balance_cents = balance_cents + "
                        "$2::bigint WHERE id = $1",
                        2, v);
}

typedef struct watch {
    loom_runtime *rt;
    const char *reference; /* stop once this deposit is handled */
} watch;

static loom_err
on_deposited(loom_tx *tx, const loom_event *ev, void *arg)
{
    watch *w = arg;
    Bank__MoneyDeposited *m =
        bank__money_deposited__unpack(NULL, ev->data_len, ev->data);
    loom_err rc;

    if (m == NULL)
        return LOOM_EDECODE;
    rc = add(tx, ev, m->cents);
    if (rc == LOOM_OK && strcmp(m->reference, w->reference) == 0)
        loom_runtime_stop(w->rt); /* graceful: this batch commits first */
    bank__money_deposited__free_unpacked(m, NULL);
    return rc;
}

static loom_err
on_withdrawn(loom_tx *tx, const loom_event *ev, void *arg)
{
    Bank__MoneyWithdrawn *m =
        bank__money_withdrawn__unpack(NULL, ev->data_len, ev->data);
    loom_err rc;

    (void) arg;
    if (m == NULL)
        return LOOM_EDECODE;
    rc = add(tx, ev, -m->cents);
    bank__money_withdrawn__free_unpacked(m, NULL);
    return rc;
}

static const loom_projection_handler balances_handlers[] = {
    {"bank.AccountOpened", on_opened},
    {"bank.MoneyDeposited", on_deposited},
    {"bank.MoneyWithdrawn", on_withdrawn},
};

/* Runs the projection until it has handled the deposit `reference`. */
static loom_err
follow(const char *reference)
{
    loom_runtime_config rcfg = LOOM_RUNTIME_CONFIG_INIT;
    loom_runtime *rt;
    loom_projection *p = NULL;
    watch w = {NULL, reference};
    loom_projection_def def = {
        .name = "balances",
        .schema = "bank_read", /* the model's tables live here */
        .handlers = balances_handlers,
        .n_handlers = sizeof balances_handlers / sizeof balances_handlers[0],
        .setup = balances_setup,
        .arg = &w,
    };
    loom_err rc;

    rcfg.handle_signals = 1; /* SIGINT, SIGTERM: a graceful stop */
    rc = loom_runtime_open(&rt, &rcfg);
    if (rc != LOOM_OK)
        return rc;
    w.rt = rt;
    rc = loom_projection_start(rt, &def, NULL, &p);
    if (rc == LOOM_OK)
        rc = loom_runtime_run(rt);
    loom_projection_close(p);
    loom_runtime_close(rt);
    return rc;
}

/* Prints the read model, as any SQL reader sees it. */
static int
print_model(void)
{
    const char *url = getenv("LOOM_DATABASE_URL");
    PGconn *c = PQconnectdb(url != NULL ? url : "");
    PGresult *r = PQexec(c, "SELECT id, owner, balance_cents "
                            "FROM bank_read.accounts ORDER BY id");
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK;

    for (int i = 0; ok && i < PQntuples(r); i++)
        printf("bank_read.accounts: %-6s %-6s %s cents\n", PQgetvalue(r, i, 0),
               PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
    if (!ok)
        fprintf(stderr, "step2: %s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return ok ? 0 : 1;
}

int
main(void)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s;
    loom_uuid u;
    char ref[16 + LOOM_UUID_STRLEN], err[512];
    money interest = {25, ref};
    loom_err rc;

    cfg.migrate = LOOM_MIGRATE_AUTO;
    if (loom_store_open(&s, &cfg, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "step2: %s\n", err);
        return 1;
    }
    loom_uuid_generate(&u); /* a reference of this run's own */
    strcpy(ref, "interest ");
    loom_uuid_format(&u, ref + strlen(ref));
    rc = loom_aggregate_execute(s, &account_type, "alice", account_deposit,
                                &interest, NULL, NULL);
    if (rc != LOOM_OK) {
        fprintf(stderr, "step2: deposit: %s (run step 1 first)\n",
                loom_err_name(rc));
        loom_store_close(s);
        return 1;
    }
    loom_store_close(s);
    rc = follow(ref);
    if (rc != LOOM_OK) {
        fprintf(stderr, "step2: projection: %s\n", loom_err_name(rc));
        return 1;
    }
    return print_model();
}
