/* Tasks: spawn, join, detach, abort, cancellation, and the waiter that
 * every waiting call is built on. */
#include "internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SQ__TSAN
#include <sanitizer/tsan_interface.h>
#endif

void sq__task_entry_settle(void);

/* Ids are unique for the process lifetime; workers reserve them in blocks
 * so spawning does not contend on one counter. */
static _Atomic uint64_t next_id_block = 1;
#define SQ__ID_BLOCK 1024

static uint64_t new_id(sq__worker *w)
{
    if (!w)
        return atomic_fetch_add(&next_id_block, 1);
    if (w->id_next == w->id_end) {
        w->id_next = atomic_fetch_add(&next_id_block, SQ__ID_BLOCK);
        w->id_end = w->id_next + SQ__ID_BLOCK;
    }
    return w->id_next++;
}

/* ------------------------------------------------------ task structs */

#define SQ__SLAB_TASKS 256

/* Task structs come from slabs that live as long as the runtime, so a stale
 * handle can always read the id of the struct it points to and be
 * rejected, never touch freed memory. */
static sq__task *slab_refill(sq_runtime *rt)
{
    sq__task *slab = calloc(SQ__SLAB_TASKS, sizeof *slab);
    if (!slab)
        return NULL;
    if (rt->nslabs == rt->slabs_cap) {
        size_t cap = rt->slabs_cap ? rt->slabs_cap * 2 : 64;
        void **n = realloc(rt->slabs, cap * sizeof *n);
        if (!n) {
            free(slab);
            return NULL;
        }
        rt->slabs = n;
        rt->slabs_cap = cap;
    }
    rt->slabs[rt->nslabs++] = slab;
    for (int i = 1; i < SQ__SLAB_TASKS - 1; i++)
        slab[i].qnext = &slab[i + 1];
    slab[SQ__SLAB_TASKS - 1].qnext = rt->task_pool;
    rt->task_pool = &slab[1];
    return &slab[0];
}

/* Per-worker caches hold up to TASK_CACHE_MAX free structs; beyond that a
 * batch goes back to the shared pool, so a worker that only frees (its
 * tasks were spawned elsewhere) cannot hoard structs while another worker
 * keeps allocating new slabs. */
#define TASK_CACHE_MAX 512
#define TASK_BATCH 64

sq__task *sq__task_alloc(sq_runtime *rt, sq__worker *w)
{
    sq__task *t;
    if (w && w->task_cache) {
        t = w->task_cache;
        w->task_cache = t->qnext;
        w->task_cache_n--;
        return t;
    }
    pthread_mutex_lock(&rt->pool_lock);
    t = rt->task_pool;
    if (t) {
        rt->task_pool = t->qnext;
        for (int i = 0; w && i < TASK_BATCH - 1 && rt->task_pool; i++) {
            sq__task *x = rt->task_pool;
            rt->task_pool = x->qnext;
            x->qnext = w->task_cache;
            w->task_cache = x;
            w->task_cache_n++;
        }
    } else {
        t = slab_refill(rt);
    }
    pthread_mutex_unlock(&rt->pool_lock);
    return t;
}

static void task_free(sq__task *t)
{
    sq_runtime *rt = t->rt;
    /* Invalidates every handle.  Release, not seq_cst: a handle holds a
     * reference, so only a misused stale handle can race with this, and
     * ids are never reused. */
    atomic_store_explicit(&t->id, 0, memory_order_release);
    sq__worker *w = sq__worker_current();
    if (w && w->rt == rt) {
        t->qnext = w->task_cache;
        w->task_cache = t;
        if (++w->task_cache_n <= TASK_CACHE_MAX)
            return;
        /* Give a batch back to the shared pool. */
        sq__task *first = w->task_cache, *last = first;
        for (int i = 1; i < TASK_BATCH; i++)
            last = last->qnext;
        w->task_cache = last->qnext;
        w->task_cache_n -= TASK_BATCH;
        pthread_mutex_lock(&rt->pool_lock);
        last->qnext = rt->task_pool;
        rt->task_pool = first;
        pthread_mutex_unlock(&rt->pool_lock);
        return;
    }
    pthread_mutex_lock(&rt->pool_lock);
    t->qnext = rt->task_pool;
    rt->task_pool = t;
    pthread_mutex_unlock(&rt->pool_lock);
}

void sq__task_release(sq__task *t)
{
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        task_free(t);
}

