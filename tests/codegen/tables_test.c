/*
 * The code protoc-gen-loom generated for tests/codegen/proto/shop/
 * order_saga.proto, compiled and linked with a handler for each prototype
 * (handlers.c): the tables pass loom_saga_def_check(), and hold what the
 * .proto says (step order, compensation indexes, timeouts, retry
 * policies, non-retryable codes, participants, types and events); every
 * table entry calls its own handler with its arguments in place; the
 * register_symbol shared object loads with loom_registry_load().
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "handlers.h"
#include "loom/registry.h"
#include "loom/saga.h"
#include "shop/common.loom.h"
#include "shop/order_saga.loom.h"

/* One expected step. */
typedef struct want_step {
    const char *name;
    const char *participant;
    const ProtobufCMessageDescriptor *command, *reply, *failure;
    int32_t compensation;
    uint32_t timeout_ms;
    uint32_t max_attempts, initial_backoff_ms, max_backoff_ms;
    double multiplier;
    const char *codes[3]; /* non_retryable, NULL-terminated */
    const char *c_name;   /* handler prefix, for the adapter check */
} want_step;

static void
check_step(const loom_saga_step *st, const want_step *w, int forward)
{
    assert_string_equal(st->name, w->name);
    assert_string_equal(st->participant, w->participant);
    assert_ptr_equal(st->command, w->command);
    assert_ptr_equal(st->reply, w->reply);
    assert_ptr_equal(st->failure, w->failure);
    assert_int_equal(st->compensation, w->compensation);
    assert_int_equal(st->timeout_ms, w->timeout_ms);
    assert_int_equal(st->retry.max_attempts, w->max_attempts);
    assert_int_equal(st->retry.initial_backoff_ms, w->initial_backoff_ms);
    assert_int_equal(st->retry.max_backoff_ms, w->max_backoff_ms);
    assert_true(st->retry.multiplier == w->multiplier);
    size_t n = 0;
    while (n < 3 && w->codes[n] != NULL) {
        n++;
    }
    assert_int_equal(st->retry.n_non_retryable, n);
    if (n == 0) {
        assert_null(st->retry.non_retryable);
    }
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(st->retry.non_retryable[i], w->codes[i]);
    }
    assert_non_null(st->build);
    assert_non_null(st->on_reply);
    if (forward) {
        assert_non_null(st->on_failed);
    } else {
        assert_null(st->on_failed);
    }
}

#define D(x) &shop__##x##__descriptor

static const want_step create_steps[] = {
    {"ReserveInventory",
     "inventory",
     D(reserve_inventory),
     D(inventory_reserved),
     D(reservation_failed),
     0,
     5000,
     5,
     100,
     10000,
     1.5,
     {"OUT_OF_STOCK", "UNKNOWN_SKU", NULL},
     "shop__create_order__reserve_inventory"},
    {"ChargePayment",
     "payments.charges",
     D(charge_payment),
     D(payment_charged),
     D(payment_declined),
     1,
     30000,
     3,
     250,
     60000,
     2.0,
     {"CARD_DECLINED", NULL, NULL},
     "shop__create_order__charge_payment"},
    {"ConfirmOrder",
     "orders",
     D(confirm_order),
     D(order_confirmed),
     NULL,
     -1,
     1000,
     1,
     100,
     10000,
     2.0,
     {NULL, NULL, NULL},
     "shop__create_order__confirm_order"},
};

static const want_step create_comps[] = {
    {"ReleaseInventory",
     "inventory",
     D(release_inventory),
     D(inventory_released),
     NULL,
     -1,
     30000,
     10,
     100,
     600000,
     3.0,
     {NULL, NULL, NULL},
     "shop__create_order__release_inventory"},
    {"RefundPayment",
     "payments.charges",
     D(refund_payment),
     D(payment_refunded),
     D(payment_declined),
     -1,
     30000,
     3,
     100,
     10000,
     2.0,
     {NULL, NULL, NULL},
     "shop__create_order__refund_payment"},
};

static const want_step cancel_steps[] = {
    {"CancelPayment",
     "payments.charges",
     D(refund_payment),
     D(payment_refunded),
     NULL,
     0,
     30000,
     3,
     100,
     10000,
     2.0,
     {NULL, NULL, NULL},
     "shop__cancel_order__cancel_payment"},
    {"MarkCancelled",
     "orders",
     D(confirm_order),
     D(order_confirmed),
     NULL,
     -1,
     30000,
     3,
     100,
     10000,
     2.0,
     {NULL, NULL, NULL},
     "shop__cancel_order__mark_cancelled"},
};

