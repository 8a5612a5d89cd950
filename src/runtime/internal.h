/* Internal runtime structures shared by src/runtime/ (and, read-only, by
 * the higher layers through the sq__ functions declared here). */
#ifndef SQUIRREL_RUNTIME_INTERNAL_H
#define SQUIRREL_RUNTIME_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squirrel/runtime.h"

#define SQ__CACHELINE 64
#define SQ__LIKELY(x) __builtin_expect(!!(x), 1)
#define SQ__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SQ__NOINLINE __attribute__((noinline))
#define sq__container_of(p, type, member) \
    ((type *)((char *)(p) - offsetof(type, member)))

/* ------------------------------------------------------ sanitizers */
#if defined(__SANITIZE_ADDRESS__)
#define SQ__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SQ__ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define SQ__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SQ__TSAN 1
#endif
#endif

/* ------------------------------------------------------ spin lock */
/* A test-and-test-and-set lock for critical sections of a few dozen
 * instructions that never wait (queue links, wake-up hand-offs).  Spinning
 * is bounded by the holder's short section; after 64 spins it yields the
 * thread so an OS-preempted holder can finish. */
typedef struct { atomic_int v; } sq__spin;
void sq__spin_lock_slow(sq__spin *l);
static inline void sq__spin_lock(sq__spin *l)
{
    if (SQ__LIKELY(!atomic_exchange_explicit(&l->v, 1, memory_order_acquire)))
        return;
    sq__spin_lock_slow(l);
}
static inline void sq__spin_unlock(sq__spin *l)
{
    atomic_store_explicit(&l->v, 0, memory_order_release);
}
static inline void sq__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* A sequentially consistent fence.  ThreadSanitizer does not model fences
 * (gcc refuses them under -fsanitize=thread), so there it is a seq_cst
 * read-modify-write of one shared word, which TSan does understand. */
#ifdef SQ__TSAN
extern atomic_int sq__fence_word;
#define sq__fence() atomic_fetch_add(&sq__fence_word, 0)
#else
#define sq__fence() atomic_thread_fence(memory_order_seq_cst)
#endif

/* ------------------------------------------------------ futex */
void sq__futex_wait(atomic_uint *addr, unsigned expected, int64_t deadline);
void sq__futex_wake(atomic_uint *addr, int n);

/* ------------------------------------------------------ context */
/* Saved machine context: just the stack pointer; callee-saved registers
 * live on the suspended stack. */
typedef struct sq__ctx {
    void *sp;
#if !defined(__x86_64__) && !defined(__aarch64__)
    void *uc; /* ucontext_t fallback */
#endif
} sq__ctx;

/* Prepares ctx so that the first switch to it calls entry(arg) on the
 * stack [base, base+size).  entry must never return. */
void sq__ctx_make(sq__ctx *ctx, void *base, size_t size,
                  void (*entry)(void *), void *arg);
/* Saves the current context in from and resumes to. */
void sq__ctx_switch(sq__ctx *from, sq__ctx *to);

/* ------------------------------------------------------ stacks */
typedef struct sq__stack {
    void *base;      /* lowest usable byte (just above the guard page) */
    size_t size;     /* usable bytes (the descriptor sits just above) */
    struct sq__stack *next; /* pool link */
    int cls;         /* size class, -1 for a stack mapped on its own */
    unsigned vg_id;  /* Valgrind stack id */
} sq__stack;
#define SQ__STACK_CLASSES 16 /* 16 KiB .. 512 MiB */
struct sq__chunk {
    void *addr;
    size_t len;
};

/* ------------------------------------------------------ timers */
typedef struct sq__timer {
    int64_t deadline;
    uint32_t index;          /* position in the heap; UINT32_MAX = not armed */
    struct sq__task *task;   /* woken when it fires */
} sq__timer;
#define SQ__TIMER_IDLE UINT32_MAX

/* ------------------------------------------------------ tasks */
enum {
    SQ__T_QUEUED = 0,   /* runnable, in some run queue */
    SQ__T_RUNNING = 1,  /* on a worker (possibly about to park) */
    SQ__T_PARKED = 2,   /* suspended, waiting for sq__task_wake */
    SQ__T_DONE = 3,     /* finished */
    SQ__T_NOTIFIED = 4, /* flag on RUNNING: a wake-up arrived before park */
};

enum { SQ__H_ATTACHED, SQ__H_DETACHED, SQ__H_CONSUMED };

typedef struct sq__waiter sq__waiter;
struct sq_group;

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

