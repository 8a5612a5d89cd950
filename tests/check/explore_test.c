/* Deterministic mode and sq_explore: a seed fixes the interleaving (the
 * same seed twice gives the same event log, different seeds give
 * different ones), a check-then-act lost update is found under some seed
 * and replayed exactly by it while the two-phase version passes under
 * every seed tried, and timers, sleeps, deadlines and the blocking pool
 * still work in deterministic mode.  Normal runtimes running at the same
 * time are unaffected. */
#include "testlib.h"

#include "squirrel/explore.h"
#include "squirrel/sync.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

static const sq_spawn_opts small = {.stack_size = SQ_STACK_MIN};

/* ------------------------------------------------------------ event log */

/* What the tasks did, in the order they did it.  Deterministic mode has
 * one worker, so the tasks append without atomics; the log is read after
 * the runtime has finished with it. */
#define LOG_MAX 8192
typedef struct evlog {
    int n;
    uint32_t ev[LOG_MAX];
} evlog;

enum { EV_READ = 1, EV_WRITE, EV_RETRY, EV_STEP, EV_LOCKED, EV_SEM, EV_SPAWN };

static void log_ev(evlog *l, int task, int op, int value)
{
    if (l->n < LOG_MAX)
        l->ev[l->n++] = (uint32_t)task << 20 | (uint32_t)op << 16 |
                        ((uint32_t)value & 0xffff);
}

static bool log_eq(const evlog *a, const evlog *b)
{
    return a->n == b->n && memcmp(a->ev, b->ev, sizeof a->ev[0] * a->n) == 0;
}

/* ---------------------------------------------- check-then-act counter */

#define RACERS 4
#define RACE_SEEDS (SQ_TEST_SLOW ? 50 : 200)

typedef struct race {
    bool two_phase;   /* re-check under the lock before writing */
    bool use_sem;     /* an sq_sem of one permit instead of an sq_mutex */
    sq_mutex m;
    sq_sem s;
    int counter;
    evlog log;
    int runs;         /* bodies run, across seeds */
    int failures;     /* ... that lost an update */
    long retries;     /* two-phase re-checks that found a change */
} race;

typedef struct racer_arg {
    race *r;
    int i;
} racer_arg;

static void race_lock(race *r)
{
    if (r->use_sem)
        CHECK_EQ(sq_sem_acquire(&r->s, 1), 0);
    else
        CHECK_EQ(sq_mutex_lock(&r->m), 0);
}

static void race_unlock(race *r)
{
    if (r->use_sem)
        CHECK_EQ(sq_sem_release(&r->s, 1), 0);
    else
        CHECK_EQ(sq_mutex_unlock(&r->m), 0);
}

/* Reads the counter under the lock, lets go, and writes back what it
 * read plus one under the lock again: unless it re-checks (two_phase),
 * another task's update between the two sections is lost. */
static void *racer(void *p)
{
    racer_arg *a = p;
    race *r = a->r;
    for (;;) {
        race_lock(r);
        int local = r->counter;
        log_ev(&r->log, a->i, EV_READ, local);
        race_unlock(r);
        race_lock(r);
        if (r->two_phase && r->counter != local) {
            log_ev(&r->log, a->i, EV_RETRY, r->counter);
            r->retries++;
            race_unlock(r);
            continue;
        }
        r->counter = local + 1;
        log_ev(&r->log, a->i, EV_WRITE, local + 1);
        race_unlock(r);
        return NULL;
    }
}

