/* Squirrel patterns layer: the shared state manager.
 *
 * A value of the user's type (a void *, owned by the state) with a version
 * that rises by exactly one on every update, readers that never wait for
 * writers' work, and listeners that are told of every change through
 * bounded queues after the state's lock is released.
 *
 * Values and snapshots.  Every version of the value lives in a snapshot: a
 * reference-counted pair (value, version).  Values are immutable once
 * published: an update produces a NEW value from the current one (copy on
 * write), so a reader holds a snapshot as long as it likes, without any
 * lock, and it stays valid (same value, same version) after any number of
 * later updates.  A value is destroyed (ops.destroy) when the last
 * reference to its snapshot goes: the state's own (until the next update),
 * readers', and listeners' queued notifications.  Large states are never
 * copied by a read; sq_state_read_copy makes a private copy (ops.copy)
 * for a caller that wants one.
 *
 * Locks.  Updates are serialised by the state's update lock (an sq_mutex,
 * lock class "sq_state.update"); the update function runs under it and
 * must not wait (the specification's rule: no I/O, channel, sleep or join
 * while holding a lock; the run-time checks report it), so it must not
 * update this or another state (an update may wait for its delivery).
 * Readers do not take that lock: they take a read lock of an sq_rwlock
 * ("sq_state.current") just long enough to count a reference to the
 * current snapshot, which the update swaps under the write lock in a few
 * instructions.  So a reader never waits for an update
 * function, a delivery or a listener.
 *
 * Listeners.  sq_state_listen registers a bounded queue of notifications
 * (a notification is a snapshot reference: the version and the new
 * value).  After an update has released the update lock, the updater
 * delivers its version to every listener registered before it.  Order:
 * deliveries are made one version at a time, in version order (each
 * updater waits for the delivery of the previous version to finish, a
 * "turn" held by no lock), so every listener receives versions in
 * increasing order, each at most once; no lock of the state is held while
 * delivering.  What happens when a listener's queue is full is chosen per
 * listener (sq_state_full):
 *  - SQ_STATE_WAIT: the updater waits for room, up to wait_ns for that
 *    notification; if no room comes in time the listener is DISCONNECTED
 *    (its receiver drains what is queued, then gets -ECONNRESET).  So a
 *    WAIT listener sees every version from its start, with no gap, or is
 *    told it has been cut off; it never sees a silent gap.  The price: a
 *    slow WAIT listener slows updaters (up to wait_ns per notification),
 *    never readers.
 *  - SQ_STATE_DROP_OLDEST: the oldest queued notification is dropped to
 *    make room; the updater never waits.  The receiver sees a gap in the
 *    versions (and sq_state_listener_dropped counts them); the newest
 *    version is always delivered, so the last version always arrives.
 *  - SQ_STATE_DISCONNECT: the listener is disconnected at once (as WAIT
 *    when time runs out); the updater never waits.
 * A listener whose receiver is gone (sq_state_unlisten) or that has been
 * disconnected is never sent to again and is removed from the state by
 * the next update or registration: it is not retried.
 *
 * Plain threads as well as tasks may call everything here (waiting blocks
 * a plain thread).  The conventions of squirrel/sync.h apply: deadlines
 * are absolute on the sq_now() clock (SQ_FOREVER: none), -EINVAL for a
 * negative one, a call that can finish without waiting finishes even if
 * the calling task was aborted.
 *
 * Allocation: the state allocates a snapshot per update (before taking the
 * lock) and one at init; a listener allocates its queue; registration and
 * the removal of dead listeners allocate the (copy-on-write) listener
 * list.  Reads, deliveries and receives allocate nothing.
 */
#ifndef SQUIRREL_STATE_H
#define SQUIRREL_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squirrel/rwlock.h"
#include "squirrel/sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A reference to one version of the value.  Opaque; see the sq_state_snap_
 * functions. */
typedef struct sq_state_snap sq_state_snap;

/* The receiving end of a listener.  Opaque. */
typedef struct sq_state_listener sq_state_listener;

