/*
 * Tests for the type registry and its JSON printers (framework/registry.c,
 * framework/pbjson.c). The message types come from testmsg.proto, compiled
 * by protoc-c at build time, plus one hand-written proto2 descriptor.
 *
 * Built a second time with REGISTRY_TEST_PLUGIN defined, this file is the
 * shared object that test_registry_load_returns_plugin_result loads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/registry.h"

#ifdef REGISTRY_TEST_PLUGIN

/* Proves loom_registry_load() found and called us, without needing any
 * framework symbol from the executable. */
LOOM_API loom_err loom_register_types(loom_registry *r);

loom_err
loom_register_types(loom_registry *r)
{
    return r != NULL ? LOOM_EHANDLER : LOOM_EINVAL;
}

#else /* !REGISTRY_TEST_PLUGIN */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "loom/alloc.h"
#include "testmsg.pb-c.h"

/*
 * A proto2 message that protoc-c 1.4 cannot generate alongside the proto3
 * ones (one syntax per file), written by hand:
 *     message Legacy {
 *         required int32 id = 1;
 *         optional int32 count = 2;
 *         optional string name = 3 [default = "anon"];
 *         optional bytes data = 4;
 *         optional Inner inner = 5;
 *     }
 * message_init is NULL, so protobuf-c applies the defaults itself.
 */
typedef struct legacy_msg {
    ProtobufCMessage base;
    int32_t id;
    protobuf_c_boolean has_count;
    int32_t count;
    char *name;
    protobuf_c_boolean has_data;
    ProtobufCBinaryData data;
    Loomtest__Inner *inner;
} legacy_msg;

static char legacy_name_default[] = "anon";

static const ProtobufCFieldDescriptor legacy_fields[] = {
    {"id", 1, PROTOBUF_C_LABEL_REQUIRED, PROTOBUF_C_TYPE_INT32, 0,
     offsetof(legacy_msg, id), NULL, NULL, 0, 0, NULL, NULL},
    {"count", 2, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_INT32,
     offsetof(legacy_msg, has_count), offsetof(legacy_msg, count), NULL, NULL,
     0, 0, NULL, NULL},
    {"name", 3, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_STRING, 0,
     offsetof(legacy_msg, name), NULL, legacy_name_default, 0, 0, NULL, NULL},
    {"data", 4, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_BYTES,
     offsetof(legacy_msg, has_data), offsetof(legacy_msg, data), NULL, NULL, 0,
     0, NULL, NULL},
    {"inner", 5, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_MESSAGE, 0,
     offsetof(legacy_msg, inner), &loomtest__inner__descriptor, NULL, 0, 0,
     NULL, NULL},
};
static const unsigned legacy_by_name[] = {1, 3, 0, 4, 2};
static const ProtobufCIntRange legacy_ranges[] = {{1, 0}, {0, 5}};
static const ProtobufCMessageDescriptor legacy_descriptor = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "loomtest.Legacy",
    "Legacy",
    "Legacy",
    "loomtest",
    sizeof(legacy_msg),
    5,
    legacy_fields,
    legacy_by_name,
    1,
    legacy_ranges,
    NULL,
    NULL,
    NULL,
    NULL};

/* Names under which the fixture registers nothing: decoded raw. */
#define UNKNOWN_TYPE "loomtest.Unknown"

struct fx {
    loom_registry *r;
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if (f == NULL || loom_registry_new(&f->r) != LOOM_OK)
        return -1;
    if (loom_registry_add(f->r, NULL, &loomtest__all_types__descriptor) ||
        loom_registry_add(f->r, NULL, &loomtest__inner__descriptor) ||
        loom_registry_add(f->r, NULL, &legacy_descriptor))
        return -1;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    loom_set_allocator(NULL);
    loom_registry_free(f->r);
    free(f);
    return 0;
}

/*
 * Helpers.
 */

/* Packs `m` into a malloc'ed buffer. */
static uint8_t *
pack(const ProtobufCMessage *m, size_t *len)
{
    uint8_t *p;

    *len = protobuf_c_message_get_packed_size(m);
    p = malloc(*len ? *len : 1);
    assert_non_null(p);
    assert_int_equal(protobuf_c_message_pack(m, p), *len);
    return p;
}

/* Decodes `data` as `type` and checks the JSON is exactly `want`. */
static void
expect_json(const loom_registry *r, const char *type, const void *data,
            size_t len, const char *want)
{
    char *json = NULL;

    assert_int_equal(loom_registry_to_json(r, type, data, len, &json), LOOM_OK);
    assert_non_null(json);
    assert_string_equal(json, want);
    loom_free(json);
}

static void
expect_msg_json(const loom_registry *r, const ProtobufCMessage *m,
                const char *want)
{
    size_t len;
    uint8_t *p = pack(m, &len);

    expect_json(r, m->descriptor->name, p, len, want);
    free(p);
}

static void
expect_error(const loom_registry *r, const char *type, const void *data,
             size_t len, loom_err want)
{
    char *json = (char *) "unchanged";

    assert_int_equal(loom_registry_to_json(r, type, data, len, &json), want);
    assert_null(json);
}

