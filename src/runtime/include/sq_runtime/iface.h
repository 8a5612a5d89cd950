/* What the runtime offers the layers above it (sync, check, patterns):
 * the waiter protocol, wake-up and park, the scheduling point, the hooks
 * of the run-time checks, the kinds of wait, and read-only accessors of
 * tasks.  Internal (sq__ names, not installed); the runtime's own private
 * header is src/runtime/internal.h, which no other layer sees.  A task's
 * fields are private to the runtime: the layers above hold sq__task
 * pointers and read them only through the accessors below.
 */
#ifndef SQ_RUNTIME_IFACE_H
#define SQ_RUNTIME_IFACE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squirrel/list.h"
#include "squirrel/runtime.h"
#include "sq_base/compiler.h"
#include "sq_base/spin.h"

typedef struct sq__task sq__task;

/* ------------------------------------------------------ kinds of wait */

/* What a waiter waits for (sq__waiter.kind), for the checks and the task
 * dump.  Waiting for a lock while holding another is nesting, checked by
 * the lock-order graph; every other kind of wait while holding a lock is
 * a finding of its own (see src/check). */
enum sq__wait_kind {
    SQ__WAIT_OTHER,
    SQ__WAIT_MUTEX,     /* obj: the sq_mutex */
    SQ__WAIT_RWLOCK,    /* obj: the sq_rwlock */
    SQ__WAIT_SEM,       /* obj: the sq_sem */
    SQ__WAIT_NOTIFY,
    SQ__WAIT_CHANNEL,   /* oneshot, mpsc, broadcast, watch */
    SQ__WAIT_BARRIER,
    SQ__WAIT_ONCE,
    SQ__WAIT_SLEEP,
    SQ__WAIT_IO,        /* obj: the sq_io */
    SQ__WAIT_JOIN,      /* obj: the task joined */
    SQ__WAIT_GROUP,     /* obj: the sq_group */
    SQ__WAIT_BLOCKING,  /* a blocking-pool job */
    SQ__WAIT_NKINDS
};
#define SQ__WAIT_IS_LOCK(k) ((k) == SQ__WAIT_MUTEX || (k) == SQ__WAIT_RWLOCK)

/* ------------------------------------------------------ the waiter */

/* A waiter: one waiting task or plain thread.  Lives on the waiter's own
 * stack.  Rule for every user: the waker sets `signalled` and calls
 * sq__waiter_wake while holding the lock that protects the queue the
 * waiter is in, and the waiter takes that same lock before it returns, so
 * a waiter is never touched after it has left. */
typedef struct sq__waiter {
    sq__task *task;           /* NULL for a plain thread */
    atomic_uint signalled;    /* futex word for plain threads */
    int status;               /* set by the waker for the waiter */
    struct sq__link link;     /* for queues of waiters */
    void *data;               /* for the primitive's own use */
    int kind;                 /* enum sq__wait_kind */
    const void *obj;          /* what is waited for (see the kinds) */
    int64_t since;            /* when the wait began (set by the checks) */
} sq__waiter;

#define sq__waiter_of(l) sq__list_entry((l), sq__waiter, link)

/* Initialises w for the current task (or thread) as a wait of kind
 * SQ__WAIT_OTHER; sq__waiter_init_for names the kind and the object. */
void sq__waiter_init(sq__waiter *w);
void sq__waiter_init_for(sq__waiter *w, int kind, const void *obj);
/* Marks w signalled and wakes its task or thread. */
void sq__waiter_wake(sq__waiter *w);
/* The first half of sq__waiter_wake, for wakers that would rather not
 * switch tasks' queues while holding their lock: marks w signalled (under
 * the lock, as the rule above says), wakes a plain thread at once, and
 * returns the task to pass to sq__task_wake once the lock is released
 * (NULL for a thread).  The late wake-up is harmless if the waiter has
 * moved on meanwhile: tasks tolerate spurious wake-ups (sq__task_park). */
sq__task *sq__waiter_signal(sq__waiter *w);
/* Suspends until w is signalled (0), the caller is cancelled
 * (-ECANCELED, only if cancellable), or deadline passes (-ETIMEDOUT).
 * Returns 0 at once if already signalled.  After a non-zero return the
 * caller must take its lock and check `signalled` again: a grant may have
 * raced with the cancellation or timeout. */
int sq__waiter_wait(sq__waiter *w, int64_t deadline, bool cancellable);

/* ------------------------------------------------ wake, park, yield */

/* The calling task, or NULL on a plain thread.  Never waits. */
sq__task *sq__task_current(void);
/* Makes a parked task runnable (spurious wake-ups are allowed: parked
 * code loops on its own condition).  Any thread.  Never waits. */
void sq__task_wake(sq__task *t);
/* sq__task_wake for a task the sync layer handed a lock, permits or a
 * message to, called on a worker of the task's runtime: the task is queued
 * on that worker and other workers do not steal it while that worker is
 * making progress (see steal_any in sched.c). */
void sq__task_wake_handoff(sq__task *t);
/* Suspends the current task until sq__task_wake (possibly spuriously:
 * callers loop on their own condition). */
void sq__task_park(void);
/* True if the calling thread is a worker of t's runtime (so t's runtime
 * cannot go away under it while it runs).  Never waits. */
