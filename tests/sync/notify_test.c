/* sq_notify: a wake-up is stored (at most one), none is lost over many
 * rounds of ping-pong, notify_all wakes every current waiter and stores
 * nothing. */
#include "testlib.h"

#include "squirrel/sync.h"

#include <pthread.h>
#include <stdatomic.h>

TEST(one_stored_wake_up_at_most)
{
    sq_notify n;
    CHECK_EQ(sq_notify_init(&n), 0);
    sq_notify_one(&n);
    sq_notify_one(&n);
    CHECK_EQ(sq_notify_wait(&n), 0); /* stored: no wait */
    CHECK_EQ(sq_notify_wait_until(&n, sq_now() + SQ_MSEC), -ETIMEDOUT);
    CHECK_EQ(sq_notify_wait_until(&n, -1), -EINVAL);
    sq_notify_all(&n); /* nobody waits: stores nothing */
    CHECK_EQ(sq_notify_wait_until(&n, sq_now() + SQ_MSEC), -ETIMEDOUT);
    sq_notify s = SQ_NOTIFY_INITIALIZER;
    CHECK_EQ(sq_notify_wait_until(&s, 0), -ETIMEDOUT);
}

/* ---------------------------------------------------------- ping-pong */

#define ROUNDS 100000
typedef struct pp {
    sq_notify to_a, to_b;
    long a_count, b_count; /* each written by one side only */
    long shared;           /* handed back and forth: data race if lost */
} pp;

static void *pp_b(void *arg)
{
    pp *p = arg;
    for (long i = 0; i < ROUNDS; i++) {
        CHECK_EQ(sq_notify_wait(&p->to_b), 0);
        p->shared++;
        p->b_count++;
        sq_notify_one(&p->to_a);
    }
    return NULL;
}

static void *pp_root(void *arg)
{
    pp *p = arg;
    sq_task b;
    CHECK_EQ(sq_spawn(&b, pp_b, p, NULL), 0);
    for (long i = 0; i < ROUNDS; i++) {
        p->shared++;
        sq_notify_one(&p->to_b);
        CHECK_EQ(sq_notify_wait(&p->to_a), 0);
        p->a_count++;
    }
    CHECK_EQ(sq_join(b, NULL), 0);
    return NULL;
}

TEST(ping_pong_loses_no_wake_up)
{
    pp p = {.a_count = 0};
    sq_notify_init(&p.to_a);
    sq_notify_init(&p.to_b);
    sq_test_run(2, pp_root, &p);
    CHECK_EQ(p.a_count, ROUNDS);
    CHECK_EQ(p.b_count, ROUNDS);
    CHECK_EQ(p.shared, 2 * ROUNDS);
}

/* The same between a task and a plain thread. */
static void *pp_thread_b(void *arg)
{
    return pp_b(arg);
}

static void *pp_root_thread(void *arg)
{
    pp *p = arg;
    for (long i = 0; i < ROUNDS / 10; i++) {
        p->shared++;
        sq_notify_one(&p->to_b);
        CHECK_EQ(sq_notify_wait(&p->to_a), 0);
        p->a_count++;
    }
    return NULL;
}

static void *pp_thread_side(void *arg)
{
    pp *p = arg;
    for (long i = 0; i < ROUNDS / 10; i++) {
        CHECK_EQ(sq_notify_wait(&p->to_b), 0);
        p->shared++;
        p->b_count++;
        sq_notify_one(&p->to_a);
    }
    return NULL;
}

TEST(ping_pong_between_task_and_thread)
{
    (void)pp_thread_b;
    pp p = {.a_count = 0};
    sq_notify_init(&p.to_a);
    sq_notify_init(&p.to_b);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, pp_thread_side, &p), 0);
    sq_test_run(2, pp_root_thread, &p);
    pthread_join(th, NULL);
    CHECK_EQ(p.a_count, ROUNDS / 10);
    CHECK_EQ(p.b_count, ROUNDS / 10);
    CHECK_EQ(p.shared, 2 * (ROUNDS / 10));
}

/* --------------------------------------------------------- notify_all */

#define WAITERS 200
typedef struct all {
    sq_notify n;
    atomic_int arrived, woken;
} all;

static void *all_waiter(void *arg)
{
    all *a = arg;
    atomic_fetch_add(&a->arrived, 1);
    CHECK_EQ(sq_notify_wait(&a->n), 0);
    atomic_fetch_add(&a->woken, 1);
    return NULL;
}

/* On one worker a waiter runs from counting itself to parking without
 * interruption, so once all have counted themselves all are waiting. */
static void wait_arrived(all *a, int n)
{
    while (atomic_load(&a->arrived) < n)
        sq_yield();
}

static void *all_root(void *arg)
{
    (void)arg;
    for (int round = 0; round < 20; round++) {
        all a = {.arrived = 0, .woken = 0};
        sq_notify_init(&a.n);
        sq_task t[WAITERS];
        for (int i = 0; i < WAITERS; i++)
            CHECK_EQ(sq_spawn(&t[i], all_waiter, &a, NULL), 0);
        wait_arrived(&a, WAITERS);
        CHECK_EQ(atomic_load(&a.woken), 0);
        sq_notify_all(&a.n);
        for (int i = 0; i < WAITERS; i++)
            CHECK_EQ(sq_join(t[i], NULL), 0);
        CHECK_EQ(atomic_load(&a.woken), WAITERS);
        /* Nothing stored for later waiters. */
        CHECK_EQ(sq_notify_wait_until(&a.n, sq_now() + 100 * SQ_USEC),
                 -ETIMEDOUT);
    }
    return NULL;
}

TEST(notify_all_wakes_every_waiter_and_stores_nothing)
{
    sq_test_run(1, all_root, NULL);
}

/* notify_one wakes exactly one of several waiters, in arrival order. */
static void *one_root(void *arg)
{
    (void)arg;
    all a = {.arrived = 0, .woken = 0};
    sq_notify_init(&a.n);
    sq_task t[3];
    for (int i = 0; i < 3; i++)
        CHECK_EQ(sq_spawn(&t[i], all_waiter, &a, NULL), 0);
    wait_arrived(&a, 3);
    for (int i = 1; i <= 3; i++) {
        sq_notify_one(&a.n);
        CHECK_EQ(sq_join(t[i - 1], NULL), 0); /* the oldest one */
        sq_sleep(200 * SQ_USEC);
        CHECK_EQ(atomic_load(&a.woken), i);
    }
    return NULL;
}

TEST(notify_one_wakes_the_oldest_waiter_only)
{
    sq_test_run(1, one_root, NULL);
}

static void *abortable_waiter(void *arg)
{
    return (void *)(intptr_t)sq_notify_wait(arg);
}

static void *cancel_root(void *arg)
{
    (void)arg;
    sq_notify n;
    sq_notify_init(&n);
    sq_task t;
    CHECK_EQ(sq_spawn(&t, abortable_waiter, &n, NULL), 0);
    sq_sleep(SQ_MSEC);
    CHECK_EQ(sq_abort(t), 0);
    void *r;
    CHECK_EQ(sq_join(t, &r), -ECANCELED);
    /* -ECANCELED from the wait, or NULL if it was aborted before it ran. */
    CHECK((intptr_t)r == -ECANCELED || r == NULL);
    /* The aborted waiter consumed nothing: a notify is stored for us. */
    sq_notify_one(&n);
    CHECK_EQ(sq_notify_wait_until(&n, sq_now() + SQ_MSEC), 0);
    return NULL;
}

TEST(aborted_waiter_consumes_nothing)
{
    sq_test_run(2, cancel_root, NULL);
}
