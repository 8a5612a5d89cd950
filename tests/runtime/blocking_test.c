/* The blocking pool runs blocking calls off the workers. */
#include "testlib.h"

#include <stdatomic.h>
#include <unistd.h>

static void *block_100ms(void *arg)
{
    usleep(100000);
    return arg;
}

static atomic_long ticks;

static void *ticker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 50; i++) {
        sq_sleep(SQ_MSEC);
        atomic_fetch_add(&ticks, 1);
    }
    return NULL;
}

static void *runner(void *arg)
{
    void *r = NULL;
    CHECK_EQ(sq_blocking_run(block_100ms, arg, &r), 0);
    CHECK(r == arg);
    return NULL;
}

static void *blocking_root(void *arg)
{
    (void)arg;
    /* 8 blocking calls of 100 ms on a 1-worker runtime: they run in
     * parallel on the pool, and the worker keeps running the ticker. */
    int64_t start = sq_now();
    sq_task ts[8], tick;
    CHECK_EQ(sq_spawn(&tick, ticker, NULL, NULL), 0);
    for (intptr_t i = 0; i < 8; i++)
        CHECK_EQ(sq_spawn(&ts[i], runner, (void *)(i + 1), NULL), 0);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(sq_join(ts[i], NULL), 0);
    CHECK_EQ(sq_join(tick, NULL), 0);
    int64_t took = sq_now() - start;
    CHECK(took < 8 * 100 * SQ_MSEC); /* not serialised */
    CHECK_EQ(atomic_load(&ticks), 50);
    return NULL;
}

TEST(blocking_calls_run_in_parallel_off_the_worker)
{
    atomic_store(&ticks, 0);
    sq_test_run(1, blocking_root, NULL);
}

static void *deadline_root(void *arg)
{
    (void)arg;
    int64_t d;
    CHECK_EQ(sq_deadline_in(10 * SQ_MSEC, &d), 0);
    void *r = (void *)7;
    CHECK_EQ(sq_blocking_run_until(block_100ms, (void *)1, &r, d), -ETIMEDOUT);
    CHECK(r == (void *)7); /* untouched */
    CHECK_EQ(sq_blocking_run_until(block_100ms, NULL, NULL, -1), -EINVAL);
    CHECK_EQ(sq_blocking_run(NULL, NULL, NULL), -EINVAL);
    return NULL;
}

TEST(blocking_run_deadline_and_bad_arguments)
{
    sq_test_run(2, deadline_root, NULL);
    CHECK_EQ(sq_blocking_run(block_100ms, NULL, NULL), -EPERM);
}
