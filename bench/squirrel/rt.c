/* The runtime workloads (rt.*) of shared/BENCHMARKS.md. */
#include "bench.h"

#include <stdlib.h>

#include "squirrel/sync.h"

/* ------------------------------------------------------ rt.spawn_many */

/* From inside a task, spawn 10,000 detached tasks; each decrements a shared
 * atomic; the run ends when it reaches zero.
 *
 * The one that brings it to zero signals completion through a Notify (a
 * stored wake-up if the root is not waiting yet). */
#define SPAWN_MANY_TASKS 10000

static atomic_long spawn_many_left;
static sq_notify spawn_many_done = SQ_NOTIFY_INITIALIZER;

static void *spawn_many_task(void *arg)
{
    (void)arg;
    if (atomic_fetch_sub_explicit(&spawn_many_left, 1,
                                  memory_order_acq_rel) == 1)
        sq_notify_one(&spawn_many_done);
    return NULL;
}

static void spawn_many_run(const bench_workload *w, bench_run *out)
{
    (void)w;
    atomic_store(&spawn_many_left, SPAWN_MANY_TASKS);
    int64_t t0 = sq_now();
    for (int i = 0; i < SPAWN_MANY_TASKS; i++)
        bench_check(sq_spawn(NULL, spawn_many_task, NULL, NULL), "sq_spawn");
    bench_check(sq_notify_wait(&spawn_many_done), "sq_notify_wait");
    out->ns = sq_now() - t0;
    /* Exactly 10,000 decrements happened and no more can come. */
    long left = atomic_load(&spawn_many_left);
    if (left != 0)
        bench_fail("counter is %ld, want 0", left);
}

/* ---------------------------------------------------- rt.chained_spawn */

/* A task spawns the next, 1,000 deep (1,000 spawns, the root's included);
 * the last one sets a flag and signals the root through a Notify. */
#define CHAIN_DEPTH 1000

static atomic_long chain_ran;  /* tasks of the chain that ran */
static atomic_long chain_done; /* set to 1 by the last one */
static sq_notify chain_finished = SQ_NOTIFY_INITIALIZER;

static void *chain_task(void *arg)
{
    long left = (long)(intptr_t)arg; /* tasks still to come, this one included */
    atomic_fetch_add_explicit(&chain_ran, 1, memory_order_relaxed);
    if (left == 1) {
        atomic_store_explicit(&chain_done, 1, memory_order_release);
        sq_notify_one(&chain_finished);
    } else
        bench_check(sq_spawn(NULL, chain_task, (void *)(intptr_t)(left - 1),
                             NULL),
                    "sq_spawn");
    return NULL;
}

static void chained_spawn_run(const bench_workload *w, bench_run *out)
{
    (void)w;
    atomic_store(&chain_ran, 0);
    atomic_store(&chain_done, 0);
    int64_t t0 = sq_now();
    bench_check(sq_spawn(NULL, chain_task, (void *)(intptr_t)CHAIN_DEPTH, NULL),
                "sq_spawn");
    bench_check(sq_notify_wait(&chain_finished), "sq_notify_wait");
    if (atomic_load(&chain_done) != 1)
        bench_fail("woken before the chain finished");
    out->ns = sq_now() - t0;
    long ran = atomic_load(&chain_ran);
    if (ran != CHAIN_DEPTH)
        bench_fail("%ld tasks of the chain ran, want %d", ran, CHAIN_DEPTH);
}

/* ------------------------------------------------------- rt.yield_many */

/* 200 tasks each yield 1,000 times; the root joins them all. */
#define YIELD_TASKS 200
#define YIELDS_PER_TASK 1000

static void *yield_task(void *arg)
{
    (void)arg;
    long n = 0;
    for (int i = 0; i < YIELDS_PER_TASK; i++) {
        bench_check(sq_yield(), "sq_yield");
        n++;
    }
    return (void *)(intptr_t)n;
}

static void yield_many_run(const bench_workload *w, bench_run *out)
{
    (void)w;
    sq_task tasks[YIELD_TASKS];
    int64_t t0 = sq_now();
    for (int i = 0; i < YIELD_TASKS; i++)
        bench_check(sq_spawn(&tasks[i], yield_task, NULL, NULL), "sq_spawn");
    long total = 0;
    for (int i = 0; i < YIELD_TASKS; i++) {
        void *res;
        bench_check(sq_join(tasks[i], &res), "sq_join");
        total += (long)(intptr_t)res;
    }
    out->ns = sq_now() - t0;
    if (total != (long)YIELD_TASKS * YIELDS_PER_TASK)
        bench_fail("%ld yields, want %ld", total,
                   (long)YIELD_TASKS * YIELDS_PER_TASK);
}

/* -------------------------------------------------------- rt.ping_pong */

/* 1,000 rounds, one after another: spawn a task, send it a value over a
 * oneshot channel, it answers value + 1 over another.  Both channels live
 * in the root's frame: a oneshot may live on a stack (sync.h). */
