/* The Squirrel specification's own concurrency tests, reproduced on the
 * sync layer: concurrent sets on a shared map behind a reader-writer lock,
 * the contention loop at concurrency 1..32 (a semaphore bounding how many
 * operations run at once), and the two-phase pattern taking two locks in
 * opposite orders without deadlock.  The map stands for the
 * specification's context manager: string keys to string values. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "squirrel/check.h"
#include "squirrel/rwlock.h"
#include "squirrel/sync.h"
#include "testlib.h"

/* ------------------------------------------------- the shared string map */

#define NBUCKETS 64

typedef struct entry {
    struct entry *next;
    char key[32], value[32];
} entry;

typedef struct store {
    sq_rwlock lock;
    entry *bucket[NBUCKETS]; /* under lock */
    long writes;             /* under lock (write side) */
} store;

static unsigned hash_key(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % NBUCKETS;
}

static entry **slot(store *s, const char *key)
{
    entry **p = &s->bucket[hash_key(key)];
    while (*p && strcmp((*p)->key, key) != 0)
        p = &(*p)->next;
    return p;
}

static void store_init(store *s)
{
    memset(s, 0, sizeof *s);
    CHECK_EQ(sq_rwlock_init(&s->lock), 0);
}

static void store_free(store *s)
{
    CHECK_EQ(sq_rwlock_destroy(&s->lock), 0);
    for (int b = 0; b < NBUCKETS; b++)
        for (entry *e = s->bucket[b], *n; e; e = n) {
            n = e->next;
            free(e);
        }
}

static void store_set(store *s, const char *key, const char *value)
{
    entry *fresh = calloc(1, sizeof *fresh); /* allocated outside the lock */
    CHECK(fresh != NULL);
    CHECK_EQ(sq_rwlock_write_lock(&s->lock), 0);
    entry **p = slot(s, key);
    if (*p) {
        snprintf((*p)->value, sizeof (*p)->value, "%s", value);
    } else {
        snprintf(fresh->key, sizeof fresh->key, "%s", key);
        snprintf(fresh->value, sizeof fresh->value, "%s", value);
        *p = fresh;
        fresh = NULL;
    }
    s->writes++;
    CHECK_EQ(sq_rwlock_write_unlock(&s->lock), 0);
    free(fresh);
}

/* Copies key's value into out (32 bytes); false if absent. */
static bool store_get(store *s, const char *key, char *out)
{
    CHECK_EQ(sq_rwlock_read_lock(&s->lock), 0);
    entry *e = *slot(s, key);
    if (e)
        memcpy(out, e->value, sizeof e->value);
    CHECK_EQ(sq_rwlock_read_unlock(&s->lock), 0);
    return e != NULL;
}

static long store_count(store *s)
{
    long n = 0;
    for (int b = 0; b < NBUCKETS; b++)
        for (entry *e = s->bucket[b]; e; e = e->next)
            n++;
    return n;
}

/* value must be "value-<i>" with i % keys == k and i < n. */
static void check_value(const char *value, int k, int keys, long n)
{
    char *end;
    CHECK(strncmp(value, "value-", 6) == 0);
    long i = strtol(value + 6, &end, 10);
    CHECK(*end == '\0');
    CHECK(i >= 0 && i < n);
    CHECK_EQ(i % keys, k);
}

/* ------------------- 100 concurrent sets over 10 keys, every key present */

#define SET_OPS 100
#define SET_KEYS 10

typedef struct set_job {
    store *s;
    long i;
} set_job;

static void *set_task(void *arg)
{
    set_job *j = arg;
    char key[32], value[32];
    snprintf(key, sizeof key, "key-%ld", j->i % SET_KEYS);
    snprintf(value, sizeof value, "value-%ld", j->i);
    store_set(j->s, key, value);
    return NULL;
}

static void *set_thread(void *arg)
{
    set_task(arg);
    return NULL;
}

