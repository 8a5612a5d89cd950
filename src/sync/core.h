/* The sync layer's shared core: a fair batch semaphore over an intrusive
 * FIFO of waiters (sq__waiter).  Every primitive in src/sync/ is a thin
 * layer over these functions, so waiting, hand-off, fairness and
 * cancellation are done in one place (core.c explains the protocol). */
#ifndef SQUIRREL_SYNC_CORE_H
#define SQUIRREL_SYNC_CORE_H

#include "squirrel/sync.h"

#include "sq_runtime/iface.h"

/* Bits of sq_sem._state; the available count is state >> SQ__SEM_SHIFT. */
#define SQ__SEM_CLOSED ((uint64_t)1)
#define SQ__SEM_WAITERS ((uint64_t)2)
#define SQ__SEM_FLAGS (SQ__SEM_CLOSED | SQ__SEM_WAITERS)
#define SQ__SEM_SHIFT 2

/* sq_sem._flags (set at init, read by the checks). */
#define SQ__SEM_F_MAY_WAIT SQ__LOCK_F_MAY_WAIT /* held across waits */

/* How sq__sem_release treats a count that would pass `limit`. */
enum sq__sem_over {
    SQ__SEM_OVER_FAIL,     /* refuse: the caller's error code is returned */
    SQ__SEM_OVER_SATURATE, /* keep the available count at `limit` */
};

void sq__sem_init(sq_sem *s, size_t permits);

/* Takes n permits (fast path: one CAS when nobody waits), else queues and
 * waits until `deadline`.  0, -ESHUTDOWN, -ETIMEDOUT, -ECANCELED (only if
 * `cancellable`).  Never overtakes a waiter. */
int sq__sem_acquire(sq_sem *s, size_t n, int64_t deadline, bool cancellable);

/* The same, naming what a waiter waits for (enum sq__wait_kind: what the
 * checks and the task dump report); sq__sem_acquire says SQ__WAIT_SEM. */
int sq__sem_acquire_as(sq_sem *s, size_t n, int64_t deadline,
                       bool cancellable, int kind);

/* Counts, in sq_sync_stats, one lock wait that began at `started` (sq_now)
 * and ended with rc (stats.c). */
void sq__sync_stat_wait(int64_t started, int rc);

/* Takes n permits if available now and nobody waits: 0, -EAGAIN,
 * -ESHUTDOWN. */
int sq__sem_try_acquire(sq_sem *s, size_t n);

/* Gives n permits: to the queued waiters first, in order, then to the
 * available count.  If the available count would exceed `limit` (only
 * possible when nobody waits): with SQ__SEM_OVER_FAIL nothing is released
 * and `err` is returned; with SQ__SEM_OVER_SATURATE the count is left at
 * `limit`.  Returns 0 otherwise. */
int sq__sem_release(sq_sem *s, size_t n, size_t limit, enum sq__sem_over over,
                    int err);

/* sq__sem_release for locks (mutex, rwlock, semaphore), refusing past
 * `limit` with err: when the release hands the lock to waiting tasks and
 * the caller is a task, the caller then yields so they run at once, before
 * it goes on (the idea of Go's semaphore hand-off).  A lock granted to a
 * task that is queued but not running blocks everyone behind it; without
 * this, contended locks spread over the workers form convoys, every
 * acquisition paying for a park and a wake-up.  Not a cancellation point;
 * a plain thread does not yield. */
int sq__sem_release_lock(sq_sem *s, size_t n, size_t limit, int err);

/* Wakes every queued waiter as if its whole request had been granted
 * (new permits, created for them; nothing becomes available).  For
 * sq_notify_all. */
void sq__sem_grant_all(sq_sem *s);

/* Closes s: queued waiters return -ESHUTDOWN and give back what they had
 * been assigned; later acquires fail with -ESHUTDOWN. */
void sq__sem_close(sq_sem *s);

/* True if some task or thread is queued on s (a snapshot). */
bool sq__sem_has_waiters(sq_sem *s);

static inline size_t sq__sem_available(sq_sem *s)
{
    return (size_t)(atomic_load_explicit(&s->_state, memory_order_relaxed) >>
                    SQ__SEM_SHIFT);
}

#endif
