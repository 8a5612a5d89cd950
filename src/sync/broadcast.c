/* sq_broadcast: a ring of `capacity` slots, a tail, and a wait list.
 *
 * Positions.  Messages are numbered from 0 in send order; _tail holds the
 * next position << 1 | CLOSED.  Message p lives in slot p % capacity,
 * which is a stamp word followed by the message's words.  Stamps: 0 never
 * written, STABLE(p) = (p + 1) << 1 holds message p, WRITING(p) = STABLE(p)
 * | 1 is being overwritten with message p.
 *
 * Senders serialise on _tx_lock (held for one message copy): stamp
 * WRITING(p), store the words (release), stamp STABLE(p) (release),
 * publish _tail = p + 1 (seq_cst, for the wait list), unlock, and wake
 * the waiting receivers.  Subscribe, drop and close take the same lock,
 * so the count a send returns is exact and a subscriber's start position
 * is a clean cut in the global order.
 *
 * Receivers read without a lock (a seqlock per slot): load _tail; if the
 * receiver is more than `capacity` behind, it has lagged; else load the
 * slot's stamp (acquire), copy the words (acquire loads), load the stamp
 * again.  The same STABLE(p) twice means an untorn copy of message p
 * (stamps only grow, and a word from a newer writer would make the second
 * load see that writer's WRITING mark).  A stamp beyond STABLE(p) means
 * message p was overwritten (or is being) by some q = p + k * capacity:
 * once q is in, the oldest message held is q + 1 - capacity, which is
 * where the receiver continues, reporting the gap as missed.  So every
 * position is either received or counted as missed, exactly once, and a
 * receiver never waits for a sender except through the wait list.
 *
 * Waiting.  A receiver with nothing new waits on the wait list until
 * _tail changes (a send or a close); waitlist.c gives the no-lost-wake-up
 * argument.  Close sets CLOSED and takes the wait list under _tx_lock,
 * so a receiver that saw end of stream and then dropped (which takes
 * _tx_lock) knows close is done with the channel.
 *
 * Cost of a send: a spin-lock section with the copy, and one seq_cst
 * load when nobody waits.  A recv: three loads plus the copy.  Nothing
 * allocates after init. */
#include "squirrel/broadcast.h"

#include "waitlist.h"
#include "words.h"

#include <limits.h>
#include <stdlib.h>

#define CLOSED ((uint64_t)1)

static inline sq__spin *tx_lock(sq_broadcast *b)
{
    return (sq__spin *)(void *)&b->_tx_lock;
}

static inline uint64_t stable(uint64_t p)
{
    return (p + 1) << 1;
}

static inline uint64_t writing(uint64_t p)
{
    return stable(p) | 1;
}

/* The position a (non-zero) stamp is about. */
static inline uint64_t stamp_pos(uint64_t s)
{
    return (s >> 1) - 1;
}

static inline _Atomic uint64_t *slot_of(sq_broadcast *b, uint64_t p)
{
    return b->_ring + (size_t)(p % b->_capacity) * (1 + b->_words);
}

/* ------------------------------------------------------------ lifecycle */

int sq_broadcast_init(sq_broadcast *b, size_t elem_size, size_t capacity)
{
    if (elem_size == 0 || elem_size > SQ_BROADCAST_MAX_ELEM || capacity == 0 ||
        capacity > SQ_BROADCAST_MAX_CAPACITY)
        return -EINVAL;
    size_t words = sq__words_for(elem_size);
    if (capacity > SIZE_MAX / 8 / (1 + words))
        return -ENOMEM;
    /* Zeroed memory is every stamp's initial state (never written). */
    _Atomic uint64_t *ring = calloc(capacity * (1 + words), 8);
    if (!ring)
        return -ENOMEM;
    b->_elem_size = elem_size;
    b->_words = words;
    b->_capacity = capacity;
    b->_ring = ring;
    atomic_init(&b->_tx_lock, 0);
    atomic_init(&b->_receivers, 0);
    atomic_init(&b->_tail, 0);
    sq__waitlist_init(&b->_waiters);
    return 0;
}

int sq_broadcast_destroy(sq_broadcast *b)
{
    if (!b->_ring)
        return -EINVAL;
    sq__spin_lock(tx_lock(b));
    bool busy = atomic_load_explicit(&b->_receivers, memory_order_relaxed) ||
                sq__waitlist_count(&b->_waiters);
    sq__spin_unlock(tx_lock(b));
    if (busy)
        return -EBUSY;
    free(b->_ring);
    b->_ring = NULL;
    return 0;
}

int sq_broadcast_subscribe(sq_broadcast *b, sq_broadcast_rx *rx)
{
    sq__spin_lock(tx_lock(b));
    rx->_b = b;
    rx->_next = atomic_load_explicit(&b->_tail, memory_order_relaxed) >> 1;
    atomic_fetch_add_explicit(&b->_receivers, 1, memory_order_relaxed);
    sq__spin_unlock(tx_lock(b));
    return 0;
}

int sq_broadcast_rx_drop(sq_broadcast_rx *rx)
{
    sq_broadcast *b = rx->_b;
    if (!b)
        return -EINVAL;
    sq__spin_lock(tx_lock(b));
    atomic_fetch_sub_explicit(&b->_receivers, 1, memory_order_relaxed);
    sq__spin_unlock(tx_lock(b));
    rx->_b = NULL;
    return 0;
}