static const want_step cancel_comps[] = {
    {"RechargePayment",
     "payments.charges",
     D(charge_payment),
     D(payment_charged),
     NULL,
     -1,
     30000,
     3,
     100,
     10000,
     2.0,
     {NULL, NULL, NULL},
     "shop__cancel_order__recharge_payment"},
};

static void
test_tables_defs_pass_def_check(void **state)
{
    (void) state;
    char err[256];
    assert_int_equal(
        loom_saga_def_check(&shop__create_order__saga, err, sizeof err),
        LOOM_OK);
    assert_string_equal(err, "");
    assert_int_equal(
        loom_saga_def_check(&shop__cancel_order__saga, err, sizeof err),
        LOOM_OK);
    assert_int_equal(shop__create_order__saga.abi, LOOM_SAGA_ABI_VERSION);
}

/* Hand-made variants of a generated table that def_check refuses, each
 * naming what is wrong: what protoc-gen-loom refuses in a .proto, and
 * topics no transport takes. */
static void
expect_refused(const loom_saga_def *def, const char *needle)
{
    char err[512];

    assert_int_equal(loom_saga_def_check(def, err, sizeof err), LOOM_EINVAL);
    if (strstr(err, needle) == NULL)
        fail_msg("\"%s\" does not say \"%s\"", err, needle);
}

static void
test_tables_def_check_refuses_what_could_not_run(void **state)
{
    const loom_saga_def *d = &shop__create_order__saga;
    loom_saga_step steps[3];
    loom_saga_def def;
    const char *bad_code[1] = {"\xff"};

    (void) state;
    assert_int_equal(d->n_steps, 3);
    def = *d;
    def.steps = steps;
    memcpy(steps, d->steps, sizeof steps);
    steps[1].compensation = steps[0].compensation;
    expect_refused(&def, "share compensation ReleaseInventory");
    memcpy(steps, d->steps, sizeof steps);
    steps[2].participant = d->reply_topic;
    expect_refused(&def, "is the saga's reply topic");
    steps[2].participant = "bad topic!";
    expect_refused(&def, "\"bad topic!\" is not a topic name");
    steps[2].participant = "a..b";
    expect_refused(&def, "is not a topic name");
    memcpy(steps, d->steps, sizeof steps);
    steps[0].retry.non_retryable = bad_code;
    steps[0].retry.n_non_retryable = 1;
    expect_refused(&def, "non_retryable code 0 is not valid UTF-8");
    memcpy(steps, d->steps, sizeof steps);
    steps[1].retry.multiplier = INFINITY;
    expect_refused(&def, "a finite multiplier");
    memcpy(steps, d->steps, sizeof steps);
    def.reply_topic = "replies with spaces";
    expect_refused(&def, "reply_topic \"replies with spaces\" is not a topic");
    def.reply_topic = d->reply_topic;
    assert_int_equal(loom_saga_def_check(&def, NULL, 0), LOOM_OK);
}

static void
test_tables_create_order_is_what_the_proto_says(void **state)
{
    (void) state;
    const loom_saga_def *d = &shop__create_order__saga;
    assert_string_equal(d->name, "shop.CreateOrder");
    assert_int_equal(d->version, 3); /* from a second option statement */
    assert_string_equal(d->reply_topic, "shop.CreateOrder.replies");
    assert_ptr_equal(d->data, &shop__order_data__descriptor);
    assert_string_equal(d->source, "shop/order_saga.proto");
    /* Forward steps in declaration order, compensations apart. */
    assert_int_equal(d->n_steps, 3);
    assert_int_equal(d->n_compensations, 2);
    for (size_t i = 0; i < d->n_steps; i++) {
        check_step(&d->steps[i], &create_steps[i], 1);
    }
    for (size_t i = 0; i < d->n_compensations; i++) {
        check_step(&d->compensations[i], &create_comps[i], 0);
    }
    /* Each compensation index names the rpc the .proto named. */
    assert_string_equal(d->compensations[d->steps[0].compensation].name,
                        "ReleaseInventory");
    assert_string_equal(d->compensations[d->steps[1].compensation].name,
                        "RefundPayment");
}

