/* Scheduling: work spreads over the workers; no task is starved. */
#include "testlib.h"

#include <pthread.h>
#include <stdatomic.h>

static _Thread_local int thread_tag;
static atomic_int next_tag;

static int my_thread(void)
{
    if (!thread_tag)
        thread_tag = atomic_fetch_add(&next_tag, 1) + 1;
    return thread_tag;
}

static void *burn(void *arg)
{
    (void)arg;
    /* CPU-bound: about 20 ms of arithmetic, never waiting. */
    volatile uint64_t x = 1;
    int64_t end = sq_now() + 20 * SQ_MSEC;
    while (sq_now() < end)
        for (int i = 0; i < 1000; i++)
            x = x * 6364136223846793005ull + 1;
    return (void *)(intptr_t)my_thread();
}

static void *spread_root(void *arg)
{
    (void)arg;
    enum { N = 16 };
    sq_task ts[N];
    /* All spawned from this one task on one worker. */
    for (int i = 0; i < N; i++)
        CHECK_EQ(sq_spawn(&ts[i], burn, NULL, NULL), 0);
    int seen[64] = {0}, distinct = 0;
    for (int i = 0; i < N; i++) {
        void *r;
        CHECK_EQ(sq_join(ts[i], &r), 0);
        int tag = (int)(intptr_t)r;
        if (tag > 0 && tag < 64 && !seen[tag]++)
            distinct++;
    }
    CHECK_EQ(distinct, 2);
    return NULL;
}

TEST(cpu_bound_tasks_spawned_from_one_worker_run_on_both)
{
    sq_test_run(2, spread_root, NULL);
}

/* A pair of tasks waking each other forever (LIFO slot ping-pong) must
 * not starve a third task queued on the same worker. */
static atomic_bool stop;
static atomic_long third_ran;

static void *pinger(void *arg)
{
    sq_task *peer = arg;
    (void)peer;
    while (!atomic_load(&stop))
        sq_yield();
    return NULL;
}

static void *third(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++) {
        atomic_fetch_add(&third_ran, 1);
        sq_yield();
    }
    atomic_store(&stop, true);
    return NULL;
}

static void *fairness_root(void *arg)
{
    (void)arg;
    sq_task a, b, c;
    CHECK_EQ(sq_spawn(&a, pinger, &b, NULL), 0);
    CHECK_EQ(sq_spawn(&b, pinger, &a, NULL), 0);
    CHECK_EQ(sq_spawn(&c, third, NULL, NULL), 0);
    CHECK_EQ(sq_join(c, NULL), 0);
    CHECK_EQ(sq_join(a, NULL), 0);
    CHECK_EQ(sq_join(b, NULL), 0);
    return NULL;
}

TEST(busy_tasks_do_not_starve_a_queued_one)
{
    atomic_store(&stop, false);
    atomic_store(&third_ran, 0);
    sq_test_run(1, fairness_root, NULL);
    CHECK_EQ(atomic_load(&third_ran), 100);
}

/* A task that yields while its worker goes on to a task that computes
 * without switching runs on another worker, even one that was asleep:
 * here the computing task waits for the yielded one (root) to set a flag,
 * so without that it would spin until its 10 s limit and fail. */
typedef struct strand {
    atomic_int started, flag, gave_up;
} strand;

static void *spin_until_flag(void *arg)
{
    strand *s = arg;
    atomic_store(&s->started, 1);
    int64_t limit = sq_now() + 10 * SQ_SEC;
    while (!atomic_load(&s->flag))
        if (sq_now() > limit) {
            atomic_store(&s->gave_up, 1);
            break;
        }
    return NULL;
}

/* Lets the other worker go to sleep (the interesting case for the tests
 * below; the wait ends after a second either way). */
static void let_a_worker_park(void)
{
    sq_runtime_stats st;
    sq_runtime_stats_get(NULL, &st);
    uint64_t parks = st.parks;
    int64_t limit = sq_now() + SQ_SEC;
    while (st.parks == parks && sq_now() < limit) {
        sq_sleep(20 * SQ_USEC);
        sq_runtime_stats_get(NULL, &st);
    }
}

static void *strand_root(void *arg)
{
    (void)arg;
    for (int round = 0; round < 20; round++) {
        let_a_worker_park();
        /* The first yield runs the new task on this worker (spawned tasks
         * run next) and queues root behind it: only another worker can
         * run root now. */
        strand s = {.started = 0};
        sq_task t;
        CHECK_EQ(sq_spawn(&t, spin_until_flag, &s, NULL), 0);
        while (!atomic_load(&s.started))
            sq_yield();
        atomic_store(&s.flag, 1);
        CHECK_EQ(sq_join(t, NULL), 0);
        CHECK_EQ(atomic_load(&s.gave_up), 0);
    }
    return NULL;
}

