/*
 * loomctl relay: runs an outbox relay (loom/outbox.h) in the foreground
 * until SIGINT or SIGTERM. This file reads the options, builds the
 * default transport URL and checks the database before anything starts;
 * relay_run.c runs it.
 *
 * The default transport is the built-in topics on the database of --db:
 * "topics://" followed by the connection's settings as URI parameters
 * (the topics transport reads what follows "topics://" as a libpq URI),
 * so a key=value connection string works as well as a URL.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "outbox.h"
#include "pgwire.h"
#include "redact.h"

enum {
    RL_OPT_OUTBOX = 1,
    RL_OPT_TRANSPORT,
    RL_OPT_BATCH,
    RL_OPT_NAME,
    RL_OPT_REPORT
};

static const ctl_opt rl_opts[] = {
    {"--outbox", 1, RL_OPT_OUTBOX},    {"--transport", 1, RL_OPT_TRANSPORT},
    {"--batch", 1, RL_OPT_BATCH},      {"--name", 1, RL_OPT_NAME},
    {"--report-ms", 1, RL_OPT_REPORT}, {NULL, 0, 0},
};

/* ------------------------------------------------------------------ */
/* Options                                                             */

static int
rl_check_name(const ctl *c, const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > CTL_RELAY_MAX_NAME || !loom__utf8_valid(s, n))
        return ctl_usage_error(c,
                               "--name: expected 1 to %d bytes of UTF-8, "
                               "got %zu bytes",
                               CTL_RELAY_MAX_NAME, n);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
            return ctl_usage_error(c, "--name: control characters are not "
                                      "allowed");
    }
    return CTL_OK;
}

/* "scheme://" with a scheme of lower-case letters, digits, '+', '-' and
 * '.', as loom_transport_open() wants; the rest is the transport's. */
static int
rl_check_url(const ctl *c, const char *url)
{
    const char *sep = strstr(url, "://");
    int ok = sep != NULL && sep > url && url[0] >= 'a' && url[0] <= 'z';

    for (const char *p = url; ok && p < sep; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
             *p == '+' || *p == '-' || *p == '.';
    if (!ok)
        return ctl_usage_error(c,
                               "--transport: \"%s\" is not a transport URL "
                               "(SCHEME://..., such as topics:// or "
                               "nats://host:4222)",
                               url);
    return CTL_OK;
}

static int
rl_option(const ctl *c, ctl_relay_opts *o, int opt, const char *val)
{
    int64_t v = 0;
    int rc;

    switch (opt) {
    case RL_OPT_OUTBOX:
        o->outbox = val;
        return ctl_outbox_check_name(c, "--outbox", val);
    case RL_OPT_TRANSPORT:
        o->transport = val;
        o->transport_given = 1;
        return rl_check_url(c, val);
    case RL_OPT_BATCH:
        rc = ctl_parse_i64(c, "--batch", val, 1, CTL_RELAY_MAX_BATCH, &v);
        o->batch = (size_t) v;
        return rc;
    case RL_OPT_NAME:
        o->name = val;
        return rl_check_name(c, val);
    default:
        rc = ctl_parse_i64(c, "--report-ms", val, 0, CTL_RELAY_MAX_REPORT, &v);
        o->report_ms = (uint64_t) v;
        return rc;
    }
}

static int
rl_parse(ctl *c, int argc, char **argv, ctl_relay_opts *o)
{
    const char *val;
    ctl_args a;
    int opt, rc = CTL_OK;

    memset(o, 0, sizeof *o);
    o->outbox = LOOM_OUTBOX_DEFAULT;
    o->batch = CTL_RELAY_BATCH;
    o->report_ms = CTL_RELAY_REPORT_MS;
    ctl_args_init(&a, argc, argv);
    while (rc == CTL_OK &&
           (opt = ctl_args_next(c, &a, rl_opts, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        if (opt == CTL_ARG_POS)
            return ctl_usage_error(c,
                                   "unexpected argument \"%s\" (the outbox "
                                   "goes after --outbox)",
                                   val);
        rc = rl_option(c, o, opt, val);
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* The transport URL                                                   */

/* Appends `s` percent-encoded: everything but RFC 3986's unreserved
 * characters, which libpq's URI parser decodes back. */
static void
rl_pct(loom__buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char) *s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
            ch == '~') {
            loom__buf_putc(b, (char) ch);
        } else {
            loom__buf_putc(b, '%');
            loom__buf_putc(b, hex[ch >> 4]);
            loom__buf_putc(b, hex[ch & 15]);
        }
    }
}

/* "topics://" plus every setting of `conninfo` as a URI parameter. The
 * connection string was checked by the store's open before. */
static int
rl_default_url(const char *conninfo, loom__buf *url)
{
    PQconninfoOption *opts;
    char *err = NULL;
    int n = 0;

    loom__buf_puts(url, "topics://");
    if (conninfo == NULL)
        return CTL_OK; /* the transport reads $LOOM_DATABASE_URL too */
    if (!ctl_conninfo_is_string(conninfo)) {
        loom__buf_puts(url, "?dbname=");
        rl_pct(url, conninfo);
        return CTL_OK;
    }
    opts = PQconninfoParse(conninfo, &err);
    if (opts == NULL) {
        PQfreemem(err);
        ctl_fail("relay: the connection string (--db or LOOM_DATABASE_URL) "
                 "is invalid");
        return CTL_ERR;
    }
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || o->val[0] == '\0')
            continue;
        loom__buf_puts(url, n++ == 0 ? "?" : "&");
        loom__buf_puts(url, o->keyword);
        loom__buf_putc(url, '=');
        rl_pct(url, o->val);
    }
    PQconninfoFree(opts);
    return CTL_OK;
}

/* ------------------------------------------------------------------ */

int
ctl_cmd_relay(ctl *c, int argc, char **argv)
{
    loom__buf url = LOOM__BUF_INIT, shown = LOOM__BUF_INIT;
    char where[512];
    ctl_relay_opts o;
    loom_store *s;
    int rc = rl_parse(c, argc, argv, &o);

    if (rc != CTL_OK)
        return rc;
    /* Connect and check the schema first, for the store's clear
     * messages: a wrong --db or a missing `loomctl migrate`. */
    s = ctl_store_open(c, LOOM_MIGRATE_CHECK);
    if (s == NULL)
        return CTL_ERR;
    loom_store_close(s);
    o.conninfo = ctl_conninfo(c);
    if (o.transport == NULL) {
        rc = rl_default_url(o.conninfo, &url);
        ctl_conninfo_describe(o.conninfo, where, sizeof where);
        loom__buf_printf(&shown, "topics (database %s)", where);
        o.transport = loom__buf_str(&url);
    } else {
        /* "nats://u:pw@h", "...?password=pw": shown as "***". */
        loom__conninfo_redact(o.transport, &shown);
    }
    if (rc == CTL_OK && (url.failed || shown.failed)) {
        ctl_fail("relay: out of memory");
        rc = CTL_ERR;
    }
    if (rc == CTL_OK) {
        o.shown = loom__buf_str(&shown);
        rc = ctl_relay_run(c, &o);
    }
    loom__buf_free(&url);
    loom__buf_free(&shown);
    return rc;
}
