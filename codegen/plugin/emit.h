/*
 * The emitters: the text of the generated files, from a checked model.
 * Output depends only on the model (no time, no path of the machine), so
 * one .proto always gives the same bytes.
 */
#ifndef LOOM_GEN_EMIT_H
#define LOOM_GEN_EMIT_H

#include "model.h"

/* The layout of loom_saga_def and loom_participant_def this plugin
 * fills: LOOM_SAGA_ABI_VERSION of saga/include/loom/saga.h. */
#define GEN_SAGA_ABI 1u

/* "<stem>.loom.h": prototypes of the user's handlers, the tables. Free
 * the result with free(). */
char *gen_emit_header(const gen_file *f);

/* "<stem>.loom.c": adapters and tables. Free with free(). */
char *gen_emit_source(const gen_file *f);

/* "<stem>.<Service>.mmd": the saga as a Mermaid flowchart, which the
 * table also carries (loom_saga_def.diagram). Free with free(). */
char *gen_emit_diagram(const gen_file *f, const gen_saga *s);

#endif /* LOOM_GEN_EMIT_H */
