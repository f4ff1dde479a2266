/*
 * loomctl topics: the partitioned topic streams (loom/topics.h). This
 * file dispatches to the subcommands and holds the ones that change
 * settings: create, alter and retention. Listings are in topics_show.c,
 * consumer groups in topics_lag.c, dead letters in topics_dlq.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fmt.h"
#include "json.h"
#include "stats.h"
#include "topics.h"

enum {
    TP_CREATE,
    TP_ALTER,
    TP_LIST,
    TP_DESCRIBE,
    TP_LAG,
    TP_RESET,
    TP_DLQ,
    TP_RETENTION
};

enum {
    TP_OPT_PARTITIONS = 1,
    TP_OPT_RETENTION_MS,
    TP_OPT_RETENTION_BYTES,
    TP_OPT_DEDUP,
    TP_OPT_MAX_DELIVERIES,
    TP_OPT_OTHER /* options of the other subcommands */
};

static const char *const tp_subs[] = {"create",   "alter",     "list",
                                      "describe", "lag",       "reset",
                                      "dlq",      "retention", NULL};

/* Every subcommand's options with their values, to find the subcommand
 * among them ("topics --partitions 3 create orders" works too). */
static const ctl_opt tp_any_opts[] = {
    {"--partitions", 1, TP_OPT_PARTITIONS},
    {"--retention-ms", 1, TP_OPT_RETENTION_MS},
    {"--retention-bytes", 1, TP_OPT_RETENTION_BYTES},
    {"--dedup-window-ms", 1, TP_OPT_DEDUP},
    {"--max-deliveries", 1, TP_OPT_MAX_DELIVERIES},
    {"--to", 1, TP_OPT_OTHER},
    {"--partition", 1, TP_OPT_OTHER},
    {"--group", 1, TP_OPT_OTHER},
    {"--offset", 1, TP_OPT_OTHER},
    {"--limit", 1, TP_OPT_OTHER},
    {NULL, 0, 0},
};

static const ctl_opt tp_cfg_opts[] = {
    {"--partitions", 1, TP_OPT_PARTITIONS},
    {"--retention-ms", 1, TP_OPT_RETENTION_MS},
    {"--retention-bytes", 1, TP_OPT_RETENTION_BYTES},
    {"--dedup-window-ms", 1, TP_OPT_DEDUP},
    {"--max-deliveries", 1, TP_OPT_MAX_DELIVERIES},
    {NULL, 0, 0},
};

/* ------------------------------------------------------------------ */
/* Settings on the command line                                        */

/* Applies one settings option to *cfg; the ranges are those of
 * loom/topics.h, so a bad number is a usage error naming the option. */
static int
tp_cfg_option(const ctl *c, int opt, const char *val, loom_topic_config *cfg)
{
    int64_t v = 0;
    int rc;

    switch (opt) {
    case TP_OPT_PARTITIONS:
        rc = ctl_parse_i64(c, "--partitions", val, 1, LOOM_MAX_PARTITIONS, &v);
        cfg->partitions = (int32_t) v;
        return rc;
    case TP_OPT_RETENTION_MS:
        return ctl_parse_i64(c, "--retention-ms", val, 0, CTL_TOPICS_MAX_MS,
                             &cfg->retention_ms);
    case TP_OPT_RETENTION_BYTES:
        return ctl_parse_i64(c, "--retention-bytes", val, 0, INT64_MAX,
                             &cfg->retention_bytes);
    case TP_OPT_DEDUP:
        return ctl_parse_i64(c, "--dedup-window-ms", val, 0, CTL_TOPICS_MAX_MS,
                             &cfg->dedup_window_ms);
    default:
        rc = ctl_parse_i64(c, "--max-deliveries", val, 1, 1000, &v);
        cfg->max_deliveries = (int32_t) v;
        return rc;
    }
}

