/*
 * What every fuzz target shares: the libFuzzer entry points (declared
 * here so the targets build with -Wmissing-prototypes, and replay.c can
 * call them) and the check that turns a broken property into a crash.
 */
#ifndef LOOM_FUZZ_H
#define LOOM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Runs one input; returns 0 (libFuzzer reserves other values). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Optional; called once before the first input when a target defines it. */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A property the target checks, beyond "no crash, no leak, no undefined
 * behaviour": when it does not hold the input is a finding, so abort()
 * (libFuzzer saves the input; replay reports it). */
#define FUZZ_CHECK(cond)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__,          \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* Reads the input as a string: a NUL-terminated malloc'd copy (abort()
 * when memory runs out, which libFuzzer's limits make unlikely). */
static inline char *
fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (s == NULL)
        abort();
    for (size_t i = 0; i < size; i++)
        s[i] = (char) data[i];
    s[size] = '\0';
    return s;
}

#endif /* LOOM_FUZZ_H */
