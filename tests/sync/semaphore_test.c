/* sq_sem: permits are counted exactly, waiters are served in order, no
 * more holders than permits under stress, cancellation and timeouts give
 * back everything, close wakes everyone. */
#include "testlib.h"

#include "squirrel/sync.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>


/* ------------------------------------------------------------- basics */

TEST(counts_permits_and_rejects_bad_arguments)
{
    sq_sem s;
    CHECK_EQ(sq_sem_init(&s, SQ_SEM_MAX_PERMITS + 1), -EINVAL);
    CHECK_EQ(sq_sem_init(&s, 3), 0);
    CHECK_EQ(sq_sem_available(&s), 3);
    CHECK_EQ(sq_sem_try_acquire(&s, 2), 0);
    CHECK_EQ(sq_sem_try_acquire(&s, 2), -EAGAIN);
    CHECK_EQ(sq_sem_available(&s), 1);
    CHECK_EQ(sq_sem_acquire(&s, 1), 0); /* from a plain thread, no wait */
    CHECK_EQ(sq_sem_acquire(&s, 0), 0);
    CHECK_EQ(sq_sem_acquire_until(&s, 1, -1), -EINVAL);
    CHECK_EQ(sq_sem_acquire_until(&s, 1, 0), -ETIMEDOUT); /* past deadline */
    CHECK_EQ(sq_sem_release(&s, 3), 0);
    CHECK_EQ(sq_sem_available(&s), 3);
    CHECK_EQ(sq_sem_add_permits(&s, 2), 0);
    CHECK_EQ(sq_sem_available(&s), 5);
    CHECK_EQ(sq_sem_release(&s, SQ_SEM_MAX_PERMITS), -EOVERFLOW);
    CHECK_EQ(sq_sem_available(&s), 5);
    CHECK_EQ(sq_sem_try_acquire(&s, SQ_SEM_MAX_PERMITS + 1), -EINVAL);
    CHECK_EQ(sq_sem_destroy(&s), 0);

    sq_sem st = SQ_SEM_INITIALIZER(7);
    CHECK_EQ(sq_sem_available(&st), 7);
}

TEST(close_fails_later_acquires_but_counts_releases)
{
    sq_sem s;
    sq_sem_init(&s, 2);
    CHECK_EQ(sq_sem_acquire(&s, 1), 0);
    sq_sem_close(&s);
    sq_sem_close(&s);
    CHECK(sq_sem_is_closed(&s));
    CHECK_EQ(sq_sem_acquire(&s, 1), -ESHUTDOWN);
    CHECK_EQ(sq_sem_try_acquire(&s, 1), -ESHUTDOWN);
    CHECK_EQ(sq_sem_release(&s, 1), 0);
    CHECK_EQ(sq_sem_available(&s), 2);
}

/* --------------------------------------------------------- FIFO order */

#define FIFO_N 16
typedef struct fifo {
    sq_sem s;
    atomic_int order[FIFO_N];
    atomic_int arrived, done;
} fifo;

typedef struct fifo_arg {
    fifo *f;
    int i;
    size_t n;
} fifo_arg;

static void *fifo_waiter(void *arg)
{
    fifo_arg *a = arg;
    atomic_fetch_add(&a->f->arrived, 1);
    int rc = sq_sem_acquire(&a->f->s, a->n);
    CHECK_EQ(rc, 0);
    atomic_store(&a->f->order[atomic_fetch_add(&a->f->done, 1)], a->i);
    return NULL;
}

/* On one worker a waiter runs from counting itself to parking in acquire
 * without interruption: once it has counted itself, it is queued. */
static void wait_arrived(fifo *f, int n)
{
    while (atomic_load(&f->arrived) < n)
        sq_yield();
}

