/*
 * The service processes: one loom-order-saga per role (`--role NAME`),
 * kept alive as a supervisor (systemd, Kubernetes) would: a process that
 * dies, killed by the campaign or on its own, is started again. Their
 * stderr goes to the campaign's log; their stdout (a "ready" line when
 * their parts are open) comes back through a pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faults.h"

const char *const fl_role_names[FL_N_ROLES] = {
    "orchestrator", "order", "payment", "inventory", "summary", "relay"};

typedef struct fl_proc {
    pid_t pid;      /* 0: not running */
    int out;        /* read end of its stdout; -1 */
    int ready;      /* said "ready" */
    int killed;     /* by us: its death is expected */
    int64_t due_ms; /* when to start it again (not running) */
    char line[128];
    size_t len;
} fl_proc;

struct fl_fleet {
    const fl_opts *o;
    int log; /* the children's stderr */
    fl_proc p[FL_N_ROLES];
    int exits;   /* died on their own */
    int crashes; /* of which by a signal (a sanitizer's abort, SIGSEGV) */
};

static int
fleet_spawn(fl_fleet *f, int role)
{
    fl_proc *p = &f->p[role];
    int fds[2];
    pid_t parent = getpid(), pid;

    if (pipe(fds) != 0)
        return -1;
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        /* Dies with the campaign, whatever kills it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        dup2(fds[1], STDOUT_FILENO);
        if (f->log >= 0)
            dup2(f->log, STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl(f->o->demo, f->o->demo, "--role", fl_role_names[role],
              "--transport", f->o->transport, "--verbose", (char *) NULL);
        fprintf(stderr, "loom-faults: exec %s: %s\n", f->o->demo,
                strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    if (f->log >= 0)
        dprintf(f->log, "loom-faults: started the %s process, pid %ld\n",
                fl_role_names[role], (long) pid);
    p->pid = pid;
    p->out = fds[0];
    p->ready = 0;
    p->killed = 0;
    p->len = 0;
    return 0;
}

/* Reads what the child wrote; notes "ready". */
static void
fleet_read(fl_proc *p)
{
    char buf[256];
    ssize_t n;

    while (p->out >= 0 && (n = read(p->out, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (p->len + 1 < sizeof p->line)
                    p->line[p->len++] = buf[i];
                continue;
            }
            p->line[p->len] = '\0';
            if (strcmp(p->line, "ready") == 0)
                p->ready = 1;
            p->len = 0;
        }
    }
}

fl_fleet *
fl_fleet_start(const fl_opts *o)
{
    fl_fleet *f = calloc(1, sizeof *f);
    int64_t end;

    if (f == NULL)
        return NULL;
    f->o = o;
    f->log = open(o->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (f->log < 0) {
        fprintf(stderr, "loom-faults: %s: %s\n", o->log, strerror(errno));
        free(f);
        return NULL;
    }
    for (int r = 0; r < FL_N_ROLES; r++)
        f->p[r].out = -1;
    for (int r = 0; r < FL_N_ROLES; r++) {
        if (fleet_spawn(f, r) != 0) {
            fprintf(stderr, "loom-faults: starting %s: %s\n", fl_role_names[r],
                    strerror(errno));
            fl_fleet_stop(f);
            return NULL;
        }
    }
    end = fl_now_ms() + 60000;
    for (;;) {
        int ready = 0;
        for (int r = 0; r < FL_N_ROLES; r++) {
            fleet_read(&f->p[r]);
            ready += f->p[r].ready;
        }
        if (ready == FL_N_ROLES)
            return f;
        for (int r = 0; r < FL_N_ROLES; r++) {
            int status;
            if (waitpid(f->p[r].pid, &status, WNOHANG) == f->p[r].pid) {
                fprintf(stderr,
                        "loom-faults: the %s process exited at start-up "
                        "(status %d); its log: %s\n",
                        fl_role_names[r], status, o->log);
                f->p[r].pid = 0;
                fl_fleet_stop(f);
                return NULL;
            }
        }
        if (fl_now_ms() > end) {
            fprintf(stderr,
                    "loom-faults: the services were not ready within 60 s; "
                    "their log: %s\n",
                    o->log);
            fl_fleet_stop(f);
            return NULL;
        }
        fl_sleep_ms(20);
    }
}

static void
fleet_reaped(fl_fleet *f, int r, int status, int64_t delay_ms)
{
    fl_proc *p = &f->p[r];

    if (!p->killed) {
        f->exits++;
        f->crashes += WIFSIGNALED(status);
        fl_say("the %s process (pid %ld) exited on its own (%s %d); "
               "starting it again",
               fl_role_names[r], (long) p->pid,
               WIFEXITED(status) ? "status" : "signal",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    if (p->out >= 0)
        close(p->out);
    p->out = -1;
    p->pid = 0;
    p->due_ms = fl_now_ms() + delay_ms;
}

int
fl_fleet_kill(fl_fleet *f, int role, fl_rng *rng)
{
    fl_proc *p = &f->p[role];
    int64_t end = fl_now_ms() + 5000;
    int status;

    /* Killed a moment ago and not back yet: kill its successor. */
    while (p->pid == 0 && fl_now_ms() < end) {
        fl_fleet_tend(f);
        if (p->pid == 0)
            fl_sleep_ms(10);
    }
    if (p->pid == 0)
        return -1;
    kill(p->pid, SIGKILL);
    if (f->log >= 0)
        dprintf(f->log, "loom-faults: SIGKILL to the %s process, pid %ld\n",
                fl_role_names[role], (long) p->pid);
    p->killed = 1;
    if (waitpid(p->pid, &status, 0) == p->pid)
        /* Back after 50-500 ms: sometimes before its consumer session
         * expired, sometimes not. */
        fleet_reaped(f, role, status, 50 + (int64_t) fl_below(rng, 450));
    return 0;
}

void
fl_fleet_tend(fl_fleet *f)
{
    int64_t now = fl_now_ms();

    for (int r = 0; r < FL_N_ROLES; r++) {
        fl_proc *p = &f->p[r];
        int status;

        if (p->pid != 0) {
            fleet_read(p);
            if (waitpid(p->pid, &status, WNOHANG) == p->pid)
                fleet_reaped(f, r, status, 500);
        } else if (now >= p->due_ms && fleet_spawn(f, r) != 0) {
            fl_say("cannot start the %s process: %s", fl_role_names[r],
                   strerror(errno));
            p->due_ms = now + 1000;
        }
    }
}

int
fl_fleet_exits(const fl_fleet *f)
{
    return f->exits;
}

int
fl_fleet_crashes(const fl_fleet *f)
{
    return f->crashes;
}

int
fl_fleet_stop(fl_fleet *f)
{
    int64_t end = fl_now_ms() + 15000;
    int unclean = 0;

    if (f == NULL)
        return 0;
    for (int r = 0; r < FL_N_ROLES; r++)
        if (f->p[r].pid != 0)
            kill(f->p[r].pid, SIGTERM);
    for (int r = 0; r < FL_N_ROLES; r++) {
        fl_proc *p = &f->p[r];
        int status;
        while (p->pid != 0) {
            fleet_read(p);
            if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                    fl_say("the %s process stopped with %s %d (its log: "
                           "%s)",
                           fl_role_names[r],
                           WIFEXITED(status) ? "status" : "signal",
                           WIFEXITED(status) ? WEXITSTATUS(status)
                                             : WTERMSIG(status),
                           f->o->log);
                    unclean++;
                }
                p->pid = 0;
            } else if (fl_now_ms() > end) {
                fl_say("the %s process did not stop within 15 s: SIGKILL",
                       fl_role_names[r]);
                kill(p->pid, SIGKILL);
                waitpid(p->pid, &status, 0);
                p->pid = 0;
                unclean++;
            } else {
                fl_sleep_ms(20);
            }
        }
        if (p->out >= 0)
            close(p->out);
    }
    if (f->log >= 0)
        close(f->log);
    free(f);
    return unclean;
}
