/*
 * loomctl saga end to end, and loom_saga_request() from C. No
 * orchestrator runs here: the saga tables are filled with SQL as an
 * orchestrator would leave them (seed_sql: a completed saga, one
 * compensated after a retried failure and a timeout, one stuck in
 * COMPENSATION_FAILED, one waiting for a reply, and one of a type no
 * orchestrator registered), and where a test needs a request applied, a
 * child process plays the orchestrator's part with one UPDATE.
 *
 * The seed runs as one statement string, so one transaction: now() is
 * the same in every row and the timeline's offsets are exact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "jsonlite.h"
#include "loom/saga.h"
#include "obtest.h"
#include "pgtest.h"

/* Two versions of shop.CreateOrder (forward steps first, then the
 * compensations, as orchestrators register them). */
#define SEED_DEFS                                                              \
    "INSERT INTO loom.saga_definitions (name, version, reply_topic, "          \
    "data_type, steps, diagram) VALUES "                                       \
    "('shop.CreateOrder', 1, 'shop.replies', 'shop.OrderPlaced', "             \
    "'[{\"name\":\"ReserveInventory\"},{\"name\":\"ChargePayment\"},"          \
    "{\"name\":\"CancelReservation\"},{\"name\":\"RefundPayment\"}]', "        \
    "E'flowchart LR\\n  ReserveInventory --> ChargePayment'), "                \
    "('shop.CreateOrder', 2, 'shop.replies', 'shop.OrderPlaced', "             \
    "'[{\"name\":\"ReserveInventory\",\"compensation\":0},"                    \
    "{\"name\":\"ChargePayment\",\"compensation\":1},"                         \
    "{\"name\":\"ShipOrder\",\"compensation\":-1},"                            \
    "{\"name\":\"CancelReservation\",\"compensation\":-1},"                    \
    "{\"name\":\"RefundPayment\",\"compensation\":-1}]', "                     \
    "E'flowchart LR\\n  ReserveInventory --> ChargePayment --> ShipOrder\\n"   \
    "  ChargePayment -. fails .-> CancelReservation');"

/* now() - interval, as SQL. */
#define AGO(iv) "now() - interval '" iv "'"
/* A log row of saga `id` at start + ms, with message id suffix `m`. */
#define LOG(id, start, ms, kind, step, name, attempt, m, detail)               \
    "('" id "', " AGO(start) " + interval '" ms " ms', '" kind "', " step      \
                             ", " name ", " attempt ", " m ", " detail ")"
#define MID(s) "'0190f5c2-8a41-7cc3-9d52-" s "'"
#define LOG_INSERT                                                             \
    "INSERT INTO loom.saga_log (saga_id, at, kind, step, step_name, "          \
    "attempt, message_id, detail) VALUES "

/* order-1: completed, three steps answered. The data is a
 * loomctltest.OrderPlaced {customer: "ada", total_cents: 104}. */
#define SEED_ORDER_1                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                     \
    "INSERT INTO loom.saga_instances (id, type, def_version, state, step, "                                                                                                                                                                                                                                                                                                                                                                                                                                              \
    "attempt, outbox, data, version, started_at, updated_at, ended_at) "                                                                                                                                                                                                                                                                                                                                                                                                                                                 \
    "VALUES ('order-1', 'shop.CreateOrder', 2, 'COMPLETED', 2, 1, "                                                                                                                                                                                                                                                                                                                                                                                                                                                      \
    "'default', '\\x0a036164611068', 8, " AGO(                                                                                                                                                                                                                                                                                                                                                                                                                                                                           \
        "1 hour") ", " AGO("1 hour") " + interval '2.5 s', " AGO("1 hour") " "                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           "+"                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           " "                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           "i"                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           "n"                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           "t"                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           "e"                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           "r"                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           "v"                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           "a"                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           "l"                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           " "                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           "'"                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           "2"                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           "."                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           "5"                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           " "                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           "s"                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           "'"                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           ")"                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                           ";" LOG_INSERT                                                                                                                                                                                                                                                                                                                                                                                                                                \
                                                                               LOG("order-1",                                                                                                                                                                                                                                                                                                                                                                                                                            \
                                                                                   "1 hour",                                                                                                                                                                                                                                                                                                                                                                                                                             \
                                                                                   "0",                                                                                                                                                                                                                                                                                                                                                                                                                                  \
                                                                                   "started",                                                                                                                                                                                                                                                                                                                                                                                                                            \
                                                                                   "0",                                                                                                                                                                                                                                                                                                                                                                                                                                  \
                                                                                   "'ReserveInventor"                                                                                                                                                                                                                                                                                                                                                                                                                    \
                                                                                   "y'",                                                                                                                                                                                                                                                                                                                                                                                                                                 \
                                                                                   "1",                                                                                                                                                                                                                                                                                                                                                                                                                                  \
                                                                                   "NULL", "NULL") "," LOG("order-1",                                                                                                                                                                                                                                                                                                                                                                                                    \
                                                                                                           "1 hour", "0", "command", "0", "'ReserveInventory'", "1", MID("000000000101"), "NULL") "," LOG("order-1", "1 hour", "120", "reply", "0", "'ReserveInventory'", "1", MID("000000000102"), "NULL") "," LOG("order-1",                                                                                                                                                                                           \
                                                                                                                                                                                                                                                                                                                    "1 hour", "121", "command",                                                                                                                                                                          \
                                                                                                                                                                                                                                                                                                                    "1",                                                                                                                                                                                                 \
                                                                                                                                                                                                                                                                                                                    "'ChargePayment'",                                                                                                                                                                                   \
                                                                                                                                                                                                                                                                                                                    "1", MID("000000000103"), "NULL") "," LOG("order-1",                                                                                                                                                 \
                                                                                                                                                                                                                                                                                                                                                              "1 hour",                                                                                                                                                  \
                                                                                                                                                                                                                                                                                                                                                              "450",                                                                                                                                                     \
                                                                                                                                                                                                                                                                                                                                                              "reply",                                                                                                                                                   \
                                                                                                                                                                                                                                                                                                                                                              "1", "'ChargePayment'", "1", MID("000000000104"), "NULL") "," LOG("order-1",                                                                               \
                                                                                                                                                                                                                                                                                                                                                                                                                                "1 hour",                                                                                \
                                                                                                                                                                                                                                                                                                                                                                                                                                "451",                                                                                   \
                                                                                                                                                                                                                                                                                                                                                                                                                                "command",                                                                               \
                                                                                                                                                                                                                                                                                                                                                                                                                                "2",                                                                                     \
                                                                                                                                                                                                                                                                                                                                                                                                                                "'ShipOrder'", "1", MID("000000000105"),                                                 \
                                                                                                                                                                                                                                                                                                                                                                                                                                "NULL") "," LOG("order-1",                                                               \
                                                                                                                                                                                                                                                                                                                                                                                                                                                "1 hour", "2500", "reply", "2", "'ShipOrder'", "1", MID("000000000106"), \
                                                                                                                                                                                                                                                                                                                                                                                                                                                "NULL") "," LOG("order-1",                                               \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                "1 hour",                                                \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                "2500", "completed", "NULL", "NULL", "NULL",             \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                "NULL",                                                  \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                "NULL") ";"

