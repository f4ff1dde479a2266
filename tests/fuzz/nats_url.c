/*
 * The NATS transport's parsers (outbox/transports/nats): the "nats://"
 * URL (url.c), and the translation of topic patterns into JetStream
 * subject filters and durable names (codec.c).
 *
 * Input: text up to a NUL byte, then (optionally) more text. The first
 * part is parsed as what follows "nats://", and as a consumer's topic
 * pattern; the second as a topic.
 *
 * Properties: the URL parses to LOOM_OK or LOOM_EINVAL (with a message),
 * and what it keeps is in the documented ranges; a pattern's filters
 * match, by NATS's subject rules, exactly the subjects of the topics that
 * loom_topic_matches() says the pattern matches (the transport delivers
 * what the topics transport would); durable names are short and made of
 * the characters NATS allows.
 */
#include <string.h>

#include "fuzz.h"
#include "loom/alloc.h"
#include "nats_int.h"

static void
nu_url(const char *rest)
{
    size_t n = strlen("nats://") + strlen(rest) + 1;
    char *url = malloc(n), err[512] = "";
    nt_config cfg;
    loom_err rc;

    if (url == NULL)
        abort();
    snprintf(url, n, "nats://%s", rest);
    rc = loom__nt_config_parse(&cfg, url, err, sizeof err);
    FUZZ_CHECK(rc == LOOM_OK || rc == LOOM_EINVAL);
    if (rc != LOOM_OK) {
        FUZZ_CHECK(err[0] != '\0' && cfg.servers == NULL);
    } else {
        FUZZ_CHECK(cfg.n_servers >= 1 && cfg.stream != NULL &&
                   cfg.prefix != NULL);
        for (int i = 0; i < cfg.n_servers; i++)
            FUZZ_CHECK(strncmp(cfg.servers[i], "nats://", 7) == 0 &&
                       strpbrk(cfg.servers[i] + 7, "/?#, ") == NULL);
        FUZZ_CHECK(cfg.backoff_max_ms >= cfg.backoff_ms);
        FUZZ_CHECK(cfg.max_reconnect >= -1 && cfg.max_pending >= 1);
        loom__nt_config_free(&cfg);
    }
    free(url);
}

/* NATS subject matching: "*" one token, ">" (last) one or more. */
static int
nu_subject_match(const char *filter, const char *subject)
{
    for (;;) {
        size_t fl = strcspn(filter, "."), sl = strcspn(subject, ".");
        /* At a token of the subject: there is at least one left. */
        if (fl == 1 && filter[0] == '>')
            return 1;
        if (!(fl == 1 && filter[0] == '*') &&
            (fl != sl || memcmp(filter, subject, fl) != 0))
            return 0;
        if (filter[fl] == '\0' || subject[sl] == '\0')
            return filter[fl] == '\0' && subject[sl] == '\0';
        filter += fl + 1;
        subject += sl + 1;
    }
}

static void
nu_pattern(const char *pattern, const char *topic)
{
    char *filters[2], err[512], subject[300];
    size_t n = 0;
    loom_err rc =
        loom__nt_filters("loom", pattern, filters, &n, err, sizeof err);

    FUZZ_CHECK(rc == LOOM_OK || rc == LOOM_EINVAL);
    if (rc != LOOM_OK)
        return;
    FUZZ_CHECK(n == 1 || n == 2);
    for (size_t i = 0; i < n; i++) {
        char *d = loom__nt_durable("group.1", filters[i]);
        FUZZ_CHECK(d != NULL && strlen(d) <= 200);
        FUZZ_CHECK(strspn(d, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS"
                             "TUVWXYZ0123456789_-") == strlen(d));
        loom_free(d);
    }
    if (loom__nt_topic_ok(topic)) {
        int nats = 0;
        snprintf(subject, sizeof subject, "loom.%s", topic);
        for (size_t i = 0; i < n; i++)
            nats |= nu_subject_match(filters[i], subject);
        FUZZ_CHECK(nats == loom_topic_matches(pattern, topic));
    }
    loom_free(filters[0]);
    loom_free(filters[1]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t first = nul ? (size_t) (nul - data) : size;
    char *a = fuzz_strndup(data, first);
    char *b =
        nul ? fuzz_strndup(nul + 1, size - first - 1) : fuzz_strndup(data, 0);

    nu_url(a);
    nu_pattern(a, b);
    /* A topic is a pattern without wildcards, matching itself. */
    if (loom__nt_topic_ok(b))
        nu_pattern(b, b);
    free(a);
    free(b);
    return 0;
}
