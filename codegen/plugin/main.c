/*
 * protoc-gen-loom: the protoc plugin that turns saga services and event
 * messages of .proto files into C tables and handler prototypes
 * (docs/saga-reference.md).
 *
 *   protoc --plugin=protoc-gen-loom=PATH --loom_out=DIR [--loom_opt=...]
 *
 * As every protoc plugin: a CodeGeneratorRequest on stdin, a
 * CodeGeneratorResponse on stdout. A bad definition is reported in the
 * response's `error` (protoc prints it and fails); only a request that
 * cannot be read or decoded, or a response that cannot be written, makes
 * the plugin itself exit with status 1 and a message on stderr.
 */
#include <stdlib.h>
#include <string.h>

#include "run.h"

int
main(int argc, char **argv)
{
    if (argc > 1) {
        int help = strcmp(argv[1], "--help") == 0;
        fprintf(help ? stdout : stderr,
                "usage: protoc --plugin=protoc-gen-loom=%s --loom_out=DIR "
                "[--loom_opt=register_symbol] FILE.proto\n"
                "protoc-gen-loom is a protoc plugin: it reads a "
                "CodeGeneratorRequest on stdin.\n",
                argv[0]);
        return help ? 0 : 2;
    }
    char err[512];
    uint8_t *in, *out = NULL;
    size_t n, out_len = 0;
    int rc = gen_read_all(stdin, GEN_MAX_REQUEST, &in, &n, err, sizeof err);
    if (rc == 0) {
        rc = gen_process(in, n, &out, &out_len, err, sizeof err);
        free(in);
    }
    if (rc == 0) {
        rc = gen_write_all(stdout, out, out_len, err, sizeof err);
        free(out);
    }
    if (rc != 0) {
        fprintf(stderr, "protoc-gen-loom: %s\n", err);
        return 1;
    }
    return 0;
}
