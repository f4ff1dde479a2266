/*
 * Protobuf to JSON: the schema-driven printer (protobuf's JSON mapping over
 * an unpacked protobuf-c message), the nesting check that guards
 * protobuf-c's unpacker, and the schema-less decoder for payloads of
 * unknown type. The last two read untrusted bytes and are fuzzed: every
 * read is bounds-checked against the remaining length and recursion stops
 * at LOOM__PB_MAX_DEPTH.
 */
#include "pbjson.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h> /* strtod(), strtof() */
#include <string.h>

#include "loom/alloc.h"
#include "pgwire.h"

/* Field numbers are 29 bits wide (protobuf's FieldDescriptor::kMaxNumber). */
#define PBJ_MAX_FIELD 536870911u
/* Above 2^53 a JSON reader that uses doubles (JavaScript) loses digits. */
#define PBJ_MAX_SAFE_INT 9007199254740992u

enum {
    PBJ_WT_VARINT = 0,
    PBJ_WT_I64 = 1,
    PBJ_WT_LEN = 2,
    PBJ_WT_I32 = 5,
};

/* One field read off the wire. */
typedef struct pbj_field {
    uint32_t num;
    unsigned wt;
    uint64_t v;       /* the value of a varint, fixed32 or fixed64 */
    const uint8_t *p; /* the payload of a length-delimited field */
    size_t n;
    size_t seq; /* wire position: keeps repeats in order after sorting */
} pbj_field;

static loom_err pbj_message(loom__buf *b, const ProtobufCMessage *m, int depth);
static loom_err pbj_raw_message(loom__buf *b, const uint8_t *d, size_t len,
                                int depth);

/*
 * JSON output.
 */

/* The JSON escape for ASCII byte `c`, or NULL when it needs none. The
 * short forms keep logged text readable; other controls get \u00XX. */
static const char *
pbj_escape(unsigned char c, unsigned flags, char tmp[8])
{
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    }
    if (c >= 0x20 && !(c == 0x7f && (flags & LOOM__JSON_ESCAPE_DEL)))
        return NULL;
    snprintf(tmp, 8, "\\u%04x", c);
    return tmp;
}

/* Unescaped runs are copied in one go. */
void
loom__json_string(loom__buf *b, const char *str, size_t n, unsigned flags)
{
    const unsigned char *s = (const unsigned char *) str;
    size_t i = 0, start = 0, k;
    const char *esc;
    char tmp[8];

    loom__buf_putc(b, '"');
    while (i < n) {
        k = 1;
        if (s[i] < 0x80) {
            esc = pbj_escape(s[i], flags, tmp);
        } else {
            k = loom__utf8_seq(s + i, n - i);
            esc = k == 0 ? "\\ufffd" : NULL;
            k = k == 0 ? 1 : k;
        }
        if (esc != NULL) {
            loom__buf_put(b, s + start, i - start);
            loom__buf_puts(b, esc);
            start = i + k;
        }
        i += k;
    }
    loom__buf_put(b, s + start, i - start);
    loom__buf_putc(b, '"');
}

/* Whether `n` bytes are printable UTF-8 text (tabs and newlines allowed),
 * which the raw decoder shows as a string rather than base64. */
