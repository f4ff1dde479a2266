/*
 * Just enough JSON for loomctl_test: validate a document strictly
 * (RFC 8259, UTF-8 checked) and pull members out of objects, decoding
 * strings back to their exact bytes, so the test checks what a real
 * JSON reader would see rather than matching text.
 */
#ifndef LOOMT_JSONLITE_H
#define LOOMT_JSONLITE_H

#include <stddef.h>
#include <stdint.h>

/* 1 when `s` (NUL-terminated) is exactly one JSON value, with optional
 * surrounding whitespace. */
int jl_valid(const char *s);

/* Finds member `key` of the object at `obj`; *val points at its value
 * and *end just past it. 1 found, 0 absent (or `obj` is no object). */
int jl_member(const char *obj, const char *key, const char **val,
              const char **end);

/* Decodes the string value at `val` into `out` (NUL-terminated, at most
 * cap - 1 bytes; *len gets the decoded length). 1 ok, 0 not a string. */
int jl_string(const char *val, char *out, size_t cap, size_t *len);

/* 1 when the value at `val` is the literal null. */
int jl_is_null(const char *val);

/* The integer at `val`; 1 ok, 0 not an integer. */
int jl_i64(const char *val, int64_t *out);

#endif /* LOOMT_JSONLITE_H */