static void
test_tables_cancel_order_is_what_the_proto_says(void **state)
{
    (void) state;
    const loom_saga_def *d = &shop__cancel_order__saga;
    assert_string_equal(d->name, "shop.CancelOrder");
    assert_int_equal(d->version, 1); /* the default */
    assert_string_equal(d->reply_topic, "shop.cancellations");
    assert_ptr_equal(d->data, &shop__order_data__descriptor);
    assert_int_equal(d->n_steps, 2);
    assert_int_equal(d->n_compensations, 1);
    for (size_t i = 0; i < d->n_steps; i++) {
        check_step(&d->steps[i], &cancel_steps[i], 1);
    }
    check_step(&d->compensations[0], &cancel_comps[0], 0);
}

/* Reads a generated file (for the .mmd files). */
static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void
test_tables_diagram_is_the_mmd_file(void **state)
{
    (void) state;
    const char *mmd = slurp(CODEGEN_GEN_DIR "/shop/order_saga.CreateOrder.mmd");
    assert_string_equal(shop__create_order__saga.diagram, mmd);
    assert_non_null(strstr(mmd, "flowchart TD\n"));
    /* A failure of ChargePayment compensates ReserveInventory only. */
    assert_non_null(strstr(mmd, "    s1 -.->|failed| c0\n"));
    mmd = slurp(CODEGEN_GEN_DIR "/shop/order_saga.CancelOrder.mmd");
    assert_string_equal(shop__cancel_order__saga.diagram, mmd);
}

/* Calls every handler of a step through the table and checks that its
 * own user function ran with the arguments in place. */
static void
check_adapters(const loom_saga_step *st, const want_step *w, int forward)
{
    char want[128];
    loom_saga_ctx *ctx = (loom_saga_ctx *) &want; /* opaque: any pointer */
    Shop__OrderData data = SHOP__ORDER_DATA__INIT;
    ProtobufCMessage *cmd = calloc(1, st->command->sizeof_message);
    ProtobufCMessage *reply = calloc(1, st->reply->sizeof_message);
    assert_non_null(cmd);
    assert_non_null(reply);
    protobuf_c_message_init(st->command, cmd);
    protobuf_c_message_init(st->reply, reply);

    int calls = codegen_last_call.calls;
    assert_int_equal(st->build(ctx, &data.base, cmd), LOOM_OK);
    snprintf(want, sizeof want, "%s__command", w->c_name);
    assert_string_equal(codegen_last_call.fn, want);
    assert_ptr_equal(codegen_last_call.ctx, ctx);
    assert_ptr_equal(codegen_last_call.arg[0], &data);
    assert_ptr_equal(codegen_last_call.arg[1], cmd);

    assert_int_equal(st->on_reply(ctx, &data.base, reply), LOOM_OK);
    snprintf(want, sizeof want, "%s__reply", w->c_name);
    assert_string_equal(codegen_last_call.fn, want);
    assert_ptr_equal(codegen_last_call.arg[0], &data);
    assert_ptr_equal(codegen_last_call.arg[1], reply);

    if (forward) {
        loom_saga_failure why = {"CODE", "text", 2, 0};
        ProtobufCMessage *failure = NULL;
        if (st->failure != NULL) {
            failure = calloc(1, st->failure->sizeof_message);
            protobuf_c_message_init(st->failure, failure);
        }
        assert_int_equal(st->on_failed(ctx, &data.base, failure, &why),
                         LOOM_OK);
        snprintf(want, sizeof want, "%s__failed", w->c_name);
        assert_string_equal(codegen_last_call.fn, want);
        assert_ptr_equal(codegen_last_call.arg[0], &data);
        if (st->failure != NULL) {
            assert_ptr_equal(codegen_last_call.arg[1], failure);
            assert_ptr_equal(codegen_last_call.arg[2], &why);
        } else {
            assert_ptr_equal(codegen_last_call.arg[1], &why);
        }
        free(failure);
    }
    assert_int_equal(codegen_last_call.calls, calls + (forward ? 3 : 2));
    free(cmd);
    free(reply);
}

