/* sq_watch: a value's words, a sequence word and a wait list.
 *
 * _seq = version << 2 | WRITING | CLOSED.  It is at once the senders'
 * lock, the readers' seqlock and the word receivers wait on:
 *  - A send takes WRITING with a CAS (spinning while another send holds
 *    it), stores the words (release: after the mark), then stores the next
 *    version with WRITING clear (a seq_cst exchange, for the wait list) and
 *    wakes the waiting receivers.  Nobody else changes _seq while WRITING
 *    is set (close waits for it), so that exchange cannot lose a bit.
 *  - A read loads _seq (acquire); if WRITING it spins; else it copies the
 *    words (acquire loads) and loads _seq again: unchanged (but for
 *    CLOSED) means no send started in between, so the copy is whole and
 *    is that version's value (versions only grow; a word from a newer
 *    send would make the second load see its mark).
 *  - A receiver with nothing new waits until (_seq & ~WRITING) changes:
 *    a new version or CLOSED (waitlist.c: no lost wake-up).
 * Close sets CLOSED and takes the wait list under the wait list's lock,
 * which rx_drop also takes: a receiver that saw -EPIPE and dropped knows
 * close is done with the channel.
 *
 * Cost: a send is a CAS, the copy, an exchange and (nobody waiting)
 * one seq_cst load.  A read is two loads plus the copy.  Nothing
 * allocates after init. */
#include "squirrel/watch.h"

#include "waitlist.h"
#include "words.h"

#include <sched.h>
#include <stdlib.h>

#define CLOSED ((uint64_t)1)
#define WRITING ((uint64_t)2)
#define VERSION_SHIFT 2
#define ONE_VERSION ((uint64_t)1 << VERSION_SHIFT)

static inline uint64_t version_of(uint64_t seq)
{
    return seq >> VERSION_SHIFT;
}

static void backoff(unsigned *spins)
{
    if (++*spins < 64)
        sq__cpu_relax();
    else
        sched_yield();
}

/* Waits (spinning) until no send is copying; returns _seq then. */
static uint64_t seq_quiet(sq_watch *w, memory_order mo)
{
    unsigned spins = 0;
    uint64_t s;
    while ((s = atomic_load_explicit(&w->_seq, mo)) & WRITING)
        backoff(&spins);
    return s;
}

/* ------------------------------------------------------------ lifecycle */

int sq_watch_init(sq_watch *w, size_t elem_size, const void *initial)
{
    if (elem_size == 0 || elem_size > SQ_WATCH_MAX_ELEM)
        return -EINVAL;
    _Atomic uint64_t *value = calloc(sq__words_for(elem_size), 8);
    if (!value)
        return -ENOMEM;
    if (initial)
        sq__words_store(value, initial, elem_size);
    w->_elem_size = elem_size;
    w->_value = value;
    atomic_init(&w->_seq, 0);
    atomic_init(&w->_receivers, 0);
    sq__waitlist_init(&w->_waiters);
    return 0;
}

int sq_watch_destroy(sq_watch *w)
{
    if (!w->_value)
        return -EINVAL;
    sq__spin_lock(sq__waitlist_lock(&w->_waiters));
    bool busy = atomic_load_explicit(&w->_receivers, memory_order_relaxed) ||
                sq__waitlist_count(&w->_waiters);
    sq__spin_unlock(sq__waitlist_lock(&w->_waiters));
    if (busy)
        return -EBUSY;
    free(w->_value);
    w->_value = NULL;
    return 0;
}

int sq_watch_subscribe(sq_watch *w, sq_watch_rx *rx)
{
    atomic_fetch_add_explicit(&w->_receivers, 1, memory_order_relaxed);
    rx->_w = w;
    rx->_seen = version_of(atomic_load_explicit(&w->_seq, memory_order_acquire));
    return 0;
}

int sq_watch_rx_drop(sq_watch_rx *rx)
{
    sq_watch *w = rx->_w;
    if (!w)
        return -EINVAL;
    sq__spin_lock(sq__waitlist_lock(&w->_waiters));
    atomic_fetch_sub_explicit(&w->_receivers, 1, memory_order_relaxed);
    sq__spin_unlock(sq__waitlist_lock(&w->_waiters));
    rx->_w = NULL;
    return 0;
}

