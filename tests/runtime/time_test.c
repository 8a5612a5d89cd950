/* Sleep and deadlines: never early, late within the documented bound. */
#include "testlib.h"

#include <stdatomic.h>

/* A sleep never ends early (asserted for every sleep).  How late it ends
 * is speed, which benchmarks show, not this test: the machine may run
 * many other tests (CI runs the suite on 2 cores under load), so the
 * median lateness is only bounded by what a lost or stuck timer would
 * exceed (a sleep that ends only when something else wakes the worker),
 * and printed. */
#define LATE_BOUND (250 * SQ_MSEC)

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void *sleep_accuracy(void *arg)
{
    (void)arg;
    const int64_t lengths[] = {0, 100 * SQ_USEC, SQ_MSEC, 3 * SQ_MSEC,
                               10 * SQ_MSEC, 25 * SQ_MSEC};
    enum { REPS = 7, N = REPS * 6 };
    int64_t late[N];
    int k = 0;
    for (int rep = 0; rep < REPS; rep++) {
        for (size_t i = 0; i < sizeof lengths / sizeof *lengths; i++) {
            int64_t start = sq_now();
            CHECK_EQ(sq_sleep(lengths[i]), 0);
            int64_t took = sq_now() - start;
            CHECK(took >= lengths[i]);
            late[k++] = took - lengths[i];
        }
    }
    qsort(late, N, sizeof *late, cmp_i64);
    fprintf(stderr, "  lateness: median %.3f ms, worst %.3f ms\n",
            late[N / 2] / 1e6, late[N - 1] / 1e6);
    CHECK(late[N / 2] <= LATE_BOUND);
    return NULL;
}

TEST(sleep_is_never_early_and_late_within_bound)
{
    sq_test_run(2, sleep_accuracy, NULL);
}

static void *sleep_until_past(void *arg)
{
    (void)arg;
    int64_t start = sq_now();
    CHECK_EQ(sq_sleep_until(0), 0); /* in the past: returns at once */
    CHECK_EQ(sq_sleep_until(start - SQ_SEC), 0);
    int64_t d = start + 5 * SQ_MSEC;
    CHECK_EQ(sq_sleep_until(d), 0);
    CHECK(sq_now() >= d);
    return NULL;
}

TEST(sleep_until_past_deadline_returns_immediately)
{
    sq_test_run(2, sleep_until_past, NULL);
}

/* Many sleepers with distinct deadlines all wake, each not early. */
static atomic_long early, done;

static void *sleeper(void *arg)
{
    int64_t len = (int64_t)(intptr_t)arg;
    int64_t start = sq_now();
    CHECK_EQ(sq_sleep(len), 0);
    if (sq_now() - start < len)
        atomic_fetch_add(&early, 1);
    atomic_fetch_add(&done, 1);
    return NULL;
}

static void *many_sleepers(void *arg)
{
    (void)arg;
    enum { N = 10000 };
    static sq_task ts[N];
    for (int i = 0; i < N; i++) {
        int64_t len = (int64_t)((i * 7919) % 50) * SQ_MSEC / 2;
        sq_spawn_opts o = {.stack_size = SQ_STACK_MIN * 2};
        CHECK_EQ(sq_spawn(&ts[i], sleeper, (void *)(intptr_t)len, &o), 0);
    }
    for (int i = 0; i < N; i++)
        CHECK_EQ(sq_join(ts[i], NULL), 0);
    return NULL;
}

TEST(ten_thousand_sleepers_all_wake_none_early)
{
    atomic_store(&early, 0);
    atomic_store(&done, 0);
    sq_test_run(2, many_sleepers, NULL);
    CHECK_EQ(atomic_load(&early), 0);
    CHECK_EQ(atomic_load(&done), 10000);
}

/* Deadlines that never fire are cheap and leave nothing behind: joins
 * with a far deadline on tasks that finish quickly. */
static void *quick(void *arg)
{
    return arg;
}

static void *unfired_deadlines(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        sq_task t;
        CHECK_EQ(sq_spawn(&t, quick, (void *)(intptr_t)i, NULL), 0);
        int64_t d;
        CHECK_EQ(sq_deadline_in(10 * SQ_SEC, &d), 0);
        void *r;
        CHECK_EQ(sq_join_until(t, &r, d), 0);
        CHECK_EQ((intptr_t)r, i);
    }
    return NULL;
}

TEST(deadlines_that_do_not_fire_are_disarmed)
{
    sq_test_run(2, unfired_deadlines, NULL);
}

static void *slow(void *arg)
{
    (void)arg;
    sq_sleep(50 * SQ_MSEC);
    return (void *)9;
}

static void *join_deadline_fires(void *arg)
{
    (void)arg;
    sq_task t;
    CHECK_EQ(sq_spawn(&t, slow, NULL, NULL), 0);
    int64_t d;
    CHECK_EQ(sq_deadline_in(5 * SQ_MSEC, &d), 0);
    void *r = NULL;
    CHECK_EQ(sq_join_until(t, &r, d), -ETIMEDOUT);
    CHECK(sq_now() >= d);
    CHECK_EQ(sq_join(t, &r), 0); /* handle still usable after a timeout */
    CHECK(r == (void *)9);
    return NULL;
}

TEST(join_deadline_fires_and_leaves_handle_usable)
{
    sq_test_run(2, join_deadline_fires, NULL);
}

TEST(sleep_outside_a_task_blocks_the_thread)
{
    int64_t start = sq_now();
    CHECK_EQ(sq_sleep(2 * SQ_MSEC), 0);
    CHECK(sq_now() - start >= 2 * SQ_MSEC);
}
