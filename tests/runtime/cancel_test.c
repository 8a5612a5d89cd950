/* Cancellation: every kind of wait returns -ECANCELED, cleanup runs,
 * masking defers it, tasks aborted before they start never run. */
#include "testlib.h"

#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

static atomic_int cleanups;

static void *sleep_forever(void *arg)
{
    atomic_int *started = arg;
    atomic_store(started, 1);
    int rc = sq_sleep(3600 * SQ_SEC);
    atomic_fetch_add(&cleanups, 1); /* the task's cleanup */
    return (void *)(intptr_t)rc;
}

static void wait_started(atomic_int *started)
{
    while (!atomic_load(started))
        sq_yield();
}

static void *cancel_sleep(void *arg)
{
    (void)arg;
    atomic_int started = 0;
    sq_task t;
    CHECK_EQ(sq_spawn(&t, sleep_forever, &started, NULL), 0);
    wait_started(&started);
    sq_sleep(SQ_MSEC); /* let it reach the sleep */
    CHECK_EQ(sq_abort(t), 0);
    void *r;
    CHECK_EQ(sq_join(t, &r), -ECANCELED);
    CHECK_EQ((intptr_t)r, -ECANCELED);
    return NULL;
}

TEST(abort_of_sleeping_task_returns_ecanceled_and_cleanup_runs)
{
    atomic_store(&cleanups, 0);
    sq_test_run(2, cancel_sleep, NULL);
    CHECK_EQ(atomic_load(&cleanups), 1);
}

static atomic_int joining;

static void *joiner(void *arg)
{
    sq_task *target = arg;
    atomic_store(&joining, 1);
    int rc = sq_join(*target, NULL);
    atomic_fetch_add(&cleanups, 1);
    return (void *)(intptr_t)rc;
}

static void *cancel_join(void *arg)
{
    (void)arg;
    atomic_int started = 0;
    sq_task sleeper, j;
    CHECK_EQ(sq_spawn(&sleeper, sleep_forever, &started, NULL), 0);
    atomic_store(&joining, 0);
    CHECK_EQ(sq_spawn(&j, joiner, &sleeper, NULL), 0);
    /* The joiner must have started (an abort before that finishes it
     * without running, and its cleanup would not run); whether it is
     * parked in the join yet or about to call it, the join returns
     * -ECANCELED.  The sleep makes the parked case the usual one. */
    while (!atomic_load(&joining))
        sq_yield();
    sq_sleep(2 * SQ_MSEC);
    CHECK_EQ(sq_abort(j), 0);
    void *r;
    CHECK_EQ(sq_join(j, &r), -ECANCELED);
    CHECK_EQ((intptr_t)r, -ECANCELED);
    /* The joiner's handle on sleeper was not consumed: we can still use it. */
    CHECK_EQ(sq_abort(sleeper), 0);
    CHECK_EQ(sq_join(sleeper, NULL), -ECANCELED);
    return NULL;
}

TEST(abort_of_task_blocked_in_join)
{
    atomic_store(&cleanups, 0);
    sq_test_run(2, cancel_join, NULL);
    CHECK_EQ(atomic_load(&cleanups), 2);
}

static atomic_int reading;

static void *reader(void *arg)
{
    sq_io *rd = arg;
    char buf[16];
    atomic_store(&reading, 1);
    ssize_t n = sq_io_read(rd, buf, sizeof buf);
    atomic_fetch_add(&cleanups, 1);
    return (void *)(intptr_t)n;
}

static void *cancel_io(void *arg)
{
    (void)arg;
    sq_io *p[2];
    CHECK_EQ(sq_pipe(p), 0);
    sq_task t;
    atomic_store(&reading, 0);
    CHECK_EQ(sq_spawn(&t, reader, p[0], NULL), 0);
    while (!atomic_load(&reading)) /* started (see cancel_join) */
        sq_yield();
    sq_sleep(2 * SQ_MSEC);
    CHECK_EQ(sq_abort(t), 0);
    void *r;
    CHECK_EQ(sq_join(t, &r), -ECANCELED);
    CHECK_EQ((intptr_t)r, -ECANCELED);
    /* Nothing was consumed: data written now is read whole. */
    CHECK_EQ(sq_io_write(p[1], "hello", 5), 5);
    char buf[8];
    CHECK_EQ(sq_io_read(p[0], buf, sizeof buf), 5);
    sq_io_close(p[0]);
    sq_io_close(p[1]);
    return NULL;
}

TEST(abort_of_task_blocked_in_io)
{
    atomic_store(&cleanups, 0);
    sq_test_run(2, cancel_io, NULL);
    CHECK_EQ(atomic_load(&cleanups), 1);
}

static atomic_int job_finished, job_started;

static void *slow_job(void *arg)
{
    (void)arg;
    atomic_store(&job_started, 1);
    usleep(30000);
    atomic_store(&job_finished, 1);
    return (void *)5;
}