/* Each round: 100 set operations at once (90 tasks on both workers, 10 on
 * plain threads), then every one of the 10 keys must be present, holding a
 * value one of its writers wrote, and 100 writes must have been done. */
static void *concurrent_sets_root(void *arg)
{
    (void)arg;
    int rounds = SQ_TEST_SLOW ? 40 : 300;
    for (int r = 0; r < rounds; r++) {
        store s;
        store_init(&s);
        set_job jobs[SET_OPS];
        sq_task t[SET_OPS];
        pthread_t th[SET_OPS];
        for (long i = 0; i < SET_OPS; i++) {
            jobs[i] = (set_job){.s = &s, .i = i};
            if (i % 10 == 9)
                CHECK_EQ(pthread_create(&th[i], NULL, set_thread, &jobs[i]),
                         0);
            else
                CHECK_EQ(sq_spawn(&t[i], set_task, &jobs[i], NULL), 0);
        }
        for (long i = 0; i < SET_OPS; i++) {
            if (i % 10 == 9)
                CHECK_EQ(pthread_join(th[i], NULL), 0);
            else
                CHECK_EQ(sq_join(t[i], NULL), 0);
        }
        CHECK_EQ(s.writes, SET_OPS);
        CHECK_EQ(store_count(&s), SET_KEYS);
        for (int k = 0; k < SET_KEYS; k++) {
            char key[32], value[32];
            snprintf(key, sizeof key, "key-%d", k);
            CHECK(store_get(&s, key, value));
            check_value(value, k, SET_KEYS, SET_OPS);
        }
        store_free(&s);
    }
    return NULL;
}

TEST(hundred_concurrent_sets_over_ten_keys_leave_every_key_present)
{
    sq_test_run(2, concurrent_sets_root, NULL);
}

/* --------------------------- the contention loop, concurrency 1 .. 32 */

#define LOOP_KEYS 100

typedef struct loop_shared {
    store s;
    sq_sem permits;
    atomic_long holders, high, hits;
} loop_shared;

typedef struct loop_job {
    loop_shared *sh;
    long i;
} loop_job;

/* One operation: take a permit, then write key-(i%100) = value-i if i is
 * even, else read key-(i%100) (odd keys are never written: always a
 * miss).  Yields while holding the permit so that up to N overlap. */
static void *loop_task(void *arg)
{
    loop_job *j = arg;
    loop_shared *sh = j->sh;
    CHECK_EQ(sq_sem_acquire(&sh->permits, 1), 0);
    long h = atomic_fetch_add(&sh->holders, 1) + 1;
    long hi = atomic_load(&sh->high);
    while (h > hi && !atomic_compare_exchange_weak(&sh->high, &hi, h))
        ;
    char key[32], value[32];
    snprintf(key, sizeof key, "key-%ld", j->i % LOOP_KEYS);
    if (j->i % 2 == 0) {
        snprintf(value, sizeof value, "value-%ld", j->i);
        store_set(&sh->s, key, value);
    } else if (store_get(&sh->s, key, value)) {
        atomic_fetch_add(&sh->hits, 1);
    }
    CHECK_EQ(sq_yield(), 0);
    atomic_fetch_sub(&sh->holders, 1);
    CHECK_EQ(sq_sem_release(&sh->permits, 1), 0);
    return NULL;
}

