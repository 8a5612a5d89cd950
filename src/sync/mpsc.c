/* sq_mpsc: multi-producer, single-consumer channels.
 *
 * Slots.  A message lives in a slot: a 64-bit state word followed by the
 * message bytes (stride = 8 + elem_size rounded up to 8).  A slot's state
 * says whether the message at a given position is there:
 *     FREE  the slot waits for its sender,
 *     PUB   the message is written (the sender's release),
 *     WAIT  empty, and the receiver has gone to sleep on it.
 * The sender publishes with one exchange; if it replaces WAIT it owes the
 * receiver a wake-up.  So a sender never pays for a wake-up check unless
 * the receiver really sleeps on its own slot, the receiver pays nothing
 * while it keeps finding messages, and no fence is needed on either side.
 *
 * Positions.  _tail = next position << 1 | CLOSED.  A sender claims a
 * position, writes its slot, publishes.  Once claimed, a position is
 * always published (nothing between the claim and the publish can fail or
 * wait), so the receiver can wait for it.  The receiver owns _head.
 *
 * Bounded.  A ring of R = capacity rounded up to a power of two slots,
 * allocated at init; slot state = position << 2 | FREE/PUB/WAIT, so a
 * state names its lap.  A core semaphore (_slots) counts free slots: a
 * sender takes one permit before it claims (fetch-add on _tail), the
 * receiver gives it back once it has emptied the slot.  The semaphore
 * gives FIFO among blocked senders, cancellation, deadlines and
 * plain-thread waiting; as at most `capacity` permits exist, the slot for
 * a claimed position p has been emptied of position p - R (the sender
 * checks the state for p, which also orders the two accesses).
 *
 * Giving slots back in batches.  A CAS on the semaphore word per message,
 * a word every sender hammers too, was the receiver's main cost.  So the
 * receiver counts freed slots in _freed, on its own cache line, and
 * releases them to the semaphore by batches (RELEASE_BATCH).  Exactness is
 * kept by a handshake: a sender that is about to wait (or to fail a
 * try_send) first raises _tx_parking and then takes _freed itself; the
 * receiver adds to _freed and then looks at _tx_parking, releasing at
 * once if it is raised.  Both sides do a seq_cst read-modify-write before
 * they look at the other's word, so at least one of them sees the other:
 * no sender ever waits (and no try_send fails) for want of a slot the
 * receiver has freed, however long the receiver then stays away.  While
 * senders wait, slots are handed over one by one as they are freed.
 *
 * Spinning.  Both sides are usually tasks sharing two or so workers, and a
 * park costs a wake-up later.  A sender that finds the channel full
 * yields a bounded number of times (SEND_SPIN), retrying, before it
 * queues on the semaphore: meanwhile the receiver, possibly queued on the
 * same worker, runs and frees a batch.  It stops spinning as soon as
 * someone is queued (FIFO: it never takes a slot past a waiter).  A
 * receiver that finds the channel empty yields a few times (RECV_SPIN)
 * before it parks.  An unbounded send never waits, so a task sending in a
 * loop would keep its worker (and a receiver woken onto it) until done;
 * it yields once every SEND_BUDGET sends, like tokio's cooperative budget.

 * Unbounded.  Blocks of LAP - 1 slots (LAP a power of two, <= 64, smaller
 * for large messages) linked by `next`.  Position offset LAP - 1 is a
 * sentinel: the sender that claims a block's last slot has allocated the
 * next block beforehand (so -ENOMEM is returned with nothing claimed), and
 * moves the tail past the sentinel after linking the new block; senders
 * that see the sentinel spin for those few stores.  Senders claim with a
 * CAS (a fetch-add could run past the end of a block), and only ever touch
 * the block holding their own, unclaimed-until-then slot, which the
 * receiver cannot free before it is published.  The receiver frees a
 * block once it has taken its last slot, keeping one as a spare.
 *
 * Closing.  Closing sets CLOSED in _tail, under _rx_lock, and records the
 * position where sending stopped (_close_at): claims made before it are
 * real messages, claims after it (bounded: a fetch-add that returns
 * CLOSED) are void and their senders return -EPIPE.  End of stream is
 * head == _close_at.  A bounded close also closes the semaphore, which
 * fails the blocked senders.  The receiver learns _close_at under the same
 * lock, so once it has seen end of stream the closer (possibly the last
 * sender drop) is done with the channel.
 *
 * The receiver's sleep.  It registers a waiter in _rx_waiter (under
 * _rx_lock), marks its slot FREE -> WAIT, and waits.  A sender that
 * replaces WAIT takes the lock and wakes the registered waiter; a closer
 * does the same.  When a wait ends without the sender's wake-up (timeout,
 * cancellation, a closer), the receiver tries to take its mark back
 * (WAIT -> FREE); if that fails the message has arrived and its sender is
 * committed to a wake-up, which the receiver waits for (or finds as
 * _rx_pending, if nobody was registered) before it returns: so a sender's
 * wake-up never touches a waiter that has left.  A message that arrives
 * as a wait times out is therefore delivered (0), never lost.
 *
 * Cost per message, nobody waiting: bounded, a sender does a CAS
 * (semaphore), a fetch-add (_tail) and an exchange (publish); the receiver
 * a load, a store and a fetch-add on its own line, and a CAS on the
 * semaphore once per batch.  Unbounded: a sender does a CAS and an
 * exchange, the receiver a load and a store.  The fields senders write,
 * the semaphore and the receiver's fields are on separate cache lines.
 */
