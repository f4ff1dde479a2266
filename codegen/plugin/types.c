/*
 * The message types of a request: every file protoc passed (the files to
 * generate and everything they import), indexed by full name, with the C
 * names protoc-c gives them.
 */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "names.h"
#include "optdecode.h"
#include "protobuf-c/protobuf-c.pb-c.h"

gen_file_names
gen_file_names_of(gen_pool *p, const gen_fdp *fd, gen_errors *errs)
{
    gen_file_names fn = {GEN_S(fd->package), NULL};
    ProtobufCMessage *m;
    char err[256];
    gen_opt_rc rc = gen_opt_unpack(
        (const ProtobufCMessage *) fd->options, GEN_OPT_PB_C_FILE,
        &protobuf_cfile_options__descriptor, &m, err, sizeof err);
    if (rc == GEN_OPT_BAD) {
        gen_error(errs, "%s: option (pb_c_file) is malformed: %s",
                  GEN_S(fd->name), err);
    } else if (rc == GEN_OPT_FOUND) {
        const ProtobufCFileOptions *o = (const ProtobufCFileOptions *) m;
        if (o->c_package != NULL) {
            fn.c_package = gen_pool_strdup(p, o->c_package);
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return fn;
}

/* A growing array of types while indexing. */
typedef struct types_acc {
    gen_type *v;
    size_t n, cap;
} types_acc;

static void
types_add_message(gen_pool *p, types_acc *acc, const gen_fdp *fd,
                  const gen_file_names *fn, const char *scope,
                  const gen_mdp *md)
{
    if (md == NULL || md->name == NULL || md->name[0] == '\0') {
        return; /* protoc never sends one; a fuzzer may */
    }
    if (acc->n == acc->cap) {
        acc->cap = acc->cap > 0 ? acc->cap * 2 : 64;
        acc->v = gen_xrealloc(acc->v, acc->cap * sizeof(*acc->v));
    }
    gen_type *t = &acc->v[acc->n++];
    memset(t, 0, sizeof(*t));
    t->full = scope[0] != '\0' ? gen_pool_printf(p, "%s.%s", scope, md->name)
                               : gen_pool_strdup(p, md->name);
    t->file = GEN_S(fd->name);
    t->c_type = gen_full_to_c(p, t->full, fn->package, fn->c_package);
    t->c_lower = gen_full_to_lower(p, t->full, fn->package, fn->c_package);
    t->map_entry = md->options != NULL && md->options->has_map_entry &&
                   md->options->map_entry;
    t->proto = md;
    const char *full = t->full; /* acc->v may move below */
    for (size_t i = 0; i < md->n_nested_type; i++) {
        types_add_message(p, acc, fd, fn, full, md->nested_type[i]);
    }
}

static int
types_cmp(const void *a, const void *b)
{
    return strcmp(((const gen_type *) a)->full, ((const gen_type *) b)->full);
}

void
gen_types_index(gen_pool *p, const gen_request *req, gen_types *out,
                gen_errors *errs)
{
    types_acc acc = {NULL, 0, 0};
    for (size_t i = 0; i < req->n_proto_file; i++) {
        const gen_fdp *fd = req->proto_file[i];
        if (fd == NULL) {
            continue;
        }
        gen_file_names fn = gen_file_names_of(p, fd, errs);
        for (size_t k = 0; k < fd->n_message_type; k++) {
            types_add_message(p, &acc, fd, &fn, fn.package,
                              fd->message_type[k]);
        }
    }
    out->v = gen_pool_array(p, acc.n, sizeof(gen_type));
    if (acc.n > 0) {
        memcpy(out->v, acc.v, acc.n * sizeof(gen_type));
        qsort(out->v, acc.n, sizeof(gen_type), types_cmp);
    }
    out->n = acc.n;
    free(acc.v);
}

const gen_type *
gen_types_find(const gen_types *t, const char *full)
{
    if (full[0] == '.') {
        full++;
    }
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->v[mid].full, full);
        if (c == 0) {
            return &t->v[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

const gen_type *
gen_types_resolve(const gen_types *t, const char *name, const char *package)
{
    if (name[0] == '\0') {
        return NULL;
    }
    if (name[0] == '.') {
        return gen_types_find(t, name + 1);
    }
    /* "a.b" + "." + name, then "a" + "." + name, then name. */
    size_t plen = strlen(package);
    size_t nlen = strlen(name);
    char *cand = gen_xmalloc(plen + nlen + 2);
    const gen_type *found = NULL;
    for (;;) {
        if (plen > 0) {
            memcpy(cand, package, plen);
            cand[plen] = '.';
            memcpy(cand + plen + 1, name, nlen + 1);
        } else {
            memcpy(cand, name, nlen + 1);
        }
        found = gen_types_find(t, cand);
        if (found != NULL || plen == 0) {
            break;
        }
        while (plen > 0 && package[plen - 1] != '.') {
            plen--;
        }
        if (plen > 0) {
            plen--; /* the dot */
        }
    }
    free(cand);
    return found;
}
