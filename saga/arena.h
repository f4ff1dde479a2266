/*
 * Private to saga/: the memory a handler's transition lives in. Saga data
 * and replies are unpacked into an arena, handlers point fields at arena
 * memory (loom_saga_alloc), everything is packed, and the whole arena is
 * dropped at once: no field is freed one by one, so a handler can never
 * free what it did not allocate.
 */
#ifndef LOOM_SAGA_ARENA_H
#define LOOM_SAGA_ARENA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

typedef struct loom__arena_chunk loom__arena_chunk;

typedef struct loom__arena {
    loom__arena_chunk *head; /* newest first */
    /* Unpacks into this arena (free is a no-op); set up by _init. */
    ProtobufCAllocator pb;
} loom__arena;

void loom__arena_init(loom__arena *a);
/* n bytes aligned for any type, valid until loom__arena_reset/_free;
 * NULL when out of memory. n 0 gives a valid 1-byte block. */
void *loom__arena_alloc(loom__arena *a, size_t n);
char *loom__arena_strdup(loom__arena *a, const char *s);
/* Drops everything but keeps the first chunk for reuse. */
void loom__arena_reset(loom__arena *a);
void loom__arena_free(loom__arena *a);

#endif /* LOOM_SAGA_ARENA_H */
