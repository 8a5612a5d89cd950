/* sq_oneshot: a value slot, a state word and a semaphore of 0 permits.
 * The sender publishes the value (state |= SENT) and then releases the one
 * permit; close_send and close_recv release it too, so the receiver never
 * waits on a channel that cannot deliver.  The receiver takes the permit
 * before it looks at the state: the permit's release is the sender's last
 * touch of the channel, which is what lets the channel live on the
 * receiver's stack. */
#include "core.h"

enum {
    SENT = 1,        /* _value holds the value */
    SEND_CLOSED = 2, /* the sender closed (after sending, or instead) */
    RECV_CLOSED = 4, /* the receiver closed */
    TAKEN = 8,       /* recv has returned its result (receiver only) */
};

int sq_oneshot_init(sq_oneshot *o)
{
    sq__sem_init(&o->_sem, 0);
    atomic_init(&o->_state, 0);
    o->_value = NULL;
    return 0;
}

int sq_oneshot_send(sq_oneshot *o, void *value)
{
    int st = atomic_load_explicit(&o->_state, memory_order_acquire);
    if (st & (SENT | SEND_CLOSED))
        return -EINVAL;
    if (st & RECV_CLOSED)
        return -EPIPE;
    /* Only the sender writes _value, and only before SENT is set; the
     * receiver reads it only after seeing SENT (through the permit). */
    o->_value = value;
    while (!atomic_compare_exchange_weak_explicit(
        &o->_state, &st, st | SENT, memory_order_release,
        memory_order_relaxed)) {
        if (st & RECV_CLOSED)
            return -EPIPE;
    }
    sq__sem_release(&o->_sem, 1, 1, SQ__SEM_OVER_SATURATE, 0);
    return 0;
}

int sq_oneshot_recv_until(sq_oneshot *o, void **value, int64_t deadline)
{
    if (deadline < 0)
        return -EINVAL;
    if (atomic_load_explicit(&o->_state, memory_order_relaxed) & TAKEN)
        return -EPIPE;
    int rc = sq__sem_acquire_as(&o->_sem, 1, deadline, true,
                                SQ__WAIT_CHANNEL);
    if (rc)
        return rc;
    int st = atomic_fetch_or_explicit(&o->_state, TAKEN, memory_order_acquire);
    if (!(st & SENT))
        return -EPIPE;
    if (value)
        *value = o->_value;
    return 0;
}

int sq_oneshot_recv(sq_oneshot *o, void **value)
{
    return sq_oneshot_recv_until(o, value, SQ_FOREVER);
}

void sq_oneshot_close_send(sq_oneshot *o)
{
    int st = atomic_fetch_or_explicit(&o->_state, SEND_CLOSED,
                                      memory_order_acq_rel);
    if (!(st & (SENT | SEND_CLOSED)))
        sq__sem_release(&o->_sem, 1, 1, SQ__SEM_OVER_SATURATE, 0);
}

void sq_oneshot_close_recv(sq_oneshot *o)
{
    int st = atomic_fetch_or_explicit(&o->_state, RECV_CLOSED,
                                      memory_order_acq_rel);
    if (!(st & RECV_CLOSED))
        sq__sem_release(&o->_sem, 1, 1, SQ__SEM_OVER_SATURATE, 0);
}