void sq__task_pool_free(sq_runtime *rt)
{
    for (size_t i = 0; i < rt->nslabs; i++)
        free(rt->slabs[i]);
    free(rt->slabs);
    rt->slabs = NULL;
    rt->nslabs = rt->slabs_cap = 0;
    rt->task_pool = NULL;
    for (int i = 0; i < rt->nworkers; i++) {
        rt->workers[i].task_cache = NULL;
        rt->workers[i].task_cache_n = 0;
    }
}

/* --------------------------------------------------------- registry */

static void registry_add(sq_runtime *rt, sq__task *t, int shard)
{
    t->reg_shard = shard;
    sq__spin_lock(&rt->reg[shard].lock);
    sq__list_push_front(&rt->reg[shard].tasks, &t->reg_link);
    sq__spin_unlock(&rt->reg[shard].lock);
}

static void registry_remove(sq_runtime *rt, sq__task *t)
{
    int shard = t->reg_shard;
    sq__spin_lock(&rt->reg[shard].lock);
    sq__list_remove(&rt->reg[shard].tasks, &t->reg_link);
    sq__spin_unlock(&rt->reg[shard].lock);
}

void sq__registry_foreach(sq_runtime *rt, void (*fn)(sq__task *, void *),
                          void *arg)
{
    for (int i = 0; i < SQ__REG_SHARDS; i++) {
        sq__spin_lock(&rt->reg[i].lock);
        SQ__LIST_FOREACH(l, &rt->reg[i].tasks)
            fn(sq__task_of_link(l, reg_link), arg);
        sq__spin_unlock(&rt->reg[i].lock);
    }
}

void sq__task_abort(sq__task *t)
{
    atomic_store(&t->cancel_req, true);
    sq__task_wake(t);
}

void sq__registry_cancel_all(sq_runtime *rt)
{
    for (int i = 0; i < SQ__REG_SHARDS; i++) {
        sq__spin_lock(&rt->reg[i].lock);
        SQ__LIST_FOREACH(l, &rt->reg[i].tasks)
            sq__task_abort(sq__task_of_link(l, reg_link));
        sq__spin_unlock(&rt->reg[i].lock);
    }
}

/* ------------------------------------------------------------ spawn */

int sq__spawn_in(sq_runtime *rt, sq__worker *w, sq__task **out, sq_task_fn fn,
                 void *arg, const sq_spawn_opts *opts, bool keep_handle,
                 const char *site)
{
    if (!fn)
        return -EINVAL;
    size_t ss = opts && opts->stack_size ? opts->stack_size : rt->stack_size;
    if (ss < SQ_STACK_MIN)
        return -EINVAL;
    if (atomic_load_explicit(&rt->shutting_down, memory_order_acquire))
        return -ESHUTDOWN;
    sq__task *t = sq__task_alloc(rt, w);
    if (!t)
        return -ENOMEM;
    t->rt = rt;
    t->fn = fn;
    t->arg = arg;
    t->stack_size = ss;
    t->stack = NULL;
    t->started = false;
    t->ran_once = false;
    t->finished = false;
    t->cancel_mask = 0;
    t->cancel_seen = false;
    atomic_store_explicit(&t->cancel_req, false, memory_order_relaxed);
    atomic_store_explicit(&t->state, SQ__T_QUEUED, memory_order_relaxed);
    t->handle = keep_handle ? SQ__H_ATTACHED : SQ__H_DETACHED;
    atomic_store_explicit(&t->refs, keep_handle ? 2 : 1, memory_order_relaxed);
    t->result = NULL;
    t->status = 0;
    t->joiner = NULL;
    t->group = NULL;
    atomic_store_explicit(&t->waiting, NULL, memory_order_relaxed);
    /* a recycled task struct must not keep its last life's mark */
    atomic_store_explicit(&t->handoff, false, memory_order_relaxed);
    t->check = NULL;
    t->spawn_site = site;
    t->timer.index = SQ__TIMER_IDLE;
    t->timer.task = t;
    const char *name = opts && opts->name ? opts->name : "task";
    size_t n = strnlen(name, sizeof t->name - 1);
    memcpy(t->name, name, n);
    t->name[n] = 0;
    /* release: a handle that sees the id sees the task set up */
    atomic_store_explicit(&t->id, new_id(w), memory_order_release);
    atomic_fetch_add_explicit(&rt->alive, 1, memory_order_relaxed);
    if (w && w->rt == rt)
        SQ__STAT_INC(w, spawned);
    else
        atomic_fetch_add_explicit(&rt->spawned_outside, 1,
                                  memory_order_relaxed);
    registry_add(rt, t, w ? w->index % SQ__REG_SHARDS
                          : (int)(t->id % SQ__REG_SHARDS));
    *out = t;
    return 0;
}

