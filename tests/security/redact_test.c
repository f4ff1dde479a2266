/*
 * Password redaction (framework/redact.c): connection strings in both
 * libpq forms and any URI keep every setting but their secrets, and
 * messages about a connection (libpq's parse errors among them) lose
 * every piece of the password. No server needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "redact.h"

static void
expect_redacted(const char *conninfo, const char *want)
{
    loom__buf b = LOOM__BUF_INIT;

    loom__conninfo_redact(conninfo, &b);
    assert_false(b.failed);
    if (strcmp(loom__buf_str(&b), want) != 0)
        fail_msg("redact(%s)\n  got  %s\n  want %s", conninfo,
                 loom__buf_str(&b), want);
    loom__buf_free(&b);
}

static void
redact_hides_key_value_passwords_and_keeps_the_rest(void **state)
{
    (void) state;
    expect_redacted("host=db port=5432 user=app password=s3cret dbname=x",
                    "host=db port=5432 user=app password=*** dbname=x");
    expect_redacted("password = 'with space\\' and quote' host=db",
                    "password = *** host=db");
    expect_redacted("host=db sslpassword=keypass sslmode=verify-full",
                    "host=db sslpassword=*** sslmode=verify-full");
    expect_redacted("password=a\\ b host=db", "password=*** host=db");
    expect_redacted("host=db passfile=/x/.pgpass",
                    "host=db passfile=/x/.pgpass");
    expect_redacted("  host=db  ", "  host=db  ");
    expect_redacted("mydb", "***"); /* not a setting: never shown */
    expect_redacted("", "");
    expect_redacted(NULL, "");
}

static void
redact_hides_the_rest_of_a_malformed_string(void **state)
{
    (void) state;
    /* libpq rejects these; what follows the error may be the password. */
    expect_redacted("host=db password", "host=db ***");
    expect_redacted("host=db password=abc def", "host=db password=*** ***");
    expect_redacted("host=db password='unterminated secret",
                    "host=db password=***");
}

static void
redact_hides_uri_passwords(void **state)
{
    (void) state;
    expect_redacted("postgresql://app:s3cret@db:5432/x?sslmode=require",
                    "postgresql://app:***@db:5432/x?sslmode=require");
    expect_redacted("postgres://app:p%40ss@db/x?password=two&"
                    "application_name=a",
                    "postgres://app:***@db/x?password=***&"
                    "application_name=a");
    expect_redacted("postgresql://db/x?pass%77ord=s3cret&sslpassword=k",
                    "postgresql://db/x?pass%77ord=***&sslpassword=***");
    expect_redacted("postgresql://app@db/x", "postgresql://app@db/x");
    expect_redacted("postgresql://app:p@ss@db/x", "postgresql://app:***@db/x");
    expect_redacted("nats://u:pw@127.0.0.1:4222",
                    "nats://u:***@127.0.0.1:4222");
    expect_redacted("topics://?host=/tmp&password=pw&dbname=d",
                    "topics://?host=/tmp&password=***&dbname=d");
    expect_redacted("postgresql://[::1]:5432/x", "postgresql://[::1]:5432/x");
}

static void
expect_message(const char *msg, const char *conninfo, const char *secret)
{
    loom__buf b = LOOM__BUF_INIT;

    loom__redact_message(msg, conninfo, &b);
    assert_false(b.failed);
    if (strstr(loom__buf_str(&b), secret) != NULL)
        fail_msg("message shows \"%s\": %s", secret, loom__buf_str(&b));
    loom__buf_free(&b);
}

static void
redact_scrubs_messages_of_every_form_of_the_password(void **state)
{
    loom__buf b = LOOM__BUF_INIT;

    (void) state;
    expect_message("server said Zq9xPw7", "host=db password=Zq9xPw7",
                   "Zq9xPw7");
    expect_message("saw it's Zq9", "password='it\\'s Zq9' host=db", "it's Zq9");
    /* Percent-decoded, as libpq hands it to the server. */
    expect_message("oops p@ss42 again", "postgresql://u:p%40ss42@db/x",
                   "p@ss42");
    expect_message("oops p%40ss42", "postgresql://u:p%40ss42@db/x", "p%40ss42");
    /* Text without secrets is unchanged. */
    loom__redact_message("could not connect to server \"db\"",
                         "host=db password=zz", &b);
    assert_string_equal(loom__buf_str(&b),
                        "could not connect to server \"db\"");
    loom__buf_free(&b);
}