typedef struct sq__task {
    sq__ctx ctx;
    atomic_int state;
    /* Last woken by a sync hand-off on its worker (sq__task_wake_handoff;
     * every other wake-up and every spawn clears it, a yield keeps it):
     * thieves leave it there while that worker keeps switching. */
    atomic_bool handoff;
    int cancel_mask;               /* only touched by the task itself */
    atomic_bool cancel_req;
    bool started;
    bool ran_once;                 /* its first run has ended (sched.c) */
    bool finished;                 /* under lock */
    uint8_t handle;                /* SQ__H_*, under lock */
    atomic_int refs;               /* handle + running */
    _Atomic uint64_t id;           /* checked by handles; changes on reuse */
    struct sq_runtime *rt;
    struct sq__task *qnext;        /* global queue / free list link */
    sq__stack *stack;
    size_t stack_size;
    sq_task_fn fn;
    void *arg;
    void *result;
    int status;                    /* 0, -ECANCELED, -ENOMEM */
    sq__spin lock;                 /* joiner, finished, handle, group */
    sq__waiter *joiner;
    sq__timer timer;
    /* all-tasks registry (for shutdown and the task dump) */
    struct sq__task *reg_prev, *reg_next;
    int reg_shard;
    /* task group membership */
    struct sq_group *group;
    struct sq__task *grp_prev, *grp_next;
    void *tsan_fiber;
    void *asan_fake_stack;
    /* for the checks and the task dump */
    sq__waiter *_Atomic waiting;   /* the wait it is suspended in, or NULL */
    void *check;                   /* the check layer's per-task record */
    const char *spawn_site;        /* "file:line" of the spawn, or NULL */
    char name[32];
} sq__task;

/* A waiter: one waiting task or plain thread.  Lives on the waiter's own
 * stack.  Rule for every user: the waker sets `signalled` and calls
 * sq__waiter_wake while holding the lock that protects the queue the
 * waiter is in, and the waiter takes that same lock before it returns, so
 * a waiter is never touched after it has left. */
struct sq__waiter {
    sq__task *task;           /* NULL for a plain thread */
    atomic_uint signalled;    /* futex word for plain threads */
    int status;               /* set by the waker for the waiter */
    sq__waiter *next, *prev;  /* for queues of waiters */
    void *data;               /* for the primitive's own use */
    int kind;                 /* enum sq__wait_kind */
    const void *obj;          /* what is waited for (see the kinds) */
    int64_t since;            /* when the wait began (set by the checks) */
};

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

/* ------------------------------------------------------ check hooks */
/* The run-time checks (src/check, a higher layer) watch waits and locks
 * through these callbacks.  Lower layers call them only while
 * sq__check_hooks is set, behind one predictable branch (SQ__CHECKS()),
 * and not at all when built with SQ_CHECKS=0.  A callback never waits.
 *
 * Locks are described by their address, their class (a "file:line" or a
 * name given at init) and their sq_sem flags (SQ__SEM_F_*).  Modes:
 * SQ__LOCK_EXCL (mutex, write lock) or SQ__LOCK_SHARED (read lock). */
enum { SQ__LOCK_EXCL, SQ__LOCK_SHARED };

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
    /* A task finished; its record (t->check) is the check layer's. */
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

/* Calls fn for every runtime created and not yet destroyed, under the
 * lock of that list: fn must not create or destroy a runtime. */
void sq__runtime_foreach(void (*fn)(sq_runtime *, void *), void *arg);

/* Calls fn for every task of rt not yet finished, under the registry
 * lock of its shard: fn must not wait or take other runtime locks. */
void sq__registry_foreach(sq_runtime *rt, void (*fn)(sq__task *, void *),
                          void *arg);

/* ------------------------------------------------------ workers */
#define SQ__RQ_CAP 256u

typedef struct sq__runq {
    _Alignas(SQ__CACHELINE) atomic_uint head; /* stealers and owner CAS */
    _Alignas(SQ__CACHELINE) atomic_uint tail; /* owner writes */
    _Atomic(sq__task *) buf[SQ__RQ_CAP];
} sq__runq;

/* The owner's LIFO deque (Chase-Lev): the owner pushes and takes at the
 * bottom (newest first), thieves take one task at a time from the top
 * (oldest).  Indices only grow; slot = index % SQ__DQ_CAP. */
#define SQ__DQ_CAP 256
#define SQ__FRESH_MAX 16

typedef struct sq__deque {
    _Alignas(SQ__CACHELINE) atomic_llong top;    /* thieves and owner CAS */
    _Alignas(SQ__CACHELINE) atomic_llong bottom; /* owner writes */
    _Atomic(sq__task *) buf[SQ__DQ_CAP];
} sq__deque;

