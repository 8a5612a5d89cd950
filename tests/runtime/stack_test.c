/* Stacks: a stack overflow is reported naming the task, deep use of a
 * large stack works. */
#include "testlib.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int recurse(int depth)
{
    volatile char pad[512];
    pad[0] = (char)depth;
    if (depth == 0)
        return pad[0];
    return recurse(depth - 1) + pad[0];
}

static void *overflow(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)recurse(1 << 20); /* ~512 MiB of frames */
}

static void *overflow_root(void *arg)
{
    (void)arg;
    sq_task t;
    sq_spawn_opts o = {.name = "deep-diver", .stack_size = 64 * 1024};
    sq_spawn(&t, overflow, NULL, &o);
    sq_join(t, NULL);
    return NULL;
}

TEST(stack_overflow_is_reported_with_task_name)
{
    if (SQ_TEST_SANITIZER) {
        /* ASan and TSan run their own SIGSEGV handling and report the
         * overflow themselves; the report checked here is ours. */
        fprintf(stderr, "  skipped under a sanitizer\n");
        return;
    }
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        sq_runtime_opts o = {.workers = 1};
        sq_run(overflow_root, NULL, &o, NULL);
        _exit(0); /* not reached if the overflow kills us */
    }
    close(fds[1]);
    char buf[4096] = {0};
    size_t got = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)n;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
    CHECK(strstr(buf, "stack overflow in task 'deep-diver'") != NULL);
    CHECK(strstr(buf, "stack 65536 bytes") != NULL);
    if (!strstr(buf, "deep-diver"))
        fprintf(stderr, "  child stderr: %s\n", buf);
}

static void *deep_but_fits(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)recurse(1000); /* ~0.5 MiB */
}

static void *big_stack_root(void *arg)
{
    (void)arg;
    sq_task t;
    sq_spawn_opts o = {.stack_size = 4 << 20};
    CHECK_EQ(sq_spawn(&t, deep_but_fits, NULL, &o), 0);
    CHECK_EQ(sq_join(t, NULL), 0);
    return NULL;
}

TEST(large_stack_on_request)
{
    sq_test_run(2, big_stack_root, NULL);
}
