/* The task processor: results in input order, never more than K jobs at
 * once (and K reached when jobs wait), fail-fast (in-flight jobs see
 * -ECANCELED, jobs not started never start, the first failure is
 * returned), the stream hands every result over exactly once (or to
 * discard), cancellation of the caller, plain-thread callers, and no
 * leaked tasks (the runtime's live-task count comes back). */
#include "testlib.h"

#include "squirrel/explore.h"
#include "squirrel/processor.h"
#include "squirrel/sync.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

static const sq_spawn_opts small = {.stack_size = SQ_STACK_MIN};
static const sq_processor_opts small_jobs = {.spawn = &small};

/* Scales iteration counts down under sanitizers. */
#define ITER(n) (SQ_TEST_SLOW ? ((n) + 3) / 4 : (n))

/* Waits (polling, up to 20 s) until rt's live-task count is `want`: a
 * reaped task is counted until its worker has put its stack away, a
 * moment after the reap. */
static void check_alive(sq_runtime *rt, uint64_t want)
{
    sq_runtime_stats st;
    int64_t limit = sq_now() + 20 * SQ_SEC;
    for (;;) {
        CHECK_EQ(sq_runtime_stats_get(rt, &st), 0);
        if (st.tasks_alive == want || sq_now() > limit)
            break;
        sq_sleep(50 * SQ_USEC);
    }
    CHECK_EQ(st.tasks_alive, want);
}

static uint64_t alive_now(sq_runtime *rt)
{
    sq_runtime_stats st;
    CHECK_EQ(sq_runtime_stats_get(rt, &st), 0);
    return st.tasks_alive;
}

/* ------------------------------------------------------- the test job */

enum kind {
    K_OK,      /* succeed at once */
    K_YIELD,   /* yield a few times, then succeed */
    K_NAP,     /* sleep a little (cancellable), then succeed */
    K_GATE,    /* wait until `gate` jobs have arrived, then succeed */
    K_LONG,    /* arrive, then sleep "forever": only a cancel ends it */
    K_FAIL,    /* yield a few times, then fail with code_of(index) */
    K_GFAIL,   /* arrive, wait for the gate, then fail */
};

/* A job's own failure code: not an errno, so it cannot be mistaken. */
static int code_of(size_t i)
{
    return -1000 - (int)i;
}

static void *value_of(size_t i)
{
    return (void *)(uintptr_t)(i * 8 + 8);
}

typedef struct jobs {
    size_t n;
    unsigned char *kind;
    atomic_int *entered;      /* per job: times its function was called */
    int *returned;            /* per job: what it returned */
    bool alloc;               /* results are malloc'd size_t (else value_of) */
    atomic_int running, hwm, started;
    atomic_int arrived;       /* K_GATE, K_LONG and K_GFAIL jobs */
    int gate;                 /* arrivals K_GATE and K_GFAIL wait for */
    atomic_int saw_cancel;    /* jobs whose wait returned -ECANCELED */
    atomic_int ok;            /* jobs that returned success */
    atomic_int discarded;     /* results given to discard */
    const char *want_name;    /* checked if not NULL */
} jobs;

static jobs *jobs_new(size_t n)
{
    jobs *J = calloc(1, sizeof *J);
    J->n = n;
    J->kind = calloc(n + 1, 1);
    J->entered = calloc(n + 1, sizeof *J->entered);
    J->returned = calloc(n + 1, sizeof *J->returned);
    return J;
}

static void jobs_free(jobs *J)
{
    free(J->kind);
    free(J->entered);
    free(J->returned);
    free(J);
}

static void enter(jobs *J)
{
    atomic_fetch_add(&J->started, 1);
    int now = atomic_fetch_add(&J->running, 1) + 1;
    int hi = atomic_load(&J->hwm);
    while (now > hi && !atomic_compare_exchange_weak(&J->hwm, &hi, now))
        ;
}

/* Waits until `gate` jobs have arrived.  0, or -ECANCELED. */
static int wait_gate(jobs *J)
{
    int64_t limit = sq_now() + 20 * SQ_SEC;
    while (atomic_load(&J->arrived) < J->gate) {
        if (sq_now() > limit) {
            CHECK(!"the gate never opened: fewer jobs at once than K");
            return 0;
        }
        int rc = sq_sleep(20 * SQ_USEC);
        if (rc)
            return rc;
    }
    return 0;
}

static int job(size_t i, void *arg, void **result)
{
    jobs *J = arg;
    CHECK(i < J->n);
    CHECK(*result == NULL);
    CHECK_EQ(atomic_fetch_add(&J->entered[i], 1), 0);
    if (J->want_name)
        CHECK(strcmp(sq_task_name(), J->want_name) == 0);
    enter(J);
    uint32_t x = (uint32_t)i * 2654435761u | 1;
    int rc = 0;
    switch (J->kind[i]) {
    case K_OK:
        break;
    case K_YIELD:
    case K_FAIL:
        for (int y = (int)(sq_test_rnd(&x) % 4); y > 0 && rc == 0; y--)
            rc = sq_yield();
        if (rc == 0 && J->kind[i] == K_FAIL)
            rc = code_of(i);
        break;
    case K_NAP:
        rc = sq_sleep((int64_t)(sq_test_rnd(&x) % 200) * SQ_USEC);
        break;
    case K_GATE:
    case K_GFAIL:
        atomic_fetch_add(&J->arrived, 1);
        rc = wait_gate(J);
        if (rc == 0 && J->kind[i] == K_GFAIL)
            rc = code_of(i);
        break;
    case K_LONG:
        atomic_fetch_add(&J->arrived, 1);
        rc = sq_sleep(60 * SQ_SEC);
        CHECK_EQ(rc, -ECANCELED); /* nothing else ends it in time */
        break;
    }
    if (rc == -ECANCELED)
        atomic_fetch_add(&J->saw_cancel, 1);
    atomic_fetch_sub(&J->running, 1);
    J->returned[i] = rc;
    if (rc < 0)
        return rc;
    atomic_fetch_add(&J->ok, 1);
    if (J->alloc) {
        size_t *r = malloc(sizeof *r);
        *r = i;
        *result = r;
    } else {
        *result = value_of(i);
    }
    return 0;
}