#include "core.h"

#include "squirrel/mpsc.h"

#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define CLOSED ((uint64_t)1)

enum { S_FREE = 0, S_PUB = 1, S_WAIT = 2 };

/* How a receiver's wait ended (sq__waiter.status). */
enum { WAKE_MSG = 0, WAKE_CLOSE = 1 };

/* Unbounded blocks: at most this many bytes of slots (and at least 3
 * slots, at most 63). */
#define BLOCK_BYTES_MAX 8192

/* Bounded: the receiver gives freed slots back to the semaphore by
 * batches of up to this many (capacity / 8 for small channels), except to
 * senders about to wait, who get them at once (see acquire_slow). */
#define RELEASE_BATCH 32

/* Bounded: a task that finds the channel full yields up to this many
 * times (a plain thread spins as long) before it queues and parks.  A
 * receiver at work frees a batch of slots within a few microseconds, and
 * yielding lets it run if it waits on the same worker; a sender that parks
 * costs a wake-up per slot. */
#define SEND_SPIN 100

/* A receiver task that finds the channel empty yields up to this many
 * times before it parks, so that senders on its worker can run first. */
#define RECV_SPIN 16

/* Unbounded: a task yields once every this many sends on its worker
 * thread (a send never waits, so a task sending in a loop would otherwise
 * keep its worker, and a receiver queued there, until it is done). */
#define SEND_BUDGET 128
static SQ__TLS unsigned send_budget;

#define BLOCK_HEADER 64

typedef struct block {
    _Atomic(struct block *) next;
} block;

/* ------------------------------------------------------------ helpers */

static inline sq__spin *rx_lock(sq_mpsc *ch)
{
    return (sq__spin *)(void *)&ch->_rx_lock;
}

static inline _Atomic uint64_t *slot_state(unsigned char *slot)
{
    return (_Atomic uint64_t *)(void *)slot;
}

static inline unsigned char *block_slots(block *b)
{
    return (unsigned char *)b + BLOCK_HEADER;
}

static inline size_t block_bytes(const sq_mpsc *ch)
{
    return BLOCK_HEADER + (size_t)ch->_mask * ch->_stride;
}

/* Copies one message; the common sizes become plain moves. */
static inline void copy_msg(void *dst, const void *src, size_t n)
{
    switch (n) {
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    case 16: memcpy(dst, src, 16); break;
    default: memcpy(dst, src, n); break;
    }
}

static void backoff(unsigned *spins)
{
    if (++*spins < 64)
        sq__cpu_relax();
    else
        sched_yield();
}

/* ------------------------------------------------------- blocks (unbounded) */

