/* Printing events as table rows or JSON lines (see evout.h). */
#include "evout.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "json.h"
#include "loom/alloc.h"
#include "loomctl.h"
#include "table.h"

static const ctl_col evout_stream_cols[] = {
    {"POSITION", "position", CTL_COL_NUM, 0},
    {"VERSION", "version", CTL_COL_NUM, 0},
    {"TYPE", "type", CTL_COL_TEXT, 0},
    {"RECORDED", "recorded_at", CTL_COL_TEXT, CTL_COL_KEEP},
    {"DATA", "data", CTL_COL_TEXT, CTL_COL_CUT_FIRST},
    {"META", "meta", CTL_COL_TEXT, CTL_COL_OPTIONAL | CTL_COL_CUT_FIRST},
};

static const ctl_col evout_all_cols[] = {
    {"POSITION", "position", CTL_COL_NUM, 0},
    {"TX", "tx", CTL_COL_NUM, 0},
    {"STREAM", "stream", CTL_COL_TEXT, 0},
    {"VERSION", "version", CTL_COL_NUM, 0},
    {"TYPE", "type", CTL_COL_TEXT, 0},
    {"RECORDED", "recorded_at", CTL_COL_TEXT, CTL_COL_KEEP},
    {"DATA", "data", CTL_COL_TEXT, CTL_COL_CUT_FIRST},
    {"META", "meta", CTL_COL_TEXT, CTL_COL_OPTIONAL | CTL_COL_CUT_FIRST},
};

struct ctl_evout {
    ctl_evout_kind kind;
    int json;
    const loom_registry *reg;
    ctl_table *table; /* table mode only */
    loom__buf line;   /* scratch: a JSON line or the META cell */
};

ctl_evout *
ctl_evout_new(ctl_evout_kind kind, int json, const loom_registry *reg)
{
    ctl_evout *o = loom_malloc(sizeof *o);

    if (o == NULL)
        return NULL;
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->json = json;
    o->reg = reg;
    if (!json) {
        o->table = kind == CTL_EVOUT_ALL
                       ? ctl_table_new(evout_all_cols, 8, 0, stdout)
                       : ctl_table_new(evout_stream_cols, 6, 0, stdout);
        if (o->table == NULL) {
            loom_free(o);
            return NULL;
        }
    }
    return o;
}

void
ctl_evout_free(ctl_evout *o)
{
    if (o == NULL)
        return;
    ctl_table_free(o->table);
    loom__buf_free(&o->line);
    loom_free(o);
}

size_t
ctl_evout_pending(const ctl_evout *o)
{
    return o->table != NULL ? ctl_table_rows(o->table) : 0;
}

void
ctl_format_time(int64_t us, char out[32])
{
    /* Floor division, so times before 1970 still print correctly. */
    int64_t sec = us / 1000000 - (us % 1000000 < 0);
    int64_t ms = (us - sec * 1000000) / 1000;
    time_t t = (time_t) sec;
    struct tm tm;
    size_t n;

    /* 24 bytes for years 0 to 9999; anything else prints as a number. */
    if (gmtime_r(&t, &tm) == NULL ||
        (n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm)) == 0 || n > 19) {
        snprintf(out, 32, "%" PRId64 "us", us);
        return;
    }
    snprintf(out + n, 32 - n, ".%03dZ", (int) ms);
}

/* The payload as JSON (*json, free with loom_free()), or NULL with 0 when
 * it is not decodable. -1 when out of memory. */
static int
evout_decode(const ctl_evout *o, const loom_event *ev, char **json)
{
    loom_err rc =
        loom_registry_to_json(o->reg, ev->type, ev->data, ev->data_len, json);

    if (rc == LOOM_OK)
        return 0;
    *json = NULL;
    if (rc == LOOM_EDECODE)
        return 0;
    ctl_fail("decoding event %" PRId64 " (type \"%s\"): %s", ev->position,
             ev->type, loom_strerror(rc));
    return -1;
}