static void discard(size_t index, void *result, void *arg)
{
    jobs *J = arg;
    CHECK(index < J->n);
    CHECK(J->returned[index] == 0);
    if (J->alloc) {
        CHECK_EQ(*(size_t *)result, index);
        free(result);
    } else {
        CHECK(result == value_of(index));
    }
    atomic_fetch_add(&J->discarded, 1);
}

/* Checks what every batch return must satisfy: results[i] is set exactly
 * for the jobs that succeeded, the report adds up, no job runs any more,
 * nothing ran twice, never more than k at once. */
static void check_batch(jobs *J, size_t k, int rc, void **res,
                        const sq_process_report *r)
{
    size_t n = J->n, ok = 0, failed = 0, entered = 0;
    for (size_t i = 0; i < n; i++) {
        int e = atomic_load(&J->entered[i]);
        CHECK(e == 0 || e == 1);
        entered += (size_t)e;
        bool success = e && J->returned[i] == 0;
        ok += success;
        failed += e && J->returned[i] < 0;
        if (res && !J->alloc)
            CHECK(res[i] == (success ? value_of(i) : NULL));
    }
    CHECK_EQ(atomic_load(&J->running), 0);
    CHECK(atomic_load(&J->hwm) <= (int)(k < n ? k : n));
    CHECK_EQ(r->succeeded, ok);
    CHECK_EQ(entered, n - r->not_started);
    CHECK_EQ(atomic_load(&J->started), (int)entered);
    bool job_failed = r->failed_index != SQ_JOB_NONE;
    CHECK_EQ(r->succeeded + r->cancelled + r->not_started + job_failed, n);
    if (rc == 0) {
        CHECK_EQ(ok, n);
        CHECK(!job_failed);
    } else if (job_failed) {
        CHECK(r->failed_index < n);
        CHECK_EQ(J->returned[r->failed_index], rc);
        CHECK_EQ(failed, r->cancelled + 1);
    }
}

/* ------------------------------------------------------- arguments */

static void *other_runtime_root(void *arg)
{
    sq_processor_opts o = {.runtime = arg};
    jobs *J = jobs_new(3);
    sq_processor *p;
    CHECK_EQ(sq_process(3, 1, job, J, NULL, &o, NULL), -EINVAL);
    CHECK_EQ(sq_processor_create(&p, 3, 1, job, J, &o), -EINVAL);
    CHECK_EQ(atomic_load(&J->started), 0);
    /* the caller's own runtime named explicitly is fine */
    o.runtime = sq_runtime_current();
    CHECK_EQ(sq_process(3, 1, job, J, NULL, &o, NULL), 0);
    CHECK_EQ(atomic_load(&J->started), 3);
    jobs_free(J);
    return NULL;
}

static void *foreign_next_root(void *arg)
{
    sq_job_outcome o;
    CHECK_EQ(sq_processor_next(arg, &o), -EINVAL);
    return NULL;
}

TEST(rejects_bad_arguments)
{
    jobs *J = jobs_new(4);
    void *res[4] = {0};
    sq_process_report r;
    sq_processor *p;
    CHECK_EQ(sq_process(4, 0, job, J, res, NULL, &r), -EINVAL);
    CHECK_EQ(r.failed_index, SQ_JOB_NONE);
    CHECK_EQ(sq_process(4, 2, NULL, J, res, NULL, &r), -EINVAL);
    CHECK_EQ(sq_process(0, 2, job, J, res, NULL, &r), 0); /* nothing to do */
    CHECK_EQ(sq_process(4, 2, job, J, res, NULL, &r), -EPERM); /* no runtime */
    CHECK_EQ(sq_processor_create(&p, 4, 2, job, J, NULL), -EPERM);
    CHECK_EQ(sq_processor_create(NULL, 4, 2, job, J, NULL), -EINVAL);
    CHECK_EQ(sq_processor_create(&p, 4, 0, job, J, NULL), -EINVAL);
    CHECK_EQ(sq_processor_create(&p, 4, 1, NULL, J, NULL), -EINVAL);
    CHECK_EQ(atomic_load(&J->started), 0);
    sq_job_outcome o;
    CHECK_EQ(sq_processor_next(NULL, &o), -EINVAL);
    sq_processor_destroy(NULL);
    sq_processor_cancel(NULL);

    sq_runtime *rt;
    CHECK_EQ(sq_runtime_create(&rt, &(sq_runtime_opts){.workers = 1}), 0);
    sq_processor_opts po = {.runtime = rt};
    CHECK_EQ(sq_processor_create(&p, 4, 2, job, J, &po), 0);
    CHECK_EQ(sq_processor_next(p, NULL), -EINVAL);
    CHECK_EQ(sq_processor_next_until(p, &o, -1), -EINVAL);
    sq_test_run(1, foreign_next_root, p); /* a task of another runtime */
    sq_processor_destroy(p);
    check_alive(rt, 0);
    sq_test_run(1, other_runtime_root, rt);
    sq_runtime_destroy(rt);
    jobs_free(J);
}