/* order-2: ChargePayment failed (retryable), timed out, then failed for
 * good; the reservation was cancelled. */
#define SEED_ORDER_2                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  \
    "INSERT INTO loom.saga_instances (id, type, def_version, state, step, "                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                           \
    "attempt, outbox, data, version, last_error, started_at, updated_at, "                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                            \
    "ended_at) VALUES ('order-2', 'shop.CreateOrder', 2, 'COMPENSATED', 0, "                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                          \
    "1, 'default', '\\x0a03626f62', 9, 'ChargePayment: CARD_DECLINED: "                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                               \
    "insufficient funds', " AGO("30 min") ", " AGO(                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                   \
        "30 min") " + interval '33.8 s', " AGO("30 min") " + interval '33.8 "                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                         \
                                                         "s');" LOG_INSERT                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                            \
                                                             LOG("order-2",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                                 "30 min", "0", "started", "0", "'ReserveInventory'", "1", "NULL", "NULL") "," LOG("order-2", "30 min", "0", "command", "0", "'ReserveInventory'", "1", MID("000000000201"), "NULL") "," LOG("order-2", "30 min",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                     \
                                                                                                                                                                                                                                                             "80",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                    \
                                                                                                                                                                                                                                                             "reply",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                 \
                                                                                                                                                                                                                                                             "0",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                     \
                                                                                                                                                                                                                                                             "'ReserveInventory'", "1", MID("000000000202"), "NULL") "," LOG("order-2",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                               \
                                                                                                                                                                                                                                                                                                                             "30 min", "81", "command", "1", "'ChargePayment'", "1", MID("000000000203"), "NULL") "," LOG("order-2",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  \
                                                                                                                                                                                                                                                                                                                                                                                                                          "30 min",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                   \
                                                                                                                                                                                                                                                                                                                                                                                                                          "300", "failure", "1", "'ChargePayment'", "1", MID("000000000204"), "'PAYMENT_DOWN: gateway timeout'") "," LOG("order-2",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                   \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                         "30 min",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                    \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                         "1300",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                      \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                         "retry", "1", "'ChargePayment'", "2", MID("000000000205"), "'after 1 s'") "," LOG("order-2",                                                                                                                                                                                                                                                                                                                                                                                                 \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                           "30 min",                                                                                                                                                                                                                                                                                                                                                                                                  \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                           "31300",                                                                                                                                                                                                                                                                                                                                                                                                   \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                           "timeout",                                                                                                                                                                                                                                                                                                                                                                                                 \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                           "1",                                                                                                                                                                                                                                                                                                                                                                                                       \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                           "'ChargePayment'",                                                                                                                                                                                                                                                                                                                                                                                         \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                           "2", "NULL", "'no reply within 30 s'") "," LOG("order-2",                                                                                                                                                                                                                                                                                                                                                  \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                          "30 min", "33300", "retry", "1", "'ChargePayment'", "3", MID("000000000206"), "'after 2 s'") "," LOG("order-2", "30 min", "33700", "failure", "1", "'ChargePayment'", "3", MID("000000000207"), "'CARD_DECLINED: insufficient funds'") "," LOG("order-2",                                                                                                   \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                         "30 min", "33701", "compensate", "0", "'CancelReservation'", "1", MID("000000000208"),                       \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                         "NULL") "," LOG("order-2", "30 min", "33800", "reply", "0", "'CancelReservation'", "1", MID("000000000209"), \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                         "NULL") "," LOG("order-2",                                                                   \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                         "30 min",                                                                    \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                         "33800",                                                                     \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                         "compensated",                                                               \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                         "NULL",                                                                      \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                         "NULL",                                                                      \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                         "NULL",                                                                      \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                         "NULL",                                                                      \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                         "NULL") ";"

/* order-3: ShipOrder failed; refunding the payment failed three times. */
#define SEED_ORDER_3                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                            \
    "INSERT INTO loom.saga_instances (id, type, def_version, state, step, "                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                     \
    "attempt, outbox, data, version, last_error, started_at, updated_at) "                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                      \
    "VALUES ('order-3', 'shop.CreateOrder', 2, 'COMPENSATION_FAILED', 1, 3, "                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                   \
    "'default', '\\x0a03636179', 11, 'RefundPayment: REFUND_DOWN: payment "                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                     \
    "gateway unavailable', " AGO("2 hours") ", " AGO(                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                           \
        "2 hours") " + interval '7 s');" LOG_INSERT                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                             \
        LOG("order-3", "2 hours", "0", "started", "0", "'ReserveInventory'", "1", "NULL", "NULL") "," LOG(                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                      \
            "order-3", "2 hours", "0", "command", "0", "'ReserveInventory'",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                    \
            "1", MID("000000000301"),                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                           \
            "NULL") "," LOG("order-3", "2 hours", "100", "reply", "0",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                          \
                            "'ReserveInventory'", "1", MID("000000000302"),                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                     \
                            "NULL") "," LOG("order-3", "2 hours", "101",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                        \
                                            "command", "1", "'ChargePayment'",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  \
                                            "1", MID("000000000303"),                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                            "NULL") "," LOG("order-3",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                          \
                                                            "2 hours", "400",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                   \
                                                            "reply", "1",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                       \
                                                            "'ChargePayment'",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  \
                                                            "1",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                \
                                                            MID("00000000030"                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                   \
                                                                "4"),                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                           \
                                                            "NULL") "," LOG("order-3",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                          \
                                                                            "2 hours",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                          \
                                                                            "401",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                              \
                                                                            "command",                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                          \
                                                                            "2", "'ShipOrder'", "1", MID("000000000305"), "NULL") "," LOG("order-3", "2 hours", "900", "failure", "2", "'ShipOrder'", "1", MID("000000000306"), "'NO_STOCK: warehouse is empty'") "," LOG("order-3", "2 hours",                                                                                                                                                                                                                                                                                                                                                                                                                                 \
                                                                                                                                                                                                                                                                          "901",                                                                                                                                                                                                                                                                                                                                                                                                                                                \
                                                                                                                                                                                                                                                                          "compensate", "1", "'RefundPayment'", "1", MID("000000000307"), "NULL") "," LOG("order-3",                                                                                                                                                                                                                                                                                                                                                            \
                                                                                                                                                                                                                                                                                                                                                          "2 hours",                                                                                                                                                                                                                                                                                                                                                            \
                                                                                                                                                                                                                                                                                                                                                          "1901", "failure", "1", "'RefundPayment'", "1",                                                                                                                                                                                                                                                                                                                       \
                                                                                                                                                                                                                                                                                                                                                          MID("000000000308"),                                                                                                                                                                                                                                                                                                                                                  \
                                                                                                                                                                                                                                                                                                                                                          "'REFUND_DOWN: payment gateway unavailable'") "," LOG("order-3",                                                                                                                                                                                                                                                                                                      \
                                                                                                                                                                                                                                                                                                                                                                                                                "2 hours", "3000", "retry", "1", "'RefundPayment'", "2", MID("000000000309"),                                                                                                                                                                                                                                   \
                                                                                                                                                                                                                                                                                                                                                                                                                "'after 1 s'") "," LOG("order-3", "2 hours", "4000", "failure", "1", "'RefundPayment'", "2",                                                                                                                                                                                                                    \
                                                                                                                                                                                                                                                                                                                                                                                                                                       MID("000000000310"), "'REFUND_DOWN: payment gateway unavailable'") "," LOG("order-3",                                                                                                                                                                                                    \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  "2 hours",                                                                                                                                                                                                    \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  "6000",                                                                                                                                                                                                       \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  "retry",                                                                                                                                                                                                      \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  "1",                                                                                                                                                                                                          \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  "'RefundPayment'",                                                                                                                                                                                            \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  "3",                                                                                                                                                                                                          \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  MID("000000000311"), "'after 2 s'") "," LOG("order-3",                                                                                                                                                        \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                              "2 hours",                                                                                                                                                        \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                              "7000",                                                                                                                                                           \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                              "failure", "1", "'RefundPayment'", "3", MID("000000000312"), "'REFUND_DOWN: payment gateway unavailable'") "," LOG("order-3",                                     \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                 "2 hours", "7000",                             \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                 "compensation_failed", "1", "'RefundPayment'", \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                 "3",                                           \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                 "NULL",                                        \
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                 "'REFUND_DOWN: payment gateway unavailable (3 attempts)'") ";"

