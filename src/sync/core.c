/* The batch semaphore every sync primitive is built on.
 *
 * State.  One atomic word, s->_state = available << 2 | WAITERS | CLOSED,
 * and a spin lock over an intrusive FIFO of waiters, each a sem_waiter on
 * the waiting task's own stack.  Keeping the has-waiters flag in the same
 * word as the count makes every transition (take, give, queue) a single
 * atomic read-modify-write, so no separate fence is needed to order "I set
 * the flag" against "I added permits".
 *
 * Invariants.
 *  1. WAITERS is set and cleared only under the lock, and under the lock
 *     WAITERS <=> the queue is non-empty.
 *  2. While WAITERS is set the available count is 0: nobody adds to the
 *     word then (release sees the flag and hands permits to the queue
 *     under the lock instead), and the waiter that sets the flag takes
 *     whatever was available in the same CAS.
 *  3. Only the head waiter can hold a partial assignment (permits are
 *     assigned in queue order).
 * Hence fairness: the fast paths refuse when WAITERS is set, so nothing is
 * ever taken past a waiter.
 *
 * Hand-off.  The releaser assigns and signals under the lock (the rule of
 * struct sq__waiter) and wakes the tasks it signalled after unlocking, so
 * the lock is never held across a run-queue push or a worker wake-up; the
 * woken waiter takes the lock before it returns.
 * Permits become available in the word only through a lock-free CAS that
 * is its caller's last touch of the semaphore, never while the lock is
 * held: so when any acquire returns, the release that fed it has finished
 * with the semaphore (what lets a oneshot or a mutex live on a stack).
 * Leftovers (the queue emptied while permits were being handed out) are
 * therefore added back after unlocking, through the ordinary release path;
 * for that instant they are in the releaser's hand, and a try_acquire can
 * see -EAGAIN.  The exception is close: once CLOSED is set nobody can
 * take permits, so the partial assignments it takes back go to the count
 * under the lock, and its unlock is its last touch (a waiter it woke may
 * free the semaphore once it has had the lock).
 *
 * Cancellation.  A waiter whose wait ends without a grant (timeout,
 * cancellation) takes the lock; if it was granted meanwhile it keeps the
 * permits and succeeds, else it leaves the queue and gives back its
 * partial assignment to the next waiters (or to the word).
 *
 * Cost.  Acquire and release of a free semaphore: one CAS each.  Contended:
 * one spin-lock section on each side plus the wake-up.  No path allocates.
 */
#include "core.h"

_Static_assert(sizeof(sq__spin) == sizeof(atomic_int),
               "sq_sem._lock must be able to hold an sq__spin");

typedef struct sem_waiter {
    sq__waiter w;
    size_t want; /* permits asked for */
    size_t need; /* of those, not yet assigned (under the lock) */
} sem_waiter;

static inline sq__spin *sem_lock(sq_sem *s)
{
    return (sq__spin *)(void *)&s->_lock;
}

static inline uint64_t permits(size_t n)
{
    return (uint64_t)n << SQ__SEM_SHIFT;
}

static inline size_t avail_of(uint64_t state)
{
    return (size_t)(state >> SQ__SEM_SHIFT);
}

void sq__sem_init(sq_sem *s, size_t n)
{
    atomic_init(&s->_state, permits(n));
    atomic_init(&s->_lock, 0);
    s->_flags = 0;
    sq__list_init(&s->_waiters);
}

/* ------------------------------------------------------------ the queue */

static void queue_push(sq_sem *s, sq__waiter *w)
{
    sq__list_push_back(&s->_waiters, &w->link);
}

static void queue_remove(sq_sem *s, sq__waiter *w)
{
    sq__list_remove(&s->_waiters, &w->link);
}

/* Under the lock: clears WAITERS if the queue has become empty
 * (invariant 1).  The count is 0 (invariant 2), so this
 * makes nothing available. */
