/* sq_watch: receivers see versions strictly increasing and end at the
 * final value; a receiver waiting at a send always wakes; a read is never
 * torn and reports its value's own version; close ends the wait after the
 * last value; cancellation and timeouts lose nothing and leave nothing
 * queued. */
#include "testlib.h"

#include "squirrel/watch.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

static const sq_spawn_opts small = {.stack_size = SQ_STACK_MIN};

/* ------------------------------------------------------------- basics */

TEST(basics_and_misuse)
{
    sq_watch w;
    CHECK_EQ(sq_watch_init(&w, 0, NULL), -EINVAL);
    CHECK_EQ(sq_watch_init(&w, SQ_WATCH_MAX_ELEM + 1, NULL), -EINVAL);
    char init[11] = "0123456789";
    CHECK_EQ(sq_watch_init(&w, sizeof init, init), 0);
    char out[11] = {0};
    CHECK_EQ(sq_watch_get(&w, out), 0);
    CHECK(memcmp(out, init, sizeof init) == 0);

    /* Sends need no receiver; the value is kept. */
    char a[11] = "abcdefghij";
    CHECK_EQ(sq_watch_send(&w, a), 0);
    CHECK_EQ(sq_watch_version(&w), 1);

    sq_watch_rx rx;
    CHECK_EQ(sq_watch_subscribe(&w, &rx), 0);
    CHECK_EQ(sq_watch_receivers(&w), 1);
    CHECK_EQ(sq_watch_has_changed(&rx), 0); /* subscribed: current is seen */
    CHECK_EQ(sq_watch_changed_until(&rx, sq_now() + 100 * SQ_USEC), -ETIMEDOUT);
    CHECK_EQ(sq_watch_changed_until(&rx, -1), -EINVAL);
    uint64_t ver = 99;
    CHECK_EQ(sq_watch_read(&rx, out, &ver), 0);
    CHECK_EQ(ver, 1);
    CHECK(memcmp(out, a, sizeof a) == 0);

    char b[11] = "ABCDEFGHIJ";
    CHECK_EQ(sq_watch_send(&w, b), 0);
    CHECK_EQ(sq_watch_send(&w, a), 0);
    CHECK_EQ(sq_watch_has_changed(&rx), 1);
    CHECK_EQ(sq_watch_changed(&rx), 0);     /* at once */
    CHECK_EQ(sq_watch_changed(&rx), 0);     /* marks nothing seen */
    CHECK_EQ(sq_watch_read(&rx, NULL, &ver), 0); /* only marks seen */
    CHECK_EQ(ver, 3);
    CHECK_EQ(sq_watch_has_changed(&rx), 0);
    CHECK_EQ(sq_watch_changed_until(&rx, 0), -ETIMEDOUT);

    CHECK_EQ(sq_watch_destroy(&w), -EBUSY);
    CHECK_EQ(sq_watch_rx_drop(&rx), 0);
    CHECK_EQ(sq_watch_rx_drop(&rx), -EINVAL);
    CHECK_EQ(sq_watch_read(&rx, out, NULL), -EINVAL);
    CHECK_EQ(sq_watch_changed(&rx), -EINVAL);
    CHECK_EQ(sq_watch_has_changed(&rx), -EINVAL);
    CHECK_EQ(sq_watch_destroy(&w), 0);
    CHECK_EQ(sq_watch_destroy(&w), -EINVAL);

    sq_watch z;
    CHECK_EQ(sq_watch_init(&z, 24, NULL), 0);
    uint64_t zero[3] = {1, 2, 3};
    CHECK_EQ(sq_watch_get(&z, zero), 0);
    CHECK(zero[0] == 0 && zero[1] == 0 && zero[2] == 0);
    CHECK_EQ(sq_watch_destroy(&z), 0);
}

/* ------------------------------------------------------------ closing */

