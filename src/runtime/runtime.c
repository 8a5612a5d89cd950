/* Creating, entering and shutting down a runtime. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every runtime not yet destroyed, for the task dump (sq__runtime_foreach). */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static sq_runtime *all_head;

int sq_runtime_create(sq_runtime **out, const sq_runtime_opts *opts)
{
    sq_runtime_opts o = {0};
    if (opts)
        o = *opts;
    if (o.workers < 0 || o.blocking_threads_max < 0 ||
        (o.stack_size && o.stack_size < SQ_STACK_MIN))
        return -EINVAL;
    if (o.seed) {
        if (o.workers > 1)
            return -EINVAL; /* deterministic mode has one worker */
        o.workers = 1;
    }
    if (o.workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.workers = n > 0 ? (int)n : 1;
    }
    if (o.workers > 1024)
        return -EINVAL;
    sq_runtime *rt = calloc(1, sizeof *rt);
    if (!rt)
        return -ENOMEM;
    rt->nworkers = o.workers;
    rt->seed = o.seed;
    rt->stack_size = o.stack_size ? o.stack_size : SQ_STACK_DEFAULT;
    rt->bp_max = o.blocking_threads_max ? o.blocking_threads_max : 64;
    size_t wsz = sizeof(sq__worker) * (size_t)o.workers;
    wsz = (wsz + SQ__CACHELINE - 1) & ~(size_t)(SQ__CACHELINE - 1);
    rt->workers = aligned_alloc(SQ__CACHELINE, wsz);
    rt->parked_list = calloc((size_t)o.workers, sizeof(int));
    rt->bp_tids = calloc((size_t)rt->bp_max, sizeof(pthread_t));
    if (!rt->workers || !rt->parked_list || !rt->bp_tids) {
        free(rt->workers);
        free(rt->parked_list);
        free(rt->bp_tids);
        free(rt);
        return -ENOMEM;
    }
    memset(rt->workers, 0, wsz);
    pthread_mutex_init(&rt->gq_lock, NULL);
    pthread_mutex_init(&rt->idle_lock, NULL);
    pthread_mutex_init(&rt->driver_lock, NULL);
    pthread_mutex_init(&rt->pool_lock, NULL);
    pthread_mutex_init(&rt->bp_lock, NULL);
    pthread_cond_init(&rt->bp_cond, NULL);
    for (int i = 0; i < SQ__REG_SHARDS; i++)
        atomic_init(&rt->reg[i].lock.v, 0);
    int rc = sq__driver_init(rt);
    if (rc == 0 && (rc = sq__sched_start(rt)) != 0)
        sq__driver_free(rt); /* sched_start stopped the workers it started */
    if (rc) {
        free(rt->workers);
        free(rt->parked_list);
        free(rt->bp_tids);
        free(rt);
        return rc;
    }
    pthread_mutex_lock(&all_lock);
    rt->all_next = all_head;
    all_head = rt;
    pthread_mutex_unlock(&all_lock);
    *out = rt;
    return 0;
}

int sq_runtime_block_on(sq_runtime *rt, sq_task_fn fn, void *arg,
                        void **result)
{
    if (!rt || !fn)
        return -EINVAL;
    sq__worker *w = sq__worker_current();
    if (w && w->rt == rt)
        return -EPERM; /* would block a worker of rt */
    sq_task t;
    sq_spawn_opts o = {.name = "root"};
    int rc = sq_runtime_spawn(rt, &t, fn, arg, &o);
    if (rc)
        return rc;
    return sq_join(t, result);
}

int sq_runtime_shutdown(sq_runtime *rt)
{
    if (!rt)
        return -EINVAL;
    sq__worker *w = sq__worker_current();
    if (w && w->rt == rt)
        return -EPERM;
    if (atomic_exchange(&rt->shutting_down, true) && atomic_load(&rt->stop))
        return 0;
    /* Abort everything, and keep aborting until nothing is left: a task
     * may spawn while we scan (its spawn passed the check just before the
     * flag was set). */
    for (;;) {
        unsigned seq = atomic_load(&rt->done_seq);
        if (atomic_load(&rt->alive) == 0)
            break;
        sq__registry_cancel_all(rt);
        sq__futex_wait(&rt->done_seq, seq, sq_now() + 10 * SQ_MSEC);
    }
    sq__blocking_stop(rt);
    if (!atomic_load(&rt->stop))
        sq__sched_stop(rt);
    return 0;
}

void sq_runtime_destroy(sq_runtime *rt)
{
    if (!rt)
        return;
    sq_runtime_shutdown(rt);
    pthread_mutex_lock(&all_lock);
    for (sq_runtime **p = &all_head; *p; p = &(*p)->all_next)
        if (*p == rt) {
            *p = rt->all_next;
            break;
        }
    pthread_mutex_unlock(&all_lock);
    sq__stack_pool_free(rt);
    sq__task_pool_free(rt);
    sq__timers_free(rt);
    sq__driver_free(rt);
    pthread_mutex_destroy(&rt->gq_lock);
    pthread_mutex_destroy(&rt->idle_lock);
    pthread_mutex_destroy(&rt->driver_lock);
    pthread_mutex_destroy(&rt->pool_lock);
    pthread_mutex_destroy(&rt->bp_lock);
    pthread_cond_destroy(&rt->bp_cond);
    free(rt->workers);
    free(rt->parked_list);
    free(rt->bp_tids);
    free(rt);
}

void sq__runtime_foreach(void (*fn)(sq_runtime *, void *), void *arg)
{
    pthread_mutex_lock(&all_lock);
    for (sq_runtime *rt = all_head; rt; rt = rt->all_next)
        fn(rt, arg);
    pthread_mutex_unlock(&all_lock);
}

int sq_run(sq_task_fn fn, void *arg, const sq_runtime_opts *opts,
           void **result)
{
    sq_runtime *rt;
    int rc = sq_runtime_create(&rt, opts);
    if (rc)
        return rc;
    rc = sq_runtime_block_on(rt, fn, arg, result);
    sq_runtime_destroy(rt);
    return rc;
}

/* ------------------------------------------------------------ stats */

int sq_runtime_stats_get(sq_runtime *rt, sq_runtime_stats *out)
{
    if (!rt)
        rt = sq_runtime_current();
    if (!rt || !out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    out->workers = (unsigned)rt->nworkers;
    out->tasks_spawned =
        atomic_load_explicit(&rt->spawned_outside, memory_order_relaxed);
    for (int i = 0; i < rt->nworkers; i++) {
        sq__worker *w = &rt->workers[i];
        out->tasks_spawned +=
            atomic_load_explicit(&w->stats.spawned, memory_order_relaxed);
        out->switches +=
            atomic_load_explicit(&w->stats.switches, memory_order_relaxed);
        out->steals +=
            atomic_load_explicit(&w->stats.steals, memory_order_relaxed);
        out->parks +=
            atomic_load_explicit(&w->stats.parks, memory_order_relaxed);
    }
    long alive = atomic_load_explicit(&rt->alive, memory_order_relaxed);
    out->tasks_alive = alive > 0 ? (uint64_t)alive : 0;
    long io = atomic_load_explicit(&rt->io_live, memory_order_relaxed);
    out->io_handles = io > 0 ? (uint64_t)io : 0;
    return 0;
}
