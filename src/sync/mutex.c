/* sq_mutex: a semaphore of one permit.  The fast paths guess the state
 * (free: count 1, no flags; held: count 0, no flags) so a free lock costs
 * exactly one CAS each way; anything else goes through the core.  With the
 * run-time checks on (SQ__CHECKS()), every call goes through the checked
 * path instead, which tells the checks before and after.  Lock and unlock
 * are scheduling points of the deterministic mode (sq__sched_point: one
 * predictable branch otherwise), where a seed may let another task run
 * first, so that check-then-act races show up under some seed. */
#include "core.h"

#define FREE ((uint64_t)1 << SQ__SEM_SHIFT)
#define HELD ((uint64_t)0)

int sq_mutex_init_named(sq_mutex *m, const char *cls)
{
    sq__sem_init(&m->_sem, 1);
    m->_class = cls;
    return 0;
}

int(sq_mutex_init)(sq_mutex *m)
{
    return sq_mutex_init_named(m, NULL);
}

void sq_mutex_allow_hold_across_waits(sq_mutex *m)
{
    m->_sem._flags |= SQ__SEM_F_MAY_WAIT;
}

int sq_mutex_destroy(sq_mutex *m)
{
    uint64_t st = atomic_load_explicit(&m->_sem._state, memory_order_acquire);
    return st == FREE ? 0 : -EBUSY;
}

static bool try_fast(sq_mutex *m)
{
    uint64_t expect = FREE;
    return atomic_compare_exchange_strong_explicit(
        &m->_sem._state, &expect, HELD, memory_order_acquire,
        memory_order_relaxed);
}

static SQ__NOINLINE int lock_checked(const sq__check_hooks *ck, sq_mutex *m,
                                     int64_t deadline, const char *site,
                                     bool trylock)
{
    ck->lock_acquire(m, m->_class, m->_sem._flags, SQ__LOCK_EXCL, site,
                     trylock);
    int rc;
    if (trylock)
        rc = try_fast(m) ? 0 : -EBUSY;
    else
        rc = sq__sem_acquire_as(&m->_sem, 1, deadline, true, SQ__WAIT_MUTEX);
    if (rc == 0)
        ck->lock_acquired(m, m->_class, m->_sem._flags, SQ__LOCK_EXCL, site);
    else
        ck->lock_abandon(m, SQ__LOCK_EXCL);
    return rc;
}

/* Anything but the bare CAS: a deterministic runtime's scheduling point,
 * the checks' hooks, or the wait.  Not inlined, so that the fast paths
 * below only tail-call it and need no stack frame of their own (about a
 * nanosecond of an uncontended lock and unlock). */
static SQ__NOINLINE int lock_slow(sq_mutex *m, int64_t deadline,
                                  const char *site, bool tried)
{
    sq__sched_point();
    const sq__check_hooks *ck = SQ__CHECKS();
    if (SQ__UNLIKELY(ck))
        return lock_checked(ck, m, deadline, site, false);
    if (!tried && try_fast(m))
        return 0;
    return sq__sem_acquire_as(&m->_sem, 1, deadline, true, SQ__WAIT_MUTEX);
}

/* True while lock calls must do more than their CAS: some deterministic
 * runtime exists, or the checks are on. */
static inline bool hooks_on(void)
{
    return atomic_load_explicit(&sq__det_runtimes, memory_order_relaxed) ||
           SQ__CHECKS();
}

int sq_mutex_lock_until_at(sq_mutex *m, int64_t deadline, const char *site)
{
    if (deadline < 0)
        return -EINVAL;
    if (SQ__LIKELY(!hooks_on())) {
        if (SQ__LIKELY(try_fast(m)))
            return 0;
        return lock_slow(m, deadline, site, true);
    }
    return lock_slow(m, deadline, site, false);
}

int sq_mutex_lock_at(sq_mutex *m, const char *site)
{
    if (SQ__LIKELY(!hooks_on())) {
        if (SQ__LIKELY(try_fast(m)))
            return 0;
        return lock_slow(m, SQ_FOREVER, site, true);
    }
    return lock_slow(m, SQ_FOREVER, site, false);
}

/* Masking is one counter of the calling task; outside a task there is no
 * cancellation to mask and the lock cannot be cancelled anyway. */
int sq_mutex_lock_nocancel_at(sq_mutex *m, const char *site)
{
    bool masked = sq_cancel_mask() == 0;
    int rc = sq_mutex_lock_at(m, site);
    if (masked)
        sq_cancel_unmask();
    return rc;
}

int(sq_mutex_lock_nocancel)(sq_mutex *m)
{
    return sq_mutex_lock_nocancel_at(m, NULL);
}

int(sq_mutex_lock)(sq_mutex *m)
{
    return sq_mutex_lock_until_at(m, SQ_FOREVER, NULL);
}

int(sq_mutex_lock_until)(sq_mutex *m, int64_t deadline)
{
    return sq_mutex_lock_until_at(m, deadline, NULL);
}

int sq_mutex_try_lock_at(sq_mutex *m, const char *site)
{
    sq__sched_point();
    const sq__check_hooks *ck = SQ__CHECKS();
    if (SQ__UNLIKELY(ck))
        return lock_checked(ck, m, SQ_FOREVER, site, true);
    return try_fast(m) ? 0 : -EBUSY;
}

int(sq_mutex_try_lock)(sq_mutex *m)
{
    return sq_mutex_try_lock_at(m, NULL);
}

static SQ__NOINLINE int unlock_slow(sq_mutex *m)
{
    const sq__check_hooks *ck = SQ__CHECKS();
    if (SQ__UNLIKELY(ck) &&
        (atomic_load_explicit(&m->_sem._state, memory_order_relaxed) >>
         SQ__SEM_SHIFT) == 0)
        ck->lock_release(m, SQ__LOCK_EXCL); /* before another can take it */
    uint64_t expect = HELD;
    if (SQ__LIKELY(atomic_compare_exchange_strong_explicit(
            &m->_sem._state, &expect, FREE, memory_order_release,
            memory_order_relaxed))) {
        sq__sched_point(); /* after the release: others may take it */
        return 0;
    }
    /* Waiters (hand the lock to the first) or not locked (-EPERM: the
     * count would exceed 1). */
    int rc = sq__sem_release_lock(&m->_sem, 1, 1, -EPERM);
    sq__sched_point();
    return rc;
}

int sq_mutex_unlock(sq_mutex *m)
{
    if (SQ__LIKELY(!hooks_on())) {
        uint64_t expect = HELD;
        if (SQ__LIKELY(atomic_compare_exchange_strong_explicit(
                &m->_sem._state, &expect, FREE, memory_order_release,
                memory_order_relaxed)))
            return 0;
    }
    return unlock_slow(m);
}