/*
 * A strict JSON checker (RFC 8259), written independently of the printer so
 * the fuzz loops can tell that every successful output is valid JSON,
 * including its UTF-8.
 */
static const char *jv_value(const char *s, int depth);

/* Length of the valid UTF-8 sequence at `s`, decoded by value. */
static int
jv_utf8(const unsigned char *s)
{
    unsigned long cp;
    int n, i;

    if (s[0] < 0x80)
        return 1;
    n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (n == 0 || s[0] >= 0xf8)
        return 0;
    cp = s[0] & (0x7f >> n);
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
        (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static const char *
jv_string(const char *s)
{
    int n;

    if (*s++ != '"')
        return NULL;
    while (*s != '"') {
        if ((unsigned char) *s < 0x20)
            return NULL;
        if (*s == '\\') {
            s++;
            if (*s == 'u') {
                for (n = 1; n <= 4; n++) {
                    if (strchr("0123456789abcdefABCDEF", s[n]) == NULL ||
                        s[n] == '\0')
                        return NULL;
                }
                s += 5;
            } else if (*s != '\0' && strchr("\"\\/bfnrt", *s) != NULL) {
                s++;
            } else {
                return NULL;
            }
            continue;
        }
        n = jv_utf8((const unsigned char *) s);
        if (n == 0)
            return NULL;
        s += n;
    }
    return s + 1;
}

static const char *
jv_digits(const char *s)
{
    if (*s < '0' || *s > '9')
        return NULL;
    while (*s >= '0' && *s <= '9')
        s++;
    return s;
}

static const char *
jv_number(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '0')
        s++;
    else if ((s = jv_digits(s)) == NULL)
        return NULL;
    if (*s == '.' && (s = jv_digits(s + 1)) == NULL)
        return NULL;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        s = jv_digits(s);
    }
    return s;
}

/* An object (close '}') or array (close ']') after its opening bracket. */
static const char *
jv_container(const char *s, char close, int depth)
{
    if (*s == close)
        return s + 1;
    for (;;) {
        if (close == '}') {
            if ((s = jv_string(s)) == NULL || *s++ != ':')
                return NULL;
        }
        if ((s = jv_value(s, depth + 1)) == NULL)
            return NULL;
        if (*s == close)
            return s + 1;
        if (*s++ != ',')
            return NULL;
    }
}

static const char *
jv_value(const char *s, int depth)
{
    if (depth > 200)
        return NULL;
    switch (*s) {
    case '{':
        return jv_container(s + 1, '}', depth);
    case '[':
        return jv_container(s + 1, ']', depth);
    case '"':
        return jv_string(s);
    case 't':
        return strncmp(s, "true", 4) == 0 ? s + 4 : NULL;
    case 'f':
        return strncmp(s, "false", 5) == 0 ? s + 5 : NULL;
    case 'n':
        return strncmp(s, "null", 4) == 0 ? s + 4 : NULL;
    default:
        return jv_number(s);
    }
}

static int
json_valid(const char *s)
{
    s = jv_value(s, 0);
    return s != NULL && *s == '\0';
}

/*
 * Registry bookkeeping.
 */

static void
test_registry_new_rejects_null_out(void **state)
{
    (void) state;
    assert_int_equal(loom_registry_new(NULL), LOOM_EINVAL);
    loom_registry_free(NULL);
}

static void
test_registry_add_then_find(void **state)
{
    struct fx *f = *state;

    assert_int_equal(loom_registry_add(f->r, "shop.OrderPlaced",
                                       &loomtest__inner__descriptor),
                     LOOM_OK);
    assert_ptr_equal(loom_registry_find(f->r, "shop.OrderPlaced"),
                     &loomtest__inner__descriptor);
    assert_null(loom_registry_find(f->r, "shop.OrderPlace"));
    assert_null(loom_registry_find(f->r, "shop.OrderPlacedX"));
    assert_null(loom_registry_find(f->r, ""));
}

static void
test_registry_add_null_name_uses_full_name(void **state)
{
    struct fx *f = *state;

    assert_ptr_equal(loom_registry_find(f->r, "loomtest.AllTypes"),
                     &loomtest__all_types__descriptor);
    assert_ptr_equal(loom_registry_find(f->r, "loomtest.Legacy"),
                     &legacy_descriptor);
}

static void
test_registry_add_same_descriptor_twice_is_noop(void **state)
{
    struct fx *f = *state;
    size_t n = loom_registry_count(f->r);

    assert_int_equal(
        loom_registry_add(f->r, NULL, &loomtest__inner__descriptor), LOOM_OK);
    assert_int_equal(
        loom_registry_add(f->r, "loomtest.Inner", &loomtest__inner__descriptor),
        LOOM_OK);
    assert_int_equal(loom_registry_count(f->r), n);
}

