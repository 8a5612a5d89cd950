/* sq_mutex: mutual exclusion with exact counters under stress (tasks and
 * plain threads mixed), -EPERM on a wrong unlock, hand-off between tasks,
 * timeouts and cancellation leave it usable. */
#include "testlib.h"

#include "squirrel/sync.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

static const sq_spawn_opts small = {.stack_size = SQ_STACK_MIN};

TEST(try_lock_unlock_and_wrong_unlock)
{
    sq_mutex m;
    CHECK_EQ(sq_mutex_init(&m), 0);
    CHECK_EQ(sq_mutex_unlock(&m), -EPERM);
    CHECK_EQ(sq_mutex_try_lock(&m), 0);
    CHECK_EQ(sq_mutex_try_lock(&m), -EBUSY);
    CHECK_EQ(sq_mutex_destroy(&m), -EBUSY);
    CHECK_EQ(sq_mutex_lock_until(&m, sq_now() + SQ_MSEC), -ETIMEDOUT);
    CHECK_EQ(sq_mutex_lock_until(&m, -1), -EINVAL);
    CHECK_EQ(sq_mutex_unlock(&m), 0);
    CHECK_EQ(sq_mutex_unlock(&m), -EPERM);
    CHECK_EQ(sq_mutex_lock(&m), 0);
    CHECK_EQ(sq_mutex_unlock(&m), 0);
    CHECK_EQ(sq_mutex_destroy(&m), 0);

    sq_mutex s = SQ_MUTEX_INITIALIZER;
    CHECK_EQ(sq_mutex_try_lock(&s), 0);
    CHECK_EQ(sq_mutex_unlock(&s), 0);
}

/* ------------------------------------------------------------ stress */

#define STRESS_TASKS 64
#define STRESS_ITERS 5000
#define STRESS_THREADS 4
#define THREAD_ITERS 20000

typedef struct shared {
    sq_mutex m;
    long counter;       /* protected by m, deliberately not atomic */
    atomic_int inside;  /* holders right now: must never exceed 1 */
    atomic_int go;
    atomic_long timed_out;
} shared;

static void critical(shared *sh)
{
    CHECK_EQ(atomic_fetch_add(&sh->inside, 1), 0);
    long c = sh->counter;
    sh->counter = c + 1;
    atomic_fetch_sub(&sh->inside, 1);
}

static void *stress_task(void *arg)
{
    shared *sh = arg;
    for (int i = 0; i < STRESS_ITERS; i++) {
        CHECK_EQ(sq_mutex_lock(&sh->m), 0);
        critical(sh);
        if (i % 64 == 0)
            sq_yield(); /* holding it: others must queue */
        CHECK_EQ(sq_mutex_unlock(&sh->m), 0);
    }
    return NULL;
}

static void *stress_thread(void *arg)
{
    shared *sh = arg;
    while (!atomic_load(&sh->go))
        sched_yield();
    for (int i = 0; i < THREAD_ITERS; i++) {
        CHECK_EQ(sq_mutex_lock(&sh->m), 0);
        critical(sh);
        CHECK_EQ(sq_mutex_unlock(&sh->m), 0);
    }
    return NULL;
}