TEST(a_yielded_task_is_not_stranded_behind_a_computing_one)
{
    sq_test_run(2, strand_root, NULL);
}

/* Deep chains of spawns from tasks (the chained_spawn shape) and spawns
 * from many plain threads at once all complete exactly once. */
static atomic_long chain_done;

static void *chain(void *arg)
{
    intptr_t left = (intptr_t)arg;
    if (left == 0) {
        atomic_fetch_add(&chain_done, 1);
        return NULL;
    }
    CHECK_EQ(sq_spawn(NULL, chain, (void *)(left - 1), NULL), 0);
    return NULL;
}

static void *chain_root(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++)
        CHECK_EQ(sq_spawn(NULL, chain, (void *)1000, NULL), 0);
    while (atomic_load(&chain_done) < 20)
        sq_sleep(SQ_MSEC);
    return NULL;
}

TEST(chained_spawns_all_complete)
{
    atomic_store(&chain_done, 0);
    sq_test_run(2, chain_root, NULL);
    CHECK_EQ(atomic_load(&chain_done), 20);
}

static atomic_long hits;

static void *hit(void *arg)
{
    (void)arg;
    atomic_fetch_add(&hits, 1);
    return NULL;
}

static void *spawner_thread(void *arg)
{
    sq_runtime *rt = arg;
    for (int i = 0; i < 5000; i++)
        if (sq_runtime_spawn(rt, NULL, hit, NULL, NULL) != 0)
            atomic_fetch_add(&hits, 1000000); /* poison the count */
    return NULL;
}

TEST(spawns_from_many_plain_threads_each_run_once)
{
    atomic_store(&hits, 0);
    sq_runtime *rt;
    CHECK_EQ(sq_runtime_create(&rt, &(sq_runtime_opts){.workers = 2}), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, spawner_thread, rt);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    while (atomic_load(&hits) < 20000)
        sq_sleep(SQ_MSEC);
    sq_runtime_destroy(rt);
    CHECK_EQ(atomic_load(&hits), 20000);
}

/* Held work is not lost behind a task that computes without switching:
 * the LIFO slot (a task woken by the running one), tasks queued by a
 * hand-off, and the spawn buffer (tasks spawned by the running one) are
 * taken by the other worker once their worker stops switching.  Without
 * membarrier (old kernels, emulators) the LIFO slot and the spawn buffer
 * are not stolen, so those cases are skipped there. */
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "squirrel/sync.h"

static bool membarrier_expedited(void)
{
    long r = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    return r > 0 && (r & MEMBARRIER_CMD_PRIVATE_EXPEDITED);
}

typedef struct held_case {
    sq_sem gate[2];       /* 0 permits: one sleeper queues on each */
    atomic_int ran;       /* sleepers / children that have run */
    atomic_int computing; /* the root is in its loop that never switches */
} held_case;

typedef struct sleeper_arg {
    held_case *c;
    int gate;
} sleeper_arg;

static void *gate_sleeper(void *arg)
{
    sleeper_arg *a = arg;
    /* sq_sem_close wakes the queue with -ESHUTDOWN, as a hand-off to each
     * waiter, from the closing task, without the yield a release does. */
    CHECK_EQ(sq_sem_acquire(&a->c->gate[a->gate], 1), -ESHUTDOWN);
    CHECK(atomic_load(&a->c->computing));
    atomic_fetch_add(&a->c->ran, 1);
    return NULL;
}

/* The releaser's yield ("hand-off, then run"): a task that releases a
 * semaphore to a waiter yields to it, and keeps the hand-off mark of its
 * own last wake-up.  If the task it woke then computes until the releaser
 * goes on, another worker must run the releaser, even one that was
 * asleep: thieves leave a hand-off's task alone only while its worker
 * keeps switching.  (Needs no membarrier: the releaser is in the FIFO
 * ring, not the LIFO slot.) */
typedef struct relay {
    sq_sem s, g;
    strand st;
} relay;

static void *sem_spinner(void *arg)
{
    relay *r = arg;
    CHECK_EQ(sq_sem_acquire(&r->s, 1), 0);
    spin_until_flag(&r->st);
    CHECK_EQ(sq_sem_release(&r->s, 1), 0);
    return NULL;
}

static void *g_releaser(void *arg)
{
    relay *r = arg;
    CHECK_EQ(sq_sem_release(&r->g, 1), 0);
    return NULL;
}