static void
test_registry_add_other_descriptor_is_duplicate(void **state)
{
    struct fx *f = *state;
    size_t n = loom_registry_count(f->r);

    assert_int_equal(loom_registry_add(f->r, "loomtest.Inner",
                                       &loomtest__all_types__descriptor),
                     LOOM_EDUPLICATE);
    assert_int_equal(loom_registry_count(f->r), n);
    assert_ptr_equal(loom_registry_find(f->r, "loomtest.Inner"),
                     &loomtest__inner__descriptor);
}

static void
test_registry_add_rejects_invalid_args(void **state)
{
    struct fx *f = *state;
    const ProtobufCMessageDescriptor *enum_as_msg =
        (const void *) &loomtest__color__descriptor;
    const ProtobufCMessageDescriptor *d = &loomtest__inner__descriptor;
    char name[300];

    assert_int_equal(loom_registry_add(NULL, "x", d), LOOM_EINVAL);
    assert_int_equal(loom_registry_add(f->r, "x", NULL), LOOM_EINVAL);
    assert_int_equal(loom_registry_add(f->r, "x", enum_as_msg), LOOM_EINVAL);
    assert_int_equal(loom_registry_add(f->r, "", d), LOOM_EINVAL);
    memset(name, 'n', sizeof(name));
    name[256] = '\0';
    assert_int_equal(loom_registry_add(f->r, name, d), LOOM_EINVAL);
    name[255] = '\0';
    assert_int_equal(loom_registry_add(f->r, name, d), LOOM_OK);
    assert_ptr_equal(loom_registry_find(f->r, name), d);
}

static void
test_registry_find_and_name_handle_null(void **state)
{
    struct fx *f = *state;

    assert_null(loom_registry_find(NULL, "loomtest.Inner"));
    assert_null(loom_registry_find(f->r, NULL));
    assert_int_equal(loom_registry_count(NULL), 0);
    assert_null(loom_registry_name(NULL, 0));
    assert_null(loom_registry_name(f->r, loom_registry_count(f->r)));
}

static void
test_registry_names_are_sorted(void **state)
{
    static const char *names[] = {"m", "b", "z", "a", "ab", "B", "mm", "0"};
    static const char *sorted[] = {"0",
                                   "B",
                                   "a",
                                   "ab",
                                   "b",
                                   "loomtest.AllTypes",
                                   "loomtest.Inner",
                                   "loomtest.Legacy",
                                   "m",
                                   "mm",
                                   "z"};
    struct fx *f = *state;
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(
            loom_registry_add(f->r, names[i], &loomtest__inner__descriptor),
            LOOM_OK);
    }
    assert_int_equal(loom_registry_count(f->r),
                     sizeof(sorted) / sizeof(sorted[0]));
    for (i = 0; i < sizeof(sorted) / sizeof(sorted[0]); i++) {
        assert_string_equal(loom_registry_name(f->r, i), sorted[i]);
        assert_non_null(loom_registry_find(f->r, sorted[i]));
    }
}

/*
 * Typed JSON.
 */

/* Sets every singular scalar field of AllTypes to a value that tests its
 * printing: extremes, precision limits, escapes, binary. */
static void
fill_scalars(Loomtest__AllTypes *m)
{
    static uint8_t blob[] = {0x00, 0xff, 0x10, 0x80, 0x7f};

    m->i32 = -42;
    m->i64 = INT64_MIN;
    m->u32 = UINT32_MAX;
    m->u64 = UINT64_MAX;
    m->s32 = INT32_MIN;
    m->s64 = -1;
    m->f32 = 7;
    m->f64 = 9007199254740993u;
    m->sf32 = -9;
    m->sf64 = 123;
    m->flt = 0.1f;
    m->dbl = 0.1;
    m->flag = 1;
    m->text = "say \"hi\"\nline2\t\x01\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\\";
    m->blob.data = blob;
    m->blob.len = sizeof(blob);
    m->color = LOOMTEST__COLOR__COLOR_GREEN;
}

/* Fills every field of AllTypes. The pointers refer to static storage, so
 * the message stays valid after the call. */
static void
fill_all_types(Loomtest__AllTypes *m)
{
    static Loomtest__Inner inner = LOOMTEST__INNER__INIT;
    static Loomtest__Inner item1 = LOOMTEST__INNER__INIT;
    static Loomtest__Inner item2 = LOOMTEST__INNER__INIT;
    static Loomtest__Inner *items[] = {&item1, &item2};
    static Loomtest__AllTypes__CountsEntry e1 =
        LOOMTEST__ALL_TYPES__COUNTS_ENTRY__INIT;
    static Loomtest__AllTypes__CountsEntry e2 =
        LOOMTEST__ALL_TYPES__COUNTS_ENTRY__INIT;
    static Loomtest__AllTypes__CountsEntry *entries[] = {&e1, &e2};
    static int32_t nums[] = {1, -2, 3};
    static char *tags[] = {"x", "y"};
    static Loomtest__Color colors[] = {LOOMTEST__COLOR__COLOR_RED, 7};

    inner.label = "in";
    inner.n = -7;
    item1.label = "a";
    item1.n = 1;
    item2.n = 2;
    e1.key = "k1";
    e1.value = 1;
    e2.key = "k2";
    e2.value = 2;
    loomtest__all_types__init(m);
    fill_scalars(m);
    m->inner = &inner;
    m->n_nums = 3;
    m->nums = nums;
    m->n_tags = 2;
    m->tags = tags;
    m->n_items = 2;
    m->items = items;
    m->n_colors = 2;
    m->colors = colors;
    m->choice_case = LOOMTEST__ALL_TYPES__CHOICE_CHOICE_NUM;
    m->choice_num = -5;
    m->n_counts = 2;
    m->counts = entries;
    m->snake_case_name = "snake";
}