static void *stress_root(void *arg)
{
    shared *sh = arg;
    sq_task t[STRESS_TASKS];
    for (int i = 0; i < STRESS_TASKS; i++)
        CHECK_EQ(sq_spawn(&t[i], stress_task, sh, &small), 0);
    atomic_store(&sh->go, 1);
    for (int i = 0; i < STRESS_TASKS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    return NULL;
}

TEST(mutual_exclusion_with_tasks_and_threads_exact_counter)
{
    for (int round = 0; round < 3; round++) {
        shared sh = {.counter = 0};
        sq_mutex_init(&sh.m);
        pthread_t th[STRESS_THREADS];
        for (int i = 0; i < STRESS_THREADS; i++)
            CHECK_EQ(pthread_create(&th[i], NULL, stress_thread, &sh), 0);
        sq_test_run(2, stress_root, &sh);
        for (int i = 0; i < STRESS_THREADS; i++)
            pthread_join(th[i], NULL);
        CHECK_EQ(sh.counter, (long)STRESS_TASKS * STRESS_ITERS +
                                 (long)STRESS_THREADS * THREAD_ITERS);
        CHECK_EQ(sq_mutex_destroy(&sh.m), 0);
    }
}

/* Timeouts and aborts mixed in: only successful locks count, and the
 * mutex ends up free. */
static void *timed_task(void *arg)
{
    shared *sh = arg;
    long mine = 0;
    for (int i = 0; i < STRESS_ITERS; i++) {
        int rc = sq_mutex_lock_until(&sh->m, sq_now() + (i % 5) * 10000);
        if (rc == -ECANCELED)
            break;
        if (rc) {
            CHECK_EQ(rc, -ETIMEDOUT);
            atomic_fetch_add(&sh->timed_out, 1);
            continue;
        }
        critical(sh);
        mine++;
        if (i % 8 == 0)
            sq_yield();
        CHECK_EQ(sq_mutex_unlock(&sh->m), 0);
    }
    return (void *)(intptr_t)mine;
}

static void *timed_root(void *arg)
{
    long total = sq_test_abort_while_running(timed_task, arg, STRESS_TASKS,
                                             NULL, 5, 100 * SQ_USEC);
    return (void *)(intptr_t)total;
}

TEST(timeouts_and_aborts_leave_the_mutex_consistent)
{
    shared sh = {.counter = 0};
    sq_mutex_init(&sh.m);
    long total = (long)(intptr_t)sq_test_run(2, timed_root, &sh);
    CHECK_EQ(sh.counter, total);
    CHECK(atomic_load(&sh.timed_out) > 0);
    CHECK_EQ(sq_mutex_destroy(&sh.m), 0);
    CHECK_EQ(sq_mutex_try_lock(&sh.m), 0);
    CHECK_EQ(sq_mutex_unlock(&sh.m), 0);
}

/* ----------------------------------------------------------- hand-off */

static void *unlocker(void *arg)
{
    return (void *)(intptr_t)sq_mutex_unlock(arg);
}

static void *handoff_root(void *arg)
{
    (void)arg;
    sq_mutex m;
    sq_mutex_init(&m);
    /* Held across the join below by design: the joined task releases it. */
    sq_mutex_allow_hold_across_waits(&m);
    CHECK_EQ(sq_mutex_lock(&m), 0);
    sq_task t;
    void *r;
    CHECK_EQ(sq_spawn(&t, unlocker, &m, NULL), 0);
    CHECK_EQ(sq_join(t, &r), 0);
    CHECK_EQ((intptr_t)r, 0); /* another task unlocked what we locked */
    CHECK_EQ(sq_mutex_try_lock(&m), 0);
    CHECK_EQ(sq_mutex_unlock(&m), 0);
    return NULL;
}

TEST(a_task_may_unlock_what_another_locked)
{
    sq_test_run(2, handoff_root, NULL);
}

static void *lock_forever(void *arg)
{
    return (void *)(intptr_t)sq_mutex_lock(arg);
}

static void *cancel_root(void *arg)
{
    (void)arg;
    sq_mutex m;
    sq_mutex_init(&m);
    /* Held across the sleep and join below so that the task must wait. */
    sq_mutex_allow_hold_across_waits(&m);
    CHECK_EQ(sq_mutex_lock(&m), 0);
    sq_task t;
    CHECK_EQ(sq_spawn(&t, lock_forever, &m, NULL), 0);
    sq_sleep(SQ_MSEC);
    CHECK_EQ(sq_mutex_destroy(&m), -EBUSY);
    CHECK_EQ(sq_abort(t), 0);
    void *r;
    CHECK_EQ(sq_join(t, &r), -ECANCELED);
    /* -ECANCELED from the wait, or NULL if it was aborted before it ran. */
    CHECK((intptr_t)r == -ECANCELED || r == NULL);
    CHECK_EQ(sq_mutex_unlock(&m), 0);
    CHECK_EQ(sq_mutex_destroy(&m), 0); /* the aborted waiter left */
    return NULL;
}

TEST(aborted_waiter_returns_ecanceled_without_the_lock)
{
    sq_test_run(2, cancel_root, NULL);
}

/* sq_mutex_lock_nocancel: an aborted waiter still waits its turn and gets
 * the lock; the cancellation stays pending for its next cancellation
 * point.  The abort lands before or during the wait, by the iteration. */
typedef struct nocancel_arg {
    sq_mutex *m;
    atomic_int started, inside;
} nocancel_arg;

static void *lock_nocancel_task(void *arg)
{
    nocancel_arg *a = arg;
    atomic_store(&a->started, 1);
    if (sq_mutex_lock_nocancel(a->m) != 0)
        return (void *)(intptr_t)-1;
    atomic_store(&a->inside, 1);
    CHECK_EQ(sq_mutex_unlock(a->m), 0);
    /* The abort is still pending: the next cancellation point reports it. */
    return (void *)(intptr_t)sq_sleep(SQ_SEC);
}

static void *nocancel_root(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++) {
        sq_mutex m;
        sq_mutex_init(&m);
        sq_mutex_allow_hold_across_waits(&m);
        CHECK_EQ(sq_mutex_lock(&m), 0);
        nocancel_arg a = {.m = &m};
        sq_task t;
        CHECK_EQ(sq_spawn(&t, lock_nocancel_task, &a, &small), 0);
        while (!atomic_load(&a.started))
            sq_yield();
        for (int y = 0; y < i % 4; y++)
            sq_yield(); /* sometimes queued on m before the abort */
        CHECK_EQ(sq_abort(t), 0);
        for (int y = 0; y < 4; y++)
            sq_yield();
        CHECK_EQ(atomic_load(&a.inside), 0); /* m is still ours */
        CHECK_EQ(sq_mutex_unlock(&m), 0);
        void *r;
        CHECK_EQ(sq_join(t, &r), -ECANCELED);
        CHECK_EQ(atomic_load(&a.inside), 1);
        CHECK_EQ((intptr_t)r, -ECANCELED);
        CHECK_EQ(sq_mutex_destroy(&m), 0);
    }
    return NULL;
}

