/*
 * The definitions an orchestrator runs, recorded in loom.saga_definitions
 * when it opens (one upsert per definition, in one transaction), so that
 * loomctl can name steps and draw diagrams without the code. The steps
 * are JSON: forward steps first, then compensations, each with its kind,
 * messages, timeout and retry policy.
 */
#include <stdio.h>
#include <string.h>

#include "orch_int.h"
#include "pbjson.h"

#define REGISTER_SQL                                                           \
    "INSERT INTO loom.saga_definitions (name, version, reply_topic, steps, "   \
    "diagram, source, data_type) VALUES ($1, $2::integer, $3, $4::jsonb, $5, " \
    "$6, $7) ON CONFLICT (name, version) DO UPDATE SET reply_topic = "         \
    "EXCLUDED.reply_topic, steps = EXCLUDED.steps, diagram = "                 \
    "EXCLUDED.diagram, source = EXCLUDED.source, data_type = "                 \
    "EXCLUDED.data_type, registered_at = now()"

static void
json_str(loom__buf *b, const char *s)
{
    if (s == NULL) {
        loom__buf_puts(b, "null");
    } else {
        loom__json_string(b, s, strlen(s), 0);
    }
}

static void
json_step(loom__buf *b, const loom_saga_def *def, const loom_saga_step *st,
          int forward, size_t index)
{
    const loom_saga_retry *r = &st->retry;

    loom__buf_printf(b, "{\"kind\":\"%s\",\"index\":%zu,\"name\":",
                     forward ? "step" : "compensation", index);
    json_str(b, st->name);
    loom__buf_puts(b, ",\"participant\":");
    json_str(b, st->participant);
    loom__buf_puts(b, ",\"command\":");
    json_str(b, st->command->name);
    loom__buf_puts(b, ",\"reply\":");
    json_str(b, st->reply->name);
    loom__buf_puts(b, ",\"failure\":");
    json_str(b, st->failure != NULL ? st->failure->name : NULL);
    loom__buf_puts(b, ",\"compensation\":");
    json_str(b, forward && st->compensation >= 0
                    ? def->compensations[st->compensation].name
                    : NULL);
    loom__buf_printf(b,
                     ",\"timeout_ms\":%u,\"retry\":{\"max_attempts\":%u,"
                     "\"initial_backoff_ms\":%u,\"multiplier\":%.17g,"
                     "\"max_backoff_ms\":%u,\"non_retryable\":[",
                     (unsigned) st->timeout_ms, (unsigned) r->max_attempts,
                     (unsigned) r->initial_backoff_ms, r->multiplier,
                     (unsigned) r->max_backoff_ms);
    for (size_t i = 0; i < r->n_non_retryable; i++) {
        if (i > 0) {
            loom__buf_putc(b, ',');
        }
        json_str(b, r->non_retryable[i]);
    }
    loom__buf_puts(b, "]}}");
}

static void
json_steps(loom__buf *b, const loom_saga_def *def)
{
    loom__buf_putc(b, '[');
    for (size_t i = 0; i < def->n_steps; i++) {
        if (i > 0) {
            loom__buf_putc(b, ',');
        }
        json_step(b, def, &def->steps[i], 1, i);
    }
    for (size_t i = 0; i < def->n_compensations; i++) {
        loom__buf_putc(b, ',');
        json_step(b, def, &def->compensations[i], 0, i);
    }
    loom__buf_putc(b, ']');
}

loom_err
loom__orch_register(loom_orchestrator *o, char *err, size_t errlen)
{
    loom__buf json = LOOM__BUF_INIT;
    loom_tx tx;
    loom_err rc = LOOM_OK;

    loom__tx_init(&tx);
    for (size_t i = 0; i < o->n_defs && rc == LOOM_OK; i++) {
        const loom_saga_def *def = o->defs[i];
        char version[16];
        const char *values[7];

        loom__buf_reset(&json);
        json_steps(&json, def);
        if (json.failed) {
            rc = LOOM_ENOMEM;
            break;
        }
        snprintf(version, sizeof version, "%u", (unsigned) def->version);
        values[0] = def->name;
        values[1] = version;
        values[2] = def->reply_topic;
        values[3] = json.data;
        values[4] = def->diagram;
        values[5] = def->source;
        /* what `loomctl saga show --types` decodes the data as */
        values[6] = def->data->name;
        rc = loom_tx_exec(&tx, REGISTER_SQL, 7, values);
    }
    if (rc == LOOM_OK) {
        rc = loom__store_run_tx(o->conn.store, &tx);
        if (rc != LOOM_OK && err != NULL && errlen > 0) {
            snprintf(err, errlen,
                     "orchestrator: recording the saga definitions failed: "
                     "%s%s",
                     loom_store_errmsg(o->conn.store),
                     rc == LOOM_ESCHEMA ? " (run `loomctl migrate`)" : "");
        }
    } else if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "orchestrator: %s",
                 rc == LOOM_ENOMEM ? "out of memory" : loom_tx_errmsg(&tx));
    }
    loom__buf_free(&json);
    loom__tx_free(&tx);
    return rc;
}
