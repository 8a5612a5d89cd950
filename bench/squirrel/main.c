/* squirrel-bench: runs the workloads of shared/BENCHMARKS.md on Squirrel
 * and prints one JSON line per workload on stdout, as the peers under
 * bench/peers/ do.  Progress and diagnostics go to stderr.
 *
 * Usage: squirrel-bench [--runs N] [--warmup N] [--quick] [FILTER]
 *
 * FILTER selects the workloads whose name contains it; a FILTER ending in
 * '$' selects the one workload with exactly that name (scale.idle_tasks.n10000$).
 *
 * Every workload gets its own runtime with exactly 2 workers (the memory
 * workloads one per run, see bench_workload.runtime_per_run); each run
 * (warm-up or counted) is one root task (sq_runtime_block_on) that times
 * itself with sq_now() and checks its own result.
 */
#include "bench.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* The registry: one table per family, in run order.  The idle-task
 * workloads come last, like in the peers, so their memory does not inflate
 * the peak RSS of the others when several run in one process. */
static const bench_workload *const families[] = {
    bench_rt_workloads,
    bench_net_workloads,
    bench_sync_workloads,
    bench_rwlock_workloads,
    bench_mpsc_workloads,
    bench_seed_workloads,
#ifdef SQ_BENCH_CTX
    bench_ctx_workloads,
#endif
    bench_idle_workloads,
};
#define NFAMILIES (sizeof families / sizeof families[0])

/* ------------------------------------------------------------ helpers */

static const char *current_name = "squirrel-bench";

void bench_fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "squirrel-bench: %s: FAILED: %s\n", current_name, msg);
    fflush(stderr);
    /* _exit, not exit: other workers are still running tasks. */
    _exit(1);
}

void bench_check(long rc, const char *what)
{
    if (rc < 0)
        bench_fail("%s: %s (%ld)", what, sq_strerror((int)rc), rc);
}

void bench_field(bench_line *line, const char *key, const char *fmt, ...)
{
    size_t cap = sizeof line->buf;
    int n = snprintf(line->buf + line->len, cap - line->len, ",\"%s\":", key);
    if (n < 0 || (size_t)n >= cap - line->len)
        bench_fail("JSON line too long");
    line->len += (size_t)n;
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(line->buf + line->len, cap - line->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - line->len)
        bench_fail("JSON line too long");
    line->len += (size_t)n;
}

void bench_yield_until(atomic_long *a, long target, const char *what)
{
    int64_t deadline = sq_now() + BENCH_WAIT_TIMEOUT_S * SQ_SEC;
    for (unsigned long i = 1;; i++) {
        if (atomic_load_explicit(a, memory_order_acquire) == target)
            return;
        bench_check(sq_yield(), "sq_yield");
        if (i % 1024 == 0 && sq_now() > deadline)
            bench_fail("%s: still %ld (want %ld) after %d s", what,
                       atomic_load(a), target, BENCH_WAIT_TIMEOUT_S);
    }
}

long bench_resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        bench_fail("cannot open /proc/self/statm");
    long size, resident;
    int n = fscanf(f, "%ld %ld", &size, &resident);
    fclose(f);
    if (n != 2)
        bench_fail("cannot parse /proc/self/statm");
    return resident * sysconf(_SC_PAGESIZE);
}