static void *blocking_waiter(void *arg)
{
    (void)arg;
    void *r = NULL;
    int rc = sq_blocking_run(slow_job, NULL, &r);
    atomic_fetch_add(&cleanups, 1);
    return (void *)(intptr_t)rc;
}

static void *cancel_blocking(void *arg)
{
    (void)arg;
    sq_task t;
    CHECK_EQ(sq_spawn(&t, blocking_waiter, NULL, NULL), 0);
    while (!atomic_load(&job_started))
        sq_sleep(100 * SQ_USEC);
    CHECK_EQ(sq_abort(t), 0);
    void *r;
    CHECK_EQ(sq_join(t, &r), -ECANCELED);
    CHECK_EQ((intptr_t)r, -ECANCELED);
    CHECK_EQ(atomic_load(&job_finished), 0); /* gave up before the job ended */
    return NULL;
}

TEST(abort_of_task_blocked_in_blocking_pool)
{
    atomic_store(&cleanups, 0);
    atomic_store(&job_finished, 0);
    atomic_store(&job_started, 0);
    sq_test_run(2, cancel_blocking, NULL); /* shutdown waits for the job */
    CHECK_EQ(atomic_load(&cleanups), 1);
    CHECK_EQ(atomic_load(&job_finished), 1);
}

static atomic_int ran;

static void *must_not_run(void *arg)
{
    (void)arg;
    atomic_store(&ran, 1);
    return NULL;
}

static void *abort_before_start(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        sq_task t;
        CHECK_EQ(sq_spawn(&t, must_not_run, NULL, NULL), 0);
        /* With one worker the new task cannot start before we yield. */
        CHECK_EQ(sq_abort(t), 0);
        void *r = (void *)1;
        CHECK_EQ(sq_join(t, &r), -ECANCELED);
        CHECK(r == NULL);
    }
    return NULL;
}

TEST(task_aborted_before_start_never_runs)
{
    atomic_store(&ran, 0);
    sq_test_run(1, abort_before_start, NULL);
    CHECK_EQ(atomic_load(&ran), 0);
}

static void *masked_cleanup(void *arg)
{
    atomic_int *started = arg;
    atomic_store(started, 1);
    int first = sq_sleep(3600 * SQ_SEC);
    /* Cleanup that must wait: mask, wait, unmask. */
    CHECK_EQ(sq_cancel_mask(), 0);
    int during = sq_sleep(2 * SQ_MSEC);
    CHECK_EQ(sq_yield(), 0);
    CHECK_EQ(sq_cancel_unmask(), 0);
    int after = sq_sleep(SQ_MSEC);
    CHECK(sq_cancelled());
    return (void *)(intptr_t)(first == -ECANCELED && during == 0 &&
                              after == -ECANCELED);
}

static void *mask_root(void *arg)
{
    (void)arg;
    atomic_int started = 0;
    sq_task t;
    CHECK_EQ(sq_spawn(&t, masked_cleanup, &started, NULL), 0);
    wait_started(&started);
    sq_sleep(SQ_MSEC);
    CHECK_EQ(sq_abort(t), 0);
    void *r;
    CHECK_EQ(sq_join(t, &r), -ECANCELED);
    CHECK(r == (void *)1);
    return NULL;
}

TEST(masking_defers_cancellation_for_cleanup)
{
    sq_test_run(2, mask_root, NULL);
}

static void *yield_loop(void *arg)
{
    atomic_int *started = arg;
    atomic_store(started, 1);
    for (;;)
        if (sq_yield() == -ECANCELED)
            return (void *)1;
}

static void *cancel_yield(void *arg)
{
    (void)arg;
    atomic_int started = 0;
    sq_task t;
    CHECK_EQ(sq_spawn(&t, yield_loop, &started, NULL), 0);
    wait_started(&started);
    CHECK_EQ(sq_abort(t), 0);
    void *r;
    CHECK_EQ(sq_join(t, &r), -ECANCELED);
    CHECK(r == (void *)1);
    return NULL;
}

TEST(yield_is_a_cancellation_point)
{
    sq_test_run(2, cancel_yield, NULL);
}

/* Races between abort and completion, many times over. */
static void *short_sleep(void *arg)
{
    (void)arg;
    int rc = sq_sleep((int64_t)(sq_now() % 3) * 100 * SQ_USEC);
    return (void *)(intptr_t)rc;
}

static void *abort_races(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3000; i++) {
        sq_task t;
        CHECK_EQ(sq_spawn(&t, short_sleep, NULL, NULL), 0);
        if (i % 2)
            sq_yield();
        CHECK_EQ(sq_abort(t), 0);
        void *r;
        int rc = sq_join(t, &r);
        /* Join reports -ECANCELED exactly when the abort reached the
         * task: it never ran (NULL result), or its sleep said -ECANCELED
         * (its result).  A sleep that ended normally, the abort arriving
         * during its last instructions or after it returned, is 0. */
        CHECK((rc == -ECANCELED &&
               ((intptr_t)r == 0 || (intptr_t)r == -ECANCELED)) ||
              (rc == 0 && (intptr_t)r == 0));
        CHECK(rc == -ECANCELED || (intptr_t)r != -ECANCELED);
    }
    return NULL;
}