/* The user's callbacks for the values the state owns.  Both optional. */
typedef struct sq_state_ops {
    /* Frees a value (called once per value, when the last reference to
     * its snapshot is released: from whichever task or thread releases
     * it, never with a lock of the state held).  NULL: values are not
     * freed (they are not owned, or are not pointers). */
    void (*destroy)(void *value, void *user);
    /* Makes a private copy of src into *dst: 0, or a negative code
     * (-ENOMEM...) with nothing to free.  Needed by sq_state_modify* and
     * sq_state_read_copy (-ENOTSUP without it).  Must not wait. */
    int (*copy)(const void *src, void **dst, void *user);
    void *user; /* passed to both */
} sq_state_ops;

/* What happens when a listener's queue is full (see the top comment). */
typedef enum sq_state_full {
    SQ_STATE_WAIT = 0,        /* wait up to wait_ns, then disconnect */
    SQ_STATE_DROP_OLDEST = 1, /* drop the oldest queued notification */
    SQ_STATE_DISCONNECT = 2,  /* disconnect the listener */
} sq_state_full;

/* The largest queue a listener may have. */
#define SQ_STATE_MAX_CAPACITY ((size_t)1 << 20)

typedef struct sq_state_listen_opts {
    size_t capacity;      /* queued notifications, 1..SQ_STATE_MAX_CAPACITY;
                           * 0 = 16 */
    sq_state_full on_full;
    /* SQ_STATE_WAIT only: how long an updater may wait for room for one
     * notification (ns, >= 0, or SQ_FOREVER).  0 disconnects at once when
     * full.  A listener with SQ_FOREVER can stall updaters for as long as
     * its receiver does not receive (an aborted updater stops waiting). */
    int64_t wait_ns;
} sq_state_listen_opts;

/* Options used when sq_state_listen gets NULL: 16 notifications, WAIT,
 * one second. */
#define SQ_STATE_LISTEN_DEFAULT \
    {.capacity = 16, .on_full = SQ_STATE_WAIT, .wait_ns = SQ_SEC}

/* The state.  Its fields are private; initialise with sq_state_init. */
typedef struct sq_state {
    sq_mutex _update;                /* serialises updates and listens */
    sq_rwlock _cur_lock;             /* guards taking a reference to _cur */
    sq_state_snap *_cur;             /* the current version */
    _Atomic uint64_t _version;       /* _cur's version, lock-free */
    struct sq__state_set *_set;      /* listeners (under _update) */
    _Atomic size_t _nlisteners;      /* entries of _set */
    atomic_long _busy;               /* updates and listens in progress */
    sq_state_ops _ops;
} sq_state;

/* --------------------------------------------------------------- state */

/* Initialises st holding `initial` (version 0), which it now owns (it is
 * freed with ops->destroy when its last snapshot goes).  ops may be NULL
 * (no destroy, no copy); it is copied.  Returns 0, -EINVAL (st NULL) or
 * -ENOMEM (then `initial` stays the caller's).  Allocates the first
 * snapshot.  Never waits. */
int sq_state_init(sq_state *st, void *initial, const sq_state_ops *ops);

/* Discards st.  -EBUSY (nothing changes) if an update, a registration or a
 * delivery is in progress, or a lock of st is held or waited on: a
 * best-effort check, destroy must not race with other calls on st (except
 * the receiving side of listeners, below).  Otherwise: every registered
 * listener is closed (its receiver drains what is queued, then gets
 * -EPIPE; it must still call sq_state_unlisten), the state's reference to
 * the current snapshot is released (the value is destroyed now, or when
 * the last snapshot outstanding is released: snapshots outlive the state),
 * and 0 is returned.  Never waits (it may wait an instant for a listener's
 * internal lock, not cancellably). */
int sq_state_destroy(sq_state *st);

/* The current version (the latest committed update; its notifications may
 * still be on their way).  Lock-free; never waits. */
uint64_t sq_state_version(sq_state *st);

/* Number of listeners registered and not yet removed (a dead listener
 * counts until the next update or registration removes it).  A snapshot;
 * never waits. */
size_t sq_state_listener_count(sq_state *st);

/* ------------------------------------------------------------- reading */

/* Stores in *out a reference to the current snapshot (version and value,
 * consistent); release it with sq_state_snap_release.  No lock is held on
 * return: the snapshot stays valid, and unchanged, however long it is
 * kept.  Returns 0, -EINVAL (NULL argument).  Waits only for the instant
 * an update swaps the current snapshot (never for an update function, a
 * delivery or a listener); cancellation point only if it has to wait then:
 * -ECANCELED, holding nothing. */