static const char full_json[] =
    "{\"i32\":-42,\"i64\":\"-9223372036854775808\",\"u32\":4294967295,"
    "\"u64\":\"18446744073709551615\",\"s32\":-2147483648,\"s64\":\"-1\","
    "\"f32\":7,\"f64\":\"9007199254740993\",\"sf32\":-9,\"sf64\":\"123\","
    "\"flt\":0.1,\"dbl\":0.1,\"flag\":true,"
    "\"text\":\"say \\\"hi\\\"\\nline2\\t\\u0001"
    "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\\\\\","
    "\"blob\":\"AP8QgH8=\",\"color\":\"COLOR_GREEN\","
    "\"inner\":{\"label\":\"in\",\"n\":-7},\"nums\":[1,-2,3],"
    "\"tags\":[\"x\",\"y\"],"
    "\"items\":[{\"label\":\"a\",\"n\":1},{\"n\":2}],"
    "\"colors\":[\"COLOR_RED\",7],\"choiceNum\":\"-5\","
    "\"counts\":[{\"key\":\"k1\",\"value\":1},{\"key\":\"k2\",\"value\":2}],"
    "\"snakeCaseName\":\"snake\"}";

static void
test_registry_to_json_full_message(void **state)
{
    struct fx *f = *state;
    Loomtest__AllTypes m;

    fill_all_types(&m);
    expect_msg_json(f->r, &m.base, full_json);
}

static void
test_registry_to_json_omits_zero_values(void **state)
{
    struct fx *f = *state;
    Loomtest__AllTypes m = LOOMTEST__ALL_TYPES__INIT;
    Loomtest__Inner empty = LOOMTEST__INNER__INIT;

    expect_msg_json(f->r, &m.base, "{}");
    expect_json(f->r, "loomtest.AllTypes", NULL, 0, "{}");
    /* A set message field prints even when empty; so does a oneof member
     * at its zero value, since the case says it is set. */
    m.inner = &empty;
    m.choice_case = LOOMTEST__ALL_TYPES__CHOICE_CHOICE_TEXT;
    m.choice_text = "";
    expect_msg_json(f->r, &m.base, "{\"inner\":{},\"choiceText\":\"\"}");
    m.choice_case = LOOMTEST__ALL_TYPES__CHOICE_CHOICE_MSG;
    m.choice_msg = &empty;
    expect_msg_json(f->r, &m.base, "{\"inner\":{},\"choiceMsg\":{}}");
}

static void
test_registry_to_json_proto2_presence(void **state)
{
    struct fx *f = *state;
    Loomtest__Inner empty = LOOMTEST__INNER__INIT;
    legacy_msg m;

    memset(&m, 0, sizeof(m));
    m.base.descriptor = &legacy_descriptor;
    m.id = 5;
    m.name = legacy_name_default;
    expect_msg_json(f->r, &m.base, "{\"id\":5}");
    /* has_ flags and non-default pointers mark presence, zero or not. */
    m.id = 0;
    m.has_count = 1;
    m.name = "bob";
    m.has_data = 1;
    m.inner = &empty;
    expect_msg_json(
        f->r, &m.base,
        "{\"id\":0,\"count\":0,\"name\":\"bob\",\"data\":\"\",\"inner\":{}}");
    /* The required id is missing. */
    expect_error(f->r, "loomtest.Legacy", "\x10\x01", 2, LOOM_EDECODE);
}

static void
test_registry_to_json_escapes_invalid_utf8(void **state)
{
    struct fx *f = *state;
    Loomtest__AllTypes m = LOOMTEST__ALL_TYPES__INIT;
    char *json = NULL;
    size_t len;
    uint8_t *p;

    /* A stray byte, a lead byte before ASCII, a surrogate, a value past
     * U+10FFFF, an overlong '/', and a sequence cut short by the end. */
    m.text = "a\xff"
             "b\xc3(\xed\xa0\x80\xf4\x90\x80\x80\xc0\xafz\x01\xe2\x82";
    expect_msg_json(f->r, &m.base,
                    "{\"text\":\"a\\ufffdb\\ufffd("
                    "\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd"
                    "\\ufffd\\ufffdz\\u0001\\ufffd\\ufffd\"}");
    p = pack(&m.base, &len);
    assert_int_equal(
        loom_registry_to_json(f->r, "loomtest.AllTypes", p, len, &json),
        LOOM_OK);
    assert_true(json_valid(json));
    loom_free(json);
    free(p);
}

