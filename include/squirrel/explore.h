/* Squirrel check layer: exploring schedules.
 *
 * A race between tasks shows up only under some interleavings.  In
 * deterministic mode (sq_runtime_opts.seed, see squirrel/runtime.h) a seed
 * fixes the interleaving: which runnable task runs next, and whether
 * sq_yield and each lock and unlock of an sq_mutex or sq_rwlock (and each
 * acquire and release of an sq_sem) let another task run first.  sq_explore runs a
 * test body under many seeds, one fresh deterministic runtime per seed,
 * and stops at the first seed under which the body fails; that seed
 * replays the failure, interleaving for interleaving:
 *
 *     static int body(void *arg) { ...spawn tasks, join them...;
 *                                  return counter == N ? 0 : 1; }
 *     uint64_t bad;
 *     if (sq_explore(body, NULL, 1, 500, &bad) != 0) ...fail the test...
 *
 * and, to debug it, SQ_EXPLORE_SEED=<bad> ./test runs that seed alone.
 *
 * What replays: the order in which the body's tasks run, as long as they
 * only interact through Squirrel calls and memory.  What does not:
 * anything that depends on time or the outside world (timers, sleeps and
 * deadlines, I/O readiness, blocking-pool jobs, plain threads), nor
 * anything that differs from run to run anyway (addresses, task ids,
 * uninitialised memory).  A body that sleeps still runs, but its schedule
 * may differ between runs of the same seed.
 */
#ifndef SQUIRREL_EXPLORE_H
#define SQUIRREL_EXPLORE_H

#include <stdint.h>

#include "squirrel/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* sq_explore's result when the body failed under some seed. */
#define SQ_EXPLORE_FAILED 1

/* For each seed first_seed, first_seed + 1, ..., first_seed + nseeds - 1
 * in turn: creates a deterministic runtime with that seed (one worker,
 * default stack size), runs body(arg) as its root task and waits for it,
 * then shuts the runtime down (aborting whatever tasks the body left
 * running) and destroys it.  If the environment variable SQ_EXPLORE_SEED
 * is set to a decimal number N > 0, only seed N runs, whatever
 * first_seed and nseeds say.
 *
 * Returns 0 if body returned 0 under every seed.  At the first seed under
 * which body returns nonzero it stops, prints
 *     sq_explore: failure with seed N (rerun with SQ_EXPLORE_SEED=N)
 * to stderr, stores N in *failing_seed (if not NULL) and returns
 * SQ_EXPLORE_FAILED.  Fails with -EINVAL (body NULL, nseeds < 1,
 * first_seed 0 or a range that passes UINT64_MAX, SQ_EXPLORE_SEED set but
 * not a number > 0, which is also printed), -EPERM if called from a task
 * or worker of any runtime (it blocks the calling thread: call it from a
 * plain thread such as main's), or with what sq_runtime_create or
 * sq_runtime_block_on returned (-ENOMEM, -EAGAIN); *failing_seed is then
 * left alone.  Blocks the calling thread while the bodies run; not a
 * cancellation point.  Safe to call from several threads at once (each
 * call has its own runtimes). */
int sq_explore(int (*body)(void *arg), void *arg, uint64_t first_seed,
               int nseeds, uint64_t *failing_seed);

/* The seed of the deterministic runtime the caller runs in (as a task or
 * worker), or 0 outside a runtime or in a runtime in normal mode.  For a
 * body that wants to log it.  Never fails or waits. */
uint64_t sq_explore_seed(void);

#ifdef __cplusplus
}
#endif

#endif
