/*
 * The generated header: the saga and participant tables, the prototypes
 * of the handlers the user writes, and the type registration.
 */
#include <stdlib.h>
#include <string.h>

#include "emit.h"

static void
eh_rule(gen_buf *b)
{
    gen_buf_puts(b, "/* -------------------------------------------------"
                    "----------------- */\n");
}

/* `loom_err name(\n    p1,\n    p2);`: one parameter per line. */
static void
eh_proto(gen_buf *b, const char *name, const char *const *params, size_t n)
{
    gen_buf b2 = GEN_BUF_INIT;
    gen_buf_printf(&b2, "loom_err %s", name);
    gen_buf_args(b, "", gen_buf_str(&b2), params, n, ";");
    gen_buf_free(&b2);
}

static void
eh_step(gen_pool *p, gen_buf *b, const gen_saga *s, const gen_step *st,
        size_t index)
{
    const char *data = s->data->c_type;
    if (st->is_compensation) {
        gen_buf_printf(b,
                       "\n/* compensations[%zu]: %s, sent to \"%s\",\n"
                       " * undoes %s. */\n",
                       index, st->name, st->participant,
                       s->steps[st->forward].name);
    } else {
        gen_buf_printf(b, "\n/* steps[%zu]: %s, sent to \"%s\". */\n", index,
                       st->name, st->participant);
    }
    gen_buf_puts(b, "/* Builds its command from the saga's data (fields may "
                    "borrow from data,\n"
                    " * static memory or loom_saga_alloc()). A non-OK return "
                    "fails the attempt\n"
                    " * with code BUILD, retried by the step's policy "
                    "(loom_saga_command_fn). */\n");
    const char *cmd[] = {
        "loom_saga_ctx *ctx",
        gen_pool_printf(p, "const %s *data", data),
        gen_pool_printf(p, "%s *command", st->command->c_type),
    };
    eh_proto(b, gen_pool_printf(p, "%s__command", st->c_lower), cmd, 3);
    gen_buf_puts(b, "/* Its success reply: may update the saga's data (new "
                    "fields may borrow\n"
                    " * from reply or loom_saga_alloc()). A non-OK return "
                    "leaves the reply\n"
                    " * unprocessed: it is delivered again "
                    "(loom_saga_reply_fn). */\n");
    const char *rep[] = {
        "loom_saga_ctx *ctx",
        gen_pool_printf(p, "%s *data", data),
        gen_pool_printf(p, "const %s *reply", st->reply->c_type),
    };
    eh_proto(b, gen_pool_printf(p, "%s__reply", st->c_lower), rep, 3);
    if (st->is_compensation) {
        return;
    }
    gen_buf_puts(b, st->failure != NULL
                        ? "/* It failed for good (why says how); failure is "
                          "the participant's\n"
                          " * payload, NULL after a timeout or when it sent "
                          "none. May update the\n"
                          " * saga's data; compensation starts afterwards. A "
                          "non-OK return leaves\n"
                          " * the failure to be handled again "
                          "(loom_saga_failed_fn). */\n"
                        : "/* It failed for good (why says how). May update "
                          "the saga's data;\n"
                          " * compensation starts afterwards. A non-OK return "
                          "leaves the failure\n"
                          " * to be handled again (loom_saga_failed_fn). "
                          "*/\n");
    const char *fail[4];
    size_t n = 0;
    fail[n++] = "loom_saga_ctx *ctx";
    fail[n++] = gen_pool_printf(p, "%s *data", data);
    if (st->failure != NULL) {
        fail[n++] =
            gen_pool_printf(p, "const %s *failure", st->failure->c_type);
    }
    fail[n++] = "const loom_saga_failure *why";
    eh_proto(b, gen_pool_printf(p, "%s__failed", st->c_lower), fail, n);
}

static void
eh_saga(gen_pool *p, gen_buf *b, const gen_saga *s)
{
    gen_buf_puts(b, "\n");
    eh_rule(b);
    gen_buf_printf(b,
                   "/* Saga %s, version %u: data %s,\n"
                   " * replies on \"%s\". Forward steps:\n",
                   s->full, (unsigned) s->version, s->data->full,
                   s->reply_topic);
    for (size_t i = 0; i < s->n_steps; i++) {
        const gen_step *st = &s->steps[i];
        gen_buf_printf(b, " *   steps[%zu] %s -> \"%s\"", i, st->name,
                       st->participant);
        if (st->compensation >= 0) {
            gen_buf_printf(b, ", undone by %s",
                           s->comps[st->compensation].name);
        }
        gen_buf_puts(b, "\n");
    }
    gen_buf_puts(b, " */\n");
    gen_buf_printf(b, "extern const loom_saga_def %s__saga;\n", s->c_lower);
    for (size_t i = 0; i < s->n_steps; i++) {
        eh_step(p, b, s, &s->steps[i], i);
    }
    for (size_t i = 0; i < s->n_comps; i++) {
        eh_step(p, b, s, &s->comps[i], i);
    }
}

