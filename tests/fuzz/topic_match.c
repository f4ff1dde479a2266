/*
 * Topic patterns (outbox/topicmatch.c): loom_topic_matches() on an
 * arbitrary pattern and topic, checked against a plain dynamic
 * programme over the words: RabbitMQ's rule, where "*" is exactly one
 * word, "#" any number (zero included), anything else itself, and an
 * empty topic or pattern is one empty word.
 *
 * Input: the pattern, a NUL byte, the topic (each up to its first NUL).
 */
#include <string.h>

#include "fuzz.h"
#include "loom/transport.h"

/* The words of s split on '.', as pointers and lengths; returns how
 * many (at least one). */
static size_t
tm_words(const char *s, const char ***w, size_t **len)
{
    size_t n = 1;

    for (const char *p = s; *p; p++)
        n += *p == '.';
    *w = malloc(n * sizeof **w);
    *len = malloc(n * sizeof **len);
    if (*w == NULL || *len == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        const char *dot = strchr(s, '.');
        (*w)[i] = s;
        (*len)[i] = dot ? (size_t) (dot - s) : strlen(s);
        s = dot ? dot + 1 : s + strlen(s);
    }
    return n;
}

/* m[i][j]: pattern words i.. match topic words j.. (filled backwards). */
static int
tm_reference(const char *pattern, const char *topic)
{
    const char **pw, **tw;
    size_t *pl, *tl;
    size_t np = tm_words(pattern, &pw, &pl), nt = tm_words(topic, &tw, &tl);
    unsigned char *m = calloc((np + 1) * (nt + 1), 1);
    int r;

    if (m == NULL)
        abort();
#define M(i, j) m[(i) * (nt + 1) + (j)]
    M(np, nt) = 1;
    for (size_t i = np; i-- > 0;) {
        for (size_t j = nt + 1; j-- > 0;) {
            int hash = pl[i] == 1 && pw[i][0] == '#';
            int star = pl[i] == 1 && pw[i][0] == '*';
            if (hash)
                M(i, j) = M(i + 1, j) || (j < nt && M(i, j + 1));
            else if (j < nt && (star || (pl[i] == tl[j] &&
                                         memcmp(pw[i], tw[j], pl[i]) == 0)))
                M(i, j) = M(i + 1, j + 1);
        }
    }
    r = M(0, 0);
#undef M
    free(m);
    free(pw);
    free(pl);
    free(tw);
    free(tl);
    return r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t plen = nul ? (size_t) (nul - data) : size;
    char *pattern = fuzz_strndup(data, plen);
    char *topic =
        nul ? fuzz_strndup(nul + 1, size - plen - 1) : fuzz_strndup(data, 0);

    FUZZ_CHECK(loom_topic_matches(pattern, topic) ==
               tm_reference(pattern, topic));
    /* A pattern without wildcards matches itself and only itself. */
    if (strpbrk(pattern, "*#") == NULL)
        FUZZ_CHECK(loom_topic_matches(pattern, pattern));
    FUZZ_CHECK(loom_topic_matches(NULL, topic) == 0);
    free(pattern);
    free(topic);
    return 0;
}
