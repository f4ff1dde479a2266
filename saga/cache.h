/*
 * Private to saga/: the orchestrator's cache of saga instances, id ->
 * what the last transition this process committed (or the last load)
 * left. Bounded: the least recently used entry goes first. A cached entry
 * may be stale (another orchestrator moved the saga on, an operator asked
 * for something); every transition is a compare-and-set on the version,
 * so a stale entry only costs a conflict and a reload, never a wrong
 * decision that commits.
 */
#ifndef LOOM_SAGA_CACHE_H
#define LOOM_SAGA_CACHE_H

#include <stddef.h>

#include "saga_int.h"

typedef struct loom__saga_entry loom__saga_entry;

typedef struct loom__saga_cache {
    loom__saga_entry **slots; /* chained hash table */
    size_t n_slots;
    loom__saga_entry *newest, *oldest; /* LRU list */
    size_t n, cap;
} loom__saga_cache;

/* An empty cache of at most `cap` (>= 1) entries. Errors: LOOM_ENOMEM. */
loom_err loom__saga_cache_init(loom__saga_cache *c, size_t cap);
void loom__saga_cache_free(loom__saga_cache *c);

/* The entry for `id`, made the most recently used; NULL when absent. The
 * pointers in it are valid until the next put, drop or free. */
const loom__saga_inst *loom__saga_cache_get(loom__saga_cache *c,
                                            const char *id);

/* Stores a copy of `inst` (replacing the entry of its id), evicting the
 * oldest entry when full. Out of memory drops the entry instead: the
 * cache is only an optimisation. */
void loom__saga_cache_put(loom__saga_cache *c, const loom__saga_inst *inst);

/* Forgets `id` (no-op when absent). */
void loom__saga_cache_drop(loom__saga_cache *c, const char *id);

#endif /* LOOM_SAGA_CACHE_H */
