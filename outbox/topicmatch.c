/*
 * Topic names: which are valid (loom_topic_name_valid), and RabbitMQ
 * topic-exchange matching (loom_topic_matches, both in loom/transport.h),
 * word by word: "*" consumes one word, "#" any number. This is wildcard
 * matching over words, done the linear way: on a mismatch only the most
 * recent "#" takes one more word and matching resumes after it, which
 * is enough (an earlier "#" could only take words the later one can take
 * as well). Backtracking into every "#" instead takes exponential time:
 * "#.#.#.#.x" against a long topic ran for minutes (found by
 * tests/fuzz/topic_match.c); this is O(pattern words x topic words).
 */
#include <string.h>

#include "loom/topics.h"
#include "loom/transport.h"

/* The length of the word at p (up to '.' or the end). */
static size_t
tm_word(const char *p)
{
    const char *dot = strchr(p, '.');

    return dot ? (size_t) (dot - p) : strlen(p);
}

/* The word after the one at p, or NULL when it is the last (an empty
 * string is one empty word). */
static const char *
tm_next(const char *p)
{
    const char *dot = strchr(p, '.');

    return dot ? dot + 1 : NULL;
}

static int
tm_is(const char *p, char wild)
{
    return p[0] == wild && (p[1] == '.' || p[1] == '\0');
}

/* Matches pattern words from p against topic words from t; NULL is "no
 * words left". */
static int
tm_match(const char *p, const char *t)
{
    const char *star_p = NULL, *star_t = NULL;
    int star = 0; /* a "#" was seen: star_p follows it, star_t is where
                   * its words end for now */

    while (t != NULL) {
        if (p != NULL && tm_is(p, '#')) {
            /* "#" matches zero words first. */
            star = 1;
            star_p = tm_next(p);
            star_t = t;
            p = star_p;
            continue;
        }
        if (p != NULL) {
            size_t pw = tm_word(p), tw = tm_word(t);
            if (tm_is(p, '*') || (pw == tw && memcmp(p, t, pw) == 0)) {
                p = tm_next(p);
                t = tm_next(t);
                continue;
            }
        }
        if (!star)
            return 0;
        /* The last "#" takes one more word; retry what follows it. */
        star_t = tm_next(star_t);
        t = star_t;
        p = star_p;
    }
    while (p != NULL && tm_is(p, '#'))
        p = tm_next(p);
    return p == NULL;
}

int
loom_topic_matches(const char *pattern, const char *topic)
{
    if (pattern == NULL || topic == NULL)
        return 0;
    return tm_match(pattern, topic);
}

int
loom_topic_name_valid(const char *name, int patterns)
{
    size_t n = name != NULL ? strlen(name) : 0;
    int word = 0, wild = 0;

    if (n == 0 || n > LOOM_MAX_TOPIC_NAME)
        return 0;
    /* Words of ASCII letters, digits, '_' and '-' (not isalnum(): the
     * locale must not widen what SQL's check accepts), separated by
     * single dots; with patterns a word may instead be "*" or "#". */
    for (size_t i = 0; i <= n; i++) {
        char ch = name[i];
        if (ch == '.' || ch == '\0') {
            if (word == 0 && !wild)
                return 0;
            word = wild = 0;
        } else if (patterns && (ch == '*' || ch == '#')) {
            if (word > 0 || wild)
                return 0;
            wild = 1;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || ch == '_' || ch == '-') {
            if (wild)
                return 0;
            word++;
        } else {
            return 0;
        }
    }
    return 1;
}
