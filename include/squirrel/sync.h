/* Squirrel sync layer: task-aware semaphore, mutex, notify, oneshot.
 *
 * Every primitive here is a thin layer over one core, a batch semaphore
 * (as in tokio): one place where waiting, wake-up, fairness and
 * cancellation are done.  A call that must wait suspends the calling task
 * and lets its worker run other tasks; called from a plain thread (not a
 * task) it blocks that thread on a futex instead.  Tasks and plain threads
 * may share a primitive.
 *
 * Conventions (see also squirrel/runtime.h):
 *  - The structs are public so they can be embedded or live on a stack
 *    without malloc; their fields (leading `_`) are private.  Initialise
 *    with the _init function or the static initialiser macro.  No call
 *    here allocates.
 *  - Fairness: waiters are served first come, first served.  While anyone
 *    waits, a newcomer never takes what the waiter at the head needs, even
 *    if it asks for less (no barging).
 *  - Cancel safety: a waiting call that returns -ECANCELED or -ETIMEDOUT
 *    has left the queue and given back everything it had been assigned
 *    while it waited; nothing is held and nothing is lost.  If the grant
 *    arrived at the same instant as the cancellation or deadline, the call
 *    returns 0 and the caller holds what it asked for (a cancelled task
 *    then sees -ECANCELED at its next cancellation point).
 *  - A call that can complete without waiting completes even if the
 *    calling task has been aborted.
 *  - Hand-off, then run: when a task's unlock or release (sq_mutex,
 *    sq_rwlock, sq_sem) hands the lock or permits to waiting tasks, the
 *    releasing task yields once so that they run at once, before it goes
 *    on.  A lock handed to a task that sits in a run queue blocks everyone
 *    queued behind it; letting it run first keeps contended locks from
 *    forming convoys (the idea of Go's semaphore hand-off).  This yield
 *    is not a wait and not a cancellation point; a plain thread does not
 *    yield.
 *  - A primitive must not be destroyed, or its memory reused, while a call
 *    on it is in progress.  The hand-offs that end a wait are the
 *    exception that makes stack allocation work: when a waiting call
 *    returns because of another party's release, unlock, notify or send,
 *    that party's call no longer touches the primitive.
 */
#ifndef SQUIRREL_SYNC_H
#define SQUIRREL_SYNC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squirrel/list.h"
#include "squirrel/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif


/* ---------------------------------------------------------- semaphore */

/* The largest number of permits a semaphore can count. */
#define SQ_SEM_MAX_PERMITS ((size_t)-1 >> 3)

/* A counting semaphore whose waiters may take many permits at once.
 * 24 bytes plus a lock word; no cache-line padding (embed it in an aligned
 * struct if it is hot and shares a line with other written data). */
typedef struct sq_sem {
    /* available << 2 | has-waiters (2) | closed (1).  One word, so that
     * taking, releasing and queueing are each one atomic transition. */
    _Atomic uint64_t _state;
    atomic_int _lock;            /* spin lock over the queue */
    unsigned _flags;             /* for the run-time checks */
    struct sq__list _waiters;    /* FIFO of waiters (sq__waiter) */
} sq_sem;

#define SQ_SEM_INITIALIZER(permits)                                     \
    {._state = (uint64_t)(permits) << 2, ._lock = 0, ._flags = 0,      \
     ._waiters = SQ__LIST_INIT}

/* Initialises s with `permits` available permits.  -EINVAL if permits
 * exceeds SQ_SEM_MAX_PERMITS.  Never waits. */
int sq_sem_init(sq_sem *s, size_t permits);

/* Checks that s may be discarded: -EBUSY if a task or thread is waiting
 * on it (nothing is changed then), else 0.  Permits still held elsewhere
 * are the caller's business.  Never waits. */
int sq_sem_destroy(sq_sem *s);

/* Takes n permits, waiting until they are all available.  Waiters are
 * served in arrival order: a waiter needing n at the head of the queue is
 * given permits as they are released (they are assigned to it, not left
 * available) and no later acquirer overtakes it.  n == 0 returns 0 at once.
 * Returns 0 (the caller holds n permits), -ESHUTDOWN if s is closed (now
 * or while waiting), -EINVAL if n > SQ_SEM_MAX_PERMITS.  Cancellation
 * point: -ECANCELED, holding nothing (see the cancel-safety rule above). */
