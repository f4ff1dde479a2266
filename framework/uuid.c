/* Version 7 UUIDs and their canonical text form. */
#include "loom/uuid.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int
loom_uuid_is_nil(const loom_uuid *u)
{
    static const loom_uuid nil;

    return u == NULL || memcmp(u->bytes, nil.bytes, sizeof nil.bytes) == 0;
}

/*
 * Random bytes come from a per-thread pool refilled with one getrandom()
 * call, because a system call per id was most of the client's cost of a
 * large append. A forked child must not reuse its parent's pool (the two
 * would generate the same ids), so the fork handler empties the pool of
 * the thread that forked (the only thread the child has).
 */
#define UUID_POOL 4096

static _Thread_local struct {
    unsigned char bytes[UUID_POOL];
    size_t left; /* unused bytes at the end of `bytes` */
} uuid_pool;

static pthread_once_t uuid_once = PTHREAD_ONCE_INIT;

static void
uuid_after_fork(void)
{
    uuid_pool.left = 0;
}

static void
uuid_register_fork(void)
{
    pthread_atfork(NULL, NULL, uuid_after_fork);
}

static int
uuid_fill(unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += got;
        n -= (size_t) got;
    }
    return 0;
}

static int
uuid_random(unsigned char *p, size_t n)
{
    pthread_once(&uuid_once, uuid_register_fork);
    if (uuid_pool.left < n) {
        if (uuid_fill(uuid_pool.bytes, UUID_POOL) != 0)
            return -1;
        uuid_pool.left = UUID_POOL;
    }
    memcpy(p, uuid_pool.bytes + UUID_POOL - uuid_pool.left, n);
    /* Used bytes are wiped so a memory dump does not reveal past ids. */
    memset(uuid_pool.bytes + UUID_POOL - uuid_pool.left, 0, n);
    uuid_pool.left -= n;
    return 0;
}

loom_err
loom_uuid_generate(loom_uuid *u)
{
    struct timespec ts;
    uint64_t ms;
    unsigned char *b;

    if (u == NULL)
        return LOOM_EINVAL;
    b = u->bytes;
    if (uuid_random(b + 6, 10) != 0)
        return LOOM_EIO;
    clock_gettime(CLOCK_REALTIME, &ts);
    ms = (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char) (ms >> (40 - 8 * i));
    b[6] = (unsigned char) (0x70 | (b[6] & 0x0f)); /* version 7 */
    b[8] = (unsigned char) (0x80 | (b[8] & 0x3f)); /* RFC 9562 variant */
    return LOOM_OK;
}

void
loom_uuid_format(const loom_uuid *u, char out[LOOM_UUID_STRLEN])
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;

    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[u->bytes[i] >> 4];
        *p++ = hex[u->bytes[i] & 15];
    }
    *p = '\0';
}

static int
uuid_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

loom_err
loom_uuid_parse(loom_uuid *u, const char *s)
{
    loom_uuid tmp;
    int n = 0;

    if (u == NULL || s == NULL)
        return LOOM_EINVAL;
    for (int i = 0; i < 36; i++) {
        int hi, lo;
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return LOOM_EINVAL;
            continue;
        }
        hi = uuid_hexval(s[i]);
        lo = hi < 0 ? -1 : uuid_hexval(s[i + 1]);
        if (lo < 0)
            return LOOM_EINVAL;
        tmp.bytes[n++] = (unsigned char) (hi << 4 | lo);
        i++;
    }
    if (s[36] != '\0')
        return LOOM_EINVAL;
    *u = tmp;
    return LOOM_OK;
}