static void settle_flag_locked(sq_sem *s)
{
    if (sq__list_empty(&s->_waiters))
        atomic_fetch_and_explicit(&s->_state, ~SQ__SEM_WAITERS,
                                  memory_order_relaxed);
}

/* Tasks to wake once the lock is released.  A wake-up moves a task to a
 * run queue and may wake a worker thread (a system call), which must not
 * lengthen the time the lock is held: the other side spins on it.  Waiters
 * are marked signalled under the lock (the rule of struct sq__waiter) and
 * their tasks woken after it (sq__waiter_signal); a full list wakes the
 * rest on the spot, and so do wakers outside the task's runtime. */
#define WAKE_BATCH 16

typedef struct wake_list {
    int n;
    sq__task *task[WAKE_BATCH];
} wake_list;

static void signal_locked(wake_list *wl, sq__waiter *w)
{
    sq__task *t = sq__waiter_signal(w);
    if (!t)
        return;
    /* Only a worker of the task's own runtime may wake it late: the
     * runtime cannot go away under it.  A plain thread (or another
     * runtime) wakes it now, under the lock, which the woken task must
     * take before it can finish, so the runtime outlives the wake-up. */
    bool local = sq__task_is_local(t);
    if (wl->n < WAKE_BATCH && local)
        wl->task[wl->n++] = t;
    else if (local)
        sq__task_wake_handoff(t);
    else
        sq__task_wake(t);
}

static void wake_listed(wake_list *wl)
{
    for (int i = 0; i < wl->n; i++)
        sq__task_wake_handoff(wl->task[i]);
    wl->n = 0;
}

/* Under the lock, with WAITERS set: assigns `n` permits to the waiters in
 * order, signalling each one that is fully served (woken by the caller,
 * after unlocking, through wl).  Returns the permits left
 * over, which is non-zero only if the queue emptied (the caller adds them
 * back after unlocking). */
static size_t dispatch_locked(sq_sem *s, size_t n, wake_list *wl)
{
    while (n && !sq__list_empty(&s->_waiters)) {
        sq__waiter *w = sq__waiter_of(s->_waiters.head);
        sem_waiter *sw = sq__container_of(w, sem_waiter, w);
        size_t take = n < sw->need ? n : sw->need;
        sw->need -= take;
        n -= take;
        if (sw->need)
            break; /* partial assignment to the head; n is now 0 */
        queue_remove(s, w);
        w->status = 0;
        signal_locked(wl, w);
    }
    settle_flag_locked(s);
    return n;
}

/* ------------------------------------------------------------- acquire */

static int acquire_slow(sq_sem *s, size_t n, int64_t deadline,
                        bool cancellable, int kind)
{
    sem_waiter sw;
    sq__waiter_init_for(&sw.w, kind, s);
    sw.want = n;

    sq__spin_lock(sem_lock(s));
    uint64_t old = atomic_load_explicit(&s->_state, memory_order_relaxed);
    size_t got;
    for (;;) {
        if (old & SQ__SEM_CLOSED) {
            sq__spin_unlock(sem_lock(s));
            return -ESHUTDOWN;
        }
        if (old & SQ__SEM_WAITERS) {
            got = 0; /* others queued first; the count is 0 anyway */
            break;
        }
        /* Queue empty: the permits may have come back since the fast
         * path looked. */
        size_t avail = avail_of(old);
        if (avail >= n) {
            if (atomic_compare_exchange_weak_explicit(
                    &s->_state, &old, old - permits(n), memory_order_acquire,
                    memory_order_relaxed)) {
                sq__spin_unlock(sem_lock(s));
                return 0;
            }
            continue;
        }
        /* Raise the flag and take what there is, in one step. */
        if (atomic_compare_exchange_weak_explicit(
                &s->_state, &old, SQ__SEM_WAITERS, memory_order_acquire,
                memory_order_relaxed)) {
            got = avail;
            break;
        }
    }
    sw.need = n - got;
    queue_push(s, &sw.w);
    sq__spin_unlock(sem_lock(s));

    bool counted = kind == SQ__WAIT_MUTEX || kind == SQ__WAIT_RWLOCK ||
                   kind == SQ__WAIT_SEM;
    int64_t started = counted ? sq_now() : 0;
    int rc = sq__waiter_wait(&sw.w, deadline, cancellable);

    /* Always retake the lock: the waker may still be inside the wake-up
     * (see struct sq__waiter), and a grant may have raced with rc. */
    sq__spin_lock(sem_lock(s));
    if (atomic_load_explicit(&sw.w.signalled, memory_order_acquire)) {
        rc = sw.w.status; /* granted (0) or closed (-ESHUTDOWN) */
        sq__spin_unlock(sem_lock(s));
        if (counted)
            sq__sync_stat_wait(started, rc);
        return rc;
    }
    /* Timed out or cancelled while still queued: leave, and pass on what
     * was assigned (only the head can have a partial assignment). */
    queue_remove(s, &sw.w);
    size_t back = n - sw.need;
    wake_list wl = {.n = 0};
    if (!sq__list_empty(&s->_waiters) && back)
        back = dispatch_locked(s, back, &wl);
    else
        settle_flag_locked(s);
    sq__spin_unlock(sem_lock(s));
    wake_listed(&wl);
    if (back)
        sq__sem_release(s, back, SQ_SEM_MAX_PERMITS, SQ__SEM_OVER_SATURATE, 0);
    if (counted)
        sq__sync_stat_wait(started, rc);
    return rc;
}

