/* sq_mpsc: bounded and unbounded channels.  Messages are delivered exactly
 * once and in order per producer, with tasks on every worker and plain
 * threads sending; a bounded channel never holds more than its capacity;
 * blocked senders get slots in arrival order; closing and dropping work in
 * every order; the try and deadline forms; and a cancel storm in which
 * every message is either delivered once or returned to its sender, slots
 * are not lost and an unbounded channel's memory stays flat. */
#include "testlib.h"

#include "squirrel/mpsc.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

static const sq_spawn_opts small = {.stack_size = SQ_STACK_MIN};

/* ------------------------------------------------------------- basics */

TEST(init_rejects_bad_arguments)
{
    sq_mpsc ch;
    CHECK_EQ(sq_mpsc_init(&ch, 0, 4), -EINVAL);
    CHECK_EQ(sq_mpsc_init(&ch, SQ_MPSC_MAX_ELEM + 1, 4), -EINVAL);
    CHECK_EQ(sq_mpsc_init(&ch, 8, SQ_MPSC_MAX_CAPACITY + 1), -EINVAL);
    CHECK_EQ(sq_mpsc_init(&ch, 8, 4), 0);
    CHECK_EQ(sq_mpsc_capacity(&ch), 4);
    CHECK(sq_mpsc_memory(&ch) >= 4 * 16);
    CHECK_EQ(sq_mpsc_destroy(&ch), 0);
    CHECK_EQ(sq_mpsc_init(&ch, 8, 0), 0);
    CHECK_EQ(sq_mpsc_capacity(&ch), 0);
    CHECK(sq_mpsc_memory(&ch) > 0);
    CHECK_EQ(sq_mpsc_destroy(&ch), 0);
}

/* try_send fills a bounded channel to exactly its capacity, for several
 * capacities (powers of two and not), and the messages come out in order,
 * over several laps of the ring. */
TEST(bounded_holds_exactly_capacity_in_order)
{
    static const size_t caps[] = {1, 2, 3, 5, 8, 100, 1024};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        size_t cap = caps[c];
        sq_mpsc ch;
        CHECK_EQ(sq_mpsc_init(&ch, sizeof(uint64_t), cap), 0);
        uint64_t next_in = 0, next_out = 0;
        for (int lap = 0; lap < 5; lap++) {
            for (size_t i = 0; i < cap; i++) {
                CHECK_EQ(sq_mpsc_try_send(&ch, &next_in), 0);
                next_in++;
            }
            CHECK_EQ(sq_mpsc_len(&ch), cap);
            uint64_t m = 12345;
            CHECK_EQ(sq_mpsc_try_send(&ch, &m), -EAGAIN);
            CHECK_EQ(sq_mpsc_send_until(&ch, &m, 0), -ETIMEDOUT);
            CHECK_EQ(sq_mpsc_len(&ch), cap);
            /* Take half, refill half: freed slots are usable at once. */
            size_t half = (cap + 1) / 2;
            for (size_t i = 0; i < half; i++) {
                CHECK_EQ(sq_mpsc_try_recv(&ch, &m), 0);
                CHECK_EQ(m, next_out++);
            }
            for (size_t i = 0; i < half; i++) {
                CHECK_EQ(sq_mpsc_try_send(&ch, &next_in), 0);
                next_in++;
            }
            CHECK_EQ(sq_mpsc_try_send(&ch, &m), -EAGAIN);
            while (next_out < next_in) {
                CHECK_EQ(sq_mpsc_recv(&ch, &m), 0); /* plain thread */
                CHECK_EQ(m, next_out++);
            }
            CHECK_EQ(sq_mpsc_try_recv(&ch, &m), -EAGAIN);
            CHECK_EQ(sq_mpsc_len(&ch), 0);
        }
        CHECK_EQ(sq_mpsc_destroy(&ch), 0);
    }
}

/* Messages of odd sizes are copied whole, and only their own bytes. */
TEST(messages_of_any_size_round_trip)
{
    static const size_t sizes[] = {1, 3, 4, 8, 13, 16, 24, 100, 5000};
    unsigned char in[5000 + 8], out[5000 + 8];
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        size_t n = sizes[z];
        for (int unbounded = 0; unbounded < 2; unbounded++) {
            sq_mpsc ch;
            CHECK_EQ(sq_mpsc_init(&ch, n, unbounded ? 0 : 7), 0);
            for (int k = 0; k < 50; k++) {
                for (size_t i = 0; i < n; i++)
                    in[i] = (unsigned char)(i * 7 + k);
                int rc = unbounded ? sq_mpsc_send(&ch, in)
                                   : sq_mpsc_try_send(&ch, in);
                CHECK_EQ(rc, 0);
                memset(out, 0xee, sizeof out);
                CHECK_EQ(sq_mpsc_try_recv(&ch, out), 0);
                CHECK(memcmp(in, out, n) == 0);
                CHECK_EQ(out[n], 0xee); /* nothing written past it */
            }
            CHECK_EQ(sq_mpsc_destroy(&ch), 0);
        }
    }
}

/* An unbounded channel takes many blocks' worth of messages from one
 * thread, gives them back in order, and frees the blocks as it drains. */
