/* Squirrel check layer: run-time detection of the concurrency bugs the
 * specification warns about, in the program as it runs.
 *
 * What is found (docs/checks.md says exactly what is and is not):
 *  - SQ_CHECK_LOCK_ORDER: two lock classes taken in opposite orders (a
 *    cycle in the order graph), reported the first time the cycle closes,
 *    before any deadlock happens, with where each lock was taken.
 *  - SQ_CHECK_HELD_ACROSS_WAIT: a task or thread that waits for anything
 *    but another lock (I/O, sleep, a channel, a join, the blocking pool, a
 *    semaphore, a notify) while holding a task-aware lock.
 *  - SQ_CHECK_LONG_HOLD / SQ_CHECK_LONG_WAIT: a lock held, or a wait for
 *    a lock or a semaphore that lasted, longer than a threshold.
 *  - SQ_CHECK_DEADLOCK: a cycle of tasks each waiting for a lock another
 *    holds, searched on demand, by a watchdog and whenever a lock wait
 *    times out.
 *
 * Switching.  Everything is off by default and then costs one predictable
 * branch per lock operation and wait.  It is switched on by
 * sq_check_configure or, before main, by the environment variable
 * SQUIRREL_CHECK (syntax in docs/checks.md; e.g. "all,abort" or
 * "order,held,hold=50ms").  Built with -DSQ_CHECKS=0 the hooks are
 * compiled out and these functions do nothing but report -ENOTSUP.
 *
 * Reports go to stderr (or to the function given to
 * sq_check_set_reporter), one multi-line text per finding; a finding
 * whose bit is in `abort_on` aborts the process after its report.
 *
 * Besides the findings: a snapshot of every task, its wait and its locks,
 * as C structures (sq_check_snapshot_take) or as the task dump
 * (sq_check_dump, its rendering as text or JSON), and a copy of the
 * lock-order graph (sq_check_order_graph_take), for monitoring.
 */
#ifndef SQUIRREL_CHECK_H
#define SQUIRREL_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squirrel/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The findings, as bits. */
enum {
    SQ_CHECK_LOCK_ORDER = 1u << 0,
    SQ_CHECK_HELD_ACROSS_WAIT = 1u << 1,
    SQ_CHECK_LONG_HOLD = 1u << 2,
    SQ_CHECK_LONG_WAIT = 1u << 3,
    SQ_CHECK_DEADLOCK = 1u << 4,
    SQ_CHECK_ALL = (1u << 5) - 1,
};

typedef struct sq_check_config {
    unsigned findings;     /* SQ_CHECK_* bits to look for; 0 = all off */
    unsigned abort_on;     /* findings that abort after their report */
    int64_t long_hold_ns;  /* SQ_CHECK_LONG_HOLD threshold; 0 = 1 s */
    int64_t long_wait_ns;  /* SQ_CHECK_LONG_WAIT threshold; 0 = 10 s */
    int64_t watchdog_ns;   /* deadlock search period; 0 = no watchdog */
} sq_check_config;

/* Applies c (copied).  Turning any finding on installs the hooks in the
 * lower layers; locks taken before that are unknown to the checks (their
 * release is ignored).  Turning everything off stops the findings but
 * keeps the bookkeeping of locks already held, so a later switch on is
 * exact for them.  Returns 0, -EINVAL for a negative threshold or unknown
 * bits, -ENOTSUP if built with SQ_CHECKS=0, -ENOMEM (watchdog thread).
 * Never waits (it may briefly block on the checks' internal lock). */
int sq_check_configure(const sq_check_config *c);

/* The configuration in force.  Never fails or waits. */
void sq_check_get_config(sq_check_config *out);

/* Parses a SQUIRREL_CHECK string into *out: a comma-separated list of
 * "all", "order", "held", "long-hold", "long-wait", "deadlock", "abort"
 * (abort on every finding switched on), "hold=<time>", "wait=<time>",
 * "watchdog=<time>" with <time> a number and a unit of ns, us, ms or s.
 * Returns 0, or -EINVAL if the string does not parse (*out is then left
 * alone, and nothing is switched).  Never waits. */
int sq_check_parse(const char *spec, sq_check_config *out);