static int race_body(void *arg)
{
    race *r = arg;
    CHECK_EQ(sq_mutex_init(&r->m), 0);
    CHECK_EQ(sq_sem_init(&r->s, 1), 0);
    r->counter = 0;
    r->log.n = 0;
    r->runs++;
    sq_task t[RACERS];
    racer_arg a[RACERS];
    for (int i = 0; i < RACERS; i++) {
        a[i] = (racer_arg){r, i};
        CHECK_EQ(sq_spawn(&t[i], racer, &a[i], &small), 0);
    }
    for (int i = 0; i < RACERS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    CHECK_EQ(sq_mutex_destroy(&r->m), 0);
    CHECK_EQ(sq_sem_destroy(&r->s), 0);
    if (r->counter == RACERS)
        return 0;
    r->failures++;
    return 1;
}

static void lost_update_found_and_replayed(bool use_sem)
{
    unsetenv("SQ_EXPLORE_SEED");
    static race r;
    memset(&r, 0, sizeof r);
    r.use_sem = use_sem;
    uint64_t bad = 0;
    int rc = sq_explore(race_body, &r, 1, RACE_SEEDS, &bad);
    CHECK_EQ(rc, SQ_EXPLORE_FAILED);
    if (rc != SQ_EXPLORE_FAILED)
        return;
    /* It stopped at the first failing seed. */
    CHECK(bad >= 1 && bad <= RACE_SEEDS);
    CHECK_EQ(r.runs, (int)bad);
    CHECK_EQ(r.failures, 1);
    int lost = r.counter;
    CHECK(lost < RACERS);
    static evlog first;
    first = r.log;
    CHECK_EQ(first.n, 2 * RACERS); /* one read and one write each */

    /* The seed alone replays it: same final value, same events. */
    for (int k = 0; k < 3; k++) {
        uint64_t again = 0;
        CHECK_EQ(sq_explore(race_body, &r, bad, 1, &again),
                 SQ_EXPLORE_FAILED);
        CHECK_EQ(again, bad);
        CHECK_EQ(r.counter, lost);
        CHECK(log_eq(&r.log, &first));
    }

    /* ... and so does SQ_EXPLORE_SEED, whatever range is asked for. */
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)bad);
    setenv("SQ_EXPLORE_SEED", buf, 1);
    int runs = r.runs;
    uint64_t env_bad = 0;
    CHECK_EQ(sq_explore(race_body, &r, 1000, 50, &env_bad),
             SQ_EXPLORE_FAILED);
    unsetenv("SQ_EXPLORE_SEED");
    CHECK_EQ(r.runs, runs + 1);
    CHECK_EQ(env_bad, bad);
    CHECK_EQ(r.counter, lost);
    CHECK(log_eq(&r.log, &first));

    /* The seed decides: some seeds lose an update, others do not. */
    int failing = 0;
    for (uint64_t s = 1; s <= 40; s++)
        if (sq_explore(race_body, &r, s, 1, NULL) == SQ_EXPLORE_FAILED)
            failing++;
    CHECK(failing >= 4);
    CHECK(failing < 40);
}

TEST(lost_update_under_a_mutex_is_found_and_replayed_by_its_seed)
{
    lost_update_found_and_replayed(false);
}

TEST(lost_update_under_a_semaphore_is_found_and_replayed_by_its_seed)
{
    lost_update_found_and_replayed(true);
}

static void two_phase_passes(bool use_sem)
{
    unsetenv("SQ_EXPLORE_SEED");
    static race r;
    memset(&r, 0, sizeof r);
    r.two_phase = true;
    r.use_sem = use_sem;
    uint64_t bad = 0;
    CHECK_EQ(sq_explore(race_body, &r, 1, RACE_SEEDS, &bad), 0);
    CHECK_EQ(bad, 0);
    CHECK_EQ(r.runs, RACE_SEEDS);
    CHECK_EQ(r.failures, 0);
    /* The seeds did interleave the two sections: the re-check caught
     * other tasks' updates, which the one-phase version would have lost. */
    CHECK(r.retries > RACE_SEEDS / 10);
}

TEST(two_phase_update_passes_under_every_seed)
{
    two_phase_passes(false);
    two_phase_passes(true);
}

/* --------------------------------------------------- same seed, same run */

#define MIX_TASKS 5
#define MIX_STEPS 20

typedef struct mix {
    sq_mutex m;
    sq_sem s;
    int shared;
    evlog log;
} mix;