static int spawn_common(sq_runtime *rt, sq__worker *w, sq_task *out,
                        sq_task_fn fn, void *arg, const sq_spawn_opts *opts,
                        const char *site)
{
    sq__task *t;
    int rc = sq__spawn_in(rt, w, &t, fn, arg, opts, out != NULL, site);
    if (rc)
        return rc;
    if (out) {
        out->p = t;
        out->id = atomic_load_explicit(&t->id, memory_order_relaxed);
    }
    sq__sched_push_new(rt, t);
    return 0;
}

int sq_spawn_at(sq_task *out, sq_task_fn fn, void *arg,
                const sq_spawn_opts *opts, const char *site)
{
    sq__worker *w = sq__worker_current();
    if (!w)
        return -EPERM;
    return spawn_common(w->rt, w, out, fn, arg, opts, site);
}

int(sq_spawn)(sq_task *out, sq_task_fn fn, void *arg,
              const sq_spawn_opts *opts)
{
    return sq_spawn_at(out, fn, arg, opts, NULL);
}

int sq_runtime_spawn_at(sq_runtime *rt, sq_task *out, sq_task_fn fn,
                        void *arg, const sq_spawn_opts *opts,
                        const char *site)
{
    if (!rt)
        return -EINVAL;
    sq__worker *w = sq__worker_current();
    return spawn_common(rt, w && w->rt == rt ? w : NULL, out, fn, arg, opts,
                        site);
}

int(sq_runtime_spawn)(sq_runtime *rt, sq_task *out, sq_task_fn fn, void *arg,
                      const sq_spawn_opts *opts)
{
    return sq_runtime_spawn_at(rt, out, fn, arg, opts, NULL);
}

/* ------------------------------------------------------- life cycle */

void sq__group_member_done(struct sq_group *g, sq__task *t);

/* Publishes the task's outcome and wakes its joiner or group.  status is
 * non-zero only for a task that never ran (-ECANCELED, -ENOMEM); one that
 * ran reports -ECANCELED only if the abort reached it (cancel_seen, which
 * only the task itself writes, and it is the one finishing here): an
 * abort that came too late to be seen, even one that came before this
 * point, does not change the outcome of a task that returned normally. */
static void task_finish(sq__task *t, void *result, int status)
{
    /* Once installed the hooks stay (sq_check switches findings off, not
     * the hooks), so every record made for t is handed back here. */
    const sq__check_hooks *ck = SQ__CHECKS();
    if (SQ__UNLIKELY(ck))
        ck->task_exit(t);
    sq__spin_lock(&t->lock);
    t->result = result;
    t->status = status ? status : t->cancel_seen ? -ECANCELED : 0;
    t->finished = true;
    sq__waiter *j = t->joiner;
    t->joiner = NULL;
    if (j)
        sq__waiter_wake(j);
    struct sq_group *g = t->group;
    sq__spin_unlock(&t->lock);
    if (g)
        sq__group_member_done(g, t);
}

static void task_entry(void *arg)
{
    sq__task *t = arg;
    sq__task_entry_settle();
    void *r = t->fn(t->arg);
    task_finish(t, r, 0);
    sq__sched_switch_away(SQ__SW_EXIT);
    abort(); /* unreachable: an exited task is never resumed */
}

/* Runs on the worker once the task's stack is no longer in use. */
void sq__task_settle_exit(sq__worker *w, sq__task *t)
{
    sq_runtime *rt = t->rt;
    /* Out of the registry first: while a task is listed there, its stack
     * is mapped (the task dump reads waiters on it). */
    registry_remove(rt, t);
    if (t->stack) {
#ifdef SQ__TSAN
        __tsan_destroy_fiber(t->tsan_fiber);
#endif
        sq__stack_put(rt, w, t->stack);
        t->stack = NULL;
        t->canary = NULL;
    }
    /* release: nothing here reads another thread's writes after it */
    atomic_store_explicit(&t->state, SQ__T_DONE, memory_order_release);
    if (atomic_fetch_sub(&rt->alive, 1) == 1 &&
        atomic_load(&rt->shutting_down)) {
        atomic_fetch_add(&rt->done_seq, 1);
        sq__futex_wake(&rt->done_seq, INT32_MAX);
    }
    sq__task_release(t);
}

/* Gives a task that has never run its stack and initial context.  If it
 * was aborted first, or no stack can be had, it is finished on the spot
 * (without running) and -1 is returned. */
