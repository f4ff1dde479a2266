/*
 * The model of one file to generate: its names, its sagas, its message
 * types and events, its participants, and the checks that span the file.
 */
#include <string.h>

#include "loom/options.pb-c.h"
#include "model.h"
#include "names.h"
#include "optdecode.h"

/* "dir/name.proto" -> "dir/name", as protoc-c names its outputs. */
static const char *
file_stem(gen_pool *p, const char *proto)
{
    static const char *const suffixes[] = {".protodevel", ".proto"};
    size_t n = strlen(proto);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && strcmp(proto + n - k, suffixes[i]) == 0) {
            return gen_pool_strndup(p, proto, n - k);
        }
    }
    return gen_pool_strdup(p, proto);
}

/* The file's (loom.event) options on `t`: an event or not. */
static void
file_event(gen_pool *p, const gen_type *t, gen_file *f, gen_errors *errs)
{
    ProtobufCMessage *m;
    char err[256];
    gen_opt_rc rc = gen_opt_unpack(
        (const ProtobufCMessage *) t->proto->options, GEN_OPT_EVENT,
        &loom__event_options__descriptor, &m, err, sizeof err);
    if (rc == GEN_OPT_BAD) {
        gen_error(errs, "%s: message %s: option (loom.event) is malformed: %s",
                  f->proto, t->full, err);
        return;
    }
    if (rc == GEN_OPT_ABSENT) {
        return;
    }
    const Loom__EventOptions *o = (const Loom__EventOptions *) m;
    gen_event *e = &f->events[f->n_events++];
    e->type = t;
    e->schema_version = o->schema_version;
    if (o->schema_version < 1) {
        gen_error(errs,
                  "%s: message %s: (loom.event).schema_version must be at "
                  "least 1 (it is %d)",
                  f->proto, t->full, (int) o->schema_version);
    }
    if (o->aggregate != NULL) {
        e->aggregate = gen_pool_strdup(p, o->aggregate);
        if (!gen_text_ok(e->aggregate, GEN_MAX_NAME)) {
            gen_error(errs,
                      "%s: message %s: (loom.event).aggregate is empty, "
                      "longer than %d bytes, not UTF-8 or has control "
                      "characters",
                      f->proto, t->full, GEN_MAX_NAME);
        }
    }
    protobuf_c_message_free_unpacked(m, NULL);
}

/* Adds `md` and its nested messages, depth first in declaration order. */
static void
file_message(gen_pool *p, const gen_types *types, const char *scope,
             const gen_mdp *md, gen_file *f, gen_errors *errs)
{
    if (md->name == NULL || md->name[0] == '\0') {
        return;
    }
    const char *full = scope[0] != '\0'
                           ? gen_pool_printf(p, "%s.%s", scope, md->name)
                           : md->name;
    const gen_type *t = gen_types_find(types, full);
    if (t == NULL || t->proto != md) {
        return; /* a duplicate name in a malformed request */
    }
    if (!t->map_entry) {
        f->types[f->n_types++] = t;
        file_event(p, t, f, errs);
    }
    for (size_t i = 0; i < md->n_nested_type; i++) {
        file_message(p, types, full, md->nested_type[i], f, errs);
    }
}

/* A step's commands on another saga's reply topic would be consumed by
 * that saga's orchestrator as replies (model.c checks a saga against its
 * own reply topic; this, the file's sagas against each other). */
static void
file_reply_topics_apart(const gen_file *f, gen_errors *errs)
{
    for (size_t a = 0; a < f->n_sagas; a++) {
        const gen_saga *s = &f->sagas[a];
        for (size_t i = 0; i < s->n_steps + s->n_comps; i++) {
            const gen_step *st =
                i < s->n_steps ? &s->steps[i] : &s->comps[i - s->n_steps];
            for (size_t b = 0; b < f->n_sagas; b++) {
                if (b != a && st->participant != NULL &&
                    f->sagas[b].reply_topic != NULL &&
                    strcmp(st->participant, f->sagas[b].reply_topic) == 0) {
                    gen_error(errs,
                              "%s: service %s, rpc %s: participant \"%s\" "
                              "is the reply topic of saga %s: commands and "
                              "replies need topics of their own",
                              f->proto, s->full, st->name, st->participant,
                              f->sagas[b].full);
                }
            }
        }
    }
}

void
gen_model_build(gen_pool *p, const gen_request *req, const gen_types *types,
                const gen_fdp *fd, const gen_params *params, gen_file *f,
                gen_errors *errs)
{
    memset(f, 0, sizeof(*f));
    f->params = *params;
    f->proto = GEN_S(fd->name);
    f->stem = file_stem(p, f->proto);
    f->ident = gen_file_ident(p, f->proto);
    /* A malformed (pb_c_file) was reported when the types were indexed. */
    gen_errors quiet = {GEN_BUF_INIT, 0};
    gen_file_names fn = gen_file_names_of(p, fd, &quiet);
    gen_buf_free(&quiet.text);
    f->c_prefix = gen_full_to_lower(p, fn.package, fn.package, fn.c_package);
    const char *base = strrchr(f->stem, '/');
    base = base != NULL ? base + 1 : f->stem;
    const char *c_base = gen_topic_to_c(p, gen_camel_to_lower(p, base));
    f->c_file = f->c_prefix[0] != '\0'
                    ? gen_pool_printf(p, "%s__%s", f->c_prefix, c_base)
                    : c_base;

    f->sagas = gen_pool_array(p, fd->n_service, sizeof(gen_saga));
    for (size_t i = 0; i < fd->n_service; i++) {
        gen_saga *s = gen_saga_build(p, types, fd, &fn, fd->service[i], errs);
        if (s != NULL) {
            f->sagas[f->n_sagas++] = *s;
        }
    }
    /* The file's messages, nested ones included: at most all types. */
    f->types = gen_pool_array(p, types->n, sizeof(gen_type *));
    f->events = gen_pool_array(p, types->n, sizeof(gen_event));
    for (size_t i = 0; i < fd->n_message_type; i++) {
        file_message(p, types, fn.package, fd->message_type[i], f, errs);
    }
    file_reply_topics_apart(f, errs);
    gen_participants_build(p, f, errs);
    gen_check_symbols(p, f, req, errs);
}