TEST(close_keeps_the_last_value_then_ends_the_wait)
{
    sq_watch w;
    int v = 1;
    sq_watch_init(&w, sizeof v, &v);
    sq_watch_rx rx, late;
    sq_watch_subscribe(&w, &rx);
    v = 2;
    CHECK_EQ(sq_watch_send(&w, &v), 0);
    sq_watch_close(&w);
    sq_watch_close(&w);
    CHECK(sq_watch_is_closed(&w));
    v = 3;
    CHECK_EQ(sq_watch_send(&w, &v), -EPIPE);
    CHECK_EQ(sq_watch_version(&w), 1);
    CHECK_EQ(sq_watch_changed(&rx), 0); /* 2 not yet seen */
    CHECK_EQ(sq_watch_has_changed(&rx), 1);
    uint64_t ver;
    CHECK_EQ(sq_watch_read(&rx, &v, &ver), 0);
    CHECK_EQ(v, 2);
    CHECK_EQ(ver, 1);
    CHECK_EQ(sq_watch_changed(&rx), -EPIPE);
    CHECK_EQ(sq_watch_has_changed(&rx), -EPIPE);
    /* A late subscriber reads the last value and is told it is over. */
    CHECK_EQ(sq_watch_subscribe(&w, &late), 0);
    CHECK_EQ(sq_watch_changed(&late), -EPIPE);
    CHECK_EQ(sq_watch_read(&late, &v, NULL), 0);
    CHECK_EQ(v, 2);
    sq_watch_rx_drop(&late);
    sq_watch_rx_drop(&rx);
    CHECK_EQ(sq_watch_destroy(&w), 0);
}

typedef struct close_ctx {
    sq_watch w;
    atomic_int arrived;
} close_ctx;

static void *close_waiter(void *arg)
{
    close_ctx *c = arg;
    sq_watch_rx rx;
    sq_watch_subscribe(&c->w, &rx);
    atomic_fetch_add(&c->arrived, 1);
    int rc = sq_watch_changed(&rx);
    sq_watch_rx_drop(&rx);
    return (void *)(intptr_t)rc;
}

static void *close_root(void *arg)
{
    close_ctx *c = arg;
    sq_task t[6];
    for (int i = 0; i < 6; i++)
        CHECK_EQ(sq_spawn(&t[i], close_waiter, c, NULL), 0);
    while (atomic_load(&c->arrived) < 7) /* and the thread */
        sq_yield();
    sq_sleep(SQ_MSEC); /* let them wait */
    CHECK_EQ(sq_watch_destroy(&c->w), -EBUSY);
    sq_watch_close(&c->w);
    for (int i = 0; i < 6; i++) {
        void *r;
        CHECK_EQ(sq_join(t[i], &r), 0);
        CHECK_EQ((intptr_t)r, -EPIPE);
    }
    return NULL;
}

TEST(close_wakes_waiting_tasks_and_threads_with_epipe)
{
    close_ctx c = {.arrived = 0};
    sq_watch_init(&c.w, sizeof(int), NULL);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, close_waiter, &c), 0);
    sq_test_run(2, close_root, &c);
    void *r;
    pthread_join(th, &r);
    CHECK_EQ((intptr_t)r, -EPIPE);
    CHECK_EQ(sq_watch_destroy(&c.w), 0);
}

/* ------------------------------- versions increase, end at the final */

#define VW 8                     /* words in a value */
#define VS_SENDERS 3             /* two tasks and a thread */
#define VS_TASK_RX 6
#define VS_THREAD_RX 2
#define VS_PER (SQ_TEST_SLOW ? 3000 : 20000)

typedef struct vstress {
    sq_watch w;
    int senders;                 /* 1: the value is its version */
    atomic_int go, done, ready;
    atomic_long reads;
} vstress;

typedef struct vsend {
    vstress *s;
    uint32_t id;
} vsend;

static void *vs_sender(void *arg)
{
    vsend *a = arg;
    vstress *s = a->s;
    while (!atomic_load(&s->go))
        sq_yield();
    uint64_t val[VW];
    for (uint32_t i = 1; i <= VS_PER; i++) {
        uint64_t word = s->senders == 1 ? i : ((uint64_t)a->id << 32 | i);
        for (int k = 0; k < VW; k++)
            val[k] = word;
        CHECK_EQ(sq_watch_send(&s->w, val), 0);
        if (i % 128 == 0)
            sq_yield();
    }
    atomic_fetch_add(&s->done, 1);
    return NULL;
}

