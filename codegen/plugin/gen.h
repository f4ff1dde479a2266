/*
 * protoc-gen-loom: what every file of the plugin shares. Memory (a pool
 * freed in one go at the end of a run), growable text buffers, and the
 * list of definition errors a run reports to protoc.
 *
 * Memory: the plugin runs once per protoc invocation and builds small
 * data. When malloc fails there is nothing sensible to fall back to, so
 * gen_xmalloc() prints "protoc-gen-loom: out of memory" and exits with
 * status 1, which protoc reports as a failed plugin. Every other failure
 * (bad input, bad definitions) is returned, never fatal.
 */
#ifndef LOOM_GEN_H
#define LOOM_GEN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define GEN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define GEN_PRINTF(f, a)
#endif

/* malloc/realloc that never return NULL (see above). */
void *gen_xmalloc(size_t n);
void *gen_xrealloc(void *p, size_t n);

/* ------------------------------------------------------------------ */
/* Pool: allocations that live until gen_pool_free().                   */

typedef struct gen_pool gen_pool;

gen_pool *gen_pool_new(void);
/* Frees every allocation of `p`, then `p`. NULL is a no-op. */
void gen_pool_free(gen_pool *p);
/* `n` zeroed bytes, suitably aligned for any type. */
void *gen_pool_alloc(gen_pool *p, size_t n);
/* An array of `n` zeroed elements of `size` bytes (n may be 0). */
void *gen_pool_array(gen_pool *p, size_t n, size_t size);
char *gen_pool_strdup(gen_pool *p, const char *s);
char *gen_pool_strndup(gen_pool *p, const char *s, size_t n);
char *gen_pool_printf(gen_pool *p, const char *fmt, ...) GEN_PRINTF(2, 3);

/* ------------------------------------------------------------------ */
/* Text buffers.                                                       */

/* A growing NUL-terminated string. Start from GEN_BUF_INIT. */
typedef struct gen_buf {
    char *s;    /* owned; NULL until the first write */
    size_t len; /* bytes before the NUL */
    size_t cap;
} gen_buf;

#define GEN_BUF_INIT                                                           \
    {                                                                          \
        NULL, 0, 0                                                             \
    }

void gen_buf_put(gen_buf *b, const void *data, size_t n);
void gen_buf_puts(gen_buf *b, const char *s);
void gen_buf_putc(gen_buf *b, char c);
void gen_buf_printf(gen_buf *b, const char *fmt, ...) GEN_PRINTF(2, 3);
void gen_buf_vprintf(gen_buf *b, const char *fmt, va_list ap);
/* The text so far ("" when empty); borrowed until the next write. */
const char *gen_buf_str(const gen_buf *b);
/* Hands the text to the caller (free() it) and empties `b`. */
char *gen_buf_take(gen_buf *b);
void gen_buf_free(gen_buf *b);

/*
 * Appends `s` as a C string literal with its quotes. Everything but
 * printable ASCII is an octal escape (so the literal means the same bytes
 * whatever the compiler's source character set), and '?' is escaped too
 * (no trigraph can form in -std=c11).
 */
void gen_buf_c_string(gen_buf *b, const char *s);

/*
 * Appends "<indent><head>(" and the n items, one per line indented four
 * more spaces, comma-separated, then ")<tail>\n": how the generated code
 * writes every call and parameter list, so that lines stay short
 * whatever the names.
 */
void gen_buf_args(gen_buf *b, const char *indent, const char *head,
                  const char *const *items, size_t n, const char *tail);

/* ------------------------------------------------------------------ */
/* Definition errors.                                                  */

/* The most errors one run reports; later ones are counted, not kept. */
#define GEN_MAX_ERRORS 50

/* Errors found in the definitions, one line each, for the response. */
typedef struct gen_errors {
    gen_buf text;
    size_t n;
} gen_errors;

/* Adds one error line (a trailing newline is added). */
void gen_error(gen_errors *e, const char *fmt, ...) GEN_PRINTF(2, 3);

#endif /* LOOM_GEN_H */
