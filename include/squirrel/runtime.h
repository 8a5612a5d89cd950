/* Squirrel runtime layer: tasks, the scheduler, time, I/O, blocking pool.
 *
 * A task is a stackful coroutine.  Calls that must wait (sleep, join, I/O,
 * the blocking pool, and every sync primitive) suspend the task and let the
 * worker thread run other tasks; they never block the thread.
 *
 * Conventions for every function in this layer:
 *  - Return 0 or a non-negative value on success, a negative errno code on
 *    failure (see squirrel/error.h).
 *  - Time is in nanoseconds.  A deadline is an absolute time on the
 *    sq_now() clock (CLOCK_MONOTONIC); SQ_FOREVER means no deadline.
 *  - "Cancellation point" means: if the calling task has been aborted (and
 *    has not masked cancellation), the call returns -ECANCELED, either at
 *    once or as soon as it would otherwise wait.  Cancellation is sticky:
 *    every later cancellation point of that task also returns -ECANCELED,
 *    so cleanup code that must wait should mask cancellation first.
 *  - "Cancel safety" says what a call has or has not done when it returns
 *    -ECANCELED or -ETIMEDOUT.
 */
#ifndef SQUIRREL_RUNTIME_H
#define SQUIRREL_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squirrel/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "file:line" where the macro is expanded, as a string literal: how the
 * run-time checks and the task dump (squirrel/check.h) name the place a
 * task was spawned or a lock initialised or taken.  The spawn and lock
 * calls are macros that pass it along; each also exists as a plain
 * function (write its name in parentheses to take its address), which
 * records no site. */
#define SQ__STR2(x) #x
#define SQ__STR(x) SQ__STR2(x)
#define SQ_SITE __FILE__ ":" SQ__STR(__LINE__)

/* ---------------------------------------------------------------- time */

#define SQ_NSEC ((int64_t)1)
#define SQ_USEC ((int64_t)1000)
#define SQ_MSEC ((int64_t)1000000)
#define SQ_SEC ((int64_t)1000000000)
#define SQ_FOREVER INT64_MAX

/* Current time on the monotonic clock, in ns.  Never fails or waits. */
int64_t sq_now(void);

/* Computes the deadline `timeout_ns` from now into *out.  Returns -EINVAL
 * for a negative timeout, -EOVERFLOW if now + timeout does not fit (use
 * SQ_FOREVER for "no deadline").  Never waits. */
int sq_deadline_in(int64_t timeout_ns, int64_t *out);

/* ----------------------------------------------------------- runtime */

typedef struct sq_runtime sq_runtime;

typedef struct sq_runtime_opts {
    int workers;               /* worker threads; 0 = one per online CPU */
    size_t stack_size;         /* default task stack; 0 = SQ_STACK_DEFAULT */
    int blocking_threads_max;  /* blocking-pool threads; 0 = 64 */
    uint64_t seed;             /* nonzero: deterministic mode (one worker) */
} sq_runtime_opts;

/* Deterministic mode (seed != 0), a testing aid.  The runtime has one
 * worker (`workers` must be 0 or 1), and every scheduling choice is drawn
 * from a generator seeded with `seed`: which runnable task runs next
 * (spawned, woken or yielded alike), and, at sq_yield and at each lock and
 * unlock of an sq_mutex or sq_rwlock and each acquire and release of an
 * sq_sem, whether the caller goes on or another runnable task runs
 * first.  So tasks that
 * only interact through Squirrel calls run the same interleaving every
 * time they run with the same seed, and a race found under one seed is
 * replayed by it (squirrel/explore.h runs a body under many seeds).
 * Only the interleaving of runnable tasks is deterministic.  Whatever
 * depends on time or on the world outside the runtime is not: when timers
 * fire (sleeps, deadlines), when I/O is ready, when blocking-pool jobs
 * finish, wake-ups and spawns from plain threads.  These still work as
 * usual: the scheduler polls timers and I/O every 61st pick and waits for
 * them when nothing is runnable; it never spins and never steals.  The
 * cost for runtimes in normal mode is one predictable branch per lock
 * operation while some deterministic runtime exists, and none otherwise. */

/* Default and minimum task stack sizes (bytes, excluding the guard below
 * the stack).  A request is rounded up to a power of two; the top 40 bytes
 * of that hold the stack's own descriptor.  Stacks are reserved, not
 * committed: an idle task costs the pages it has touched, typically one.
 * How stacks are guarded and laid out: docs/runtime.md, Stacks. */
