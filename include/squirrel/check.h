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
 *  - SQ_CHECK_LONG_HOLD / SQ_CHECK_LONG_WAIT: a lock held, or a wait that
 *    lasted, longer than a threshold.
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
 * Returns 0, or -EINVAL naming nothing (the string is wrong). */
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

#ifdef __cplusplus
}
#endif

#endif