static void
test_tables_saga_entries_call_their_handlers(void **state)
{
    (void) state;
    const loom_saga_def *c = &shop__create_order__saga;
    const loom_saga_def *k = &shop__cancel_order__saga;
    for (size_t i = 0; i < c->n_steps; i++) {
        check_adapters(&c->steps[i], &create_steps[i], 1);
    }
    for (size_t i = 0; i < c->n_compensations; i++) {
        check_adapters(&c->compensations[i], &create_comps[i], 0);
    }
    for (size_t i = 0; i < k->n_steps; i++) {
        check_adapters(&k->steps[i], &cancel_steps[i], 1);
    }
    check_adapters(&k->compensations[0], &cancel_comps[0], 0);
}

/* One expected participant step. */
typedef struct want_pstep {
    const char *saga, *step;
    const ProtobufCMessageDescriptor *failure;
    const char *handler;
} want_pstep;

static void
check_participant(const loom_participant_def *p, const char *name,
                  const want_pstep *w, size_t n)
{
    assert_int_equal(p->abi, LOOM_SAGA_ABI_VERSION);
    assert_string_equal(p->name, name);
    assert_int_equal(p->n_steps, n);
    for (size_t i = 0; i < n; i++) {
        const loom_participant_step *ps = &p->steps[i];
        assert_string_equal(ps->saga, w[i].saga);
        assert_string_equal(ps->step, w[i].step);
        assert_ptr_equal(ps->failure, w[i].failure);
        /* The same descriptors as the saga's step. */
        const loom_saga_def *d = strcmp(ps->saga, "shop.CreateOrder") == 0
                                     ? &shop__create_order__saga
                                     : &shop__cancel_order__saga;
        const loom_saga_step *st = NULL;
        for (size_t k = 0; k < d->n_steps + d->n_compensations; k++) {
            const loom_saga_step *s = k < d->n_steps
                                          ? &d->steps[k]
                                          : &d->compensations[k - d->n_steps];
            if (strcmp(s->name, ps->step) == 0) {
                st = s;
            }
        }
        assert_non_null(st);
        assert_string_equal(st->participant, name);
        assert_ptr_equal(ps->command, st->command);
        assert_ptr_equal(ps->reply, st->reply);
        assert_ptr_equal(ps->failure, st->failure);

        /* Its handler is the user's, arguments in place. */
        ProtobufCMessage *cmd = calloc(1, ps->command->sizeof_message);
        ProtobufCMessage *reply = calloc(1, ps->reply->sizeof_message);
        ProtobufCMessage *failure =
            ps->failure != NULL ? calloc(1, ps->failure->sizeof_message) : NULL;
        loom_participant_ctx *ctx = (loom_participant_ctx *) &n;
        assert_int_equal(ps->handle(ctx, cmd, reply, failure), LOOM_OK);
        assert_string_equal(codegen_last_call.fn, w[i].handler);
        assert_ptr_equal(codegen_last_call.ctx, ctx);
        assert_ptr_equal(codegen_last_call.arg[0], cmd);
        assert_ptr_equal(codegen_last_call.arg[1], reply);
        assert_ptr_equal(codegen_last_call.arg[2], failure);
        free(cmd);
        free(reply);
        free(failure);
    }
}

static void
test_tables_participants_list_their_steps(void **state)
{
    (void) state;
    const want_pstep inventory[] = {
        {"shop.CreateOrder", "ReserveInventory",
         &shop__reservation_failed__descriptor,
         "shop__inventory__reserve_inventory__handle"},
        {"shop.CreateOrder", "ReleaseInventory", NULL,
         "shop__inventory__release_inventory__handle"},
    };
    const want_pstep payments[] = {
        {"shop.CreateOrder", "ChargePayment",
         &shop__payment_declined__descriptor,
         "shop__payments_charges__charge_payment__handle"},
        {"shop.CreateOrder", "RefundPayment",
         &shop__payment_declined__descriptor,
         "shop__payments_charges__refund_payment__handle"},
        {"shop.CancelOrder", "CancelPayment", NULL,
         "shop__payments_charges__cancel_payment__handle"},
        {"shop.CancelOrder", "RechargePayment", NULL,
         "shop__payments_charges__recharge_payment__handle"},
    };
    const want_pstep orders[] = {
        {"shop.CreateOrder", "ConfirmOrder", NULL,
         "shop__orders__confirm_order__handle"},
        {"shop.CancelOrder", "MarkCancelled", NULL,
         "shop__orders__mark_cancelled__handle"},
    };
    check_participant(&shop__inventory__participant, "inventory", inventory, 2);
    check_participant(&shop__payments_charges__participant, "payments.charges",
                      payments, 4);
    check_participant(&shop__orders__participant, "orders", orders, 2);
}