static int
pbj_is_text(const uint8_t *s, size_t n)
{
    size_t i = 0, k;

    while (i < n) {
        if (s[i] >= 0x80) {
            k = loom__utf8_seq(s + i, n - i);
            if (k == 0)
                return 0;
            i += k;
            continue;
        }
        if ((s[i] < 0x20 && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') ||
            s[i] == 0x7f)
            return 0;
        i++;
    }
    return 1;
}

/* Writes 1 to 3 bytes as one padded base64 quantum. */
static void
pbj_base64_quantum(loom__buf *b, const uint8_t *p, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t v = (uint32_t) p[0] << 16;
    char q[4];

    if (n > 1)
        v |= (uint32_t) p[1] << 8;
    if (n > 2)
        v |= p[2];
    q[0] = tab[v >> 18];
    q[1] = tab[(v >> 12) & 63];
    q[2] = n > 1 ? tab[(v >> 6) & 63] : '=';
    q[3] = n > 2 ? tab[v & 63] : '=';
    loom__buf_put(b, q, 4);
}

void
loom__json_base64(loom__buf *b, const void *data, size_t n)
{
    const uint8_t *p = data;
    size_t i;

    /* One reservation up front; the buffer checks the size for overflow. */
    loom__buf_reserve(b, n / 3 * 4 + 6);
    loom__buf_putc(b, '"');
    for (i = 0; i < n; i += 3)
        pbj_base64_quantum(b, p + i, n - i < 3 ? n - i : 3);
    loom__buf_putc(b, '"');
}

static void
pbj_put_u64(loom__buf *b, uint64_t v, int quoted)
{
    if (quoted)
        loom__buf_printf(b, "\"%" PRIu64 "\"", v);
    else
        loom__buf_printf(b, "%" PRIu64, v);
}

/* Writes %g output as a JSON number. printf writes the locale's radix
 * character, which is ',' in many locales and may be several bytes; %g
 * output otherwise holds only digits, signs and 'e'. */
static void
pbj_put_g(loom__buf *b, const char *s)
{
    int radix = 0;

    for (; *s != '\0'; s++) {
        if ((*s >= '0' && *s <= '9') || *s == '-' || *s == '+' || *s == 'e') {
            loom__buf_putc(b, *s);
            radix = 0;
        } else if (!radix) {
            loom__buf_putc(b, '.');
            radix = 1;
        }
    }
}

/* Writes a float or double. JSON has no NaN or infinities, so protobuf's
 * mapping quotes them. Finite values get the fewest digits (from %.15g
 * or %.6g up to the always-exact %.17g or %.9g) that read back to the same
 * value, so 0.1 prints as 0.1 and not 0.10000000000000001. */
static void
pbj_put_real(loom__buf *b, double v, int is_float)
{
    int prec = is_float ? 6 : 15, max = is_float ? 9 : 17;
    char s[40];

    if (isnan(v)) {
        loom__buf_puts(b, "\"NaN\"");
        return;
    }
    if (isinf(v)) {
        loom__buf_puts(b, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return;
    }
    for (;; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, v);
        if (prec == max)
            break;
        if (is_float ? strtof(s, NULL) == (float) v : strtod(s, NULL) == v)
            break;
    }
    pbj_put_g(b, s);
}

/* Writes `"name":` with the name in lowerCamelCase, as protoc derives
 * json_name: each '_' is dropped and the letter after it upper-cased.
 * protoc limits field names to [A-Za-z0-9_], so nothing needs escaping. */
static void
pbj_put_key(loom__buf *b, const char *name)
{
    int up = 0;
    char c;

    loom__buf_putc(b, '"');
    for (; *name != '\0'; name++) {
        c = *name;
        if (c == '_') {
            up = 1;
            continue;
        }
        if (up && c >= 'a' && c <= 'z')
            c = (char) (c - 'a' + 'A');
        loom__buf_putc(b, c);
        up = 0;
    }
    loom__buf_puts(b, "\":");
}

/*
 * Wire format reader. Each function returns 0, or -1 on malformed input;
 * *pos <= len always holds, so `len - *pos` never wraps.
 */

/* Reads a varint of at most 10 bytes. Like protobuf's own parsers it keeps
 * the low 64 bits of a 10-byte varint; the unsigned shift cannot overflow
 * into undefined behaviour. */
static int
pbj_varint(const uint8_t *d, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    unsigned shift;
    uint8_t c;

    for (shift = 0; shift < 70; shift += 7) {
        if (*pos >= len)
            return -1;
        c = d[(*pos)++];
        v |= (uint64_t) (c & 0x7f) << shift;
        if ((c & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Reads a little-endian fixed32 or fixed64. */
static int
pbj_fixed(const uint8_t *d, size_t len, size_t *pos, size_t size, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (len - *pos < size)
        return -1;
    for (i = size; i > 0; i--)
        v = v << 8 | d[*pos + i - 1];
    *pos += size;
    *out = v;
    return 0;
}

/* Reads one field: tag, then value. Groups (wire types 3 and 4) were
 * deprecated before proto3 and protobuf-c cannot parse them either. */
static int
pbj_next(const uint8_t *d, size_t len, size_t *pos, pbj_field *f)
{
    uint64_t tag, n;

    if (pbj_varint(d, len, pos, &tag) != 0)
        return -1;
    if ((tag >> 3) == 0 || (tag >> 3) > PBJ_MAX_FIELD)
        return -1;
    f->num = (uint32_t) (tag >> 3);
    f->wt = (unsigned) (tag & 7);
    switch (f->wt) {
    case PBJ_WT_VARINT:
        return pbj_varint(d, len, pos, &f->v);
    case PBJ_WT_I64:
        return pbj_fixed(d, len, pos, 8, &f->v);
    case PBJ_WT_I32:
        return pbj_fixed(d, len, pos, 4, &f->v);
    case PBJ_WT_LEN:
        if (pbj_varint(d, len, pos, &n) != 0 || n > len - *pos)
            return -1;
        f->p = d + *pos;
        f->n = (size_t) n;
        *pos += (size_t) n;
        return 0;
    default:
        return -1;
    }
}

/* Counts the fields of a message; -1 when it does not parse completely. */
static int
pbj_count(const uint8_t *d, size_t len, size_t *count)
{
    size_t pos = 0, n = 0;
    pbj_field f;

    while (pos < len) {
        if (pbj_next(d, len, &pos, &f) != 0)
            return -1;
        n++;
    }
    *count = n;
    return 0;
}

/*
 * The typed printer. Which fields are present mirrors protobuf-c's packer
 * (oneof_field_pack, optional_field_pack, field_is_zeroish), so the JSON
 * shows exactly what the message would put on the wire.
 */

static int
pbj_is_pointer(const ProtobufCFieldDescriptor *f)
{
    return f->type == PROTOBUF_C_TYPE_STRING ||
           f->type == PROTOBUF_C_TYPE_MESSAGE;
}

/* A string or message member is unset when NULL or left at its default. */
static int
pbj_pointer_set(const ProtobufCFieldDescriptor *f, const void *p)
{
    const void *v = *(const void *const *) p;

    return v != NULL && v != f->default_value;
}

/* Whether a proto3 field without presence holds its zero value. */
static int
pbj_zeroish(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *) p == 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *) p == 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *) p == 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *) p == 0;
    case PROTOBUF_C_TYPE_STRING:
        return *(const char *const *) p == NULL ||
               **(const char *const *) p == '\0';
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *) p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(const void *const *) p == NULL;
    default: /* enum and the 32-bit integers */
        return *(const uint32_t *) p == 0;
    }
}

