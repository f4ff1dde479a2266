/*
 * C names that would not compile: every name the generated files define
 * must be an identifier, unique, and distinct from the names protoc-c
 * generates for the file and its imports (both land in one translation
 * unit). Rare in practice (an rpc called "Saga" makes protoc-c's client
 * stub <service>__saga, the saga table's name), but a clear error beats a
 * compiler's.
 */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "names.h"

typedef struct check_sym {
    const char *name;
    const char *what; /* for messages: what it is */
} check_sym;

typedef struct check_set {
    check_sym *v;
    size_t n, cap;
} check_set;

static void
check_add(check_set *s, const char *name, const char *what)
{
    if (s->n == s->cap) {
        s->cap = s->cap > 0 ? s->cap * 2 : 128;
        s->v = gen_xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n].name = name;
    s->v[s->n].what = what;
    s->n++;
}

static int
check_cmp(const void *a, const void *b)
{
    return strcmp(((const check_sym *) a)->name, ((const check_sym *) b)->name);
}

/* The names this plugin defines for one step. */
static void
check_step(gen_pool *p, check_set *s, const gen_saga *sg, const gen_step *st)
{
    const char *what = gen_pool_printf(p, "a handler of rpc %s of saga %s",
                                       st->name, sg->full);
    static const char *const user[] = {"command", "reply", "failed"};
    static const char *const adapters[] = {"build_fn", "reply_fn", "failed_fn"};
    size_t n = st->is_compensation ? 2 : 3;
    for (size_t i = 0; i < n; i++) {
        check_add(s, gen_pool_printf(p, "%s__%s", st->c_lower, user[i]), what);
        check_add(s, gen_pool_printf(p, "%s__%s", st->c_lower, adapters[i]),
                  what);
    }
    if (st->retry.n_non_retryable > 0) {
        check_add(s, gen_pool_printf(p, "%s__non_retryable", st->c_lower),
                  what);
    }
}

/* Every name the generated .loom.h and .loom.c define. */
static void
check_ours(gen_pool *p, const gen_file *f, check_set *s)
{
    for (size_t i = 0; i < f->n_sagas; i++) {
        const gen_saga *sg = &f->sagas[i];
        const char *what = gen_pool_printf(p, "the table of saga %s", sg->full);
        check_add(s, gen_pool_printf(p, "%s__saga", sg->c_lower), what);
        check_add(s, gen_pool_printf(p, "%s__steps", sg->c_lower), what);
        check_add(s, gen_pool_printf(p, "%s__compensations", sg->c_lower),
                  what);
        for (size_t k = 0; k < sg->n_steps; k++) {
            check_step(p, s, sg, &sg->steps[k]);
        }
        for (size_t k = 0; k < sg->n_comps; k++) {
            check_step(p, s, sg, &sg->comps[k]);
        }
    }
    for (size_t i = 0; i < f->n_parts; i++) {
        const gen_participant *pt = &f->parts[i];
        const char *what =
            gen_pool_printf(p, "the table of participant \"%s\"", pt->topic);
        check_add(s, gen_pool_printf(p, "%s__participant", pt->c_lower), what);
        check_add(s, gen_pool_printf(p, "%s__participant_steps", pt->c_lower),
                  what);
        for (size_t k = 0; k < pt->n_steps; k++) {
            const char *h = gen_pool_printf(
                p, "the handler of participant \"%s\" for rpc %s", pt->topic,
                pt->steps[k].step->name);
            check_add(s, pt->steps[k].c_handle, h);
            check_add(s, gen_pool_printf(p, "%s_fn", pt->steps[k].c_handle), h);
        }
    }
    const char *what = "the file's type registration";
    check_add(s, gen_pool_printf(p, "%s__register_types", f->c_file), what);
    check_add(s, gen_pool_printf(p, "%s__events", f->c_file), what);
    check_add(s, gen_pool_printf(p, "%s__n_events", f->c_file), what);
}

static void
check_enums(gen_pool *p, check_set *s, const gen_file_names *fn,
            const char *scope, Google__Protobuf__EnumDescriptorProto **e,
            size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *full = scope[0] != '\0' ? gen_pool_printf(p, "%s.%s", scope,
                                                              GEN_S(e[i]->name))
                                            : GEN_S(e[i]->name);
        const char *what = gen_pool_printf(p, "protoc-c's enum %s", full);
        const char *lc = gen_full_to_lower(p, full, fn->package, fn->c_package);
        check_add(s, gen_full_to_c(p, full, fn->package, fn->c_package), what);
        check_add(s, gen_pool_printf(p, "%s__descriptor", lc), what);
    }
}