static void
test_tables_register_types_adds_the_files_messages(void **state)
{
    (void) state;
    loom_registry *r;
    assert_int_equal(loom_registry_new(&r), LOOM_OK);
    assert_int_equal(shop__order_saga__register_types(NULL), LOOM_EINVAL);
    assert_int_equal(shop__order_saga__register_types(r), LOOM_OK);
    /* Every message of the file, nested ones included, map entries and
     * imported types not. */
    assert_int_equal(loom_registry_count(r), 17);
    assert_ptr_equal(loom_registry_find(r, "shop.ReserveInventory.Line"),
                     &shop__reserve_inventory__line__descriptor);
    assert_ptr_equal(loom_registry_find(r, "shop.SKUChecked"),
                     &shop__skuchecked__descriptor);
    assert_null(loom_registry_find(r, "shop.OrderPlaced.QuantitiesEntry"));
    assert_null(loom_registry_find(r, "shop.Money"));
    /* Again: the same descriptors, a no-op. */
    assert_int_equal(shop__order_saga__register_types(r), LOOM_OK);
    /* The imported file registers its own. */
    assert_int_equal(shop__common__register_types(r), LOOM_OK);
    assert_ptr_equal(loom_registry_find(r, "shop.Money"),
                     &shop__money__descriptor);
    assert_int_equal(shop__common__n_events, 0);
    assert_null(shop__common__events[0].type);
    loom_registry_free(r);
}

static void
test_tables_events_list_the_marked_messages(void **state)
{
    (void) state;
    const loom_event_type *e = shop__order_saga__events;
    assert_int_equal(shop__order_saga__n_events, 4);
    assert_string_equal(e[0].type, "shop.OrderConfirmed");
    assert_string_equal(e[0].aggregate, "Order");
    assert_int_equal(e[0].schema_version, 2);
    assert_ptr_equal(e[0].descriptor, &shop__order_confirmed__descriptor);
    assert_string_equal(e[1].type, "shop.OrderPlaced");
    assert_string_equal(e[1].aggregate, "Order");
    assert_int_equal(e[1].schema_version, 1);
    assert_string_equal(e[2].type, "shop.SKUChecked");
    assert_null(e[2].aggregate);
    assert_string_equal(e[3].type, "shop.OrderCancelled");
    assert_ptr_equal(e[3].descriptor, &shop__order_cancelled__descriptor);
    /* The zeroed entry that ends the array. */
    assert_null(e[4].type);
    assert_null(e[4].descriptor);
}

static void
test_tables_register_symbol_object_loads(void **state)
{
    (void) state;
    loom_registry *r;
    assert_int_equal(loom_registry_new(&r), LOOM_OK);
    assert_int_equal(loom_registry_load(r, CODEGEN_TYPES_PLUGIN), LOOM_OK);
    assert_int_equal(loom_registry_count(r), 3);
    assert_non_null(loom_registry_find(r, "shop.catalog.ProductAdded"));
    assert_non_null(loom_registry_find(r, "shop.catalog.SKUListChanged"));
    assert_non_null(loom_registry_find(r, "shop.catalog.Price"));
    loom_registry_free(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_defs_pass_def_check),
        cmocka_unit_test(test_tables_def_check_refuses_what_could_not_run),
        cmocka_unit_test(test_tables_create_order_is_what_the_proto_says),
        cmocka_unit_test(test_tables_cancel_order_is_what_the_proto_says),
        cmocka_unit_test(test_tables_diagram_is_the_mmd_file),
        cmocka_unit_test(test_tables_saga_entries_call_their_handlers),
        cmocka_unit_test(test_tables_participants_list_their_steps),
        cmocka_unit_test(test_tables_register_types_adds_the_files_messages),
        cmocka_unit_test(test_tables_events_list_the_marked_messages),
        cmocka_unit_test(test_tables_register_symbol_object_loads),
    };
    return cmocka_run_group_tests_name("codegen.tables", tests, NULL, NULL);
}
