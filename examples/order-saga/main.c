/*
 * loom-order-saga: the order-saga demo (`make demo`).
 *
 *   loom-order-saga [--processes] [--transport URL] [--burst N]
 *                   [--run TAG] [--verbose]
 *
 * Three services (order, payment, inventory), the CreateOrder saga that
 * spans them, and the order_summary read model, run against the database
 * in LOOM_DATABASE_URL: in this process by default (one runtime with the
 * orchestrator, the participants, the projection and an outbox relay),
 * or with --processes as one process per service, orchestrator and read
 * model, talking only through the transport (topics:// by default, or
 * nats://HOST:PORT). It places the orders of scenarios.c, prints each
 * saga's timeline, the read model, its rebuild by replay, and the burst's
 * figures. Exit status 0 when every scenario ended as it should.
 *
 * Internal: `--role NAME [--hang-on ORDER]` runs one child (roles.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "demo.h"

static int demo_verbose;

static void
demo_log(void *arg, loom_log_level level, const char *message)
{
    (void) arg;
    if (demo_verbose || level <= LOOM_LOG_ERROR)
        fprintf(stderr, "[%ld] %s: %s\n", (long) getpid(),
                loom_log_level_name(level), message);
}

static int
usage(void)
{
    fprintf(stderr, "usage: loom-order-saga [--processes] [--transport URL] "
                    "[--burst N] [--run TAG] [--verbose]\n");
    return 2;
}

/* A fresh run tag: 4 letters and digits from a UUIDv7's random bits. */
static void
fresh_tag(char *tag)
{
    static const char abc[] = "abcdefghijkmnpqrstuvwxyz23456789";
    loom_uuid u;

    loom_uuid_generate(&u);
    tag[0] = 'r';
    for (int i = 0; i < 4; i++)
        tag[i + 1] = abc[u.bytes[10 + i] % 32];
    tag[5] = '\0';
}

/* nats:// URLs get a short ack wait, so a command held by a killed
 * process comes back in seconds rather than 30. */
static char *
transport_url(const char *url)
{
    size_t n = strlen(url) + 32;
    char *out = malloc(n);

    if (out == NULL)
        return NULL;
    if (strncmp(url, "nats://", 7) == 0 && strstr(url, "ack_wait_ms") == NULL)
        snprintf(out, n, "%s%sack_wait_ms=5000", url,
                 strchr(url, '?') ? "&" : "?");
    else
        snprintf(out, n, "%s", url);
    return out;
}

static int
parse(int argc, char **argv, demo_opts *o, const char **role, const char **hang)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--processes") == 0)
            o->processes = 1;
        else if (strcmp(a, "--verbose") == 0)
            o->verbose = 1;
        else if (strcmp(a, "--transport") == 0 && v && ++i)
            o->transport = v;
        else if (strcmp(a, "--burst") == 0 && v && ++i)
            o->burst = atoi(v);
        else if (strcmp(a, "--run") == 0 && v && ++i)
            snprintf(o->tag, sizeof o->tag, "%s", v);
        else if (strcmp(a, "--role") == 0 && v && ++i)
            *role = v;
        else if (strcmp(a, "--hang-on") == 0 && v && ++i)
            *hang = v;
        else
            return -1;
    }
    if (o->burst < 1 || o->burst > 900)
        return -1;
    return 0;
}

static void
host_thread(void *arg)
{
    os_host_run(arg, NULL, NULL);
}

static const char *const kid_roles[5] = {"orchestrator", "order", "payment",
                                         "inventory", "summary"};

