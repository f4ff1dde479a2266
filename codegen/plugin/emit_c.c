/*
 * The generated source: adapters with the generic signatures of
 * loom/saga.h that cast and call the user's typed handlers, the saga and
 * participant tables that point at them, and the type registration.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emit.h"

/* A double as the shortest text that reads back as the same value,
 * always with a '.' or an exponent so that C reads a double. */
static void
ec_double(gen_buf *b, double d)
{
    char s[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, d);
        if (strtod(s, NULL) == d) {
            break;
        }
    }
    gen_buf_puts(b, s);
    if (strpbrk(s, ".e") == NULL) {
        gen_buf_puts(b, ".0");
    }
}

static void
ec_descriptor(gen_buf *b, const gen_type *t)
{
    if (t == NULL) {
        gen_buf_puts(b, "NULL");
    } else {
        gen_buf_printf(b, "&%s__descriptor", t->c_lower);
    }
}

/*
 * One adapter: "static loom_err\n<name>(<params>)\n{\n", the lines of
 * `pre` (may be NULL), "return <callee>(<args>);\n}\n".
 */
static void
ec_adapter(gen_pool *p, gen_buf *b, const char *name, const char *const *params,
           size_t np, const char *pre, const char *callee,
           const char *const *args, size_t na)
{
    gen_buf_puts(b, "\nstatic loom_err\n");
    gen_buf_args(b, "", name, params, np, "");
    gen_buf_puts(b, "{\n");
    if (pre != NULL) {
        gen_buf_printf(b, "    %s\n", pre);
    }
    gen_buf_args(b, "    ", gen_pool_printf(p, "return %s", callee), args, na,
                 ";");
    gen_buf_puts(b, "}\n");
}

/* The three (or two) adapters of a step. */
static void
ec_step_adapters(gen_pool *p, gen_buf *b, const gen_saga *s, const gen_step *st)
{
    const char *data = s->data->c_type;
    const char *build_params[] = {"loom_saga_ctx *ctx",
                                  "const ProtobufCMessage *data",
                                  "ProtobufCMessage *command"};
    const char *build_args[] = {
        "ctx", gen_pool_printf(p, "(const %s *) data", data),
        gen_pool_printf(p, "(%s *) command", st->command->c_type)};
    ec_adapter(p, b, gen_pool_printf(p, "%s__build_fn", st->c_lower),
               build_params, 3, NULL,
               gen_pool_printf(p, "%s__command", st->c_lower), build_args, 3);

    const char *reply_params[] = {"loom_saga_ctx *ctx",
                                  "ProtobufCMessage *data",
                                  "const ProtobufCMessage *reply"};
    const char *reply_args[] = {
        "ctx", gen_pool_printf(p, "(%s *) data", data),
        gen_pool_printf(p, "(const %s *) reply", st->reply->c_type)};
    ec_adapter(p, b, gen_pool_printf(p, "%s__reply_fn", st->c_lower),
               reply_params, 3, NULL,
               gen_pool_printf(p, "%s__reply", st->c_lower), reply_args, 3);
    if (st->is_compensation) {
        return;
    }
    const char *failed_params[] = {
        "loom_saga_ctx *ctx", "ProtobufCMessage *data",
        "const ProtobufCMessage *failure", "const loom_saga_failure *why"};
    const char *failed_args[4];
    size_t n = 0;
    failed_args[n++] = "ctx";
    failed_args[n++] = gen_pool_printf(p, "(%s *) data", data);
    if (st->failure != NULL) {
        failed_args[n++] =
            gen_pool_printf(p, "(const %s *) failure", st->failure->c_type);
    }
    failed_args[n++] = "why";
    ec_adapter(p, b, gen_pool_printf(p, "%s__failed_fn", st->c_lower),
               failed_params, 4, st->failure != NULL ? NULL : "(void) failure;",
               gen_pool_printf(p, "%s__failed", st->c_lower), failed_args, n);
}

static void
ec_non_retryable(gen_buf *b, const gen_step *st)
{
    if (st->retry.n_non_retryable == 0) {
        return;
    }
    gen_buf_printf(b, "\nstatic const char *const %s__non_retryable[] = {\n",
                   st->c_lower);
    for (size_t i = 0; i < st->retry.n_non_retryable; i++) {
        gen_buf_puts(b, "    ");
        gen_buf_c_string(b, st->retry.non_retryable[i]);
        gen_buf_puts(b, ",\n");
    }
    gen_buf_puts(b, "};\n");
}