int sq__task_prepare(sq__worker *w, sq__task *t)
{
    int status = 0;
    if (atomic_load(&t->cancel_req))
        status = -ECANCELED;
    else if (sq__stack_get(w->rt, w, t->stack_size, &t->stack) != 0)
        status = -ENOMEM;
    if (status) {
        task_finish(t, NULL, status);
        sq__task_settle_exit(w, t);
        return -1;
    }
    t->started = true;
    t->canary = sq__stack_canary(t->stack);
    sq__ctx_make(&t->ctx, t->stack->base, t->stack->size, task_entry, t);
#ifdef SQ__TSAN
    t->tsan_fiber = __tsan_create_fiber(0);
#endif
    return 0;
}

/* ------------------------------------------------------------ waiting */

bool sq__cancel_pending(sq__task *t)
{
    if (t->cancel_mask != 0 ||
        !atomic_load_explicit(&t->cancel_req, memory_order_acquire))
        return false;
    t->cancel_seen = true;
    return true;
}

const sq__check_hooks *_Atomic sq__check_hooks_on;

void sq__waiter_init_for(sq__waiter *w, int kind, const void *obj)
{
    w->task = sq__task_current();
    atomic_store_explicit(&w->signalled, 0, memory_order_relaxed);
    w->status = 0;
    w->link.next = w->link.prev = NULL;
    w->data = NULL;
    w->kind = kind;
    w->obj = obj;
    w->since = 0;
}

void sq__waiter_init(sq__waiter *w)
{
    sq__waiter_init_for(w, SQ__WAIT_OTHER, NULL);
}

sq__task *sq__waiter_signal(sq__waiter *w)
{
    sq__task *t = w->task;
    atomic_store_explicit(&w->signalled, 1, memory_order_release);
    if (!t)
        sq__futex_wake(&w->signalled, 1);
    return t;
}

void sq__waiter_wake(sq__waiter *w)
{
    sq__task *t = sq__waiter_signal(w);
    if (t)
        sq__task_wake(t);
}

static int waiter_wait(sq__waiter *w, int64_t deadline, bool cancellable);

int sq__waiter_wait(sq__waiter *w, int64_t deadline, bool cancellable)
{
    const sq__check_hooks *ck = SQ__CHECKS();
    if (SQ__LIKELY(!ck))
        return waiter_wait(w, deadline, cancellable);
    ck->wait_begin(w);
    int rc = waiter_wait(w, deadline, cancellable);
    ck->wait_end(w, rc);
    return rc;
}

static int waiter_wait(sq__waiter *w, int64_t deadline, bool cancellable)
{
    sq__task *t = w->task;
    if (!t) {
        while (!atomic_load_explicit(&w->signalled, memory_order_acquire)) {
            if (deadline != SQ_FOREVER && sq_now() >= deadline)
                return -ETIMEDOUT;
            sq__futex_wait(&w->signalled, 0, deadline);
        }
        return 0;
    }
    int rc;
    bool armed = false;
    for (;;) {
        if (atomic_load_explicit(&w->signalled, memory_order_acquire)) {
            rc = 0;
            break;
        }
        if (cancellable && sq__cancel_pending(t)) {
            rc = -ECANCELED;
            break;
        }
        if (deadline != SQ_FOREVER) {
            if (sq_now() >= deadline) {
                rc = -ETIMEDOUT;
                break;
            }
            if (!armed) {
                if (sq__timer_arm(t->rt, &t->timer, deadline) != 0) {
                    rc = -ENOMEM;
                    break;
                }
                armed = true;
            }
        }
        atomic_store_explicit(&t->waiting, w, memory_order_release);
        sq__task_park();
        atomic_store_explicit(&t->waiting, NULL, memory_order_relaxed);
    }
    if (armed)
        sq__timer_disarm(t->rt, &t->timer);
    return rc;
}

/* ----------------------------------------------------------- handles */

/* True if h still names a live, attached task.  Call with h.p->lock held:
 * the struct is never freed (see slab_refill), only reused with a new id. */
static bool handle_ok(sq_task h)
{
    return atomic_load(&h.p->id) == h.id && h.p->handle == SQ__H_ATTACHED;
}

