/* The wait-for graph (deadlock.c): its cycles, for the deadlock reports,
 * the watchdog (watchdog.c) and the snapshot (snapshot.c).
 *
 * The graph's nodes are the contexts of sq__check_contexts that are
 * trying to take a lock (sq__cctx.acquiring); a node waits for the
 * contexts that hold that lock in a conflicting mode (deadlock.c says
 * exactly which).  */
#ifndef SQ_CHECK_DEADLOCK_H
#define SQ_CHECK_DEADLOCK_H

#include <stdint.h>

#include "squirrel/check.h"

#include "context.h"

/* Called for each cycle: the cycle in the public form, its strings
 * borrowed from the contexts (valid during the call only), and ctx[k],
 * the context of step k. */
typedef void sq__cycle_fn(const sq_check_cycle *cycle, sq__cctx *const *ctx,
                          void *arg);

/* Calls fn for every cycle of the wait-for graph as it is now (each cycle
 * once), its holds dated against `now` (sq_now()).  Call with
 * sq__check_lock held; fn must not release it.  Remembers nothing (unlike
 * sq__deadlock_search, which reports).  Returns the number of cycles, or
 * -ENOMEM (fn may have been called for some). */
int sq__deadlock_each(int64_t now, sq__cycle_fn *fn, void *arg);

/* Searches the wait-for graph for cycles and reports each one not
 * reported before (finding SQ_CHECK_DEADLOCK).  `why` says what
 * triggered the search.  Takes sq__check_lock itself; call without it.
 * Returns the number of new cycles, or -ENOMEM. */
int sq__deadlock_search(const char *why);

#endif
