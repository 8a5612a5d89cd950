/* Squirrel sync layer: multi-producer, single-consumer channels, bounded
 * and unbounded.
 *
 * A channel carries fixed-size messages of `elem_size` bytes, set at init
 * and copied in by send and out by recv (send a struct, or a pointer to
 * one).  Any number of tasks and plain threads may send; one receiver
 * (one task or thread at a time) receives.  The conventions of
 * squirrel/sync.h apply (waiting suspends a task and blocks a plain
 * thread; FIFO; cancel safety; deadlines on the sq_now() clock), with
 * these specifics:
 *
 *  - Bounded (capacity > 0): at most `capacity` messages are queued.  A
 *    send into a full channel waits for a free slot; free slots go to the
 *    waiting senders in arrival order (FIFO, no barging by later senders
 *    or by try_send).  A slot that recv frees goes to a waiting sender at
 *    once; while nobody waits, recv hands slots back in small batches,
 *    which a sender collects before it would wait (or fail a try_send):
 *    no send ever waits for a slot that recv has already freed.
 *  - Unbounded (capacity 0): send never waits.  Messages live in blocks
 *    of 63 slots of 8 + elem_size bytes (fewer slots for messages over
 *    120 bytes: at most 8 KiB of slots a block, but at least 3 slots),
 *    allocated as needed and freed as they are drained (one drained
 *    block is kept as a spare); send can fail with -ENOMEM.
 *  - Scheduling: a sending task lets the other tasks of its worker run
 *    (sq_yield) before it waits for a slot, and, unbounded, once every
 *    128 sends; a receiving task does so a few times before it sleeps on
 *    an empty channel.  Tasks that share a worker with the other side of the
 *    channel are not starved, and fewer park and wake-up round trips are
 *    needed.  None of these yields is a cancellation point of its own.
 *  - Order: the messages of one sender (one task or thread sending one
 *    after another) are received in the order they were sent.  Senders
 *    that were blocked get their slots in arrival order; their messages
 *    are queued in the order their sends complete.
 *  - Senders are counted.  The channel starts with one sender;
 *    sq_mpsc_sender_add registers another (the C form of cloning a
 *    sender), sq_mpsc_sender_drop unregisters one.  When the count reaches
 *    0 the channel is closed for sending: the receiver drains what is
 *    queued and then gets -EPIPE (end of stream).
 *  - The receiver may close the channel (sq_mpsc_close: no more sends,
 *    drain the rest) or declare itself gone (sq_mpsc_recv_close).  Either
 *    way later sends and waiting senders fail with -EPIPE; a send racing
 *    with the close either fails so (its message stays the caller's) or
 *    completes, and then its message can still be received.
 *  - Cancel safety: a send that returns anything but 0 has not queued its
 *    message (it stays the caller's) and holds no slot.  A recv that
 *    returns anything but 0 has consumed nothing; a message that arrives
 *    at the very instant a recv times out or is cancelled is returned
 *    (0), never dropped.  Slots are never lost.
 *  - Lifetime: sq_mpsc_destroy must not run while any other call on the
 *    channel is in progress.  In practice: destroy after the receiver has
 *    seen end of stream (every sender has been dropped, and a dropped
 *    sender has finished every call), or after the receiver closed and
 *    every sender has stopped.
 *
 * Errors, for every call below: -EINVAL for a negative deadline.
 */
#ifndef SQUIRREL_MPSC_H
#define SQUIRREL_MPSC_H

#include "squirrel/sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest capacity of a bounded channel. */
#define SQ_MPSC_MAX_CAPACITY ((size_t)1 << 40)
/* The largest message. */
#define SQ_MPSC_MAX_ELEM ((size_t)1 << 20)

/* A channel.  Its fields are private.  The fields the senders write, the
 * free-slot semaphore and the receiver's fields sit on separate cache
 * lines (padding, no alignment requirement), so the struct is about 450
 * bytes; it may be embedded or live on a stack. */
