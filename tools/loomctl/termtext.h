/*
 * Text shown on a terminal: cells made safe to print and measured in
 * columns. Control characters are escaped (\n, \t, \x1b, \u0085) so that
 * data cannot move the cursor or change colours, bytes that are not
 * UTF-8 become U+FFFD, and East Asian wide characters count two columns.
 */
#ifndef LOOMCTL_TERMTEXT_H
#define LOOMCTL_TERMTEXT_H

#include <stddef.h>

#include "buf.h"

/* Appends the shown form of `n` bytes at `s` to `b`; returns its width in
 * columns. */
size_t ctl_term_put(loom__buf *b, const char *s, size_t n);

/* Appends the longest prefix of shown text `p` (`len` bytes) that fits in
 * `width - 1` columns, then "…"; returns the columns written. */
size_t ctl_term_cut(loom__buf *b, const char *p, size_t len, size_t width);

#endif /* LOOMCTL_TERMTEXT_H */