long bench_peak_rss_kib(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        bench_fail("getrusage failed");
    return ru.ru_maxrss; /* KiB on Linux */
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *xs, int n)
{
    qsort(xs, (size_t)n, sizeof *xs, cmp_double);
    return n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

/* ----------------------------------------------------------- running */

typedef struct root_ctx {
    const bench_workload *w;
    bench_run result;
} root_ctx;

static void *root_task(void *arg)
{
    root_ctx *c = arg;
    c->w->run(c->w, &c->result);
    return NULL;
}

static void run_workload(const bench_workload *w, int runs, int warmup)
{
    current_name = w->name;
    if (w->max_runs > 0 && runs > w->max_runs)
        runs = w->max_runs;
    if (w->no_warmup)
        warmup = 0;
    fprintf(stderr, "%s: %d warm-up, %d runs\n", w->name, warmup, runs);
    if (w->precheck)
        w->precheck(w);

    sq_runtime *rt = NULL;
    sq_runtime_opts opts = {.workers = 2};

    bench_run *results = calloc((size_t)runs, sizeof *results);
    double *per_op = calloc((size_t)runs, sizeof *per_op);
    double *wall = calloc((size_t)runs, sizeof *wall);
    double *metric = calloc((size_t)runs, sizeof *metric);
    if (!results || !per_op || !wall || !metric)
        bench_fail("out of memory");

    bench_summary s = {.w = w, .runs = runs};
    for (int i = 0; i < warmup + runs; i++) {
        if (!rt)
            bench_check(sq_runtime_create(&rt, &opts), "sq_runtime_create");
        root_ctx c = {.w = w};
        bench_check(sq_runtime_block_on(rt, root_task, &c, NULL),
                    "sq_runtime_block_on");
        if (w->runtime_per_run) {
            bench_check(sq_runtime_shutdown(rt), "sq_runtime_shutdown");
            sq_runtime_destroy(rt);
            rt = NULL;
        }
        if (c.result.ns <= 0)
            bench_fail("run %d reported no time", i + 1);
        if (i == 0)
            s.first = c.result;
        if (i >= warmup)
            results[i - warmup] = c.result;
    }
    if (rt) {
        bench_check(sq_runtime_shutdown(rt), "sq_runtime_shutdown");
        sq_runtime_destroy(rt);
    }

    fprintf(stderr, "%s: run ms:", w->name);
    for (int i = 0; i < runs; i++) {
        per_op[i] = (double)results[i].ns / (double)w->ops;
        wall[i] = (double)results[i].ns / 1e6;
        metric[i] = results[i].metric;
        fprintf(stderr, " %.3f", wall[i]);
    }
    fprintf(stderr, "\n");
    s.ns_per_op = median(per_op, runs);
    s.ms = median(wall, runs);
    s.metric = median(metric, runs);

    bench_line line = {.len = 0};
    line.len = (size_t)snprintf(
        line.buf, sizeof line.buf,
        "{\"bench\":\"%s\",\"peer\":\"squirrel\",\"ns_per_op\":%.1f,"
        "\"ops\":%llu,\"runs\":%d,\"ms\":%.3f",
        w->name, s.ns_per_op, (unsigned long long)w->ops, runs, s.ms);
    if (w->extras)
        w->extras(&s, &line);
    printf("%s}\n", line.buf);
    fflush(stdout);

    free(results);
    free(per_op);
    free(wall);
    free(metric);
    current_name = "squirrel-bench";
}

/* ------------------------------------------------------------- main */

static void usage(void)
{
    fprintf(stderr,
            "usage: squirrel-bench [--runs N] [--warmup N] [--quick] [FILTER]\n"
            "  FILTER selects workloads whose name contains it; a FILTER\n"
            "  ending in '$' selects the workload with exactly that name.\n"
            "workloads:\n");
    for (size_t f = 0; f < NFAMILIES; f++)
        for (const bench_workload *w = families[f]; w->name; w++)
            fprintf(stderr, "  %s\n", w->name);
}

static int int_arg(const char *opt, const char *v)
{
    if (!v)
        bench_fail("%s needs a value", opt);
    char *end;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < 0 || n > 1000000)
        bench_fail("%s: bad value \"%s\"", opt, v);
    return (int)n;
}

static int matches(const char *name, const char *filter)
{
    size_t n = strlen(filter);
    if (n > 0 && filter[n - 1] == '$')
        return strlen(name) == n - 1 && memcmp(name, filter, n - 1) == 0;
    return strstr(name, filter) != NULL;
}

int main(int argc, char **argv)
{
    int runs = 5, warmup = 1;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        char opt[32];
        /* Accept --name=value as well as --name value. */
        const char *eq = strchr(a, '=');
        if (a[0] == '-' && eq && (size_t)(eq - a) < sizeof opt) {
            memcpy(opt, a, (size_t)(eq - a));
            opt[eq - a] = '\0';
            val = eq + 1;
            a = opt;
        }
        if (!strcmp(a, "--runs") || !strcmp(a, "-runs")) {
            runs = int_arg("--runs", val ? val : (i + 1 < argc ? argv[++i] : NULL));
        } else if (!strcmp(a, "--warmup") || !strcmp(a, "-warmup")) {
            warmup = int_arg("--warmup", val ? val : (i + 1 < argc ? argv[++i] : NULL));
        } else if (!strcmp(a, "--quick") || !strcmp(a, "-quick")) {
            runs = 1;
            warmup = 0;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help") ||
                   !strcmp(a, "-help")) {
            usage();
            return 0;
        } else if (a[0] == '-') {
            usage();
            bench_fail("unknown option \"%s\"", argv[i]);
        } else if (filter) {
            bench_fail("only one FILTER may be given (got \"%s\" and \"%s\")",
                       filter, a);
        } else {
            filter = a;
        }
    }
    if (runs < 1)
        bench_fail("--runs must be at least 1");
    if (!filter)
        filter = "";

    int selected = 0;
    for (size_t f = 0; f < NFAMILIES; f++)
        for (const bench_workload *w = families[f]; w->name; w++)
            if (matches(w->name, filter)) {
                selected++;
                run_workload(w, runs, warmup);
            }
    if (!selected)
        bench_fail("no workload matches \"%s\"", filter);
    return 0;
}
