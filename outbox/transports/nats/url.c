/*
 * The "nats://" URL: servers, then options (loom/nats.h lists them).
 * Every mistake is refused with LOOM_EINVAL and a sentence naming the
 * part that is wrong, before anything touches the network.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "alloc_int.h"
#include "loom/alloc.h"
#include "nats_int.h"

#define URL_SCHEME "nats://"

/* The numeric options: name, field, lowest and highest value. */
typedef struct url_num {
    const char *name;
    size_t offset;
    int64_t min, max;
} url_num;

#define URL_DAY_MS (24LL * 3600 * 1000)

static const url_num url_nums[] = {
    {"dedup_window_ms", offsetof(nt_config, dedup_window_ms), 100,
     365 * URL_DAY_MS},
    {"ack_wait_ms", offsetof(nt_config, ack_wait_ms), 100, URL_DAY_MS},
    {"publish_timeout_ms", offsetof(nt_config, publish_timeout_ms), 1,
     URL_DAY_MS},
    {"connect_timeout_ms", offsetof(nt_config, connect_timeout_ms), 1,
     3600 * 1000},
    {"reconnect_wait_ms", offsetof(nt_config, reconnect_wait_ms), 0,
     3600 * 1000},
    {"backoff_ms", offsetof(nt_config, backoff_ms), 0, URL_DAY_MS},
    {"backoff_max_ms", offsetof(nt_config, backoff_max_ms), 0, URL_DAY_MS},
    {"fetch_wait_ms", offsetof(nt_config, fetch_wait_ms), 10, 3600 * 1000},
};

/* err = fmt with the `alen` bytes at `a` for its "%.*s". */
static void
url_err(char *err, size_t errlen, const char *fmt, const char *a, int alen)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, fmt, alen, a);
}

static void
url_say(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

/* A decimal number, optionally negative; 0 when it is not one. */
static int
url_int(const char *v, size_t len, int64_t *out)
{
    int64_t x = 0;
    size_t i = 0;
    int neg = 0;

    if (len > 0 && v[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (len == i || len - i > 15)
        return 0;
    for (; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 0;
        x = x * 10 + (v[i] - '0');
    }
    *out = neg ? -x : x;
    return 1;
}

/* Whether `v` is one or more words of [A-Za-z0-9_-] separated by dots
 * (dots 1) or a single such word (dots 0). */
static int
url_words(const char *v, size_t len, int dots)
{
    size_t word = 0;

    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = v[i];
        if (ch == '.' && dots) {
            if (word == 0)
                return 0;
            word = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || ch == '_' || ch == '-') {
            word++;
        } else {
            return 0;
        }
    }
    return word > 0;
}

/* One server, "[user[:password]@]host[:port]": checks the host is there
 * and the port is a port, then keeps "nats://<server>". */
static loom_err
url_server(nt_config *cfg, const char *s, size_t len, char *err, size_t errlen)
{
    const char *at = NULL, *host, *end = s + len, *port = NULL;
    char **grown;

    for (const char *p = s; p < end; p++) {
        if (*p <= ' ' || *p == '/' || *p == '?' || *p == '#')
            goto bad;
        if (*p == '@')
            at = p;
    }
    host = at ? at + 1 : s;
    if (host < end && *host == '[') { /* [v6 address] */
        const char *close = memchr(host, ']', (size_t) (end - host));
        if (close == NULL || close == host + 1)
            goto bad;
        if (close + 1 < end) {
            if (close[1] != ':')
                goto bad;
            port = close + 2;
        }
    } else {
        const char *colon = memchr(host, ':', (size_t) (end - host));
        if (colon == host)
            goto bad;
        if (colon != NULL)
            port = colon + 1;
    }
    if (host == end)
        goto bad;
    if (port != NULL) {
        int64_t n = 0;
        if (!url_int(port, (size_t) (end - port), &n) || n < 1 || n > 65535)
            goto bad;
    }
    grown = loom_realloc(cfg->servers,
                         (size_t) (cfg->n_servers + 1) * sizeof *cfg->servers);
    if (grown == NULL)
        return LOOM_ENOMEM;
    cfg->servers = grown;
    cfg->servers[cfg->n_servers] = loom_malloc(len + sizeof URL_SCHEME);
    if (cfg->servers[cfg->n_servers] == NULL)
        return LOOM_ENOMEM;
    snprintf(cfg->servers[cfg->n_servers], len + sizeof URL_SCHEME, "%s%.*s",
             URL_SCHEME, (int) len, s);
    cfg->n_servers++;
    return LOOM_OK;
bad:
    url_err(err, errlen,
            "nats URL: bad server \"%.*s\" (want host:port, "
            "[user[:password]@]host[:port], servers separated by commas)",
            s, (int) len);
    return LOOM_EINVAL;
}

static loom_err
url_servers(nt_config *cfg, const char *s, size_t len, char *err, size_t errlen)
{
    static const char dflt[] = "127.0.0.1:4222";
    const char *end = s + len;
    loom_err rc = LOOM_OK;

    if (len == 0)
        return url_server(cfg, dflt, sizeof dflt - 1, err, errlen);
    while (rc == LOOM_OK && s <= end) {
        const char *comma = memchr(s, ',', (size_t) (end - s));
        const char *stop = comma ? comma : end;
        rc = url_server(cfg, s, (size_t) (stop - s), err, errlen);
        s = stop + 1;
    }
    return rc;
}

/* A string option (stream= or prefix=): replaces the default. */
static loom_err
url_string(char **field, const char *v, size_t vlen)
{
    char *copy = loom_malloc(vlen + 1);

    if (copy == NULL)
        return LOOM_ENOMEM;
    memcpy(copy, v, vlen);
    copy[vlen] = '\0';
    loom_free(*field);
    *field = copy;
    return LOOM_OK;
}

/* A number option out of its range, said with the range. */
static loom_err
url_range(const char *item, size_t len, int64_t min, int64_t max, char *err,
          size_t errlen)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen,
                 "nats URL: bad value in \"%.*s\": it takes a whole number "
                 "from %lld to %lld",
                 (int) len, item, (long long) min, (long long) max);
    return LOOM_EINVAL;
}

