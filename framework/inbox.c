/*
 * The inbox mark (loom/inbox.h): one statement, loom.inbox_mark(), queued
 * in the caller's unit of work ahead of the message's effects. It raises
 * LM015 when the id is already recorded, which the runner reports as
 * LOOM_EALREADY and which rolls the effects back with it.
 */
#include <string.h>

#include "loom/inbox.h"
#include "pgwire.h"
#include "tx_int.h"

#define INBOX_SQL_MARK "SELECT loom.inbox_mark($1, $2)"

loom_err
loom_inbox_mark(loom_tx *tx, const char *consumer, const loom_uuid *id)
{
    static const uint32_t types[2] = {LOOM__OID_TEXT, LOOM__OID_UUID};
    const char *values[2];
    int lengths[2];
    size_t len;

    if (tx == NULL)
        return LOOM_EINVAL;
    if (consumer == NULL || consumer[0] == '\0')
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "inbox mark: the consumer name is %s",
                             consumer == NULL ? "NULL" : "empty");
    len = strnlen(consumer, LOOM_INBOX_MAX_CONSUMER + 1);
    if (len > LOOM_INBOX_MAX_CONSUMER)
        return loom__tx_fail(tx, LOOM_ETOOBIG,
                             "inbox mark: the consumer name is longer than "
                             "%d bytes (LOOM_INBOX_MAX_CONSUMER)",
                             LOOM_INBOX_MAX_CONSUMER);
    if (!loom__utf8_valid(consumer, len))
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "inbox mark: the consumer name is not valid "
                             "UTF-8");
    if (id == NULL || loom_uuid_is_nil(id))
        return loom__tx_fail(tx, LOOM_EINVAL,
                             "inbox mark for consumer \"%s\": the message "
                             "id is %s",
                             consumer, id == NULL ? "NULL" : "nil");
    values[0] = consumer;
    lengths[0] = (int) len;
    values[1] = (const char *) id->bytes;
    lengths[1] = 16;
    return loom_tx_exec_binary(tx, INBOX_SQL_MARK, 2, types, values, lengths);
}
