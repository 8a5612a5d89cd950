/* The scheduler: worker threads, run queues, work stealing, parking.
 *
 * Each worker owns two bounded run queues.  A LIFO deque (Chase-Lev) holds
 * woken and spawned tasks: the owner takes the newest, other workers steal
 * the oldest one at a time.  A FIFO ring holds yielded tasks (and batches
 * from the global queue): the owner pops at the head, other workers steal
 * half of it with one CAS.  The deque goes first, so a yielding task lets
 * every other runnable task on its worker run first.  A task woken by a
 * running task goes to the waker's LIFO slot and runs next (good cache
 * locality for request/response hand-offs).  Tasks spawned by a running
 * task wait in a small buffer until it switches away, then the first runs
 * next and the rest go to the deque in spawn order: fork/join trees run
 * depth first, with few stacks live at once (both are taken by other
 * workers only from a worker stuck in one task).  Spawns from outside the
 * runtime, and queue overflow, go to a global queue.  Every 61 ticks a
 * worker looks at older work first (one task of the global queue, the head
 * of its FIFO ring, the oldest task of its deque if that one has waited
 * FAIR_NS) so nothing starves behind tasks that keep waking or spawning
 * each other.
 *
 * Switching is direct, task to task: a task that parks, yields or exits
 * picks the next task itself and switches straight to it; the worker's own
 * scheduler context only runs when there is nothing to do.  The context
 * that resumes "settles" the one that left (marks it parked, requeues it,
 * or frees its stack), because that can only be done once its stack is no
 * longer in use.
 *
 * Idle workers: a worker with nothing to run registers as parked and
 * sleeps, one of them inside epoll (the "driver", which also fires timers),
 * the rest on a futex.  Whoever makes stealable work visible calls
 * sq__sched_notify, which wakes one parked worker only if no worker is
 * already searching: wake-ups never stampede.  Lost wake-ups are prevented
 * by the usual Dekker pairing: the pusher publishes work then reads the
 * idle counters, the parker publishes itself in the counters then re-reads
 * the queues, each with a full fence between, so at least one of them sees
 * the other.  Work that thieves leave to a busy worker (hand-off affinity,
 * the LIFO slot, the spawn buffer) wakes nobody; one parked worker watches
 * with a deadline instead, and takes it if that worker gets stuck (see
 * "Watching").  A worker that only lengthens a lock's queue with the tasks
 * it starts backs off from the shared queues ("Convoy feeding").
 *
 * Deterministic mode (sq_runtime_opts.seed, one worker): pushes go where
 * they always go, but each pick first gathers every queued task (LIFO
 * slot, spawn buffer, deque, ring, global queue) into one array, in a
 * fixed order, and draws the task to run from a generator seeded with the
 * seed; a yield (sq_yield, or a lock's sq__sched_point) may draw the
 * yielding task itself and go on.  The normal path only pays a branch on
 * w->det where it picks.
 */
#include "internal.h"

#include <linux/membarrier.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef SQ__ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef SQ__TSAN
#include <sanitizer/tsan_interface.h>
#endif

static SQ__TLS sq__worker *tls_worker;

/* Not inlined: a task may resume on another thread, and the compiler must
 * not reuse a thread-local address computed before a switch. */
__attribute__((noinline)) sq__worker *sq__worker_current(void)
{
    sq__worker *w = tls_worker;
    __asm__ __volatile__("" ::: "memory");
    return w;
}

sq__task *sq__task_current(void)
{
    sq__worker *w = sq__worker_current();
    return w ? w->cur : NULL;
}

bool sq__task_is_local(const sq__task *t)
{
    sq__worker *w = sq__worker_current();
    return w && w->rt == t->rt;
}

void sq__task_yield_handoff(void)
{
    sq__worker *w = sq__worker_current();
    if (w && w->cur)
        sq__sched_switch_away(SQ__SW_YIELD);
}

sq_runtime *sq_runtime_current(void)
{
    sq__worker *w = sq__worker_current();
    return w ? w->rt : NULL;
}

/* ------------------------------------------------------- local queue */

static inline unsigned rq_len(sq__runq *q)
{
    unsigned h = atomic_load_explicit(&q->head, memory_order_acquire);
    unsigned t = atomic_load_explicit(&q->tail, memory_order_acquire);
    return t - h;
}

static void global_push_batch(sq_runtime *rt, sq__task *first,
                              sq__task *last, long n)
{
    last->qnext = NULL;
    pthread_mutex_lock(&rt->gq_lock);
    if (rt->gq_tail)
        rt->gq_tail->qnext = first;
    else
        rt->gq_head = first;
    rt->gq_tail = last;
    atomic_fetch_add_explicit(&rt->gq_len, n, memory_order_relaxed);
    pthread_mutex_unlock(&rt->gq_lock);
}

/* Owner only.  When the ring is full, half of it moves to the global queue
 * in one locked operation, so overflow costs O(1) amortised. */
static void rq_push(sq__worker *w, sq__task *t)
{
    sq__runq *q = &w->rq;
    for (;;) {
        unsigned tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
        unsigned head = atomic_load_explicit(&q->head, memory_order_acquire);
        if (tail - head < SQ__RQ_CAP) {
            atomic_store_explicit(&q->buf[tail % SQ__RQ_CAP], t,
                                  memory_order_relaxed);
            atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
            return;
        }
        unsigned n = SQ__RQ_CAP / 2;
        /* Claim the slots first: until the CAS succeeds a stealer may own
         * them, and their tasks' links are not ours to write.  Only the
         * owner writes this ring's slots, so they stay readable after. */
        if (!atomic_compare_exchange_strong_explicit(
                &q->head, &head, head + n, memory_order_acq_rel,
                memory_order_acquire))
            continue; /* a stealer made room; retry the fast path */
        sq__task *first = NULL, *last = NULL;
        for (unsigned i = 0; i < n; i++) {
            sq__task *x = atomic_load_explicit(&q->buf[(head + i) % SQ__RQ_CAP],
                                               memory_order_relaxed);
            if (last)
                last->qnext = x;
            else
                first = x;
            last = x;
        }
        last->qnext = t;
        global_push_batch(w->rt, first, t, n + 1);
        return;
    }
}

static sq__task *rq_pop(sq__runq *q)
{
    unsigned head = atomic_load_explicit(&q->head, memory_order_acquire);
    for (;;) {
        unsigned tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
        if (head == tail)
            return NULL;
        sq__task *t = atomic_load_explicit(&q->buf[head % SQ__RQ_CAP],
                                           memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&q->head, &head, head + 1,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire))
            return t;
    }
}

/* Moves half of victim's queue into w's (which is empty) and returns one
 * task to run.  The slots are copied before the CAS that claims them; the
 * owner never overwrites unclaimed slots, so a failed CAS just retries. */
