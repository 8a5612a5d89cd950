/* sq_oneshot: the value arrives whichever side comes first, every order of
 * close is handled, deadlines and cancellation leave the value
 * receivable, and a channel on the receiver's stack is safe to discard. */
#include "testlib.h"

#include "squirrel/sync.h"

#include <stdatomic.h>

static const sq_spawn_opts small = {.stack_size = SQ_STACK_MIN};

TEST(send_then_recv_and_misuse)
{
    sq_oneshot o;
    CHECK_EQ(sq_oneshot_init(&o), 0);
    CHECK_EQ(sq_oneshot_send(&o, (void *)42), 0);
    CHECK_EQ(sq_oneshot_send(&o, (void *)43), -EINVAL);
    void *v = NULL;
    CHECK_EQ(sq_oneshot_recv(&o, &v), 0);
    CHECK_EQ((intptr_t)v, 42);
    CHECK_EQ(sq_oneshot_recv(&o, &v), -EPIPE); /* spent */
    CHECK_EQ(sq_oneshot_recv_until(&o, &v, -1), -EINVAL);
}

TEST(close_in_every_order)
{
    sq_oneshot o;
    void *v = NULL;

    /* close_send before anything: recv sees -EPIPE, send is refused. */
    sq_oneshot_init(&o);
    sq_oneshot_close_send(&o);
    sq_oneshot_close_send(&o);
    CHECK_EQ(sq_oneshot_send(&o, (void *)1), -EINVAL);
    CHECK_EQ(sq_oneshot_recv(&o, &v), -EPIPE);

    /* send, then close_send: the value is still delivered. */
    sq_oneshot_init(&o);
    CHECK_EQ(sq_oneshot_send(&o, (void *)2), 0);
    sq_oneshot_close_send(&o);
    CHECK_EQ(sq_oneshot_recv(&o, &v), 0);
    CHECK_EQ((intptr_t)v, 2);

    /* close_recv, then send: -EPIPE; recv does not wait. */
    sq_oneshot_init(&o);
    sq_oneshot_close_recv(&o);
    sq_oneshot_close_recv(&o);
    CHECK_EQ(sq_oneshot_send(&o, (void *)3), -EPIPE);
    CHECK_EQ(sq_oneshot_recv(&o, &v), -EPIPE);

    /* send, then close_recv: the value can still be taken. */
    sq_oneshot_init(&o);
    CHECK_EQ(sq_oneshot_send(&o, (void *)4), 0);
    sq_oneshot_close_recv(&o);
    CHECK_EQ(sq_oneshot_recv(&o, &v), 0);
    CHECK_EQ((intptr_t)v, 4);

    /* close_recv, then close_send. */
    sq_oneshot_init(&o);
    sq_oneshot_close_recv(&o);
    sq_oneshot_close_send(&o);
    CHECK_EQ(sq_oneshot_recv(&o, &v), -EPIPE);

    /* close_send, then close_recv. */
    sq_oneshot_init(&o);
    sq_oneshot_close_send(&o);
    sq_oneshot_close_recv(&o);
    CHECK_EQ(sq_oneshot_recv(&o, &v), -EPIPE);

    sq_oneshot s = SQ_ONESHOT_INITIALIZER;
    CHECK_EQ(sq_oneshot_send(&s, NULL), 0);
    CHECK_EQ(sq_oneshot_recv(&s, NULL), 0);
}

static void *late_sender(void *arg)
{
    sq_sleep(SQ_MSEC);
    return (void *)(intptr_t)sq_oneshot_send(arg, (void *)7);
}

static void *late_closer(void *arg)
{
    sq_sleep(SQ_MSEC);
    sq_oneshot_close_send(arg);
    return NULL;
}

