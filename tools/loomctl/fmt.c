/* Human-readable numbers and durations (see fmt.h). */
#include "fmt.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void
ctl_fmt_age(int64_t s, char out[32])
{
    if (s < 0)
        s = 0; /* clocks of client and server disagree a little */
    if (s >= 86400)
        snprintf(out, 32, "%" PRId64 "d%02" PRId64 "h", s / 86400,
                 s % 86400 / 3600);
    else if (s >= 3600)
        snprintf(out, 32, "%" PRId64 "h%02" PRId64 "m", s / 3600,
                 s % 3600 / 60);
    else if (s >= 60)
        snprintf(out, 32, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
    else
        snprintf(out, 32, "%" PRId64 "s", s);
}

void
ctl_fmt_secs(double secs, char out[32])
{
    int64_t s;

    if (!(secs > 0)) /* negative (clocks disagree a little) or NaN */
        secs = 0;
    if (secs < 9.95) {
        snprintf(out, 32, "%.1f s", secs);
        return;
    }
    s = secs < 1e12 ? (int64_t) secs : INT64_C(1000000000000);
    if (s < 60)
        snprintf(out, 32, "%" PRId64 " s", s);
    else if (s < 3600)
        snprintf(out, 32, "%" PRId64 " min", s / 60);
    else if (s < 86400)
        snprintf(out, 32, "%" PRId64 " h %02" PRId64 " min", s / 3600,
                 s % 3600 / 60);
    else
        snprintf(out, 32, "%" PRId64 " d %02" PRId64 " h", s / 86400,
                 s % 86400 / 3600);
}

void
ctl_fmt_count(int64_t n, char out[32])
{
    char digits[24];
    size_t len, j = 0, lead;
    int neg = n < 0;

    /* Via unsigned, so INT64_MIN has a magnitude too. */
    snprintf(digits, sizeof digits, "%" PRIu64,
             neg ? 0 - (uint64_t) n : (uint64_t) n);
    len = strlen(digits);
    lead = len % 3 ? len % 3 : 3;
    if (neg)
        out[j++] = '-';
    for (size_t i = 0; i < len; i++) {
        if (i >= lead && (i - lead) % 3 == 0)
            out[j++] = ',';
        out[j++] = digits[i];
    }
    out[j] = '\0';
}

void
ctl_fmt_clock(double secs, char out[32])
{
    int64_t s;

    if (!(secs >= 0) || secs > 1e9) { /* negative, NaN, or years */
        snprintf(out, 32, "?");
        return;
    }
    s = (int64_t) secs;
    if ((double) s < secs)
        s++;
    if (s >= 3600)
        snprintf(out, 32, "%" PRId64 ":%02" PRId64 ":%02" PRId64, s / 3600,
                 s % 3600 / 60, s % 60);
    else
        snprintf(out, 32, "%" PRId64 ":%02" PRId64, s / 60, s % 60);
}
