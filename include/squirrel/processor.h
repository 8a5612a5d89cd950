/* Squirrel patterns layer: the task processor.  Runs N jobs, at most K at
 * once, each as its own task; fail-fast.
 *
 * A job is a function of its index (0 .. N-1) and one user argument shared
 * by all jobs.  It returns 0 (or any non-negative value) on success, with
 * its result in *result, or a negative error code on failure.  A job runs
 * as a task: it may wait (sleep, lock, I/O, channels...) without blocking
 * a worker thread, and it should treat -ECANCELED from a waiting call as
 * "stop now" and return (any negative code will do).
 *
 * Two forms:
 *  - sq_process (batch): runs every job and fills results[] in input
 *    order; returns 0, or the first failure and which job it was.
 *  - sq_processor_create / sq_processor_next (streaming): hands each
 *    outcome over as its job finishes, in completion order.
 *
 * The rules both forms follow (docs/patterns/processor.md):
 *  - Bounded concurrency with a semaphore: a job is admitted by taking one
 *    of K permits and holds it until its outcome has been taken off the
 *    processor, so at most K job tasks exist at a time, and at most K
 *    finished outcomes wait to be handed over.  Jobs are admitted in index
 *    order, only by the calls of the caller (create, next, sq_process), so
 *    a streaming consumer that stops calling next stops new jobs from
 *    starting (backpressure, bounded memory).
 *  - Fail-fast: the first failure (the first failed job taken off the
 *    processor, in completion order) stops the run: every job in flight
 *    is aborted (sq_abort: its current or next waiting call returns
 *    -ECANCELED), and no job not yet started is ever called.  A job that
 *    was already running is "in flight" even if it had not waited yet;
 *    whatever it returns after the stop is not a new failure.
 *  - A job that cannot be started (its task or stack could not be
 *    allocated, the runtime is shutting down) fails with that code
 *    (-ENOMEM, -ESHUTDOWN, -EAGAIN), like a job returning it.
 *  - Cancellation of the caller (the task running sq_process or waiting in
 *    sq_processor_next is aborted) cancels every job in the same way.
 *  - No lock is held by the processor across any wait, and no worker
 *    thread is ever blocked: waiting for jobs suspends the calling task.
 *  - No leaked tasks: when sq_process or sq_processor_destroy returns,
 *    every job task has finished and has been reaped.
 *
 * Where it may be called from.  From a task of a runtime (the usual case):
 * the jobs run on that runtime.  From a plain thread (not a runtime worker)
 * when opts->runtime names the runtime to run the jobs on: waiting then
 * blocks the thread.  From a task of another runtime than opts->runtime:
 * not supported (-EINVAL).
 *
 * Allocation: a processor allocates itself, one small slot per concurrent
 * job (K, or N if smaller) and a task group (sq_group); each job is a task
 * (sq_group_spawn).  The batch form allocates one processor per call.
 */
#ifndef SQUIRREL_PROCESSOR_H
#define SQUIRREL_PROCESSOR_H

#include <stddef.h>
#include <stdint.h>

#include "squirrel/runtime.h"
#include "squirrel/sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A job: computes job `index` (0 .. N-1) with the shared `arg`.  Returns
 * >= 0 on success with its result stored in *result (which is NULL on
 * entry; leaving it NULL is fine), or a negative error code.  On failure
 * the processor ignores *result: a failing job frees what it allocated. */
typedef int (*sq_job_fn)(size_t index, void *arg, void **result);

/* Given the result of a job that succeeded but whose result was never
 * handed over (see sq_processor_opts.discard), with the job's index and
 * the shared arg. */
typedef void (*sq_job_discard_fn)(size_t index, void *result, void *arg);

/* "No job": the failed index when no job failed. */
#define SQ_JOB_NONE SIZE_MAX

typedef struct sq_processor_opts {
    /* The runtime the jobs run on.  NULL: the caller's (the caller must
     * then be a task or worker of a runtime).  Required from a plain
     * thread; from a task it must be that task's runtime. */
    sq_runtime *runtime;
    /* Options for the job tasks (stack size, name), copied; the name
     * string must outlive the processor.  NULL: the runtime's default
     * stack and the name "sq-job". */
    const sq_spawn_opts *spawn;
    /* Streaming form only: called (by the consumer, in sq_processor_next
     * or sq_processor_destroy, never concurrently) with each result of a
     * job that succeeded but is not handed over because the run was
     * stopped first (a failure, sq_processor_cancel, the consumer's
     * cancellation, destroy).  So every successful result is either
     * handed over by sq_processor_next or given to `discard`, exactly
     * once.  NULL: such results are dropped (results that own memory then
     * leak).  The batch form keeps every successful result in results[]
     * instead, and ignores this. */
    sq_job_discard_fn discard;
} sq_processor_opts;

/* What a batch run did (sq_process fills it when given). */
typedef struct sq_process_report {
    size_t failed_index;  /* the job whose failure is returned, or
                             SQ_JOB_NONE (success, or not a job's error) */
    size_t succeeded;     /* jobs that returned success (results[] set) */
    size_t cancelled;     /* jobs that started and then failed after the
                             run was stopped (most saw -ECANCELED) */
    size_t not_started;   /* jobs whose function was never called */
} sq_process_report;

/* ------------------------------------------------------------- batch */

