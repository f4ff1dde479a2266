/* JSON text output (see json.h). */
#include "json.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void
ctl_json_str(loom__buf *b, const char *s, size_t n)
{
    loom__json_string(b, s, n, LOOM__JSON_ESCAPE_DEL);
}

void
ctl_json_key(loom__buf *b, const char *key)
{
    char last = b->len > 0 ? b->data[b->len - 1] : '{';

    if (last != '{')
        loom__buf_putc(b, ',');
    loom__buf_printf(b, "\"%s\":", key);
}

void
ctl_json_kstr(loom__buf *b, const char *key, const char *s)
{
    ctl_json_key(b, key);
    if (s == NULL)
        loom__buf_puts(b, "null");
    else
        ctl_json_str(b, s, strlen(s));
}

void
ctl_json_ki64(loom__buf *b, const char *key, int64_t v)
{
    ctl_json_key(b, key);
    loom__buf_printf(b, "%" PRId64, v);
}

void
ctl_json_ku64(loom__buf *b, const char *key, uint64_t v)
{
    ctl_json_key(b, key);
    loom__buf_printf(b, "%" PRIu64, v);
}

void
ctl_json_kraw(loom__buf *b, const char *key, const char *raw)
{
    ctl_json_key(b, key);
    loom__buf_puts(b, raw != NULL ? raw : "null");
}