static sq__task *rq_steal(sq__worker *w, sq__worker *victim)
{
    sq__runq *src = &victim->rq, *dst = &w->rq;
    unsigned dtail = atomic_load_explicit(&dst->tail, memory_order_relaxed);
    for (;;) {
        unsigned head = atomic_load_explicit(&src->head, memory_order_acquire);
        unsigned tail = atomic_load_explicit(&src->tail, memory_order_acquire);
        unsigned n = tail - head;
        if (n == 0 || n > SQ__RQ_CAP)
            return NULL;
        n -= n / 2;
        for (unsigned i = 0; i < n; i++) {
            sq__task *t = atomic_load_explicit(
                &src->buf[(head + i) % SQ__RQ_CAP], memory_order_relaxed);
            atomic_store_explicit(&dst->buf[(dtail + i) % SQ__RQ_CAP], t,
                                  memory_order_relaxed);
        }
        if (atomic_compare_exchange_strong_explicit(
                &src->head, &head, head + n, memory_order_acq_rel,
                memory_order_acquire)) {
            sq__task *ret = atomic_load_explicit(
                &dst->buf[(dtail + n - 1) % SQ__RQ_CAP], memory_order_relaxed);
            if (n > 1)
                atomic_store_explicit(&dst->tail, dtail + n - 1,
                                      memory_order_release);
            return ret;
        }
    }
}

/* ------------------------------------------------------- local deque */

/* A Chase-Lev deque with every contended access sequentially consistent,
 * so the owner's bottom decrement and the thieves' top/bottom reads need
 * no separate fences (on x86 the exchange is the only barrier).  Thieves
 * take one task at a time: a batch steal is not safe against an owner that
 * takes from the other end without a CAS. */
static inline long dq_len(sq__deque *d)
{
    long long t = atomic_load_explicit(&d->top, memory_order_acquire);
    long long b = atomic_load_explicit(&d->bottom, memory_order_acquire);
    return b > t ? (long)(b - t) : 0;
}

/* Owner only.  When full, the oldest half moves to the global queue with
 * one CAS on top (which thieves also CAS, so each task goes one way). */
static void dq_push(sq__worker *w, sq__task *x)
{
    sq__deque *d = &w->dq;
    long long b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    for (;;) {
        long long t = atomic_load_explicit(&d->top, memory_order_acquire);
        if (b - t < SQ__DQ_CAP)
            break;
        long n = SQ__DQ_CAP / 2;
        /* Claim first, link after: a thief may win any of these slots
         * until the CAS succeeds (see rq_push). */
        if (!atomic_compare_exchange_strong_explicit(
                &d->top, &t, t + n, memory_order_seq_cst,
                memory_order_relaxed))
            continue;
        sq__task *first = NULL, *last = NULL;
        for (long i = 0; i < n; i++) {
            sq__task *y = atomic_load_explicit(&d->buf[(t + i) % SQ__DQ_CAP],
                                               memory_order_relaxed);
            if (last)
                last->qnext = y;
            else
                first = y;
            last = y;
        }
        global_push_batch(w->rt, first, last, n);
        break;
    }
    atomic_store_explicit(&d->buf[b % SQ__DQ_CAP], x, memory_order_relaxed);
    atomic_store_explicit(&d->bottom, b + 1, memory_order_release);
}

/* Owner only: the newest task. */
static sq__task *dq_take(sq__deque *d)
{
    long long b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    /* top never passes bottom for long: if it is there already, empty. */
    if (atomic_load_explicit(&d->top, memory_order_relaxed) >= b)
        return NULL;
    b--;
    atomic_exchange_explicit(&d->bottom, b, memory_order_seq_cst);
    long long t = atomic_load_explicit(&d->top, memory_order_seq_cst);
    if (t > b) {
        atomic_store_explicit(&d->bottom, b + 1, memory_order_release);
        return NULL;
    }
    sq__task *x = atomic_load_explicit(&d->buf[b % SQ__DQ_CAP],
                                       memory_order_relaxed);
    if (t == b) {
        /* The last one: race the thieves for it. */
        if (!atomic_compare_exchange_strong_explicit(
                &d->top, &t, t + 1, memory_order_seq_cst,
                memory_order_relaxed))
            x = NULL;
        atomic_store_explicit(&d->bottom, b + 1, memory_order_release);
    }
    return x;
}

/* Any worker (the owner too, for fairness): the oldest task. */
static sq__task *dq_steal(sq__deque *d)
{
    for (;;) {
        long long t = atomic_load_explicit(&d->top, memory_order_seq_cst);
        long long b = atomic_load_explicit(&d->bottom, memory_order_seq_cst);
        if (t >= b)
            return NULL;
        sq__task *x = atomic_load_explicit(&d->buf[t % SQ__DQ_CAP],
                                           memory_order_relaxed);
        if (atomic_compare_exchange_strong_explicit(
                &d->top, &t, t + 1, memory_order_seq_cst,
                memory_order_relaxed))
            return x;
    }
}

/* --------------------------------------------------------- global queue */

/* Takes a batch from the global queue: one to run, the rest into w's ring
 * (a fair share, so the other workers get some too). */
static sq__task *global_pop_max(sq__worker *w, long room)
{
    sq_runtime *rt = w->rt;
    if (atomic_load_explicit(&rt->gq_len, memory_order_relaxed) == 0)
        return NULL;
    pthread_mutex_lock(&rt->gq_lock);
    long len = atomic_load_explicit(&rt->gq_len, memory_order_relaxed);
    long take = len / rt->nworkers + 1;
    if (take > room)
        take = room;
    if (take > len)
        take = len;
    sq__task *first = rt->gq_head;
    sq__task *t = first;
    for (long i = 1; i < take; i++)
        t = t->qnext;
    if (t) {
        rt->gq_head = t->qnext;
        if (!rt->gq_head)
            rt->gq_tail = NULL;
        atomic_fetch_sub_explicit(&rt->gq_len, take, memory_order_relaxed);
    }
    pthread_mutex_unlock(&rt->gq_lock);
    if (!first || take == 0)
        return NULL;
    sq__task *rest = first->qnext;
    for (long i = 1; i < take; i++) {
        sq__task *next = rest->qnext;
        rq_push(w, rest);
        rest = next;
    }
    return first;
}

static sq__task *global_pop(sq__worker *w)
{
    return global_pop_max(w, SQ__RQ_CAP / 2);
}

static void global_push(sq_runtime *rt, sq__task *t)
{
    global_push_batch(rt, t, t, 1);
    sq__sched_notify(rt);
}

/* ------------------------------------------- LIFO slot and spawn buffer */

/* The LIFO slot and the spawn buffer are the owner's: it uses them at
 * every wake-up and spawn, so that must cost no locked instruction.  Yet
 * their tasks must not wait for ever behind a task that computes without
 * switching.  So another worker may empty them, but only once the owner
 * has not switched for STUCK_NS, and under an asymmetric Dekker exclusion:
 * the owner marks its uses with owner_in (plain stores, a compiler
 * barrier); a thief claims thief_in, makes every thread of the process
 * execute a full barrier (membarrier), then reads owner_in.  Either the
 * thief sees the owner's mark and backs off, or the owner sees the claim
 * and waits the few microseconds it lasts.  Where membarrier is missing
 * (kernels before 4.14, qemu-user) nobody steals them, as before; under
 * ThreadSanitizer, which does not know membarrier, both sides fence. */
