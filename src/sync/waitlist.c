/* sq__waitlist: waiting for a change of a channel's state word, for
 * broadcast and watch, where one change must wake every waiting receiver.
 *
 * Nodes.  A waiter queues a node on its own stack holding a core
 * semaphore of 0 permits and waits on it (the core gives deadlines,
 * cancellation and plain-thread waiting).  A waker takes the whole list
 * under the lock (bumping the epoch, so a node knows it was taken) and
 * releases one permit to each node after unlocking, so the wake-ups never
 * lengthen the lock.  A waiter whose wait fails takes the lock: if the
 * epoch is the one it queued in, it is still listed and leaves; if not, a
 * waker owns the node and its permit is coming, so the waiter takes it,
 * without cancellation, before its stack frame (the node) goes away.  That
 * wait is short: the waker is between its unlock and its release, neither
 * of which waits.  The wait then counts as woken (0).
 *
 * No lost wake-up.  A Dekker pair of seq_cst operations: the waiter
 * increments _count and then reads the word; the changer writes the word
 * and then reads _count.  One of them sees the other: either the waiter
 * sees the new word and does not sleep, or the changer sees the count and
 * takes the list (or another waker reset the count, which it can only do
 * after taking this waiter's node, under the same lock, and will wake it).
 *
 * Cost: a change with nobody waiting pays one seq_cst load; a wait pays
 * one lock section to queue and the core semaphore's wait; a wake-up one
 * lock section plus one release per waiter.  Nothing allocates. */
#include "waitlist.h"

struct sq__listener {
    sq_sem sem;                       /* 0 permits; a waker releases 1 */
    uint64_t epoch;                   /* the list's epoch when queued */
    struct sq__link link;             /* in the list */
};
typedef struct sq__listener listener;

void sq__waitlist_init(sq__waitlist *wl)
{
    atomic_init(&wl->_lock, 0);
    atomic_init(&wl->_count, 0);
    wl->_epoch = 0;
    sq__list_init(&wl->_listeners);
}


int sq__waitlist_wait(sq__waitlist *wl, _Atomic uint64_t *word, uint64_t mask,
                      uint64_t expected, int64_t deadline)
{
    listener n;
    sq__sem_init(&n.sem, 0);

    sq__spin_lock(sq__waitlist_lock(wl));
    atomic_fetch_add_explicit(&wl->_count, 1, memory_order_seq_cst);
    if ((atomic_load_explicit(word, memory_order_seq_cst) & mask) != expected) {
        atomic_fetch_sub_explicit(&wl->_count, 1, memory_order_seq_cst);
        sq__spin_unlock(sq__waitlist_lock(wl));
        return 0;
    }
    n.epoch = wl->_epoch;
    sq__list_push_front(&wl->_listeners, &n.link);
    sq__spin_unlock(sq__waitlist_lock(wl));

    int rc = sq__sem_acquire_as(&n.sem, 1, deadline, true, SQ__WAIT_CHANNEL);
    if (rc == 0)
        return 0;

    sq__spin_lock(sq__waitlist_lock(wl));
    bool listed = n.epoch == wl->_epoch;
    if (listed) {
        sq__list_remove(&wl->_listeners, &n.link);
        atomic_fetch_sub_explicit(&wl->_count, 1, memory_order_seq_cst);
    }
    sq__spin_unlock(sq__waitlist_lock(wl));
    if (listed)
        return rc;
    /* Taken by a waker: its permit is on the way (see above). */
    sq__sem_acquire_as(&n.sem, 1, SQ_FOREVER, false, SQ__WAIT_CHANNEL);
    return 0;
}

struct sq__link *sq__waitlist_take_locked(sq__waitlist *wl)
{
    struct sq__link *l = sq__list_take_all(&wl->_listeners);
    wl->_epoch++;
    atomic_store_explicit(&wl->_count, 0, memory_order_seq_cst);
    return l;
}

void sq__waitlist_release(struct sq__link *l)
{
    while (l) {
        struct sq__link *next = l->next; /* l may be gone once released */
        listener *n = sq__list_entry(l, listener, link);
        sq__sem_release(&n->sem, 1, 1, SQ__SEM_OVER_SATURATE, 0);
        l = next;
    }
}

void sq__waitlist_wake(sq__waitlist *wl)
{
    if (!atomic_load_explicit(&wl->_count, memory_order_seq_cst))
        return;
    sq__spin_lock(sq__waitlist_lock(wl));
    struct sq__link *l = sq__waitlist_take_locked(wl);
    sq__spin_unlock(sq__waitlist_lock(wl));
    sq__waitlist_release(l);
}

unsigned sq__waitlist_count(sq__waitlist *wl)
{
    return atomic_load_explicit(&wl->_count, memory_order_relaxed);
}
