/*
 * UTF-8 well-formedness, shared by the library and protoc-gen-loom.
 */
#ifndef LOOM_UTF8_H
#define LOOM_UTF8_H

#include <stddef.h>

/* Length of the well-formed UTF-8 sequence at `s` (n >= 1 bytes left),
 * or 0 when the bytes there are not one. Follows Unicode table 3-7, so
 * overlong forms, surrogates and values past U+10FFFF are rejected, as
 * PostgreSQL and JSON readers would. A NUL byte is a sequence of 1. */
size_t loom__utf8_seq(const unsigned char *s, size_t n);

/* 1 when `len` bytes at `s` are valid UTF-8 without NUL bytes (PostgreSQL
 * text cannot hold NUL). */
int loom__utf8_valid(const char *s, size_t len);

#endif /* LOOM_UTF8_H */
