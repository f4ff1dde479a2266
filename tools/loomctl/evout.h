/*
 * Printing events, shared by `read` and `tail`: a table row per event, or
 * with --json one object per line:
 *   {"position":..,"tx":..,"stream":..,"version":..,"id":..,"type":..,
 *    "schema_version":..,"recorded_at":"2024-05-01T12:00:00.000Z",
 *    "data":{...},"correlation_id":..,"causation_id":..,"headers":{..}}
 * `data` is the payload decoded to JSON by the type registry; when it
 * cannot be decoded, `data` is null and `data_base64` holds the bytes.
 */
#ifndef LOOMCTL_EVOUT_H
#define LOOMCTL_EVOUT_H

#include <stddef.h>
#include <stdint.h>

#include "loom/eventstore.h"
#include "loom/registry.h"

typedef struct ctl_evout ctl_evout;

/* Which table columns to show. */
typedef enum ctl_evout_kind {
    CTL_EVOUT_STREAM, /* read: POSITION VERSION TYPE RECORDED DATA META */
    CTL_EVOUT_ALL     /* tail: POSITION TX STREAM VERSION TYPE ... */
} ctl_evout_kind;

/* Output to stdout. `reg` is borrowed. NULL when out of memory. */
ctl_evout *ctl_evout_new(ctl_evout_kind kind, int json,
                         const loom_registry *reg);
void ctl_evout_free(ctl_evout *o);

/* Adds one event: written at once in JSON mode, buffered for the table.
 * Returns 0, or -1 after printing why (out of memory, write error). */
int ctl_evout_add(ctl_evout *o, const loom_event *ev);

/* Events buffered for the table. */
size_t ctl_evout_pending(const ctl_evout *o);

/* Prints buffered rows. 0, or -1 after printing why. */
int ctl_evout_flush(ctl_evout *o);

/* Formats microseconds since the epoch as ISO 8601 UTC with milliseconds
 * ("2024-05-01T12:00:00.123Z"). */
void ctl_format_time(int64_t us, char out[32]);

#endif /* LOOMCTL_EVOUT_H */
