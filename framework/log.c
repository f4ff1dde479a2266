/* The log sink: a replaceable function, by default one line on stderr. */
#include "log_int.h"

#include <stdarg.h>
#include <stdio.h>

static loom_log_fn log_fn;
static void *log_arg;

const char *
loom_log_level_name(loom_log_level level)
{
    switch (level) {
    case LOOM_LOG_ERROR:
        return "error";
    case LOOM_LOG_WARN:
        return "warn";
    case LOOM_LOG_INFO:
        return "info";
    case LOOM_LOG_DEBUG:
        return "debug";
    }
    return "unknown";
}

void
loom_log_set(loom_log_fn fn, void *arg)
{
    log_fn = fn;
    log_arg = fn ? arg : NULL;
}

void
loom__log(loom_log_level level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    /* The default sink drops INFO and DEBUG: skip the formatting too. */
    if (log_fn == NULL && level > LOOM_LOG_WARN)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (log_fn != NULL) {
        log_fn(log_arg, level, line);
        return;
    }
    /* One fprintf per line, so lines from several processes sharing
     * stderr do not interleave mid-line. */
    fprintf(stderr, "eventloom: %s: %s\n", loom_log_level_name(level), line);
}