TEST(abort_racing_with_completion_is_consistent)
{
    sq_test_run(2, abort_races, NULL);
}

/* --------------------------- what a join reports for an aborted task */

typedef struct unseen {
    atomic_int started, go;
    int mode;
} unseen;

enum { U_COMPUTE, U_MASKED, U_POLL };

/* U_COMPUTE: runs without a cancellation point until `go`, returns 42.
 * U_MASKED: waits for `go` in masked sleeps (each returns 0: masked, the
 * abort is not reported), unmasks, returns 42 with no cancellation point
 * after.  U_POLL: yields, masked (so the yields report nothing), until
 * sq_cancelled() tells it, then returns 7. */
static void *unseen_task(void *arg)
{
    unseen *u = arg;
    atomic_store(&u->started, 1);
    switch (u->mode) {
    case U_COMPUTE:
        while (!atomic_load(&u->go))
            ;
        return (void *)42;
    case U_MASKED:
        CHECK_EQ(sq_cancel_mask(), 0);
        while (!atomic_load(&u->go))
            CHECK_EQ(sq_sleep(50 * SQ_USEC), 0);
        CHECK_EQ(sq_cancel_unmask(), 0);
        return (void *)42;
    default:
        CHECK_EQ(sq_cancel_mask(), 0);
        while (!sq_cancelled())
            CHECK_EQ(sq_yield(), 0);
        CHECK_EQ(sq_cancel_unmask(), 0);
        return (void *)7;
    }
}

/* From a plain thread, so that the task computing on a worker holds up
 * nothing the test needs: abort it while it runs, let it finish. */
static void join_after_abort(int mode, int want_rc, void *want_result)
{
    sq_runtime *rt;
    CHECK_EQ(sq_runtime_create(&rt, &(sq_runtime_opts){.workers = 2}), 0);
    unseen u = {.mode = mode};
    sq_task t;
    CHECK_EQ(sq_runtime_spawn(rt, &t, unseen_task, &u, NULL), 0);
    while (!atomic_load(&u.started))
        sched_yield();
    CHECK_EQ(sq_abort(t), 0); /* it is running now */
    atomic_store(&u.go, 1);
    void *r = NULL;
    CHECK_EQ(sq_join(t, &r), want_rc);
    CHECK(r == want_result);
    sq_runtime_destroy(rt);
}

TEST(abort_the_task_never_saw_is_not_reported_by_join)
{
    join_after_abort(U_COMPUTE, 0, (void *)42);
    join_after_abort(U_MASKED, 0, (void *)42);
}

TEST(abort_the_task_saw_through_sq_cancelled_is_reported_by_join)
{
    join_after_abort(U_POLL, -ECANCELED, (void *)7);
}

/* A task group reports each member as sq_join would. */
static void *group_unseen_root(void *arg)
{
    (void)arg;
    sq_group *g;
    CHECK_EQ(sq_group_create(&g), 0);
    unseen quiet = {.mode = U_MASKED}, told = {.mode = U_POLL};
    atomic_int sleeping = 0;
    uint64_t id_quiet, id_told, id_sleeper;
    CHECK_EQ(sq_group_spawn(g, unseen_task, &quiet, NULL, &id_quiet), 0);
    CHECK_EQ(sq_group_spawn(g, unseen_task, &told, NULL, &id_told), 0);
    CHECK_EQ(sq_group_spawn(g, sleep_forever, &sleeping, NULL, &id_sleeper),
             0);
    while (!atomic_load(&quiet.started) || !atomic_load(&told.started) ||
           !atomic_load(&sleeping))
        sq_yield();
    sq_group_cancel_all(g);
    atomic_store(&quiet.go, 1);
    for (int i = 0; i < 3; i++) {
        uint64_t id = 0;
        void *r = NULL;
        int status = 1;
        CHECK_EQ(sq_group_reap(g, &id, &r, &status), 0);
        if (id == id_quiet) {
            CHECK_EQ(status, 0);
            CHECK(r == (void *)42);
        } else if (id == id_told) {
            CHECK_EQ(status, -ECANCELED);
            CHECK(r == (void *)7);
        } else {
            CHECK_EQ(id, id_sleeper);
            CHECK_EQ(status, -ECANCELED);
            CHECK_EQ((intptr_t)r, -ECANCELED);
        }
    }
    CHECK_EQ(sq_group_size(g), 0);
    sq_group_destroy(g);
    return NULL;
}

TEST(group_members_report_an_abort_as_their_join_would)
{
    atomic_store(&cleanups, 0);
    sq_test_run(2, group_unseen_root, NULL);
}
