/*
 * A bump allocator in chunks: the largest chunk is kept across resets, so
 * a steady stream of transitions allocates nothing once warm.
 */
#include <stdint.h>
#include <string.h>

#include "arena.h"
#include "loom/alloc.h"

#define CHUNK_MIN ((size_t) 8192)
#define ALIGN     ((size_t) 16)

struct loom__arena_chunk {
    loom__arena_chunk *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    /* Keeps the data that follows the header aligned to ALIGN. */
    _Alignas(16) unsigned char data[];
};

static void *
pb_alloc(void *ctx, size_t n)
{
    return loom__arena_alloc(ctx, n);
}

static void
pb_free(void *ctx, void *p)
{
    (void) ctx;
    (void) p; /* freed with the arena */
}

void
loom__arena_init(loom__arena *a)
{
    a->head = NULL;
    a->pb.alloc = pb_alloc;
    a->pb.free = pb_free;
    a->pb.allocator_data = a;
}

void *
loom__arena_alloc(loom__arena *a, size_t n)
{
    if (n == 0) {
        n = 1;
    }
    if (n > SIZE_MAX - ALIGN) {
        return NULL;
    }
    n = (n + ALIGN - 1) & ~(ALIGN - 1);
    loom__arena_chunk *c = a->head;
    if (c == NULL || c->size - c->used < n) {
        size_t size = n > CHUNK_MIN ? n : CHUNK_MIN;
        if (c != NULL && c->size * 2 > size && c->size < ((size_t) 1 << 24)) {
            size = c->size * 2; /* grow geometrically while busy */
        }
        c = loom_malloc(sizeof *c + size);
        if (c == NULL) {
            return NULL;
        }
        c->size = size;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

char *
loom__arena_strdup(loom__arena *a, const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    size_t n = strlen(s) + 1;
    char *p = loom__arena_alloc(a, n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

void
loom__arena_reset(loom__arena *a)
{
    loom__arena_chunk *c = a->head;
    if (c == NULL) {
        return;
    }
    /* Keep the newest chunk, the largest (chunks grow), free the rest. */
    loom__arena_chunk *rest = c->next;
    while (rest != NULL) {
        loom__arena_chunk *next = rest->next;
        loom_free(rest);
        rest = next;
    }
    c->next = NULL;
    c->used = 0;
}

void
loom__arena_free(loom__arena *a)
{
    loom__arena_chunk *c = a->head;
    while (c != NULL) {
        loom__arena_chunk *next = c->next;
        loom_free(c);
        c = next;
    }
    a->head = NULL;
}
