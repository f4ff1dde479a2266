/*
 * The rebuild's progress on stderr. On a terminal, one line redrawn in
 * place (\r, then erase to the end of the line):
 *   [#########...........]  45%  45,000/100,000 events  12,000 ev/s  ETA 0:05
 * Into a file or a pipe (a log, CI), a plain line every
 * CTL_PROGRESS_LINE_S seconds and at the end, without control characters:
 *   rebuild orders: 45000/100000 events (45%), 12000 ev/s, ETA 5 s
 */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "fmt.h"
#include "proj.h"

#define PROG_BAR_WIDTH 20

double
ctl_progress_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

void
ctl_progress_init(ctl_progress *p, const char *name)
{
    p->name = name;
    p->tty = isatty(STDERR_FILENO);
    p->drawn = 0;
    p->reported = 0;
    p->last_line = 0;
    p->done = 0;
    p->rate = 0;
}

/* 0 to 100. The total was counted when the rebuild started and writers
 * append meanwhile, so done can pass it. */
static int
prog_percent(const loom_rebuild_progress *rp)
{
    if (rp->total <= 0)
        return rp->finished ? 100 : 0;
    if (rp->done >= rp->total)
        return 100;
    return rp->done <= 0 ? 0 : (int) (rp->done * 100 / rp->total);
}

void
ctl_progress_bar(const loom_rebuild_progress *rp, char *out, size_t len)
{
    int pct = prog_percent(rp), fill = pct * PROG_BAR_WIDTH / 100;
    char bar[PROG_BAR_WIDTH + 1], done[32], total[32], rate[32], eta[32];

    for (int i = 0; i < PROG_BAR_WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[PROG_BAR_WIDTH] = '\0';
    ctl_fmt_count(rp->done, done);
    ctl_fmt_count(rp->total > rp->done ? rp->total : rp->done, total);
    ctl_fmt_count((int64_t) (rp->rate + 0.5), rate);
    ctl_fmt_clock(rp->finished ? 0 : rp->eta_s, eta);
    snprintf(out, len, "[%s] %3d%%  %s/%s events  %s ev/s  ETA %s", bar, pct,
             done, total, rate, eta);
}

void
ctl_progress_line(const char *name, const loom_rebuild_progress *rp, char *out,
                  size_t len)
{
    char eta[32];
    int64_t total = rp->total > rp->done ? rp->total : rp->done;

    if (rp->finished)
        snprintf(eta, sizeof eta, "0 s");
    else if (rp->eta_s < 0)
        snprintf(eta, sizeof eta, "unknown");
    else
        snprintf(eta, sizeof eta, "%.0f s", rp->eta_s);
    snprintf(out, len,
             "rebuild %s: %" PRId64 "/%" PRId64 " events (%d%%), %.0f ev/s, "
             "ETA %s",
             name, rp->done, total, prog_percent(rp), rp->rate, eta);
}

void
ctl_progress_end(ctl_progress *p)
{
    if (p->drawn)
        fputc('\n', stderr);
    p->drawn = 0;
}

void
ctl_progress_report(const loom_rebuild_progress *rp, void *arg)
{
    ctl_progress *p = arg;
    double now = ctl_progress_now();
    char text[256];

    p->reported = 1;
    p->done = rp->done;
    p->rate = rp->rate;
    if (p->tty) {
        ctl_progress_bar(rp, text, sizeof text);
        fprintf(stderr, "\r%s\x1b[K", text);
        p->drawn = 1;
        if (rp->finished)
            ctl_progress_end(p);
    } else if (rp->finished || p->last_line == 0 ||
               now - p->last_line >= CTL_PROGRESS_LINE_S) {
        ctl_progress_line(p->name, rp, text, sizeof text);
        fprintf(stderr, "%s\n", text);
        p->last_line = now;
    }
    fflush(stderr);
}
