/* Squirrel patterns layer: lock-free metrics (counters, gauges,
 * histograms), a registry, snapshots and the Prometheus text format.
 *
 * The specification's rule embodied here: metrics are updated without
 * locks.  Every metric is striped over per-CPU slots, each slot on its own
 * 64-byte cache line, chosen by sched_getcpu() (glibc reads it from the
 * rseq area: a couple of ns).  An update is one (counter: relaxed) to
 * four (histogram) atomic additions to the slot of the CPU the caller
 * runs on, so workers on different CPUs never write the same cache line.  A thread
 * that moves to another CPU in the middle of an update just finishes it in
 * the slot it started with (or lands in another one): the additions are
 * atomic, the totals stay exact.  No update waits, allocates, takes a
 * lock or makes a system call (unless sched_getcpu has no rseq support),
 * so updates are safe from any task and any thread.
 *
 * Values are integers: counters count in uint64_t, gauges and histogram
 * observations are int64_t, all in a unit of the caller's choosing, so
 * every sum is exact (two's-complement wrap-around past 2^64).  A metric
 * may state a `divisor`: the exported value is raw / divisor, so a
 * latency observed in nanoseconds is exported in seconds with divisor
 * 1000000000 (the Prometheus base unit), exactly rounded.
 *
 * Reads ("snapshots") are exact and consistent per metric:
 *  - a counter's read is the sum of its slots: every add that happened
 *    before the read is in it, and successive reads never go down;
 *  - a gauge's or histogram's read is a consistent cut of its updates: the
 *    reader flips the metric's phase (one shared word that updates read
 *    but never write), waits for the updates that started in the old
 *    phase to finish, and sums them.  So a read contains every update that
 *    finished before it and, with any update, every update that happened
 *    before that one: an in-flight gauge raised then lowered by the same
 *    task never reads below zero, and a histogram's count, sum and buckets
 *    always describe the same set of whole observations (count == the
 *    +Inf bucket, sum == the sum of exactly those values).
 *  Readers of one gauge or histogram take turns on a task-aware lock of
 *  that metric; the wait for in-flight updates is a short spin (they are a
 *  handful of instructions, unless the updater's thread was preempted).
 *
 * A registry (sq_metrics) names metrics for export.  Metrics with one
 * name and different constant labels form one family (one HELP and TYPE).
 * Names and labels follow the Prometheus data model: metric names match
 * [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* and must
 * not start with "__", label values and help texts are UTF-8.  Conventions
 * (not enforced): counters end in _total, units are base units (seconds,
 * bytes) named in the metric (request_duration_seconds).
 *
 * Registration, unregistration, snapshots and rendering take the
 * registry's task-aware lock; updates never do.  Collectors (callbacks
 * that produce families from elsewhere at snapshot time) are called with
 * no lock held.
 */
#ifndef SQUIRREL_METRICS_H
#define SQUIRREL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squirrel/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sq_metrics sq_metrics;       /* a registry */
typedef struct sq_counter sq_counter;
typedef struct sq_gauge sq_gauge;
typedef struct sq_histogram sq_histogram;

/* The most constant labels of one series. */
#define SQ_METRIC_MAX_LABELS 32

typedef enum sq_metric_type {
    SQ_METRIC_COUNTER = 1,
    SQ_METRIC_GAUGE = 2,
    SQ_METRIC_HISTOGRAM = 3,
} sq_metric_type;

/* The description of a metric (or of a series a collector emits).  All
 * strings are copied; none needs to outlive the call. */
typedef struct sq_metric_opts {
    const char *name;          /* required when registering or emitting */
    const char *help;          /* NULL = no help text */
    /* Constant labels: NULL, or an array of label name, value, name,
     * value, ..., ended by a NULL in a name's place; at most
     * SQ_METRIC_MAX_LABELS pairs.  Order does not matter (they are kept
     * sorted by name). */
    const char *const *labels;
    /* The exported value is raw / divisor (0 means 1).  Every series of
     * a family has the same divisor. */
    uint64_t divisor;
} sq_metric_opts;

/* --------------------------------------------------------- registry */

/* Creates an empty registry.  Allocates (-ENOMEM).  Never waits. */
int sq_metrics_create(sq_metrics **out);

/* Frees reg together with every metric still registered in it (their
 * handles become invalid) and every collector (whose free_arg is called).
 * Nothing may use reg, its metrics or its collectors during or after the
 * call.  Never fails or waits. */
void sq_metrics_destroy(sq_metrics *reg);

/* ------------------------------------------------------------ metrics */