static void *fifo_root(void *arg)
{
    (void)arg;
    fifo f = {.arrived = 0, .done = 0};
    sq_sem_init(&f.s, 0);
    fifo_arg args[FIFO_N];
    sq_task t[FIFO_N];
    for (int i = 0; i < FIFO_N; i++) {
        args[i] = (fifo_arg){.f = &f, .i = i, .n = 1};
        CHECK_EQ(sq_spawn(&t[i], fifo_waiter, &args[i], NULL), 0);
        wait_arrived(&f, i + 1);
    }
    CHECK_EQ(sq_sem_destroy(&f.s), -EBUSY);
    for (int i = 0; i < FIFO_N; i++) {
        CHECK_EQ(sq_sem_release(&f.s, 1), 0);
        CHECK_EQ(sq_sem_available(&f.s), 0); /* assigned, not available */
        while (atomic_load(&f.done) < i + 1)
            sq_yield();
        CHECK_EQ(atomic_load(&f.order[i]), i);
    }
    for (int i = 0; i < FIFO_N; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    CHECK_EQ(sq_sem_destroy(&f.s), 0);
    return NULL;
}

TEST(waiters_are_served_in_arrival_order)
{
    sq_test_run(1, fifo_root, NULL);
}

/* A head waiting for 3 is not overtaken by a later request for 1, and is
 * assigned permits as they come (not left available). */
static void *no_barging_root(void *arg)
{
    (void)arg;
    fifo f = {.arrived = 0, .done = 0};
    sq_sem_init(&f.s, 1);
    fifo_arg big = {.f = &f, .i = 0, .n = 3}, little = {.f = &f, .i = 1, .n = 1};
    sq_task tb, tl;
    CHECK_EQ(sq_spawn(&tb, fifo_waiter, &big, NULL), 0);
    wait_arrived(&f, 1);
    CHECK_EQ(sq_sem_available(&f.s), 0); /* the head took the 1 there was */
    CHECK_EQ(sq_spawn(&tl, fifo_waiter, &little, NULL), 0);
    wait_arrived(&f, 2);
    CHECK_EQ(sq_sem_release(&f.s, 1), 0); /* big now has 2 of 3 */
    sq_sleep(100 * SQ_USEC);
    CHECK_EQ(atomic_load(&f.done), 0);
    CHECK_EQ(sq_sem_available(&f.s), 0);
    CHECK_EQ(sq_sem_try_acquire(&f.s, 1), -EAGAIN);
    CHECK_EQ(sq_sem_release(&f.s, 1), 0); /* big is complete */
    CHECK_EQ(sq_join(tb, NULL), 0);
    sq_sleep(100 * SQ_USEC);
    CHECK_EQ(atomic_load(&f.done), 1); /* little still waits */
    CHECK_EQ(sq_sem_release(&f.s, 1), 0);
    CHECK_EQ(sq_join(tl, NULL), 0);
    CHECK_EQ(atomic_load(&f.order[0]), 0);
    CHECK_EQ(atomic_load(&f.order[1]), 1);
    CHECK_EQ(sq_sem_available(&f.s), 0);
    CHECK_EQ(sq_sem_release(&f.s, 4), 0);
    CHECK_EQ(sq_sem_available(&f.s), 4);
    return NULL;
}

TEST(head_needing_many_is_not_overtaken)
{
    sq_test_run(1, no_barging_root, NULL);
}

/* A head with a partial assignment that times out passes it on. */
static void *head_timeout_root(void *arg)
{
    (void)arg;
    sq_sem s;
    sq_sem_init(&s, 2);
    fifo f = {.arrived = 0, .done = 0};
    sq_sem_init(&f.s, 2);
    fifo_arg little = {.f = &f, .i = 1, .n = 2};
    /* This task is the head, needing 5 with 2 assigned; the little one
     * queues behind it and gets those 2 when the head times out. */
    sq_task tl;
    int64_t dl = sq_now() + 2 * SQ_MSEC;
    CHECK_EQ(sq_spawn(&tl, fifo_waiter, &little, NULL), 0);
    CHECK_EQ(sq_sem_acquire_until(&f.s, 5, dl), -ETIMEDOUT);
    CHECK_EQ(sq_join(tl, NULL), 0);
    CHECK_EQ(atomic_load(&f.done), 1);
    CHECK_EQ(sq_sem_available(&f.s), 0);
    CHECK_EQ(sq_sem_release(&f.s, 2), 0);
    CHECK_EQ(sq_sem_available(&f.s), 2);
    return NULL;
}

TEST(timed_out_head_passes_its_partial_assignment_on)
{
    sq_test_run(1, head_timeout_root, NULL);
}

/* ------------------------------------------------------------ closing */

static void *close_waiter(void *arg)
{
    return (void *)(intptr_t)sq_sem_acquire(arg, 3);
}

static void *close_root(void *arg)
{
    (void)arg;
    sq_sem s;
    sq_sem_init(&s, 2);
    sq_task t[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(sq_spawn(&t[i], close_waiter, &s, NULL), 0);
    while (sq_sem_available(&s) != 0) /* the first has queued */
        sq_yield();
    sq_sem_close(&s);
    for (int i = 0; i < 4; i++) {
        void *r;
        CHECK_EQ(sq_join(t[i], &r), 0);
        CHECK_EQ((intptr_t)r, -ESHUTDOWN);
    }
    CHECK_EQ(sq_sem_available(&s), 2); /* the head's partial came back */
    CHECK_EQ(sq_sem_destroy(&s), 0);
    return NULL;
}

TEST(close_wakes_every_waiter_with_eshutdown_and_keeps_permits)
{
    sq_test_run(2, close_root, NULL);
}

/* A waiter woken by close may free the semaphore as soon as its acquire
 * returns: close must be done with it by then, including giving back the
 * partial assignment the waiter held (1 of the 2 permits it asked for).
 * The waiter and the closer are tasks and plain threads in turn, so the
 * waiter is woken both at once under close's lock and after it.  Under
 * ASan a late touch of the semaphore is a use-after-free. */
#define CF_ROUNDS (SQ_TEST_SLOW ? 300 : 1500)

typedef struct close_free {
    sq_sem *s;
    atomic_int queued; /* the waiter is about to wait or waiting */
} close_free;

static void *freeing_waiter(void *arg)
{
    close_free *c = arg;
    sq_sem *s = c->s;
    atomic_store(&c->queued, 1);
    int rc = sq_sem_acquire(s, 2);
    free(s); /* at once: nobody else may touch it now */
    return (void *)(intptr_t)rc;
}

static void close_when_queued(close_free *c)
{
    while (!atomic_load(&c->queued) || sq_sem_available(c->s) != 0)
        sq_yield(); /* until it has taken the 1 permit and queued */
    sq_sem_close(c->s); /* c->s may be freed once this returns */
}

static void *closing_task(void *arg)
{
    close_when_queued(arg);
    return NULL;
}

static const sq_spawn_opts small = {.stack_size = SQ_STACK_MIN};

static void *close_free_root(void *arg)
{
    (void)arg;
    for (int i = 0; i < CF_ROUNDS; i++) {
        close_free c = {.s = malloc(sizeof(sq_sem)), .queued = 0};
        CHECK(c.s != NULL);
        sq_sem_init(c.s, 1);
        void *r = NULL;
        switch (i % 3) {
        case 0: { /* thread waits, task closes */
            pthread_t th;
            CHECK_EQ(pthread_create(&th, NULL, freeing_waiter, &c), 0);
            close_when_queued(&c);
            pthread_join(th, &r);
            break;
        }
        case 1: { /* task waits, thread closes */
            sq_task t;
            CHECK_EQ(sq_spawn(&t, freeing_waiter, &c, &small), 0);
            pthread_t th;
            CHECK_EQ(pthread_create(&th, NULL, closing_task, &c), 0);
            CHECK_EQ(sq_join(t, &r), 0);
            pthread_join(th, NULL);
            break;
        }
        default: { /* task waits, another task closes */
            sq_task t, cl;
            CHECK_EQ(sq_spawn(&t, freeing_waiter, &c, &small), 0);
            CHECK_EQ(sq_spawn(&cl, closing_task, &c, &small), 0);
            CHECK_EQ(sq_join(cl, NULL), 0);
            CHECK_EQ(sq_join(t, &r), 0);
            break;
        }
        }
        CHECK_EQ((intptr_t)r, -ESHUTDOWN);
    }
    return NULL;
}

TEST(a_waiter_woken_by_close_may_free_the_semaphore_at_once)
{
    sq_test_run(2, close_free_root, NULL);
}

/* ------------------------------------------- plain threads and tasks */

static void *thread_acquirer(void *arg)
{
    sq_sem *s = arg;
    int rc = sq_sem_acquire(s, 2);
    CHECK_EQ(rc, 0);
    CHECK_EQ(sq_sem_acquire_until(s, 1, sq_now() + SQ_MSEC), -ETIMEDOUT);
    return NULL;
}

static void *release_later(void *arg)
{
    sq_sleep(2 * SQ_MSEC);
    CHECK_EQ(sq_sem_release(arg, 2), 0);
    return NULL;
}

TEST(plain_thread_waits_and_a_task_wakes_it)
{
    sq_sem s;
    sq_sem_init(&s, 0);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, thread_acquirer, &s), 0);
    sq_test_run(2, release_later, &s);
    pthread_join(th, NULL);
    CHECK_EQ(sq_sem_available(&s), 0);
}

