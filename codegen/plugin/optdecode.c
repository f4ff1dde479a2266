/*
 * Custom options out of protobuf-c's unknown fields (see optdecode.h for
 * the layout). Every byte here comes from protoc, or from a fuzzer: each
 * length is checked before it is trusted.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optdecode.h"

static gen_opt_rc
opt_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return GEN_OPT_BAD;
}

/*
 * Reads the varint at the start of data[0..len): its value in *value and
 * its size in *used. 0 when it is unterminated within `len` bytes or 10
 * bytes, or overflows 64 bits.
 */
static int
opt_varint(const uint8_t *data, size_t len, uint64_t *value, size_t *used)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len && i < 10; i++) {
        uint64_t bits = data[i] & 0x7fu;
        if (i == 9 && bits > 1) {
            return 0; /* the tenth byte may only hold bit 63 */
        }
        v |= bits << (7 * i);
        if ((data[i] & 0x80u) == 0) {
            *value = v;
            *used = i + 1;
            return 1;
        }
    }
    return 0;
}

/* The payload of one unknown field: past its length prefix. */
static gen_opt_rc
opt_payload(const ProtobufCMessageUnknownField *f, const uint8_t **payload,
            size_t *n, char *err, size_t errlen)
{
    if (f->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) {
        return opt_fail(err, errlen,
                        "field %u is not a message (wire type %d, expected "
                        "a length-delimited field)",
                        (unsigned) f->tag, (int) f->wire_type);
    }
    if (f->len > 0 && f->data == NULL) {
        return opt_fail(err, errlen, "field %u has no data", (unsigned) f->tag);
    }
    uint64_t value;
    size_t used;
    if (!opt_varint(f->data, f->len, &value, &used)) {
        return opt_fail(err, errlen,
                        "field %u: its length prefix is truncated or longer "
                        "than 10 bytes",
                        (unsigned) f->tag);
    }
    if (value != (uint64_t) (f->len - used)) {
        return opt_fail(err, errlen,
                        "field %u: its length prefix says %llu bytes, %zu "
                        "follow",
                        (unsigned) f->tag, (unsigned long long) value,
                        f->len - used);
    }
    *payload = f->data + used;
    *n = f->len - used;
    return GEN_OPT_FOUND;
}

gen_opt_rc
gen_opt_join(const ProtobufCMessage *options, uint32_t number, uint8_t **out,
             size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    if (options == NULL || options->n_unknown_fields == 0) {
        return GEN_OPT_ABSENT;
    }
    if (options->unknown_fields == NULL) {
        return opt_fail(err, errlen, "unknown fields are missing");
    }
    /* Two passes: check and measure, then copy. */
    size_t total = 0, found = 0;
    for (unsigned i = 0; i < options->n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *f = &options->unknown_fields[i];
        if (f->tag != number) {
            continue;
        }
        const uint8_t *p;
        size_t n;
        gen_opt_rc rc = opt_payload(f, &p, &n, err, errlen);
        if (rc != GEN_OPT_FOUND) {
            return rc;
        }
        if (n > SIZE_MAX - total) {
            return opt_fail(err, errlen, "field %u is too long",
                            (unsigned) number);
        }
        total += n;
        found++;
    }
    if (found == 0) {
        return GEN_OPT_ABSENT;
    }
    uint8_t *buf = malloc(total > 0 ? total : 1);
    if (buf == NULL) {
        return opt_fail(err, errlen, "out of memory");
    }
    size_t at = 0;
    for (unsigned i = 0; i < options->n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *f = &options->unknown_fields[i];
        const uint8_t *p;
        size_t n;
        if (f->tag == number &&
            opt_payload(f, &p, &n, NULL, 0) == GEN_OPT_FOUND && n > 0) {
            memcpy(buf + at, p, n);
            at += n;
        }
    }
    *out = buf;
    *len = total;
    return GEN_OPT_FOUND;
}

/*
 * The first unknown field in `m` or the messages it holds: its number in
 * *tag and the name of the message type it is in, or NULL when there is
 * none. Options nest only a few levels (and protobuf-c's unpack bounds
 * the depth), so recursion is fine.
 */
static const char *
opt_first_unknown(const ProtobufCMessage *m, unsigned *tag)
{
    if (m->n_unknown_fields > 0) {
        *tag = (unsigned) m->unknown_fields[0].tag;
        return m->descriptor->name;
    }
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
            continue;
        }
        const char *at = (const char *) m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n =
                *(const size_t *) ((const char *) m + f->quantifier_offset);
            ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *) at;
            for (size_t k = 0; k < n; k++) {
                const char *where = opt_first_unknown(v[k], tag);
                if (where != NULL) {
                    return where;
                }
            }
        } else {
            const ProtobufCMessage *sub = *(const ProtobufCMessage *const *) at;
            if (sub != NULL) {
                const char *where = opt_first_unknown(sub, tag);
                if (where != NULL) {
                    return where;
                }
            }
        }
    }
    return NULL;
}

gen_opt_rc
gen_opt_unpack(const ProtobufCMessage *options, uint32_t number,
               const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
               char *err, size_t errlen)
{
    *out = NULL;
    uint8_t *bytes;
    size_t len;
    gen_opt_rc rc = gen_opt_join(options, number, &bytes, &len, err, errlen);
    if (rc != GEN_OPT_FOUND) {
        return rc;
    }
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, bytes);
    free(bytes);
    if (m == NULL) {
        return opt_fail(err, errlen, "its bytes are not a valid %s",
                        desc->name);
    }
    unsigned tag = 0;
    const char *where = opt_first_unknown(m, &tag);
    if (where != NULL) {
        /* Ignoring it would silently drop a setting the author wrote. */
        rc = opt_fail(err, errlen,
                      "%s field %u is unknown to this protoc-gen-loom (is "
                      "loom/options.proto newer than the plugin?)",
                      where, tag);
        protobuf_c_message_free_unpacked(m, NULL);
        return rc;
    }
    *out = m;
    return GEN_OPT_FOUND;
}