/* Receives each report: the finding's bit and its text (valid during the
 * call).  Called from the task or thread where the finding happened (the
 * watchdog's thread for its deadlock reports), never with an internal
 * lock held; it may use any Squirrel call that does not wait. */
typedef void (*sq_check_reporter)(unsigned finding, const char *text,
                                  void *arg);

/* Sends reports to fn(finding, text, arg), or to stderr if fn is NULL.
 * Never waits. */
void sq_check_set_reporter(sq_check_reporter fn, void *arg);

/* How many reports of the given findings (bits, OR-ed) have been made
 * since the process started.  Never waits. */
uint64_t sq_check_count(unsigned findings);

/* --------------------------------- passing a held lock to another task */
/* Task-aware locks are not owner-bound: a task may lock one, pass the
 * data it protects to another task (over a channel, say) and let that
 * one unlock it (squirrel/sync.h).  Nothing in the lock calls tells the
 * checks that this happened, and at the moment the first task goes on
 * the lock is still held: until the unlock they would charge it to the
 * task that took it, so that task's next wait would be reported as a
 * lock held across a wait, the locks it takes next would be recorded as
 * ordered after it (false inversions follow), and the deadlock search
 * would make it a holder.  So a lock passed on is declared: the sender
 * calls sq_check_lock_transfer before it hands the data over, and the
 * receiver may call sq_check_lock_adopt to be charged with it from then
 * on (or just unlock it).  Both are cheap and harmless with the checks
 * off; call them unconditionally where a lock changes hands. */

/* The calling task or thread gives its hold of `lock` (the address of an
 * sq_mutex or sq_rwlock it holds: the write lock, or its newest read
 * hold) to nobody in particular: from now on the hold is "in transit",
 * charged to no task or thread (the snapshot lists it among `unowned`,
 * with the holder "nobody (in transit)"), until a task or thread adopts
 * it or unlocks the lock.  The caller's waits are then not held across
 * it, the locks it takes are not ordered after it, and the deadlock
 * search does not count the caller as its holder.  The lock itself is
 * untouched: still locked, with the same waiters.  Call it before the
 * send that passes the lock on (after it, the receiver may already have
 * unlocked it, and the call returns -ENOENT).  Returns 0, -ENOENT if the
 * checks know no hold of `lock` by the caller (the checks were never
 * on, the lock was taken while no hook was installed, or the caller does
 * not hold it: harmless), -EINVAL for NULL, -ENOTSUP if built with
 * SQ_CHECKS=0.  Never waits (it briefly takes the checks' lock); not a
 * cancellation point. */
int sq_check_lock_transfer(const void *lock);

/* The calling task or thread takes over a hold of `lock` in transit: it
 * is charged with it from now on, as if it had taken the lock itself (the
 * hold keeps its class, site and time of taking, so a long hold is
 * measured from the lock call).  Optional: a receiver may unlock a lock
 * in transit without adopting it, but until it adopts it the checks do
 * not see it holding the lock (a wait meanwhile is not reported).
 * Returns 0, -ENOENT if no hold of `lock` is in transit (never
 * transferred, already adopted or unlocked, or unknown to the checks),
 * -ENOMEM if the caller's record could not be made, -EINVAL for NULL,
 * -ENOTSUP if built with SQ_CHECKS=0.  Never waits; not a cancellation
 * point. */
int sq_check_lock_adopt(const void *lock);

/* ------------------------------------------------- the lock-order graph */
/* Lock classes are the nodes; an order A -> B is recorded the first time
 * a task or thread takes a lock of class B (not by a try) while holding
 * one of class A.  Each distinct chain of held classes plus the class
 * taken is validated once and remembered.  Classes and orders live for
 * the process, at most 4096 classes and 16384 orders (past that a line on
 * stderr says the graph is full, and new ones go unchecked). */
typedef struct sq_check_order_stats {
    size_t classes;        /* lock classes in the graph */
    size_t edges;          /* orders recorded */
    size_t chains;         /* chains of held classes remembered */
    uint64_t validations;  /* lock calls that validated a new chain */
    uint64_t cached;       /* lock calls whose chain was validated before */
    bool full;             /* a class or order was left out: graph full */
} sq_check_order_stats;

/* The graph's size and work so far (since the start or the last reset).
 * Never fails or waits (it may briefly block on the checks' lock). */
void sq_check_get_order_stats(sq_check_order_stats *out);

