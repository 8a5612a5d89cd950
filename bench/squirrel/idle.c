/* scale.idle_tasks.nN (N = 10,000, 100,000, 1,000,000): spawn N tasks that
 * each count themselves started and then sleep for an hour.  The clock
 * runs from the first spawn until all N have started (ns_per_op is ns per
 * spawned-and-started task); resident memory (/proc/self/statm) is sampled
 * just before spawning and once all have started, and rss_per_task_b is
 * the difference divided by N.  Then every task is aborted and joined (its
 * sq_sleep returns -ECANCELED, which is checked).
 *
 * The tasks run on the smallest stack, SQ_STACK_MIN = 16 KiB
 * (sq_spawn_opts.stack_size; reported as "stack_kib":16): an idle task
 * touches one page of it.  Stacks are reserved, not committed, so the
 * figure is about pages touched, not the reservation.
 *
 * The process's kernel memory mappings (/proc/self/maps) are counted once
 * all have started, outside the timed part, and the largest count is
 * reported as "mappings", with the vm.max_map_count in force: stacks are
 * carved from large regions with guard markers that do not split them
 * (docs/runtime.md), so a million live tasks fit under the default limit
 * of 65,530 and the workload needs no precheck.
 *
 * At most 3 counted runs and no warm-up.  Every run gets a fresh runtime:
 * the runtime keeps task structs and stacks (with their touched pages)
 * pooled until it is destroyed, so a second run on the same runtime would
 * spawn onto recycled, already-resident memory and measure almost nothing
 * (the Go peer likewise hands freed memory back to the OS before each
 * run).  rss_per_task_b is the median over the runs,
 * rss_per_task_b_first the first run's figure, as in the peers.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#define IDLE_STACK SQ_STACK_MIN

static atomic_long idle_started;

static void *idle_task(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&idle_started, 1, memory_order_release);
    int rc = sq_sleep(3600 * SQ_SEC);
    return (void *)(intptr_t)rc;
}

static long read_long_file(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static long count_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    long n = 0;
    int c;
    while ((c = getc(f)) != EOF)
        if (c == '\n')
            n++;
    fclose(f);
    return n;
}

static long idle_mappings; /* the most seen in one run */

static void idle_run(const bench_workload *w, bench_run *out)
{
    long n = w->param;
    sq_task *tasks = malloc((size_t)n * sizeof *tasks);
    if (!tasks)
        bench_fail("out of memory");
    /* Touch the handle array now so it is not charged to the tasks. */
    memset(tasks, 0, (size_t)n * sizeof *tasks);
    atomic_store(&idle_started, 0);
#ifdef __GLIBC__
    /* Hand memory freed by earlier runs back to the kernel first. */
    malloc_trim(0);
#endif
    const sq_spawn_opts opts = {.stack_size = IDLE_STACK};

    long before = bench_resident_bytes();
    int64_t t0 = sq_now();
    for (long i = 0; i < n; i++)
        bench_check(sq_spawn(&tasks[i], idle_task, NULL, &opts), "sq_spawn");
    bench_yield_until(&idle_started, n, "tasks started");
    out->ns = sq_now() - t0;
    long after = bench_resident_bytes();
    out->metric = (double)(after - before) / (double)n;
    long maps = count_mappings();
    if (maps > idle_mappings)
        idle_mappings = maps;

    for (long i = 0; i < n; i++)
        bench_check(sq_abort(tasks[i]), "sq_abort");
    for (long i = 0; i < n; i++) {
        void *res = NULL;
        int rc = sq_join(tasks[i], &res);
        if (rc != -ECANCELED)
            bench_fail("task %ld: join returned %d (%s), want -ECANCELED", i,
                       rc, sq_strerror(rc));
        if ((intptr_t)res != -ECANCELED)
            bench_fail("task %ld: sq_sleep returned %ld, want -ECANCELED", i,
                       (long)(intptr_t)res);
    }
    free(tasks);
}

static void idle_extras(const bench_summary *s, bench_line *line)
{
    bench_field(line, "rss_per_task_b", "%.1f", s->metric);
    bench_field(line, "rss_per_task_b_first", "%.1f", s->first.metric);
    bench_field(line, "stack_kib", "%zu", IDLE_STACK / 1024);
    bench_field(line, "mappings", "%ld", idle_mappings);
    bench_field(line, "max_map_count", "%ld",
                read_long_file("/proc/sys/vm/max_map_count"));
}

#define IDLE(N)                                                              \
    {.name = "scale.idle_tasks.n" #N, .ops = N, .max_runs = 3, .no_warmup = 1,  \
     .runtime_per_run = 1, .param = N, .run = idle_run,                     \
     .extras = idle_extras}

const bench_workload bench_idle_workloads[] = {
    IDLE(10000),
    IDLE(100000),
    IDLE(1000000),
    {.name = NULL},
};