/* ------------------------------------------------------- input order */

static void *order_root(void *arg)
{
    (void)arg;
    sq_runtime *rt = sq_runtime_current();
    uint64_t base = alive_now(rt);
    static const size_t ns[] = {1, 2, 3, 7, 16, 33, 100};
    uint32_t x = 7;
    for (int rep = 0; rep < ITER(4); rep++) {
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
            size_t n = ns[a];
            size_t ks[] = {1, 2, 3, n > 1 ? n - 1 : 1, n, n + 1, 2 * n, 64};
            for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++) {
                size_t k = ks[b];
                jobs *J = jobs_new(n);
                for (size_t i = 0; i < n; i++)
                    J->kind[i] = (unsigned char)(sq_test_rnd(&x) % 3); /* OK/YIELD/NAP */
                void **res = malloc(n * sizeof *res);
                for (size_t i = 0; i < n; i++)
                    res[i] = (void *)1; /* must be overwritten */
                sq_process_report r;
                int rc = sq_process(n, k, job, J, res, &small_jobs, &r);
                CHECK_EQ(rc, 0);
                CHECK_EQ(r.failed_index, SQ_JOB_NONE);
                CHECK_EQ(r.not_started, 0);
                CHECK_EQ(r.cancelled, 0);
                check_batch(J, k, rc, res, &r);
                for (size_t i = 0; i < n; i++)
                    CHECK(res[i] == value_of(i));
                free(res);
                jobs_free(J);
            }
        }
        check_alive(rt, base);
    }
    return NULL;
}

TEST(batch_results_come_in_input_order_for_many_n_and_k)
{
    sq_test_run(2, order_root, NULL);
    sq_test_run(4, order_root, NULL);
}

/* ------------------------------------------------ concurrency bound */

/* Every job waits at a gate until min(k, n) jobs are in: the gate opens
 * only if that many run at once, and the high-water mark shows no more. */
static void *reach_k_root(void *arg)
{
    (void)arg;
    sq_runtime *rt = sq_runtime_current();
    uint64_t base = alive_now(rt);
    static const size_t combos[][2] = {{1, 1},  {5, 1},  {5, 5},   {5, 9},
                                       {20, 4}, {40, 7}, {64, 32}, {200, 50}};
    for (int rep = 0; rep < ITER(3); rep++) {
        for (size_t c = 0; c < sizeof combos / sizeof combos[0]; c++) {
            size_t n = combos[c][0], k = combos[c][1];
            size_t kk = k < n ? k : n;
            jobs *J = jobs_new(n);
            for (size_t i = 0; i < n; i++)
                J->kind[i] = K_GATE;
            J->gate = (int)kk;
            void **res = malloc(n * sizeof *res);
            sq_process_report r;
            CHECK_EQ(sq_process(n, k, job, J, res, &small_jobs, &r), 0);
            CHECK_EQ(atomic_load(&J->hwm), (int)kk);
            check_batch(J, k, 0, res, &r);
            free(res);
            jobs_free(J);
        }
        check_alive(rt, base);
    }
    return NULL;
}

TEST(concurrency_reaches_k_and_never_exceeds_it)
{
    sq_test_run(2, reach_k_root, NULL);
}

/* ------------------------------------------------------- fail-fast */

/* The first k jobs start; job f among them fails once all k are in; the
 * k - 1 others are waiting and see -ECANCELED; the n - k others never
 * start. */
static void *fail_fast_root(void *arg)
{
    (void)arg;
    sq_runtime *rt = sq_runtime_current();
    uint64_t base = alive_now(rt);
    uint32_t x = 99;
    for (int rep = 0; rep < ITER(40); rep++) {
        size_t k = 1 + sq_test_rnd(&x) % 8, n = k + sq_test_rnd(&x) % 30;
        size_t f = sq_test_rnd(&x) % k;
        jobs *J = jobs_new(n);
        for (size_t i = 0; i < n; i++)
            J->kind[i] = K_LONG;
        J->kind[f] = K_GFAIL;
        J->gate = (int)k;
        void **res = malloc(n * sizeof *res);
        sq_process_report r;
        int rc = sq_process(n, k, job, J, res, &small_jobs, &r);
        CHECK_EQ(rc, code_of(f));
        CHECK_EQ(r.failed_index, f);
        CHECK_EQ(atomic_load(&J->started), (int)k);
        CHECK_EQ(atomic_load(&J->saw_cancel), (int)k - 1);
        CHECK_EQ(r.cancelled, k - 1);
        CHECK_EQ(r.not_started, n - k);
        CHECK_EQ(r.succeeded, 0);
        for (size_t i = k; i < n; i++)
            CHECK_EQ(atomic_load(&J->entered[i]), 0);
        check_batch(J, k, rc, res, &r);
        free(res);
        jobs_free(J);
    }
    check_alive(rt, base);
    return NULL;
}

TEST(first_failure_cancels_jobs_in_flight_and_skips_the_rest)
{
    sq_test_run(2, fail_fast_root, NULL);
}

/* Job a fails first; job b, in flight, fails too but only after it was
 * cancelled (with its own code): a's code is what is returned. */
