/*
 * The saga wire (saga/wire.c): the headers of a command or a reply, as an
 * orchestrator or a participant reads them from any message on its
 * topic. The input is the message's headers in their stored form,
 * decoded as the transports decode them (outbox/headers.c), then read as
 * a command and as a reply. The UUID parser the correlation header goes
 * through (framework/uuid.c) gets the whole input as text too.
 *
 * Properties: a read succeeds or says why; what a successful read
 * returns, written back with loom__saga_wire_command() or
 * loom__saga_wire_reply(), reads the same again; a parsed UUID formats
 * to text that parses to the same UUID.
 */
#include <string.h>

#include "fuzz.h"
#include "headers.h"
#include "loom/alloc.h"
#include "loom/uuid.h"
#include "wire.h"

static int
sw_same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) ||
           (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void
sw_check_same(const loom__saga_wire *a, const loom__saga_wire *b, int reply)
{
    FUZZ_CHECK(sw_same(a->saga_id, b->saga_id));
    FUZZ_CHECK(sw_same(a->saga_type, b->saga_type));
    FUZZ_CHECK(sw_same(a->step, b->step));
    FUZZ_CHECK(a->attempt == b->attempt);
    if (!reply) {
        FUZZ_CHECK(sw_same(a->reply_to, b->reply_to));
        return;
    }
    FUZZ_CHECK(sw_same(a->outcome, b->outcome));
    if (strcmp(a->outcome, "failure") == 0)
        FUZZ_CHECK(sw_same(a->failure_code, b->failure_code));
    FUZZ_CHECK(memcmp(a->correlation.bytes, b->correlation.bytes, 16) == 0);
}

static void
sw_read(const loom_message *m, int reply)
{
    loom__saga_wire w, again;
    loom__saga_wire_text text;
    loom_header h[LOOM__SAGA_WIRE_MAX_HEADERS];
    loom_message m2;
    char why[256] = "";
    size_t n;
    loom_err rc = loom__saga_wire_read(m, reply, &w, why, sizeof why);

    FUZZ_CHECK(rc == LOOM_OK || (rc == LOOM_EINVAL && why[0] != '\0'));
    if (rc != LOOM_OK)
        return;
    FUZZ_CHECK(w.saga_id != NULL && w.saga_id[0] != '\0' &&
               strlen(w.saga_id) <= LOOM_SAGA_MAX_ID);
    FUZZ_CHECK(w.saga_type != NULL && w.step != NULL);
    if (!reply) {
        FUZZ_CHECK(w.attempt >= 1 && w.reply_to != NULL);
        n = loom__saga_wire_command(h, &text, w.saga_id, w.saga_type, w.step,
                                    w.attempt, w.reply_to);
    } else {
        int failed = strcmp(w.outcome, "failure") == 0;
        FUZZ_CHECK(w.has_correlation);
        FUZZ_CHECK(failed || strcmp(w.outcome, "success") == 0);
        /* A reply without an attempt reads (attempt 0), but no writer
         * sends one: participants copy the command's (>= 1). */
        if (w.attempt == 0)
            return;
        n = loom__saga_wire_reply(
            h, &text, w.saga_id, w.saga_type, w.step, w.attempt, &w.correlation,
            failed ? w.failure_code : NULL, failed ? w.failure_message : NULL);
    }
    FUZZ_CHECK(n <= LOOM__SAGA_WIRE_MAX_HEADERS);
    memset(&m2, 0, sizeof m2);
    m2.headers = h;
    m2.n_headers = n;
    FUZZ_CHECK(loom__saga_wire_read(&m2, reply, &again, why, sizeof why) ==
               LOOM_OK);
    sw_check_same(&w, &again, reply);
}

static void
sw_uuid(const uint8_t *data, size_t size)
{
    char *s = fuzz_strndup(data, size), text[LOOM_UUID_STRLEN];
    loom_uuid u, again;

    if (loom_uuid_parse(&u, s) == LOOM_OK) {
        loom_uuid_format(&u, text);
        FUZZ_CHECK(strlen(text) == LOOM_UUID_STRLEN - 1);
        FUZZ_CHECK(loom_uuid_parse(&again, text) == LOOM_OK);
        FUZZ_CHECK(memcmp(u.bytes, again.bytes, 16) == 0);
    }
    free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    loom_header *h = NULL;
    size_t n = 0;
    void *arena = NULL;
    loom_message m;

    sw_uuid(data, size);
    if (loom__headers_decode(data, size, &h, &n, &arena) != 0)
        return 0;
    memset(&m, 0, sizeof m);
    m.headers = h;
    m.n_headers = n;
    sw_read(&m, 0);
    sw_read(&m, 1);
    loom_free(arena);
    return 0;
}
