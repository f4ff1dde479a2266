/*
 * UUID generation when the system's random source fails: getrandom() is
 * replaced at link time (-Wl,--wrap=getrandom), so the library's own code
 * path is exercised, and the failure must surface as LOOM_EIO, not as a
 * predictable id.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "loom/uuid.h"

ssize_t __wrap_getrandom(void *buf, size_t len, unsigned flags);
ssize_t __real_getrandom(void *buf, size_t len, unsigned flags);

/* How the fake behaves: 0 real, 1 fail with EIO, 2 EINTR then short reads. */
static int wrap_mode;
static int wrap_calls;

ssize_t
__wrap_getrandom(void *buf, size_t len, unsigned flags)
{
    wrap_calls++;
    if (wrap_mode == 1) {
        errno = EIO;
        return -1;
    }
    if (wrap_mode == 2) {
        if (wrap_calls == 1) {
            errno = EINTR;
            return -1;
        }
        memset(buf, 0xab, 1); /* one byte at a time */
        return 1;
    }
    return __real_getrandom(buf, len, flags);
}

static void
test_uuid_generate_reports_random_failure(void **state)
{
    loom_uuid u;

    (void) state;
    memset(&u, 0, sizeof u);
    wrap_mode = 1;
    wrap_calls = 0;
    assert_int_equal(loom_uuid_generate(&u), LOOM_EIO);
    assert_true(wrap_calls >= 1);
    wrap_mode = 0;
}

static void
test_uuid_generate_retries_interrupted_and_short_reads(void **state)
{
    loom_uuid u;

    (void) state;
    wrap_mode = 2;
    wrap_calls = 0;
    assert_int_equal(loom_uuid_generate(&u), LOOM_OK);
    /* EINTR once, then one-byte reads until the pool (4 KiB) is full. */
    assert_int_equal(wrap_calls, 1 + 4096);
    assert_int_equal(u.bytes[6] >> 4, 7);
    wrap_mode = 0;
}

/* A forked child must not draw the same random bytes as its parent: the
 * per-thread pool is emptied in the child. */
static void
test_uuid_fork_child_does_not_repeat_parent_ids(void **state)
{
    loom_uuid first, parent, child;
    int fds[2];
    pid_t pid;
    int status = 0;

    (void) state;
    wrap_mode = 0;
    assert_int_equal(loom_uuid_generate(&first), LOOM_OK); /* fills pool */
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ssize_t w;
        if (loom_uuid_generate(&child) != LOOM_OK)
            _exit(2);
        w = write(fds[1], &child, sizeof child);
        _exit(w == (ssize_t) sizeof child ? 0 : 3);
    }
    assert_int_equal(loom_uuid_generate(&parent), LOOM_OK);
    assert_int_equal(read(fds[0], &child, sizeof child),
                     (ssize_t) sizeof child);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* Compare the random parts only; the time prefix may match. */
    assert_memory_not_equal(parent.bytes + 6, child.bytes + 6, 10);
    close(fds[0]);
    close(fds[1]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid_generate_reports_random_failure),
        cmocka_unit_test(
            test_uuid_generate_retries_interrupted_and_short_reads),
        cmocka_unit_test(test_uuid_fork_child_does_not_repeat_parent_ids),
    };

    return cmocka_run_group_tests_name("framework.uuid_fail", tests, NULL,
                                       NULL);
}
