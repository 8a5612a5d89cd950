/* The wait-for graph (SQ_CHECK_DEADLOCK): a real two-task deadlock is
 * found on demand, when a lock wait times out and by the watchdog, and
 * reported once naming both tasks and both locks; a three-task cycle, a
 * task-and-thread cycle and a reader queued behind a writer are found; a
 * contended lock, a chain and readers sharing a lock are not cycles. */
#include "testlib.h"

#include "squirrel/check.h"
#include "squirrel/rwlock.h"
#include "squirrel/sync.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

/* ---------------------------------------------- capturing the reports */

#define MAX_REPORTS 16

static struct {
    pthread_mutex_t m;
    int n, other;
    char text[MAX_REPORTS][8192];
} cap = {.m = PTHREAD_MUTEX_INITIALIZER};

static void capture(unsigned finding, const char *text, void *arg)
{
    (void)arg;
    if (getenv("SQ_TEST_SHOW_REPORTS")) /* to read them */
        fputs(text, stderr);
    pthread_mutex_lock(&cap.m);
    if (finding != SQ_CHECK_DEADLOCK)
        cap.other++;
    else if (cap.n < MAX_REPORTS)
        snprintf(cap.text[cap.n++], sizeof cap.text[0], "%s", text);
    pthread_mutex_unlock(&cap.m);
}

static int reports(void)
{
    pthread_mutex_lock(&cap.m);
    int n = cap.n;
    pthread_mutex_unlock(&cap.m);
    return n;
}

/* Report i contains s. */
static bool report_has(int i, const char *s)
{
    pthread_mutex_lock(&cap.m);
    bool yes = i < cap.n && strstr(cap.text[i], s) != NULL;
    pthread_mutex_unlock(&cap.m);
    return yes;
}

static sq_check_config saved;

/* Only the deadlock finding (the scenarios below also invert lock orders
 * and hold locks across their handshakes, on purpose), warnings only,
 * reports captured. */
static void checks_begin(int64_t watchdog)
{
    sq_check_get_config(&saved);
    pthread_mutex_lock(&cap.m);
    cap.n = cap.other = 0;
    pthread_mutex_unlock(&cap.m);
    sq_check_set_reporter(capture, NULL);
    sq_check_config c = {.findings = SQ_CHECK_DEADLOCK,
                         .watchdog_ns = watchdog};
    CHECK_EQ(sq_check_configure(&c), 0);
}

static void checks_end(void)
{
    CHECK_EQ(sq_check_configure(&saved), 0);
    sq_check_set_reporter(NULL, NULL);
    CHECK_EQ(cap.other, 0);
}

/* Polls sq_check_deadlocks until it sees `want` cycles (the waiters need
 * a moment to reach their waits); returns what it saw last. */
static int await_cycles(int want)
{
    int n = -1;
    for (int i = 0; i < 5000 && n != want; i++) {
        n = sq_check_deadlocks();
        if (n != want)
            sq_sleep(SQ_MSEC);
    }
    return n;
}

/* Waits until the capture holds `want` reports (10 s at most). */
static void await_reports(int want)
{
    for (int i = 0; i < 10000 && reports() < want; i++)
        sq_sleep(SQ_MSEC);
}

/* ------------------------------------------------- a lock-taking task */

/* Takes `first`, says so, waits until `ready` reaches `all`, then takes
 * `second`, giving up `timeout` ns later (SQ_FOREVER: never); gives back
 * what it got.  Records the second lock's result. */
typedef struct locker {
    sq_mutex *first, *second;
    int64_t timeout;
    atomic_int *ready;
    int all;
    int rc;
} locker;

static void *locker_task(void *arg)
{
    locker *l = arg;
    CHECK_EQ(sq_mutex_lock(l->first), 0);
    atomic_fetch_add(l->ready, 1);
    while (atomic_load(l->ready) < l->all)
        sq_yield();
    int64_t deadline = SQ_FOREVER;
    if (l->timeout != SQ_FOREVER)
        deadline = sq_now() + l->timeout;
    l->rc = sq_mutex_lock_until(l->second, deadline);
    if (l->rc == 0)
        CHECK_EQ(sq_mutex_unlock(l->second), 0);
    CHECK_EQ(sq_mutex_unlock(l->first), 0);
    return NULL;
}