static void
test_registry_to_json_64bit_as_strings(void **state)
{
    struct fx *f = *state;
    Loomtest__AllTypes m = LOOMTEST__ALL_TYPES__INIT;

    m.i64 = INT64_MAX;
    m.u64 = 1;
    m.s64 = INT64_MIN;
    m.f64 = UINT64_MAX;
    m.sf64 = -1;
    m.u32 = UINT32_MAX;
    m.i32 = INT32_MIN;
    expect_msg_json(f->r, &m.base,
                    "{\"i32\":-2147483648,\"i64\":\"9223372036854775807\","
                    "\"u32\":4294967295,\"u64\":\"1\","
                    "\"s64\":\"-9223372036854775808\","
                    "\"f64\":\"18446744073709551615\",\"sf64\":\"-1\"}");
}

static void
test_registry_to_json_floats(void **state)
{
    struct fx *f = *state;
    Loomtest__AllTypes m = LOOMTEST__ALL_TYPES__INIT;

    m.flt = NAN;
    m.dbl = -INFINITY;
    expect_msg_json(f->r, &m.base, "{\"flt\":\"NaN\",\"dbl\":\"-Infinity\"}");
    m.flt = INFINITY;
    m.dbl = 1e300;
    expect_msg_json(f->r, &m.base, "{\"flt\":\"Infinity\",\"dbl\":1e+300}");
    /* The shortest digits that read back exactly. */
    m.flt = 1.0f / 3;
    m.dbl = 1.0 / 3;
    expect_msg_json(f->r, &m.base,
                    "{\"flt\":0.33333334,\"dbl\":0.3333333333333333}");
    m.flt = -2.5f;
    m.dbl = 5e-324;
    expect_msg_json(f->r, &m.base,
                    "{\"flt\":-2.5,\"dbl\":4.94065645841247e-324}");
}

static void
test_registry_to_json_rejects_invalid_args(void **state)
{
    struct fx *f = *state;
    char *json = (char *) "unchanged";

    assert_int_equal(
        loom_registry_to_json(NULL, "loomtest.Inner", "", 0, &json),
        LOOM_EINVAL);
    assert_null(json);
    assert_int_equal(loom_registry_to_json(f->r, "loomtest.Inner", "", 0, NULL),
                     LOOM_EINVAL);
    expect_error(f->r, "loomtest.Inner", NULL, 1, LOOM_EINVAL);
    expect_error(f->r, UNKNOWN_TYPE, NULL, 1, LOOM_EINVAL);
    /* NULL with length 0 is an empty message, and a NULL type is unknown. */
    expect_json(f->r, "loomtest.Inner", NULL, 0, "{}");
    expect_json(f->r, NULL, "\x08\x01", 2, "{\"1\":1}");
}

static void
test_registry_to_json_corrupt_bytes_fail_decode(void **state)
{
    struct fx *f = *state;

    /* Truncated varint, length past the end, a string where Inner.n wants
     * a varint, a group, and a nested Inner that is itself truncated. */
    expect_error(f->r, "loomtest.Inner", "\x10", 1, LOOM_EDECODE);
    expect_error(f->r, "loomtest.Inner", "\x0a\x05\x61\x62", 4, LOOM_EDECODE);
    expect_error(f->r, "loomtest.Inner", "\x12\x01x", 3, LOOM_EDECODE);
    expect_error(f->r, "loomtest.Inner", "\x0b\x0c", 2, LOOM_EDECODE);
    expect_error(f->r, "loomtest.Inner", "\x1a\x02\x10\x80", 4, LOOM_EDECODE);
    /* The same bytes as an unknown type, where a nested value that does
     * not parse is just bytes. */
    expect_json(f->r, UNKNOWN_TYPE, "\x1a\x02\x10\x80", 4, "{\"3\":\"EIA=\"}");
}

/* Writes `levels` Inner messages, each the child of the one before, into
 * the end of `buf`; returns the start. */
static uint8_t *
nest_inner(uint8_t *buf, size_t cap, size_t levels)
{
    uint8_t *p = buf + cap, v[10];
    size_t i, len, k;

    for (i = 1; i < levels; i++) {
        len = (size_t) (buf + cap - p);
        for (k = 0; len >= 0x80; len >>= 7)
            v[k++] = (uint8_t) (len | 0x80);
        v[k++] = (uint8_t) len;
        assert_true((size_t) (p - buf) > k);
        p -= k;
        memcpy(p, v, k);
        *--p = 0x1a; /* Inner.child: field 3, length-delimited */
    }
    return p;
}

