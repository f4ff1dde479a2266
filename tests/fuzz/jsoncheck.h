/*
 * A strict JSON checker (RFC 8259, strings checked as UTF-8) for the
 * targets whose output is documented to be valid JSON whatever the
 * input. Iterative-enough: nesting is bounded by FUZZ_JSON_MAX_DEPTH.
 */
#ifndef LOOM_FUZZ_JSONCHECK_H
#define LOOM_FUZZ_JSONCHECK_H

#include <stddef.h>

/* Deeper than any printer of the library writes (64 messages, each
 * possibly inside an array). */
#define FUZZ_JSON_MAX_DEPTH 512

/* 1 when s[0..n) is exactly one JSON value, with optional surrounding
 * whitespace. */
int fuzz_json_valid(const char *s, size_t n);

#endif /* LOOM_FUZZ_JSONCHECK_H */