bool sq__task_is_local(const sq__task *t);
/* If the caller is a task, lets the other runnable tasks of its worker
 * run first (a hand-off yield: not a cancellation point); on a plain
 * thread it does nothing. */
void sq__task_yield_handoff(void);

/* A scheduling point for deterministic mode (sq_runtime_opts.seed): called
 * by the task-aware locks on lock and unlock, so that a seed decides
 * whether another runnable task runs there (as if the caller had called
 * sq_yield, without its cancellation point).  Returns at once, after one
 * predictable branch, unless some deterministic runtime exists; then it
 * switches only when the caller is a task of one.  Never waits: call it
 * only where the caller holds no internal (spin or pthread) lock. */
extern atomic_int sq__det_runtimes; /* deterministic runtimes started */
void sq__sched_point_slow(void);
static inline void sq__sched_point(void)
{
    if (SQ__UNLIKELY(atomic_load_explicit(&sq__det_runtimes,
                                          memory_order_relaxed)))
        sq__sched_point_slow();
}

/* ------------------------------------------------ reading a task */

/* A task's scheduling state (sq__task_state_of): the low two bits, and a
 * flag on RUNNING or PARKED. */
enum {
    SQ__T_QUEUED = 0,   /* runnable, in some run queue */
    SQ__T_RUNNING = 1,  /* on a worker (possibly about to park) */
    SQ__T_PARKED = 2,   /* suspended, waiting for sq__task_wake */
    SQ__T_DONE = 3,     /* finished */
    SQ__T_NOTIFIED = 4, /* flag: a wake-up arrived before park */
};
#define SQ__TASK_NAME_MAX 32 /* bytes of a task's name, NUL included */

/* Read-only accessors, for any task the caller knows to be alive (the
 * calling task, or one reached under sq__registry_foreach).  Never
 * wait. */
uint64_t sq__task_id_of(const sq__task *t);
const char *sq__task_name_of(const sq__task *t);  /* NUL-terminated */
const char *sq__task_site_of(const sq__task *t);  /* spawn site or NULL */
int sq__task_state_of(const sq__task *t);         /* SQ__T_* */
/* The wait t is suspended in, or NULL.  The waiter lives on t's stack and
 * may be left (and the stack freed) at any moment: copy it with a call
 * that tolerates vanished memory (see src/check/snapshot.c). */
sq__waiter *sq__task_waiting_of(const sq__task *t);
/* The check layer's per-task slot (NULL until it stores something). */
void **sq__task_check_slot(sq__task *t);

/* Worker threads of rt; its deterministic-mode seed (0 in normal mode).
 * Never wait. */
int sq__runtime_workers(const sq_runtime *rt);
uint64_t sq__runtime_seed(const sq_runtime *rt);

/* Calls fn for every runtime created and not yet destroyed, under the
 * lock of that list: fn must not create or destroy a runtime. */
void sq__runtime_foreach(void (*fn)(sq_runtime *, void *), void *arg);

/* Calls fn for every task of rt not yet finished, under the registry
 * lock of its shard: fn must not wait or take other runtime locks. */
void sq__registry_foreach(sq_runtime *rt, void (*fn)(sq__task *, void *),
                          void *arg);

/* ------------------------------------------------------ check hooks */
/* The run-time checks (src/check, a higher layer) watch waits and locks
 * through these callbacks.  Lower layers call them only while
 * sq__check_hooks_on is set, behind one predictable branch (SQ__CHECKS()),
 * and not at all when built with SQ_CHECKS=0.  A callback never waits.
 *
 * Locks are described by their address, their class (a "file:line" or a
 * name given at init) and flags (SQ__LOCK_F_*).  Modes: SQ__LOCK_EXCL
 * (mutex, write lock) or SQ__LOCK_SHARED (read lock). */
enum { SQ__LOCK_EXCL, SQ__LOCK_SHARED };
#define SQ__LOCK_F_MAY_WAIT 1u /* a lock that may be held across waits */

typedef struct sq__check_hooks {
    /* The current task or thread is about to suspend in w, or has resumed
     * from it with rc (after the waiter protocol's final check). */
    void (*wait_begin)(sq__waiter *w);
    void (*wait_end)(sq__waiter *w, int rc);
    /* Before taking a lock (blocking or try form); after taking it; after
     * giving up taking it (timeout, cancellation, try failure). */
    void (*lock_acquire)(const void *lock, const char *cls, unsigned flags,
                         int mode, const char *site, bool trylock);
    void (*lock_acquired)(const void *lock, const char *cls, unsigned flags,
                          int mode, const char *site);
    void (*lock_abandon)(const void *lock, int mode);
    /* A lock given back (by any task or thread: locks are not
     * owner-bound); a write lock downgraded to a read lock. */
    void (*lock_release)(const void *lock, int mode);
    void (*lock_downgrade)(const void *lock);
    /* A task finished; its record (sq__task_check_slot) is the check
     * layer's. */
    void (*task_exit)(sq__task *t);
} sq__check_hooks;

#ifndef SQ_CHECKS
#define SQ_CHECKS 1
#endif
extern const sq__check_hooks *_Atomic sq__check_hooks_on;
#if SQ_CHECKS
#define SQ__CHECKS() \
    atomic_load_explicit(&sq__check_hooks_on, memory_order_relaxed)
#else
#define SQ__CHECKS() ((const sq__check_hooks *)NULL)
#endif

#endif
