/*
 * loomctl's command line (tools/loomctl): the whole of loomctl's main()
 * on an arbitrary argv, every command's option parsing and checks
 * included, without a database. loomctl's sources are compiled with
 * main() renamed to loomctl_main() (CMakeLists.txt), and linked with
 * three functions wrapped (-Wl,--wrap): connecting (loom_store_open,
 * PQconnectdbParams) goes to a socket directory that does not exist, so
 * every command fails the way it fails against a server that is down,
 * right after its arguments were parsed and the connection string
 * checked; and dlopen() (--types, --plugin) is given a path that does
 * not exist, so no fuzzed path is ever loaded. The real functions run in
 * both cases: the errors are libpq's and the loader's own.
 *
 * Input: the arguments, separated by NUL bytes (at most 64).
 *
 * Properties: main() returns 0, 1 or 2 (loomctl's documented exit
 * codes) and frees what it allocated (LeakSanitizer). Without a database
 * no command can succeed, so 0 only comes with help.
 */
#include <dlfcn.h>
#include <string.h>

#include <libpq-fe.h>

#include "fuzz.h"
#include "loom/eventstore.h"

#define LA_MAX_ARGS 64

/* Where nothing is listening or loadable. */
#define LA_NOWHERE "/nonexistent-loom-fuzz"

int loomctl_main(int argc, char **argv);

void *__real_dlopen(const char *file, int mode);
void *__wrap_dlopen(const char *file, int mode);
loom_err __real_loom_store_open(loom_store **out, const loom_store_config *cfg,
                                char *errbuf, size_t errlen);
loom_err __wrap_loom_store_open(loom_store **out, const loom_store_config *cfg,
                                char *errbuf, size_t errlen);
PGconn *__real_PQconnectdbParams(const char *const *keys,
                                 const char *const *values, int expand);
PGconn *__wrap_PQconnectdbParams(const char *const *keys,
                                 const char *const *values, int expand);

void *
__wrap_dlopen(const char *file, int mode)
{
    (void) file;
    return __real_dlopen(LA_NOWHERE "/types.so", mode);
}

loom_err
__wrap_loom_store_open(loom_store **out, const loom_store_config *cfg,
                       char *errbuf, size_t errlen)
{
    loom_store_config c = *cfg;

    c.conninfo = "host=" LA_NOWHERE " dbname=fuzz";
    return __real_loom_store_open(out, &c, errbuf, errlen);
}

PGconn *
__wrap_PQconnectdbParams(const char *const *keys, const char *const *values,
                         int expand)
{
    static const char *const k[] = {"host", "dbname", NULL};
    static const char *const v[] = {LA_NOWHERE, "fuzz", NULL};

    (void) keys;
    (void) values;
    (void) expand;
    return __real_PQconnectdbParams(k, v, 0);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    /* --db alone names the database: the environment must not. */
    unsetenv("LOOM_DATABASE_URL");
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = fuzz_strndup(data, size);
    char *argv[LA_MAX_ARGS + 2];
    int argc = 0, rc, help = 0;
    size_t at = 0;

    argv[argc++] = (char *) "loomctl";
    while (at <= size && argc <= LA_MAX_ARGS) {
        argv[argc++] = copy + at;
        at += strlen(copy + at) + 1;
    }
    argv[argc] = NULL;
    for (int i = 1; i < argc; i++)
        help |= strcmp(argv[i], "help") == 0 || strcmp(argv[i], "-h") == 0 ||
                strcmp(argv[i], "--help") == 0;
    rc = loomctl_main(argc, argv);
    FUZZ_CHECK(rc == 0 || rc == 1 || rc == 2);
    FUZZ_CHECK(rc != 0 || help);
    free(copy);
    return 0;
}