/* Starts the services: a host on a thread, or the children. */
static int
services_up(demo_run *r, uv_thread_t *thread)
{
    char err[512] = "", hang[64];

    if (!r->o->processes) {
        os_host_config cfg = {NULL, r->o->transport, OS_ROLE_ALL,
                              "order-saga demo", 0};
        loom_err rc = os_host_open(&r->host, &cfg, err, sizeof err);
        if (rc != LOOM_OK) {
            fprintf(stderr, "loom-order-saga: %s: %s\n", loom_err_name(rc),
                    err);
            return -1;
        }
        return uv_thread_create(thread, host_thread, r->host) == 0 ? 0 : -1;
    }
    snprintf(hang, sizeof hang, "%s-004", r->o->tag);
    for (int k = 0; k < 5; k++) {
        if (demo_spawn(&r->kids[k], r->o, r->self, kid_roles[k],
                       k == 2 ? hang : NULL) != 0 ||
            demo_expect(&r->kids[k], "ready", 30000) != 0) {
            fprintf(stderr, "loom-order-saga: the %s process did not start\n",
                    kid_roles[k]);
            return -1;
        }
        r->n_kids = k + 1;
    }
    return 0;
}

static void
add_counts(os_counts *a, const os_counts *b)
{
    a->handled += b->handled;
    a->failures += b->failures;
    a->duplicates += b->duplicates;
    a->conflicts += b->conflicts;
    a->errors += b->errors;
}

/* Stops the services and adds up their participants' counters. */
static int
services_down(demo_run *r, uv_thread_t *thread, os_counts *c)
{
    int rc = 0;

    memset(c, 0, sizeof *c);
    if (r->host != NULL) {
        os_host_stop(r->host);
        uv_thread_join(thread);
        os_host_counts(r->host, c);
        os_host_close(r->host);
        r->host = NULL;
        add_counts(c, &r->victim_counts);
    }
    for (int k = 0; k < r->n_kids; k++) {
        if (demo_stop(&r->kids[k]) != 0)
            rc = -1;
        add_counts(c, &r->kids[k].counts);
    }
    r->n_kids = 0;
    return rc;
}

static int
run(demo_run *r)
{
    uv_thread_t thread;
    os_counts counts;
    int up;

    printf("Eventloom order-saga demo: %s, transport %s\n",
           r->o->processes ? "one process per service (--processes)"
                           : "every service in this process",
           r->o->transport);
    if (demo_setup(r) != 0)
        return -1;
    up = services_up(r, &thread);
    if (up == 0)
        demo_scenarios(r);
    if (up == 0 && demo_read_model(r) == 0)
        demo_replay(r);
    if (services_down(r, &thread, &counts) != 0)
        r->failures++;
    if (up != 0)
        return -1;
    demo_figures(r, &counts);
    return 0;
}

int
main(int argc, char **argv)
{
    demo_opts o = {0, 0, 40, "topics://", ""};
    const char *role = NULL, *hang = NULL;
    loom_store_config cfg = LOOM_STORE_CONFIG_INIT;
    demo_run r;
    char self[4096], err[512] = "", *url;
    ssize_t n;
    int rc;

    if (parse(argc, argv, &o, &role, &hang) != 0)
        return usage();
    demo_verbose = o.verbose;
    loom_log_set(demo_log, NULL);
    url = transport_url(o.transport);
    if (url == NULL)
        return 1;
    o.transport = url;
    if (role != NULL) {
        rc = demo_role_main(&o, role, hang);
        free(url);
        return rc;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 1;
    self[n] = '\0';
    if (o.tag[0] == '\0')
        fresh_tag(o.tag);
    memset(&r, 0, sizeof r);
    r.o = &o;
    r.self = self;
    cfg.migrate = LOOM_MIGRATE_AUTO;
    cfg.application_name = "loom-order-saga";
    if (loom_store_open(&r.s, &cfg, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom-order-saga: %s\n", err);
        free(url);
        return 1;
    }
    r.pg = PQconnectdb(getenv("LOOM_DATABASE_URL") ? getenv("LOOM_DATABASE_URL")
                                                   : "");
    rc = PQstatus(r.pg) == CONNECTION_OK ? run(&r) : -1;
    if (rc != 0 || r.failures != 0)
        rc = 1;
    printf("\norder-saga demo: %s\n", rc == 0 ? "OK" : "FAILED");
    PQfinish(r.pg);
    loom_store_close(r.s);
    free(url);
    return rc;
}