static int late_failer(size_t i, void *arg, void **result)
{
    jobs *J = arg;
    if (i != 1)
        return job(i, arg, result);
    atomic_fetch_add(&J->entered[i], 1);
    enter(J);
    atomic_fetch_add(&J->arrived, 1);
    int rc = sq_sleep(60 * SQ_SEC);
    CHECK_EQ(rc, -ECANCELED);
    atomic_fetch_sub(&J->running, 1);
    J->returned[i] = -EIO;
    return -EIO; /* a failure, but after the stop: not the first */
}

static void *only_first_root(void *arg)
{
    (void)arg;
    for (int rep = 0; rep < ITER(20); rep++) {
        jobs *J = jobs_new(10);
        for (size_t i = 0; i < 10; i++)
            J->kind[i] = K_LONG;
        J->kind[3] = K_GFAIL;
        J->gate = 4;
        sq_process_report r;
        int rc = sq_process(10, 4, late_failer, J, NULL, &small_jobs, &r);
        CHECK_EQ(rc, code_of(3));
        CHECK_EQ(r.failed_index, 3);
        CHECK_EQ(r.cancelled, 3);
        CHECK_EQ(r.not_started, 6);
        jobs_free(J);
    }
    return NULL;
}

TEST(only_the_first_failure_is_returned)
{
    sq_test_run(2, only_first_root, NULL);
}

/* Random kinds and failures: whatever the interleaving, every invariant
 * of check_batch holds, and rc is 0 exactly when no job failed. */
static void *fail_stress_root(void *arg)
{
    (void)arg;
    sq_runtime *rt = sq_runtime_current();
    uint64_t base = alive_now(rt);
    uint32_t x = 4242;
    for (int rep = 0; rep < ITER(400); rep++) {
        size_t n = 1 + sq_test_rnd(&x) % 60, k = 1 + sq_test_rnd(&x) % (n + 3);
        unsigned fail_pct = sq_test_rnd(&x) % 4 == 0 ? 0 : sq_test_rnd(&x) % 10;
        jobs *J = jobs_new(n);
        for (size_t i = 0; i < n; i++)
            J->kind[i] = sq_test_rnd(&x) % 100 < fail_pct ? K_FAIL
                                                   : (unsigned char)(sq_test_rnd(&x) % 3);
        void **res = malloc(n * sizeof *res);
        sq_process_report r;
        int rc = sq_process(n, k, job, J, res, &small_jobs, &r);
        check_batch(J, k, rc, res, &r);
        bool any_failed = false;
        for (size_t i = 0; i < n; i++)
            any_failed |= J->returned[i] < 0;
        CHECK_EQ(rc != 0, any_failed);
        if (rc) {
            CHECK(r.failed_index < n);
            CHECK_EQ(rc, code_of(r.failed_index)); /* a real failure, not a cancel */
            CHECK_EQ(J->kind[r.failed_index], K_FAIL);
        }
        free(res);
        jobs_free(J);
    }
    check_alive(rt, base);
    return NULL;
}

TEST(fail_fast_invariants_under_random_failures)
{
    sq_test_run(2, fail_stress_root, NULL);
    sq_test_run(3, fail_stress_root, NULL);
}

/* The same under many deterministic schedules (one worker, a seed per
 * interleaving), with a cancel from another task at a random moment. */
typedef struct explore_arg {
    sq_processor *p;
    int yields;
} explore_arg;

static void *canceller(void *arg)
{
    explore_arg *a = arg;
    for (int i = 0; i < a->yields; i++)
        sq_yield();
    sq_processor_cancel(a->p);
    return NULL;
}

static atomic_uint explore_runs;

static int explore_body(void *arg)
{
    (void)arg;
    /* The shape varies from seed to seed, deterministically in the order
     * the seeds run (not with SQ_EXPLORE_SEED alone, which runs one). */
    uint32_t x = 2654435761u * (atomic_fetch_add(&explore_runs, 1) + 1) | 1;
    size_t n = 1 + sq_test_rnd(&x) % 12, k = 1 + sq_test_rnd(&x) % (n + 1);
    jobs *J = jobs_new(n);
    J->alloc = true;
    for (size_t i = 0; i < n; i++)
        J->kind[i] = sq_test_rnd(&x) % 6 == 0 ? K_FAIL : K_YIELD;
    sq_processor_opts o = {.spawn = &small, .discard = discard};
    sq_processor *p;
    if (sq_processor_create(&p, n, k, job, J, &o) != 0)
        return 1;
    explore_arg ea = {p, (int)(sq_test_rnd(&x) % 20)};
    bool cancel = sq_test_rnd(&x) % 2;
    sq_task t;
    if (cancel && sq_spawn(&t, canceller, &ea, &small) != 0)
        return 1;
    int bad = 0, fail_items = 0, delivered = 0, rc;
    sq_job_outcome out;
    bool *seen = calloc(n, 1);
    while ((rc = sq_processor_next(p, &out)) == 0) {
        if (out.index >= n || seen[out.index]) {
            bad = 1;
            break;
        }
        seen[out.index] = 1;
        if (out.status < 0) {
            fail_items++;
            bad |= out.status != code_of(out.index) || out.result != NULL;
        } else {
            delivered++;
            bad |= *(size_t *)out.result != out.index;
            free(out.result);
        }
    }
    if (cancel)
        sq_join(t, NULL);
    sq_processor_destroy(p);
    bool any_failed = false;
    for (size_t i = 0; i < n; i++)
        any_failed |= J->kind[i] == K_FAIL && J->returned[i] == code_of(i);
    bad |= rc != -EPIPE && rc != -ECANCELED;
    bad |= delivered + atomic_load(&J->discarded) != atomic_load(&J->ok);
    bad |= atomic_load(&J->running) != 0 || fail_items > 1;
    if (!cancel) {
        bad |= rc != -EPIPE;
        bad |= fail_items != any_failed;
        if (!any_failed)
            bad |= delivered != (int)n;
    }
    free(seen);
    jobs_free(J);
    return bad;
}