/* Forgets every class, order, remembered chain and already-reported pair,
 * and zeroes the statistics: for tests, which provoke inversions on
 * purpose and want a fresh graph (and the same reports again).  Locks held
 * meanwhile are unaffected (their holds are kept).  Never fails or
 * waits. */
void sq_check_reset_order_graph(void);

/* The graph itself, for a monitoring page (/debug/locks) or a test: every
 * class and every order recorded, with where and by whom each order was
 * first taken.  A copy, owned by the caller; its strings and arrays live
 * until sq_check_order_graph_free. */
typedef struct sq_check_order_class {
    const char *name;      /* the class ("file:line" or a given name) */
} sq_check_order_class;

typedef struct sq_check_order_edge {
    size_t from, to;       /* indices into classes: `to` taken under `from` */
    bool from_shared;      /* `from` was held as a read lock */
    bool to_shared;        /* `to` was taken as a read lock */
    const char *from_site; /* where the held lock of `from` was taken */
    const char *to_site;   /* where the lock of `to` was taken */
    const char *first_by;  /* the task or thread that did it first:
                            * "task 'name' #id" or "thread <tid>" */
    const char *first_by_spawn_site; /* its spawn site, or NULL */
    bool reported;         /* this order closed a reported inversion (or
                            * nested two locks of one class) */
} sq_check_order_edge;

typedef struct sq_check_order_graph {
    size_t nclasses;
    const sq_check_order_class *classes;
    size_t nedges;
    const sq_check_order_edge *edges;  /* in the order they were recorded */
    sq_check_order_stats stats;        /* as sq_check_get_order_stats */
} sq_check_order_graph;

/* Copies the lock-order graph into *out (free it with
 * sq_check_order_graph_free).  Works whether or not the order check is on
 * now (the graph holds what was recorded while it was).  Returns 0,
 * -EINVAL if out is NULL, -ENOMEM (*out is then NULL), -ENOTSUP if built
 * with SQ_CHECKS=0.  Never waits: it holds the checks' lock for the copy,
 * O(classes + edges).  Not a cancellation point. */
int sq_check_order_graph_take(sq_check_order_graph **out);

/* Frees a graph from sq_check_order_graph_take (NULL: nothing).  Never
 * fails or waits; not a cancellation point. */
void sq_check_order_graph_free(sq_check_order_graph *g);

/* Renders g as one JSON object into *out (malloc'ed, NUL-terminated;
 * free it), edges naming their classes:
 *   {"classes": [{"name"}], "edges": [{"from", "to", "from_mode":
 *     "exclusive" | "shared", "to_mode", "from_site", "to_site",
 *     "first_by", "first_by_spawned_at", "reported"}],
 *    "stats": {"classes", "edges", "chains", "validations", "cached",
 *     "full"}}
 * Returns 0, -EINVAL (g or out NULL), -ENOMEM.  Never waits; not a
 * cancellation point. */
int sq_check_order_graph_json(const sq_check_order_graph *g, char **out);

/* How long task-aware locks (sq_mutex, sq_rwlock) were held: every
 * release of a lock taken after the checks were first switched on (any
 * finding; from then on the checks track every hold, even if switched off
 * again, so measuring it costs nothing more).  In a process that never
 * switched them on nothing is measured and the counters stay at 0. */
typedef struct sq_check_hold_stats {
    uint64_t holds;        /* releases measured */
    uint64_t hold_ns;      /* total time held */
    uint64_t max_hold_ns;  /* the longest hold */
} sq_check_hold_stats;

/* Fills *out (not NULL).  Never fails or waits (it may briefly block on
 * the checks' lock). */
void sq_check_get_hold_stats(sq_check_hold_stats *out);

/* ------------------------------------------------------- deadlocks */