static int
pbj_present(const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m)
{
    const char *p = (const char *) m + f->offset;
    const char *q = (const char *) m + f->quantifier_offset;

    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *) q > 0;
    /* The case member of a oneof is an int-sized enum holding the field
     * number of the member that is set. */
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        if (*(const uint32_t *) q != f->id)
            return 0;
        return !pbj_is_pointer(f) || pbj_pointer_set(f, p);
    }
    switch (f->label) {
    case PROTOBUF_C_LABEL_REQUIRED:
        return 1;
    case PROTOBUF_C_LABEL_OPTIONAL:
        if (pbj_is_pointer(f))
            return pbj_pointer_set(f, p);
        return *(const protobuf_c_boolean *) q != 0;
    default:
        return !pbj_zeroish(f, p);
    }
}

static void
pbj_put_enum(loom__buf *b, const ProtobufCEnumDescriptor *ed, int v)
{
    const ProtobufCEnumValue *ev = NULL;

    if (ed != NULL)
        ev = protobuf_c_enum_descriptor_get_value(ed, v);
    if (ev != NULL && ev->name != NULL)
        loom__json_string(b, ev->name, strlen(ev->name), 0);
    else
        loom__buf_printf(b, "%d", v);
}

/* Writes an integer value: 64-bit ones quoted, as the JSON mapping wants,
 * since JSON readers that use doubles would round them. Returns 0 when
 * `type` is not an integer type. */