static loom_err
url_option(nt_config *cfg, const char *item, size_t len, char *err,
           size_t errlen)
{
    const char *eq = memchr(item, '=', len);
    size_t klen = eq ? (size_t) (eq - item) : len;
    const char *v = eq ? eq + 1 : item + len;
    size_t vlen = eq ? len - klen - 1 : 0;
    int64_t x = 0;

#define URL_IS(name) (klen == sizeof name - 1 && memcmp(item, name, klen) == 0)
    if (URL_IS("stream")) {
        if (!url_words(v, vlen, 0) || vlen > 200)
            goto bad;
        return url_string(&cfg->stream, v, vlen);
    }
    if (URL_IS("prefix")) {
        /* _INBOX.> is where NATS clients get their replies: a stream on
         * it would swallow every request's answer. */
        if (!url_words(v, vlen, 1) || vlen > 200 ||
            (vlen >= 6 && memcmp(v, "_INBOX", 6) == 0 &&
             (vlen == 6 || v[6] == '.')))
            goto bad;
        return url_string(&cfg->prefix, v, vlen);
    }
    if (URL_IS("max_reconnect")) {
        if (!url_int(v, vlen, &x) || x < -1 || x > 1000000000)
            return url_range(item, len, -1, 1000000000, err, errlen);
        cfg->max_reconnect = (int) x;
        return LOOM_OK;
    }
    if (URL_IS("max_pending")) {
        if (!url_int(v, vlen, &x) || x < 1 || x > 1000000)
            return url_range(item, len, 1, 1000000, err, errlen);
        cfg->max_pending = (size_t) x;
        return LOOM_OK;
    }
#undef URL_IS
    for (size_t i = 0; i < sizeof url_nums / sizeof url_nums[0]; i++) {
        const url_num *u = &url_nums[i];
        if (strlen(u->name) != klen || memcmp(item, u->name, klen) != 0)
            continue;
        if (!url_int(v, vlen, &x) || x < u->min || x > u->max)
            return url_range(item, len, u->min, u->max, err, errlen);
        *(int64_t *) (void *) ((char *) cfg + u->offset) = x;
        return LOOM_OK;
    }
    url_err(err, errlen,
            "nats URL: unknown option \"%.*s\" (stream, prefix, "
            "dedup_window_ms, ack_wait_ms, publish_timeout_ms, "
            "connect_timeout_ms, reconnect_wait_ms, max_reconnect, "
            "max_pending, backoff_ms, backoff_max_ms, fetch_wait_ms)",
            item, (int) len);
    return LOOM_EINVAL;
bad:
    url_err(err, errlen,
            "nats URL: bad value in \"%.*s\" (stream: a word of letters, "
            "digits, '_' and '-', at most 200 bytes; prefix: such words "
            "separated by dots, at most 200 bytes, not starting with "
            "_INBOX)",
            item, (int) len);
    return LOOM_EINVAL;
}

static void
url_defaults(nt_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->dedup_window_ms = 120000;
    cfg->ack_wait_ms = 30000;
    cfg->publish_timeout_ms = 10000;
    cfg->connect_timeout_ms = 5000;
    cfg->reconnect_wait_ms = 500;
    cfg->backoff_ms = 1000;
    cfg->backoff_max_ms = 60000;
    cfg->fetch_wait_ms = 5000;
    cfg->max_reconnect = -1;
    cfg->max_pending = 4096;
}

loom_err
loom__nt_config_parse(nt_config *cfg, const char *url, char *err, size_t errlen)
{
    const char *rest, *q;
    loom_err rc;

    url_defaults(cfg);
    if (strncmp(url, URL_SCHEME, sizeof URL_SCHEME - 1) != 0) {
        url_say(err, errlen, "nats URL: want nats://host:port[,host:port...]");
        return LOOM_EINVAL;
    }
    rest = url + sizeof URL_SCHEME - 1;
    q = strchr(rest, '?');
    rc = url_servers(cfg, rest, q ? (size_t) (q - rest) : strlen(rest), err,
                     errlen);
    while (rc == LOOM_OK && q != NULL) {
        const char *item = q + 1, *amp = strchr(item, '&');
        size_t len = amp ? (size_t) (amp - item) : strlen(item);
        q = amp;
        if (len > 0)
            rc = url_option(cfg, item, len, err, errlen);
    }
    if (rc == LOOM_OK && cfg->backoff_max_ms < cfg->backoff_ms) {
        url_say(err, errlen, "nats URL: backoff_max_ms is below backoff_ms");
        rc = LOOM_EINVAL;
    }
    if (rc == LOOM_OK && cfg->stream == NULL)
        rc = url_string(&cfg->stream, "LOOM", 4);
    if (rc == LOOM_OK && cfg->prefix == NULL)
        rc = url_string(&cfg->prefix, "loom", 4);
    if (rc != LOOM_OK)
        loom__nt_config_free(cfg);
    return rc;
}

void
loom__nt_config_free(nt_config *cfg)
{
    for (int i = 0; i < cfg->n_servers; i++)
        loom_free(cfg->servers[i]);
    loom_free(cfg->servers);
    loom_free(cfg->stream);
    loom_free(cfg->prefix);
    memset(cfg, 0, sizeof *cfg);
}
