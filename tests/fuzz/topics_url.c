/*
 * The "topics://" URL (outbox/transports/topics/topics.c,
 * loom__tp_parse_url()): the transport's own options split from the
 * libpq URI, as loom_transport_open() does before connecting. The input
 * is what follows "topics://" (up to its first NUL).
 *
 * Properties: LOOM_OK or LOOM_EINVAL, with the error text set on
 * failure; on success the options are in their documented ranges, and
 * the connection string kept is a "postgresql://" URI that no longer
 * names the transport's options.
 */
#include <string.h>

#include "fuzz.h"
#include "loom/alloc.h"
#include "topics_int.h"

/* Whether a parameter of the URI's query is one of the transport's. */
static int
tu_has_option(const char *uri)
{
    static const char *const opts[] = {"acks", "linger_ms", "batch",
                                       "retention_ms"};
    const char *q = strchr(uri, '?');

    while (q != NULL) {
        const char *item = q + 1;
        size_t len = strcspn(item, "&"), klen = strcspn(item, "=&");
        for (size_t i = 0; i < 4; i++)
            if (klen == strlen(opts[i]) && memcmp(item, opts[i], klen) == 0)
                return 1;
        q = item[len] == '&' ? item + len : NULL;
    }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *rest = fuzz_strndup(data, size);
    size_t n = strlen("topics://") + strlen(rest) + 1;
    char *url = malloc(n), err[256] = "";
    tp_transport tr;
    loom_err rc;

    if (url == NULL)
        abort();
    snprintf(url, n, "topics://%s", rest);
    memset(&tr, 0, sizeof tr);
    rc = loom__tp_parse_url(&tr, url, err, sizeof err);
    FUZZ_CHECK(rc == LOOM_OK || rc == LOOM_EINVAL);
    if (rc != LOOM_OK) {
        FUZZ_CHECK(err[0] != '\0');
        FUZZ_CHECK(tr.conninfo == NULL);
    } else {
        FUZZ_CHECK(tr.acks == LOOM_TOPICS_ACKS_NONE ||
                   tr.acks == LOOM_TOPICS_ACKS_LOCAL ||
                   tr.acks == LOOM_TOPICS_ACKS_ALL);
        FUZZ_CHECK(tr.linger_ms <= 60000);
        FUZZ_CHECK(tr.batch >= 1 && tr.batch <= 100000);
        if (tr.conninfo != NULL) {
            FUZZ_CHECK(strncmp(tr.conninfo, "postgresql://", 13) == 0);
            FUZZ_CHECK(!tu_has_option(tr.conninfo));
        }
    }
    loom_free(tr.conninfo);
    free(url);
    free(rest);
    return 0;
}