static block *block_new(sq_mpsc *ch)
{
    size_t bytes = block_bytes(ch);
    bytes = (bytes + SQ__CACHELINE - 1) & ~(size_t)(SQ__CACHELINE - 1);
    block *b = aligned_alloc(SQ__CACHELINE, bytes);
    if (!b)
        return NULL;
    atomic_init(&b->next, NULL);
    for (uint64_t i = 0; i < ch->_mask; i++)
        atomic_init(slot_state(block_slots(b) + i * ch->_stride), S_FREE);
    atomic_fetch_add_explicit(&ch->_blocks, 1, memory_order_relaxed);
    return b;
}

static void block_free(sq_mpsc *ch, block *b)
{
    free(b);
    atomic_fetch_sub_explicit(&ch->_blocks, 1, memory_order_relaxed);
}

/* A clean block: the spare if there is one, else a new one. */
static block *block_get(sq_mpsc *ch)
{
    block *b = NULL;
    if (atomic_load_explicit(&ch->_spare, memory_order_relaxed))
        b = atomic_exchange_explicit(&ch->_spare, NULL, memory_order_acquire);
    return b ? b : block_new(ch);
}

/* Keeps a clean block (every slot FREE, next NULL) as the spare, freeing
 * the one it replaces. */
static void block_put(sq_mpsc *ch, block *b)
{
    block *old = atomic_exchange_explicit(&ch->_spare, b, memory_order_acq_rel);
    if (old)
        block_free(ch, old);
}

/* ------------------------------------------------------------ waking */

/* A sender replaced WAIT: wake the registered receiver, or leave the
 * wake-up pending for the receiver that is about to look for it. */
static __attribute__((noinline)) void wake_receiver(sq_mpsc *ch)
{
    sq__spin_lock(rx_lock(ch));
    sq__waiter *w = ch->_rx_waiter;
    if (w) {
        ch->_rx_waiter = NULL;
        w->status = WAKE_MSG;
        sq__waiter_wake(w);
    } else {
        ch->_rx_pending = true;
    }
    sq__spin_unlock(rx_lock(ch));
}

/* Publishes a written slot. */
static inline void publish(sq_mpsc *ch, _Atomic uint64_t *st, uint64_t base)
{
    uint64_t old = atomic_exchange_explicit(st, base | S_PUB,
                                            memory_order_acq_rel);
    if (SQ__UNLIKELY(old == (base | S_WAIT)))
        wake_receiver(ch);
}

/* Closes the channel for sending (idempotent). */
static void close_send(sq_mpsc *ch)
{
    if (ch->_capacity)
        sq__sem_close(&ch->_slots); /* fails the blocked senders */
    sq__spin_lock(rx_lock(ch));
    uint64_t old = atomic_fetch_or_explicit(&ch->_tail, CLOSED,
                                            memory_order_acq_rel);
    if (!(old & CLOSED)) {
        uint64_t pos = old >> 1;
        /* Unbounded, mid-way past a block's sentinel: the installer will
         * move the tail to the next block's first position. */
        if (!ch->_capacity && (pos & ch->_mask) == ch->_mask)
            pos++;
        ch->_close_at = pos;
    }
    sq__waiter *w = ch->_rx_waiter;
    if (w) {
        ch->_rx_waiter = NULL;
        w->status = WAKE_CLOSE;
        sq__waiter_wake(w);
    }
    sq__spin_unlock(rx_lock(ch));
}

/* -------------------------------------------------------------- init */