int sq_sem_acquire(sq_sem *s, size_t n);

/* As sq_sem_acquire, giving up at `deadline` (absolute, sq_now() clock)
 * with -ETIMEDOUT, holding nothing.  A deadline already passed still takes
 * the permits if they are available at once.  -EINVAL for a negative
 * deadline. */
int sq_sem_acquire_until(sq_sem *s, size_t n, int64_t deadline);

/* Takes n permits only if they are available now and nobody is waiting
 * (it never overtakes a waiter).  Returns 0, -EAGAIN (nothing taken; also
 * possible for an instant while a release is handing permits over),
 * -ESHUTDOWN if s is closed, -EINVAL if n > SQ_SEM_MAX_PERMITS.  Never
 * waits; not a cancellation point. */
int sq_sem_try_acquire(sq_sem *s, size_t n);

/* Returns n permits: they go to the waiters at the head of the queue in
 * order (the head may be given only part of what it needs), and whatever
 * is left becomes available.  Works on a closed semaphore too (the permits
 * become available for sq_sem_available's count).  Returns 0, or
 * -EOVERFLOW if the available count would exceed SQ_SEM_MAX_PERMITS
 * (nothing is released then).  When permits go to waiting tasks, a
 * releasing task yields once ("hand-off, then run" above).  Never waits;
 * not a cancellation point; safe from any thread. */
int sq_sem_release(sq_sem *s, size_t n);

/* Adds n new permits (grows the semaphore).  Same behaviour and errors as
 * sq_sem_release; the separate name states the intent. */
int sq_sem_add_permits(sq_sem *s, size_t n);

/* Closes s: every waiter returns -ESHUTDOWN (what it had been assigned
 * goes back to the available count), and every later acquire or
 * try_acquire returns -ESHUTDOWN even if permits are available.  Releases
 * still count.  Idempotent.  Never waits.  A waiter woken by the close may
 * free s as soon as its acquire has returned -ESHUTDOWN: the close has
 * finished with s by then (the hand-off rule above). */
void sq_sem_close(sq_sem *s);

/* True once sq_sem_close has been called.  Never waits. */
bool sq_sem_is_closed(sq_sem *s);

/* Permits available now (0 whenever anyone waits: released permits are
 * assigned to waiters, not left available).  A snapshot.  Never waits. */
size_t sq_sem_available(sq_sem *s);

/* -------------------------------------------------------------- mutex */

/* A task-aware mutual-exclusion lock: a semaphore of one permit.  A free
 * lock costs one atomic operation to take and one to give back.  Fair
 * (FIFO), with direct hand-off: unlock gives the lock to the first waiter.
 *
 * Not owner-bound, by design: a task may unlock a mutex that another task
 * (or thread) locked.  This is the hand-off feature: lock in one task,
 * pass the protected data on, unlock in the task that finishes with it
 * (declare it to the run-time checks with sq_check_lock_transfer,
 * squirrel/check.h, or they charge the lock to the first task until the
 * unlock).  The price is that a wrong unlock of a mutex somebody holds is
 * not detected; an unlock of an unlocked mutex is (-EPERM). */
typedef struct sq_mutex {
    sq_sem _sem;
    const char *_class;          /* lock class for the checks */
} sq_mutex;

/* A static initialiser; the lock's class (for the lock-order checks of
 * squirrel/check.h) is the place of the definition. */
#define SQ_MUTEX_INITIALIZER {SQ_SEM_INITIALIZER(1), SQ_SITE}

/* Initialises m, unlocked, in lock class `cls`: a string that outlives
 * the lock, naming every lock that plays the same part (the lock-order
 * checks reason about classes, not single locks).  sq_mutex_init uses the
 * place of the call ("file:line") as the class.  Never fails (returns 0)
 * or waits. */
