/* sq_broadcast: every receiver sees every message in one global order;
 * a receiver that falls behind is told exactly how many it missed; close
 * drains then ends the stream; timeouts and cancellation consume nothing;
 * no waiter or receiver is left behind. */
#include "testlib.h"

#include "squirrel/broadcast.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

static const sq_spawn_opts small = {.stack_size = SQ_STACK_MIN};

/* ------------------------------------------------------------- basics */

TEST(rejects_bad_arguments_and_misuse)
{
    sq_broadcast b;
    CHECK_EQ(sq_broadcast_init(&b, 0, 4), -EINVAL);
    CHECK_EQ(sq_broadcast_init(&b, 8, 0), -EINVAL);
    CHECK_EQ(sq_broadcast_init(&b, SQ_BROADCAST_MAX_ELEM + 1, 4), -EINVAL);
    CHECK_EQ(sq_broadcast_init(&b, 8, SQ_BROADCAST_MAX_CAPACITY + 1), -EINVAL);
    CHECK_EQ(sq_broadcast_init(&b, 8, 4), 0);
    CHECK_EQ(sq_broadcast_capacity(&b), 4);

    uint64_t v = 1, missed = 0;
    CHECK_EQ(sq_broadcast_send(&b, &v), -EPIPE); /* nobody listens */

    sq_broadcast_rx rx;
    CHECK_EQ(sq_broadcast_subscribe(&b, &rx), 0);
    CHECK_EQ(sq_broadcast_receivers(&b), 1);
    CHECK_EQ(sq_broadcast_try_recv(&rx, &v, &missed), -EAGAIN);
    CHECK_EQ(sq_broadcast_recv_until(&rx, &v, &missed, -1), -EINVAL);
    CHECK_EQ(sq_broadcast_recv_until(&rx, &v, &missed, 0), -ETIMEDOUT);
    CHECK_EQ(sq_broadcast_destroy(&b), -EBUSY); /* rx still subscribed */

    CHECK_EQ(sq_broadcast_rx_drop(&rx), 0);
    CHECK_EQ(sq_broadcast_rx_drop(&rx), -EINVAL);
    CHECK_EQ(sq_broadcast_try_recv(&rx, &v, &missed), -EINVAL);
    CHECK_EQ(sq_broadcast_recv(&rx, &v, &missed), -EINVAL);
    CHECK_EQ(sq_broadcast_rx_pending(&rx), 0);
    CHECK_EQ(sq_broadcast_receivers(&b), 0);
    CHECK_EQ(sq_broadcast_destroy(&b), 0);
    CHECK_EQ(sq_broadcast_destroy(&b), -EINVAL);
}

/* Odd-sized messages survive the trip whole, in order, for every
 * receiver; send counts the receivers. */
typedef struct odd {
    unsigned char bytes[13];
} odd;

static odd odd_msg(int i)
{
    odd m;
    for (int k = 0; k < 13; k++)
        m.bytes[k] = (unsigned char)(i * 31 + k);
    return m;
}

TEST(every_receiver_gets_every_message_in_order)
{
    sq_broadcast b;
    CHECK_EQ(sq_broadcast_init(&b, sizeof(odd), 8), 0);
    sq_broadcast_rx r1, r2;
    sq_broadcast_subscribe(&b, &r1);
    sq_broadcast_subscribe(&b, &r2);
    for (int i = 0; i < 5; i++) {
        odd m = odd_msg(i);
        CHECK_EQ(sq_broadcast_send(&b, &m), 2);
    }
    CHECK_EQ(sq_broadcast_rx_pending(&r1), 5);
    for (int i = 0; i < 5; i++) {
        odd m1, m2, want = odd_msg(i);
        CHECK_EQ(sq_broadcast_try_recv(&r1, &m1, NULL), 0);
        CHECK(memcmp(&m1, &want, sizeof want) == 0);
        CHECK_EQ(sq_broadcast_recv(&r2, &m2, NULL), 0); /* ready: no wait */
        CHECK(memcmp(&m2, &want, sizeof want) == 0);
    }
    odd m;
    CHECK_EQ(sq_broadcast_try_recv(&r1, &m, NULL), -EAGAIN);
    CHECK_EQ(sq_broadcast_rx_pending(&r1), 0);
    sq_broadcast_rx_drop(&r1);
    sq_broadcast_rx_drop(&r2);
    CHECK_EQ(sq_broadcast_destroy(&b), 0);
}

