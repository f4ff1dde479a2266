/*
 * Payload decoding through the type registry: loom_registry_to_json()
 * (framework/registry.c, pbjson.c) on arbitrary bytes, as loomctl and the
 * dead-letter tools call it on whatever a topic or the events table
 * holds.
 *
 * Input: one byte choosing the type (loomtest.AllTypes, which has every
 * protobuf-c field layout, loomtest.Inner, which nests itself, or a name
 * the registry lacks, which takes the schema-less printer), then the
 * payload. Properties: the call returns LOOM_OK or LOOM_EDECODE, and on
 * success the text is one line of valid JSON (the header's promise,
 * whatever the bytes).
 */
#include <string.h>

#include "fuzz.h"
#include "jsoncheck.h"
#include "loom/alloc.h"
#include "loom/registry.h"
#include "testmsg.pb-c.h"

static loom_registry *reg;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    if (loom_registry_new(&reg) != LOOM_OK ||
        loom_registry_add(reg, NULL, &loomtest__all_types__descriptor) !=
            LOOM_OK ||
        loom_registry_add(reg, NULL, &loomtest__inner__descriptor) != LOOM_OK)
        abort();
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const types[] = {"loomtest.AllTypes", "loomtest.Inner",
                                        "loomtest.Unknown"};
    char *json = NULL;
    loom_err rc;

    if (size == 0)
        return 0;
    rc = loom_registry_to_json(reg, types[data[0] % 3], data + 1, size - 1,
                               &json);
    FUZZ_CHECK(rc == LOOM_OK || rc == LOOM_EDECODE);
    FUZZ_CHECK((rc == LOOM_OK) == (json != NULL));
    if (json != NULL) {
        size_t n = strlen(json);
        FUZZ_CHECK(fuzz_json_valid(json, n));
        FUZZ_CHECK(memchr(json, '\n', n) == NULL);
        loom_free(json);
    }
    return 0;
}
