#include "testlib.h"

#include <stdatomic.h>

#include "squirrel/check.h"
#include <string.h>

#define MAX_TESTS 256
static struct {
    const char *name;
    sq_test_fn fn;
} tests[MAX_TESTS];
static int ntests;
static atomic_int failures;

void sq_test_register(const char *name, sq_test_fn fn)
{
    if (ntests < MAX_TESTS) {
        tests[ntests].name = name;
        tests[ntests].fn = fn;
        ntests++;
    }
}

void sq_test_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "  FAIL %s:%d: %s\n", file, line, what);
    atomic_fetch_add(&failures, 1);
}

void *sq_test_run(int workers, sq_task_fn fn, void *arg)
{
    sq_runtime_opts o = {.workers = workers};
    void *res = NULL;
    int rc = sq_run(fn, arg, &o, &res);
    if (rc != 0) {
        char m[128];
        snprintf(m, sizeof m, "sq_run returned %d (%s)", rc, sq_strerror(rc));
        sq_test_fail(__FILE__, __LINE__, m);
    }
    return res;
}

/* ------------------------------------------------------------- storms */

static const sq_spawn_opts storm_stack = {.stack_size = SQ_STACK_MIN};

/* Raises the long-hold and long-wait thresholds to at least a minute, if
 * any check is on; *saved receives the configuration to put back. */
static void storm_relax_checks(sq_check_config *saved)
{
    const int64_t minute = (int64_t)60 * 1000 * 1000 * 1000;
    sq_check_get_config(saved);
    if (!saved->findings)
        return;
    sq_check_config c = *saved;
    if (c.long_hold_ns < minute)
        c.long_hold_ns = minute;
    if (c.long_wait_ns < minute)
        c.long_wait_ns = minute;
    CHECK_EQ(sq_check_configure(&c), 0);
}

static void storm_restore_checks(const sq_check_config *saved)
{
    if (saved->findings)
        CHECK_EQ(sq_check_configure(saved), 0);
}

void sq_test_cancel_storm(const sq_test_storm *s)
{
    sq_check_config saved;
    storm_relax_checks(&saved);
    sq_task *t = calloc((size_t)s->tasks, sizeof *t);
    sq_task *bg = calloc((size_t)s->background + 1, sizeof *bg);
    CHECK(t != NULL && bg != NULL);
    if (!t || !bg) {
        free(t);
        free(bg);
        storm_restore_checks(&saved);
        return;
    }
    uint32_t x = s->seed ? s->seed : 1;
    for (int i = 0; i < s->background; i++)
        CHECK_EQ(sq_spawn(&bg[i], s->background_fn, s->arg, &storm_stack),
                 0);
    for (int i = 0; i < s->tasks; i++) {
        void *arg = s->arg_stride ? (char *)s->arg + (size_t)i * s->arg_stride
                                  : s->arg;
        CHECK_EQ(sq_spawn(&t[i], s->fn, arg, &storm_stack), 0);
        if (s->every && i % s->every == s->every - 1) {
            for (int k = 0; k < s->aborts; k++)
                sq_abort(t[sq_test_rnd(&x) % (unsigned)(i + 1)]);
            sq_yield();
        }
        if (s->after_spawn)
            s->after_spawn(i, s->ctx);
    }
    for (int i = 0; s->last_one_in && i < s->tasks; i++)
        if (sq_test_rnd(&x) % s->last_one_in == 0)
            sq_abort(t[i]);
    if (s->after_aborts)
        s->after_aborts(s->ctx);
    for (int i = 0; i < s->tasks; i++)
        sq_join(t[i], NULL);
    if (s->stop)
        atomic_store(s->stop, 1);
    for (int i = 0; i < s->background; i++)
        CHECK_EQ(sq_join(bg[i], NULL), 0);
    free(t);
    free(bg);
    storm_restore_checks(&saved);
}

long sq_test_abort_while_running(sq_task_fn fn, void *arg, int tasks,
                                 atomic_int *go, int stride,
                                 int64_t pause_ns)
{
    sq_task *t = calloc((size_t)tasks, sizeof *t);
    CHECK(t != NULL);
    if (!t)
        return 0;
    for (int i = 0; i < tasks; i++)
        CHECK_EQ(sq_spawn(&t[i], fn, arg, &storm_stack), 0);
    if (go)
        atomic_store(go, 1);
    for (int i = 0; i < tasks; i += stride) {
        sq_sleep(pause_ns);
        sq_abort(t[i]);
    }
    long total = 0;
    for (int i = 0; i < tasks; i++) {
        void *r = NULL;
        sq_join(t[i], &r);
        total += (long)(intptr_t)r;
    }
    free(t);
    return total;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    for (int i = 0; i < ntests; i++) {
        if (argc > 1 && !strstr(tests[i].name, argv[1]))
            continue;
        int before = atomic_load(&failures);
        fprintf(stderr, "[ RUN  ] %s\n", tests[i].name);
        tests[i].fn();
        if (atomic_load(&failures) == before) {
            passed++;
            fprintf(stderr, "[  OK  ] %s\n", tests[i].name);
        } else {
            failed++;
            fprintf(stderr, "[ FAIL ] %s\n", tests[i].name);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
