/* What the three services share: ids, the ledger key, packing events. */
#include <stdio.h>
#include <string.h>

#include "services.h"

/* Per thread: the demo reads stock on its own thread while the
 * participants run on the loop thread of the same process. */
static _Thread_local char os_key[OS_ID_MAX];

void
os_ledger_key(const char *order_id)
{
    snprintf(os_key, sizeof os_key, "%s", order_id ? order_id : "");
}

int
os_ledger_is(const char *order_id)
{
    return os_key[0] != '\0' && order_id != NULL &&
           strcmp(os_key, order_id) == 0;
}

void
os_id(char *buf, size_t len, const char *shop, const char *name)
{
    snprintf(buf, len, "%s-%s", shop, name);
}

loom_err
os_event(loom_participant_ctx *ctx, const ProtobufCMessage *m,
         loom_event_data *ev)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = loom_participant_alloc(ctx, len > 0 ? len : 1);

    if (buf == NULL)
        return LOOM_ENOMEM;
    memset(ev, 0, sizeof *ev);
    ev->type = m->descriptor->name;
    ev->schema_version = 1;
    ev->data = buf;
    ev->data_len = protobuf_c_message_pack(m, buf);
    return LOOM_OK;
}

loom_err
os_emit(loom_participant_ctx *ctx, const char *stream, int64_t expected,
        const ProtobufCMessage *m)
{
    loom_event_data ev;
    loom_err rc = os_event(ctx, m, &ev);

    if (rc != LOOM_OK)
        return rc;
    return loom_participant_emit(ctx, stream, expected, &ev, 1);
}
