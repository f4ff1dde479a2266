/* The internal side of loom/log.h: how the library writes a log line. */
#ifndef LOOM_LOG_INT_H
#define LOOM_LOG_INT_H

#include "loom/log.h"

/* Formats one line (truncated at 1 KiB) and hands it to the installed
 * logger. Cheap when the default logger would drop the level. */
void loom__log(loom_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* LOOM_LOG_INT_H */
