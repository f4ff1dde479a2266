/*
 * The instance cache (cache.h): a chained hash table whose entries are
 * also on a doubly linked list, newest first, so a hit and an eviction are
 * O(1). Each entry owns its id, outbox name and data in one allocation.
 */
#include <string.h>

#include "cache.h"
#include "loom/alloc.h"

struct loom__saga_entry {
    loom__saga_inst inst; /* strings and data point into `mem` */
    uint64_t hash;
    loom__saga_entry *chain;
    loom__saga_entry *newer, *older;
    unsigned char mem[];
};

/* FNV-1a over the id. */
static uint64_t
cache_hash(const char *id)
{
    uint64_t h = 14695981039346656037ull;

    for (const unsigned char *p = (const unsigned char *) id; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return h;
}

loom_err
loom__saga_cache_init(loom__saga_cache *c, size_t cap)
{
    size_t slots = 16;

    memset(c, 0, sizeof *c);
    while (slots < cap && slots < ((size_t) 1 << 24)) {
        slots <<= 1;
    }
    c->slots = loom_malloc(slots * sizeof *c->slots);
    if (c->slots == NULL) {
        return LOOM_ENOMEM;
    }
    memset(c->slots, 0, slots * sizeof *c->slots);
    c->n_slots = slots;
    c->cap = cap > 0 ? cap : 1;
    return LOOM_OK;
}

static loom__saga_entry **
cache_find(loom__saga_cache *c, const char *id, uint64_t h)
{
    loom__saga_entry **pp = &c->slots[h & (c->n_slots - 1)];

    while (*pp != NULL &&
           ((*pp)->hash != h || strcmp((*pp)->inst.id, id) != 0)) {
        pp = &(*pp)->chain;
    }
    return pp;
}

static void
cache_unlink(loom__saga_cache *c, loom__saga_entry *e)
{
    if (e->newer != NULL) {
        e->newer->older = e->older;
    } else {
        c->newest = e->older;
    }
    if (e->older != NULL) {
        e->older->newer = e->newer;
    } else {
        c->oldest = e->newer;
    }
    e->newer = e->older = NULL;
}

static void
cache_push(loom__saga_cache *c, loom__saga_entry *e)
{
    e->newer = NULL;
    e->older = c->newest;
    if (c->newest != NULL) {
        c->newest->newer = e;
    }
    c->newest = e;
    if (c->oldest == NULL) {
        c->oldest = e;
    }
}

/* Removes the entry at *pp from both structures and frees it. */
static void
cache_remove(loom__saga_cache *c, loom__saga_entry **pp)
{
    loom__saga_entry *e = *pp;

    *pp = e->chain;
    cache_unlink(c, e);
    c->n--;
    loom_free(e);
}

const loom__saga_inst *
loom__saga_cache_get(loom__saga_cache *c, const char *id)
{
    uint64_t h = cache_hash(id);
    loom__saga_entry *e = *cache_find(c, id, h);

    if (e == NULL) {
        return NULL;
    }
    cache_unlink(c, e);
    cache_push(c, e);
    return &e->inst;
}

void
loom__saga_cache_drop(loom__saga_cache *c, const char *id)
{
    loom__saga_entry **pp = cache_find(c, id, cache_hash(id));

    if (*pp != NULL) {
        cache_remove(c, pp);
    }
}

void
loom__saga_cache_put(loom__saga_cache *c, const loom__saga_inst *inst)
{
    size_t id_len = strlen(inst->id) + 1;
    size_t ob_len = strlen(inst->outbox) + 1;
    uint64_t h = cache_hash(inst->id);
    loom__saga_entry **pp = cache_find(c, inst->id, h);
    loom__saga_entry *e;

    if (*pp != NULL) {
        cache_remove(c, pp);
    }
    while (c->n >= c->cap && c->oldest != NULL) {
        loom__saga_entry *old = c->oldest;
        cache_remove(c, cache_find(c, old->inst.id, old->hash));
    }
    e = loom_malloc(sizeof *e + id_len + ob_len + inst->data_len);
    if (e == NULL) {
        return;
    }
    e->inst = *inst;
    e->inst.id = (char *) e->mem;
    e->inst.outbox = (char *) e->mem + id_len;
    e->inst.data = e->mem + id_len + ob_len;
    memcpy(e->inst.id, inst->id, id_len);
    memcpy(e->inst.outbox, inst->outbox, ob_len);
    if (inst->data_len > 0) {
        memcpy(e->inst.data, inst->data, inst->data_len);
    }
    e->hash = h;
    /* The slot again: the evictions above may have changed the chain. */
    pp = cache_find(c, inst->id, h);
    e->chain = NULL;
    *pp = e;
    cache_push(c, e);
    c->n++;
}

void
loom__saga_cache_free(loom__saga_cache *c)
{
    while (c->oldest != NULL) {
        loom__saga_entry *old = c->oldest;
        cache_remove(c, cache_find(c, old->inst.id, old->hash));
    }
    loom_free(c->slots);
    memset(c, 0, sizeof *c);
}
