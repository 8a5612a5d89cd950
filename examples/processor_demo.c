/* The task processor: square 20 numbers, at most 4 at once, first as a
 * batch (results in input order), then as a stream (results as they
 * finish), then a batch where one job fails and the others are cancelled.
 * Exits 0 when every result is what it should be. */
#include <squirrel/processor.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 20
#define K 4

static atomic_int running, most; /* jobs running now, and at most */

/* A job: "fetches" input[index] (a short sleep stands for the I/O) and
 * returns its square in a malloc'd long.  Job 13 fails when asked to. */
static int square(size_t index, void *arg, void **result)
{
    const int *fail_at = arg;
    int now = atomic_fetch_add(&running, 1) + 1;
    int hi = atomic_load(&most);
    while (now > hi && !atomic_compare_exchange_weak(&most, &hi, now))
        ;
    int rc = sq_sleep((int64_t)(1 + index % 3) * SQ_MSEC);
    atomic_fetch_sub(&running, 1);
    if (rc < 0)
        return rc; /* -ECANCELED: another job failed, stop now */
    if (fail_at && (int)index == *fail_at)
        return -EIO;
    long *sq = malloc(sizeof *sq);
    if (!sq)
        return -ENOMEM;
    *sq = (long)index * (long)index;
    *result = sq;
    return 0;
}

static void free_result(size_t index, void *result, void *arg)
{
    (void)index, (void)arg;
    free(result);
}

static void *demo(void *arg)
{
    (void)arg;
    int bad = 0;

    /* 1. Batch: results[i] is job i's result. */
    void *results[N];
    if (sq_process(N, K, square, NULL, results, NULL, NULL) != 0)
        return (void *)1;
    for (size_t i = 0; i < N; i++) {
        bad |= *(long *)results[i] != (long)(i * i);
        free(results[i]);
    }

    /* 2. Stream: each outcome as its job finishes. */
    sq_processor_opts opts = {.discard = free_result};
    sq_processor *p;
    if (sq_processor_create(&p, N, K, square, NULL, &opts) != 0)
        return (void *)1;
    sq_job_outcome o;
    int got = 0;
    while (sq_processor_next(p, &o) == 0) {
        bad |= o.status != 0 || *(long *)o.result != (long)(o.index * o.index);
        free(o.result);
        got++;
    }
    sq_processor_destroy(p);
    bad |= got != N;

    /* 3. Fail-fast: job 13 fails; the jobs in flight are cancelled, the
     * rest never start, and the failure is what comes back. */
    int fail_at = 13;
    sq_process_report rep;
    int rc = sq_process(N, K, square, &fail_at, results, NULL, &rep);
    printf("failure: job %zu: %s; %zu succeeded, %zu cancelled, "
           "%zu never started\n",
           rep.failed_index, strerror(-rc), rep.succeeded, rep.cancelled,
           rep.not_started);
    bad |= rc != -EIO || rep.failed_index != 13 ||
           rep.succeeded + rep.cancelled + rep.not_started + 1 != N;
    for (size_t i = 0; i < N; i++)
        free(results[i]); /* the non-NULL ones succeeded */

    printf("at most %d jobs ran at once (limit %d)\n", atomic_load(&most), K);
    bad |= atomic_load(&most) > K;
    return (void *)(intptr_t)bad;
}

int main(void)
{
    void *bad = (void *)1;
    if (sq_run(demo, NULL, NULL, &bad) != 0 || bad) {
        fprintf(stderr, "processor_demo: FAILED\n");
        return 1;
    }
    printf("processor_demo: ok\n");
    return 0;
}