/* A receiver behind by more than the capacity: one -EOVERFLOW with the
 * exact count, then exactly the newest `capacity` messages. */
TEST(lagging_receiver_gets_exact_count_and_newest_window)
{
    for (size_t cap = 1; cap <= 9; cap += 4) {
        for (uint64_t sent = 0; sent < 3 * cap + 3; sent++) {
            sq_broadcast b;
            CHECK_EQ(sq_broadcast_init(&b, sizeof(uint64_t), cap), 0);
            sq_broadcast_rx rx;
            sq_broadcast_subscribe(&b, &rx);
            for (uint64_t i = 0; i < sent; i++)
                CHECK_EQ(sq_broadcast_send(&b, &i), 1);
            CHECK_EQ(sq_broadcast_rx_pending(&rx), sent < cap ? sent : cap);
            uint64_t v, missed = 12345, first = 0;
            if (sent > cap) {
                CHECK_EQ(sq_broadcast_try_recv(&rx, &v, &missed), -EOVERFLOW);
                CHECK_EQ(missed, sent - cap);
                first = sent - cap;
            }
            for (uint64_t i = first; i < sent; i++) {
                CHECK_EQ(sq_broadcast_try_recv(&rx, &v, &missed), 0);
                CHECK_EQ(v, i);
            }
            CHECK_EQ(sq_broadcast_try_recv(&rx, &v, &missed), -EAGAIN);
            /* Falling behind again, partly: counted from where it was. */
            for (uint64_t i = sent; i < sent + cap + 2; i++)
                sq_broadcast_send(&b, &i);
            CHECK_EQ(sq_broadcast_recv(&rx, &v, &missed), -EOVERFLOW);
            CHECK_EQ(missed, 2);
            CHECK_EQ(sq_broadcast_recv(&rx, &v, &missed), 0);
            CHECK_EQ(v, sent + 2);
            sq_broadcast_rx_drop(&rx);
            CHECK_EQ(sq_broadcast_destroy(&b), 0);
        }
    }
}

TEST(subscriber_starts_at_the_next_message)
{
    sq_broadcast b;
    sq_broadcast_init(&b, sizeof(int), 16);
    sq_broadcast_rx early, late;
    sq_broadcast_subscribe(&b, &early);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(sq_broadcast_send(&b, &i), 1);
    sq_broadcast_subscribe(&b, &late);
    CHECK_EQ(sq_broadcast_rx_pending(&late), 0);
    for (int i = 3; i < 5; i++)
        CHECK_EQ(sq_broadcast_send(&b, &i), 2);
    int v;
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(sq_broadcast_try_recv(&early, &v, NULL), 0);
        CHECK_EQ(v, i);
    }
    for (int i = 3; i < 5; i++) {
        CHECK_EQ(sq_broadcast_try_recv(&late, &v, NULL), 0);
        CHECK_EQ(v, i);
    }
    CHECK_EQ(sq_broadcast_try_recv(&late, &v, NULL), -EAGAIN);
    /* A dropped receiver no longer counts; a re-subscribed one starts anew. */
    sq_broadcast_rx_drop(&early);
    int x = 9;
    CHECK_EQ(sq_broadcast_send(&b, &x), 1);
    sq_broadcast_subscribe(&b, &early);
    CHECK_EQ(sq_broadcast_try_recv(&early, &v, NULL), -EAGAIN);
    CHECK_EQ(sq_broadcast_try_recv(&late, &v, NULL), 0);
    CHECK_EQ(v, 9);
    sq_broadcast_rx_drop(&early);
    sq_broadcast_rx_drop(&late);
    CHECK_EQ(sq_broadcast_destroy(&b), 0);
}

/* ------------------------------------------------------------ closing */

typedef struct close_ctx {
    sq_broadcast b;
    sq_broadcast_rx rx[4];
    atomic_int arrived;
} close_ctx;

static void *close_waiter(void *arg)
{
    sq_broadcast_rx *rx = arg;
    int v = -1;
    int rc = sq_broadcast_recv(rx, &v, NULL);
    if (rc)
        return (void *)(intptr_t)rc;
    CHECK_EQ(v, 7);
    return (void *)(intptr_t)sq_broadcast_recv(rx, &v, NULL);
}