int sq_join_until(sq_task h, void **result, int64_t deadline)
{
    if (!h.p || h.id == 0 || deadline < 0)
        return -EINVAL;
    sq__task *p = h.p, *me = sq__task_current();
    if (me == p)
        return -EDEADLK;
    sq__spin_lock(&p->lock);
    if (!handle_ok(h)) {
        sq__spin_unlock(&p->lock);
        return -EINVAL;
    }
    if (!p->finished) {
        if (p->joiner) {
            sq__spin_unlock(&p->lock);
            return -EINVAL; /* someone else is joining it */
        }
        sq__waiter w;
        sq__waiter_init_for(&w, SQ__WAIT_JOIN, p);
        p->joiner = &w;
        sq__spin_unlock(&p->lock);
        int rc = sq__waiter_wait(&w, deadline, true);
        sq__spin_lock(&p->lock);
        if (!p->finished) {
            p->joiner = NULL;
            sq__spin_unlock(&p->lock);
            return rc;
        }
        /* It finished as we gave up: take the result after all. */
    }
    p->handle = SQ__H_CONSUMED;
    void *res = p->result;
    int status = p->status;
    sq__spin_unlock(&p->lock);
    sq__task_release(p);
    if (result)
        *result = res;
    return status;
}

int sq_join(sq_task h, void **result)
{
    return sq_join_until(h, result, SQ_FOREVER);
}

int sq_detach(sq_task h)
{
    if (!h.p || h.id == 0)
        return -EINVAL;
    sq__spin_lock(&h.p->lock);
    if (!handle_ok(h) || h.p->joiner) {
        sq__spin_unlock(&h.p->lock);
        return -EINVAL;
    }
    h.p->handle = SQ__H_DETACHED;
    sq__spin_unlock(&h.p->lock);
    sq__task_release(h.p);
    return 0;
}

int sq_abort(sq_task h)
{
    if (!h.p || h.id == 0)
        return -EINVAL;
    sq__spin_lock(&h.p->lock);
    bool ok = handle_ok(h);
    if (ok && !h.p->finished)
        sq__task_abort(h.p);
    sq__spin_unlock(&h.p->lock);
    return ok ? 0 : -EINVAL;
}

/* ------------------------------------------------- the calling task */

int sq_yield(void)
{
    sq__task *t = sq__task_current();
    if (!t) {
        sched_yield();
        return 0;
    }
    sq__sched_switch_away(SQ__SW_YIELD);
    return sq__cancel_pending(t) ? -ECANCELED : 0;
}

int sq_sleep_until(int64_t deadline)
{
    if (deadline < 0)
        return -EINVAL;
    sq__waiter w;
    sq__waiter_init_for(&w, SQ__WAIT_SLEEP, NULL); /* never signalled: only time or cancel end it */
    int rc = sq__waiter_wait(&w, deadline, true);
    return rc == -ETIMEDOUT ? 0 : rc;
}

int sq_sleep(int64_t ns)
{
    int64_t deadline;
    int rc = sq_deadline_in(ns, &deadline);
    return rc ? rc : sq_sleep_until(deadline);
}

uint64_t sq_task_id(void)
{
    sq__task *t = sq__task_current();
    return t ? atomic_load_explicit(&t->id, memory_order_relaxed) : 0;
}

const char *sq_task_name(void)
{
    sq__task *t = sq__task_current();
    return t ? t->name : NULL;
}

bool sq_cancelled(void)
{
    sq__task *t = sq__task_current();
    if (!t || !atomic_load(&t->cancel_req))
        return false;
    t->cancel_seen = true; /* told: its join reports -ECANCELED */
    return true;
}

int sq_cancel_mask(void)
{
    sq__task *t = sq__task_current();
    if (!t)
        return -EPERM;
    t->cancel_mask++;
    return 0;
}

int sq_cancel_unmask(void)
{
    sq__task *t = sq__task_current();
    if (!t)
        return -EPERM;
    if (t->cancel_mask == 0)
        return -EINVAL;
    t->cancel_mask--;
    return 0;
}

/* ------------------------------------------------ accessors (iface.h) */

uint64_t sq__task_id_of(const sq__task *t)
{
    return atomic_load_explicit(&t->id, memory_order_relaxed);
}

const char *sq__task_name_of(const sq__task *t)
{
    return t->name;
}

const char *sq__task_site_of(const sq__task *t)
{
    return t->spawn_site;
}

int sq__task_state_of(const sq__task *t)
{
    return atomic_load_explicit(&t->state, memory_order_acquire);
}

sq__waiter *sq__task_waiting_of(const sq__task *t)
{
    return atomic_load_explicit(&t->waiting, memory_order_acquire);
}

void **sq__task_check_slot(sq__task *t)
{
    return &t->check;
}

int sq__runtime_workers(const sq_runtime *rt)
{
    return rt->nworkers;
}

uint64_t sq__runtime_seed(const sq_runtime *rt)
{
    return rt->seed;
}
