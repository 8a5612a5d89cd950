/* sq_sem: the public face of the batch semaphore in core.c.  Acquire and
 * release are scheduling points of the deterministic mode (see
 * sq__sched_point and mutex.c). */
#include "core.h"

int sq_sem_init(sq_sem *s, size_t permits)
{
    if (permits > SQ_SEM_MAX_PERMITS)
        return -EINVAL;
    sq__sem_init(s, permits);
    return 0;
}

int sq_sem_destroy(sq_sem *s)
{
    return sq__sem_has_waiters(s) ? -EBUSY : 0;
}

int sq_sem_acquire_until(sq_sem *s, size_t n, int64_t deadline)
{
    if (n > SQ_SEM_MAX_PERMITS || deadline < 0)
        return -EINVAL;
    sq__sched_point();
    if (n == 0)
        return sq_sem_is_closed(s) ? -ESHUTDOWN : 0;
    return sq__sem_acquire(s, n, deadline, true);
}

int sq_sem_acquire(sq_sem *s, size_t n)
{
    return sq_sem_acquire_until(s, n, SQ_FOREVER);
}

int sq_sem_try_acquire(sq_sem *s, size_t n)
{
    if (n > SQ_SEM_MAX_PERMITS)
        return -EINVAL;
    sq__sched_point();
    return sq__sem_try_acquire(s, n);
}

int sq_sem_release(sq_sem *s, size_t n)
{
    int rc = sq__sem_release_lock(s, n, SQ_SEM_MAX_PERMITS, -EOVERFLOW);
    sq__sched_point(); /* after the release: others may take the permits */
    return rc;
}

int sq_sem_add_permits(sq_sem *s, size_t n)
{
    return sq_sem_release(s, n);
}

void sq_sem_close(sq_sem *s)
{
    sq__sem_close(s);
}

bool sq_sem_is_closed(sq_sem *s)
{
    return atomic_load_explicit(&s->_state, memory_order_acquire) &
           SQ__SEM_CLOSED;
}

size_t sq_sem_available(sq_sem *s)
{
    return sq__sem_available(s);
}
