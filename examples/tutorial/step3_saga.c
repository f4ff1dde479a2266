/*
 * Tutorial step 3 (docs/tutorial.md): saga bank.TransferMoney moves
 * money between the accounts of step 1. This one process runs all of
 * it on one runtime: the topics transport, the outbox relay, the
 * orchestrator and the accounts service (the participant). In
 * production they are separate processes, as many of each as you like.
 *
 * It starts three transfers: one that completes, one whose credit fails
 * (no such account: the debit is refunded) and one whose debit is
 * refused (insufficient funds: nothing to undo), waits for all three to
 * end and prints how each ended.
 */
#include <stdio.h>
#include <string.h>

#include "account.h"
#include "loom/outbox.h"
#include "loom/topics.h"

#define N_TRANSFERS 3

typedef struct run {
    loom_runtime *rt;
    int ended;
} run;

/* The orchestrator calls this after a saga's last transition committed. */
static void
on_ended(void *arg, const char *id, loom_saga_state state)
{
    run *r = arg;

    printf("saga %s: %s\n", id, loom_saga_state_name(state));
    if (++r->ended == N_TRANSFERS)
        loom_runtime_stop(r->rt);
}

/* The topics the saga uses: the participant's and the replies'. */
static loom_err
create_topics(loom_store *s)
{
    const char *names[] = {"bank.accounts",
                           bank__transfer_money__saga.reply_topic};
    loom_topic_config tc = LOOM_TOPIC_CONFIG_INIT;

    tc.partitions = 4;
    for (int i = 0; i < 2; i++) {
        loom_err rc = loom_topic_create(s, names[i], &tc);
        if (rc != LOOM_OK && rc != LOOM_EDUPLICATE)
            return rc;
    }
    return LOOM_OK;
}

/* Starts the transfers, each under a fresh saga id. */
static loom_err
start_transfers(loom_store *s, char ids[N_TRANSFERS][LOOM_UUID_STRLEN + 2])
{
    static const struct {
        const char *source, *target;
        int64_t cents;
    } t[N_TRANSFERS] = {
        {"alice", "bob", 1000},  /* completes */
        {"alice", "carol", 500}, /* no account carol: refunded */
        {"bob", "alice", 999999} /* refused: bob has not that much */
    };

    for (int i = 0; i < N_TRANSFERS; i++) {
        Bank__Transfer data = BANK__TRANSFER__INIT;
        loom_uuid u;
        loom_err rc = loom_uuid_generate(&u);

        if (rc != LOOM_OK)
            return rc;
        strcpy(ids[i], "t-");
        loom_uuid_format(&u, ids[i] + 2);
        data.source = (char *) t[i].source;
        data.target = (char *) t[i].target;
        data.cents = t[i].cents;
        rc = loom_saga_start(s, &bank__transfer_money__saga, ids[i], &data.base,
                             NULL, NULL);
        if (rc != LOOM_OK)
            return rc;
    }
    return LOOM_OK;
}

/* Runs the relay, the orchestrator and the participant until every
 * transfer has ended. */
static int
serve(void)
{
    const loom_saga_def *sagas[] = {&bank__transfer_money__saga};
    const loom_participant_def *parts[] = {&bank__bank_accounts__participant};
    loom_runtime_config rcfg = LOOM_RUNTIME_CONFIG_INIT;
    loom_relay_config relay_cfg = LOOM_RELAY_CONFIG_INIT;
    loom_orchestrator_config ocfg = LOOM_ORCHESTRATOR_CONFIG_INIT;
    loom_participant_config pcfg = LOOM_PARTICIPANT_CONFIG_INIT;
    loom_transport *t = NULL;
    loom_relay *relay = NULL;
    loom_orchestrator *o = NULL;
    loom_participant *p = NULL;
    run r = {NULL, 0};
    char err[512] = "";
    loom_err rc;

    rcfg.handle_signals = 1;
    rc = loom_runtime_open(&r.rt, &rcfg);
    if (rc != LOOM_OK)
        return 1;
    rc = loom_transport_open(r.rt, "topics://", &t, err, sizeof err);
    if (rc == LOOM_OK) { /* publishes what the outbox holds */
        relay_cfg.transport = t;
        rc = loom_relay_start(r.rt, &relay_cfg, &relay, err, sizeof err);
    }
    if (rc == LOOM_OK) { /* runs the sagas */
        ocfg.transport = t;
        ocfg.defs = sagas;
        ocfg.n_defs = 1;
        ocfg.ended = on_ended;
        ocfg.ended_arg = &r;
        rc = loom_orchestrator_open(r.rt, &ocfg, &o, err, sizeof err);
    }
    if (rc == LOOM_OK) { /* the accounts service */
        pcfg.transport = t;
        pcfg.defs = parts;
        pcfg.n_defs = 1;
        rc = loom_participant_open(r.rt, &pcfg, &p, err, sizeof err);
    }
    if (rc == LOOM_OK)
        rc = loom_runtime_run(r.rt);
    else
        fprintf(stderr, "step3: %s: %s\n", loom_err_name(rc), err);
    /* Users first, then what they use. */
    loom_participant_close(p);
    loom_orchestrator_close(o);
    loom_relay_close(relay);
    loom_transport_close(t);
    loom_runtime_close(r.rt);
    return rc == LOOM_OK && r.ended == N_TRANSFERS ? 0 : 1;
}

/* How each transfer ended, and the balances it left. */
static int
report(loom_store *s, char ids[N_TRANSFERS][LOOM_UUID_STRLEN + 2])
{
    const char *names[] = {"alice", "bob"};

    for (int i = 0; i < N_TRANSFERS; i++) {
        loom_saga_info info;
        if (loom_saga_get(s, ids[i], &info) != LOOM_OK)
            return 1;
        printf("transfer %d: %s after %lld transitions\n", i + 1,
               loom_saga_state_name(info.state), (long long) info.version);
    }
    for (int i = 0; i < 2; i++) {
        account a;
        if (loom_aggregate_load(s, &account_type, names[i], &a, NULL) !=
            LOOM_OK)
            return 1;
        printf("account-%s: %lld cents\n", names[i], (long long) a.balance);
    }
    return 0;
}

int
main(void)
{
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    loom_store *s;
    char ids[N_TRANSFERS][LOOM_UUID_STRLEN + 2], err[512];
    int status = 1;

    cfg.migrate = LOOM_MIGRATE_AUTO;
    if (loom_store_open(&s, &cfg, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "step3: %s\n", err);
        return 1;
    }
    /* The start commits the saga's first command in the outbox: the
     * relay publishes it once serve() runs. */
    if (create_topics(s) != LOOM_OK || start_transfers(s, ids) != LOOM_OK) {
        fprintf(stderr, "step3: %s\n", loom_store_errmsg(s));
        goto out;
    }
    if (serve() == 0)
        status = report(s, ids);
out:
    loom_store_close(s);
    return status;
}