TEST(stream_invariants_under_explored_schedules)
{
    uint64_t bad = 0;
    CHECK_EQ(sq_explore(explore_body, NULL, 1, ITER(150), &bad), 0);
    CHECK_EQ(bad, 0);
}

/* ------------------------------------------------ caller cancellation */

typedef struct batch_arg {
    jobs *J;
    size_t n, k;
    void **res;
    sq_process_report r;
} batch_arg;

static void *batch_task(void *arg)
{
    batch_arg *b = arg;
    int rc = sq_process(b->n, b->k, job, b->J, b->res, &small_jobs, &b->r);
    CHECK(sq_cancelled());
    return (void *)(intptr_t)rc;
}

/* The first s jobs succeed, the next ones wait forever; the caller is
 * aborted once k jobs are waiting. */
static void *caller_cancel_root(void *arg)
{
    (void)arg;
    sq_runtime *rt = sq_runtime_current();
    uint64_t base = alive_now(rt);
    uint32_t x = 5;
    for (int rep = 0; rep < ITER(40); rep++) {
        size_t k = 1 + sq_test_rnd(&x) % 8, s = sq_test_rnd(&x) % 10, n = s + k + sq_test_rnd(&x) % 20;
        batch_arg b = {.J = jobs_new(n), .n = n, .k = k};
        b.res = malloc(n * sizeof *b.res);
        for (size_t i = 0; i < n; i++)
            b.J->kind[i] = i < s ? K_OK : K_LONG;
        sq_task t;
        CHECK_EQ(sq_spawn(&t, batch_task, &b, &small), 0);
        while (atomic_load(&b.J->arrived) < (int)k)
            sq_sleep(20 * SQ_USEC);
        CHECK_EQ(sq_abort(t), 0);
        void *ret;
        sq_join(t, &ret);
        CHECK_EQ((intptr_t)ret, -ECANCELED);
        CHECK_EQ(b.r.failed_index, SQ_JOB_NONE);
        CHECK_EQ(b.r.succeeded, s);
        CHECK_EQ(atomic_load(&b.J->saw_cancel), (int)k);
        CHECK_EQ(b.r.cancelled, k);
        CHECK_EQ(b.r.not_started, n - s - k);
        check_batch(b.J, k, -ECANCELED, b.res, &b.r);
        free(b.res);
        jobs_free(b.J);
    }
    check_alive(rt, base);
    return NULL;
}

TEST(aborting_the_caller_cancels_every_job_and_returns_ecanceled)
{
    sq_test_run(2, caller_cancel_root, NULL);
}

/* --------------------------------------------------------- streaming */

/* Drains p: checks each outcome, frees results, returns the end code. */
static int drain(sq_processor *p, jobs *J, bool *seen, int *delivered,
                 int *failures)
{
    sq_job_outcome o;
    int rc;
    while ((rc = sq_processor_next(p, &o)) == 0) {
        CHECK(o.index < J->n);
        CHECK(!seen[o.index]);
        seen[o.index] = true;
        if (o.status == 0) {
            CHECK_EQ(J->returned[o.index], 0);
            CHECK_EQ(*(size_t *)o.result, o.index);
            free(o.result);
            (*delivered)++;
        } else {
            CHECK_EQ(o.status, code_of(o.index));
            CHECK(o.result == NULL);
            (*failures)++;
        }
    }
    return rc;
}

static void *stream_root(void *arg)
{
    (void)arg;
    sq_runtime *rt = sq_runtime_current();
    uint64_t base = alive_now(rt);
    uint32_t x = 77;
    for (int rep = 0; rep < ITER(300); rep++) {
        size_t n = sq_test_rnd(&x) % 50, k = 1 + sq_test_rnd(&x) % (n + 3);
        bool with_failures = rep % 3 == 0;
        jobs *J = jobs_new(n);
        J->alloc = true;
        for (size_t i = 0; i < n; i++)
            J->kind[i] = with_failures && sq_test_rnd(&x) % 10 == 0
                             ? K_FAIL
                             : (unsigned char)(sq_test_rnd(&x) % 3);
        sq_processor_opts o = {.spawn = &small, .discard = discard};
        sq_processor *p;
        CHECK_EQ(sq_processor_create(&p, n, k, job, J, &o), 0);
        bool *seen = calloc(n + 1, 1);
        int delivered = 0, failures = 0;
        int rc = drain(p, J, seen, &delivered, &failures);
        CHECK_EQ(rc, -EPIPE);
        sq_job_outcome out;
        CHECK_EQ(sq_processor_next(p, &out), -EPIPE); /* repeats */
        CHECK_EQ(atomic_load(&J->running), 0); /* all reaped at -EPIPE */
        bool any_failed = false;
        for (size_t i = 0; i < n; i++)
            any_failed |= J->returned[i] < 0;
        CHECK_EQ(failures, any_failed ? 1 : 0);
        if (!any_failed)
            CHECK_EQ(delivered, (int)n); /* every result, exactly once */
        CHECK_EQ(delivered + atomic_load(&J->discarded), atomic_load(&J->ok));
        CHECK(atomic_load(&J->hwm) <= (int)k);
        sq_processor_destroy(p);
        CHECK_EQ(delivered + atomic_load(&J->discarded), atomic_load(&J->ok));
        free(seen);
        jobs_free(J);
    }
    check_alive(rt, base);
    return NULL;
}

