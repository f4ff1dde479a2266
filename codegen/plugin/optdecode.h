/*
 * Custom options as protoc hands them to a plugin.
 *
 * protobuf-c does not know extensions, so an option such as
 * `option (loom.step) = {...}` arrives as an unknown field of the
 * MethodOptions (ServiceOptions, MessageOptions, FileOptions) message:
 * protobuf-c's ProtobufCMessageUnknownField keeps the field's tag, its
 * wire type, and in `data`/`len` the bytes that followed the tag on the
 * wire. For a length-delimited field those bytes START WITH THE LENGTH
 * PREFIX (a varint), followed by the payload.
 *
 * protoc writes one such field per option statement:
 *     option (loom.step).participant = "inventory";
 *     option (loom.step).timeout_ms = 500;
 * is two fields numbered 51862. Protobuf's rule for a message field seen
 * twice is to merge the occurrences, and the merge of two encoded
 * messages is their concatenation, so the payloads are joined in order
 * and unpacked once.
 */
#ifndef LOOM_GEN_OPTDECODE_H
#define LOOM_GEN_OPTDECODE_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* Field numbers of Eventloom's options (codegen/proto/loom/options.proto)
 * and of protoc-c's file options (protobuf-c/protobuf-c.proto). */
#define GEN_OPT_SAGA      51861u /* ServiceOptions: loom.SagaOptions */
#define GEN_OPT_STEP      51862u /* MethodOptions: loom.StepOptions */
#define GEN_OPT_EVENT     51863u /* MessageOptions: loom.EventOptions */
#define GEN_OPT_PB_C_FILE 1019u  /* FileOptions: ProtobufCFileOptions */

typedef enum gen_opt_rc {
    GEN_OPT_BAD = -1,   /* malformed: err says why */
    GEN_OPT_ABSENT = 0, /* no field with that number */
    GEN_OPT_FOUND = 1
} gen_opt_rc;

/*
 * Joins the payloads of every unknown field numbered `number` of
 * `options` (NULL: absent), in order. On GEN_OPT_FOUND *out is a malloc'd
 * buffer of *len bytes the caller frees (never NULL, even when *len is
 * 0); otherwise *out is NULL and *len 0. GEN_OPT_BAD (with a sentence in
 * err, which may be NULL) when a field is not length-delimited, or its
 * length prefix is truncated, longer than 10 bytes, or does not match the
 * bytes that follow it.
 */
gen_opt_rc gen_opt_join(const ProtobufCMessage *options, uint32_t number,
                        uint8_t **out, size_t *len, char *err, size_t errlen);

/*
 * gen_opt_join(), then protobuf_c_message_unpack() of the result as
 * `desc`. On GEN_OPT_FOUND *out is the unpacked message, which the caller
 * frees with protobuf_c_message_free_unpacked(*out, NULL); otherwise
 * *out is NULL. GEN_OPT_BAD as gen_opt_join(), or when the joined bytes
 * are not a valid `desc` message, or carry fields `desc` does not have
 * (an options.proto newer than the plugin).
 */
gen_opt_rc gen_opt_unpack(const ProtobufCMessage *options, uint32_t number,
                          const ProtobufCMessageDescriptor *desc,
                          ProtobufCMessage **out, char *err, size_t errlen);

#endif /* LOOM_GEN_OPTDECODE_H */
