/*
 * C names of protobuf names, following protoc-c 1.4.1's c_helpers.cc
 * (CamelToLower, ToCamel, FullNameToLower, FullNameToC, OverrideFullName)
 * character for character, with ASCII-only tests (protoc-c runs in the C
 * locale).
 */
#include <string.h>

#include "names.h"
#include "utf8.h"

static int
names_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static int
names_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static int
names_alnum(char c)
{
    return names_upper(c) || names_lower(c) || (c >= '0' && c <= '9');
}

static void
names_camel_to_lower(gen_buf *b, const char *s, size_t n)
{
    int was_upper = 1; /* no '_' before a leading capital */
    for (size_t i = 0; i < n; i++) {
        int is_upper = names_upper(s[i]);
        if (is_upper) {
            if (!was_upper) {
                gen_buf_putc(b, '_');
            }
            gen_buf_putc(b, (char) (s[i] - 'A' + 'a'));
        } else {
            gen_buf_putc(b, s[i]);
        }
        was_upper = is_upper;
    }
}

static void
names_to_camel(gen_buf *b, const char *s, size_t n)
{
    int next_upper = 1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '_') {
            next_upper = 1;
        } else if (next_upper) {
            gen_buf_putc(b,
                         names_lower(s[i]) ? (char) (s[i] - 'a' + 'A') : s[i]);
            next_upper = 0;
        } else {
            gen_buf_putc(b, s[i]);
        }
    }
}

static char *
names_take(gen_pool *p, gen_buf *b)
{
    char *s = gen_pool_strndup(p, gen_buf_str(b), b->len);
    gen_buf_free(b);
    return s;
}

char *
gen_camel_to_lower(gen_pool *p, const char *name)
{
    gen_buf b = GEN_BUF_INIT;
    names_camel_to_lower(&b, name, strlen(name));
    return names_take(p, &b);
}

char *
gen_to_camel(gen_pool *p, const char *name)
{
    gen_buf b = GEN_BUF_INIT;
    names_to_camel(&b, name, strlen(name));
    return names_take(p, &b);
}

/* protoc-c's OverrideFullName: the package prefix replaced by c_package. */
static char *
names_override(gen_pool *p, const char *full, const char *package,
               const char *c_package)
{
    if (c_package == NULL) {
        return gen_pool_strdup(p, full);
    }
    size_t plen = strlen(package);
    const char *rest = strlen(full) >= plen ? full + plen : "";
    return gen_pool_printf(p, "%s%s%s", c_package, plen == 0 ? "." : "", rest);
}

/* Splits on '.', skips empty pieces, converts each, joins with "__". */
static char *
names_join(gen_pool *p, const char *full,
           void (*conv)(gen_buf *, const char *, size_t))
{
    gen_buf b = GEN_BUF_INIT;
    const char *s = full;
    while (*s != '\0') {
        const char *dot = strchr(s, '.');
        size_t n = dot != NULL ? (size_t) (dot - s) : strlen(s);
        if (n > 0) {
            if (b.len > 0) {
                gen_buf_puts(&b, "__");
            }
            conv(&b, s, n);
        }
        s += n;
        if (*s == '.') {
            s++;
        }
    }
    return names_take(p, &b);
}

char *
gen_full_to_lower(gen_pool *p, const char *full, const char *package,
                  const char *c_package)
{
    return names_join(p, names_override(p, full, package, c_package),
                      names_camel_to_lower);
}

char *
gen_full_to_c(gen_pool *p, const char *full, const char *package,
              const char *c_package)
{
    return names_join(p, names_override(p, full, package, c_package),
                      names_to_camel);
}

char *
gen_topic_to_c(gen_pool *p, const char *topic)
{
    char *s = gen_pool_strdup(p, topic);
    for (char *c = s; *c != '\0'; c++) {
        if (!names_alnum(*c)) {
            *c = '_';
        }
    }
    return s;
}

char *
gen_file_ident(gen_pool *p, const char *file)
{
    gen_buf b = GEN_BUF_INIT;
    for (const char *c = file; *c != '\0'; c++) {
        if (names_alnum(*c)) {
            gen_buf_putc(&b, *c);
        } else {
            gen_buf_printf(&b, "_%02x", (unsigned) (unsigned char) *c);
        }
    }
    return names_take(p, &b);
}

int
gen_topic_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > GEN_MAX_TOPIC) {
        return 0;
    }
    size_t word = 0; /* length of the current word */
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (word == 0) {
                return 0;
            }
            word = 0;
        } else if (names_alnum(s[i]) || s[i] == '_' || s[i] == '-') {
            word++;
        } else {
            return 0;
        }
    }
    return word > 0;
}

int
gen_text_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) {
        return 0;
    }
    for (const unsigned char *c = (const unsigned char *) s; *c; c++) {
        if (*c < 0x20 || *c == 0x7f) {
            return 0;
        }
    }
    /* The library's rule (saga/text.c): a code or name it would refuse
     * at run time is refused here, at build time. */
    return loom__utf8_valid(s, n);
}

int
gen_c_ident_ok(const char *s)
{
    if (!(names_upper(s[0]) || names_lower(s[0]) || s[0] == '_')) {
        return 0;
    }
    for (const char *c = s; *c != '\0'; c++) {
        if (!names_alnum(*c) && *c != '_') {
            return 0;
        }
    }
    return 1;
}