TEST(stream_hands_every_result_over_exactly_once)
{
    sq_test_run(2, stream_root, NULL);
}

/* Destroyed after m outcomes, with jobs still in flight and not started:
 * everything is reaped, in-flight jobs see -ECANCELED, every success is
 * delivered or discarded, exactly once. */
static void *destroy_midway_root(void *arg)
{
    (void)arg;
    sq_runtime *rt = sq_runtime_current();
    uint64_t base = alive_now(rt);
    uint32_t x = 31;
    for (int rep = 0; rep < ITER(150); rep++) {
        size_t n = 1 + sq_test_rnd(&x) % 40, k = 1 + sq_test_rnd(&x) % 8;
        jobs *J = jobs_new(n);
        J->alloc = true;
        for (size_t i = 0; i < n; i++)
            J->kind[i] = sq_test_rnd(&x) % 4 == 0 ? K_LONG : (unsigned char)(sq_test_rnd(&x) % 3);
        sq_processor_opts o = {.spawn = &small, .discard = discard};
        sq_processor *p;
        CHECK_EQ(sq_processor_create(&p, n, k, job, J, &o), 0);
        size_t m = sq_test_rnd(&x) % (n + 1);
        int delivered = 0;
        sq_job_outcome out;
        for (size_t i = 0; i < m; i++) {
            /* a deadline: K_LONG jobs may block the stream */
            int rc = sq_processor_next_until(p, &out, sq_now() + SQ_MSEC);
            if (rc == -ETIMEDOUT)
                break;
            CHECK_EQ(rc, 0);
            CHECK_EQ(out.status, 0);
            CHECK_EQ(*(size_t *)out.result, out.index);
            free(out.result);
            delivered++;
        }
        sq_processor_destroy(p);
        CHECK_EQ(atomic_load(&J->running), 0);
        CHECK_EQ(delivered + atomic_load(&J->discarded), atomic_load(&J->ok));
        int longs_started = 0;
        for (size_t i = 0; i < n; i++)
            longs_started += J->kind[i] == K_LONG && atomic_load(&J->entered[i]);
        CHECK_EQ(atomic_load(&J->saw_cancel) >= longs_started, true);
        jobs_free(J);
    }
    check_alive(rt, base);
    return NULL;
}

TEST(stream_destroyed_midway_reaps_everything)
{
    sq_test_run(2, destroy_midway_root, NULL);
}

/* sq_processor_cancel from another task while the consumer waits. */
typedef struct cancel_arg {
    sq_processor *p;
    jobs *J;
    int k;
} cancel_arg;

static void *cancel_when_full(void *arg)
{
    cancel_arg *c = arg;
    while (atomic_load(&c->J->arrived) < c->k)
        sq_sleep(20 * SQ_USEC);
    sq_processor_cancel(c->p);
    sq_processor_cancel(c->p); /* idempotent */
    return NULL;
}

static void *cancel_root(void *arg)
{
    (void)arg;
    sq_runtime *rt = sq_runtime_current();
    uint64_t base = alive_now(rt);
    uint32_t x = 3;
    for (int rep = 0; rep < ITER(40); rep++) {
        size_t k = 1 + sq_test_rnd(&x) % 6, n = k + sq_test_rnd(&x) % 20;
        jobs *J = jobs_new(n);
        for (size_t i = 0; i < n; i++)
            J->kind[i] = K_LONG;
        sq_processor *p;
        CHECK_EQ(sq_processor_create(&p, n, k, job, J, &small_jobs), 0);
        cancel_arg c = {p, J, (int)k};
        sq_task t;
        CHECK_EQ(sq_spawn(&t, cancel_when_full, &c, &small), 0);
        sq_job_outcome o;
        CHECK_EQ(sq_processor_next(p, &o), -ECANCELED);
        CHECK_EQ(sq_processor_next(p, &o), -ECANCELED); /* repeats */
        CHECK_EQ(atomic_load(&J->running), 0);          /* reaped */
        CHECK_EQ(atomic_load(&J->saw_cancel), (int)k);
        CHECK_EQ(atomic_load(&J->started), (int)k);
        CHECK_EQ(sq_join(t, NULL), 0);
        sq_processor_destroy(p);
        jobs_free(J);
    }
    check_alive(rt, base);
    return NULL;
}

TEST(stream_cancel_from_another_task_stops_every_job)
{
    sq_test_run(2, cancel_root, NULL);
}

/* The consumer task is aborted while it waits in next. */
static void *consumer_task(void *arg)
{
    cancel_arg *c = arg;
    sq_job_outcome o;
    int rc;
    int got = 0;
    while ((rc = sq_processor_next(c->p, &o)) == 0) {
        CHECK_EQ(o.status, 0);
        got++;
    }
    CHECK_EQ(rc, -ECANCELED);
    CHECK(sq_cancelled());
    CHECK_EQ(sq_processor_next(c->p, &o), -ECANCELED); /* no wait */
    sq_processor_destroy(c->p);
    return (void *)(intptr_t)got;
}

