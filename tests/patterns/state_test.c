/* sq_state: the shared state manager.  Versions rise by exactly one per
 * update and every update is applied (exact counts) with updater tasks on
 * every worker and plain threads; readers always see a consistent
 * snapshot (value == version) in non-decreasing order; every WAIT listener
 * sees every version exactly once in order; DROP_OLDEST listeners see
 * increasing versions whose gaps are exactly the drops, and always the
 * last version; a slow listener under each policy stalls no reader (and,
 * under DROP_OLDEST / DISCONNECT, no updater); disconnect disconnects; the
 * WAIT deadline is honoured; listeners whose receiver is gone are removed;
 * old snapshots stay valid and every value is destroyed exactly once; the
 * two-phase conditional update loses nothing and never updates twice;
 * cancellation leaves nothing half done. */
#include "testlib.h"

#include "squirrel/state.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

static const sq_spawn_opts small = {.stack_size = SQ_STACK_MIN};

/* ------------------------------------------------------------ the value */

/* Every update below adds one to `count`, so in every snapshot count ==
 * version: a reader that sees anything else saw a torn or lost update.
 * `keys` is a set of small integers for the insert-if-absent tests. */
typedef struct val {
    uint64_t count;
    uint64_t keys;
} val;

static atomic_long made, freed;

static val *val_new(uint64_t count, uint64_t keys)
{
    val *v = malloc(sizeof *v);
    if (!v)
        abort();
    v->count = count;
    v->keys = keys;
    atomic_fetch_add(&made, 1);
    return v;
}

static void val_destroy(void *p, void *user)
{
    (void)user;
    atomic_fetch_add(&freed, 1);
    free(p);
}

static int val_copy(const void *src, void **dst, void *user)
{
    (void)user;
    const val *s = src;
    *dst = val_new(s->count, s->keys);
    return 0;
}

static const sq_state_ops val_ops = {val_destroy, val_copy, NULL};

static int inc_update(const void *cur, void **next, void *arg)
{
    (void)arg;
    const val *c = cur;
    *next = val_new(c->count + 1, c->keys);
    return 0;
}

static int inc_modify(void *v, void *arg)
{
    (void)arg;
    ((val *)v)->count++;
    return 0;
}

static int failing_update(const void *cur, void **next, void *arg)
{
    (void)cur;
    (void)next;
    (void)arg;
    return -EIO;
}

static int failing_modify(void *v, void *arg)
{
    (void)arg;
    ((val *)v)->count += 100; /* scribbles on its copy, then fails */
    return -EIO;
}

static int same_update(const void *cur, void **next, void *arg)
{
    (void)arg;
    *next = (void *)cur;
    return 0;
}

static const val *snap_val(sq_state_snap *s)
{
    return sq_state_snap_value(s);
}

/* Values made and not yet destroyed. */
static long live_values(void)
{
    return atomic_load(&made) - atomic_load(&freed);
}

/* ------------------------------------------------------------- basics */

TEST(basics_versions_failures_and_errors)
{
    long live0 = live_values();
    sq_state st;
    CHECK_EQ(sq_state_init(NULL, NULL, NULL), -EINVAL);
    CHECK_EQ(sq_state_init(&st, val_new(0, 0), &val_ops), 0);
    CHECK_EQ(sq_state_version(&st), 0);

    sq_state_snap *s0, *s1;
    CHECK_EQ(sq_state_read(&st, &s0), 0);
    CHECK_EQ(sq_state_snap_version(s0), 0);
    CHECK_EQ(snap_val(s0)->count, 0);

    uint64_t v = 99;
    CHECK_EQ(sq_state_update(&st, inc_update, NULL, &v), 0);
    CHECK_EQ(v, 1);
    CHECK_EQ(sq_state_version(&st), 1);
    CHECK_EQ(snap_val(s0)->count, 0); /* the old snapshot is unchanged */

    /* A failing function changes nothing and uses no version. */
    CHECK_EQ(sq_state_update(&st, failing_update, NULL, &v), -EIO);
    CHECK_EQ(sq_state_modify(&st, failing_modify, NULL, &v), -EIO);
    CHECK_EQ(sq_state_update(&st, same_update, NULL, &v), -EINVAL);
    CHECK_EQ(sq_state_version(&st), 1);
    CHECK_EQ(sq_state_modify(&st, inc_modify, NULL, &v), 0);
    CHECK_EQ(v, 2);
    CHECK_EQ(sq_state_read(&st, &s1), 0);
    CHECK_EQ(sq_state_snap_version(s1), 2);
    CHECK_EQ(snap_val(s1)->count, 2);

    /* A private copy. */
    void *copy = NULL;
    CHECK_EQ(sq_state_read_copy(&st, &copy, &v), 0);
    CHECK_EQ(v, 2);
    CHECK(copy != sq_state_snap_value(s1));
    CHECK_EQ(((val *)copy)->count, 2);
    val_destroy(copy, NULL);

    /* Bad arguments. */
    CHECK_EQ(sq_state_change_until(&st, NULL, inc_update, inc_modify, NULL,
                                   SQ_FOREVER, NULL),
             -EINVAL);
    CHECK_EQ(sq_state_change_until(&st, NULL, NULL, NULL, NULL, SQ_FOREVER,
                                   NULL),
             -EINVAL);
    CHECK_EQ(sq_state_change_until(&st, NULL, inc_update, NULL, NULL, -1,
                                   NULL),
             -EINVAL);
    CHECK_EQ(sq_state_read(&st, NULL), -EINVAL);
    sq_state_listener *l;
    sq_state_listen_opts bad = {.capacity = SQ_STATE_MAX_CAPACITY + 1};
    CHECK_EQ(sq_state_listen(&st, &bad, &l, NULL), -EINVAL);
    bad = (sq_state_listen_opts){.capacity = 1, .wait_ns = -1};
    CHECK_EQ(sq_state_listen(&st, &bad, &l, NULL), -EINVAL);
    bad = (sq_state_listen_opts){.capacity = 1, .on_full = 7};
    CHECK_EQ(sq_state_listen(&st, &bad, &l, NULL), -EINVAL);
    CHECK_EQ(sq_state_listener_count(&st), 0);
    CHECK_EQ(sq_state_version(&st), 2);

    /* A deadline already passed still updates when the lock is free. */
    CHECK_EQ(sq_state_change_until(&st, NULL, inc_update, NULL, NULL, 0, &v),
             1);
    CHECK_EQ(v, 3);

    CHECK_EQ(sq_state_destroy(&st), 0);
    /* Snapshots outlive the state. */
    CHECK_EQ(snap_val(s0)->count, 0);
    CHECK_EQ(snap_val(s1)->count, 2);
    CHECK_EQ(live_values(), live0 + 2);
    sq_state_snap_release(s0);
    sq_state_snap_release(s1);
    CHECK_EQ(live_values(), live0);
}

TEST(without_a_copy_callback_modify_and_read_copy_are_not_supported)
{
    long live0 = live_values();
    sq_state st;
    sq_state_ops ops = {.destroy = val_destroy};
    CHECK_EQ(sq_state_init(&st, val_new(0, 0), &ops), 0);
    void *copy;
    CHECK_EQ(sq_state_read_copy(&st, &copy, NULL), -ENOTSUP);
    CHECK_EQ(sq_state_modify(&st, inc_modify, NULL, NULL), -ENOTSUP);
    CHECK_EQ(sq_state_version(&st), 0);
    CHECK_EQ(sq_state_destroy(&st), 0);
    CHECK_EQ(live_values(), live0);

    /* No ops at all: values are not owned; the same value may be kept. */
    static int token;
    CHECK_EQ(sq_state_init(&st, &token, NULL), 0);
    CHECK_EQ(sq_state_update(&st, same_update, NULL, NULL), 0);
    CHECK_EQ(sq_state_version(&st), 1);
    CHECK_EQ(sq_state_destroy(&st), 0);
}

