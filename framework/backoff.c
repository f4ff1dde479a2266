/*
 * Capped exponential backoff with full jitter (see runtime_int.h). The
 * random numbers come from a xorshift64 generator: jitter needs spread,
 * not secrecy, and rand() would share (and disturb) the program's state.
 * Each generator is seeded from getrandom() so that processes restarted
 * together do not retry in lock-step.
 */
#include "runtime_int.h"

#include <stdint.h>
#include <sys/random.h>
#include <time.h>

/* Used when a seed would be 0, the one state xorshift never leaves. */
#define BACKOFF_SEED_ZERO 0x9e3779b97f4a7c15ull

static uint64_t
backoff_rand(loom__backoff *b)
{
    uint64_t x = b->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b->rng = x;
    return x;
}

void
loom__backoff_seed(loom__backoff *b, uint64_t seed)
{
    b->rng = seed ? seed : BACKOFF_SEED_ZERO;
}

void
loom__backoff_init(loom__backoff *b, uint64_t min_ms, uint64_t max_ms)
{
    uint64_t seed = 0;

    b->min_ms = min_ms;
    b->max_ms = max_ms < min_ms ? min_ms : max_ms;
    b->attempt = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t) sizeof seed) {
        struct timespec ts;

        /* No entropy yet (early boot) or no getrandom: clock and address
         * still differ between processes. */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t) ts.tv_nsec ^ ((uint64_t) ts.tv_sec << 30) ^
               (uint64_t) (uintptr_t) b;
    }
    loom__backoff_seed(b, seed);
}

uint64_t
loom__backoff_ceiling(const loom__backoff *b)
{
    /* min_ms * 2^attempt without overflow: past the cap it stays there. */
    if (b->min_ms == 0)
        return 0;
    if (b->attempt >= 63 || b->min_ms > (b->max_ms >> b->attempt))
        return b->max_ms;
    return b->min_ms << b->attempt;
}

uint64_t
loom__backoff_next(loom__backoff *b)
{
    uint64_t ceiling = loom__backoff_ceiling(b);
    uint64_t r = backoff_rand(b);

    if (b->attempt < 64)
        b->attempt++;
    /* Uniform over [0, ceiling]; the modulo bias is below 2^-40 for any
     * ceiling a delay in milliseconds can have. */
    return ceiling == UINT64_MAX ? r : r % (ceiling + 1);
}

void
loom__backoff_reset(loom__backoff *b)
{
    b->attempt = 0;
}