TEST(unbounded_grows_and_shrinks)
{
    sq_mpsc ch;
    CHECK_EQ(sq_mpsc_init(&ch, sizeof(uint64_t), 0), 0);
    size_t one_block = sq_mpsc_memory(&ch);
    for (int round = 0; round < 3; round++) {
        const uint64_t n = 20000;
        for (uint64_t i = 0; i < n; i++)
            CHECK_EQ(sq_mpsc_send(&ch, &i), 0);
        CHECK_EQ(sq_mpsc_len(&ch), n);
        CHECK(sq_mpsc_memory(&ch) >= n / 63 * one_block);
        for (uint64_t i = 0; i < n; i++) {
            uint64_t m;
            CHECK_EQ(sq_mpsc_try_recv(&ch, &m), 0);
            CHECK_EQ(m, i);
            if (i == n / 2)
                CHECK_EQ(sq_mpsc_len(&ch), n - i - 1);
        }
        CHECK_EQ(sq_mpsc_len(&ch), 0);
        /* The current block and one spare are all that is left. */
        CHECK(sq_mpsc_memory(&ch) <= 2 * one_block);
    }
    uint64_t m;
    CHECK_EQ(sq_mpsc_try_recv(&ch, &m), -EAGAIN);
    CHECK_EQ(sq_mpsc_recv_until(&ch, &m, 0), -ETIMEDOUT);
    CHECK_EQ(sq_mpsc_destroy(&ch), 0);
}

TEST(deadline_forms_and_negative_deadlines)
{
    for (int unbounded = 0; unbounded < 2; unbounded++) {
        sq_mpsc ch;
        CHECK_EQ(sq_mpsc_init(&ch, sizeof(int), unbounded ? 0 : 2), 0);
        int v = 1, out = 0;
        CHECK_EQ(sq_mpsc_send_until(&ch, &v, -1), -EINVAL);
        CHECK_EQ(sq_mpsc_recv_until(&ch, &out, -1), -EINVAL);
        CHECK_EQ(sq_mpsc_len(&ch), 0);
        /* Empty: a deadline in the past or near future times out. */
        CHECK_EQ(sq_mpsc_recv_until(&ch, &out, 0), -ETIMEDOUT);
        int64_t t0 = sq_now();
        CHECK_EQ(sq_mpsc_recv_until(&ch, &out, t0 + SQ_MSEC), -ETIMEDOUT);
        CHECK(sq_now() >= t0 + SQ_MSEC);
        /* A passed deadline still sends and receives when it need not
         * wait. */
        CHECK_EQ(sq_mpsc_send_until(&ch, &v, 0), 0);
        v = 2;
        CHECK_EQ(sq_mpsc_send_until(&ch, &v, 0), 0);
        v = 3;
        if (!unbounded) {
            /* Full: times out without queueing. */
            t0 = sq_now();
            CHECK_EQ(sq_mpsc_send_until(&ch, &v, t0 + SQ_MSEC), -ETIMEDOUT);
            CHECK(sq_now() >= t0 + SQ_MSEC);
            CHECK_EQ(sq_mpsc_len(&ch), 2);
        }
        CHECK_EQ(sq_mpsc_recv_until(&ch, &out, 0), 0);
        CHECK_EQ(out, 1);
        CHECK_EQ(sq_mpsc_recv_until(&ch, &out, SQ_FOREVER), 0);
        CHECK_EQ(out, 2);
        CHECK_EQ(sq_mpsc_try_recv(&ch, &out), -EAGAIN);
        CHECK_EQ(sq_mpsc_destroy(&ch), 0);
    }
}

/* ------------------------------------------------- senders and closing */

TEST(sender_count_and_end_of_stream)
{
    for (int unbounded = 0; unbounded < 2; unbounded++) {
        sq_mpsc ch;
        CHECK_EQ(sq_mpsc_init(&ch, sizeof(int), unbounded ? 0 : 4), 0);
        CHECK_EQ(sq_mpsc_sender_add(&ch), 0);
        CHECK_EQ(sq_mpsc_sender_add(&ch), 0); /* three senders */
        int v = 7, out = 0;
        CHECK_EQ(sq_mpsc_send(&ch, &v), 0);
        CHECK_EQ(sq_mpsc_sender_drop(&ch), 0);
        CHECK_EQ(sq_mpsc_sender_drop(&ch), 0);
        CHECK(!sq_mpsc_is_closed(&ch));
        v = 8;
        CHECK_EQ(sq_mpsc_send(&ch, &v), 0);
        CHECK_EQ(sq_mpsc_sender_drop(&ch), 0); /* the last one */
        CHECK(sq_mpsc_is_closed(&ch));
        CHECK_EQ(sq_mpsc_sender_drop(&ch), -EINVAL);
        CHECK_EQ(sq_mpsc_sender_add(&ch), -EPIPE);
        CHECK_EQ(sq_mpsc_send(&ch, &v), -EPIPE);
        CHECK_EQ(sq_mpsc_try_send(&ch, &v), -EPIPE);
        CHECK_EQ(sq_mpsc_len(&ch), 2);
        /* Drain, then end of stream, repeatedly, in every form. */
        CHECK_EQ(sq_mpsc_recv(&ch, &out), 0);
        CHECK_EQ(out, 7);
        CHECK_EQ(sq_mpsc_try_recv(&ch, &out), 0);
        CHECK_EQ(out, 8);
        CHECK_EQ(sq_mpsc_recv(&ch, &out), -EPIPE);
        CHECK_EQ(sq_mpsc_try_recv(&ch, &out), -EPIPE);
        CHECK_EQ(sq_mpsc_recv_until(&ch, &out, sq_now() + SQ_SEC), -EPIPE);
        CHECK_EQ(sq_mpsc_destroy(&ch), 0);
    }
}