/* What libpq itself says about strings it cannot parse: every piece of
 * the password it quotes is hidden. */
static void
redact_scrubs_libpq_parse_errors(void **state)
{
    static const char *const bad[] = {
        "host=db password=Hunter2 Hunter3secret",
        "host=db password 'Hunter2'",
        "postgresql://u:Hun%zzter2@db/x",
        "postgresql://db/x?password=Hun%zzter2",
        "host=db password='Hunter2",
        "postgresql://u:Hunter2@db:notaport/x",
    };

    (void) state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *err = NULL;
        PQconninfoOption *o = PQconninfoParse(bad[i], &err);
        loom__buf b = LOOM__BUF_INIT, c = LOOM__BUF_INIT;

        if (o != NULL) {
            /* Parsed: libpq complains only when connecting. */
            PGconn *conn = PQconnectdb(bad[i]);
            loom__redact_message(PQerrorMessage(conn), bad[i], &b);
            PQfinish(conn);
            PQconninfoFree(o);
        } else {
            assert_non_null(err);
            loom__redact_message(err, bad[i], &b);
        }
        PQfreemem(err);
        loom__conninfo_redact(bad[i], &c);
        if (strstr(loom__buf_str(&b), "Hun") != NULL ||
            strstr(loom__buf_str(&c), "Hun") != NULL)
            fail_msg("%s: message \"%s\", redacted \"%s\"", bad[i],
                     loom__buf_str(&b), loom__buf_str(&c));
        loom__buf_free(&b);
        loom__buf_free(&c);
    }
}

/* Passwords of every printable character, written as libpq wants them
 * (quoted and escaped; percent-encoded in a URI), never survive. */
static void
redact_hides_every_printable_password(void **state)
{
    uint32_t seed = 12345;

    (void) state;
    for (int round = 0; round < 2000; round++) {
        char pw[24], kv[128], uri[160], *q;
        loom__buf b = LOOM__BUF_INIT, u = LOOM__BUF_INIT;
        size_t n = 6 + round % 12;

        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            pw[i] = (char) (33 + (seed >> 16) % 94);
        }
        pw[n] = '\0';
        q = kv + sprintf(kv, "host=db password='");
        for (size_t i = 0; i < n; i++) {
            if (pw[i] == '\'' || pw[i] == '\\')
                *q++ = '\\';
            *q++ = pw[i];
        }
        strcpy(q, "' dbname=x");
        q = uri + sprintf(uri, "postgresql://u:");
        for (size_t i = 0; i < n; i++)
            q += sprintf(q, "%%%02X", (unsigned char) pw[i]);
        strcpy(q, "@db/x");
        loom__conninfo_redact(kv, &b);
        loom__conninfo_redact(uri, &u);
        assert_string_equal(loom__buf_str(&b), "host=db password=*** dbname=x");
        assert_string_equal(loom__buf_str(&u), "postgresql://u:***@db/x");
        loom__buf_reset(&b);
        loom__redact_message(pw, kv, &b);
        assert_string_equal(loom__buf_str(&b), "***");
        loom__buf_reset(&b);
        loom__redact_message(pw, uri, &b);
        assert_string_equal(loom__buf_str(&b), "***");
        loom__buf_free(&b);
        loom__buf_free(&u);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(redact_hides_key_value_passwords_and_keeps_the_rest),
        cmocka_unit_test(redact_hides_the_rest_of_a_malformed_string),
        cmocka_unit_test(redact_hides_uri_passwords),
        cmocka_unit_test(redact_scrubs_messages_of_every_form_of_the_password),
        cmocka_unit_test(redact_scrubs_libpq_parse_errors),
        cmocka_unit_test(redact_hides_every_printable_password),
    };

    return cmocka_run_group_tests_name("security.redact", tests, NULL, NULL);
}