static void *vs_thread_sender(void *arg)
{
    vsend *a = arg;
    while (!atomic_load(&a->s->go))
        sched_yield();
    return vs_sender(arg);
}

static void *vs_receiver(void *arg)
{
    vstress *s = arg;
    sq_watch_rx rx;
    sq_watch_subscribe(&s->w, &rx);
    atomic_fetch_add(&s->ready, 1);
    uint32_t x = (uint32_t)(uintptr_t)&rx | 1;
    uint64_t last_ver = 0, val[VW];
    int64_t last_seq[VS_SENDERS] = {0};
    long reads = 0;
    for (;;) {
        int rc = (sq_test_rnd(&x) % 4 == 0)
                     ? sq_watch_changed_until(&rx, sq_now() + sq_test_rnd(&x) % (50 * SQ_USEC))
                     : sq_watch_changed(&rx);
        if (rc == -ETIMEDOUT)
            continue;
        if (rc == -EPIPE)
            break;
        CHECK_EQ(rc, 0);
        uint64_t ver;
        CHECK_EQ(sq_watch_read(&rx, val, &ver), 0);
        reads++;
        CHECK(ver > last_ver);
        last_ver = ver;
        for (int k = 1; k < VW; k++)
            CHECK_EQ(val[k], val[0]);
        if (s->senders == 1) {
            CHECK_EQ(val[0], ver); /* the value is its version's own */
        } else {
            uint32_t id = (uint32_t)(val[0] >> 32);
            int64_t seq = (int64_t)(uint32_t)val[0];
            CHECK(id < VS_SENDERS);
            if (id < VS_SENDERS) {
                CHECK(seq > last_seq[id]);
                last_seq[id] = seq;
            }
        }
        if (sq_test_rnd(&x) % 16 == 0)
            sq_yield();
    }
    /* Ended at the final value. */
    uint64_t total = (uint64_t)s->senders * VS_PER, fin[VW];
    CHECK_EQ(last_ver, total);
    CHECK_EQ(sq_watch_get(&s->w, fin), total);
    CHECK(memcmp(fin, val, sizeof fin) == 0);
    atomic_fetch_add(&s->reads, reads);
    sq_watch_rx_drop(&rx);
    return NULL;
}

static void *vs_root(void *arg)
{
    vstress *s = arg;
    sq_task rt[VS_TASK_RX], st[VS_SENDERS];
    vsend sa[VS_SENDERS];
    for (int i = 0; i < VS_TASK_RX; i++)
        CHECK_EQ(sq_spawn(&rt[i], vs_receiver, s, &small), 0);
    int task_senders = s->senders == 1 ? 1 : VS_SENDERS - 1;
    for (int i = 0; i < task_senders; i++) {
        sa[i] = (vsend){.s = s, .id = (uint32_t)i};
        CHECK_EQ(sq_spawn(&st[i], vs_sender, &sa[i], &small), 0);
    }
    while (atomic_load(&s->ready) < VS_TASK_RX + VS_THREAD_RX)
        sq_yield();
    atomic_store(&s->go, 1);
    while (atomic_load(&s->done) < s->senders)
        sq_sleep(50 * SQ_USEC);
    sq_watch_close(&s->w);
    for (int i = 0; i < task_senders; i++)
        CHECK_EQ(sq_join(st[i], NULL), 0);
    for (int i = 0; i < VS_TASK_RX; i++)
        CHECK_EQ(sq_join(rt[i], NULL), 0);
    return NULL;
}