TEST(close_and_recv_close_without_waiters)
{
    for (int unbounded = 0; unbounded < 2; unbounded++) {
        /* close: no more sends, the queue drains, then end of stream. */
        sq_mpsc ch;
        CHECK_EQ(sq_mpsc_init(&ch, sizeof(int), unbounded ? 0 : 4), 0);
        int v = 1, out = 0;
        CHECK_EQ(sq_mpsc_send(&ch, &v), 0);
        sq_mpsc_close(&ch);
        sq_mpsc_close(&ch);
        CHECK(sq_mpsc_is_closed(&ch));
        CHECK_EQ(sq_mpsc_send(&ch, &v), -EPIPE);
        CHECK_EQ(sq_mpsc_try_send(&ch, &v), -EPIPE);
        CHECK_EQ(sq_mpsc_send_until(&ch, &v, 0), -EPIPE);
        CHECK_EQ(sq_mpsc_recv(&ch, &out), 0);
        CHECK_EQ(out, 1);
        CHECK_EQ(sq_mpsc_recv(&ch, &out), -EPIPE);
        CHECK_EQ(sq_mpsc_sender_drop(&ch), 0); /* harmless after close */
        CHECK_EQ(sq_mpsc_recv(&ch, &out), -EPIPE);
        CHECK_EQ(sq_mpsc_destroy(&ch), 0);

        /* recv_close: sends fail, queued messages stay readable, recv no
         * longer waits. */
        CHECK_EQ(sq_mpsc_init(&ch, sizeof(int), unbounded ? 0 : 4), 0);
        v = 2;
        CHECK_EQ(sq_mpsc_send(&ch, &v), 0);
        v = 3;
        CHECK_EQ(sq_mpsc_send(&ch, &v), 0);
        sq_mpsc_recv_close(&ch);
        sq_mpsc_recv_close(&ch);
        CHECK_EQ(sq_mpsc_send(&ch, &v), -EPIPE);
        CHECK_EQ(sq_mpsc_try_recv(&ch, &out), 0);
        CHECK_EQ(out, 2);
        CHECK_EQ(sq_mpsc_recv(&ch, &out), 0);
        CHECK_EQ(out, 3);
        CHECK_EQ(sq_mpsc_recv(&ch, &out), -EPIPE);
        CHECK_EQ(sq_mpsc_destroy(&ch), 0);

        /* recv_close with messages left: destroy discards them. */
        CHECK_EQ(sq_mpsc_init(&ch, sizeof(int), unbounded ? 0 : 4), 0);
        CHECK_EQ(sq_mpsc_send(&ch, &v), 0);
        sq_mpsc_recv_close(&ch);
        CHECK_EQ(sq_mpsc_len(&ch), 1);
        CHECK_EQ(sq_mpsc_destroy(&ch), 0);
    }
}

typedef struct waiter_arg {
    sq_mpsc *ch;
    int value;
    atomic_int started;
    int rc;
    int got;
} waiter_arg;

static void *recv_task(void *arg)
{
    waiter_arg *a = arg;
    atomic_store(&a->started, 1);
    a->rc = sq_mpsc_recv(a->ch, &a->got);
    return NULL;
}

static void *send_task(void *arg)
{
    waiter_arg *a = arg;
    atomic_store(&a->started, 1);
    a->rc = sq_mpsc_send(a->ch, &a->value);
    return NULL;
}

static void *send_thread(void *arg)
{
    return send_task(arg);
}

enum { END_DROP, END_CLOSE, END_RECV_CLOSE };

/* The receiver waits on an empty channel; the stream ends while it waits
 * (last sender dropped, or the channel closed from another task). */
static void *end_while_waiting_root(void *arg)
{
    int how = (int)(intptr_t)arg;
    for (int unbounded = 0; unbounded < 2; unbounded++) {
        sq_mpsc ch;
        CHECK_EQ(sq_mpsc_init(&ch, sizeof(int), unbounded ? 0 : 3), 0);
        CHECK_EQ(sq_mpsc_sender_add(&ch), 0);
        waiter_arg a = {.ch = &ch};
        sq_task t;
        CHECK_EQ(sq_spawn(&t, recv_task, &a, NULL), 0);
        WAIT_UNTIL(sq_mpsc_receiver_waiting(&ch));
        CHECK_EQ(sq_mpsc_destroy(&ch), -EBUSY); /* the receiver waits */
        /* A message first: the receiver takes it and waits again. */
        int v = 5;
        CHECK_EQ(sq_mpsc_send(&ch, &v), 0);
        CHECK_EQ(sq_join(t, NULL), 0);
        CHECK_EQ(a.rc, 0);
        CHECK_EQ(a.got, 5);
        CHECK_EQ(sq_spawn(&t, recv_task, &a, NULL), 0);
        WAIT_UNTIL(sq_mpsc_receiver_waiting(&ch));
        if (how == END_DROP) {
            CHECK_EQ(sq_mpsc_sender_drop(&ch), 0);
            CHECK(!sq_mpsc_is_closed(&ch));
            CHECK_EQ(sq_mpsc_sender_drop(&ch), 0);
        } else if (how == END_CLOSE) {
            sq_mpsc_close(&ch);
        } else {
            sq_mpsc_recv_close(&ch);
        }
        CHECK_EQ(sq_join(t, NULL), 0);
        CHECK_EQ(a.rc, -EPIPE);
        CHECK_EQ(sq_mpsc_destroy(&ch), 0);
    }
    return NULL;
}

