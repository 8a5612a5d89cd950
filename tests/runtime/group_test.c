/* Task groups: next in completion order, wait_all, cancel_all, destroy. */
#include "testlib.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

static void *sleep_then_return(void *arg)
{
    intptr_t ms = (intptr_t)arg;
    int rc = sq_sleep(ms * SQ_MSEC);
    return rc == 0 ? arg : (void *)-1;
}

/* A member that finishes when the test lets it: the test, not the clock,
 * decides the completion order. */
typedef struct gated {
    atomic_int go;
    intptr_t value;
} gated;

static void *finish_when_let(void *arg)
{
    gated *m = arg;
    while (!atomic_load(&m->go))
        sq_yield();
    return (void *)m->value;
}

static void *completion_order(void *arg)
{
    (void)arg;
    sq_group *g;
    CHECK_EQ(sq_group_create(&g), 0);
    gated m[3] = {{.value = 90}, {.value = 10}, {.value = 50}};
    uint64_t ids[3];
    for (int i = 0; i < 3; i++)
        CHECK_EQ(sq_group_spawn(g, finish_when_let, &m[i], NULL, &ids[i]), 0);
    CHECK_EQ(sq_group_size(g), 3);
    /* Let go one at a time, in an order unlike the spawn order: next
     * waits for the one let go and returns it, never the first spawned. */
    int order[] = {1, 2, 0};
    for (int k = 0; k < 3; k++) {
        int i = order[k];
        atomic_store(&m[i].go, 1);
        uint64_t id;
        void *r;
        CHECK_EQ(sq_group_next(g, &id, &r), 0);
        CHECK_EQ((intptr_t)r, m[i].value);
        CHECK_EQ(id, ids[i]);
        CHECK_EQ(sq_group_size(g), (size_t)(2 - k));
    }
    CHECK_EQ(sq_group_next(g, NULL, NULL), -ENOENT);
    CHECK_EQ(sq_group_size(g), 0);
    sq_group_destroy(g);
    return NULL;
}

TEST(group_next_returns_members_in_completion_order)
{
    sq_test_run(2, completion_order, NULL);
}

static atomic_long finished_normally, cancelled, started;

static void *member(void *arg)
{
    intptr_t i = (intptr_t)arg;
    atomic_fetch_add(&started, 1);
    /* Even members finish at once; odd ones wait until cancelled. */
    int rc = sq_sleep(i % 2 ? 3600 * SQ_SEC : 0);
    if (rc == -ECANCELED)
        atomic_fetch_add(&cancelled, 1);
    else
        atomic_fetch_add(&finished_normally, 1);
    return arg;
}

static void *big_group_cancelled_halfway(void *arg)
{
    (void)arg;
    enum { N = 10000 };
    sq_group *g;
    CHECK_EQ(sq_group_create(&g), 0);
    sq_spawn_opts o = {.stack_size = SQ_STACK_MIN * 2};
    for (intptr_t i = 0; i < N; i++)
        CHECK_EQ(sq_group_spawn(g, member, (void *)i, &o, NULL), 0);
    /* Reap the half that finish by themselves. */
    long reaped = 0, sum = 0;
    for (int i = 0; i < N / 2; i++) {
        void *r;
        CHECK_EQ(sq_group_next(g, NULL, &r), 0);
        CHECK_EQ((intptr_t)r % 2, 0);
        sum += (intptr_t)r;
        reaped++;
    }
    CHECK_EQ(sum, (long)(N / 2) * (N / 2 - 1)); /* 0 + 2 + ... + N-2 */
    CHECK_EQ(sq_group_size(g), N / 2);
    sq_group_cancel_all(g);
    long aborted = 0;
    int rc;
    while ((rc = sq_group_next(g, NULL, NULL)) != -ENOENT) {
        CHECK_EQ(rc, -ECANCELED);
        aborted++;
    }
    CHECK_EQ(reaped + aborted, N);
    sq_group_destroy(g);
    return NULL;
}