static void *close_root(void *arg)
{
    close_ctx *c = arg;
    sq_task t[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(sq_spawn(&t[i], close_waiter, &c->rx[i], NULL), 0);
    sq_sleep(2 * SQ_MSEC); /* let them wait */
    CHECK_EQ(sq_broadcast_destroy(&c->b), -EBUSY);
    int v = 7;
    CHECK_EQ(sq_broadcast_send(&c->b, &v), 4);
    sq_broadcast_close(&c->b);
    sq_broadcast_close(&c->b);
    CHECK(sq_broadcast_is_closed(&c->b));
    CHECK_EQ(sq_broadcast_send(&c->b, &v), -EPIPE);
    for (int i = 0; i < 4; i++) {
        void *r;
        CHECK_EQ(sq_join(t[i], &r), 0);
        CHECK_EQ((intptr_t)r, -EPIPE);
    }
    return NULL;
}

TEST(close_lets_receivers_drain_then_ends_the_stream)
{
    /* Without waiting: queued messages first, then -EPIPE for good. */
    sq_broadcast b;
    sq_broadcast_init(&b, sizeof(int), 4);
    sq_broadcast_rx rx, after;
    sq_broadcast_subscribe(&b, &rx);
    for (int i = 0; i < 3; i++)
        sq_broadcast_send(&b, &i);
    sq_broadcast_close(&b);
    int v;
    CHECK_EQ(sq_broadcast_send(&b, &v), -EPIPE);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(sq_broadcast_recv(&rx, &v, NULL), 0);
        CHECK_EQ(v, i);
    }
    CHECK_EQ(sq_broadcast_recv(&rx, &v, NULL), -EPIPE);
    CHECK_EQ(sq_broadcast_try_recv(&rx, &v, NULL), -EPIPE);
    CHECK_EQ(sq_broadcast_subscribe(&b, &after), 0);
    CHECK_EQ(sq_broadcast_recv(&after, &v, NULL), -EPIPE);
    sq_broadcast_rx_drop(&after);
    sq_broadcast_rx_drop(&rx);
    CHECK_EQ(sq_broadcast_destroy(&b), 0);

    /* Waiting receivers (tasks) get the last message, then -EPIPE. */
    close_ctx c;
    sq_broadcast_init(&c.b, sizeof(int), 4);
    for (int i = 0; i < 4; i++)
        sq_broadcast_subscribe(&c.b, &c.rx[i]);
    sq_test_run(2, close_root, &c);
    for (int i = 0; i < 4; i++)
        sq_broadcast_rx_drop(&c.rx[i]);
    CHECK_EQ(sq_broadcast_destroy(&c.b), 0);
}

static void *thread_close_waiter(void *arg)
{
    sq_broadcast_rx *rx = arg;
    int v;
    return (void *)(intptr_t)sq_broadcast_recv(rx, &v, NULL);
}

static void *close_later(void *arg)
{
    sq_sleep(2 * SQ_MSEC);
    sq_broadcast_close(arg);
    return NULL;
}

TEST(plain_thread_waits_and_a_task_closes)
{
    sq_broadcast b;
    sq_broadcast_init(&b, sizeof(int), 4);
    sq_broadcast_rx rx;
    sq_broadcast_subscribe(&b, &rx);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, thread_close_waiter, &rx), 0);
    sq_test_run(1, close_later, &b);
    void *r;
    pthread_join(th, &r);
    CHECK_EQ((intptr_t)r, -EPIPE);
    sq_broadcast_rx_drop(&rx);
    CHECK_EQ(sq_broadcast_destroy(&b), 0);
}

/* A timed-out recv consumed nothing: the message sent after it is the
 * next one received. */
static void *timeout_root(void *arg)
{
    sq_broadcast *b = arg;
    sq_broadcast_rx rx;
    sq_broadcast_subscribe(b, &rx);
    int v = 0;
    for (int i = 0; i < 20; i++) {
        CHECK_EQ(sq_broadcast_recv_until(&rx, &v, NULL, sq_now() + 50 * SQ_USEC),
                 -ETIMEDOUT);
        CHECK_EQ(sq_broadcast_send(b, &i), 1);
        CHECK_EQ(sq_broadcast_recv_until(&rx, &v, NULL, 0), 0); /* passed */
        CHECK_EQ(v, i);
    }
    sq_broadcast_rx_drop(&rx);
    return NULL;
}