static sq_task spawn_locker(locker *l, const char *name)
{
    sq_task t;
    sq_spawn_opts o = {.name = name};
    CHECK_EQ(sq_spawn(&t, locker_task, l, &o), 0);
    return t;
}

/* ------------------------------------------------------ two tasks */

static void *two_tasks_on_demand(void *arg)
{
    (void)arg;
    sq_mutex m1, m2;
    sq_mutex_init_named(&m1, "dl.m1");
    sq_mutex_init_named(&m2, "dl.m2");
    atomic_int ready = 0;
    locker a = {&m1, &m2, SQ_FOREVER, &ready, 2, 1};
    locker b = {&m2, &m1, SQ_FOREVER, &ready, 2, 1};
    sq_task ta = spawn_locker(&a, "dl-a");
    sq_task tb = spawn_locker(&b, "dl-b");

    CHECK_EQ(await_cycles(1), 1);
    CHECK_EQ(reports(), 1);
    CHECK_EQ(sq_check_deadlocks(), 1); /* still there: not reported again */
    CHECK_EQ(reports(), 1);
    CHECK(report_has(0, "squirrel check: deadlock"));
    CHECK(report_has(0, "found by: an on-demand search"));
    CHECK(report_has(0, "2 tasks or threads"));
    CHECK(report_has(0, "task 'dl-a' #"));
    CHECK(report_has(0, "task 'dl-b' #"));
    CHECK(report_has(0, "spawned at " __FILE__ ":"));
    CHECK(report_has(0, "holds lock dl.m1"));
    CHECK(report_has(0, "holds lock dl.m2"));
    CHECK(report_has(0, "waits for lock dl.m1"));
    CHECK(report_has(0, "waits for lock dl.m2"));
    CHECK(report_has(0, "held by task 'dl-a'"));
    CHECK(report_has(0, "held by task 'dl-b'"));
    /* where each lock was taken and where each waiter tries: the site of
     * the lock calls in locker_task */
    CHECK(report_has(0, "taken at " __FILE__ ":"));

    /* Break it: a's wait is cancelled, a gives m1 back, b goes on. */
    CHECK_EQ(sq_abort(ta), 0);
    CHECK_EQ(sq_join(ta, NULL), -ECANCELED);
    CHECK_EQ(sq_join(tb, NULL), 0);
    CHECK_EQ(a.rc, -ECANCELED);
    CHECK_EQ(b.rc, 0);
    CHECK_EQ(sq_check_deadlocks(), 0);
    CHECK_EQ(reports(), 1);
    CHECK_EQ(sq_mutex_destroy(&m1), 0);
    CHECK_EQ(sq_mutex_destroy(&m2), 0);
    return NULL;
}

TEST(two_task_deadlock_found_on_demand_and_reported_once)
{
    checks_begin(0);
    sq_test_run(2, two_tasks_on_demand, NULL);
    checks_end();
}

static void *two_tasks_timeout(void *arg)
{
    (void)arg;
    sq_mutex m1, m2;
    sq_mutex_init_named(&m1, "dl.t1");
    sq_mutex_init_named(&m2, "dl.t2");
    atomic_int ready = 0;
    /* a gives up after a while; b would wait forever */
    locker a = {&m1, &m2, (SQ_TEST_SLOW ? 1000 : 200) * SQ_MSEC, &ready, 2, 1};
    locker b = {&m2, &m1, SQ_FOREVER, &ready, 2, 1};
    sq_task ta = spawn_locker(&a, "dl-ta");
    sq_task tb = spawn_locker(&b, "dl-tb");
    CHECK_EQ(sq_join(ta, NULL), 0);
    CHECK_EQ(sq_join(tb, NULL), 0);
    CHECK_EQ(a.rc, -ETIMEDOUT);
    CHECK_EQ(b.rc, 0);
    /* The search at a's timeout ran before a gave m1 back: it saw the
     * cycle. */
    CHECK_EQ(reports(), 1);
    CHECK(report_has(0, "found by: a lock wait timed out"));
    CHECK(report_has(0, "task 'dl-ta' #"));
    CHECK(report_has(0, "task 'dl-tb' #"));
    CHECK(report_has(0, "dl.t1"));
    CHECK(report_has(0, "dl.t2"));
    CHECK_EQ(sq_check_deadlocks(), 0);
    return NULL;
}