typedef struct sq_mpsc {
    /* Set at init, read-only after. */
    size_t _elem_size;  /* bytes per message */
    size_t _stride;     /* bytes per slot: a state word + the message */
    size_t _capacity;   /* 0 = unbounded */
    uint64_t _mask;     /* ring slots - 1 (bounded) */
    unsigned char *_ring; /* bounded: the ring of slots */
    atomic_long _senders; /* registered senders */
    _Atomic size_t _blocks; /* unbounded: blocks allocated (incl. spare) */
    char _pad0[64];

    /* Senders' line. */
    _Atomic uint64_t _tail;     /* next position << 1 | CLOSED */
    _Atomic(void *) _tail_block; /* unbounded: block of the tail */
    char _pad1[64];

    /* Bounded: free slots.  Senders take one, the receiver gives it back. */
    sq_sem _slots;
    char _pad2[64];

    /* Receiver's side. */
    _Atomic uint64_t _head;     /* next position to receive */
    void *_head_block;          /* unbounded: block of the head */
    uint64_t _rx_close_at;      /* end position, once the receiver knows */
    bool _rx_close_known;
    atomic_bool _rx_gone;       /* sq_mpsc_recv_close was called */
    _Atomic size_t _freed;      /* bounded: freed slots not yet released */
    atomic_long _tx_parking;    /* bounded: senders about to wait */
    size_t _batch;              /* bounded: release freed slots by this many */
    /* Wake-up hand-off between senders, closers and the receiver. */
    atomic_int _rx_lock;
    bool _rx_pending;           /* a wake-up came with nobody registered */
    struct sq__waiter *_rx_waiter; /* the receiver, while it waits */
    uint64_t _close_at;         /* position where sending stopped */
    _Atomic(void *) _spare;     /* unbounded: a drained block for reuse */
    char _pad3[64];
} sq_mpsc;

/* Initialises ch for messages of elem_size bytes (1 .. SQ_MPSC_MAX_ELEM),
 * bounded to `capacity` queued messages (1 .. SQ_MPSC_MAX_CAPACITY), or
 * unbounded if capacity is 0.  The channel starts open, empty, with one
 * registered sender.  Allocates: a bounded channel its ring (capacity
 * rounded up to a power of two, times elem_size + 8 bytes), an unbounded
 * one its first block.  Returns 0, -EINVAL (bad size or capacity), or
 * -ENOMEM.  Never waits. */
int sq_mpsc_init(sq_mpsc *ch, size_t elem_size, size_t capacity);

/* Frees the channel's memory; messages still queued are discarded (if
 * they point to memory, drain them first with sq_mpsc_try_recv).  Returns
 * -EBUSY if a sender or the receiver is waiting on ch (nothing is changed
 * then), else 0.  See "Lifetime" above.  Never waits. */
int sq_mpsc_destroy(sq_mpsc *ch);

/* Sends the elem_size bytes at msg.  Bounded and full: waits (FIFO) for a
 * free slot.  Returns 0 (queued); -EPIPE if the channel is closed for
 * sending (receiver closed or gone, or every sender dropped), now or
 * while waiting; -ENOMEM (unbounded: no memory for a new block).
 * Cancellation point, only when it has to wait: -ECANCELED.  On any
 * error nothing was queued and no slot is held. */
int sq_mpsc_send(sq_mpsc *ch, const void *msg);

/* As sq_mpsc_send, giving up at `deadline` with -ETIMEDOUT (nothing
 * queued).  A deadline already passed still sends if a slot is free now.
 * An unbounded channel never waits, so never times out. */
int sq_mpsc_send_until(sq_mpsc *ch, const void *msg, int64_t deadline);

/* Sends only if that needs no waiting: 0, -EAGAIN (bounded and full, or
 * senders are waiting for slots: it never overtakes them; nothing was
 * queued), -EPIPE, -ENOMEM.  Never waits; not a cancellation point. */
int sq_mpsc_try_send(sq_mpsc *ch, const void *msg);

