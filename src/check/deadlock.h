/* The wait-for graph (deadlock.c): its cycles, for the reports, the
 * watchdog (watchdog.c) and the task dump (dump.c).
 *
 * The graph's nodes are the contexts of sq__check_contexts that are
 * trying to take a lock (sq__cctx.acquiring); a node waits for the
 * contexts that hold that lock in a conflicting mode (deadlock.c says
 * exactly which).  */
#ifndef SQ_CHECK_DEADLOCK_H
#define SQ_CHECK_DEADLOCK_H

#include <stdint.h>

#include "context.h"
#include "report.h"

/* One step of a cycle: `ctx` waits to take `lock` (class cls, in `mode`,
 * at `site`), which the next step's context holds through `hold`.  hold
 * is NULL when ctx asks for a read lock that only readers hold and the
 * next step's context is a writer queued on it (FIFO: the reader waits
 * behind the writer).  The last step's lock is held by the first step's
 * context. */
typedef struct sq__dl_step {
    sq__cctx *ctx;
    const void *lock;
    const char *cls;
    int mode;
    const char *site;
    const sq__hold *hold;
} sq__dl_step;

/* Calls fn(steps, n, arg) for every cycle of the wait-for graph as it is
 * now (each cycle once; steps valid during the call).  Call with
 * sq__check_lock held; fn must not release it.  Remembers nothing (unlike
 * sq__deadlock_search, which reports).  Returns the number of cycles, or
 * -ENOMEM (fn may have been called for some). */
int sq__deadlock_each(void (*fn)(const sq__dl_step *steps, int n, void *arg),
                      void *arg);

/* Appends the text of one cycle to b, each line after `indent`: for each
 * step, its context, the hold through which the step before waits for
 * it, and what it waits for.  `now` (sq_now()) dates the holds. */
void sq__deadlock_describe(sq__strbuf *b, const char *indent,
                           const sq__dl_step *s, int n, int64_t now);

/* Searches the wait-for graph for cycles and reports each one not
 * reported before (finding SQ_CHECK_DEADLOCK).  `why` says what
 * triggered the search.  Takes sq__check_lock itself; call without it.
 * Returns the number of new cycles, or -ENOMEM. */
int sq__deadlock_search(const char *why);

#endif