TEST(stream_ends_while_the_receiver_waits)
{
    sq_test_run(2, end_while_waiting_root, (void *)(intptr_t)END_DROP);
    sq_test_run(2, end_while_waiting_root, (void *)(intptr_t)END_CLOSE);
    sq_test_run(1, end_while_waiting_root, (void *)(intptr_t)END_RECV_CLOSE);
}

/* A plain thread receives, blocking, while tasks send, and sees end of
 * stream when the last task drops its sender. */
typedef struct thread_rx {
    sq_mpsc *ch;
    long n, bad;
    int end_rc;
} thread_rx;

static void *thread_receiver(void *arg)
{
    thread_rx *r = arg;
    uint32_t x = 99;
    int m;
    int rc;
    for (;;) {
        /* Short deadlines race with arrivals: nothing may be lost. */
        if (sq_test_rnd(&x) % 2)
            rc = sq_mpsc_recv(r->ch, &m);
        else
            rc = sq_mpsc_recv_until(r->ch, &m,
                                    sq_now() + sq_test_rnd(&x) % (50 * SQ_USEC));
        if (rc == -ETIMEDOUT)
            continue;
        if (rc)
            break;
        if (m != r->n)
            r->bad++;
        r->n++;
    }
    r->end_rc = rc;
    return NULL;
}

static void *ordered_sender(void *arg)
{
    sq_mpsc *ch = arg;
    for (int i = 0; i < 3000; i++) {
        CHECK_EQ(sq_mpsc_send(ch, &i), 0);
        if (i % 100 == 0)
            sq_sleep(10 * SQ_USEC); /* let the receiver catch up and wait */
    }
    CHECK_EQ(sq_mpsc_sender_drop(ch), 0);
    return NULL;
}

TEST(plain_thread_receiver_and_task_sender)
{
    for (int unbounded = 0; unbounded < 2; unbounded++) {
        sq_mpsc ch;
        CHECK_EQ(sq_mpsc_init(&ch, sizeof(int), unbounded ? 0 : 16), 0);
        thread_rx r = {.ch = &ch};
        pthread_t th;
        CHECK_EQ(pthread_create(&th, NULL, thread_receiver, &r), 0);
        sq_test_run(2, ordered_sender, &ch);
        pthread_join(th, NULL);
        CHECK_EQ(r.n, 3000);
        CHECK_EQ(r.bad, 0);
        CHECK_EQ(r.end_rc, -EPIPE);
        CHECK_EQ(sq_mpsc_destroy(&ch), 0);
    }
}

/* Senders (tasks and a plain thread) wait in a full channel; the receiver
 * closes (or leaves): they all fail with -EPIPE and their messages are not
 * queued; what was queued before can still be drained. */
#define FULL_WAITERS 6
typedef struct full_arg {
    int how;
    waiter_arg th;
} full_arg;

static void *close_full_root(void *arg)
{
    full_arg *fa = arg;
    sq_mpsc *ch = fa->th.ch;
    waiter_arg a[FULL_WAITERS];
    sq_task t[FULL_WAITERS];
    for (int i = 0; i < FULL_WAITERS; i++) {
        a[i] = (waiter_arg){.ch = ch, .value = 100 + i};
        CHECK_EQ(sq_spawn(&t[i], send_task, &a[i], NULL), 0);
    }
    WAIT_UNTIL(sq_mpsc_senders_waiting(ch) == FULL_WAITERS + 1);
    CHECK_EQ(sq_mpsc_len(ch), 2);
    if (fa->how == END_CLOSE)
        sq_mpsc_close(ch);
    else
        sq_mpsc_recv_close(ch);
    for (int i = 0; i < FULL_WAITERS; i++) {
        CHECK_EQ(sq_join(t[i], NULL), 0);
        CHECK_EQ(a[i].rc, -EPIPE);
    }
    WAIT_UNTIL(sq_mpsc_senders_waiting(ch) == 0); /* the thread too */
    return NULL;
}

TEST(closing_fails_senders_waiting_in_a_full_channel)
{
    for (int how = END_CLOSE; how <= END_RECV_CLOSE; how++) {
        sq_mpsc ch;
        CHECK_EQ(sq_mpsc_init(&ch, sizeof(int), 2), 0);
        int v = 1, out;
        CHECK_EQ(sq_mpsc_send(&ch, &v), 0);
        v = 2;
        CHECK_EQ(sq_mpsc_send(&ch, &v), 0);
        full_arg fa = {.how = how, .th = {.ch = &ch, .value = 99}};
        pthread_t th;
        CHECK_EQ(pthread_create(&th, NULL, send_thread, &fa.th), 0);
        sq_test_run(2, close_full_root, &fa);
        pthread_join(th, NULL);
        CHECK_EQ(fa.th.rc, -EPIPE);
        CHECK_EQ(sq_mpsc_len(&ch), 2);
        CHECK_EQ(sq_mpsc_try_recv(&ch, &out), 0);
        CHECK_EQ(out, 1);
        CHECK_EQ(sq_mpsc_recv(&ch, &out), 0);
        CHECK_EQ(out, 2);
        CHECK_EQ(sq_mpsc_recv(&ch, &out), -EPIPE);
        CHECK_EQ(sq_mpsc_destroy(&ch), 0);
    }
}

/* Blocked senders get the freed slots in arrival order; the receiver
 * frees one slot at a time. */
