/* Helpers for the NATS JetStream tests (ntest.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <nats/nats.h>
#include <uv.h>

#include "ntest.h"

static char ntt_stream_name[32];
static char ntt_prefix_name[32];

const char *
ntt_server(void)
{
    const char *url = getenv("LOOM_TEST_NATS_URL");

    if (url == NULL || url[0] == '\0')
        fail_msg("LOOM_TEST_NATS_URL is not set: NATS tests need a "
                 "nats-server with JetStream; run them with `make test`, "
                 "which starts one (scripts/nats.sh)");
    return url;
}

static void
ntt_names(void)
{
    if (ntt_stream_name[0] != '\0')
        return;
    snprintf(ntt_stream_name, sizeof ntt_stream_name, "LT%ld", (long) getpid());
    snprintf(ntt_prefix_name, sizeof ntt_prefix_name, "lt%ld", (long) getpid());
}

const char *
ntt_stream(void)
{
    ntt_names();
    return ntt_stream_name;
}

const char *
ntt_prefix(void)
{
    ntt_names();
    return ntt_prefix_name;
}

const char *
ntt_url(const char *options)
{
    static char url[1024];

    snprintf(url, sizeof url, "%s?stream=%s&prefix=%s&%s%s%s", ntt_server(),
             ntt_stream(), ntt_prefix(), NTT_OPTIONS,
             options != NULL && options[0] ? "&" : "",
             options != NULL ? options : "");
    return url;
}

void
ntt_open(tpt_env *e, const char *options)
{
    loom_runtime_config cfg = LOOM_RUNTIME_CONFIG_INIT;
    const char *url = ntt_url(options);
    char err[512] = "";
    loom_err rc;

    memset(e, 0, sizeof *e);
    assert_int_equal(loom_runtime_open(&e->rt, &cfg), LOOM_OK);
    rc = loom_transport_open(e->rt, url, &e->t, err, sizeof err);
    if (rc != LOOM_OK)
        fail_msg("loom_transport_open(%s): %s: %s", url, loom_err_name(rc),
                 err);
    uv_timer_init(loom_runtime_loop(e->rt), &e->tick);
    e->tick.data = e;
}

/* Deletes the stream with libnats directly (the transport never does). */
void
ntt_stream_delete(void)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsErrCode jerr = 0;
    natsStatus s;

    s = natsConnection_ConnectTo(&nc, ntt_server());
    if (s != NATS_OK)
        fail_msg("cannot connect to %s: %s", ntt_server(),
                 natsStatus_GetText(s));
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    s = js_DeleteStream(js, ntt_stream(), NULL, &jerr);
    if (s != NATS_OK && s != NATS_NOT_FOUND)
        fail_msg("deleting stream %s: %s (%d)", ntt_stream(),
                 natsStatus_GetText(s), (int) jerr);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

int
ntt_group_setup(void **state)
{
    (void) state;
    ntt_stream_delete();
    return 0;
}

int
ntt_group_teardown(void **state)
{
    natsStatus s;

    (void) state;
    ntt_stream_delete();
    /* libnats can close only when every object of it was destroyed: the
     * transports left no connection, subscription or context behind. */
    s = nats_CloseAndWait(10000);
    if (s != NATS_OK) {
        fprintf(stderr,
                "nats_CloseAndWait: %s: a libnats object was not "
                "destroyed\n",
                natsStatus_GetText(s));
        return -1;
    }
    return 0;
}

loom_consumer *
ntt_rec_open(tpt_env *e, const char *group, const char *topic,
             size_t max_in_flight, unsigned max_deliveries, tpt_rec *r)
{
    loom_consumer_config cfg = LOOM_CONSUMER_CONFIG_INIT;
    const char *topics[1] = {topic};
    loom_consumer *c = NULL;
    loom_err rc;

    cfg.group = group;
    cfg.topics = topics;
    cfg.n_topics = 1;
    cfg.max_in_flight = max_in_flight;
    cfg.max_deliveries = max_deliveries;
    rc = loom_consumer_open(e->t, &cfg, tpt_rec_handle, r, &c);
    if (rc != LOOM_OK)
        fail_msg("loom_consumer_open(%s, %s): %s: %s", group, topic,
                 loom_err_name(rc), loom_nats_errmsg(e->t));
    r->c = c;
    return c;
}

void
ntt_quiet(tpt_env *e, uint64_t ms)
{
    tpt_run(e, NULL, NULL, ms);
}

const tpt_rmsg *
ntt_nth(const tpt_rec *r, const char *payload, size_t k)
{
    size_t want = k;

    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->m[i].payload, payload) == 0 && k-- == 0)
            return &r->m[i];
    fail_msg("delivery %zu of \"%s\" is missing", want, payload);
    return NULL;
}

void
ntt_nats_sh(const char *dir, const char *cmd, char *url, size_t len)
{
    char line[512];
    FILE *p;

    snprintf(line, sizeof line, "%s %s %s | tail -n 1", LOOM_NATS_SH, cmd, dir);
    p = popen(line, "r");
    assert_non_null(p);
    line[0] = '\0';
    if (fgets(line, sizeof line, p) == NULL)
        line[0] = '\0';
    if (pclose(p) != 0)
        fail_msg("%s %s %s failed", LOOM_NATS_SH, cmd, dir);
    line[strcspn(line, "\n")] = '\0';
    if (url != NULL) {
        if (strncmp(line, "nats://", 7) != 0)
            fail_msg("scripts/nats.sh start printed \"%s\", not a URL", line);
        snprintf(url, len, "%s", line);
    }
}
