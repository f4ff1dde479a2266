/*
 * Symbol visibility. The library is built with -fvisibility=hidden; only
 * declarations marked LOOM_API are exported from libloom.so.
 */
#ifndef LOOM_EXPORT_H
#define LOOM_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define LOOM_API __attribute__((visibility("default")))
#else
#define LOOM_API
#endif

#endif /* LOOM_EXPORT_H */