static int
pbj_put_integer(loom__buf *b, ProtobufCType type, const void *p)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        loom__buf_printf(b, "%" PRId32, *(const int32_t *) p);
        return 1;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        loom__buf_printf(b, "%" PRIu32, *(const uint32_t *) p);
        return 1;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        loom__buf_printf(b, "\"%" PRId64 "\"", *(const int64_t *) p);
        return 1;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        pbj_put_u64(b, *(const uint64_t *) p, 1);
        return 1;
    default:
        return 0;
    }
}

/* Writes one value of field `f` stored at `p`. */
static loom_err
pbj_value(loom__buf *b, const ProtobufCFieldDescriptor *f, const void *p,
          int depth)
{
    const ProtobufCBinaryData *bd = p;
    const char *s;

    if (pbj_put_integer(b, f->type, p))
        return LOOM_OK;
    switch (f->type) {
    case PROTOBUF_C_TYPE_FLOAT:
        pbj_put_real(b, *(const float *) p, 1);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        pbj_put_real(b, *(const double *) p, 0);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        loom__buf_puts(b, *(const protobuf_c_boolean *) p ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM:
        pbj_put_enum(b, f->descriptor, *(const int *) p);
        break;
    case PROTOBUF_C_TYPE_STRING:
        s = *(const char *const *) p;
        loom__json_string(b, s != NULL ? s : "", s != NULL ? strlen(s) : 0, 0);
        break;
    case PROTOBUF_C_TYPE_BYTES:
        loom__json_base64(b, bd->data, bd->len);
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        return pbj_message(b, *(const ProtobufCMessage *const *) p, depth + 1);
    default:
        return LOOM_EDECODE;
    }
    return LOOM_OK;
}

/* The stride of a repeated field's array, as protobuf-c lays it out
 * (sizeof_elt_in_repeated_array); 0 for an unknown type. */
static size_t
pbj_elem_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 0;
    }
}

/* Writes a repeated field as a JSON array. A map field is a repeated entry
 * message to protobuf-c, and protobuf-c 1.4 does not keep the map_entry
 * option that would tell it apart, so maps print as arrays of
 * {"key":...,"value":...} objects rather than as JSON objects. */
static loom_err
pbj_repeated(loom__buf *b, const ProtobufCFieldDescriptor *f,
             const ProtobufCMessage *m, int depth)
{
    size_t n = *(const size_t *) ((const char *) m + f->quantifier_offset);
    const char *v = *(const char *const *) ((const char *) m + f->offset);
    size_t size = pbj_elem_size(f->type), i;
    loom_err rc;

    if (size == 0)
        return LOOM_EDECODE;
    loom__buf_putc(b, '[');
    for (i = 0; v != NULL && i < n && !b->failed; i++) {
        if (i > 0)
            loom__buf_putc(b, ',');
        rc = pbj_value(b, f, v + i * size, depth);
        if (rc != LOOM_OK)
            return rc;
    }
    loom__buf_putc(b, ']');
    return LOOM_OK;
}

/* Writes message `m` at nesting level `depth` (the outermost is 1). A NULL
 * message, which only a hand-built message can hold in a required or
 * repeated field, prints as an empty object. */