TEST(group_of_ten_thousand_cancelled_halfway_without_leaks)
{
    atomic_store(&finished_normally, 0);
    atomic_store(&cancelled, 0);
    atomic_store(&started, 0);
    sq_test_run(2, big_group_cancelled_halfway, NULL);
    CHECK_EQ(atomic_load(&finished_normally), 5000);
    /* Odd members that had started were cancelled in their sleep; any that
     * had not yet started were dropped without running. */
    CHECK_EQ(atomic_load(&cancelled), atomic_load(&started) - 5000);
    CHECK(atomic_load(&cancelled) > 0);
}

static void *destroy_reaps(void *arg)
{
    (void)arg;
    sq_group *g;
    CHECK_EQ(sq_group_create(&g), 0);
    for (intptr_t i = 0; i < 1000; i++)
        CHECK_EQ(sq_group_spawn(g, member, (void *)(i | 1), NULL, NULL), 0);
    sq_sleep(SQ_MSEC);
    sq_group_destroy(g); /* cancels and reaps all 1000 */
    return NULL;
}

TEST(destroying_a_group_cancels_and_reaps_members)
{
    atomic_store(&cancelled, 0);
    atomic_store(&finished_normally, 0);
    atomic_store(&started, 0);
    sq_test_run(2, destroy_reaps, NULL);
    /* Members that had started were cancelled in their sleep; the rest
     * never ran.  sq_run's shutdown would hang on any member left. */
    CHECK(atomic_load(&started) > 0);
    CHECK_EQ(atomic_load(&cancelled), atomic_load(&started));
    CHECK_EQ(atomic_load(&finished_normally), 0);
}

static void *wait_all_root(void *arg)
{
    (void)arg;
    sq_group *g;
    CHECK_EQ(sq_group_create(&g), 0);
    for (intptr_t i = 0; i < 100; i++)
        CHECK_EQ(sq_group_spawn(g, sleep_then_return, (void *)(i % 5), NULL,
                                NULL), 0);
    CHECK_EQ(sq_group_wait_all(g), 0);
    CHECK_EQ(sq_group_size(g), 0);
    int64_t d;
    CHECK_EQ(sq_deadline_in(SQ_MSEC, &d), 0);
    CHECK_EQ(sq_group_next_until(g, NULL, NULL, d), -ENOENT);
    CHECK_EQ(sq_group_spawn(g, sleep_then_return, (void *)50, NULL, NULL), 0);
    CHECK_EQ(sq_deadline_in(SQ_MSEC, &d), 0);
    CHECK_EQ(sq_group_next_until(g, NULL, NULL, d), -ETIMEDOUT);
    CHECK_EQ(sq_group_next_until(g, NULL, NULL, -1), -EINVAL);
    sq_group_destroy(g);
    return NULL;
}

TEST(group_wait_all_and_deadlines)
{
    sq_test_run(2, wait_all_root, NULL);
}

/* ------------------------- a member's -ECANCELED and the caller's own */

static void *sleep_forever_member(void *arg)
{
    atomic_int *started = arg;
    atomic_fetch_add(started, 1);
    int rc = sq_sleep(3600 * SQ_SEC);
    return (void *)(intptr_t)rc;
}

typedef struct reaper {
    sq_group *g;
    atomic_int waiting;
    bool use_next;
} reaper;

/* Waits in the group until aborted; returns what the call returned, and
 * checks that nothing was reaped or stored. */
static void *reap_until_aborted(void *arg)
{
    reaper *r = arg;
    uint64_t id = 12345;
    void *res = (void *)&id;
    int status = 12345;
    atomic_store(&r->waiting, 1);
    int rc = r->use_next ? sq_group_next(r->g, &id, &res)
                         : sq_group_reap(r->g, &id, &res, &status);
    CHECK_EQ(id, 12345);
    CHECK(res == (void *)&id);
    CHECK_EQ(status, 12345);
    return (void *)(intptr_t)rc;
}

