/*
 * Custom options out of protobuf-c's unknown fields (codegen/plugin/
 * optdecode.c): what protobuf-c really hands over for an extension it
 * does not know, joining the fields of several option statements the way
 * protobuf merges them, and malformed bytes refused without a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "loom/options.pb-c.h"
#include "optdecode.h"

/* Bytes on the wire: a growing buffer. */
typedef struct wire {
    uint8_t b[512];
    size_t n;
} wire;

static void
put_varint(wire *w, uint64_t v)
{
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        w->b[w->n++] = (uint8_t) (byte | (v != 0 ? 0x80 : 0));
    } while (v != 0);
}

static void
put_bytes(wire *w, const void *p, size_t n)
{
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

/* A length-delimited field: tag, length, payload. */
static void
put_field(wire *w, uint32_t number, const wire *payload)
{
    put_varint(w, (uint64_t) number << 3 | 2);
    put_varint(w, payload->n);
    put_bytes(w, payload->b, payload->n);
}

/* A packed loom.StepOptions. */
static void
pack_step(const Loom__StepOptions *o, wire *w)
{
    w->n = protobuf_c_message_pack(&o->base, w->b);
}

/* A MethodOptions with `options` given as unknown fields, as unpacked
 * from bytes, which is how protoc's request reaches the plugin. */
static Google__Protobuf__MethodOptions *
unpack_method_options(const wire *w)
{
    Google__Protobuf__MethodOptions *m =
        google__protobuf__method_options__unpack(NULL, w->n, w->b);
    assert_non_null(m);
    return m;
}

static void
test_optdecode_unknown_field_data_starts_with_length_prefix(void **state)
{
    (void) state;
    wire payload = {.n = 0}, w = {.n = 0};
    put_bytes(&payload, "\x0a\x03inv", 5); /* participant: "inv" */
    put_field(&w, GEN_OPT_STEP, &payload);
    Google__Protobuf__MethodOptions *m = unpack_method_options(&w);

    /* What protobuf-c 1.4 keeps: the tag, the wire type, and in data the
     * bytes after the tag, the length prefix included. */
    assert_int_equal(m->base.n_unknown_fields, 1);
    const ProtobufCMessageUnknownField *f = &m->base.unknown_fields[0];
    assert_int_equal(f->tag, GEN_OPT_STEP);
    assert_int_equal(f->wire_type, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
    assert_int_equal(f->len, 1 + payload.n);
    assert_int_equal(f->data[0], payload.n);
    assert_memory_equal(f->data + 1, payload.b, payload.n);

    uint8_t *joined;
    size_t len;
    assert_int_equal(
        gen_opt_join(&m->base, GEN_OPT_STEP, &joined, &len, NULL, 0),
        GEN_OPT_FOUND);
    assert_int_equal(len, payload.n);
    assert_memory_equal(joined, payload.b, payload.n);
    free(joined);
    google__protobuf__method_options__free_unpacked(m, NULL);
}

static void
test_optdecode_absent_without_the_field(void **state)
{
    (void) state;
    uint8_t *out = (uint8_t *) "x";
    size_t len = 9;
    assert_int_equal(gen_opt_join(NULL, GEN_OPT_STEP, &out, &len, NULL, 0),
                     GEN_OPT_ABSENT);
    assert_null(out);
    assert_int_equal(len, 0);

    /* Another extension's field (and a known field) only. */
    wire payload = {.n = 0}, w = {.n = 0};
    put_bytes(&payload, "\x08\x01", 2);
    put_field(&w, 50000, &payload);
    put_bytes(&w, "\x88\x02\x01", 3); /* deprecated = true (field 33) */
    Google__Protobuf__MethodOptions *m = unpack_method_options(&w);
    assert_true(m->has_deprecated);
    ProtobufCMessage *o = (ProtobufCMessage *) &w;
    assert_int_equal(gen_opt_unpack(&m->base, GEN_OPT_STEP,
                                    &loom__step_options__descriptor, &o, NULL,
                                    0),
                     GEN_OPT_ABSENT);
    assert_null(o);
    google__protobuf__method_options__free_unpacked(m, NULL);
}

static void
test_optdecode_statements_are_merged_in_order(void **state)
{
    (void) state;
    /* option (loom.step) = { participant: "a" retry { max_attempts: 5 } };
     * option (loom.step).retry.multiplier = 3;
     * option (loom.step).participant = "inventory";
     * option (loom.step).retry.non_retryable = "X";  (twice: appended) */
    Loom__RetryPolicy r1 = LOOM__RETRY_POLICY__INIT;
    r1.has_max_attempts = 1;
    r1.max_attempts = 5;
    char *codes1[] = {"X"};
    r1.n_non_retryable = 1;
    r1.non_retryable = codes1;
    Loom__StepOptions s1 = LOOM__STEP_OPTIONS__INIT;
    s1.participant = "a";
    s1.retry = &r1;

    Loom__RetryPolicy r2 = LOOM__RETRY_POLICY__INIT;
    r2.has_multiplier = 1;
    r2.multiplier = 3.0;
    char *codes2[] = {"Y"};
    r2.n_non_retryable = 1;
    r2.non_retryable = codes2;
    Loom__StepOptions s2 = LOOM__STEP_OPTIONS__INIT;
    s2.retry = &r2;

    Loom__StepOptions s3 = LOOM__STEP_OPTIONS__INIT;
    s3.participant = "inventory";
    s3.has_timeout_ms = 1;
    s3.timeout_ms = 250;

    wire p1, p2, p3, w = {.n = 0};
    pack_step(&s1, &p1);
    pack_step(&s2, &p2);
    pack_step(&s3, &p3);
    put_field(&w, GEN_OPT_STEP, &p1);
    put_bytes(&w, "\x88\x02\x01", 3); /* a known field in between */
    put_field(&w, GEN_OPT_STEP, &p2);
    put_field(&w, GEN_OPT_STEP, &p3);
    Google__Protobuf__MethodOptions *m = unpack_method_options(&w);
    assert_int_equal(m->base.n_unknown_fields, 3);

    ProtobufCMessage *out;
    char err[256];
    assert_int_equal(gen_opt_unpack(&m->base, GEN_OPT_STEP,
                                    &loom__step_options__descriptor, &out, err,
                                    sizeof err),
                     GEN_OPT_FOUND);
    const Loom__StepOptions *o = (const Loom__StepOptions *) out;
    assert_string_equal(o->participant, "inventory"); /* last one wins */
    assert_int_equal(o->timeout_ms, 250);
    assert_null(o->compensation);
    assert_non_null(o->retry); /* both retries merged, not replaced */
    assert_int_equal(o->retry->max_attempts, 5);
    assert_true(o->retry->multiplier == 3.0);
    assert_int_equal(o->retry->initial_backoff_ms, 100); /* default */
    assert_int_equal(o->retry->n_non_retryable, 2);
    assert_string_equal(o->retry->non_retryable[0], "X");
    assert_string_equal(o->retry->non_retryable[1], "Y");
    protobuf_c_message_free_unpacked(out, NULL);
    google__protobuf__method_options__free_unpacked(m, NULL);
}

static void
test_optdecode_empty_option_gives_defaults(void **state)
{
    (void) state;
    wire empty = {.n = 0}, w = {.n = 0};
    put_field(&w, GEN_OPT_STEP, &empty); /* option (loom.step) = {}; */
    Google__Protobuf__MethodOptions *m = unpack_method_options(&w);
    ProtobufCMessage *out;
    assert_int_equal(gen_opt_unpack(&m->base, GEN_OPT_STEP,
                                    &loom__step_options__descriptor, &out, NULL,
                                    0),
                     GEN_OPT_FOUND);
    const Loom__StepOptions *o = (const Loom__StepOptions *) out;
    assert_null(o->participant);
    assert_int_equal(o->timeout_ms, 30000);
    assert_null(o->retry);
    protobuf_c_message_free_unpacked(out, NULL);
    google__protobuf__method_options__free_unpacked(m, NULL);
}

/* A message whose only unknown field is built by hand (as a fuzzer or a
 * broken protoc could), bypassing protobuf-c's own checks. */
static gen_opt_rc
join_raw(ProtobufCWireType wt, const uint8_t *data, size_t len, char *err,
         size_t errlen)
{
    ProtobufCMessageUnknownField f = {.tag = GEN_OPT_SAGA,
                                      .wire_type = wt,
                                      .len = len,
                                      .data = (uint8_t *) data};
    Google__Protobuf__ServiceOptions so =
        GOOGLE__PROTOBUF__SERVICE_OPTIONS__INIT;
    so.base.n_unknown_fields = 1;
    so.base.unknown_fields = &f;
    uint8_t *out = (uint8_t *) "not null";
    size_t n = 99;
    gen_opt_rc rc = gen_opt_join(&so.base, GEN_OPT_SAGA, &out, &n, err, errlen);
    if (rc == GEN_OPT_FOUND) {
        free(out);
    } else {
        assert_null(out);
        assert_int_equal(n, 0);
    }
    return rc;
}

static void
test_optdecode_malformed_fields_are_refused(void **state)
{
    (void) state;
    char err[256];
    /* Not length-delimited (another extension of that number). */
    assert_int_equal(join_raw(PROTOBUF_C_WIRE_TYPE_VARINT,
                              (const uint8_t *) "\x07", 1, err, sizeof err),
                     GEN_OPT_BAD);
    assert_non_null(strstr(err, "is not a message (wire type 0"));
    /* No length prefix at all. */
    assert_int_equal(join_raw(PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, NULL, 0,
                              err, sizeof err),
                     GEN_OPT_BAD);
    assert_non_null(strstr(err, "length prefix is truncated"));
    /* A prefix whose varint never ends. */
    assert_int_equal(join_raw(PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                              (const uint8_t *) "\x80\x80", 2, err, sizeof err),
                     GEN_OPT_BAD);
    assert_non_null(strstr(err, "length prefix is truncated"));
    /* Eleven bytes of varint; and ten that overflow 64 bits. */
    assert_int_equal(
        join_raw(PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                 (const uint8_t *) "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80"
                                   "\x01",
                 11, err, sizeof err),
        GEN_OPT_BAD);
    assert_int_equal(
        join_raw(PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                 (const uint8_t *) "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
                 10, err, sizeof err),
        GEN_OPT_BAD);
    /* The prefix promises more, or fewer, bytes than follow. */
    assert_int_equal(join_raw(PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                              (const uint8_t *) "\x05\x08\x01", 3, err,
                              sizeof err),
                     GEN_OPT_BAD);
    assert_non_null(strstr(err, "says 5 bytes, 2 follow"));
    assert_int_equal(join_raw(PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                              (const uint8_t *) "\x01\x08\x01", 3, err,
                              sizeof err),
                     GEN_OPT_BAD);
    /* Data missing behind a length. */
    assert_int_equal(join_raw(PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, NULL, 4,
                              err, sizeof err),
                     GEN_OPT_BAD);
    /* A well-formed one, for contrast; err may be NULL. */
    assert_int_equal(join_raw(PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                              (const uint8_t *) "\x02\x08\x01", 3, NULL, 0),
                     GEN_OPT_FOUND);
}

static void
test_optdecode_one_bad_field_spoils_the_join(void **state)
{
    (void) state;
    ProtobufCMessageUnknownField f[2] = {
        {.tag = GEN_OPT_SAGA,
         .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
         .len = 3,
         .data = (uint8_t *) "\x02\x08\x01"},
        {.tag = GEN_OPT_SAGA,
         .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
         .len = 2,
         .data = (uint8_t *) "\x09\x08"},
    };
    Google__Protobuf__ServiceOptions so =
        GOOGLE__PROTOBUF__SERVICE_OPTIONS__INIT;
    so.base.n_unknown_fields = 2;
    so.base.unknown_fields = f;
    ProtobufCMessage *out;
    char err[256];
    assert_int_equal(gen_opt_unpack(&so.base, GEN_OPT_SAGA,
                                    &loom__saga_options__descriptor, &out, err,
                                    sizeof err),
                     GEN_OPT_BAD);
    assert_null(out);
    /* Unknown fields present but their array missing. */
    so.base.unknown_fields = NULL;
    assert_int_equal(gen_opt_unpack(&so.base, GEN_OPT_SAGA,
                                    &loom__saga_options__descriptor, &out, err,
                                    sizeof err),
                     GEN_OPT_BAD);
}

static void
test_optdecode_payload_that_is_not_the_message_is_refused(void **state)
{
    (void) state;
    char err[256];
    ProtobufCMessage *out;
    Google__Protobuf__ServiceOptions so =
        GOOGLE__PROTOBUF__SERVICE_OPTIONS__INIT;
    ProtobufCMessageUnknownField f = {
        .tag = GEN_OPT_SAGA, .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED};
    so.base.n_unknown_fields = 1;
    so.base.unknown_fields = &f;

    /* A tag whose varint never ends. */
    f.data = (uint8_t *) "\x02\xff\xff";
    f.len = 3;
    assert_int_equal(gen_opt_unpack(&so.base, GEN_OPT_SAGA,
                                    &loom__saga_options__descriptor, &out, err,
                                    sizeof err),
                     GEN_OPT_BAD);
    assert_string_equal(err, "its bytes are not a valid loom.SagaOptions");
    /* data (field 2) declared as a varint: the wrong wire type. */
    f.data = (uint8_t *) "\x02\x10\x01";
    assert_int_equal(gen_opt_unpack(&so.base, GEN_OPT_SAGA,
                                    &loom__saga_options__descriptor, &out, err,
                                    sizeof err),
                     GEN_OPT_BAD);
    /* A field SagaOptions does not have (number 9): newer options. */
    f.data = (uint8_t *) "\x02\x48\x01";
    assert_int_equal(gen_opt_unpack(&so.base, GEN_OPT_SAGA,
                                    &loom__saga_options__descriptor, &out, err,
                                    sizeof err),
                     GEN_OPT_BAD);
    assert_non_null(strstr(err, "loom.SagaOptions field 9 is unknown"));
    /* The same inside a nested message: retry (5) { field 12 }. */
    ProtobufCMessageUnknownField g = {
        .tag = GEN_OPT_STEP,
        .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
        .len = 5,
        .data = (uint8_t *) "\x04\x2a\x02\x60\x01"};
    Google__Protobuf__MethodOptions mo = GOOGLE__PROTOBUF__METHOD_OPTIONS__INIT;
    mo.base.n_unknown_fields = 1;
    mo.base.unknown_fields = &g;
    assert_int_equal(gen_opt_unpack(&mo.base, GEN_OPT_STEP,
                                    &loom__step_options__descriptor, &out, err,
                                    sizeof err),
                     GEN_OPT_BAD);
    assert_non_null(strstr(err, "loom.RetryPolicy field 12 is unknown"));
}

/* Random bytes behind random prefixes: every outcome is a clean result.
 * Runs under ASan in the sanitizer build. */
static void
test_optdecode_random_bytes_never_crash(void **state)
{
    (void) state;
    uint64_t x = 0x9e3779b97f4a7c15u;
    uint8_t data[64];
    size_t found = 0, bad = 0;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t len = (size_t) (x % sizeof data);
        for (size_t k = 0; k < len; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data[k] = (uint8_t) x;
        }
        if (len > 0 && (x & 1)) {
            data[0] = (uint8_t) (len - 1); /* a prefix that fits */
        }
        ProtobufCMessageUnknownField f = {
            .tag = GEN_OPT_STEP,
            .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
            .len = len,
            .data = data};
        Google__Protobuf__MethodOptions mo =
            GOOGLE__PROTOBUF__METHOD_OPTIONS__INIT;
        mo.base.n_unknown_fields = 1;
        mo.base.unknown_fields = &f;
        ProtobufCMessage *out;
        char err[256];
        gen_opt_rc rc = gen_opt_unpack(&mo.base, GEN_OPT_STEP,
                                       &loom__step_options__descriptor, &out,
                                       err, sizeof err);
        if (rc == GEN_OPT_FOUND) {
            found++;
            protobuf_c_message_free_unpacked(out, NULL);
        } else {
            assert_int_equal(rc, GEN_OPT_BAD);
            assert_null(out);
            bad++;
        }
    }
    /* Both outcomes were exercised. */
    assert_true(found > 100);
    assert_true(bad > 100);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_optdecode_unknown_field_data_starts_with_length_prefix),
        cmocka_unit_test(test_optdecode_absent_without_the_field),
        cmocka_unit_test(test_optdecode_statements_are_merged_in_order),
        cmocka_unit_test(test_optdecode_empty_option_gives_defaults),
        cmocka_unit_test(test_optdecode_malformed_fields_are_refused),
        cmocka_unit_test(test_optdecode_one_bad_field_spoils_the_join),
        cmocka_unit_test(
            test_optdecode_payload_that_is_not_the_message_is_refused),
        cmocka_unit_test(test_optdecode_random_bytes_never_crash),
    };
    return cmocka_run_group_tests_name("codegen.optdecode", tests, NULL, NULL);
}
