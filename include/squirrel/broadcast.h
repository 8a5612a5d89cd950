/* Squirrel sync layer: a broadcast channel (many senders, many receivers,
 * every receiver sees every message), after tokio's broadcast.
 *
 * Messages are fixed-size, `elem_size` bytes set at init, copied in by
 * send and out by recv.  The channel keeps the newest `capacity` messages
 * in a ring.  The conventions of squirrel/sync.h apply (waiting suspends
 * a task and blocks a plain thread; cancel safety; deadlines on the
 * sq_now() clock), with these specifics:
 *
 *  - Receivers subscribe with a receiver struct of their own
 *    (sq_broadcast_rx, caller-owned, no allocation) and see every message
 *    sent after they subscribed, in one global order: the order in which
 *    the sends took place, the same for every receiver (so the messages
 *    of one sender arrive in the order it sent them).  A receiver is used
 *    by one task or thread at a time.
 *  - Senders never wait for receivers.  When the ring is full the oldest
 *    message is overwritten.  A receiver that fell behind by more than
 *    `capacity` messages is told so: its next recv returns -EOVERFLOW
 *    with the exact number of messages it missed, and it continues from
 *    the oldest message still held.  For every receiver, messages
 *    received + messages reported missed == messages sent while it was
 *    subscribed (once it has read to the end).  Senders serialise on a
 *    short spin lock held while a message is copied into the ring.
 *  - Waiting: a receiver with nothing new waits; each send (and close)
 *    wakes every waiting receiver at once, so there is no queue order to
 *    speak of.  A receiver waiting at the moment of a send always sees it.
 *  - Closing (sq_broadcast_close) stops sending; each receiver receives
 *    what it has not yet seen (as far as the ring still holds it), then
 *    gets -EPIPE (end of stream).
 *  - Cancel safety: a recv that returns -ECANCELED or -ETIMEDOUT has
 *    consumed nothing (the receiver's position is unchanged).
 *  - Lifetime: sq_broadcast_destroy must not run while any other call on
 *    the channel is in progress, and every receiver must have been
 *    dropped (-EBUSY otherwise).  A receiver that has seen end of stream
 *    and then dropped knows that sq_broadcast_close has finished with the
 *    channel.
 *
 * Errors, for every call below: -EINVAL for a negative deadline or a
 * receiver that is not subscribed.
 */
#ifndef SQUIRREL_BROADCAST_H
#define SQUIRREL_BROADCAST_H

#include "squirrel/sync.h"
#include "squirrel/waitlist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest capacity, and the largest message. */
#define SQ_BROADCAST_MAX_CAPACITY ((size_t)1 << 32)
#define SQ_BROADCAST_MAX_ELEM ((size_t)1 << 20)

/* A channel.  Its fields are private.  The read-only fields, the
 * senders' fields and the wait list sit on separate cache lines (padding,
 * no alignment requirement): about 150 bytes.  It may be embedded or live
 * on a stack; the ring is allocated. */
typedef struct sq_broadcast {
    /* Set at init, read-only after. */
    size_t _elem_size;         /* bytes per message */
    size_t _words;             /* 64-bit words per message */
    size_t _capacity;          /* messages held */
    _Atomic uint64_t *_ring;   /* capacity slots of (1 + _words) words */
    char _pad0[32];

    /* Senders' line. */
    atomic_int _tx_lock;       /* spin lock: sends, subscribe, drop, close */
    atomic_long _receivers;    /* subscribed receivers (written under
                                  _tx_lock) */
    _Atomic uint64_t _tail;    /* next position << 1 | CLOSED */
    char _pad1[40];

    sq__waitlist _waiters;     /* receivers waiting for a message */
} sq_broadcast;

/* A receiver: caller-owned, subscribed with sq_broadcast_subscribe.  Its
 * fields are private. */
typedef struct sq_broadcast_rx {
    sq_broadcast *_b;          /* NULL when not subscribed */
    uint64_t _next;            /* next position to receive */
} sq_broadcast_rx;

