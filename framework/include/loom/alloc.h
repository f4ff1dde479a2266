/*
 * Allocation. Every allocation Eventloom makes goes through these
 * functions, so a program can route them to its own allocator and tests can
 * inject failures. Memory the library hands to the caller (a string from
 * loom_registry_to_json(), say) is freed with loom_free().
 */
#ifndef LOOM_ALLOC_H
#define LOOM_ALLOC_H

#include <stddef.h>

#include "loom/error.h"
#include "loom/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A replacement allocator: the three functions behave like the C library's.
 * `arg` is passed back unchanged. */
typedef struct loom_allocator {
    void *(*malloc_fn)(size_t size, void *arg);
    void *(*realloc_fn)(void *ptr, size_t size, void *arg);
    void (*free_fn)(void *ptr, void *arg);
    void *arg;
} loom_allocator;

/*
 * Installs `a` (copied) as the allocator for every later allocation, or the
 * C library's when `a` is NULL. Call it before opening any handle: memory
 * allocated by one allocator must be freed by the same one. Returns
 * LOOM_EINVAL when one of the three functions is missing. Not thread-safe.
 */
LOOM_API loom_err loom_set_allocator(const loom_allocator *a);

/*
 * Allocate, resize and free through the installed allocator, with the C
 * library's contracts: loom_malloc() and loom_realloc() return NULL when
 * out of memory (loom_realloc() then leaves `ptr` allocated and
 * unchanged), loom_malloc(0) returns a unique pointer or NULL, and the
 * caller owns what they return until it passes it to loom_free() (or to
 * a function documented to take it). loom_free(NULL) is a no-op. They
 * report no loom_err: a NULL return is the only failure. Thread-safe
 * when the installed allocator is.
 */
LOOM_API void *loom_malloc(size_t size);
LOOM_API void *loom_realloc(void *ptr, size_t size);
LOOM_API void loom_free(void *ptr);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_ALLOC_H */