#define SQ_STACK_DEFAULT ((size_t)256 * 1024)
#define SQ_STACK_MIN ((size_t)16 * 1024)

/* Creates a runtime and starts its worker threads.  opts may be NULL.
 * Fails with -EINVAL (negative worker count, stack below SQ_STACK_MIN, a
 * seed with more than one worker), -ENOMEM, or -EAGAIN (threads could not
 * be created).  Does not wait. */
int sq_runtime_create(sq_runtime **out, const sq_runtime_opts *opts);

typedef void *(*sq_task_fn)(void *arg);

/* Runs fn(arg) as a task of rt and waits, blocking the calling OS thread,
 * until it returns; stores its return value in *result (may be NULL).
 * Must be called from a thread that is not one of rt's workers (-EPERM).
 * Returns -ESHUTDOWN if rt is shutting down, -ECANCELED if the root task
 * was aborted before it could run.  Other tasks keep running after it
 * returns. */
int sq_runtime_block_on(sq_runtime *rt, sq_task_fn fn, void *arg,
                        void **result);

/* Shuts rt down: new spawns fail with -ESHUTDOWN, every remaining task is
 * aborted (its waiting call returns -ECANCELED, or it is dropped without
 * running if it never started), and the call waits, blocking the calling
 * thread, until every task has finished and every stack is freed; then the
 * workers and blocking-pool threads stop.  A task that ignores -ECANCELED
 * and keeps waiting delays shutdown; a blocking-pool job in progress is
 * waited for.  Must not be called from a task of rt (-EPERM).  Calling it
 * twice is harmless. */
int sq_runtime_shutdown(sq_runtime *rt);

/* Shuts rt down (if not done) and frees it.  rt must not be used after. */
void sq_runtime_destroy(sq_runtime *rt);

/* Convenience for main(): create a runtime with opts (may be NULL), run
 * fn(arg) as the root task, shut down, destroy.  Returns what
 * sq_runtime_create or sq_runtime_block_on returned. */
int sq_run(sq_task_fn fn, void *arg, const sq_runtime_opts *opts,
           void **result);

/* The runtime the calling thread belongs to (as a task or worker), or
 * NULL.  Never fails or waits. */
sq_runtime *sq_runtime_current(void);

/* Figures of one runtime, summed over its workers.  Counters only rise;
 * tasks_alive is a level.  Each worker counts into its own cache line, so
 * keeping them costs the scheduler no shared writes. */
typedef struct sq_runtime_stats {
    unsigned workers;        /* worker threads */
    uint64_t tasks_spawned;  /* tasks created since the runtime started */
    uint64_t tasks_alive;    /* spawned, stack not yet given back (a task
                              * just joined may count a moment longer) */
    uint64_t switches;       /* times a worker resumed a task */
    uint64_t steals;         /* tasks taken from another worker's queue */
    uint64_t parks;          /* times a worker went to sleep for lack of work */
    uint64_t io_handles;     /* sockets and pipes registered with the reactor */
} sq_runtime_stats;

/* Fills *out with rt's figures (rt NULL: the calling thread's runtime).
 * The fields are read one by one without stopping the workers, so they
 * are each exact but not one atomic snapshot.  Fails with -EINVAL when
 * out is NULL or there is no runtime.  Never waits; safe from any thread
 * while rt exists. */
int sq_runtime_stats_get(sq_runtime *rt, sq_runtime_stats *out);

/* -------------------------------------------------------------- tasks */

/* A join handle.  Copyable value; at most one of sq_join (successful),
 * sq_detach may consume it, after which every use returns -EINVAL. */
typedef struct sq_task {
    struct sq__task *p;
    uint64_t id;
} sq_task;

typedef struct sq_spawn_opts {
    size_t stack_size;   /* 0 = the runtime's default; >= SQ_STACK_MIN */
    const char *name;    /* copied (first 31 bytes); NULL = "task" */
} sq_spawn_opts;

/* Spawns fn(arg) as a new task on the current runtime (the caller must be
 * a task or worker of a runtime, else -EPERM).  If out is NULL the task is
 * detached.  Returns -ESHUTDOWN if the runtime is shutting down, -EINVAL
 * for a stack below SQ_STACK_MIN, -ENOMEM.  Never waits; the new task runs
 * later, on any worker.  The stack is allocated when the task first runs;
 * if that fails the task finishes without running and its join returns
 * -ENOMEM. */