/* order-4: waiting for ChargePayment's reply; refund-1: a type no
 * orchestrator registered, waiting to retry, with empty data. */
#define SEED_RUNNING                                                                                              \
    "INSERT INTO loom.saga_instances (id, type, def_version, state, step, "                                       \
    "attempt, waiting, command_id, sent_at, deadline, claimed_by, outbox, "                                       \
    "data, version, started_at, updated_at) VALUES ('order-4', "                                                  \
    "'shop.CreateOrder', 2, 'RUNNING', 1, 1, 'reply', " MID("000000000403") ", " AGO(                             \
        "5 s") ", now() + interval '25 min', 'orch-a', 'default', "                                               \
               "'\\x0a0364616e', 2, " AGO("6 s") ", " AGO(                                                        \
                   "5 s") ");" LOG_INSERT                                                                         \
                   LOG("order-4", "6 s", "0", "started", "0", "'ReserveInventory'", "1", "NULL", "NULL") "," LOG( \
                       "order-4", "6 s", "0", "command", "0",                                                     \
                       "'ReserveInventory'", "1", MID("000000000401"),                                            \
                       "NULL") "," LOG("order-4", "6 s", "990", "reply", "0",                                     \
                                       "'ReserveInventory'", "1",                                                 \
                                       MID("000000000402"),                                                       \
                                       "NULL") "," LOG("order-4", "6 s",                                          \
                                                       "1000", "command", "1",                                    \
                                                       "'ChargePayment'", "1",                                    \
                                                       MID("000000000403"),                                       \
                                                       "NULL") ";"                                                \
                                                               "INSERT INTO "                                     \
                                                               "loom.saga_"                                       \
                                                               "instances "                                       \
                                                               "(id, type, "                                      \
                                                               "def_version, "                                    \
                                                               "state, step, "                                    \
                                                               "attempt, "                                        \
                                                               "waiting, "                                        \
                                                               "deadline, "                                       \
                                                               "outbox, "                                         \
                                                               "data, "                                           \
                                                               "version, "                                        \
                                                               "last_error, "                                     \
                                                               "started_at, "                                     \
                                                               "updated_at) "                                     \
                                                               "VALUES "                                          \
                                                               "('refund-1', "                                    \
                                                               "'shop.Refund'"                                    \
                                                               ", 1, "                                            \
                                                               "'RUNNING', "                                      \
                                                               "0, 2, "                                           \
                                                               "'retry', "                                        \
                                                               "now() + "                                         \
                                                               "interval '20 "                                    \
                                                               "min', "                                           \
                                                               "'default', "                                      \
                                                               "'', 3, "                                          \
                                                               "'ReturnGoods:"                                    \
                                                               " TIMEOUT',"                                       \
                                                               " " AGO("40 s") ", " AGO(                          \
                                                                   "2 s") ");"

static const char seed_sql[] = "TRUNCATE loom.saga_instances, loom.saga_log, "
                               "loom.saga_definitions;" SEED_DEFS SEED_ORDER_1
                                   SEED_ORDER_2 SEED_ORDER_3 SEED_RUNNING;

/* Counts occurrences of `needle` in `s`. */
static int
count_of(const char *s, const char *needle)
{
    int n = 0;

    for (const char *p = strstr(s, needle); p != NULL;
         p = strstr(p + 1, needle))
        n++;
    return n;
}

/* A saga column as text ("" for NULL). */
static void
saga_col(const char *id, const char *col, char *out, size_t cap)
{
    char sql[256];
    PGconn *pg = PQconnectdb(loomt_dsn());
    PGresult *r;

    snprintf(sql, sizeof sql,
             "SELECT %s::text FROM loom.saga_instances WHERE id = '%s'", col,
             id);
    r = PQexec(pg, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1);
    snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(pg);
}

static void
assert_col(const char *id, const char *col, const char *want)
{
    char got[512];

    saga_col(id, col, got, sizeof got);
    if (strcmp(got, want) != 0)
        fail_msg("saga %s: %s is \"%s\", expected \"%s\"", id, col, got, want);
}

/* ------------------------------------------------------------------ */
/* list                                                                */