static loom_err
pbj_message(loom__buf *b, const ProtobufCMessage *m, int depth)
{
    const ProtobufCFieldDescriptor *f;
    unsigned i, printed = 0;
    loom_err rc;

    if (depth > LOOM__PB_MAX_DEPTH)
        return LOOM_EDECODE;
    if (m == NULL || m->descriptor == NULL) {
        loom__buf_puts(b, "{}");
        return LOOM_OK;
    }
    loom__buf_putc(b, '{');
    for (i = 0; i < m->descriptor->n_fields && !b->failed; i++) {
        f = &m->descriptor->fields[i];
        if (!pbj_present(f, m))
            continue;
        if (printed++ > 0)
            loom__buf_putc(b, ',');
        pbj_put_key(b, f->name);
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            rc = pbj_repeated(b, f, m, depth);
        else
            rc = pbj_value(b, f, (const char *) m + f->offset, depth);
        if (rc != LOOM_OK)
            return rc;
    }
    loom__buf_putc(b, '}');
    return LOOM_OK;
}

loom_err
loom__pb_to_json(loom__buf *b, const ProtobufCMessage *m)
{
    loom_err rc;

    if (b == NULL || m == NULL || m->descriptor == NULL)
        return LOOM_EINVAL;
    rc = pbj_message(b, m, 1);
    return b->failed ? LOOM_ENOMEM : rc;
}

/*
 * The nesting check. It follows only the fields that `desc` says are
 * messages, as protobuf-c's unpacker does, one level per recursion, so its
 * own recursion is bounded by LOOM__PB_MAX_DEPTH too.
 */

static loom_err
pbj_nesting(const ProtobufCMessageDescriptor *desc, const uint8_t *d,
            size_t len, int depth)
{
    const ProtobufCFieldDescriptor *fd;
    size_t pos = 0;
    pbj_field f;
    loom_err rc;

    if (depth > LOOM__PB_MAX_DEPTH)
        return LOOM_EDECODE;
    while (pos < len) {
        if (pbj_next(d, len, &pos, &f) != 0)
            return LOOM_EDECODE;
        if (f.wt != PBJ_WT_LEN)
            continue;
        fd = protobuf_c_message_descriptor_get_field(desc, f.num);
        if (fd == NULL || fd->type != PROTOBUF_C_TYPE_MESSAGE ||
            fd->descriptor == NULL)
            continue;
        rc = pbj_nesting(fd->descriptor, f.p, f.n, depth + 1);
        if (rc != LOOM_OK)
            return rc;
    }
    return LOOM_OK;
}

loom_err
loom__pb_check_nesting(const ProtobufCMessageDescriptor *desc,
                       const uint8_t *data, size_t len)
{
    if (desc == NULL || (data == NULL && len > 0))
        return LOOM_EINVAL;
    return pbj_nesting(desc, data, len, 1);
}

/*
 * The schema-less decoder. Deciding whether a length-delimited value is a
 * message only parses its own level (any payload is valid as bytes), so
 * each level costs time linear in its span and the whole decode is at most
 * LOOM__PB_MAX_DEPTH times the input length.
 */

/* Orders fields by number, then by wire position. */
static int
pbj_field_less(const pbj_field *x, const pbj_field *y)
{
    if (x->num != y->num)
        return x->num < y->num;
    return x->seq < y->seq;
}

static void
pbj_sift_down(pbj_field *v, size_t i, size_t n)
{
    pbj_field t;
    size_t c;

    while ((c = 2 * i + 1) < n) {
        if (c + 1 < n && pbj_field_less(&v[c], &v[c + 1]))
            c++;
        if (!pbj_field_less(&v[i], &v[c]))
            return;
        t = v[i];
        v[i] = v[c];
        v[c] = t;
        i = c;
    }
}

/* Sorts fields by number, keeping repeats in wire order. A heapsort rather
 * than qsort(), which in glibc may call malloc() behind loom_malloc()'s
 * back. Encoders write fields in number order, so check for that first. */
static void
pbj_sort(pbj_field *v, size_t n)
{
    pbj_field t;
    size_t i;

    for (i = 1; i < n && v[i - 1].num <= v[i].num; i++)
        ;
    if (i >= n)
        return;
    for (i = n / 2; i > 0; i--)
        pbj_sift_down(v, i - 1, n);
    for (i = n; i > 1; i--) {
        t = v[0];
        v[0] = v[i - 1];
        v[i - 1] = t;
        pbj_sift_down(v, 0, i - 1);
    }
}