static void
test_registry_to_json_depth_limit(void **state)
{
    struct fx *f = *state;
    size_t cap = 500000, n;
    uint8_t *buf = malloc(cap), *p;
    char *json = NULL;

    assert_non_null(buf);
    p = nest_inner(buf, cap, 64);
    n = (size_t) (buf + cap - p);
    assert_int_equal(loom_registry_to_json(f->r, "loomtest.Inner", p, n, &json),
                     LOOM_OK);
    assert_true(json_valid(json));
    assert_non_null(strstr(json, "{}}}}"));
    loom_free(json);
    p = nest_inner(buf, cap, 65);
    expect_error(f->r, "loomtest.Inner", p, (size_t) (buf + cap - p),
                 LOOM_EDECODE);
    /* Far past the limit: refused before protobuf-c's recursive unpacker
     * sees it, and decoded raw without recursing past the limit. */
    p = nest_inner(buf, cap, 100000);
    n = (size_t) (buf + cap - p);
    expect_error(f->r, "loomtest.Inner", p, n, LOOM_EDECODE);
    assert_int_equal(loom_registry_to_json(f->r, UNKNOWN_TYPE, p, n, &json),
                     LOOM_OK);
    assert_true(json_valid(json));
    loom_free(json);
    free(buf);
}

/*
 * Raw JSON.
 */

static void
test_registry_raw_decode_known_bytes(void **state)
{
    static const uint8_t in[] = {
        0x08, 0x96, 0x01,                                     /* 1: 150 */
        0x12, 0x07, 't',  'e',  's',  't',  'i',  'n',  'g',  /* 2 */
        0x1a, 0x02, 0x08, 0x01,                               /* 3: {1: 1} */
        0x08, 0x02,                                           /* 1: 2 */
        0x25, 0x01, 0x00, 0x00, 0x00,                         /* 4: fixed32 */
        0x29, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* 5 */
        0x30, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, /* 6: 2^53 */
        0x30, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, /* 2^53+1 */
        0x3a, 0x02, 0xff, 0x00,                               /* 7: bytes */
        0x42, 0x00,                                           /* 8: "" */
        0x4a, 0x03, 'a',  '\n', 'b',                          /* 9 */
    };
    struct fx *f = *state;

    expect_json(f->r, UNKNOWN_TYPE, in, sizeof(in),
                "{\"1\":[150,2],\"2\":\"testing\",\"3\":{\"1\":1},\"4\":1,"
                "\"5\":\"18446744073709551615\","
                "\"6\":[9007199254740992,\"9007199254740993\"],"
                "\"7\":\"/wA=\",\"8\":\"\",\"9\":\"a\\nb\"}");
    expect_json(f->r, UNKNOWN_TYPE, NULL, 0, "{}");
    /* Out of order: keys sorted, each number's values kept in wire order. */
    expect_json(f->r, UNKNOWN_TYPE,
                "\x18\x05\x08\x01\x10\x02\x08\x03\x18\x06\x08\x04", 12,
                "{\"1\":[1,3,4],\"2\":2,\"3\":[5,6]}");
    /* Short text that also parses as a message ("p1": field 14 = 49) is
     * text; a nested message whose one field is a long string (its bytes
     * printable after the tag, a newline) is still a message. */
    expect_json(f->r, UNKNOWN_TYPE, "\x12\x02p1", 4, "{\"2\":\"p1\"}");
    expect_json(f->r, UNKNOWN_TYPE,
                "\x1a\x24\x0a\x22"
                "abcdefghijklmnopqrstuvwxyz01234567",
                38, "{\"3\":{\"1\":\"abcdefghijklmnopqrstuvwxyz01234567\"}}");
}

static void
test_registry_raw_decode_rejects_malformed(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"\x08", 1},         /* value missing */
        {"\x08\x80", 2},     /* truncated varint */
        {"\x80", 1},         /* truncated tag */
        {"\x12\x05\x61", 3}, /* length past the end */
        {"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11}, /* 2^64-1 */
        {"\x00\x01", 2},                 /* field number 0 */
        {"\x80\x80\x80\x80\x10\x00", 6}, /* field number 2^29 */
        {"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12}, /* 11 B */
        {"\x0b", 1},                             /* start group */
        {"\x0c", 1},                             /* end group */
        {"\x0e\x00", 2},                         /* wire type 6 */
        {"\x0f\x00", 2},                         /* wire type 7 */
        {"\x0d\x01\x02\x03", 4},                 /* fixed32 cut short */
        {"\x09\x01\x02\x03\x04\x05\x06\x07", 8}, /* fixed64 cut short */
        {"\x08\x01\x08", 3},                     /* good field, then garbage */
    };
    struct fx *f = *state;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_error(f->r, UNKNOWN_TYPE, bad[i].bytes, bad[i].len,
                     LOOM_EDECODE);
    /* The largest field number and a 10-byte varint are fine. */
    expect_json(f->r, UNKNOWN_TYPE, "\xf8\xff\xff\xff\x0f\x01", 6,
                "{\"536870911\":1}");
    expect_json(f->r, UNKNOWN_TYPE,
                "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11,
                "{\"1\":\"18446744073709551615\"}");
}

/* xorshift64: deterministic, so a failure reproduces. */
static uint64_t
rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Decodes `p` as `type`: it must succeed with valid JSON or fail with
 * LOOM_EDECODE, and never crash (the sanitizer build checks reads). */
