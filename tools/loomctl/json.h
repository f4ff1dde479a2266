/*
 * JSON output for --json: strings escaped so that any input, including
 * stream names with quotes, control characters or invalid UTF-8, gives
 * valid JSON, and a comma-managing way to write object members.
 */
#ifndef LOOMCTL_JSON_H
#define LOOMCTL_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"

/* Length of the well-formed UTF-8 sequence at `s` (n >= 1 bytes left),
 * or 0 when the bytes there are not one (overlong forms, surrogates and
 * values past U+10FFFF included). */
size_t ctl_utf8_seq(const unsigned char *s, size_t n);

/* 1 when all `n` bytes are well-formed UTF-8. */
int ctl_utf8_valid(const char *s, size_t n);

/* Writes `n` bytes as a JSON string: '"', '\\' and control characters
 * escaped, each byte that does not start well-formed UTF-8 as \ufffd. */
void ctl_json_str(ctl_buf *b, const char *s, size_t n);

/* Writes bytes as a JSON string in padded base64 (RFC 4648). */
void ctl_json_base64(ctl_buf *b, const void *p, size_t n);

/*
 * Object members: `"key":` preceded by a comma unless it is the first
 * member (the buffer then ends with '{'). Keys are literals from this
 * program and are not escaped.
 */
void ctl_json_key(ctl_buf *b, const char *key);
void ctl_json_kstr(ctl_buf *b, const char *key, const char *s); /* NULL: null */
void ctl_json_ki64(ctl_buf *b, const char *key, int64_t v);
void ctl_json_ku64(ctl_buf *b, const char *key, uint64_t v);
/* `raw` must already be JSON; NULL writes null. */
void ctl_json_kraw(ctl_buf *b, const char *key, const char *raw);

#endif /* LOOMCTL_JSON_H */
