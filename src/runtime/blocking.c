/* The blocking pool: threads that run blocking functions for tasks.
 *
 * Threads are started on demand (when a job arrives and none is idle) up
 * to blocking_threads_max, and live until shutdown.  A job is shared by
 * the task and the thread that runs it; whichever of them finishes with it
 * last frees it, so a task that gives up (cancelled, timed out) never
 * leaves the thread pointing at its stack.
 */
#include "internal.h"

#include <stdlib.h>

typedef struct sq__job {
    void *(*fn)(void *);
    void *arg;
    void *result;
    sq__spin lock;
    sq__waiter *waiter;
    bool done;
    bool abandoned;
    struct sq__job *next;
} sq__job;

static void job_complete(sq__job *j)
{
    sq__spin_lock(&j->lock);
    j->done = true;
    if (j->waiter)
        sq__waiter_wake(j->waiter);
    bool abandoned = j->abandoned;
    sq__spin_unlock(&j->lock);
    if (abandoned)
        free(j);
}

static void *pool_thread(void *arg)
{
    sq_runtime *rt = arg;
    pthread_mutex_lock(&rt->bp_lock);
    for (;;) {
        while (!rt->bp_head && !rt->bp_stop) {
            rt->bp_idle++;
            pthread_cond_wait(&rt->bp_cond, &rt->bp_lock);
            rt->bp_idle--;
        }
        sq__job *j = rt->bp_head;
        if (!j)
            break; /* stopping, and the queue is drained */
        rt->bp_head = j->next;
        if (!rt->bp_head)
            rt->bp_tail = NULL;
        pthread_mutex_unlock(&rt->bp_lock);
        j->result = j->fn(j->arg);
        job_complete(j);
        pthread_mutex_lock(&rt->bp_lock);
    }
    pthread_mutex_unlock(&rt->bp_lock);
    return NULL;
}

static int submit(sq_runtime *rt, sq__job *j)
{
    int rc = 0;
    pthread_mutex_lock(&rt->bp_lock);
    if (rt->bp_stop) {
        pthread_mutex_unlock(&rt->bp_lock);
        return -ESHUTDOWN;
    }
    if (rt->bp_idle == 0 && rt->bp_threads < rt->bp_max) {
        pthread_t tid;
        if (pthread_create(&tid, NULL, pool_thread, rt) == 0)
            rt->bp_tids[rt->bp_threads++] = tid;
        else if (rt->bp_threads == 0)
            rc = -EAGAIN; /* no thread at all to run it */
    }
    if (rc == 0) {
        j->next = NULL;
        if (rt->bp_tail)
            rt->bp_tail->next = j;
        else
            rt->bp_head = j;
        rt->bp_tail = j;
        pthread_cond_signal(&rt->bp_cond);
    }
    pthread_mutex_unlock(&rt->bp_lock);
    return rc;
}

int sq_blocking_run_until(void *(*fn)(void *), void *arg, void **result,
                          int64_t deadline)
{
    sq__task *t = sq__task_current();
    if (!t)
        return -EPERM;
    if (!fn || deadline < 0)
        return -EINVAL;
    if (sq__cancel_pending(t))
        return -ECANCELED;
    sq__job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->fn = fn;
    j->arg = arg;
    sq__waiter w;
    sq__waiter_init_for(&w, SQ__WAIT_BLOCKING, j);
    j->waiter = &w;
    int rc = submit(t->rt, j);
    if (rc) {
        free(j);
        return rc;
    }
    rc = sq__waiter_wait(&w, deadline, true);
    sq__spin_lock(&j->lock);
    bool done = j->done;
    j->waiter = NULL;
    if (!done)
        j->abandoned = true; /* the pool thread frees it */
    sq__spin_unlock(&j->lock);
    if (!done)
        return rc;
    if (result)
        *result = j->result;
    free(j);
    return 0;
}

int sq_blocking_run(void *(*fn)(void *), void *arg, void **result)
{
    return sq_blocking_run_until(fn, arg, result, SQ_FOREVER);
}

void sq__blocking_stop(sq_runtime *rt)
{
    pthread_mutex_lock(&rt->bp_lock);
    rt->bp_stop = true;
    pthread_cond_broadcast(&rt->bp_cond);
    int n = rt->bp_threads;
    pthread_mutex_unlock(&rt->bp_lock);
    for (int i = 0; i < n; i++)
        pthread_join(rt->bp_tids[i], NULL);
    rt->bp_threads = 0;
}