/* NAME and settings options; *set counts the options given. */
static int
tp_cfg_parse(ctl *c, int argc, char **argv, const char **name,
             loom_topic_config *cfg, int *set)
{
    const char *val;
    ctl_args a;
    int opt, rc = CTL_OK;

    *name = NULL;
    *set = 0;
    ctl_args_init(&a, argc, argv);
    while (rc == CTL_OK &&
           (opt = ctl_args_next(c, &a, tp_cfg_opts, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        if (opt == CTL_ARG_POS && *name != NULL)
            return ctl_usage_error(c, "unexpected argument \"%s\"", val);
        if (opt == CTL_ARG_POS) {
            *name = val;
            continue;
        }
        rc = tp_cfg_option(c, opt, val, cfg);
        (*set)++;
    }
    if (rc == CTL_OK && *name == NULL)
        return ctl_usage_error(c, "give the topic's NAME");
    return rc;
}

/* ------------------------------------------------------------------ */
/* Printing settings                                                   */

/* "3 partitions, retention 7d, dedup window 5m, max deliveries 5". */
static void
tp_settings(const loom_topic_config *cfg, char *out, size_t len)
{
    char ret[80], dedup[32];

    ctl_topics_fmt_retention(cfg->retention_ms, cfg->retention_bytes, ret,
                             sizeof ret);
    if (cfg->dedup_window_ms > 0)
        ctl_topics_fmt_ms(cfg->dedup_window_ms, dedup);
    else
        snprintf(dedup, sizeof dedup, "off");
    snprintf(out, len,
             "%d partition%s, retention %s, dedup window %s, max "
             "deliveries %d",
             (int) cfg->partitions, cfg->partitions == 1 ? "" : "s", ret, dedup,
             (int) cfg->max_deliveries);
}

/* The members of the settings' JSON: ms and bytes, null for no limit. */
static void
tp_settings_json(loom__buf *b, const loom_topic_info *info)
{
    const loom_topic_config *cfg = &info->cfg;

    ctl_json_kstr(b, "topic", info->name);
    ctl_json_ki64(b, "partitions", cfg->partitions);
    if (cfg->retention_ms > 0)
        ctl_json_ki64(b, "retention_ms", cfg->retention_ms);
    else
        ctl_json_kraw(b, "retention_ms", NULL);
    if (cfg->retention_bytes > 0)
        ctl_json_ki64(b, "retention_bytes", cfg->retention_bytes);
    else
        ctl_json_kraw(b, "retention_bytes", NULL);
    ctl_json_ki64(b, "dedup_window_ms", cfg->dedup_window_ms);
    ctl_json_ki64(b, "max_deliveries", cfg->max_deliveries);
}

/* ------------------------------------------------------------------ */
/* create                                                              */

int
ctl_topics_create(ctl *c, int argc, char **argv)
{
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;
    loom__buf b = LOOM__BUF_INIT;
    loom_topic_info info;
    const char *name;
    char settings[256];
    loom_store *s;
    loom_err err;
    int set, rc = tp_cfg_parse(c, argc, argv, &name, &cfg, &set);

    if (rc != CTL_OK)
        return rc;
    if (cfg.partitions == -1)
        return ctl_usage_error(c,
                               "give the number of partitions: "
                               "--partitions N (1 to %d)",
                               LOOM_MAX_PARTITIONS);
    s = ctl_store_open(c, LOOM_MIGRATE_CHECK);
    if (s == NULL)
        return CTL_ERR;
    err = loom_topic_create(s, name, &cfg);
    /* Read back what was stored: the defaults are the database's. */
    if (err == LOOM_OK)
        err = loom_topic_describe(s, name, &info);
    if (err != LOOM_OK) {
        rc = ctl_topics_api_fail(c, s, err);
    } else if (c->json) {
        loom__buf_putc(&b, '{');
        tp_settings_json(&b, &info);
        loom__buf_putc(&b, '}');
        rc = ctl_topics_json_out(&b, "the topic");
    } else {
        tp_settings(&info.cfg, settings, sizeof settings);
        printf("created topic %s: %s\n", info.name, settings);
    }
    loom__buf_free(&b);
    loom_store_close(s);
    return rc;
}

/* ------------------------------------------------------------------ */
/* alter                                                               */

/* Appends ", what old -> new" to `out` when the values differ. */
static void
tp_change(loom__buf *out, const char *what, const char *old, const char *now)
{
    if (strcmp(old, now) == 0)
        return;
    loom__buf_printf(out, "%s%s %s -> %s", out->len > 0 ? ", " : "", what, old,
                     now);
}

static void
tp_print_changes(const loom_topic_info *was, const loom_topic_info *is)
{
    loom__buf out = LOOM__BUF_INIT;
    char a[80], b[80];

    snprintf(a, sizeof a, "%d", (int) was->cfg.partitions);
    snprintf(b, sizeof b, "%d", (int) is->cfg.partitions);
    tp_change(&out, "partitions", a, b);
    ctl_topics_fmt_retention(was->cfg.retention_ms, 0, a, sizeof a);
    ctl_topics_fmt_retention(is->cfg.retention_ms, 0, b, sizeof b);
    tp_change(&out, "retention by age", a, b);
    snprintf(a, sizeof a, "none");
    snprintf(b, sizeof b, "none");
    if (was->cfg.retention_bytes > 0)
        ctl_stats_bytes(was->cfg.retention_bytes, a);
    if (is->cfg.retention_bytes > 0)
        ctl_stats_bytes(is->cfg.retention_bytes, b);
    tp_change(&out, "retention by size", a, b);
    snprintf(a, sizeof a, "off");
    snprintf(b, sizeof b, "off");
    if (was->cfg.dedup_window_ms > 0)
        ctl_topics_fmt_ms(was->cfg.dedup_window_ms, a);
    if (is->cfg.dedup_window_ms > 0)
        ctl_topics_fmt_ms(is->cfg.dedup_window_ms, b);
    tp_change(&out, "dedup window", a, b);
    snprintf(a, sizeof a, "%d", (int) was->cfg.max_deliveries);
    snprintf(b, sizeof b, "%d", (int) is->cfg.max_deliveries);
    tp_change(&out, "max deliveries", a, b);
    if (out.len == 0)
        printf("topic %s is unchanged: it already had these settings\n",
               is->name);
    else
        printf("altered topic %s: %s\n", is->name, out.failed ? "?" : out.data);
    /* Kafka's caveat: the partition of a key is its hash modulo the
     * count, so most keys move. */
    if (is->cfg.partitions > was->cfg.partitions)
        printf("note: keyed messages published from now on may go to other "
               "partitions than before; order per key holds among the new "
               "ones\n");
    loom__buf_free(&out);
}

int
ctl_topics_alter(ctl *c, int argc, char **argv)
{
    loom_topic_config cfg = LOOM_TOPIC_CONFIG_INIT;
    loom_topic_info was, is;
    loom__buf b = LOOM__BUF_INIT;
    const char *name;
    loom_store *s;
    loom_err err;
    int set, rc = tp_cfg_parse(c, argc, argv, &name, &cfg, &set);

    if (rc != CTL_OK)
        return rc;
    if (set == 0)
        return ctl_usage_error(c, "give at least one setting to change "
                                  "(--partitions, --retention-ms, "
                                  "--retention-bytes, --dedup-window-ms, "
                                  "--max-deliveries)");
    s = ctl_store_open(c, LOOM_MIGRATE_CHECK);
    if (s == NULL)
        return CTL_ERR;
    err = loom_topic_describe(s, name, &was);
    if (err == LOOM_OK)
        err = loom_topic_alter(s, name, &cfg);
    if (err == LOOM_OK)
        err = loom_topic_describe(s, name, &is);
    if (err != LOOM_OK) {
        rc = ctl_topics_api_fail(c, s, err);
    } else if (c->json) {
        loom__buf_putc(&b, '{');
        tp_settings_json(&b, &is);
        ctl_json_ki64(&b, "partitions_before", was.cfg.partitions);
        loom__buf_putc(&b, '}');
        rc = ctl_topics_json_out(&b, "the topic");
    } else {
        tp_print_changes(&was, &is);
    }
    loom__buf_free(&b);
    loom_store_close(s);
    return rc;
}

/* ------------------------------------------------------------------ */
/* retention                                                           */

int
ctl_topics_retention(ctl *c, int argc, char **argv)
{
    loom__buf b = LOOM__BUF_INIT;
    const char *val;
    int64_t removed = 0;
    char count[32];
    loom_store *s;
    loom_err err;
    ctl_args a;
    int opt, rc = CTL_OK;

    ctl_args_init(&a, argc, argv);
    while ((opt = ctl_args_next(c, &a, NULL, &val)) != CTL_ARG_END) {
        if (opt == CTL_ARG_BAD)
            return CTL_USAGE;
        return ctl_usage_error(c, "unexpected argument \"%s\"", val);
    }
    s = ctl_store_open(c, LOOM_MIGRATE_CHECK);
    if (s == NULL)
        return CTL_ERR;
    err = loom_topics_retention(s, &removed);
    if (err != LOOM_OK) {
        /* Steps that completed stay done; say how far it got. */
        rc = ctl_topics_api_fail(c, s, err);
        if (removed > 0)
            ctl_fail("topics retention: %" PRId64 " rows were removed before "
                     "the failure; running it again goes on",
                     removed);
    } else if (c->json) {
        loom__buf_putc(&b, '{');
        ctl_json_ki64(&b, "removed", removed);
        loom__buf_putc(&b, '}');
        rc = ctl_topics_json_out(&b, "the result");
    } else {
        ctl_fmt_count(removed, count);
        printf("retention removed %s message%s past their topic's "
               "retention\n",
               count, removed == 1 ? "" : "s");
    }
    loom__buf_free(&b);
    loom_store_close(s);
    return rc;
}

/* ------------------------------------------------------------------ */

int
ctl_cmd_topics(ctl *c, int argc, char **argv)
{
    static int (*const run[])(ctl *, int, char **) = {
        ctl_topics_create,   ctl_topics_alter,     ctl_topics_list,
        ctl_topics_describe, ctl_topics_lag,       ctl_topics_reset,
        ctl_topics_dlq,      ctl_topics_retention,
    };
    int which, rc = ctl_args_sub(c, argc, argv, tp_any_opts, tp_subs, &which);

    if (rc != CTL_OK)
        return rc;
    return run[which](c, argc, argv);
}
