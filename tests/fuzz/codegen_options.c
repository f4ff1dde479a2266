/*
 * protoc-gen-loom's option decoding (codegen/plugin/optdecode.c): custom
 * options arrive as unknown fields of descriptor.proto's *Options
 * messages, to be joined and unpacked (optdecode.h says how). The input
 * is a flags byte choosing the options message (file, message, service,
 * method) and that message's bytes, unknown fields and all; every option
 * the plugin reads is then looked for in it.
 *
 * Properties: each lookup ends in GEN_OPT_FOUND with a message,
 * GEN_OPT_ABSENT, or GEN_OPT_BAD with a sentence; a found option packs
 * to bytes that unpack again.
 */
#include <string.h>

#include "fuzz.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "loom/options.pb-c.h"
#include "optdecode.h"
#include "protobuf-c/protobuf-c.pb-c.h"

static void
co_lookup(const ProtobufCMessage *options, uint32_t number,
          const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = NULL;
    char err[256] = "";
    gen_opt_rc rc = gen_opt_unpack(options, number, desc, &m, err, sizeof err);
    uint8_t *joined = NULL;
    size_t len = 0;

    FUZZ_CHECK(rc == GEN_OPT_FOUND || rc == GEN_OPT_ABSENT ||
               rc == GEN_OPT_BAD);
    FUZZ_CHECK((rc == GEN_OPT_FOUND) == (m != NULL));
    if (rc == GEN_OPT_BAD)
        FUZZ_CHECK(err[0] != '\0');
    if (m != NULL) {
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *buf = malloc(n ? n : 1);
        ProtobufCMessage *again;
        if (buf == NULL)
            abort();
        FUZZ_CHECK(protobuf_c_message_pack(m, buf) == n);
        again = protobuf_c_message_unpack(desc, NULL, n, buf);
        FUZZ_CHECK(again != NULL);
        protobuf_c_message_free_unpacked(again, NULL);
        protobuf_c_message_free_unpacked(m, NULL);
        free(buf);
    }
    /* The join alone agrees on whether the option is there. */
    rc = gen_opt_join(options, number, &joined, &len, NULL, 0);
    FUZZ_CHECK((rc == GEN_OPT_FOUND) == (joined != NULL));
    free(joined);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const ProtobufCMessageDescriptor *const holders[] = {
        &google__protobuf__file_options__descriptor,
        &google__protobuf__message_options__descriptor,
        &google__protobuf__service_options__descriptor,
        &google__protobuf__method_options__descriptor,
    };
    ProtobufCMessage *options;

    if (size == 0)
        return 0;
    options = protobuf_c_message_unpack(holders[data[0] % 4], NULL, size - 1,
                                        data + 1);
    if (options == NULL)
        return 0;
    co_lookup(options, GEN_OPT_PB_C_FILE, &protobuf_cfile_options__descriptor);
    co_lookup(options, GEN_OPT_EVENT, &loom__event_options__descriptor);
    co_lookup(options, GEN_OPT_SAGA, &loom__saga_options__descriptor);
    co_lookup(options, GEN_OPT_STEP, &loom__step_options__descriptor);
    protobuf_c_message_free_unpacked(options, NULL);
    return 0;
}
