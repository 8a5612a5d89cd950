/* Squirrel sync layer: a task-aware reader-writer lock.
 *
 * Many readers or one writer.  Like every primitive of the sync layer it
 * is a thin layer over the core batch semaphore (see squirrel/sync.h for
 * the conventions on waiting, fairness and cancel safety, which all apply
 * here): the lock is a semaphore of SQ_RWLOCK_MAX_READERS permits, a read
 * lock takes one, a write lock takes them all (the idea of tokio's
 * RwLock).
 *
 * Fairness: strictly first come, first served between readers and
 * writers.  A writer that waits is not starved by a stream of readers:
 * readers arriving after it queue behind it, even while other readers
 * hold the lock.  A waiting writer is given the read permits as they are
 * released (they are assigned to it, not left available).  Readers queued
 * together (with no writer between them) are let in together.
 *
 * Not owner-bound, like sq_mutex: a task or thread may unlock a lock that
 * another one took (a read lock taken in one task may be released by
 * another).  The price: a wrong unlock of a lock that is held is not
 * always detected.  What is detected (-EPERM): read_unlock of a lock that
 * nobody holds, write_unlock or downgrade of a lock that is free or
 * read-locked, provided nobody is queued at that moment.  A read_unlock
 * while a writer holds the lock is not detected.
 *
 * Cost: a free lock costs one atomic operation to take and one to give
 * back, for readers and writers alike.  The struct holds no pointer to
 * anything allocated and no call allocates.
 */
#ifndef SQUIRREL_RWLOCK_H
#define SQUIRREL_RWLOCK_H

#include "squirrel/sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most readers that can hold the lock at once (as in tokio,
 * u32::MAX >> 3).  One more reader waits as if a writer held the lock. */
#define SQ_RWLOCK_MAX_READERS ((size_t)0x1fffffff)

typedef struct sq_rwlock {
    sq_sem _sem;        /* SQ_RWLOCK_MAX_READERS permits when free */
    const char *_class; /* lock class for the checks */
} sq_rwlock;

/* A static initialiser; the lock's class (squirrel/check.h) is the place
 * of the definition. */
#define SQ_RWLOCK_INITIALIZER \
    {SQ_SEM_INITIALIZER(SQ_RWLOCK_MAX_READERS), SQ_SITE}

/* Initialises l, free, in lock class `cls` (a string that outlives the
 * lock; see sq_mutex_init_named).  sq_rwlock_init uses the place of the
 * call as the class.  Never fails (returns 0) or waits. */
int sq_rwlock_init_named(sq_rwlock *l, const char *cls);
int(sq_rwlock_init)(sq_rwlock *l);
#define sq_rwlock_init(l) sq_rwlock_init_named((l), SQ_SITE)

/* Declares that l may be held (read or write) across waits for something
 * other than a lock; see sq_mutex_allow_hold_across_waits.  Never waits. */
void sq_rwlock_allow_hold_across_waits(sq_rwlock *l);

/* Checks that l may be discarded: -EBUSY if it is held (read or write) or
 * waited on (nothing changes then), else 0.  Never waits. */
int sq_rwlock_destroy(sq_rwlock *l);

/* Takes a read (shared) lock, waiting (FIFO) while a writer holds the
 * lock or anyone is queued.  Returns 0.  Cancellation point: -ECANCELED,
 * holding nothing. */
int(sq_rwlock_read_lock)(sq_rwlock *l);

/* As sq_rwlock_read_lock, giving up at `deadline` (absolute, sq_now()
 * clock) with -ETIMEDOUT, holding nothing.  A deadline already passed
 * still takes the lock if it is available at once.  -EINVAL for a
 * negative deadline. */
int(sq_rwlock_read_lock_until)(sq_rwlock *l, int64_t deadline);

/* Takes a read lock only if no writer holds it and nobody is queued (it
 * never overtakes a waiter): 0, or -EBUSY.  Never waits; not a
 * cancellation point. */