static void
decode_any(const loom_registry *r, const char *type, const uint8_t *p,
           size_t len)
{
    char *json = NULL;
    loom_err rc = loom_registry_to_json(r, type, p, len, &json);

    if (rc == LOOM_OK) {
        assert_non_null(json);
        assert_true(json_valid(json));
    } else {
        assert_int_equal(rc, LOOM_EDECODE);
        assert_null(json);
    }
    loom_free(json);
}

/* Copies `len` bytes into a buffer of exactly that size, so the sanitizer
 * catches any read past the end. */
static void
decode_exact(const loom_registry *r, const uint8_t *p, size_t len)
{
    uint8_t *q = malloc(len ? len : 1);

    assert_non_null(q);
    if (len > 0)
        memcpy(q, p, len);
    decode_any(r, UNKNOWN_TYPE, q, len);
    decode_any(r, "loomtest.AllTypes", q, len);
    decode_any(r, "loomtest.Legacy", q, len);
    free(q);
}

/* Writes a random varint (1 to 10 bytes); returns its length. */
static size_t
gen_varint(uint8_t *p, uint64_t *seed)
{
    uint64_t v = rnd(seed) >> (rnd(seed) % 64);
    size_t n = 0;

    for (; v >= 0x80; v >>= 7)
        p[n++] = (uint8_t) (v | 0x80);
    p[n++] = (uint8_t) v;
    return n;
}

/* Writes a random well-formed message of at most `cap` bytes, with nested
 * messages, text and binary values, so the raw decoder's guesses all get
 * exercised; returns its length. */
static size_t
gen_message(uint8_t *p, size_t cap, int depth, uint64_t *seed)
{
    static const uint8_t wire_types[] = {0, 1, 2, 5};
    size_t n = 0, k, len;

    while (cap - n >= 16 && rnd(seed) % 6 != 0) {
        k = wire_types[rnd(seed) % 4];
        p[n++] = (uint8_t) ((rnd(seed) % 15 + 1) << 3 | k);
        if (k == 0) {
            n += gen_varint(p + n, seed);
        } else if (k == 1 || k == 5) {
            for (k = k == 1 ? 8 : 4; k > 0; k--)
                p[n++] = (uint8_t) rnd(seed);
        } else {
            /* One length byte: keep nested values under 128 bytes. */
            len = cap - n - 1 < 127 ? cap - n - 1 : 127;
            if (depth < 6 && rnd(seed) % 2)
                len = gen_message(p + n + 1, len, depth + 1, seed);
            else
                for (len = rnd(seed) % (len + 1), k = 0; k < len; k++)
                    p[n + 1 + k] =
                        (uint8_t) (rnd(seed) % 3 ? 'a' + k % 26 : rnd(seed));
            p[n++] = (uint8_t) len;
            n += len;
        }
    }
    return n;
}

static void
test_registry_decode_never_crashes(void **state)
{
    struct fx *f = *state;
    uint64_t seed = 0x9e3779b97f4a7c15u;
    Loomtest__AllTypes m;
    uint8_t *good, buf[512];
    size_t len, i, j, n;

    fill_all_types(&m);
    good = pack(&m.base, &len);
    for (i = 0; i <= len; i++)
        decode_exact(f->r, good, i);
    for (i = 0; i < 2000; i++) {
        /* Mutants of the good message reach the typed printer... */
        uint8_t *mut = malloc(len);
        assert_non_null(mut);
        memcpy(mut, good, len);
        for (j = rnd(&seed) % 4 + 1; j > 0; j--)
            mut[rnd(&seed) % len] = (uint8_t) rnd(&seed);
        decode_exact(f->r, mut, rnd(&seed) % 2 ? len : rnd(&seed) % len);
        free(mut);
        /* ...random messages, sometimes damaged, the raw decoder... */
        n = gen_message(buf, sizeof(buf), 0, &seed);
        if (n > 0 && rnd(&seed) % 3 == 0)
            buf[rnd(&seed) % n] = (uint8_t) rnd(&seed);
        decode_exact(f->r, buf, n);
        /* ...and plain noise the error paths. */
        n = rnd(&seed) % 64;
        for (j = 0; j < n; j++)
            buf[j] = (uint8_t) rnd(&seed);
        decode_exact(f->r, buf, n);
    }
    free(good);
}

/*
 * Failure paths.
 */

/* An allocator that fails once `budget` allocations have been made (never
 * when negative) and counts live blocks to find leaks. */
static struct {
    long budget;
    long live;
} fa;

static void *
fa_malloc(size_t size, void *arg)
{
    void *p;

    (void) arg;
    if (fa.budget == 0)
        return NULL;
    if (fa.budget > 0)
        fa.budget--;
    p = malloc(size ? size : 1);
    if (p != NULL)
        fa.live++;
    return p;
}

static void *
fa_realloc(void *ptr, size_t size, void *arg)
{
    void *p;

    (void) arg;
    if (fa.budget == 0)
        return NULL;
    if (fa.budget > 0)
        fa.budget--;
    p = realloc(ptr, size ? size : 1);
    if (p != NULL && ptr == NULL)
        fa.live++;
    return p;
}