static void run_versions(int senders)
{
    static vstress s;
    memset(&s, 0, sizeof s);
    s.senders = senders;
    CHECK_EQ(sq_watch_init(&s.w, sizeof(uint64_t) * VW, NULL), 0);
    pthread_t rx[VS_THREAD_RX], tx;
    for (int i = 0; i < VS_THREAD_RX; i++)
        CHECK_EQ(pthread_create(&rx[i], NULL, vs_receiver, &s), 0);
    vsend last = {.s = &s, .id = VS_SENDERS - 1};
    if (senders > 1)
        CHECK_EQ(pthread_create(&tx, NULL, vs_thread_sender, &last), 0);
    sq_test_run(2, vs_root, &s);
    if (senders > 1)
        pthread_join(tx, NULL);
    for (int i = 0; i < VS_THREAD_RX; i++)
        pthread_join(rx[i], NULL);
    CHECK(atomic_load(&s.reads) > 0);
    CHECK_EQ(sq_watch_receivers(&s.w), 0);
    CHECK_EQ(sq_watch_destroy(&s.w), 0);
}

TEST(one_sender_values_match_versions_and_increase_to_the_last)
{
    run_versions(1);
}

TEST(many_senders_versions_increase_to_the_last)
{
    run_versions(VS_SENDERS);
}

/* ----------------------------------------------------- no lost wake-up */

/* Rounds: the sender sends version r once every receiver has acknowledged
 * r - 1, sometimes at once (receivers still on their way to wait),
 * sometimes later (receivers asleep).  Every receiver must see every
 * round: a lost wake-up shows as a receiver stuck until its (generous)
 * deadline.  A lone receiver is the sharpest case (no other waiter makes
 * the sender look at the list). */
#define LW_ROUNDS (SQ_TEST_SLOW ? 300 : 1000)
#define LW_MAX_TASKS 5
#define LW_MAX_THREADS 2

typedef struct lw {
    sq_watch w;
    int tasks, threads;
    atomic_int acks, ready;
} lw;

static void *lw_receiver(void *arg)
{
    lw *l = arg;
    sq_watch_rx rx;
    sq_watch_subscribe(&l->w, &rx);
    atomic_fetch_add(&l->ready, 1);
    for (uint64_t r = 1; r <= LW_ROUNDS; r++) {
        int rc = sq_watch_changed_until(&rx, sq_now() + 10 * SQ_SEC);
        CHECK_EQ(rc, 0);
        if (rc)
            break;
        uint64_t ver, val;
        sq_watch_read(&rx, &val, &ver);
        CHECK_EQ(ver, r);
        CHECK_EQ(val, r);
        atomic_fetch_add(&l->acks, 1);
    }
    CHECK_EQ(sq_watch_changed(&rx), -EPIPE);
    sq_watch_rx_drop(&rx);
    return NULL;
}

static void *lw_root(void *arg)
{
    lw *l = arg;
    sq_task t[LW_MAX_TASKS];
    for (int i = 0; i < l->tasks; i++)
        CHECK_EQ(sq_spawn(&t[i], lw_receiver, l, &small), 0);
    const int n = l->tasks + l->threads;
    while (atomic_load(&l->ready) < n)
        sq_yield();
    uint32_t x = 99;
    for (uint64_t r = 1; r <= LW_ROUNDS; r++) {
        while (atomic_load(&l->acks) < (int)(r - 1) * n)
            sq_yield();
        switch (sq_test_rnd(&x) % 4) {
        case 0: break;
        case 1: sq_yield(); break;
        case 2: for (volatile int i = 0; i < (int)(sq_test_rnd(&x) % 2000); i++) {} break;
        default: sq_sleep(sq_test_rnd(&x) % (30 * SQ_USEC)); break;
        }
        CHECK_EQ(sq_watch_send(&l->w, &r), 0);
    }
    while (atomic_load(&l->acks) < LW_ROUNDS * n)
        sq_yield();
    sq_watch_close(&l->w);
    for (int i = 0; i < l->tasks; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    return NULL;
}

static void run_lw(int tasks, int threads)
{
    lw l = {.tasks = tasks, .threads = threads, .acks = 0};
    sq_watch_init(&l.w, sizeof(uint64_t), NULL);
    pthread_t th[LW_MAX_THREADS];
    for (int i = 0; i < threads; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, lw_receiver, &l), 0);
    sq_test_run(2, lw_root, &l);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(sq_watch_destroy(&l.w), 0);
}

