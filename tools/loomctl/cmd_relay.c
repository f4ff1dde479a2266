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
 *
 * --role reaches every connection the relay makes: the runtime's and the
 * relay's connection string, and the topics:// URL (given or default),
 * carry it as options='-c role=ROLE' (ctl_conninfo_with_role()).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/alloc.h"
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

/* Appends every setting of `conninfo` to `url` as a URI parameter. The
 * connection string was checked by the store's open before. */
static int
rl_params(const char *conninfo, loom__buf *url)
{
    PQconninfoOption *opts;
    char *err = NULL;
    int n = strchr(loom__buf_str(url), '?') != NULL;

    if (conninfo == NULL)
        return CTL_OK; /* the transport reads $LOOM_DATABASE_URL too */
    if (!ctl_conninfo_is_string(conninfo)) {
        loom__buf_puts(url, n ? "&dbname=" : "?dbname=");
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

/* "topics://" plus every setting of `conninfo` as a URI parameter. */
static int
rl_default_url(const char *conninfo, loom__buf *url)
{
    loom__buf_puts(url, "topics://");
    return rl_params(conninfo, url);
}

/* The topics transport's own options in its URL (loom__tp_parse_url() in
 * outbox/transports/topics/topics.c): every other parameter is libpq's. */
static int
rl_topics_key(const char *key, size_t len)
{
    static const char *const keys[] = {
        "acks",         "linger_ms",          "batch",
        "retention_ms", "session_timeout_ms", NULL};

    for (const char *const *k = keys; *k != NULL; k++) {
        if (strlen(*k) == len && memcmp(*k, key, len) == 0)
            return 1;
    }
    return 0;
}

/* A URL with no connection settings: the transport connects to
 * $LOOM_DATABASE_URL (or libpq's defaults). Its settings are added with
 * the role, so that the role does not take their place. */
static int
rl_role_env_url(const char *url, const char *role, loom__buf *out)
{
    char *conninfo;
    int rc;

    if (ctl_conninfo_with_role(getenv("LOOM_DATABASE_URL"), role, &conninfo) !=
        CTL_OK)
        return CTL_ERR;
    loom__buf_puts(out, url);
    rc = rl_params(conninfo, out);
    loom_free(conninfo);
    return rc;
}

/*
 * --role on a --transport topics:// URL. The transport connects with
 * what follows "topics://" as a libpq URI, so the role goes into its
 * `options` parameter: appended, percent-encoded, to the URL's own
 * (libpq decodes the value as a whole), else after $PGOPTIONS, which a
 * given `options` replaces.
 */
static int
rl_role_url(const char *url, const char *role, loom__buf *out)
{
    const char *rest = url + strlen("topics://"), *q = strchr(rest, '?');
    const char *opt_end = NULL, *env = getenv("PGOPTIONS");
    int libpq = q != NULL ? q > rest : rest[0] != '\0';
    loom__buf opt = LOOM__BUF_INIT;

    for (const char *item = q; item != NULL; item = strchr(item + 1, '&')) {
        const char *k = item + 1;
        size_t len = strcspn(k, "&"), klen = strcspn(k, "=&");

        if (len == 0)
            continue;
        if (klen == 7 && memcmp(k, "options", 7) == 0)
            opt_end = k + len;
        libpq |= !rl_topics_key(k, klen);
    }
    if (!libpq)
        return rl_role_env_url(url, role, out);
    ctl_role_option(&opt, role);
    if (opt_end != NULL) {
        loom__buf_put(out, url, (size_t) (opt_end - url));
        rl_pct(out, " ");
        rl_pct(out, loom__buf_str(&opt));
        loom__buf_puts(out, opt_end);
    } else {
        loom__buf_puts(out, url);
        loom__buf_puts(out, q != NULL ? "&options=" : "?options=");
        if (env != NULL && env[0] != '\0') {
            rl_pct(out, env);
            rl_pct(out, " ");
        }
        rl_pct(out, loom__buf_str(&opt));
    }
    if (opt.failed)
        out->failed = 1;
    loom__buf_free(&opt);
    return CTL_OK;
}

/* ------------------------------------------------------------------ */
/* Rights                                                              */

/* Leading writes loom.outbox_relays. The library takes a refused bid to
 * lead for a passing failure and tries again, quietly, for ever: the
 * relay would say it stands by. So the role (--role, or the login's) is
 * checked first. */
static int
rl_check_rights(const ctl *c, const char *outbox)
{
    PGconn *pg = ctl_pg_open(c);
    PGresult *r;
    int ok;

    if (pg == NULL)
        return CTL_ERR;
    r = ctl_pg_exec(pg, "checking the relay's rights",
                    "SELECT pg_catalog.has_table_privilege("
                    "'loom.outbox_relays', 'INSERT') AND "
                    "pg_catalog.has_table_privilege('loom.outbox_relays', "
                    "'UPDATE'), current_user",
                    0, NULL);
    if (r == NULL) {
        PQfinish(pg);
        return CTL_ERR;
    }
    ok = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    if (!ok)
        ctl_fail_sql("42501",
                     "relay: role \"%s\" may not publish outbox %s: it may "
                     "not write table loom.outbox_relays",
                     PQgetvalue(r, 0, 1), outbox);
    PQclear(r);
    PQfinish(pg);
    return ok ? CTL_OK : CTL_ERR;
}

/* ------------------------------------------------------------------ */

int
ctl_cmd_relay(ctl *c, int argc, char **argv)
{
    loom__buf url = LOOM__BUF_INIT, shown = LOOM__BUF_INIT;
    char where[512], *conninfo = NULL;
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
    if (rl_check_rights(c, o.outbox) != CTL_OK)
        return CTL_ERR;
    /* The runtime, the relay and the transport connect from strings
     * alone: --role must be in them, or they would have the login's full
     * rights. */
    if (ctl_conninfo_with_role(ctl_conninfo(c), c->role, &conninfo) != CTL_OK)
        return CTL_ERR;
    o.conninfo = conninfo;
    if (o.transport == NULL) {
        rc = rl_default_url(o.conninfo, &url);
        ctl_conninfo_describe(ctl_conninfo(c), where, sizeof where);
        loom__buf_printf(&shown, "topics (database %s)", where);
        o.transport = loom__buf_str(&url);
    } else {
        /* "nats://u:pw@h", "...?password=pw": shown as "***". */
        loom__conninfo_redact(o.transport, &shown);
        if (c->role != NULL && strncmp(o.transport, "topics://", 9) == 0) {
            rc = rl_role_url(o.transport, c->role, &url);
            o.transport = loom__buf_str(&url);
        }
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
    loom_free(conninfo);
    return rc;
}