int sq_mutex_init_named(sq_mutex *m, const char *cls);
int(sq_mutex_init)(sq_mutex *m);
#define sq_mutex_init(m) sq_mutex_init_named((m), SQ_SITE)

/* Declares that m may be held while its holder waits for something other
 * than a lock (the design of, say, a lock that serialises a connection's
 * writes): the held-across-wait check then leaves it alone.  Never waits. */
void sq_mutex_allow_hold_across_waits(sq_mutex *m);

/* Checks that m may be discarded: -EBUSY if it is locked or waited on,
 * else 0.  Never waits. */
int sq_mutex_destroy(sq_mutex *m);

/* Locks m, waiting (FIFO) while it is held.  Returns 0.  Cancellation
 * point: -ECANCELED, not holding m. */
int(sq_mutex_lock)(sq_mutex *m);

/* As sq_mutex_lock, giving up at `deadline` with -ETIMEDOUT, not holding
 * m.  -EINVAL for a negative deadline. */
int(sq_mutex_lock_until)(sq_mutex *m, int64_t deadline);

/* Locks m only if it is free and nobody waits for it: 0, or -EBUSY.
 * Never waits. */
int(sq_mutex_try_lock)(sq_mutex *m);

/* As sq_mutex_lock, but not a cancellation point: a task with a pending
 * (or later) cancellation still waits its turn and gets m, and the
 * cancellation stays pending for its next cancellation point.  Returns 0
 * (it cannot fail).  For the short sections a task must enter even when
 * cancelled, such as unlisting itself on the way out: a plain lock there
 * would return -ECANCELED without m, and code that ignored the result
 * would touch what m guards unlocked.  Waits while m is held. */
int(sq_mutex_lock_nocancel)(sq_mutex *m);

/* The lock calls with the place of the call (SQ_SITE, or any string that
 * outlives the hold) for the checks' reports; the macros pass SQ_SITE.
 * Each has exactly the contract of the call without _at above: its
 * results, whether it waits, and what cancellation does to it. */
int sq_mutex_lock_at(sq_mutex *m, const char *site);
int sq_mutex_lock_until_at(sq_mutex *m, int64_t deadline, const char *site);
int sq_mutex_try_lock_at(sq_mutex *m, const char *site);
int sq_mutex_lock_nocancel_at(sq_mutex *m, const char *site);
#define sq_mutex_lock(m) sq_mutex_lock_at((m), SQ_SITE)
#define sq_mutex_lock_until(m, deadline) \
    sq_mutex_lock_until_at((m), (deadline), SQ_SITE)
#define sq_mutex_try_lock(m) sq_mutex_try_lock_at((m), SQ_SITE)
#define sq_mutex_lock_nocancel(m) sq_mutex_lock_nocancel_at((m), SQ_SITE)

/* Unlocks m, handing it to the first waiter if there is one (and then,
 * from a task, yielding once: "hand-off, then run" above).  Returns 0, or
 * -EPERM if m is not locked (nothing changes).  Never waits; not a
 * cancellation point; safe from any task or thread (see "not owner-bound"
 * above). */
int sq_mutex_unlock(sq_mutex *m);

/* ------------------------------------------------------------- notify */

/* Wakes tasks that wait for an event.  A notify_one with no waiter is
 * stored (at most one), so a wake-up sent just before the waiter arrives
 * is not lost. */
typedef struct sq_notify {
    sq_sem _sem;
} sq_notify;

#define SQ_NOTIFY_INITIALIZER {SQ_SEM_INITIALIZER(0)}

/* Initialises n with no stored wake-up.  Never fails (returns 0). */
int sq_notify_init(sq_notify *n);

/* Waits for a wake-up: consumes a stored one at once if there is one,
 * else waits (FIFO among waiters) for sq_notify_one or sq_notify_all.
 * Returns 0.  Cancellation point: -ECANCELED, consuming nothing (a
 * wake-up that raced with the cancellation is kept: the call returns 0). */
int sq_notify_wait(sq_notify *n);

/* As sq_notify_wait, giving up at `deadline` with -ETIMEDOUT.  -EINVAL for
 * a negative deadline. */
int sq_notify_wait_until(sq_notify *n, int64_t deadline);

