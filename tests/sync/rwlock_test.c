/* sq_rwlock: readers share, a writer excludes everyone (atomic invariants
 * under stress with tasks on both workers and plain threads), a queued
 * writer is not starved by readers that keep re-taking the lock, FIFO
 * order between readers and writers, downgrade keeps writers out and lets
 * the queued readers in, deadlines and aborts leave nothing held, misuse
 * is reported, and a cancel storm leaves the lock free. */
#include "testlib.h"

#include "squirrel/rwlock.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

static const sq_spawn_opts small = {.stack_size = SQ_STACK_MIN};

static void atomic_max(atomic_int *hi, int v)
{
    int h = atomic_load(hi);
    while (v > h && !atomic_compare_exchange_weak(hi, &h, v))
        ;
}

/* ------------------------------------------------------------- basics */

TEST(try_locks_deadlines_and_misuse_from_a_plain_thread)
{
    sq_rwlock l;
    CHECK_EQ(sq_rwlock_init(&l), 0);
    CHECK_EQ(sq_rwlock_read_unlock(&l), -EPERM);
    CHECK_EQ(sq_rwlock_write_unlock(&l), -EPERM);
    CHECK_EQ(sq_rwlock_downgrade(&l), -EPERM);
    CHECK_EQ(sq_rwlock_read_lock_until(&l, -1), -EINVAL);
    CHECK_EQ(sq_rwlock_write_lock_until(&l, -1), -EINVAL);
    CHECK_EQ(sq_rwlock_destroy(&l), 0);

    /* Three readers share it; a writer cannot get in. */
    CHECK_EQ(sq_rwlock_try_read_lock(&l), 0);
    CHECK_EQ(sq_rwlock_read_lock(&l), 0);
    CHECK_EQ(sq_rwlock_read_lock_until(&l, 0), 0); /* free: no wait */
    CHECK_EQ(sq_rwlock_try_write_lock(&l), -EBUSY);
    CHECK_EQ(sq_rwlock_write_unlock(&l), -EPERM);
    CHECK_EQ(sq_rwlock_downgrade(&l), -EPERM);
    CHECK_EQ(sq_rwlock_destroy(&l), -EBUSY);
    /* This writer queues (taking what is free), times out, gives it back. */
    CHECK_EQ(sq_rwlock_write_lock_until(&l, sq_now() + SQ_MSEC), -ETIMEDOUT);
    CHECK_EQ(sq_rwlock_try_read_lock(&l), 0);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(sq_rwlock_read_unlock(&l), 0);
    CHECK_EQ(sq_rwlock_read_unlock(&l), -EPERM);
    CHECK_EQ(sq_rwlock_destroy(&l), 0);

    /* A writer excludes readers and writers. */
    CHECK_EQ(sq_rwlock_write_lock(&l), 0);
    CHECK_EQ(sq_rwlock_try_read_lock(&l), -EBUSY);
    CHECK_EQ(sq_rwlock_try_write_lock(&l), -EBUSY);
    CHECK_EQ(sq_rwlock_read_lock_until(&l, sq_now() + SQ_MSEC), -ETIMEDOUT);
    CHECK_EQ(sq_rwlock_write_lock_until(&l, sq_now() + SQ_MSEC), -ETIMEDOUT);
    CHECK_EQ(sq_rwlock_destroy(&l), -EBUSY);
    /* Downgrade: now a reader; readers may join, writers may not. */
    CHECK_EQ(sq_rwlock_downgrade(&l), 0);
    CHECK_EQ(sq_rwlock_downgrade(&l), -EPERM);
    CHECK_EQ(sq_rwlock_try_read_lock(&l), 0);
    CHECK_EQ(sq_rwlock_try_write_lock(&l), -EBUSY);
    CHECK_EQ(sq_rwlock_read_unlock(&l), 0);
    CHECK_EQ(sq_rwlock_read_unlock(&l), 0);
    CHECK_EQ(sq_rwlock_read_unlock(&l), -EPERM);
    CHECK_EQ(sq_rwlock_write_lock_until(&l, 0), 0); /* free: no wait */
    CHECK_EQ(sq_rwlock_write_unlock(&l), 0);
    CHECK_EQ(sq_rwlock_write_unlock(&l), -EPERM);
    CHECK_EQ(sq_rwlock_destroy(&l), 0);

    sq_rwlock s = SQ_RWLOCK_INITIALIZER;
    CHECK_EQ(sq_rwlock_try_write_lock(&s), 0);
    CHECK_EQ(sq_rwlock_write_unlock(&s), 0);
    CHECK_EQ(sq_rwlock_destroy(&s), 0);
}

/* ------------------------------------------------------ readers share */

#define OVERLAP_TASKS 24
#define OVERLAP_THREADS 2
#define OVERLAP_ALL (OVERLAP_TASKS + OVERLAP_THREADS)

