/*
 * A main() for a fuzz target without libFuzzer: runs every file of the
 * directories (and every file) named on the command line through
 * LLVMFuzzerTestOneInput(), in name order, so that the seed corpus and
 * each saved crash run as an ordinary test in every build (gcc, ASan)
 * whether clang is there or not.
 *
 *   fuzz_<target>_replay DIR|FILE...
 *
 * A directory that does not exist counts as empty (regressions/<target>/
 * appears with the first crash found). Exits 0 when every input ran, 1
 * when none was found or one could not be read; a crash or a failed
 * property aborts, naming the input first.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* LLVMFuzzerInitialize() is optional: weak, so targets need not define it. */
#pragma weak LLVMFuzzerInitialize

/* Runs the file at `path`; 0, or -1 when it cannot be read. */
static int
replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;

    if (f == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *grown = realloc(buf, cap);
            if (grown == NULL) {
                fprintf(stderr, "replay: %s: out of memory\n", path);
                free(buf);
                fclose(f);
                return -1;
            }
            buf = grown;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        fprintf(stderr, "replay: %s: read error\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    /* What libFuzzer does: the exact bytes, in a buffer of that size (so
     * ASan sees a read one past the end), and NULL for an empty input. */
    uint8_t *exact = len > 0 ? malloc(len) : NULL;
    if (len > 0 && exact == NULL) {
        free(buf);
        return -1;
    }
    if (len > 0)
        memcpy(exact, buf, len);
    free(buf);
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int
replay_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Runs every regular file of `dir` whose name does not start with '.';
 * adds their number to *count. */
static int
replay_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0;
    int rc = 0;

    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char **grown = realloc(names, (n + 1) * sizeof *names);
        size_t plen = strlen(dir) + strlen(e->d_name) + 2;
        if (grown == NULL || (grown[n] = malloc(plen)) == NULL) {
            free(grown != NULL ? grown : names);
            closedir(d);
            return -1;
        }
        names = grown;
        snprintf(names[n++], plen, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof *names, replay_cmp);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (rc == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            rc = replay_file(names[i]);
            (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int
main(int argc, char **argv)
{
    size_t count = 0;
    struct stat st;

    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        int rc;
        if (stat(argv[i], &st) == 0 && S_ISREG(st.st_mode)) {
            rc = replay_file(argv[i]);
            count++;
        } else {
            rc = replay_dir(argv[i], &count);
        }
        if (rc != 0) {
            fprintf(stderr, "replay: %s: cannot read it\n", argv[i]);
            return 1;
        }
    }
    if (count == 0) {
        fprintf(stderr, "replay: no input found (a target needs a seed "
                        "corpus)\n");
        return 1;
    }
    printf("replay: %zu inputs ran cleanly\n", count);
    return 0;
}
