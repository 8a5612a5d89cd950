/* sq_sync_stats_get: lock waits, their outcome and their time, counted
 * exactly, from tasks and plain threads; free acquisitions not counted. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "squirrel/rwlock.h"
#include "squirrel/sync.h"
#include "testlib.h"

static uint64_t bucket_sum(const sq_sync_stats *s)
{
    uint64_t n = 0;
    for (int i = 0; i < SQ_SYNC_WAIT_BUCKETS; i++)
        n += s->wait_buckets[i];
    return n;
}

static sq_mutex m;
static sq_sem sem;

static atomic_int started; /* tasks that have called (or will call) lock */

static void *waiter(void *arg)
{
    (void)arg;
    atomic_fetch_add(&started, 1);
    CHECK_EQ(sq_mutex_lock(&m), 0);
    sq_mutex_unlock(&m);
    return NULL;
}

static void *sem_waiter(void *arg)
{
    (void)arg;
    int64_t d;
    sq_deadline_in(2 * SQ_MSEC, &d);
    CHECK_EQ(sq_sem_acquire_until(&sem, 1, d), -ETIMEDOUT);
    return NULL;
}

static void *cancelled(void *arg)
{
    (void)arg;
    atomic_fetch_add(&started, 1);
    CHECK_EQ(sq_mutex_lock(&m), -ECANCELED);
    return NULL;
}

static void *root(void *arg)
{
    (void)arg;
    sq_sync_stats a, b;
    CHECK_EQ(sq_mutex_init(&m), 0);
    /* held while its waiters queue up, on purpose */
    sq_mutex_allow_hold_across_waits(&m);
    CHECK_EQ(sq_sem_init(&sem, 0), 0);

    /* Free locks: not counted. */
    sq_sync_stats_get(&a);
    for (int i = 0; i < 1000; i++) {
        CHECK_EQ(sq_mutex_lock(&m), 0);
        sq_mutex_unlock(&m);
    }
    sq_sync_stats_get(&b);
    CHECK_EQ(b.waits - a.waits, 0);

    /* N waiters queue behind a held lock: N waits, each >= the hold. */
    enum { N = 50 };
    sq_task t[N];
    for (int round = 0; round < 20; round++) {
        sq_sync_stats_get(&a);
        CHECK_EQ(sq_mutex_lock(&m), 0);
        atomic_store(&started, 0);
        for (int i = 0; i < N; i++)
            CHECK_EQ(sq_spawn(&t[i], waiter, NULL, NULL), 0);
        /* Every waiter is in its lock call (the lock is held: it queues). */
        WAIT_UNTIL(atomic_load(&started) == N);
        sq_sleep(2 * SQ_MSEC);
        sq_mutex_unlock(&m);
        for (int i = 0; i < N; i++)
            CHECK_EQ(sq_join(t[i], NULL), 0);
        sq_sync_stats_get(&b);
        CHECK(b.waits - a.waits >= 1);
        CHECK(b.waits - a.waits <= N);
        CHECK_EQ(bucket_sum(&b) - bucket_sum(&a), b.waits - a.waits);
        CHECK_EQ(b.timeouts - a.timeouts, 0);
        CHECK_EQ(b.cancels - a.cancels, 0);
        CHECK(b.wait_ns - a.wait_ns > 0);
    }

    /* Timeouts on a semaphore with no permits: exact. */
    sq_sync_stats_get(&a);
    for (int i = 0; i < N; i++)
        CHECK_EQ(sq_spawn(&t[i], sem_waiter, NULL, NULL), 0);
    for (int i = 0; i < N; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    sq_sync_stats_get(&b);
    CHECK_EQ(b.waits - a.waits, N);
    CHECK_EQ(b.timeouts - a.timeouts, N);
    /* Each waited >= 2 ms: none in the buckets below 2 us... */
    for (int i = 0; i < 2; i++)
        CHECK_EQ(b.wait_buckets[i] - a.wait_buckets[i], 0);
    CHECK(b.wait_ns - a.wait_ns >= (uint64_t)N * 2 * SQ_MSEC);

    /* Cancellation of queued lock waiters: exact. */
    sq_sync_stats_get(&a);
    CHECK_EQ(sq_mutex_lock(&m), 0);
    atomic_store(&started, 0);
    for (int i = 0; i < N; i++)
        CHECK_EQ(sq_spawn(&t[i], cancelled, NULL, NULL), 0);
    /* Each one queues (or is about to: an abort that comes first makes its
     * wait return -ECANCELED at once, still one wait, one cancel). */
    WAIT_UNTIL(atomic_load(&started) == N);
    for (int i = 0; i < N; i++)
        sq_abort(t[i]);
    for (int i = 0; i < N; i++)
        sq_join(t[i], NULL);
    sq_mutex_unlock(&m);
    sq_sync_stats_get(&b);
    CHECK_EQ(b.waits - a.waits, N);
    CHECK_EQ(b.cancels - a.cancels, N);
    CHECK_EQ(sq_mutex_destroy(&m), 0);
    CHECK_EQ(sq_sem_destroy(&sem), 0);
    return (void *)1;
}

TEST(lock_waits_counted)
{
    CHECK(sq_test_run(2, root, NULL) == (void *)1);
}

/* Plain threads contending: every wait counted, from whichever CPU.
 * First each thread times out TIMED times on a lock the test holds:
 * waits that are certain, so the counts have an exact part. */
enum { THREADS = 4, ITERS = 20000, TIMED = 10 };
static sq_mutex tm, held;
static long counter;

static void *thread_timed(void *arg)
{
    (void)arg;
    for (int i = 0; i < TIMED; i++) {
        int64_t d;
        sq_deadline_in(100 * SQ_USEC, &d);
        CHECK_EQ(sq_mutex_lock_until(&held, d), -ETIMEDOUT);
    }
    return NULL;
}

static void *thread_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < ITERS; i++) {
        CHECK_EQ(sq_mutex_lock(&tm), 0);
        counter++;
        sq_mutex_unlock(&tm);
    }
    return NULL;
}

static void run_threads(sq_task_fn fn)
{
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, fn, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
}

TEST(threads_counted_exactly)
{
    CHECK_EQ(sq_mutex_init(&tm), 0);
    CHECK_EQ(sq_mutex_init(&held), 0);
    sq_sync_stats a, b;
    sq_sync_stats_get(&a);
    CHECK_EQ(sq_mutex_lock(&held), 0);
    run_threads(thread_timed);
    CHECK_EQ(sq_mutex_unlock(&held), 0);
    sq_sync_stats_get(&b);
    CHECK_EQ(b.waits - a.waits, THREADS * TIMED);
    CHECK_EQ(b.timeouts - a.timeouts, THREADS * TIMED);
    CHECK(b.wait_ns - a.wait_ns >= (uint64_t)THREADS * TIMED * 100 * SQ_USEC);

    sq_sync_stats_get(&a);
    run_threads(thread_main);
    sq_sync_stats_get(&b);
    CHECK_EQ(counter, (long)THREADS * ITERS);
    CHECK(b.waits - a.waits <= (uint64_t)THREADS * ITERS);
    CHECK_EQ(b.timeouts - a.timeouts, 0);
    CHECK_EQ(bucket_sum(&b) - bucket_sum(&a), b.waits - a.waits);
    CHECK_EQ(sq_mutex_destroy(&held), 0);
    CHECK_EQ(sq_mutex_destroy(&tm), 0);
}