static void
test_saga_list_newest_first_with_counts(void **state)
{
    char line[1024];
    run r;

    (void) state;
    r = lc("saga list");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    line_at(r.out, 0, line, sizeof line);
    row(r.out, "ID ", line, sizeof line);
    assert_string_equal(line, "ID TYPE STATE STEP ATTEMPT STARTED DURATION "
                              "LAST ERROR");
    /* Newest first. */
    line_at(r.out, 1, line, sizeof line);
    assert_true(strncmp(line, "order-4 ", 8) == 0);
    line_at(r.out, 2, line, sizeof line);
    assert_true(strncmp(line, "refund-1 ", 9) == 0);
    line_at(r.out, 3, line, sizeof line);
    assert_true(strncmp(line, "order-2 ", 8) == 0);
    line_at(r.out, 4, line, sizeof line);
    assert_true(strncmp(line, "order-1 ", 8) == 0);
    line_at(r.out, 5, line, sizeof line);
    assert_true(strncmp(line, "order-3 ", 8) == 0);
    assert_row_like(r.out, "order-4 ",
                    "order-4 shop.CreateOrder@2 RUNNING ChargePayment 1 ",
                    " so far");
    /* No definition: the step's index. */
    assert_row_like(r.out, "refund-1 ", "refund-1 shop.Refund@1 RUNNING #0 2 ",
                    " so far ReturnGoods: TIMEOUT");
    assert_row_like(r.out, "order-2 ",
                    "order-2 shop.CreateOrder@2 COMPENSATED ReserveInventory "
                    "1 ",
                    " 33 s ChargePayment: CARD_DECLINED: insufficient funds");
    assert_row_like(r.out, "order-1 ",
                    "order-1 shop.CreateOrder@2 COMPLETED ShipOrder 1 ",
                    " 2.5 s");
    /* A compensating saga shows the step it undoes. */
    assert_row_like(r.out, "order-3 ",
                    "order-3 shop.CreateOrder@2 COMPENSATION_FAILED undo "
                    "ChargePayment 3 ",
                    " so far RefundPayment: REFUND_DOWN: payment gateway "
                    "unavailable");
    assert_has(r.out, "\n5 sagas in all: 2 RUNNING, 1 COMPLETED, 1 "
                      "COMPENSATED, 1 COMPENSATION_FAILED\n");
    assert_has(r.out, "1 saga stopped in COMPENSATION_FAILED and waits for "
                      "an operator: `loomctl saga list --state "
                      "COMPENSATION_FAILED` lists them");
    assert_true(strstr(r.out, "showing the newest") == NULL);
    run_free(&r);
}

static void
test_saga_list_filters(void **state)
{
    run r;

    (void) state;
    /* Any case; the counts still show every state. */
    r = lc("saga list --state compensation_failed");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_of(r.out, "shop.CreateOrder@"), 1);
    assert_has(r.out, "order-3 ");
    assert_has(r.out, "5 sagas in all:");
    run_free(&r);

    r = lc("saga list --type shop.Refund");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "refund-1 ");
    assert_true(strstr(r.out, "order-") == NULL);
    assert_has(r.out, "\n1 saga of this type: 1 RUNNING\n");
    /* No COMPENSATION_FAILED saga of this type: no note. */
    assert_true(strstr(r.out, "waits for an operator") == NULL);
    run_free(&r);

    r = lc("saga list --state RUNNING --type shop.CreateOrder");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_lines(r.out), 2 + 3); /* header, row; counts */
    assert_has(r.out, "order-4 ");
    run_free(&r);

    r = lc("saga list --limit 2");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "order-4 ");
    assert_has(r.out, "refund-1 ");
    assert_true(strstr(r.out, "order-2") == NULL);
    assert_has(r.out, "(showing the newest 2 of 5; --limit N shows more)\n");
    run_free(&r);

    r = lc("saga list --state RUNNING --limit 1");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "(showing the newest 1 of 2;");
    run_free(&r);

    r = lc("saga list --state aborted");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "(no sagas match)\n");
    assert_has(r.out, "5 sagas in all:");
    run_free(&r);
}

static void
test_saga_list_json(void **state)
{
    char line[4096], s[256];
    run r;

    (void) state;
    r = lc("saga list --json");
    assert_int_equal(r.rc, 0);
    assert_int_equal(count_lines(r.out), 5);
    assert_json_lines(r.out);
    line_at(r.out, 0, line, sizeof line);
    get_str(line, "id", s, sizeof s);
    assert_string_equal(s, "order-4");
    get_str(line, "step_name", s, sizeof s);
    assert_string_equal(s, "ChargePayment");
    assert_int_equal(get_i64(line, "step"), 1);
    assert_int_equal(get_i64(line, "version"), 2);
    get_str(line, "waiting", s, sizeof s);
    assert_string_equal(s, "reply");
    get_raw(line, "ended_at", s, sizeof s);
    assert_string_equal(s, "null");

    line_at(r.out, 1, line, sizeof line);
    get_raw(line, "step_name", s, sizeof s);
    assert_string_equal(s, "null");

    line_at(r.out, 3, line, sizeof line); /* order-1 */
    get_raw(line, "duration_seconds", s, sizeof s);
    assert_string_equal(s, "2.500");
    get_str(line, "state", s, sizeof s);
    assert_string_equal(s, "COMPLETED");

    line_at(r.out, 4, line, sizeof line); /* order-3 */
    get_str(line, "last_error", s, sizeof s);
    assert_string_equal(s, "RefundPayment: REFUND_DOWN: payment gateway "
                           "unavailable");
    assert_int_equal(get_i64(line, "attempt"), 3);
    run_free(&r);

    r = lc("saga list --json --state COMPLETED");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    run_free(&r);
}

static void
test_saga_list_empty(void **state)
{
    run r;

    (void) state;
    loomt_sql_exec("TRUNCATE loom.saga_instances, loom.saga_log");
    r = lc("saga list");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "(no sagas yet: a service starts one with "
                               "loom_saga_start())\n");
    run_free(&r);
    r = lc("saga list --json");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "");
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* show                                                                */

static void
test_saga_show_completed_timeline(void **state)
{
    run r;

    (void) state;
    r = lc("saga show order-1");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_has(r.out, "saga        order-1\n"
                      "type        shop.CreateOrder, version 2\n"
                      "state       COMPLETED\n"
                      "step        2 ShipOrder (attempt 1)\n"
                      "started     ");
    assert_has(r.out, " (took 2.5 s)\n"
                      "changes     8 transitions; commands go through "
                      "outbox default\n"
                      "data        7 bytes of shop.OrderPlaced (give --types "
                      "LIB.so to decode)\n");
    /* Nothing has a detail: no DETAIL column. */
    assert_row(r.out, "TIME ", "TIME STEP ATTEMPT KIND DURATION MESSAGE");
    assert_row(r.out, " started", "+0.000 s ReserveInventory 1 started");
    assert_row(r.out, "000000000101",
               "+0.000 s ReserveInventory 1 command 000000000101");
    /* Each reply with the time its command took. */
    assert_row(r.out, "000000000102",
               "+0.120 s ReserveInventory 1 reply 120 ms 000000000102");
    assert_row(r.out, "000000000104",
               "+0.450 s ChargePayment 1 reply 329 ms 000000000104");
    assert_row(r.out, "000000000106",
               "+2.500 s ShipOrder 1 reply 2.0 s 000000000106");
    assert_row(r.out, "completed", "+2.500 s completed");
    run_free(&r);
}

static void
test_saga_show_retries_timeout_compensation(void **state)
{
    run r;

    (void) state;
    r = lc("saga show order-2");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "state       COMPENSATED\n");
    assert_row(r.out, "TIME ",
               "TIME STEP ATTEMPT KIND DURATION MESSAGE DETAIL");
    assert_has(r.out, "last error  ChargePayment: CARD_DECLINED: "
                      "insufficient funds\n");
    assert_row(r.out, "000000000204",
               "+0.300 s ChargePayment 1 failure 219 ms 000000000204 "
               "PAYMENT_DOWN: gateway timeout");
    assert_row(r.out, "000000000205",
               "+1.300 s ChargePayment 2 retry 000000000205 after 1 s");
    /* A timeout is timed from the retry that sent attempt 2. */
    assert_row(r.out, " timeout ",
               "+31.300 s ChargePayment 2 timeout 30 s no reply within 30 s");
    assert_row(r.out, "000000000207",
               "+33.700 s ChargePayment 3 failure 400 ms 000000000207 "
               "CARD_DECLINED: insufficient funds");
    assert_row(r.out, "000000000208",
               "+33.701 s CancelReservation 1 compensate 000000000208");
    assert_row(r.out, "000000000209",
               "+33.800 s CancelReservation 1 reply 99 ms 000000000209");
    assert_row(r.out, "compensated", "+33.800 s compensated");
    run_free(&r);
}

