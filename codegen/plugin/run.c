/*
 * One run of the plugin: parameters, the type index, a model per file to
 * generate, then either the error (every problem found, one per line) or
 * the generated files. Nothing is generated when any file has a problem:
 * protoc fails the whole run anyway.
 */
#include <stdlib.h>
#include <string.h>

#include "emit.h"
#include "names.h"
#include "run.h"

typedef Google__Protobuf__Compiler__CodeGeneratorResponse gen_response;
typedef Google__Protobuf__Compiler__CodeGeneratorResponse__File gen_out;

/* What protoc may send to a plugin: proto3 `optional` fields are
 * ordinary fields to this plugin (it reads no field of user messages). */
#define RUN_FEATURES                                                           \
    GOOGLE__PROTOBUF__COMPILER__CODE_GENERATOR_RESPONSE__FEATURE__FEATURE_PROTO3_OPTIONAL

static char *
run_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = gen_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

/* --loom_opt=a,b: the parameters this plugin knows. */
static void
run_params(const char *param, gen_params *out, gen_errors *errs)
{
    memset(out, 0, sizeof(*out));
    const char *s = param;
    while (*s != '\0') {
        const char *comma = strchr(s, ',');
        size_t n = comma != NULL ? (size_t) (comma - s) : strlen(s);
        if (n == strlen("register_symbol") &&
            strncmp(s, "register_symbol", n) == 0) {
            out->register_symbol = 1;
        } else if (n > 0) {
            gen_error(errs,
                      "unknown protoc-gen-loom parameter \"%.*s\" (known: "
                      "register_symbol)",
                      (int) n, s);
        }
        s += n;
        if (*s == ',') {
            s++;
        }
    }
}

static const gen_fdp *
run_find_file(const gen_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_proto_file; i++) {
        const gen_fdp *fd = req->proto_file[i];
        if (fd != NULL && strcmp(GEN_S(fd->name), name) == 0) {
            return fd;
        }
    }
    return NULL;
}

/* A file name lands in C comments, an #include and an #error: it must
 * not be able to end any of them. */
static int
run_file_name_ok(const char *s)
{
    if (s[0] == '\0' || strstr(s, "*/") != NULL) {
        return 0;
    }
    for (const unsigned char *c = (const unsigned char *) s; *c; c++) {
        if (*c < 0x20 || *c >= 0x7f || *c == '"' || *c == '\\') {
            return 0;
        }
    }
    return 1;
}

static void
run_add_file(gen_response *r, const char *name, char *content)
{
    gen_out *f = gen_xmalloc(sizeof(*f));
    google__protobuf__compiler__code_generator_response__file__init(f);
    f->name = run_strdup(name);
    f->content = content;
    r->file = gen_xrealloc(r->file, (r->n_file + 1) * sizeof(*r->file));
    r->file[r->n_file++] = f;
}

static void
run_emit(gen_pool *p, gen_response *r, const gen_file *f)
{
    run_add_file(r, gen_pool_printf(p, "%s.loom.h", f->stem),
                 gen_emit_header(f));
    run_add_file(r, gen_pool_printf(p, "%s.loom.c", f->stem),
                 gen_emit_source(f));
    for (size_t i = 0; i < f->n_sagas; i++) {
        run_add_file(r,
                     gen_pool_printf(p, "%s.%s.mmd", f->stem, f->sagas[i].name),
                     gen_emit_diagram(f, &f->sagas[i]));
    }
}

gen_response *
gen_run(const gen_request *req)
{
    gen_response *r = gen_xmalloc(sizeof(*r));
    google__protobuf__compiler__code_generator_response__init(r);
    r->has_supported_features = 1;
    r->supported_features = RUN_FEATURES;

    gen_pool *p = gen_pool_new();
    gen_errors errs = {GEN_BUF_INIT, 0};
    gen_params params;
    run_params(GEN_S(req->parameter), &params, &errs);
    gen_types types;
    gen_types_index(p, req, &types, &errs);

    size_t n = req->n_file_to_generate;
    gen_file *files = gen_pool_array(p, n, sizeof(gen_file));
    for (size_t i = 0; i < n; i++) {
        const char *name = GEN_S(req->file_to_generate[i]);
        const gen_fdp *fd = run_find_file(req, name);
        if (fd == NULL) {
            gen_error(&errs, "%s: not among the files protoc sent", name);
        } else if (!run_file_name_ok(name)) {
            gen_error(&errs,
                      "%s: a file name with quotes, backslashes, \"*/\" or "
                      "bytes outside printable ASCII cannot be used in "
                      "generated C",
                      name);
        } else {
            gen_model_build(p, req, &types, fd, &params, &files[i], &errs);
        }
    }
    if (errs.n > 0) {
        if (errs.n > GEN_MAX_ERRORS) {
            gen_buf_printf(&errs.text, "(and %zu more errors)\n",
                           errs.n - GEN_MAX_ERRORS);
        }
        /* protoc adds its own newline. */
        errs.text.s[--errs.text.len] = '\0';
        r->error = gen_buf_take(&errs.text);
    } else {
        for (size_t i = 0; i < n; i++) {
            run_emit(p, r, &files[i]);
        }
    }
    gen_buf_free(&errs.text);
    gen_pool_free(p);
    return r;
}

int
gen_process(const uint8_t *in, size_t n, uint8_t **out, size_t *out_len,
            char *err, size_t errlen)
{
    *out = NULL;
    *out_len = 0;
    gen_request *req =
        google__protobuf__compiler__code_generator_request__unpack(NULL, n, in);
    if (req == NULL) {
        snprintf(err, errlen,
                 "the input is not a CodeGeneratorRequest (protoc-gen-loom "
                 "is run by protoc: protoc --loom_out=DIR ...)");
        return -1;
    }
    gen_response *r = gen_run(req);
    size_t len = protobuf_c_message_get_packed_size(&r->base);
    uint8_t *buf = gen_xmalloc(len);
    protobuf_c_message_pack(&r->base, buf);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    google__protobuf__compiler__code_generator_request__free_unpacked(req,
                                                                      NULL);
    *out = buf;
    *out_len = len;
    return 0;
}