#define FIFO_N 12
static void *fifo_root(void *arg)
{
    (void)arg;
    sq_mpsc ch;
    CHECK_EQ(sq_mpsc_init(&ch, sizeof(int), 1), 0);
    int v = -1, out;
    CHECK_EQ(sq_mpsc_send(&ch, &v), 0);
    waiter_arg a[FIFO_N];
    sq_task t[FIFO_N];
    for (int i = 0; i < FIFO_N; i++) {
        a[i] = (waiter_arg){.ch = &ch, .value = i};
        CHECK_EQ(sq_spawn(&t[i], send_task, &a[i], NULL), 0);
        /* On one worker a sender runs from counting itself as waiting to
         * parking without interruption: it has queued before the next
         * one comes. */
        WAIT_UNTIL(sq_mpsc_senders_waiting(&ch) == (size_t)i + 1);
    }
    CHECK_EQ(sq_mpsc_destroy(&ch), -EBUSY); /* senders wait */
    CHECK_EQ(sq_mpsc_recv(&ch, &out), 0);
    CHECK_EQ(out, -1);
    for (int i = 0; i < FIFO_N; i++) {
        CHECK_EQ(sq_mpsc_recv(&ch, &out), 0);
        CHECK_EQ(out, i);
    }
    for (int i = 0; i < FIFO_N; i++) {
        CHECK_EQ(sq_join(t[i], NULL), 0);
        CHECK_EQ(a[i].rc, 0);
    }
    CHECK_EQ(sq_mpsc_try_recv(&ch, &out), -EAGAIN);
    CHECK_EQ(sq_mpsc_destroy(&ch), 0);
    return NULL;
}

TEST(blocked_senders_are_served_in_arrival_order)
{
    sq_test_run(1, fifo_root, NULL);
}

/* A slot freed by recv is never held back from a sender, whichever comes
 * first, even if the receiver then stops receiving (recv may hand slots
 * back in batches). */
static void *freed_root(void *arg)
{
    (void)arg;
    for (int order = 0; order < 2; order++) {
        sq_mpsc ch;
        CHECK_EQ(sq_mpsc_init(&ch, sizeof(int), 64), 0);
        int v = 0, out;
        for (int i = 0; i < 64; i++)
            CHECK_EQ(sq_mpsc_try_send(&ch, &v), 0);
        waiter_arg a = {.ch = &ch, .value = 1};
        sq_task t;
        if (order == 0) {
            /* The sender waits first, then one message is received. */
            CHECK_EQ(sq_spawn(&t, send_task, &a, NULL), 0);
            WAIT_UNTIL(sq_mpsc_senders_waiting(&ch) == 1);
            CHECK_EQ(sq_mpsc_recv(&ch, &out), 0);
        } else {
            /* One message is received, then the sender comes. */
            CHECK_EQ(sq_mpsc_recv(&ch, &out), 0);
            CHECK_EQ(sq_spawn(&t, send_task, &a, NULL), 0);
        }
        /* The receiver does nothing more: the send must still finish. */
        CHECK_EQ(sq_join_until(t, NULL, sq_now() + 10 * SQ_SEC), 0);
        CHECK_EQ(a.rc, 0);
        CHECK_EQ(sq_mpsc_len(&ch), 64);
        /* try_send gets freed slots too. */
        CHECK_EQ(sq_mpsc_try_recv(&ch, &out), 0);
        CHECK_EQ(sq_mpsc_try_recv(&ch, &out), 0);
        CHECK_EQ(sq_mpsc_try_send(&ch, &v), 0);
        CHECK_EQ(sq_mpsc_try_send(&ch, &v), 0);
        CHECK_EQ(sq_mpsc_try_send(&ch, &v), -EAGAIN);
        CHECK_EQ(sq_mpsc_destroy(&ch), 0);
    }
    return NULL;
}

TEST(slots_freed_by_recv_are_never_held_back)
{
    sq_test_run(2, freed_root, NULL);
}

/* A cancelled or timed-out sender in a full channel leaves nothing behind;
 * a cancelled or timed-out receiver consumes nothing. */
static void *cancel_root(void *arg)
{
    (void)arg;
    sq_mpsc ch;
    CHECK_EQ(sq_mpsc_init(&ch, sizeof(int), 1), 0);
    int v = 1, out;
    CHECK_EQ(sq_mpsc_send(&ch, &v), 0);
    waiter_arg a = {.ch = &ch, .value = 2};
    sq_task t;
    CHECK_EQ(sq_spawn(&t, send_task, &a, NULL), 0);
    WAIT_UNTIL(sq_mpsc_senders_waiting(&ch) == 1);
    CHECK_EQ(sq_abort(t), 0);
    CHECK_EQ(sq_join(t, NULL), -ECANCELED);
    CHECK_EQ(a.rc, -ECANCELED);
    CHECK_EQ(sq_mpsc_senders_waiting(&ch), 0);
    CHECK_EQ(sq_mpsc_recv(&ch, &out), 0);
    CHECK_EQ(out, 1);
    CHECK_EQ(sq_mpsc_try_recv(&ch, &out), -EAGAIN); /* 2 was not queued */
    /* The slot was not lost: one send fits, the next does not. */
    CHECK_EQ(sq_mpsc_try_send(&ch, &v), 0);
    CHECK_EQ(sq_mpsc_try_send(&ch, &v), -EAGAIN);
    CHECK_EQ(sq_mpsc_recv(&ch, &out), 0);

    /* A receiver aborted while waiting; then a message is still there
     * for the next receive. */
    waiter_arg r = {.ch = &ch};
    CHECK_EQ(sq_spawn(&t, recv_task, &r, NULL), 0);
    WAIT_UNTIL(sq_mpsc_receiver_waiting(&ch));
    CHECK_EQ(sq_abort(t), 0);
    CHECK_EQ(sq_join(t, NULL), -ECANCELED);
    CHECK_EQ(r.rc, -ECANCELED);
    CHECK(!sq_mpsc_receiver_waiting(&ch));
    v = 3;
    CHECK_EQ(sq_mpsc_send(&ch, &v), 0);
    CHECK_EQ(sq_mpsc_recv_until(&ch, &out, 0), 0);
    CHECK_EQ(out, 3);
    CHECK_EQ(sq_mpsc_destroy(&ch), 0);
    return NULL;
}

