/* The runtime's private header: its structures and internal functions,
 * shared by the files of src/runtime/ and by no other layer.  What the
 * layers above may use is sq_runtime/iface.h (included here). */
#ifndef SQUIRREL_RUNTIME_INTERNAL_H
#define SQUIRREL_RUNTIME_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squirrel/runtime.h"
#include "sq_runtime/iface.h"

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
/* What guards the memory below a stack (stack.c says when each is used). */
enum {
    SQ__GUARD_MARKER, /* MADV_GUARD_INSTALL marker in the guard page */
    SQ__GUARD_PAGE,   /* PROT_NONE guard page */
    SQ__GUARD_CANARY, /* a canary below the stack, checked at switch-out */
};
typedef struct sq__stack {
    void *base;      /* lowest usable byte (just above the guard page) */
    size_t size;     /* usable bytes (the descriptor sits just above) */
    struct sq__stack *next; /* pool link */
    int cls;         /* size class, -1 for a stack mapped on its own */
    uint8_t guard;   /* SQ__GUARD_* */
    unsigned vg_id;  /* Valgrind stack id */
} sq__stack;
#define SQ__STACK_CLASSES 16 /* 16 KiB .. 512 MiB */
struct sq__region { /* a mapping stacks are carved from */
    void *addr;
    size_t len;
};
struct sq__carve { /* the region a class carves its new slots from */
    char *next;      /* first slot not handed out yet */
    size_t left;     /* slots left after it */
    size_t grow;     /* slots in the class's next region */
};

/* ------------------------------------------------------ timers */
typedef struct sq__timer {
    int64_t deadline;
    uint32_t index;          /* position in the heap; UINT32_MAX = not armed */
    struct sq__task *task;   /* woken when it fires */
} sq__timer;
#define SQ__TIMER_IDLE UINT32_MAX

/* ------------------------------------------------------ tasks */
enum { SQ__H_ATTACHED, SQ__H_DETACHED, SQ__H_CONSUMED };

struct sq_group;

struct sq__task {
    sq__ctx ctx;
    atomic_int state;
    /* Last woken by a sync hand-off on its worker (sq__task_wake_handoff;
     * every other wake-up and every spawn clears it, a yield keeps it):
     * thieves leave it there while that worker keeps switching. */
    atomic_bool handoff;
    int cancel_mask;               /* only touched by the task itself */
    /* An abort reached the task: a cancellation point stopped for it or
     * sq_cancelled() said so.  Only the task writes it; its join then
     * reports -ECANCELED (an abort it never heard of does not count). */
    bool cancel_seen;
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
    uint64_t *canary;              /* checked at switch-out, or NULL */
    size_t stack_size;
    sq_task_fn fn;
    void *arg;
    void *result;
    int status;                    /* 0, -ECANCELED, -ENOMEM */
    sq__spin lock;                 /* joiner, finished, handle, group */
    sq__waiter *joiner;
    sq__timer timer;
    /* all-tasks registry (for shutdown and the task dump) */
    struct sq__link reg_link;
    int reg_shard;
    /* task group membership */
    struct sq_group *group;
    struct sq__link grp_link;
    void *tsan_fiber;
    void *asan_fake_stack;
    /* for the checks and the task dump */
    sq__waiter *_Atomic waiting;   /* the wait it is suspended in, or NULL */
    void *check;                   /* the check layer's per-task record */
    const char *spawn_site;        /* "file:line" of the spawn, or NULL */
    char name[SQ__TASK_NAME_MAX];
};

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
        struct sq__list tasks;
    } reg[SQ__REG_SHARDS];

    /* shared pools */
    pthread_mutex_t pool_lock;
    sq__stack *stack_pool[SQ__STACK_CLASSES];
    struct sq__region *regions; /* stack mappings, unmapped at destroy */
    size_t nregions, regions_cap;
    struct sq__carve carve[SQ__STACK_CLASSES];
    atomic_int stack_guard;     /* stack.c's mode, from the environment */
    atomic_long page_guards;    /* PROT_NONE guard pages among them */
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
#define sq__task_of_link(l, member) sq__list_entry((l), sq__task, member)


void sq__sched_push_new(sq_runtime *rt, sq__task *t);
void sq__sched_switch_away(int action);
void sq__sched_notify(sq_runtime *rt);
int sq__sched_start(sq_runtime *rt);
void sq__sched_stop(sq_runtime *rt);
void sq__sched_unpark_all(sq_runtime *rt);

int sq__stack_get(sq_runtime *rt, sq__worker *w, size_t size, sq__stack **out);
void sq__stack_put(sq_runtime *rt, sq__worker *w, sq__stack *s);
void sq__stack_pool_free(sq_runtime *rt);
/* Where the canary below s is, or NULL if s has a guard page or marker. */
uint64_t *sq__stack_canary(sq__stack *s);
/* Reports a stack overflow and aborts if t's canary was overwritten. */
void sq__stack_canary_check(sq__task *t);
static inline void sq__stack_check(sq__task *t)
{
    if (SQ__UNLIKELY(t->canary != NULL))
        sq__stack_canary_check(t);
}
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

/* True if a cancellation point of t (the calling task) must stop now:
 * t is aborted and does not mask cancellation.  Records that the abort
 * reached t (t->cancel_seen), so call it only where a true result makes
 * the call return -ECANCELED. */
bool sq__cancel_pending(sq__task *t);

#endif
