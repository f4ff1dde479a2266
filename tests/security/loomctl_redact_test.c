/*
 * loomctl never prints a password: with a connection string that holds
 * one (key=value or URI, in --db or LOOM_DATABASE_URL), every command's
 * output and errors, including failed connections and strings libpq
 * cannot parse, are searched for it. The server trusts the test's
 * connections, so the password is carried but never needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "pgtest.h"

#define SECRET "Tr0ub4dor-Secret"

/* Runs loomctl with `args` (shell words, trusted), stdout and stderr
 * together; returns the output (malloc'ed) and sets *status. */
static char *
run(const char *env_dsn, const char *args, int *status)
{
    char cmd[8192];
    size_t len = 0, cap = 4096;
    char *out = malloc(cap);
    FILE *p;
    int c;

    assert_non_null(out);
    if (env_dsn != NULL)
        setenv("LOOM_DATABASE_URL", env_dsn, 1);
    else
        unsetenv("LOOM_DATABASE_URL");
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", LOOMCTL_PATH, args);
    p = popen(cmd, "r");
    assert_non_null(p);
    while ((c = fgetc(p)) != EOF) {
        if (len + 1 >= cap) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        out[len++] = (char) c;
    }
    out[len] = '\0';
    *status = pclose(p);
    return out;
}

/* Quotes s for the shell: '...' with ' as '\''. */
static const char *
shq(const char *s)
{
    static char buf[4][4096];
    static int turn;
    char *o = buf[turn++ % 4];
    size_t n = 0;

    o[n++] = '\'';
    for (; *s != '\0' && n + 5 < sizeof buf[0]; s++) {
        if (*s == '\'') {
            memcpy(o + n, "'\\''", 4);
            n += 4;
        } else {
            o[n++] = *s;
        }
    }
    o[n++] = '\'';
    o[n] = '\0';
    return o;
}

static void
expect_no_secret(const char *env_dsn, const char *args, int want_ok)
{
    int status;
    char *out = run(env_dsn, args, &status);

    if (strstr(out, SECRET) != NULL || strstr(out, "Tr0ub4dor") != NULL ||
        strstr(out, "Secret") != NULL)
        fail_msg("loomctl %s printed the password:\n%s", args, out);
    if (want_ok && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fail_msg("loomctl %s failed:\n%s", args, out);
    if (!want_ok && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        fail_msg("loomctl %s succeeded, expected a failure:\n%s", args, out);
    free(out);
}

/* The test database's settings as key=value, plus a password. */
static void
dsn_with_password(char *out, size_t len)
{
    snprintf(out, len, "%s password='%s'", loomt_dsn(), SECRET);
}

/* The same as a URI: postgresql://user:password@/db?host=...&port=... */
static void
uri_with_password(char *out, size_t len)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(loomt_dsn(), &err);
    const char *user = "", *db = "", *host = "", *port = "";

    assert_non_null(opts);
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        if (strcmp(o->keyword, "user") == 0)
            user = o->val;
        else if (strcmp(o->keyword, "dbname") == 0)
            db = o->val;
        else if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
    }
    snprintf(out, len, "postgresql://%s:%s@/%s?host=%s&port=%s", user, SECRET,
             db, host, port);
    PQconninfoFree(opts);
}

static void
loomctl_commands_never_print_the_password(void **state)
{
    static const char *const cmds[] = {
        "migrate",     "migrate --status", "stats",
        "streams",     "read acct-1",      "outbox status",
        "topics list", "saga list",        "projection list",
    };
    char kv[4200], uri[4200], args[8600];

    (void) state;
    dsn_with_password(kv, sizeof kv);
    uri_with_password(uri, sizeof uri);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        snprintf(args, sizeof args, "--db %s %s", shq(kv), cmds[i]);
        expect_no_secret(NULL, args, 1);
        expect_no_secret(uri, cmds[i], 1);
        snprintf(args, sizeof args, "--db %s %s", shq(uri), cmds[i]);
        expect_no_secret(NULL, args, 1);
    }
}

static void
loomctl_errors_never_print_the_password(void **state)
{
    static const char *const bad[] = {
        /* Cannot connect: no server on that port. */
        "host=127.0.0.1 port=1 user=u password=" SECRET " dbname=d",
        "postgresql://u:" SECRET "@127.0.0.1:1/d",
        "postgresql://u@127.0.0.1:1/d?password=" SECRET,
        /* libpq cannot parse these, and quotes pieces of them. */
        "host=127.0.0.1 password=Tr0ub4dor Secret",
        "host=127.0.0.1 password='" SECRET,
        "postgresql://u:" SECRET "%zz@127.0.0.1/d",
        "postgresql://u:" SECRET "@127.0.0.1:notaport/d",
    };
    char args[4200];

    (void) state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "--db %s migrate --status", shq(bad[i]));
        expect_no_secret(NULL, args, 0);
        snprintf(args, sizeof args, "--db %s stats", shq(bad[i]));
        expect_no_secret(NULL, args, 0);
        expect_no_secret(bad[i], "streams", 0);
    }
}

static int
group_setup(void **state)
{
    (void) state;
    loomt_db_create("lcredact");
    return 0;
}

static int
group_teardown(void **state)
{
    (void) state;
    loomt_db_drop();
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loomctl_commands_never_print_the_password),
        cmocka_unit_test(loomctl_errors_never_print_the_password),
    };

    return cmocka_run_group_tests_name("security.loomctl_redact", tests,
                                       group_setup, group_teardown);
}