TEST(cancelled_sender_and_receiver_leave_nothing_behind)
{
    sq_test_run(2, cancel_root, NULL);
}

/* ------------------------------------------------------------ stress */

/* Producers: tasks on both workers and plain threads, each sending its
 * own numbered sequence; the receiver checks every producer's order, the
 * total, and that a bounded channel never held more than its capacity:
 * a message counted as sent (after its send returned) is either received
 * or still queued, so sent <= received + capacity at every receive. */
#define ST_TASKS 12
#define ST_THREADS 3
#define ST_PRODUCERS (ST_TASKS + ST_THREADS)

typedef struct stress {
    sq_mpsc ch;
    size_t cap;
    long per;
    atomic_long sent;
    atomic_int go;
    long next[ST_PRODUCERS];
    long received;
    long bad_order, over_capacity;
} stress;

typedef struct producer_arg {
    stress *s;
    uint32_t id;
} producer_arg;

static void produce(stress *s, uint32_t id, bool task)
{
    uint32_t x = id * 2654435761u | 1;
    for (long i = 0; i < s->per; i++) {
        uint64_t m = (uint64_t)id << 32 | (uint64_t)i;
        int rc;
        switch (sq_test_rnd(&x) % 8) {
        case 0:
            rc = sq_mpsc_try_send(&s->ch, &m);
            if (rc == -EAGAIN) {
                rc = sq_mpsc_send(&s->ch, &m);
            }
            break;
        case 1:
            rc = sq_mpsc_send_until(&s->ch, &m, sq_now() + SQ_SEC * 60);
            break;
        default:
            rc = sq_mpsc_send(&s->ch, &m);
            break;
        }
        CHECK_EQ(rc, 0);
        atomic_fetch_add(&s->sent, 1);
        if (task && sq_test_rnd(&x) % 64 == 0)
            sq_yield();
    }
    CHECK_EQ(sq_mpsc_sender_drop(&s->ch), 0);
}

static void *producer_task(void *arg)
{
    producer_arg *p = arg;
    produce(p->s, p->id, true);
    return NULL;
}

static void *producer_thread(void *arg)
{
    producer_arg *p = arg;
    while (!atomic_load(&p->s->go))
        sched_yield();
    produce(p->s, p->id, false);
    return NULL;
}

static void consume(stress *s)
{
    uint32_t x = 777;
    for (;;) {
        uint64_t m;
        int rc;
        if (sq_test_rnd(&x) % 4 == 0) {
            rc = sq_mpsc_try_recv(&s->ch, &m);
            if (rc == -EAGAIN)
                continue;
        } else {
            rc = sq_mpsc_recv(&s->ch, &m);
        }
        if (rc == -EPIPE)
            break;
        CHECK_EQ(rc, 0);
        if (rc)
            break;
        uint32_t id = (uint32_t)(m >> 32);
        long seq = (long)(m & 0xffffffffu);
        if (id >= ST_PRODUCERS || seq != s->next[id])
            s->bad_order++;
        else
            s->next[id]++;
        s->received++;
        if (s->cap &&
            atomic_load(&s->sent) > s->received + (long)s->cap)
            s->over_capacity++;
    }
}

