/* The replaceable allocator behind loom_malloc() and friends. */
#include "loom/alloc.h"

#include <stdlib.h>
#include <string.h>

#include "alloc_int.h"

static void *
alloc_std_malloc(size_t size, void *arg)
{
    (void) arg;
    return malloc(size ? size : 1);
}

static void *
alloc_std_realloc(void *ptr, size_t size, void *arg)
{
    (void) arg;
    return realloc(ptr, size ? size : 1);
}

static void
alloc_std_free(void *ptr, void *arg)
{
    (void) arg;
    free(ptr);
}

static loom_allocator alloc_current = {alloc_std_malloc, alloc_std_realloc,
                                       alloc_std_free, NULL};

loom_err
loom_set_allocator(const loom_allocator *a)
{
    if (a == NULL) {
        alloc_current.malloc_fn = alloc_std_malloc;
        alloc_current.realloc_fn = alloc_std_realloc;
        alloc_current.free_fn = alloc_std_free;
        alloc_current.arg = NULL;
        return LOOM_OK;
    }
    if (a->malloc_fn == NULL || a->realloc_fn == NULL || a->free_fn == NULL)
        return LOOM_EINVAL;
    alloc_current = *a;
    return LOOM_OK;
}

void *
loom_malloc(size_t size)
{
    return alloc_current.malloc_fn(size, alloc_current.arg);
}

void *
loom_realloc(void *ptr, size_t size)
{
    return alloc_current.realloc_fn(ptr, size, alloc_current.arg);
}

void
loom_free(void *ptr)
{
    if (ptr != NULL)
        alloc_current.free_fn(ptr, alloc_current.arg);
}

char *
loom__strdup(const char *s)
{
    size_t n;
    char *d;

    if (s == NULL)
        return NULL;
    n = strlen(s) + 1;
    d = loom_malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}