int(sq_spawn)(sq_task *out, sq_task_fn fn, void *arg,
              const sq_spawn_opts *opts);

/* As sq_spawn, into rt, callable from any thread (inside rt or not). */
int(sq_runtime_spawn)(sq_runtime *rt, sq_task *out, sq_task_fn fn, void *arg,
                      const sq_spawn_opts *opts);

/* The same, recording `site` (a string that outlives the task, normally
 * SQ_SITE) as the place of the spawn, for the task dump; the results,
 * and never waiting, are those of sq_spawn and sq_runtime_spawn. */
int sq_spawn_at(sq_task *out, sq_task_fn fn, void *arg,
                const sq_spawn_opts *opts, const char *site);
int sq_runtime_spawn_at(sq_runtime *rt, sq_task *out, sq_task_fn fn,
                        void *arg, const sq_spawn_opts *opts,
                        const char *site);
#define sq_spawn(out, fn, arg, opts) \
    sq_spawn_at((out), (fn), (arg), (opts), SQ_SITE)
#define sq_runtime_spawn(rt, out, fn, arg, opts) \
    sq_runtime_spawn_at((rt), (out), (fn), (arg), (opts), SQ_SITE)

/* Waits until task t finishes and stores its return value in *result (may
 * be NULL), consuming the handle.  What the join reports for t:
 *  - 0, *result = what t returned: t ran and returned, and no abort ever
 *    reached it, including an sq_abort that came while it ran but that
 *    none of its cancellation points (nor sq_cancelled) ever reported to
 *    it, or that came after its function had returned;
 *  - -ECANCELED, *result = what t returned: t was aborted and the abort
 *    reached it while it ran: a cancellation point of t stopped waiting
 *    because of it (that call returned -ECANCELED, or, in the rare race
 *    where what it waited for arrived at the same instant, 0), or
 *    sq_cancelled() returned true in t.  Masked cancellation points do
 *    not count (they do not stop);
 *  - -ECANCELED, *result = NULL: t was aborted before it started and
 *    never ran;
 *  - -ENOMEM, *result = NULL: t could not get a stack and never ran.
 * The handle is consumed in all four cases.  Errors that leave it alone:
 * -EINVAL for a consumed, detached or foreign handle, or when another
 * joiner is already waiting on t; -EDEADLK for joining oneself.
 * Cancellation point for the caller: on -ECANCELED *because the caller was
 * aborted* the handle is NOT consumed (check sq_cancelled()); a t that
 * has already finished is joined even then.  Works from plain threads too
 * (blocks the thread). */
int sq_join(sq_task t, void **result);

/* As sq_join, but gives up at `deadline` with -ETIMEDOUT, leaving the
 * handle usable.  A negative deadline is -EINVAL. */
int sq_join_until(sq_task t, void **result, int64_t deadline);

/* Releases the handle: the task runs on and its resources are freed when
 * it finishes.  -EINVAL for a consumed handle.  Never waits. */
int sq_detach(sq_task t);

/* Requests cancellation of t: its current or next cancellation point
 * returns -ECANCELED; if it never started it will not run.  Does not wait
 * for t to finish (join for that) and does not consume the handle.
 * Aborting a finished task is harmless (returns 0).  -EINVAL for a
 * consumed handle.  Safe from any thread. */
int sq_abort(sq_task t);

/* Lets other runnable tasks run, then continues.  Cancellation point: it
 * still yields, then returns -ECANCELED if the caller is aborted.  Outside
 * a task it yields the thread (sched_yield). */
int sq_yield(void);

/* Suspends the calling task for `ns` nanoseconds (>= 0; -EINVAL otherwise,
 * -EOVERFLOW if the deadline does not fit).  Never returns early; lateness
 * is bounded as docs/runtime.md says.  Cancellation point (-ECANCELED, the
 * time slept so far is lost).  Outside a task it blocks the thread. */
int sq_sleep(int64_t ns);

/* Suspends until sq_now() >= deadline.  -EINVAL for a negative deadline.
 * Same cancellation behaviour as sq_sleep. */
int sq_sleep_until(int64_t deadline);

/* Id of the calling task (unique for the process lifetime, never 0), or 0
 * outside a task. */
uint64_t sq_task_id(void);

/* Name of the calling task (valid while it runs), or NULL outside a task. */
const char *sq_task_name(void);

/* True if the calling task has been aborted (whether or not masked).
 * Asking counts as being told: once it has returned true, sq_join on the
 * task reports -ECANCELED. */