TEST(two_task_deadlock_found_when_a_lock_wait_times_out)
{
    checks_begin(0);
    sq_test_run(2, two_tasks_timeout, NULL);
    checks_end();
}

static void *two_tasks_watchdog(void *arg)
{
    (void)arg;
    sq_mutex m1, m2;
    sq_mutex_init_named(&m1, "dl.w1");
    sq_mutex_init_named(&m2, "dl.w2");
    atomic_int ready = 0;
    locker a = {&m1, &m2, SQ_FOREVER, &ready, 2, 1};
    locker b = {&m2, &m1, SQ_FOREVER, &ready, 2, 1};
    sq_task ta = spawn_locker(&a, "dl-wa");
    sq_task tb = spawn_locker(&b, "dl-wb");
    await_reports(1);
    CHECK_EQ(reports(), 1);
    CHECK(report_has(0, "found by: the watchdog"));
    CHECK(report_has(0, "task 'dl-wa' #"));
    CHECK(report_has(0, "task 'dl-wb' #"));
    CHECK(report_has(0, "dl.w1"));
    CHECK(report_has(0, "dl.w2"));
    /* Many more watchdog rounds: still one report. */
    sq_sleep(100 * SQ_MSEC);
    CHECK_EQ(reports(), 1);
    CHECK_EQ(sq_abort(tb), 0);
    CHECK_EQ(sq_join(tb, NULL), -ECANCELED);
    CHECK_EQ(sq_join(ta, NULL), 0);
    CHECK_EQ(b.rc, -ECANCELED);
    CHECK_EQ(a.rc, 0);
    return NULL;
}

TEST(two_task_deadlock_found_by_the_watchdog)
{
    checks_begin(5 * SQ_MSEC);
    sq_test_run(2, two_tasks_watchdog, NULL);
    checks_end();
}

/* ---------------------------------------------------- three tasks */

static void *three_tasks(void *arg)
{
    (void)arg;
    sq_mutex m[3];
    sq_mutex_init_named(&m[0], "dl.c0");
    sq_mutex_init_named(&m[1], "dl.c1");
    sq_mutex_init_named(&m[2], "dl.c2");
    atomic_int ready = 0;
    locker l[3];
    sq_task t[3];
    const char *names[3] = {"dl-c0", "dl-c1", "dl-c2"};
    for (int i = 0; i < 3; i++) {
        l[i] = (locker){&m[i], &m[(i + 1) % 3], SQ_FOREVER, &ready, 3, 1};
        t[i] = spawn_locker(&l[i], names[i]);
    }
    CHECK_EQ(await_cycles(1), 1);
    CHECK_EQ(reports(), 1);
    CHECK(report_has(0, "3 tasks or threads"));
    for (int i = 0; i < 3; i++) {
        char s[64];
        snprintf(s, sizeof s, "task '%s' #", names[i]);
        CHECK(report_has(0, s));
        snprintf(s, sizeof s, "holds lock dl.c%d", i);
        CHECK(report_has(0, s));
        snprintf(s, sizeof s, "waits for lock dl.c%d", i);
        CHECK(report_has(0, s));
    }
    CHECK_EQ(sq_abort(t[1]), 0);
    for (int i = 0; i < 3; i++)
        sq_join(t[i], NULL);
    CHECK_EQ(l[1].rc, -ECANCELED);
    CHECK_EQ(l[0].rc, 0);
    CHECK_EQ(l[2].rc, 0);
    CHECK_EQ(sq_check_deadlocks(), 0);
    return NULL;
}

