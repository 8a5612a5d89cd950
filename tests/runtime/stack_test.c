/* Stacks: a stack overflow is reported naming the task, whichever guard
 * sits below the stack (SQUIRREL_STACK_GUARD); deep use of a stack never
 * trips its guard; many live tasks do not need a kernel mapping each. */
#include "testlib.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
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

/* ------------------------------------------------- overflow reports */

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

/* Runs fn as the root task of a one-worker runtime in a child process
 * with SQUIRREL_STACK_GUARD=guard (NULL: unset), and returns the child's
 * wait status and what it wrote to stderr. */
static int run_child(const char *guard, sq_task_fn fn, char *buf, size_t len)
{
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        if (guard)
            setenv("SQUIRREL_STACK_GUARD", guard, 1);
        else
            unsetenv("SQUIRREL_STACK_GUARD");
        sq_runtime_opts o = {.workers = 1};
        sq_run(fn, NULL, &o, NULL);
        _exit(0); /* not reached if the overflow kills us */
    }
    close(fds[1]);
    memset(buf, 0, len);
    size_t got = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + got, len - 1 - got)) > 0)
        got += (size_t)n;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return status;
}

static void check_overflow_reported(const char *guard)
{
    char buf[4096];
    int status = run_child(guard, overflow_root, buf, sizeof buf);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
    CHECK(strstr(buf, "stack overflow in task 'deep-diver'") != NULL);
    CHECK(strstr(buf, "stack 65536 bytes") != NULL);
    if (!strstr(buf, "deep-diver"))
        fprintf(stderr, "  child stderr (%s): %s\n", guard ? guard : "auto",
                buf);
}

/* ASan and TSan run their own SIGSEGV handling and report the overflow
 * themselves; the report checked here is ours. */
#define SKIP_UNDER_SANITIZER()                                       \
    do {                                                             \
        if (SQ_TEST_SANITIZER) {                                     \
            fprintf(stderr, "  skipped under a sanitizer\n");        \
            return;                                                  \
        }                                                            \
    } while (0)

TEST(stack_overflow_is_reported_with_task_name)
{
    SKIP_UNDER_SANITIZER();
    check_overflow_reported(NULL);
}

TEST(stack_overflow_is_reported_with_guard_pages)
{
    SKIP_UNDER_SANITIZER();
    check_overflow_reported("pages");
}

TEST(stack_overflow_is_reported_with_canaries)
{
    SKIP_UNDER_SANITIZER();
    check_overflow_reported("canary");
}

/* Writes every byte of a frame ~2 KiB larger than a 64 KiB stack, so
 * the overflow ends inside the 4 KiB guard slot below the stack, returns,
 * and switches out. */
static int spill(void)
{
    size_t n = 64 * 1024 + 2048;
    volatile char big[n];
    for (size_t i = 0; i < n; i++)
        big[i] = (char)i;
    return big[0] + big[n - 1];
}

static atomic_int holder_started;

static void *holder(void *arg)
{
    (void)arg;
    atomic_store(&holder_started, 1);
    sq_sleep_until(SQ_FOREVER); /* until shutdown aborts it */
    return NULL;
}

static void *spiller(void *arg)
{
    (void)arg;
    int r = spill();
    sq_yield();
    return (void *)(intptr_t)r;
}

static void *canary_root(void *arg)
{
    (void)arg;
    sq_spawn_opts o = {.name = "holder", .stack_size = 64 * 1024};
    sq_task h, t;
    sq_spawn(&h, holder, NULL, &o);
    sq_detach(h);
    /* The holder takes the lowest slot of the class's first region,
     * which has a guard page even in canary mode; the spiller gets the
     * next one, guarded by its canary alone. */
    while (!atomic_load(&holder_started))
        sq_yield();
    o.name = "spiller";
    sq_spawn(&t, spiller, NULL, &o);
    sq_join(t, NULL);
    return NULL;
}

TEST(overwritten_canary_is_reported_at_switch_out)
{
    SKIP_UNDER_SANITIZER();
    char buf[4096];
    int status = run_child("canary", canary_root, buf, sizeof buf);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    CHECK(strstr(buf, "stack overflow in task 'spiller'") != NULL);
    CHECK(strstr(buf, "canary") != NULL);
    if (!strstr(buf, "spiller"))
        fprintf(stderr, "  child stderr: %s\n", buf);
}

/* ------------------------------------------------------- deep use */

/* What recurse(depth) returns, without the recursion. */
static intptr_t recurse_result(int depth)
{
    intptr_t sum = 0;
    for (int d = 0; d <= depth; d++)
        sum += (char)d;
    return sum;
}

struct deep {
    size_t stack;
    int depth;
};