/* One loom_saga_step initializer. */
static void
ec_step(gen_buf *b, const gen_step *st)
{
    const gen_retry *r = &st->retry;
    gen_buf_puts(b, "    {\n        .name = ");
    gen_buf_c_string(b, st->name);
    gen_buf_puts(b, ",\n        .participant = ");
    gen_buf_c_string(b, st->participant);
    gen_buf_puts(b, ",\n        .command = ");
    ec_descriptor(b, st->command);
    gen_buf_puts(b, ",\n        .reply = ");
    ec_descriptor(b, st->reply);
    gen_buf_puts(b, ",\n        .failure = ");
    ec_descriptor(b, st->failure);
    gen_buf_printf(b,
                   ",\n        .compensation = %d,\n"
                   "        .timeout_ms = %luu,\n"
                   "        .retry =\n"
                   "            {\n"
                   "                .max_attempts = %luu,\n"
                   "                .initial_backoff_ms = %luu,\n"
                   "                .multiplier = ",
                   (int) st->compensation, (unsigned long) st->timeout_ms,
                   (unsigned long) r->max_attempts,
                   (unsigned long) r->initial_backoff_ms);
    ec_double(b, r->multiplier);
    gen_buf_printf(b, ",\n                .max_backoff_ms = %luu,\n",
                   (unsigned long) r->max_backoff_ms);
    if (r->n_non_retryable > 0) {
        gen_buf_printf(b,
                       "                .non_retryable = "
                       "%s__non_retryable,\n"
                       "                .n_non_retryable = %zu,\n",
                       st->c_lower, r->n_non_retryable);
    } else {
        gen_buf_puts(b, "                .non_retryable = NULL,\n"
                        "                .n_non_retryable = 0,\n");
    }
    gen_buf_printf(b,
                   "            },\n"
                   "        .build = %s__build_fn,\n"
                   "        .on_reply = %s__reply_fn,\n",
                   st->c_lower, st->c_lower);
    if (st->is_compensation) {
        gen_buf_puts(b, "        .on_failed = NULL,\n");
    } else {
        gen_buf_printf(b, "        .on_failed = %s__failed_fn,\n", st->c_lower);
    }
    gen_buf_puts(b, "    },\n");
}

static void
ec_steps(gen_buf *b, const char *array, const gen_step *v, size_t n)
{
    if (n == 0) {
        return;
    }
    gen_buf_printf(b, "\nstatic const loom_saga_step %s[] = {\n", array);
    for (size_t i = 0; i < n; i++) {
        ec_step(b, &v[i]);
    }
    gen_buf_puts(b, "};\n");
}

/* Text as a C string split after each newline, indented. */
static void
ec_text(gen_buf *b, const char *text, const char *indent)
{
    const char *s = text;
    while (*s != '\0') {
        const char *nl = strchr(s, '\n');
        size_t n = nl != NULL ? (size_t) (nl - s) + 1 : strlen(s);
        char *line = gen_xmalloc(n + 1);
        memcpy(line, s, n);
        line[n] = '\0';
        if (s != text) {
            gen_buf_printf(b, "\n%s", indent);
        }
        gen_buf_c_string(b, line);
        free(line);
        s += n;
    }
}