/* Runs jobs 0 .. n-1 with at most k (>= 1) at once and waits for them.
 * results (n entries, may be NULL if the results are not wanted) is set
 * first to all NULL; then results[i] receives the result of job i if job
 * i succeeded, and stays NULL if it failed, was cancelled or never
 * started.  So on any return, the non-NULL entries are exactly the
 * results of jobs that succeeded (also those that finished successfully
 * after a failure), and they are the caller's.
 *
 * Returns 0 when every job succeeded.  Otherwise:
 *  - the first failure's code (a job's negative return, or why it could
 *    not be started); report->failed_index names the job;
 *  - -ECANCELED if the calling task was aborted before any job failed
 *    (failed_index SQ_JOB_NONE);
 *  - -EINVAL (fn NULL, k == 0, n > 0 with opts->runtime not the caller's
 *    runtime), -EPERM (a plain thread without opts->runtime), -ENOMEM:
 *    nothing was run.  A runtime that is shutting down is the first
 *    case: job 0 could not be started (-ESHUTDOWN, failed_index 0), and
 *    nothing was run.
 * report (may be NULL) is filled in every case (all zero / SQ_JOB_NONE
 * when nothing was run); succeeded + cancelled + not_started, plus one if
 * failed_index names a job, equals n.  n == 0 returns 0 at once.
 *
 * Waits (suspends the task; blocks a plain thread) until every job task
 * has finished and been reaped, also after a failure or a cancellation:
 * a job that ignores -ECANCELED and goes on waiting delays the return.
 * Cancellation point: if the caller is aborted while it waits, every job
 * is cancelled as on a failure, the remaining ones are reaped with the
 * caller's cancellation masked, and -ECANCELED is returned; results[]
 * holds what succeeded before, as above.  Nothing leaks. */
int sq_process(size_t n, size_t k, sq_job_fn fn, void *arg, void **results,
               const sq_processor_opts *opts, sq_process_report *report);

/* --------------------------------------------------------- streaming */

typedef struct sq_processor sq_processor;

/* One outcome handed over by sq_processor_next. */
typedef struct sq_job_outcome {
    size_t index;  /* the job */
    int status;    /* 0: it succeeded; < 0: the run's first failure */
    void *result;  /* its result if status == 0, else NULL */
} sq_job_outcome;

/* Creates a processor for jobs 0 .. n-1, at most k (>= 1) at once, and
 * starts the first min(k, n) of them.  Returns 0 with *out set, -EINVAL
 * (out or fn NULL, k == 0, opts->runtime not the caller's runtime),
 * -EPERM (a plain thread without opts->runtime), -ENOMEM.  Never waits,
 * from a task or a plain thread alike (the jobs' group is created bound
 * to the runtime: sq_group_create_in).  A job that cannot be spawned here
 * (-ESHUTDOWN once the runtime is shutting down, -ENOMEM) is reported by
 * the first sq_processor_next as its failure. */
int sq_processor_create(sq_processor **out, size_t n, size_t k,
                        sq_job_fn fn, void *arg,
                        const sq_processor_opts *opts);

/* Waits for the next job to finish and hands its outcome over in *out,
 * then starts the next job(s) (in index order) to keep min(k, remaining)
 * admitted.  Outcomes come in completion order; every job that succeeds
 * before the run is stopped is handed over exactly once.
 *
 * Returns 0 with *out filled:
 *  - out->status == 0: job out->index succeeded with out->result (now the
 *    caller's);
 *  - out->status < 0: job out->index is the run's first failure (its
 *    code).  The run is then stopped (see the header comment), and the
 *    next calls reap the cancelled jobs (results of any that succeeded go
 *    to opts->discard) and then return -EPIPE.
 * Or, with *out untouched:
 *  - -EPIPE: the run is over, every job has been reaped (after all
 *    succeeded and were handed over, or after the failure); repeats;
 *  - -ECANCELED: the run was cancelled by sq_processor_cancel (returned
 *    once every job is reaped; repeats), or the calling task is aborted:
 *    then every job is cancelled too, the stream is over and repeats
 *    -ECANCELED without waiting, and sq_processor_destroy reaps the jobs;
 *  - -ETIMEDOUT (the _until form): nothing changed; call again;
 *  - -EINVAL: p or out NULL, negative deadline, a caller that is a task
 *    of another runtime than the jobs';
 *  - -EBUSY: another call on p is in progress (one consumer at a time).
 * Waits (suspends a task, blocks a plain thread) while no job has
 * finished.  Cancel safety: on -ETIMEDOUT nothing was taken (the outcome
 * stays for the next call); on -ECANCELED from the caller's abort nothing
 * was taken either, and undelivered results go to opts->discard. */
int sq_processor_next(sq_processor *p, sq_job_outcome *out);

/* As sq_processor_next, giving up at `deadline` (absolute, sq_now()
 * clock) with -ETIMEDOUT.  An outcome that is ready is returned even if
 * the deadline has passed. */
int sq_processor_next_until(sq_processor *p, sq_job_outcome *out,
                            int64_t deadline);

/* Stops the run, unless it is already stopped: every job in flight is
 * aborted (its waiting calls return -ECANCELED), none not started is ever
 * called, and outcomes not yet handed over are no longer delivered (their
 * results go to opts->discard as they are reaped).  The next calls to
 * sq_processor_next reap the jobs and then return -ECANCELED (-EPIPE if
 * the run had already stopped on a failure, or had ended).  Never
 * waits; safe from any task or thread while p exists, also while the
 * consumer waits in sq_processor_next.  Idempotent. */
void sq_processor_cancel(sq_processor *p);

/* Cancels the run (as sq_processor_cancel), waits until every job task has
 * finished and reaps them (giving undelivered results to opts->discard),
 * then frees p.  Masks the caller's cancellation while it waits, so an
 * aborted caller leaks nothing (a job that ignores -ECANCELED delays it).
 * Must not run concurrently with another call on p, nor from a task of
 * another runtime than the jobs'.  p may be NULL. */
void sq_processor_destroy(sq_processor *p);

#ifdef __cplusplus
}
#endif

#endif
