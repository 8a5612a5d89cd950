/* Tasks: spawn, join, detach, abort, handles, yield, identity. */
#include "testlib.h"

#include <stdatomic.h>
#include <string.h>

static void *return_arg(void *arg)
{
    return arg;
}

static void *spawn_and_join_many(void *arg)
{
    long n = (long)(intptr_t)arg;
    sq_task *ts = calloc((size_t)n, sizeof *ts);
    for (long i = 0; i < n; i++)
        CHECK_EQ(sq_spawn(&ts[i], return_arg, (void *)(intptr_t)(i * 7 + 1), NULL), 0);
    long bad = 0;
    for (long i = 0; i < n; i++) {
        void *r = NULL;
        int rc = sq_join(ts[i], &r);
        if (rc != 0 || (intptr_t)r != i * 7 + 1)
            bad++;
    }
    CHECK_EQ(bad, 0);
    free(ts);
    return (void *)1;
}

TEST(hundred_thousand_tasks_spawned_and_joined_with_results_checked)
{
    CHECK(sq_test_run(2, spawn_and_join_many, (void *)100000) == (void *)1);
}

TEST(single_worker_runtime_runs_tasks)
{
    CHECK(sq_test_run(1, spawn_and_join_many, (void *)1000) == (void *)1);
}

static void *root_returns_value(void *arg)
{
    (void)arg;
    CHECK(sq_task_id() != 0);
    CHECK(strcmp(sq_task_name(), "root") == 0);
    return (void *)42;
}

TEST(block_on_returns_root_result)
{
    CHECK(sq_test_run(2, root_returns_value, NULL) == (void *)42);
    CHECK_EQ(sq_task_id(), 0);
    CHECK(sq_task_name() == NULL);
}

static void *named_child(void *arg)
{
    (void)arg;
    return (void *)(uintptr_t)(strcmp(sq_task_name(), "worker-7") == 0);
}

static void *check_names(void *arg)
{
    (void)arg;
    sq_task t;
    sq_spawn_opts o = {.name = "worker-7", .stack_size = 64 * 1024};
    CHECK_EQ(sq_spawn(&t, named_child, NULL, &o), 0);
    void *r;
    CHECK_EQ(sq_join(t, &r), 0);
    CHECK(r == (void *)1);
    return NULL;
}

TEST(spawn_options_name_and_stack_size)
{
    sq_test_run(2, check_names, NULL);
}

static void *bad_use(void *arg)
{
    (void)arg;
    sq_task t;
    sq_spawn_opts tiny = {.stack_size = 1024};
    CHECK_EQ(sq_spawn(&t, return_arg, NULL, &tiny), -EINVAL);
    CHECK_EQ(sq_spawn(&t, NULL, NULL, NULL), -EINVAL);

    CHECK_EQ(sq_spawn(&t, return_arg, (void *)5, NULL), 0);
    void *r;
    CHECK_EQ(sq_join(t, &r), 0);
    CHECK_EQ(sq_join(t, &r), -EINVAL);      /* joined twice */
    CHECK_EQ(sq_detach(t), -EINVAL);
    CHECK_EQ(sq_abort(t), -EINVAL);

    CHECK_EQ(sq_spawn(&t, return_arg, NULL, NULL), 0);
    CHECK_EQ(sq_detach(t), 0);
    CHECK_EQ(sq_join(t, &r), -EINVAL);      /* joining a detached task */

    CHECK_EQ(sq_spawn(&t, return_arg, NULL, NULL), 0);
    CHECK_EQ(sq_join_until(t, &r, -1), -EINVAL); /* negative deadline */
    CHECK_EQ(sq_join(t, NULL), 0);

    CHECK_EQ(sq_sleep(-1), -EINVAL);
    CHECK_EQ(sq_sleep(INT64_MAX - 1), -EOVERFLOW);
    CHECK_EQ(sq_sleep_until(-5), -EINVAL);
    int64_t d;
    CHECK_EQ(sq_deadline_in(-1, &d), -EINVAL);
    CHECK_EQ(sq_deadline_in(INT64_MAX - 2, &d), -EOVERFLOW);
    CHECK_EQ(sq_cancel_unmask(), -EINVAL);

    sq_task self = {0};
    CHECK_EQ(sq_join(self, NULL), -EINVAL);  /* empty handle */
    sq_runtime *rt = sq_runtime_current();
    CHECK(rt != NULL);
    CHECK_EQ(sq_runtime_block_on(rt, return_arg, NULL, NULL), -EPERM);
    CHECK_EQ(sq_runtime_shutdown(rt), -EPERM);
    return NULL;
}

