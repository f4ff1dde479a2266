/*
 * RabbitMQ topic-exchange matching (loom_topic_matches, loom/transport.h),
 * word by word: "*" consumes one word, "#" any number, tried shortest
 * first with backtracking. Patterns are short, so the recursion is
 * shallow (at most one level per "#").
 */
#include <string.h>

#include "loom/transport.h"

/* The length of the word at p (up to '.' or the end). */
static size_t
tm_word(const char *p)
{
    const char *dot = strchr(p, '.');

    return dot ? (size_t) (dot - p) : strlen(p);
}

/* Matches pattern words from p against topic words from t; `t_done`
 * says the topic has no words left (an empty topic is one empty word). */
static int
tm_match(const char *p, const char *t, int t_done)
{
    for (;;) {
        size_t pw = tm_word(p), tw;

        if (pw == 1 && p[0] == '#') {
            const char *rest = p[1] == '.' ? p + 2 : NULL;
            /* "#" matches zero words, or one more and tries again. */
            if (rest == NULL)
                return 1;
            if (tm_match(rest, t, t_done))
                return 1;
            if (t_done)
                return 0;
            tw = tm_word(t);
            if (t[tw] == '\0')
                return tm_match(p, t + tw, 1);
            return tm_match(p, t + tw + 1, 0);
        }
        if (t_done)
            return 0;
        tw = tm_word(t);
        if (!(pw == 1 && p[0] == '*') && (pw != tw || memcmp(p, t, pw) != 0))
            return 0;
        /* Both words match: step over them. */
        if (p[pw] == '\0')
            return t[tw] == '\0';
        p += pw + 1;
        if (t[tw] == '\0')
            t_done = 1;
        else
            t += tw + 1;
    }
}

int
loom_topic_matches(const char *pattern, const char *topic)
{
    if (pattern == NULL || topic == NULL)
        return 0;
    return tm_match(pattern, topic, 0);
}