/* Wakes the longest-waiting waiter, or, if none waits, stores one wake-up
 * for the next sq_notify_wait (a second one is not stored on top).
 * Never waits; safe from any thread. */
void sq_notify_one(sq_notify *n);

/* Wakes every task waiting now; stores nothing, so later waiters wait.
 * Never waits; safe from any thread. */
void sq_notify_all(sq_notify *n);

/* ------------------------------------------------------------ oneshot */

/* A channel for exactly one value (a pointer-sized word), from one sender
 * to one receiver.  Typically lives on the receiver's stack: when recv
 * returns the value or -EPIPE because of close_send, the sender's call has
 * finished with the channel and it may be discarded.  After a timeout or
 * a close_recv, discard it only once the sender is known to be done. */
typedef struct sq_oneshot {
    sq_sem _sem;            /* 0 permits; send or close_send releases one */
    atomic_int _state;      /* SENT, SEND_CLOSED, RECV_CLOSED, TAKEN bits */
    void *_value;
} sq_oneshot;

#define SQ_ONESHOT_INITIALIZER {SQ_SEM_INITIALIZER(0), 0, NULL}

/* Initialises o: empty, both ends open.  Never fails (returns 0). */
int sq_oneshot_init(sq_oneshot *o);

/* Sends value and wakes the receiver.  Returns 0; -EPIPE if the receiver
 * has closed (the value was not delivered and stays the caller's);
 * -EINVAL if a value was already sent or the sending end was closed.
 * Never waits. */
int sq_oneshot_send(sq_oneshot *o, void *value);

/* Waits for the value and stores it in *value (may be NULL).  Returns 0;
 * -EPIPE if the sender closed without sending, if the receiving end was
 * closed with nothing sent, or if the value was already received.  A value
 * sent before close_recv can still be received.  Cancellation point:
 * -ECANCELED, and the value (if it arrives) stays receivable. */
int sq_oneshot_recv(sq_oneshot *o, void **value);

/* As sq_oneshot_recv, giving up at `deadline` with -ETIMEDOUT (the value,
 * if it arrives later, stays receivable).  -EINVAL for a negative
 * deadline. */
int sq_oneshot_recv_until(sq_oneshot *o, void **value, int64_t deadline);

/* Closes the sending end without sending: the receiver's recv returns
 * -EPIPE.  Harmless after a send (the value stays receivable) and when
 * repeated.  Never waits. */
void sq_oneshot_close_send(sq_oneshot *o);

/* Closes the receiving end: later sends fail with -EPIPE, and a recv with
 * nothing sent returns -EPIPE instead of waiting.  A value sent before it
 * can still be received.  Idempotent.  Never waits. */
void sq_oneshot_close_recv(sq_oneshot *o);

/* -------------------------------------------------------------- stats */

/* Buckets of the lock-wait histogram: bucket i counts waits that took less
 * than 2^i microseconds (i < SQ_SYNC_WAIT_BUCKETS - 1); the last bucket
 * counts the rest. */
#define SQ_SYNC_WAIT_BUCKETS 17

/* Process-wide figures of the task-aware locks (mutex, rwlock, semaphore:
 * every acquisition that goes through their wait queue).  Acquisitions
 * that find the lock free are not counted: they cost one atomic operation
 * and counting them would double that.  Counters only rise. */
typedef struct sq_sync_stats {
    uint64_t waits;        /* acquisitions that had to queue */
    uint64_t wait_ns;      /* total time those waits took */
    uint64_t timeouts;     /* waits that ended with -ETIMEDOUT */
    uint64_t cancels;      /* waits that ended with -ECANCELED */
    uint64_t wait_buckets[SQ_SYNC_WAIT_BUCKETS]; /* not cumulative */
} sq_sync_stats;

/* Fills *out (not NULL).  The counters are kept per CPU, so waiting
 * threads never write a shared cache line to count; the sum is exact for
 * waits that finished before the call, not one atomic snapshot.  Never
 * fails or waits. */
void sq_sync_stats_get(sq_sync_stats *out);

#ifdef __cplusplus
}
#endif

#endif
