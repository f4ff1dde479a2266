/* The handlers of ping.proto, and a check of its generated table. */
#include <stdio.h>

#include "ping.loom.h"

loom_err
ping__ping_pong__send_ping__command(loom_saga_ctx *ctx,
                                    const Ping__PingData *data,
                                    Ping__Ping *command)
{
    (void) ctx;
    command->id = data->id;
    return LOOM_OK;
}

loom_err
ping__ping_pong__send_ping__reply(loom_saga_ctx *ctx, Ping__PingData *data,
                                  const Ping__Pong *reply)
{
    (void) ctx;
    (void) data;
    (void) reply;
    return LOOM_OK;
}

loom_err
ping__ping_pong__send_ping__failed(loom_saga_ctx *ctx, Ping__PingData *data,
                                   const loom_saga_failure *why)
{
    (void) ctx;
    (void) data;
    (void) why;
    return LOOM_OK;
}

loom_err
ping__pinger__send_ping__handle(loom_participant_ctx *ctx,
                                const Ping__Ping *command, Ping__Pong *reply)
{
    (void) ctx;
    reply->id = command->id;
    return LOOM_OK;
}

int
main(void)
{
    char err[256];
    if (loom_saga_def_check(&ping__ping_pong__saga, err, sizeof err) !=
        LOOM_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("saga %s: %zu step, participant %s, %zu event\n",
           ping__ping_pong__saga.name, ping__ping_pong__saga.n_steps,
           ping__pinger__participant.name, ping__ping__n_events);
    return 0;
}
