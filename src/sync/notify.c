/* sq_notify: a semaphore of at most one stored permit.  notify_one
 * releases one permit saturating at 1 (so wake-ups never pile up);
 * notify_all grants every queued waiter without storing anything; a wait
 * takes one permit and drops it. */
#include "core.h"

int sq_notify_init(sq_notify *n)
{
    sq__sem_init(&n->_sem, 0);
    return 0;
}

int sq_notify_wait_until(sq_notify *n, int64_t deadline)
{
    if (deadline < 0)
        return -EINVAL;
    return sq__sem_acquire_as(&n->_sem, 1, deadline, true, SQ__WAIT_NOTIFY);
}

int sq_notify_wait(sq_notify *n)
{
    return sq_notify_wait_until(n, SQ_FOREVER);
}

void sq_notify_one(sq_notify *n)
{
    sq__sem_release(&n->_sem, 1, 1, SQ__SEM_OVER_SATURATE, 0);
}

void sq_notify_all(sq_notify *n)
{
    sq__sem_grant_all(&n->_sem);
}