TEST(a_waiting_receiver_always_sees_the_send)
{
    run_lw(1, 0);
    run_lw(0, 1);
    run_lw(LW_MAX_TASKS, LW_MAX_THREADS);
}

/* -------------------------------------------------------- consistency */

/* Big values (64 identical words) written by tasks and a thread while
 * tasks and threads read with sq_watch_get and sq_watch_read: never a mix
 * of two values. */
#define CW 64
#define CONS_ITERS (SQ_TEST_SLOW ? 5000 : 40000)

typedef struct cons {
    sq_watch w;
    atomic_int stop, writers_done;
    atomic_long torn, reads;
} cons;

static void *cons_writer(void *arg)
{
    cons *c = arg;
    uint64_t v[CW];
    uint64_t base = (uint64_t)(uintptr_t)&v << 20;
    for (uint64_t i = 0; i < CONS_ITERS; i++) {
        for (int k = 0; k < CW; k++)
            v[k] = base + i;
        sq_watch_send(&c->w, v);
        if (i % 256 == 0)
            sq_yield();
    }
    atomic_fetch_add(&c->writers_done, 1);
    return NULL;
}

static void *cons_reader(void *arg)
{
    cons *c = arg;
    sq_watch_rx rx;
    sq_watch_subscribe(&c->w, &rx);
    uint64_t v[CW], last = 0;
    long n = 0;
    while (!atomic_load(&c->stop)) {
        uint64_t ver;
        if (n % 2) {
            ver = sq_watch_get(&c->w, v);
        } else {
            CHECK_EQ(sq_watch_read(&rx, v, &ver), 0);
        }
        CHECK(ver >= last);
        last = ver;
        for (int k = 1; k < CW; k++)
            if (v[k] != v[0]) {
                atomic_fetch_add(&c->torn, 1);
                break;
            }
        if (++n % 64 == 0)
            sq_yield();
    }
    atomic_fetch_add(&c->reads, n);
    sq_watch_rx_drop(&rx);
    return NULL;
}

static void *cons_root(void *arg)
{
    cons *c = arg;
    sq_task r[4], w[2];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(sq_spawn(&r[i], cons_reader, c, &small), 0);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(sq_spawn(&w[i], cons_writer, c, &small), 0);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(sq_join(w[i], NULL), 0);
    while (atomic_load(&c->writers_done) < 3)
        sq_sleep(50 * SQ_USEC);
    atomic_store(&c->stop, 1);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(sq_join(r[i], NULL), 0);
    return NULL;
}

TEST(reads_are_never_torn)
{
    static cons c;
    memset(&c, 0, sizeof c);
    CHECK_EQ(sq_watch_init(&c.w, sizeof(uint64_t) * CW, NULL), 0);
    pthread_t tr[2], tw;
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pthread_create(&tr[i], NULL, cons_reader, &c), 0);
    CHECK_EQ(pthread_create(&tw, NULL, cons_writer, &c), 0);
    sq_test_run(2, cons_root, &c);
    pthread_join(tw, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(tr[i], NULL);
    CHECK_EQ(atomic_load(&c.torn), 0);
    CHECK(atomic_load(&c.reads) > 100);
    CHECK_EQ(sq_watch_version(&c.w), 3 * CONS_ITERS);
    CHECK_EQ(sq_watch_destroy(&c.w), 0);
}

/* ------------------------------------------------------- cancellation */

/* Waiting receivers are aborted at random while a sender keeps sending:
 * an aborted wait marks nothing seen (has_changed still reports what
 * came), survivors (some with short deadlines) end at the final value,
 * and at the end nobody is queued or subscribed. */
#define CX_WAITERS (SQ_TEST_SLOW ? 2000 : 8000)
#define CX_SENDS 2000
#define CX_SURVIVORS 4

typedef struct cx {
    sq_watch w;
    atomic_int cancelled, ready;
    atomic_int aborts_done; /* root's last aborts are out: close now */
} cx;

