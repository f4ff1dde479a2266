/*
 * UUIDs: event ids and message ids. Eventloom generates version 7 UUIDs
 * (RFC 9562: 48-bit Unix milliseconds, then random bits), which sort by
 * creation time and so keep the unique index on event ids compact.
 */
#ifndef LOOM_UUID_H
#define LOOM_UUID_H

#include "loom/error.h"
#include "loom/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_uuid {
    unsigned char bytes[16];
} loom_uuid;

/* Length of the text form (8-4-4-4-12 hex digits) plus its NUL. */
#define LOOM_UUID_STRLEN 37

/* 1 when every byte of `u` is zero (the nil UUID) or `u` is NULL, else
 * 0. */
LOOM_API int loom_uuid_is_nil(const loom_uuid *u);

/* Fills `u` with a fresh version 7 UUID. Returns LOOM_EINVAL for NULL,
 * LOOM_EIO when the system's random source fails. Thread-safe. */
LOOM_API loom_err loom_uuid_generate(loom_uuid *u);

/* Writes the lowercase canonical text form of `u` into `out` (36
 * characters and a NUL). It cannot fail and reports nothing, so neither
 * pointer may be NULL. */
LOOM_API void loom_uuid_format(const loom_uuid *u, char out[LOOM_UUID_STRLEN]);

/* Parses canonical text (either case, hyphens required) into *u. Returns
 * LOOM_EINVAL when `s` is not a UUID; *u is unchanged then. */
LOOM_API loom_err loom_uuid_parse(loom_uuid *u, const char *s);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_UUID_H */
