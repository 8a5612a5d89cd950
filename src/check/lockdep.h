/* The lock-order graph (lockdep.c), as the hooks call it. */
#ifndef SQ_CHECK_LOCKDEP_H
#define SQ_CHECK_LOCKDEP_H

#include <stdbool.h>

#include "context.h"
#include "report.h"

/* Called with sq__check_lock held, before ctx takes `lock` of class cls
 * in `mode` at `site`.  A try-lock (trylock true) cannot wait: it adds no
 * order edge and is not validated (it returns NULL at once); once it
 * succeeds its hold orders what ctx takes next like any other.  Returns
 * a report to emit once the lock is released (finding
 * SQ_CHECK_LOCK_ORDER; malloc'ed, the caller frees it after
 * sq__report_emit), or NULL. */
sq__report *sq__lockdep_acquire(sq__cctx *ctx, const void *lock,
                                const char *cls, int mode, const char *site,
                                bool trylock);

#endif
