#include "testlib.h"

#include <stdatomic.h>
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
