/* sq_rwlock: a semaphore of MAX permits (SQ_RWLOCK_MAX_READERS); a read
 * lock takes 1, the write lock takes MAX, a downgrade gives back MAX - 1.
 * The core's FIFO with partial hand-off to the head waiter is what keeps
 * a queued writer from starving: it takes what is available when it
 * queues, is assigned each read permit as it comes back, and the readers
 * that arrive meanwhile queue behind it (the fast paths refuse while
 * anyone waits).
 *
 * The fast paths guess the common state first (free, or held by the one
 * reader about to unlock), so an uncontended lock or unlock is a single
 * CAS with no load before it; a failed guess leaves the real state in
 * `old` for the next try.  Whenever someone waits, or a count would leave
 * its range, the call goes through the core, which hands permits to the
 * waiters or refuses with -EPERM (SQ__SEM_OVER_FAIL).  The lock is never
 * closed, so the core never returns -ESHUTDOWN here.
 *
 * With the run-time checks on (SQ__CHECKS()), every lock call goes through
 * lock_checked, which tells the checks before and after (as in mutex.c),
 * and every unlock tells them first, before another can take the lock.
 * Lock and unlock calls are scheduling points of the deterministic mode
 * (sq__sched_point, as in mutex.c). */
#include "squirrel/rwlock.h"

#include "core.h"

#define MAX SQ_RWLOCK_MAX_READERS
#define ONE ((uint64_t)1 << SQ__SEM_SHIFT)
#define FREE ((uint64_t)MAX << SQ__SEM_SHIFT)
#define WRITE_HELD ((uint64_t)0)

_Static_assert(SQ_RWLOCK_MAX_READERS <= SQ_SEM_MAX_PERMITS,
               "the readers must fit in a semaphore");

int sq_rwlock_init_named(sq_rwlock *l, const char *cls)
{
    sq__sem_init(&l->_sem, MAX);
    l->_class = cls;
    return 0;
}

int(sq_rwlock_init)(sq_rwlock *l)
{
    return sq_rwlock_init_named(l, NULL);
}

void sq_rwlock_allow_hold_across_waits(sq_rwlock *l)
{
    l->_sem._flags |= SQ__SEM_F_MAY_WAIT;
}

int sq_rwlock_destroy(sq_rwlock *l)
{
    uint64_t st = atomic_load_explicit(&l->_sem._state, memory_order_acquire);
    return st == FREE ? 0 : -EBUSY;
}

/* One read permit if nobody waits and one is available: true if taken.
 * With no flags set, "at least one available" is state >= ONE. */
static inline bool read_fast(sq_rwlock *l)
{
    uint64_t old = FREE;
    while (!(old & SQ__SEM_FLAGS) && old >= ONE) {
        if (atomic_compare_exchange_weak_explicit(
                &l->_sem._state, &old, old - ONE, memory_order_acquire,
                memory_order_relaxed))
            return true;
    }
    return false;
}

static inline bool write_fast(sq_rwlock *l)
{
    uint64_t expect = FREE;
    return atomic_compare_exchange_strong_explicit(
        &l->_sem._state, &expect, WRITE_HELD, memory_order_acquire,
        memory_order_relaxed);
}

/* The permits of a lock in `mode`, and its one-CAS attempt. */
static inline size_t need(int mode)
{
    return mode == SQ__LOCK_SHARED ? 1 : MAX;
}

static inline bool take_fast(sq_rwlock *l, int mode)
{
    return mode == SQ__LOCK_SHARED ? read_fast(l) : write_fast(l);
}

/* Takes the lock in `mode` (try: without waiting), telling the checks. */
static SQ__NOINLINE int lock_checked(const sq__check_hooks *ck, sq_rwlock *l,
                                     int mode, int64_t deadline,
                                     const char *site, bool trylock)
{
    ck->lock_acquire(l, l->_class, l->_sem._flags, mode, site, trylock);
    int rc;
    if (trylock)
        rc = take_fast(l, mode) ? 0 : -EBUSY;
    else
        rc = sq__sem_acquire_as(&l->_sem, need(mode), deadline, true,
                                SQ__WAIT_RWLOCK);
    if (rc == 0)
        ck->lock_acquired(l, l->_class, l->_sem._flags, mode, site);
    else
        ck->lock_abandon(l, mode);
    return rc;
}

/* The lock and try-lock calls of both modes (mode is a constant at each
 * call, so each public function keeps its own one-CAS fast path). */
static inline int lock_until(sq_rwlock *l, int mode, int64_t deadline,
                             const char *site)
{
    if (deadline < 0)
        return -EINVAL;
    sq__sched_point();
    const sq__check_hooks *ck = SQ__CHECKS();
    if (SQ__UNLIKELY(ck))
        return lock_checked(ck, l, mode, deadline, site, false);
    if (SQ__LIKELY(take_fast(l, mode)))
        return 0;
    return sq__sem_acquire_as(&l->_sem, need(mode), deadline, true,
                              SQ__WAIT_RWLOCK);
}

