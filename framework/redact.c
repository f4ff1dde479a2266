/* Hiding passwords in connection strings and messages (see redact.h). */
#include "redact.h"

#include <ctype.h>
#include <string.h>

#include <libpq-fe.h>

/* The settings whose values are secrets. */
static int
redact_secret_key(const char *key, size_t len)
{
    return (len == 8 && memcmp(key, "password", 8) == 0) ||
           (len == 11 && memcmp(key, "sslpassword", 11) == 0);
}

/* Collects each secret, NUL-terminated, into `secrets` (may be NULL). */
static void
redact_keep(loom__buf *secrets, const char *s, size_t n)
{
    if (secrets != NULL && n > 0) {
        loom__buf_put(secrets, s, n);
        loom__buf_putc(secrets, '\0');
    }
}

static int
redact_hex(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes s[0..n) into `to` (reset first). */
static void
redact_pct_decode(const char *s, size_t n, loom__buf *to)
{
    loom__buf_reset(to);
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n &&
            (hi = redact_hex((unsigned char) s[i + 1])) >= 0 &&
            (lo = redact_hex((unsigned char) s[i + 2])) >= 0) {
            loom__buf_putc(to, (char) (hi * 16 + lo));
            i += 2;
        } else {
            loom__buf_putc(to, s[i]);
        }
    }
}

/* The length of "scheme://" at the start of s, or 0 when s is no URI. */
static size_t
redact_uri_prefix(const char *s)
{
    size_t i = 0;

    if (!isalpha((unsigned char) s[0]))
        return 0;
    while (isalnum((unsigned char) s[i]) || s[i] == '+' || s[i] == '-' ||
           s[i] == '.')
        i++;
    return strncmp(s + i, "://", 3) == 0 ? i + 3 : 0;
}

/* A URI: the password of the user part, and secret parameters. */
static void
redact_uri(const char *s, size_t start, loom__buf *out, loom__buf *secrets)
{
    loom__buf dec = LOOM__BUF_INIT;
    size_t auth = start + strcspn(s + start, "/");
    const char *p = s + start, *at = NULL;

    for (const char *q = p; q < s + auth; q++)
        if (*q == '@')
            at = q; /* the last one: an unencoded '@' in a password */
    loom__buf_put(out, s, start);
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t) (at - p));
        if (colon != NULL) {
            loom__buf_put(out, p, (size_t) (colon + 1 - p));
            loom__buf_puts(out, LOOM__REDACTED);
            redact_keep(secrets, colon + 1, (size_t) (at - colon - 1));
            redact_pct_decode(colon + 1, (size_t) (at - colon - 1), &dec);
            redact_keep(secrets, dec.data, dec.len);
            p = at;
        }
    }
    while (*p != '\0') {
        size_t n = strcspn(p, "?&");
        loom__buf_put(out, p, n);
        p += n;
        if (*p == '\0')
            break;
        loom__buf_putc(out, *p++);
        n = strcspn(p, "=&#");
        redact_pct_decode(p, n, &dec);
        if (p[n] == '=' &&
            redact_secret_key(dec.data ? dec.data : "", dec.len)) {
            size_t v = strcspn(p + n + 1, "&#");
            loom__buf_put(out, p, n + 1);
            loom__buf_puts(out, LOOM__REDACTED);
            redact_keep(secrets, p + n + 1, v);
            redact_pct_decode(p + n + 1, v, &dec);
            redact_keep(secrets, dec.data, dec.len);
            p += n + 1 + v;
        }
    }
    loom__buf_free(&dec);
}

/* One key=value value, quoted or not, as libpq reads it: the raw text
 * ends at *end, the unescaped value goes to `val`. 0 when unterminated. */
static int
redact_kv_value(const char *p, const char **end, loom__buf *val)
{
    int quoted = *p == '\'';

    loom__buf_reset(val);
    if (quoted)
        p++;
    while (*p != '\0' && (quoted ? *p != '\'' : !isspace((unsigned char) *p))) {
        if (*p == '\\' && p[1] != '\0')
            p++;
        loom__buf_putc(val, *p++);
    }
    if (quoted && *p != '\'')
        return 0;
    *end = quoted ? p + 1 : p;
    return 1;
}

