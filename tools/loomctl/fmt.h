/*
 * Numbers and durations as people read them: ages ("3m05s"), durations
 * ("1.2 s", "3 min"), counts with thousands separators ("1,000,000") and
 * clock times ("1:02:03"). Shared by stats, parked, projection, outbox
 * and the rebuild's progress bar.
 */
#ifndef LOOMCTL_FMT_H
#define LOOMCTL_FMT_H

#include <stdint.h>

/* `secs` seconds as "42s", "3m05s", "2h07m" or "3d04h" (negative: 0). */
void ctl_fmt_age(int64_t secs, char out[32]);

/* `secs` seconds as a short duration with its unit spelled out: "0.4 s"
 * and "1.2 s" (a tenth below 10 s), "42 s", "3 min", "2 h 05 min",
 * "3 d 04 h" (negative: 0; whole units are rounded down). */
void ctl_fmt_secs(double secs, char out[32]);

/* `n` with a comma every three digits: "1,234,567". */
void ctl_fmt_count(int64_t n, char out[32]);

/* `secs` as "m:ss", or "h:mm:ss" from an hour; "?" when negative
 * (unknown). Rounded up, so a last fraction of a second shows "0:01". */
void ctl_fmt_clock(double secs, char out[32]);

#endif /* LOOMCTL_FMT_H */