/* Snapshots of every version stay valid, unchanged, after later updates;
 * a snapshot handed to another task keeps it alive; every value is
 * destroyed exactly once, when its last reference goes. */
#define HOLD_N 200
static void *holder_task(void *arg)
{
    sq_state_snap *s = arg;
    sq_yield();
    CHECK_EQ(snap_val(s)->count, sq_state_snap_version(s));
    sq_state_snap_release(s);
    return NULL;
}

static void *snapshots_root(void *arg)
{
    (void)arg;
    long live0 = live_values();
    sq_state st;
    CHECK_EQ(sq_state_init(&st, val_new(0, 0), &val_ops), 0);
    static sq_state_snap *held[HOLD_N + 1];
    sq_task t[HOLD_N];
    for (int i = 0; i <= HOLD_N; i++) {
        CHECK_EQ(sq_state_read(&st, &held[i]), 0);
        CHECK_EQ(sq_state_snap_version(held[i]), i);
        if (i < HOLD_N) {
            CHECK_EQ(sq_spawn(&t[i], holder_task,
                              sq_state_snap_ref(held[i]), &small),
                     0);
            CHECK_EQ(i % 2 ? sq_state_update(&st, inc_update, NULL, NULL)
                           : sq_state_modify(&st, inc_modify, NULL, NULL),
                     0);
        }
    }
    for (int i = 0; i < HOLD_N; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    /* Every version is still held here. */
    CHECK_EQ(live_values(), live0 + HOLD_N + 1);
    for (int i = 0; i <= HOLD_N; i++) {
        CHECK_EQ(snap_val(held[i])->count, i);
        CHECK_EQ(sq_state_snap_version(held[i]), i);
    }
    for (int i = 0; i < HOLD_N; i++)
        sq_state_snap_release(held[i]);
    /* The current one is still the state's. */
    CHECK_EQ(live_values(), live0 + 1);
    CHECK_EQ(sq_state_destroy(&st), 0);
    CHECK_EQ(live_values(), live0 + 1);
    sq_state_snap_release(held[HOLD_N]);
    CHECK_EQ(live_values(), live0);
    return NULL;
}

TEST(old_snapshots_stay_valid_and_every_value_is_freed_once)
{
    sq_test_run(2, snapshots_root, NULL);
}

/* --------------------------- concurrent updaters, readers and listeners */

/* A receiver: checks every notification (value == version, versions
 * increasing, gaps counted) until it sees version `final` or recv fails. */
typedef struct rx {
    sq_state_listener *l;
    uint64_t start, final;
    uint64_t last;
    long got, gaps;
    int end_rc;
    int slow;        /* yield this many times between receives */
    bool contiguous; /* no gap allowed */
} rx;

static void rx_run(rx *r)
{
    uint64_t last = r->start;
    uint32_t x = (uint32_t)(uintptr_t)r | 1;
    r->end_rc = 0;
    for (;;) {
        sq_state_snap *s;
        int rc = sq_state_recv_until(r->l, &s, sq_now() + 30 * SQ_SEC);
        if (rc) {
            r->end_rc = rc;
            break;
        }
        uint64_t v = sq_state_snap_version(s);
        CHECK(v > last);
        CHECK_EQ(snap_val(s)->count, v);
        if (v != last + 1) {
            r->gaps += (long)(v - last - 1);
            if (r->contiguous)
                CHECK_EQ(v, last + 1);
        }
        last = v;
        r->got++;
        sq_state_snap_release(s);
        if (v == r->final)
            break;
        for (int i = r->slow ? (int)(sq_test_rnd(&x) % (unsigned)(2 * r->slow)) : 0;
             i > 0; i--)
            sq_yield();
    }
    r->last = last;
}

static void *rx_task(void *arg)
{
    rx_run(arg);
    return NULL;
}

static void *rx_thread(void *arg)
{
    rx_run(arg);
    return NULL;
}

#define CU_TASKS 8
#define CU_THREADS 2
#define CU_READERS 3
#define CU_N (SQ_TEST_SLOW ? 80 : 300)
#define CU_TOTAL ((uint64_t)(CU_TASKS + CU_THREADS) * CU_N)

typedef struct cu {
    sq_state st;
    atomic_int go, stop;
    atomic_long read_ok;
    rx r[5];
    rx mid; /* registered while the updates run */
} cu;

static void reader_loop(cu *c)
{
    uint64_t last = 0;
    while (!atomic_load(&c->stop)) {
        sq_state_snap *s;
        CHECK_EQ(sq_state_read(&c->st, &s), 0);
        uint64_t v = sq_state_snap_version(s);
        CHECK(v >= last);
        CHECK_EQ(snap_val(s)->count, v);
        last = v;
        sq_state_snap_release(s);
        /* Read in bursts, so that the readers do not take all the CPU
         * from the updaters (sq_sleep blocks the plain thread). */
        if (atomic_fetch_add(&c->read_ok, 1) % 8 == 7)
            sq_sleep(20 * SQ_USEC);
        else
            sq_yield();
    }
}

static void *reader_task(void *arg)
{
    reader_loop(arg);
    return NULL;
}

static void *reader_thread(void *arg)
{
    cu *c = arg;
    while (!atomic_load(&c->go))
        sched_yield();
    reader_loop(c);
    return NULL;
}

static void *updater_task(void *arg)
{
    cu *c = arg;
    for (int i = 0; i < CU_N; i++) {
        uint64_t v;
        CHECK_EQ(i % 3 ? sq_state_update(&c->st, inc_update, NULL, &v)
                       : sq_state_modify(&c->st, inc_modify, NULL, &v),
                 0);
        CHECK(v >= 1 && v <= CU_TOTAL);
        if (i % 8 == 0)
            sq_yield();
    }
    return NULL;
}

static void *updater_thread(void *arg)
{
    cu *c = arg;
    while (!atomic_load(&c->go))
        sched_yield();
    for (int i = 0; i < CU_N; i++) {
        uint64_t v;
        CHECK_EQ(i % 2 ? sq_state_update(&c->st, inc_update, NULL, &v)
                       : sq_state_modify(&c->st, inc_modify, NULL, &v),
                 0);
        CHECK(v >= 1 && v <= CU_TOTAL);
    }
    return NULL;
}

static void *mid_listener_task(void *arg)
{
    cu *c = arg;
    WAIT_UNTIL(sq_state_version(&c->st) >= CU_TOTAL / 3);
    sq_state_listen_opts o = {.capacity = 8, .on_full = SQ_STATE_WAIT,
                              .wait_ns = 30 * SQ_SEC};
    sq_state_snap *start;
    CHECK_EQ(sq_state_listen(&c->st, &o, &c->mid.l, &start), 0);
    c->mid.start = sq_state_snap_version(start);
    CHECK_EQ(snap_val(start)->count, c->mid.start);
    sq_state_snap_release(start);
    c->mid.final = CU_TOTAL;
    c->mid.contiguous = true;
    if (c->mid.start < CU_TOTAL)
        rx_run(&c->mid);
    else
        c->mid.last = c->mid.start;
    return NULL;
}

static void *cu_root(void *arg)
{
    cu *c = arg;
    sq_task up[CU_TASKS], rd[CU_READERS], rxt[4], mid;
    for (int i = 0; i < 5; i++)
        if (i != 1)
            CHECK_EQ(sq_spawn(&rxt[i < 1 ? i : i - 1], rx_task, &c->r[i],
                              &small),
                     0);
    for (int i = 0; i < CU_READERS; i++)
        CHECK_EQ(sq_spawn(&rd[i], reader_task, c, &small), 0);
    CHECK_EQ(sq_spawn(&mid, mid_listener_task, c, &small), 0);
    for (int i = 0; i < CU_TASKS; i++)
        CHECK_EQ(sq_spawn(&up[i], updater_task, c, &small), 0);
    atomic_store(&c->go, 1);
    for (int i = 0; i < CU_TASKS; i++)
        CHECK_EQ(sq_join(up[i], NULL), 0);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(sq_join(rxt[i], NULL), 0);
    CHECK_EQ(sq_join(mid, NULL), 0);
    atomic_store(&c->stop, 1);
    for (int i = 0; i < CU_READERS; i++)
        CHECK_EQ(sq_join(rd[i], NULL), 0);
    return NULL;
}

/* Updater tasks on every worker and plain threads, readers (tasks and a
 * thread), four WAIT listeners (queues of 1, 16, 3 and 5; receivers on
 * tasks and a plain thread, some slow) and a DROP_OLDEST listener with a slow
 * receiver, and a listener that registers half-way. */
TEST(concurrent_updaters_readers_and_listeners_see_every_version)
{
    long live0 = live_values();
    for (int round = 0; round < 2; round++) {
        static cu c;
        memset(&c, 0, sizeof c);
        CHECK_EQ(sq_state_init(&c.st, val_new(0, 0), &val_ops), 0);
        static const sq_state_listen_opts lo[5] = {
            {.capacity = 1, .on_full = SQ_STATE_WAIT, .wait_ns = 30 * SQ_SEC},
            {.capacity = 16, .on_full = SQ_STATE_WAIT, .wait_ns = 30 * SQ_SEC},
            {.capacity = 3, .on_full = SQ_STATE_WAIT, .wait_ns = 30 * SQ_SEC},
            {.capacity = 2, .on_full = SQ_STATE_DROP_OLDEST},
            {.capacity = 5, .on_full = SQ_STATE_WAIT, .wait_ns = 30 * SQ_SEC},
        };
        for (int i = 0; i < 5; i++) {
            sq_state_snap *start;
            CHECK_EQ(sq_state_listen(&c.st, &lo[i], &c.r[i].l, &start), 0);
            CHECK_EQ(sq_state_snap_version(start), 0);
            sq_state_snap_release(start);
            c.r[i].final = CU_TOTAL;
            c.r[i].contiguous = lo[i].on_full == SQ_STATE_WAIT;
            c.r[i].slow = i >= 2 ? 3 : 0;
        }
        CHECK_EQ(sq_state_listener_count(&c.st), 5);
        pthread_t th[CU_THREADS], rth, rxth;
        for (int i = 0; i < CU_THREADS; i++)
            CHECK_EQ(pthread_create(&th[i], NULL, updater_thread, &c), 0);
        CHECK_EQ(pthread_create(&rth, NULL, reader_thread, &c), 0);
        CHECK_EQ(pthread_create(&rxth, NULL, rx_thread, &c.r[1]), 0);
        sq_test_run(4, cu_root, &c);
        for (int i = 0; i < CU_THREADS; i++)
            pthread_join(th[i], NULL);
        pthread_join(rth, NULL);
        pthread_join(rxth, NULL);

        /* Every update applied, exactly. */
        CHECK_EQ(sq_state_version(&c.st), CU_TOTAL);
        sq_state_snap *s;
        CHECK_EQ(sq_state_read(&c.st, &s), 0);
        CHECK_EQ(snap_val(s)->count, CU_TOTAL);
        sq_state_snap_release(s);
        CHECK(atomic_load(&c.read_ok) > 0);
        /* WAIT listeners: every version once, in order; DROP_OLDEST:
         * received + dropped == every version, the last one received. */
        for (int i = 0; i < 5; i++) {
            rx *r = &c.r[i];
            CHECK_EQ(r->end_rc, 0);
            CHECK_EQ(r->last, CU_TOTAL);
            CHECK(!sq_state_listener_disconnected(r->l));
            if (r->contiguous) {
                CHECK_EQ(r->got, CU_TOTAL);
                CHECK_EQ(r->gaps, 0);
                CHECK_EQ(sq_state_listener_dropped(r->l), 0);
            } else {
                CHECK_EQ(r->got + r->gaps, CU_TOTAL);
                CHECK_EQ((uint64_t)r->gaps, sq_state_listener_dropped(r->l));
            }
        }
        CHECK_EQ(c.mid.end_rc, 0);
        CHECK_EQ(c.mid.last, CU_TOTAL);
        CHECK_EQ((uint64_t)c.mid.got, CU_TOTAL - c.mid.start);
        CHECK_EQ(sq_state_listener_count(&c.st), 6);
        /* Nothing more is queued for anyone. */
        for (int i = 0; i < 5; i++)
            CHECK_EQ(sq_state_try_recv(c.r[i].l, &s), -EAGAIN);
        CHECK_EQ(sq_state_try_recv(c.mid.l, &s), -EAGAIN);
        CHECK_EQ(sq_state_destroy(&c.st), 0);
        for (int i = 0; i < 5; i++) {
            CHECK_EQ(sq_state_recv(c.r[i].l, &s), -EPIPE);
            sq_state_unlisten(c.r[i].l);
        }
        sq_state_unlisten(c.mid.l);
        CHECK_EQ(live_values(), live0);
    }
}

/* ------------------------------------------------------ slow listeners */

typedef struct one_update {
    sq_state *st;
    int rc;
    uint64_t v;
} one_update;

static void *one_update_task(void *arg)
{
    one_update *u = arg;
    u->rc = sq_state_update(u->st, inc_update, NULL, &u->v);
    return NULL;
}

typedef struct reads {
    sq_state *st;
    uint64_t want;
    long n;
} reads;

static void *reads_thread(void *arg)
{
    reads *r = arg;
    for (long i = 0; i < r->n; i++) {
        sq_state_snap *s;
        CHECK_EQ(sq_state_read(r->st, &s), 0);
        CHECK_EQ(sq_state_snap_version(s), r->want);
        CHECK_EQ(snap_val(s)->count, r->want);
        sq_state_snap_release(s);
    }
    return NULL;
}

static void expect_recv(sq_state_listener *l, uint64_t version)
{
    sq_state_snap *s = NULL;
    int rc = sq_state_recv_until(l, &s, sq_now() + 10 * SQ_SEC);
    CHECK_EQ(rc, 0);
    if (rc == 0) {
        CHECK_EQ(sq_state_snap_version(s), version);
        CHECK_EQ(snap_val(s)->count, version);
        sq_state_snap_release(s);
    }
}

/* A WAIT listener with no time limit whose receiver does not receive:
 * the updater waits in its delivery, without any lock: readers (a task
 * and a plain thread) read the new version, another updater commits the
 * next version (and waits for its turn), destroy says -EBUSY; a
 * DROP_OLDEST listener alongside loses old ones.  When the receiver
 * receives, both updaters finish, and the versions arrive in order.
 * Then an unlisten releases an updater waiting for room. */
static void *wait_forever_root(void *arg)
{
    (void)arg;
    long live0 = live_values();
    sq_state st;
    CHECK_EQ(sq_state_init(&st, val_new(0, 0), &val_ops), 0);
    sq_state_listen_opts wo = {.capacity = 1, .on_full = SQ_STATE_WAIT,
                               .wait_ns = SQ_FOREVER};
    sq_state_listen_opts dro = {.capacity = 1,
                                .on_full = SQ_STATE_DROP_OLDEST};
    sq_state_listener *w, *d;
    CHECK_EQ(sq_state_listen(&st, &wo, &w, NULL), 0);
    CHECK_EQ(sq_state_listen(&st, &dro, &d, NULL), 0);

    CHECK_EQ(sq_state_update(&st, inc_update, NULL, NULL), 0); /* w full */
    one_update u2 = {.st = &st, .rc = 1}, u3 = {.st = &st, .rc = 1};
    sq_task t2, t3;
    CHECK_EQ(sq_spawn(&t2, one_update_task, &u2, &small), 0);
    WAIT_UNTIL(sq_state_version(&st) == 2);
    CHECK_EQ(sq_join_until(t2, NULL, sq_now() + 2 * SQ_MSEC), -ETIMEDOUT);

    /* Readers are not stalled. */
    reads r = {.st = &st, .want = 2, .n = 2000};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, reads_thread, &r), 0);
    reads_thread(&r);
    pthread_join(th, NULL);
    CHECK_EQ(sq_state_destroy(&st), -EBUSY);

    /* The update lock is free: the next update commits, then waits for
     * its turn behind u2's delivery. */
    CHECK_EQ(sq_spawn(&t3, one_update_task, &u3, &small), 0);
    WAIT_UNTIL(sq_state_version(&st) == 3);
    CHECK_EQ(sq_join_until(t3, NULL, sq_now() + 2 * SQ_MSEC), -ETIMEDOUT);
    CHECK_EQ(u2.rc, 1);
    CHECK_EQ(u3.rc, 1);

    expect_recv(w, 1);
    expect_recv(w, 2);
    expect_recv(w, 3);
    CHECK_EQ(sq_join(t2, NULL), 0);
    CHECK_EQ(sq_join(t3, NULL), 0);
    CHECK_EQ(u2.rc, 0);
    CHECK_EQ(u2.v, 2);
    CHECK_EQ(u3.rc, 0);
    CHECK_EQ(u3.v, 3);
    CHECK(!sq_state_listener_disconnected(w));
    /* The DROP_OLDEST listener kept only the newest. */
    CHECK_EQ(sq_state_listener_dropped(d), 2);
    expect_recv(d, 3);
    sq_state_snap *s;
    CHECK_EQ(sq_state_try_recv(d, &s), -EAGAIN);

    /* An updater waiting for room is released when the receiver goes. */
    CHECK_EQ(sq_state_update(&st, inc_update, NULL, NULL), 0); /* v4 in w */
    one_update u5 = {.st = &st, .rc = 1};
    sq_task t5;
    CHECK_EQ(sq_spawn(&t5, one_update_task, &u5, &small), 0);
    WAIT_UNTIL(sq_state_version(&st) == 5);
    CHECK_EQ(sq_join_until(t5, NULL, sq_now() + 2 * SQ_MSEC), -ETIMEDOUT);
    CHECK_EQ(sq_state_listener_count(&st), 2);
    sq_state_unlisten(w);
    CHECK_EQ(sq_join_until(t5, NULL, sq_now() + 10 * SQ_SEC), 0);
    CHECK_EQ(u5.rc, 0);
    /* The dead listener is removed by the next update. */
    CHECK_EQ(sq_state_listener_count(&st), 2);
    CHECK_EQ(sq_state_update(&st, inc_update, NULL, NULL), 0);
    CHECK_EQ(sq_state_listener_count(&st), 1);
    CHECK_EQ(sq_state_destroy(&st), 0);
    CHECK_EQ(sq_state_recv(d, &s), 0); /* v6 was queued, then end */
    CHECK_EQ(sq_state_snap_version(s), 6);
    CHECK_EQ(sq_state_listener_dropped(d), 4);
    sq_state_snap_release(s);
    CHECK_EQ(sq_state_recv(d, &s), -EPIPE);
    sq_state_unlisten(d);
    CHECK_EQ(live_values(), live0);
    return NULL;
}