static void *deep_task(void *arg)
{
    const struct deep *d = arg;
    int r = recurse(d->depth);
    for (int i = 0; i < 3; i++)
        sq_yield(); /* switch-outs: each one checks a canary */
    return (void *)(intptr_t)r;
}

/* Each stack size with recursion down to most of it, many at once. */
static void *deep_root(void *arg)
{
    (void)arg;
    /* ~530 bytes per level, up to ~650 under ASan: about two thirds of
     * each stack, and more under ASan */
    static const struct deep cases[] = {
        {16 * 1024, 20},   {64 * 1024, 80},   {256 * 1024, 320},
        {1 << 20, 1280},   {4 << 20, 5120},
    };
    enum { N = 5, PER = 16 };
    sq_task t[N * PER];
    for (int i = 0; i < N * PER; i++) {
        sq_spawn_opts o = {.stack_size = cases[i % N].stack};
        CHECK_EQ(sq_spawn(&t[i], deep_task, (void *)&cases[i % N], &o), 0);
    }
    for (int i = 0; i < N * PER; i++) {
        void *r = NULL;
        CHECK_EQ(sq_join(t[i], &r), 0);
        CHECK_EQ((intptr_t)r, recurse_result(cases[i % N].depth));
    }
    return NULL;
}

static void run_deep(const char *guard)
{
    if (guard)
        setenv("SQUIRREL_STACK_GUARD", guard, 1);
    sq_test_run(2, deep_root, NULL);
    unsetenv("SQUIRREL_STACK_GUARD");
}

TEST(deep_use_fits_with_guard_markers)
{
    run_deep(NULL);
}

TEST(deep_use_fits_with_guard_pages)
{
    run_deep("pages");
}

TEST(deep_use_fits_with_canaries)
{
    run_deep("canary");
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

/* ------------------------------------------------- many live tasks */

/* ThreadSanitizer maps memory of its own for every task (fiber) it is
 * told about, and creating one is slow: fewer tasks there, and the count
 * of mappings is not ours to check. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifdef UNDER_TSAN
#define LIVE_TASKS 4000
#else
#define LIVE_TASKS 40000
#endif

static long count_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    long n = 0;
    int c;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* Whether this kernel has guard markers (MADV_GUARD_INSTALL, Linux
 * 6.13+) that really fault: populating a guarded page fails with EFAULT
 * (emulators may accept the advice and do nothing). */
static bool kernel_has_guard_markers(void)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    char *p = mmap(NULL, ps, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return false;
    bool ok = madvise(p, ps, 102 /* MADV_GUARD_INSTALL */) == 0 &&
              madvise(p, ps, 22 /* MADV_POPULATE_READ */) != 0 &&
              errno == EFAULT;
    munmap(p, ps);
    return ok;
}

static atomic_int live_started;

static void *live_task(void *arg)
{
    (void)arg;
    atomic_fetch_add(&live_started, 1);
    return (void *)(intptr_t)sq_sleep_until(SQ_FOREVER);
}

static void *live_root(void *arg)
{
    long *grew = arg;
    static sq_task t[LIVE_TASKS];
    atomic_store(&live_started, 0);
    long before = count_mappings();
    sq_spawn_opts o = {.stack_size = SQ_STACK_MIN};
    for (int i = 0; i < LIVE_TASKS; i++)
        CHECK_EQ(sq_spawn(&t[i], live_task, NULL, &o), 0);
    WAIT_UNTIL(atomic_load(&live_started) == LIVE_TASKS);
    *grew = count_mappings() - before;
    for (int i = 0; i < LIVE_TASKS; i++)
        sq_abort(t[i]);
    for (int i = 0; i < LIVE_TASKS; i++) {
        void *r = NULL;
        CHECK_EQ(sq_join(t[i], &r), -ECANCELED);
        CHECK_EQ((intptr_t)r, -ECANCELED);
    }
    return NULL;
}

static long max_map_count(void)
{
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    long v = 65530; /* the kernel's default */
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = 65530;
        fclose(f);
    }
    return v;
}

/* vm.max_map_count (65,530 by default) is never what limits live tasks:
 * with guard markers the stacks take a handful of mappings; without them
 * (older kernels, emulators), guard pages stop at a quarter of the limit,
 * at most two mappings each, and canaries take over. */
TEST(many_live_tasks_need_few_mappings)
{
    long grew = -1;
    sq_test_run(2, live_root, &grew);
    long max = max_map_count();
    bool markers = kernel_has_guard_markers();
    fprintf(stderr, "  %d live tasks: %ld more mappings (limit %ld, %s)\n",
            LIVE_TASKS, grew, max,
            markers ? "guard markers" : "no guard markers");
#ifndef UNDER_TSAN
    CHECK(grew >= 0);
    CHECK(grew <= max / 2 + 1000);
    if (markers)
        CHECK(grew < 1000);
#endif
}
