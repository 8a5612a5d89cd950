/* Squirrel sync layer: a watch channel (the latest value, and a wake-up
 * for everyone who watches it), after tokio's watch.
 *
 * The channel holds one value of `elem_size` bytes (set at init) and a
 * version, 0 for the initial value and bumped by every send.  Receivers
 * (sq_watch_rx, caller-owned, one task or thread at a time each) remember
 * the version they have seen; they wait for a newer one with
 * sq_watch_changed and copy the value out with sq_watch_read, which marks
 * it seen.  Intermediate values may be skipped (only the latest is kept),
 * but a receiver never misses the latest: a receiver waiting at the
 * moment of a send always wakes up and sees it (or a later one).  The
 * usual loop:
 *
 *     while (sq_watch_changed(&rx) == 0)
 *         sq_watch_read(&rx, &value, NULL);   // -EPIPE ends the loop
 *
 * The conventions of squirrel/sync.h apply (waiting suspends a task and
 * blocks a plain thread; cancel safety; deadlines on the sq_now() clock),
 * with these specifics:
 *
 *  - Consistency: the value is kept as 64-bit atomic words behind a
 *    sequence word (a seqlock).  A reader copies it and checks that no
 *    send started meanwhile, else copies again, so a read never returns a
 *    mix of two values, and the version it reports is the value's own.  A
 *    reader that finds a send in the middle of its copy spins (yielding
 *    the thread after a while) until that copy is done: readers never
 *    wait for anything else, and a send never waits for readers.
 *  - Waiting: each send (and close) wakes every waiting receiver at once
 *    (no queue order among them).
 *  - Senders: any number; they serialise on the sequence word (a short
 *    spin while another send copies its value in).
 *  - Closing (sq_watch_close): later sends fail with -EPIPE; the last
 *    value stays readable; sq_watch_changed returns 0 while a receiver has
 *    not seen the last value, then -EPIPE.
 *  - Cancel safety: sq_watch_changed only looks and waits; it marks
 *    nothing seen, so -ECANCELED or -ETIMEDOUT loses nothing.
 *  - Lifetime: sq_watch_destroy must not run while any other call on the
 *    channel is in progress, and every receiver must have been dropped
 *    (-EBUSY otherwise).  A receiver that has seen -EPIPE and then dropped
 *    knows that sq_watch_close has finished with the channel.
 *
 * Errors, for every call below: -EINVAL for a negative deadline or a
 * receiver that is not subscribed.
 */
#ifndef SQUIRREL_WATCH_H
#define SQUIRREL_WATCH_H

#include "squirrel/sync.h"
#include "squirrel/waitlist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest value. */
#define SQ_WATCH_MAX_ELEM ((size_t)1 << 20)

/* A channel.  Its fields are private. */
typedef struct sq_watch {
    size_t _elem_size;         /* bytes of the value */
    _Atomic uint64_t *_value;  /* the value's words (allocated) */
    _Atomic uint64_t _seq;     /* version << 2 | WRITING | CLOSED */
    atomic_long _receivers;    /* subscribed receivers */
    sq__waitlist _waiters;     /* receivers waiting for a change */
} sq_watch;

/* A receiver: caller-owned, subscribed with sq_watch_subscribe.  Its
 * fields are private. */
typedef struct sq_watch_rx {
    sq_watch *_w;              /* NULL when not subscribed */
    uint64_t _seen;            /* the version last marked seen */
} sq_watch_rx;

/* Initialises w with a value of elem_size bytes (1 .. SQ_WATCH_MAX_ELEM),
 * copied from `initial` (NULL: all zero bytes), version 0, open, with no
 * receivers.  Allocates the value's storage (elem_size rounded up to 8
 * bytes).  Returns 0, -EINVAL (bad size) or -ENOMEM.  Never waits. */
int sq_watch_init(sq_watch *w, size_t elem_size, const void *initial);

/* Frees the value's storage.  Returns -EBUSY if a receiver is still
 * subscribed (waiting or not; nothing is changed then), -EINVAL if w was
 * already destroyed, else 0.  See "Lifetime" above.  Never waits. */
int sq_watch_destroy(sq_watch *w);

/* Subscribes rx (uninitialised, or dropped) to w, with the current
 * version marked seen: sq_watch_changed waits for the next send.  Works
 * on a closed channel too (the value stays readable).  Returns 0.  Never
 * waits; any thread. */
int sq_watch_subscribe(sq_watch *w, sq_watch_rx *rx);

/* Unsubscribes rx; it may then be reused or discarded.  Returns 0, or
 * -EINVAL if rx is not subscribed.  Must not run while a call on rx is
 * in progress.  Never waits (beyond a short spin lock). */
int sq_watch_rx_drop(sq_watch_rx *rx);

/* Replaces the value with the elem_size bytes at value, bumps the version
 * and wakes every waiting receiver.  Receivers are not needed: the value
 * is kept for later readers.  Returns 0, or -EPIPE if w is closed (the
 * value is unchanged).  Never waits for receivers (only, briefly, for
 * another send's copy); not a cancellation point.  Any task or thread. */
int sq_watch_send(sq_watch *w, const void *value);

/* Copies the latest value into out (elem_size bytes; out may be NULL to
 * only mark it seen), stores its version in *version (may be NULL), and
 * marks that version seen for rx.  Returns 0, also after close.  Never
 * waits (see "Consistency" above); not a cancellation point. */
int sq_watch_read(sq_watch_rx *rx, void *out, uint64_t *version);

/* Copies the latest value into out without a receiver and returns its
 * version.  Never waits (see "Consistency"). */
uint64_t sq_watch_get(sq_watch *w, void *out);

/* Waits until w holds a version rx has not seen.  Returns 0 at once if it
 * already does (even after close); -EPIPE if w is closed and rx has seen
 * the last value.  Marks nothing seen (call sq_watch_read).  Cancellation
 * point, only when it has to wait: -ECANCELED, nothing lost. */
int sq_watch_changed(sq_watch_rx *rx);

/* As sq_watch_changed, giving up at `deadline` with -ETIMEDOUT. */
int sq_watch_changed_until(sq_watch_rx *rx, int64_t deadline);

/* Without waiting: 1 if w holds a version rx has not seen, 0 if not,
 * -EPIPE if not and w is closed.  Not a cancellation point. */
int sq_watch_has_changed(sq_watch_rx *rx);

/* Closes w: later sends fail with -EPIPE, waiting receivers wake up (and
 * see -EPIPE once they have seen the last value).  Idempotent.  Never
 * waits (beyond a send's copy in progress); any thread. */
void sq_watch_close(sq_watch *w);

/* The current version (a snapshot).  Never waits. */
uint64_t sq_watch_version(sq_watch *w);

/* True once w is closed.  Never waits. */
bool sq_watch_is_closed(sq_watch *w);

/* Receivers subscribed now (a snapshot).  Never waits. */
size_t sq_watch_receivers(sq_watch *w);

#ifdef __cplusplus
}
#endif

#endif