int sq_state_read(sq_state *st, sq_state_snap **out);

/* Makes a private copy of the current value with ops.copy, outside any
 * lock: *out gets the copy (the caller owns it), *version (may be NULL)
 * its version.  Returns 0, -ENOTSUP (no copy callback), -EINVAL, or the
 * copy callback's error (nothing to free).  Waits and cancellation as
 * sq_state_read (nothing is held on -ECANCELED). */
int sq_state_read_copy(sq_state *st, void **out, uint64_t *version);

/* The snapshot's value (read-only: other tasks may be reading it), and
 * its version.  Neither waits. */
const void *sq_state_snap_value(const sq_state_snap *s);
uint64_t sq_state_snap_version(const sq_state_snap *s);

/* Takes one more reference to s (for another task, say) and returns s.
 * Never waits. */
sq_state_snap *sq_state_snap_ref(sq_state_snap *s);

/* Releases one reference to s; the last one destroys the value (with the
 * destroy callback given at init, even after the state is destroyed).
 * NULL is ignored.  Never waits (it runs the destroy callback). */
void sq_state_snap_release(sq_state_snap *s);

/* ------------------------------------------------------------ updating */

/* Produces the next value from `cur` (read-only: readers may be using it)
 * into *next, a new value the state then owns.  Returns 0 to commit, or a
 * negative code to fail: nothing changes (no version is used; whatever it
 * allocated is its own to free).  Runs under the update lock: it must not
 * wait, nor call into the same state.  With a destroy callback, *next must
 * not be `cur` (-EINVAL: the update fails). */
typedef int (*sq_state_update_fn)(const void *cur, void **next, void *arg);

/* Changes `value`, a fresh private copy of the current value made by
 * ops.copy, in place.  0 commits it; a negative code fails (the copy is
 * destroyed, nothing changes).  Same rules as sq_state_update_fn. */
typedef int (*sq_state_modify_fn)(void *value, void *arg);

/* Decides whether an update is needed, from a value (read-only).  Called
 * twice by the conditional forms: once on a snapshot without any lock,
 * then again on the current value under the update lock.  Must not wait. */
typedef bool (*sq_state_need_fn)(const void *cur, void *arg);

/* The general update.  Exactly one of `update` and `modify` is given
 * (modify needs ops.copy).  Phase one, if `need` is given: read a snapshot
 * and ask need(); if it says no, return 0 without taking the update lock.
 * Phase two: take the update lock (waiting in FIFO order, until
 * `deadline`), ask need() again on the current value (it may have changed
 * since phase one) and return 0 if it now says no; else run the function
 * on the current value, and on success publish the result as version + 1.
 * Then release the lock, and deliver the new version to the listeners
 * (see the top comment: this may wait for the delivery of the previous
 * version, and, for a full SQ_STATE_WAIT listener, for room, up to its
 * wait_ns; no lock is held meanwhile).  *version (may be NULL) gets the
 * version committed, or the version need() said no to.
 * Returns 1 (updated and delivered), 0 (need() said no; nothing changed),
 * or an error, and then nothing changed and no version was used: -EINVAL
 * (NULL st, not exactly one function, negative deadline), -ENOTSUP
 * (modify without ops.copy), -ENOMEM, -ETIMEDOUT (the update lock, or a
 * phase-one read, was not had by `deadline`), the function's or the copy
 * callback's negative code.
 * No update is lost: updates are applied one at a time, each to the value
 * the previous one produced, and need()'s second answer is given on that
 * value, under the lock.
 * Cancellation point while waiting for a lock: -ECANCELED, nothing
 * changed.  Once the update is committed it is not undone and its
 * delivery is finished (the waiting for the previous version's delivery
 * ignores cancellation); an aborted updater no longer waits for room:
 * a full WAIT listener is then disconnected, as when its time runs out. */
int sq_state_change_until(sq_state *st, sq_state_need_fn need,
                          sq_state_update_fn update, sq_state_modify_fn modify,
                          void *arg, int64_t deadline, uint64_t *version);

/* sq_state_change_until(st, NULL, fn, NULL, arg, SQ_FOREVER, version),
 * returning 0 instead of 1 on success.  Waits and cancellation as there. */
