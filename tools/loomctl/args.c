/*
 * Command-line parsing: global options anywhere on the line, each
 * command's own options, and strict number parsing (the whole argument,
 * in range, or a usage error naming the option).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loomctl.h"
#include "pgwire.h"

enum { ARG_DB = 1, ARG_JSON, ARG_TYPES, ARG_HELP, ARG_ROLE };

/* -h and --help are accepted anywhere; main() acts on them first. */
static const ctl_opt args_global[] = {
    {"--db", 1, ARG_DB},
    {"--json", 0, ARG_JSON},
    {"--types", 1, ARG_TYPES},
    {"--help", 0, ARG_HELP},
    {"-h", 0, ARG_HELP},
    {"--role", 1, ARG_ROLE},
    {NULL, 0, 0},
};

void
ctl_args_init(ctl_args *a, int argc, char **argv)
{
    a->argc = argc;
    a->argv = argv;
    a->i = 1;
    a->only_pos = 0;
}

/* Finds `arg` ("--name" or "--name=value") in `opts`; *inline_val is set
 * to the text after '=' if there is one. */
static const ctl_opt *
args_find(const ctl_opt *opts, const char *arg, const char **inline_val)
{
    const char *eq = strchr(arg, '=');
    size_t n = eq != NULL ? (size_t) (eq - arg) : strlen(arg);

    for (; opts != NULL && opts->name != NULL; opts++) {
        if (strlen(opts->name) == n && strncmp(opts->name, arg, n) == 0) {
            *inline_val = eq != NULL ? eq + 1 : NULL;
            return opts;
        }
    }
    return NULL;
}

static int
args_global_apply(ctl *c, int id, const char *val)
{
    switch (id) {
    case ARG_DB:
        c->db = val;
        break;
    case ARG_JSON:
        c->json = 1;
        break;
    case ARG_ROLE:
        c->role = val;
        break;
    case ARG_TYPES:
        if (val[0] == '\0')
            return ctl_usage_error(c, "--types needs the path of a shared "
                                      "object");
        if (c->ntypes == CTL_MAX_TYPES)
            return ctl_usage_error(c, "at most %d --types options",
                                   CTL_MAX_TYPES);
        c->types[c->ntypes++] = val;
        break;
    }
    return CTL_OK;
}

/* Takes the option's value, inline or from the next argument. */
static int
args_value(ctl *c, ctl_args *a, const ctl_opt *o, const char *inline_val,
           const char **val)
{
    if (!o->has_arg) {
        if (inline_val != NULL) {
            ctl_usage_error(c, "%s takes no value", o->name);
            return -1;
        }
        *val = NULL;
        return 0;
    }
    if (inline_val != NULL) {
        *val = inline_val;
        return 0;
    }
    if (a->i >= a->argc) {
        ctl_usage_error(c, "%s needs a value", o->name);
        return -1;
    }
    *val = a->argv[a->i++];
    return 0;
}

int
ctl_args_next(ctl *c, ctl_args *a, const ctl_opt *opts, const char **val)
{
    while (a->i < a->argc) {
        int at = a->i++;
        const char *arg = a->argv[at], *inline_val = NULL;
        const ctl_opt *o;

        *val = NULL;
        if (at == c->cmd_index || at == c->sub_index)
            continue;
        if (a->only_pos || arg[0] != '-' || strcmp(arg, "-") == 0) {
            *val = arg;
            return CTL_ARG_POS;
        }
        if (strcmp(arg, "--") == 0) {
            a->only_pos = 1;
            continue;
        }
        o = args_find(args_global, arg, &inline_val);
        if (o != NULL) {
            if (args_value(c, a, o, inline_val, val) != 0 ||
                args_global_apply(c, o->id, *val) != CTL_OK)
                return CTL_ARG_BAD;
            continue;
        }
        o = args_find(opts, arg, &inline_val);
        if (o == NULL) {
            ctl_usage_error(c, "unknown option \"%s\"", arg);
            return CTL_ARG_BAD;
        }
        if (args_value(c, a, o, inline_val, val) != 0)
            return CTL_ARG_BAD;
        return o->id;
    }
    return CTL_ARG_END;
}

int
ctl_args_sub(ctl *c, int argc, char **argv, const ctl_opt *opts,
             const char *const *names, int *which)
{
    ctl scratch = *c; /* globals are applied for real by the subcommand */
    char list[256] = "";
    const char *val;
    ctl_args a;
    int r, n = 0;

    ctl_args_init(&a, argc, argv);
    /* Options may come first ("parked --limit 5 list"); the subcommand
     * checks which of them it takes. */
    while ((r = ctl_args_next(&scratch, &a, opts, &val)) > 0)
        ;
    if (r == CTL_ARG_BAD)
        return CTL_USAGE;
    for (; names[n] != NULL; n++) {
        if (r == CTL_ARG_POS && strcmp(names[n], val) == 0) {
            c->sub = names[n];
            c->sub_index = a.i - 1;
            *which = n;
            return CTL_OK;
        }
    }
    for (int i = 0; i < n; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s",
                 i == 0       ? ""
                 : i == n - 1 ? " or "
                              : ", ",
                 names[i]);
    }
    if (r == CTL_ARG_END)
        return ctl_usage_error(c, "give a subcommand: %s", list);
    return ctl_usage_error(c, "unknown subcommand \"%s\" (expected %s)", val,
                           list);
}

/* strtoll and strtoull skip leading spaces and accept a sign; loomctl
 * wants plain digits (and '-' where negatives make sense). */
static int
args_digits(const char *s, int allow_minus)
{
    if (allow_minus && s[0] == '-')
        s++;
    return s[0] >= '0' && s[0] <= '9';
}

int
ctl_parse_i64(const ctl *c, const char *opt, const char *s, int64_t min,
              int64_t max, int64_t *out)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = args_digits(s, min < 0) ? strtoll(s, &end, 10) : 0;
    if (end == NULL || *end != '\0' || errno == ERANGE || v < min || v > max)
        return ctl_usage_error(c,
                               "%s: expected a whole number from %lld to "
                               "%lld, got \"%s\"",
                               opt, (long long) min, (long long) max, s);
    *out = (int64_t) v;
    return CTL_OK;
}

int
ctl_parse_u64(const ctl *c, const char *opt, const char *s, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;

    errno = 0;
    v = args_digits(s, 0) ? strtoull(s, &end, 10) : 0;
    if (end == NULL || *end != '\0' || errno == ERANGE)
        return ctl_usage_error(c,
                               "%s: expected a whole number from 0 to "
                               "%llu, got \"%s\"",
                               opt, (unsigned long long) UINT64_MAX, s);
    *out = (uint64_t) v;
    return CTL_OK;
}

int
ctl_check_category(const ctl *c, const char *opt, const char *s)
{
    size_t n = strlen(s);

    if (n == 0)
        return ctl_usage_error(c, "%s: the category is empty", opt);
    if (n > LOOM_MAX_STREAM_NAME_LIMIT || !loom__utf8_valid(s, n))
        return ctl_usage_error(c,
                               "%s: a category is valid UTF-8 of at most "
                               "%zu bytes",
                               opt, LOOM_MAX_STREAM_NAME_LIMIT);
    if (strchr(s, '-') != NULL)
        return ctl_usage_error(c,
                               "%s: \"%s\" contains '-'; a category is the "
                               "part of a stream name before the first '-' "
                               "(\"order\" for \"order-42\")",
                               opt, s);
    return CTL_OK;
}