static void
fa_free(void *ptr, void *arg)
{
    (void) arg;
    if (ptr != NULL)
        fa.live--;
    free(ptr);
}

/* Everything that allocates: new, add, typed and raw decoding. */
static loom_err
fa_run(const uint8_t *p, size_t len, char **typed, char **raw)
{
    loom_registry *r = NULL;
    loom_err rc;

    rc = loom_registry_new(&r);
    if (rc == LOOM_OK)
        rc = loom_registry_add(r, NULL, &loomtest__all_types__descriptor);
    if (rc == LOOM_OK)
        rc = loom_registry_add(r, "b", &loomtest__inner__descriptor);
    if (rc == LOOM_OK)
        rc = loom_registry_to_json(r, "loomtest.AllTypes", p, len, typed);
    if (rc == LOOM_OK) {
        rc = loom_registry_to_json(r, UNKNOWN_TYPE, p, len, raw);
        if (rc != LOOM_OK) {
            loom_free(*typed);
            *typed = NULL;
        }
    }
    loom_registry_free(r);
    return rc;
}

static void
test_registry_enomem_without_leaks(void **state)
{
    loom_allocator a = {fa_malloc, fa_realloc, fa_free, NULL};
    char *typed = NULL, *raw = NULL;
    Loomtest__AllTypes m;
    loom_err rc;
    uint8_t *p;
    size_t len;
    long n;

    (void) state;
    fill_all_types(&m);
    p = pack(&m.base, &len);
    for (n = 0;; n++) {
        assert_true(n < 100000);
        fa.budget = n;
        fa.live = 0;
        assert_int_equal(loom_set_allocator(&a), LOOM_OK);
        typed = raw = NULL;
        rc = fa_run(p, len, &typed, &raw);
        if (rc == LOOM_OK)
            break;
        assert_int_equal(rc, LOOM_ENOMEM);
        assert_null(typed);
        assert_null(raw);
        assert_int_equal(fa.live, 0);
        loom_set_allocator(NULL);
    }
    assert_true(n > 3);
    assert_string_equal(typed, full_json);
    assert_true(json_valid(raw));
    loom_free(typed);
    loom_free(raw);
    assert_int_equal(fa.live, 0);
    loom_set_allocator(NULL);
    free(p);
}

static void
test_registry_load_rejects_null(void **state)
{
    struct fx *f = *state;

    assert_int_equal(loom_registry_load(NULL, "x.so"), LOOM_EINVAL);
    assert_int_equal(loom_registry_load(f->r, NULL), LOOM_EINVAL);
    assert_int_equal(loom_registry_load(f->r, ""), LOOM_EINVAL);
}

static void
test_registry_load_missing_path_not_found(void **state)
{
    struct fx *f = *state;

    assert_int_equal(
        loom_registry_load(f->r, "/nonexistent/libloom-types-nope.so"),
        LOOM_ENOTFOUND);
}

static void
test_registry_load_without_symbol_not_found(void **state)
{
    struct fx *f = *state;

    /* The C library loads but has no loom_register_types. */
    assert_int_equal(loom_registry_load(f->r, "libc.so.6"), LOOM_ENOTFOUND);
}

static void
test_registry_load_returns_plugin_result(void **state)
{
#ifdef LOOM_TEST_PLUGIN
    struct fx *f = *state;

    assert_int_equal(loom_registry_load(f->r, LOOM_TEST_PLUGIN), LOOM_EHANDLER);
#else
    (void) state;
    fail_msg("built without LOOM_TEST_PLUGIN: build with CMake");
#endif
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_registry_new_rejects_null_out),
        T(test_registry_add_then_find),
        T(test_registry_add_null_name_uses_full_name),
        T(test_registry_add_same_descriptor_twice_is_noop),
        T(test_registry_add_other_descriptor_is_duplicate),
        T(test_registry_add_rejects_invalid_args),
        T(test_registry_find_and_name_handle_null),
        T(test_registry_names_are_sorted),
        T(test_registry_to_json_full_message),
        T(test_registry_to_json_omits_zero_values),
        T(test_registry_to_json_proto2_presence),
        T(test_registry_to_json_escapes_invalid_utf8),
        T(test_registry_to_json_64bit_as_strings),
        T(test_registry_to_json_floats),
        T(test_registry_to_json_rejects_invalid_args),
        T(test_registry_to_json_corrupt_bytes_fail_decode),
        T(test_registry_to_json_depth_limit),
        T(test_registry_raw_decode_known_bytes),
        T(test_registry_raw_decode_rejects_malformed),
        T(test_registry_decode_never_crashes),
        T(test_registry_enomem_without_leaks),
        T(test_registry_load_rejects_null),
        T(test_registry_load_missing_path_not_found),
        T(test_registry_load_without_symbol_not_found),
        T(test_registry_load_returns_plugin_result),
    };

    return cmocka_run_group_tests_name("framework.registry", tests, NULL, NULL);
}

#endif /* REGISTRY_TEST_PLUGIN */
