/*
 * A service of the order-saga demo (`loom-order-saga --role payment`)
 * started while its transport's server is down waits for it, saying so,
 * and is ready once the server is up, instead of exiting at once: a
 * supervisor (systemd, Kubernetes, the fault campaign's fleet) would
 * otherwise restart it over and over while the server is away.
 *
 * Against a nats-server of its own (scripts/nats.sh in a temporary
 * directory): started once for its URL and stopped, the service started,
 * then the server started again on the same port.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "loom/loom.h"
#include "ntest.h"
#include "pgtest.h"

static char nats_dir[64];

/* Reads fd until a line containing `want` arrives (1), it closes or
 * `ms` pass (0). Lines read are echoed to stderr with `tag`. */
static int
wait_line(int fd, const char *want, int ms, const char *tag)
{
    char buf[4096];
    size_t len = 0;
    int64_t end = est_now_ms() + ms;

    while (est_now_ms() < end) {
        struct pollfd pf = {fd, POLLIN, 0};
        ssize_t n;
        char *nl;

        if (poll(&pf, 1, 100) <= 0)
            continue;
        n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            return 0;
        len += (size_t) n;
        buf[len] = '\0';
        while ((nl = strchr(buf, '\n')) != NULL) {
            int found;
            *nl = '\0';
            fprintf(stderr, "%s: %s\n", tag, buf);
            found = strstr(buf, want) != NULL;
            len -= (size_t) (nl + 1 - buf);
            memmove(buf, nl + 1, len + 1);
            if (found)
                return 1;
        }
        if (len == sizeof buf - 1)
            len = 0; /* a line too long to be ours */
    }
    return 0;
}

static void
a_service_started_while_its_server_is_down_waits_for_it(void **state)
{
    char url[128], again[128];
    int out[2], err[2], status;
    loom_store *s;
    pid_t pid;

    (void) state;
    s = loomt_store_open(); /* the schema, migrated */
    loom_store_close(s);
    ntt_nats_sh(nats_dir, "start", url, sizeof url);
    ntt_nats_sh(nats_dir, "stop", NULL, 0);

    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(err), 0);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        close(out[0]);
        close(err[0]);
        setenv("LOOM_DATABASE_URL", loomt_dsn(), 1);
        execl(DEMO_BIN, DEMO_BIN, "--role", "payment", "--transport", url,
              (char *) NULL);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);

    /* Down: it says it waits, and keeps waiting. */
    assert_true(wait_line(err[0], "waiting for the server", 10000, "stderr"));
    assert_false(wait_line(out[0], "ready", 1500, "stdout"));
    assert_int_equal(waitpid(pid, &status, WNOHANG), 0);

    /* Up again, on the same port: the service opens and says so. */
    ntt_nats_sh(nats_dir, "start", again, sizeof again);
    assert_string_equal(again, url);
    assert_true(wait_line(out[0], "ready", 30000, "stdout"));

    /* And stops cleanly when asked. */
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(out[0]);
    close(err[0]);
}

static int
setup(void **state)
{
    (void) state;
    loomt_db_create("rolewait");
    snprintf(nats_dir, sizeof nats_dir, "/tmp/loom-role-wait.XXXXXX");
    return mkdtemp(nats_dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
    char line[256];

    (void) state;
    loomt_db_drop();
    snprintf(line, sizeof line, "%s destroy %s >/dev/null 2>&1", LOOM_NATS_SH,
             nats_dir);
    return system(line) == 0 ? 0 : -1;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            a_service_started_while_its_server_is_down_waits_for_it),
    };
    return cmocka_run_group_tests_name("examples.order_saga_role_wait", tests,
                                       setup, teardown);
}
