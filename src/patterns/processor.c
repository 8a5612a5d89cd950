/* The task processor: N jobs, at most K at once, fail-fast.
 *
 * Pieces.  The jobs are members of one task group (sq_group), which reaps
 * finished tasks in completion order: that is the streaming order, and the
 * only place the consumer ever waits.  A semaphore of K permits bounds the
 * run: the consumer takes a permit (try_acquire: it never waits for one)
 * before it spawns a job and gives it back when it has reaped that job, so
 * at most K members exist.  Each admitted job borrows one of K slots,
 * where its task writes what it did (ran or not, status, result); the task
 * returns the slot as its result, so reaping names the slot.
 *
 * Who does what.  Only the consumer (the caller of create, next, destroy,
 * sq_process: one at a time, enforced by `busy`) admits, reaps and touches
 * the slot free list and the counters: no lock is needed for them.  A job
 * task reads `stop` (atomic) and writes only its own slot, before it
 * returns; the group's lock orders that write before the consumer's read.
 * sq_processor_cancel, from anywhere, only sets `stop` and aborts the
 * members (the group's own lock).
 *
 * Stopping.  `stop` goes from RUN to one reason, once (CAS).  A job task
 * that starts after it is set returns at once without calling the job, and
 * every member present when it is set is aborted (sq_group_cancel_all).
 * A member spawned concurrently with a stop is covered by one of the two:
 * if its spawn took the group lock after cancel_all did, the store of
 * `stop` happened before its spawn, hence before its start.
 *
 * Why a task that was never run is looked up by id: a member aborted
 * before it ran (or whose stack could not be had) finishes with a NULL
 * result, so its slot is unknown.  After a stop that does not matter (no
 * more admissions, the slot is simply not reused); before a stop (out of
 * memory, runtime shutdown) it is rare, and a linear search of K slots by
 * task id finds which job could not start.
 */
#include "squirrel/processor.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

enum stop_reason {
    RUN = 0,
    STOP_FAILED,    /* a job failed (or could not be started) */
    STOP_CANCELLED, /* sq_processor_cancel or destroy */
    STOP_ABORTED,   /* the consumer task was aborted */
};

typedef struct slot {
    struct sq_processor *p;
    size_t index;      /* the job (consumer-written before the spawn) */
    uint64_t id;       /* its task id (consumer) */
    struct slot *next; /* free list (consumer) */
    bool in_use;       /* admitted, not yet reaped (consumer) */
    /* written by the job task before it returns */
    bool ran;          /* the job function was called */
    int status;        /* its return value, normalised: 0 or < 0 */
    void *result;      /* its result when status == 0 */
} slot;

struct sq_processor {
    sq_runtime *rt;        /* where the jobs run */
    sq_group *group;
    sq_job_fn fn;
    void *arg;
    sq_job_discard_fn discard;
    void **results;        /* batch form: every success lands here */
    sq_spawn_opts spawn;
    size_t n;              /* jobs */
    size_t k;              /* concurrency, min(k, n) */
    size_t next;           /* next index to admit */
    sq_sem permits;        /* k permits; one per admitted, unreaped job */
    slot *slots, *free;
    atomic_int stop;       /* enum stop_reason */
    atomic_flag busy;      /* a consumer call is in progress */
    bool ended;            /* the stream is over: end_code repeats */
    int end_code;
    bool pending;          /* a failure to hand over before waiting */
    sq_job_outcome pending_out;
    size_t failed_index;   /* SQ_JOB_NONE, or the first failure */
    size_t succeeded, cancelled, not_started;
};

/* ------------------------------------------------------------ the job */

static void *job_main(void *arg)
{
    slot *s = arg;
    sq_processor *p = s->p;
    /* A job not started before the stop is never called; neither is one
     * whose own task was already aborted (it would only see -ECANCELED). */
    if (atomic_load_explicit(&p->stop, memory_order_acquire) != RUN ||
        sq_cancelled()) {
        s->ran = false;
        return s;
    }
    s->ran = true;
    void *res = NULL;
    int rc = p->fn(s->index, p->arg, &res);
    s->status = rc < 0 ? rc : 0;
    s->result = rc < 0 ? NULL : res;
    return s;
}

/* ------------------------------------------------------- the consumer */

/* Stops the run for `why` if it is still running; true if this call did.
 * Never waits. */
static bool stop_run(sq_processor *p, int why)
{
    int expect = RUN;
    if (!atomic_compare_exchange_strong_explicit(&p->stop, &expect, why,
                                                 memory_order_acq_rel,
                                                 memory_order_acquire))
        return false;
    sq_group_cancel_all(p->group);
    return true;
}

static bool stopped(sq_processor *p)
{
    return atomic_load_explicit(&p->stop, memory_order_acquire) != RUN;
}

/* Records job `index` failing with `status` as the first failure if the
 * run is still going: the failure is then handed over by the next
 * sq_processor_next (before it waits).  Otherwise it is one more job
 * cancelled by the stop. */
