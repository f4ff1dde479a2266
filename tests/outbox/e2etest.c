/* Shared by the end-to-end tests; see e2etest.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "e2etest.h"

loom_err
e2e_order_unit(loom_store *s, loom_tx *tx, const char *stream, int64_t version,
               int doomed)
{
    char payload[300];
    loom_event_data ev;
    loom_outbox_message m;
    loom_err rc;

    snprintf(payload, sizeof payload, "%s %lld", stream,
             (long long) (version + 1));
    memset(&ev, 0, sizeof ev);
    ev.type = "shop.OrderChanged";
    ev.data = payload;
    ev.data_len = strlen(payload);
    memset(&m, 0, sizeof m);
    m.topic = "e2e.orders";
    m.key = stream;
    m.key_len = strlen(stream);
    m.type = "shop.OrderChanged";
    m.payload = payload;
    m.payload_len = strlen(payload);
    loom_tx_reset(tx);
    rc = loom_tx_append(tx, stream,
                        version < 0 ? LOOM_EXPECT_NO_STREAM : version, &ev, 1);
    if (rc == LOOM_OK)
        rc = loom_outbox_add(tx, NULL, &m, 1);
    if (rc == LOOM_OK && doomed)
        rc = loom_tx_exec(tx, "SELECT 1 / 0", 0, NULL);
    if (rc == LOOM_OK)
        rc = loom_store_commit(s, tx);
    return rc;
}

static loom_err
e2e_apply(const loom_message *m, loom_tx *tx, char *why, size_t whylen,
          void *arg)
{
    char payload[64], id[LOOM_UUID_STRLEN], key[32];
    const char *values[3] = {payload, id, key};
    size_t n = m->payload_len < sizeof payload - 1 ? m->payload_len
                                                   : sizeof payload - 1;

    (void) why;
    (void) whylen;
    (void) arg;
    memcpy(payload, m->payload, n);
    payload[n] = '\0';
    n = m->key_len < sizeof key - 1 ? m->key_len : sizeof key - 1;
    memcpy(key, m->key != NULL ? m->key : "", n);
    key[n] = '\0';
    loom_uuid_format(&m->id, id);
    return loom_tx_exec(tx,
                        "INSERT INTO e2e_effects (stream, version, "
                        "message_id, key) VALUES (split_part($1, ' ', 1), "
                        "split_part($1, ' ', 2)::bigint, $2::uuid, $3)",
                        3, values);
}

loom_inbox_consumer *
e2e_consumer(tpt_env *e, const char *topic)
{
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    loom_inbox_consumer_config icfg = LOOM_INBOX_CONSUMER_CONFIG_INIT;
    const char *topics[1] = {topic};
    loom_inbox_consumer *ic = NULL;
    char err[512] = "";
    loom_err rc;

    cfg.group = "billing";
    cfg.topics = topics;
    cfg.n_topics = 1;
    rc = loom_inbox_consumer_open(e->t, &cfg, &icfg, e2e_apply, NULL, &ic, err,
                                  sizeof err);
    if (rc != LOOM_OK)
        fail_msg("loom_inbox_consumer_open: %s: %s", loom_strerror(rc), err);
    return ic;
}
