/*
 * Child processes. The demo re-executes itself with `--role NAME` to run
 * one service (or the orchestrator, or the read model) as a process of
 * its own, as a deployment would. A child tells its parent what happens
 * through its stdout, one line each:
 *   ready                 its parts are open and consuming, and a
 *                         SIGTERM stops it cleanly
 *   hang                  (the kill scenario) it stopped dead mid-command
 *   counts H F D C E      its participants' counters, when it stops
 * Children die with the parent (PR_SET_PDEATHSIG).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "demo.h"

static const struct {
    const char *name;
    int roles;
} role_table[] = {
    {"orchestrator", OS_ROLE_ORCHESTRATOR}, {"order", OS_ROLE_ORDER},
    {"payment", OS_ROLE_PAYMENT},           {"inventory", OS_ROLE_INVENTORY},
    {"summary", OS_ROLE_SUMMARY},           {"relay", OS_ROLE_RELAY},
};

/* Opens the role's parts. A service started while PostgreSQL or the
 * transport's server is down (everything of a deployment starting at
 * once, or a restart during an outage) waits for it instead of exiting,
 * as a supervisor would otherwise restart it over and over: LOOM_ECONN is
 * tried again after 100 ms, doubling to 5 s, saying so each time on
 * stderr. Any other error is the configuration's, and final. */
static loom_err
role_open(os_host **h, const os_host_config *cfg, const char *role, char *err,
          size_t errlen)
{
    unsigned delay_ms = 100;
    loom_err rc;

    while ((rc = os_host_open(h, cfg, err, errlen)) == LOOM_ECONN) {
        fprintf(stderr,
                "loom-order-saga %s: waiting for the server (%s); trying "
                "again in %u ms\n",
                role, err, delay_ms);
        uv_sleep(delay_ms);
        delay_ms = delay_ms < 2500 ? delay_ms * 2 : 5000;
    }
    return rc;
}

/* Said once the loop runs: SIGTERM then stops the service cleanly. */
static void
role_ready(void *arg)
{
    (void) arg;
    printf("ready\n");
    fflush(stdout);
}

int
demo_role_main(const demo_opts *o, const char *role, const char *hang)
{
    os_host_config cfg = {NULL, o->transport, 0, NULL, 1};
    os_host *h = NULL;
    os_counts c;
    char name[64], err[512] = "";
    loom_err rc;

    for (size_t i = 0; i < sizeof role_table / sizeof role_table[0]; i++)
        if (strcmp(role_table[i].name, role) == 0)
            cfg.roles = role_table[i].roles;
    if (cfg.roles == 0) {
        fprintf(stderr, "loom-order-saga: unknown role %s\n", role);
        return 2;
    }
    snprintf(name, sizeof name, "order-saga %s pid %ld", role, (long) getpid());
    cfg.name = name;
    if (hang != NULL)
        os_payment_hang_on(hang, STDOUT_FILENO);
    rc = role_open(&h, &cfg, role, err, sizeof err);
    if (rc != LOOM_OK) {
        fprintf(stderr, "loom-order-saga %s: %s: %s\n", role, loom_err_name(rc),
                err);
        return 1;
    }
    rc = os_host_run(h, role_ready, NULL);
    os_host_counts(h, &c);
    printf("counts %llu %llu %llu %llu %llu\n", (unsigned long long) c.handled,
           (unsigned long long) c.failures, (unsigned long long) c.duplicates,
           (unsigned long long) c.conflicts, (unsigned long long) c.errors);
    fflush(stdout);
    os_host_close(h);
    return rc == LOOM_OK ? 0 : 1;
}

int
demo_spawn(demo_child *c, const demo_opts *o, const char *self,
           const char *role, const char *hang)
{
    const char *argv[12];
    int fds[2], n = 0;
    pid_t parent = getpid();

    memset(c, 0, sizeof *c);
    c->role = role;
    c->out = -1;
    if (pipe(fds) != 0)
        return -1;
    argv[n++] = self;
    argv[n++] = "--role";
    argv[n++] = role;
    argv[n++] = "--transport";
    argv[n++] = o->transport;
    if (o->verbose)
        argv[n++] = "--verbose";
    if (hang != NULL) {
        argv[n++] = "--hang-on";
        argv[n++] = hang;
    }
    argv[n] = NULL;
    fflush(NULL);
    c->pid = fork();
    if (c->pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (c->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(self, (char *const *) argv);
        _exit(127);
    }
    close(fds[1]);
    c->out = fds[0];
    return 0;
}

/* The next line from the child, within ms; 1 when one came. */
static int
child_line(demo_child *c, char *line, size_t len, int ms)
{
    int64_t end = demo_now_ms() + ms;

    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        struct pollfd p = {c->out, POLLIN, 0};
        int64_t left = end - demo_now_ms();
        ssize_t got;

        if (nl != NULL) {
            size_t n = (size_t) (nl - c->buf);
            snprintf(line, len, "%.*s", (int) n, c->buf);
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return 1;
        }
        if (c->out < 0 || left <= 0 || c->len == sizeof c->buf)
            return 0;
        if (poll(&p, 1, (int) left) <= 0)
            continue;
        got = read(c->out, c->buf + c->len, sizeof c->buf - c->len);
        if (got <= 0)
            return 0; /* it exited */
        c->len += (size_t) got;
    }
}

int
demo_expect(demo_child *c, const char *want, int ms)
{
    char line[256];
    int64_t end = demo_now_ms() + ms;

    while (demo_now_ms() < end)
        if (child_line(c, line, sizeof line, (int) (end - demo_now_ms())) &&
            strncmp(line, want, strlen(want)) == 0)
            return 0;
    return -1;
}

static void
child_reap(demo_child *c, int *status)
{
    while (waitpid(c->pid, status, 0) < 0 && errno == EINTR) {
    }
    c->pid = 0;
}

void
demo_kill(demo_child *c)
{
    int status;

    if (c->pid <= 0)
        return;
    kill(c->pid, SIGKILL);
    child_reap(c, &status);
    close(c->out);
    c->out = -1;
}

int
demo_stop(demo_child *c)
{
    char line[256];
    int status = 0;
    unsigned long long v[5];

    if (c->pid <= 0)
        return -1;
    kill(c->pid, SIGTERM);
    while (child_line(c, line, sizeof line, 20000))
        if (sscanf(line, "counts %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4]) == 5) {
            c->counts.handled = v[0];
            c->counts.failures = v[1];
            c->counts.duplicates = v[2];
            c->counts.conflicts = v[3];
            c->counts.errors = v[4];
        }
    child_reap(c, &status);
    close(c->out);
    c->out = -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}
