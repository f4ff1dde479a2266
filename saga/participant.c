/*
 * The participant helper (loom/saga.h, "Participants"): an idempotent
 * inbox consumer (loom/inbox_consumer.h) on the command topics of its
 * defs, whose handler is participant_cmd.c. What makes a participant's
 * effects exactly-once is the inbox consumer's: each command's inbox
 * mark, the events its handler emitted, its statements and its reply in
 * the outbox commit in one transaction or not at all. A version conflict
 * (two commands on one aggregate) makes the inbox consumer handle the
 * command again on fresh state, without counting a delivery.
 *
 * The inbox consumer tells which messages committed (its `settled`
 * callback); the notes kept here say which of those were failure
 * replies, for the counters.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc_int.h"
#include "inbox_consumer_int.h"
#include "loom/alloc.h"
#include "loom/outbox.h"
#include "loom/topics.h"
#include "outbox_int.h"
#include "participant_int.h"
#include "text.h"
#include "transport_int.h"

#define PT_DEFAULT_BATCH 100
#define PT_GROUP_SUFFIX  "-participant"

static loom_err pt_err(char *err, size_t errlen, loom_err rc, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

static loom_err
pt_err(char *err, size_t errlen, loom_err rc, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* ---- notes: which handled commands answered with a failure ------------ */

static loom__pt_note *
pt_note_find(loom_participant *p, const loom_message *m)
{
    for (size_t i = 0; i < p->n_notes; i++) {
        if (p->notes[i].m == m) {
            return &p->notes[i];
        }
    }
    return NULL;
}

static void
pt_note_drop(loom_participant *p, const loom_message *m)
{
    loom__pt_note *n = pt_note_find(p, m);
    if (n != NULL) {
        *n = p->notes[--p->n_notes];
    }
}

/* Records (or updates: the handler may run again) m's outcome. */
static loom_err
pt_note_set(loom_participant *p, const loom_message *m, int failure)
{
    loom__pt_note *n = pt_note_find(p, m);
    if (n == NULL) {
        if (p->n_notes == p->cap_notes) {
            size_t cap = p->cap_notes ? p->cap_notes * 2 : 16;
            void *grown = loom_realloc(p->notes, cap * sizeof *p->notes);
            if (grown == NULL) {
                return LOOM_ENOMEM;
            }
            p->notes = grown;
            p->cap_notes = cap;
        }
        n = &p->notes[p->n_notes++];
        n->m = m;
    }
    n->failure = failure;
    return LOOM_OK;
}

/* The inbox consumer settled m: count a committed failure reply. */
static void
pt_settled(const loom_message *m, loom_inbox_outcome outcome, void *arg)
{
    loom_participant *p = arg;
    loom__pt_note *n = pt_note_find(p, m);
    if (n == NULL) {
        return;
    }
    if (outcome == LOOM_INBOX_COMMITTED && n->failure) {
        p->failures++;
    }
    pt_note_drop(p, m);
}

/* The inbox consumer's handler: one command into its unit of work. */
static loom_err
pt_on_message(const loom_message *m, loom_tx *tx, char *why, size_t whylen,
              void *arg)
{
    loom_participant *p = arg;
    int failure = 0;

    /* A fresh arena per handler call: what the last command left is no
     * longer needed (its statements were copied into the tx). */
    loom__arena_reset(&p->arena);
    loom_err rc = loom__participant_handle(p, m, tx, why, whylen, &failure);
    if (rc == LOOM_OK) {
        rc = pt_note_set(p, m, failure);
        if (rc != LOOM_OK) {
            snprintf(why, whylen, "participant %s: out of memory", p->group);
        }
    } else {
        pt_note_drop(p, m);
    }
    loom__arena_reset(&p->arena);
    return rc;
}

/* ---- checking the defs ------------------------------------------------- */

static int
pt_name_ok(const char *s, size_t max)
{
    return loom__saga_text_problem(s, max) == NULL;
}

static int
pt_is_message(const ProtobufCMessageDescriptor *d)
{
    return d != NULL && d->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC;
}