static void
ec_saga(gen_pool *p, gen_buf *b, const gen_file *f, const gen_saga *s)
{
    gen_buf_printf(b,
                   "\n/* -------------------------------------------------"
                   "----------------- */\n"
                   "/* Saga %s */\n",
                   s->full);
    for (size_t i = 0; i < s->n_steps; i++) {
        ec_step_adapters(p, b, s, &s->steps[i]);
        ec_non_retryable(b, &s->steps[i]);
    }
    for (size_t i = 0; i < s->n_comps; i++) {
        ec_step_adapters(p, b, s, &s->comps[i]);
        ec_non_retryable(b, &s->comps[i]);
    }
    const char *steps = gen_pool_printf(p, "%s__steps", s->c_lower);
    const char *comps = gen_pool_printf(p, "%s__compensations", s->c_lower);
    ec_steps(b, steps, s->steps, s->n_steps);
    ec_steps(b, comps, s->comps, s->n_comps);
    gen_buf_printf(b,
                   "\nconst loom_saga_def %s__saga = {\n"
                   "    .abi = %uu,\n"
                   "    .name = ",
                   s->c_lower, GEN_SAGA_ABI);
    gen_buf_c_string(b, s->full);
    gen_buf_printf(b, ",\n    .version = %luu,\n    .reply_topic = ",
                   (unsigned long) s->version);
    gen_buf_c_string(b, s->reply_topic);
    gen_buf_printf(b,
                   ",\n    .data = &%s__descriptor,\n"
                   "    .steps = %s,\n"
                   "    .n_steps = %zu,\n",
                   s->data->c_lower, steps, s->n_steps);
    if (s->n_comps > 0) {
        gen_buf_printf(b,
                       "    .compensations = %s,\n"
                       "    .n_compensations = %zu,\n",
                       comps, s->n_comps);
    } else {
        gen_buf_puts(b, "    .compensations = NULL,\n"
                        "    .n_compensations = 0,\n");
    }
    gen_buf_puts(b, "    .diagram = ");
    char *diagram = gen_emit_diagram(f, s);
    ec_text(b, diagram, "        ");
    free(diagram);
    gen_buf_puts(b, ",\n    .source = ");
    gen_buf_c_string(b, f->proto);
    gen_buf_puts(b, ",\n};\n");
}

static void
ec_participant(gen_pool *p, gen_buf *b, const gen_participant *pt)
{
    gen_buf_printf(b,
                   "\n/* -------------------------------------------------"
                   "----------------- */\n"
                   "/* Participant \"%s\" */\n",
                   pt->topic);
    const char *params[] = {
        "loom_participant_ctx *ctx", "const ProtobufCMessage *command",
        "ProtobufCMessage *reply", "ProtobufCMessage *failure"};
    for (size_t i = 0; i < pt->n_steps; i++) {
        const gen_pstep *ps = &pt->steps[i];
        const gen_step *st = ps->step;
        const char *args[4];
        size_t n = 0;
        args[n++] = "ctx";
        args[n++] =
            gen_pool_printf(p, "(const %s *) command", st->command->c_type);
        args[n++] = gen_pool_printf(p, "(%s *) reply", st->reply->c_type);
        if (st->failure != NULL) {
            args[n++] =
                gen_pool_printf(p, "(%s *) failure", st->failure->c_type);
        }
        ec_adapter(p, b, gen_pool_printf(p, "%s_fn", ps->c_handle), params, 4,
                   st->failure != NULL ? NULL : "(void) failure;", ps->c_handle,
                   args, n);
    }
    gen_buf_printf(b,
                   "\nstatic const loom_participant_step "
                   "%s__participant_steps[] = {\n",
                   pt->c_lower);
    for (size_t i = 0; i < pt->n_steps; i++) {
        const gen_pstep *ps = &pt->steps[i];
        gen_buf_puts(b, "    {\n        .saga = ");
        gen_buf_c_string(b, ps->saga->full);
        gen_buf_puts(b, ",\n        .step = ");
        gen_buf_c_string(b, ps->step->name);
        gen_buf_puts(b, ",\n        .command = ");
        ec_descriptor(b, ps->step->command);
        gen_buf_puts(b, ",\n        .reply = ");
        ec_descriptor(b, ps->step->reply);
        gen_buf_puts(b, ",\n        .failure = ");
        ec_descriptor(b, ps->step->failure);
        gen_buf_printf(b, ",\n        .handle = %s_fn,\n    },\n",
                       ps->c_handle);
    }
    gen_buf_puts(b, "};\n");
    gen_buf_printf(b,
                   "\nconst loom_participant_def %s__participant = {\n"
                   "    .abi = %uu,\n"
                   "    .name = ",
                   pt->c_lower, GEN_SAGA_ABI);
    gen_buf_c_string(b, pt->topic);
    gen_buf_printf(b,
                   ",\n    .steps = %s__participant_steps,\n"
                   "    .n_steps = %zu,\n"
                   "};\n",
                   pt->c_lower, pt->n_steps);
}