typedef struct mix_arg {
    mix *x;
    int i;
} mix_arg;

static void *mix_child(void *p)
{
    mix_arg *a = p;
    log_ev(&a->x->log, a->i, EV_STEP, 1000);
    sq_yield();
    log_ev(&a->x->log, a->i, EV_STEP, 1001);
    return NULL;
}

/* Yields, a mutex, a semaphore of two permits, spawns and joins. */
static void *mix_task(void *p)
{
    mix_arg *a = p;
    mix *x = a->x;
    for (int k = 0; k < MIX_STEPS; k++) {
        log_ev(&x->log, a->i, EV_STEP, k);
        CHECK_EQ(sq_yield(), 0);
        if (k % 3 == 0) {
            CHECK_EQ(sq_mutex_lock(&x->m), 0);
            log_ev(&x->log, a->i, EV_LOCKED, x->shared++);
            CHECK_EQ(sq_mutex_unlock(&x->m), 0);
        }
        if (k % 5 == 1) {
            CHECK_EQ(sq_sem_acquire(&x->s, 1), 0);
            log_ev(&x->log, a->i, EV_SEM, k);
            sq_yield();
            CHECK_EQ(sq_sem_release(&x->s, 1), 0);
        }
        if (k == 7) {
            sq_task c;
            mix_arg ca = {x, a->i + 100};
            log_ev(&x->log, a->i, EV_SPAWN, k);
            CHECK_EQ(sq_spawn(&c, mix_child, &ca, &small), 0);
            CHECK_EQ(sq_join(c, NULL), 0);
        }
    }
    return NULL;
}