/* ----------------------------------------------------------------- send */

int sq_broadcast_send(sq_broadcast *b, const void *msg)
{
    sq__spin_lock(tx_lock(b));
    uint64_t t = atomic_load_explicit(&b->_tail, memory_order_relaxed);
    long n = atomic_load_explicit(&b->_receivers, memory_order_relaxed);
    if ((t & CLOSED) || n <= 0) {
        sq__spin_unlock(tx_lock(b));
        return -EPIPE;
    }
    uint64_t p = t >> 1;
    _Atomic uint64_t *slot = slot_of(b, p);
    atomic_store_explicit(slot, writing(p), memory_order_relaxed);
    sq__words_store(slot + 1, msg, b->_elem_size); /* release: after the mark */
    atomic_store_explicit(slot, stable(p), memory_order_release);
    /* an exchange, not a store: see sq__waitlist_wait */
    atomic_exchange_explicit(&b->_tail, (p + 1) << 1, memory_order_seq_cst);
    sq__spin_unlock(tx_lock(b));
    sq__waitlist_wake(&b->_waiters);
    return n > INT_MAX ? INT_MAX : (int)n;
}

void sq_broadcast_close(sq_broadcast *b)
{
    sq__spin_lock(tx_lock(b));
    atomic_fetch_or_explicit(&b->_tail, CLOSED, memory_order_seq_cst);
    sq__spin_lock(sq__waitlist_lock(&b->_waiters));
    struct sq__link *l = sq__waitlist_take_locked(&b->_waiters);
    sq__spin_unlock(sq__waitlist_lock(&b->_waiters));
    sq__spin_unlock(tx_lock(b));
    sq__waitlist_release(l);
}

/* ----------------------------------------------------------------- recv */

/* rx lagged: continue at `oldest`, reporting the gap. */
static int lagged(sq_broadcast_rx *rx, uint64_t oldest, uint64_t *missed)
{
    if (missed)
        *missed = oldest - rx->_next;
    rx->_next = oldest;
    return -EOVERFLOW;
}

/* Takes the next message if there is one; else returns -EAGAIN or -EPIPE
 * with the tail word it saw in *seen. */
static int take(sq_broadcast_rx *rx, void *msg, uint64_t *missed,
                uint64_t *seen)
{
    sq_broadcast *b = rx->_b;
    uint64_t cap = b->_capacity;
    for (;;) {
        uint64_t t = atomic_load_explicit(&b->_tail, memory_order_acquire);
        uint64_t tail = t >> 1, p = rx->_next;
        if (p >= tail) {
            *seen = t;
            return (t & CLOSED) ? -EPIPE : -EAGAIN;
        }
        if (tail - p > cap)
            return lagged(rx, tail - cap, missed);
        _Atomic uint64_t *slot = slot_of(b, p);
        uint64_t s1 = atomic_load_explicit(slot, memory_order_acquire);
        if (s1 != stable(p)) {
            /* Overwritten since we read the tail (a smaller stamp cannot
             * be: the tail was published after STABLE(p)). */
            if (s1 > stable(p))
                return lagged(rx, stamp_pos(s1) + 1 - cap, missed);
            continue;
        }
        sq__words_load(msg, slot + 1, b->_elem_size);
        if (atomic_load_explicit(slot, memory_order_relaxed) == s1) {
            rx->_next = p + 1;
            return 0;
        }
        /* Torn: overwritten while we copied; the next round sees it. */
    }
}

int sq_broadcast_try_recv(sq_broadcast_rx *rx, void *msg, uint64_t *missed)
{
    if (!rx->_b)
        return -EINVAL;
    uint64_t seen;
    return take(rx, msg, missed, &seen);
}

int sq_broadcast_recv_until(sq_broadcast_rx *rx, void *msg, uint64_t *missed,
                            int64_t deadline)
{
    sq_broadcast *b = rx->_b;
    if (deadline < 0 || !b)
        return -EINVAL;
    for (;;) {
        uint64_t seen;
        int rc = take(rx, msg, missed, &seen);
        if (rc != -EAGAIN)
            return rc;
        rc = sq__waitlist_wait(&b->_waiters, &b->_tail, ~(uint64_t)0, seen,
                               deadline);
        if (rc)
            return rc;
    }
}

int sq_broadcast_recv(sq_broadcast_rx *rx, void *msg, uint64_t *missed)
{
    return sq_broadcast_recv_until(rx, msg, missed, SQ_FOREVER);
}

/* ------------------------------------------------------------ snapshots */

bool sq_broadcast_is_closed(sq_broadcast *b)
{
    return atomic_load_explicit(&b->_tail, memory_order_acquire) & CLOSED;
}

size_t sq_broadcast_receivers(sq_broadcast *b)
{
    long n = atomic_load_explicit(&b->_receivers, memory_order_relaxed);
    return n > 0 ? (size_t)n : 0;
}

size_t sq_broadcast_rx_pending(sq_broadcast_rx *rx)
{
    sq_broadcast *b = rx->_b;
    if (!b)
        return 0;
    uint64_t tail = atomic_load_explicit(&b->_tail, memory_order_acquire) >> 1;
    uint64_t d = tail - rx->_next;
    return d > b->_capacity ? b->_capacity : (size_t)d;
}

size_t sq_broadcast_capacity(sq_broadcast *b)
{
    return b->_capacity;
}