static void job_failed(sq_processor *p, size_t index, int status, bool ran)
{
    if (stop_run(p, STOP_FAILED)) {
        p->failed_index = index;
        p->pending = true;
        p->pending_out = (sq_job_outcome){index, status, NULL};
    } else if (ran) {
        p->cancelled++;
    } else {
        p->not_started++;
    }
}

static void put_slot(sq_processor *p, slot *s)
{
    s->in_use = false;
    s->next = p->free;
    p->free = s;
}

/* A job is over: its slot and its permit come back together, so a permit
 * available always has a free slot to go with it. */
static void retire(sq_processor *p, slot *s)
{
    put_slot(p, s);
    sq_sem_release(&p->permits, 1);
}

/* Starts jobs in index order while permits last and the run goes on.  A
 * spawn that fails is the failure of that job.  Never waits. */
static void admit(sq_processor *p)
{
    while (p->next < p->n && !stopped(p)) {
        if (sq_sem_try_acquire(&p->permits, 1) != 0)
            return; /* k jobs admitted and not yet reaped */
        slot *s = p->free;
        p->free = s->next;
        s->in_use = true;
        s->index = p->next++;
        s->ran = false;
        s->status = 0;
        s->result = NULL;
        int rc = sq_group_spawn(p->group, job_main, s, &p->spawn, &s->id);
        if (rc != 0) {
            size_t index = s->index;
            retire(p, s);
            job_failed(p, index, rc, false);
            return;
        }
    }
}

/* A success that is not handed over: the batch keeps it, the stream gives
 * it to discard. */
static void keep_or_discard(sq_processor *p, size_t index, void *result)
{
    if (p->results)
        return; /* already stored by reap_one */
    if (p->discard)
        p->discard(index, result, p->arg);
}

static slot *find_slot(sq_processor *p, uint64_t id)
{
    for (size_t i = 0; i < p->k; i++)
        if (p->slots[i].in_use && p->slots[i].id == id)
            return &p->slots[i];
    return NULL;
}

/* Reaps one finished job (waiting until `deadline`) and accounts for it.
 * Returns 1 with *out set if it is a success to hand over; 0 if it was
 * reaped but there is nothing to hand over (a failure is left pending);
 * -ENOENT if no job is left, -ETIMEDOUT, or -ECANCELED if the caller is
 * aborted (nothing reaped in those three cases). */
static int reap_one(sq_processor *p, sq_job_outcome *out, int64_t deadline)
{
    uint64_t id = 0;
    void *res = NULL;
    int task_status = 0;
    int rc = sq_group_reap_until(p->group, &id, &res, &task_status, deadline);
    if (rc)
        return rc; /* the caller's own: nothing reaped */
    slot *s = res;
    if (!s) {
        /* Finished without running: aborted, or no stack (task_status
         * says which).
         * After a stop nothing is admitted any more: the slot and its
         * permit are simply not given back. */
        if (stopped(p)) {
            p->not_started++;
            return 0;
        }
        s = find_slot(p, id);
        size_t index = s ? s->index : SQ_JOB_NONE;
        if (s)
            retire(p, s);
        job_failed(p, index, task_status < 0 ? task_status : -ECANCELED,
                   false);
        return 0;
    }
    size_t index = s->index;
    bool ran = s->ran;
    int status = s->status;
    void *result = s->result;
    retire(p, s);
    if (!ran) {
        if (stopped(p)) {
            p->not_started++;
            return 0;
        }
        /* Its own task was aborted by someone else (runtime shutdown). */
        job_failed(p, index, -ECANCELED, false);
        return 0;
    }
    if (status < 0) {
        job_failed(p, index, status, true);
        return 0;
    }
    p->succeeded++;
    if (p->results)
        p->results[index] = result;
    if (stopped(p)) {
        keep_or_discard(p, index, result);
        return 0;
    }
    *out = (sq_job_outcome){index, 0, result};
    return 1;
}

static int end_code_of(sq_processor *p)
{
    int why = atomic_load_explicit(&p->stop, memory_order_acquire);
    return why == STOP_CANCELLED || why == STOP_ABORTED ? -ECANCELED
                                                        : -EPIPE;
}

static int next_locked(sq_processor *p, sq_job_outcome *out,
                       int64_t deadline)
{
    for (;;) {
        if (p->pending) {
            p->pending = false;
            *out = p->pending_out;
            return 0;
        }
        if (p->ended)
            return p->end_code;
        admit(p);
        if (p->pending)
            continue;
        sq_job_outcome o;
        int rc = reap_one(p, &o, deadline);
        if (rc == 1) {
            admit(p); /* its replacement runs while the caller works */
            *out = o;
            return 0;
        }
        if (rc == 0)
            continue;
        if (rc == -ENOENT) {
            /* Nothing admitted is left, and admit() admitted nothing:
             * every job is done, or the run was stopped. */
            p->ended = true;
            p->end_code = end_code_of(p);
            continue;
        }
        if (rc == -ECANCELED) {
            /* The consumer is aborted: cancel the jobs; destroy reaps. */
            stop_run(p, STOP_ABORTED);
            p->ended = true;
            p->end_code = -ECANCELED;
        }
        return rc; /* -ECANCELED, -ETIMEDOUT, -EBUSY */
    }
}