static void *mix_root(void *p)
{
    mix *x = p;
    sq_mutex_init(&x->m);
    sq_sem_init(&x->s, 2);
    x->shared = 0;
    x->log.n = 0;
    sq_task t[MIX_TASKS];
    mix_arg a[MIX_TASKS];
    for (int i = 0; i < MIX_TASKS; i++) {
        a[i] = (mix_arg){x, i};
        CHECK_EQ(sq_spawn(&t[i], mix_task, &a[i], &small), 0);
    }
    for (int i = 0; i < MIX_TASKS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    return NULL;
}

static void run_mix(uint64_t seed, mix *x)
{
    sq_runtime_opts o = {.seed = seed};
    void *res = (void *)1;
    CHECK_EQ(sq_run(mix_root, x, &o, &res), 0);
    CHECK(res == NULL);
    CHECK_EQ(x->shared, MIX_TASKS * ((MIX_STEPS + 2) / 3));
    /* every step, lock, permit, spawn and the children's two steps */
    CHECK_EQ(x->log.n, MIX_TASKS * (MIX_STEPS + (MIX_STEPS + 2) / 3 +
                                    (MIX_STEPS + 3) / 5 + 1 + 2));
}

#define MIX_SEEDS 20

TEST(same_seed_same_interleaving_different_seeds_different_ones)
{
    static mix x;
    static evlog logs[MIX_SEEDS];
    for (int s = 0; s < MIX_SEEDS; s++) {
        run_mix((uint64_t)s + 1, &x);
        logs[s] = x.log;
        run_mix((uint64_t)s + 1, &x);
        CHECK(log_eq(&x.log, &logs[s]));
    }
    /* Each seed its own interleaving (with five tasks of twenty yields a
     * collision would be a bug in drawing, not bad luck). */
    for (int i = 0; i < MIX_SEEDS; i++)
        for (int j = i + 1; j < MIX_SEEDS; j++)
            CHECK(!log_eq(&logs[i], &logs[j]));
    /* A seed is replayed across runtimes created in between. */
    run_mix(3, &x);
    CHECK(log_eq(&x.log, &logs[2]));
}

/* A yield may go on with the same task, and the draw decides: over many
 * yields with one other task runnable, both outcomes happen. */
typedef struct pingpong {
    int last, switches, stays, finished;
} pingpong;

typedef struct pp_arg {
    pingpong *pp;
    int me;
} pp_arg;

static void *pp_task(void *p)
{
    pp_arg *a = p;
    pingpong *pp = a->pp;
    for (int k = 0; k < 400; k++) {
        if (pp->finished == 0) { /* both runnable: the draw decides */
            if (pp->last == a->me)
                pp->stays++;
            else if (pp->last != 0)
                pp->switches++;
        }
        pp->last = a->me;
        CHECK_EQ(sq_yield(), 0);
    }
    pp->finished++;
    return NULL;
}

static void *pp_root(void *p)
{
    pp_arg a1 = {p, 1}, a2 = {p, 2};
    sq_task t1, t2;
    CHECK_EQ(sq_spawn(&t1, pp_task, &a1, &small), 0);
    CHECK_EQ(sq_spawn(&t2, pp_task, &a2, &small), 0);
    CHECK_EQ(sq_join(t1, NULL), 0);
    CHECK_EQ(sq_join(t2, NULL), 0);
    return NULL;
}

TEST(yield_points_switch_or_go_on_as_the_seed_says)
{
    pingpong pp = {0, 0, 0, 0};
    sq_runtime_opts o = {.seed = 42};
    CHECK_EQ(sq_run(pp_root, &pp, &o, NULL), 0);
    CHECK_EQ(pp.finished, 2);
    CHECK(pp.switches + pp.stays >= 400);
    CHECK(pp.switches > 100);
    CHECK(pp.stays > 100);
}

/* ------------------------------------------------------------ contract */

static pthread_t root_thread;
static atomic_int on_other_thread;

static void *on_which_thread(void *arg)
{
    (void)arg;
    if (!pthread_equal(pthread_self(), root_thread))
        atomic_fetch_add(&on_other_thread, 1);
    sq_yield();
    if (!pthread_equal(pthread_self(), root_thread))
        atomic_fetch_add(&on_other_thread, 1);
    return NULL;
}

static int one_worker_body(void *arg)
{
    (void)arg;
    CHECK_EQ(sq_explore_seed(), 77);
    root_thread = pthread_self();
    sq_task t[16];
    for (int i = 0; i < 16; i++)
        CHECK_EQ(sq_spawn(&t[i], on_which_thread, NULL, &small), 0);
    for (int i = 0; i < 16; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    uint64_t s;
    CHECK_EQ(sq_explore(one_worker_body, NULL, 1, 1, &s), -EPERM);
    return 0;
}

TEST(one_worker_seed_visible_and_bad_arguments_rejected)
{
    unsetenv("SQ_EXPLORE_SEED");
    CHECK_EQ(sq_explore_seed(), 0);
    CHECK_EQ(sq_explore(one_worker_body, NULL, 77, 1, NULL), 0);
    CHECK_EQ(atomic_load(&on_other_thread), 0);

    sq_runtime *rt;
    sq_runtime_opts o = {.workers = 2, .seed = 5};
    CHECK_EQ(sq_runtime_create(&rt, &o), -EINVAL);
    o.workers = 1;
    CHECK_EQ(sq_runtime_create(&rt, &o), 0);
    sq_runtime_destroy(rt);

    uint64_t s = 12345;
    CHECK_EQ(sq_explore(NULL, NULL, 1, 1, &s), -EINVAL);
    CHECK_EQ(sq_explore(one_worker_body, NULL, 1, 0, &s), -EINVAL);
    CHECK_EQ(sq_explore(one_worker_body, NULL, 0, 1, &s), -EINVAL);
    CHECK_EQ(sq_explore(one_worker_body, NULL, UINT64_MAX, 2, &s), -EINVAL);
    const char *bad_env[] = {"abc", "0", "-3", "12x", " 7",
                             "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad_env / sizeof bad_env[0]; i++) {
        setenv("SQ_EXPLORE_SEED", bad_env[i], 1);
        CHECK_EQ(sq_explore(one_worker_body, NULL, 77, 1, &s), -EINVAL);
    }
    unsetenv("SQ_EXPLORE_SEED");
    CHECK_EQ(s, 12345); /* left alone on errors */
}

static int calls;
static uint64_t seeds_seen[16];

static int fail_at_fourth(void *arg)
{
    (void)arg;
    seeds_seen[calls++] = sq_explore_seed();
    return calls == 4 ? -1 : 0;
}

TEST(explore_stops_at_the_first_failing_seed)
{
    unsetenv("SQ_EXPLORE_SEED");
    calls = 0;
    uint64_t s = 0;
    CHECK_EQ(sq_explore(fail_at_fourth, NULL, 1000, 10, &s),
             SQ_EXPLORE_FAILED);
    CHECK_EQ(calls, 4);
    CHECK_EQ(s, 1003);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(seeds_seen[i], 1000 + i);
    calls = 0;
    CHECK_EQ(sq_explore(fail_at_fourth, NULL, 1, 3, &s), 0);
    CHECK_EQ(calls, 3);
    CHECK_EQ(s, 1003);
    /* The largest seeds are usable. */
    calls = 0;
    CHECK_EQ(sq_explore(fail_at_fourth, NULL, UINT64_MAX - 2, 3, &s), 0);
    CHECK_EQ(seeds_seen[2], UINT64_MAX);
}

/* ------------------------------------- time, I/O and blocking still work */

typedef struct timed {
    atomic_int flag;
    sq_mutex m;
    sq_sem held, go;
    int slept;
} timed;

static void *sleeper(void *p)
{
    timed *t = p;
    CHECK_EQ(sq_sleep(2 * SQ_MSEC), 0);
    atomic_store(&t->flag, 1);
    return NULL;
}

static void *spinner(void *p)
{
    timed *t = p;
    /* Runnable all the time: the timer must fire all the same. */
    while (!atomic_load(&t->flag))
        sq_yield();
    return NULL;
}

static void *short_sleeper(void *p)
{
    timed *t = p;
    CHECK_EQ(sq_sleep(SQ_MSEC), 0);
    CHECK_EQ(sq_mutex_lock(&t->m), 0);
    t->slept++;
    CHECK_EQ(sq_mutex_unlock(&t->m), 0);
    return NULL;
}

/* Holds the mutex (across a wait: allowed for this lock) until the root,
 * which waits for it with a deadline, has timed out. */
static void *holder(void *p)
{
    timed *t = p;
    CHECK_EQ(sq_mutex_lock(&t->m), 0);
    CHECK_EQ(sq_sem_release(&t->held, 1), 0);
    CHECK_EQ(sq_sem_acquire(&t->go, 1), 0);
    CHECK_EQ(sq_mutex_unlock(&t->m), 0);
    return NULL;
}

static void *blocking_job(void *p)
{
    return (char *)p + 1;
}

static int timed_body(void *arg)
{
    timed *t = arg;
    atomic_store(&t->flag, 0);
    t->slept = 0;
    sq_mutex_init(&t->m);
    sq_mutex_allow_hold_across_waits(&t->m);
    sq_sem_init(&t->held, 0);
    sq_sem_init(&t->go, 0);
    sq_task a, b, h;
    CHECK_EQ(sq_spawn(&a, sleeper, t, &small), 0);
    CHECK_EQ(sq_spawn(&b, spinner, t, &small), 0);
    CHECK_EQ(sq_spawn(&h, holder, t, &small), 0);
    /* A lock deadline expires while another task holds the lock. */
    CHECK_EQ(sq_sem_acquire(&t->held, 1), 0);
    int64_t deadline;
    CHECK_EQ(sq_deadline_in(SQ_MSEC, &deadline), 0);
    CHECK_EQ(sq_mutex_lock_until(&t->m, deadline), -ETIMEDOUT);
    CHECK_EQ(sq_sem_release(&t->go, 1), 0);
    CHECK_EQ(sq_join(h, NULL), 0);
    sq_task s[8];
    for (int i = 0; i < 8; i++)
        CHECK_EQ(sq_spawn(&s[i], short_sleeper, t, &small), 0);
    /* The blocking pool answers from another thread. */
    void *r = NULL;
    char c;
    CHECK_EQ(sq_blocking_run(blocking_job, &c, &r), 0);
    CHECK(r == &c + 1);
    CHECK_EQ(sq_join(a, NULL), 0);
    CHECK_EQ(sq_join(b, NULL), 0);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(sq_join(s[i], NULL), 0);
    CHECK_EQ(t->slept, 8);
    CHECK_EQ(sq_mutex_destroy(&t->m), 0);
    return 0;
}

TEST(timers_deadlines_and_blocking_pool_work_in_deterministic_mode)
{
    unsetenv("SQ_EXPLORE_SEED");
    static timed t;
    CHECK_EQ(sq_explore(timed_body, &t, 1, SQ_TEST_SLOW ? 5 : 20, NULL), 0);
}

/* -------------------------------------------------- many tasks at once */

#define MANY (SQ_TEST_SLOW ? 1000 : 3000)

static void *many_task(void *p)
{
    int *count = p;
    sq_yield();
    (*count)++;
    sq_yield();
    return NULL;
}

static int many_body(void *arg)
{
    int *count = arg;
    *count = 0;
    sq_group *g;
    CHECK_EQ(sq_group_create(&g), 0);
    for (int i = 0; i < MANY; i++)
        CHECK_EQ(sq_group_spawn(g, many_task, count, &small, NULL), 0);
    CHECK_EQ(sq_group_wait_all(g), 0);
    sq_group_destroy(g);
    return *count == MANY ? 0 : 1;
}

TEST(thousands_of_runnable_tasks)
{
    unsetenv("SQ_EXPLORE_SEED");
    int count = 0;
    CHECK_EQ(sq_explore(many_body, &count, 9, 2, NULL), 0);
    CHECK_EQ(count, MANY);
}

/* ------------------------ normal runtimes beside a deterministic one */

#define NORMAL_TASKS 8
#define NORMAL_ITERS 2000

typedef struct normal {
    sq_mutex m;
    long count;
} normal;

static void *normal_task(void *p)
{
    normal *n = p;
    for (int i = 0; i < NORMAL_ITERS; i++) {
        sq_mutex_lock(&n->m);
        n->count++;
        sq_mutex_unlock(&n->m);
        if (i % 64 == 0)
            sq_yield();
    }
    return NULL;
}

static void *normal_root(void *p)
{
    sq_task t[NORMAL_TASKS];
    for (int i = 0; i < NORMAL_TASKS; i++)
        CHECK_EQ(sq_spawn(&t[i], normal_task, p, &small), 0);
    for (int i = 0; i < NORMAL_TASKS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    return NULL;
}

static void *normal_thread(void *p)
{
    normal *n = p;
    for (int k = 0; k < (SQ_TEST_SLOW ? 5 : 20); k++)
        sq_test_run(2, normal_root, n);
    return NULL;
}

TEST(normal_runtimes_beside_a_deterministic_one_are_unaffected)
{
    unsetenv("SQ_EXPLORE_SEED");
    static normal n;
    sq_mutex_init(&n.m);
    n.count = 0;
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, normal_thread, &n), 0);
    /* Meanwhile: the same seed still gives the same interleaving. */
    static mix x;
    static evlog first;
    run_mix(11, &x);
    first = x.log;
    for (int k = 0; k < 5; k++) {
        run_mix(11, &x);
        CHECK(log_eq(&x.log, &first));
    }
    pthread_join(th, NULL);
    CHECK_EQ(n.count,
             (long)(SQ_TEST_SLOW ? 5 : 20) * NORMAL_TASKS * NORMAL_ITERS);
}