static void *consumer_cancel_root(void *arg)
{
    (void)arg;
    sq_runtime *rt = sq_runtime_current();
    uint64_t base = alive_now(rt);
    uint32_t x = 11;
    for (int rep = 0; rep < ITER(40); rep++) {
        size_t k = 1 + sq_test_rnd(&x) % 6, s = sq_test_rnd(&x) % 5, n = s + k + sq_test_rnd(&x) % 20;
        jobs *J = jobs_new(n);
        for (size_t i = 0; i < n; i++)
            J->kind[i] = i < s ? K_OK : K_LONG;
        cancel_arg c = {NULL, J, (int)k};
        CHECK_EQ(sq_processor_create(&c.p, n, k, job, J, &small_jobs), 0);
        sq_task t;
        CHECK_EQ(sq_spawn(&t, consumer_task, &c, &small), 0);
        while (atomic_load(&J->arrived) < (int)k)
            sq_sleep(20 * SQ_USEC);
        sq_abort(t);
        void *got;
        sq_join(t, &got);
        CHECK_EQ((intptr_t)got, (intptr_t)s);
        CHECK_EQ(atomic_load(&J->running), 0);
        CHECK_EQ(atomic_load(&J->saw_cancel), (int)k);
        CHECK_EQ(atomic_load(&J->started), (int)(s + k));
        jobs_free(J);
    }
    check_alive(rt, base);
    return NULL;
}

TEST(aborting_the_stream_consumer_cancels_every_job)
{
    sq_test_run(2, consumer_cancel_root, NULL);
}

/* next_until: -ETIMEDOUT loses nothing; an outcome that is ready is
 * returned even with a passed deadline; a second consumer gets -EBUSY
 * while the first waits. */
typedef struct second_arg {
    sq_processor *p;
    jobs *J;
} second_arg;

static void *second_consumer(void *arg)
{
    second_arg *a = arg;
    sq_job_outcome o;
    int rc;
    /* Knock until the first consumer is inside next, then open the gate
     * its jobs wait at. */
    while ((rc = sq_processor_next_until(a->p, &o, sq_now() + 50 * SQ_USEC)) !=
           -EBUSY)
        CHECK_EQ(rc, -ETIMEDOUT);
    atomic_fetch_add(&a->J->arrived, 1);
    return NULL;
}

static void *deadline_root(void *arg)
{
    (void)arg;
    for (int rep = 0; rep < ITER(10); rep++) {
        jobs *J = jobs_new(3);
        J->alloc = true;
        for (size_t i = 0; i < 3; i++)
            J->kind[i] = K_GATE;
        J->gate = 4; /* closed until the second consumer arrives too */
        sq_processor *p;
        CHECK_EQ(sq_processor_create(&p, 3, 3, job, J, &small_jobs), 0);
        sq_job_outcome o;
        CHECK_EQ(sq_processor_next_until(p, &o, sq_now() + SQ_MSEC), -ETIMEDOUT);
        CHECK_EQ(sq_processor_next_until(p, &o, 0), -ETIMEDOUT);
        second_arg sa = {p, J};
        sq_task t;
        CHECK_EQ(sq_spawn(&t, second_consumer, &sa, &small), 0);
        int rc;
        while ((rc = sq_processor_next_until(p, &o, sq_now() + 20 * SQ_SEC)) ==
               -EBUSY)
            sq_yield();
        CHECK_EQ(rc, 0);
        CHECK_EQ(sq_join(t, NULL), 0);
        bool seen[3] = {0};
        seen[o.index] = true;
        free(o.result);
        int got = 1;
        while (got < 3) {
            rc = sq_processor_next_until(p, &o, 0); /* passed deadline */
            if (rc == -ETIMEDOUT) {
                sq_sleep(20 * SQ_USEC);
                continue;
            }
            CHECK_EQ(rc, 0);
            CHECK(!seen[o.index]);
            seen[o.index] = true;
            free(o.result);
            got++;
        }
        CHECK_EQ(sq_processor_next_until(p, &o, 0), -EPIPE);
        sq_processor_destroy(p);
        jobs_free(J);
    }
    return NULL;
}

TEST(stream_deadline_loses_nothing_and_one_consumer_at_a_time)
{
    sq_test_run(2, deadline_root, NULL);
}

/* Jobs run as tasks named after the spawn options. */
static void *names_root(void *arg)
{
    (void)arg;
    jobs *J = jobs_new(5);
    J->want_name = "sq-job";
    CHECK_EQ(sq_process(5, 2, job, J, NULL, NULL, NULL), 0);
    jobs_free(J);
    J = jobs_new(5);
    J->want_name = "fetcher";
    sq_spawn_opts so = {.stack_size = SQ_STACK_MIN, .name = "fetcher"};
    sq_processor_opts po = {.spawn = &so};
    CHECK_EQ(sq_process(5, 2, job, J, NULL, &po, NULL), 0);
    CHECK_EQ(atomic_load(&J->started), 5);
    jobs_free(J);
    return NULL;
}

TEST(jobs_take_the_spawn_options)
{
    sq_test_run(2, names_root, NULL);
}

/* ------------------------------------------------------ plain threads */

typedef struct thread_arg {
    sq_runtime *rt;
    uint32_t seed;
} thread_arg;

