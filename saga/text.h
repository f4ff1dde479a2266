/*
 * Private to saga/: the one rule for the text a saga puts in headers, log
 * rows and names (saga ids, step and saga names, topics, failure codes,
 * an operator's name): 1 to `max` bytes of UTF-8 without control
 * characters. Headers and log rows are read on terminals, and PostgreSQL
 * refuses text that is not UTF-8 with a message that does not say which
 * argument was wrong.
 */
#ifndef LOOM_SAGA_TEXT_H
#define LOOM_SAGA_TEXT_H

#include <stddef.h>

/* NULL when `s` follows the rule, else what is wrong with it ("is
 * empty", "is too long", "is not valid UTF-8", "contains a control
 * character", "is NULL"): a string literal. */
const char *loom__saga_text_problem(const char *s, size_t max);

#endif /* LOOM_SAGA_TEXT_H */