bool sq_cancelled(void);

/* Masks cancellation for the calling task (nestable): cancellation points
 * behave as if the task had not been aborted until the matching
 * sq_cancel_unmask().  Used to protect cleanup that must wait.  Returns
 * -EPERM outside a task; sq_cancel_unmask returns -EINVAL if not masked. */
int sq_cancel_mask(void);
int sq_cancel_unmask(void);

/* ------------------------------------------------ task groups (join set) */

typedef struct sq_group sq_group;

/* Creates an empty group bound to the current runtime (-EPERM outside a
 * runtime thread, -ENOMEM).  Never waits. */
int sq_group_create(sq_group **out);

/* Creates an empty group bound to rt, from any thread (a task of rt or
 * of another runtime, or a plain thread).  Returns 0, -EINVAL (rt or out
 * NULL) or -ENOMEM.  Never waits.  Every sq_group_* call on the group
 * works from any thread as well (waits block a plain thread); members are
 * spawned into rt (-ESHUTDOWN once it is shutting down).  The group must
 * be destroyed before rt is: its unreaped members live in rt. */
int sq_group_create_in(sq_runtime *rt, sq_group **out);

/* Spawns fn(arg) into g; the group owns its handle.  *id_out (may be NULL)
 * receives the task id.  Errors as sq_spawn, plus -EINVAL if g is being
 * destroyed.  Never waits. */
int(sq_group_spawn)(sq_group *g, sq_task_fn fn, void *arg,
                    const sq_spawn_opts *opts, uint64_t *id_out);
/* The same, recording `site` as the place of the spawn (see SQ_SITE);
 * results as sq_group_spawn.  Never waits. */
int sq_group_spawn_at(sq_group *g, sq_task_fn fn, void *arg,
                      const sq_spawn_opts *opts, uint64_t *id_out,
                      const char *site);
#define sq_group_spawn(g, fn, arg, opts, id_out) \
    sq_group_spawn_at((g), (fn), (arg), (opts), (id_out), SQ_SITE)

/* Waits for the next member to finish (in completion order) and reaps
 * it.  Returns 0 when a member was reaped: its id goes to *id_out, its
 * result to *result and its status to *status_out (each may be NULL);
 * the status is what sq_join would have returned for it (0, -ECANCELED,
 * -ENOMEM: see sq_join).  Otherwise nothing is reaped and nothing is
 * stored: -ENOENT if the group has no members, -ETIMEDOUT at the deadline
 * (the _until form), -EBUSY if another task or thread is already waiting
 * on the group (one at a time), -EINVAL (g NULL, negative deadline), or
 * -ECANCELED: always the caller's own abort, never a member's.
 * Cancellation point. */
int sq_group_reap(sq_group *g, uint64_t *id_out, void **result,
                  int *status_out);
int sq_group_reap_until(sq_group *g, uint64_t *id_out, void **result,
                        int *status_out, int64_t deadline);

/* As sq_group_reap, but returns the reaped member's status instead of 0
 * (0, -ECANCELED or -ENOMEM, as sq_join would).  So -ECANCELED is either
 * a member that was cancelled (it is reaped) or the caller's own abort
 * (nothing reaped).  They are told apart by *id_out, which is written
 * (never 0) exactly when a member was reaped; or call sq_group_reap. */
int sq_group_next(sq_group *g, uint64_t *id_out, void **result);
int sq_group_next_until(sq_group *g, uint64_t *id_out, void **result,
                        int64_t deadline);

/* Number of members not yet reaped.  Never waits. */
size_t sq_group_size(sq_group *g);

/* Aborts every current member.  Never waits. */
void sq_group_cancel_all(sq_group *g);

/* Waits for every member to finish and reaps them all, dropping their
 * results and statuses.  Returns 0; -ECANCELED if the caller is aborted
 * (never for a cancelled member; members not yet reaped stay in the
 * group); -EBUSY if another task or thread waits on g.  Cancellation
 * point (not while the caller masks cancellation). */
int sq_group_wait_all(sq_group *g);

/* Aborts and reaps every remaining member, then frees g.  Waits for the
 * members to finish (masking the caller's own cancellation while it does,
 * so nothing leaks).  g must not be used after. */
void sq_group_destroy(sq_group *g);

#ifdef __cplusplus
}
#endif

#include "squirrel/io.h"
#include "squirrel/blocking.h"

#endif