static loom_err
pt_check_def(const loom_participant_def *def, size_t k, char *err,
             size_t errlen)
{
    if (def == NULL) {
        return pt_err(err, errlen, LOOM_EINVAL, "participant: def %zu is NULL",
                      k);
    }
    if (def->abi != LOOM_SAGA_ABI_VERSION) {
        return pt_err(err, errlen, LOOM_EINVAL,
                      "participant def %zu: generated for ABI %u, this "
                      "library reads %u: regenerate it",
                      k, (unsigned) def->abi, LOOM_SAGA_ABI_VERSION);
    }
    if (!pt_name_ok(def->name, LOOM_MAX_TOPIC_NAME)) {
        return pt_err(err, errlen, LOOM_EINVAL,
                      "participant def %zu: its name (the command topic) is "
                      "empty or too long",
                      k);
    }
    if (def->steps == NULL || def->n_steps == 0) {
        return pt_err(err, errlen, LOOM_EINVAL,
                      "participant %s: it serves no steps", def->name);
    }
    for (size_t i = 0; i < def->n_steps; i++) {
        const loom_participant_step *st = &def->steps[i];
        if (!pt_name_ok(st->saga, 255) || !pt_name_ok(st->step, 255)) {
            return pt_err(err, errlen, LOOM_EINVAL,
                          "participant %s: step %zu needs a saga and a step "
                          "name",
                          def->name, i);
        }
        if (!pt_is_message(st->command) || !pt_is_message(st->reply) ||
            (st->failure != NULL && !pt_is_message(st->failure))) {
            return pt_err(err, errlen, LOOM_EINVAL,
                          "participant %s: step %s needs command and reply "
                          "message descriptors (and failure NULL or one)",
                          def->name, st->step);
        }
        if (st->handle == NULL) {
            return pt_err(err, errlen, LOOM_EINVAL,
                          "participant %s: step %s has no handler", def->name,
                          st->step);
        }
    }
    return LOOM_OK;
}

/* Every def, and no (saga, step) served twice: a command must find
 * exactly one handler. */
static loom_err
pt_check_defs(const loom_participant_config *cfg, char *err, size_t errlen)
{
    for (size_t k = 0; k < cfg->n_defs; k++) {
        loom_err rc = pt_check_def(cfg->defs[k], k, err, errlen);
        if (rc != LOOM_OK) {
            return rc;
        }
    }
    for (size_t a = 0; a < cfg->n_defs; a++) {
        const loom_participant_def *da = cfg->defs[a];
        for (size_t i = 0; i < da->n_steps; i++) {
            const loom_participant_step *x = &da->steps[i];
            for (size_t b = a; b < cfg->n_defs; b++) {
                const loom_participant_def *db = cfg->defs[b];
                for (size_t j = b == a ? i + 1 : 0; j < db->n_steps; j++) {
                    const loom_participant_step *y = &db->steps[j];
                    if (strcmp(x->saga, y->saga) == 0 &&
                        strcmp(x->step, y->step) == 0) {
                        return pt_err(err, errlen, LOOM_EINVAL,
                                      "participant: step %s of saga %s is "
                                      "served twice (by %s and by %s)",
                                      x->step, x->saga, da->name, db->name);
                    }
                }
            }
        }
    }
    return LOOM_OK;
}

static loom_err
pt_check(loom_runtime *rt, const loom_participant_config *cfg, char *err,
         size_t errlen)
{
    if (cfg->transport == NULL || cfg->defs == NULL || cfg->n_defs == 0) {
        return pt_err(err, errlen, LOOM_EINVAL,
                      "participant: a transport and at least one def are "
                      "required");
    }
    if (loom__transport_runtime(cfg->transport) != rt) {
        return pt_err(err, errlen, LOOM_EINVAL,
                      "participant: the transport runs on another runtime");
    }
    if (cfg->outbox != NULL && !loom__outbox_name_ok(cfg->outbox)) {
        return pt_err(err, errlen, LOOM_EINVAL,
                      "participant: \"%.80s\" is not an outbox name (1 to %d "
                      "letters, digits, '_', '-', '.')",
                      cfg->outbox, LOOM_OUTBOX_MAX_NAME);
    }
    return pt_check_defs(cfg, err, errlen);
}

/* ---- life cycle ---------------------------------------------------------- */

static void
pt_free(loom_participant *p)
{
    loom_inbox_consumer_close(p->ic);
    loom_store_close(p->store);
    loom__arena_free(&p->arena);
    loom__append_many_free(&p->appends);
    loom__outbox_batch_free(&p->replies);
    loom_free(p->notes);
    loom_free(p->defs);
    loom_free(p->group);
    loom_free(p->outbox);
    loom_free(p);
}

