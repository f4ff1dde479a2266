/*
 * A small table printer for loomctl's output. Columns get a header and a
 * width computed from their content; numbers are right-aligned. When
 * stdout is a terminal, rows are fitted to its width by shortening text
 * cells with "…" (payload columns first, then the widest); into a pipe
 * or file nothing is cut. Cells
 * are shown safely: control characters are escaped (\n, \x1b) and bytes
 * that are not UTF-8 become U+FFFD, so a stream name cannot move the
 * cursor or break the layout.
 *
 * In JSON mode the same rows come out as JSON lines, one object per row
 * keyed by each column's `key`.
 *
 * Rows are buffered until ctl_table_flush(). A table flushed several
 * times (tail --follow) prints its header once, again only when an
 * optional column appears; column widths only grow between flushes.
 */
#ifndef LOOMCTL_TABLE_H
#define LOOMCTL_TABLE_H

#include <stddef.h>
#include <stdio.h>

typedef enum ctl_col_kind {
    CTL_COL_TEXT, /* left-aligned; a JSON string */
    CTL_COL_NUM,  /* right-aligned, never cut; a JSON number ("" is null) */
    CTL_COL_JSON  /* left-aligned; embedded as JSON ("" is null) */
} ctl_col_kind;

/* Column flags. */
#define CTL_COL_OPTIONAL  1 /* hidden while every cell of it is empty */
#define CTL_COL_KEEP      2 /* never shortened (timestamps) */
#define CTL_COL_CUT_FIRST 4 /* shortened before the others (payloads) */

typedef struct ctl_col {
    const char *header; /* "STREAM" */
    const char *key;    /* "stream", for JSON mode */
    ctl_col_kind kind;
    int flags;
} ctl_col;

typedef struct ctl_table ctl_table;

/* A table with `ncols` columns (borrowed: must outlive the table) written
 * to `out`, as JSON lines when `json`. NULL when out of memory. */
ctl_table *ctl_table_new(const ctl_col *cols, size_t ncols, int json,
                         FILE *out);

/* Frees `t`; NULL is a no-op. Unflushed rows are dropped. */
void ctl_table_free(ctl_table *t);

/* Appends the next cell, filling rows left to right. NULL is an empty
 * cell (null in JSON). The text is copied. */
void ctl_table_cell(ctl_table *t, const char *s);
void ctl_table_celln(ctl_table *t, const char *s, size_t n);
void ctl_table_cellf(ctl_table *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Number of complete rows waiting to be flushed. */
size_t ctl_table_rows(const ctl_table *t);

/* Prints the buffered rows and forgets them. Returns 0, or -1 after an
 * allocation failure (since the last flush) or a write error. */
int ctl_table_flush(ctl_table *t);

#endif /* LOOMCTL_TABLE_H */