static void *stress_root(void *arg)
{
    stress *s = arg;
    producer_arg pa[ST_TASKS];
    sq_task t[ST_TASKS];
    for (int i = 0; i < ST_TASKS; i++) {
        pa[i] = (producer_arg){.s = s, .id = (uint32_t)i};
        CHECK_EQ(sq_spawn(&t[i], producer_task, &pa[i], &small), 0);
    }
    atomic_store(&s->go, 1);
    consume(s);
    for (int i = 0; i < ST_TASKS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    return NULL;
}

static void run_stress(size_t cap, long per)
{
    static stress s; /* large: not on the stack */
    memset(&s, 0, sizeof s);
    CHECK_EQ(sq_mpsc_init(&s.ch, sizeof(uint64_t), cap), 0);
    s.cap = cap;
    s.per = per;
    /* One sender registered at init, one more per producer, the initial
     * one dropped at once (as a spawner that clones and lets go). */
    for (int i = 0; i < ST_PRODUCERS; i++)
        CHECK_EQ(sq_mpsc_sender_add(&s.ch), 0);
    CHECK_EQ(sq_mpsc_sender_drop(&s.ch), 0);
    producer_arg pa[ST_THREADS];
    pthread_t th[ST_THREADS];
    for (int i = 0; i < ST_THREADS; i++) {
        pa[i] = (producer_arg){.s = &s, .id = (uint32_t)(ST_TASKS + i)};
        CHECK_EQ(pthread_create(&th[i], NULL, producer_thread, &pa[i]), 0);
    }
    sq_test_run(2, stress_root, &s);
    for (int i = 0; i < ST_THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(s.bad_order, 0);
    CHECK_EQ(s.over_capacity, 0);
    CHECK_EQ(s.received, (long)ST_PRODUCERS * per);
    for (int i = 0; i < ST_PRODUCERS; i++)
        CHECK_EQ(s.next[i], per);
    CHECK_EQ(sq_mpsc_len(&s.ch), 0);
    CHECK_EQ(sq_mpsc_destroy(&s.ch), 0);
}

#define ST_PER (SQ_TEST_SLOW ? 4000 : 20000)

TEST(many_producers_bounded_small)
{
    run_stress(1, ST_PER / 8);
    run_stress(4, ST_PER / 4);
}

TEST(many_producers_bounded_large)
{
    run_stress(1024, ST_PER);
    run_stress(100, ST_PER);
}

TEST(many_producers_unbounded)
{
    run_stress(0, ST_PER);
}

/* ------------------------------------------------------- cancel storm */

/* Thousands of sender tasks each try to send a few numbered messages,
 * with a random deadline or none, while the root aborts them at random,
 * and plain threads send with short random deadlines; a chain of receiver
 * tasks takes messages with random short deadlines, pauses now and then
 * (so that senders pile up in a full channel), and is itself aborted from
 * time to time (the next receiver starts once the previous one has
 * returned).  Each message's fate is recorded on both sides: every message
 * whose send returned 0 is received exactly once, every other one never.
 * Then no slot may be missing, and an unbounded channel must be back to
 * its current block and a spare. */
#define STORM_SENDERS (SQ_TEST_SLOW ? 2000 : 5000)
#define STORM_MSGS 3 /* per sender task */
#define STORM_THREADS 2
#define STORM_THREAD_MSGS (SQ_TEST_SLOW ? 1000 : 3000)
#define STORM_TASK_IDS (STORM_SENDERS * STORM_MSGS)
#define STORM_IDS (STORM_TASK_IDS + STORM_THREADS * STORM_THREAD_MSGS)

enum { F_UNTRIED, F_SENT, F_RETURNED };

typedef struct storm {
    sq_mpsc ch;
    size_t cap;
    atomic_uchar fate[STORM_IDS];
    atomic_uchar seen[STORM_IDS];
    atomic_long received, recv_failed, aborted_receivers;
    atomic_long duplicates, unknown;
    atomic_int stop_rx, threads_done;
} storm;

typedef struct storm_sender_arg {
    storm *s;
    int index;
} storm_sender_arg;

/* Sends message `id`; records its fate.  Returns the send's result. */
static int storm_send(storm *s, uint32_t id, int64_t deadline)
{
    int rc = deadline == SQ_FOREVER ? sq_mpsc_send(&s->ch, &id)
                                    : sq_mpsc_send_until(&s->ch, &id, deadline);
    if (rc == 0) {
        atomic_store(&s->fate[id], F_SENT);
    } else {
        CHECK(rc == -ECANCELED || rc == -ETIMEDOUT);
        atomic_store(&s->fate[id], F_RETURNED);
    }
    return rc;
}

static void *storm_sender_task(void *arg)
{
    storm_sender_arg *a = arg;
    uint32_t x = (uint32_t)(a->index + 1) * 2654435761u | 1;
    for (int k = 0; k < STORM_MSGS; k++) {
        uint32_t id = (uint32_t)(a->index * STORM_MSGS + k);
        int64_t dl = sq_test_rnd(&x) % 2 ? SQ_FOREVER
                                 : sq_now() + sq_test_rnd(&x) % (2 * SQ_MSEC);
        if (storm_send(a->s, id, dl) == -ECANCELED)
            break; /* sticky: every later send would fail too */
    }
    return NULL;
}

static void *storm_sender_thread(void *arg)
{
    storm_sender_arg *a = arg;
    uint32_t x = (uint32_t)(a->index + 1) * 2654435761u | 1;
    for (int k = 0; k < STORM_THREAD_MSGS; k++) {
        uint32_t id = (uint32_t)(STORM_TASK_IDS +
                                 a->index * STORM_THREAD_MSGS + k);
        storm_send(a->s, id, sq_now() + sq_test_rnd(&x) % (300 * SQ_USEC));
    }
    atomic_fetch_add(&a->s->threads_done, 1);
    return NULL;
}

static void storm_note(storm *s, uint32_t id)
{
    if (id >= STORM_IDS) {
        atomic_fetch_add(&s->unknown, 1);
        return;
    }
    if (atomic_fetch_add(&s->seen[id], 1) != 0)
        atomic_fetch_add(&s->duplicates, 1);
    atomic_fetch_add(&s->received, 1);
}

static void *storm_receiver(void *arg)
{
    storm *s = arg;
    uint32_t x = (uint32_t)sq_task_id() * 2654435761u | 1;
    while (!atomic_load(&s->stop_rx)) {
        uint32_t id;
        int rc;
        switch (sq_test_rnd(&x) % 3) {
        case 0: rc = sq_mpsc_recv(&s->ch, &id); break;
        case 1:
            rc = sq_mpsc_recv_until(&s->ch, &id,
                                    sq_now() + sq_test_rnd(&x) % (200 * SQ_USEC));
            break;
        default: rc = sq_mpsc_try_recv(&s->ch, &id); break;
        }
        if (rc == 0) {
            storm_note(s, id);
            if (s->cap && sq_test_rnd(&x) % 64 == 0 &&
                sq_sleep(50 * SQ_USEC) == -ECANCELED)
                break; /* a pause: senders pile up */
            continue;
        }
        if (rc == -ECANCELED)
            break; /* consumed nothing */
        CHECK(rc == -ETIMEDOUT || rc == -EAGAIN);
        atomic_fetch_add(&s->recv_failed, 1);
        if (rc == -EAGAIN)
            sq_yield();
    }
    atomic_fetch_add(&s->aborted_receivers, 1);
    return NULL;
}

typedef struct storm_rx {
    storm *s;
    sq_task rx;
} storm_rx;

/* Every 250 senders, replaces the receiver: aborts it (perhaps mid-wait),
 * waits until it has returned, starts the next one. */
static void replace_receiver(int i, void *ctx)
{
    storm_rx *r = ctx;
    if (i % 250 != 249)
        return;
    sq_abort(r->rx);
    sq_join(r->rx, NULL);
    CHECK_EQ(sq_spawn(&r->rx, storm_receiver, r->s, &small), 0);
}

static void *storm_root(void *arg)
{
    storm *s = arg;
    static storm_sender_arg sa[STORM_SENDERS];
    for (int i = 0; i < STORM_SENDERS; i++)
        sa[i] = (storm_sender_arg){.s = s, .index = i};
    storm_rx r = {.s = s};
    CHECK_EQ(sq_spawn(&r.rx, storm_receiver, s, &small), 0);
    /* Senders aborted at random, many of them waiting. */
    sq_test_cancel_storm(&(sq_test_storm){
        .tasks = STORM_SENDERS, .fn = storm_sender_task, .arg = sa,
        .arg_stride = sizeof sa[0], .every = 16, .aborts = 6,
        .last_one_in = 3, .seed = 4242, .after_spawn = replace_receiver,
        .ctx = &r});
    while (atomic_load(&s->threads_done) < STORM_THREADS)
        sq_sleep(100 * SQ_USEC);
    atomic_store(&s->stop_rx, 1);
    sq_abort(r.rx);
    sq_join(r.rx, NULL);
    /* Every sender and receiver has finished: drain what is left. */
    uint32_t id;
    int rc;
    while ((rc = sq_mpsc_try_recv(&s->ch, &id)) == 0)
        storm_note(s, id);
    CHECK_EQ(rc, -EAGAIN);
    CHECK_EQ(sq_mpsc_len(&s->ch), 0);
    if (s->cap) {
        /* No slot was lost: exactly cap sends fit. */
        id = UINT32_MAX;
        for (size_t i = 0; i < s->cap; i++)
            CHECK_EQ(sq_mpsc_try_send(&s->ch, &id), 0);
        CHECK_EQ(sq_mpsc_try_send(&s->ch, &id), -EAGAIN);
        for (size_t i = 0; i < s->cap; i++) {
            CHECK_EQ(sq_mpsc_recv(&s->ch, &id), 0);
            CHECK_EQ(id, UINT32_MAX);
        }
    }
    CHECK_EQ(sq_mpsc_senders_waiting(&s->ch), 0);
    CHECK(!sq_mpsc_receiver_waiting(&s->ch));
    /* End of stream. */
    CHECK_EQ(sq_mpsc_sender_drop(&s->ch), 0);
    CHECK_EQ(sq_mpsc_recv(&s->ch, &id), -EPIPE);
    return NULL;
}

static void run_storm(size_t cap)
{
    static storm s;
    memset(&s, 0, sizeof s);
    s.cap = cap;
    CHECK_EQ(sq_mpsc_init(&s.ch, sizeof(uint32_t), cap), 0);
    size_t mem0 = sq_mpsc_memory(&s.ch);
    storm_sender_arg ta[STORM_THREADS];
    pthread_t th[STORM_THREADS];
    for (int i = 0; i < STORM_THREADS; i++) {
        ta[i] = (storm_sender_arg){.s = &s, .index = i};
        CHECK_EQ(pthread_create(&th[i], NULL, storm_sender_thread, &ta[i]), 0);
    }
    sq_test_run(2, storm_root, &s);
    for (int i = 0; i < STORM_THREADS; i++)
        pthread_join(th[i], NULL);
    long sent = 0, returned = 0, bad = 0;
    for (int i = 0; i < STORM_IDS; i++) {
        int fate = atomic_load(&s.fate[i]);
        int seen = atomic_load(&s.seen[i]);
        if (fate == F_SENT) {
            sent++;
            bad += seen != 1;
        } else {
            returned += fate == F_RETURNED;
            bad += seen != 0;
        }
    }
    if (getenv("SQ_TEST_VERBOSE"))
        fprintf(stderr, "  cap %zu: %ld sent, %ld returned, %ld receive failures, %ld receivers\n",
                cap, sent, returned, atomic_load(&s.recv_failed), atomic_load(&s.aborted_receivers));
    CHECK_EQ(bad, 0);
    CHECK_EQ(atomic_load(&s.duplicates), 0);
    CHECK_EQ(atomic_load(&s.unknown), 0);
    CHECK_EQ(atomic_load(&s.received), sent);
    CHECK(sent > STORM_IDS / 4);
    CHECK(atomic_load(&s.recv_failed) > 0);
    CHECK(atomic_load(&s.aborted_receivers) > 5);
    if (cap) {
        CHECK(returned > 100); /* senders did time out or get cancelled */
        CHECK_EQ(sq_mpsc_memory(&s.ch), mem0);
    } else {
        /* Memory flat: drained blocks were freed (one kept as spare). */
        CHECK(sq_mpsc_memory(&s.ch) <= 2 * mem0);
    }
    CHECK_EQ(sq_mpsc_destroy(&s.ch), 0);
}

TEST(cancel_storm_bounded)
{
    run_storm(4);
    run_storm(64);
}

TEST(cancel_storm_unbounded)
{
    run_storm(0);
}
