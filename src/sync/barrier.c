/* sq_barrier: a count and a generation number under a spin lock, and a
 * FIFO of the waiting parties.  Each waiting party queues a node on its
 * own stack holding a core semaphore of 0 permits and waits on it; the
 * leader takes the whole list off the barrier under the lock (so the
 * next generation starts empty at once) and then releases one permit to
 * each node, outside the lock.  A waiter per semaphore, rather than one
 * semaphore for all, is what keeps generations apart: a permit meant for
 * generation g can never be taken by a party of generation g + 1.
 *
 * A waiter whose wait fails looks at the generation under the lock: if it
 * is unchanged the waiter is still listed and withdraws (count - 1); if
 * it moved on, the leader owns the node and its permit is coming, so the
 * waiter takes it, without cancellation, before its stack frame (the
 * node) can go away.  That wait is short: the leader is between its
 * unlock and its release, neither of which ever waits.
 *
 * Cost: one spin-lock section per arrival; the leader's wake-ups are
 * O(n) outside the lock.  No path allocates. */
#include "squirrel/barrier.h"

#include "core.h"

struct sq__barrier_node {
    sq_sem sem;          /* 0 permits; the leader releases 1 */
    uint64_t generation; /* the generation this party arrived in */
    struct sq__link link;  /* in the barrier's list */
};
typedef struct sq__barrier_node node;

static inline sq__spin *barrier_lock(sq_barrier *b)
{
    return (sq__spin *)(void *)&b->_lock;
}

int sq_barrier_init(sq_barrier *b, size_t n)
{
    if (n == 0)
        return -EINVAL;
    atomic_init(&b->_lock, 0);
    b->_parties = n;
    b->_arrived = 0;
    b->_generation = 0;
    sq__list_init(&b->_waiting);
    return 0;
}

int sq_barrier_destroy(sq_barrier *b)
{
    sq__spin_lock(barrier_lock(b));
    bool busy = b->_arrived != 0;
    sq__spin_unlock(barrier_lock(b));
    return busy ? -EBUSY : 0;
}

/* Under the lock, b's generation complete: ends it and lets every listed
 * party go (after unlocking). */
static void complete_locked(sq_barrier *b)
{
    struct sq__link *l = sq__list_take_all(&b->_waiting);
    b->_arrived = 0;
    b->_generation++;
    sq__spin_unlock(barrier_lock(b));
    while (l) {
        struct sq__link *next = l->next; /* may vanish once released */
        node *n = sq__list_entry(l, node, link);
        sq__sem_release(&n->sem, 1, 1, SQ__SEM_OVER_SATURATE, 0);
        l = next;
    }
}

int sq_barrier_wait_until(sq_barrier *b, bool *leader, int64_t deadline)
{
    if (leader)
        *leader = false;
    if (deadline < 0)
        return -EINVAL;
    sq__spin_lock(barrier_lock(b));
    if (b->_arrived + 1 >= b->_parties) {
        complete_locked(b);
        if (leader)
            *leader = true;
        return 0;
    }
    node me;
    sq__sem_init(&me.sem, 0);
    me.generation = b->_generation;
    sq__list_push_back(&b->_waiting, &me.link);
    b->_arrived++;
    sq__spin_unlock(barrier_lock(b));

    int rc = sq__sem_acquire_as(&me.sem, 1, deadline, true, SQ__WAIT_BARRIER);
    if (rc == 0)
        return 0;
    sq__spin_lock(barrier_lock(b));
    if (b->_generation == me.generation) {
        sq__list_remove(&b->_waiting, &me.link); /* withdraw the arrival */
        b->_arrived--;
        sq__spin_unlock(barrier_lock(b));
        return rc;
    }
    sq__spin_unlock(barrier_lock(b));
    /* The generation completed as we gave up: we have passed.  Wait for
     * the leader to finish with our node. */
    sq__sem_acquire_as(&me.sem, 1, SQ_FOREVER, false, SQ__WAIT_BARRIER);
    return 0;
}

int sq_barrier_wait(sq_barrier *b, bool *leader)
{
    return sq_barrier_wait_until(b, leader, SQ_FOREVER);
}
