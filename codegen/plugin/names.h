/*
 * Names: protobuf names turned into C names exactly as protoc-c 1.4 turns
 * them (so the generated code meets protoc-c's types and descriptors),
 * topic names, and the checks on the strings a definition may contain.
 */
#ifndef LOOM_GEN_NAMES_H
#define LOOM_GEN_NAMES_H

#include <stddef.h>

#include "gen.h"

/* The longest topic a definition may name: LOOM_MAX_TOPIC_NAME (249)
 * less the ".dlq" suffix of its dead-letter topic. */
#define GEN_MAX_TOPIC 245

/* The longest saga name, step name or failure code (loom_saga_def_check). */
#define GEN_MAX_NAME 255

/*
 * protoc-c's CamelToLower: "ReserveInventory" -> "reserve_inventory". An
 * upper-case letter becomes '_' and its lower case unless it follows
 * another upper-case letter or starts the name ("HTTPCall" ->
 * "httpcall"); everything else is kept.
 */
char *gen_camel_to_lower(gen_pool *p, const char *name);

/* protoc-c's ToCamel: '_' dropped, the letter after it (and the first)
 * upper-cased: "order_data" -> "OrderData". */
char *gen_to_camel(gen_pool *p, const char *name);

/*
 * protoc-c's FullNameToLower and FullNameToC for `full` ("shop.OrderData",
 * no leading dot), a name in a file of package `package` whose
 * `option (pb_c_file).c_package` is `c_package` (NULL when not set: the
 * package prefix is then replaced by it). The pieces between dots are
 * converted and joined with "__": "shop__order_data", "Shop__OrderData".
 */
char *gen_full_to_lower(gen_pool *p, const char *full, const char *package,
                        const char *c_package);
char *gen_full_to_c(gen_pool *p, const char *full, const char *package,
                    const char *c_package);

/* A topic's part of a C name: every byte but ASCII letters and digits
 * becomes '_' ("shop.inventory" -> "shop_inventory"). */
char *gen_topic_to_c(gen_pool *p, const char *topic);

/* A file name as an identifier: letters and digits kept, anything else
 * "_" and two hex digits ("a/b.proto" -> "a_2fb_2eproto"). */
char *gen_file_ident(gen_pool *p, const char *file);

/* 1 when `s` is a topic name: words of ASCII letters, digits, '_' and
 * '-' separated by single dots, 1 to GEN_MAX_TOPIC bytes. */
int gen_topic_ok(const char *s);

/* 1 when `s` is 1 to `max` bytes of UTF-8 without control characters. */
int gen_text_ok(const char *s, size_t max);

/* 1 when `s` is a C identifier ([A-Za-z_][A-Za-z0-9_]*). */
int gen_c_ident_ok(const char *s);

#endif /* LOOM_GEN_NAMES_H */
