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

/* --------------------------------------- deadlocks and the task dump */

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

/* Writes a dump of every task of every runtime to the file descriptor fd:
 * for each task its id, name, state ("queued", "running", "parked",
 * "done"), what it waits for (the kind of wait: a mutex, a channel, a
 * sleep, I/O, a join with the task joined, ..., the object's address and
 * for how long, when the checks were on as it began), the lock it is
 * trying to take and who holds it, the locks it holds (class, mode, where
 * and how long ago each was taken) and where it was spawned; then the
 * plain threads that hold or want task-aware locks, and the wait-for
 * cycles (as sq_check_deadlocks finds them, without reporting them).
 * Locks are known only if taken while the checks were on; the rest of
 * the dump does not need the checks, and works even when built with
 * SQ_CHECKS=0 (an exception to the -ENOTSUP rule above: it then shows no
 * locks).  As text (one line per task, then
 * an indented line per detail, ending with the line "end of the task
 * dump"), or, if json, as one JSON object:
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
 * A snapshot of a moving program: each task is read at a slightly
 * different moment (each runtime's task list is copied under its own
 * locks, with one system call per waiting task, then matched with the
 * locks under the checks' lock).  Callable from a task or any thread,
 * with or without runtimes.  Allocates the text in memory (never holding a lock
 * while writing it out).  Returns 0 (also for a dump cut short by a lack
 * of memory: the text says so, "complete" is false), -EBADF for a
 * negative fd, -ENOMEM, or the negative errno of write(2).  Never waits
 * as a task (its locks are held for a copy at a time), but write(2) may
 * block the calling thread on a full pipe or a slow file. */
int sq_check_dump(int fd, bool json);

/* The same dump as a string, in *out (malloc'ed: free it).  Returns 0,
 * -EINVAL if out is NULL, -ENOMEM.  Never waits. */
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
