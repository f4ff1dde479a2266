/*
 * loom/nats.h in a build without NATS (LOOM_WITH_NATS=OFF): the API is
 * the same, and says that the transport is not there.
 */
#include "loom/nats.h"

loom_err
loom_nats_register(void)
{
    return LOOM_ENOTFOUND;
}

const char *
loom_nats_errmsg(const loom_transport *t)
{
    (void) t;
    return "";
}