TEST(timeout_consumes_nothing)
{
    sq_broadcast b;
    sq_broadcast_init(&b, sizeof(int), 2);
    sq_test_run(1, timeout_root, &b);
    CHECK_EQ(sq_broadcast_destroy(&b), 0);
}

/* ------------------------------------- many senders x many receivers */

#define ST_MAX_SENDERS 4
#define ST_TASK_RX 6
#define ST_THREAD_RX 2
#define ST_RX (ST_TASK_RX + ST_THREAD_RX)

typedef struct smsg {
    uint32_t sender, seq;
    uint64_t check;
} smsg;

static uint64_t mix(uint32_t sender, uint32_t seq)
{
    return ((uint64_t)sender << 32 | seq) * 0x9E3779B97F4A7C15ull;
}

typedef struct stress {
    sq_broadcast b;
    sq_broadcast_rx rx[ST_RX];
    int per;             /* messages per sender */
    bool slow;           /* some receivers dawdle (and lag) */
    atomic_int go, senders_done;
    _Atomic uint64_t *at; /* message id + 1 seen at each position, 0 unknown */
    atomic_long received, missed;
} stress;

typedef struct sender_arg {
    stress *s;
    uint32_t id;
} sender_arg;

static void *st_sender(void *arg)
{
    sender_arg *a = arg;
    stress *s = a->s;
    while (!atomic_load(&s->go))
        sq_yield();
    for (int i = 0; i < s->per; i++) {
        smsg m = {.sender = a->id, .seq = (uint32_t)i, .check = mix(a->id, (uint32_t)i)};
        CHECK_EQ(sq_broadcast_send(&s->b, &m), ST_RX);
        if (i % 64 == 63)
            sq_yield();
    }
    atomic_fetch_add(&s->senders_done, 1);
    return NULL;
}

typedef struct rx_arg {
    stress *s;
    int i;
} rx_arg;

static void *st_receiver(void *arg)
{
    rx_arg *a = arg;
    stress *s = a->s;
    sq_broadcast_rx *rx = &s->rx[a->i];
    uint64_t total = (uint64_t)s->per * ST_MAX_SENDERS;
    int64_t last[ST_MAX_SENDERS];
    for (int k = 0; k < ST_MAX_SENDERS; k++)
        last[k] = -1;
    uint64_t pos = 0, got = 0, lost = 0;
    uint32_t x = (uint32_t)a->i * 2654435761u | 1;
    bool dawdle = s->slow && a->i % 2 == 0;
    for (;;) {
        smsg m;
        uint64_t missed = 0;
        int rc = (a->i % 3 == 2)
                     ? sq_broadcast_recv_until(rx, &m, &missed,
                                               sq_now() + sq_test_rnd(&x) % (100 * SQ_USEC))
                     : sq_broadcast_recv(rx, &m, &missed);
        if (rc == -EPIPE)
            break;
        if (rc == -ETIMEDOUT)
            continue;
        if (rc == -EOVERFLOW) {
            CHECK(missed >= 1);
            lost += missed;
            pos += missed;
            continue;
        }
        CHECK_EQ(rc, 0);
        if (rc)
            break;
        CHECK(m.sender < ST_MAX_SENDERS && m.check == mix(m.sender, m.seq));
        if (m.sender >= ST_MAX_SENDERS)
            break;
        if (s->slow)
            CHECK((int64_t)m.seq > last[m.sender]);
        else
            CHECK_EQ(m.seq, last[m.sender] + 1);
        last[m.sender] = m.seq;
        /* The same message at the same position for every receiver. */
        uint64_t id = ((uint64_t)m.sender << 32 | m.seq) + 1, seen = 0;
        if (pos < total &&
            !atomic_compare_exchange_strong(&s->at[pos], &seen, id))
            CHECK_EQ(seen, id);
        pos++;
        got++;
        if (dawdle && sq_test_rnd(&x) % 64 == 0)
            sq_sleep(sq_test_rnd(&x) % (50 * SQ_USEC));
    }
    CHECK_EQ(got + lost, total);
    if (!s->slow) {
        CHECK_EQ(lost, 0);
        for (int k = 0; k < ST_MAX_SENDERS; k++)
            CHECK_EQ(last[k], s->per - 1);
    }
    atomic_fetch_add(&s->received, (long)got);
    atomic_fetch_add(&s->missed, (long)lost);
    return NULL;
}