/* Receives the oldest message into msg (elem_size bytes), waiting while
 * the channel is empty.  Returns 0; -EPIPE at end of stream: the channel
 * is closed for sending and everything sent before has been received
 * (a send that was already committed when the channel closed is waited
 * for and delivered first).  After sq_mpsc_recv_close it never waits:
 * it returns what is queued, then -EAGAIN or -EPIPE as sq_mpsc_try_recv.
 * Cancellation point, only when it has to wait: -ECANCELED, having
 * consumed nothing.  Only one task or thread may receive at a time. */
int sq_mpsc_recv(sq_mpsc *ch, void *msg);

/* As sq_mpsc_recv, giving up at `deadline` with -ETIMEDOUT, having
 * consumed nothing.  A deadline already passed still receives a message
 * that is there now. */
int sq_mpsc_recv_until(sq_mpsc *ch, void *msg, int64_t deadline);

/* Receives a message only if one is ready now: 0, -EAGAIN (empty, or the
 * next message is still being written by its sender), or -EPIPE (end of
 * stream).  Never waits; not a cancellation point. */
int sq_mpsc_try_recv(sq_mpsc *ch, void *msg);

/* Registers one more sender.  Returns 0, or -EPIPE if every sender has
 * already been dropped (the channel is closed for sending for good).
 * -EOVERFLOW past LONG_MAX senders.  Never waits; any thread. */
int sq_mpsc_sender_add(sq_mpsc *ch);

/* Unregisters one sender (call it when a sender is done, after its last
 * send has returned).  The last one closes the channel for sending: the
 * receiver drains the queue, then gets -EPIPE; a bounded channel's
 * waiting senders (there should be none) get -EPIPE.  Returns 0, or
 * -EINVAL if no sender is registered (nothing changes).  Never waits;
 * any thread.  After the last drop, the dropping thread no longer
 * touches ch once the receiver has seen end of stream. */
int sq_mpsc_sender_drop(sq_mpsc *ch);

/* The receiver closes the channel: later sends, and sends waiting for a
 * slot, return -EPIPE; what is queued (and any send already committed)
 * can still be received, then recv returns -EPIPE.  A recv waiting at
 * that moment wakes up and goes on draining.  Idempotent.  Never waits;
 * any thread. */
void sq_mpsc_close(sq_mpsc *ch);

/* The receiver is gone: as sq_mpsc_close, and recv no longer waits
 * (queued messages stay readable with sq_mpsc_try_recv, or are discarded
 * by sq_mpsc_destroy).  Idempotent.  Never waits; any thread. */
void sq_mpsc_recv_close(sq_mpsc *ch);

/* True once the channel is closed for sending (by the receiver or by the
 * last sender drop).  A snapshot.  Never waits. */
bool sq_mpsc_is_closed(sq_mpsc *ch);

/* Messages queued now: sent (or being written by a committed send) and
 * not yet received.  A snapshot; never more than the capacity of a
 * bounded channel.  Never waits. */
size_t sq_mpsc_len(sq_mpsc *ch);

/* Senders of a bounded channel that are waiting for a slot now (counting
 * those about to queue, and a try_send about to fail).  A snapshot, for
 * tests and diagnostics.  Never waits. */
size_t sq_mpsc_senders_waiting(sq_mpsc *ch);

/* True while the receiver sleeps in recv (from just before it sleeps to
 * just after it is woken).  A snapshot, for tests and diagnostics.  Never
 * waits. */
bool sq_mpsc_receiver_waiting(sq_mpsc *ch);

/* The capacity given at init (0 = unbounded).  Never waits. */
size_t sq_mpsc_capacity(sq_mpsc *ch);

/* Bytes of heap memory the channel holds now (its ring, or its blocks
 * including the spare one).  A snapshot.  Never waits. */
size_t sq_mpsc_memory(sq_mpsc *ch);

#ifdef __cplusplus
}
#endif

#endif
