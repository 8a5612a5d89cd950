/* Squirrel sync layer: one-time initialisation (sq_once) and a cell
 * holding a value set once (sq_once_cell), task-aware.
 *
 * sq_once runs an initialiser exactly once with success: the first caller
 * runs it while later callers wait (a waiting task is suspended, a plain
 * thread blocked; see squirrel/sync.h).  If the initialiser fails, the
 * once is not done: its caller gets the error and the next waiter, in
 * arrival order, runs its own initialiser, and so on (like tokio's
 * OnceCell::get_or_try_init).  Everything the successful initialiser did
 * happens before any call that reports the once done returns.
 *
 * Built on a core semaphore of one permit: the permit is the right to run
 * the initialiser; success closes the semaphore, which releases every
 * waiter at once and marks the once done.  No call allocates.
 *
 * Cancel semantics: a waiter that is cancelled or reaches its deadline
 * returns -ECANCELED or -ETIMEDOUT without having run anything, and the
 * waiters behind it are not affected.  If the task running the
 * initialiser is cancelled, the initialiser's own return value decides
 * (its waits return -ECANCELED; if it passes that on, the once stays
 * undone and the next waiter tries).
 *
 * An initialiser must not call sq_once_call on the same once (it would
 * wait for itself forever).
 */
#ifndef SQUIRREL_ONCE_H
#define SQUIRREL_ONCE_H

#include "squirrel/sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------- once */

typedef struct sq_once {
    sq_sem _sem; /* 1 permit: the right to initialise; closed = done */
} sq_once;

#define SQ_ONCE_INITIALIZER {SQ_SEM_INITIALIZER(1)}

/* Initialises o, not done.  Never fails (returns 0) or waits. */
int sq_once_init(sq_once *o);

/* Checks that o may be discarded: -EBUSY if an initialiser is running or
 * a caller waits, else 0.  Never waits. */
int sq_once_destroy(sq_once *o);

/* Makes sure o is done: returns 0 at once if it is; else runs
 * init(arg) if no other caller is running an initialiser, or waits
 * (FIFO) for the one that is.  init returns 0 (or any value >= 0) for
 * success, which marks o done and lets every waiter return 0; a negative
 * value is a failure, returned as is by this call, with o left undone
 * (the next waiter then runs its initialiser).  Can wait; cancellation
 * point while waiting: -ECANCELED, nothing run (see the cancel semantics
 * above).  A call that finds the right to initialise free runs init even
 * if its task has been aborted. */
int sq_once_call(sq_once *o, int (*init)(void *arg), void *arg);

/* As sq_once_call, giving up at `deadline` (absolute, sq_now() clock)
 * with -ETIMEDOUT, nothing run.  The deadline does not bound init itself.
 * -EINVAL for a negative deadline. */
int sq_once_call_until(sq_once *o, int (*init)(void *arg), void *arg,
                       int64_t deadline);

/* True once an initialiser of o has succeeded; what it did is then
 * visible to the caller.  Never waits. */
bool sq_once_is_done(sq_once *o);

/* -------------------------------------------------------- once cell */

/* A pointer-sized value, set once, then read by anyone without waiting.
 * The value (and what it points to) belongs to the caller; the cell never
 * frees it. */
typedef struct sq_once_cell {
    sq_once _once;
    void *_value; /* written once, before _once is done */
} sq_once_cell;

#define SQ_ONCE_CELL_INITIALIZER {SQ_ONCE_INITIALIZER, NULL}

/* Makes the initialiser of a cell: stores the value in *value and returns
 * 0 (or >= 0), or returns a negative error (the cell stays unset). */
typedef int (*sq_once_cell_init_fn)(void *arg, void **value);

/* Initialises c, unset.  Never fails (returns 0) or waits. */
int sq_once_cell_init(sq_once_cell *c);

/* Checks that c may be discarded: -EBUSY if an initialiser is running or
 * a caller waits, else 0.  Never waits. */
int sq_once_cell_destroy(sq_once_cell *c);

/* Reads c without waiting: 0 and the value in *value (may be NULL) if c
 * is set, -EAGAIN if it is not (yet), *value untouched. */
int sq_once_cell_get(sq_once_cell *c, void **value);

/* Returns c's value in *value (may be NULL), setting it first if needed:
 * if c is unset, the first caller runs init(arg, &v) and the others wait
 * for it, exactly as sq_once_call does (on success c holds v and every
 * caller gets it; on failure the error is returned to that caller, c
 * stays unset and the next waiter runs its init).  Returns 0, init's
 * error, or -ECANCELED while waiting (nothing run, nothing stored). */
int sq_once_cell_get_or_init(sq_once_cell *c, sq_once_cell_init_fn init,
                             void *arg, void **value);

/* As sq_once_cell_get_or_init, giving up at `deadline` with -ETIMEDOUT
 * (nothing run).  -EINVAL for a negative deadline. */
int sq_once_cell_get_or_init_until(sq_once_cell *c, sq_once_cell_init_fn init,
                                   void *arg, void **value, int64_t deadline);

#ifdef __cplusplus
}
#endif

#endif