/* --------------------------------------------------- holders <= permits */

#define HW_PERMITS 5
typedef struct hw {
    sq_sem s;
    atomic_int holders, high, stop, go;
    atomic_long ok, failed;
} hw;

static void hold(hw *h, size_t n)
{
    int now = atomic_fetch_add(&h->holders, (int)n) + (int)n;
    CHECK(now <= HW_PERMITS);
    int hi = atomic_load(&h->high);
    while (now > hi && !atomic_compare_exchange_weak(&h->high, &hi, now))
        ;
    atomic_fetch_add(&h->ok, 1);
}

static void unhold(hw *h, size_t n)
{
    atomic_fetch_sub(&h->holders, (int)n);
    CHECK_EQ(sq_sem_release(&h->s, n), 0);
}

static void *hw_task(void *arg)
{
    hw *h = arg;
    uint32_t x = (uint32_t)sq_task_id() * 2654435761u | 1;
    for (int i = 0; i < 2000; i++) {
        size_t n = 1 + sq_test_rnd(&x) % 3;
        int rc;
        switch (sq_test_rnd(&x) % 3) {
        case 0: rc = sq_sem_acquire(&h->s, n); break;
        case 1: rc = sq_sem_acquire_until(&h->s, n, sq_now() + sq_test_rnd(&x) % 50000); break;
        default: rc = sq_sem_try_acquire(&h->s, n); break;
        }
        if (rc == -ECANCELED)
            return NULL;
        if (rc) {
            CHECK(rc == -ETIMEDOUT || rc == -EAGAIN);
            atomic_fetch_add(&h->failed, 1);
            continue;
        }
        hold(h, n);
        if (sq_test_rnd(&x) % 2)
            sq_yield();
        unhold(h, n);
    }
    return NULL;
}