static void
test_saga_show_compensation_failed(void **state)
{
    run r;

    (void) state;
    r = lc("saga show order-3");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "state       COMPENSATION_FAILED\n"
                      "step        1 ChargePayment, compensated by "
                      "RefundPayment (attempt 3)\n");
    assert_has(r.out, "running     ");
    assert_has(r.out, "last error  RefundPayment: REFUND_DOWN: payment "
                      "gateway unavailable\n");
    assert_true(strstr(r.out, "pending") == NULL);
    assert_row(r.out, "000000000306",
               "+0.900 s ShipOrder 1 failure 499 ms 000000000306 NO_STOCK: "
               "warehouse is empty");
    assert_row(r.out, "000000000308",
               "+1.901 s RefundPayment 1 failure 1.0 s 000000000308 "
               "REFUND_DOWN: payment gateway unavailable");
    assert_row(r.out, "compensation_failed",
               "+7.000 s RefundPayment 3 compensation_failed REFUND_DOWN: "
               "payment gateway unavailable (3 attempts)");
    run_free(&r);
}

static void
test_saga_show_running_waits_for_reply(void **state)
{
    run r;

    (void) state;
    r = lc("saga show order-4");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "step        1 ChargePayment (attempt 1)\n"
                      "waiting     for the reply to command "
                      "0190f5c2-8a41-7cc3-9d52-000000000403, until ");
    assert_has(r.out, " (in 24 min)\n");
    assert_row(r.out, "+1.000 s",
               "+1.000 s ChargePayment 1 command 000000000403");
    run_free(&r);

    /* No definition: the step by index; waiting to retry. */
    r = lc("saga show refund-1");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "type        shop.Refund, version 1 (no orchestrator "
                      "registered this definition)\n");
    assert_has(r.out, "step        0 (attempt 2)\n"
                      "waiting     to retry, at ");
    assert_has(r.out, "data        0 bytes (give --types LIB.so to decode)\n");
    assert_has(r.out, "\n(nothing logged)\n");
    run_free(&r);
}

static void
test_saga_show_types_decode_the_data(void **state)
{
    run r;

    (void) state;
    r = lc("saga show order-1 --types %s", LOOMCTL_TYPES_PATH);
    assert_int_equal(r.rc, 0);
    assert_has(r.out,
               "data        {\"customer\":\"ada\",\"totalCents\":\"104\"}\n");
    run_free(&r);

    /* Its definition records no data type: by field number. */
    loomt_sql_exec("UPDATE loom.saga_definitions SET data_type = NULL");
    r = lc("saga show order-2 --types %s", LOOMCTL_TYPES_PATH);
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "data        {\"1\":\"bob\"} (by field number: its "
                      "definition records no data type)\n");
    run_free(&r);

    /* Bytes that are no protobuf. */
    loomt_sql_exec("UPDATE loom.saga_instances SET data = '\\xff' "
                   "WHERE id = 'order-2'");
    r = lc("saga show order-2 --types %s", LOOMCTL_TYPES_PATH);
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "data        1 byte, not decodable as protobuf\n");
    run_free(&r);

    r = lc("saga show order-1 --types /nonexistent.so");
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "--types /nonexistent.so: cannot load it");
    run_free(&r);
}

static void
test_saga_show_json(void **state)
{
    char line[16384], s[256];
    const char *v;
    run r;

    (void) state;
    r = lc("saga show order-2 --json");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    get_str(line, "state", s, sizeof s);
    assert_string_equal(s, "COMPENSATED");
    get_str(line, "data_type", s, sizeof s);
    assert_string_equal(s, "shop.OrderPlaced");
    assert_int_equal(get_i64(line, "data_bytes"), 5);
    get_raw(line, "data", s, sizeof s);
    assert_string_equal(s, "null");
    get_str(line, "data_base64", s, sizeof s);
    assert_string_equal(s, "CgNib2I=");
    assert_int_equal(get_i64(line, "transitions"), 9);
    assert_int_equal(count_of(line, "\"kind\":"), 12);
    assert_has(line, "\"kind\":\"timeout\",\"duration_seconds\":30.000,"
                     "\"message_id\":null,\"detail\":\"no reply within 30 "
                     "s\"}");
    assert_has(line, "\"kind\":\"reply\",\"duration_seconds\":0.080,"
                     "\"message_id\":\"0190f5c2-8a41-7cc3-9d52-000000000202\"");
    run_free(&r);

    r = lc("saga show order-1 --json --types %s", LOOMCTL_TYPES_PATH);
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    get_raw(line, "data", s, sizeof s);
    assert_string_equal(s, "{\"customer\":\"ada\",\"totalCents\":\"104\"}");
    assert_false(jl_member(line, "data_base64", &v, NULL));
    run_free(&r);
}

static void
test_saga_show_unknown_and_bad_ids(void **state)
{
    run r;

    (void) state;
    r = lc("saga show order-99");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    assert_has(r.err, "loomctl: saga show: saga \"order-99\" does not exist "
                      "(`loomctl saga list` lists the sagas there are)");
    run_free(&r);

    r = lc("saga show \"$(printf 'a\\nb')\"");
    assert_int_equal(r.rc, 2);
    assert_has(r.err, "saga show: ID: a saga id is 1 to 255 bytes of UTF-8 "
                      "without control characters");
    run_free(&r);

    r = lc("saga show");
    assert_int_equal(r.rc, 2);
    assert_has(r.err, "saga show: give the saga's ID");
    run_free(&r);

    r = lc("saga show order-1 order-2");
    assert_int_equal(r.rc, 2);
    assert_has(r.err, "unexpected argument \"order-2\"");
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* retry, skip, abort                                                  */

/* The command it suggests is safe to paste: a saga id with a space, a
 * semicolon, a $( ) and a quote is one quoted shell word. */
static void
test_saga_request_suggests_a_quoted_show_command(void **state)
{
    run r;

    (void) state;
    loomt_sql_exec("INSERT INTO loom.saga_instances (id, type, def_version, "
                   "state, step, attempt, outbox, data, version) VALUES "
                   "('odd id;$(x)''q', 'shop.CreateOrder', 2, 'RUNNING', 0, "
                   "1, 'default', '\\x', 1)");
    r = lc("saga abort %s --by bob", sq("odd id;$(x)'q"));
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "`loomctl saga show 'odd id;$(x)'\\''q'` shows the "
                      "outcome");
    run_free(&r);
    loomt_sql_exec("DELETE FROM loom.saga_instances WHERE id = "
                   "'odd id;$(x)''q'");
}