int sq_mpsc_init(sq_mpsc *ch, size_t elem_size, size_t capacity)
{
    if (elem_size == 0 || elem_size > SQ_MPSC_MAX_ELEM ||
        capacity > SQ_MPSC_MAX_CAPACITY)
        return -EINVAL;
    memset(ch, 0, sizeof *ch);
    ch->_elem_size = elem_size;
    ch->_stride = sizeof(uint64_t) + ((elem_size + 7) & ~(size_t)7);
    ch->_capacity = capacity;
    ch->_ring = NULL;
    atomic_init(&ch->_senders, 1);
    atomic_init(&ch->_blocks, 0);
    atomic_init(&ch->_tail, 0);
    atomic_init(&ch->_tail_block, NULL);
    atomic_init(&ch->_head, 0);
    ch->_head_block = NULL;
    ch->_rx_close_at = 0;
    ch->_rx_close_known = false;
    atomic_init(&ch->_rx_gone, false);
    atomic_init(&ch->_rx_lock, 0);
    ch->_rx_pending = false;
    ch->_rx_waiter = NULL;
    ch->_close_at = 0;
    atomic_init(&ch->_spare, NULL);
    atomic_init(&ch->_freed, 0);
    atomic_init(&ch->_tx_parking, 0);
    ch->_batch = 1;
    if (capacity) {
        uint64_t r = 1;
        while (r < capacity)
            r <<= 1;
        size_t bytes = (size_t)r * ch->_stride;
        bytes = (bytes + SQ__CACHELINE - 1) & ~(size_t)(SQ__CACHELINE - 1);
        ch->_ring = aligned_alloc(SQ__CACHELINE, bytes);
        if (!ch->_ring)
            return -ENOMEM;
        ch->_mask = r - 1;
        for (uint64_t i = 0; i < r; i++)
            atomic_init(slot_state(ch->_ring + i * ch->_stride), i << 2);
        sq__sem_init(&ch->_slots, capacity);
        ch->_batch = capacity / 8 < RELEASE_BATCH ? capacity / 8
                                                  : RELEASE_BATCH;
        if (ch->_batch == 0)
            ch->_batch = 1;
    } else {
        uint64_t lap = 64;
        while (lap > 4 && (lap - 1) * ch->_stride > BLOCK_BYTES_MAX)
            lap >>= 1;
        ch->_mask = lap - 1; /* slots per block; also the sentinel offset */
        sq__sem_init(&ch->_slots, 0);
        block *b = block_new(ch);
        if (!b)
            return -ENOMEM;
        atomic_init(&ch->_tail_block, b);
        ch->_head_block = b;
    }
    return 0;
}

int sq_mpsc_destroy(sq_mpsc *ch)
{
    if (ch->_capacity && sq__sem_has_waiters(&ch->_slots))
        return -EBUSY;
    sq__spin_lock(rx_lock(ch));
    bool busy = ch->_rx_waiter != NULL;
    sq__spin_unlock(rx_lock(ch));
    if (busy)
        return -EBUSY;
    if (ch->_capacity) {
        free(ch->_ring);
        ch->_ring = NULL;
        return 0;
    }
    block *b = ch->_head_block;
    while (b) {
        block *next = atomic_load_explicit(&b->next, memory_order_acquire);
        block_free(ch, b);
        b = next;
    }
    ch->_head_block = NULL;
    atomic_store_explicit(&ch->_tail_block, NULL, memory_order_relaxed);
    block *s = atomic_exchange_explicit(&ch->_spare, NULL, memory_order_acquire);
    if (s)
        block_free(ch, s);
    return 0;
}

/* -------------------------------------------------------------- send */

/* The receiver's freed slots that it has not released yet go to the
 * semaphore (to its waiters first). */
static void release_freed(sq_mpsc *ch)
{
    size_t n = atomic_exchange_explicit(&ch->_freed, 0, memory_order_acq_rel);
    if (n)
        sq__sem_release(&ch->_slots, n, ch->_capacity, SQ__SEM_OVER_SATURATE,
                        0);
}

/* No free slot now (the semaphore said -EAGAIN). */
static __attribute__((noinline)) int acquire_slow(sq_mpsc *ch,
                                                  int64_t deadline, bool try)
{
    int rc = -EAGAIN;
    if (!try) {
        /* Unless senders are queued already, spin a little (SEND_SPIN). */
        bool task = sq__task_current() != NULL;
        for (int i = 0; i < SEND_SPIN && !sq__sem_has_waiters(&ch->_slots);
             i++) {
            if (task) {
                if (sq_yield() == -ECANCELED)
                    break;
            } else {
                for (int k = 0; k < 8; k++)
                    sq__cpu_relax();
            }
            rc = sq__sem_try_acquire(&ch->_slots, 1);
            if (rc != -EAGAIN)
                return rc;
        }
    }
    /* About to fail or to wait: announce it, then take what the receiver
     * holds back.  Both sides do a seq_cst read-modify-write, then look at
     * the other's word, so either we get the receiver's freed slots here
     * or it sees us and releases them itself (rx_take). */
    atomic_fetch_add_explicit(&ch->_tx_parking, 1, memory_order_seq_cst);
    release_freed(ch);
    if (try)
        rc = sq__sem_try_acquire(&ch->_slots, 1);
    else
        rc = sq__sem_acquire_as(&ch->_slots, 1, deadline, true,
                                SQ__WAIT_CHANNEL);
    atomic_fetch_sub_explicit(&ch->_tx_parking, 1, memory_order_release);
    return rc;
}