static void *tell_apart_root(void *arg)
{
    (void)arg;
    sq_group *g;
    CHECK_EQ(sq_group_create(&g), 0);
    atomic_int started = 0;
    uint64_t ids[2];
    for (int i = 0; i < 2; i++)
        CHECK_EQ(sq_group_spawn(g, sleep_forever_member, &started, NULL,
                                &ids[i]), 0);
    while (atomic_load(&started) < 2)
        sq_yield();

    /* The caller's own abort: -ECANCELED, nothing reaped, nothing
     * stored (both calls). */
    for (int k = 0; k < 2; k++) {
        reaper r = {.g = g, .use_next = k == 1};
        sq_task t;
        CHECK_EQ(sq_spawn(&t, reap_until_aborted, &r, NULL), 0);
        while (!atomic_load(&r.waiting))
            sq_yield();
        sq_sleep(SQ_MSEC); /* usually parked in the group by now */
        CHECK_EQ(sq_abort(t), 0);
        void *rc;
        CHECK_EQ(sq_join(t, &rc), -ECANCELED);
        CHECK_EQ((intptr_t)rc, -ECANCELED);
        CHECK_EQ(sq_group_size(g), 2);
    }

    /* A cancelled member: reap says 0 and hands over its -ECANCELED;
     * next returns -ECANCELED with the id stored. */
    sq_group_cancel_all(g);
    uint64_t id = 0;
    void *res = NULL;
    int status = 0;
    CHECK_EQ(sq_group_reap(g, &id, &res, &status), 0);
    CHECK(id == ids[0] || id == ids[1]);
    CHECK_EQ(status, -ECANCELED);
    CHECK_EQ((intptr_t)res, -ECANCELED);
    uint64_t id2 = 0;
    CHECK_EQ(sq_group_next(g, &id2, &res), -ECANCELED);
    CHECK(id2 != 0 && id2 != id && (id2 == ids[0] || id2 == ids[1]));
    CHECK_EQ(sq_group_reap(g, &id, &res, &status), -ENOENT);
    sq_group_destroy(g);
    return NULL;
}

TEST(group_reap_tells_a_cancelled_member_from_the_callers_own_abort)
{
    sq_test_run(2, tell_apart_root, NULL);
}

/* wait_all by a caller that is aborted but masks cancellation: every
 * member's -ECANCELED is theirs, so it reaps them all and returns 0. */
typedef struct masked_waiter {
    sq_group *g;
    atomic_int started;
} masked_waiter;

static void *masked_wait_all(void *arg)
{
    masked_waiter *m = arg;
    sq_group *g = m->g;
    CHECK_EQ(sq_cancel_mask(), 0);
    atomic_store(&m->started, 1);
    while (!sq_cancelled())
        sq_yield(); /* masked: 0 */
    sq_group_cancel_all(g);
    int rc = sq_group_wait_all(g);
    CHECK_EQ(sq_cancel_unmask(), 0);
    return (void *)(intptr_t)rc;
}

static void *masked_wait_all_root(void *arg)
{
    (void)arg;
    sq_group *g;
    CHECK_EQ(sq_group_create(&g), 0);
    atomic_int started = 0;
    for (int i = 0; i < 10; i++)
        CHECK_EQ(sq_group_spawn(g, sleep_forever_member, &started, NULL,
                                NULL), 0);
    while (atomic_load(&started) < 10)
        sq_yield();
    masked_waiter m = {.g = g, .started = 0};
    sq_task t;
    CHECK_EQ(sq_spawn(&t, masked_wait_all, &m, NULL), 0);
    while (!atomic_load(&m.started)) /* else it would never run */
        sq_yield();
    CHECK_EQ(sq_abort(t), 0);
    void *rc;
    CHECK_EQ(sq_join(t, &rc), -ECANCELED); /* it asked sq_cancelled() */
    CHECK_EQ((intptr_t)rc, 0);
    CHECK_EQ(sq_group_size(g), 0);
    sq_group_destroy(g);
    return NULL;
}

TEST(group_wait_all_of_a_masked_aborted_caller_reaps_everything)
{
    sq_test_run(2, masked_wait_all_root, NULL);
}

/* ------------------------------------------- a group bound to a runtime */