static void *contention_loop_root(void *arg)
{
    (void)arg;
    long ops = SQ_TEST_SLOW ? 4000 : 20000;
    loop_job *jobs = malloc((size_t)ops * sizeof *jobs);
    sq_task *t = malloc((size_t)ops * sizeof *t);
    CHECK(jobs && t);
    for (long n = 1; n <= 32; n *= 2) {
        loop_shared sh;
        memset(&sh, 0, sizeof sh);
        store_init(&sh.s);
        CHECK_EQ(sq_sem_init(&sh.permits, (size_t)n), 0);
        for (long i = 0; i < ops; i++) {
            jobs[i] = (loop_job){.sh = &sh, .i = i};
            CHECK_EQ(sq_spawn(&t[i], loop_task, &jobs[i], NULL), 0);
        }
        for (long i = 0; i < ops; i++)
            CHECK_EQ(sq_join(t[i], NULL), 0);
        /* Never more operations at once than permits; none lost. */
        CHECK(atomic_load(&sh.high) <= n);
        CHECK(atomic_load(&sh.high) >= 1);
        CHECK_EQ(sq_sem_available(&sh.permits), n);
        CHECK_EQ(sq_sem_destroy(&sh.permits), 0);
        CHECK_EQ(atomic_load(&sh.hits), 0);
        CHECK_EQ(sh.s.writes, ops / 2);
        CHECK_EQ(store_count(&sh.s), LOOP_KEYS / 2);
        for (int k = 0; k < LOOP_KEYS; k += 2) {
            char key[32], value[32];
            snprintf(key, sizeof key, "key-%d", k);
            CHECK(store_get(&sh.s, key, value));
            check_value(value, k, LOOP_KEYS, ops);
            long i = strtol(value + 6, NULL, 10);
            CHECK_EQ(i % 2, 0);
        }
        store_free(&sh.s);
    }
    free(t);
    free(jobs);
    return NULL;
}

TEST(contention_loop_at_concurrency_1_to_32_keeps_counts_and_bounds)
{
    sq_test_run(2, contention_loop_root, NULL);
}

/* ----------------- two locks in opposite orders, the two-phase pattern */

/* Two components, each a counter behind its own reader-writer lock.
 * Operation AB reads A (phase one: read lock, copy, unlock), then updates
 * B under B's write lock (phase two), re-checking under that lock what it
 * read (here: that B's state still allows the update).  Operation BA does
 * the same the other way round.  Neither ever holds both locks, so the
 * opposite orders cannot deadlock.  Every lock call carries the 5 s
 * deadline of the specification's test: a timeout would mean a deadlock. */
typedef struct component {
    sq_rwlock lock;
    long value;       /* under lock */
    long seen_other;  /* the largest value of the other one read */
} component;

typedef struct two_phase {
    component a, b;
    int64_t deadline;
    long iters;
} two_phase;

static int two_phase_op(component *from, component *to, int64_t deadline)
{
    int rc = sq_rwlock_read_lock_until(&from->lock, deadline);
    if (rc)
        return rc;
    long seen = from->value;
    sq_rwlock_read_unlock(&from->lock);
    /* Phase two: take the other lock only now, and re-check under it. */
    rc = sq_rwlock_write_lock_until(&to->lock, deadline);
    if (rc)
        return rc;
    if (seen > to->seen_other)
        to->seen_other = seen;
    to->value++;
    sq_rwlock_write_unlock(&to->lock);
    return 0;
}

static void *ab_task(void *arg)
{
    two_phase *tp = arg;
    for (long i = 0; i < tp->iters; i++) {
        int rc = two_phase_op(&tp->a, &tp->b, tp->deadline);
        if (rc)
            return (void *)(intptr_t)rc;
        if (i % 64 == 0)
            sq_yield();
    }
    return NULL;
}

static void *ba_task(void *arg)
{
    two_phase *tp = arg;
    for (long i = 0; i < tp->iters; i++) {
        int rc = two_phase_op(&tp->b, &tp->a, tp->deadline);
        if (rc)
            return (void *)(intptr_t)rc;
        if (i % 64 == 0)
            sq_yield();
    }
    return NULL;
}

static void *ab_thread(void *arg)
{
    return ab_task(arg);
}

