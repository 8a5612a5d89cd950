/* The built-in collector: the runtime's, the sync layer's and the checks'
 * own figures, read at snapshot time through their public stats calls and
 * emitted as Prometheus families with base units (seconds). */
#include "squirrel/check.h"
#include "squirrel/metrics.h"
#include "squirrel/sync.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_S 1000000000u

/* metrics.c: 0 if labels obey the rules of sq_metric_opts, else -EINVAL. */
int sq__metrics_check_labels(const char *const *labels);

typedef struct rt_collector {
    sq_runtime *rt;
    unsigned what;
    const char **labels;     /* NULL-terminated pairs (copies), or NULL */
} rt_collector;

static void rt_free(void *arg)
{
    rt_collector *c = arg;
    if (c->labels) {
        for (size_t i = 0; c->labels[i]; i++)
            free((void *)c->labels[i]);
        free(c->labels);
    }
    free(c);
}

static void counter(sq_metrics_sink *k, const char *const *labels,
                    const char *name, const char *help, uint64_t v,
                    uint64_t div)
{
    sq_metric_opts o = {.name = name, .help = help, .labels = labels,
                        .divisor = div};
    sq_metrics_emit_counter(k, &o, v);
}

static void gauge(sq_metrics_sink *k, const char *const *labels,
                  const char *name, const char *help, uint64_t v, uint64_t div)
{
    sq_metric_opts o = {.name = name, .help = help, .labels = labels,
                        .divisor = div};
    sq_metrics_emit_gauge(k, &o, v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

static void collect_runtime(sq_metrics_sink *k, const rt_collector *c)
{
    sq_runtime_stats st;
    if (sq_runtime_stats_get(c->rt, &st) != 0)
        return; /* no runtime here */
    const char *const *l = (const char *const *)c->labels;
    gauge(k, l, "squirrel_runtime_workers", "Worker threads of the runtime.",
          st.workers, 1);
    counter(k, l, "squirrel_tasks_spawned_total",
            "Tasks spawned since the runtime started.", st.tasks_spawned, 1);
    gauge(k, l, "squirrel_tasks_alive",
          "Tasks spawned and not yet finished and reaped.", st.tasks_alive, 1);
    counter(k, l, "squirrel_task_switches_total",
            "Times a worker resumed a task.", st.switches, 1);
    counter(k, l, "squirrel_task_steals_total",
            "Tasks taken from another worker's queue.", st.steals, 1);
    counter(k, l, "squirrel_worker_parks_total",
            "Times a worker went to sleep for lack of work.", st.parks, 1);
    gauge(k, l, "squirrel_io_handles",
          "Sockets and pipes registered with the reactor.", st.io_handles, 1);
}

/* sq_sync_stats' bucket i counts waits under 2^i microseconds (the last
 * one the rest): le = 2^i us, in ns with divisor 1e9. */
static void collect_sync(sq_metrics_sink *k)
{
    sq_sync_stats st;
    sq_sync_stats_get(&st);
    int64_t bounds[SQ_SYNC_WAIT_BUCKETS - 1];
    for (int i = 0; i < SQ_SYNC_WAIT_BUCKETS - 1; i++)
        bounds[i] = ((int64_t)1 << i) * 1000;
    sq_metric_opts o = {
        .name = "squirrel_lock_wait_seconds",
        .help = "Time acquisitions of task-aware locks and semaphores "
                "spent queued (only those that had to wait).",
        .divisor = NS_PER_S};
    sq_metrics_emit_histogram(k, &o, bounds, SQ_SYNC_WAIT_BUCKETS - 1,
                              st.wait_buckets,
                              st.wait_ns > INT64_MAX ? INT64_MAX
                                                     : (int64_t)st.wait_ns);
    counter(k, NULL, "squirrel_lock_wait_timeouts_total",
            "Lock and semaphore waits that ended with a timeout.", st.timeouts,
            1);
    counter(k, NULL, "squirrel_lock_wait_cancels_total",
            "Lock and semaphore waits that ended with a cancellation.",
            st.cancels, 1);
}

static void collect_check(sq_metrics_sink *k)
{
    sq_check_hold_stats st;
    sq_check_get_hold_stats(&st);
    counter(k, NULL, "squirrel_lock_holds_total",
            "Releases of task-aware locks measured while the run-time "
            "checks were on.",
            st.holds, 1);
    counter(k, NULL, "squirrel_lock_hold_seconds_total",
            "Total time task-aware locks were held (measured while the "
            "run-time checks were on).",
            st.hold_ns, NS_PER_S);
    gauge(k, NULL, "squirrel_lock_hold_max_seconds",
          "The longest hold of a task-aware lock (measured while the "
          "run-time checks were on).",
          st.max_hold_ns, NS_PER_S);
}

static void rt_collect(sq_metrics_sink *k, void *arg)
{
    const rt_collector *c = arg;
    if (c->what & SQ_METRICS_EXPORT_RUNTIME)
        collect_runtime(k, c);
    if (c->what & SQ_METRICS_EXPORT_SYNC)
        collect_sync(k);
    if (c->what & SQ_METRICS_EXPORT_CHECK)
        collect_check(k);
}

int sq_metrics_register_runtime(sq_metrics *reg, sq_runtime *rt,
                                const sq_metrics_runtime_opts *opts,
                                sq_metrics_collector **out)
{
    unsigned what = opts && opts->what ? opts->what : SQ_METRICS_EXPORT_ALL;
    if (!reg || (what & ~(unsigned)SQ_METRICS_EXPORT_ALL))
        return -EINVAL;
    rt_collector *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->rt = rt;
    c->what = what;
    const char *const *l = opts ? opts->labels : NULL;
    if (l) {
        if (sq__metrics_check_labels(l) != 0) {
            free(c);
            return -EINVAL;
        }
        size_t n = 0;
        while (l[n])
            n += 2;
        c->labels = calloc(n + 1, sizeof *c->labels);
        if (!c->labels) {
            free(c);
            return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
            if (!(c->labels[i] = strdup(l[i]))) {
                rt_free(c);
                return -ENOMEM;
            }
    }
    int rc = sq_metrics_add_collector(reg, rt_collect, c, rt_free, out);
    if (rc)
        rt_free(c);
    return rc;
}
