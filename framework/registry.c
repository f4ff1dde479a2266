/*
 * The type registry: a sorted array of (name, descriptor) pairs. Lookups
 * are a binary search; additions shift the tail, which is fine for the few
 * hundred types a program registers once at startup.
 */
#include "loom/registry.h"

#include <dlfcn.h>
#include <string.h>

#include "alloc_int.h"
#include "buf.h"
#include "loom/alloc.h"
#include "pbjson.h"

/* Longest accepted type name, in bytes (loom_registry_add()). */
#define REG_NAME_MAX 255

typedef struct reg_entry {
    char *name;                             /* owned copy */
    const ProtobufCMessageDescriptor *desc; /* borrowed */
} reg_entry;

struct loom_registry {
    reg_entry *v; /* sorted by strcmp() on name */
    size_t n;
    size_t cap;
};

/* Failure flag for the unpack allocator: protobuf-c returns NULL both for
 * bad bytes and for a failed allocation, and only this tells them apart. */
typedef struct reg_unpack_state {
    int nomem;
} reg_unpack_state;

loom_err
loom_registry_new(loom_registry **out)
{
    loom_registry *r;

    if (out == NULL)
        return LOOM_EINVAL;
    *out = NULL;
    r = loom_malloc(sizeof(*r));
    if (r == NULL)
        return LOOM_ENOMEM;
    r->v = NULL;
    r->n = r->cap = 0;
    *out = r;
    return LOOM_OK;
}

void
loom_registry_free(loom_registry *r)
{
    size_t i;

    if (r == NULL)
        return;
    for (i = 0; i < r->n; i++)
        loom_free(r->v[i].name);
    loom_free(r->v);
    loom_free(r);
}

/* The index of the first entry whose name is >= `name`. */
static size_t
reg_lower_bound(const loom_registry *r, const char *name)
{
    size_t lo = 0, hi = r->n, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (strcmp(r->v[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Makes room for one more entry; on failure the registry is unchanged. */
static int
reg_grow(loom_registry *r)
{
    size_t cap;
    reg_entry *v;

    if (r->n < r->cap)
        return 0;
    cap = r->cap ? r->cap * 2 : 16;
    if (cap > SIZE_MAX / sizeof(*v))
        return -1;
    v = loom_realloc(r->v, cap * sizeof(*v));
    if (v == NULL)
        return -1;
    r->v = v;
    r->cap = cap;
    return 0;
}

loom_err
loom_registry_add(loom_registry *r, const char *type_name,
                  const ProtobufCMessageDescriptor *desc)
{
    const char *name;
    size_t len, i;
    char *copy;

    if (r == NULL || desc == NULL ||
        desc->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC)
        return LOOM_EINVAL;
    name = type_name != NULL ? type_name : desc->name;
    if (name == NULL)
        return LOOM_EINVAL;
    len = strnlen(name, REG_NAME_MAX + 1);
    if (len == 0 || len > REG_NAME_MAX)
        return LOOM_EINVAL;
    i = reg_lower_bound(r, name);
    if (i < r->n && strcmp(r->v[i].name, name) == 0)
        return r->v[i].desc == desc ? LOOM_OK : LOOM_EDUPLICATE;
    /* Grow first: a grown array with no new entry leaks nothing. */
    if (reg_grow(r) != 0)
        return LOOM_ENOMEM;
    copy = loom__strdup(name);
    if (copy == NULL)
        return LOOM_ENOMEM;
    memmove(&r->v[i + 1], &r->v[i], (r->n - i) * sizeof(r->v[0]));
    r->v[i].name = copy;
    r->v[i].desc = desc;
    r->n++;
    return LOOM_OK;
}

const ProtobufCMessageDescriptor *
loom_registry_find(const loom_registry *r, const char *type_name)
{
    size_t i;

    if (r == NULL || type_name == NULL)
        return NULL;
    i = reg_lower_bound(r, type_name);
    if (i < r->n && strcmp(r->v[i].name, type_name) == 0)
        return r->v[i].desc;
    return NULL;
}

size_t
loom_registry_count(const loom_registry *r)
{
    return r != NULL ? r->n : 0;
}

const char *
loom_registry_name(const loom_registry *r, size_t i)
{
    if (r == NULL || i >= r->n)
        return NULL;
    return r->v[i].name;
}

static void *
reg_unpack_alloc(void *arg, size_t size)
{
    void *p = loom_malloc(size);

    if (p == NULL)
        ((reg_unpack_state *) arg)->nomem = 1;
    return p;
}

static void
reg_unpack_free(void *arg, void *p)
{
    (void) arg;
    loom_free(p);
}

/* Unpacks `data` as `desc` and prints it. The unpacked message never leaves
 * this function. */
static loom_err
reg_print_typed(loom__buf *b, const ProtobufCMessageDescriptor *desc,
                const uint8_t *data, size_t len)
{
    reg_unpack_state st = {0};
    ProtobufCAllocator a = {reg_unpack_alloc, reg_unpack_free, &st};
    ProtobufCMessage *m = NULL;
    loom_err rc;

    /* protobuf-c's unpacker recurses once per nesting level without a
     * limit; check the depth before handing it untrusted bytes. */
    rc = loom__pb_check_nesting(desc, data, len);
    if (rc != LOOM_OK)
        goto out;
    m = protobuf_c_message_unpack(desc, &a, len, data);
    if (m == NULL) {
        rc = st.nomem ? LOOM_ENOMEM : LOOM_EDECODE;
        goto out;
    }
    rc = loom__pb_to_json(b, m);
out:
    if (m != NULL)
        protobuf_c_message_free_unpacked(m, &a);
    return rc;
}

loom_err
loom_registry_to_json(const loom_registry *r, const char *type_name,
                      const void *data, size_t len, char **out)
{
    static const uint8_t empty[1];
    const ProtobufCMessageDescriptor *desc;
    loom__buf b = LOOM__BUF_INIT;
    loom_err rc;

    if (out != NULL)
        *out = NULL;
    if (r == NULL || out == NULL || (data == NULL && len > 0))
        return LOOM_EINVAL;
    if (data == NULL)
        data = empty;
    desc = loom_registry_find(r, type_name);
    if (desc != NULL)
        rc = reg_print_typed(&b, desc, data, len);
    else
        rc = loom__pb_raw_to_json(&b, data, len);
    if (rc == LOOM_OK) {
        *out = loom__buf_take(&b);
        if (*out == NULL)
            rc = LOOM_ENOMEM;
    }
    loom__buf_free(&b);
    return rc;
}

/*
 * Once loom_register_types() has run, the object stays loaded even when it
 * fails: it may have added descriptors that point into it before failing,
 * and unloading would leave them dangling. Keeping a handle is the
 * documented behaviour, not a leak.
 */
loom_err
loom_registry_load(loom_registry *r, const char *path)
{
    loom_register_types_fn fn;
    void *handle, *sym;

    if (r == NULL || path == NULL || path[0] == '\0')
        return LOOM_EINVAL;
    handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL)
        return LOOM_ENOTFOUND;
    sym = dlsym(handle, LOOM_REGISTER_TYPES_SYMBOL);
    if (sym == NULL) {
        dlclose(handle);
        return LOOM_ENOTFOUND;
    }
    /* POSIX guarantees that a data pointer from dlsym() converts to a
     * function pointer; memcpy keeps -Wpedantic quiet about it. */
    memcpy(&fn, &sym, sizeof(fn));
    return fn(r);
}
