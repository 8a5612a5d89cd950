/* sq_mutex: a semaphore of one permit.  The fast paths guess the state
 * (free: count 1, no flags; held: count 0, no flags) so a free lock costs
 * exactly one CAS each way; anything else goes through the core. */
#include "core.h"

#define FREE ((uint64_t)1 << SQ__SEM_SHIFT)
#define HELD ((uint64_t)0)

int sq_mutex_init(sq_mutex *m)
{
    sq__sem_init(&m->_sem, 1);
    return 0;
}

int sq_mutex_destroy(sq_mutex *m)
{
    uint64_t st = atomic_load_explicit(&m->_sem._state, memory_order_acquire);
    return st == FREE ? 0 : -EBUSY;
}

int sq_mutex_lock_until(sq_mutex *m, int64_t deadline)
{
    if (deadline < 0)
        return -EINVAL;
    uint64_t expect = FREE;
    if (SQ__LIKELY(atomic_compare_exchange_strong_explicit(
            &m->_sem._state, &expect, HELD, memory_order_acquire,
            memory_order_relaxed)))
        return 0;
    return sq__sem_acquire(&m->_sem, 1, deadline, true);
}

int sq_mutex_lock(sq_mutex *m)
{
    return sq_mutex_lock_until(m, SQ_FOREVER);
}

int sq_mutex_try_lock(sq_mutex *m)
{
    uint64_t expect = FREE;
    if (atomic_compare_exchange_strong_explicit(&m->_sem._state, &expect, HELD,
                                                memory_order_acquire,
                                                memory_order_relaxed))
        return 0;
    return -EBUSY;
}

int sq_mutex_unlock(sq_mutex *m)
{
    uint64_t expect = HELD;
    if (SQ__LIKELY(atomic_compare_exchange_strong_explicit(
            &m->_sem._state, &expect, FREE, memory_order_release,
            memory_order_relaxed)))
        return 0;
    /* Waiters (hand the lock to the first) or not locked (-EPERM: the
     * count would exceed 1). */
    return sq__sem_release(&m->_sem, 1, 1, SQ__SEM_OVER_FAIL, -EPERM);
}