/* key=value settings. */
static void
redact_kv(const char *p, loom__buf *out, loom__buf *secrets)
{
    loom__buf val = LOOM__BUF_INIT;

    for (;;) {
        const char *key, *q, *end = NULL;
        size_t klen;

        while (isspace((unsigned char) *p))
            loom__buf_putc(out, *p++);
        if (*p == '\0')
            break;
        key = p;
        while (*p != '\0' && *p != '=' && !isspace((unsigned char) *p))
            p++;
        klen = (size_t) (p - key);
        q = p;
        while (isspace((unsigned char) *q))
            q++;
        if (*q != '=') {
            /* Not a setting: it might be a piece of a password. */
            loom__buf_puts(out, LOOM__REDACTED);
            break;
        }
        q++;
        while (isspace((unsigned char) *q))
            q++;
        if (!redact_kv_value(q, &end, &val)) {
            loom__buf_put(out, key, (size_t) (q - key));
            loom__buf_puts(out, LOOM__REDACTED);
            redact_keep(secrets, q + 1, strlen(q + 1));
            break;
        }
        loom__buf_put(out, key, (size_t) (q - key));
        if (redact_secret_key(key, klen)) {
            loom__buf_puts(out, LOOM__REDACTED);
            redact_keep(secrets, q, (size_t) (end - q));
            redact_keep(secrets, val.data, val.len);
        } else {
            loom__buf_put(out, q, (size_t) (end - q));
        }
        p = end;
    }
    loom__buf_free(&val);
}

static void
redact_scan(const char *conninfo, loom__buf *out, loom__buf *secrets)
{
    size_t start;

    if (conninfo == NULL)
        return;
    start = redact_uri_prefix(conninfo);
    if (start > 0)
        redact_uri(conninfo, start, out, secrets);
    else
        redact_kv(conninfo, out, secrets);
}

void
loom__conninfo_redact(const char *conninfo, loom__buf *out)
{
    redact_scan(conninfo, out, NULL);
}

/* Appends msg with every double-quoted token shown as "***". */
static void
redact_quoted(const char *msg, loom__buf *out)
{
    int quoted = 0;

    for (; *msg != '\0'; msg++) {
        if (*msg == '"') {
            loom__buf_puts(out, quoted ? "\"" : "\"" LOOM__REDACTED);
            quoted = !quoted;
        } else if (!quoted) {
            loom__buf_putc(out, *msg);
        }
    }
}

/* Is `conninfo` something libpq parses? */
static int
redact_parses(const char *conninfo)
{
    char *err = NULL;
    PQconninfoOption *o = PQconninfoParse(conninfo, &err);

    PQfreemem(err);
    if (o == NULL)
        return 0;
    PQconninfoFree(o);
    return 1;
}

void
loom__redact_message(const char *msg, const char *conninfo, loom__buf *out)
{
    loom__buf scratch = LOOM__BUF_INIT, secrets = LOOM__BUF_INIT;
    loom__buf quoted = LOOM__BUF_INIT;
    const char *p;

    if (msg == NULL)
        return;
    /* Libpq reads a bare word as a database name, never a secret. */
    if (conninfo != NULL &&
        (strchr(conninfo, '=') != NULL || redact_uri_prefix(conninfo) > 0)) {
        redact_scan(conninfo, &scratch, &secrets);
        if (!redact_parses(conninfo)) {
            redact_quoted(msg, &quoted);
            msg = loom__buf_str(&quoted);
        }
    }
    for (p = msg; *p != '\0';) {
        size_t best = 0;
        /* The longest secret starting here (a decoded form may be a
         * prefix of the raw one). */
        for (size_t off = 0; off < secrets.len;) {
            const char *sec = secrets.data + off;
            size_t n = strlen(sec);
            if (n > best && strncmp(p, sec, n) == 0)
                best = n;
            off += n + 1;
        }
        if (best > 0) {
            loom__buf_puts(out, LOOM__REDACTED);
            p += best;
        } else {
            loom__buf_putc(out, *p++);
        }
    }
    loom__buf_free(&scratch);
    loom__buf_free(&secrets);
    loom__buf_free(&quoted);
}
