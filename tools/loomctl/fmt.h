/*
 * Numbers and durations as people read them: ages ("3m05s"), counts with
 * thousands separators ("1,000,000") and clock times ("1:02:03"). Shared
 * by stats, parked, projection and the rebuild's progress bar.
 */
#ifndef LOOMCTL_FMT_H
#define LOOMCTL_FMT_H

#include <stdint.h>

/* `secs` seconds as "42s", "3m05s", "2h07m" or "3d04h" (negative: 0). */
void ctl_fmt_age(int64_t secs, char out[32]);

/* `n` with a comma every three digits: "1,234,567". */
void ctl_fmt_count(int64_t n, char out[32]);

/* `secs` as "m:ss", or "h:mm:ss" from an hour; "?" when negative
 * (unknown). Rounded up, so a last fraction of a second shows "0:01". */
void ctl_fmt_clock(double secs, char out[32]);

#endif /* LOOMCTL_FMT_H */