TEST(slow_wait_listener_stalls_no_reader_and_keeps_order)
{
    sq_test_run(2, wait_forever_root, NULL);
}

/* WAIT with a deadline: the updater waits at least wait_ns for room, then
 * disconnects the listener (which then drains and gets -ECONNRESET); if
 * room comes in time, nothing is lost.  An updater aborted while waiting
 * for room disconnects the listener at once, and its update stands. */
static void *late_receiver(void *arg)
{
    sq_state_listener *l = arg;
    sq_sleep(10 * SQ_MSEC);
    expect_recv(l, 1);
    expect_recv(l, 2);
    return NULL;
}

static void *wait_deadline_root(void *arg)
{
    (void)arg;
    long live0 = live_values();
    const int64_t wait = 20 * SQ_MSEC;
    for (int round = 0; round < 3; round++) {
        sq_state st;
        CHECK_EQ(sq_state_init(&st, val_new(0, 0), &val_ops), 0);
        sq_state_listen_opts wo = {.capacity = 1, .on_full = SQ_STATE_WAIT,
                                   .wait_ns = wait};
        sq_state_listener *w, *ok;
        sq_state_listen_opts big = {.capacity = 16,
                                    .wait_ns = 30 * SQ_SEC};
        CHECK_EQ(sq_state_listen(&st, &wo, &w, NULL), 0);
        CHECK_EQ(sq_state_listen(&st, &big, &ok, NULL), 0);
        CHECK_EQ(sq_state_update(&st, inc_update, NULL, NULL), 0);
        int64_t t0 = sq_now();
        CHECK_EQ(sq_state_update(&st, inc_update, NULL, NULL), 0);
        CHECK(sq_now() - t0 >= wait); /* never gives up early */
        CHECK(sq_state_listener_disconnected(w));
        expect_recv(w, 1);
        sq_state_snap *s;
        CHECK_EQ(sq_state_recv(w, &s), -ECONNRESET);
        CHECK_EQ(sq_state_try_recv(w, &s), -ECONNRESET);
        /* Later updates do not wait for it and drop it. */
        CHECK_EQ(sq_state_update(&st, inc_update, NULL, NULL), 0);
        CHECK_EQ(sq_state_listener_count(&st), 1);
        expect_recv(ok, 1);
        expect_recv(ok, 2);
        expect_recv(ok, 3);
        sq_state_unlisten(w);
        sq_state_unlisten(ok);
        CHECK_EQ(sq_state_destroy(&st), 0);
    }

    /* Room in time: the updater waits for the late receiver. */
    {
        sq_state st;
        CHECK_EQ(sq_state_init(&st, val_new(0, 0), &val_ops), 0);
        sq_state_listen_opts wo = {.capacity = 1, .on_full = SQ_STATE_WAIT,
                                   .wait_ns = 20 * SQ_SEC};
        sq_state_listener *w;
        CHECK_EQ(sq_state_listen(&st, &wo, &w, NULL), 0);
        sq_task t;
        CHECK_EQ(sq_spawn(&t, late_receiver, w, &small), 0);
        CHECK_EQ(sq_state_update(&st, inc_update, NULL, NULL), 0);
        CHECK_EQ(sq_state_update(&st, inc_update, NULL, NULL), 0);
        CHECK_EQ(sq_join(t, NULL), 0);
        CHECK(!sq_state_listener_disconnected(w));
        sq_state_unlisten(w);
        CHECK_EQ(sq_state_destroy(&st), 0);
    }

    /* An aborted updater stops waiting for room. */
    {
        sq_state st;
        CHECK_EQ(sq_state_init(&st, val_new(0, 0), &val_ops), 0);
        sq_state_listen_opts wo = {.capacity = 1, .on_full = SQ_STATE_WAIT,
                                   .wait_ns = SQ_FOREVER};
        sq_state_listener *w;
        CHECK_EQ(sq_state_listen(&st, &wo, &w, NULL), 0);
        CHECK_EQ(sq_state_update(&st, inc_update, NULL, NULL), 0);
        one_update u = {.st = &st, .rc = 1};
        sq_task t;
        CHECK_EQ(sq_spawn(&t, one_update_task, &u, &small), 0);
        WAIT_UNTIL(sq_state_version(&st) == 2);
        sq_sleep(SQ_MSEC);
        CHECK_EQ(sq_abort(t), 0);
        CHECK_EQ(sq_join(t, NULL), -ECANCELED);
        CHECK_EQ(u.rc, 0); /* committed: the update stands */
        CHECK_EQ(u.v, 2);
        CHECK(sq_state_listener_disconnected(w));
        expect_recv(w, 1);
        sq_state_snap *s;
        CHECK_EQ(sq_state_recv(w, &s), -ECONNRESET);
        sq_state_unlisten(w);
        CHECK_EQ(sq_state_version(&st), 2);
        CHECK_EQ(sq_state_destroy(&st), 0);
    }
    CHECK_EQ(live_values(), live0);
    return NULL;
}