static void *double_it(void *arg)
{
    return (void *)((intptr_t)arg * 2);
}

typedef struct busy_worker {
    atomic_int started, release, gave_up;
} busy_worker;

/* Keeps the runtime's only worker busy (no switch) until released, or
 * 10 s at most. */
static void *hog(void *arg)
{
    busy_worker *b = arg;
    atomic_store(&b->started, 1);
    int64_t limit = sq_now() + 10 * SQ_SEC;
    while (!atomic_load(&b->release))
        if (sq_now() > limit) {
            atomic_store(&b->gave_up, 1);
            break;
        }
    return NULL;
}

/* From a plain thread: create (without any help from the runtime, whose
 * only worker is busy), spawn, reap, wait, destroy. */
TEST(group_created_in_a_runtime_works_from_a_plain_thread)
{
    sq_group *g;
    CHECK_EQ(sq_group_create_in(NULL, &g), -EINVAL);
    sq_runtime *rt;
    CHECK_EQ(sq_runtime_create(&rt, &(sq_runtime_opts){.workers = 1}), 0);
    CHECK_EQ(sq_group_create_in(rt, NULL), -EINVAL);
    CHECK_EQ(sq_group_create(&g), -EPERM); /* not a runtime thread */

    busy_worker b = {.started = 0};
    sq_task h;
    CHECK_EQ(sq_runtime_spawn(rt, &h, hog, &b, NULL), 0);
    while (!atomic_load(&b.started))
        sched_yield();
    CHECK_EQ(sq_group_create_in(rt, &g), 0); /* needs no worker */
    uint64_t ids[20];
    for (intptr_t i = 0; i < 20; i++)
        CHECK_EQ(sq_group_spawn(g, double_it, (void *)i, NULL, &ids[i]), 0);
    CHECK_EQ(sq_group_size(g), 20);
    atomic_store(&b.release, 1);
    CHECK_EQ(sq_join(h, NULL), 0);
    CHECK_EQ(atomic_load(&b.gave_up), 0);

    intptr_t sum = 0;
    for (int i = 0; i < 10; i++) {
        uint64_t id = 0;
        void *r;
        int status = 1;
        CHECK_EQ(sq_group_reap(g, &id, &r, &status), 0); /* blocks */
        CHECK_EQ(status, 0);
        intptr_t k = (intptr_t)r / 2;
        CHECK(k >= 0 && k < 20);
        if (k >= 0 && k < 20)
            CHECK_EQ(id, ids[k]);
        sum += k;
    }
    CHECK_EQ(sq_group_wait_all(g), 0);
    CHECK_EQ(sq_group_size(g), 0);
    CHECK(sum >= 0 + 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9);
    for (intptr_t i = 0; i < 5; i++)
        CHECK_EQ(sq_group_spawn(g, sleep_then_return, (void *)(i + 1), NULL,
                                NULL), 0);
    sq_group_destroy(g); /* cancels and reaps them, from this thread */
    sq_runtime_destroy(rt);
}

/* From a task of another runtime: members run in the group's runtime. */
static void *where_am_i(void *arg)
{
    (void)arg;
    return sq_runtime_current();
}

static void *other_runtime_group_root(void *arg)
{
    sq_runtime *other = arg;
    sq_group *g;
    CHECK_EQ(sq_group_create_in(other, &g), 0);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(sq_group_spawn(g, where_am_i, NULL, NULL, NULL), 0);
    for (int i = 0; i < 10; i++) {
        void *r = NULL;
        int status = 1;
        CHECK_EQ(sq_group_reap(g, NULL, &r, &status), 0);
        CHECK_EQ(status, 0);
        CHECK(r == other);
    }
    sq_group_destroy(g);
    return NULL;
}

TEST(group_created_in_another_runtime_runs_its_members_there)
{
    sq_runtime *other;
    CHECK_EQ(sq_runtime_create(&other, &(sq_runtime_opts){.workers = 1}), 0);
    sq_test_run(2, other_runtime_group_root, other);
    sq_runtime_destroy(other);
}