static void *two_phase_root(void *arg)
{
    (void)arg;
    two_phase tp;
    memset(&tp, 0, sizeof tp);
    CHECK_EQ(sq_rwlock_init(&tp.a.lock), 0);
    CHECK_EQ(sq_rwlock_init(&tp.b.lock), 0);
    CHECK_EQ(sq_deadline_in(5 * SQ_SEC, &tp.deadline), 0);
    tp.iters = SQ_TEST_SLOW ? 20000 : 100000;
    /* Two tasks in opposite orders, plus a plain thread doing A then B. */
    sq_task ab, ba;
    pthread_t th;
    CHECK_EQ(sq_spawn(&ab, ab_task, &tp, NULL), 0);
    CHECK_EQ(sq_spawn(&ba, ba_task, &tp, NULL), 0);
    CHECK_EQ(pthread_create(&th, NULL, ab_thread, &tp), 0);
    void *r1 = (void *)1, *r2 = (void *)1, *r3 = (void *)1;
    CHECK_EQ(sq_join_until(ab, &r1, tp.deadline), 0);
    CHECK_EQ(sq_join_until(ba, &r2, tp.deadline), 0);
    CHECK_EQ(pthread_join(th, &r3), 0);
    CHECK(r1 == NULL); /* no lock call timed out */
    CHECK(r2 == NULL);
    CHECK(r3 == NULL);
    CHECK(sq_now() < tp.deadline);
    CHECK_EQ(tp.b.value, 2 * tp.iters);
    CHECK_EQ(tp.a.value, tp.iters);
    CHECK(tp.b.seen_other <= tp.a.value);
    CHECK(tp.a.seen_other <= tp.b.value);
    CHECK_EQ(sq_rwlock_destroy(&tp.a.lock), 0);
    CHECK_EQ(sq_rwlock_destroy(&tp.b.lock), 0);
    return NULL;
}

TEST(two_phase_updates_in_opposite_lock_orders_finish_within_5s)
{
    sq_test_run(2, two_phase_root, NULL);
}

/* The contrast: holding one lock while taking the other, in opposite
 * orders, does deadlock; the deadline forms turn it into -ETIMEDOUT for
 * both, holding nothing extra, instead of a hang.  The run-time checks
 * (squirrel/check.h) see it twice: the order check reports the inversion
 * as the second task starts to wait, before anything is stuck, and the
 * deadlock search, run when the first wait times out (the other is still
 * waiting then: its deadline is later), reports the cycle. */
typedef struct nested {
    sq_rwlock a, b;
    atomic_int holding, waited;
} nested;

/* Neither lets go of its first lock before both waits have ended. */
static void both_waited(nested *n)
{
    atomic_fetch_add(&n->waited, 1);
    while (atomic_load(&n->waited) < 2)
        sq_yield();
}

static void *nested_ab(void *arg)
{
    nested *n = arg;
    CHECK_EQ(sq_rwlock_write_lock(&n->a), 0);
    atomic_fetch_add(&n->holding, 1);
    while (atomic_load(&n->holding) < 2)
        sq_yield();
    int64_t d;
    CHECK_EQ(sq_deadline_in(50 * SQ_MSEC, &d), 0);
    int rc = sq_rwlock_write_lock_until(&n->b, d);
    both_waited(n);
    CHECK_EQ(sq_rwlock_write_unlock(&n->a), 0);
    return (void *)(intptr_t)rc;
}

static void *nested_ba(void *arg)
{
    nested *n = arg;
    CHECK_EQ(sq_rwlock_write_lock(&n->b), 0);
    atomic_fetch_add(&n->holding, 1);
    while (atomic_load(&n->holding) < 2)
        sq_yield();
    int64_t d;
    CHECK_EQ(sq_deadline_in(400 * SQ_MSEC, &d), 0);
    int rc = sq_rwlock_write_lock_until(&n->a, d);
    both_waited(n);
    return (void *)(intptr_t)rc; /* still holding B */
}

typedef struct captured {
    atomic_int order, deadlock;
    char order_text[4096], deadlock_text[4096]; /* the first of each */
} captured;