typedef struct overlap {
    sq_rwlock l;
    atomic_int inside, high, go;
} overlap;

/* Holds a read lock until every reader holds one at the same time (a
 * lock that did not share would never get there: the time limit only
 * turns that hang into a failure). */
static void hold_until_all_inside(overlap *o)
{
    CHECK_EQ(sq_rwlock_read_lock(&o->l), 0);
    atomic_max(&o->high, atomic_fetch_add(&o->inside, 1) + 1);
    int64_t limit = sq_now() + 20 * SQ_SEC;
    while (atomic_load(&o->high) < OVERLAP_ALL && sq_now() < limit)
        sq_yield();
    CHECK_EQ(atomic_load(&o->high), OVERLAP_ALL);
    atomic_fetch_sub(&o->inside, 1);
    CHECK_EQ(sq_rwlock_read_unlock(&o->l), 0);
}

static void *overlap_task(void *arg)
{
    hold_until_all_inside(arg);
    return NULL;
}

static void *overlap_thread(void *arg)
{
    overlap *o = arg;
    while (!atomic_load(&o->go))
        sched_yield();
    hold_until_all_inside(o);
    return NULL;
}

static void *overlap_root(void *arg)
{
    overlap *o = arg;
    sq_task t[OVERLAP_TASKS];
    for (int i = 0; i < OVERLAP_TASKS; i++)
        CHECK_EQ(sq_spawn(&t[i], overlap_task, o, &small), 0);
    atomic_store(&o->go, 1);
    for (int i = 0; i < OVERLAP_TASKS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    return NULL;
}

TEST(many_readers_hold_the_lock_at_once)
{
    overlap o = {.inside = 0};
    sq_rwlock_init(&o.l);
    pthread_t th[OVERLAP_THREADS];
    for (int i = 0; i < OVERLAP_THREADS; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, overlap_thread, &o), 0);
    sq_test_run(2, overlap_root, &o);
    for (int i = 0; i < OVERLAP_THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(atomic_load(&o.high), OVERLAP_ALL);
    CHECK_EQ(atomic_load(&o.inside), 0);
    CHECK_EQ(sq_rwlock_destroy(&o.l), 0);
}

/* ------------------------------------------- exclusion under stress */

#define WIDTH 16
#define STRESS_TASKS (SQ_TEST_SLOW ? 24 : 48)
#define STRESS_ITERS (SQ_TEST_SLOW ? 1000 : 3000)
#define STRESS_THREADS 3
#define THREAD_ITERS (SQ_TEST_SLOW ? 3000 : 10000)

typedef struct shared {
    sq_rwlock l;
    long data[WIDTH]; /* protected by l, deliberately not atomic */
    long writes;      /* protected by l (write side) */
    atomic_int readers, writers, high_readers, go, stop;
    atomic_long reads_ok, writes_ok, failed;
} shared;

static void read_section(shared *sh, bool yield)
{
    CHECK_EQ(atomic_load(&sh->writers), 0);
    atomic_max(&sh->high_readers, atomic_fetch_add(&sh->readers, 1) + 1);
    long first = sh->data[0];
    for (int k = 1; k < WIDTH; k++)
        CHECK_EQ(sh->data[k], first);
    CHECK_EQ(first, sh->writes);
    if (yield)
        sq_yield();
    CHECK_EQ(sh->data[WIDTH - 1], first); /* no writer got in meanwhile */
    CHECK_EQ(atomic_load(&sh->writers), 0);
    atomic_fetch_sub(&sh->readers, 1);
    atomic_fetch_add(&sh->reads_ok, 1);
}

/* Writes, then either write-unlocks or downgrades and reads what it wrote
 * (no other writer may have slipped in); releases the lock either way. */
static void write_section(shared *sh, bool yield, bool downgrade)
{
    CHECK_EQ(atomic_fetch_add(&sh->writers, 1), 0);
    CHECK_EQ(atomic_load(&sh->readers), 0);
    for (int k = 0; k < WIDTH; k++)
        sh->data[k]++;
    sh->writes++;
    atomic_fetch_add(&sh->writes_ok, 1);
    if (yield)
        sq_yield();
    CHECK_EQ(atomic_load(&sh->readers), 0);
    atomic_fetch_sub(&sh->writers, 1);
    if (!downgrade) {
        CHECK_EQ(sq_rwlock_write_unlock(&sh->l), 0);
        return;
    }
    atomic_fetch_add(&sh->readers, 1); /* before others can join us */
    CHECK_EQ(sq_rwlock_downgrade(&sh->l), 0);
    atomic_fetch_sub(&sh->readers, 1);
    read_section(sh, yield);
    CHECK_EQ(sq_rwlock_read_unlock(&sh->l), 0);
}

/* One random operation; returns -ECANCELED if the task was aborted. */
static int one_op(shared *sh, uint32_t *x, bool in_task)
{
    int64_t dl = sq_now() + (int64_t)(sq_test_rnd(x) % 30000);
    int rc;
    bool yield = in_task && sq_test_rnd(x) % 2;
    if (sq_test_rnd(x) % 4 == 0) { /* a writer in four */
        switch (sq_test_rnd(x) % 3) {
        case 0: rc = sq_rwlock_write_lock(&sh->l); break;
        case 1: rc = sq_rwlock_write_lock_until(&sh->l, dl); break;
        default: rc = sq_rwlock_try_write_lock(&sh->l); break;
        }
        if (rc == 0)
            write_section(sh, yield, sq_test_rnd(x) % 3 == 0);
    } else {
        switch (sq_test_rnd(x) % 3) {
        case 0: rc = sq_rwlock_read_lock(&sh->l); break;
        case 1: rc = sq_rwlock_read_lock_until(&sh->l, dl); break;
        default: rc = sq_rwlock_try_read_lock(&sh->l); break;
        }
        if (rc == 0) {
            read_section(sh, yield);
            CHECK_EQ(sq_rwlock_read_unlock(&sh->l), 0);
        }
    }
    if (rc == -ECANCELED)
        return rc;
    if (rc) {
        CHECK(rc == -ETIMEDOUT || rc == -EBUSY);
        atomic_fetch_add(&sh->failed, 1);
    }
    return 0;
}

static void *stress_task(void *arg)
{
    shared *sh = arg;
    uint32_t x = (uint32_t)sq_task_id() * 2654435761u | 1;
    for (int i = 0; i < STRESS_ITERS; i++)
        if (one_op(sh, &x, true) == -ECANCELED)
            break;
    return NULL;
}

static void *stress_thread(void *arg)
{
    shared *sh = arg;
    uint32_t x = (uint32_t)(uintptr_t)&x | 1;
    while (!atomic_load(&sh->go))
        sched_yield();
    for (int i = 0; i < THREAD_ITERS; i++)
        CHECK_EQ(one_op(sh, &x, false), 0);
    return NULL;
}

static void *stress_root(void *arg)
{
    shared *sh = arg;
    sq_test_abort_while_running(stress_task, sh, STRESS_TASKS, &sh->go, 9,
                                300 * SQ_USEC);
    return NULL;
}

TEST(writer_excludes_everyone_with_tasks_threads_and_cancellation)
{
    for (int round = 0; round < 2; round++) {
        shared sh = {.writes = 0};
        sq_rwlock_init(&sh.l);
        pthread_t th[STRESS_THREADS];
        for (int i = 0; i < STRESS_THREADS; i++)
            CHECK_EQ(pthread_create(&th[i], NULL, stress_thread, &sh), 0);
        sq_test_run(2, stress_root, &sh);
        for (int i = 0; i < STRESS_THREADS; i++)
            pthread_join(th[i], NULL);
        CHECK_EQ(sh.writes, atomic_load(&sh.writes_ok));
        for (int k = 0; k < WIDTH; k++)
            CHECK_EQ(sh.data[k], sh.writes);
        CHECK(atomic_load(&sh.writes_ok) > 0);
        CHECK(atomic_load(&sh.reads_ok) > 0);
        CHECK(atomic_load(&sh.failed) > 0);
        CHECK(atomic_load(&sh.high_readers) > 1); /* readers did overlap */
        CHECK_EQ(atomic_load(&sh.readers), 0);
        CHECK_EQ(atomic_load(&sh.writers), 0);
        CHECK_EQ(sq_rwlock_destroy(&sh.l), 0);
    }
}

/* --------------------------------------------------- no writer starvation */

/* Readers re-take the lock in a loop, each holding it across a yield, so
 * that at every moment some reader holds it: a lock that let new readers
 * in past a waiting writer would never let the writer in.  The writer
 * notes the count of reader acquisitions just before it asks and just
 * after it gets the lock; the difference is bounded.  Readers give up
 * when one window passes a cap, so a starving lock fails instead of
 * hanging. */
#define STARVE_READERS 8
#define STARVE_WRITES 200
#define STARVE_CAP 1000000L
#define STARVE_THREADS 2

typedef struct starve {
    sq_rwlock l;
    atomic_long acquisitions, asked_at; /* asked_at: -1 when not asking */
    atomic_int stop, go, running, starved;
    int readers; /* tasks and threads that read */
    long window[STARVE_WRITES];
} starve;

static void *starve_reader(void *arg)
{
    starve *s = arg;
    atomic_fetch_add(&s->running, 1);
    while (!atomic_load(&s->stop) && !atomic_load(&s->starved)) {
        long asked = atomic_load(&s->asked_at);
        if (asked >= 0 && atomic_load(&s->acquisitions) - asked > STARVE_CAP) {
            atomic_store(&s->starved, 1);
            break;
        }
        CHECK_EQ(sq_rwlock_read_lock(&s->l), 0);
        atomic_fetch_add(&s->acquisitions, 1);
        sq_yield(); /* holding it: the next reader overlaps us */
        CHECK_EQ(sq_rwlock_read_unlock(&s->l), 0);
    }
    return NULL;
}

static void *starve_thread(void *arg)
{
    starve *s = arg;
    while (!atomic_load(&s->go))
        sched_yield();
    return starve_reader(s);
}

static void starve_writer(starve *s)
{
    for (int w = 0; w < STARVE_WRITES; w++) {
        /* Let the readers get going (again). */
        while (atomic_load(&s->running) < s->readers)
            sq_yield();
        for (int k = 0; k < 4; k++)
            sq_yield();
        long before = atomic_load(&s->acquisitions);
        atomic_store(&s->asked_at, before);
        CHECK_EQ(sq_rwlock_write_lock(&s->l), 0);
        atomic_store(&s->asked_at, -1);
        s->window[w] = atomic_load(&s->acquisitions) - before;
        CHECK_EQ(sq_rwlock_write_unlock(&s->l), 0);
    }
    atomic_store(&s->stop, 1);
}

static void *starve_root(void *arg)
{
    starve *s = arg;
    sq_task t[STARVE_READERS];
    for (int i = 0; i < STARVE_READERS; i++)
        CHECK_EQ(sq_spawn(&t[i], starve_reader, s, &small), 0);
    atomic_store(&s->go, 1);
    starve_writer(s);
    for (int i = 0; i < STARVE_READERS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    return NULL;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* One worker: between the writer's count and its queueing nothing else
 * runs, so every acquisition in its window is by a reader that already
 * had the lock granted (but had not yet counted it): at most one per
 * reader. */
TEST(queued_writer_is_not_starved_by_readers_one_worker)
{
    starve s = {.readers = STARVE_READERS, .asked_at = -1};
    sq_rwlock_init(&s.l);
    sq_test_run(1, starve_root, &s);
    CHECK(!atomic_load(&s.starved));
    for (int w = 0; w < STARVE_WRITES; w++)
        CHECK(s.window[w] <= STARVE_READERS);
    CHECK_EQ(sq_rwlock_destroy(&s.l), 0);
}

/* Two workers and plain threads: the OS may preempt the writer between
 * its count and its queueing, so single windows can be long; the median
 * over many writes is still bounded by the number of readers. */
TEST(queued_writer_is_not_starved_by_readers_tasks_and_threads)
{
    starve s = {.readers = STARVE_READERS + STARVE_THREADS, .asked_at = -1};
    sq_rwlock_init(&s.l);
    pthread_t th[STARVE_THREADS];
    for (int i = 0; i < STARVE_THREADS; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, starve_thread, &s), 0);
    sq_test_run(2, starve_root, &s);
    for (int i = 0; i < STARVE_THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK(!atomic_load(&s.starved));
    qsort(s.window, STARVE_WRITES, sizeof s.window[0], cmp_long);
    CHECK(s.window[STARVE_WRITES / 2] <=
          2 * (STARVE_READERS + STARVE_THREADS));
    CHECK_EQ(sq_rwlock_destroy(&s.l), 0);
}

/* ------------------------------------------------------------ FIFO order */

#define FIFO_N 9
typedef struct fifo {
    sq_rwlock l;
    atomic_int arrived, done, readers_in;
    int order[FIFO_N]; /* written under the lock (see below) */
    atomic_int pos;
    int readers_seen[FIFO_N];
} fifo;

typedef struct fifo_arg {
    fifo *f;
    int i;
    bool writer;
} fifo_arg;

static void *fifo_waiter(void *arg)
{
    fifo_arg *a = arg;
    fifo *f = a->f;
    atomic_fetch_add(&f->arrived, 1);
    if (a->writer) {
        CHECK_EQ(sq_rwlock_write_lock(&f->l), 0);
        CHECK_EQ(atomic_load(&f->readers_in), 0);
        f->order[atomic_fetch_add(&f->pos, 1)] = a->i;
        sq_yield();
        CHECK_EQ(sq_rwlock_write_unlock(&f->l), 0);
    } else {
        CHECK_EQ(sq_rwlock_read_lock(&f->l), 0);
        int in = atomic_fetch_add(&f->readers_in, 1) + 1;
        int p = atomic_fetch_add(&f->pos, 1);
        f->order[p] = a->i;
        f->readers_seen[p] = in;
        sq_yield(); /* the rest of our group gets in meanwhile */
        atomic_fetch_sub(&f->readers_in, 1);
        CHECK_EQ(sq_rwlock_read_unlock(&f->l), 0);
    }
    atomic_fetch_add(&f->done, 1);
    return NULL;
}

/* On one worker a waiter runs from counting itself to parking in the
 * lock call without interruption: once it has counted itself, it is
 * queued. */
static void wait_arrived(fifo *f, int n)
{
    while (atomic_load(&f->arrived) < n)
        sq_yield();
}

static void *fifo_root(void *arg)
{
    (void)arg;
    /* R0 R1 R2 W3 R4 W5 W6 R7 R8, queued behind our write lock. */
    static const bool is_writer[FIFO_N] = {0, 0, 0, 1, 0, 1, 1, 0, 0};
    fifo f = {.arrived = 0};
    sq_rwlock_init(&f.l);
    CHECK_EQ(sq_rwlock_write_lock(&f.l), 0);
    fifo_arg args[FIFO_N];
    sq_task t[FIFO_N];
    for (int i = 0; i < FIFO_N; i++) {
        args[i] = (fifo_arg){.f = &f, .i = i, .writer = is_writer[i]};
        CHECK_EQ(sq_spawn(&t[i], fifo_waiter, &args[i], NULL), 0);
        wait_arrived(&f, i + 1);
    }
    CHECK_EQ(sq_rwlock_destroy(&f.l), -EBUSY);
    CHECK_EQ(sq_rwlock_write_unlock(&f.l), 0);
    for (int i = 0; i < FIFO_N; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    CHECK_EQ(atomic_load(&f.done), FIFO_N);
    /* Groups in order; inside a group of readers any order, and each
     * group got in together (the last to record saw all of it inside). */
    static const int group_end[] = {3, 4, 5, 6, 7, 9};
    int start = 0;
    for (int g = 0; g < 6; g++) {
        int end = group_end[g], mask = 0;
        for (int p = start; p < end; p++) {
            CHECK(f.order[p] >= start && f.order[p] < end);
            mask |= 1 << f.order[p];
        }
        CHECK_EQ(mask, ((1 << end) - 1) & ~((1 << start) - 1));
        if (!is_writer[start])
            CHECK_EQ(f.readers_seen[end - 1], end - start);
        start = end;
    }
    CHECK_EQ(sq_rwlock_destroy(&f.l), 0);
    return NULL;
}

TEST(readers_and_writers_are_served_in_arrival_order)
{
    sq_test_run(1, fifo_root, NULL);
}

/* While readers hold the lock and a writer waits, a newcomer reader
 * queues behind the writer instead of joining them (no barging). */
static void *write_waiter(void *arg)
{
    fifo *f = arg;
    atomic_fetch_add(&f->arrived, 1);
    int rc = sq_rwlock_write_lock(&f->l);
    if (rc == 0)
        CHECK_EQ(sq_rwlock_write_unlock(&f->l), 0);
    return (void *)(intptr_t)rc;
}

static void *no_barging_root(void *arg)
{
    (void)arg;
    fifo f = {.arrived = 0};
    sq_rwlock_init(&f.l);
    CHECK_EQ(sq_rwlock_read_lock(&f.l), 0);
    sq_task w;
    CHECK_EQ(sq_spawn(&w, write_waiter, &f, NULL), 0);
    wait_arrived(&f, 1);
    CHECK_EQ(sq_rwlock_try_read_lock(&f.l), -EBUSY);
    CHECK_EQ(sq_rwlock_read_lock_until(&f.l, sq_now() + SQ_MSEC), -ETIMEDOUT);
    CHECK_EQ(sq_rwlock_read_unlock(&f.l), 0); /* the writer gets it */
    void *r;
    CHECK_EQ(sq_join(w, &r), 0);
    CHECK_EQ((intptr_t)r, 0);
    CHECK_EQ(sq_rwlock_destroy(&f.l), 0);
    return NULL;
}

TEST(newcomer_reader_queues_behind_a_waiting_writer)
{
    sq_test_run(1, no_barging_root, NULL);
}

/* ------------------------------------------------------------- downgrade */

typedef struct dg {
    sq_rwlock l;
    long value; /* protected by l */
    atomic_int arrived, readers_in, release, writer_in;
    long seen[8];
} dg;

typedef struct dg_arg {
    dg *d;
    int i;
} dg_arg;

static void *dg_reader(void *arg)
{
    dg_arg *a = arg;
    dg *d = a->d;
    atomic_fetch_add(&d->arrived, 1);
    CHECK_EQ(sq_rwlock_read_lock(&d->l), 0);
    CHECK_EQ(atomic_load(&d->writer_in), 0);
    atomic_fetch_add(&d->readers_in, 1);
    d->seen[a->i] = d->value;
    while (!atomic_load(&d->release))
        sq_yield();
    atomic_fetch_sub(&d->readers_in, 1);
    CHECK_EQ(sq_rwlock_read_unlock(&d->l), 0);
    return NULL;
}

static void *dg_writer(void *arg)
{
    dg_arg *a = arg;
    dg *d = a->d;
    atomic_fetch_add(&d->arrived, 1);
    CHECK_EQ(sq_rwlock_write_lock(&d->l), 0);
    CHECK_EQ(atomic_load(&d->readers_in), 0);
    atomic_store(&d->writer_in, 1);
    d->seen[a->i] = d->value;
    d->value++;
    atomic_store(&d->writer_in, 0);
    CHECK_EQ(sq_rwlock_write_unlock(&d->l), 0);
    return NULL;
}

static void *downgrade_root(void *arg)
{
    (void)arg;
    dg d = {.value = 0};
    sq_rwlock_init(&d.l);
    CHECK_EQ(sq_rwlock_write_lock(&d.l), 0);
    /* Queue R0 R1 R2, then W3, then R4, behind our write lock. */
    dg_arg args[5];
    sq_task t[5];
    for (int i = 0; i < 5; i++) {
        args[i] = (dg_arg){.d = &d, .i = i};
        CHECK_EQ(sq_spawn(&t[i], i == 3 ? dg_writer : dg_reader, &args[i],
                          NULL), 0);
        while (atomic_load(&d.arrived) < i + 1)
            sq_yield();
    }
    d.value = 42;
    CHECK_EQ(sq_rwlock_downgrade(&d.l), 0);
    /* R0..R2 get in beside us; W3 and (behind it) R4 do not. */
    while (atomic_load(&d.readers_in) < 3)
        sq_yield();
    for (int k = 0; k < 20; k++)
        sq_yield();
    CHECK_EQ(atomic_load(&d.readers_in), 3);
    CHECK_EQ(atomic_load(&d.writer_in), 0);
    CHECK_EQ(d.value, 42);
    CHECK_EQ(sq_rwlock_try_write_lock(&d.l), -EBUSY);
    CHECK_EQ(sq_rwlock_try_read_lock(&d.l), -EBUSY); /* W3 waits */
    atomic_store(&d.release, 1);
    sq_yield();
    CHECK_EQ(d.value, 42); /* we still hold a read lock */
    CHECK_EQ(sq_rwlock_read_unlock(&d.l), 0);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(d.seen[i], 42);
    CHECK_EQ(d.seen[3], 42);
    CHECK_EQ(d.seen[4], 43); /* after W3 */
    CHECK_EQ(sq_rwlock_destroy(&d.l), 0);
    return NULL;
}

TEST(downgrade_keeps_writers_out_and_lets_queued_readers_in)
{
    sq_test_run(1, downgrade_root, NULL);
}

/* ------------------------------------------- deadlines and cancellation */

static void *timed_writer(void *arg)
{
    fifo *f = arg;
    atomic_fetch_add(&f->arrived, 1);
    return (void *)(intptr_t)sq_rwlock_write_lock_until(&f->l,
                                                       sq_now() + 3 * SQ_MSEC);
}

static void *reader_forever(void *arg)
{
    fifo *f = arg;
    atomic_fetch_add(&f->arrived, 1);
    int rc = sq_rwlock_read_lock(&f->l);
    if (rc == 0)
        atomic_fetch_add(&f->readers_in, 1);
    return (void *)(intptr_t)rc;
}

static void *writer_forever(void *arg)
{
    fifo *f = arg;
    atomic_fetch_add(&f->arrived, 1);
    return (void *)(intptr_t)sq_rwlock_write_lock(&f->l);
}

/* A writer at the head holds part of the read permits when it times out;
 * it passes them on, so the reader queued behind it gets in beside ours. */
static void *head_timeout_root(void *arg)
{
    (void)arg;
    fifo f = {.arrived = 0};
    sq_rwlock_init(&f.l);
    /* Held across sleeps and joins on purpose, to build queue states. */
    sq_rwlock_allow_hold_across_waits(&f.l);
    CHECK_EQ(sq_rwlock_read_lock(&f.l), 0);
    sq_task w, r;
    CHECK_EQ(sq_spawn(&w, timed_writer, &f, NULL), 0);
    wait_arrived(&f, 1);
    CHECK_EQ(sq_spawn(&r, reader_forever, &f, NULL), 0);
    wait_arrived(&f, 2);
    CHECK_EQ(atomic_load(&f.readers_in), 0);
    void *res;
    CHECK_EQ(sq_join(w, &res), 0);
    CHECK_EQ((intptr_t)res, -ETIMEDOUT);
    CHECK_EQ(sq_join(r, &res), 0);
    CHECK_EQ((intptr_t)res, 0);
    CHECK_EQ(atomic_load(&f.readers_in), 1);
    CHECK_EQ(sq_rwlock_read_unlock(&f.l), 0);
    CHECK_EQ(sq_rwlock_destroy(&f.l), -EBUSY); /* the reader's */
    CHECK_EQ(sq_rwlock_read_unlock(&f.l), 0);
    CHECK_EQ(sq_rwlock_destroy(&f.l), 0);
    return NULL;
}

TEST(timed_out_writer_passes_what_it_was_given_on)
{
    sq_test_run(1, head_timeout_root, NULL);
}

/* Aborted readers and writers, queued behind our write or read lock,
 * return -ECANCELED holding nothing; a reader queued behind an aborted
 * writer gets in. */
static void *abort_root(void *arg)
{
    (void)arg;
    fifo f = {.arrived = 0};
    sq_rwlock_init(&f.l);
    /* Held across sleeps and joins on purpose, to build queue states. */
    sq_rwlock_allow_hold_across_waits(&f.l);
    sq_task t[8];
    void *r;

    CHECK_EQ(sq_rwlock_write_lock(&f.l), 0);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(sq_spawn(&t[i], i % 2 ? writer_forever : reader_forever, &f,
                          NULL), 0);
    wait_arrived(&f, 8);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(sq_abort(t[i]), 0);
    for (int i = 0; i < 8; i++) {
        CHECK_EQ(sq_join(t[i], &r), -ECANCELED);
        CHECK_EQ((intptr_t)r, -ECANCELED);
    }
    CHECK_EQ(atomic_load(&f.readers_in), 0);
    CHECK_EQ(sq_rwlock_destroy(&f.l), -EBUSY);
    CHECK_EQ(sq_rwlock_write_unlock(&f.l), 0);
    CHECK_EQ(sq_rwlock_destroy(&f.l), 0);

    /* Read-held; a writer waits (with part of the permits), a reader
     * behind it; the writer is aborted and the reader gets in. */
    f.arrived = 0;
    CHECK_EQ(sq_rwlock_read_lock(&f.l), 0);
    CHECK_EQ(sq_spawn(&t[0], writer_forever, &f, NULL), 0);
    wait_arrived(&f, 1);
    CHECK_EQ(sq_spawn(&t[1], reader_forever, &f, NULL), 0);
    wait_arrived(&f, 2);
    CHECK_EQ(sq_abort(t[0]), 0);
    CHECK_EQ(sq_join(t[0], &r), -ECANCELED);
    CHECK_EQ((intptr_t)r, -ECANCELED);
    CHECK_EQ(sq_join(t[1], &r), 0);
    CHECK_EQ((intptr_t)r, 0);
    CHECK_EQ(sq_rwlock_read_unlock(&f.l), 0);
    CHECK_EQ(sq_rwlock_read_unlock(&f.l), 0);
    CHECK_EQ(sq_rwlock_destroy(&f.l), 0);
    CHECK_EQ(sq_rwlock_try_write_lock(&f.l), 0);
    CHECK_EQ(sq_rwlock_write_unlock(&f.l), 0);
    return NULL;
}

TEST(aborted_waiters_return_ecanceled_holding_nothing)
{
    sq_test_run(1, abort_root, NULL);
}

/* ------------------------------------------------------ not owner-bound */

static void *read_unlocker(void *arg)
{
    return (void *)(intptr_t)sq_rwlock_read_unlock(arg);
}

static void *write_unlocker(void *arg)
{
    return (void *)(intptr_t)sq_rwlock_write_unlock(arg);
}

static void *thread_write_unlocker(void *arg)
{
    CHECK_EQ(sq_rwlock_write_unlock(arg), 0);
    return NULL;
}

static void *handoff_root(void *arg)
{
    (void)arg;
    sq_rwlock l;
    sq_rwlock_init(&l);
    /* Held across sleeps and joins on purpose, to build queue states. */
    sq_rwlock_allow_hold_across_waits(&l);
    sq_task t;
    void *r;
    CHECK_EQ(sq_rwlock_read_lock(&l), 0);
    CHECK_EQ(sq_spawn(&t, read_unlocker, &l, NULL), 0);
    CHECK_EQ(sq_join(t, &r), 0);
    CHECK_EQ((intptr_t)r, 0);
    CHECK_EQ(sq_rwlock_write_lock(&l), 0);
    CHECK_EQ(sq_spawn(&t, write_unlocker, &l, NULL), 0);
    CHECK_EQ(sq_join(t, &r), 0);
    CHECK_EQ((intptr_t)r, 0);
    CHECK_EQ(sq_rwlock_write_lock(&l), 0);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, thread_write_unlocker, &l), 0);
    CHECK_EQ(sq_rwlock_write_lock(&l), 0); /* waits for the thread */
    pthread_join(th, NULL);
    CHECK_EQ(sq_rwlock_write_unlock(&l), 0);
    CHECK_EQ(sq_rwlock_destroy(&l), 0);
    return NULL;
}

TEST(a_lock_may_be_released_by_another_task_or_thread)
{
    sq_test_run(2, handoff_root, NULL);
}

/* A lock on a waiter's stack: the unlocker hands it over and the new
 * holder may discard it at once (ASan sees any late touch). */
typedef struct stack_lock {
    sq_rwlock *l;
    atomic_int locked;
} stack_lock;

static void *hold_then_unlock(void *arg)
{
    stack_lock *sl = arg;
    sq_rwlock *l = sl->l;
    CHECK_EQ(sq_rwlock_read_lock(l), 0);
    atomic_store(&sl->locked, 1);
    sq_yield();
    CHECK_EQ(sq_rwlock_read_unlock(l), 0);
    return NULL;
}

static void *stack_root(void *arg)
{
    (void)arg;
    for (int i = 0; i < (SQ_TEST_SLOW ? 5000 : 20000); i++) {
        sq_rwlock l;
        sq_rwlock_init(&l);
        stack_lock sl = {.l = &l, .locked = 0};
        CHECK_EQ(sq_spawn(NULL, hold_then_unlock, &sl, &small), 0);
        while (!atomic_load(&sl.locked))
            sq_yield();
        CHECK_EQ(sq_rwlock_write_lock(&l), 0);
        CHECK_EQ(sq_rwlock_write_unlock(&l), 0);
        CHECK_EQ(sq_rwlock_destroy(&l), 0);
    }
    return NULL;
}

TEST(lock_on_the_stack_may_be_discarded_after_hand_off)
{
    sq_test_run(2, stack_root, NULL);
}

/* ------------------------------------------------------------ cancel storm */

#define STORM_WAITERS (SQ_TEST_SLOW ? 3000 : 10000)
#define STORM_CYCLERS 8

static void *storm_waiter(void *arg)
{
    shared *sh = arg;
    uint32_t x = (uint32_t)sq_task_id() * 2654435761u | 1;
    bool writer = sq_test_rnd(&x) % 3 == 0;
    int64_t dl = (sq_test_rnd(&x) % 2) ? SQ_FOREVER
                               : sq_now() + (int64_t)(sq_test_rnd(&x) % (2 * SQ_MSEC));
    int rc = writer ? sq_rwlock_write_lock_until(&sh->l, dl)
                    : sq_rwlock_read_lock_until(&sh->l, dl);
    if (rc == 0) {
        if (writer) {
            write_section(sh, false, sq_test_rnd(&x) % 2);
        } else {
            read_section(sh, false);
            CHECK_EQ(sq_rwlock_read_unlock(&sh->l), 0);
        }
    } else {
        CHECK(rc == -ECANCELED || rc == -ETIMEDOUT);
        atomic_fetch_add(&sh->failed, 1);
    }
    return NULL;
}

static void *storm_cycler(void *arg)
{
    shared *sh = arg;
    uint32_t x = (uint32_t)sq_task_id() * 2654435761u | 1;
    while (!atomic_load(&sh->stop))
        one_op(sh, &x, true);
    return NULL;
}

static void *storm_root(void *arg)
{
    shared *sh = arg;
    sq_test_cancel_storm(&(sq_test_storm){
        .tasks = STORM_WAITERS, .fn = storm_waiter, .arg = sh,
        .every = 16, .aborts = 8, .last_one_in = 2, .seed = 12345,
        .background = STORM_CYCLERS, .background_fn = storm_cycler,
        .stop = &sh->stop});
    return NULL;
}

TEST(cancel_storm_leaves_the_lock_free)
{
    for (int round = 0; round < 2; round++) {
        shared sh = {.writes = 0};
        sq_rwlock_init(&sh.l);
        sq_test_run(2, storm_root, &sh);
        CHECK(atomic_load(&sh.failed) > 0);
        CHECK(atomic_load(&sh.reads_ok) > 0);
        CHECK(atomic_load(&sh.writes_ok) > 0);
        CHECK_EQ(sh.writes, atomic_load(&sh.writes_ok));
        for (int k = 0; k < WIDTH; k++)
            CHECK_EQ(sh.data[k], sh.writes);
        CHECK_EQ(atomic_load(&sh.readers), 0);
        CHECK_EQ(atomic_load(&sh.writers), 0);
        CHECK_EQ(sq_rwlock_destroy(&sh.l), 0);
        CHECK_EQ(sq_rwlock_try_write_lock(&sh.l), 0);
        CHECK_EQ(sq_rwlock_write_unlock(&sh.l), 0);
    }
}