int(sq_rwlock_try_read_lock)(sq_rwlock *l);

/* Gives a read lock back; if it was the last one and a writer is at the
 * head of the queue, the writer now holds the lock.  Returns 0, or -EPERM
 * if nobody held the lock (nothing changes).  A task that hands the lock
 * over yields once (squirrel/sync.h, "hand-off, then run").  Never waits;
 * not a cancellation point; safe from any task or thread (not
 * owner-bound). */
int sq_rwlock_read_unlock(sq_rwlock *l);

/* Takes the write (exclusive) lock, waiting (FIFO) while anyone holds the
 * lock or is queued.  While it waits, the read locks being released are
 * assigned to it, and later readers queue behind it.  Returns 0.
 * Cancellation point: -ECANCELED, holding nothing (whatever had been
 * assigned to it goes on to the next waiters). */
int(sq_rwlock_write_lock)(sq_rwlock *l);

/* As sq_rwlock_write_lock, giving up at `deadline` with -ETIMEDOUT,
 * holding nothing.  -EINVAL for a negative deadline. */
int(sq_rwlock_write_lock_until)(sq_rwlock *l, int64_t deadline);

/* Takes the write lock only if nobody holds it and nobody is queued: 0,
 * or -EBUSY.  Never waits; not a cancellation point. */
int(sq_rwlock_try_write_lock)(sq_rwlock *l);

/* Gives the write lock back: the waiters at the head of the queue get it
 * in order (a run of readers all at once, or one writer).  Returns 0, or
 * -EPERM if the lock was free or read-locked (nothing changes; see "not
 * owner-bound" above for what cannot be detected).  A task that hands the
 * lock over yields once (squirrel/sync.h, "hand-off, then run").
 * Never waits; not a cancellation point; safe from any task or thread. */
int sq_rwlock_write_unlock(sq_rwlock *l);

/* Turns the write lock the caller holds into a read lock, atomically: no
 * writer can take the lock in between.  The readers queued at the head of
 * the queue (up to the first queued writer) get their read locks at once.
 * Returns 0, or -EPERM if the lock was free or read-locked (nothing
 * changes).  Unlike an unlock it does not yield (the caller still holds
 * a read lock, which it should use and give back soon).  Never waits;
 * not a cancellation point; safe from any task or thread.  Release the
 * result with sq_rwlock_read_unlock. */
int sq_rwlock_downgrade(sq_rwlock *l);

/* The lock calls with the place of the call (for the checks' reports);
 * the macros pass SQ_SITE.  Each has exactly the contract of the call
 * without _at above: its results, whether it waits, and what cancellation
 * does to it. */
int sq_rwlock_read_lock_at(sq_rwlock *l, const char *site);
int sq_rwlock_read_lock_until_at(sq_rwlock *l, int64_t deadline,
                                 const char *site);
int sq_rwlock_try_read_lock_at(sq_rwlock *l, const char *site);
int sq_rwlock_write_lock_at(sq_rwlock *l, const char *site);
int sq_rwlock_write_lock_until_at(sq_rwlock *l, int64_t deadline,
                                  const char *site);
int sq_rwlock_try_write_lock_at(sq_rwlock *l, const char *site);
#define sq_rwlock_read_lock(l) sq_rwlock_read_lock_at((l), SQ_SITE)
#define sq_rwlock_read_lock_until(l, deadline) \
    sq_rwlock_read_lock_until_at((l), (deadline), SQ_SITE)
#define sq_rwlock_try_read_lock(l) sq_rwlock_try_read_lock_at((l), SQ_SITE)
#define sq_rwlock_write_lock(l) sq_rwlock_write_lock_at((l), SQ_SITE)
#define sq_rwlock_write_lock_until(l, deadline) \
    sq_rwlock_write_lock_until_at((l), (deadline), SQ_SITE)
#define sq_rwlock_try_write_lock(l) sq_rwlock_try_write_lock_at((l), SQ_SITE)

#ifdef __cplusplus
}
#endif

#endif