static void *relay_root(void *arg)
{
    (void)arg;
    for (int round = 0; round < 20; round++) {
        relay r = {.st = {.started = 0}};
        CHECK_EQ(sq_sem_init(&r.s, 1), 0);
        CHECK_EQ(sq_sem_init(&r.g, 0), 0);
        CHECK_EQ(sq_sem_acquire(&r.s, 1), 0);
        sq_task spinner, releaser;
        CHECK_EQ(sq_spawn(&spinner, sem_spinner, &r, NULL), 0);
        WAIT_UNTIL(sq_sem_destroy(&r.s) == -EBUSY); /* it waits on s */
        let_a_worker_park();
        /* Woken by a hand-off: root now carries the mark. */
        CHECK_EQ(sq_spawn(&releaser, g_releaser, &r, NULL), 0);
        CHECK_EQ(sq_sem_acquire(&r.g, 1), 0);
        /* The spinner gets the permit and runs next on this worker;
         * root is queued behind it, marked. */
        CHECK_EQ(sq_sem_release(&r.s, 1), 0);
        atomic_store(&r.st.flag, 1);
        CHECK_EQ(sq_join(spinner, NULL), 0);
        CHECK_EQ(sq_join(releaser, NULL), 0);
        CHECK_EQ(atomic_load(&r.st.gave_up), 0);
        CHECK_EQ(sq_sem_destroy(&r.s), 0);
        CHECK_EQ(sq_sem_destroy(&r.g), 0);
    }
    return NULL;
}

TEST(a_releaser_is_not_stranded_behind_the_task_it_handed_off_to)
{
    sq_test_run(2, relay_root, NULL);
}

static void *child(void *arg)
{
    held_case *c = arg;
    /* Ran while the spawner was still computing, so on the other worker. */
    CHECK(atomic_load(&c->computing));
    atomic_fetch_add(&c->ran, 1);
    return NULL;
}

/* Computes, never switching, until `want` tasks have run or 20 s pass. */
static void compute_until(held_case *c, int want)
{
    volatile uint64_t x = 1;
    int64_t deadline = sq_now() + 20 * SQ_SEC;
    while (atomic_load(&c->ran) < want && sq_now() < deadline)
        for (int i = 0; i < 1000; i++)
            x = x * 6364136223846793005ull + 1;
    atomic_store(&c->computing, 0);
}

static void *woken_root(void *arg)
{
    int sleepers = (int)(intptr_t)arg;
    held_case c = {.ran = 0, .computing = 1};
    sleeper_arg a[2];
    sq_task t[2];
    for (int i = 0; i < sleepers; i++) {
        CHECK_EQ(sq_sem_init(&c.gate[i], 0), 0);
        a[i] = (sleeper_arg){.c = &c, .gate = i};
        CHECK_EQ(sq_spawn(&t[i], gate_sleeper, &a[i], NULL), 0);
        /* (A sleeper queued but not yet parked when its gate closes is
         * not woken into this worker's LIFO slot: the round then proves
         * less, but still holds.) */
        WAIT_UNTIL(sq_sem_destroy(&c.gate[i]) == -EBUSY);
    }
    /* Each wake-up goes to this worker's LIFO slot; the second pushes the
     * first into the deque, marked as a hand-off. */
    for (int i = 0; i < sleepers; i++)
        sq_sem_close(&c.gate[i]);
    compute_until(&c, sleepers);
    CHECK_EQ(atomic_load(&c.ran), sleepers);
    for (int i = 0; i < sleepers; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    return NULL;
}

TEST(a_task_woken_by_a_computing_task_runs_on_the_other_worker)
{
    if (!membarrier_expedited()) {
        printf("(skipped: no expedited membarrier)\n");
        return;
    }
    for (int round = 0; round < 5; round++)
        sq_test_run(2, woken_root, (void *)(intptr_t)1);
}

TEST(tasks_handed_off_by_a_computing_task_run_on_the_other_worker)
{
    /* Two sleepers: the first is pushed out of the LIFO slot into the
     * deque by the second, marked as a hand-off; both must run. */
    if (!membarrier_expedited()) {
        printf("(skipped: no expedited membarrier)\n");
        return;
    }
    for (int round = 0; round < 5; round++)
        sq_test_run(2, woken_root, (void *)(intptr_t)2);
}

static void *spawning_root(void *arg)
{
    int n = (int)(intptr_t)arg;
    held_case c = {.ran = 0, .computing = 1};
    sq_task t[40];
    for (int i = 0; i < n; i++)
        CHECK_EQ(sq_spawn(&t[i], child, &c, NULL), 0);
    compute_until(&c, n);
    CHECK_EQ(atomic_load(&c.ran), n);
    for (int i = 0; i < n; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    return NULL;
}

TEST(tasks_spawned_by_a_computing_task_run_on_the_other_worker)
{
    if (!membarrier_expedited()) {
        printf("(skipped: no expedited membarrier)\n");
        return;
    }
    /* 1 and 5 stay in the spawn buffer; 40 overflow it into the deque. */
    int counts[] = {1, 5, 40};
    for (int round = 0; round < 3; round++)
        for (int k = 0; k < 3; k++)
            sq_test_run(2, spawning_root, (void *)(intptr_t)counts[k]);
}
