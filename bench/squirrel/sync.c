/* The synchronisation workloads (sync.*) of shared/BENCHMARKS.md, on the
 * sync layer (squirrel/sync.h).  sync.rwlock_read_heavy and sync.mpsc_*
 * come with the rwlock and mpsc primitives. */
#include "bench.h"

#include "squirrel/sync.h"

/* --------------------------------------------- sync.mutex_uncontended */

/* One task: lock, increment, unlock, 1,000,000 times. */
#define UNCONTENDED_OPS 1000000

static void mutex_uncontended_run(const bench_workload *w, bench_run *out)
{
    (void)w;
    sq_mutex m;
    sq_mutex_init(&m);
    long counter = 0;
    int64_t t0 = sq_now();
    for (long i = 0; i < UNCONTENDED_OPS; i++) {
        bench_check(sq_mutex_lock(&m), "sq_mutex_lock");
        counter++;
        bench_check(sq_mutex_unlock(&m), "sq_mutex_unlock");
    }
    out->ns = sq_now() - t0;
    if (counter != UNCONTENDED_OPS)
        bench_fail("counter is %ld, want %d", counter, UNCONTENDED_OPS);
    bench_check(sq_mutex_destroy(&m), "sq_mutex_destroy");
}

/* ----------------------------------------------- sync.mutex_contended */

/* 32 tasks each lock, increment a shared counter, unlock, 10,000 times;
 * the counter must be 320,000. */
#define CONTENDED_TASKS 32
#define CONTENDED_OPS 10000

typedef struct contended {
    sq_mutex m;
    long counter; /* protected by m */
} contended;

static void *contended_task(void *arg)
{
    contended *c = arg;
    for (int i = 0; i < CONTENDED_OPS; i++) {
        bench_check(sq_mutex_lock(&c->m), "sq_mutex_lock");
        c->counter++;
        bench_check(sq_mutex_unlock(&c->m), "sq_mutex_unlock");
    }
    return NULL;
}

static void mutex_contended_run(const bench_workload *w, bench_run *out)
{
    (void)w;
    contended c = {.counter = 0};
    sq_mutex_init(&c.m);
    sq_task t[CONTENDED_TASKS];
    int64_t t0 = sq_now();
    for (int i = 0; i < CONTENDED_TASKS; i++)
        bench_check(sq_spawn(&t[i], contended_task, &c, NULL), "sq_spawn");
    for (int i = 0; i < CONTENDED_TASKS; i++)
        bench_check(sq_join(t[i], NULL), "sq_join");
    out->ns = sq_now() - t0;
    bench_check(sq_mutex_lock(&c.m), "sq_mutex_lock");
    long n = c.counter;
    bench_check(sq_mutex_unlock(&c.m), "sq_mutex_unlock");
    if (n != (long)CONTENDED_TASKS * CONTENDED_OPS)
        bench_fail("counter is %ld, want %ld", n,
                   (long)CONTENDED_TASKS * CONTENDED_OPS);
}

/* ------------------------------------------ sync.semaphore_contended */

/* 6 tasks share a semaphore of 5 permits; each acquires, yields once while
 * holding the permit, and releases, 10,000 times.  An atomic count of
 * holders checks that at most 5 ever hold one. */
#define SEM_TASKS 6
#define SEM_PERMITS 5
#define SEM_OPS 10000

typedef struct sem_shared {
    sq_sem s;
    atomic_long holders, high;
} sem_shared;

static void *sem_task(void *arg)
{
    sem_shared *sh = arg;
    for (int i = 0; i < SEM_OPS; i++) {
        bench_check(sq_sem_acquire(&sh->s, 1), "sq_sem_acquire");
        long h = atomic_fetch_add_explicit(&sh->holders, 1,
                                           memory_order_acq_rel) + 1;
        long hi = atomic_load_explicit(&sh->high, memory_order_relaxed);
        while (h > hi && !atomic_compare_exchange_weak(&sh->high, &hi, h))
            ;
        if (h > SEM_PERMITS)
            bench_fail("%ld tasks hold a permit, at most %d may", h,
                       SEM_PERMITS);
        bench_check(sq_yield(), "sq_yield");
        atomic_fetch_sub_explicit(&sh->holders, 1, memory_order_acq_rel);
        bench_check(sq_sem_release(&sh->s, 1), "sq_sem_release");
    }
    return NULL;
}

static void semaphore_contended_run(const bench_workload *w, bench_run *out)
{
    (void)w;
    sem_shared sh = {.holders = 0, .high = 0};
    sq_sem_init(&sh.s, SEM_PERMITS);
    sq_task t[SEM_TASKS];
    int64_t t0 = sq_now();
    for (int i = 0; i < SEM_TASKS; i++)
        bench_check(sq_spawn(&t[i], sem_task, &sh, NULL), "sq_spawn");
    for (int i = 0; i < SEM_TASKS; i++)
        bench_check(sq_join(t[i], NULL), "sq_join");
    out->ns = sq_now() - t0;
    long high = atomic_load(&sh.high);
    if (high > SEM_PERMITS)
        bench_fail("high-water mark %ld, at most %d", high, SEM_PERMITS);
    if (sq_sem_available(&sh.s) != SEM_PERMITS)
        bench_fail("permits lost: %zu available", sq_sem_available(&sh.s));
    out->metric = (double)high;
}

static void semaphore_extras(const bench_summary *s, bench_line *line)
{
    /* The median high-water mark over the runs; every run checked <= 5. */
    bench_field(line, "max_holders", "%.0f", s->metric);
}

/* ------------------------------------------------------- sync.oneshot */

/* 100,000 times, one after another: create a oneshot, send on it from a
 * freshly spawned task, receive in this one. */
#define ONESHOTS 100000

typedef struct oneshot_job {
    sq_oneshot *o;
    long v;
} oneshot_job;

static void *oneshot_sender(void *arg)
{
    oneshot_job j = *(oneshot_job *)arg; /* lives on the receiver's stack */
    bench_check(sq_oneshot_send(j.o, (void *)(intptr_t)j.v), "sq_oneshot_send");
    return NULL;
}

static void oneshot_run(const bench_workload *w, bench_run *out)
{
    (void)w;
    long sum = 0;
    int64_t t0 = sq_now();
    for (long i = 0; i < ONESHOTS; i++) {
        sq_oneshot o;
        sq_oneshot_init(&o);
        oneshot_job j = {.o = &o, .v = i};
        bench_check(sq_spawn(NULL, oneshot_sender, &j, NULL), "sq_spawn");
        void *v;
        bench_check(sq_oneshot_recv(&o, &v), "sq_oneshot_recv");
        if ((intptr_t)v != i)
            bench_fail("oneshot %ld: received %ld", i, (long)(intptr_t)v);
        sum += (long)(intptr_t)v;
    }
    out->ns = sq_now() - t0;
    long want = (long)ONESHOTS * (ONESHOTS - 1) / 2;
    if (sum != want)
        bench_fail("sum %ld, want %ld", sum, want);
}

const bench_workload bench_sync_workloads[] = {
    {.name = "sync.mutex_uncontended",
     .ops = UNCONTENDED_OPS,
     .run = mutex_uncontended_run},
    {.name = "sync.mutex_contended",
     .ops = (uint64_t)CONTENDED_TASKS * CONTENDED_OPS,
     .run = mutex_contended_run},
    {.name = "sync.semaphore_contended",
     .ops = (uint64_t)SEM_TASKS * SEM_OPS,
     .run = semaphore_contended_run,
     .extras = semaphore_extras},
    {.name = "sync.oneshot", .ops = ONESHOTS, .run = oneshot_run},
    {.name = NULL},
};