/* Initialises b for messages of elem_size bytes (1 ..
 * SQ_BROADCAST_MAX_ELEM), keeping the newest `capacity` (1 ..
 * SQ_BROADCAST_MAX_CAPACITY).  Open, with no receivers.  Allocates the
 * ring: capacity * (8 + elem_size rounded up to 8) bytes.  Returns 0,
 * -EINVAL (bad size or capacity) or -ENOMEM.  Never waits. */
int sq_broadcast_init(sq_broadcast *b, size_t elem_size, size_t capacity);

/* Frees the ring.  Returns -EBUSY if a receiver is still subscribed
 * (waiting or not; nothing is changed then), -EINVAL if b was already
 * destroyed, else 0.  See "Lifetime" above.  Never waits. */
int sq_broadcast_destroy(sq_broadcast *b);

/* Subscribes rx (uninitialised, or dropped) to b: rx will receive every
 * message sent after this call, not the ones already in the ring.  On a
 * closed channel the receiver's recv returns -EPIPE at once.  Returns 0.
 * Never waits (beyond the senders' spin lock); any thread. */
int sq_broadcast_subscribe(sq_broadcast *b, sq_broadcast_rx *rx);

/* Unsubscribes rx (unreceived messages are simply left behind); rx may
 * then be reused or discarded.  Returns 0, or -EINVAL if rx is not
 * subscribed.  Must not run while a recv on rx is in progress.  Never
 * waits. */
int sq_broadcast_rx_drop(sq_broadcast_rx *rx);

/* Sends the elem_size bytes at msg to every subscribed receiver,
 * overwriting the oldest message if the ring is full.  Returns the number
 * of receivers subscribed at that moment (> 0; INT_MAX if more), each of
 * which will see the message unless it falls behind; -EPIPE if the channel
 * is closed or has no receiver: then the message is not stored at all.
 * Never waits for receivers (only, briefly, for other senders' copies);
 * not a cancellation point.  Any task or thread. */
int sq_broadcast_send(sq_broadcast *b, const void *msg);

/* Receives the next message for rx into msg (elem_size bytes), waiting if
 * there is none yet.  Returns:
 *   0            a message was copied to msg;
 *   -EOVERFLOW   rx fell behind: *missed (may be NULL) is set to the
 *                number of messages it lost (>= 1), and the next recv
 *                continues with the oldest message still held; msg's
 *                bytes are unspecified (a copy overtaken by a sender);
 *   -EPIPE       end of stream: the channel is closed and rx has seen
 *                everything (the ring still held) sent before the close.
 * Cancellation point, only when it has to wait: -ECANCELED, having
 * consumed nothing.  A message that is there is received even by an
 * aborted task. */
int sq_broadcast_recv(sq_broadcast_rx *rx, void *msg, uint64_t *missed);

/* As sq_broadcast_recv, giving up at `deadline` with -ETIMEDOUT, having
 * consumed nothing.  A deadline already passed still receives a message
 * that is there now. */
int sq_broadcast_recv_until(sq_broadcast_rx *rx, void *msg, uint64_t *missed,
                            int64_t deadline);

/* Receives only what is there now: 0, -EOVERFLOW, -EPIPE as recv, or
 * -EAGAIN (no new message; nothing consumed).  Never waits; not a
 * cancellation point. */
int sq_broadcast_try_recv(sq_broadcast_rx *rx, void *msg, uint64_t *missed);

/* Closes b: later sends fail with -EPIPE, waiting receivers wake up and
 * drain what they have not seen, then get -EPIPE.  Idempotent.  Never
 * waits (beyond the senders' spin lock); any thread. */
void sq_broadcast_close(sq_broadcast *b);

/* True once b is closed.  Never waits. */
bool sq_broadcast_is_closed(sq_broadcast *b);

/* Receivers subscribed now (a snapshot).  Never waits. */
size_t sq_broadcast_receivers(sq_broadcast *b);

/* Messages rx has not yet received that the ring still holds (at most
 * the capacity; a snapshot).  0 if rx is not subscribed.  Never waits. */
size_t sq_broadcast_rx_pending(sq_broadcast_rx *rx);

/* The capacity given at init.  Never waits. */
size_t sq_broadcast_capacity(sq_broadcast *b);

#ifdef __cplusplus
}
#endif

#endif