/* Searches the wait-for graph now: a task or thread trying to take a
 * task-aware lock (sq_mutex, sq_rwlock) waits for the tasks and threads
 * that hold it in a conflicting mode; a cycle is a deadlock.  Each cycle
 * not reported before is reported (SQ_CHECK_DEADLOCK, through the
 * reporter; it aborts if that finding is in abort_on), naming every task
 * or thread in it (name, id, spawn site) and every lock (class, address,
 * where it was taken and where its waiter is trying to take it); a cycle
 * already reported (by an earlier search, the watchdog or a lock wait
 * that timed out) is not reported again while it lasts.  This works
 * whether or not SQ_CHECK_DEADLOCK is switched on, but it only sees locks
 * taken, and waits begun, while the checks were on (any finding):
 * with the checks never switched on it finds nothing.  Not seen: waits
 * for anything but these locks (channels, semaphores, joins have no
 * holder), and a task waiting for a lock it holds itself (the locks are
 * not owner-bound, another task may unlock it).  docs/checks.md says
 * more.  Returns the number of cycles that exist now (reported now or
 * before), -ENOMEM, or -ENOTSUP if built with SQ_CHECKS=0.  Never waits
 * (it blocks briefly on the checks' lock; the reporter runs in the
 * caller). */
int sq_check_deadlocks(void);

/* ------------------------------------------------------ the snapshot */
/* What every task and thread is doing, as plain C structures a program
 * can walk: every task of every runtime with its state, what it waits
 * for, the lock it is trying to take and who holds it, the locks it
 * holds; the plain threads that hold or want locks; the wait-for cycles.
 * The task dump (sq_check_dump) is its text rendering, and its JSON
 * rendering is sq_check_snapshot_json.
 *
 * Locks are known only if taken while the checks were on (any finding);
 * the rest does not need the checks and works even when built with
 * SQ_CHECKS=0 (then it shows no locks).  A snapshot of a moving
 * program: each runtime's task list is copied under that runtime's
 * locks, with one system call per waiting task (a waiter lives on its
 * task's stack, which may vanish: it is copied with a call that fails
 * cleanly), then the copy is matched with the locks under the checks'
 * lock, so each task is read at a slightly different moment.  Everything
 * in it (strings included) is a copy owned by the snapshot: valid until
 * sq_check_snapshot_free, whatever the program does meanwhile.  Addresses
 * (locks, objects, runtimes) are for identification only: what they
 * point to may be gone. */

/* A task's scheduling state. */
enum {
    SQ_CHECK_TASK_QUEUED,   /* runnable, in a run queue (or just woken) */
    SQ_CHECK_TASK_RUNNING,  /* on a worker */
    SQ_CHECK_TASK_PARKED,   /* suspended in a wait */
    SQ_CHECK_TASK_DONE,     /* finished, not yet reaped */
};

/* What a task waits for. */
enum {
    SQ_CHECK_WAIT_NONE,      /* not waiting */
    SQ_CHECK_WAIT_UNKNOWN,   /* waiting, for what could not be read */
    SQ_CHECK_WAIT_OTHER,
    SQ_CHECK_WAIT_MUTEX,     /* object: the sq_mutex */
    SQ_CHECK_WAIT_RWLOCK,    /* object: the sq_rwlock */
    SQ_CHECK_WAIT_SEMAPHORE, /* object: the sq_sem */
    SQ_CHECK_WAIT_NOTIFY,
    SQ_CHECK_WAIT_CHANNEL,   /* oneshot, mpsc, broadcast, watch */
    SQ_CHECK_WAIT_BARRIER,
    SQ_CHECK_WAIT_ONCE,
    SQ_CHECK_WAIT_SLEEP,
    SQ_CHECK_WAIT_IO,        /* object: the sq_io */
    SQ_CHECK_WAIT_JOIN,      /* object: the task joined (see `joined`) */
    SQ_CHECK_WAIT_GROUP,     /* object: the sq_group */
    SQ_CHECK_WAIT_BLOCKING,  /* a blocking-pool job */
};

/* One lock held: a mutex or write lock (exclusive) or one read hold. */
typedef struct sq_check_hold {
    const void *lock;       /* the sq_mutex or sq_rwlock */
    const char *cls;        /* its class */
    bool shared;            /* a read lock */
    const char *site;       /* where it was taken */
    int64_t age_ns;         /* held for, at now_ns */
    const char *holder;     /* "task 'name' #id", "thread <tid>", "finished
                             * tasks" (its task ended holding it) or "a
                             * hand-off in transit" (sq_check_lock_handoff) */
    uint64_t holder_task_id; /* the holding task's id; 0 if not a task */
} sq_check_hold;