int sq__sem_acquire(sq_sem *s, size_t n, int64_t deadline, bool cancellable)
{
    return sq__sem_acquire_as(s, n, deadline, cancellable, SQ__WAIT_SEM);
}

int sq__sem_acquire_as(sq_sem *s, size_t n, int64_t deadline,
                       bool cancellable, int kind)
{
    uint64_t old = atomic_load_explicit(&s->_state, memory_order_relaxed);
    while (!(old & SQ__SEM_FLAGS) && avail_of(old) >= n) {
        if (atomic_compare_exchange_weak_explicit(
                &s->_state, &old, old - permits(n), memory_order_acquire,
                memory_order_relaxed))
            return 0;
    }
    if (old & SQ__SEM_CLOSED)
        return -ESHUTDOWN;
    return acquire_slow(s, n, deadline, cancellable, kind);
}

int sq__sem_try_acquire(sq_sem *s, size_t n)
{
    uint64_t old = atomic_load_explicit(&s->_state, memory_order_relaxed);
    for (;;) {
        if (old & SQ__SEM_CLOSED)
            return -ESHUTDOWN;
        if ((old & SQ__SEM_WAITERS) || avail_of(old) < n)
            return -EAGAIN;
        if (atomic_compare_exchange_weak_explicit(
                &s->_state, &old, old - permits(n), memory_order_acquire,
                memory_order_relaxed))
            return 0;
    }
}

/* ------------------------------------------------------------- release */

/* The tasks handed permits are woken; with `yield`, a task releasing
 * from a worker then lets them run before it goes on (see
 * sq__sem_release_lock in core.h).  s is not touched here: it may be gone
 * once the permits are handed over. */
static int released(wake_list *wl, bool yield, int rc)
{
    int woke = wl->n;
    wake_listed(wl);
    if (yield && woke)
        sq__task_yield_handoff();
    return rc;
}

