/* Squirrel sync layer: a task-aware, reusable barrier.
 *
 * A barrier for n parties lets the tasks (or plain threads) that call
 * sq_barrier_wait through in groups of n: the first n - 1 callers of a
 * generation wait, the n-th (the leader) completes the generation and
 * lets them all go, and the next caller starts a new generation.  Like
 * pthread_barrier or tokio's Barrier.  Everything a party did before its
 * wait happens before anything any party of the same generation does
 * after its wait returns.
 *
 * Each waiting party waits on a core semaphore of its own (see
 * squirrel/sync.h for the conventions: waiting suspends a task, blocks a
 * plain thread), linked into the barrier from the waiter's stack: no
 * call allocates.  Parties are let go in arrival order.
 *
 * Cancel semantics: a party whose wait ends with -ECANCELED or -ETIMEDOUT
 * withdraws its arrival (the generation then needs one more party, so the
 * count stays right and no other party is let go early or held back).  If
 * the generation completed at the same instant, the wait returns 0
 * instead: the party has passed the barrier and the leader has counted
 * it.  The leader never waits, so it is never cancelled.
 */
#ifndef SQUIRREL_BARRIER_H
#define SQUIRREL_BARRIER_H

#include "squirrel/sync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sq_barrier {
    atomic_int _lock;      /* spin lock over the fields below */
    size_t _parties;       /* n */
    size_t _arrived;       /* parties waiting in the current generation */
    uint64_t _generation;  /* generations completed */
    struct sq__list _waiting; /* waiting parties, in order of arrival */
} sq_barrier;

/* A barrier for n parties (n >= 1, not checked here). */
#define SQ_BARRIER_INITIALIZER(n) \
    {._lock = 0, ._parties = (n), ._arrived = 0, ._generation = 0, \
     ._waiting = SQ__LIST_INIT}

/* Initialises b for n parties.  -EINVAL if n == 0.  Never waits. */
int sq_barrier_init(sq_barrier *b, size_t n);

/* Checks that b may be discarded: -EBUSY if a party is waiting on it,
 * else 0.  Never waits. */
int sq_barrier_destroy(sq_barrier *b);

/* Arrives at the barrier and waits until n parties (this one included)
 * have arrived in the current generation.  Exactly one party of each
 * generation, the last to arrive, is the leader: *leader (may be NULL) is
 * set to true for it and false for the others.  The leader and, with
 * n == 1, every caller return at once without waiting.  Returns 0.
 * Cancellation point: -ECANCELED, with the arrival withdrawn (see the
 * cancel semantics above); *leader is then false. */
int sq_barrier_wait(sq_barrier *b, bool *leader);

/* As sq_barrier_wait, giving up at `deadline` (absolute, sq_now() clock)
 * with -ETIMEDOUT, the arrival withdrawn.  The leader completes its
 * generation even with a deadline already passed.  -EINVAL for a
 * negative deadline (nothing done). */
int sq_barrier_wait_until(sq_barrier *b, bool *leader, int64_t deadline);

#ifdef __cplusplus
}
#endif

#endif
