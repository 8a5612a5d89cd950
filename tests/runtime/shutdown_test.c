/* Shutdown with tasks still waiting: all reaped, all memory freed (the
 * ASan build checks the "freed" part: any leak fails the test). */
#include "testlib.h"

#include <stdatomic.h>
#include <unistd.h>

static atomic_long cleaned, began;

static void *wait_forever_sleep(void *arg)
{
    (void)arg;
    atomic_fetch_add(&began, 1);
    sq_sleep(3600 * SQ_SEC);
    atomic_fetch_add(&cleaned, 1);
    return NULL;
}

static void *wait_forever_io(void *arg)
{
    sq_io *rd = arg;
    atomic_fetch_add(&began, 1);
    char c;
    sq_io_read(rd, &c, 1);
    atomic_fetch_add(&cleaned, 1);
    return NULL;
}

static void *wait_forever_join(void *arg)
{
    sq_task *t = arg;
    atomic_fetch_add(&began, 1);
    sq_join(*t, NULL);
    atomic_fetch_add(&cleaned, 1);
    return NULL;
}

static sq_io *pipe_ends[2];
static sq_task join_target;

static void *populate(void *arg)
{
    (void)arg;
    CHECK_EQ(sq_pipe(pipe_ends), 0);
    for (int i = 0; i < 1000; i++)
        CHECK_EQ(sq_spawn(NULL, wait_forever_sleep, NULL, NULL), 0);
    CHECK_EQ(sq_spawn(NULL, wait_forever_io, pipe_ends[0], NULL), 0);
    CHECK_EQ(sq_spawn(&join_target, wait_forever_sleep, NULL, NULL), 0);
    CHECK_EQ(sq_spawn(NULL, wait_forever_join, &join_target, NULL), 0);
    /* Tasks that never get to start. */
    for (int i = 0; i < 1000; i++)
        CHECK_EQ(sq_spawn(NULL, wait_forever_sleep, NULL, NULL), 0);
    return NULL;
}

TEST(shutdown_reaps_waiting_and_unstarted_tasks)
{
    atomic_store(&cleaned, 0);
    atomic_store(&began, 0);
    sq_runtime *rt;
    CHECK_EQ(sq_runtime_create(&rt, &(sq_runtime_opts){.workers = 2}), 0);
    CHECK_EQ(sq_runtime_block_on(rt, populate, NULL, NULL), 0);
    usleep(20000); /* let most of them reach their waits */
    CHECK_EQ(sq_runtime_shutdown(rt), 0);
    /* Every task that started ran its cleanup; none is left. */
    long c = atomic_load(&cleaned);
    fprintf(stderr, "  %ld of 2003 tasks started, all cleaned up\n", c);
    CHECK_EQ(c, atomic_load(&began));
    CHECK(c > 0);
    /* Handles stay the caller's; closing them works after shutdown. */
    sq_io_close(pipe_ends[0]);
    sq_io_close(pipe_ends[1]);
    sq_runtime_destroy(rt); /* frees stacks, task structs, closed handles */
}

static void *spawn_storm(void *arg)
{
    (void)arg;
    for (;;) {
        int rc = sq_spawn(NULL, spawn_storm, NULL, NULL);
        if (rc == -ESHUTDOWN)
            return NULL;
        if (sq_yield() == -ECANCELED)
            return NULL;
    }
}

TEST(shutdown_while_tasks_keep_spawning)
{
    sq_runtime *rt;
    CHECK_EQ(sq_runtime_create(&rt, &(sq_runtime_opts){.workers = 2}), 0);
    CHECK_EQ(sq_runtime_spawn(rt, NULL, spawn_storm, NULL, NULL), 0);
    usleep(5000);
    CHECK_EQ(sq_runtime_shutdown(rt), 0);
    sq_runtime_destroy(rt);
}

TEST(create_and_destroy_many_runtimes)
{
    for (int i = 0; i < 50; i++) {
        sq_runtime *rt;
        CHECK_EQ(sq_runtime_create(&rt, &(sq_runtime_opts){.workers = 2}), 0);
        CHECK_EQ(sq_runtime_spawn(rt, NULL, wait_forever_sleep, NULL, NULL), 0);
        sq_runtime_destroy(rt);
    }
}