static inline int try_lock(sq_rwlock *l, int mode, const char *site)
{
    sq__sched_point();
    const sq__check_hooks *ck = SQ__CHECKS();
    if (SQ__UNLIKELY(ck))
        return lock_checked(ck, l, mode, SQ_FOREVER, site, true);
    return take_fast(l, mode) ? 0 : -EBUSY;
}

int sq_rwlock_read_lock_until_at(sq_rwlock *l, int64_t deadline,
                                 const char *site)
{
    return lock_until(l, SQ__LOCK_SHARED, deadline, site);
}

int sq_rwlock_read_lock_at(sq_rwlock *l, const char *site)
{
    return sq_rwlock_read_lock_until_at(l, SQ_FOREVER, site);
}

int(sq_rwlock_read_lock)(sq_rwlock *l)
{
    return sq_rwlock_read_lock_until_at(l, SQ_FOREVER, NULL);
}

int(sq_rwlock_read_lock_until)(sq_rwlock *l, int64_t deadline)
{
    return sq_rwlock_read_lock_until_at(l, deadline, NULL);
}

int sq_rwlock_try_read_lock_at(sq_rwlock *l, const char *site)
{
    return try_lock(l, SQ__LOCK_SHARED, site);
}

int(sq_rwlock_try_read_lock)(sq_rwlock *l)
{
    return sq_rwlock_try_read_lock_at(l, NULL);
}

int sq_rwlock_read_unlock(sq_rwlock *l)
{
    const sq__check_hooks *ck = SQ__CHECKS();
    if (SQ__UNLIKELY(ck))
        ck->lock_release(l, SQ__LOCK_SHARED);
    uint64_t old = FREE - ONE; /* guess: the only reader */
    while (!(old & SQ__SEM_FLAGS) && old < FREE) {
        if (SQ__LIKELY(atomic_compare_exchange_weak_explicit(
                &l->_sem._state, &old, old + ONE, memory_order_release,
                memory_order_relaxed))) {
            sq__sched_point(); /* after the release: others may take it */
            return 0;
        }
    }
    /* Waiters (the permit goes to the head), or nobody held a read lock
     * (-EPERM: the count would exceed MAX). */
    int rc = sq__sem_release_lock(&l->_sem, 1, MAX, -EPERM);
    sq__sched_point();
    return rc;
}

int sq_rwlock_write_lock_until_at(sq_rwlock *l, int64_t deadline,
                                  const char *site)
{
    return lock_until(l, SQ__LOCK_EXCL, deadline, site);
}

int sq_rwlock_write_lock_at(sq_rwlock *l, const char *site)
{
    return sq_rwlock_write_lock_until_at(l, SQ_FOREVER, site);
}

int(sq_rwlock_write_lock)(sq_rwlock *l)
{
    return sq_rwlock_write_lock_until_at(l, SQ_FOREVER, NULL);
}

int(sq_rwlock_write_lock_until)(sq_rwlock *l, int64_t deadline)
{
    return sq_rwlock_write_lock_until_at(l, deadline, NULL);
}

int sq_rwlock_try_write_lock_at(sq_rwlock *l, const char *site)
{
    return try_lock(l, SQ__LOCK_EXCL, site);
}

int(sq_rwlock_try_write_lock)(sq_rwlock *l)
{
    return sq_rwlock_try_write_lock_at(l, NULL);
}

int sq_rwlock_write_unlock(sq_rwlock *l)
{
    const sq__check_hooks *ck = SQ__CHECKS();
    if (SQ__UNLIKELY(ck))
        ck->lock_release(l, SQ__LOCK_EXCL);
    uint64_t expect = WRITE_HELD;
    if (SQ__LIKELY(atomic_compare_exchange_strong_explicit(
            &l->_sem._state, &expect, FREE, memory_order_release,
            memory_order_relaxed))) {
        sq__sched_point();
        return 0;
    }
    /* Waiters, or not write-locked (-EPERM: more than MAX in total). */
    int rc = sq__sem_release_lock(&l->_sem, MAX, MAX, -EPERM);
    sq__sched_point();
    return rc;
}

int sq_rwlock_downgrade(sq_rwlock *l)
{
    const sq__check_hooks *ck = SQ__CHECKS();
    if (SQ__UNLIKELY(ck))
        ck->lock_downgrade(l);
    /* Keep one permit (our read lock) and give the rest back: a writer
     * needs all MAX, so none can get in before our read_unlock, while the
     * readers at the head of the queue are served from the MAX - 1. */
    uint64_t expect = WRITE_HELD;
    if (SQ__LIKELY(atomic_compare_exchange_strong_explicit(
            &l->_sem._state, &expect, FREE - ONE, memory_order_release,
            memory_order_relaxed))) {
        sq__sched_point();
        return 0;
    }
    int rc =
        sq__sem_release(&l->_sem, MAX - 1, MAX, SQ__SEM_OVER_FAIL, -EPERM);
    sq__sched_point();
    return rc;
}
