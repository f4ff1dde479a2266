/*
 * protoc-gen-loom's request decoding and everything after it
 * (codegen/plugin/run.c gen_process()): whatever bytes arrive on the
 * plugin's stdin. Seeds are the requests protoc sends for the golden
 * sample and for each file of tests/codegen/bad/.
 *
 * Properties: gen_process() refuses the input with a message, or returns
 * a response that decodes as a CodeGeneratorResponse; a response that
 * reports an error generates no file, and one that generates files
 * names each, with content.
 */
#include <string.h>

#include "fuzz.h"
#include "google/protobuf/compiler/plugin.pb-c.h"
#include "run.h"

typedef Google__Protobuf__Compiler__CodeGeneratorResponse gen_response;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    char err[512] = "";
    gen_response *r;

    if (gen_process(data, size, &out, &out_len, err, sizeof err) != 0) {
        FUZZ_CHECK(out == NULL && err[0] != '\0');
        return 0;
    }
    r = google__protobuf__compiler__code_generator_response__unpack(
        NULL, out_len, out);
    FUZZ_CHECK(r != NULL);
    if (r->error != NULL)
        FUZZ_CHECK(r->n_file == 0 && r->error[0] != '\0');
    for (size_t i = 0; i < r->n_file; i++)
        FUZZ_CHECK(r->file[i]->name != NULL && r->file[i]->name[0] != '\0' &&
                   r->file[i]->content != NULL);
    google__protobuf__compiler__code_generator_response__free_unpacked(r, NULL);
    free(out);
    return 0;
}
