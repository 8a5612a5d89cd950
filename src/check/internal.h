/* Internal state of the check layer, shared by the files of src/check.
 *
 * Everything here is guarded by one process-wide mutex (sq__check_lock):
 * the checks are a debugging aid and favour exact bookkeeping over speed.
 * The hooks run in the task or thread that takes, gives back or waits
 * for something; they never wait themselves.
 *
 * Contexts.  Locks are held by a context: a task (its record hangs off
 * sq__task.check) or a plain thread (a thread-local record).  A context
 * keeps its holds newest first, and the lock it is currently trying to
 * take (for the wait-for graph).  Locks are not owner-bound: a hold can
 * be released by another context, and outlives its task (it then moves
 * to the `orphans` context).
 */
#ifndef SQUIRREL_CHECK_INTERNAL_H
#define SQUIRREL_CHECK_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "squirrel/check.h"

#include "sq_runtime/iface.h"

typedef struct sq__cctx sq__cctx;

/* One lock held by one context (a read lock: one hold per reader). */
typedef struct sq__hold {
    const void *lock;
    const char *cls;         /* class name (never NULL: see sq__class_of) */
    unsigned flags;          /* SQ__SEM_F_* */
    int mode;                /* SQ__LOCK_EXCL or SQ__LOCK_SHARED */
    const char *site;        /* where it was taken ("?" if unknown) */
    int64_t since;           /* when */
    sq__cctx *owner;
    struct sq__hold *cnext;  /* owner's list, newest first */
    struct sq__hold *hnext;  /* hash bucket of `lock` */
} sq__hold;

struct sq__cctx {
    sq__task *task;          /* NULL for a plain thread (or the orphans) */
    uint64_t task_id;
    char name[48];           /* "task 'name' #id" or "thread <tid>" */
    const char *spawn_site;
    sq__hold *holds;         /* newest first */
    int nholds;
    /* The lock this context is trying to take, if any. */
    const void *acquiring;
    const char *acquiring_cls;
    int acquiring_mode;
    const char *acquiring_site;
    /* All contexts, for the wait-for graph and the dump. */
    sq__cctx *next, *prev;
};

/* The configuration and the lock over all the state below. */
extern pthread_mutex_t sq__check_lock;
extern sq_check_config sq__check_cfg;

/* All live contexts (guarded by sq__check_lock). */
extern sq__cctx *sq__check_contexts;

/* The context of the calling task or thread, created on first use;
 * NULL only if out of memory.  Call with sq__check_lock held. */
sq__cctx *sq__check_current(void);

/* The holds of `lock` (any context), via the hash table: the first, then
 * follow hnext comparing .lock.  Call with sq__check_lock held. */
sq__hold *sq__check_holds_of(const void *lock);

/* The class name of a lock: cls, or "<kind>@<address>" kept in a
 * static table for locks initialised without a class.  Never NULL. */
const char *sq__class_of(const void *lock, const char *cls);

/* A report under construction: a growing text, emitted (outside the
 * lock) by sq__report_emit. */
typedef struct sq__report {
    unsigned finding;
    char *buf;
    size_t len, cap;
} sq__report;

void sq__report_init(sq__report *r, unsigned finding);
void sq__report_add(sq__report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends the calling thread's stack (function names when the program
 * is linked with -rdynamic), skipping `skip` innermost frames. */
void sq__report_backtrace(sq__report *r, int skip);
/* Appends a duration: "<n> ns", "<n> us" or "<n> ms". */
void sq__report_age(sq__report *r, int64_t ns);
/* Appends a context's name and, if known, " (spawned at <site>)". */
void sq__report_ctx(sq__report *r, const sq__cctx *c);
/* What a wait of `kind` (enum sq__wait_kind) waits for: a short key
 * ("mutex", "sleep", ...) for JSON, and words for text ("a mutex"). */
const char *sq__wait_kind_key(int kind);
const char *sq__wait_kind_text(int kind);
/* Appends "  <what> <cls> (<address>) taken at <site> <age> ago". */
void sq__report_hold(sq__report *r, const char *what, const sq__hold *h,
                     int64_t now);
/* Counts the finding, hands the text to the reporter and frees it; aborts
 * if the finding is in abort_on.  Call WITHOUT sq__check_lock. */
void sq__report_emit(sq__report *r);

/* The lock-order graph (lockdep.c).  Called with sq__check_lock held,
 * before ctx takes `lock` of class cls in `mode` at `site` (trylock: it
 * will not wait, so it adds no order edge but is validated).  Returns a
 * report to emit once the lock is released (finding
 * SQ_CHECK_LOCK_ORDER), or NULL. */
sq__report *sq__lockdep_acquire(sq__cctx *ctx, const void *lock,
                                const char *cls, int mode, const char *site,
                                bool trylock);

/* Searches the wait-for graph for cycles and reports each one (finding
 * SQ_CHECK_DEADLOCK).  `why` says what triggered the search.  Takes
 * sq__check_lock itself.  Returns the number of cycles found. */
int sq__deadlock_search(const char *why);

/* Starts, re-times or (period 0) stops the watchdog thread that runs
 * sq__deadlock_search every `period` ns.  0 or -ENOMEM. */
int sq__watchdog_configure(int64_t period);

#endif