static void *cx_victim(void *arg)
{
    cx *c = arg;
    sq_watch_rx rx;
    sq_watch_subscribe(&c->w, &rx);
    uint64_t v0;
    sq_watch_read(&rx, NULL, &v0);
    int rc = sq_watch_changed(&rx);
    if (rc == -ECANCELED) {
        atomic_fetch_add(&c->cancelled, 1);
        uint64_t v1 = sq_watch_version(&c->w);
        int h = sq_watch_has_changed(&rx);
        if (v1 != v0)
            CHECK_EQ(h, 1);
    } else {
        CHECK(rc == 0 || rc == -EPIPE);
    }
    sq_watch_rx_drop(&rx);
    return NULL;
}

static void *cx_survivor(void *arg)
{
    cx *c = arg;
    sq_watch_rx rx;
    sq_watch_subscribe(&c->w, &rx);
    atomic_fetch_add(&c->ready, 1);
    uint32_t x = (uint32_t)(uintptr_t)&rx | 1;
    uint64_t last = 0, ver = 0, val = 0;
    for (;;) {
        int rc = sq_watch_changed_until(&rx, sq_now() + sq_test_rnd(&x) % (100 * SQ_USEC));
        if (rc == -ETIMEDOUT)
            continue;
        if (rc == -EPIPE)
            break;
        CHECK_EQ(rc, 0);
        sq_watch_read(&rx, &val, &ver);
        CHECK(ver > last);
        CHECK_EQ(val, ver);
        last = ver;
    }
    CHECK_EQ(last, CX_SENDS);
    sq_watch_rx_drop(&rx);
    return NULL;
}

static void *cx_sender(void *arg)
{
    cx *c = arg;
    uint32_t x = 5;
    for (uint64_t i = 1; i <= CX_SENDS; i++) {
        CHECK_EQ(sq_watch_send(&c->w, &i), 0);
        if (sq_test_rnd(&x) % 4 == 0)
            sq_sleep(sq_test_rnd(&x) % (20 * SQ_USEC));
        else
            sq_yield();
    }
    /* Not before root's last aborts: victims that came after the last
     * send are still waiting then, so some abort always finds a waiter
     * (else a sender far ahead of the spawning root, on a loaded
     * machine, could leave every victim done before any abort). */
    while (!atomic_load(&c->aborts_done))
        sq_sleep(50 * SQ_USEC);
    sq_watch_close(&c->w);
    return NULL;
}

static void cx_aborts_done(void *arg)
{
    atomic_store(&((cx *)arg)->aborts_done, 1);
}

static void *cx_root(void *arg)
{
    cx *c = arg;
    sq_task s[CX_SURVIVORS - 1], tx;
    for (int i = 0; i < CX_SURVIVORS - 1; i++)
        CHECK_EQ(sq_spawn(&s[i], cx_survivor, c, &small), 0);
    while (atomic_load(&c->ready) < CX_SURVIVORS)
        sq_yield();
    CHECK_EQ(sq_spawn(&tx, cx_sender, c, &small), 0);
    sq_test_cancel_storm(&(sq_test_storm){
        .tasks = CX_WAITERS, .fn = cx_victim, .arg = c, .every = 8,
        .aborts = 4, .last_one_in = 2, .seed = 31337,
        .after_aborts = cx_aborts_done, .ctx = c});
    CHECK_EQ(sq_join(tx, NULL), 0);
    for (int i = 0; i < CX_SURVIVORS - 1; i++)
        CHECK_EQ(sq_join(s[i], NULL), 0);
    return NULL;
}

TEST(cancel_storm_loses_nothing_and_leaves_nothing_queued)
{
    for (int round = 0; round < 3; round++) {
        cx c = {.cancelled = 0};
        sq_watch_init(&c.w, sizeof(uint64_t), NULL);
        pthread_t th;
        CHECK_EQ(pthread_create(&th, NULL, cx_survivor, &c), 0);
        sq_test_run(2, cx_root, &c);
        pthread_join(th, NULL);
        CHECK(atomic_load(&c.cancelled) > 0);
        CHECK_EQ(sq_watch_receivers(&c.w), 0);
        CHECK_EQ(sq_watch_destroy(&c.w), 0);
    }
}