static void *st_thread_rx(void *arg)
{
    return st_receiver(arg);
}

static void *st_thread_tx(void *arg)
{
    sender_arg *a = arg;
    while (!atomic_load(&a->s->go))
        sched_yield();
    return st_sender(arg);
}

static void *st_root(void *arg)
{
    stress *s = arg;
    sender_arg sa[ST_MAX_SENDERS - 1];
    rx_arg ra[ST_TASK_RX];
    sq_task tx[ST_MAX_SENDERS - 1], rt[ST_TASK_RX];
    for (int i = 0; i < ST_TASK_RX; i++) {
        ra[i] = (rx_arg){.s = s, .i = i};
        CHECK_EQ(sq_spawn(&rt[i], st_receiver, &ra[i], &small), 0);
    }
    for (int i = 0; i < ST_MAX_SENDERS - 1; i++) {
        sa[i] = (sender_arg){.s = s, .id = (uint32_t)i};
        CHECK_EQ(sq_spawn(&tx[i], st_sender, &sa[i], &small), 0);
    }
    sq_sleep(SQ_MSEC); /* receivers start out waiting */
    atomic_store(&s->go, 1);
    for (int i = 0; i < ST_MAX_SENDERS - 1; i++)
        CHECK_EQ(sq_join(tx[i], NULL), 0);
    while (atomic_load(&s->senders_done) < ST_MAX_SENDERS) /* the thread */
        sq_sleep(50 * SQ_USEC);
    sq_broadcast_close(&s->b);
    for (int i = 0; i < ST_TASK_RX; i++)
        CHECK_EQ(sq_join(rt[i], NULL), 0);
    return NULL;
}

/* Senders: three tasks and a plain thread; receivers: tasks (some with
 * short deadlines, retrying) and plain threads, all subscribed before the
 * first send.  The root closes once every sender is done; every receiver
 * reads to the end of the stream. */
static void run_stress(size_t cap, int per, bool slow)
{
    static stress s;
    memset(&s, 0, sizeof s);
    s.per = per;
    s.slow = slow;
    uint64_t total = (uint64_t)per * ST_MAX_SENDERS;
    s.at = calloc(total, sizeof *s.at);
    CHECK_EQ(sq_broadcast_init(&s.b, sizeof(smsg), cap), 0);
    for (int i = 0; i < ST_RX; i++)
        CHECK_EQ(sq_broadcast_subscribe(&s.b, &s.rx[i]), 0);
    pthread_t th_rx[ST_THREAD_RX], th_tx;
    rx_arg ra[ST_THREAD_RX];
    for (int i = 0; i < ST_THREAD_RX; i++) {
        ra[i] = (rx_arg){.s = &s, .i = ST_TASK_RX + i};
        CHECK_EQ(pthread_create(&th_rx[i], NULL, st_thread_rx, &ra[i]), 0);
    }
    sender_arg last = {.s = &s, .id = ST_MAX_SENDERS - 1};
    CHECK_EQ(pthread_create(&th_tx, NULL, st_thread_tx, &last), 0);
    sq_test_run(2, st_root, &s);
    pthread_join(th_tx, NULL);
    for (int i = 0; i < ST_THREAD_RX; i++)
        pthread_join(th_rx[i], NULL);
    CHECK_EQ(atomic_load(&s.received) + atomic_load(&s.missed),
             (long)total * ST_RX);
    if (slow)
        CHECK(atomic_load(&s.missed) > 0); /* the lag path did run */
    for (int i = 0; i < ST_RX; i++)
        CHECK_EQ(sq_broadcast_rx_drop(&s.rx[i]), 0);
    CHECK_EQ(sq_broadcast_destroy(&s.b), 0);
    free(s.at);
}

#define ST_PER (SQ_TEST_SLOW ? 1500 : 6000)

TEST(receivers_that_keep_up_see_every_message_once_in_one_order)
{
    /* Room for everything: nobody can lag. */
    for (int round = 0; round < 3; round++)
        run_stress((size_t)ST_PER * ST_MAX_SENDERS, ST_PER, false);
}

