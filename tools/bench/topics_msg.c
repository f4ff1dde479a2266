/*
 * The messages of the topics case, identical on both sides, and the
 * record of what a consumer received. The per-message work of every
 * consumer is tb_seen_add(): find the message number, checksum the whole
 * payload, and mark it received; the checksums of both sides must add up
 * to tb_expected_sum(), so a lost, doubled or altered message shows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_topics.h"

static const char msg_alphabet[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static void
msg_hex(char *p, uint64_t v)
{
    for (int d = 15; d >= 0; d--, v >>= 4)
        p[d] = msg_alphabet[v & 15];
}

void
tb_payload(char *p, uint64_t i, int64_t stamp)
{
    /* xorshift64, seeded per message: the filler differs between
     * messages, so nothing on the way can share or shortcut it. */
    uint64_t x = (i + 1) * UINT64_C(0x9E3779B97F4A7C15);

    msg_hex(p, i);
    msg_hex(p + 16, (uint64_t) stamp);
    for (size_t k = 32; k < TB_PAYLOAD_BYTES; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[k] = msg_alphabet[x % 62];
    }
}

size_t
tb_key(char *buf, uint64_t i)
{
    return (size_t) snprintf(buf, TB_KEY_MAX, "key-%u",
                             (unsigned) (i % TB_KEYS));
}

static int
msg_unhex(const unsigned char *p, uint64_t *v)
{
    *v = 0;
    for (int d = 0; d < 16; d++) {
        unsigned c = p[d];
        if (c >= '0' && c <= '9')
            *v = *v << 4 | (c - '0');
        else if (c >= 'A' && c <= 'F')
            *v = *v << 4 | (c - 'A' + 10);
        else
            return -1;
    }
    return 0;
}

int
tb_parse(const void *payload, size_t len, uint64_t *i, int64_t *stamp)
{
    const unsigned char *p = payload;
    uint64_t s;

    if (payload == NULL || len != TB_PAYLOAD_BYTES || msg_unhex(p, i) != 0 ||
        msg_unhex(p + 16, &s) != 0)
        return -1;
    *stamp = (int64_t) s;
    return 0;
}

uint64_t
tb_checksum(const void *payload, size_t len)
{
    const unsigned char *p = payload;
    uint64_t h = UINT64_C(0xcbf29ce484222325);

    for (size_t k = 0; k < len; k++) {
        h ^= p[k];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

uint64_t
tb_expected_sum(size_t n)
{
    char p[TB_PAYLOAD_BYTES];
    uint64_t sum = 0;

    for (size_t i = 0; i < n; i++) {
        tb_payload(p, i, 0);
        sum += tb_checksum(p, sizeof p);
    }
    return sum;
}

int
tb_seen_init(tb_seen *s, size_t n)
{
    memset(s, 0, sizeof *s);
    s->bits = calloc((n + 63) / 64, sizeof *s->bits);
    if (s->bits == NULL)
        return -1;
    s->n = n;
    atomic_init(&s->distinct, 0);
    atomic_init(&s->dups, 0);
    atomic_init(&s->bad, 0);
    atomic_init(&s->sum, 0);
    atomic_init(&s->last_ns, 0);
    return 0;
}

void
tb_seen_free(tb_seen *s)
{
    free((void *) s->bits);
    s->bits = NULL;
}

int
tb_seen_add(tb_seen *s, const void *payload, size_t len)
{
    uint64_t i, bit, old;
    int64_t stamp;

    if (tb_parse(payload, len, &i, &stamp) != 0 || i >= s->n) {
        atomic_fetch_add(&s->bad, 1);
        return 0;
    }
    bit = UINT64_C(1) << (i % 64);
    old = atomic_fetch_or(&s->bits[i / 64], bit);
    if (old & bit) {
        atomic_fetch_add(&s->dups, 1);
        return 0;
    }
    atomic_fetch_add(&s->sum, tb_checksum(payload, len));
    atomic_store(&s->last_ns, (long long) bench_now_ns());
    return atomic_fetch_add(&s->distinct, 1) + 1 == s->n;
}

void
tb_seen_phase(tb_seen *s, int64_t start_ns, tb_phase *out)
{
    int64_t end = (int64_t) atomic_load(&s->last_ns);

    out->messages = atomic_load(&s->distinct);
    out->dups = atomic_load(&s->dups);
    out->sum = atomic_load(&s->sum);
    out->seconds = end > start_ns ? (double) (end - start_ns) / 1e9 : 0.0;
}