static void
evout_json_line(ctl_evout *o, const loom_event *ev, const char *data)
{
    loom__buf *b = &o->line;
    char id[LOOM_UUID_STRLEN], at[32];

    loom_uuid_format(&ev->id, id);
    ctl_format_time(ev->recorded_at, at);
    loom__buf_reset(b);
    loom__buf_putc(b, '{');
    ctl_json_ki64(b, "position", ev->position);
    ctl_json_ku64(b, "tx", ev->tx);
    ctl_json_kstr(b, "stream", ev->stream);
    ctl_json_ki64(b, "version", ev->version);
    ctl_json_kstr(b, "id", id);
    ctl_json_kstr(b, "type", ev->type);
    ctl_json_ki64(b, "schema_version", ev->schema_version);
    ctl_json_kstr(b, "recorded_at", at);
    ctl_json_kraw(b, "data", data);
    if (data == NULL) {
        ctl_json_key(b, "data_base64");
        loom__json_base64(b, ev->data, ev->data_len);
    }
    ctl_json_kstr(b, "correlation_id", ev->correlation_id);
    ctl_json_kstr(b, "causation_id", ev->causation_id);
    ctl_json_key(b, "headers");
    loom__buf_putc(b, '{');
    for (size_t i = 0; i < ev->n_headers; i++) {
        const loom_header *h = &ev->headers[i];
        /* Header keys are data: escaped like any other string. */
        if (i > 0)
            loom__buf_putc(b, ',');
        ctl_json_str(b, h->key, strlen(h->key));
        loom__buf_putc(b, ':');
        ctl_json_str(b, h->value, strlen(h->value));
    }
    loom__buf_puts(b, "}}\n");
}

/* The META cell: "corr=.. cause=.. key=value ...", empty when none. */
static const char *
evout_meta(ctl_evout *o, const loom_event *ev)
{
    loom__buf *b = &o->line;

    loom__buf_reset(b);
    loom__buf_put(b, "", 0);
    if (ev->correlation_id != NULL)
        loom__buf_printf(b, "corr=%s", ev->correlation_id);
    if (ev->causation_id != NULL)
        loom__buf_printf(b, "%scause=%s", b->len ? " " : "", ev->causation_id);
    for (size_t i = 0; i < ev->n_headers; i++)
        loom__buf_printf(b, "%s%s=%s", b->len ? " " : "", ev->headers[i].key,
                         ev->headers[i].value);
    return loom__buf_str(b);
}

static void
evout_row(ctl_evout *o, const loom_event *ev, const char *data)
{
    ctl_table *t = o->table;
    char at[32];

    ctl_format_time(ev->recorded_at, at);
    ctl_table_cellf(t, "%" PRId64, ev->position);
    if (o->kind == CTL_EVOUT_ALL) {
        ctl_table_cellf(t, "%" PRIu64, ev->tx);
        ctl_table_cell(t, ev->stream);
    }
    ctl_table_cellf(t, "%" PRId64, ev->version);
    ctl_table_cell(t, ev->type);
    ctl_table_cell(t, at);
    if (data != NULL)
        ctl_table_cell(t, data);
    else
        ctl_table_cellf(t, "<%zu bytes, undecodable>", ev->data_len);
    ctl_table_cell(t, evout_meta(o, ev));
}

int
ctl_evout_add(ctl_evout *o, const loom_event *ev)
{
    char *data = NULL;
    int rc = 0;

    if (evout_decode(o, ev, &data) != 0)
        return -1;
    if (o->json) {
        evout_json_line(o, ev, data);
        if (o->line.failed) {
            ctl_fail("formatting event %" PRId64 ": out of memory",
                     ev->position);
            rc = -1;
        } else if (fwrite(o->line.data, 1, o->line.len, stdout) !=
                   o->line.len) {
            rc = -1; /* main() reports the write error */
        }
    } else {
        evout_row(o, ev, data);
    }
    loom_free(data);
    return rc;
}

int
ctl_evout_flush(ctl_evout *o)
{
    if (o->table == NULL)
        return fflush(stdout) == 0 ? 0 : -1;
    if (ctl_table_flush(o->table) != 0) {
        ctl_fail("printing events: out of memory or a write error");
        return -1;
    }
    return 0;
}