TEST(bad_use_returns_clear_errors)
{
    sq_test_run(2, bad_use, NULL);
    sq_task t;
    CHECK_EQ(sq_spawn(&t, return_arg, NULL, NULL), -EPERM); /* no runtime */
    sq_runtime_opts o = {.workers = -1};
    sq_runtime *rt;
    CHECK_EQ(sq_runtime_create(&rt, &o), -EINVAL);
    o.workers = 1;
    o.stack_size = 4096;
    CHECK_EQ(sq_runtime_create(&rt, &o), -EINVAL);
}

struct self_ref {
    sq_task handle;
    atomic_bool ready;
};

static void *join_self(void *arg)
{
    struct self_ref *me = arg;
    while (!atomic_load(&me->ready))
        sq_yield();
    return (void *)(intptr_t)sq_join(me->handle, NULL);
}

static void *self_join_root(void *arg)
{
    (void)arg;
    struct self_ref me = {.ready = false};
    CHECK_EQ(sq_spawn(&me.handle, join_self, &me, NULL), 0);
    sq_task t = me.handle;
    atomic_store(&me.ready, true);
    void *r;
    CHECK_EQ(sq_join(t, &r), 0);
    CHECK_EQ((intptr_t)r, -EDEADLK);
    return NULL;
}

TEST(joining_oneself_is_edeadlk)
{
    sq_test_run(2, self_join_root, NULL);
}

static void *spawn_after_shutdown(void *arg)
{
    (void)arg;
    return NULL;
}

TEST(spawn_into_shut_down_runtime_is_eshutdown)
{
    sq_runtime *rt;
    CHECK_EQ(sq_runtime_create(&rt, NULL), 0);
    CHECK_EQ(sq_runtime_block_on(rt, spawn_after_shutdown, NULL, NULL), 0);
    CHECK_EQ(sq_runtime_shutdown(rt), 0);
    sq_task t;
    CHECK_EQ(sq_runtime_spawn(rt, &t, return_arg, NULL, NULL), -ESHUTDOWN);
    CHECK_EQ(sq_runtime_block_on(rt, return_arg, NULL, NULL), -ESHUTDOWN);
    CHECK_EQ(sq_runtime_shutdown(rt), 0); /* twice is harmless */
    sq_runtime_destroy(rt);
}

static atomic_long yields_seen;

static void *yielder(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        CHECK_EQ(sq_yield(), 0);
        atomic_fetch_add(&yields_seen, 1);
    }
    return NULL;
}

static void *many_yielders(void *arg)
{
    (void)arg;
    sq_task ts[200];
    for (int i = 0; i < 200; i++)
        CHECK_EQ(sq_spawn(&ts[i], yielder, NULL, NULL), 0);
    for (int i = 0; i < 200; i++)
        CHECK_EQ(sq_join(ts[i], NULL), 0);
    return NULL;
}

TEST(yield_many_completes_every_yield)
{
    atomic_store(&yields_seen, 0);
    sq_test_run(2, many_yielders, NULL);
    CHECK_EQ(atomic_load(&yields_seen), 200 * 1000);
}

/* Two tasks alternate strictly through yields on one worker: yield must
 * let the other run (FIFO), not return at once. */
static atomic_int turn;
static void *alternator(void *arg)
{
    int me = (int)(intptr_t)arg, bad = 0;
    for (int i = 0; i < 100; i++) {
        if (atomic_load(&turn) != me)
            bad++;
        atomic_store(&turn, 1 - me);
        sq_yield();
    }
    return (void *)(intptr_t)bad;
}

static void *alternate_root(void *arg)
{
    (void)arg;
    sq_task a, b;
    atomic_store(&turn, 0);
    CHECK_EQ(sq_spawn(&a, alternator, (void *)0, NULL), 0);
    CHECK_EQ(sq_spawn(&b, alternator, (void *)1, NULL), 0);
    void *ra, *rb;
    CHECK_EQ(sq_join(a, &ra), 0);
    CHECK_EQ(sq_join(b, &rb), 0);
    CHECK_EQ((intptr_t)ra + (intptr_t)rb, 0);
    return NULL;
}

TEST(yield_lets_other_tasks_run_in_fifo_order)
{
    sq_test_run(1, alternate_root, NULL);
}

/* Spawning into a running runtime from a plain thread. */
static void *add_one(void *arg)
{
    atomic_fetch_add((atomic_long *)arg, 1);
    return (void *)7;
}

TEST(spawn_from_plain_thread_and_join_from_it)
{
    sq_runtime *rt;
    CHECK_EQ(sq_runtime_create(&rt, NULL), 0);
    atomic_long count = 0;
    sq_task ts[1000];
    for (int i = 0; i < 1000; i++)
        CHECK_EQ(sq_runtime_spawn(rt, &ts[i], add_one, &count, NULL), 0);
    for (int i = 0; i < 1000; i++) {
        void *r = NULL;
        CHECK_EQ(sq_join(ts[i], &r), 0); /* blocks this plain thread */
        CHECK(r == (void *)7);
    }
    CHECK_EQ(atomic_load(&count), 1000);
    sq_runtime_destroy(rt);
}
