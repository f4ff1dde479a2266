/*
 * loomctl relay, running: a loom_runtime with the transport and the
 * relay on its loop, two timers of our own and the signal handles.
 *
 * The relay's state comes from loom_relay_stats_get(), looked at every
 * RR_CHECK_MS: a line when it becomes the active relay or stands by, and
 * every --report-ms a status line. The first try to lead is one round
 * trip after the start, so a relay that is not leading RR_STANDBY_MS
 * after starting is said to stand by (and a later takeover is reported
 * as it happens).
 *
 * SIGINT and SIGTERM stop it cleanly: loom_runtime_stop() lets the relay
 * finish the batch in hand (publish and record it) and step down, so the
 * next relay republishes nothing. Our signal handles close on the first
 * signal, which restores the default action: a second one ends the
 * process at once, for a stop stuck on an unreachable transport.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "fmt.h"
#include "json.h"
#include "loom/log.h"
#include "outbox.h"

#define RR_CHECK_MS   100 /* how often the relay's state is looked at */
#define RR_STANDBY_MS 500 /* not leading this long after start: standby */

enum { RR_UNKNOWN, RR_ACTIVE, RR_STANDBY };

typedef struct rr_state {
    const ctl *c;
    const ctl_relay_opts *o;
    char name[320]; /* the relay's name, as status shows it */
    loom_runtime *rt;
    loom_transport *tp;
    loom_relay *relay;
    uv_timer_t check, report;
    uv_signal_t sigint, sigterm;
    int handles; /* our handles not yet closed (callbacks pending) */
    int closing; /* our handles are being closed */
    int shown;   /* RR_*: the state the last line reported */
    uint64_t takeovers;
    uint64_t start_ms;
    uint64_t last_report_ms, last_published;
    int signum; /* the signal that stopped it, 0: none yet */
} rr_state;

/* ------------------------------------------------------------------ */
/* Output                                                              */