TEST(slow_receivers_count_exactly_what_they_missed)
{
    for (int round = 0; round < 3; round++)
        run_stress(16 + (size_t)round * 7, ST_PER, true);
}

/* ---------------------------------------------- torn copies, wake-ups */

/* Big messages (64 identical words) into a ring of 2, overwritten all
 * the time: a receiver overtaken in the middle of a copy must report a
 * lag, never hand out a mix of two messages. */
#define TW 64
#define TORN_PER (SQ_TEST_SLOW ? 4000 : 20000)

typedef struct torn {
    sq_broadcast b;
    sq_broadcast_rx rx[3];
    struct torn_rx {
        struct torn *t;
        sq_broadcast_rx *rx;
    } arg[3];
    atomic_int senders_done;
    atomic_long torn, got, lost;
} torn;

static void *torn_sender(void *arg)
{
    torn *t = arg;
    uint64_t v[TW];
    uint64_t base = (uint64_t)(uintptr_t)&v << 20;
    for (uint64_t i = 0; i < TORN_PER; i++) {
        for (int k = 0; k < TW; k++)
            v[k] = base + i;
        CHECK_EQ(sq_broadcast_send(&t->b, v), 3);
        if (i % 256 == 0)
            sq_yield();
    }
    atomic_fetch_add(&t->senders_done, 1);
    return NULL;
}

static void *torn_receiver(void *arg)
{
    struct torn_rx *a = arg;
    torn *t = a->t;
    sq_broadcast_rx *rx = a->rx;
    uint64_t v[TW], missed;
    long got = 0, lost = 0;
    int rc;
    while ((rc = sq_broadcast_recv(rx, v, &missed)) != -EPIPE) {
        if (rc == -EOVERFLOW) {
            lost += (long)missed;
            continue;
        }
        CHECK_EQ(rc, 0);
        got++;
        for (int k = 1; k < TW; k++)
            if (v[k] != v[0]) {
                atomic_fetch_add(&t->torn, 1);
                break;
            }
    }
    atomic_fetch_add(&t->got, got);
    atomic_fetch_add(&t->lost, lost);
    return NULL;
}

static void *torn_root(void *arg)
{
    torn *t = arg;
    sq_task s[2], r[2];
    for (int i = 0; i < 2; i++)
        CHECK_EQ(sq_spawn(&r[i], torn_receiver, &t->arg[i], &small), 0);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(sq_spawn(&s[i], torn_sender, t, &small), 0);
    while (atomic_load(&t->senders_done) < 3)
        sq_sleep(50 * SQ_USEC);
    sq_broadcast_close(&t->b);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(sq_join(s[i], NULL), 0);
        CHECK_EQ(sq_join(r[i], NULL), 0);
    }
    return NULL;
}

TEST(overwritten_messages_are_never_handed_out_torn)
{
    static torn t;
    memset(&t, 0, sizeof t);
    CHECK_EQ(sq_broadcast_init(&t.b, sizeof(uint64_t) * TW, 2), 0);
    for (int i = 0; i < 3; i++) {
        sq_broadcast_subscribe(&t.b, &t.rx[i]);
        t.arg[i] = (struct torn_rx){.t = &t, .rx = &t.rx[i]};
    }
    pthread_t tr, ts;
    CHECK_EQ(pthread_create(&tr, NULL, torn_receiver, &t.arg[2]), 0);
    CHECK_EQ(pthread_create(&ts, NULL, torn_sender, &t), 0);
    sq_test_run(2, torn_root, &t);
    pthread_join(ts, NULL);
    pthread_join(tr, NULL);
    CHECK_EQ(atomic_load(&t.torn), 0);
    CHECK_EQ(atomic_load(&t.got) + atomic_load(&t.lost), 3L * 3 * TORN_PER);
    CHECK(atomic_load(&t.got) > 0);
    for (int i = 0; i < 3; i++)
        sq_broadcast_rx_drop(&t.rx[i]);
    CHECK_EQ(sq_broadcast_destroy(&t.b), 0);
}

/* Ping-pong with a lone receiver (a task, then a plain thread): the
 * sender sends message i once message i - 1 was received, at once or a
 * little later; a lost wake-up leaves the receiver stuck until its
 * (generous) deadline. */