/* A lock being taken (its taker is waiting for it, or about to). */
typedef struct sq_check_want {
    const void *lock;
    const char *cls;
    bool shared;            /* a read lock is wanted */
    const char *site;       /* where it is being taken */
    size_t nholders;        /* every hold of it the checks know */
    const sq_check_hold *holders;
} sq_check_want;

typedef struct sq_check_task {
    uint64_t id;
    const char *name;
    int state;              /* SQ_CHECK_TASK_* */
    const char *spawn_site; /* NULL if unknown */
    int wait;               /* SQ_CHECK_WAIT_* */
    const void *wait_object; /* what it waits for, or NULL */
    int64_t waited_ns;      /* since when (at now_ns); -1 if unknown: the
                             * checks were off as the wait began */
    const struct sq_check_task *joined; /* SQ_CHECK_WAIT_JOIN: the task it
                             * joins, if in this snapshot; else NULL */
    const sq_check_want *wants;  /* the lock it is taking, or NULL */
    size_t nholds;
    const sq_check_hold *holds;  /* newest first */
} sq_check_task;

typedef struct sq_check_runtime {
    const sq_runtime *runtime;
    int workers;
    size_t ntasks;
    const sq_check_task *tasks;  /* by id */
} sq_check_runtime;

/* A task or thread known to the checks that is in no runtime's list: a
 * plain thread, or a task that started after its runtime was copied.
 * Only those that hold or want a lock are listed. */
typedef struct sq_check_context {
    const char *name;       /* "thread <tid>" or "task 'name' #id" */
    uint64_t task_id;       /* 0 for a plain thread */
    const char *spawn_site; /* NULL if unknown (always, for a thread) */
    const sq_check_want *wants;
    size_t nholds;
    const sq_check_hold *holds;
} sq_check_context;

/* One step of a wait-for cycle: a task or thread waiting for a lock that
 * the next step's one holds (the last step's lock is held by the
 * first's). */
typedef struct sq_check_cycle_step {
    const char *name;
    uint64_t task_id;       /* 0 for a plain thread */
    const char *spawn_site;
    const void *lock;       /* the lock it waits for */
    const char *cls;
    bool shared;
    const char *site;       /* where it is taking it */
    /* The hold through which the next step holds `lock`; NULL when this
     * step is a reader queued behind the next step, a writer waiting for
     * the same lock (the locks are FIFO). */
    const sq_check_hold *next_holds;
} sq_check_cycle_step;

typedef struct sq_check_cycle {
    size_t nsteps;
    const sq_check_cycle_step *steps;
} sq_check_cycle;

typedef struct sq_check_snapshot {
    long pid;
    int64_t now_ns;          /* sq_now() when the locks were read */
    size_t nruntimes;
    const sq_check_runtime *runtimes;
    size_t nthreads;         /* plain threads holding or wanting locks */
    const sq_check_context *threads;
    size_t nother_tasks;     /* tasks with locks started during the copy */
    const sq_check_context *other_tasks;
    size_t ncycles;          /* as sq_check_deadlocks finds them */
    const sq_check_cycle *cycles;
    /* Holds no live task or thread is charged with: handed off and not
     * yet adopted (sq_check_lock_handoff), or left by finished tasks. */
    size_t nunowned;
    const sq_check_hold *unowned;
    bool complete;           /* false: memory ran out, something is left
                              * out (the rest is exact) */
} sq_check_snapshot;

/* Takes a snapshot into *out (free it with sq_check_snapshot_free).
 * Callable from a task or any thread, with or without runtimes; reports
 * nothing (cycles found are not reported, unlike sq_check_deadlocks).
 * Returns 0 (also when memory ran out part way: then `complete` is
 * false), -EINVAL if out is NULL, -ENOMEM if not even the snapshot could
 * be allocated (*out is then NULL).  Never waits as a task: it holds
 * each runtime's locks, then the checks' lock, for a copy at a time.
 * Not a cancellation point. */
int sq_check_snapshot_take(sq_check_snapshot **out);

/* Frees s (NULL: nothing).  Never fails or waits; not a cancellation
 * point. */
void sq_check_snapshot_free(sq_check_snapshot *s);

/* Renders s as the task dump's text (see sq_check_dump) or JSON into *out
 * (malloc'ed, NUL-terminated: free it).  Pure functions of s: the same
 * snapshot always gives the same text.  Return 0, -EINVAL (s or out
 * NULL), -ENOMEM.  Never wait; not cancellation points. */
