/*
 * Participants: the steps of a file's sagas grouped by the topic they are
 * sent to. Each becomes a loom_participant_def whose handlers are named
 * after the topic and the rpc, so two steps sent to one participant under
 * one rpc name (in two sagas of the file) would need the same handler:
 * that is refused, as are two topics with the same C name.
 */
#include <string.h>

#include "model.h"
#include "names.h"

static gen_participant *
part_find(gen_file *f, const char *topic)
{
    for (size_t i = 0; i < f->n_parts; i++) {
        if (strcmp(f->parts[i].topic, topic) == 0) {
            return &f->parts[i];
        }
    }
    return NULL;
}

/* A new participant for st's topic, refused when its C name is taken.
 * Its step array has room for `total` steps: every step of the file,
 * which is few; simpler than growing it. */
static gen_participant *
part_new(gen_pool *p, gen_file *f, const gen_saga *s, const gen_step *st,
         size_t total, gen_errors *errs)
{
    const char *c = gen_topic_to_c(p, st->participant);
    const char *c_lower = f->c_prefix[0] != '\0'
                              ? gen_pool_printf(p, "%s__%s", f->c_prefix, c)
                              : c;
    for (size_t i = 0; i < f->n_parts; i++) {
        if (strcmp(f->parts[i].c_lower, c_lower) == 0) {
            gen_error(errs,
                      "%s: service %s, rpc %s: participants \"%s\" and "
                      "\"%s\" would have the same C name %s: rename one",
                      f->proto, s->full, st->name, f->parts[i].topic,
                      st->participant, c_lower);
            return NULL;
        }
    }
    gen_participant *part = &f->parts[f->n_parts++];
    part->topic = st->participant;
    part->c_lower = c_lower;
    part->steps = gen_pool_array(p, total, sizeof(gen_pstep));
    return part;
}

/* Adds a step to its participant, unless another has its handler name. */
static void
part_add(gen_pool *p, gen_file *f, const gen_saga *s, const gen_step *st,
         size_t total, gen_errors *errs)
{
    if (st->participant[0] == '\0') {
        return; /* refused already */
    }
    gen_participant *part = part_find(f, st->participant);
    if (part == NULL && (part = part_new(p, f, s, st, total, errs)) == NULL) {
        return;
    }
    const char *handle = gen_pool_printf(p, "%s__%s__handle", part->c_lower,
                                         gen_camel_to_lower(p, st->name));
    for (size_t i = 0; i < part->n_steps; i++) {
        const gen_pstep *o = &part->steps[i];
        if (strcmp(o->c_handle, handle) == 0) {
            gen_error(errs,
                      "%s: service %s, rpc %s: participant \"%s\" already "
                      "serves rpc %s of service %s: both steps would need "
                      "the handler %s; rename one of the rpcs",
                      f->proto, s->full, st->name, part->topic, o->step->name,
                      o->saga->full, handle);
            return;
        }
    }
    gen_pstep *ps = &part->steps[part->n_steps++];
    ps->saga = s;
    ps->step = st;
    ps->c_handle = handle;
}

void
gen_participants_build(gen_pool *p, gen_file *f, gen_errors *errs)
{
    /* At most one participant per step of the file. */
    size_t total = 0;
    for (size_t i = 0; i < f->n_sagas; i++) {
        total += f->sagas[i].n_steps + f->sagas[i].n_comps;
    }
    f->parts = gen_pool_array(p, total, sizeof(gen_participant));
    f->n_parts = 0;
    for (size_t i = 0; i < f->n_sagas; i++) {
        const gen_saga *s = &f->sagas[i];
        for (size_t k = 0; k < s->n_steps; k++) {
            part_add(p, f, s, &s->steps[k], total, errs);
        }
        for (size_t k = 0; k < s->n_comps; k++) {
            part_add(p, f, s, &s->comps[k], total, errs);
        }
    }
}