/* ----------------------------------------------------------- send, close */

int sq_watch_send(sq_watch *w, const void *value)
{
    uint64_t s = atomic_load_explicit(&w->_seq, memory_order_relaxed);
    unsigned spins = 0;
    for (;;) {
        if (s & CLOSED)
            return -EPIPE;
        if (s & WRITING) {
            backoff(&spins);
            s = atomic_load_explicit(&w->_seq, memory_order_relaxed);
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&w->_seq, &s, s | WRITING,
                                                  memory_order_acquire,
                                                  memory_order_relaxed))
            break;
    }
    sq__words_store(w->_value, value, w->_elem_size);
    /* an exchange, not a store: see sq__waitlist_wait */
    atomic_exchange_explicit(&w->_seq, s + ONE_VERSION, memory_order_seq_cst);
    sq__waitlist_wake(&w->_waiters);
    return 0;
}

void sq_watch_close(sq_watch *w)
{
    sq__spin_lock(sq__waitlist_lock(&w->_waiters));
    uint64_t s = seq_quiet(w, memory_order_relaxed);
    while (!(s & CLOSED)) {
        if (s & WRITING) {
            s = seq_quiet(w, memory_order_relaxed);
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&w->_seq, &s, s | CLOSED,
                                                  memory_order_seq_cst,
                                                  memory_order_relaxed))
            break;
    }
    struct sq__link *l = sq__waitlist_take_locked(&w->_waiters);
    sq__spin_unlock(sq__waitlist_lock(&w->_waiters));
    sq__waitlist_release(l);
}

/* ------------------------------------------------------------- reading */

/* Copies the value (unless out is NULL) and returns its _seq. */
static uint64_t load_value(sq_watch *w, void *out)
{
    for (;;) {
        uint64_t s1 = seq_quiet(w, memory_order_acquire);
        if (!out)
            return s1;
        sq__words_load(out, w->_value, w->_elem_size);
        uint64_t s2 = atomic_load_explicit(&w->_seq, memory_order_relaxed);
        if ((s1 | CLOSED) == (s2 | CLOSED))
            return s1;
    }
}

int sq_watch_read(sq_watch_rx *rx, void *out, uint64_t *version)
{
    if (!rx->_w)
        return -EINVAL;
    uint64_t v = version_of(load_value(rx->_w, out));
    rx->_seen = v;
    if (version)
        *version = v;
    return 0;
}

uint64_t sq_watch_get(sq_watch *w, void *out)
{
    return version_of(load_value(w, out));
}

int sq_watch_has_changed(sq_watch_rx *rx)
{
    if (!rx->_w)
        return -EINVAL;
    uint64_t s = atomic_load_explicit(&rx->_w->_seq, memory_order_acquire);
    if (version_of(s) != rx->_seen)
        return 1;
    return (s & CLOSED) ? -EPIPE : 0;
}

int sq_watch_changed_until(sq_watch_rx *rx, int64_t deadline)
{
    sq_watch *w = rx->_w;
    if (deadline < 0 || !w)
        return -EINVAL;
    for (;;) {
        uint64_t s = atomic_load_explicit(&w->_seq, memory_order_acquire);
        if (version_of(s) != rx->_seen)
            return 0;
        if (s & CLOSED)
            return -EPIPE;
        int rc = sq__waitlist_wait(&w->_waiters, &w->_seq, ~WRITING,
                                   s & ~WRITING, deadline);
        if (rc)
            return rc;
    }
}

int sq_watch_changed(sq_watch_rx *rx)
{
    return sq_watch_changed_until(rx, SQ_FOREVER);
}

/* ------------------------------------------------------------ snapshots */

uint64_t sq_watch_version(sq_watch *w)
{
    return version_of(atomic_load_explicit(&w->_seq, memory_order_acquire));
}

bool sq_watch_is_closed(sq_watch *w)
{
    return atomic_load_explicit(&w->_seq, memory_order_acquire) & CLOSED;
}

size_t sq_watch_receivers(sq_watch *w)
{
    long n = atomic_load_explicit(&w->_receivers, memory_order_relaxed);
    return n > 0 ? (size_t)n : 0;
}