int sq_state_update(sq_state *st, sq_state_update_fn fn, void *arg,
                    uint64_t *version);

/* sq_state_change_until(st, NULL, NULL, fn, arg, SQ_FOREVER, version):
 * fn mutates a fresh copy (ops.copy; -ENOTSUP without it); 0 on success.
 * Waits and cancellation as there. */
int sq_state_modify(sq_state *st, sq_state_modify_fn fn, void *arg,
                    uint64_t *version);

/* The two-phase conditional update: sq_state_change_until(st, need, fn,
 * NULL, arg, SQ_FOREVER, version).  Returns 1 if it updated, 0 if need()
 * said no (in phase one or, re-checked, under the lock), or an error.
 * Waits and cancellation as there. */
int sq_state_update_if(sq_state *st, sq_state_need_fn need,
                       sq_state_update_fn fn, void *arg, uint64_t *version);

/* The same with a modify function on a fresh copy: sq_state_change_until(
 * st, need, NULL, fn, arg, SQ_FOREVER, version).  1, 0 or an error. */
int sq_state_modify_if(sq_state *st, sq_state_need_fn need,
                       sq_state_modify_fn fn, void *arg, uint64_t *version);

/* ----------------------------------------------------------- listeners */

/* Registers a listener of st with opts (NULL: SQ_STATE_LISTEN_DEFAULT)
 * and stores its receiving end in *out.  The listener is told of every
 * version committed after the registration, and only of those: if start
 * is not NULL it gets a reference to the snapshot current at the
 * registration (release it), whose version is the one just before the
 * first notification.  Returns 0, -EINVAL (NULL st or out, capacity or
 * wait_ns out of range, unknown policy), -ENOMEM, -ECANCELED.  Takes the
 * update lock, so it waits for an update function in progress
 * (cancellation point then: -ECANCELED, nothing registered). */
int sq_state_listen(sq_state *st, const sq_state_listen_opts *opts,
                    sq_state_listener **out, sq_state_snap **start);

/* Receives the next notification: *out gets a snapshot reference (its
 * version and value; release it), waiting while none is queued.  Versions
 * come in increasing order; consecutive ones differ by exactly 1 except
 * under SQ_STATE_DROP_OLDEST, where a jump is a gap (notifications
 * dropped).  Returns 0; after the queue is drained: -ECONNRESET if the
 * listener was disconnected (its queue was full; see sq_state_full),
 * -EPIPE if the state was destroyed.  Only one task or thread may receive
 * on a listener at a time.  Cancellation point when it waits:
 * -ECANCELED, having consumed nothing. */
int sq_state_recv(sq_state_listener *l, sq_state_snap **out);

/* As sq_state_recv, giving up at `deadline` with -ETIMEDOUT (nothing
 * consumed; a notification already queued is returned even if the
 * deadline has passed).  -EINVAL for a negative deadline. */
int sq_state_recv_until(sq_state_listener *l, sq_state_snap **out,
                        int64_t deadline);

/* Receives a notification only if one is queued now: 0, -EAGAIN (none,
 * or the queue is busy this instant), -ECONNRESET, -EPIPE.  Never waits;
 * not a cancellation point. */
int sq_state_try_recv(sq_state_listener *l, sq_state_snap **out);

/* Notifications dropped so far to make room (SQ_STATE_DROP_OLDEST).
 * Never waits. */
uint64_t sq_state_listener_dropped(sq_state_listener *l);

/* True once the listener has been disconnected for being full (recv
 * returns -ECONNRESET after draining).  Never waits. */
bool sq_state_listener_disconnected(sq_state_listener *l);

/* Unregisters the listener from the receiving side (its receiver is gone):
 * no notification is sent to it any more, queued ones are released, an
 * updater waiting for room in it stops waiting, and the state drops it at
 * its next update or registration (it is never retried).  l must not be
 * used after, and no receive on l may be in progress (call it from the
 * receiving side, after its last receive, or after the receiving task has
 * been joined).  Safe after sq_state_destroy, and concurrently with any
 * call on the state (it touches only the listener).  NULL is ignored.
 * Never fails; never waits (it may wait an instant for the listener's
 * internal lock, not cancellably). */
void sq_state_unlisten(sq_state_listener *l);

#ifdef __cplusplus
}
#endif

#endif
