/* A minimal test harness: TEST(name) { ... } registers a test; CHECK*
 * macros report file:line and fail the test; main() runs every test (or
 * those whose name contains argv[1]) and exits non-zero on any failure. */
#ifndef SQ_TESTLIB_H
#define SQ_TESTLIB_H

#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "squirrel/runtime.h"

typedef void (*sq_test_fn)(void);
void sq_test_register(const char *name, sq_test_fn fn);
void sq_test_fail(const char *file, int line, const char *what);

#define TEST(name)                                                   \
    static void test_##name(void);                                   \
    __attribute__((constructor)) static void register_##name(void)   \
    {                                                                \
        sq_test_register(#name, test_##name);                        \
    }                                                                \
    static void test_##name(void)

#define CHECK(cond)                                                  \
    do {                                                             \
        if (!(cond))                                                 \
            sq_test_fail(__FILE__, __LINE__, #cond);                 \
    } while (0)

#define CHECK_EQ(a, b)                                                    \
    do {                                                                  \
        long long va_ = (long long)(a), vb_ = (long long)(b);             \
        if (va_ != vb_) {                                                 \
            char m_[256];                                                 \
            snprintf(m_, sizeof m_, "%s == %s (%lld != %lld)", #a, #b,    \
                     va_, vb_);                                           \
            sq_test_fail(__FILE__, __LINE__, m_);                         \
        }                                                                 \
    } while (0)

/* Runs fn(arg) as the root task of a fresh runtime with `workers`
 * workers, checks it ran, shuts down, and returns the root's result. */
void *sq_test_run(int workers, sq_task_fn fn, void *arg);

/* xorshift32: a fast, good-enough generator for randomised schedules;
 * *x must not start at 0. */
static inline uint32_t sq_test_rnd(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* Polls `cond`, sleeping briefly (so that other tasks of a single worker
 * run), until it holds; fails the test after 30 s.  From a task. */
#define WAIT_UNTIL(cond)                                              \
    do {                                                              \
        int64_t wu_deadline_ = sq_now() + 30 * SQ_SEC;                \
        while (!(cond)) {                                             \
            if (sq_now() > wu_deadline_) {                            \
                CHECK(cond);                                          \
                break;                                                \
            }                                                         \
            sq_sleep(50 * SQ_USEC);                                   \
        }                                                             \
    } while (0)

/* ------------------------------------------------------ storms */
/* Shapes that many concurrency tests share; each test keeps its own task
 * bodies and checks its own invariants.  All are called from a task
 * (typically the root of sq_test_run), spawn with the smallest stack
 * (SQ_STACK_MIN), fail the test if a spawn fails, and return once every
 * task they spawned has finished. */

/* While a storm runs, the long-hold and long-wait thresholds of the
 * run-time checks (when on) are raised to a minute: thousands of tasks
 * on two workers of a loaded machine stretch holds and waits far past
 * their defaults by design, and those checks have their own tests
 * (tests/check/held_test.c).  Every other check stays as configured; a
 * hold or wait lost for good still fails the test (it never ends).
 *
 * A cancel storm: `tasks` tasks are spawned one after another, and aborted
 * at random as they come (so that aborts land on tasks not yet started,
 * queued or waiting), then some more are aborted at the end, and all are
 * joined. */
typedef struct sq_test_storm {
    int tasks;               /* how many to spawn */
    sq_task_fn fn;           /* each runs fn(arg) ... */
    void *arg;
    size_t arg_stride;       /* ... or, if not 0, task i runs
                              * fn((char *)arg + i * arg_stride) */
    int every, aborts;       /* after every `every` spawns: abort `aborts`
                              * tasks drawn among those spawned so far,
                              * then yield (every 0: none) */
    unsigned last_one_in;    /* after the spawns: abort each task with a
                              * chance of 1 in last_one_in (1: all; 0:
                              * none) */
    uint32_t seed;           /* of the draws; not 0 */
    /* Optional: `background` tasks of background_fn(arg), spawned before
     * the storm and joined after it (each must return 0, as NULL): they
     * run until *stop, which is set once the storm's tasks are joined. */
    int background;
    sq_task_fn background_fn;
    atomic_int *stop;
    /* Optional: called after task i is spawned (and any aborts). */
    void (*after_spawn)(int i, void *ctx);
    /* Optional: called once every abort is made, before the joins. */
    void (*after_aborts)(void *ctx);
    void *ctx;
} sq_test_storm;

void sq_test_cancel_storm(const sq_test_storm *s);

/* Tasks aborted while they run: spawns `tasks` tasks of fn(arg), sets *go
 * (if go is not NULL) once all are spawned, then aborts task 0, stride,
 * 2 stride, ..., each after a pause of pause_ns, and joins them all.
 * Returns the sum of their results (each an intptr_t; NULL for a task
 * aborted before it ran). */
long sq_test_abort_while_running(sq_task_fn fn, void *arg, int tasks,
                                 atomic_int *go, int stride,
                                 int64_t pause_ns);

/* True when built with a sanitizer or run under emulation: time bounds
 * are looser there. */
#ifdef SQ_TEST_SLOW_BUILD
#define SQ_TEST_SLOW 1
#else
#define SQ_TEST_SLOW 0
#endif

/* True when built with a sanitizer, which handles SIGSEGV itself. */
#ifdef SQ_TEST_SANITIZED
#define SQ_TEST_SANITIZER 1
#else
#define SQ_TEST_SANITIZER 0
#endif

#endif
