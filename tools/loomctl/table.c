/* The table printer (see table.h); cell text goes through termtext.c. */
#include "table.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "buf.h"
#include "json.h"
#include "loom/alloc.h"
#include "termtext.h"

#define TBL_GAP       2 /* spaces between columns */
#define TBL_MIN_WIDTH 8 /* a shortened column keeps at least this much */

typedef struct tbl_cell {
    size_t off, len; /* in t->text */
    size_t width;    /* columns the shown text takes */
    int null;
} tbl_cell;

struct ctl_table {
    const ctl_col *cols;
    size_t ncols;
    int json;
    FILE *out;
    loom__buf text;  /* every cell's bytes, shown form in table mode */
    tbl_cell *cells; /* row-major */
    size_t ncells, cap;
    size_t *natural;      /* widest content seen so far, per column */
    size_t *width;        /* widths used for the current flush */
    unsigned char *shown; /* columns visible when the header was printed */
    int header_done;
    int failed;
    size_t term; /* terminal width, 0 when not a terminal */
};

static size_t
tbl_term_width(FILE *out)
{
    struct winsize ws;
    int fd = fileno(out);

    if (fd < 0 || !isatty(fd))
        return 0;
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 80;
}

ctl_table *
ctl_table_new(const ctl_col *cols, size_t ncols, int json, FILE *out)
{
    ctl_table *t = loom_malloc(sizeof *t);

    if (t == NULL)
        return NULL;
    memset(t, 0, sizeof *t);
    t->cols = cols;
    t->ncols = ncols;
    t->json = json;
    t->out = out;
    t->natural = loom_malloc(ncols * sizeof *t->natural);
    t->width = loom_malloc(ncols * sizeof *t->width);
    t->shown = loom_malloc(ncols);
    if (t->natural == NULL || t->width == NULL || t->shown == NULL) {
        ctl_table_free(t);
        return NULL;
    }
    for (size_t i = 0; i < ncols; i++) {
        t->natural[i] = strlen(cols[i].header);
        t->shown[i] = 0;
    }
    t->term = json ? 0 : tbl_term_width(out);
    /* Allocate now, so cell offsets always point into a buffer. */
    loom__buf_put(&t->text, "", 0);
    if (t->text.failed) {
        ctl_table_free(t);
        return NULL;
    }
    return t;
}

void
ctl_table_free(ctl_table *t)
{
    if (t == NULL)
        return;
    loom__buf_free(&t->text);
    loom_free(t->cells);
    loom_free(t->natural);
    loom_free(t->width);
    loom_free(t->shown);
    loom_free(t);
}

size_t
ctl_table_rows(const ctl_table *t)
{
    return t->ncells / t->ncols;
}

void
ctl_table_celln(ctl_table *t, const char *s, size_t n)
{
    tbl_cell *c;

    if (t->ncells == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        tbl_cell *p = loom_realloc(t->cells, cap * sizeof *p);
        if (p == NULL) {
            t->failed = 1;
            return;
        }
        t->cells = p;
        t->cap = cap;
    }
    c = &t->cells[t->ncells++];
    c->off = t->text.len;
    c->null = s == NULL;
    c->width = 0;
    if (s != NULL && t->json)
        loom__buf_put(&t->text, s, n);
    else if (s != NULL)
        c->width = ctl_term_put(&t->text, s, n);
    c->len = t->text.len - c->off;
    if (t->text.failed)
        t->failed = 1;
}

void
ctl_table_cell(ctl_table *t, const char *s)
{
    ctl_table_celln(t, s, s != NULL ? strlen(s) : 0);
}

void
ctl_table_cellf(ctl_table *t, const char *fmt, ...)
{
    char small[128], *big;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t) n < sizeof small) {
        ctl_table_celln(t, small, (size_t) n);
        return;
    }
    /* Rare: a long formatted cell goes through the heap. */
    big = n >= 0 ? loom_malloc((size_t) n + 1) : NULL;
    if (big == NULL) {
        t->failed = 1;
        ctl_table_cell(t, "");
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t) n + 1, fmt, ap);
    va_end(ap);
    ctl_table_celln(t, big, (size_t) n);
    loom_free(big);
}

/* ------------------------------------------------------------------ */
/* JSON mode                                                           */

static void
tbl_json_row(ctl_table *t, loom__buf *line, const tbl_cell *row)
{
    loom__buf_reset(line);
    loom__buf_putc(line, '{');
    for (size_t i = 0; i < t->ncols; i++) {
        const tbl_cell *c = &row[i];
        const char *p = t->text.data + c->off;
        ctl_json_key(line, t->cols[i].key);
        if (c->null || (c->len == 0 && t->cols[i].kind != CTL_COL_TEXT))
            loom__buf_puts(line, "null");
        else if (t->cols[i].kind == CTL_COL_TEXT)
            ctl_json_str(line, p, c->len);
        else
            loom__buf_put(line, p, c->len);
    }
    loom__buf_puts(line, "}\n");
}