static void
eh_participant(gen_pool *p, gen_buf *b, const gen_participant *pt)
{
    gen_buf_puts(b, "\n");
    eh_rule(b);
    gen_buf_printf(b,
                   "/* Participant \"%s\": the commands of these steps, one "
                   "handler each.\n"
                   " * To succeed, fill reply and return LOOM_OK; to fail, "
                   "return\n"
                   " * loom_participant_fail() (after filling failure, when "
                   "there is one).\n"
                   " * Any other return is transient: nothing commits and "
                   "the command comes\n"
                   " * again. Effects only through ctx "
                   "(loom_participant_fn). */\n",
                   pt->topic);
    gen_buf_printf(b, "extern const loom_participant_def %s__participant;\n",
                   pt->c_lower);
    for (size_t i = 0; i < pt->n_steps; i++) {
        const gen_pstep *ps = &pt->steps[i];
        const gen_step *st = ps->step;
        gen_buf_printf(b, "\n/* %s %s of saga %s. */\n",
                       st->is_compensation ? "Compensation" : "Step", st->name,
                       ps->saga->full);
        const char *params[4];
        size_t n = 0;
        params[n++] = "loom_participant_ctx *ctx";
        params[n++] =
            gen_pool_printf(p, "const %s *command", st->command->c_type);
        params[n++] = gen_pool_printf(p, "%s *reply", st->reply->c_type);
        if (st->failure != NULL) {
            params[n++] =
                gen_pool_printf(p, "%s *failure", st->failure->c_type);
        }
        eh_proto(b, ps->c_handle, params, n);
    }
}

static void
eh_types(gen_pool *p, gen_buf *b, const gen_file *f)
{
    gen_buf_puts(b, "\n");
    eh_rule(b);
    gen_buf_printf(b,
                   "/* Adds every message type of %s to r under its full "
                   "name\n"
                   " * (loom_registry_add()). Errors: LOOM_EINVAL (r is "
                   "NULL) and those of\n"
                   " * loom_registry_add(). */\n",
                   f->proto);
    const char *param[] = {"loom_registry *r"};
    eh_proto(b, gen_pool_printf(p, "%s__register_types", f->c_file), param, 1);
    gen_buf_printf(b,
                   "\n/* The messages marked (loom.event), in file order, "
                   "followed by a zeroed\n"
                   " * entry; %s__n_events of them. */\n",
                   f->c_file);
    gen_buf_printf(b, "extern const loom_event_type %s__events[];\n",
                   f->c_file);
    gen_buf_printf(b, "extern const size_t %s__n_events;\n", f->c_file);
    if (f->params.register_symbol) {
        gen_buf_printf(b,
                       "\n/* What loom_registry_load() (loomctl --types) "
                       "calls in a shared object\n"
                       " * built from this file: %s__register_types(). */\n"
                       "LOOM_API loom_err loom_register_types(loom_registry "
                       "*r);\n",
                       f->c_file);
    }
}

char *
gen_emit_header(const gen_file *f)
{
    gen_pool *p = gen_pool_new();
    gen_buf b = GEN_BUF_INIT;
    gen_buf_printf(&b,
                   "/* Generated by protoc-gen-loom from %s. DO NOT EDIT. */\n"
                   "#ifndef LOOM_GENERATED_%s_H\n"
                   "#define LOOM_GENERATED_%s_H\n\n"
                   "#include <stddef.h>\n\n"
                   "#include \"loom/registry.h\"\n",
                   f->proto, f->ident, f->ident);
    if (f->n_sagas > 0) {
        gen_buf_puts(&b, "#include \"loom/saga.h\"\n");
    }
    gen_buf_printf(&b,
                   "#include \"%s.pb-c.h\"\n\n"
                   "#ifdef __cplusplus\n"
                   "extern \"C\" {\n"
                   "#endif\n",
                   f->stem);
    for (size_t i = 0; i < f->n_sagas; i++) {
        eh_saga(p, &b, &f->sagas[i]);
    }
    for (size_t i = 0; i < f->n_parts; i++) {
        eh_participant(p, &b, &f->parts[i]);
    }
    eh_types(p, &b, f);
    gen_buf_printf(&b,
                   "\n#ifdef __cplusplus\n"
                   "}\n"
                   "#endif\n\n"
                   "#endif /* LOOM_GENERATED_%s_H */\n",
                   f->ident);
    gen_pool_free(p);
    return gen_buf_take(&b);
}