TEST(three_task_cycle)
{
    checks_begin(0);
    sq_test_run(2, three_tasks, NULL);
    checks_end();
}

/* ---------------------------------------------- a task and a thread */

typedef struct mixed {
    sq_mutex m1, m2;
    atomic_int ready;
    int rc;
} mixed;

static void *thread_locker(void *arg)
{
    mixed *x = arg;
    CHECK_EQ(sq_mutex_lock(&x->m1), 0);
    atomic_fetch_add(&x->ready, 1);
    while (atomic_load(&x->ready) < 2)
        sched_yield();
    x->rc = sq_mutex_lock(&x->m2); /* blocks this thread */
    if (x->rc == 0)
        CHECK_EQ(sq_mutex_unlock(&x->m2), 0);
    CHECK_EQ(sq_mutex_unlock(&x->m1), 0);
    return NULL;
}

static void *task_and_thread(void *arg)
{
    mixed *x = arg;
    locker a = {&x->m2, &x->m1, SQ_FOREVER, &x->ready, 2, 1};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, thread_locker, x), 0);
    sq_task ta = spawn_locker(&a, "dl-mixed");
    CHECK_EQ(await_cycles(1), 1);
    CHECK_EQ(reports(), 1);
    CHECK(report_has(0, "task 'dl-mixed' #"));
    CHECK(report_has(0, "  thread "));
    CHECK(report_has(0, "dl.x1"));
    CHECK(report_has(0, "dl.x2"));
    CHECK_EQ(sq_abort(ta), 0);
    CHECK_EQ(sq_join(ta, NULL), -ECANCELED);
    pthread_join(th, NULL);
    CHECK_EQ(x->rc, 0);
    return NULL;
}

TEST(cycle_of_a_task_and_a_plain_thread)
{
    checks_begin(0);
    mixed x = {.ready = 0};
    sq_mutex_init_named(&x.m1, "dl.x1");
    sq_mutex_init_named(&x.m2, "dl.x2");
    sq_test_run(2, task_and_thread, &x);
    checks_end();
}

/* ------------------------------------- a reader queued behind a writer */

typedef struct rw {
    sq_rwlock l;
    sq_mutex m;
    atomic_int step;
    int r_rc, x_rc, w_rc;
} rw;

/* R: read-locks l, then (step 3) wants m. */
static void *rw_r(void *arg)
{
    rw *s = arg;
    CHECK_EQ(sq_rwlock_read_lock(&s->l), 0);
    atomic_store(&s->step, 1);
    while (atomic_load(&s->step) < 3)
        sq_yield();
    s->r_rc = sq_mutex_lock(&s->m);
    if (s->r_rc == 0)
        sq_mutex_unlock(&s->m);
    CHECK_EQ(sq_rwlock_read_unlock(&s->l), 0);
    return NULL;
}

/* W: wants to write l (queued behind R's read lock). */
static void *rw_w(void *arg)
{
    rw *s = arg;
    s->w_rc = sq_rwlock_write_lock(&s->l);
    if (s->w_rc == 0)
        CHECK_EQ(sq_rwlock_write_unlock(&s->l), 0);
    return NULL;
}

/* X: holds m, then wants to read l: only a reader holds it, but W is
 * queued first, so X waits behind W, which waits for R, which waits for
 * X's m. */
static void *rw_x(void *arg)
{
    rw *s = arg;
    CHECK_EQ(sq_mutex_lock(&s->m), 0);
    atomic_store(&s->step, 3);
    s->x_rc = sq_rwlock_read_lock(&s->l);
    if (s->x_rc == 0)
        CHECK_EQ(sq_rwlock_read_unlock(&s->l), 0);
    CHECK_EQ(sq_mutex_unlock(&s->m), 0);
    return NULL;
}

