/*
 * What a saga handler may use while it runs (loom_saga_ctx): memory that
 * lives until its transition is encoded, the saga's id and the attempt.
 * The memory is the orchestrator's handler arena (arena.h), dropped as a
 * whole after each transition, so handlers never free anything.
 */
#include "saga_int.h"

void *
loom_saga_alloc(loom_saga_ctx *ctx, size_t n)
{
    if (ctx == NULL || ctx->arena == NULL) {
        return NULL;
    }
    return loom__arena_alloc(ctx->arena, n);
}

char *
loom_saga_strdup(loom_saga_ctx *ctx, const char *s)
{
    if (ctx == NULL || ctx->arena == NULL || s == NULL) {
        return NULL;
    }
    return loom__arena_strdup(ctx->arena, s);
}

const char *
loom_saga_ctx_id(const loom_saga_ctx *ctx)
{
    return ctx != NULL && ctx->id != NULL ? ctx->id : "";
}

uint32_t
loom_saga_ctx_attempt(const loom_saga_ctx *ctx)
{
    return ctx != NULL ? ctx->attempt : 0;
}