static void *hw_thread(void *arg)
{
    hw *h = arg;
    uint32_t x = (uint32_t)(uintptr_t)&x | 1;
    while (!atomic_load(&h->go))
        sched_yield();
    for (int i = 0; i < 3000; i++) {
        size_t n = 1 + sq_test_rnd(&x) % 3;
        int rc = (i % 2) ? sq_sem_acquire(&h->s, n)
                         : sq_sem_acquire_until(&h->s, n, sq_now() + 20000);
        if (rc) {
            CHECK_EQ(rc, -ETIMEDOUT);
            continue;
        }
        hold(h, n);
        unhold(h, n);
    }
    return NULL;
}

#define HW_TASKS 48
static void *hw_root(void *arg)
{
    hw *h = arg;
    sq_test_abort_while_running(hw_task, h, HW_TASKS, &h->go, 7,
                                200 * SQ_USEC);
    return NULL;
}

TEST(never_more_holders_than_permits_with_tasks_threads_and_cancellation)
{
    for (int round = 0; round < 3; round++) {
        hw h = {.holders = 0};
        sq_sem_init(&h.s, HW_PERMITS);
        pthread_t th[3];
        for (int i = 0; i < 3; i++)
            CHECK_EQ(pthread_create(&th[i], NULL, hw_thread, &h), 0);
        sq_test_run(2, hw_root, &h);
        for (int i = 0; i < 3; i++)
            pthread_join(th[i], NULL);
        CHECK_EQ(atomic_load(&h.holders), 0);
        CHECK(atomic_load(&h.high) <= HW_PERMITS);
        CHECK(atomic_load(&h.high) >= 2);
        CHECK(atomic_load(&h.ok) > 0);
        CHECK_EQ(sq_sem_available(&h.s), HW_PERMITS);
        CHECK_EQ(sq_sem_destroy(&h.s), 0);
    }
}