/* Creating a metric: allocates it with one cache-line slot per CPU slot
 * (64 bytes times the CPU count rounded up to a power of two, at most
 * 256; a histogram's slot holds two copies of its buckets, rounded up to
 * whole lines), all values zero.  With reg NULL the metric is standalone:
 * it is not exported and o (may be NULL) only gives its divisor.  With a
 * registry the metric joins (or starts) the family of its name.
 * Errors (nothing is created or registered):
 *  -EINVAL  out NULL; reg given and o or o->name NULL; a name or label
 *           name that breaks the rules above; a label without a value or
 *           named twice; more than SQ_METRIC_MAX_LABELS labels; help or a label value that is not UTF-8; for a
 *           histogram: a label named "le", bounds NULL with nbounds > 0,
 *           bounds not strictly increasing, nbounds > SQ_HISTOGRAM_MAX_BOUNDS;
 *  -EEXIST  reg already holds a series of this name with the same labels,
 *           or a family of this name with another type, help or divisor,
 *           or a name that collides with a histogram's _bucket, _sum or
 *           _count series (either way round);
 *  -ENOMEM;
 *  -ECANCELED  the calling task was aborted while waiting for the
 *           registry's lock.
 * Waits (task-aware) only for the registry's lock, held briefly by other
 * registrations and snapshots.  Cancellation point (with reg only). */
int sq_counter_create(sq_counter **out, sq_metrics *reg,
                      const sq_metric_opts *o);
int sq_gauge_create(sq_gauge **out, sq_metrics *reg,
                    const sq_metric_opts *o);

/* The most finite bucket bounds of a histogram. */
#define SQ_HISTOGRAM_MAX_BOUNDS 256

/* A histogram with nbounds finite upper bounds (raw units, strictly
 * increasing; copied) and the implicit +Inf bucket: an observation v
 * falls in the first bucket whose bound is >= v (Prometheus's "le"), or
 * in +Inf.  nbounds may be 0 (count and sum only).  Errors and waiting as
 * sq_counter_create. */
int sq_histogram_create(sq_histogram **out, sq_metrics *reg,
                        const sq_metric_opts *o, const int64_t *bounds,
                        size_t nbounds);

/* Unregisters the metric from its registry (if any) and frees it.  The
 * name and labels may be registered again afterwards.  Nothing may update
 * or read the metric during or after the call.  NULL is ignored.  Waits
 * (task-aware) for the registry's lock, with the caller's cancellation
 * masked: it always completes.  Never fails. */
void sq_counter_destroy(sq_counter *c);
void sq_gauge_destroy(sq_gauge *g);
void sq_histogram_destroy(sq_histogram *h);

/* Counter: adds n.  Lock-free: one relaxed atomic addition to the
 * caller's CPU slot.  Never fails or waits; safe from any thread. */
void sq_counter_add(sq_counter *c, uint64_t n);
void sq_counter_inc(sq_counter *c);

/* The counter's total: the sum of its slots, containing every add that
 * happened before the call; never less than an earlier read.  Never
 * waits, takes no lock. */
uint64_t sq_counter_get(const sq_counter *c);

/* Gauge: adds d (which may be negative) / subtracts d.  Lock-free:
 * three atomic additions to the caller's CPU slot (the update announces
 * itself in its phase, adds, and signs off) plus two reads of the
 * metric's phase word, which only readers write.  Never fails or waits;
 * safe from any thread. */
void sq_gauge_add(sq_gauge *g, int64_t d);
void sq_gauge_sub(sq_gauge *g, int64_t d);
void sq_gauge_inc(sq_gauge *g);
void sq_gauge_dec(sq_gauge *g);

/* Sets the gauge to v.  Lock-free: reads every slot (so it costs about
 * one cache miss per CPU slot, unlike add) and adds the difference to the
 * caller's slot.  Exact with respect to every update that happened before
 * or after it.  An add racing with the set either counts before it
 * (overwritten) or after it (on top); of two racing sets one wins, and
 * adds racing with both may count on top.  Reads always see a consistent
 * cut of these updates.  Never fails or waits (it retries its read while
 * a reader is folding the slots, which takes a few ns per slot). */
void sq_gauge_set(sq_gauge *g, int64_t v);

/* The gauge's value: a consistent cut (see the top of this file) that
 * contains every update finished before the call.  Waits (task-aware)
 * for other readers of g, with the caller's cancellation masked, then
 * spins briefly for updates in flight.  Never fails. */
int64_t sq_gauge_get(sq_gauge *g);

/* Histogram: records v.  Lock-free: four atomic additions to the caller's
 * CPU slot (announce, bucket, sum, sign off), two reads of the phase word
 * and a binary search of the bounds.  Never fails or waits; safe from any
 * thread. */
void sq_histogram_observe(sq_histogram *h, int64_t v);

/* Number of finite bounds of h.  Never waits. */
size_t sq_histogram_nbounds(const sq_histogram *h);

