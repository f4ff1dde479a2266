/*
 * Protobuf to JSON, for the type registry (private).
 *
 * Two printers: one walks an unpacked protobuf-c message with its
 * descriptor (protobuf's JSON mapping), the other reads wire bytes without
 * a schema (like `protoc --decode_raw`). Both append one line of JSON to a
 * loom__buf. On error the buffer holds partial output that the caller must
 * discard; it is never freed here.
 */
#ifndef LOOM_PBJSON_H
#define LOOM_PBJSON_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "buf.h"
#include "loom/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Appends `n` bytes as a JSON string: '"', '\\' and control characters
 * escaped (\n \r \t \b \f in short form, others as \u00XX), and each
 * byte that does not start a well-formed UTF-8 sequence (see
 * loom__utf8_seq()) as \ufffd, so the output is valid JSON whatever the
 * input. NUL bytes are allowed and come out as \u0000. With
 * LOOM__JSON_ESCAPE_DEL, DEL (0x7f) is written as \u007f too: JSON allows
 * it raw, but it is invisible on a terminal. Allocation failure is left
 * in `b` (see buf.h).
 */
#define LOOM__JSON_ESCAPE_DEL 0x1u
void loom__json_string(loom__buf *b, const char *s, size_t n, unsigned flags);

/* Appends `n` bytes as a JSON string in standard, padded base64
 * (RFC 4648). */
void loom__json_base64(loom__buf *b, const void *p, size_t n);

/* The deepest nesting of messages either printer accepts; the outermost
 * message is level 1. It bounds recursion on untrusted input. */
#define LOOM__PB_MAX_DEPTH 64

/*
 * Appends `m` in protobuf's JSON mapping: lowerCamelCase keys (converted
 * from the .proto name, as protobuf-c 1.4 has no json_name), fields in tag
 * order, only fields that are present (proto3 scalars at their zero value
 * and unset proto2 optionals are omitted), 64-bit integers as quoted
 * strings, non-finite floats as "NaN"/"Infinity"/"-Infinity", bytes as
 * padded base64, enums by value name (the number when the value is
 * unknown). Strings that are not valid UTF-8 have each bad byte replaced
 * by U+FFFD, so the output is always valid JSON. Unknown fields are
 * dropped. Errors: LOOM_EINVAL (m NULL), LOOM_EDECODE (nested deeper than
 * LOOM__PB_MAX_DEPTH, or a descriptor with an unknown field type),
 * LOOM_ENOMEM.
 */
loom_err loom__pb_to_json(loom__buf *b, const ProtobufCMessage *m);

/*
 * Appends the wire bytes `data` as a JSON object keyed by field number (in
 * ascending order). A number seen more than once maps to an array of its
 * values in wire order. Varints and fixed64 values print as unsigned
 * numbers, quoted when above 2^53 (where JSON readers lose precision);
 * fixed32 as unsigned numbers. A length-delimited value is printed as a
 * nested object when it is non-empty and parses completely as a message,
 * else as a string when it is printable UTF-8, else as base64. At
 * LOOM__PB_MAX_DEPTH levels of objects, values are no longer tried as
 * messages, so deep input degrades to strings instead of failing.
 * Errors: LOOM_EDECODE (truncated or malformed input, field number 0 or
 * above 2^29-1, a varint over 10 bytes, group or reserved wire types),
 * LOOM_ENOMEM. Safe on arbitrary bytes.
 */
loom_err loom__pb_raw_to_json(loom__buf *b, const uint8_t *data, size_t len);

/*
 * Checks that `data` is well-formed wire data whose message-typed fields
 * (per `desc`) nest no deeper than LOOM__PB_MAX_DEPTH. protobuf-c's
 * unpacker recurses without a limit, so untrusted bytes must pass this
 * first or a deeply nested payload could overflow the stack.
 * Errors: LOOM_EDECODE.
 */
loom_err loom__pb_check_nesting(const ProtobufCMessageDescriptor *desc,
                                const uint8_t *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_PBJSON_H */
