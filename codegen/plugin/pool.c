/*
 * The plugin's memory: checked malloc, and a pool that frees everything a
 * run allocated at once (the model is a web of pointers with one
 * lifetime, so one free beats tracking each piece).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

/* Each allocation is a block on a list, its payload aligned for any
 * type. */
typedef struct pool_block {
    struct pool_block *next;
    max_align_t payload[];
} pool_block;

struct gen_pool {
    pool_block *blocks;
};

static void
pool_oom(void)
{
    fputs("protoc-gen-loom: out of memory\n", stderr);
    exit(1);
}

void *
gen_xmalloc(size_t n)
{
    void *p = malloc(n > 0 ? n : 1);
    if (p == NULL) {
        pool_oom();
    }
    return p;
}

void *
gen_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n > 0 ? n : 1);
    if (q == NULL) {
        pool_oom();
    }
    return q;
}

gen_pool *
gen_pool_new(void)
{
    gen_pool *p = gen_xmalloc(sizeof(*p));
    p->blocks = NULL;
    return p;
}

void
gen_pool_free(gen_pool *p)
{
    if (p == NULL) {
        return;
    }
    pool_block *b = p->blocks;
    while (b != NULL) {
        pool_block *next = b->next;
        free(b);
        b = next;
    }
    free(p);
}

void *
gen_pool_alloc(gen_pool *p, size_t n)
{
    if (n > SIZE_MAX - sizeof(pool_block)) {
        pool_oom();
    }
    pool_block *b = gen_xmalloc(sizeof(pool_block) + n);
    memset(b->payload, 0, n);
    b->next = p->blocks;
    p->blocks = b;
    return b->payload;
}

void *
gen_pool_array(gen_pool *p, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size) {
        pool_oom();
    }
    return gen_pool_alloc(p, n * size);
}

char *
gen_pool_strndup(gen_pool *p, const char *s, size_t n)
{
    char *d = gen_pool_alloc(p, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *
gen_pool_strdup(gen_pool *p, const char *s)
{
    return gen_pool_strndup(p, s, strlen(s));
}

char *
gen_pool_printf(gen_pool *p, const char *fmt, ...)
{
    gen_buf b = GEN_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    gen_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    char *s = gen_pool_strndup(p, gen_buf_str(&b), b.len);
    gen_buf_free(&b);
    return s;
}