/* Now as 2024-05-01T08:17:25.341Z, as loomctl prints every time. */
static void
rr_now(char out[32])
{
    struct timespec ts;
    struct tm tm;
    char secs[24];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(secs, sizeof secs, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03dZ", secs, (int) (ts.tv_nsec / 1000000));
}

/* A line on stdout, after the time; flushed at once, for a reader at the
 * other end of a pipe. */
static void rr_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
rr_say(const char *fmt, ...)
{
    char when[32];
    va_list ap;

    rr_now(when);
    printf("%s ", when);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* Starts a JSON event: {"time":...,"event":...,"outbox":...,"relay":... */
static void
rr_json_begin(loom__buf *b, const rr_state *s, const char *event)
{
    char when[32];

    rr_now(when);
    loom__buf_putc(b, '{');
    ctl_json_kstr(b, "time", when);
    ctl_json_kstr(b, "event", event);
    ctl_json_kstr(b, "outbox", s->o->outbox);
    ctl_json_kstr(b, "relay", s->name);
}

static void
rr_json_end(loom__buf *b)
{
    loom__buf_putc(b, '}');
    ctl_outbox_json_out(b, "the relay's state");
    loom__buf_free(b);
    fflush(stdout);
}

static void
rr_json_stats(loom__buf *b, const loom_relay_stats *st)
{
    ctl_json_kraw(b, "leading", st->leading ? "true" : "false");
    ctl_json_ku64(b, "published", st->published);
    ctl_json_ku64(b, "batches", st->batches);
    ctl_json_ku64(b, "failures", st->failures);
    ctl_json_ku64(b, "dead_letters", st->dead_letters);
    ctl_json_ku64(b, "takeovers", st->takeovers);
}

/* The library's warnings (a failing transport, a lost connection) on
 * stderr, with the time, among our lines. */
static void
rr_log(void *arg, loom_log_level level, const char *message)
{
    char when[32];

    (void) arg;
    if (level > LOOM_LOG_WARN)
        return;
    rr_now(when);
    fflush(stdout);
    fprintf(stderr, "%s %s: %s\n", when, loom_log_level_name(level), message);
}

/* ------------------------------------------------------------------ */
/* Events                                                              */

static void
rr_started(const rr_state *s)
{
    loom__buf b = LOOM__BUF_INIT;
    char every[32];

    if (s->c->json) {
        rr_json_begin(&b, s, "started");
        ctl_json_kstr(&b, "transport", s->o->shown);
        ctl_json_ku64(&b, "batch", s->o->batch);
        ctl_json_ku64(&b, "report_ms", s->o->report_ms);
        ctl_json_ki64(&b, "pid", (int64_t) getpid());
        rr_json_end(&b);
        return;
    }
    ctl_fmt_secs((double) s->o->report_ms / 1000.0, every);
    rr_say("relay \"%s\" for outbox %s: publishing through %s, batches of up "
           "to %zu%s%s; stop it with Ctrl-C or SIGTERM",
           s->name, s->o->outbox, s->o->shown, s->o->batch,
           s->o->report_ms > 0 ? ", status every " : ", no status lines",
           s->o->report_ms > 0 ? every : "");
}

static void
rr_active(rr_state *s)
{
    loom__buf b = LOOM__BUF_INIT;

    s->shown = RR_ACTIVE;
    if (s->c->json) {
        rr_json_begin(&b, s, "active");
        rr_json_end(&b);
        return;
    }
    rr_say("active: this relay publishes outbox %s now", s->o->outbox);
}

static void
rr_standby(rr_state *s)
{
    loom__buf b = LOOM__BUF_INIT;
    int lost = s->shown == RR_ACTIVE;

    s->shown = RR_STANDBY;
    if (s->c->json) {
        rr_json_begin(&b, s, "standby");
        ctl_json_kraw(&b, "lost", lost ? "true" : "false");
        rr_json_end(&b);
        return;
    }
    if (lost)
        rr_say("standing by: no longer the active relay of outbox %s (the "
               "warning above says why); trying to lead again every second",
               s->o->outbox);
    else
        rr_say("standing by: another relay is active for outbox %s "
               "(`loomctl outbox status %s` shows it); this one takes over "
               "within a second or so of its stopping",
               s->o->outbox, s->o->outbox);
}

static void
rr_report(rr_state *s)
{
    uint64_t now = uv_now(loom_runtime_loop(s->rt));
    uint64_t ms = now - s->last_report_ms;
    loom__buf b = LOOM__BUF_INIT;
    loom_relay_stats st;
    char count[32], over[32];
    double rate;

    loom_relay_stats_get(s->relay, &st);
    rate = ms > 0 ? (double) (st.published - s->last_published) * 1000.0 /
                        (double) ms
                  : 0;
    s->last_report_ms = now;
    s->last_published = st.published;
    if (s->c->json) {
        rr_json_begin(&b, s, "report");
        rr_json_stats(&b, &st);
        loom__buf_printf(&b, ",\"rate\":%.1f", rate);
        rr_json_end(&b);
        return;
    }
    ctl_fmt_count((int64_t) st.published, count);
    ctl_fmt_secs((double) ms / 1000.0, over);
    rr_say("%s: published %s (%.1f msg/s over the last %s), %" PRIu64
           " failed publish%s, %" PRIu64 " dead letter%s",
           st.leading ? "active" : "standing by", count, rate, over,
           st.failures, st.failures == 1 ? "" : "es", st.dead_letters,
           st.dead_letters == 1 ? "" : "s");
}

static void
rr_stopping(const rr_state *s)
{
    const char *sig = s->signum == SIGINT ? "SIGINT" : "SIGTERM";
    loom__buf b = LOOM__BUF_INIT;

    if (s->c->json) {
        rr_json_begin(&b, s, "stopping");
        ctl_json_kstr(&b, "signal", sig);
        rr_json_end(&b);
        return;
    }
    rr_say("stopping on %s: finishing the batch in hand, then stepping down "
           "(a second signal ends it at once)",
           sig);
}

static void
rr_stopped(const rr_state *s)
{
    loom__buf b = LOOM__BUF_INIT;
    loom_relay_stats st;
    char count[32];

    loom_relay_stats_get(s->relay, &st);
    if (s->c->json) {
        rr_json_begin(&b, s, "stopped");
        rr_json_stats(&b, &st);
        rr_json_end(&b);
        return;
    }
    ctl_fmt_count((int64_t) st.published, count);
    rr_say("stopped: published %s message%s, %" PRIu64 " failed publish%s, "
           "%" PRIu64 " dead letter%s",
           count, st.published == 1 ? "" : "s", st.failures,
           st.failures == 1 ? "" : "es", st.dead_letters,
           st.dead_letters == 1 ? "" : "s");
}

/* ------------------------------------------------------------------ */
/* Handles                                                             */

static void
rr_on_check(uv_timer_t *t)
{
    rr_state *s = t->data;
    loom_relay_stats st;

    loom_relay_stats_get(s->relay, &st);
    if (st.leading && (s->shown != RR_ACTIVE || st.takeovers != s->takeovers))
        rr_active(s);
    else if (!st.leading && s->shown == RR_ACTIVE)
        rr_standby(s);
    else if (!st.leading && s->shown == RR_UNKNOWN &&
             uv_now(t->loop) - s->start_ms >= RR_STANDBY_MS)
        rr_standby(s);
    s->takeovers = st.takeovers;
}

static void
rr_on_report(uv_timer_t *t)
{
    rr_report(t->data);
}

static void
rr_handle_closed(uv_handle_t *h)
{
    ((rr_state *) h->data)->handles--;
}

static void
rr_close(uv_handle_t *h)
{
    if (h->data != NULL && !uv_is_closing(h))
        uv_close(h, rr_handle_closed);
}

/* Closes our timers and signal handles (the signals' default actions
 * come back with them). */
static void
rr_close_handles(rr_state *s)
{
    if (s->closing)
        return;
    s->closing = 1;
    rr_close((uv_handle_t *) &s->check);
    rr_close((uv_handle_t *) &s->report);
    rr_close((uv_handle_t *) &s->sigint);
    rr_close((uv_handle_t *) &s->sigterm);
}

static void
rr_on_signal(uv_signal_t *h, int signum)
{
    rr_state *s = h->data;

    s->signum = signum;
    rr_stopping(s);
    rr_close_handles(s);
    loom_runtime_stop(s->rt);
}

/* Initialises handle `h` (data = s) with `init`'s result; counts it. */
static int
rr_handle(rr_state *s, uv_handle_t *h, int init_rc)
{
    if (init_rc != 0)
        return -1;
    h->data = s;
    s->handles++;
    return 0;
}

static int
rr_handles(rr_state *s)
{
    uv_loop_t *loop = loom_runtime_loop(s->rt);

    /* Connecting took a while since the loop last looked at the clock:
     * timers count from now. */
    uv_update_time(loop);
    s->start_ms = s->last_report_ms = uv_now(loop);
    if (rr_handle(s, (uv_handle_t *) &s->check,
                  uv_timer_init(loop, &s->check)) != 0 ||
        rr_handle(s, (uv_handle_t *) &s->report,
                  uv_timer_init(loop, &s->report)) != 0 ||
        rr_handle(s, (uv_handle_t *) &s->sigint,
                  uv_signal_init(loop, &s->sigint)) != 0 ||
        rr_handle(s, (uv_handle_t *) &s->sigterm,
                  uv_signal_init(loop, &s->sigterm)) != 0 ||
        uv_signal_start(&s->sigint, rr_on_signal, SIGINT) != 0 ||
        uv_signal_start(&s->sigterm, rr_on_signal, SIGTERM) != 0 ||
        uv_timer_start(&s->check, rr_on_check, RR_CHECK_MS, RR_CHECK_MS) != 0 ||
        (s->o->report_ms > 0 &&
         uv_timer_start(&s->report, rr_on_report, s->o->report_ms,
                        s->o->report_ms) != 0)) {
        ctl_fail("relay: cannot set up timers and signal handlers");
        return CTL_ERR;
    }
    return CTL_OK;
}

/* ------------------------------------------------------------------ */
/* Open and close                                                      */

static int
rr_open_transport(rr_state *s)
{
    char err[1024] = "";
    loom_err rc;

    rc = loom_transport_open(s->rt, s->o->transport, &s->tp, err, sizeof err);
    if (rc == LOOM_OK)
        return CTL_OK;
    if (err[0] == '\0')
        snprintf(err, sizeof err, "%s", loom_strerror(rc));
    /* No such scheme, or options the transport does not take. */
    if (rc == LOOM_ENOTFOUND || rc == LOOM_EINVAL)
        return ctl_usage_error(s->c, "--transport %s: %s", s->o->shown, err);
    ctl_fail("relay: opening the transport %s: %s (check %s)", s->o->shown, err,
             s->o->transport_given
                 ? "--transport"
                 : "--db or LOOM_DATABASE_URL, or give --transport");
    return CTL_ERR;
}

static int
rr_open(rr_state *s)
{
    loom_runtime_config rcfg = LOOM_RUNTIME_CONFIG_INIT;
    loom_relay_config cfg = LOOM_RELAY_CONFIG_INIT;
    char err[1024] = "";
    loom_err rc;
    int code;

    rcfg.conninfo = s->o->conninfo;
    rcfg.application_name = "loomctl relay";
    rc = loom_runtime_open(&s->rt, &rcfg);
    if (rc != LOOM_OK) {
        ctl_fail("relay: creating the runtime: %s", loom_strerror(rc));
        return CTL_ERR;
    }
    if ((code = rr_open_transport(s)) != CTL_OK)
        return code;
    cfg.conninfo = s->o->conninfo;
    cfg.outbox = s->o->outbox;
    cfg.transport = s->tp;
    cfg.name = s->name;
    cfg.batch = s->o->batch;
    rc = loom_relay_start(s->rt, &cfg, &s->relay, err, sizeof err);
    if (rc != LOOM_OK) {
        ctl_fail("relay: starting the relay of outbox %s: %s", s->o->outbox,
                 err[0] != '\0' ? err : loom_strerror(rc));
        return CTL_ERR;
    }
    return rr_handles(s);
}

static void
rr_shutdown(rr_state *s)
{
    uv_loop_t *loop = s->rt != NULL ? loom_runtime_loop(s->rt) : NULL;

    if (loop != NULL)
        rr_close_handles(s);
    loom_relay_close(s->relay);
    loom_transport_close(s->tp);
    for (int i = 0; i < 1000 && s->handles > 0; i++)
        uv_run(loop, UV_RUN_NOWAIT);
    loom_runtime_close(s->rt);
}

int
ctl_relay_run(const ctl *c, const ctl_relay_opts *o)
{
    char host[256];
    rr_state s;
    loom_err err;
    int rc;

    memset(&s, 0, sizeof s);
    s.c = c;
    s.o = o;
    /* The library's default name, made here to print it. */
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    if (o->name != NULL)
        snprintf(s.name, sizeof s.name, "%s", o->name);
    else
        snprintf(s.name, sizeof s.name, "%s pid %ld", host, (long) getpid());
    loom_log_set(rr_log, &s);
    rc = rr_open(&s);
    if (rc == CTL_OK) {
        rr_started(&s);
        err = loom_runtime_run(s.rt);
        if (err != LOOM_OK) {
            ctl_fail("relay: the runtime stopped with an error: %s",
                     loom_strerror(err));
            rc = CTL_ERR;
        }
        rr_stopped(&s);
    }
    rr_shutdown(&s);
    loom_log_set(NULL, NULL);
    return rc;
}
