/*
 * protoc-gen-loom's run: a CodeGeneratorRequest's bytes in, a
 * CodeGeneratorResponse's bytes out (run.c), and the stdin/stdout plumbing
 * around it (io.c). main.c only joins them; a fuzzer calls
 * gen_process() directly.
 */
#ifndef LOOM_GEN_RUN_H
#define LOOM_GEN_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"

/* The largest request read from stdin (protoc's are far smaller). */
#define GEN_MAX_REQUEST ((size_t) 512 * 1024 * 1024)

/*
 * Decodes `in` as a CodeGeneratorRequest and generates its files. On
 * success returns 0 and *out (malloc'd, free() it) holds the packed
 * CodeGeneratorResponse: its files, or its `error` when a definition is
 * bad (protoc prints it and fails). Returns -1, with a sentence in err,
 * only when `in` is not a CodeGeneratorRequest: a plugin then exits
 * non-zero.
 */
int gen_process(const uint8_t *in, size_t n, uint8_t **out, size_t *out_len,
                char *err, size_t errlen);

/*
 * Generates the response for a decoded request (the same as
 * gen_process()); free it with protobuf_c_message_free_unpacked(r,
 * NULL): every part of it is malloc'd.
 */
Google__Protobuf__Compiler__CodeGeneratorResponse *
gen_run(const gen_request *req);

/* Reads all of `f` (at most `max` bytes) into *out (malloc'd). 0, or -1
 * with errno-based text in err (too large: EFBIG). */
int gen_read_all(FILE *f, size_t max, uint8_t **out, size_t *len, char *err,
                 size_t errlen);

/* Writes all of data to `f` and flushes. 0, or -1 with text in err. */
int gen_write_all(FILE *f, const uint8_t *data, size_t len, char *err,
                  size_t errlen);

#endif /* LOOM_GEN_RUN_H */