static void *waiting_root(void *arg)
{
    (void)arg;
    sq_oneshot o;
    void *v = NULL, *r;
    sq_task t;

    sq_oneshot_init(&o); /* recv waits, then the value comes */
    CHECK_EQ(sq_spawn(&t, late_sender, &o, NULL), 0);
    CHECK_EQ(sq_oneshot_recv(&o, &v), 0);
    CHECK_EQ((intptr_t)v, 7);
    CHECK_EQ(sq_join(t, &r), 0);
    CHECK_EQ((intptr_t)r, 0);

    sq_oneshot_init(&o); /* recv waits, then the sender closes */
    CHECK_EQ(sq_spawn(&t, late_closer, &o, NULL), 0);
    CHECK_EQ(sq_oneshot_recv(&o, &v), -EPIPE);
    CHECK_EQ(sq_join(t, NULL), 0);

    sq_oneshot_init(&o); /* the deadline fires; the value comes later */
    int64_t t0 = sq_now();
    CHECK_EQ(sq_oneshot_recv_until(&o, &v, t0 + 2 * SQ_MSEC), -ETIMEDOUT);
    CHECK(sq_now() - t0 >= 2 * SQ_MSEC);
    CHECK_EQ(sq_oneshot_send(&o, (void *)8), 0);
    CHECK_EQ(sq_oneshot_recv_until(&o, &v, 0), 0); /* there: no wait */
    CHECK_EQ((intptr_t)v, 8);
    return NULL;
}

TEST(recv_waits_for_send_close_or_deadline)
{
    sq_test_run(2, waiting_root, NULL);
}

static void *abortable_recv(void *arg)
{
    return (void *)(intptr_t)sq_oneshot_recv(arg, NULL);
}

static void *cancel_root(void *arg)
{
    (void)arg;
    sq_oneshot o;
    sq_oneshot_init(&o);
    sq_task t;
    CHECK_EQ(sq_spawn(&t, abortable_recv, &o, NULL), 0);
    sq_sleep(SQ_MSEC);
    CHECK_EQ(sq_abort(t), 0);
    void *r, *v = NULL;
    CHECK_EQ(sq_join(t, &r), -ECANCELED);
    /* -ECANCELED from the wait, or NULL if it was aborted before it ran. */
    CHECK((intptr_t)r == -ECANCELED || r == NULL);
    CHECK_EQ(sq_oneshot_send(&o, (void *)9), 0);
    CHECK_EQ(sq_oneshot_recv(&o, &v), 0);
    CHECK_EQ((intptr_t)v, 9);
    return NULL;
}

TEST(cancelled_recv_leaves_the_value_receivable)
{
    sq_test_run(2, cancel_root, NULL);
}

/* 100,000 channels on the receiver's stack, each fed by a fresh task and
 * discarded as soon as recv returns (ASan sees any late touch). */
typedef struct job {
    sq_oneshot *o;
    long v;
    int mode; /* 0 send, 1 close_send */
} job;

static void *sender(void *arg)
{
    job j = *(job *)arg; /* arg lives on the receiver's stack too */
    if (j.mode == 0)
        CHECK_EQ(sq_oneshot_send(j.o, (void *)(intptr_t)j.v), 0);
    else
        sq_oneshot_close_send(j.o);
    return NULL;
}

static void *stress_root(void *arg)
{
    (void)arg;
    long sum = 0, want = 0;
    for (long i = 0; i < 100000; i++) {
        sq_oneshot o;
        sq_oneshot_init(&o);
        job j = {.o = &o, .v = i, .mode = i % 7 == 3};
        CHECK_EQ(sq_spawn(NULL, sender, &j, &small), 0);
        if (i % 3 == 0)
            sq_yield(); /* sometimes the send comes first */
        void *v;
        int rc = sq_oneshot_recv(&o, &v);
        if (j.mode == 0) {
            CHECK_EQ(rc, 0);
            CHECK_EQ((intptr_t)v, i);
            sum += (long)(intptr_t)v;
            want += i;
        } else {
            CHECK_EQ(rc, -EPIPE);
        }
    }
    CHECK_EQ(sum, want);
    return NULL;
}

TEST(stack_channels_fed_by_fresh_tasks)
{
    sq_test_run(2, stress_root, NULL);
}