static int
tbl_flush_json(ctl_table *t)
{
    loom__buf line = LOOM__BUF_INIT;
    size_t rows = ctl_table_rows(t);
    int rc = 0;

    for (size_t r = 0; r < rows && rc == 0; r++) {
        tbl_json_row(t, &line, &t->cells[r * t->ncols]);
        if (line.failed)
            rc = -1;
        else if (fwrite(line.data, 1, line.len, t->out) != line.len)
            rc = -1;
    }
    loom__buf_free(&line);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Table mode                                                          */

/* Marks the columns to show; returns 1 when the set changed. */
static int
tbl_visible(ctl_table *t, size_t rows)
{
    int changed = 0;

    for (size_t i = 0; i < t->ncols; i++) {
        int show = !(t->cols[i].flags & CTL_COL_OPTIONAL) || t->shown[i];
        for (size_t r = 0; !show && r < rows; r++)
            show = t->cells[r * t->ncols + i].len > 0;
        if (show && !t->shown[i]) {
            t->shown[i] = 1;
            changed = 1;
        }
    }
    return changed;
}

/* The widest shown column that may still be shortened in this pass:
 * CTL_COL_CUT_FIRST columns when `first`, else the other text columns. */
static size_t
tbl_widest(const ctl_table *t, int first)
{
    size_t best = t->ncols;

    for (size_t i = 0; i < t->ncols; i++) {
        int flags = t->cols[i].flags;
        if (!t->shown[i] || t->cols[i].kind == CTL_COL_NUM ||
            (flags & CTL_COL_KEEP) || t->width[i] <= TBL_MIN_WIDTH ||
            !(flags & CTL_COL_CUT_FIRST) != !first)
            continue;
        if (best == t->ncols || t->width[i] > t->width[best])
            best = i;
    }
    return best;
}

/* Sets t->width: the natural widths, then, on a terminal, payload
 * columns and then the widest text columns shortened one character at a
 * time until the row fits. */
static void
tbl_fit(ctl_table *t, size_t rows)
{
    size_t total = 0, shown = 0;

    for (size_t i = 0; i < t->ncols; i++) {
        for (size_t r = 0; r < rows; r++) {
            size_t w = t->cells[r * t->ncols + i].width;
            if (w > t->natural[i])
                t->natural[i] = w;
        }
        t->width[i] = t->natural[i];
        if (t->shown[i]) {
            total += t->width[i] + (shown > 0 ? TBL_GAP : 0);
            shown++;
        }
    }
    for (int first = 1; first >= 0; first--) {
        while (t->term > 0 && total > t->term) {
            size_t best = tbl_widest(t, first);
            if (best == t->ncols)
                break; /* at the minimum: let the terminal wrap */
            t->width[best]--;
            total--;
        }
    }
}

static void
tbl_put_cell(ctl_table *t, loom__buf *line, size_t col, const char *p,
             size_t len, size_t w, int last)
{
    size_t width = t->width[col];
    size_t pad = w < width ? width - w : 0;

    if (t->cols[col].kind == CTL_COL_NUM) {
        loom__buf_printf(line, "%*s", (int) pad, "");
        loom__buf_put(line, p, len);
        return;
    }
    if (w > width)
        pad = width - ctl_term_cut(line, p, len, width);
    else
        loom__buf_put(line, p, len);
    if (!last)
        loom__buf_printf(line, "%*s", (int) pad, "");
}

static int
tbl_write_row(ctl_table *t, loom__buf *line, const tbl_cell *row, int header)
{
    size_t lastcol = 0;
    int first = 1;

    for (size_t i = 0; i < t->ncols; i++) {
        if (t->shown[i])
            lastcol = i;
    }
    loom__buf_reset(line);
    for (size_t i = 0; i < t->ncols; i++) {
        const char *h = t->cols[i].header;
        if (!t->shown[i])
            continue;
        if (!first)
            loom__buf_printf(line, "%*s", TBL_GAP, "");
        first = 0;
        if (header)
            tbl_put_cell(t, line, i, h, strlen(h), strlen(h), i == lastcol);
        else
            tbl_put_cell(t, line, i, t->text.data + row[i].off, row[i].len,
                         row[i].width, i == lastcol);
    }
    /* An empty last cell leaves the padding of the one before it. */
    while (line->len > 0 && line->data[line->len - 1] == ' ')
        line->data[--line->len] = '\0';
    loom__buf_putc(line, '\n');
    if (line->failed)
        return -1;
    return fwrite(line->data, 1, line->len, t->out) == line->len ? 0 : -1;
}

static int
tbl_flush_text(ctl_table *t)
{
    loom__buf line = LOOM__BUF_INIT;
    size_t rows = ctl_table_rows(t);
    int rc = 0;

    if (tbl_visible(t, rows))
        t->header_done = 0;
    tbl_fit(t, rows);
    if (!t->header_done && rows > 0) {
        rc = tbl_write_row(t, &line, NULL, 1);
        t->header_done = 1;
    }
    for (size_t r = 0; r < rows && rc == 0; r++)
        rc = tbl_write_row(t, &line, &t->cells[r * t->ncols], 0);
    loom__buf_free(&line);
    return rc;
}

int
ctl_table_flush(ctl_table *t)
{
    int rc = t->failed ? -1 : t->json ? tbl_flush_json(t) : tbl_flush_text(t);

    t->failed = 0;
    t->ncells = 0;
    loom__buf_reset(&t->text);
    if (rc == 0 && fflush(t->out) != 0)
        rc = -1;
    return rc;
}
