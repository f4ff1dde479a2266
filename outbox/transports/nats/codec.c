/*
 * Names and messages.
 *
 * Names: a topic is the subject "<prefix>.<topic>"; a pattern becomes one
 * or two subject filters ('*' stays, a trailing '#' becomes the subject
 * itself and "<subject>.>"); a (group, filter) pair names its durable
 * JetStream consumer.
 *
 * Messages: the id is the Nats-Msg-Id header, the key the Loom-Key
 * header, loom headers are NATS headers. libnats' header parser drops a
 * message's headers when a value is empty and trims leading and trailing
 * blanks, so such values (and control characters) are escaped: "=" and
 * then the bytes, with '%', blanks, controls and DEL as %XX. A header
 * whose values are escaped is listed in Loom-Encoded ("a,b"); all its
 * values are escaped then, so one name never mixes forms.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc_int.h"
#include "buf.h"
#include "loom/alloc.h"
#include "loom/transport.h"
#include "nats_int.h"

#define CD_HDR_LINE    10 /* "NATS/1.0\r\n" */
#define CD_CRLF        2
#define CD_SEP         2 /* ": " */
#define CD_DURABLE_MAX 200

/* ---- names --------------------------------------------------------------- */

int
loom__nt_topic_ok(const char *name)
{
    /* The rule every transport shares (NT_MAX_TOPIC is its 249 bytes). */
    return loom_topic_name_valid(name, 0);
}

static char *
cd_join(const char *a, const char *b, size_t blen, const char *c)
{
    size_t la = strlen(a), lc = strlen(c);
    char *s = loom_malloc(la + 1 + blen + lc + 1);

    if (s == NULL)
        return NULL;
    memcpy(s, a, la);
    s[la] = '.';
    memcpy(s + la + 1, b, blen);
    memcpy(s + la + 1 + blen, c, lc + 1);
    return s;
}

loom_err
loom__nt_filters(const char *prefix, const char *pattern, char *filters[2],
                 size_t *n, char *err, size_t errlen)
{
    size_t len = pattern != NULL ? strlen(pattern) : 0;
    const char *hash;
    long hash_at;

    filters[0] = filters[1] = NULL;
    *n = 0;
    if (!loom_topic_name_valid(pattern, 1)) {
        snprintf(err, errlen,
                 "nats: bad topic pattern \"%s\" (words of ASCII letters, "
                 "digits, '_' and '-', or \"*\" or \"#\", separated by "
                 "dots; at most %d bytes)",
                 pattern ? pattern : "", NT_MAX_TOPIC);
        return LOOM_EINVAL;
    }
    /* In a valid pattern a '#' is a whole word. */
    hash = strchr(pattern, '#');
    hash_at = hash != NULL ? (long) (hash - pattern) : -1;
    if (hash_at >= 0 && (size_t) hash_at != len - 1) {
        snprintf(err, errlen,
                 "nats: \"#\" may only be the last word of a pattern, not "
                 "as in \"%s\" (NATS subjects have a multi-word wildcard "
                 "\">\" only at the end)",
                 pattern);
        return LOOM_EINVAL;
    }
    if (hash_at < 0) {
        filters[0] = cd_join(prefix, pattern, len, "");
        *n = 1;
    } else if (len == 1) { /* "#": every topic */
        filters[0] = cd_join(prefix, ">", 1, "");
        *n = 1;
    } else { /* "a.b.#": "a.b" itself and everything below it */
        filters[0] = cd_join(prefix, pattern, len - 2, "");
        filters[1] = cd_join(prefix, pattern, len - 2, ".>");
        *n = 2;
    }
    if (filters[0] == NULL || (*n == 2 && filters[1] == NULL)) {
        loom_free(filters[0]);
        loom_free(filters[1]);
        filters[0] = filters[1] = NULL;
        *n = 0;
        return LOOM_ENOMEM;
    }
    return LOOM_OK;
}

static void
cd_escape_name(loom__buf *b, const char *s)
{
    for (; *s; s++) {
        char ch = *s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            (ch >= '0' && ch <= '9') || ch == '-')
            loom__buf_putc(b, ch);
        else
            loom__buf_printf(b, "_%02X", (unsigned) (unsigned char) ch);
    }
}

char *
loom__nt_durable(const char *group, const char *filter)
{
    loom__buf b = {0};
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 */

    cd_escape_name(&b, group);
    loom__buf_puts(&b, "__");
    cd_escape_name(&b, filter);
    if (b.failed) {
        loom__buf_free(&b);
        return NULL;
    }
    if (b.len > CD_DURABLE_MAX) {
        /* Escaping is injective ("_" always starts an escape, "__" joins
         * the two), so the hash of the whole name keeps names apart. */
        for (size_t i = 0; i < b.len; i++) {
            h ^= (unsigned char) b.data[i];
            h *= 1099511628211ULL;
        }
        b.len = CD_DURABLE_MAX - 17;
        loom__buf_printf(&b, "_%016llx", (unsigned long long) h);
    }
    return loom__buf_take(&b);
}