TEST(wait_listener_deadline_disconnects_and_room_in_time_loses_nothing)
{
    sq_test_run(2, wait_deadline_root, NULL);
}

/* DROP_OLDEST and DISCONNECT listeners whose receivers do not receive at
 * all never make an updater wait: many updates from tasks and a thread
 * complete while they sit idle.  Afterwards the DROP_OLDEST one holds the
 * newest `capacity` versions (drops counted exactly), the DISCONNECT one
 * the first `capacity` and then -ECONNRESET; a WAIT listener with an
 * active receiver alongside gets everything. */
#define NS_N (SQ_TEST_SLOW ? 300 : 2000)
#define NS_TASKS 4

typedef struct ns {
    sq_state st;
    atomic_int go;
} ns;

static void *ns_updater(void *arg)
{
    ns *n = arg;
    while (!atomic_load(&n->go))
        sched_yield();
    for (int i = 0; i < NS_N; i++)
        CHECK_EQ(sq_state_update(&n->st, inc_update, NULL, NULL), 0);
    return NULL;
}

static void *ns_root(void *arg)
{
    ns *n = arg;
    sq_task t[NS_TASKS];
    for (int i = 0; i < NS_TASKS; i++)
        CHECK_EQ(sq_spawn(&t[i], ns_updater, n, &small), 0);
    atomic_store(&n->go, 1);
    for (int i = 0; i < NS_TASKS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    return NULL;
}

TEST(drop_oldest_and_disconnect_listeners_never_stall_updaters)
{
    long live0 = live_values();
    static ns n;
    memset(&n, 0, sizeof n);
    CHECK_EQ(sq_state_init(&n.st, val_new(0, 0), &val_ops), 0);
    sq_state_listen_opts dro = {.capacity = 4,
                                .on_full = SQ_STATE_DROP_OLDEST};
    sq_state_listen_opts dco = {.capacity = 3,
                                .on_full = SQ_STATE_DISCONNECT};
    sq_state_listen_opts wo = {.capacity = 2, .on_full = SQ_STATE_WAIT,
                               .wait_ns = 30 * SQ_SEC};
    sq_state_listener *d, *dc;
    rx all = {.final = (uint64_t)(NS_TASKS + 1) * NS_N, .contiguous = true};
    CHECK_EQ(sq_state_listen(&n.st, &dro, &d, NULL), 0);
    CHECK_EQ(sq_state_listen(&n.st, &dco, &dc, NULL), 0);
    CHECK_EQ(sq_state_listen(&n.st, &wo, &all.l, NULL), 0);
    pthread_t th, rxth;
    CHECK_EQ(pthread_create(&th, NULL, ns_updater, &n), 0);
    CHECK_EQ(pthread_create(&rxth, NULL, rx_thread, &all), 0);
    sq_test_run(2, ns_root, &n);
    pthread_join(th, NULL);
    pthread_join(rxth, NULL);

    const uint64_t total = (uint64_t)(NS_TASKS + 1) * NS_N;
    CHECK_EQ(sq_state_version(&n.st), total);
    CHECK_EQ(all.end_rc, 0);
    CHECK_EQ((uint64_t)all.got, total);
    /* DROP_OLDEST: the last four, with every other one counted dropped. */
    CHECK_EQ(sq_state_listener_dropped(d), total - 4);
    for (uint64_t v = total - 3; v <= total; v++)
        expect_recv(d, v);
    sq_state_snap *s;
    CHECK_EQ(sq_state_try_recv(d, &s), -EAGAIN);
    /* DISCONNECT: the first three, then cut off, and removed. */
    CHECK(sq_state_listener_disconnected(dc));
    for (uint64_t v = 1; v <= 3; v++)
        expect_recv(dc, v);
    CHECK_EQ(sq_state_recv(dc, &s), -ECONNRESET);
    CHECK_EQ(sq_state_listener_count(&n.st), 2);
    sq_state_unlisten(d);
    sq_state_unlisten(dc);
    sq_state_unlisten(all.l);
    CHECK_EQ(sq_state_destroy(&n.st), 0);
    CHECK_EQ(live_values(), live0);
}

/* ------------------------------------------- listeners that go away */

/* While updaters run, listeners of every policy come and go (some
 * receive a while, some never; some are unlistened while an updater waits
 * for room in them); the ones that stay see every version in order.  At
 * the end, after one more update, only the ones that stay are left, and
 * every value has been freed. */
#define CH_UPD 3
#define CH_CHURN 4
#define CH_N (SQ_TEST_SLOW ? 300 : 1500)

typedef struct churn {
    sq_state st;
    atomic_int updaters_done;
    atomic_long listened;
} churn;

static void *churn_updater(void *arg)
{
    churn *c = arg;
    /* The churn runs while updates happen: updaters that all finished
     * before a listener got a worker would leave nothing to churn. */
    while (atomic_load(&c->listened) < CH_CHURN)
        sq_yield();
    for (int i = 0; i < CH_N; i++)
        CHECK_EQ(sq_state_update(&c->st, inc_update, NULL, NULL), 0);
    atomic_fetch_add(&c->updaters_done, 1);
    return NULL;
}

static void *churn_listener(void *arg)
{
    churn *c = arg;
    uint32_t x = (uint32_t)sq_task_id() * 2654435761u | 1;
    while (atomic_load(&c->updaters_done) < CH_UPD) {
        sq_state_listen_opts o = {
            .capacity = 1 + sq_test_rnd(&x) % 4,
            .on_full = (sq_state_full)(sq_test_rnd(&x) % 3),
            .wait_ns = (sq_test_rnd(&x) % 2) ? SQ_FOREVER : 200 * SQ_USEC,
        };
        sq_state_listener *l;
        sq_state_snap *start;
        CHECK_EQ(sq_state_listen(&c->st, &o, &l, &start), 0);
        atomic_fetch_add(&c->listened, 1);
        uint64_t last = sq_state_snap_version(start);
        sq_state_snap_release(start);
        int n = (int)(sq_test_rnd(&x) % 6);
        for (int i = 0; i < n; i++) {
            sq_state_snap *s;
            int rc = sq_state_recv_until(l, &s, sq_now() + SQ_MSEC);
            if (rc) {
                CHECK(rc == -ETIMEDOUT || rc == -ECONNRESET);
                break;
            }
            uint64_t v = sq_state_snap_version(s);
            CHECK(v > last);
            if (o.on_full != SQ_STATE_DROP_OLDEST)
                CHECK_EQ(v, last + 1);
            last = v;
            sq_state_snap_release(s);
        }
        if (sq_test_rnd(&x) % 2)
            sq_yield();
        sq_state_unlisten(l);
    }
    return NULL;
}

static void *churn_root(void *arg)
{
    churn *c = arg;
    sq_state_listen_opts wo = {.capacity = 2, .on_full = SQ_STATE_WAIT,
                               .wait_ns = 30 * SQ_SEC};
    rx stay[2] = {{.final = (uint64_t)CH_UPD * CH_N, .contiguous = true},
                  {.final = (uint64_t)CH_UPD * CH_N, .slow = 2}};
    CHECK_EQ(sq_state_listen(&c->st, &wo, &stay[0].l, NULL), 0);
    sq_state_listen_opts dro = {.capacity = 3,
                                .on_full = SQ_STATE_DROP_OLDEST};
    CHECK_EQ(sq_state_listen(&c->st, &dro, &stay[1].l, NULL), 0);
    sq_task u[CH_UPD], l[CH_CHURN], r[2];
    for (int i = 0; i < 2; i++)
        CHECK_EQ(sq_spawn(&r[i], rx_task, &stay[i], &small), 0);
    for (int i = 0; i < CH_CHURN; i++)
        CHECK_EQ(sq_spawn(&l[i], churn_listener, c, &small), 0);
    for (int i = 0; i < CH_UPD; i++)
        CHECK_EQ(sq_spawn(&u[i], churn_updater, c, &small), 0);
    for (int i = 0; i < CH_UPD; i++)
        CHECK_EQ(sq_join(u[i], NULL), 0);
    for (int i = 0; i < CH_CHURN; i++)
        CHECK_EQ(sq_join(l[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(sq_join(r[i], NULL), 0);
        CHECK_EQ(stay[i].end_rc, 0);
        CHECK_EQ(stay[i].last, (uint64_t)CH_UPD * CH_N);
    }
    CHECK_EQ((uint64_t)stay[0].got, (uint64_t)CH_UPD * CH_N);
    CHECK_EQ((uint64_t)(stay[1].got + stay[1].gaps), (uint64_t)CH_UPD * CH_N);
    CHECK_EQ((uint64_t)stay[1].gaps, sq_state_listener_dropped(stay[1].l));
    CHECK(atomic_load(&c->listened) > 0);
    /* Every churned listener is gone: the next update removes them. */
    CHECK_EQ(sq_state_update(&c->st, inc_update, NULL, NULL), 0);
    CHECK_EQ(sq_state_listener_count(&c->st), 2);
    for (int i = 0; i < 2; i++) {
        expect_recv(stay[i].l, (uint64_t)CH_UPD * CH_N + 1);
        sq_state_unlisten(stay[i].l);
    }
    CHECK_EQ(sq_state_update(&c->st, inc_update, NULL, NULL), 0);
    CHECK_EQ(sq_state_listener_count(&c->st), 0);
    return NULL;
}

TEST(listeners_whose_receiver_is_gone_are_removed)
{
    long live0 = live_values();
    static churn c;
    memset(&c, 0, sizeof c);
    CHECK_EQ(sq_state_init(&c.st, val_new(0, 0), &val_ops), 0);
    sq_test_run(2, churn_root, &c);
    CHECK_EQ(sq_state_destroy(&c.st), 0);
    CHECK_EQ(live_values(), live0);
}

/* Destroy closes the listeners: they drain, then -EPIPE; unlisten after
 * destroy is fine. */
TEST(destroy_closes_listeners_after_they_drain)
{
    long live0 = live_values();
    sq_state st;
    CHECK_EQ(sq_state_init(&st, val_new(0, 0), &val_ops), 0);
    sq_state_listener *l;
    CHECK_EQ(sq_state_listen(&st, NULL, &l, NULL), 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(sq_state_update(&st, inc_update, NULL, NULL), 0);
    CHECK_EQ(sq_state_destroy(&st), 0);
    expect_recv(l, 1);
    expect_recv(l, 2);
    CHECK_EQ(live_values(), live0 + 1); /* v3, queued */
    expect_recv(l, 3);
    sq_state_snap *s;
    CHECK_EQ(sq_state_recv(l, &s), -EPIPE);
    CHECK_EQ(sq_state_try_recv(l, &s), -EPIPE);
    CHECK_EQ(sq_state_recv_until(l, &s, -1), -EINVAL);
    sq_state_unlisten(l);
    CHECK_EQ(live_values(), live0);

    /* Unlisten with notifications still queued releases them. */
    CHECK_EQ(sq_state_init(&st, val_new(0, 0), &val_ops), 0);
    CHECK_EQ(sq_state_listen(&st, NULL, &l, NULL), 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(sq_state_update(&st, inc_update, NULL, NULL), 0);
    sq_state_unlisten(l);
    CHECK_EQ(live_values(), live0 + 1); /* the current one only */
    CHECK_EQ(sq_state_destroy(&st), 0);
    CHECK_EQ(live_values(), live0);
}

/* ---------------------------------------- two-phase conditional update */

static bool key_absent(const void *cur, void *arg)
{
    uint64_t bit = (uint64_t)1 << (uintptr_t)arg;
    sq_yield(); /* widen the window between decision and action */
    return !(((const val *)cur)->keys & bit);
}

static int insert_key(const void *cur, void **next, void *arg)
{
    const val *c = cur;
    *next = val_new(c->count + 1, c->keys | (uint64_t)1 << (uintptr_t)arg);
    return 0;
}

static int insert_key_modify(void *v, void *arg)
{
    val *c = v;
    c->count++;
    c->keys |= (uint64_t)1 << (uintptr_t)arg;
    return 0;
}

#define IA_TASKS 12
#define IA_THREADS 2
#define IA_KEYS 64
#define IA_ROUNDS (SQ_TEST_SLOW ? 4 : 12)

typedef struct ia {
    sq_state st;
    atomic_int round;    /* the round the racers may start */
    atomic_int finished; /* racers done with the current round */
    atomic_long inserted[IA_KEYS];
    atomic_long declined;
} ia;

/* Every racer inserts every key, in an order of its own. */
static void ia_race(ia *a, uint32_t *x)
{
    unsigned off = sq_test_rnd(x) % IA_KEYS;
    for (unsigned k = 0; k < IA_KEYS; k++) {
        uintptr_t key = (k + off) % IA_KEYS;
        uint64_t v;
        int rc = (sq_test_rnd(x) % 2)
                     ? sq_state_update_if(&a->st, key_absent, insert_key,
                                          (void *)key, &v)
                     : sq_state_modify_if(&a->st, key_absent,
                                          insert_key_modify, (void *)key, &v);
        CHECK(rc == 0 || rc == 1);
        if (rc == 1)
            atomic_fetch_add(&a->inserted[key], 1);
        else
            atomic_fetch_add(&a->declined, 1);
        CHECK(v >= 1 && v <= IA_KEYS);
    }
}

static void *ia_task(void *arg)
{
    ia *a = arg;
    uint32_t x = (uint32_t)sq_task_id() * 2654435761u | 1;
    ia_race(a, &x);
    atomic_fetch_add(&a->finished, 1);
    return NULL;
}

static void *ia_thread(void *arg)
{
    ia *a = arg;
    uint32_t x = (uint32_t)(uintptr_t)&x | 1;
    for (int round = 0; round < IA_ROUNDS; round++) {
        while (atomic_load(&a->round) < round)
            sched_yield();
        ia_race(a, &x);
        atomic_fetch_add(&a->finished, 1);
    }
    return NULL;
}

static void *ia_root(void *arg)
{
    ia *a = arg;
    for (int round = 0; round < IA_ROUNDS; round++) {
        CHECK_EQ(sq_state_init(&a->st, val_new(0, 0), &val_ops), 0);
        for (int k = 0; k < IA_KEYS; k++)
            atomic_store(&a->inserted[k], 0);
        atomic_store(&a->finished, 0);
        sq_task t[IA_TASKS];
        /* The threads start this round now: the state is ready, and the
         * last round was checked and destroyed. */
        atomic_store(&a->round, round);
        for (int i = 0; i < IA_TASKS; i++)
            CHECK_EQ(sq_spawn(&t[i], ia_task, a, &small), 0);
        for (int i = 0; i < IA_TASKS; i++)
            CHECK_EQ(sq_join(t[i], NULL), 0);
        WAIT_UNTIL(atomic_load(&a->finished) == IA_TASKS + IA_THREADS);
        /* Each key inserted by exactly one racer; one version each. */
        for (int k = 0; k < IA_KEYS; k++)
            CHECK_EQ(atomic_load(&a->inserted[k]), 1);
        CHECK_EQ(sq_state_version(&a->st), IA_KEYS);
        sq_state_snap *s;
        CHECK_EQ(sq_state_read(&a->st, &s), 0);
        CHECK_EQ(snap_val(s)->count, IA_KEYS);
        CHECK(snap_val(s)->keys == ~(uint64_t)0);
        sq_state_snap_release(s);
        CHECK_EQ(sq_state_destroy(&a->st), 0);
    }
    return NULL;
}

TEST(two_phase_insert_if_absent_inserts_exactly_once)
{
    long live0 = live_values();
    static ia a;
    memset(&a, 0, sizeof a);
    atomic_store(&a.round, -1);
    pthread_t th[IA_THREADS];
    for (int i = 0; i < IA_THREADS; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, ia_thread, &a), 0);
    sq_test_run(4, ia_root, &a);
    for (int i = 0; i < IA_THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK(atomic_load(&a.declined) > 0);
    CHECK_EQ(live_values(), live0);
}

/* Increment while below a limit: racing tasks and threads, each looping
 * until the conditional update says no.  Exactly LIMIT updates happen. */
#define LIM (SQ_TEST_SLOW ? 500 : 3000)

static bool below_limit(const void *cur, void *arg)
{
    (void)arg;
    bool below = ((const val *)cur)->count < LIM;
    if (((const val *)cur)->count >= LIM - 50)
        sq_yield(); /* near the limit: widen the decide-then-act window */
    return below;
}

typedef struct lim {
    sq_state st;
    atomic_long updated, go;
} lim;

static void lim_loop(lim *l)
{
    for (;;) {
        uint64_t v;
        int rc = sq_state_update_if(&l->st, below_limit, inc_update, NULL, &v);
        CHECK(rc == 0 || rc == 1);
        CHECK(v <= LIM);
        if (rc != 1) {
            CHECK_EQ(v, LIM);
            return;
        }
        atomic_fetch_add(&l->updated, 1);
    }
}

static void *lim_task(void *arg)
{
    lim_loop(arg);
    return NULL;
}

static void *lim_thread(void *arg)
{
    lim *l = arg;
    while (!atomic_load(&l->go))
        sched_yield();
    lim_loop(l);
    return NULL;
}

static void *lim_root(void *arg)
{
    lim *l = arg;
    sq_task t[8];
    for (int i = 0; i < 8; i++)
        CHECK_EQ(sq_spawn(&t[i], lim_task, l, &small), 0);
    atomic_store(&l->go, 1);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    return NULL;
}

TEST(conditional_increment_to_a_limit_is_exact)
{
    long live0 = live_values();
    static lim l;
    memset(&l, 0, sizeof l);
    CHECK_EQ(sq_state_init(&l.st, val_new(0, 0), &val_ops), 0);
    sq_state_listener *d;
    sq_state_listen_opts dro = {.capacity = 8,
                                .on_full = SQ_STATE_DROP_OLDEST};
    CHECK_EQ(sq_state_listen(&l.st, &dro, &d, NULL), 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, lim_thread, &l), 0);
    sq_test_run(4, lim_root, &l);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(atomic_load(&l.updated), LIM);
    CHECK_EQ(sq_state_version(&l.st), LIM);
    /* The idle listener's last notification is the last version. */
    sq_state_snap *s, *last = NULL;
    while (sq_state_try_recv(d, &s) == 0) {
        sq_state_snap_release(last);
        last = s;
    }
    CHECK(last != NULL);
    if (last)
        CHECK_EQ(sq_state_snap_version(last), LIM);
    sq_state_snap_release(last);
    CHECK_EQ(sq_state_listener_dropped(d), LIM - 8);
    sq_state_unlisten(d);
    CHECK_EQ(sq_state_destroy(&l.st), 0);
    CHECK_EQ(live_values(), live0);
}

/* ------------------------------------------------------- cancellation */

/* Updaters queued on the update lock and aborted return -ECANCELED and
 * change nothing; the others each add exactly one version.  A receiver
 * aborted in recv consumes nothing. */
#define CA_N 24

typedef struct ca {
    sq_state st;
    atomic_int release, entered, in_fn, cancelled;
} ca;

static int blocking_update(const void *cur, void **next, void *arg)
{
    ca *c = arg;
    atomic_store(&c->in_fn, 1);
    while (!atomic_load(&c->release))
        sq_yield(); /* holds the update lock; yield is not a wait */
    return inc_update(cur, next, NULL);
}

static void *ca_blocker(void *arg)
{
    ca *c = arg;
    return (void *)(intptr_t)sq_state_update(&c->st, blocking_update, c,
                                             NULL);
}

static void *ca_updater(void *arg)
{
    ca *c = arg;
    atomic_fetch_add(&c->entered, 1);
    int rc = sq_state_update(&c->st, inc_update, NULL, NULL);
    if (rc == -ECANCELED)
        atomic_fetch_add(&c->cancelled, 1);
    return (void *)(intptr_t)rc;
}

static void *ca_receiver(void *arg)
{
    sq_state_snap *s;
    return (void *)(intptr_t)sq_state_recv(arg, &s);
}

static void *cancel_root(void *arg)
{
    (void)arg;
    long live0 = live_values();
    for (int round = 0; round < 5; round++) {
        static ca c;
        memset(&c, 0, sizeof c);
        CHECK_EQ(sq_state_init(&c.st, val_new(0, 0), &val_ops), 0);
        sq_state_listener *l;
        sq_state_listen_opts o = {.capacity = CA_N + 1};
        CHECK_EQ(sq_state_listen(&c.st, &o, &l, NULL), 0);

        /* A receiver aborted while it waits. */
        sq_task rt;
        CHECK_EQ(sq_spawn(&rt, ca_receiver, l, &small), 0);
        sq_sleep(200 * SQ_USEC);
        CHECK_EQ(sq_abort(rt), 0);
        void *res;
        CHECK_EQ(sq_join(rt, &res), -ECANCELED);
        CHECK(res == NULL || (intptr_t)res == -ECANCELED);

        sq_task b, t[CA_N];
        CHECK_EQ(sq_spawn(&b, ca_blocker, &c, &small), 0);
        WAIT_UNTIL(atomic_load(&c.in_fn));
        for (int i = 0; i < CA_N; i++)
            CHECK_EQ(sq_spawn(&t[i], ca_updater, &c, &small), 0);
        WAIT_UNTIL(atomic_load(&c.entered) == CA_N);
        sq_sleep(200 * SQ_USEC); /* (one worker: they are all queued) */
        CHECK_EQ(sq_state_destroy(&c.st), -EBUSY);
        int aborted = 0;
        for (int i = round % 2; i < CA_N; i += 2) {
            CHECK_EQ(sq_abort(t[i]), 0);
            aborted++;
        }
        /* Let the aborted ones leave the queue before the lock is free
         * (else a hand-off racing with the abort could grant it). */
        WAIT_UNTIL(atomic_load(&c.cancelled) == aborted);
        atomic_store(&c.release, 1);
        CHECK_EQ(sq_join(b, &res), 0);
        CHECK_EQ((intptr_t)res, 0);
        for (int i = 0; i < CA_N; i++) {
            int rc = sq_join(t[i], &res);
            if ((i - round % 2) % 2 == 0) {
                CHECK_EQ(rc, -ECANCELED);
                CHECK_EQ((intptr_t)res, -ECANCELED);
            } else {
                CHECK_EQ(rc, 0);
                CHECK_EQ((intptr_t)res, 0);
            }
        }
        uint64_t want = 1 + (uint64_t)(CA_N - aborted);
        CHECK_EQ(sq_state_version(&c.st), want);
        /* The listener got each version once, in order, none consumed by
         * the aborted receiver. */
        for (uint64_t v = 1; v <= want; v++)
            expect_recv(l, v);
        sq_state_snap *s;
        CHECK_EQ(sq_state_try_recv(l, &s), -EAGAIN);
        sq_state_unlisten(l);
        CHECK_EQ(sq_state_destroy(&c.st), 0);
    }
    CHECK_EQ(live_values(), live0);
    return NULL;
}

TEST(cancelled_updaters_and_receivers_change_and_consume_nothing)
{
    sq_test_run(1, cancel_root, NULL);
}

/* A storm: updaters, readers and receivers of every policy, aborted at
 * random moments.  Whatever was aborted, the version equals the number of
 * updates that returned success, WAIT listeners that were not disconnected
 * saw contiguous versions, and every value is freed in the end. */
#define ST_TASKS 40

typedef struct storm {
    sq_state st;
    atomic_long ok;
} storm;

static void *storm_task(void *arg)
{
    storm *s = arg;
    uint32_t x = (uint32_t)sq_task_id() * 2654435761u | 1;
    switch (sq_task_id() % 3) {
    case 0:
        for (int i = 0; i < 200; i++) {
            int rc = sq_state_update(&s->st, inc_update, NULL, NULL);
            if (rc == 0)
                atomic_fetch_add(&s->ok, 1);
            else
                CHECK_EQ(rc, -ECANCELED);
            if (sq_yield() == -ECANCELED)
                break;
        }
        break;
    case 1:
        for (int i = 0; i < 400; i++) {
            sq_state_snap *sn;
            int rc = sq_state_read(&s->st, &sn);
            if (rc) {
                CHECK_EQ(rc, -ECANCELED);
                break;
            }
            CHECK_EQ(snap_val(sn)->count, sq_state_snap_version(sn));
            sq_state_snap_release(sn);
            if (sq_yield() == -ECANCELED)
                break;
        }
        break;
    default: {
        sq_state_listen_opts o = {.capacity = 1 + sq_test_rnd(&x) % 3,
                                  .on_full = (sq_state_full)(sq_test_rnd(&x) % 3),
                                  .wait_ns = 100 * SQ_USEC};
        sq_state_listener *l;
        sq_state_snap *start;
        int rc = sq_state_listen(&s->st, &o, &l, &start);
        if (rc) {
            CHECK_EQ(rc, -ECANCELED);
            break;
        }
        uint64_t last = sq_state_snap_version(start);
        sq_state_snap_release(start);
        for (;;) {
            sq_state_snap *sn;
            rc = sq_state_recv_until(l, &sn, sq_now() + 5 * SQ_MSEC);
            if (rc) {
                CHECK(rc == -ECANCELED || rc == -ETIMEDOUT ||
                      rc == -ECONNRESET);
                break;
            }
            uint64_t v = sq_state_snap_version(sn);
            CHECK(v > last);
            if (o.on_full != SQ_STATE_DROP_OLDEST)
                CHECK_EQ(v, last + 1);
            last = v;
            sq_state_snap_release(sn);
        }
        sq_state_unlisten(l);
        break;
    }
    }
    return NULL;
}

static void *storm_root(void *arg)
{
    storm *s = arg;
    static sq_task t[ST_TASKS];
    uint32_t x = 777;
    for (int i = 0; i < ST_TASKS; i++)
        CHECK_EQ(sq_spawn(&t[i], storm_task, s, &small), 0);
    for (int k = 0; k < ST_TASKS / 2; k++) {
        sq_sleep((int64_t)(sq_test_rnd(&x) % 300) * SQ_USEC);
        sq_abort(t[sq_test_rnd(&x) % ST_TASKS]);
    }
    for (int i = 0; i < ST_TASKS; i++)
        sq_join(t[i], NULL);
    return NULL;
}

TEST(cancel_storm_loses_no_update_and_leaks_nothing)
{
    long live0 = live_values();
    for (int round = 0; round < 3; round++) {
        static storm s;
        memset(&s, 0, sizeof s);
        CHECK_EQ(sq_state_init(&s.st, val_new(0, 0), &val_ops), 0);
        sq_test_run(2, storm_root, &s);
        CHECK_EQ(sq_state_version(&s.st), (uint64_t)atomic_load(&s.ok));
        sq_state_snap *sn;
        CHECK_EQ(sq_state_read(&s.st, &sn), 0);
        CHECK_EQ(snap_val(sn)->count, (uint64_t)atomic_load(&s.ok));
        sq_state_snap_release(sn);
        CHECK_EQ(sq_state_destroy(&s.st), 0);
        CHECK_EQ(live_values(), live0);
    }
}
