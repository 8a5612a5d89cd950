/* Squirrel runtime layer: the blocking pool.
 *
 * Work that blocks the OS thread (file I/O, DNS, SQLite, dlopen) must not
 * run on a worker.  sq_blocking_run hands it to a separate pool of threads
 * (grown on demand up to sq_runtime_opts.blocking_threads_max) and
 * suspends the calling task until it is done.
 */
#ifndef SQUIRREL_BLOCKING_H
#define SQUIRREL_BLOCKING_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Runs fn(arg) on a blocking-pool thread and waits for it; stores its
 * return value in *result (may be NULL).  Returns 0, -ENOMEM, -ESHUTDOWN,
 * -EPERM outside a task.  Cancellation point: on -ECANCELED (or
 * -ETIMEDOUT for the _until form) the job is NOT interrupted: it runs to
 * completion on its thread and its result is discarded, so fn must not use
 * memory the caller frees after giving up.  Jobs run in submission order
 * when threads are short. */
int sq_blocking_run(void *(*fn)(void *), void *arg, void **result);
int sq_blocking_run_until(void *(*fn)(void *), void *arg, void **result,
                          int64_t deadline);

#ifdef __cplusplus
}
#endif

#endif