/* Batches and streams from a plain thread, jobs on rt. */
static void *plain_thread_client(void *arg)
{
    thread_arg *ta = arg;
    uint32_t x = ta->seed;
    sq_processor_opts po = {.runtime = ta->rt, .spawn = &small};
    for (int rep = 0; rep < ITER(60); rep++) {
        size_t n = 1 + sq_test_rnd(&x) % 40, k = 1 + sq_test_rnd(&x) % (n + 2);
        jobs *J = jobs_new(n);
        bool fail = rep % 4 == 3;
        for (size_t i = 0; i < n; i++)
            J->kind[i] = fail && sq_test_rnd(&x) % 8 == 0 ? K_FAIL
                                                  : (unsigned char)(sq_test_rnd(&x) % 3);
        if (rep % 2 == 0) {
            void **res = malloc(n * sizeof *res);
            sq_process_report r;
            int rc = sq_process(n, k, job, J, res, &po, &r);
            check_batch(J, k, rc, res, &r);
            if (rc)
                CHECK_EQ(rc, code_of(r.failed_index));
            free(res);
        } else {
            J->alloc = true;
            po.discard = discard;
            sq_processor *p;
            CHECK_EQ(sq_processor_create(&p, n, k, job, J, &po), 0);
            bool *seen = calloc(n, 1);
            int delivered = 0, failures = 0;
            CHECK_EQ(drain(p, J, seen, &delivered, &failures), -EPIPE);
            sq_processor_destroy(p);
            CHECK_EQ(delivered + atomic_load(&J->discarded),
                     atomic_load(&J->ok));
            CHECK(failures <= 1);
            free(seen);
            po.discard = NULL;
        }
        CHECK_EQ(atomic_load(&J->running), 0);
        jobs_free(J);
    }
    return NULL;
}

/* Tasks run batches on the same runtime meanwhile. */
static void *task_client(void *arg)
{
    thread_arg ta = {sq_runtime_current(), (uint32_t)(uintptr_t)arg};
    return plain_thread_client(&ta);
}

TEST(plain_threads_and_tasks_share_a_runtime)
{
    sq_runtime *rt;
    CHECK_EQ(sq_runtime_create(&rt, &(sq_runtime_opts){.workers = 2}), 0);
    enum { THREADS = 3, TASKS = 3 };
    pthread_t th[THREADS];
    thread_arg ta[THREADS];
    for (int i = 0; i < THREADS; i++) {
        ta[i] = (thread_arg){rt, 1000u + (uint32_t)i};
        CHECK_EQ(pthread_create(&th[i], NULL, plain_thread_client, &ta[i]), 0);
    }
    sq_task t[TASKS];
    for (int i = 0; i < TASKS; i++)
        CHECK_EQ(sq_runtime_spawn(rt, &t[i], task_client,
                                  (void *)(uintptr_t)(2000 + i), &small),
                 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < TASKS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    check_alive(rt, 0);

    /* fail-fast from a plain thread too */
    jobs *J = jobs_new(30);
    for (size_t i = 0; i < 30; i++)
        J->kind[i] = K_LONG;
    J->kind[2] = K_GFAIL;
    J->gate = 5;
    sq_process_report r;
    sq_processor_opts po = {.runtime = rt, .spawn = &small};
    CHECK_EQ(sq_process(30, 5, job, J, NULL, &po, &r), code_of(2));
    CHECK_EQ(r.failed_index, 2);
    CHECK_EQ(atomic_load(&J->saw_cancel), 4);
    CHECK_EQ(r.not_started, 25);
    jobs_free(J);
    check_alive(rt, 0);
    sq_runtime_destroy(rt);
}

/* From a plain thread, creating a processor needs nothing from the
 * runtime (its group is bound to it directly): it returns while the
 * runtime's only worker is kept busy by a task that waits for exactly
 * that (and gives up, failing, after 10 s). */
typedef struct hog_ctl {
    atomic_int started, release, gave_up;
} hog_ctl;

static void *hog(void *arg)
{
    hog_ctl *h = arg;
    atomic_store(&h->started, 1);
    int64_t limit = sq_now() + 10 * SQ_SEC;
    while (!atomic_load(&h->release))
        if (sq_now() > limit) {
            atomic_store(&h->gave_up, 1);
            break;
        }
    return NULL;
}

static int square_job(size_t i, void *arg, void **result)
{
    (void)arg;
    *result = (void *)(uintptr_t)(i * i);
    return 0;
}

TEST(create_from_a_plain_thread_needs_no_worker)
{
    sq_runtime *rt;
    CHECK_EQ(sq_runtime_create(&rt, &(sq_runtime_opts){.workers = 1}), 0);
    hog_ctl h = {.started = 0};
    sq_task t;
    CHECK_EQ(sq_runtime_spawn(rt, &t, hog, &h, NULL), 0);
    while (!atomic_load(&h.started))
        sched_yield();
    sq_processor *p;
    sq_processor_opts po = {.runtime = rt, .spawn = &small};
    CHECK_EQ(sq_processor_create(&p, 8, 3, square_job, NULL, &po), 0);
    atomic_store(&h.release, 1);
    CHECK_EQ(sq_join(t, NULL), 0);
    CHECK_EQ(atomic_load(&h.gave_up), 0);
    bool seen[8] = {false};
    sq_job_outcome o;
    int got = 0;
    while (sq_processor_next(p, &o) == 0) {
        CHECK_EQ(o.status, 0);
        CHECK(o.index < 8);
        if (o.index < 8) {
            CHECK(!seen[o.index]);
            seen[o.index] = true;
            CHECK_EQ((uintptr_t)o.result, o.index * o.index);
        }
        got++;
    }
    CHECK_EQ(got, 8);
    sq_processor_destroy(p);
    check_alive(rt, 0);
    sq_runtime_destroy(rt);
}