static int send_bounded(sq_mpsc *ch, const void *msg, int64_t deadline,
                        bool try)
{
    int rc = sq__sem_try_acquire(&ch->_slots, 1);
    if (SQ__UNLIKELY(rc == -EAGAIN))
        rc = acquire_slow(ch, deadline, try);
    if (SQ__UNLIKELY(rc))
        return rc == -ESHUTDOWN ? -EPIPE : rc;
    uint64_t t = atomic_fetch_add_explicit(&ch->_tail, 2,
                                           memory_order_relaxed);
    if (SQ__UNLIKELY(t & CLOSED)) {
        /* Claimed after the close: void; give the slot back. */
        sq__sem_release(&ch->_slots, 1, ch->_capacity, SQ__SEM_OVER_SATURATE,
                        0);
        return -EPIPE;
    }
    uint64_t pos = t >> 1, base = pos << 2;
    unsigned char *s = ch->_ring + (pos & ch->_mask) * ch->_stride;
    _Atomic uint64_t *st = slot_state(s);
    /* Emptied of position pos - R already (see the top comment); the
     * acquire load orders our write after the receiver's read.  The state
     * is FREE or WAIT (the receiver may be asleep on it). */
    while (SQ__UNLIKELY((atomic_load_explicit(st, memory_order_acquire) &
                         ~(uint64_t)3) != base))
        sq__cpu_relax();
    copy_msg(s + sizeof(uint64_t), msg, ch->_elem_size);
    publish(ch, st, base);
    return 0;
}

static int send_unbounded(sq_mpsc *ch, const void *msg, bool try)
{
    const uint64_t last = ch->_mask; /* sentinel offset */
    block *fresh = NULL;
    unsigned spins = 0;
    int rc;
    uint64_t t = atomic_load_explicit(&ch->_tail, memory_order_acquire);
    for (;;) {
        if (SQ__UNLIKELY(t & CLOSED)) {
            rc = -EPIPE;
            break;
        }
        uint64_t off = (t >> 1) & last;
        if (SQ__UNLIKELY(off == last)) {
            /* Another sender is linking the next block. */
            backoff(&spins);
            t = atomic_load_explicit(&ch->_tail, memory_order_acquire);
            continue;
        }
        block *b = atomic_load_explicit(&ch->_tail_block, memory_order_acquire);
        if (SQ__UNLIKELY(off + 1 == last && !fresh)) {
            /* Taking the block's last slot: have the next block first. */
            fresh = block_get(ch);
            if (!fresh) {
                rc = -ENOMEM;
                break;
            }
        }
        if (atomic_compare_exchange_weak_explicit(&ch->_tail, &t, t + 2,
                                                  memory_order_acquire,
                                                  memory_order_acquire)) {
            if (SQ__UNLIKELY(off + 1 == last)) {
                atomic_store_explicit(&b->next, fresh, memory_order_release);
                atomic_store_explicit(&ch->_tail_block, fresh,
                                      memory_order_release);
                /* Past the sentinel (an add: CLOSED may have been set). */
                atomic_fetch_add_explicit(&ch->_tail, 2, memory_order_release);
                fresh = NULL;
            } else if (SQ__UNLIKELY(fresh != NULL)) {
                block_put(ch, fresh);
            }
            unsigned char *s = block_slots(b) + off * ch->_stride;
            copy_msg(s + sizeof(uint64_t), msg, ch->_elem_size);
            publish(ch, slot_state(s), 0);
            if (SQ__UNLIKELY(++send_budget >= SEND_BUDGET) && !try) {
                send_budget = 0;
                if (sq__task_current())
                    sq_yield(); /* not a cancellation point here */
            }
            return 0;
        }
    }
    if (fresh)
        block_put(ch, fresh);
    return rc;
}