static int release(sq_sem *s, size_t n, size_t limit, enum sq__sem_over over,
                   int err, bool yield)
{
    if (n == 0)
        return 0;
    wake_list wl = {.n = 0};
    for (;;) {
        /* Nobody waits: add to the count, lock-free; this CAS is the last
         * touch of s.  (Even a saturated no-op is a CAS: a release RMW,
         * so a waiter that consumes the stored permit sees our writes.) */
        uint64_t old = atomic_load_explicit(&s->_state, memory_order_relaxed);
        while (!(old & SQ__SEM_WAITERS)) {
            size_t avail = avail_of(old);
            size_t add = n;
            if (avail > limit || n > limit - avail) {
                if (over == SQ__SEM_OVER_FAIL)
                    return released(&wl, yield, err);
                add = avail >= limit ? 0 : limit - avail;
            }
            if (atomic_compare_exchange_weak_explicit(
                    &s->_state, &old, old + permits(add),
                    memory_order_release, memory_order_relaxed))
                return released(&wl, yield, 0);
        }
        /* Waiters: hand the permits over under the lock. */
        sq__spin_lock(sem_lock(s));
        if (atomic_load_explicit(&s->_state, memory_order_relaxed) &
            SQ__SEM_WAITERS)
            n = dispatch_locked(s, n, &wl);
        sq__spin_unlock(sem_lock(s));
        if (n == 0)
            return released(&wl, yield, 0);
        /* The queue emptied (or was empty by the time we locked): add the
         * rest to the count. */
    }
}

int sq__sem_release(sq_sem *s, size_t n, size_t limit, enum sq__sem_over over,
                    int err)
{
    return release(s, n, limit, over, err, false);
}

int sq__sem_release_lock(sq_sem *s, size_t n, size_t limit, int err)
{
    return release(s, n, limit, SQ__SEM_OVER_FAIL, err, true);
}

/* ------------------------------------------------- notify_all, close */

void sq__sem_grant_all(sq_sem *s)
{
    if (!(atomic_load_explicit(&s->_state, memory_order_acquire) &
          SQ__SEM_WAITERS))
        return;
    wake_list wl = {.n = 0};
    sq__spin_lock(sem_lock(s));
    while (!sq__list_empty(&s->_waiters)) {
        sq__waiter *w = sq__waiter_of(s->_waiters.head);
        sq__container_of(w, sem_waiter, w)->need = 0;
        queue_remove(s, w);
        w->status = 0;
        signal_locked(&wl, w);
    }
    settle_flag_locked(s);
    sq__spin_unlock(sem_lock(s));
    wake_listed(&wl);
}

/* Under the lock, with CLOSED set: adds n permits to the count
 * (saturating at SQ_SEM_MAX_PERMITS).  Safe under the lock only because
 * the semaphore is closed: no acquire can take them, so none can return
 * because of them before the unlock. */
static void give_back_closed_locked(sq_sem *s, size_t n)
{
    uint64_t old = atomic_load_explicit(&s->_state, memory_order_relaxed);
    for (;;) {
        size_t avail = avail_of(old);
        size_t add = n > SQ_SEM_MAX_PERMITS - avail ? SQ_SEM_MAX_PERMITS - avail
                                                    : n;
        if (atomic_compare_exchange_weak_explicit(
                &s->_state, &old, old + permits(add), memory_order_release,
                memory_order_relaxed))
            return;
    }
}

/* A waiter woken here may free s as soon as it has had the lock after us
 * (the rule of struct sq__waiter), so everything, the partial assignments
 * given back included, is done before the unlock, which is the last touch
 * of s; the tasks woken after it are the waiters' own, not s. */
void sq__sem_close(sq_sem *s)
{
    size_t back = 0;
    wake_list wl = {.n = 0};
    sq__spin_lock(sem_lock(s));
    atomic_fetch_or_explicit(&s->_state, SQ__SEM_CLOSED, memory_order_release);
    while (!sq__list_empty(&s->_waiters)) {
        sq__waiter *w = sq__waiter_of(s->_waiters.head);
        sem_waiter *sw = sq__container_of(w, sem_waiter, w);
        back += sw->want - sw->need;
        queue_remove(s, w);
        w->status = -ESHUTDOWN;
        signal_locked(&wl, w);
    }
    settle_flag_locked(s);
    if (back)
        give_back_closed_locked(s, back);
    sq__spin_unlock(sem_lock(s));
    wake_listed(&wl);
}

bool sq__sem_has_waiters(sq_sem *s)
{
    return atomic_load_explicit(&s->_state, memory_order_relaxed) &
           SQ__SEM_WAITERS;
}