TEST(nocancel_lock_is_taken_by_an_aborted_waiter)
{
    sq_test_run(2, nocancel_root, NULL);
}

/* A mutex that lives on a waiter's stack: the unlocker hands it over and
 * the new owner may discard it at once (the unlock has finished with it). */
typedef struct stack_lock {
    sq_mutex *m;
    atomic_int locked;
} stack_lock;

static void *hold_then_unlock(void *arg)
{
    stack_lock *sl = arg;
    sq_mutex *m = sl->m;
    CHECK_EQ(sq_mutex_lock(m), 0);
    atomic_store(&sl->locked, 1);
    sq_yield();
    CHECK_EQ(sq_mutex_unlock(m), 0);
    return NULL;
}

static void *stack_root(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        sq_mutex m;
        sq_mutex_init(&m);
        stack_lock sl = {.m = &m, .locked = 0};
        CHECK_EQ(sq_spawn(NULL, hold_then_unlock, &sl, &small), 0);
        while (!atomic_load(&sl.locked))
            sq_yield();
        CHECK_EQ(sq_mutex_lock(&m), 0);
        CHECK_EQ(sq_mutex_unlock(&m), 0);
        CHECK_EQ(sq_mutex_destroy(&m), 0);
    }
    return NULL;
}

TEST(mutex_on_the_stack_may_be_discarded_after_hand_off)
{
    sq_test_run(2, stack_root, NULL);
}