int sq_mpsc_send_until(sq_mpsc *ch, const void *msg, int64_t deadline)
{
    if (deadline < 0)
        return -EINVAL;
    if (ch->_capacity)
        return send_bounded(ch, msg, deadline, false);
    return send_unbounded(ch, msg, false);
}

int sq_mpsc_send(sq_mpsc *ch, const void *msg)
{
    if (ch->_capacity)
        return send_bounded(ch, msg, SQ_FOREVER, false);
    return send_unbounded(ch, msg, false);
}

int sq_mpsc_try_send(sq_mpsc *ch, const void *msg)
{
    if (ch->_capacity)
        return send_bounded(ch, msg, SQ_FOREVER, true);
    return send_unbounded(ch, msg, true);
}

/* -------------------------------------------------------------- recv */

/* The slot of position h and its state base (the state without the
 * FREE/PUB/WAIT bits). */
static inline unsigned char *rx_slot(sq_mpsc *ch, uint64_t h, uint64_t *base)
{
    if (ch->_capacity) {
        *base = h << 2;
        return ch->_ring + (h & ch->_mask) * ch->_stride;
    }
    *base = 0;
    return block_slots(ch->_head_block) + (h & ch->_mask) * ch->_stride;
}

/* Takes the published message at position h out of slot s. */
static inline void rx_take(sq_mpsc *ch, unsigned char *s, uint64_t h,
                           void *msg)
{
    copy_msg(msg, s + sizeof(uint64_t), ch->_elem_size);
    if (ch->_capacity) {
        atomic_store_explicit(slot_state(s), (h + ch->_mask + 1) << 2,
                              memory_order_release);
        atomic_store_explicit(&ch->_head, h + 1, memory_order_relaxed);
        /* Give the slot back in batches, except to a sender about to wait
         * (the other half of the handshake in acquire_slow). */
        size_t n = atomic_fetch_add_explicit(&ch->_freed, 1,
                                             memory_order_seq_cst);
        if (n + 1 >= ch->_batch ||
            atomic_load_explicit(&ch->_tx_parking, memory_order_seq_cst))
            release_freed(ch);
        return;
    }
    /* Clean the slot for the block's next use (published to its next
     * user through block_put / block_get). */
    atomic_store_explicit(slot_state(s), S_FREE, memory_order_relaxed);
    if (SQ__LIKELY(((h + 1) & ch->_mask) != ch->_mask)) {
        atomic_store_explicit(&ch->_head, h + 1, memory_order_relaxed);
        return;
    }
    /* That was the block's last slot: its sender linked the next block
     * before publishing it, and nobody else touches this one again. */
    block *b = ch->_head_block;
    block *next = atomic_load_explicit(&b->next, memory_order_acquire);
    atomic_store_explicit(&b->next, NULL, memory_order_relaxed);
    ch->_head_block = next;
    atomic_store_explicit(&ch->_head, h + 2, memory_order_relaxed);
    block_put(ch, b);
}

/* True if the stream has ended at position h. */
static bool rx_ended(sq_mpsc *ch, uint64_t h)
{
    if (!ch->_rx_close_known) {
        if (!(atomic_load_explicit(&ch->_tail, memory_order_acquire) & CLOSED))
            return false;
        /* The closer wrote _close_at under the lock (and is done with the
         * channel once we have had the lock after it). */
        sq__spin_lock(rx_lock(ch));
        ch->_rx_close_at = ch->_close_at;
        sq__spin_unlock(rx_lock(ch));
        ch->_rx_close_known = true;
    }
    return h >= ch->_rx_close_at;
}

static inline bool signalled(sq__waiter *w)
{
    return atomic_load_explicit(&w->signalled, memory_order_acquire);
}

/* The sender of the slot we had marked WAIT has seen the mark, so it owes
 * us one wake-up: wait until it has been given (to w, registered again if
 * a closer took it off), or find it pending.  Not cancellable: the sender
 * is running and gives it at once. */