static atomic_int membarrier_ok; /* 0: not asked yet, 1: usable, -1: not */

static void membarrier_setup(void)
{
#ifdef SQ__TSAN
    atomic_store(&membarrier_ok, 1);
#else
    if (atomic_load(&membarrier_ok) != 0)
        return;
    long r = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                     0, 0);
    atomic_store(&membarrier_ok, r == 0 ? 1 : -1);
#endif
}

/* The thief's side: a full barrier on every thread of the process. */
static bool thief_barrier(void)
{
#ifdef SQ__TSAN
    sq__fence();
    return true;
#else
    return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
#endif
}

static SQ__NOINLINE void own_wait(sq__worker *w)
{
    /* The thief holds it for one system call; if it was preempted, let it
     * run. */
    for (unsigned spins = 0;
         atomic_load_explicit(&w->thief_in, memory_order_acquire); spins++) {
        if (spins < 256)
            sq__cpu_relax();
        else
            sched_yield();
    }
}

/* Owner only, around every use of w->lifo and w->fresh.  Not nested. */
static inline void own_begin(sq__worker *w)
{
    atomic_store_explicit(&w->owner_in, 1, memory_order_relaxed);
#ifdef SQ__TSAN
    sq__fence();
#else
    atomic_signal_fence(memory_order_seq_cst); /* the thief's membarrier
                                                * does the CPU's part */
#endif
    if (SQ__UNLIKELY(atomic_load_explicit(&w->thief_in, memory_order_acquire)))
        own_wait(w);
}

static inline void own_end(sq__worker *w)
{
    atomic_store_explicit(&w->owner_in, 0, memory_order_release);
}

static inline sq__task *lifo_get(sq__worker *w)
{
    return atomic_load_explicit(&w->lifo, memory_order_relaxed);
}

static inline void lifo_set(sq__worker *w, sq__task *t)
{
    atomic_store_explicit(&w->lifo, t, memory_order_relaxed);
}

static inline int fresh_n(sq__worker *w)
{
    return atomic_load_explicit(&w->nfresh, memory_order_relaxed);
}

static inline sq__task *fresh_at(sq__worker *w, int i)
{
    return atomic_load_explicit(&w->fresh[i], memory_order_relaxed);
}

void sq__sched_notify(sq_runtime *rt);
static void watch_kick(sq_runtime *rt);

/* A task woken by w's running task goes to the LIFO slot (run next); the
 * one it displaces goes to the deque.  Hand-off wakes are not stolen while
 * w keeps switching (see may_steal), so they wake no idle worker, unless
 * none is watching for w to get stuck (watch_kick). */
static void push_local(sq__worker *w, sq__task *t)
{
    if (w->cur) {
        own_begin(w);
        sq__task *old = lifo_get(w);
        lifo_set(w, t);
        if (old)
            dq_push(w, old);
        own_end(w);
        if (old && !atomic_load_explicit(&old->handoff, memory_order_relaxed))
            sq__sched_notify(w->rt);
        else if (SQ__UNLIKELY(!atomic_load_explicit(&w->rt->nwatching,
                                                    memory_order_relaxed)))
            watch_kick(w->rt);
        return;
    }
    dq_push(w, t);
    sq__sched_notify(w->rt);
}

/* Within own_begin/own_end: moves the tasks the running task spawned to
 * the deque, last first, so that the deque hands them out in spawn order;
 * keeps the first one (returned) if keep_first.  Returns in *pushed
 * whether any went to the deque (the caller then notifies, after
 * own_end). */
static sq__task *fresh_flush(sq__worker *w, bool keep_first, bool *pushed)
{
    int n = fresh_n(w), stop = keep_first ? 1 : 0;
    atomic_store_explicit(&w->nfresh, 0, memory_order_relaxed);
    for (int i = n - 1; i >= stop; i--)
        dq_push(w, fresh_at(w, i));
    *pushed = n > stop;
    return keep_first && n > 0 ? fresh_at(w, 0) : NULL;
}

/* ---------------------------------------------------------- idle workers */

static bool oldest_is_handoff(sq__worker *v);

/* Queued work some idle worker could take now: the global queue, or a
 * worker's deque or ring whose oldest task was not queued by a hand-off
 * (such work is left to its worker while it keeps switching). */
static bool work_visible(sq_runtime *rt)
{
    if (atomic_load_explicit(&rt->gq_len, memory_order_relaxed) > 0)
        return true;
    for (int i = 0; i < rt->nworkers; i++) {
        sq__worker *v = &rt->workers[i];
        if ((rq_len(&v->rq) > 0 || dq_len(&v->dq) > 0) &&
            !oldest_is_handoff(v))
            return true;
    }
    return false;
}

static void unpark_worker(sq_runtime *rt, sq__worker *w)
{
    atomic_store(&w->parked, 0);
    sq__fence();
    if (atomic_load(&w->in_driver))
        sq__driver_wake(rt);
    else
        sq__futex_wake(&w->parked, 1);
}