/* Reads h: cumulative bucket counts into buckets[0..nbounds] (may be
 * NULL; buckets[nbounds] is the +Inf bucket), the number of observations
 * into *count and their sum (raw units) into *sum (either may be NULL).
 * The three describe the same set of whole observations: every one that
 * finished before the call and, with any one, every one that happened
 * before it.  Waits and never fails as sq_gauge_get. */
void sq_histogram_get(sq_histogram *h, uint64_t *buckets, uint64_t *count,
                      int64_t *sum);

/* ---------------------------------------------------------- snapshots */

/* One series of a family: its labels and values. */
typedef struct sq_metric_series {
    /* 2 * nlabels strings: name, value, name, value..., sorted by name. */
    const char *const *labels;
    size_t nlabels;
    uint64_t counter;          /* SQ_METRIC_COUNTER: the total */
    int64_t gauge;             /* SQ_METRIC_GAUGE: the value */
    /* SQ_METRIC_HISTOGRAM: */
    size_t nbounds;            /* finite bounds */
    const int64_t *bounds;     /* nbounds strictly increasing upper bounds */
    const uint64_t *buckets;   /* nbounds + 1 cumulative counts (+Inf last) */
    uint64_t count;            /* == buckets[nbounds] */
    int64_t sum;               /* raw units */
} sq_metric_series;

typedef struct sq_metric_family {
    const char *name;
    const char *help;          /* "" when there is none */
    sq_metric_type type;
    uint64_t divisor;          /* >= 1: exported value = raw / divisor */
    size_t nseries;
    const sq_metric_series *series; /* registration (or emission) order */
} sq_metric_family;

/* Every family of a registry at one time: registered metrics and what
 * the collectors emitted, sorted by name.  Owns copies of every string and
 * value (metrics may be destroyed after it was taken). */
typedef struct sq_metrics_snapshot {
    size_t nfamilies;
    const sq_metric_family *families;
    void *_priv;
} sq_metrics_snapshot;

/* Takes a snapshot of reg into a new *out: each metric read as its _get
 * says (exact and consistent per metric; different metrics are read one
 * after another, not at one instant), then every collector called in the
 * order added, with no lock held.  A series a collector emits wrongly is
 * left out (the emit call told the collector why).  Returns 0, -EINVAL
 * (reg or out NULL), -ENOMEM, or -ECANCELED if the calling task was
 * aborted while waiting for the registry's lock (nothing is allocated
 * then).  Waits (task-aware) for the registry's lock and each metric's
 * readers' lock (held briefly by other snapshots and registrations), and
 * for as long as the collectors take. */
int sq_metrics_snapshot_take(sq_metrics *reg, sq_metrics_snapshot **out);

/* Frees a snapshot (NULL ignored).  Never waits. */
void sq_metrics_snapshot_free(sq_metrics_snapshot *s);

/* The family named `name` in s, or NULL.  Never waits. */
const sq_metric_family *sq_metrics_snapshot_find(const sq_metrics_snapshot *s,
                                                 const char *name);

/* ---------------------------------------------------------- rendering */

/* Renders s in the Prometheus text exposition format 0.0.4: per family
 * "# HELP" (omitted when there is no help; backslash and newline escaped),
 * "# TYPE", then one line per series with its labels (backslash, double
 * quote and newline escaped in values); a histogram as cumulative
 * name_bucket{...,le="..."} lines ending with le="+Inf", then name_sum
 * and name_count.  Integers with divisor 1 are written exactly; other
 * values as the shortest decimal that reads back as the same double.
 * Writes at most cap bytes including a terminating NUL into buf and
 * stores the full length (without NUL) in *len (may be NULL).  Returns 0,
 * or -ENOSPC if the text did not fit (buf then holds a truncated,
 * NUL-terminated prefix if cap > 0; call again with *len + 1 bytes).
 * -EINVAL if s is NULL or buf is NULL with cap > 0.  Never waits. */
int sq_metrics_snapshot_render(const sq_metrics_snapshot *s, char *buf,
                               size_t cap, size_t *len);

/* As sq_metrics_snapshot_render into a malloc'ed, NUL-terminated string
 * (*out; free() it).  -ENOMEM, -EINVAL.  Never waits. */
int sq_metrics_snapshot_render_alloc(const sq_metrics_snapshot *s,
                                     char **out, size_t *len);

/* Takes a snapshot of reg and renders it, as the two calls above; their
 * errors, waiting and cancellation (-ECANCELED: nothing written). */
int sq_metrics_render(sq_metrics *reg, char *buf, size_t cap, size_t *len);
int sq_metrics_render_alloc(sq_metrics *reg, char **out, size_t *len);

/* --------------------------------------------------------- collectors */

/* Where a collector puts what it collects; valid only during the call. */
typedef struct sq_metrics_sink sq_metrics_sink;
typedef struct sq_metrics_collector sq_metrics_collector;