static void rx_collect_wakeup(sq_mpsc *ch, sq__waiter *w)
{
    sq__spin_lock(rx_lock(ch));
    for (;;) {
        if (ch->_rx_pending) {
            ch->_rx_pending = false;
            break;
        }
        if (ch->_rx_waiter != w) {
            sq__waiter_init_for(w, SQ__WAIT_CHANNEL, ch);
            ch->_rx_waiter = w;
        }
        sq__spin_unlock(rx_lock(ch));
        sq__waiter_wait(w, SQ_FOREVER, false);
        sq__spin_lock(rx_lock(ch));
        if (signalled(w) && w->status == WAKE_MSG)
            break;
        /* A closer's wake-up: register again. */
    }
    sq__spin_unlock(rx_lock(ch));
}

/* Waits for the slot of state `st` (base `base`) to be published, or for a
 * close.  Returns 0 to look again, or -ETIMEDOUT / -ECANCELED / -ENOMEM
 * with nothing consumed and no mark left behind. */
static int rx_wait(sq_mpsc *ch, _Atomic uint64_t *st, uint64_t base,
                   int64_t deadline)
{
    sq__waiter w;
    sq__waiter_init_for(&w, SQ__WAIT_CHANNEL, ch);
    sq__spin_lock(rx_lock(ch));
    if (!ch->_rx_close_known &&
        (atomic_load_explicit(&ch->_tail, memory_order_relaxed) & CLOSED)) {
        sq__spin_unlock(rx_lock(ch));
        return 0; /* closed meanwhile: go and learn where it ends */
    }
    ch->_rx_waiter = &w;
    sq__spin_unlock(rx_lock(ch));

    uint64_t expect = base | S_FREE;
    if (!atomic_compare_exchange_strong_explicit(st, &expect, base | S_WAIT,
                                                 memory_order_acq_rel,
                                                 memory_order_acquire)) {
        /* Published meanwhile: nobody saw a mark. */
        sq__spin_lock(rx_lock(ch));
        if (ch->_rx_waiter == &w)
            ch->_rx_waiter = NULL;
        sq__spin_unlock(rx_lock(ch));
        return 0;
    }

    int rc = sq__waiter_wait(&w, deadline, true);

    sq__spin_lock(rx_lock(ch));
    if (signalled(&w) && w.status == WAKE_MSG) {
        sq__spin_unlock(rx_lock(ch)); /* the sender's wake-up is over */
        return 0;
    }
    /* Timed out, cancelled or closed: take the mark back. */
    expect = base | S_WAIT;
    if (atomic_compare_exchange_strong_explicit(st, &expect, base | S_FREE,
                                                memory_order_acq_rel,
                                                memory_order_acquire)) {
        if (ch->_rx_waiter == &w)
            ch->_rx_waiter = NULL;
        sq__spin_unlock(rx_lock(ch));
        return signalled(&w) ? 0 : rc; /* a close: look again */
    }
    sq__spin_unlock(rx_lock(ch));
    /* The message arrived as the wait ended: it is ours (0) once its
     * sender has finished waking us. */
    rx_collect_wakeup(ch, &w);
    return 0;
}

static int recv_common(sq_mpsc *ch, void *msg, int64_t deadline,
                       bool may_wait)
{
    int spins = 0;
    for (;;) {
        uint64_t h = atomic_load_explicit(&ch->_head, memory_order_relaxed);
        uint64_t base;
        unsigned char *s = rx_slot(ch, h, &base);
        _Atomic uint64_t *st = slot_state(s);
        if (SQ__LIKELY(atomic_load_explicit(st, memory_order_acquire) ==
                       (base | S_PUB))) {
            rx_take(ch, s, h, msg);
            return 0;
        }
        if (ch->_capacity &&
            atomic_load_explicit(&ch->_freed, memory_order_relaxed))
            release_freed(ch); /* empty: nothing to batch for */
        if (rx_ended(ch, h))
            return -EPIPE;
        if (!may_wait ||
            atomic_load_explicit(&ch->_rx_gone, memory_order_relaxed))
            return -EAGAIN;
        if (spins < RECV_SPIN && sq__task_current()) {
            /* Let the senders on this worker run before sleeping. */
            spins++;
            if (sq_yield() != -ECANCELED)
                continue;
        }
        int rc = rx_wait(ch, st, base, deadline);
        if (rc)
            return rc;
    }
}