void sq__sched_notify(sq_runtime *rt)
{
    sq__fence();
    if (atomic_load_explicit(&rt->nsearching, memory_order_relaxed) != 0 ||
        atomic_load_explicit(&rt->nparked, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&rt->idle_lock);
    sq__worker *pick = NULL;
    if (atomic_load(&rt->nsearching) == 0 && rt->nparked_list > 0) {
        /* Prefer a futex sleeper: the driver should stay in epoll. */
        int at = rt->nparked_list - 1;
        for (int i = rt->nparked_list - 1; i >= 0; i--)
            if (!atomic_load(&rt->workers[rt->parked_list[i]].in_driver)) {
                at = i;
                break;
            }
        pick = &rt->workers[rt->parked_list[at]];
        rt->parked_list[at] = rt->parked_list[--rt->nparked_list];
        atomic_fetch_sub(&rt->nparked, 1);
        atomic_fetch_add(&rt->nsearching, 1);
    }
    pthread_mutex_unlock(&rt->idle_lock);
    if (pick)
        unpark_worker(rt, pick);
}

void sq__sched_unpark_all(sq_runtime *rt)
{
    pthread_mutex_lock(&rt->idle_lock);
    while (rt->nparked_list > 0) {
        sq__worker *w = &rt->workers[rt->parked_list[--rt->nparked_list]];
        atomic_fetch_sub(&rt->nparked, 1);
        atomic_fetch_add(&rt->nsearching, 1);
        unpark_worker(rt, w);
    }
    pthread_mutex_unlock(&rt->idle_lock);
}

/* Removes w from the parked list if it is still there.  Returns false if
 * someone already unparked it (and counted it as searching). */
static bool unregister_parked(sq__worker *w)
{
    sq_runtime *rt = w->rt;
    bool removed = false;
    pthread_mutex_lock(&rt->idle_lock);
    for (int i = 0; i < rt->nparked_list; i++)
        if (rt->parked_list[i] == w->index) {
            rt->parked_list[i] = rt->parked_list[--rt->nparked_list];
            atomic_fetch_sub(&rt->nparked, 1);
            atomic_store(&w->parked, 0);
            removed = true;
            break;
        }
    pthread_mutex_unlock(&rt->idle_lock);
    return removed;
}

static void searching_done(sq__worker *w, bool found)
{
    if (!w->searching)
        return;
    w->searching = false;
    if (atomic_fetch_sub(&w->rt->nsearching, 1) == 1 && found &&
        work_visible(w->rt))
        sq__sched_notify(w->rt); /* last searcher found work: maybe more */
}

/* Watching.  Work a thief leaves alone for now (tasks queued by hand-offs,
 * a running worker's LIFO slot and spawn buffer, the shared queues while a
 * worker backs off) must still be taken if the worker holding it stops
 * switching: a task that computes without waiting would hold it for ever.
 * So while any other worker is awake, one parked worker parks with a
 * deadline (the watcher): it wakes after WATCH_MIN_NS, then twice as long
 * each time it finds nothing, up to WATCH_MAX_NS, looks (steal_any takes
 * from a worker stuck for STUCK_NS) and parks again.  Held work therefore
 * waits for at most about STUCK_NS + 2 * WATCH_MAX_NS once its worker
 * stops switching, and an idle worker costs a few microseconds of CPU per
 * millisecond instead of spinning.  Holding work wakes no one, except when
 * nobody watches (watch_kick). */
#define WATCH_MIN_NS (50 * SQ_USEC)
#define WATCH_MAX_NS (1 * SQ_MSEC)

/* Called by a worker that has just made held work while possibly nobody
 * watches: wakes a parked worker, which will become the watcher. */
static SQ__NOINLINE void watch_kick(sq_runtime *rt)
{
    if (atomic_load_explicit(&rt->nparked, memory_order_relaxed) == 0)
        return;
    sq__sched_notify(rt);
}

static bool may_take_shared(sq__worker *w, int64_t now);

/* For a worker about to sleep: is there work it would take now (true), or
 * only work it leaves alone for now (*held)? */
static bool work_for(sq__worker *w, bool *held)
{
    sq_runtime *rt = w->rt;
    if (lifo_get(w) || fresh_n(w) || rq_len(&w->rq) || dq_len(&w->dq))
        return true;
    bool shared = w->backoff_until == 0 || may_take_shared(w, sq_now());
    if (atomic_load_explicit(&rt->gq_len, memory_order_relaxed) > 0) {
        if (shared)
            return true;
        *held = true;
    }
    for (int i = 0; i < rt->nworkers; i++) {
        sq__worker *v = &rt->workers[i];
        if (v == w)
            continue;
        if (rq_len(&v->rq) > 0 || dq_len(&v->dq) > 0) {
            if (shared && !oldest_is_handoff(v))
                return true;
            *held = true;
        }
        if (lifo_get(v) || fresh_n(v))
            *held = true;
    }
    return false;
}

/* Sleeps until woken or, if it becomes the watcher, until its deadline.
 * Returns true if it woke because the deadline passed. */
static bool park_worker(sq__worker *w)
{
    sq_runtime *rt = w->rt;
    searching_done(w, false);
    pthread_mutex_lock(&rt->idle_lock);
    rt->parked_list[rt->nparked_list++] = w->index;
    atomic_store(&w->parked, 1);
    unsigned parked = atomic_fetch_add(&rt->nparked, 1) + 1;
    pthread_mutex_unlock(&rt->idle_lock);
    sq__fence();
    bool held = false;
    if ((work_for(w, &held) || atomic_load(&rt->stop)) && unregister_parked(w))
        return false;
    SQ__STAT_INC(w, parks);

    /* Watch if someone is awake (they may hold work), one watcher at a
     * time. */
    int64_t deadline = SQ_FOREVER;
    unsigned zero = 0;
    if ((held || parked < (unsigned)rt->nworkers) &&
        atomic_compare_exchange_strong(&rt->nwatching, &zero, 1)) {
        deadline = sq_now() + w->watch_ns;
        if (w->watch_ns < WATCH_MAX_NS)
            w->watch_ns *= 2;
    }

    bool self_removed = false, timed_out = false;
    if (pthread_mutex_trylock(&rt->driver_lock) == 0) {
        atomic_store(&w->in_driver, 1);
        sq__fence();
        while (atomic_load(&w->parked)) {
            sq__driver_poll_until(rt, deadline);
            if ((lifo_get(w) || rq_len(&w->rq) > 0 || dq_len(&w->dq) > 0) &&
                unregister_parked(w)) {
                self_removed = true;
                break;
            }
            if (deadline != SQ_FOREVER && sq_now() >= deadline &&
                unregister_parked(w)) {
                self_removed = timed_out = true;
                break;
            }
        }
        atomic_store(&w->in_driver, 0);
        pthread_mutex_unlock(&rt->driver_lock);
    } else {
        while (atomic_load(&w->parked)) {
            sq__futex_wait(&w->parked, 1, deadline);
            if (deadline != SQ_FOREVER && atomic_load(&w->parked) &&
                sq_now() >= deadline && unregister_parked(w)) {
                self_removed = timed_out = true;
                break;
            }
        }
    }
    if (deadline != SQ_FOREVER)
        atomic_fetch_sub(&rt->nwatching, 1);
    if (!self_removed)
        w->searching = true; /* the unparker counted us as searching */
    return timed_out;
}

/* ---------------------------------------------------------- finding work */

/* Hand-off affinity.  Tasks that hand locks, permits and messages to one
 * another on a worker (sq__task_wake_handoff) run best there: each
 * hand-off is a switch on one core.  Stolen, they run on two cores at
 * once, contend, and a lock granted to a task queued on the other worker
 * blocks everyone behind it until that task gets to run: convoys where
 * every acquisition pays for a park and a wake-up (up to 40x slower in
 * sync.rwlock_read_heavy).  So a thief leaves a victim's oldest queued
 * task alone if it was queued by a hand-off, as long as the victim keeps
 * switching tasks; once the victim has run one task for STUCK_NS, its
 * queue is not moving and the thief takes it.  Work that does not hand
 * off (spawned, woken by I/O, timers or joins) is stolen as before; a
 * yield keeps a task's mark. */
#define STUCK_NS (50 * SQ_USEC)

/* The task a thief would take from v, if it was queued by a hand-off.
 * Reads a slot that may be changing: tasks are never freed while the
 * runtime lives, and a wrong guess only delays or hastens one steal. */
static bool oldest_is_handoff(sq__worker *v)
{
    sq__task *x = NULL;
    /* acquire: the push that published a slot published the task too */
    long long t = atomic_load_explicit(&v->dq.top, memory_order_acquire);
    long long b = atomic_load_explicit(&v->dq.bottom, memory_order_acquire);
    unsigned h = atomic_load_explicit(&v->rq.head, memory_order_acquire);
    unsigned tl = atomic_load_explicit(&v->rq.tail, memory_order_acquire);
    if (t < b)
        x = atomic_load_explicit(&v->dq.buf[t % SQ__DQ_CAP],
                                 memory_order_relaxed);
    else if (h != tl)
        x = atomic_load_explicit(&v->rq.buf[h % SQ__RQ_CAP],
                                 memory_order_relaxed);
    return x && atomic_load_explicit(&x->handoff, memory_order_relaxed);
}

/* Has v not switched tasks for STUCK_NS, as far as w has been watching?
 * Each look notes v's switch count and since when it has not moved. */
static bool peer_stuck(sq__worker *w, sq__worker *v, int64_t now)
{
    if (!w->seen)
        return true;
    struct sq__seen *s = &w->seen[v->index];
    uint64_t sw = atomic_load_explicit(&v->stats.switches,
                                       memory_order_relaxed);
    if (sw != s->switches) {
        s->switches = sw;
        s->since = now;
        return false;
    }
    return now - s->since >= STUCK_NS;
}

static bool may_steal(sq__worker *w, sq__worker *v)
{
    if (!oldest_is_handoff(v))
        return true;
    return peer_stuck(w, v, sq_now());
}

/* Empties the LIFO slot and spawn buffer of v, which has not switched
 * for STUCK_NS (see own_begin): returns the task v would have run next and
 * queues the others on w's deque, in the order v would have run them.
 * At most once per HELD_GAP_NS from one worker: a worker that keeps
 * spawning without switching refills its buffer, and flushes it itself
 * when full; each steal costs it an interrupt (the membarrier). */
#define HELD_GAP_NS (1 * SQ_MSEC)

static sq__task *steal_held(sq__worker *w, sq__worker *v)
{
    if (atomic_load_explicit(&membarrier_ok, memory_order_relaxed) <= 0 ||
        !w->seen)
        return NULL;
    if (!lifo_get(v) && !fresh_n(v))
        return NULL;
    int64_t now = sq_now();
    if (!peer_stuck(w, v, now) || now - w->seen[v->index].held_at < HELD_GAP_NS)
        return NULL;
    w->seen[v->index].held_at = now;
    int zero = 0;
    if (!atomic_compare_exchange_strong(&v->thief_in, &zero, 1))
        return NULL; /* another thief is at it */
    sq__task *got[1 + SQ__FRESH_MAX];
    int n = 0;
    if (thief_barrier() &&
        !atomic_load_explicit(&v->owner_in, memory_order_acquire)) {
        sq__task *l = lifo_get(v);
        if (l) {
            got[n++] = l;
            lifo_set(v, NULL);
        }
        int nf = fresh_n(v);
        for (int i = 0; i < nf; i++)
            got[n++] = fresh_at(v, i);
        atomic_store_explicit(&v->nfresh, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&v->thief_in, 0, memory_order_release);
    if (n == 0)
        return NULL;
    for (int i = n - 1; i >= 1; i--)
        dq_push(w, got[i]);
    if (n > 1)
        sq__sched_notify(w->rt);
    return got[0];
}

static sq__task *steal_any(sq__worker *w)
{
    sq_runtime *rt = w->rt;
    int n = rt->nworkers;
    if (n < 2)
        return NULL;
    w->rng = w->rng * 1103515245u + 12345u;
    int start = (int)((w->rng >> 16) % (unsigned)n);
    for (int i = 0; i < n; i++) {
        sq__worker *v = &rt->workers[(start + i) % n];
        if (v == w)
            continue;
        sq__task *t = NULL;
        if (may_steal(w, v) && !(t = dq_steal(&v->dq)))
            t = rq_steal(w, v);
        if (!t)
            t = steal_held(w, v);
        if (t) {
            SQ__STAT_INC(w, steals);
            return t;
        }
    }
    return NULL;
}

/* Convoy feeding.  A task's first run that ends queued on a lock
 * (mutex, rwlock, semaphore) while the lock's hand-offs go to another
 * worker has done nothing but join a queue that worker serves; the task
 * now holds a stack, and will be resumed there, cold, when its turn
 * comes.  A worker that does this FEED_MAX times in a row, with no
 * hand-off coming its way, is feeding a convoy: starting more tasks from
 * the shared queues only makes it longer, and with a backlog of thousands
 * it grows to thousands of parked stacks, each resumed with cache and TLB
 * misses (seed.lock_contention: 360 to 1,180 ns per operation from run to
 * run, against 250-300 ns when the tasks run one after another).  So it
 * backs off for BACKOFF_NS: it leaves the global queue and other workers'
 * queues (and puts back its FIFO ring's) to the workers that are busy,
 * which start those tasks when the queue is short or empty.  If every
 * other worker sleeps, it takes work at once. */
#define FEED_MAX 16
#define BACKOFF_NS (1 * SQ_MSEC)

/* Puts w's whole FIFO ring back at the head of the global queue. */
static void rq_spill(sq__worker *w)
{
    sq__runq *q = &w->rq;
    for (;;) {
        unsigned head = atomic_load_explicit(&q->head, memory_order_acquire);
        unsigned tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
        unsigned n = tail - head;
        if (n == 0 || n > SQ__RQ_CAP)
            return;
        /* claim first, link after (see rq_push) */
        if (!atomic_compare_exchange_strong_explicit(
                &q->head, &head, head + n, memory_order_acq_rel,
                memory_order_acquire))
            continue;
        sq__task *first = NULL, *last = NULL;
        for (unsigned i = 0; i < n; i++) {
            sq__task *x = atomic_load_explicit(&q->buf[(head + i) % SQ__RQ_CAP],
                                               memory_order_relaxed);
            if (last)
                last->qnext = x;
            else
                first = x;
            last = x;
        }
        sq_runtime *rt = w->rt;
        pthread_mutex_lock(&rt->gq_lock);
        last->qnext = rt->gq_head;
        rt->gq_head = first;
        if (!rt->gq_tail)
            rt->gq_tail = last;
        atomic_fetch_add_explicit(&rt->gq_len, n, memory_order_relaxed);
        pthread_mutex_unlock(&rt->gq_lock);
        return;
    }
}

/* Notes how the first run of a task on w ended (switch_away). */
static void feed_note(sq__worker *w, sq__task *self, int action)
{
    sq__waiter *wt = atomic_load_explicit(&self->waiting,
                                          memory_order_relaxed);
    if (action != SQ__SW_PARK || !wt ||
        !(SQ__WAIT_IS_LOCK(wt->kind) || wt->kind == SQ__WAIT_SEM)) {
        w->feed = 0;
        return;
    }
    if (++w->feed < FEED_MAX || w->rt->nworkers < 2)
        return;
    w->feed = 0;
    w->backoff_until = sq_now() + BACKOFF_NS;
    rq_spill(w);
}

/* May w take work from the global queue and other workers' queues?  Not
 * while it backs off, unless every other worker sleeps. */
static bool may_take_shared(sq__worker *w, int64_t now)
{
    if (now >= w->backoff_until) {
        w->backoff_until = 0;
        return true;
    }
    sq_runtime *rt = w->rt;
    for (int i = 0; i < rt->nworkers; i++) {
        sq__worker *v = &rt->workers[i];
        if (v != w && !atomic_load_explicit(&v->parked, memory_order_relaxed))
            return false;
    }
    return true;
}

static inline bool shared_ok(sq__worker *w)
{
    return SQ__LIKELY(w->backoff_until == 0) || may_take_shared(w, sq_now());
}

static void maintenance(sq__worker *w)
{
    sq_runtime *rt = w->rt;
    /* Timers and I/O are normally driven by a parked worker; when all are
     * busy, every 61st tick polls them without waiting. */
    if (pthread_mutex_trylock(&rt->driver_lock) == 0) {
        sq__driver_poll(rt, 0);
        pthread_mutex_unlock(&rt->driver_lock);
    }
}

/* The oldest task of w's deque, if it has sat there (the deque's top has
 * not moved) for FAIR_NS: the deque is LIFO, and tasks that keep waking or
 * spawning others could otherwise hold it back forever.  Not sooner, as
 * taking old work early breaks the depth-first order of fork/join trees. */
#define FAIR_NS (10 * SQ_MSEC)

static sq__task *dq_take_stale(sq__worker *w)
{
    long long top = atomic_load_explicit(&w->dq.top, memory_order_relaxed);
    long long bot = atomic_load_explicit(&w->dq.bottom, memory_order_relaxed);
    if (top >= bot) {
        w->fair_top = -1;
        return NULL;
    }
    int64_t now = sq_now();
    if (top != w->fair_top) {
        w->fair_top = top;
        w->fair_since = now;
        return NULL;
    }
    if (now - w->fair_since < FAIR_NS)
        return NULL;
    w->fair_top = -1;
    return dq_steal(&w->dq);
}

/* Any queued task: w's deque, its FIFO ring, the global queue, then the
 * other workers' (the last two not while w backs off). */
static sq__task *take_queued(sq__worker *w)
{
    sq__task *t;
    if ((t = dq_take(&w->dq)) || (t = rq_pop(&w->rq)))
        return t;
    if (!shared_ok(w))
        return NULL;
    if ((t = global_pop(w)) || (t = steal_any(w)))
        return t;
    return NULL;
}

/* Picks the next task for w without ever blocking, or NULL.  Order: the
 * LIFO slot, the deque (newest first), the FIFO of yielded tasks, the
 * global queue, other workers.  Every 61st tick the oldest work goes first
 * instead (global queue, FIFO, oldest in the deque), so nothing waits
 * forever behind tasks that keep waking or spawning each other. */
static sq__task *find_work(sq__worker *w)
{
    sq__task *t;
    bool pushed = false;
    if (++w->tick % 61 == 0) {
        maintenance(w);
        if ((shared_ok(w) && (t = global_pop_max(w, 1))) ||
            (t = rq_pop(&w->rq)) || (t = dq_take_stale(w))) {
            /* Tasks just spawned wait behind it, where others may take
             * them.  (If nothing older is found they run next, below, and
             * no other worker needs waking for them.) */
            if (fresh_n(w)) {
                own_begin(w);
                fresh_flush(w, false, &pushed);
                own_end(w);
            }
            goto found;
        }
    }
    own_begin(w);
    if ((t = lifo_get(w))) {
        lifo_set(w, NULL);
        if (fresh_n(w))
            fresh_flush(w, false, &pushed);
        own_end(w);
        if (pushed)
            sq__sched_notify(w->rt);
        return t;
    }
    if (fresh_n(w)) {
        t = fresh_flush(w, true, &pushed);
        own_end(w);
        if (pushed)
            sq__sched_notify(w->rt);
        return t;
    }
    own_end(w);
    if ((t = take_queued(w)))
        goto found;
    /* Nothing queued: poll the driver once so I/O and timers are not
     * starved while the workers keep busy switching among waiting tasks. */
    maintenance(w);
    own_begin(w);
    if ((t = lifo_get(w)))
        lifo_set(w, NULL);
    own_end(w);
    if (t || (t = dq_take(&w->dq)) || (t = rq_pop(&w->rq)))
        goto found;
    return NULL;
found:
    if (pushed)
        sq__sched_notify(w->rt);
    searching_done(w, true);
    return t;
}

/* An idle worker spins briefly before parking: a futex wake-up costs
 * several microseconds on each side, more than most gaps between bursts of
 * work.  Spinning is bounded (SPIN_NS) and at most half of the workers
 * spin at once; while one spins it counts as searching, so whoever makes
 * work visible does not pay for waking a parked worker.  A worker woken by
 * its watch deadline does not spin (see park_worker), nor does one that
 * backs off (see feed_note). */
#define SPIN_NS (50 * SQ_USEC)

static sq__task *spin_for_work(sq__worker *w)
{
    sq_runtime *rt = w->rt;
    if (!shared_ok(w))
        return NULL; /* backing off: only its own queues, already empty */
    if (!w->searching) {
        unsigned n = atomic_load(&rt->nsearching);
        if (2 * n >= (unsigned)rt->nworkers && rt->nworkers > 1)
            return NULL;
        atomic_fetch_add(&rt->nsearching, 1);
        w->searching = true;
    }
    int64_t until = sq_now() + SPIN_NS;
    do {
        for (int i = 0; i < 64; i++)
            sq__cpu_relax();
        sq__task *t = take_queued(w);
        if (t) {
            searching_done(w, true);
            return t;
        }
    } while (!atomic_load_explicit(&rt->stop, memory_order_relaxed) &&
             sq_now() < until);
    return NULL; /* park_worker ends the searching state */
}

/* As find_work, but also starts tasks that have not run yet: allocates
 * their stack, or finishes them at once if they were aborted before
 * starting or no stack could be had. */
static sq__task *next_runnable(sq__worker *w)
{
    for (;;) {
        sq__task *t = find_work(w);
        if (!t || t->started)
            return t;
        if (sq__task_prepare(w, t) == 0)
            return t;
        /* finished without running; try the next one */
    }
}

/* ---------------------------------------------------- deterministic mode */

atomic_int sq__det_runtimes;

/* splitmix64: a full-period generator whose every output is well mixed,
 * so consecutive seeds give unrelated schedules. */
static uint64_t det_next64(sq__worker *w)
{
    uint64_t z = (w->det_rng += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* A number in [0, n), n > 0 (multiply-shift: no division, tiny bias). */
static uint32_t det_below(sq__worker *w, uint32_t n)
{
    return (uint32_t)(((det_next64(w) >> 32) * n) >> 32);
}

/* Makes room for `need` tasks in the array.  False if that cannot be had:
 * then what does not fit stays where it is queued, for a later pick. */
static bool det_reserve(sq__worker *w, size_t need)
{
    if (need <= w->det_cap)
        return true;
    size_t cap = w->det_cap ? w->det_cap : 64;
    while (cap < need)
        cap *= 2;
    if (cap > UINT32_MAX)
        return false;
    sq__task **b = realloc(w->det_buf, cap * sizeof *b);
    if (!b)
        return false;
    w->det_buf = b;
    w->det_cap = (uint32_t)cap;
    return true;
}

/* Moves every queued task of the runtime (one worker: all of them are
 * w's or in the global queue) into the array, always in the same order. */
static void det_collect(sq__worker *w)
{
    sq_runtime *rt = w->rt;
    size_t need = (size_t)w->det_n + (lifo_get(w) != NULL) +
                  (size_t)fresh_n(w) +
                  (size_t)dq_len(&w->dq) + rq_len(&w->rq) +
                  (size_t)atomic_load_explicit(&rt->gq_len,
                                               memory_order_relaxed);
    (void)det_reserve(w, need);
#define DET_ROOM() (w->det_n < w->det_cap)
    sq__task *t;
    /* One worker: no thief, so no own_begin. */
    if ((t = lifo_get(w)) && DET_ROOM()) {
        w->det_buf[w->det_n++] = t;
        lifo_set(w, NULL);
    }
    int i = 0, nf = fresh_n(w);
    while (i < nf && DET_ROOM())
        w->det_buf[w->det_n++] = fresh_at(w, i++);
    if (i > 0) {
        for (int j = i; j < nf; j++)
            atomic_store_explicit(&w->fresh[j - i], fresh_at(w, j),
                                  memory_order_relaxed);
        atomic_store_explicit(&w->nfresh, nf - i, memory_order_relaxed);
    }
    while (DET_ROOM() && (t = dq_steal(&w->dq)))
        w->det_buf[w->det_n++] = t;
    while (DET_ROOM() && (t = rq_pop(&w->rq)))
        w->det_buf[w->det_n++] = t;
    if (DET_ROOM() &&
        atomic_load_explicit(&rt->gq_len, memory_order_relaxed) > 0) {
        pthread_mutex_lock(&rt->gq_lock);
        while (DET_ROOM() && (t = rt->gq_head)) {
            rt->gq_head = t->qnext;
            atomic_fetch_sub_explicit(&rt->gq_len, 1, memory_order_relaxed);
            w->det_buf[w->det_n++] = t;
        }
        if (!rt->gq_head)
            rt->gq_tail = NULL;
        pthread_mutex_unlock(&rt->gq_lock);
    }
#undef DET_ROOM
}

/* The deterministic find_work: one of the runnable tasks, drawn at
 * random, or NULL if there is none.  With may_stay (a yield) the yielding
 * task is one more candidate: drawing it sets *stay and returns NULL.
 * Timers and I/O are polled every 61st pick, as find_work does, so that a
 * task that yields in a loop waiting for them is not starved. */
static sq__task *det_pick(sq__worker *w, bool may_stay, bool *stay)
{
    if (++w->tick % 61 == 0)
        maintenance(w);
    det_collect(w);
    uint32_t n = w->det_n;
    if (n == 0)
        return NULL;
    uint32_t r = det_below(w, may_stay ? n + 1 : n);
    if (r == n) {
        *stay = true;
        return NULL;
    }
    sq__task *t = w->det_buf[r];
    w->det_buf[r] = w->det_buf[--w->det_n];
    searching_done(w, true);
    return t;
}

/* next_runnable for deterministic mode. */
static sq__task *det_next_runnable(sq__worker *w, bool may_stay, bool *stay)
{
    for (;;) {
        sq__task *t = det_pick(w, may_stay, stay);
        if (!t || t->started)
            return t;
        if (sq__task_prepare(w, t) == 0)
            return t;
    }
}

void sq__sched_point_slow(void)
{
    sq__worker *w = sq__worker_current();
    if (w && w->det && w->cur)
        sq__sched_switch_away(SQ__SW_YIELD);
}

/* -------------------------------------------------------------- switching */

static void settle(sq__worker *w)
{
    sq__task *p = w->prev;
    if (!p)
        return;
    w->prev = NULL;
    switch (w->prev_action) {
    case SQ__SW_PARK: {
        int exp = SQ__T_RUNNING;
        if (atomic_compare_exchange_strong(&p->state, &exp, SQ__T_PARKED))
            break;
        /* A wake-up arrived while it was switching out: run it again. */
        atomic_store(&p->state, SQ__T_QUEUED);
        dq_push(w, p);
        sq__sched_notify(w->rt);
        break;
    }
    case SQ__SW_YIELD:
        /* A release store, not seq_cst (an xchg on x86, 13% of a yield's
         * cost): rq_push publishes the task, and nothing after this looks
         * at another thread's writes.  A wake-up that lands meanwhile finds
         * the task not parked and does nothing, as before. */
        atomic_store_explicit(&p->state, SQ__T_QUEUED, memory_order_release);
        rq_push(w, p);
        /* Tell a parked worker, if any: this worker goes on with another
         * task, and if that one computes without switching (or spins
         * until the yielded task has done something), the yielded task
         * would wait for it, however long, while other workers sleep
         * (parked workers only hear of pushes that notify).  A task
         * queued by a hand-off wakes nobody (thieves leave it alone while
         * this worker switches, and the releaser's yield after every
         * contended unlock must stay cheap); it only needs a watcher, as
         * other held work does (watch_kick).  One relaxed load in the
         * common case (every worker busy).  Without the fence
         * sq__sched_notify pays first, a worker parking at this very
         * instant can miss the task; it then parks as the watcher (this
         * worker is awake), so the task waits for one watch period at
         * most. */
        if (SQ__UNLIKELY(atomic_load_explicit(&w->rt->nparked,
                                              memory_order_relaxed))) {
            if (!atomic_load_explicit(&p->handoff, memory_order_relaxed))
                sq__sched_notify(w->rt);
            else if (!atomic_load_explicit(&w->rt->nwatching,
                                           memory_order_relaxed))
                watch_kick(w->rt);
        }
        break;
    case SQ__SW_EXIT:
        sq__task_settle_exit(w, p);
        break;
    }
}

/* Switches from the context `from` (a task's, or the scheduler's) to task
 * `to`, or to the scheduler context if to is NULL, telling the sanitizers
 * about the change of stack.  Returns when `from` is resumed. */
static void do_switch(sq__worker *w, sq__ctx *from, sq__task *to, bool dying)
{
#ifdef SQ__ASAN
    void *fake = NULL;
    const void *bottom = to ? to->stack->base : w->sched_stack_lo;
    size_t size = to ? to->stack->size : w->sched_stack_size;
    __sanitizer_start_switch_fiber(dying ? NULL : &fake, bottom, size);
#else
    (void)dying;
#endif
#ifdef SQ__TSAN
    __tsan_switch_to_fiber(to ? to->tsan_fiber : w->tsan_fiber, 0);
#endif
    if (to) {
        atomic_exchange_explicit(&to->state, SQ__T_RUNNING,
                                 memory_order_acq_rel);
        SQ__STAT_INC(w, switches);
        /* a hand-off came here: this worker serves the lock's queue */
        if (atomic_load_explicit(&to->handoff, memory_order_relaxed))
            w->feed = 0;
    }
    w->cur = to;
    sq__ctx_switch(from, to ? &to->ctx : &w->sched_ctx);
#ifdef SQ__ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

/* Called by the running task to park, yield or exit.  Picks the next task
 * and switches straight to it (or to the scheduler context).  Returns when
 * the task is resumed, possibly on another worker. */
void sq__sched_switch_away(int action)
{
    sq__worker *w = sq__worker_current();
    sq__task *self = w->cur;
    sq__task *next;
    sq__stack_check(self);
    if (SQ__UNLIKELY(!self->ran_once)) {
        self->ran_once = true;
        feed_note(w, self, action);
    }
    if (SQ__UNLIKELY(w->det)) {
        bool stay = false;
        next = det_next_runnable(w, action == SQ__SW_YIELD, &stay);
        if (stay)
            return; /* the draw chose the yielding task: go on */
    } else {
        next = next_runnable(w);
    }
    if (!next && action == SQ__SW_YIELD)
        return; /* nothing else to run: keep going */
    w->prev = self;
    w->prev_action = action;
    do_switch(w, &self->ctx, next, action == SQ__SW_EXIT);
    settle(sq__worker_current());
}

void sq__task_park(void)
{
    sq__sched_switch_away(SQ__SW_PARK);
}

/* First code run on a new task's stack. */
void sq__task_entry_settle(void)
{
#ifdef SQ__ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    settle(sq__worker_current());
}

/* ---------------------------------------------------------------- waking */

static void task_wake(sq__task *t, bool handoff);

void sq__task_wake(sq__task *t)
{
    task_wake(t, false);
}

void sq__task_wake_handoff(sq__task *t)
{
    task_wake(t, true);
}

static void task_wake(sq__task *t, bool handoff)
{
    /* Always a read-modify-write, so that it is ordered against the
     * exchange that starts the task running: whatever the waker published
     * before waking is visible to the task once it runs (see do_switch). */
    int old = atomic_fetch_or_explicit(&t->state, SQ__T_NOTIFIED,
                                       memory_order_acq_rel);
    if (old != SQ__T_PARKED)
        return; /* running (it will not park), queued, notified, or done */
    atomic_store_explicit(&t->state, SQ__T_QUEUED, memory_order_relaxed);
    sq__worker *w = sq__worker_current();
    bool local = w && w->rt == t->rt;
    atomic_store_explicit(&t->handoff, handoff && local, memory_order_relaxed);
    if (local)
        push_local(w, t);
    else
        global_push(t->rt, t);
}

/* Tasks spawned by a running task are held back (in w->fresh) until it
 * switches away; then the first one runs at once and the others go to the
 * deque so that they start in spawn order, ahead of older work.  Spawn +
 * join stays on one core, and a tree of spawns (fork/join) runs depth
 * first, with few stacks live at once; idle workers steal the oldest,
 * largest pieces of work from the other end of the deque. */
void sq__sched_push_new(sq_runtime *rt, sq__task *t)
{
    sq__worker *w = sq__worker_current();
    if (w && w->rt == rt && w->cur) {
        bool pushed = false;
        own_begin(w);
        int n = fresh_n(w);
        if (n == SQ__FRESH_MAX) {
            fresh_flush(w, false, &pushed);
            n = 0;
        }
        atomic_store_explicit(&w->fresh[n], t, memory_order_relaxed);
        atomic_store_explicit(&w->nfresh, n + 1, memory_order_relaxed);
        own_end(w);
        if (pushed)
            sq__sched_notify(rt);
        else if (SQ__UNLIKELY(!atomic_load_explicit(&rt->nwatching,
                                                    memory_order_relaxed)))
            watch_kick(rt);
    } else if (w && w->rt == rt) {
        dq_push(w, t);
        sq__sched_notify(rt);
    } else {
        global_push(rt, t);
    }
}

/* ------------------------------------------------------------ the workers */

static void *worker_main(void *arg)
{
    sq__worker *w = arg;
    sq_runtime *rt = w->rt;
    tls_worker = w;
    /* Writes to a closed pipe must return EPIPE, not kill the process. */
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
#ifdef SQ__TSAN
    w->tsan_fiber = __tsan_get_current_fiber();
#endif
#ifdef SQ__ASAN
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstack(&attr, &w->sched_stack_lo, &w->sched_stack_size);
        pthread_attr_destroy(&attr);
    }
#endif
    sq__overflow_handler_install(w);
    bool watched = false; /* woken by the watch deadline, not for work */
    for (;;) {
        bool stay = false; /* not used: no yield here */
        sq__task *t = SQ__UNLIKELY(w->det) ? det_next_runnable(w, false, &stay)
                                           : next_runnable(w);
        if (t) {
            w->watch_ns = WATCH_MIN_NS;
            do_switch(w, &w->sched_ctx, t, false);
            settle(w);
            continue;
        }
        if (atomic_load(&rt->stop))
            break;
        if (!w->det && !watched && (t = spin_for_work(w))) {
            w->watch_ns = WATCH_MIN_NS;
            if (t->started || sq__task_prepare(w, t) == 0) {
                do_switch(w, &w->sched_ctx, t, false);
                settle(w);
            }
            continue;
        }
        watched = park_worker(w);
    }
    sq__overflow_handler_remove(w);
    tls_worker = NULL;
    return NULL;
}

int sq__sched_start(sq_runtime *rt)
{
    if (rt->seed)
        atomic_fetch_add(&sq__det_runtimes, 1); /* sq__sched_stop: -1 */
    if (rt->nworkers > 1)
        membarrier_setup();
    for (int i = 0; i < rt->nworkers; i++) {
        sq__worker *w = &rt->workers[i];
        w->rt = rt;
        w->index = i;
        w->rng = 0x9e3779b9u * (unsigned)(i + 1);
        w->fair_top = -1;
        w->det = rt->seed != 0;
        w->det_rng = rt->seed;
        w->watch_ns = WATCH_MIN_NS;
        w->seen = calloc((size_t)rt->nworkers, sizeof *w->seen);
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 1 << 20);
        int rc = pthread_create(&w->thread, &attr, worker_main, w);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            free(w->seen);
            w->seen = NULL;
            rt->nworkers = i; /* stop the ones that started */
            sq__sched_stop(rt);
            return -EAGAIN;
        }
    }
    rt->workers_started = true;
    return 0;
}

void sq__sched_stop(sq_runtime *rt)
{
    atomic_store(&rt->stop, 1);
    for (int i = 0; i < rt->nworkers; i++) {
        sq__sched_unpark_all(rt);
        sq__driver_wake(rt);
    }
    for (int i = 0; i < rt->nworkers; i++) {
        /* A worker may re-park between our unpark and its stop check;
         * keep waking until it exits. */
        while (pthread_tryjoin_np(rt->workers[i].thread, NULL) != 0) {
            sq__sched_unpark_all(rt);
            sq__driver_wake(rt);
            sched_yield();
        }
    }
    for (int i = 0; i < rt->nworkers; i++) {
        free(rt->workers[i].seen);
        rt->workers[i].seen = NULL;
    }
    if (rt->seed) {
        for (int i = 0; i < rt->nworkers; i++) {
            free(rt->workers[i].det_buf);
            rt->workers[i].det_buf = NULL;
            rt->workers[i].det_n = rt->workers[i].det_cap = 0;
        }
        atomic_fetch_sub(&sq__det_runtimes, 1);
    }
}
