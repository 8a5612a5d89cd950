/* sq_once: a semaphore of one permit, the right to run the initialiser.
 * A caller takes the permit (FIFO behind earlier callers) and runs init;
 * on failure it gives the permit back, which hands it to the next waiter;
 * on success it closes the semaphore instead.  Closing is the "done" mark
 * (one release RMW on the state word, read back with acquire) and it
 * wakes every waiter at once with -ESHUTDOWN, which here means "done".
 * The permit of a successful initialiser is never returned: nobody needs
 * it any more.
 *
 * A cancelled or timed-out waiter leaves the queue holding nothing (the
 * core's cancel safety); should the permit have reached it at that
 * instant, the core reports success and it runs init like any holder.
 *
 * sq_once_cell wraps its init so the value is stored before the close,
 * and read only after the close has been seen. */
#include "squirrel/once.h"

#include "core.h"

#define FREE ((uint64_t)1 << SQ__SEM_SHIFT)

/* ------------------------------------------------------------- once */

int sq_once_init(sq_once *o)
{
    sq__sem_init(&o->_sem, 1);
    return 0;
}

bool sq_once_is_done(sq_once *o)
{
    return atomic_load_explicit(&o->_sem._state, memory_order_acquire) &
           SQ__SEM_CLOSED;
}

int sq_once_destroy(sq_once *o)
{
    uint64_t st = atomic_load_explicit(&o->_sem._state, memory_order_acquire);
    if (st & SQ__SEM_CLOSED)
        return (st & SQ__SEM_WAITERS) ? -EBUSY : 0;
    return st == FREE ? 0 : -EBUSY;
}

int sq_once_call_until(sq_once *o, int (*init)(void *arg), void *arg,
                       int64_t deadline)
{
    if (deadline < 0)
        return -EINVAL;
    if (sq_once_is_done(o))
        return 0;
    int rc = sq__sem_acquire_as(&o->_sem, 1, deadline, true, SQ__WAIT_ONCE);
    if (rc == -ESHUTDOWN) {
        /* Done meanwhile.  The core may have seen the close with a
         * relaxed load: read it again with acquire, so that what the
         * initialiser did is visible to our caller. */
        return sq_once_is_done(o) ? 0 : -ESHUTDOWN;
    }
    if (rc)
        return rc; /* -ECANCELED or -ETIMEDOUT: nothing held */
    rc = init(arg);
    if (rc >= 0) {
        sq__sem_close(&o->_sem);
        return 0;
    }
    /* Failed: the next waiter (if any) gets the permit and tries. */
    sq__sem_release(&o->_sem, 1, 1, SQ__SEM_OVER_SATURATE, 0);
    return rc;
}

int sq_once_call(sq_once *o, int (*init)(void *arg), void *arg)
{
    return sq_once_call_until(o, init, arg, SQ_FOREVER);
}

/* -------------------------------------------------------- once cell */

int sq_once_cell_init(sq_once_cell *c)
{
    sq_once_init(&c->_once);
    c->_value = NULL;
    return 0;
}

int sq_once_cell_destroy(sq_once_cell *c)
{
    return sq_once_destroy(&c->_once);
}

int sq_once_cell_get(sq_once_cell *c, void **value)
{
    if (!sq_once_is_done(&c->_once))
        return -EAGAIN;
    if (value)
        *value = c->_value;
    return 0;
}

typedef struct cell_job {
    sq_once_cell *cell;
    sq_once_cell_init_fn init;
    void *arg;
} cell_job;

/* Runs the cell's init for sq_once_call; stores the value before the
 * once is marked done. */
static int cell_init(void *p)
{
    cell_job *j = p;
    void *v = NULL;
    int rc = j->init(j->arg, &v);
    if (rc >= 0)
        j->cell->_value = v;
    return rc;
}

int sq_once_cell_get_or_init_until(sq_once_cell *c, sq_once_cell_init_fn init,
                                   void *arg, void **value, int64_t deadline)
{
    cell_job job = {.cell = c, .init = init, .arg = arg};
    int rc = sq_once_call_until(&c->_once, cell_init, &job, deadline);
    if (rc == 0 && value)
        *value = c->_value;
    return rc;
}

int sq_once_cell_get_or_init(sq_once_cell *c, sq_once_cell_init_fn init,
                             void *arg, void **value)
{
    return sq_once_cell_get_or_init_until(c, init, arg, value, SQ_FOREVER);
}