int sq_mpsc_recv_until(sq_mpsc *ch, void *msg, int64_t deadline)
{
    if (deadline < 0)
        return -EINVAL;
    return recv_common(ch, msg, deadline, true);
}

int sq_mpsc_recv(sq_mpsc *ch, void *msg)
{
    return recv_common(ch, msg, SQ_FOREVER, true);
}

int sq_mpsc_try_recv(sq_mpsc *ch, void *msg)
{
    return recv_common(ch, msg, SQ_FOREVER, false);
}

/* ----------------------------------------------------- senders, close */

int sq_mpsc_sender_add(sq_mpsc *ch)
{
    long n = atomic_load_explicit(&ch->_senders, memory_order_relaxed);
    do {
        if (n <= 0)
            return -EPIPE;
        if (n == LONG_MAX)
            return -EOVERFLOW;
    } while (!atomic_compare_exchange_weak_explicit(
        &ch->_senders, &n, n + 1, memory_order_relaxed, memory_order_relaxed));
    return 0;
}

int sq_mpsc_sender_drop(sq_mpsc *ch)
{
    long n = atomic_load_explicit(&ch->_senders, memory_order_relaxed);
    do {
        if (n <= 0)
            return -EINVAL;
    } while (!atomic_compare_exchange_weak_explicit(
        &ch->_senders, &n, n - 1, memory_order_acq_rel, memory_order_relaxed));
    if (n == 1)
        close_send(ch);
    return 0;
}

void sq_mpsc_close(sq_mpsc *ch)
{
    close_send(ch);
}

void sq_mpsc_recv_close(sq_mpsc *ch)
{
    atomic_store_explicit(&ch->_rx_gone, true, memory_order_relaxed);
    close_send(ch);
}

/* ----------------------------------------------------------- queries */

bool sq_mpsc_is_closed(sq_mpsc *ch)
{
    return atomic_load_explicit(&ch->_tail, memory_order_acquire) & CLOSED;
}

/* Messages in positions [0, pos) of an unbounded channel (sentinels are
 * not messages). */
static uint64_t unbounded_count(const sq_mpsc *ch, uint64_t pos)
{
    uint64_t lap = ch->_mask + 1;
    uint64_t off = pos & ch->_mask;
    return (pos / lap) * ch->_mask + (off < ch->_mask ? off : ch->_mask);
}

size_t sq_mpsc_len(sq_mpsc *ch)
{
    uint64_t h = atomic_load_explicit(&ch->_head, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&ch->_tail, memory_order_acquire);
    uint64_t end = t >> 1;
    if (t & CLOSED) {
        sq__spin_lock(rx_lock(ch));
        if (ch->_close_at < end)
            end = ch->_close_at;
        sq__spin_unlock(rx_lock(ch));
    }
    if (end <= h)
        return 0;
    if (ch->_capacity) {
        uint64_t n = end - h;
        return n > ch->_capacity ? ch->_capacity : (size_t)n;
    }
    return (size_t)(unbounded_count(ch, end) - unbounded_count(ch, h));
}

size_t sq_mpsc_senders_waiting(sq_mpsc *ch)
{
    long n = atomic_load_explicit(&ch->_tx_parking, memory_order_acquire);
    return n > 0 ? (size_t)n : 0;
}

bool sq_mpsc_receiver_waiting(sq_mpsc *ch)
{
    sq__spin_lock(rx_lock(ch));
    bool waiting = ch->_rx_waiter != NULL;
    sq__spin_unlock(rx_lock(ch));
    return waiting;
}

size_t sq_mpsc_capacity(sq_mpsc *ch)
{
    return ch->_capacity;
}

size_t sq_mpsc_memory(sq_mpsc *ch)
{
    if (ch->_capacity)
        return ch->_ring ? (size_t)(ch->_mask + 1) * ch->_stride : 0;
    return atomic_load_explicit(&ch->_blocks, memory_order_relaxed) *
           block_bytes(ch);
}
