/*
 * Timing and statistics for loom-bench: a monotonic clock, latency
 * samples with quantiles, medians of runs, and the output lines.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

int64_t
bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
stat_reserve(bench_samples *s, size_t extra)
{
    size_t cap = s->cap ? s->cap : 1024;
    int64_t *v;

    if (s->n + extra <= s->cap)
        return 0;
    while (cap < s->n + extra)
        cap *= 2;
    v = realloc(s->v, cap * sizeof *v);
    if (v == NULL)
        return -1;
    s->v = v;
    s->cap = cap;
    return 0;
}

int
bench_samples_push(bench_samples *s, int64_t ns)
{
    if (stat_reserve(s, 1) != 0)
        return -1;
    s->v[s->n++] = ns;
    return 0;
}

int
bench_samples_merge(bench_samples *into, const bench_samples *from)
{
    if (from->n == 0)
        return 0;
    if (stat_reserve(into, from->n) != 0)
        return -1;
    memcpy(into->v + into->n, from->v, from->n * sizeof *from->v);
    into->n += from->n;
    return 0;
}

static int
stat_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

    return (x > y) - (x < y);
}

static int
stat_cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}

/* Nearest-rank quantile: the smallest sample with at least q of the
 * samples at or below it. */
double
bench_samples_ms(bench_samples *s, double q)
{
    size_t i;

    if (s->n == 0)
        return 0.0;
    qsort(s->v, s->n, sizeof *s->v, stat_cmp_i64);
    i = (size_t) (q * (double) s->n + 0.999999);
    i = i == 0 ? 0 : i - 1;
    if (i >= s->n)
        i = s->n - 1;
    return (double) s->v[i] / 1e6;
}

void
bench_samples_free(bench_samples *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}

double
bench_median(double *v, int n)
{
    qsort(v, (size_t) n, sizeof *v, stat_cmp_double);
    if (n % 2 == 1)
        return v[n / 2];
    return (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

void
bench_report(const char *name, double loom, double raw)
{
    printf("BENCH %s loom=%.0f raw=%.0f ratio=%.3f\n", name, loom, raw,
           raw > 0 ? loom / raw : 0.0);
    fflush(stdout);
}

void
bench_progress(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", BENCH_PROGRAM);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
