/* sq_once and sq_once_cell: thousands of concurrent callers (tasks and
 * plain threads) run the initialiser exactly once and all see what it
 * did; a failed initialiser leaves the once undone and the next waiter,
 * in arrival order, tries; cancelled or timed-out waiters run nothing and
 * do not disturb the others; an aborted initialiser's own result
 * decides. */
#include "testlib.h"

#include "squirrel/once.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

static const sq_spawn_opts small = {.stack_size = SQ_STACK_MIN};

/* ------------------------------------------------------------- basics */

static int count_ok(void *arg)
{
    ++*(int *)arg;
    return 0;
}

static int count_positive(void *arg)
{
    ++*(int *)arg;
    return 7;
}

static int count_fail(void *arg)
{
    ++*(int *)arg;
    return -EIO;
}

static int make_value(void *arg, void **value)
{
    ++*(int *)arg;
    *value = arg;
    return 0;
}

static int make_null(void *arg, void **value)
{
    ++*(int *)arg;
    *value = NULL;
    return 0;
}

static int fail_value(void *arg, void **value)
{
    ++*(int *)arg;
    *value = (void *)1; /* must not be stored */
    return -ENOENT;
}

TEST(once_and_cell_basics_from_a_plain_thread)
{
    sq_once o;
    int runs = 0;
    CHECK_EQ(sq_once_init(&o), 0);
    CHECK(!sq_once_is_done(&o));
    CHECK_EQ(sq_once_call_until(&o, count_ok, &runs, -1), -EINVAL);
    CHECK_EQ(sq_once_call(&o, count_fail, &runs), -EIO);
    CHECK_EQ(runs, 1);
    CHECK(!sq_once_is_done(&o));
    CHECK_EQ(sq_once_destroy(&o), 0);
    CHECK_EQ(sq_once_call(&o, count_ok, &runs), 0);
    CHECK_EQ(runs, 2);
    CHECK(sq_once_is_done(&o));
    CHECK_EQ(sq_once_call(&o, count_ok, &runs), 0);
    CHECK_EQ(sq_once_call(&o, count_fail, &runs), 0);
    CHECK_EQ(sq_once_call_until(&o, count_ok, &runs, 0), 0);
    CHECK_EQ(runs, 2);
    CHECK_EQ(sq_once_destroy(&o), 0);

    sq_once p = SQ_ONCE_INITIALIZER;
    CHECK_EQ(sq_once_call(&p, count_positive, &runs), 0); /* >= 0: done */
    CHECK_EQ(runs, 3);
    CHECK(sq_once_is_done(&p));

    sq_once_cell c;
    void *v = (void *)2;
    int made = 0;
    CHECK_EQ(sq_once_cell_init(&c), 0);
    CHECK_EQ(sq_once_cell_get(&c, &v), -EAGAIN);
    CHECK_EQ((intptr_t)v, 2); /* untouched */
    CHECK_EQ(sq_once_cell_get_or_init(&c, fail_value, &made, &v), -ENOENT);
    CHECK_EQ(sq_once_cell_get(&c, &v), -EAGAIN);
    CHECK_EQ(sq_once_cell_get_or_init_until(&c, make_value, &made, &v, -1),
             -EINVAL);
    CHECK_EQ(sq_once_cell_get_or_init(&c, make_value, &made, &v), 0);
    CHECK(v == &made);
    CHECK_EQ(made, 2);
    v = NULL;
    CHECK_EQ(sq_once_cell_get(&c, &v), 0);
    CHECK(v == &made);
    CHECK_EQ(sq_once_cell_get_or_init(&c, make_null, &made, &v), 0);
    CHECK(v == &made);
    CHECK_EQ(sq_once_cell_get(&c, NULL), 0);
    CHECK_EQ(made, 2);
    CHECK_EQ(sq_once_cell_destroy(&c), 0);

    sq_once_cell n = SQ_ONCE_CELL_INITIALIZER; /* NULL is a value too */
    CHECK_EQ(sq_once_cell_get_or_init(&n, make_null, &made, NULL), 0);
    v = (void *)3;
    CHECK_EQ(sq_once_cell_get(&n, &v), 0);
    CHECK(v == NULL);
}

/* ------------------------------------------------- thousands of callers */

#define CALLERS (SQ_TEST_SLOW ? 1000 : 4000)
#define CALLER_THREADS 4