int sq_processor_next_until(sq_processor *p, sq_job_outcome *out,
                            int64_t deadline)
{
    if (!p || !out || deadline < 0)
        return -EINVAL;
    sq_runtime *cur = sq_runtime_current();
    if (cur && cur != p->rt)
        return -EINVAL; /* a task of another runtime cannot wait here */
    if (atomic_flag_test_and_set_explicit(&p->busy, memory_order_acquire))
        return -EBUSY;
    int rc = next_locked(p, out, deadline);
    atomic_flag_clear_explicit(&p->busy, memory_order_release);
    return rc;
}

int sq_processor_next(sq_processor *p, sq_job_outcome *out)
{
    return sq_processor_next_until(p, out, SQ_FOREVER);
}

void sq_processor_cancel(sq_processor *p)
{
    if (p)
        stop_run(p, STOP_CANCELLED);
}

/* ---------------------------------------------------- create, destroy */

int sq_processor_create(sq_processor **out, size_t n, size_t k,
                        sq_job_fn fn, void *arg,
                        const sq_processor_opts *opts)
{
    if (!out || !fn || k == 0)
        return -EINVAL;
    sq_runtime *cur = sq_runtime_current();
    sq_runtime *rt = opts && opts->runtime ? opts->runtime : cur;
    if (!rt)
        return -EPERM;
    if (cur && cur != rt)
        return -EINVAL;
    size_t kk = k < n ? k : n;
    sq_processor *p = calloc(1, sizeof *p);
    slot *slots = kk ? calloc(kk, sizeof *slots) : NULL;
    if (!p || (kk && !slots)) {
        free(p);
        free(slots);
        return -ENOMEM;
    }
    int rc = sq_group_create_in(rt, &p->group);
    if (rc) {
        free(p);
        free(slots);
        return rc;
    }
    p->rt = rt;
    p->fn = fn;
    p->arg = arg;
    p->discard = opts ? opts->discard : NULL;
    if (opts && opts->spawn)
        p->spawn = *opts->spawn;
    if (!p->spawn.name)
        p->spawn.name = "sq-job";
    p->n = n;
    p->k = kk;
    p->slots = slots;
    for (size_t i = kk; i-- > 0;) {
        slots[i].p = p;
        put_slot(p, &slots[i]);
    }
    sq_sem_init(&p->permits, kk);
    atomic_init(&p->stop, RUN);
    atomic_flag_clear(&p->busy);
    p->failed_index = SQ_JOB_NONE;
    admit(p);
    *out = p;
    return 0;
}

/* Stops the run, reaps every job with the caller's cancellation masked,
 * fills *report (may be NULL) and frees p. */
static void finish(sq_processor *p, sq_process_report *report)
{
    stop_run(p, STOP_CANCELLED);
    bool masked = sq_cancel_mask() == 0;
    for (;;) {
        sq_job_outcome o = {0};
        int rc = reap_one(p, &o, SQ_FOREVER);
        if (rc == 1)
            keep_or_discard(p, o.index, o.result); /* not reachable: stopped */
        else if (rc == -ENOENT)
            break;
        else if (rc < 0)
            sq_yield(); /* -EBUSY: misuse; -ECANCELED cannot happen masked */
    }
    if (masked)
        sq_cancel_unmask();
    p->not_started += p->n - p->next;
    if (report)
        *report = (sq_process_report){
            .failed_index = p->failed_index,
            .succeeded = p->succeeded,
            .cancelled = p->cancelled,
            .not_started = p->not_started,
        };
    sq_group_destroy(p->group); /* empty now */
    (void)sq_sem_destroy(&p->permits); /* nobody waits on it */
    free(p->slots);
    free(p);
}

void sq_processor_destroy(sq_processor *p)
{
    if (p)
        finish(p, NULL);
}

/* -------------------------------------------------------------- batch */

int sq_process(size_t n, size_t k, sq_job_fn fn, void *arg, void **results,
               const sq_processor_opts *opts, sq_process_report *report)
{
    if (report)
        *report = (sq_process_report){.failed_index = SQ_JOB_NONE};
    if (!fn || k == 0)
        return -EINVAL;
    if (results)
        for (size_t i = 0; i < n; i++)
            results[i] = NULL;
    if (n == 0)
        return 0;
    sq_processor *p;
    int rc = sq_processor_create(&p, n, k, fn, arg, opts);
    if (rc)
        return rc;
    p->results = results;
    sq_job_outcome o;
    while ((rc = sq_processor_next(p, &o)) == 0) {
        if (o.status < 0) {
            rc = o.status;
            break;
        }
    }
    if (rc == -EPIPE)
        rc = 0;
    finish(p, report);
    return rc;
}
