/* Contexts and holds: who holds which task-aware lock, as the checks
 * know it.
 *
 * Everything here is guarded by one process-wide mutex, sq__check_lock:
 * the checks are a debugging aid and favour exact bookkeeping over speed.
 * The hooks run in the task or thread that takes, gives back or waits for
 * something; they never wait themselves.
 *
 * Contexts.  Locks are held by a context: a task (its record hangs off
 * the task's check slot, sq__task_check_slot) or a plain thread (a
 * thread-local record).  A context keeps its holds newest first, and the
 * lock it is currently trying to take (for the wait-for graph).  Locks
 * are not owner-bound: a hold can be released by another context, and
 * outlives its task (it then moves to sq__check_finished).  A task that
 * passes a held lock on says so (sq_check_lock_transfer): its hold moves
 * to sq__check_transit until another context adopts it
 * (sq_check_lock_adopt) or releases the lock.
 */
#ifndef SQ_CHECK_CONTEXT_H
#define SQ_CHECK_CONTEXT_H

#include <pthread.h>

#include "squirrel/list.h"
#include "sq_runtime/iface.h"

typedef struct sq__cctx sq__cctx;

/* One lock held by one context (a read lock: one hold per reader). */
typedef struct sq__hold {
    const void *lock;
    const char *cls;         /* class name (never NULL: see sq__class_of) */
    unsigned flags;          /* SQ__LOCK_F_* */
    int mode;                /* SQ__LOCK_EXCL or SQ__LOCK_SHARED */
    const char *site;        /* where it was taken ("?" if unknown) */
    int64_t since;           /* when */
    sq__cctx *owner;
    struct sq__hold *cnext;  /* owner's list, newest first */
    struct sq__hold *hnext;  /* hash bucket of `lock` */
} sq__hold;

struct sq__cctx {
    sq__task *task;          /* NULL for a plain thread (or finished tasks) */
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
    struct sq__link link;    /* in sq__check_contexts */
};

#define sq__cctx_of(l) sq__list_entry((l), sq__cctx, link)

/* The lock over everything the checks keep. */
extern pthread_mutex_t sq__check_lock;

/* All live contexts, newest first (guarded by sq__check_lock). */
extern struct sq__list sq__check_contexts;
/* The holds of tasks that finished holding them, and the holds passed on
 * by sq_check_lock_transfer and not yet adopted (neither in the list:
 * they wait for nothing and are nobody's to report). */
extern sq__cctx sq__check_finished;
extern sq__cctx sq__check_transit;

/* The context of the calling task or thread, created on first use; NULL
 * only if out of memory.  Call with sq__check_lock held. */
sq__cctx *sq__check_current(void);
/* The caller's context if it has one (it has none until it first takes
 * a lock): waits and releases need not create one.  Under the lock. */
sq__cctx *sq__check_current_if_any(void);
/* Gives c's holds to the context of finished tasks, unlinks and frees c.
 * Under the lock. */
void sq__check_retire(sq__cctx *c);

/* The holds of `lock` (any context), via the hash table: the first, then
 * follow hnext comparing .lock.  Under the lock. */
sq__hold *sq__check_holds_of(const void *lock);
/* Gives h (filled in but for its links) to c.  Under the lock. */
void sq__hold_add(sq__cctx *c, sq__hold *h);
/* Takes h from its owner and the hash table (not freed).  Under the
 * lock. */
void sq__hold_remove(sq__hold *h);
/* The hold of `lock` in `mode` that a release by `me` (NULL: a context
 * not known) gives back: me's own if it has one (the usual case), else
 * one in transit (a lock passed on, released by its receiver), else any
 * (a lock released by another task or thread than the one that took it,
 * without a transfer).  NULL if the checks know none.  Under the lock. */
sq__hold *sq__hold_find(sq__cctx *me, const void *lock, int mode);

/* The class name of a lock: cls, or "lock@<address>" kept in a static
 * table for locks initialised without a class.  Never NULL.  Under the
 * lock. */
const char *sq__class_of(const void *lock, const char *cls);

#endif