static void
check_message(gen_pool *p, check_set *s, const gen_file_names *fn,
              const char *scope, const gen_mdp *md)
{
    static const char *const fns[] = {
        "init",   "descriptor",     "get_packed_size", "pack",
        "unpack", "pack_to_buffer", "free_unpacked"};
    const char *full = scope[0] != '\0'
                           ? gen_pool_printf(p, "%s.%s", scope, GEN_S(md->name))
                           : GEN_S(md->name);
    const char *what = gen_pool_printf(p, "protoc-c's message %s", full);
    const char *lc = gen_full_to_lower(p, full, fn->package, fn->c_package);
    const char *c = gen_full_to_c(p, full, fn->package, fn->c_package);
    check_add(s, c, what);
    check_add(s, gen_pool_printf(p, "%s_Closure", c), what);
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        check_add(s, gen_pool_printf(p, "%s__%s", lc, fns[i]), what);
    }
    check_enums(p, s, fn, full, md->enum_type, md->n_enum_type);
    for (size_t i = 0; i < md->n_nested_type; i++) {
        check_message(p, s, fn, full, md->nested_type[i]);
    }
}

static void
check_service(gen_pool *p, check_set *s, const gen_file_names *fn,
              const gen_sdp *sd)
{
    const char *full =
        fn->package[0] != '\0'
            ? gen_pool_printf(p, "%s.%s", fn->package, GEN_S(sd->name))
            : GEN_S(sd->name);
    const char *what = gen_pool_printf(p, "protoc-c's service %s", full);
    const char *lc = gen_full_to_lower(p, full, fn->package, fn->c_package);
    const char *c = gen_full_to_c(p, full, fn->package, fn->c_package);
    check_add(s, gen_pool_printf(p, "%s__descriptor", lc), what);
    check_add(s, gen_pool_printf(p, "%s__init", lc), what);
    check_add(s, gen_pool_printf(p, "%s_Service", c), what);
    check_add(s, gen_pool_printf(p, "%s_ServiceDestroy", c), what);
    for (size_t i = 0; i < sd->n_method; i++) {
        const char *rpc = GEN_S(sd->method[i]->name);
        check_add(s,
                  gen_pool_printf(p, "%s__%s", lc, gen_camel_to_lower(p, rpc)),
                  gen_pool_printf(p,
                                  "protoc-c's client stub for rpc %s of "
                                  "service %s",
                                  rpc, full));
    }
}

/* protoc-c's names for a file: its messages, enums and services. */
static void
check_protoc_c(gen_pool *p, check_set *s, const gen_fdp *fd)
{
    gen_errors quiet = {GEN_BUF_INIT, 0};
    gen_file_names fn = gen_file_names_of(p, fd, &quiet);
    gen_buf_free(&quiet.text);
    for (size_t i = 0; i < fd->n_message_type; i++) {
        check_message(p, s, &fn, fn.package, fd->message_type[i]);
    }
    check_enums(p, s, &fn, fn.package, fd->enum_type, fd->n_enum_type);
    for (size_t i = 0; i < fd->n_service; i++) {
        check_service(p, s, &fn, fd->service[i]);
    }
}

void
gen_check_symbols(gen_pool *p, const gen_file *f, const gen_request *req,
                  gen_errors *errs)
{
    check_set ours = {NULL, 0, 0}, theirs = {NULL, 0, 0};
    check_ours(p, f, &ours);
    for (size_t i = 0; i < ours.n; i++) {
        if (!gen_c_ident_ok(ours.v[i].name)) {
            gen_error(errs,
                      "%s: the generated name %s (%s) is not a C identifier",
                      f->proto, ours.v[i].name, ours.v[i].what);
        }
    }
    /* qsort() and bsearch() take no NULL array, even with no element,
     * and a request without types leaves the lists empty (found by
     * tests/fuzz/codegen_request.c). */
    if (ours.n > 0) {
        qsort(ours.v, ours.n, sizeof(check_sym), check_cmp);
    }
    /* Two rpcs whose names differ only in case collide in several
     * names: one error per pair of things is enough. */
    const char *last_a = NULL, *last_b = NULL;
    for (size_t i = 1; i < ours.n; i++) {
        const check_sym *a = &ours.v[i - 1], *b = &ours.v[i];
        if (strcmp(a->name, b->name) != 0 ||
            (last_a != NULL && strcmp(last_a, a->what) == 0 &&
             strcmp(last_b, b->what) == 0)) {
            continue;
        }
        gen_error(errs, "%s: the generated name %s is both %s and %s", f->proto,
                  b->name, a->what, b->what);
        last_a = a->what;
        last_b = b->what;
    }
    /* Every file's pb-c.h reaches the generated code (imports included). */
    for (size_t i = 0; i < req->n_proto_file; i++) {
        if (req->proto_file[i] != NULL) {
            check_protoc_c(p, &theirs, req->proto_file[i]);
        }
    }
    if (theirs.n == 0) {
        free(ours.v);
        free(theirs.v);
        return;
    }
    qsort(theirs.v, theirs.n, sizeof(check_sym), check_cmp);
    for (size_t i = 0; i < ours.n; i++) {
        const check_sym *hit = bsearch(&ours.v[i], theirs.v, theirs.n,
                                       sizeof(check_sym), check_cmp);
        if (hit != NULL) {
            gen_error(errs, "%s: the generated name %s (%s) is also %s",
                      f->proto, ours.v[i].name, ours.v[i].what, hit->what);
        }
    }
    free(ours.v);
    free(theirs.v);
}