typedef struct sq__worker {
    sq__runq rq;  /* FIFO: yielded tasks and batches from the global queue */
    sq__deque dq; /* LIFO: woken and spawned tasks */
    _Alignas(SQ__CACHELINE) struct sq_runtime *rt;
    int index;
    pthread_t thread;
    sq__ctx sched_ctx;
    sq__task *cur;              /* running task, or NULL */
    /* The LIFO slot and the spawn buffer: the owner uses them with plain
     * loads and stores between own_begin and own_end; a thief may empty
     * them once the owner has stopped switching (sched.c). */
    _Atomic(sq__task *) lifo;   /* woken task to run next */
    atomic_int nfresh;          /* tasks spawned by the running task */
    _Atomic(sq__task *) fresh[SQ__FRESH_MAX];
    atomic_int owner_in;        /* the owner is using lifo / fresh */
    atomic_int thief_in;        /* a thief is emptying them */
    sq__task *prev;             /* task that switched away, to settle */
    int prev_action;
    uint32_t tick;
    long long fair_top;         /* deque top seen at the last fairness check */
    int64_t fair_since;         /* ... and since when it has not moved */
    uint32_t rng;
    /* per other worker: its switch count when last looked at, since when
     * it has not moved, and when its LIFO slot and spawn buffer were last
     * emptied by this worker (steal_any; NULL if it could not be had) */
    struct sq__seen { uint64_t switches; int64_t since, held_at; } *seen;
    /* Convoy feeding (sched.c): first runs in a row that ended queued on
     * a lock while no hand-off came here; while backoff_until is ahead,
     * this worker leaves the shared queues to workers that are busy. */
    uint32_t feed;
    int64_t backoff_until;
    /* How long the next watching park may last (sched.c). */
    int64_t watch_ns;
    /* sq_runtime_stats figures: written by the owner only (a plain load
     * and store, no locked instruction), read by anyone */
    struct {
        _Atomic uint64_t spawned, switches, steals, parks;
    } stats;
    bool searching;
    bool det;                   /* deterministic mode (rt->seed != 0) */
    atomic_uint parked;         /* futex word: 1 while parked */
    atomic_bool in_driver;      /* parked inside epoll */
    /* caches, owner only */
    sq__stack *stack_cache[SQ__STACK_CLASSES];
    int stack_cache_n[SQ__STACK_CLASSES];
    sq__task *task_cache;
    int task_cache_n;
    uint64_t id_next, id_end;
    void *sched_stack_lo;       /* thread stack, for ASan */
    size_t sched_stack_size;
    void *tsan_fiber;
    void *altstack;
    /* deterministic mode only (sched.c): the runnable tasks, and the
     * generator that picks among them */
    uint64_t det_rng;
    sq__task **det_buf;
    uint32_t det_n, det_cap;
} sq__worker;

/* Counts one event in a worker's statistics (owner only). */
#define SQ__STAT_INC(w, field)                                              \
    atomic_store_explicit(                                                  \
        &(w)->stats.field,                                                  \
        atomic_load_explicit(&(w)->stats.field, memory_order_relaxed) + 1,  \
        memory_order_relaxed)

enum { SQ__SW_NONE, SQ__SW_PARK, SQ__SW_YIELD, SQ__SW_EXIT };

/* ------------------------------------------------------ runtime */
#define SQ__REG_SHARDS 16


struct sq_runtime {
    int nworkers;
    sq__worker *workers;
    size_t stack_size;
    atomic_bool shutting_down;
    atomic_bool stop;

    /* Written at every spawn and exit: kept off the line above, which
     * spinning idle workers read all the time (nworkers, workers, stop). */
    _Alignas(SQ__CACHELINE) atomic_long alive; /* not yet finished (+ unreaped) */
    _Atomic uint64_t spawned_outside; /* spawns from outside threads */

    /* global run queue */
    _Alignas(SQ__CACHELINE) pthread_mutex_t gq_lock;
    sq__task *gq_head, *gq_tail;
    atomic_long gq_len;

    /* idle workers */
    _Alignas(SQ__CACHELINE) atomic_uint nsearching;
    atomic_uint nparked;
    atomic_uint nwatching;      /* parked with a deadline (sched.c) */
    pthread_mutex_t idle_lock;
    int *parked_list;
    int nparked_list;