/* register_types(): every message of the file into a registry. */
static void
ec_register(gen_buf *b, const gen_file *f)
{
    gen_buf_puts(b, "\n/* -------------------------------------------------"
                    "----------------- */\n"
                    "/* Types */\n");
    gen_buf_printf(b, "\nloom_err\n%s__register_types(loom_registry *r)\n{\n",
                   f->c_file);
    if (f->n_types == 0) {
        gen_buf_puts(b, "    return r != NULL ? LOOM_OK : LOOM_EINVAL;\n}\n");
    } else {
        gen_buf_puts(b, "    static const ProtobufCMessageDescriptor *const "
                        "types[] = {\n");
        for (size_t i = 0; i < f->n_types; i++) {
            gen_buf_printf(b, "        &%s__descriptor,\n",
                           f->types[i]->c_lower);
        }
        gen_buf_puts(b, "    };\n"
                        "    if (r == NULL) {\n"
                        "        return LOOM_EINVAL;\n"
                        "    }\n"
                        "    for (size_t i = 0; i < sizeof types / sizeof "
                        "types[0]; i++) {\n"
                        "        loom_err rc = loom_registry_add(r, NULL, "
                        "types[i]);\n"
                        "        if (rc != LOOM_OK) {\n"
                        "            return rc;\n"
                        "        }\n"
                        "    }\n"
                        "    return LOOM_OK;\n"
                        "}\n");
    }
}

/* The table of (loom.event) messages and its length. */
static void
ec_events(gen_buf *b, const gen_file *f)
{
    gen_buf_printf(b, "\nconst loom_event_type %s__events[] = {\n", f->c_file);
    for (size_t i = 0; i < f->n_events; i++) {
        const gen_event *e = &f->events[i];
        gen_buf_puts(b, "    {\n        .type = ");
        gen_buf_c_string(b, e->type->full);
        gen_buf_puts(b, ",\n        .aggregate = ");
        if (e->aggregate != NULL) {
            gen_buf_c_string(b, e->aggregate);
        } else {
            gen_buf_puts(b, "NULL");
        }
        gen_buf_printf(b,
                       ",\n        .schema_version = %ld,\n"
                       "        .descriptor = &%s__descriptor,\n"
                       "    },\n",
                       (long) e->schema_version, e->type->c_lower);
    }
    gen_buf_puts(b, "    {.type = NULL, .aggregate = NULL, .schema_version = "
                    "0, .descriptor = NULL},\n};\n");
    gen_buf_printf(b, "\nconst size_t %s__n_events = %zu;\n", f->c_file,
                   f->n_events);
}

static void
ec_types(gen_buf *b, const gen_file *f)
{
    ec_register(b, f);
    ec_events(b, f);
    if (f->params.register_symbol) {
        gen_buf_printf(b,
                       "\nloom_err\n"
                       "loom_register_types(loom_registry *r)\n"
                       "{\n"
                       "    return %s__register_types(r);\n"
                       "}\n",
                       f->c_file);
    }
}

char *
gen_emit_source(const gen_file *f)
{
    gen_pool *p = gen_pool_new();
    gen_buf b = GEN_BUF_INIT;
    gen_buf_printf(&b,
                   "/* Generated by protoc-gen-loom from %s. DO NOT EDIT. */\n"
                   "#include \"%s.loom.h\"\n",
                   f->proto, f->stem);
    if (f->n_sagas > 0) {
        gen_buf_printf(&b,
                       "\n#if LOOM_SAGA_ABI_VERSION != %uu\n"
                       "#error \"%s.loom.c was generated for another "
                       "loom/saga.h: regenerate it with this Eventloom's "
                       "protoc-gen-loom\"\n"
                       "#endif\n",
                       GEN_SAGA_ABI, f->stem);
    }
    for (size_t i = 0; i < f->n_sagas; i++) {
        ec_saga(p, &b, f, &f->sagas[i]);
    }
    for (size_t i = 0; i < f->n_parts; i++) {
        ec_participant(p, &b, &f->parts[i]);
    }
    ec_types(&b, f);
    gen_pool_free(p);
    return gen_buf_take(&b);
}