typedef struct big {
    long payload[8]; /* written by init, plain: the once publishes it */
} big;

typedef struct crowd {
    sq_once_cell cell;
    sq_once once;
    big obj, obj2; /* set up by the cell's init and the once's */
    atomic_int runs, go, seen;
} crowd;

/* A slow init: everyone else piles up waiting. */
static void fill(crowd *c, big *b)
{
    atomic_fetch_add(&c->runs, 1);
    sq_sleep(SQ_MSEC);
    for (int k = 0; k < 8; k++)
        b->payload[k] = 1000 + k;
}

static int crowd_init(void *arg, void **value)
{
    crowd *c = arg;
    fill(c, &c->obj);
    *value = &c->obj;
    return 0;
}

static int crowd_once(void *arg)
{
    crowd *c = arg;
    fill(c, &c->obj2);
    return 0;
}

static void crowd_call(crowd *c, bool use_cell)
{
    big *b = &c->obj2;
    if (use_cell) {
        void *v = NULL;
        CHECK_EQ(sq_once_cell_get_or_init(&c->cell, crowd_init, c, &v), 0);
        CHECK(v == &c->obj);
        b = v;
    } else {
        CHECK_EQ(sq_once_call(&c->once, crowd_once, c), 0);
    }
    for (int k = 0; k < 8; k++)
        CHECK_EQ(b->payload[k], 1000 + k);
    atomic_fetch_add(&c->seen, 1);
}

static void *crowd_task(void *arg)
{
    crowd *c = arg;
    crowd_call(c, sq_task_id() % 2);
    return NULL;
}

static void *crowd_thread(void *arg)
{
    crowd *c = arg;
    while (!atomic_load(&c->go))
        sched_yield();
    crowd_call(c, true);
    crowd_call(c, false);
    return NULL;
}