/* Copies what the participant keeps of cfg (the defs array, names). */
static loom_err
pt_copy(loom_participant *p, const loom_participant_config *cfg)
{
    p->defs = loom_malloc(cfg->n_defs * sizeof *p->defs);
    if (p->defs == NULL) {
        return LOOM_ENOMEM;
    }
    memcpy(p->defs, cfg->defs, cfg->n_defs * sizeof *p->defs);
    p->n_defs = cfg->n_defs;
    p->outbox = loom__strdup(cfg->outbox ? cfg->outbox : LOOM_OUTBOX_DEFAULT);
    if (cfg->group != NULL) {
        p->group = loom__strdup(cfg->group);
    } else {
        const char *name = cfg->defs[0]->name;
        size_t n = strlen(name) + sizeof PT_GROUP_SUFFIX;
        p->group = loom_malloc(n);
        if (p->group != NULL) {
            snprintf(p->group, n, "%s%s", name, PT_GROUP_SUFFIX);
        }
    }
    return p->outbox && p->group ? LOOM_OK : LOOM_ENOMEM;
}

/* Subscribes to the distinct def names, as one inbox consumer. */
static loom_err
pt_consume(loom_participant *p, const loom_participant_config *cfg, char *err,
           size_t errlen)
{
    loom_consumer_config cc = LOOM_CONSUMER_CONFIG_INIT;
    loom_inbox_consumer_config icfg = LOOM_INBOX_CONSUMER_CONFIG_INIT;
    const char **topics = loom_malloc(p->n_defs * sizeof *topics);
    size_t n = 0;

    if (topics == NULL) {
        return pt_err(err, errlen, LOOM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < p->n_defs; i++) {
        size_t j = 0;
        while (j < n && strcmp(topics[j], p->defs[i]->name) != 0) {
            j++;
        }
        if (j == n) {
            topics[n++] = p->defs[i]->name;
        }
    }
    cc.group = p->group;
    cc.topics = topics;
    cc.n_topics = n;
    cc.batch = cfg->batch ? cfg->batch : PT_DEFAULT_BATCH;
    icfg.conninfo = cfg->conninfo;
    icfg.consumer = p->group;
    icfg.max_conflicts = cfg->max_conflicts;
    icfg.settled = pt_settled;
    loom_err rc = loom_inbox_consumer_open(
        cfg->transport, &cc, &icfg, pt_on_message, p, &p->ic, err, errlen);
    if (rc == LOOM_OK) {
        loom__inbox_consumer_hooks(p->ic, loom__participant_begin,
                                   loom__participant_end, p);
    }
    loom_free(topics);
    return rc;
}

loom_err
loom_participant_open(loom_runtime *rt, const loom_participant_config *cfg,
                      loom_participant **out, char *err, size_t errlen)
{
    loom_store_config sc = LOOM_STORE_CONFIG_INIT;
    loom_participant *p;
    loom_err rc;

    pt_err(err, errlen, LOOM_OK, "%s", "");
    if (out != NULL) {
        *out = NULL;
    }
    if (rt == NULL || cfg == NULL || out == NULL) {
        return pt_err(err, errlen, LOOM_EINVAL,
                      "participant: a runtime, a config and a result "
                      "pointer are required");
    }
    rc = pt_check(rt, cfg, err, errlen);
    if (rc != LOOM_OK) {
        return rc;
    }
    p = loom_malloc(sizeof *p);
    if (p == NULL) {
        return pt_err(err, errlen, LOOM_ENOMEM, "out of memory");
    }
    memset(p, 0, sizeof *p);
    loom__arena_init(&p->arena);
    loom__append_many_init(&p->appends);
    loom__outbox_batch_init(&p->replies);
    rc = pt_copy(p, cfg);
    if (rc != LOOM_OK) {
        pt_err(err, errlen, rc, "out of memory");
        goto fail;
    }
    /* Loads block the loop on a connection of their own: the inbox
     * consumer's is busy with the transaction being built. */
    sc.conninfo = cfg->conninfo;
    sc.application_name = "eventloom participant";
    rc = loom_store_open(&p->store, &sc, err, errlen);
    if (rc == LOOM_OK) {
        rc = pt_consume(p, cfg, err, errlen);
    }
    if (rc != LOOM_OK) {
        goto fail;
    }
    *out = p;
    return LOOM_OK;
fail:
    pt_free(p);
    return rc;
}

void
loom_participant_close(loom_participant *p)
{
    if (p != NULL) {
        pt_free(p);
    }
}

loom_err
loom_participant_stats_get(const loom_participant *p,
                           loom_participant_stats *out)
{
    loom_inbox_consumer_stats st;

    if (p == NULL || out == NULL) {
        return LOOM_EINVAL;
    }
    loom_err rc = loom_inbox_consumer_stats_get(p->ic, &st);
    if (rc != LOOM_OK) {
        return rc;
    }
    out->handled = st.handled;
    out->failures = p->failures;
    out->duplicates = st.duplicates;
    out->conflicts = st.conflicts;
    out->errors = st.failed;
    out->rejected = st.rejected;
    return LOOM_OK;
}