#define PING_PONG_ROUNDS 1000

typedef struct ping_pong_pair {
    sq_oneshot ping, pong;
} ping_pong_pair;

static void *pong_task(void *arg)
{
    ping_pong_pair *p = arg;
    void *v;
    bench_check(sq_oneshot_recv(&p->ping, &v), "sq_oneshot_recv");
    bench_check(sq_oneshot_send(&p->pong, (void *)((intptr_t)v + 1)),
                "sq_oneshot_send");
    return NULL;
}

static void ping_pong_run(const bench_workload *w, bench_run *out)
{
    (void)w;
    long sum = 0;
    int64_t t0 = sq_now();
    for (long r = 0; r < PING_PONG_ROUNDS; r++) {
        ping_pong_pair p;
        sq_oneshot_init(&p.ping);
        sq_oneshot_init(&p.pong);
        bench_check(sq_spawn(NULL, pong_task, &p, NULL), "sq_spawn");
        bench_check(sq_oneshot_send(&p.ping, (void *)(intptr_t)r),
                    "sq_oneshot_send");
        void *res;
        bench_check(sq_oneshot_recv(&p.pong, &res), "sq_oneshot_recv");
        long got = (long)(intptr_t)res;
        if (got != r + 1)
            bench_fail("round %ld: answer %ld, want %ld", r, got, r + 1);
        sum += got;
    }
    out->ns = sq_now() - t0;
    long want = (long)PING_PONG_ROUNDS * (PING_PONG_ROUNDS + 1) / 2;
    if (sum != want)
        bench_fail("sum of answers %ld, want %ld", sum, want);
}

/* ---------------------------------------------------------- rt.skynet */

/* A 10-ary tree of tasks with 1,000,000 leaves (1,111,111 tasks, the top
 * one included); leaf i returns i; parents sum their children, joining
 * them in order.  A node's arguments and result live in its parent's frame
 * (the parent outlives its children: it joins them), so nothing is
 * allocated per task besides the task itself.
 *
 * Every skynet task gets the smallest stack, SQ_STACK_MIN = 16 KiB, via
 * sq_spawn_opts.stack_size: a node needs well under 1 KiB of it, and it
 * keeps the reserved address space of the ~100k parents that can be alive
 * at once small. */
#define SKYNET_LEAVES 1000000
#define SKYNET_TASKS 1111111
#define SKYNET_SUM 499999500000LL

typedef struct skynet_node {
    int64_t num, size, sum;
} skynet_node;

static const sq_spawn_opts skynet_opts = {.stack_size = SQ_STACK_MIN};

static void *skynet_task(void *arg)
{
    skynet_node *n = arg;
    if (n->size == 1) {
        n->sum = n->num;
        return NULL;
    }
    skynet_node kids[10];
    sq_task h[10];
    int64_t size = n->size / 10;
    for (int i = 0; i < 10; i++) {
        kids[i] = (skynet_node){.num = n->num + i * size, .size = size};
        bench_check(sq_spawn(&h[i], skynet_task, &kids[i], &skynet_opts),
                    "sq_spawn");
    }
    int64_t sum = 0;
    for (int i = 0; i < 10; i++) {
        bench_check(sq_join(h[i], NULL), "sq_join");
        sum += kids[i].sum;
    }
    n->sum = sum;
    return NULL;
}

static void skynet_run(const bench_workload *w, bench_run *out)
{
    (void)w;
    skynet_node top = {.num = 0, .size = SKYNET_LEAVES};
    sq_task t;
    int64_t t0 = sq_now();
    bench_check(sq_spawn(&t, skynet_task, &top, &skynet_opts), "sq_spawn");
    bench_check(sq_join(t, NULL), "sq_join");
    out->ns = sq_now() - t0;
    if (top.sum != SKYNET_SUM)
        bench_fail("root got %lld, want %lld", (long long)top.sum,
                   (long long)SKYNET_SUM);
}

static void skynet_extras(const bench_summary *s, bench_line *line)
{
    (void)s;
    bench_field(line, "peak_rss_kib", "%ld", bench_peak_rss_kib());
    bench_field(line, "stack_kib", "%zu", SQ_STACK_MIN / 1024);
}

/* ------------------------------------------------------------ registry */

const bench_workload bench_rt_workloads[] = {
    {.name = "rt.spawn_many", .ops = SPAWN_MANY_TASKS, .run = spawn_many_run},
    {.name = "rt.chained_spawn", .ops = CHAIN_DEPTH, .run = chained_spawn_run},
    {.name = "rt.yield_many",
     .ops = (uint64_t)YIELD_TASKS * YIELDS_PER_TASK,
     .run = yield_many_run},
    {.name = "rt.ping_pong", .ops = PING_PONG_ROUNDS, .run = ping_pong_run},
    {.name = "rt.skynet",
     .ops = SKYNET_TASKS,
     .run = skynet_run,
     .extras = skynet_extras},
    {.name = NULL},
};