static void
test_saga_retry_records_request(void **state)
{
    char host[256], want[600], line[4096], s[256];
    run r;

    (void) state;
    r = lc("saga retry order-3 --by alice");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(r.out,
                        "requested: retry saga order-3 (COMPENSATION_FAILED at "
                        "step 1 ChargePayment, attempt 3), by alice\n"
                        "a running orchestrator for shop.CreateOrder applies "
                        "it, usually at once; `loomctl saga show order-3` "
                        "shows the outcome\n");
    assert_col("order-3", "pending_op", "retry");
    assert_col("order-3", "pending_by", "alice");
    assert_col("order-3", "claimed_by", "");
    /* Made due at once, for the orchestrators' deadline scan. */
    assert_int_equal(sqlf_ll("SELECT count(*) FROM loom.saga_instances WHERE "
                             "id = 'order-3' AND deadline <= now()"),
                     1);
    run_free(&r);

    /* show and list name the pending request. */
    r = lc("saga show order-3");
    assert_has(r.out, "pending     retry requested by alice, not applied yet "
                      "(a running orchestrator applies it)\n");
    run_free(&r);
    r = lc("saga list --state COMPENSATION_FAILED");
    assert_row_like(r.out, "order-3 ", "order-3 ",
                    " retry by alice RefundPayment: REFUND_DOWN: payment "
                    "gateway unavailable");
    run_free(&r);

    /* Without --by: $USER@host. */
    assert_int_equal(gethostname(host, sizeof host), 0);
    host[sizeof host - 1] = '\0';
    setenv("USER", "opsbob", 1);
    r = lc("saga abort order-4 --json");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    snprintf(want, sizeof want, "opsbob@%s", host);
    get_str(line, "by", s, sizeof s);
    assert_string_equal(s, want);
    get_str(line, "op", s, sizeof s);
    assert_string_equal(s, "abort");
    get_str(line, "state", s, sizeof s);
    assert_string_equal(s, "RUNNING");
    get_raw(line, "applied", s, sizeof s);
    assert_string_equal(s, "null");
    assert_col("order-4", "pending_by", want);
    run_free(&r);
}

static void
assert_refused(const char *args, const char *message)
{
    run r = lc("%s", args);

    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    assert_has(r.err, message);
    run_free(&r);
}

static void
test_saga_request_refusals(void **state)
{
    (void) state;
    /* retry and skip only for COMPENSATION_FAILED; the message names the
     * state. */
    assert_refused("saga retry order-4",
                   "loomctl: saga retry: saga \"order-4\" is RUNNING: retry "
                   "applies only to COMPENSATION_FAILED");
    assert_refused("saga skip order-2",
                   "loomctl: saga skip: saga \"order-2\" is COMPENSATED: skip "
                   "applies only to COMPENSATION_FAILED");
    assert_refused("saga abort order-1",
                   "loomctl: saga abort: saga \"order-1\" is COMPLETED "
                   "(final): nothing to abort");
    assert_refused("saga abort order-99",
                   "loomctl: saga abort: saga \"order-99\" does not exist "
                   "(list sagas with: loomctl saga list)");
    assert_col("order-4", "pending_op", "");
    assert_col("order-2", "pending_op", "");

    /* One pending request at a time. */
    loomt_sql_exec("UPDATE loom.saga_instances SET pending_op = 'retry', "
                   "pending_by = 'alice' WHERE id = 'order-3'");
    assert_refused("saga skip order-3 --by bob",
                   "loomctl: saga skip: saga \"order-3\" already has a "
                   "pending \"retry\" request (by alice) (wait for a running "
                   "orchestrator to apply it)");
    assert_col("order-3", "pending_by", "alice");
}

/* Plays the orchestrator: once saga `id` has a pending request, waits
 * `delay_ms` and applies it as `sql` (an UPDATE that clears pending_op).
 * Returns the child's pid. */
static pid_t
fake_orchestrator(const char *id, long delay_ms, const char *sql)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        PGconn *pg = PQconnectdb(loomt_dsn());
        char q[256];
        int ok = 0;

        snprintf(q, sizeof q,
                 "SELECT 1 FROM loom.saga_instances WHERE id = '%s' AND "
                 "pending_op IS NOT NULL",
                 id);
        for (int i = 0; i < 300 && !ok; i++) {
            PGresult *r = PQexec(pg, q);
            ok = PQntuples(r) == 1;
            PQclear(r);
            if (!ok)
                sleep_ms(50);
        }
        sleep_ms(delay_ms);
        if (ok) {
            PGresult *r = PQexec(pg, sql);
            ok = PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
        }
        PQfinish(pg);
        _exit(ok ? 0 : 1);
    }
    return pid;
}

