/*
 * JSON output for --json: a comma-managing way to write object members.
 * Strings and bytes are written by the library's escaper and base64
 * encoder (pbjson.h), so any input, including stream names with quotes,
 * control characters or invalid UTF-8, gives valid JSON.
 */
#ifndef LOOMCTL_JSON_H
#define LOOMCTL_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "pbjson.h"

/* Writes `n` bytes as a JSON string with loom__json_string(), DEL
 * escaped as well: loomctl's JSON is read on terminals, where a raw DEL
 * is invisible. */
void ctl_json_str(loom__buf *b, const char *s, size_t n);

/*
 * Object members: `"key":` preceded by a comma unless it is the first
 * member (the buffer then ends with '{'). Keys are literals from this
 * program and are not escaped.
 */
void ctl_json_key(loom__buf *b, const char *key);
void ctl_json_kstr(loom__buf *b, const char *key,
                   const char *s); /* NULL: null */
void ctl_json_ki64(loom__buf *b, const char *key, int64_t v);
void ctl_json_ku64(loom__buf *b, const char *key, uint64_t v);
/* `raw` must already be JSON; NULL writes null. */
void ctl_json_kraw(loom__buf *b, const char *key, const char *raw);

#endif /* LOOMCTL_JSON_H */