/* A length-delimited value: a nested message if it parses as one, else
 * text, else base64. Past the depth limit it is not tried as a message,
 * so deep input degrades to text or base64 instead of failing. */
static loom_err
pbj_raw_bytes(loom__buf *b, const uint8_t *p, size_t n, int depth)
{
    size_t count;
    int text = pbj_is_text(p, n);

    /* Text that starts with a printable character stays text even when it
     * also parses as a message ("p1" is field 14 = 49 too): a nested
     * message nearly always starts with the tag of field 1, 2 or 3, a
     * control character. */
    if (text && n > 0 && p[0] >= 0x20) {
        loom__json_string(b, (const char *) p, n, 0);
        return LOOM_OK;
    }
    if (n > 0 && depth < LOOM__PB_MAX_DEPTH && pbj_count(p, n, &count) == 0)
        return pbj_raw_message(b, p, n, depth + 1);
    if (text)
        loom__json_string(b, (const char *) p, n, 0);
    else
        loom__json_base64(b, p, n);
    return LOOM_OK;
}

static loom_err
pbj_raw_value(loom__buf *b, const pbj_field *f, int depth)
{
    switch (f->wt) {
    case PBJ_WT_LEN:
        return pbj_raw_bytes(b, f->p, f->n, depth);
    case PBJ_WT_I32:
        pbj_put_u64(b, f->v, 0);
        break;
    default:
        pbj_put_u64(b, f->v, f->v > PBJ_MAX_SAFE_INT);
        break;
    }
    return LOOM_OK;
}

/* Writes sorted fields as an object; runs of one number become arrays. */
static loom_err
pbj_raw_object(loom__buf *b, const pbj_field *v, size_t n, int depth)
{
    size_t i = 0, j, k;
    loom_err rc;

    loom__buf_putc(b, '{');
    while (i < n && !b->failed) {
        for (j = i + 1; j < n && v[j].num == v[i].num; j++)
            ;
        if (i > 0)
            loom__buf_putc(b, ',');
        loom__buf_printf(b, "\"%" PRIu32 "\":%s", v[i].num,
                         j - i > 1 ? "[" : "");
        for (k = i; k < j; k++) {
            if (k > i)
                loom__buf_putc(b, ',');
            rc = pbj_raw_value(b, &v[k], depth);
            if (rc != LOOM_OK)
                return rc;
        }
        if (j - i > 1)
            loom__buf_putc(b, ']');
        i = j;
    }
    loom__buf_putc(b, '}');
    return LOOM_OK;
}

/* Decodes one message level. The field table lives only while this level
 * prints; the tables alive at once hold at most one entry per two input
 * bytes in total, since sibling fields never overlap. */
static loom_err
pbj_raw_message(loom__buf *b, const uint8_t *d, size_t len, int depth)
{
    pbj_field *v = NULL;
    size_t n, i, pos = 0;
    loom_err rc;

    if (pbj_count(d, len, &n) != 0)
        return LOOM_EDECODE;
    if (n > SIZE_MAX / sizeof(*v))
        return LOOM_ENOMEM;
    if (n > 0 && (v = loom_malloc(n * sizeof(*v))) == NULL)
        return LOOM_ENOMEM;
    for (i = 0; i < n; i++) {
        /* Cannot fail: pbj_count() just read the same bytes. */
        (void) pbj_next(d, len, &pos, &v[i]);
        v[i].seq = i;
    }
    pbj_sort(v, n);
    rc = pbj_raw_object(b, v, n, depth);
    loom_free(v);
    return rc;
}

loom_err
loom__pb_raw_to_json(loom__buf *b, const uint8_t *data, size_t len)
{
    loom_err rc;

    if (b == NULL || (data == NULL && len > 0))
        return LOOM_EINVAL;
    rc = pbj_raw_message(b, data, len, 1);
    if (rc == LOOM_EDECODE)
        return rc;
    return b->failed ? LOOM_ENOMEM : rc;
}