/* Called at every snapshot (and so every render) of the registry, with no
 * lock held, from the snapshotting task or thread.  It may wait (it then
 * delays that snapshot), read metrics, and register or unregister in the
 * registry (that affects later snapshots), but must not take a snapshot
 * of, or render, the same registry: that would call it again. */
typedef void (*sq_metrics_collect_fn)(sq_metrics_sink *sink, void *arg);

/* Adds a collector to reg; *out (may be NULL) receives its handle for
 * sq_metrics_remove_collector.  free_arg (may be NULL) is called with arg
 * once the collector is removed and no call of it is in progress.
 * Returns 0, -EINVAL (reg or fn NULL), -ENOMEM, -ECANCELED (the calling
 * task was aborted while waiting for the registry's lock; nothing added,
 * free_arg not called).  Waits (task-aware) for the registry's lock. */
int sq_metrics_add_collector(sq_metrics *reg, sq_metrics_collect_fn fn,
                             void *arg, void (*free_arg)(void *),
                             sq_metrics_collector **out);

/* Removes c from reg: no snapshot that starts after the call calls it.
 * Does not wait for a call in progress (from a snapshot that started
 * before): free_arg runs when that call returns, or here if none is in
 * progress.  Returns 0, -EINVAL (NULL, or c not in reg).  Waits
 * (task-aware) for the registry's lock with cancellation masked: always
 * completes. */
int sq_metrics_remove_collector(sq_metrics *reg, sq_metrics_collector *c);

/* Emit one series into the snapshot being taken.  o->name, labels, help
 * and divisor as for registration; series with the same name form one
 * family (same type, help and divisor), across collectors and registered
 * metrics alike.  Returns 0, -EINVAL (a rule broken, as for
 * registration; for histograms also buckets NULL), -EEXIST (the series
 * exists, or conflicts with the family of that name), -ENOMEM.  A series
 * that fails is left out.  Never waits. */
int sq_metrics_emit_counter(sq_metrics_sink *sink, const sq_metric_opts *o,
                            uint64_t value);
int sq_metrics_emit_gauge(sq_metrics_sink *sink, const sq_metric_opts *o,
                          int64_t value);
/* buckets: nbounds + 1 counts, NOT cumulative (buckets[nbounds]: above
 * the last bound); count is their sum, sum the sum of the values. */
int sq_metrics_emit_histogram(sq_metrics_sink *sink, const sq_metric_opts *o,
                              const int64_t *bounds, size_t nbounds,
                              const uint64_t *buckets, int64_t sum);

/* ------------------------------------------- the runtime's own figures */

/* What sq_metrics_register_runtime exports (bits). */
enum {
    /* sq_runtime_stats_get: squirrel_runtime_workers,
     * squirrel_tasks_spawned_total, squirrel_tasks_alive,
     * squirrel_task_switches_total, squirrel_task_steals_total,
     * squirrel_worker_parks_total, squirrel_io_handles. */
    SQ_METRICS_EXPORT_RUNTIME = 1u << 0,
    /* sq_sync_stats_get (process-wide): squirrel_lock_wait_seconds (a
     * histogram: le = 2^i microseconds, i = 0..15; count = the waits, sum
     * = their time), squirrel_lock_wait_timeouts_total,
     * squirrel_lock_wait_cancels_total. */
    SQ_METRICS_EXPORT_SYNC = 1u << 1,
    /* sq_check_get_hold_stats (process-wide; these only move while the
     * run-time checks are on): squirrel_lock_holds_total,
     * squirrel_lock_hold_seconds_total, squirrel_lock_hold_max_seconds. */
    SQ_METRICS_EXPORT_CHECK = 1u << 2,
    SQ_METRICS_EXPORT_ALL = (1u << 3) - 1,
};

typedef struct sq_metrics_runtime_opts {
    unsigned what;               /* SQ_METRICS_EXPORT_* bits; 0 = all */
    /* Constant labels for the runtime's families (as in sq_metric_opts),
     * e.g. {"runtime", "main", NULL}, to export several runtimes in one
     * registry (export SYNC and CHECK, which are process-wide, once). */
    const char *const *labels;
} sq_metrics_runtime_opts;

/* Adds a collector (see sq_metrics_add_collector) that exports the
 * figures of runtime rt and of the sync and check layers, as chosen by
 * opts (NULL: everything, no labels).  rt NULL means the runtime of the
 * task or thread taking the snapshot (its families are left out when
 * there is none).  rt must outlive the collector: remove it first.  The
 * labels are copied and checked now.  Returns 0, -EINVAL (reg NULL, bad
 * labels or bits), -ENOMEM, -ECANCELED (as sq_metrics_add_collector).
 * Waits (task-aware) for the registry's lock. */
int sq_metrics_register_runtime(sq_metrics *reg, sq_runtime *rt,
                                const sq_metrics_runtime_opts *opts,
                                sq_metrics_collector **out);

#ifdef __cplusplus
}
#endif

#endif