/* ------------------------------------------------------- cancel storm */

#define STORM_WAITERS 10000
#define STORM_PERMITS 4
#define STORM_CYCLERS 8

static void *storm_waiter(void *arg)
{
    hw *h = arg;
    uint32_t x = (uint32_t)sq_task_id() * 2654435761u | 1;
    size_t n = 1 + sq_test_rnd(&x) % 2;
    int rc = (sq_test_rnd(&x) % 2)
                 ? sq_sem_acquire(&h->s, n)
                 : sq_sem_acquire_until(&h->s, n, sq_now() + sq_test_rnd(&x) % (2 * SQ_MSEC));
    if (rc == 0) {
        hold(h, n);
        unhold(h, n);
    } else {
        CHECK(rc == -ECANCELED || rc == -ETIMEDOUT);
        atomic_fetch_add(&h->failed, 1);
    }
    return NULL;
}

static void *storm_cycler(void *arg)
{
    hw *h = arg;
    uint32_t x = (uint32_t)sq_task_id() * 2654435761u | 1;
    while (!atomic_load(&h->stop)) {
        size_t n = 1 + sq_test_rnd(&x) % STORM_PERMITS;
        int rc = sq_sem_acquire_until(&h->s, n, sq_now() + SQ_MSEC);
        if (rc == 0) {
            hold(h, n);
            sq_yield();
            unhold(h, n);
        }
        sq_yield();
    }
    return NULL;
}

static void *storm_root(void *arg)
{
    hw *h = arg;
    sq_test_cancel_storm(&(sq_test_storm){
        .tasks = STORM_WAITERS, .fn = storm_waiter, .arg = h,
        .every = 16, .aborts = 8, .last_one_in = 2, .seed = 12345,
        .background = STORM_CYCLERS, .background_fn = storm_cycler,
        .stop = &h->stop});
    return NULL;
}

TEST(cancel_storm_conserves_permits)
{
    for (int round = 0; round < 2; round++) {
        hw h = {.holders = 0};
        sq_sem_init(&h.s, STORM_PERMITS);
        sq_test_run(2, storm_root, &h);
        CHECK_EQ(atomic_load(&h.holders), 0);
        CHECK(atomic_load(&h.high) <= STORM_PERMITS);
        CHECK(atomic_load(&h.failed) > 0);
        CHECK(atomic_load(&h.ok) > 0);
        CHECK_EQ(sq_sem_available(&h.s), STORM_PERMITS);
        CHECK_EQ(sq_sem_destroy(&h.s), 0);
    }
}
