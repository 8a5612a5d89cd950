/* squirrel-bench: the Squirrel side of the benchmark suite
 * (shared/BENCHMARKS.md).
 *
 * main.c holds the command line, the registry of workload families and the
 * run loop; each family lives in its own file (rt.c, net.c, idle.c, and
 * later sync.c, seed.c) and exports a table of bench_workload terminated by
 * an entry whose name is NULL.  Adding a family: write the file, declare
 * its table below, list it in `families` in main.c and in
 * bench/CMakeLists.txt.
 */
#ifndef SQUIRREL_BENCH_H
#define SQUIRREL_BENCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "squirrel/runtime.h"

/* What one run reports.  A run function executes inside the root task of a
 * runtime with exactly 2 workers; it times its own measured part with
 * sq_now() and verifies its own result (bench_fail on anything wrong). */
typedef struct bench_run {
    int64_t ns;    /* the timed part of the run */
    double metric; /* optional per-run figure (e.g. resident bytes per task) */
} bench_run;

struct bench_workload;

/* Medians over the counted runs, handed to a workload's extras. */
typedef struct bench_summary {
    const struct bench_workload *w;
    int runs;
    double ns_per_op;     /* median of per-run ns/op */
    double ms;            /* median run wall time */
    double metric;        /* median of bench_run.metric */
    bench_run first;      /* the first run in this process, warm-up included */
} bench_summary;

/* The JSON line being built; extras append fields with bench_field. */
typedef struct bench_line {
    char buf[2048];
    size_t len;
} bench_line;

typedef struct bench_workload {
    const char *name;     /* NULL ends a family's table */
    uint64_t ops;         /* operations per run: ns_per_op = run ns / ops */
    int max_runs;         /* cap on counted runs (0 = none) */
    int no_warmup;        /* skip warm-up runs (very heavy workloads) */
    /* A fresh runtime for every run instead of one for the whole workload
     * (memory workloads: the runtime pools task stacks and structs until
     * it is destroyed, so a second run on the same runtime measures
     * recycled memory). */
    int runtime_per_run;
    long param;           /* free for the workload (e.g. N) */
    /* Optional, called before the runtime is created; fails loudly (via
     * bench_fail) if the workload cannot run on this machine. */
    void (*precheck)(const struct bench_workload *w);
    void (*run)(const struct bench_workload *w, bench_run *out);
    /* Optional: extra JSON fields, once all counted runs are done. */
    void (*extras)(const bench_summary *s, bench_line *line);
} bench_workload;

/* The families. */
extern const bench_workload bench_rt_workloads[];
extern const bench_workload bench_net_workloads[];
extern const bench_workload bench_sync_workloads[];
extern const bench_workload bench_rwlock_workloads[];
extern const bench_workload bench_mpsc_workloads[];
extern const bench_workload bench_seed_workloads[];
extern const bench_workload bench_idle_workloads[];
extern const bench_workload bench_ctx_workloads[];

/* Prints "squirrel-bench: <workload>: <message>" to stderr, flushes stdout
 * and ends the process with status 1 (from any thread or task). */
_Noreturn void bench_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Fails unless rc >= 0, naming the call and sq_strerror(rc). */
void bench_check(long rc, const char *what);

/* Appends ,"key":<value> with value formatted by fmt (a JSON number). */
void bench_field(bench_line *line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* From a task: yields (sq_yield) until *a == target.  Fails loudly after
 * BENCH_WAIT_TIMEOUT_S seconds, naming `what` and the value reached (a
 * task whose stack could not be allocated finishes without running, and
 * would otherwise leave the run polling forever). */
#define BENCH_WAIT_TIMEOUT_S 300
void bench_yield_until(atomic_long *a, long target, const char *what);

/* Resident set size of the process in bytes (/proc/self/statm). */
long bench_resident_bytes(void);

/* Peak resident set size in KiB (getrusage ru_maxrss). */
long bench_peak_rss_kib(void);

#endif