int sq_check_snapshot_text(const sq_check_snapshot *s, char **out);
int sq_check_snapshot_json(const sq_check_snapshot *s, char **out);

/* The names the renderings use: "queued", "running", "parked", "done";
 * "none", "unknown", "other", "mutex", "rwlock", "semaphore", "notify",
 * "channel", "barrier", "once", "sleep", "io", "join", "group",
 * "blocking".  "?" for a value out of range.  Never fail or wait; not
 * cancellation points. */
const char *sq_check_task_state_name(int state);
const char *sq_check_wait_kind_name(int wait);

/* ------------------------------------------------------ the task dump */

/* Writes the task dump, a rendering of a snapshot just taken (see
 * sq_check_snapshot_take), to the file descriptor fd.  As text: per
 * runtime, one line per task (id, name, state, what it waits for, for
 * the kind of wait: a mutex, a channel, a sleep, I/O, a join with the
 * task joined, ..., the object's address and for how long), then an
 * indented line per detail (where it was spawned, the lock it is trying
 * to take and who holds it, the locks it holds: class, mode, where and
 * how long ago each was taken); then the plain threads that hold or want
 * task-aware locks, the tasks with locks that started during the copy,
 * and the wait-for cycles (as sq_check_deadlocks finds them, without
 * reporting them), ending with the line "end of the task dump".  Or, if
 * json, as one JSON object (sq_check_snapshot_json):
 *   {"pid", "now_ns", "runtimes": [{"runtime", "workers", "tasks":
 *     [{"id", "name", "state", "spawned_at", "waiting": null | {"kind",
 *       "object" (null if none), "for_ns"?, "task"? (join)},
 *       "wants": null | LOCKWAIT, "holds": [HOLD]}]}],
 *    "threads": [CTX], "other_tasks": [CTX] (tasks that started while the
 *    dump was taken), "cycles": [[{"context", "task_id"?, "spawned_at",
 *     "waits_for": {"lock", "class", "mode", "site",
 *     "queued_behind_writer"}}]], "complete": bool}
 *   HOLD = {"lock", "class", "mode": "exclusive" | "shared", "site",
 *     "age_ns"}; LOCKWAIT = {"lock", "class", "mode", "site", "held_by":
 *     [{"holder", "mode", "site", "age_ns"}]}; CTX = {"name", "task_id"?,
 *     "spawned_at", "wants", "holds"}; addresses are strings "0x...".
 * Works even when built with SQ_CHECKS=0 (an exception to the -ENOTSUP
 * rule above: it then shows no locks).  Returns 0 (also for a snapshot
 * cut short by a lack of memory: the text says so, "complete" is false),
 * -EBADF for a negative fd, -ENOMEM, or the negative errno of write(2).
 * Never waits as a task (no lock is held while the text is written), but
 * write(2) may block the calling thread on a full pipe or a slow file.
 * Not a cancellation point. */
int sq_check_dump(int fd, bool json);

/* The same dump as a string, in *out (malloc'ed: free it).  Returns 0,
 * -EINVAL if out is NULL, -ENOMEM.  Never waits; not a cancellation
 * point. */
int sq_check_dump_string(bool json, char **out);

/* Writes the text dump to fd whenever the process receives signal signo
 * (SIGQUIT is the convention: Ctrl-\ in a terminal, kill -QUIT), instead
 * of what the signal did before (its previous action is saved).  The
 * handler only writes a byte to a pipe; a thread started here (with every
 * signal blocked) takes and writes the dump, so the signal may arrive at
 * any moment, in any thread.  fd must stay open until the handler is
 * given back.  signo 0 gives the signal back (restoring its previous
 * action) and stops the thread, after a dump in progress.  Installing a
 * second signal gives the first back.  Returns 0, -EINVAL (signo out of
 * range, SIGKILL or SIGSTOP), -EBADF (negative fd), or the negative errno
 * of pipe2, pthread_create or sigaction.  Not async-signal-safe; never
 * waits as a task, but signo 0 blocks the calling thread until a dump in
 * progress is written.  The pipe made the first time (two descriptors,
 * close-on-exec) is kept for the life of the process. */
int sq_check_dump_on_signal(int signo, int fd);

#ifdef __cplusplus
}
#endif

#endif
