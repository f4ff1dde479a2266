/* Private allocation helpers shared by every module. */
#ifndef LOOM_ALLOC_INT_H
#define LOOM_ALLOC_INT_H

#include "loom/alloc.h"

/* A copy of `s` from loom_malloc(), or NULL when `s` is NULL or memory
 * runs out (callers that pass non-NULL treat NULL as LOOM_ENOMEM). */
char *loom__strdup(const char *s);

#endif /* LOOM_ALLOC_INT_H */