static void
reap(pid_t pid)
{
    int status = 0;

    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void
test_saga_request_wait_sees_it_applied(void **state)
{
    char line[4096], s[64];
    pid_t pid;
    run r;

    (void) state;
    pid = fake_orchestrator(
        "order-4", 300,
        "UPDATE loom.saga_instances SET state = 'ABORTED', pending_op = NULL, "
        "pending_by = NULL, waiting = NULL, deadline = NULL, ended_at = "
        "now(), version = version + 1 WHERE id = 'order-4'");
    r = lc("saga abort order-4 --by alice --wait 30");
    reap(pid);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(r.out,
                        "requested: abort saga order-4 (RUNNING at step 1 "
                        "ChargePayment, attempt 1), by alice\n"
                        "applied: saga order-4 is ABORTED at step 1 "
                        "ChargePayment, attempt 1\n");
    run_free(&r);

    pid = fake_orchestrator(
        "order-3", 100,
        "UPDATE loom.saga_instances SET state = 'COMPENSATING', attempt = 1, "
        "pending_op = NULL, pending_by = NULL, waiting = 'reply', "
        "version = version + 1 WHERE id = 'order-3'");
    r = lc("saga retry order-3 --by alice --wait 30 --json");
    reap(pid);
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    get_raw(line, "applied", s, sizeof s);
    assert_string_equal(s, "true");
    get_str(line, "state", s, sizeof s);
    assert_string_equal(s, "COMPENSATION_FAILED");
    get_str(line, "new_state", s, sizeof s);
    assert_string_equal(s, "COMPENSATING");
    assert_int_equal(get_i64(line, "new_step"), 1);
    assert_int_equal(get_i64(line, "new_attempt"), 1);
    run_free(&r);
}

static void
test_saga_request_wait_times_out(void **state)
{
    long long start = now_ms();
    run r;

    (void) state;
    r = lc("saga skip order-3 --by alice --wait 1");
    assert_int_equal(r.rc, 1);
    assert_true(now_ms() - start >= 1000);
    assert_has(r.out, "requested: skip saga order-3 (COMPENSATION_FAILED at "
                      "step 1 ChargePayment, attempt 3), by alice\n");
    assert_has(r.err, "loomctl: saga skip: no orchestrator applied the "
                      "request within 1 s: is one running for "
                      "shop.CreateOrder? The request stays pending until one "
                      "does (`loomctl saga show order-3`)");
    assert_col("order-3", "pending_op", "skip");
    run_free(&r);
}

static void
assert_usage(const char *args, const char *message)
{
    run r = lc("%s", args);

    assert_int_equal(r.rc, 2);
    assert_string_equal(r.out, "");
    assert_has(r.err, message);
    assert_has(r.err, "usage: loomctl saga list");
    run_free(&r);
}

static void
test_saga_bad_arguments(void **state)
{
    char args[512];

    (void) state;
    assert_usage("saga", "saga: give a subcommand: list, show, retry, skip, "
                         "abort or diagram");
    assert_usage("saga restart order-3", "unknown subcommand \"restart\"");
    assert_usage("saga retry", "saga retry: give the saga's ID");
    assert_usage("saga retry order-3 order-4",
                 "unexpected argument \"order-4\"");
    assert_usage("saga retry order-3 --wait 0",
                 "--wait: expected a whole number from 1 to 86400");
    assert_usage("saga abort order-3 --wait soon", "--wait: expected");
    assert_usage("saga abort order-3 --by ''",
                 "--by: expected a non-empty UTF-8 name");
    /* The library's own check: who is at most 255 bytes. */
    snprintf(args, sizeof args, "saga abort order-4 --by %0300d", 7);
    assert_usage(args, "saga abort: loom_saga_request: who is too long");
    assert_col("order-4", "pending_op", "");
    assert_usage("saga list --limit 0", "--limit: expected a whole number");
    assert_usage("saga list --state DONE", "--state: no state \"DONE\"");
    assert_usage("saga list extra", "unexpected argument \"extra\"");
    assert_usage("saga list --by x", "saga list: unknown option \"--by\"");
    assert_usage("saga diagram", "give the saga TYPE");
    assert_usage("saga diagram shop.CreateOrder --version x",
                 "--version: expected a whole number");
}

/* ------------------------------------------------------------------ */
/* diagram                                                             */

static void
test_saga_diagram(void **state)
{
    char line[1024], s[256];
    run r;

    (void) state;
    r = lc("saga diagram shop.CreateOrder");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "flowchart LR\n"
                               "  ReserveInventory --> ChargePayment --> "
                               "ShipOrder\n"
                               "  ChargePayment -. fails .-> "
                               "CancelReservation\n");
    run_free(&r);

    r = lc("saga diagram shop.CreateOrder --version 1");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out,
                        "flowchart LR\n  ReserveInventory --> ChargePayment\n");
    run_free(&r);

    r = lc("saga diagram shop.CreateOrder --version 1 --json");
    assert_int_equal(r.rc, 0);
    only_json_line(r.out, line, sizeof line);
    assert_int_equal(get_i64(line, "version"), 1);
    get_str(line, "diagram", s, sizeof s);
    assert_string_equal(s, "flowchart LR\n  ReserveInventory --> "
                           "ChargePayment");
    run_free(&r);

    assert_refused("saga diagram shop.Refund",
                   "loomctl: saga diagram: no saga type \"shop.Refund\"; "
                   "known types: shop.CreateOrder (versions 1, 2)");
    assert_refused("saga diagram shop.CreateOrder --version 3",
                   "loomctl: saga diagram: saga type \"shop.CreateOrder\" has "
                   "no version 3 (its versions: 1, 2)");

    loomt_sql_exec("UPDATE loom.saga_definitions SET diagram = NULL "
                   "WHERE version = 2");
    assert_refused("saga diagram shop.CreateOrder",
                   "saga diagram: shop.CreateOrder version 2 was registered "
                   "without a diagram");

    loomt_sql_exec("TRUNCATE loom.saga_definitions");
    assert_refused("saga diagram shop.CreateOrder",
                   "saga diagram: no saga type \"shop.CreateOrder\": no "
                   "definitions are registered yet");
}

/* ------------------------------------------------------------------ */
/* Help and a database without the schema                              */

static void
test_saga_help(void **state)
{
    run r;

    (void) state;
    r = lc("help saga");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "usage: loomctl saga list [--state S] [--type T] "
                      "[--limit N]\n"
                      "       loomctl saga show ID\n"
                      "       loomctl saga retry|skip|abort ID [--by NAME] "
                      "[--wait SECONDS]\n"
                      "       loomctl saga diagram TYPE [--version V]\n");
    assert_has(r.out, "  skip      COMPENSATION_FAILED: count the failed "
                      "compensation as\n");
    run_free(&r);
    r = lc("saga show --help");
    assert_int_equal(r.rc, 0);
    assert_has(r.out, "--wait SECONDS");
    run_free(&r);
    r = lc("--help");
    assert_has(r.out, "  saga       sagas: ");
    run_free(&r);
}

static void
test_saga_without_schema(void **state)
{
    char db[4200], dbname[64], sql[128];
    run r;

    (void) state;
    snprintf(dbname, sizeof dbname, "loomt_saga_empty_%ld", (long) getpid());
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", dbname);
    loomt_sql_exec(sql);
    snprintf(db, sizeof db, "%s dbname=%s", loomt_dsn(), dbname);
    r = lc("saga list --db %s", sq(db));
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "the Eventloom schema is missing or old: run `loomctl "
                      "migrate`");
    run_free(&r);
    r = lc("saga retry order-3 --db %s", sq(db));
    assert_int_equal(r.rc, 1);
    assert_has(r.err, "run `loomctl migrate`");
    run_free(&r);
    snprintf(sql, sizeof sql, "DROP DATABASE %s", dbname);
    loomt_sql_exec(sql);
}

/* ------------------------------------------------------------------ */
/* loom_saga_request() from C                                          */