/* The transport's own headers: NATS's ("Nats-*") and the two it adds.
 * Other "loom-*" names are users' (the saga wire protocol's headers,
 * loom/saga.h, start with "loom-"). */
static int
cd_reserved_key(const char *key)
{
    return strncasecmp(key, "Nats-", 5) == 0 ||
           strcasecmp(key, LOOM_NATS_HEADER_KEY) == 0 ||
           strcasecmp(key, LOOM_NATS_HEADER_ENCODED) == 0;
}

int
loom__nt_header_key_ok(const char *key)
{
    if (key[0] == '\0' || cd_reserved_key(key))
        return 0;
    for (const char *p = key; *p; p++)
        if (*p < 0x21 || *p > 0x7e || *p == ':' || *p == ',')
            return 0;
    return 1;
}

/* ---- header values ------------------------------------------------------- */

/* Whether libnats carries the value unchanged. */
static int
cd_safe(const char *v, size_t len)
{
    if (len == 0 || v[0] == ' ' || v[len - 1] == ' ')
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char) v[i];
        if (ch < 0x20 || ch == 0x7f)
            return 0;
    }
    return 1;
}

static int
cd_plain(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f && ch != '%';
}

static size_t
cd_escaped_len(const char *v, size_t len)
{
    size_t n = 1;

    for (size_t i = 0; i < len; i++)
        n += cd_plain((unsigned char) v[i]) ? 1 : 3;
    return n;
}

/* Writes the escaped form and a NUL; out holds cd_escaped_len() + 1. */
static void
cd_escape(char *out, const char *v, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";

    *out++ = '=';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char) v[i];
        if (cd_plain(ch)) {
            *out++ = (char) ch;
        } else {
            *out++ = '%';
            *out++ = hex[ch >> 4];
            *out++ = hex[ch & 15];
        }
    }
    *out = '\0';
}

