/*
 * Upcasters: a sorted array of steps (type, from version) -> (to, fn),
 * found by binary search and applied to each event as a page is built.
 */
#include "loom/upcast.h"

#include <string.h>

#include "alloc_int.h"
#include "loom/alloc.h"
#include "store_int.h"
#include "utf8.h"

/* A chain longer than this is a registration mistake (a rename cycle). */
#define UPCAST_MAX_STEPS 64

typedef struct upcast_step {
    char *type; /* owned copy */
    int32_t from;
    int32_t to;
    loom_upcast_fn fn;
    void *arg;
} upcast_step;

struct loom_upcasters {
    upcast_step *v; /* sorted by (type, from) */
    size_t n, cap;
};

loom_err
loom_upcasters_new(loom_upcasters **out)
{
    if (out == NULL)
        return LOOM_EINVAL;
    *out = loom_malloc(sizeof **out);
    if (*out == NULL)
        return LOOM_ENOMEM;
    memset(*out, 0, sizeof **out);
    return LOOM_OK;
}

void
loom_upcasters_free(loom_upcasters *u)
{
    if (u == NULL)
        return;
    for (size_t i = 0; i < u->n; i++)
        loom_free(u->v[i].type);
    loom_free(u->v);
    loom_free(u);
}

static int
upcast_cmp(const upcast_step *a, const char *type, int32_t from)
{
    int c = strcmp(a->type, type);

    if (c != 0)
        return c;
    return a->from < from ? -1 : a->from > from;
}

/* Index of the first step not before (type, from). */
static size_t
upcast_lower_bound(const loom_upcasters *u, const char *type, int32_t from)
{
    size_t lo = 0, hi = u->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (upcast_cmp(&u->v[mid], type, from) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const upcast_step *
upcast_find(const loom_upcasters *u, const char *type, int32_t from)
{
    size_t i = upcast_lower_bound(u, type, from);

    return i < u->n && upcast_cmp(&u->v[i], type, from) == 0 ? &u->v[i] : NULL;
}

loom_err
loom_upcasters_add(loom_upcasters *u, const char *type, int32_t from,
                   int32_t to, loom_upcast_fn fn, void *arg)
{
    size_t i, tlen;
    char *copy;

    if (u == NULL || type == NULL || type[0] == '\0' || fn == NULL ||
        from < 0 || to <= from)
        return LOOM_EINVAL;
    /* A type no append accepts: no event could ever take this step. */
    tlen = strnlen(type, LOOM_MAX_TYPE_NAME + 1);
    if (tlen > LOOM_MAX_TYPE_NAME)
        return LOOM_ETOOBIG;
    if (!loom__utf8_valid(type, tlen))
        return LOOM_EINVAL;
    if (upcast_find(u, type, from) != NULL)
        return LOOM_EDUPLICATE;
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 8;
        upcast_step *v = loom_realloc(u->v, cap * sizeof *v);
        if (v == NULL)
            return LOOM_ENOMEM;
        u->v = v;
        u->cap = cap;
    }
    if ((copy = loom__strdup(type)) == NULL)
        return LOOM_ENOMEM;
    i = upcast_lower_bound(u, type, from);
    memmove(&u->v[i + 1], &u->v[i], (u->n - i) * sizeof u->v[0]);
    u->v[i] = (upcast_step){copy, from, to, fn, arg};
    u->n++;
    return LOOM_OK;
}

loom_err
loom_store_set_upcasters(loom_store *s, const loom_upcasters *u)
{
    if (s == NULL)
        return LOOM_EINVAL;
    loom__store_enter(s);
    if (s->op != LOOM__OP_NONE)
        return loom__store_fail(s, LOOM_EBUSY,
                                "an operation is in progress on this store "
                                "handle: receive it first");
    s->upcasters = u;
    return LOOM_OK;
}

/* Moves an upcaster's output into page memory and onto `ev`. */
static loom_err
upcast_take(loom_upcast *out, loom_event *ev, int32_t to,
            loom__upcast_alloc_fn alloc, void *ctx)
{
    uint8_t *data = (uint8_t *) "";
    char *type = NULL;
    loom_err rc = LOOM_OK;

    if (out->data == NULL && out->data_len > 0)
        rc = LOOM_EINVAL;
    else if (out->data_len > 0 && (data = alloc(ctx, out->data_len)) == NULL)
        rc = LOOM_ENOMEM;
    else if (out->type != NULL &&
             (type = alloc(ctx, strlen(out->type) + 1)) == NULL)
        rc = LOOM_ENOMEM;
    if (rc == LOOM_OK) {
        if (out->data_len > 0)
            memcpy(data, out->data, out->data_len);
        if (type != NULL)
            ev->type = strcpy(type, out->type);
        ev->data = data;
        ev->data_len = out->data_len;
        ev->schema_version = to;
    }
    loom_free(out->data);
    return rc;
}

loom_err
loom__upcast_event(loom_store *s, loom_event *ev, loom__upcast_alloc_fn alloc,
                   void *ctx)
{
    const upcast_step *step;
    int steps = 0;

    while ((step = upcast_find(s->upcasters, ev->type, ev->schema_version)) !=
           NULL) {
        loom_upcast out = {NULL, NULL, 0};
        int32_t from = ev->schema_version;
        loom_err rc;

        if (++steps > UPCAST_MAX_STEPS)
            return loom__store_fail(s, LOOM_EINVAL,
                                    "upcasting event %lld (%s): more than "
                                    "%d steps: do the upcasters rename types "
                                    "in a cycle?",
                                    (long long) ev->position, ev->type,
                                    UPCAST_MAX_STEPS);
        rc = step->fn(ev, &out, step->arg);
        if (rc == LOOM_OK)
            rc = upcast_take(&out, ev, step->to, alloc, ctx);
        else
            loom_free(out.data);
        if (rc != LOOM_OK)
            return loom__store_fail(s, rc,
                                    "upcasting event %lld of \"%s\" (%s) "
                                    "from schema version %d failed: %s",
                                    (long long) ev->position, ev->stream,
                                    ev->type, (int) from, loom_strerror(rc));
    }
    return LOOM_OK;
}