static void
test_saga_request_error_codes(void **state)
{
    loom_store *s = loomt_store_open();
    char err[256], longid[LOOM_SAGA_MAX_ID + 2];

    (void) state;
    /* Arguments, refused before anything is sent. */
    assert_int_equal(loom_saga_request(NULL, "order-3", LOOM_SAGA_OP_RETRY,
                                       "alice", err, sizeof err),
                     LOOM_EINVAL);
    assert_has(err, "the store is NULL");
    assert_int_equal(loom_saga_request(s, NULL, LOOM_SAGA_OP_RETRY, "alice",
                                       err, sizeof err),
                     LOOM_EINVAL);
    assert_int_equal(loom_saga_request(s, "order-3", LOOM_SAGA_OP_RETRY, NULL,
                                       err, sizeof err),
                     LOOM_EINVAL);
    assert_has(err, "who is NULL");
    assert_int_equal(loom_saga_request(s, "order-3", (loom_saga_op) 0, "alice",
                                       err, sizeof err),
                     LOOM_EINVAL);
    assert_has(err, "unknown request 0");
    assert_int_equal(
        loom_saga_request(s, "order-3", (loom_saga_op) 4, "alice", NULL, 0),
        LOOM_EINVAL);
    assert_int_equal(
        loom_saga_request(s, "", LOOM_SAGA_OP_ABORT, "alice", err, sizeof err),
        LOOM_EINVAL);
    assert_has(err, "the saga id is empty");
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_equal(loom_saga_request(s, longid, LOOM_SAGA_OP_ABORT, "alice",
                                       err, sizeof err),
                     LOOM_EINVAL);
    assert_has(err, "the saga id is too long");
    assert_int_equal(loom_saga_request(s, "order\n3", LOOM_SAGA_OP_ABORT,
                                       "alice", err, sizeof err),
                     LOOM_EINVAL);
    assert_has(err, "contains a control character");
    assert_int_equal(loom_saga_request(s, "order-\xff", LOOM_SAGA_OP_ABORT,
                                       "alice", err, sizeof err),
                     LOOM_EINVAL);
    assert_has(err, "not valid UTF-8");
    assert_int_equal(loom_saga_request(s, "order-3", LOOM_SAGA_OP_ABORT, "",
                                       err, sizeof err),
                     LOOM_EINVAL);
    assert_has(err, "who is empty");
    assert_string_equal(loom_store_sqlstate(s), "");

    /* The database's refusals: LM020, LM021, LM022. */
    assert_int_equal(loom_saga_request(s, "order-99", LOOM_SAGA_OP_ABORT,
                                       "alice", err, sizeof err),
                     LOOM_ENOTFOUND);
    assert_string_equal(loom_store_sqlstate(s), "LM020");
    assert_string_equal(err, "saga \"order-99\" does not exist (list sagas "
                             "with: loomctl saga list)");
    assert_int_equal(loom_saga_request(s, "order-4", LOOM_SAGA_OP_SKIP, "alice",
                                       err, sizeof err),
                     LOOM_EINVAL);
    assert_string_equal(loom_store_sqlstate(s), "LM021");
    assert_string_equal(err, "saga \"order-4\" is RUNNING: skip applies only "
                             "to COMPENSATION_FAILED");
    assert_int_equal(loom_saga_request(s, "order-2", LOOM_SAGA_OP_ABORT,
                                       "alice", err, sizeof err),
                     LOOM_EINVAL);
    assert_has(err, "is COMPENSATED (final): nothing to abort");
    assert_col("order-4", "pending_op", "");

    assert_int_equal(loom_saga_request(s, "order-3", LOOM_SAGA_OP_SKIP, "alice",
                                       err, sizeof err),
                     LOOM_OK);
    assert_string_equal(err, "");
    assert_col("order-3", "pending_op", "skip");
    assert_col("order-3", "pending_by", "alice");
    assert_int_equal(loom_saga_request(s, "order-3", LOOM_SAGA_OP_ABORT, "bob",
                                       err, sizeof err),
                     LOOM_EBUSY);
    assert_string_equal(loom_store_sqlstate(s), "LM022");
    assert_has(err, "already has a pending \"skip\" request (by alice)");
    assert_col("order-3", "pending_op", "skip");

    /* abort applies to any saga that is not final; err may be NULL, and
     * a short err is cut, never overrun. */
    assert_int_equal(
        loom_saga_request(s, "order-4", LOOM_SAGA_OP_ABORT, "bob", NULL, 0),
        LOOM_OK);
    assert_col("order-4", "pending_op", "abort");
    assert_int_equal(
        loom_saga_request(s, "order-4", LOOM_SAGA_OP_ABORT, "bob", err, 8),
        LOOM_EBUSY);
    assert_string_equal(err, "saga \"o");
    /* A request its state refuses says so, pending request or not (it
     * used to be told to wait for the pending abort). */
    assert_int_equal(loom_saga_request(s, "order-4", LOOM_SAGA_OP_RETRY, "bob",
                                       err, sizeof err),
                     LOOM_EINVAL);
    assert_string_equal(loom_store_sqlstate(s), "LM021");
    assert_has(err, "is RUNNING: retry applies only to COMPENSATION_FAILED");
    loom_store_close(s);
}

/* A request wakes the orchestrators (NOTIFY loom_saga) when it commits. */
static void
test_saga_request_notifies(void **state)
{
    loom_store *s = loomt_store_open();
    PGconn *listener = PQconnectdb(loomt_dsn());
    PGnotify *n = NULL;
    long long deadline;
    PGresult *r;

    (void) state;
    assert_int_equal(PQstatus(listener), CONNECTION_OK);
    r = PQexec(listener, "LISTEN loom_saga");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    /* A refused request notifies no one. */
    assert_int_equal(
        loom_saga_request(s, "order-1", LOOM_SAGA_OP_ABORT, "alice", NULL, 0),
        LOOM_EINVAL);
    sleep_ms(200);
    assert_int_equal(PQconsumeInput(listener), 1);
    assert_null(PQnotifies(listener));

    assert_int_equal(
        loom_saga_request(s, "order-4", LOOM_SAGA_OP_ABORT, "alice", NULL, 0),
        LOOM_OK);
    deadline = now_ms() + WAIT_MS;
    while (n == NULL && now_ms() < deadline) {
        assert_int_equal(PQconsumeInput(listener), 1);
        n = PQnotifies(listener);
        if (n == NULL)
            sleep_ms(20);
    }
    assert_non_null(n);
    assert_string_equal(n->relname, "loom_saga");
    PQfreemem(n);
    PQfinish(listener);
    loom_store_close(s);
}

/* ------------------------------------------------------------------ */

static int
group_setup(void **state)
{
    (void) state;
    obt_db_open("loomctl_saga");
    return 0;
}

static int
seed(void **state)
{
    (void) state;
    loomt_sql_exec(seed_sql);
    return 0;
}

static int
no_teardown(void **state)
{
    (void) state;
    return 0;
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, seed, no_teardown)
    const struct CMUnitTest tests[] = {
        T(test_saga_list_newest_first_with_counts),
        T(test_saga_list_filters),
        T(test_saga_list_json),
        T(test_saga_list_empty),
        T(test_saga_show_completed_timeline),
        T(test_saga_show_retries_timeout_compensation),
        T(test_saga_show_compensation_failed),
        T(test_saga_show_running_waits_for_reply),
        T(test_saga_show_types_decode_the_data),
        T(test_saga_show_json),
        T(test_saga_show_unknown_and_bad_ids),
        T(test_saga_request_suggests_a_quoted_show_command),
        T(test_saga_retry_records_request),
        T(test_saga_request_refusals),
        T(test_saga_request_wait_sees_it_applied),
        T(test_saga_request_wait_times_out),
        T(test_saga_bad_arguments),
        T(test_saga_diagram),
        T(test_saga_help),
        T(test_saga_without_schema),
        T(test_saga_request_error_codes),
        T(test_saga_request_notifies),
    };
#undef T

    return cmocka_run_group_tests_name("tools.loomctl.saga", tests, group_setup,
                                       obt_group_teardown);
}