static void *reader_behind_writer(void *arg)
{
    rw *s = arg;
    sq_spawn_opts o = {.name = "dl-reader"};
    sq_task r, w, x;
    CHECK_EQ(sq_spawn(&r, rw_r, s, &o), 0);
    while (atomic_load(&s->step) < 1)
        sq_sleep(SQ_MSEC);
    o.name = "dl-writer";
    CHECK_EQ(sq_spawn(&w, rw_w, s, &o), 0);
    /* Until the writer queues, a try_read succeeds. */
    while (sq_rwlock_try_read_lock(&s->l) == 0) {
        sq_rwlock_read_unlock(&s->l);
        sq_sleep(SQ_MSEC);
    }
    CHECK_EQ(sq_check_deadlocks(), 0); /* W waits for R: no cycle yet */
    o.name = "dl-x";
    CHECK_EQ(sq_spawn(&x, rw_x, s, &o), 0);
    CHECK_EQ(await_cycles(1), 1);
    CHECK_EQ(reports(), 1);
    CHECK(report_has(0, "3 tasks or threads"));
    CHECK(report_has(0, "waits for read lock dl.l"));
    CHECK(report_has(0, "queued behind the writer task 'dl-writer'"));
    CHECK(report_has(0, "holds read lock dl.l"));
    CHECK(report_has(0, "held by task 'dl-x'"));
    CHECK_EQ(sq_abort(r), 0);
    CHECK_EQ(sq_join(r, NULL), -ECANCELED);
    CHECK_EQ(sq_join(w, NULL), 0);
    CHECK_EQ(sq_join(x, NULL), 0);
    CHECK_EQ(s->r_rc, -ECANCELED);
    CHECK_EQ(s->w_rc, 0);
    CHECK_EQ(s->x_rc, 0);
    CHECK_EQ(sq_check_deadlocks(), 0);
    return NULL;
}

TEST(reader_queued_behind_a_writer_closes_a_cycle)
{
    checks_begin(0);
    rw s = {.step = 0};
    sq_rwlock_init_named(&s.l, "dl.l");
    sq_mutex_init_named(&s.m, "dl.m");
    sq_test_run(2, reader_behind_writer, &s);
    checks_end();
}

/* ------------------------------ two readers both asking to write */

typedef struct upgrade {
    sq_rwlock l;
    atomic_int ready;
    int rc[2];
} upgrade;

static void *upgrader(void *arg)
{
    upgrade *u = arg;
    CHECK_EQ(sq_rwlock_read_lock(&u->l), 0);
    int me = atomic_fetch_add(&u->ready, 1);
    while (atomic_load(&u->ready) < 2)
        sq_yield();
    /* Neither can ever get it: the other's read lock stays. */
    int64_t timeout = (SQ_TEST_SLOW ? 2000 : 500) * SQ_MSEC;
    u->rc[me] = sq_rwlock_write_lock_until(&u->l, sq_now() + timeout);
    CHECK_EQ(sq_rwlock_read_unlock(&u->l), 0);
    return NULL;
}

