/*
 * Every public function of the saga runtime refuses bad arguments with an
 * error code and a reason, and queues, opens or writes nothing:
 * loom_saga_start_tx(), loom_saga_start(), loom_saga_get(), the handler
 * context, and the orchestrator's open, stats and close.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "saga_int.h"
#include "sagatest.h"

static void
saga_start_tx_refuses_bad_arguments_and_queues_nothing(void **state)
{
    static const char *const buildfail[] = {"Reserve=buildfail", NULL};
    loom_saga_start_options opt = {"not an outbox!"};
    loom_saga_def bad = st_three;
    Sagatest__Cmd cmd = SAGATEST__CMD__INIT;
    const ProtobufCMessage *data = &st_order("args-1", NULL)->base;
    char longid[LOOM_SAGA_MAX_ID + 2];
    Sagatest__Order big = SAGATEST__ORDER__INIT;
    char *huge;
    loom_tx *tx = NULL;

    (void) state;
    assert_int_equal(loom_tx_new(&tx), LOOM_OK);
    assert_int_equal(loom_saga_start_tx(NULL, &st_three, "x", data, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_saga_start_tx(tx, NULL, "x", data, NULL),
                     LOOM_EINVAL);
    assert_true(strlen(loom_tx_errmsg(tx)) > 0);
    assert_int_equal(loom_saga_start_tx(tx, &st_three, NULL, data, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_saga_start_tx(tx, &st_three, "x", NULL, NULL),
                     LOOM_EINVAL);
    /* Ids: empty, too long, control characters, not UTF-8. */
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_equal(loom_saga_start_tx(tx, &st_three, "", data, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_saga_start_tx(tx, &st_three, longid, data, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_saga_start_tx(tx, &st_three, "a\nb", data, NULL),
                     LOOM_EINVAL);
    assert_int_equal(loom_saga_start_tx(tx, &st_three, "\xff", data, NULL),
                     LOOM_EINVAL);
    assert_non_null(strstr(loom_tx_errmsg(tx), "UTF-8"));
    /* A definition that fails loom_saga_def_check(). */
    bad.abi = 99;
    assert_int_equal(loom_saga_start_tx(tx, &bad, "x", data, NULL),
                     LOOM_EINVAL);
    assert_non_null(strstr(loom_tx_errmsg(tx), "ABI"));
    /* Data of another type. */
    assert_int_equal(loom_saga_start_tx(tx, &st_three, "x", &cmd.base, NULL),
                     LOOM_EINVAL);
    assert_non_null(strstr(loom_tx_errmsg(tx), "sagatest.Order"));
    assert_int_equal(loom_saga_start_tx(tx, &st_three, "x", data, &opt),
                     LOOM_EINVAL);
    /* The builder fails: nothing to send. */
    assert_int_equal(loom_saga_start_tx(tx, &st_three, "x",
                                        &st_order("x", buildfail)->base, NULL),
                     LOOM_EHANDLER);
    assert_non_null(strstr(loom_tx_errmsg(tx), "builder of Reserve"));
    /* Data over the payload limit. */
    huge = malloc((size_t) 2 << 20);
    assert_non_null(huge);
    memset(huge, 'z', ((size_t) 2 << 20) - 1);
    huge[((size_t) 2 << 20) - 1] = '\0';
    big.id = huge;
    assert_int_equal(loom_saga_start_tx(tx, &st_three, "x", &big.base, NULL),
                     LOOM_ETOOBIG);
    free(huge);
    assert_int_equal(loom_tx_count(tx), 0);
    /* And a good one is one statement (st_order's storage is reused). */
    data = &st_order("args-1", NULL)->base;
    assert_int_equal(loom_saga_start_tx(tx, &st_three, "args-1", data, NULL),
                     LOOM_OK);
    assert_int_equal(loom_tx_count(tx), 1);
    loom_tx_free(tx);
}

static void
saga_start_and_get_refuse_bad_arguments(void **state)
{
    loom_store *s = loomt_store_open();
    const ProtobufCMessage *data = &st_order("args-2", NULL)->base;
    loom_saga_info info;
    int created = 7;

    (void) state;
    assert_int_equal(
        loom_saga_start(NULL, &st_three, "args-2", data, NULL, &created),
        LOOM_EINVAL);
    assert_int_equal(created, 0);
    assert_int_equal(loom_saga_start(s, NULL, "args-2", data, NULL, &created),
                     LOOM_EINVAL);
    assert_true(strlen(loom_store_errmsg(s)) > 0);
    assert_int_equal(loom_saga_get(NULL, "args-2", &info), LOOM_EINVAL);
    assert_int_equal(loom_saga_get(s, NULL, &info), LOOM_EINVAL);
    assert_int_equal(loom_saga_get(s, "args-2", NULL), LOOM_EINVAL);
    assert_int_equal(loom_saga_get(s, "", &info), LOOM_EINVAL);
    assert_int_equal(loom_saga_get(s, "args-2", &info), LOOM_ENOTFOUND);
    assert_non_null(strstr(loom_store_errmsg(s), "args-2"));
    /* Nothing was started by the refused calls. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_instances"), 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.outbox"), 0);

    assert_int_equal(
        loom_saga_start(s, &st_three, "args-2", data, NULL, &created), LOOM_OK);
    assert_int_equal(created, 1);
    assert_int_equal(loom_saga_get(s, "args-2", &info), LOOM_OK);
    assert_string_equal(info.id, "args-2");
    assert_int_equal(info.state, LOOM_SAGA_RUNNING);
    assert_int_equal(info.step, 0);
    assert_int_equal(info.attempt, 1);
    assert_int_equal(info.version, 1);
    assert_int_equal(info.ended_at, 0);
    assert_string_equal(info.last_error, "");
    /* The start wrote its command, keyed by the saga, with the wire
     * headers, and a deadline at the step's timeout. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.outbox WHERE topic = "
                            "'stp.inv' AND convert_from(key, 'UTF8') = "
                            "'args-2' AND type = 'sagatest.Cmd'"),
                     1);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_instances WHERE "
                            "id = 'args-2' AND waiting = 'reply' AND "
                            "deadline > now() + interval '500 ms'"),
                     1);
    assert_int_equal(
        loom_saga_start(s, &st_three, "args-2", data, NULL, &created), LOOM_OK);
    assert_int_equal(created, 0);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.outbox"), 1);
    loom_store_close(s);
}

static void
saga_ctx_functions_accept_null(void **state)
{
    loom__arena a;
    loom_saga_ctx ctx;

    (void) state;
    assert_null(loom_saga_alloc(NULL, 8));
    assert_null(loom_saga_strdup(NULL, "x"));
    assert_string_equal(loom_saga_ctx_id(NULL), "");
    assert_int_equal(loom_saga_ctx_attempt(NULL), 0);
    loom__arena_init(&a);
    ctx.arena = &a;
    ctx.id = "ctx-1";
    ctx.attempt = 3;
    assert_null(loom_saga_strdup(&ctx, NULL));
    assert_string_equal(loom_saga_strdup(&ctx, "abc"), "abc");
    assert_non_null(loom_saga_alloc(&ctx, 0));
    assert_string_equal(loom_saga_ctx_id(&ctx), "ctx-1");
    assert_int_equal(loom_saga_ctx_attempt(&ctx), 3);
    loom__arena_free(&a);
}

/* Opens with `cfg` on the loop thread and expects `want`, out NULL and a
 * reason in err. */
static void
open_fails(st_env *v, const loom_orchestrator_config *cfg, loom_err want,
           const char *in_err)
{
    loom_orchestrator *o = (loom_orchestrator *) 1;
    char err[512] = "";

    assert_int_equal(st_orch_try(v, cfg, &o, err, sizeof err), want);
    assert_null(o);
    if (strstr(err, in_err) == NULL) {
        fail_msg("\"%s\" not in the error: %s", in_err, err);
    }
}

static void
orchestrator_open_refuses_bad_arguments(void **state)
{
    st_fx *f = *state;
    loom_orchestrator_config cfg = st_orch_config(f->v), c;
    loom_saga_def bad = st_three;
    const loom_saga_def *bad_defs[1] = {&bad};
    const loom_saga_def *twice[2] = {&st_three, &st_three};
    const loom_saga_def *nulls[1] = {NULL};
    loom_orchestrator *o = (loom_orchestrator *) 1;
    loom_orchestrator_stats st;
    char err[256];

    assert_int_equal(loom_orchestrator_open(NULL, &cfg, &o, err, sizeof err),
                     LOOM_EINVAL);
    assert_null(o);
    assert_int_equal(
        loom_orchestrator_open(st_runtime(f->v), &cfg, NULL, err, sizeof err),
        LOOM_EINVAL);
    open_fails(f->v, NULL, LOOM_EINVAL, "required");
    c = cfg;
    c.transport = NULL;
    open_fails(f->v, &c, LOOM_EINVAL, "transport");
    c = cfg;
    c.defs = NULL;
    open_fails(f->v, &c, LOOM_EINVAL, "definition");
    c = cfg;
    c.n_defs = 0;
    open_fails(f->v, &c, LOOM_EINVAL, "definition");
    c = cfg;
    c.defs = nulls;
    c.n_defs = 1;
    open_fails(f->v, &c, LOOM_EINVAL, "NULL");
    bad.steps = NULL;
    c = cfg;
    c.defs = bad_defs;
    c.n_defs = 1;
    open_fails(f->v, &c, LOOM_EINVAL, "no steps");
    c = cfg;
    c.defs = twice;
    c.n_defs = 2;
    open_fails(f->v, &c, LOOM_EINVAL,
               "sagatest.Three version 1 is given twice");
    c = cfg;
    c.batch = 10001;
    open_fails(f->v, &c, LOOM_EINVAL, "batch");
    c = cfg;
    c.group = "";
    open_fails(f->v, &c, LOOM_EINVAL, "group");
    c = cfg;
    c.conninfo = "host=/nonexistent port=1 connect_timeout=1";
    open_fails(f->v, &c, LOOM_ECONN, "");
    /* Nothing was recorded by the refused opens. */
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_definitions"), 0);

    assert_int_equal(loom_orchestrator_stats_get(NULL, &st), LOOM_EINVAL);
    o = st_orch_open(f->v, NULL);
    assert_int_equal(loom_orchestrator_stats_get(o, NULL), LOOM_EINVAL);
    loom_orchestrator_close(NULL);
    st_orch_close(f->v, o);
    assert_int_equal(est_ll("SELECT count(*) FROM loom.saga_definitions"), 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            saga_start_tx_refuses_bad_arguments_and_queues_nothing),
        cmocka_unit_test(saga_start_and_get_refuse_bad_arguments),
        cmocka_unit_test(saga_ctx_functions_accept_null),
        cmocka_unit_test_setup_teardown(orchestrator_open_refuses_bad_arguments,
                                        st_fx_setup, st_fx_teardown),
    };

    return cmocka_run_group_tests_name("saga.args", tests, st_group_setup,
                                       st_group_teardown);
}