#define PP_ROUNDS (SQ_TEST_SLOW ? 300 : 1000)

typedef struct pp {
    sq_broadcast b;
    sq_broadcast_rx rx;
    bool task;           /* the receiver is a task (else a plain thread) */
    atomic_int acked;
} pp;

static void *pp_receiver(void *arg)
{
    pp *p = arg;
    for (int i = 0; i < PP_ROUNDS; i++) {
        int v = -1;
        int rc = sq_broadcast_recv_until(&p->rx, &v, NULL, sq_now() + 10 * SQ_SEC);
        CHECK_EQ(rc, 0);
        if (rc)
            break;
        CHECK_EQ(v, i);
        atomic_store(&p->acked, i + 1);
    }
    return NULL;
}

static void *pp_root(void *arg)
{
    pp *p = arg;
    sq_task t;
    bool task = p->task;
    if (task)
        CHECK_EQ(sq_spawn(&t, pp_receiver, p, &small), 0);
    uint32_t x = 7;
    for (int i = 0; i < PP_ROUNDS; i++) {
        while (atomic_load(&p->acked) < i)
            sq_yield();
        switch (sq_test_rnd(&x) % 4) {
        case 0: break;
        case 1: sq_yield(); break;
        case 2: for (volatile int k = 0; k < (int)(sq_test_rnd(&x) % 2000); k++) {} break;
        default: sq_sleep(sq_test_rnd(&x) % (30 * SQ_USEC)); break;
        }
        CHECK_EQ(sq_broadcast_send(&p->b, &i), 1);
    }
    if (task)
        CHECK_EQ(sq_join(t, NULL), 0);
    return NULL;
}

TEST(a_waiting_receiver_always_sees_the_send)
{
    for (int thread = 0; thread < 2; thread++) {
        pp p = {.task = !thread, .acked = 0};
        sq_broadcast_init(&p.b, sizeof(int), 4);
        sq_broadcast_subscribe(&p.b, &p.rx);
        pthread_t th;
        if (thread)
            CHECK_EQ(pthread_create(&th, NULL, pp_receiver, &p), 0);
        sq_test_run(2, pp_root, &p);
        if (thread)
            pthread_join(th, NULL);
        sq_broadcast_rx_drop(&p.rx);
        CHECK_EQ(sq_broadcast_destroy(&p.b), 0);
    }
}

/* ------------------------------------------------------- cancel storm */

/* One sender trickles messages; survivors (tasks and a thread, recv and
 * recv_until with short deadlines) must see all of them; victims
 * subscribe mid-stream, wait, and are aborted at random: after -ECANCELED
 * a victim drains the rest with try_recv and must find exactly the
 * messages that follow the last one it received.  Nothing is lost for
 * anyone, and nobody is left subscribed or queued. */
#define CS_MSGS (SQ_TEST_SLOW ? 1500 : 5000)
#define CS_VICTIMS (SQ_TEST_SLOW ? 1500 : 6000)
#define CS_SURVIVORS 4

typedef struct storm {
    sq_broadcast b;
    atomic_int cancelled, drained, sent;
    atomic_int stop;
} storm;

/* Receives the rest of the stream on rx, expecting `next` first. */
static void drain_rest(sq_broadcast_rx *rx, int next, bool waiting)
{
    uint32_t x = (uint32_t)(uintptr_t)rx | 1;
    for (;;) {
        int v = -1;
        int rc;
        if (waiting)
            rc = (sq_test_rnd(&x) % 2)
                     ? sq_broadcast_recv(rx, &v, NULL)
                     : sq_broadcast_recv_until(rx, &v, NULL,
                                               sq_now() + sq_test_rnd(&x) % (200 * SQ_USEC));
        else
            rc = sq_broadcast_try_recv(rx, &v, NULL);
        if (rc == -EPIPE)
            break;
        if (rc == -EAGAIN || rc == -ETIMEDOUT) {
            if (!waiting)
                sq_yield();
            continue;
        }
        CHECK_EQ(rc, 0);
        if (rc)
            break;
        CHECK_EQ(v, next);
        next = v + 1;
    }
    CHECK_EQ(next, CS_MSGS);
}