static void capture(unsigned finding, const char *text, void *arg)
{
    captured *c = arg;
    if (finding == SQ_CHECK_LOCK_ORDER &&
        atomic_fetch_add(&c->order, 1) == 0)
        snprintf(c->order_text, sizeof c->order_text, "%s", text);
    if (finding == SQ_CHECK_DEADLOCK &&
        atomic_fetch_add(&c->deadlock, 1) == 0)
        snprintf(c->deadlock_text, sizeof c->deadlock_text, "%s", text);
}

static void *nested_root(void *arg)
{
    (void)arg;
    nested n;
    memset(&n, 0, sizeof n);
    CHECK_EQ(sq_rwlock_init_named(&n.a, "spec.A"), 0);
    CHECK_EQ(sq_rwlock_init_named(&n.b, "spec.B"), 0);
    sq_task t1, t2;
    sq_spawn_opts o1 = {.name = "a-then-b"}, o2 = {.name = "b-then-a"};
    CHECK_EQ(sq_spawn(&t1, nested_ab, &n, &o1), 0);
    CHECK_EQ(sq_spawn(&t2, nested_ba, &n, &o2), 0);
    void *r1, *r2;
    CHECK_EQ(sq_join(t1, &r1), 0);
    CHECK_EQ(sq_join(t2, &r2), 0);
    /* Both waits hit their deadline: neither got the second lock, as
     * neither let go of its first until both had given up. */
    CHECK_EQ((intptr_t)r1, -ETIMEDOUT);
    CHECK_EQ((intptr_t)r2, -ETIMEDOUT);
    /* nested_ab gave A back; B is still held by nested_ba. */
    CHECK_EQ(sq_rwlock_try_write_lock(&n.a), 0);
    CHECK_EQ(sq_rwlock_write_unlock(&n.a), 0);
    CHECK_EQ(sq_rwlock_try_write_lock(&n.b), -EBUSY);
    CHECK_EQ(sq_rwlock_write_unlock(&n.b), 0);
    CHECK_EQ(sq_rwlock_destroy(&n.a), 0);
    CHECK_EQ(sq_rwlock_destroy(&n.b), 0);
    return NULL;
}

TEST(nested_locks_in_opposite_orders_deadlock_and_time_out)
{
    /* With the order and deadlock checks on (whatever the environment
     * says, restored after), both findings are made exactly once. */
    sq_check_config saved, cfg = {
        .findings = SQ_CHECK_LOCK_ORDER | SQ_CHECK_DEADLOCK};
    sq_check_get_config(&saved);
    static captured cap;
    memset(&cap, 0, sizeof cap);
    sq_check_set_reporter(capture, &cap);
    sq_check_reset_order_graph();
    int rc = sq_check_configure(&cfg);

    sq_test_run(2, nested_root, NULL);

    sq_check_set_reporter(NULL, NULL);
    if (rc == -ENOTSUP)
        return; /* built with the checks compiled out (SQ_CHECKS=OFF) */
    CHECK_EQ(rc, 0);
    CHECK_EQ(sq_check_configure(&saved), 0);
    sq_check_reset_order_graph();
    CHECK_EQ(atomic_load(&cap.order), 1);
    CHECK(strstr(cap.order_text, "spec.A") != NULL);
    CHECK(strstr(cap.order_text, "spec.B") != NULL);
    CHECK(strstr(cap.order_text, "b-then-a") != NULL);
    CHECK(strstr(cap.order_text, "spec_test.c:") != NULL);
    CHECK_EQ(atomic_load(&cap.deadlock), 1);
    CHECK(strstr(cap.deadlock_text, "a-then-b") != NULL);
    CHECK(strstr(cap.deadlock_text, "b-then-a") != NULL);
    CHECK(strstr(cap.deadlock_text, "spec.A") != NULL);
    CHECK(strstr(cap.deadlock_text, "spec.B") != NULL);
}