    /* the driver: epoll + timers, polled by a parked worker */
    _Alignas(SQ__CACHELINE) pthread_mutex_t driver_lock;
    int epfd;
    int evfd;
    atomic_llong driver_until;  /* deadline the driver sleeps to, or MAX */
    _Atomic(struct sq_io *) io_release; /* closed handles to free */
    atomic_long io_live;        /* handles registered with epoll */

    _Alignas(SQ__CACHELINE) sq__spin timer_lock;
    sq__timer **heap;
    uint32_t heap_len, heap_cap;
    atomic_llong timer_next;    /* earliest deadline, or INT64_MAX */

    /* task registry, sharded to keep spawn/exit uncontended */
    struct {
        _Alignas(SQ__CACHELINE) sq__spin lock; /* a few instructions held */
        sq__task *head;
    } reg[SQ__REG_SHARDS];

    /* shared pools */
    pthread_mutex_t pool_lock;
    sq__stack *stack_pool[SQ__STACK_CLASSES];
    struct sq__chunk *chunks;   /* stack mappings, unmapped at destroy */
    size_t nchunks, chunks_cap;
    sq__task *task_pool;        /* free task structs */
    void **slabs;               /* task struct slabs, freed at destroy */
    size_t nslabs, slabs_cap;

    /* blocking pool */
    pthread_mutex_t bp_lock;
    pthread_cond_t bp_cond;
    struct sq__job *bp_head, *bp_tail;
    int bp_threads, bp_idle, bp_max;
    pthread_t *bp_tids;
    bool bp_stop;

    atomic_uint done_seq;       /* futex: bumped when alive hits 0 */
    bool workers_started;
    uint64_t seed;              /* nonzero: deterministic mode (sched.c) */
    struct sq_runtime *all_next; /* every live runtime (runtime.c) */
};

/* ------------------------------------------------------ internal API */
sq__worker *sq__worker_current(void);
sq__task *sq__task_current(void);

void sq__task_wake(sq__task *t);
/* sq__task_wake for a task the sync layer handed a lock, permits or a
 * message to, called on a worker of the task's runtime: the task is queued
 * on that worker and other workers do not steal it while that worker is
 * making progress (see steal_any in sched.c). */
void sq__task_wake_handoff(sq__task *t);
/* Suspends the current task until sq__task_wake (possibly spuriously:
 * callers loop on their own condition). */
void sq__task_park(void);

void sq__sched_push_new(sq_runtime *rt, sq__task *t);
void sq__sched_switch_away(int action);
void sq__sched_notify(sq_runtime *rt);
int sq__sched_start(sq_runtime *rt);
void sq__sched_stop(sq_runtime *rt);
void sq__sched_unpark_all(sq_runtime *rt);

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

int sq__stack_get(sq_runtime *rt, sq__worker *w, size_t size, sq__stack **out);
void sq__stack_put(sq_runtime *rt, sq__worker *w, sq__stack *s);
void sq__stack_pool_free(sq_runtime *rt);
void sq__overflow_handler_install(sq__worker *w);
void sq__overflow_handler_remove(sq__worker *w);

sq__task *sq__task_alloc(sq_runtime *rt, sq__worker *w);
void sq__task_release(sq__task *t);   /* drop one reference */
void sq__task_pool_free(sq_runtime *rt);
void sq__task_settle_exit(sq__worker *w, sq__task *t);
int sq__task_prepare(sq__worker *w, sq__task *t);  /* allocate stack */
int sq__spawn_in(sq_runtime *rt, sq__worker *w, sq__task **out, sq_task_fn fn,
                 void *arg, const sq_spawn_opts *opts, bool keep_handle,
                 const char *site);
void sq__task_abort(sq__task *t);
void sq__registry_cancel_all(sq_runtime *rt);

int sq__timer_arm(sq_runtime *rt, sq__timer *tm, int64_t deadline);
void sq__timer_disarm(sq_runtime *rt, sq__timer *tm);
void sq__timers_fire(sq_runtime *rt, int64_t now);
void sq__timers_free(sq_runtime *rt);

int sq__driver_init(sq_runtime *rt);
void sq__driver_free(sq_runtime *rt);
/* Polls epoll and fires timers; timeout_ns < 0 waits until the next timer
 * (or a wake-up), 0 just polls.  Caller holds driver_lock. */
void sq__driver_poll(sq_runtime *rt, int64_t timeout);
/* As sq__driver_poll(rt, -1), but waits no later than deadline
 * (SQ_FOREVER: none). */
void sq__driver_poll_until(sq_runtime *rt, int64_t deadline);
void sq__driver_wake(sq_runtime *rt);

void sq__blocking_stop(sq_runtime *rt);

bool sq__cancel_pending(sq__task *t);

#endif