static void *cs_survivor(void *arg)
{
    storm *s = arg;
    sq_broadcast_rx rx;
    sq_broadcast_subscribe(&s->b, &rx); /* before the first send */
    atomic_fetch_add(&s->drained, 1);
    drain_rest(&rx, 0, true);
    sq_broadcast_rx_drop(&rx);
    return NULL;
}

static void *cs_victim(void *arg)
{
    storm *s = arg;
    sq_broadcast_rx rx;
    sq_broadcast_subscribe(&s->b, &rx);
    int first = -1, v;
    int rc = sq_broadcast_recv(&rx, &v, NULL);
    if (rc == 0) {
        first = v;
        rc = sq_broadcast_recv(&rx, &v, NULL);
        if (rc == 0) {
            CHECK_EQ(v, first + 1);
            first = v;
        }
    }
    if (rc == -ECANCELED) {
        atomic_fetch_add(&s->cancelled, 1);
        if (first >= 0) {
            drain_rest(&rx, first + 1, false);
        } else {
            /* It never received: whatever comes first, the rest follows
             * without a gap. */
            while ((rc = sq_broadcast_try_recv(&rx, &v, NULL)) == -EAGAIN)
                sq_yield();
            if (rc == 0)
                drain_rest(&rx, v + 1, false);
            else
                CHECK_EQ(rc, -EPIPE);
        }
    } else {
        CHECK(rc == 0 || rc == -EPIPE);
    }
    sq_broadcast_rx_drop(&rx);
    return NULL;
}

static void *cs_sender(void *arg)
{
    storm *s = arg;
    uint32_t x = 777;
    for (int i = 0; i < CS_MSGS; i++) {
        int rc = sq_broadcast_send(&s->b, &i);
        CHECK(rc >= CS_SURVIVORS);
        if (sq_test_rnd(&x) % 4 == 0)
            sq_sleep(sq_test_rnd(&x) % (20 * SQ_USEC));
        else
            sq_yield();
    }
    sq_broadcast_close(&s->b);
    return NULL;
}

static void *cs_thread(void *arg)
{
    storm *s = arg;
    sq_broadcast_rx rx;
    sq_broadcast_subscribe(&s->b, &rx);
    atomic_fetch_add(&s->drained, 1);
    drain_rest(&rx, 0, true);
    sq_broadcast_rx_drop(&rx);
    return NULL;
}

static void *cs_root(void *arg)
{
    storm *s = arg;
    sq_task sv[CS_SURVIVORS - 1], tx;
    for (int i = 0; i < CS_SURVIVORS - 1; i++)
        CHECK_EQ(sq_spawn(&sv[i], cs_survivor, s, &small), 0);
    while (atomic_load(&s->drained) < CS_SURVIVORS)
        sq_yield();
    CHECK_EQ(sq_spawn(&tx, cs_sender, s, &small), 0);
    sq_test_cancel_storm(&(sq_test_storm){
        .tasks = CS_VICTIMS, .fn = cs_victim, .arg = s, .every = 8,
        .aborts = 4, .last_one_in = 2, .seed = 4242});
    CHECK_EQ(sq_join(tx, NULL), 0);
    for (int i = 0; i < CS_SURVIVORS - 1; i++)
        CHECK_EQ(sq_join(sv[i], NULL), 0);
    return NULL;
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks;
}

TEST(cancel_storm_loses_nothing_and_leaves_nothing_behind)
{
    size_t base = 0;
    for (int round = 0; round < 3; round++) {
        storm s = {.cancelled = 0};
        CHECK_EQ(sq_broadcast_init(&s.b, sizeof(int), (size_t)CS_MSGS), 0);
        pthread_t th;
        CHECK_EQ(pthread_create(&th, NULL, cs_thread, &s), 0);
        while (atomic_load(&s.drained) < 1)
            sched_yield();
        sq_test_run(2, cs_root, &s);
        pthread_join(th, NULL);
        CHECK(atomic_load(&s.cancelled) > 0);
        CHECK_EQ(sq_broadcast_receivers(&s.b), 0);
        CHECK_EQ(sq_broadcast_destroy(&s.b), 0); /* nobody queued */
        /* Memory flat: nothing grows from round to round. */
        if (round == 0)
            base = heap_in_use();
        else if (!SQ_TEST_SANITIZER)
            CHECK(heap_in_use() <= base + 64 * 1024);
    }
}
