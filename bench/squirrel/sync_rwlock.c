/* sync.rwlock_read_heavy (shared/BENCHMARKS.md) on sq_rwlock
 * (squirrel/rwlock.h), the same workload as the peers' (bench/peers/go/
 * sync.go, bench/peers/tokio/src/sync.rs). */
#include "bench.h"

#include "squirrel/rwlock.h"

/* 32 tasks, 10,000 operations each: 9 in 10 take the read lock and read
 * the shared array of 16 integers (checking it is not torn), 1 in 10 take
 * the write lock and bump all of them.  Which operations write is
 * staggered by task, as in the tokio peer, so the writes do not line up.
 * At the end every slot must equal the number of writes, 32,000. */
#define RW_TASKS 32
#define RW_OPS 10000
#define RW_WIDTH 16

typedef struct rw_shared {
    sq_rwlock l;
    uint64_t slots[RW_WIDTH]; /* protected by l */
    atomic_long torn;         /* reads that saw unequal slots */
} rw_shared;

typedef struct rw_arg {
    rw_shared *sh;
    int t;
} rw_arg;

static void *rw_task(void *arg)
{
    rw_arg *a = arg;
    rw_shared *sh = a->sh;
    long writes = 0, bad = 0;
    for (int op = 0; op < RW_OPS; op++) {
        if ((op + a->t) % 10 == 0) {
            bench_check(sq_rwlock_write_lock(&sh->l), "sq_rwlock_write_lock");
            for (int k = 0; k < RW_WIDTH; k++)
                sh->slots[k]++;
            bench_check(sq_rwlock_write_unlock(&sh->l),
                        "sq_rwlock_write_unlock");
            writes++;
        } else {
            bench_check(sq_rwlock_read_lock(&sh->l), "sq_rwlock_read_lock");
            uint64_t first = sh->slots[0];
            for (int k = 1; k < RW_WIDTH; k++)
                bad += sh->slots[k] != first;
            bench_check(sq_rwlock_read_unlock(&sh->l),
                        "sq_rwlock_read_unlock");
        }
    }
    atomic_fetch_add(&sh->torn, bad);
    return (void *)(intptr_t)writes;
}

static void rwlock_read_heavy_run(const bench_workload *w, bench_run *out)
{
    (void)w;
    rw_shared sh = {.torn = 0};
    sq_rwlock_init(&sh.l);
    rw_arg args[RW_TASKS];
    sq_task t[RW_TASKS];
    int64_t t0 = sq_now();
    for (int i = 0; i < RW_TASKS; i++) {
        args[i] = (rw_arg){.sh = &sh, .t = i};
        bench_check(sq_spawn(&t[i], rw_task, &args[i], NULL), "sq_spawn");
    }
    long writes = 0;
    for (int i = 0; i < RW_TASKS; i++) {
        void *r;
        bench_check(sq_join(t[i], &r), "sq_join");
        writes += (long)(intptr_t)r;
    }
    out->ns = sq_now() - t0;

    long want = (long)RW_TASKS * RW_OPS / 10;
    if (atomic_load(&sh.torn) != 0)
        bench_fail("%ld reads saw a half-written array", atomic_load(&sh.torn));
    if (writes != want)
        bench_fail("%ld writes, want %ld", writes, want);
    bench_check(sq_rwlock_read_lock(&sh.l), "sq_rwlock_read_lock");
    for (int k = 0; k < RW_WIDTH; k++)
        if (sh.slots[k] != (uint64_t)want)
            bench_fail("slot %d is %llu, want %ld (the number of writes)", k,
                       (unsigned long long)sh.slots[k], want);
    bench_check(sq_rwlock_read_unlock(&sh.l), "sq_rwlock_read_unlock");
    bench_check(sq_rwlock_destroy(&sh.l), "sq_rwlock_destroy");
}

const bench_workload bench_rwlock_workloads[] = {
    {.name = "sync.rwlock_read_heavy",
     .ops = (uint64_t)RW_TASKS * RW_OPS,
     .run = rwlock_read_heavy_run},
    {.name = NULL},
};
