/*
 * The plugin's I/O: the whole request from stdin, the whole response to
 * stdout. Nothing else is ever written to stdout (protoc reads it as the
 * response).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"

int
gen_read_all(FILE *f, size_t max, uint8_t **out, size_t *len, char *err,
             size_t errlen)
{
    /* Room for one byte past `max`: reading it proves the input too big. */
    size_t limit = max < SIZE_MAX ? max + 1 : max;
    size_t cap = limit < 65536 ? limit : 65536, n = 0;
    uint8_t *buf = gen_xmalloc(cap);
    for (;;) {
        if (n == cap && cap < limit) {
            cap = cap <= limit / 2 ? cap * 2 : limit;
            buf = gen_xrealloc(buf, cap);
        }
        size_t got = n < cap ? fread(buf + n, 1, cap - n, f) : 0;
        n += got;
        if (n > max) {
            free(buf);
            snprintf(err, errlen, "the request is larger than %zu bytes", max);
            return -1;
        }
        if (got == 0) {
            if (ferror(f)) {
                snprintf(err, errlen, "cannot read the request: %s",
                         strerror(errno));
                free(buf);
                return -1;
            }
            break; /* end of file */
        }
    }
    *out = buf;
    *len = n;
    return 0;
}

int
gen_write_all(FILE *f, const uint8_t *data, size_t len, char *err,
              size_t errlen)
{
    if ((len > 0 && fwrite(data, 1, len, f) != len) || fflush(f) != 0) {
        snprintf(err, errlen, "cannot write the response: %s", strerror(errno));
        return -1;
    }
    return 0;
}