static void *crowd_root(void *arg)
{
    crowd *c = arg;
    static sq_task t[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        CHECK_EQ(sq_spawn(&t[i], crowd_task, c, &small), 0);
        if (i == CALLERS / 2)
            atomic_store(&c->go, 1);
    }
    for (int i = 0; i < CALLERS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    return NULL;
}

TEST(thousands_of_callers_run_init_exactly_once_and_see_it)
{
    for (int round = 0; round < 3; round++) {
        static crowd c;
        memset(&c, 0, sizeof c);
        sq_once_cell_init(&c.cell);
        sq_once_init(&c.once);
        pthread_t th[CALLER_THREADS];
        for (int i = 0; i < CALLER_THREADS; i++)
            CHECK_EQ(pthread_create(&th[i], NULL, crowd_thread, &c), 0);
        sq_test_run(2, crowd_root, &c);
        for (int i = 0; i < CALLER_THREADS; i++)
            pthread_join(th[i], NULL);
        CHECK_EQ(atomic_load(&c.runs), 2); /* once for the cell, once for once */
        CHECK_EQ(atomic_load(&c.seen), CALLERS + 2 * CALLER_THREADS);
        CHECK_EQ(sq_once_cell_destroy(&c.cell), 0);
        CHECK_EQ(sq_once_destroy(&c.once), 0);
    }
}

/* ------------------------------------------------- failure, then retry */

#define ORDER_N 8

typedef struct order {
    sq_once o;
    atomic_int started, attempts, fail_first;
    int attempt_by[ORDER_N]; /* who ran each attempt, in order */
    int rc[ORDER_N];
    atomic_int hold; /* the first init waits while this is set */
} order;

typedef struct order_arg {
    order *o;
    int i;
    int64_t deadline;
} order_arg;

static int order_init(void *arg)
{
    order_arg *a = arg;
    order *o = a->o;
    int n = atomic_fetch_add(&o->attempts, 1);
    o->attempt_by[n] = a->i;
    while (atomic_load(&o->hold))
        sq_yield();
    return n < atomic_load(&o->fail_first) ? -EIO - n : 0;
}

static void *order_caller(void *arg)
{
    order_arg *a = arg;
    atomic_fetch_add(&a->o->started, 1);
    a->o->rc[a->i] = sq_once_call_until(&a->o->o, order_init, a, a->deadline);
    return NULL;
}

/* One worker: a caller has queued by the time its start is counted. */
static void spawn_callers(order *o, order_arg *args, sq_task *t, int n)
{
    for (int i = 0; i < n; i++) {
        if (args[i].deadline == 0)
            args[i].deadline = SQ_FOREVER;
        args[i].o = o;
        args[i].i = i;
        CHECK_EQ(sq_spawn(&t[i], order_caller, &args[i], NULL), 0);
        while (atomic_load(&o->started) < i + 1)
            sq_yield();
    }
}

static void *retry_root(void *arg)
{
    (void)arg;
    order o = {.fail_first = 3, .hold = 1};
    sq_once_init(&o.o);
    order_arg args[ORDER_N] = {{0}};
    sq_task t[ORDER_N];
    spawn_callers(&o, args, t, ORDER_N);
    CHECK_EQ(sq_once_destroy(&o.o), -EBUSY);
    atomic_store(&o.hold, 0);
    for (int i = 0; i < ORDER_N; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    /* Callers 0, 1, 2 failed in turn, 3 succeeded, the rest ran nothing. */
    CHECK_EQ(atomic_load(&o.attempts), 4);
    for (int n = 0; n < 4; n++)
        CHECK_EQ(o.attempt_by[n], n);
    for (int i = 0; i < ORDER_N; i++)
        CHECK_EQ(o.rc[i], i < 3 ? -EIO - i : 0);
    CHECK(sq_once_is_done(&o.o));
    CHECK_EQ(sq_once_destroy(&o.o), 0);
    return NULL;
}

TEST(failed_init_is_retried_by_the_next_waiter_in_order)
{
    sq_test_run(1, retry_root, NULL);
}

/* Waiters 1, 3 and 5 are aborted, 6 times out, while 0's init runs (and
 * fails): they return without running anything, and the right to try
 * passes over them to 2, which succeeds; 4 and 7 just see it done. */
static void *cancel_root(void *arg)
{
    (void)arg;
    order o = {.fail_first = 1, .hold = 1};
    sq_once_init(&o.o);
    order_arg args[ORDER_N] = {{0}};
    args[6].deadline = sq_now() + 2 * SQ_MSEC;
    sq_task t[ORDER_N];
    spawn_callers(&o, args, t, ORDER_N);
    for (int i = 1; i < 6; i += 2)
        CHECK_EQ(sq_abort(t[i]), 0);
    CHECK_EQ(sq_join(t[6], NULL), 0); /* its deadline passes */
    atomic_store(&o.hold, 0);
    for (int i = 0; i < ORDER_N; i++)
        sq_join(t[i], NULL);
    static const int want[ORDER_N] = {-EIO, -ECANCELED, 0, -ECANCELED, 0,
                                      -ECANCELED, -ETIMEDOUT, 0};
    for (int i = 0; i < ORDER_N; i++)
        CHECK_EQ(o.rc[i], want[i]);
    CHECK_EQ(atomic_load(&o.attempts), 2);
    CHECK_EQ(o.attempt_by[0], 0);
    CHECK_EQ(o.attempt_by[1], 2);
    CHECK_EQ(sq_once_destroy(&o.o), 0);
    return NULL;
}

TEST(cancelled_and_timed_out_waiters_run_nothing)
{
    sq_test_run(1, cancel_root, NULL);
}

/* The initialiser's task is aborted while init waits: init's result
 * decides.  Passing -ECANCELED on leaves the once undone for the next
 * waiter; ignoring it (returning 0) makes it done. */
typedef struct aborted_init {
    sq_once o;
    atomic_int in_init;
    int ignore; /* 1: init returns 0 anyway */
    int rc[2];
} aborted_init;

static int sleepy_init(void *arg)
{
    aborted_init *a = arg;
    atomic_store(&a->in_init, 1);
    int rc = sq_sleep(10 * SQ_SEC); /* cut short by the abort */
    CHECK_EQ(rc, -ECANCELED);
    return a->ignore ? 0 : rc;
}

static int quick_init(void *arg)
{
    (void)arg;
    return 0;
}

static void *sleepy_caller(void *arg)
{
    aborted_init *a = arg;
    a->rc[0] = sq_once_call(&a->o, sleepy_init, a);
    return NULL;
}

static void *quick_caller(void *arg)
{
    aborted_init *a = arg;
    a->rc[1] = sq_once_call(&a->o, quick_init, a);
    return NULL;
}

static void *aborted_init_root(void *arg)
{
    (void)arg;
    for (int ignore = 0; ignore < 2; ignore++) {
        aborted_init a = {.ignore = ignore, .rc = {1, 1}};
        sq_once_init(&a.o);
        sq_task s, q;
        CHECK_EQ(sq_spawn(&s, sleepy_caller, &a, NULL), 0);
        while (!atomic_load(&a.in_init))
            sq_yield();
        CHECK_EQ(sq_spawn(&q, quick_caller, &a, NULL), 0);
        sq_yield(); /* q queues */
        CHECK_EQ(sq_abort(s), 0);
        sq_join(s, NULL);
        CHECK_EQ(sq_join(q, NULL), 0);
        CHECK_EQ(a.rc[0], ignore ? 0 : -ECANCELED);
        CHECK_EQ(a.rc[1], 0);
        CHECK(sq_once_is_done(&a.o));
    }
    return NULL;
}

TEST(aborted_initialiser_decides_by_its_own_result)
{
    sq_test_run(1, aborted_init_root, NULL);
}

/* ------------------------------------------------------------ cancel storm */

#define STORM_CALLERS (SQ_TEST_SLOW ? 3000 : 10000)

#define STORM_FIRST_FAILURES 50

typedef struct storm {
    sq_once_cell cell;
    atomic_int successes, attempts;
    atomic_long failures, withdrawn, got;
    big obj;
} storm;

/* Fails the first attempts, then at random (so the right to try keeps
 * moving through the queue), and waits a little either way. */
static int storm_init(void *arg, void **value)
{
    storm *s = arg;
    uint32_t x = (uint32_t)sq_task_id() * 2654435761u | 1;
    int rc = sq_sleep((int64_t)(sq_test_rnd(&x) % 50) * SQ_USEC);
    if (rc)
        return rc;
    if (atomic_fetch_add(&s->attempts, 1) < STORM_FIRST_FAILURES ||
        sq_test_rnd(&x) % 8 != 0)
        return -EAGAIN;
    atomic_fetch_add(&s->successes, 1);
    s->obj.payload[0] = 77;
    *value = &s->obj;
    return 0;
}

static void *storm_caller(void *arg)
{
    storm *s = arg;
    uint32_t x = (uint32_t)sq_task_id() * 2246822519u | 1;
    int64_t dl = sq_test_rnd(&x) % 3 ? SQ_FOREVER
                             : sq_now() + (int64_t)(sq_test_rnd(&x) % (2 * SQ_MSEC));
    void *v = NULL;
    int rc = sq_once_cell_get_or_init_until(&s->cell, storm_init, s, &v, dl);
    if (rc == 0) {
        CHECK(v == &s->obj);
        CHECK_EQ(s->obj.payload[0], 77);
        atomic_fetch_add(&s->got, 1);
    } else if (rc == -EAGAIN) {
        atomic_fetch_add(&s->failures, 1);
    } else {
        CHECK(rc == -ECANCELED || rc == -ETIMEDOUT);
        atomic_fetch_add(&s->withdrawn, 1);
    }
    return NULL;
}

static void *storm_root(void *arg)
{
    sq_test_cancel_storm(&(sq_test_storm){
        .tasks = STORM_CALLERS, .fn = storm_caller, .arg = arg,
        .every = 16, .aborts = 8, .seed = 777});
    return NULL;
}

TEST(cancel_storm_runs_init_to_success_exactly_once)
{
    for (int round = 0; round < 2; round++) {
        static storm s;
        memset(&s, 0, sizeof s);
        sq_once_cell_init(&s.cell);
        sq_test_run(2, storm_root, &s);
        void *v = NULL;
        if (atomic_load(&s.got) > 0) {
            CHECK_EQ(atomic_load(&s.successes), 1);
            CHECK_EQ(sq_once_cell_get(&s.cell, &v), 0);
            CHECK(v == &s.obj);
        } else {
            CHECK_EQ(atomic_load(&s.successes), 0);
            CHECK_EQ(sq_once_cell_get(&s.cell, &v), -EAGAIN);
        }
        CHECK(atomic_load(&s.got) > 0);
        CHECK(atomic_load(&s.failures) > 0);
        CHECK(atomic_load(&s.withdrawn) > 0);
        CHECK_EQ(sq_once_cell_destroy(&s.cell), 0);
    }
}
