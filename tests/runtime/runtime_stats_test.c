/* sq_runtime_stats_get: exact spawn and alive counts, switches, steals and
 * parks that move when the scheduler does what they name. */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>

#include "squirrel/runtime.h"
#include "testlib.h"

/* tasks_alive once the finished tasks' stacks are given back: a joiner
 * can return a moment before its task's worker has settled the exit. */
static uint64_t alive_settled(sq_runtime *rt, uint64_t want)
{
    sq_runtime_stats s;
    for (int i = 0; i < 5000; i++) {
        CHECK_EQ(sq_runtime_stats_get(rt, &s), 0);
        if (s.tasks_alive == want)
            break;
        if (sq_runtime_current())
            sq_yield();
        else
            sched_yield();
    }
    return s.tasks_alive;
}

static void *spin_task(void *arg)
{
    volatile uint64_t x = (uintptr_t)arg;
    for (int i = 0; i < 200000; i++)
        x = x * 6364136223846793005ull + 1;
    return (void *)(uintptr_t)(x | 1);
}

static void *sleeper(void *arg)
{
    (void)arg;
    sq_sleep(1 * SQ_MSEC);
    return NULL;
}

static void *root(void *arg)
{
    (void)arg;
    sq_runtime_stats a, b;
    CHECK_EQ(sq_runtime_stats_get(NULL, &a), 0);
    CHECK_EQ(a.workers, 2);
    CHECK_EQ(a.tasks_spawned, 1); /* the root */
    CHECK_EQ(a.tasks_alive, 1);
    CHECK_EQ(sq_runtime_stats_get(NULL, NULL), -EINVAL);

    enum { N = 2000 };
    static sq_task t[N];
    for (int round = 0; round < 5; round++) {
        CHECK_EQ(sq_runtime_stats_get(NULL, &a), 0);
        for (int i = 0; i < N; i++)
            CHECK_EQ(sq_spawn(&t[i], i % 2 ? spin_task : sleeper,
                              (void *)(uintptr_t)i, NULL),
                     0);
        CHECK_EQ(sq_runtime_stats_get(NULL, &b), 0);
        CHECK_EQ(b.tasks_spawned - a.tasks_spawned, N);
        CHECK(b.tasks_alive <= a.tasks_alive + N);
        for (int i = 0; i < N; i++)
            CHECK_EQ(sq_join(t[i], NULL), 0);
        CHECK_EQ(alive_settled(NULL, 1), 1); /* joined tasks are reaped */
        CHECK_EQ(sq_runtime_stats_get(NULL, &b), 0);
        CHECK(b.switches >= a.switches + N); /* each ran at least once */
    }
    /* CPU-bound work spawned from one worker spreads by stealing, and
     * the sleepers left workers idle: both counters have moved. */
    CHECK(b.steals > 0);
    CHECK(b.parks > 0);
    return (void *)1;
}

TEST(counts_follow_the_scheduler)
{
    CHECK(sq_test_run(2, root, NULL) == (void *)1);
}

static atomic_int outside_ran;

static void *outside(void *arg)
{
    (void)arg;
    atomic_fetch_add(&outside_ran, 1);
    return NULL;
}

TEST(spawns_from_outside_are_counted)
{
    sq_runtime *rt;
    sq_runtime_opts o = {.workers = 1};
    CHECK_EQ(sq_runtime_create(&rt, &o), 0);
    sq_runtime_stats s;
    CHECK_EQ(sq_runtime_stats_get(rt, &s), 0);
    CHECK_EQ(s.tasks_spawned, 0);
    sq_task t[10];
    for (int i = 0; i < 10; i++)
        CHECK_EQ(sq_runtime_spawn(rt, &t[i], outside, NULL, NULL), 0);
    CHECK_EQ(sq_runtime_stats_get(rt, &s), 0);
    CHECK_EQ(s.tasks_spawned, 10);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    CHECK_EQ(atomic_load(&outside_ran), 10);
    CHECK_EQ(alive_settled(rt, 0), 0);
    CHECK_EQ(sq_runtime_stats_get(NULL, &s), -EINVAL); /* no runtime here */
    sq_runtime_destroy(rt);
}