static void *two_upgraders(void *arg)
{
    upgrade *u = arg;
    sq_spawn_opts o = {.name = "dl-up"};
    sq_task t[2];
    for (int i = 0; i < 2; i++)
        CHECK_EQ(sq_spawn(&t[i], upgrader, u, &o), 0);
    CHECK_EQ(await_cycles(1), 1);
    CHECK_EQ(reports(), 1);
    CHECK(report_has(0, "holds read lock dl.up"));
    CHECK(report_has(0, "waits for lock dl.up"));
    for (int i = 0; i < 2; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    CHECK_EQ(u->rc[0], -ETIMEDOUT);
    CHECK_EQ(u->rc[1], -ETIMEDOUT);
    CHECK_EQ(reports(), 1); /* the timeouts' searches knew it already */
    CHECK_EQ(sq_check_deadlocks(), 0);
    return NULL;
}

TEST(two_readers_both_asking_to_write_are_a_cycle)
{
    checks_begin(0);
    upgrade u = {.ready = 0};
    sq_rwlock_init_named(&u.l, "dl.up");
    sq_test_run(2, two_upgraders, &u);
    checks_end();
}

/* -------------------------------------------------- no false cycles */

#define CONTENDERS 24
#define THREADS 2

typedef struct contended {
    sq_mutex m, c1, c2, c3;
    sq_rwlock l;
    atomic_int started, done, readers, go;
    long counter;
} contended;

static void *contender(void *arg)
{
    contended *c = arg;
    atomic_fetch_add(&c->started, 1);
    CHECK_EQ(sq_mutex_lock(&c->m), 0);
    c->counter++;
    CHECK_EQ(sq_mutex_unlock(&c->m), 0);
    atomic_fetch_add(&c->done, 1);
    return NULL;
}

static void *contender_thread(void *arg)
{
    return contender(arg);
}

/* A link of a chain: holds `hold`, then wants `want`, or (the last)
 * waits for `go`. */
typedef struct chain {
    sq_mutex *hold, *want;
    atomic_int *held, *go;
} chain;

static void *chain_task(void *arg)
{
    chain *c = arg;
    CHECK_EQ(sq_mutex_lock(c->hold), 0);
    atomic_fetch_add(c->held, 1);
    if (c->want) {
        CHECK_EQ(sq_mutex_lock(c->want), 0);
        CHECK_EQ(sq_mutex_unlock(c->want), 0);
    } else {
        while (!atomic_load(c->go))
            sq_sleep(SQ_MSEC);
    }
    CHECK_EQ(sq_mutex_unlock(c->hold), 0);
    return NULL;
}

static void *reader_task(void *arg)
{
    contended *c = arg;
    CHECK_EQ(sq_rwlock_read_lock(&c->l), 0);
    atomic_fetch_add(&c->readers, 1);
    while (!atomic_load(&c->go))
        sq_sleep(SQ_MSEC);
    CHECK_EQ(sq_rwlock_read_unlock(&c->l), 0);
    return NULL;
}

static void *writer_task(void *arg)
{
    contended *c = arg;
    CHECK_EQ(sq_rwlock_write_lock(&c->l), 0);
    CHECK_EQ(sq_rwlock_write_unlock(&c->l), 0);
    return NULL;
}

static void *no_false_cycles(void *arg)
{
    contended *c = arg;
    /* One lock, held, with many tasks and threads queued on it. */
    CHECK_EQ(sq_mutex_lock(&c->m), 0);
    sq_task t[CONTENDERS];
    pthread_t th[THREADS];
    for (int i = 0; i < CONTENDERS; i++)
        CHECK_EQ(sq_spawn(&t[i], contender, c, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, contender_thread, c), 0);
    while (atomic_load(&c->started) < CONTENDERS + THREADS)
        sq_sleep(SQ_MSEC);

    /* Two readers sharing l, a writer queued on it, a reader behind. */
    sq_task r[3], w;
    for (int i = 0; i < 2; i++)
        CHECK_EQ(sq_spawn(&r[i], reader_task, c, NULL), 0);
    while (atomic_load(&c->readers) < 2)
        sq_sleep(SQ_MSEC);
    CHECK_EQ(sq_spawn(&w, writer_task, c, NULL), 0);
    while (sq_rwlock_try_read_lock(&c->l) == 0) { /* until w queues */
        sq_rwlock_read_unlock(&c->l);
        sq_sleep(SQ_MSEC);
    }
    CHECK_EQ(sq_spawn(&r[2], reader_task, c, NULL), 0);

    /* A chain of three: tc[0] waits for tc[1], tc[1] for tc[2], which
     * waits for `go`. */
    atomic_int held = 0;
    chain ch[3] = {{&c->c1, &c->c2, &held, &c->go},
                   {&c->c2, &c->c3, &held, &c->go},
                   {&c->c3, NULL, &held, &c->go}};
    sq_task tc[3];
    for (int i = 2; i >= 0; i--) {
        CHECK_EQ(sq_spawn(&tc[i], chain_task, &ch[i], NULL), 0);
        while (atomic_load(&held) < 3 - i)
            sq_sleep(SQ_MSEC);
    }
    for (int i = 0; i < 50; i++) {
        CHECK_EQ(sq_check_deadlocks(), 0);
        sq_sleep(SQ_MSEC);
    }
    CHECK_EQ(sq_mutex_unlock(&c->m), 0);
    atomic_store(&c->go, 1);
    for (int i = 0; i < CONTENDERS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(sq_join(r[i], NULL), 0);
        CHECK_EQ(sq_join(tc[i], NULL), 0);
    }
    CHECK_EQ(sq_join(w, NULL), 0);
    CHECK_EQ(c->counter, CONTENDERS + THREADS);
    CHECK_EQ(sq_check_deadlocks(), 0);
    CHECK_EQ(reports(), 0);
    return NULL;
}

TEST(contended_lock_chain_and_shared_readers_are_no_cycle)
{
    checks_begin(0);
    contended c = {.counter = 0};
    sq_mutex_init_named(&c.m, "dl.contended");
    sq_mutex_init_named(&c.c1, "dl.chain1");
    sq_mutex_init_named(&c.c2, "dl.chain2");
    sq_mutex_init_named(&c.c3, "dl.chain3");
    sq_rwlock_init_named(&c.l, "dl.shared");
    sq_test_run(2, no_false_cycles, &c);
    checks_end();
}

/* A task waiting for a lock it holds itself: a mutex it locked, a read
 * lock it asks for again behind a queued writer.  The locks are not
 * owner-bound, so these are left out (see deadlock.c). */
static void *rw_writer(void *arg)
{
    sq_rwlock *l = arg;
    CHECK_EQ(sq_rwlock_write_lock(l), 0);
    CHECK_EQ(sq_rwlock_write_unlock(l), 0);
    return NULL;
}

static void *self_waits(void *arg)
{
    (void)arg;
    sq_mutex m;
    sq_mutex_init_named(&m, "dl.self");
    CHECK_EQ(sq_mutex_lock(&m), 0);
    CHECK_EQ(sq_mutex_lock_until(&m, sq_now() + SQ_MSEC), -ETIMEDOUT);
    CHECK_EQ(sq_mutex_unlock(&m), 0);

    sq_rwlock l;
    sq_rwlock_init_named(&l, "dl.self-rw");
    CHECK_EQ(sq_rwlock_read_lock(&l), 0);
    sq_task w;
    CHECK_EQ(sq_spawn(&w, rw_writer, &l, NULL), 0);
    while (sq_rwlock_try_read_lock(&l) == 0) { /* until the writer queues */
        sq_rwlock_read_unlock(&l);
        sq_sleep(SQ_MSEC);
    }
    CHECK_EQ(sq_rwlock_read_lock_until(&l, sq_now() + 5 * SQ_MSEC),
             -ETIMEDOUT);
    CHECK_EQ(sq_check_deadlocks(), 0);
    CHECK_EQ(sq_rwlock_read_unlock(&l), 0);
    CHECK_EQ(sq_join(w, NULL), 0);
    CHECK_EQ(reports(), 0);
    return NULL;
}

TEST(waiting_for_a_lock_one_holds_is_left_out)
{
    checks_begin(0);
    sq_test_run(2, self_waits, NULL);
    checks_end();
}

/* ------------------------------------------------------- the watchdog */

TEST(watchdog_starts_retimes_and_stops)
{
    sq_check_config before;
    sq_check_get_config(&before);
    for (int i = 0; i < 20; i++) {
        sq_check_config c = {.findings = SQ_CHECK_DEADLOCK,
                             .watchdog_ns = (i % 3 + 1) * SQ_MSEC};
        CHECK_EQ(sq_check_configure(&c), 0); /* start or re-time */
        if (i % 4 == 3) {
            c.watchdog_ns = 0;
            CHECK_EQ(sq_check_configure(&c), 0); /* stop (joins) */
        }
    }
    CHECK_EQ(sq_check_configure(&before), 0);
    CHECK_EQ(sq_check_deadlocks(), 0);
}
