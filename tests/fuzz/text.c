/*
 * The rules for names and text from outside (stream names, saga ids and
 * names, header values shown on terminals) and the JSON string writer
 * every printer uses: loom__check_stream() (eventstore/store.c),
 * loom__saga_text_problem() (saga/text.c), loom__utf8_valid()
 * (framework/pgwire.c) and loom__json_string() (framework/pbjson.c).
 *
 * Input: a flags byte, then the text (NUL bytes included).
 *
 * Properties: the JSON string is valid JSON with no raw control byte
 * (nor DEL when asked), and replaces bytes exactly when the text is not
 * UTF-8; a name the checks accept is non-empty, within its limit, valid
 * UTF-8 (and for sagas, free of control characters).
 */
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "jsoncheck.h"
#include "pbjson.h"
#include "pgwire.h"
#include "store_int.h"
#include "text.h"

/* Whether `needle` (NUL-terminated) occurs in the n bytes at `s`. */
static int
tx_has(const char *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);

    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(s + i, needle, k) == 0)
            return 1;
    return 0;
}

static void
tx_json(const char *s, size_t n, unsigned flags)
{
    loom__buf b = LOOM__BUF_INIT;
    int has_nul = memchr(s, 0, n) != NULL;

    loom__json_string(&b, s, n, flags);
    FUZZ_CHECK(!b.failed && b.len >= 2);
    FUZZ_CHECK(fuzz_json_valid(b.data, b.len));
    for (size_t i = 0; i < b.len; i++) {
        unsigned char ch = (unsigned char) b.data[i];
        FUZZ_CHECK(ch >= 0x20);
        FUZZ_CHECK(!(flags & LOOM__JSON_ESCAPE_DEL) || ch != 0x7f);
    }
    /* U+FFFD appears as written by the input, or as a replacement,
     * which happens exactly when the text is not UTF-8. */
    if (!has_nul && memchr(s, '\\', n) == NULL && !tx_has(s, n, "\xef\xbf\xbd"))
        FUZZ_CHECK((!tx_has(b.data, b.len, "\\ufffd")) ==
                   loom__utf8_valid(s, n));
    loom__buf_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    loom__buf err = LOOM__BUF_INIT;
    char *s;
    size_t n, limit;
    const char *problem;

    if (size == 0)
        return 0;
    limit = (size_t) data[0] * 4;
    s = fuzz_strndup(data + 1, size - 1);
    n = size - 1;
    tx_json(s, n, 0);
    tx_json(s, n, LOOM__JSON_ESCAPE_DEL);

    if (loom__check_stream(s, limit, &err) == LOOM_OK) {
        FUZZ_CHECK(s[0] != '\0' && strlen(s) <= limit);
        FUZZ_CHECK(loom__utf8_valid(s, strlen(s)));
    } else {
        FUZZ_CHECK(err.len > 0);
    }
    problem = loom__saga_text_problem(s, limit);
    if (problem == NULL) {
        size_t len = strlen(s);
        FUZZ_CHECK(len >= 1 && len <= limit && loom__utf8_valid(s, len));
        for (size_t i = 0; i < len; i++)
            FUZZ_CHECK((unsigned char) s[i] >= 0x20 && s[i] != 0x7f);
    }
    loom__buf_free(&err);
    free(s);
    return 0;
}
