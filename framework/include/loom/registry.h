/*
 * The type registry: maps event and message type names to protobuf-c
 * descriptors, so any payload can be decoded and printed (loomctl, logs,
 * dead-letter tools) without the code that wrote it.
 */
#ifndef LOOM_REGISTRY_H
#define LOOM_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "loom/error.h"
#include "loom/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_registry loom_registry;

/* Creates an empty registry. On success *out owns it (free with
 * loom_registry_free()); on failure *out is NULL. Errors: LOOM_EINVAL,
 * LOOM_ENOMEM. */
LOOM_API loom_err loom_registry_new(loom_registry **out);

/* Frees `r`. Descriptors are borrowed and not freed. NULL is a no-op. */
LOOM_API void loom_registry_free(loom_registry *r);

/*
 * Maps `type_name` to `desc`. A NULL type_name uses the message's full
 * protobuf name (desc->name, e.g. "shop.OrderPlaced"). The name is copied;
 * `desc` is borrowed and must outlive `r` (generated descriptors are
 * static, so this is automatic). Adding the same name with the same
 * descriptor again is a no-op.
 * Errors: LOOM_EINVAL (desc NULL or not a message descriptor, empty name,
 * name over 255 bytes), LOOM_EDUPLICATE (the name is mapped to another
 * descriptor), LOOM_ENOMEM.
 */
LOOM_API loom_err loom_registry_add(loom_registry *r, const char *type_name,
                                    const ProtobufCMessageDescriptor *desc);

/* The descriptor mapped to `type_name`, or NULL (also when r or
 * type_name is NULL). Borrowed: valid as long as the descriptor is. */
LOOM_API const ProtobufCMessageDescriptor *
loom_registry_find(const loom_registry *r, const char *type_name);

/* Number of names in `r` (0 for NULL); loom_registry_name(r, i) is the
 * i-th in sorted order, or NULL past the end or for NULL. The name is
 * owned by `r`: valid until the next loom_registry_add() or
 * loom_registry_free(). */
LOOM_API size_t loom_registry_count(const loom_registry *r);
LOOM_API const char *loom_registry_name(const loom_registry *r, size_t i);

/*
 * Decodes `data` as `type_name` and writes it as one line of JSON in
 * protobuf's JSON mapping (lowerCamelCase field names, 64-bit integers as
 * strings, bytes as base64, enums by name). When the type is not in the
 * registry the payload is decoded without a schema, field numbers as keys
 * (like `protoc --decode_raw`). On success *out owns a NUL-terminated
 * string to free with loom_free(); on failure *out is NULL. Map fields
 * print as arrays of {"key":...,"value":...} objects (protobuf-c does not
 * tell map entries from other messages), and invalid UTF-8 in strings is
 * replaced by U+FFFD, so the output is always valid JSON.
 * Errors: LOOM_EINVAL (r or out NULL, data NULL with len > 0),
 * LOOM_EDECODE (the bytes are not valid protobuf for that type, or nest
 * messages more than 64 deep), LOOM_ENOMEM.
 */
LOOM_API loom_err loom_registry_to_json(const loom_registry *r,
                                        const char *type_name, const void *data,
                                        size_t len, char **out);

/*
 * Loads a shared object that registers types: it must export
 *     loom_err loom_register_types(loom_registry *r);
 * which calls loom_registry_add() for each type. The object stays loaded
 * until the process exits (descriptors live in it).
 * Errors: LOOM_EINVAL, LOOM_ENOTFOUND (cannot load, or no such symbol),
 * and whatever loom_register_types() returns.
 */
LOOM_API loom_err loom_registry_load(loom_registry *r, const char *path);

/* The symbol loom_registry_load() looks for. */
typedef loom_err (*loom_register_types_fn)(loom_registry *r);
#define LOOM_REGISTER_TYPES_SYMBOL "loom_register_types"

/*
 * An event type: a message marked `option (loom.event)` in a .proto file
 * (codegen/proto/loom/options.proto). protoc-gen-loom emits, per file, a
 * static array of these followed by an entry whose `type` is NULL, and
 * its length:
 *     extern const loom_event_type shop__order_saga__events[];
 *     extern const size_t shop__order_saga__n_events;
 * A type only: no function of the library reads it. All fields are
 * static data.
 */
typedef struct loom_event_type {
    const char *type;       /* the message's full name: "shop.OrderPlaced" */
    const char *aggregate;  /* (loom.event).aggregate: "Order"; NULL: none */
    int32_t schema_version; /* (loom.event).schema_version, >= 1 */
    const ProtobufCMessageDescriptor *descriptor;
} loom_event_type;

#ifdef __cplusplus
}
#endif

#endif /* LOOM_REGISTRY_H */
