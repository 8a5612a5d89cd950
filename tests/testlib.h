/* A minimal test harness: TEST(name) { ... } registers a test; CHECK*
 * macros report file:line and fail the test; main() runs every test (or
 * those whose name contains argv[1]) and exits non-zero on any failure. */
#ifndef SQ_TESTLIB_H
#define SQ_TESTLIB_H

#include <inttypes.h>
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