static int
cd_hex(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* Undoes cd_escape() into out (room for strlen(in) bytes); returns the
 * length. A value that is not in escaped form is copied as it is. */
static size_t
cd_unescape(char *out, const char *in)
{
    size_t n = 0;

    if (in[0] != '=') {
        n = strlen(in);
        memcpy(out, in, n);
        return n;
    }
    for (const char *p = in + 1; *p; p++) {
        int hi, lo;
        if (*p == '%' && (hi = cd_hex(p[1])) >= 0 && (lo = cd_hex(p[2])) >= 0) {
            out[n++] = (char) (hi << 4 | lo);
            p += 2;
        } else {
            out[n++] = *p;
        }
    }
    return n;
}

/* ---- building a natsMsg -------------------------------------------------- */

/* The i-th header of m's headers followed by extra. */
static const loom_header *
cd_hdr(const loom_message *m, const loom_header *extra, size_t i)
{
    return i < m->n_headers ? &m->headers[i] : &extra[i - m->n_headers];
}

/* Whether header i's name has a value that needs escaping (then all its
 * values are escaped). */
static int
cd_name_escaped(const loom_message *m, const loom_header *extra, size_t total,
                size_t i)
{
    const char *key = cd_hdr(m, extra, i)->key;

    for (size_t j = 0; j < total; j++) {
        const loom_header *h = cd_hdr(m, extra, j);
        if (strcmp(h->key, key) == 0 && !cd_safe(h->value, strlen(h->value)))
            return 1;
    }
    return 0;
}

/* Whether header i is the first of its name. */
static int
cd_first_of_name(const loom_message *m, const loom_header *extra, size_t i)
{
    const char *key = cd_hdr(m, extra, i)->key;

    for (size_t j = 0; j < i; j++)
        if (strcmp(cd_hdr(m, extra, j)->key, key) == 0)
            return 0;
    return 1;
}

size_t
loom__nt_wire_size(const loom_message *m, size_t id_len,
                   const loom_header *extra, size_t n_extra)
{
    size_t total = m->n_headers + n_extra, size, enc = 0;

    size = m->payload_len + CD_HDR_LINE + CD_CRLF;
    size += strlen(LOOM_NATS_HEADER_ID) + CD_SEP + id_len + CD_CRLF;
    if (m->key != NULL) {
        size += strlen(LOOM_NATS_HEADER_KEY) + CD_SEP + CD_CRLF;
        if (cd_safe(m->key, m->key_len)) {
            size += m->key_len;
        } else {
            size += cd_escaped_len(m->key, m->key_len);
            enc += strlen(LOOM_NATS_HEADER_KEY) + 1;
        }
    }
    for (size_t i = 0; i < total; i++) {
        const loom_header *h = cd_hdr(m, extra, i);
        size_t vlen = strlen(h->value);
        int esc = cd_name_escaped(m, extra, total, i);

        size += strlen(h->key) + CD_SEP + CD_CRLF;
        size += esc ? cd_escaped_len(h->value, vlen) : vlen;
        if (esc && cd_first_of_name(m, extra, i))
            enc += strlen(h->key) + 1;
    }
    if (enc > 0)
        size += strlen(LOOM_NATS_HEADER_ENCODED) + CD_SEP + enc - 1 + CD_CRLF;
    return size;
}

/* Adds header key: value, escaped when esc. */
static natsStatus
cd_add(natsMsg *nm, const char *key, const char *v, size_t len, int esc,
       int set)
{
    char small[256], *buf = small;
    size_t need = esc ? cd_escaped_len(v, len) + 1 : len + 1;
    natsStatus s;

    if (need > sizeof small && (buf = loom_malloc(need)) == NULL)
        return NATS_NO_MEMORY;
    if (esc) {
        cd_escape(buf, v, len);
    } else {
        memcpy(buf, v, len);
        buf[len] = '\0';
    }
    s = set ? natsMsgHeader_Set(nm, key, buf) : natsMsgHeader_Add(nm, key, buf);
    if (buf != small)
        loom_free(buf);
    return s;
}

loom_err
loom__nt_msg_build(natsMsg **out, const char *subject, const char *id_text,
                   const loom_message *m, const loom_header *extra,
                   size_t n_extra)
{
    size_t total = m->n_headers + n_extra;
    loom__buf enc = {0};
    natsMsg *nm = NULL;
    natsStatus s;

    *out = NULL;
    s = natsMsg_Create(&nm, subject, NULL, (const char *) m->payload,
                       (int) m->payload_len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(nm, LOOM_NATS_HEADER_ID, id_text);
    if (s == NATS_OK && m->key != NULL) {
        int esc = !cd_safe(m->key, m->key_len);
        s = cd_add(nm, LOOM_NATS_HEADER_KEY, m->key, m->key_len, esc, 1);
        if (esc)
            loom__buf_puts(&enc, LOOM_NATS_HEADER_KEY);
    }
    for (size_t i = 0; s == NATS_OK && i < total; i++) {
        const loom_header *h = cd_hdr(m, extra, i);
        int esc = cd_name_escaped(m, extra, total, i);

        s = cd_add(nm, h->key, h->value, strlen(h->value), esc, 0);
        if (esc && cd_first_of_name(m, extra, i)) {
            if (enc.len > 0)
                loom__buf_putc(&enc, ',');
            loom__buf_puts(&enc, h->key);
        }
    }
    if (s == NATS_OK && enc.failed)
        s = NATS_NO_MEMORY;
    if (s == NATS_OK && enc.len > 0)
        s = natsMsgHeader_Set(nm, LOOM_NATS_HEADER_ENCODED,
                              loom__buf_str(&enc));
    loom__buf_free(&enc);
    if (s != NATS_OK) {
        natsMsg_Destroy(nm);
        return s == NATS_NO_MEMORY ? LOOM_ENOMEM : LOOM_EIO;
    }
    *out = nm;
    return LOOM_OK;
}

/* ---- decoding a delivered natsMsg ---------------------------------------- */

static int
cd_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Whether `name` is in the comma-separated `list`. */
static int
cd_listed(const char *list, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = list; p != NULL && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t) (comma - p) : strlen(p);
        if (len == n && memcmp(p, name, n) == 0)
            return 1;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

/* A user header (not the transport's own). */
static int
cd_user_key(const char *key)
{
    return !cd_reserved_key(key);
}

/* The headers of nm as libnats gives them: keys sorted, and for each
 * user key its values; the arrays of strings are libnats' (free()). */
typedef struct cd_raw {
    const char **keys;
    int n_keys;
    const char ***vals; /* per key; NULL for the transport's own */
    int *n_vals;
    const char *encoded;
    size_t n_headers; /* user values */
    size_t bytes;     /* user keys and values, NULs included */
} cd_raw;

static void
cd_raw_free(cd_raw *r)
{
    for (int i = 0; r->vals != NULL && i < r->n_keys; i++)
        free((void *) r->vals[i]);
    loom_free(r->vals);
    loom_free(r->n_vals);
    free((void *) r->keys);
}

static loom_err
cd_raw_read(cd_raw *r, natsMsg *nm)
{
    memset(r, 0, sizeof *r);
    if (natsMsgHeader_Keys(nm, &r->keys, &r->n_keys) != NATS_OK) {
        r->keys = NULL; /* none, or unreadable: none for the handler */
        r->n_keys = 0;
        return LOOM_OK;
    }
    r->vals = loom_malloc((size_t) r->n_keys * sizeof *r->vals);
    r->n_vals = loom_malloc((size_t) r->n_keys * sizeof *r->n_vals);
    if (r->vals == NULL || r->n_vals == NULL) {
        loom_free(r->vals);
        r->vals = NULL;
        cd_raw_free(r);
        return LOOM_ENOMEM;
    }
    qsort(r->keys, (size_t) r->n_keys, sizeof *r->keys, cd_cmp_str);
    if (natsMsgHeader_Get(nm, LOOM_NATS_HEADER_ENCODED, &r->encoded) != NATS_OK)
        r->encoded = NULL;
    for (int i = 0; i < r->n_keys; i++) {
        r->vals[i] = NULL;
        r->n_vals[i] = 0;
        if (!cd_user_key(r->keys[i]) ||
            natsMsgHeader_Values(nm, r->keys[i], &r->vals[i], &r->n_vals[i]) !=
                NATS_OK) {
            r->vals[i] = NULL;
            r->n_vals[i] = 0;
            continue;
        }
        for (int j = 0; j < r->n_vals[i]; j++)
            r->bytes += strlen(r->keys[i]) + strlen(r->vals[i][j]) + 2;
        r->n_headers += (size_t) r->n_vals[i];
    }
    return LOOM_OK;
}

loom_err
loom__nt_entry_decode(nt_entry *e, const char *prefix)
{
    const char *subject = natsMsg_GetSubject(e->nm), *key = NULL, *id = NULL;
    size_t plen = strlen(prefix), tlen, klen = 0, at;
    loom_header *hdrs;
    char *mem;
    cd_raw raw;

    if (strncmp(subject, prefix, plen) == 0 && subject[plen] == '.')
        subject += plen + 1;
    tlen = strlen(subject);
    if (natsMsgHeader_Get(e->nm, LOOM_NATS_HEADER_KEY, &key) != NATS_OK)
        key = NULL;
    if (key != NULL)
        klen = strlen(key);
    if (cd_raw_read(&raw, e->nm) != LOOM_OK)
        return LOOM_ENOMEM;
    /* One block: the header array, then the topic, key and strings. */
    at = raw.n_headers * sizeof(loom_header);
    mem = loom_malloc(at + tlen + 1 + klen + 1 + raw.bytes);
    if (mem == NULL) {
        cd_raw_free(&raw);
        return LOOM_ENOMEM;
    }
    hdrs = (loom_header *) (void *) mem;
    memcpy(mem + at, subject, tlen + 1);
    e->msg.topic = mem + at;
    at += tlen + 1;
    if (key != NULL) {
        int esc = cd_listed(raw.encoded, LOOM_NATS_HEADER_KEY);
        e->msg.key = mem + at;
        e->msg.key_len = esc ? cd_unescape(mem + at, key) : klen;
        if (!esc)
            memcpy(mem + at, key, klen);
        at += klen + 1;
    }
    e->msg.n_headers = 0;
    for (int i = 0; i < raw.n_keys; i++) {
        int esc = cd_listed(raw.encoded, raw.keys[i]);
        for (int j = 0; j < raw.n_vals[i]; j++) {
            loom_header *h = &hdrs[e->msg.n_headers++];
            size_t n = strlen(raw.keys[i]) + 1;
            memcpy(mem + at, raw.keys[i], n);
            h->key = mem + at;
            at += n;
            n = esc ? cd_unescape(mem + at, raw.vals[i][j])
                    : strlen(raw.vals[i][j]);
            if (!esc)
                memcpy(mem + at, raw.vals[i][j], n);
            mem[at + n] = '\0';
            h->value = mem + at;
            at += n + 1;
        }
    }
    e->msg.headers = e->msg.n_headers > 0 ? hdrs : NULL;
    e->mem = mem;
    e->msg.payload = natsMsg_GetData(e->nm);
    e->msg.payload_len = (size_t) natsMsg_GetDataLength(e->nm);
    if (natsMsgHeader_Get(e->nm, LOOM_NATS_HEADER_ID, &id) == NATS_OK &&
        strlen(id) >= LOOM_UUID_STRLEN - 1) {
        char text[LOOM_UUID_STRLEN];
        memcpy(text, id, LOOM_UUID_STRLEN - 1);
        text[LOOM_UUID_STRLEN - 1] = '\0';
        (void) loom_uuid_parse(&e->msg.id, text); /* nil when not a UUID */
    }
    cd_raw_free(&raw);
    return LOOM_OK;
}
