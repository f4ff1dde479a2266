/*
 * The model of one .proto file that the emitters print: its sagas (with
 * their steps in the shape of loom_saga_step), the participants its steps
 * are sent to, its message types and its events. Built from protoc's
 * descriptors and the loom options by model.c (sagas), types.c (message
 * names), participants.c and checked by check.c; everything lives in the
 * run's pool.
 */
#ifndef LOOM_GEN_MODEL_H
#define LOOM_GEN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "gen.h"
#include "google/protobuf/compiler/plugin.pb-c.h"
#include "google/protobuf/descriptor.pb-c.h"

typedef Google__Protobuf__FileDescriptorProto gen_fdp;
typedef Google__Protobuf__DescriptorProto gen_mdp;
typedef Google__Protobuf__ServiceDescriptorProto gen_sdp;
typedef Google__Protobuf__MethodDescriptorProto gen_rdp;
typedef Google__Protobuf__Compiler__CodeGeneratorRequest gen_request;

/* A message type of the request (any file, nested ones included). */
typedef struct gen_type {
    const char *full;    /* "shop.OrderData": no leading dot */
    const char *file;    /* the .proto that defines it */
    const char *c_type;  /* protoc-c's struct: "Shop__OrderData" */
    const char *c_lower; /* its prefix: "shop__order_data" */
    int map_entry;       /* a map field's entry type, not a real message */
    const gen_mdp *proto;
} gen_type;

/* Every message type of a request, sorted by full name. */
typedef struct gen_types {
    gen_type *v;
    size_t n;
} gen_types;

/* What a file's package becomes in C names (types.c). */
typedef struct gen_file_names {
    const char *package;   /* "shop" or "" */
    const char *c_package; /* option (pb_c_file).c_package, or NULL */
} gen_file_names;

/*
 * Indexes every message type of every file of `req`. A file whose
 * (pb_c_file) option is malformed gets an error in `errs`.
 */
void gen_types_index(gen_pool *p, const gen_request *req, gen_types *out,
                     gen_errors *errs);

/* The type whose full name is `full` (a leading dot is skipped), or
 * NULL. */
const gen_type *gen_types_find(const gen_types *t, const char *full);

/*
 * Resolves a type name written in an option of a file of package
 * `package`: ".a.B" is a full name; any other name is looked up in the
 * package, then in each enclosing package, then at the top level (as
 * protobuf resolves names), so "B", "a.B" and "pkg.a.B" all work.
 */
const gen_type *gen_types_resolve(const gen_types *t, const char *name,
                                  const char *package);

/* The package and c_package of `fd`; errors (malformed option) in errs
 * with the file's name. */
gen_file_names gen_file_names_of(gen_pool *p, const gen_fdp *fd,
                                 gen_errors *errs);

/* ------------------------------------------------------------------ */

typedef struct gen_retry {
    uint32_t max_attempts;
    uint32_t initial_backoff_ms;
    double multiplier;
    uint32_t max_backoff_ms;
    const char **non_retryable;
    size_t n_non_retryable;
} gen_retry;

/* One rpc of a saga service: a forward step or a compensation. */
typedef struct gen_step {
    const char *name;        /* the rpc's name, "ReserveInventory" */
    const char *c_lower;     /* "shop__create_order__reserve_inventory" */
    const char *participant; /* its topic */
    const gen_type *command; /* the rpc's request */
    const gen_type *reply;   /* the rpc's response */
    const gen_type *failure; /* NULL when none */
    int is_compensation;
    int32_t compensation; /* forward: index in saga->comps, or -1 */
    int32_t forward;      /* compensation: index of the step it undoes */
    uint32_t timeout_ms;
    gen_retry retry;
} gen_step;

typedef struct gen_saga {
    const char *name;        /* the service's name, "CreateOrder" */
    const char *full;        /* "shop.CreateOrder" */
    const char *c_lower;     /* "shop__create_order" */
    uint32_t version;        /* (loom.saga).version */
    const char *reply_topic; /* given or "<full>.replies" */
    const gen_type *data;
    gen_step *steps; /* forward steps, in declaration order */
    size_t n_steps;
    gen_step *comps; /* compensations, in declaration order */
    size_t n_comps;
} gen_saga;

/* A step as its participant serves it. */
typedef struct gen_pstep {
    const gen_saga *saga;
    const gen_step *step;
    const char *c_handle; /* "shop__inventory__reserve_inventory__handle" */
} gen_pstep;

/* A participant: every step of the file's sagas sent to one topic. */
typedef struct gen_participant {
    const char *topic;   /* "inventory" */
    const char *c_lower; /* "shop__inventory" */
    gen_pstep *steps;    /* sagas in file order; forward steps, then
                            compensations */
    size_t n_steps;
} gen_participant;

/* A message marked with (loom.event). */
typedef struct gen_event {
    const gen_type *type;
    const char *aggregate; /* NULL when not given */
    int32_t schema_version;
} gen_event;

/* Plugin parameters (--loom_opt=...). */
typedef struct gen_params {
    int register_symbol; /* also emit loom_register_types() */
} gen_params;

/* Everything generated for one file. */
typedef struct gen_file {
    const char *proto;    /* "dir/order_saga.proto" */
    const char *stem;     /* "dir/order_saga" */
    const char *ident;    /* the file name as an identifier (guards) */
    const char *c_prefix; /* the package in C names: "shop", or "" */
    const char *c_file;   /* "shop__order_saga": register_types, events */
    gen_saga *sagas;      /* services with (loom.saga), in file order */
    size_t n_sagas;
    gen_participant *parts; /* in order of first use */
    size_t n_parts;
    const gen_type **types; /* the file's messages (no map entries) */
    size_t n_types;
    gen_event *events;
    size_t n_events;
    gen_params params;
} gen_file;

/*
 * Builds the model of `fd` (sagas, participants, types, events) and
 * checks it. Every problem is added to `errs` with the file, service and
 * rpc it is about; the model is only emitted when there is none.
 */
void gen_model_build(gen_pool *p, const gen_request *req,
                     const gen_types *types, const gen_fdp *fd,
                     const gen_params *params, gen_file *out, gen_errors *errs);

/* The sagas of a service (model.c): NULL when it has no (loom.saga). */
gen_saga *gen_saga_build(gen_pool *p, const gen_types *types, const gen_fdp *fd,
                         const gen_file_names *fn, const gen_sdp *sd,
                         gen_errors *errs);

/* Participants of f's sagas (participants.c); errors for handler names
 * that two steps would share. */
void gen_participants_build(gen_pool *p, gen_file *f, gen_errors *errs);

/* Rules that span the whole file (check.c): C names that collide with
 * each other or with protoc-c's, or are not identifiers. */
void gen_check_symbols(gen_pool *p, const gen_file *f, const gen_request *req,
                       gen_errors *errs);

/* Strings never NULL: protobuf-c leaves unset proto2 strings NULL. */
#define GEN_S(s) ((s) != NULL ? (s) : "")

#endif /* LOOM_GEN_MODEL_H */
