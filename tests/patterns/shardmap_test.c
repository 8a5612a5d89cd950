/* sq_shardmap: the contract of each call (error codes, versions, copies),
 * no lost update under racing compare-and-set and two-phase updates, the
 * specification's concurrent-access test on the map, delete/set races
 * checked against the writers' own logs and the event stream, growth under
 * load with concurrent readers, change events in version order per key
 * (exact counts, exact lag), cancel storms that publish exactly what they
 * report, no lock held across a wait (the run-time checks stay silent),
 * and memory that stays flat under churn.  Tasks on every worker and
 * plain threads share each map. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "squirrel/check.h"
#include "squirrel/shardmap.h"
#include "testlib.h"

static void key_of(char *buf, size_t n, int k)
{
    snprintf(buf, n, "key-%d", k);
}

/* The index k of an event's "key-<k>" (or -1). */
static int key_index(const sq_shardmap_event *ev)
{
    if (strncmp(ev->key, "key-", 4) != 0 || ev->key_len != strlen(ev->key))
        return -1;
    return atoi(ev->key + 4);
}

/* Runs fn on `ntasks` tasks (spread over the workers) and `nthreads`
 * plain threads at once, worker i getting args + i * size; waits for all.
 * Called from a task. */
#define CREW_MAX 128
static void crew_run(int ntasks, int nthreads, void *(*fn)(void *),
                     void *args, size_t size)
{
    sq_task t[CREW_MAX];
    pthread_t th[CREW_MAX];
    CHECK(ntasks + nthreads <= CREW_MAX);
    for (int i = 0; i < ntasks + nthreads; i++) {
        void *a = (char *)args + (size_t)i * size;
        if (i < ntasks)
            CHECK_EQ(sq_spawn(&t[i], fn, a, NULL), 0);
        else
            CHECK_EQ(pthread_create(&th[i], NULL, fn, a), 0);
    }
    for (int i = 0; i < ntasks + nthreads; i++) {
        if (i < ntasks)
            CHECK_EQ(sq_join(t[i], NULL), 0);
        else
            CHECK_EQ(pthread_join(th[i], NULL), 0);
    }
}

/* Per-key order of received events: versions strictly rise per key. */
#define ORDER_KEYS 64
typedef struct order {
    uint64_t last[ORDER_KEYS];
    long count[ORDER_KEYS];
    long sets, deletes, bad;
} order;

static void order_see(order *o, const sq_shardmap_event *ev)
{
    int k = key_index(ev);
    if (k < 0 || k >= ORDER_KEYS ||
        (ev->kind != SQ_SHARDMAP_EV_SET && ev->kind != SQ_SHARDMAP_EV_DELETE)) {
        o->bad++;
        return;
    }
    if (ev->version <= o->last[k])
        o->bad++;
    o->last[k] = ev->version;
    o->count[k]++;
    if (ev->kind == SQ_SHARDMAP_EV_SET)
        o->sets++;
    else
        o->deletes++;
}

/* Receives everything there is now on rx (which must not have lagged). */
static long drain(sq_broadcast_rx *rx, order *o)
{
    long n = 0;
    sq_shardmap_event ev;
    uint64_t missed = 0;
    int rc;
    while ((rc = sq_shardmap_try_recv(rx, &ev, &missed)) == 0) {
        order_see(o, &ev);
        n++;
    }
    CHECK_EQ(rc, -EAGAIN);
    return n;
}

/* ------------------------------------------------------------ contracts */

TEST(rejects_bad_arguments_and_options)
{
    sq_shardmap m;
    sq_shardmap_opts o = {.shards = 3};
    CHECK_EQ(sq_shardmap_init(&m, &o), -EINVAL);
    o.shards = SQ_SHARDMAP_MAX_SHARDS * 2;
    CHECK_EQ(sq_shardmap_init(&m, &o), -EINVAL);
    o = (sq_shardmap_opts){.flags = 0x80};
    CHECK_EQ(sq_shardmap_init(&m, &o), -EINVAL);
    CHECK_EQ(sq_shardmap_init(NULL, NULL), -EINVAL);
    o = (sq_shardmap_opts){.shards = 1};
    CHECK_EQ(sq_shardmap_init(&m, &o), 0);

    char longkey[SQ_SHARDMAP_KEY_MAX + 2];
    memset(longkey, 'x', sizeof longkey);
    longkey[SQ_SHARDMAP_KEY_MAX + 1] = '\0';
    uint64_t v = 99;
    CHECK_EQ(sq_shardmap_set(&m, longkey, "a", 1, &v), -ENAMETOOLONG);
    CHECK_EQ(v, 99); /* untouched on argument errors */
    longkey[SQ_SHARDMAP_KEY_MAX] = '\0'; /* exactly the limit: fine */
    CHECK_EQ(sq_shardmap_set(&m, longkey, "a", 1, &v), 0);
    CHECK_EQ(sq_shardmap_set(&m, NULL, "a", 1, NULL), -EINVAL);
    CHECK_EQ(sq_shardmap_set(&m, "k", NULL, 1, NULL), -EINVAL);
    CHECK_EQ(sq_shardmap_set(&m, "k", NULL, SQ_SHARDMAP_VALUE_MAX + 1, NULL),
             -EINVAL);
    CHECK_EQ(sq_shardmap_set(&m, "k", "a", SQ_SHARDMAP_VALUE_MAX + 1, NULL),
             -EMSGSIZE);
    CHECK_EQ(sq_shardmap_set_until(&m, "k", "a", 1, NULL, -1), -EINVAL);
    CHECK_EQ(sq_shardmap_get_until(&m, "k", NULL, 0, NULL, NULL, -1),
             -EINVAL);
    CHECK_EQ(sq_shardmap_get(&m, "k", NULL, 4, NULL, NULL), -EINVAL);
    CHECK_EQ(sq_shardmap_cas_delete(&m, "k", 0, NULL), -EINVAL);
    CHECK_EQ(sq_shardmap_delete_until(&m, "k", NULL, -5), -EINVAL);
    CHECK_EQ(sq_shardmap_update(&m, "k", NULL, NULL, 0, NULL), -EINVAL);
    CHECK_EQ(sq_shardmap_get_copy(&m, "k", NULL, NULL, NULL), -EINVAL);
    CHECK_EQ(sq_shardmap_keys(&m, NULL, NULL), -EINVAL);
    CHECK_EQ(sq_shardmap_foreach(&m, NULL, NULL), -EINVAL);
    CHECK_EQ(sq_shardmap_stats_get(&m, NULL), -EINVAL);
    CHECK_EQ(sq_shardmap_size(&m), 1);
    /* A deadline already passed still works on a free lock. */
    CHECK_EQ(sq_shardmap_set_until(&m, "k", "b", 1, NULL, 0), 0);
    char c;
    CHECK_EQ(sq_shardmap_get_until(&m, "k", &c, 1, NULL, NULL, 0), 0);
    CHECK_EQ(c, 'b');

    CHECK_EQ(sq_shardmap_destroy(&m), 0);
    CHECK_EQ(sq_shardmap_destroy(&m), -EINVAL);
    CHECK_EQ(sq_shardmap_set(&m, "k", "a", 1, NULL), -EINVAL);
}

TEST(set_get_delete_copy_values_and_raise_versions)
{
    sq_shardmap m;
    CHECK_EQ(sq_shardmap_init(&m, NULL), 0);
    uint64_t v1, v2, vd, v3, v;
    size_t len;
    char buf[64];

    CHECK_EQ(sq_shardmap_get(&m, "a", buf, sizeof buf, &len, &v), -ENOENT);
    CHECK_EQ(len, 0);
    CHECK_EQ(v, 0);
    CHECK_EQ(sq_shardmap_set(&m, "a", "hello", 5, &v1), 0);
    CHECK(v1 > 0);
    memset(buf, 0, sizeof buf);
    CHECK_EQ(sq_shardmap_get(&m, "a", buf, sizeof buf, &len, &v), 0);
    CHECK_EQ(len, 5);
    CHECK_EQ(v, v1);
    CHECK(memcmp(buf, "hello", 5) == 0);

    /* The caller's buffer is a copy: changing it changes nothing. */
    buf[0] = 'J';
    CHECK_EQ(sq_shardmap_get(&m, "a", buf, sizeof buf, &len, NULL), 0);
    CHECK_EQ(buf[0], 'h');

    CHECK_EQ(sq_shardmap_set(&m, "a", "a longer value", 14, &v2), 0);
    CHECK(v2 > v1);
    /* Too small a buffer: nothing copied, length and version told. */
    memset(buf, '#', sizeof buf);
    CHECK_EQ(sq_shardmap_get(&m, "a", buf, 4, &len, &v), -ENOBUFS);
    CHECK_EQ(len, 14);
    CHECK_EQ(v, v2);
    CHECK_EQ(buf[0], '#');
    void *copy;
    CHECK_EQ(sq_shardmap_get_copy(&m, "a", &copy, &len, &v), 0);
    CHECK_EQ(len, 14);
    CHECK_EQ(v, v2);
    CHECK(strcmp(copy, "a longer value") == 0); /* NUL added */
    free(copy);

    CHECK_EQ(sq_shardmap_delete(&m, "a", &vd), 0);
    CHECK(vd > v2);
    CHECK_EQ(sq_shardmap_delete(&m, "a", &v), -ENOENT);
    CHECK_EQ(v, 0);
    CHECK_EQ(sq_shardmap_get_copy(&m, "a", &copy, &len, &v), -ENOENT);
    CHECK(copy == NULL);
    /* Re-inserted: the version keeps rising past the deletion. */
    CHECK_EQ(sq_shardmap_set(&m, "a", "x", 1, &v3), 0);
    CHECK(v3 > vd);

    /* Empty key, empty value, bytes with zeros in them. */
    CHECK_EQ(sq_shardmap_set(&m, "", "", 0, &v), 0);
    CHECK_EQ(sq_shardmap_get(&m, "", NULL, 0, &len, NULL), 0);
    CHECK_EQ(len, 0);
    const char bin[6] = {0, 1, 0, 2, 0, 3};
    CHECK_EQ(sq_shardmap_set(&m, "bin", bin, sizeof bin, NULL), 0);
    CHECK_EQ(sq_shardmap_get(&m, "bin", buf, sizeof buf, &len, NULL), 0);
    CHECK_EQ(len, 6);
    CHECK(memcmp(buf, bin, 6) == 0);
    CHECK_EQ(sq_shardmap_size(&m), 3);
    CHECK_EQ(sq_shardmap_destroy(&m), 0);
}

TEST(compare_and_set_reports_each_mismatch_and_defeats_aba)
{
    sq_shardmap m;
    CHECK_EQ(sq_shardmap_init(&m, NULL), 0);
    uint64_t v, va, vb;
    CHECK_EQ(sq_shardmap_cas(&m, "k", 5, "x", 1, &v), -ENOENT);
    CHECK_EQ(v, 0);
    CHECK_EQ(sq_shardmap_cas(&m, "k", 0, "a", 1, &va), 0);
    CHECK_EQ(sq_shardmap_cas(&m, "k", 0, "b", 1, &v), -EEXIST);
    CHECK_EQ(v, va);
    CHECK_EQ(sq_shardmap_cas(&m, "k", va + 1, "b", 1, &v), -ESTALE);
    CHECK_EQ(v, va);
    CHECK_EQ(sq_shardmap_cas(&m, "k", va, "b", 1, &vb), 0);
    CHECK(vb > va);
    char c;
    CHECK_EQ(sq_shardmap_get(&m, "k", &c, 1, NULL, NULL), 0);
    CHECK_EQ(c, 'b');
    CHECK_EQ(sq_shardmap_cas_delete(&m, "k", va, &v), -ESTALE);
    CHECK_EQ(v, vb);

    /* ABA: delete and set again; the old version no longer matches. */
    uint64_t vd, vn;
    CHECK_EQ(sq_shardmap_delete(&m, "k", &vd), 0);
    CHECK_EQ(sq_shardmap_set(&m, "k", "b", 1, &vn), 0);
    CHECK(vn > vd && vd > vb);
    CHECK_EQ(sq_shardmap_cas(&m, "k", vb, "z", 1, &v), -ESTALE);
    CHECK_EQ(sq_shardmap_cas_delete(&m, "k", vb, &v), -ESTALE);
    CHECK_EQ(sq_shardmap_cas_delete(&m, "k", vn, &v), 0);
    CHECK(v > vn);
    CHECK_EQ(sq_shardmap_cas_delete(&m, "k", vn, &v), -ENOENT);
    CHECK_EQ(sq_shardmap_size(&m), 0);
    CHECK_EQ(sq_shardmap_destroy(&m), 0);
}

/* ----------------------------------------- listing, foreach and stats */

typedef struct each {
    sq_shardmap *m;
    long n, sum, stop_at;
    bool mutate;
} each;

static int each_fn(void *arg, const char *key, const void *value, size_t len,
                   uint64_t version)
{
    each *e = arg;
    long x;
    CHECK_EQ(len, sizeof x);
    CHECK(version > 0);
    memcpy(&x, value, sizeof x);
    char want[32];
    key_of(want, sizeof want, (int)x);
    CHECK(strcmp(key, want) == 0);
    e->n++;
    e->sum += x;
    if (e->mutate) {
        /* No lock is held during the callback: writing the map from it
         * (any shard, this one included) cannot deadlock. */
        CHECK_EQ(sq_shardmap_set(e->m, key, &x, sizeof x, NULL), 0);
        CHECK_EQ(sq_shardmap_delete(e->m, "extra", NULL), -ENOENT);
    }
    return e->stop_at && e->n == e->stop_at ? 77 : 0;
}

TEST(keys_foreach_size_and_stats_see_every_key_once)
{
    sq_shardmap m;
    sq_shardmap_opts o = {.shards = 4, .flags = SQ_SHARDMAP_NO_EVENTS};
    CHECK_EQ(sq_shardmap_init(&m, &o), 0);
    const long n = 3000;
    for (long i = 0; i < n; i++) {
        char k[32];
        key_of(k, sizeof k, (int)i);
        CHECK_EQ(sq_shardmap_set(&m, k, &i, sizeof i, NULL), 0);
    }
    CHECK_EQ(sq_shardmap_size(&m), n);

    char **keys;
    size_t nk;
    CHECK_EQ(sq_shardmap_keys(&m, &keys, &nk), 0);
    CHECK_EQ(nk, n);
    char *seen = calloc((size_t)n, 1);
    for (size_t i = 0; i < nk; i++) {
        CHECK(strncmp(keys[i], "key-", 4) == 0);
        long k = atol(keys[i] + 4);
        CHECK(k >= 0 && k < n);
        if (k >= 0 && k < n)
            seen[k]++;
    }
    CHECK(keys[nk] == NULL);
    for (long i = 0; i < n; i++)
        CHECK_EQ(seen[i], 1);
    free(seen);
    free(keys);

    each e = {.m = &m};
    CHECK_EQ(sq_shardmap_foreach(&m, each_fn, &e), 0);
    CHECK_EQ(e.n, n);
    CHECK_EQ(e.sum, n * (n - 1) / 2);
    e = (each){.m = &m, .stop_at = 10};
    CHECK_EQ(sq_shardmap_foreach(&m, each_fn, &e), 77);
    CHECK_EQ(e.n, 10);
    e = (each){.m = &m, .mutate = true};
    CHECK_EQ(sq_shardmap_foreach(&m, each_fn, &e), 0);
    CHECK_EQ(e.n, n); /* a key rewritten stays in its shard, visited */

    sq_shardmap_stats st;
    CHECK_EQ(sq_shardmap_stats_get(&m, &st), 0);
    CHECK_EQ(st.shards, 4);
    CHECK_EQ(st.size, n);
    CHECK(st.buckets >= (size_t)n); /* single writer: load never above 1 */
    CHECK(st.grows >= 4 * 6);       /* 8 -> 1024 slots in each shard */
    CHECK_EQ(st.changes, 2 * n);    /* n inserts, n rewrites */

    /* Empty map: an empty, NULL-terminated list. */
    sq_shardmap e2;
    CHECK_EQ(sq_shardmap_init(&e2, NULL), 0);
    CHECK_EQ(sq_shardmap_keys(&e2, &keys, &nk), 0);
    CHECK_EQ(nk, 0);
    CHECK(keys && keys[0] == NULL);
    free(keys);
    CHECK_EQ(sq_shardmap_destroy(&e2), 0);
    CHECK_EQ(sq_shardmap_destroy(&m), 0);
}

TEST(destroy_refuses_while_subscribed_and_events_can_be_off)
{
    sq_shardmap m;
    CHECK_EQ(sq_shardmap_init(&m, NULL), 0);
    sq_broadcast_rx rx;
    CHECK_EQ(sq_shardmap_subscribe(&m, &rx), 0);
    CHECK_EQ(sq_shardmap_set(&m, "k", "v", 1, NULL), 0);
    CHECK_EQ(sq_shardmap_destroy(&m), -EBUSY);
    CHECK_EQ(sq_shardmap_get(&m, "k", NULL, 0, NULL, NULL), -ENOBUFS);
    sq_shardmap_close_events(&m);
    sq_shardmap_close_events(&m);
    CHECK_EQ(sq_shardmap_set(&m, "k", "w", 1, NULL), 0); /* map works on */
    sq_shardmap_event ev;
    CHECK_EQ(sq_shardmap_recv(&rx, &ev, NULL), 0); /* sent before close */
    CHECK(strcmp(ev.key, "k") == 0);
    CHECK_EQ(sq_shardmap_recv(&rx, &ev, NULL), -EPIPE);
    CHECK_EQ(sq_shardmap_unsubscribe(&rx), 0);
    CHECK_EQ(sq_shardmap_unsubscribe(&rx), -EINVAL);
    CHECK_EQ(sq_shardmap_destroy(&m), 0);

    sq_shardmap_opts o = {.flags = SQ_SHARDMAP_NO_EVENTS};
    CHECK_EQ(sq_shardmap_init(&m, &o), 0);
    CHECK_EQ(sq_shardmap_subscribe(&m, &rx), -ENOTSUP);
    CHECK_EQ(sq_shardmap_set(&m, "k", "v", 1, NULL), 0);
    CHECK_EQ(sq_shardmap_delete(&m, "k", NULL), 0);
    sq_shardmap_close_events(&m);
    CHECK_EQ(sq_shardmap_destroy(&m), 0);
}

/* ----------------------------------- racing compare-and-set: no lost update */

#define CTR_KEYS 8

typedef struct ctr_shared {
    sq_shardmap m;
    long iters;
    atomic_long conflicts;
} ctr_shared;

typedef struct ctr_worker {
    ctr_shared *sh;
    int id;
    long done[CTR_KEYS]; /* increments this worker made, per key */
} ctr_worker;

/* Increments a random counter `iters` times: read it with its version,
 * add one, compare-and-set; on a mismatch read again. */
static void *ctr_incr(void *arg)
{
    ctr_worker *w = arg;
    ctr_shared *sh = w->sh;
    uint32_t seed = (uint32_t)w->id * 2654435761u + 1;
    for (long i = 0; i < sh->iters; i++) {
        int k = (int)(sq_test_rnd(&seed) % CTR_KEYS);
        char key[32];
        key_of(key, sizeof key, k);
        for (;;) {
            uint64_t val = 0, ver = 0;
            size_t len;
            int rc = sq_shardmap_get(&sh->m, key, &val, sizeof val, &len,
                                     &ver);
            if (rc == -ENOENT) {
                val = 0;
            } else {
                CHECK_EQ(rc, 0);
                CHECK_EQ(len, sizeof val);
            }
            if ((i & 7) == 0)
                sq_yield(); /* widen the window between read and write */
            val++;
            rc = sq_shardmap_cas(&sh->m, key, ver, &val, sizeof val, NULL);
            if (rc == 0)
                break;
            CHECK(rc == -ESTALE || rc == -EEXIST); /* never deleted */
            atomic_fetch_add(&sh->conflicts, 1);
        }
        w->done[k]++;
    }
    return NULL;
}

#define CTR_TASKS 12
#define CTR_THREADS 4

static void *cas_counters_root(void *arg)
{
    (void)arg;
    static ctr_shared sh;
    static ctr_worker w[CTR_TASKS + CTR_THREADS];
    int rounds = SQ_TEST_SLOW ? 3 : 6;
    for (int r = 0; r < rounds; r++) {
        memset(&sh, 0, sizeof sh);
        sh.iters = SQ_TEST_SLOW ? 300 : 1000;
        long total = sh.iters * (CTR_TASKS + CTR_THREADS);
        /* Few shards: more keys share a lock. */
        sq_shardmap_opts o = {.shards = (size_t)1 << (r % 3),
                              .events = (size_t)total};
        CHECK_EQ(sq_shardmap_init(&sh.m, &o), 0);
        sq_broadcast_rx rx;
        CHECK_EQ(sq_shardmap_subscribe(&sh.m, &rx), 0);
        memset(w, 0, sizeof w);
        for (int i = 0; i < CTR_TASKS + CTR_THREADS; i++)
            w[i] = (ctr_worker){.sh = &sh, .id = r * 100 + i};
        crew_run(CTR_TASKS, CTR_THREADS, ctr_incr, w, sizeof w[0]);

        long sum = 0;
        for (int k = 0; k < CTR_KEYS; k++) {
            long want = 0;
            for (int i = 0; i < CTR_TASKS + CTR_THREADS; i++)
                want += w[i].done[k];
            char key[32];
            key_of(key, sizeof key, k);
            uint64_t val = 0;
            int rc = sq_shardmap_get(&sh.m, key, &val, sizeof val, NULL,
                                     NULL);
            CHECK(rc == 0 || (rc == -ENOENT && want == 0));
            CHECK_EQ(val, want); /* exact: no increment lost */
            sum += (long)val;
        }
        CHECK_EQ(sum, total);
        /* One event per successful compare-and-set, in version order. */
        order o2;
        memset(&o2, 0, sizeof o2);
        CHECK_EQ(drain(&rx, &o2), total);
        CHECK_EQ(o2.bad, 0);
        CHECK_EQ(o2.sets, total);
        CHECK_EQ(sq_shardmap_unsubscribe(&rx), 0);
        CHECK_EQ(sq_shardmap_destroy(&sh.m), 0);
    }
    return NULL;
}

TEST(racing_compare_and_set_loses_no_update)
{
    sq_test_run(2, cas_counters_root, NULL);
}

/* --------------- the specification's test: 100 sets over 10 keys at once */

#define SET_OPS 100
#define SET_KEYS 10

typedef struct set_job {
    sq_shardmap *m;
    long i;
    uint64_t version; /* what the set returned */
} set_job;

static void *set_one(void *arg)
{
    set_job *j = arg;
    char key[32], value[32];
    key_of(key, sizeof key, (int)(j->i % SET_KEYS));
    int n = snprintf(value, sizeof value, "value-%ld", j->i);
    CHECK_EQ(sq_shardmap_set(j->m, key, value, (size_t)n, &j->version), 0);
    return NULL;
}

/* Each round: 100 sets at once (90 tasks on both workers, 10 plain
 * threads) over 10 keys.  After: every key is present, holding the value
 * of the writer whose set got the key's highest version, with that
 * version; exactly 100 set events arrived, in version order per key; the
 * size is 10. */
static void *spec_sets_root(void *arg)
{
    (void)arg;
    int rounds = SQ_TEST_SLOW ? 40 : 300;
    for (int r = 0; r < rounds; r++) {
        sq_shardmap m;
        sq_shardmap_opts o = {.shards = (size_t)1 << (r % 5), .events = 256};
        CHECK_EQ(sq_shardmap_init(&m, &o), 0);
        sq_broadcast_rx rx;
        CHECK_EQ(sq_shardmap_subscribe(&m, &rx), 0);
        /* Tasks first, then the threads: the jobs i = 9, 19, ... */
        set_job ordered[SET_OPS];
        for (long i = 0, t = 0, p = 90; i < SET_OPS; i++)
            ordered[i % 10 == 9 ? p++ : t++] = (set_job){.m = &m, .i = i};
        crew_run(90, 10, set_one, ordered, sizeof ordered[0]);

        CHECK_EQ(sq_shardmap_size(&m), SET_KEYS);
        for (int k = 0; k < SET_KEYS; k++) {
            long best = -1;
            uint64_t bestv = 0;
            for (long i = 0; i < SET_OPS; i++)
                if (ordered[i].i % SET_KEYS == k) {
                    CHECK(ordered[i].version != bestv);
                    if (ordered[i].version > bestv) {
                        bestv = ordered[i].version;
                        best = ordered[i].i;
                    }
                }
            char key[32], want[32], got[33];
            key_of(key, sizeof key, k);
            snprintf(want, sizeof want, "value-%ld", best);
            size_t len;
            uint64_t v;
            CHECK_EQ(sq_shardmap_get(&m, key, got, 32, &len, &v), 0);
            got[len < 32 ? len : 32] = '\0';
            CHECK_EQ(v, bestv);
            CHECK(strcmp(got, want) == 0);
        }
        order od;
        memset(&od, 0, sizeof od);
        CHECK_EQ(drain(&rx, &od), SET_OPS);
        CHECK_EQ(od.bad, 0);
        for (int k = 0; k < SET_KEYS; k++)
            CHECK_EQ(od.count[k], SET_OPS / SET_KEYS);
        CHECK_EQ(sq_shardmap_unsubscribe(&rx), 0);
        CHECK_EQ(sq_shardmap_destroy(&m), 0);
    }
    return NULL;
}

TEST(spec_hundred_concurrent_sets_over_ten_keys_leave_every_key_present)
{
    sq_test_run(2, spec_sets_root, NULL);
}

/* ----------------------------------------------------- delete/set races */

#define RACE_KEYS 16
#define RACE_TASKS 8
#define RACE_THREADS 3

typedef struct logent {
    uint32_t key, kind;
    uint64_t version;
    uint64_t id; /* the value written (sets) */
} logent;

typedef struct race_worker {
    sq_shardmap *m;
    int id;
    long ops, n;
    logent *log; /* ops entries: each change this worker made */
} race_worker;

/* A value: its id (worker << 32 | seq), then (seq % 61) bytes of a
 * pattern derived from the id. */
static size_t make_value(unsigned char *buf, uint64_t id, long seq)
{
    size_t n = 8 + (size_t)(seq % 61);
    memcpy(buf, &id, 8);
    for (size_t i = 8; i < n; i++)
        buf[i] = (unsigned char)(id * 31 + i);
    return n;
}

static bool value_ok(const unsigned char *buf, size_t n, uint64_t *id)
{
    if (n < 8)
        return false;
    memcpy(id, buf, 8);
    if (n != 8 + (size_t)((*id & 0xffffffffu) % 61))
        return false;
    for (size_t i = 8; i < n; i++)
        if (buf[i] != (unsigned char)(*id * 31 + i))
            return false;
    return true;
}

static void *race_worker_fn(void *arg)
{
    race_worker *w = arg;
    uint32_t seed = (uint32_t)w->id * 747796405u + 7;
    unsigned char val[80], got[80];
    for (long seq = 0; seq < w->ops; seq++) {
        int k = (int)(sq_test_rnd(&seed) % RACE_KEYS);
        char key[32];
        key_of(key, sizeof key, k);
        uint64_t id = (uint64_t)w->id << 32 | (uint64_t)seq;
        size_t n = make_value(val, id, seq);
        uint64_t v = 0, seen = 0;
        size_t len;
        int rc, kind = 0;
        switch (sq_test_rnd(&seed) % 5) {
        case 0:
        case 1:
            rc = sq_shardmap_set(w->m, key, val, n, &v);
            CHECK_EQ(rc, 0);
            kind = SQ_SHARDMAP_EV_SET;
            break;
        case 2:
            rc = sq_shardmap_delete(w->m, key, &v);
            CHECK(rc == 0 || rc == -ENOENT);
            kind = rc ? 0 : SQ_SHARDMAP_EV_DELETE;
            break;
        case 3: /* read, then replace (or insert) what was read */
            rc = sq_shardmap_get(w->m, key, got, sizeof got, &len, &seen);
            CHECK(rc == 0 || rc == -ENOENT);
            if (rc == 0) {
                uint64_t gid;
                CHECK(value_ok(got, len, &gid));
            }
            rc = sq_shardmap_cas(w->m, key, seen, val, n, &v);
            CHECK(rc == 0 || rc == -ESTALE || rc == -EEXIST ||
                  rc == -ENOENT);
            kind = rc ? 0 : SQ_SHARDMAP_EV_SET;
            break;
        default: /* read, then delete what was read */
            rc = sq_shardmap_get(w->m, key, got, sizeof got, &len, &seen);
            CHECK(rc == 0 || rc == -ENOENT);
            if (rc == 0) {
                rc = sq_shardmap_cas_delete(w->m, key, seen, &v);
                CHECK(rc == 0 || rc == -ESTALE || rc == -ENOENT);
                kind = rc ? 0 : SQ_SHARDMAP_EV_DELETE;
            }
            break;
        }
        if (kind)
            w->log[w->n++] = (logent){(uint32_t)k, (uint32_t)kind, v, id};
        if ((seq & 15) == 0)
            sq_yield();
    }
    return NULL;
}

static int by_version(const void *a, const void *b)
{
    const logent *x = a, *y = b;
    return x->version < y->version ? -1 : x->version > y->version;
}

static void *delete_set_root(void *arg)
{
    (void)arg;
    enum { W = RACE_TASKS + RACE_THREADS };
    static race_worker w[W];
    int rounds = SQ_TEST_SLOW ? 3 : 8;
    long ops = SQ_TEST_SLOW ? 500 : 1500;
    logent *all = malloc(sizeof *all * (size_t)(W * ops));
    logent *evs = malloc(sizeof *evs * (size_t)(W * ops));
    logent *mine = malloc(sizeof *mine * (size_t)(W * ops));
    CHECK(all && evs && mine);
    for (int r = 0; r < rounds; r++) {
        sq_shardmap m;
        sq_shardmap_opts o = {.shards = (size_t)1 << (r % 4),
                              .events = (size_t)(W * ops)};
        CHECK_EQ(sq_shardmap_init(&m, &o), 0);
        sq_broadcast_rx rx;
        CHECK_EQ(sq_shardmap_subscribe(&m, &rx), 0);
        for (int i = 0; i < W; i++) {
            w[i] = (race_worker){.m = &m, .id = r * 100 + i, .ops = ops};
            w[i].log = all + (size_t)i * (size_t)ops;
        }
        crew_run(RACE_TASKS, RACE_THREADS, race_worker_fn, w, sizeof w[0]);

        /* The event stream, per key, is exactly the logged changes of
         * that key in version order. */
        long nev = 0;
        sq_shardmap_event ev;
        int rc;
        while ((rc = sq_shardmap_try_recv(&rx, &ev, NULL)) == 0) {
            int k = key_index(&ev);
            CHECK(k >= 0 && k < RACE_KEYS);
            evs[nev++] = (logent){(uint32_t)k, ev.kind, ev.version, 0};
        }
        CHECK_EQ(rc, -EAGAIN);
        long nlog = 0;
        for (int i = 0; i < W; i++)
            nlog += w[i].n;
        CHECK_EQ(nev, nlog);
        long present = 0;
        for (int k = 0; k < RACE_KEYS; k++) {
            /* This key's logged changes, in version order. */
            long n = 0;
            for (int i = 0; i < W; i++)
                for (long j = 0; j < w[i].n; j++)
                    if (w[i].log[j].key == (uint32_t)k)
                        mine[n++] = w[i].log[j];
            qsort(mine, (size_t)n, sizeof *mine, by_version);
            long e = 0;
            for (long j = 0; j < nev; j++) {
                if (evs[j].key != (uint32_t)k)
                    continue;
                CHECK(e < n);
                if (e < n) {
                    CHECK_EQ(evs[j].version, mine[e].version);
                    CHECK_EQ(evs[j].kind, mine[e].kind);
                }
                e++;
            }
            CHECK_EQ(e, n);
            for (long j = 1; j < n; j++)
                CHECK(mine[j].version > mine[j - 1].version);
            /* The key's state is its last change. */
            char key[32];
            key_of(key, sizeof key, k);
            unsigned char got[80];
            size_t len;
            uint64_t v = 0, gid = 0;
            rc = sq_shardmap_get(&m, key, got, sizeof got, &len, &v);
            if (n == 0 || mine[n - 1].kind == SQ_SHARDMAP_EV_DELETE) {
                CHECK_EQ(rc, -ENOENT);
            } else {
                CHECK_EQ(rc, 0);
                CHECK_EQ(v, mine[n - 1].version);
                CHECK(value_ok(got, len, &gid));
                CHECK_EQ(gid, mine[n - 1].id);
                present++;
            }
        }
        CHECK_EQ(sq_shardmap_size(&m), present);
        CHECK_EQ(sq_shardmap_unsubscribe(&rx), 0);
        CHECK_EQ(sq_shardmap_destroy(&m), 0);
    }
    free(all);
    free(evs);
    free(mine);
    return NULL;
}

TEST(delete_and_set_races_match_the_writers_logs_and_the_events)
{
    sq_test_run(2, delete_set_root, NULL);
}

/* ----------------------------------------------------- growth under load */

#define GROW_WRITERS 4
#define GROW_READERS 3

typedef struct grow_shared {
    sq_shardmap m;
    long per_writer;
    atomic_long progress[GROW_WRITERS]; /* keys inserted so far, each */
    atomic_int writers_left;
    atomic_long reads, misses, wrong;
} grow_shared;

typedef struct grow_arg {
    grow_shared *sh;
    int id;
} grow_arg;

static void grow_key(char *buf, size_t n, int w, long i)
{
    snprintf(buf, n, "w%d/%ld", w, i);
}

static void *grow_writer(void *arg)
{
    grow_arg *a = arg;
    grow_shared *sh = a->sh;
    for (long i = 0; i < sh->per_writer; i++) {
        char key[32];
        grow_key(key, sizeof key, a->id, i);
        long val = i * 7 + a->id;
        CHECK_EQ(sq_shardmap_set(&sh->m, key, &val, sizeof val, NULL), 0);
        atomic_store(&sh->progress[a->id], i + 1);
        if ((i & 63) == 0)
            sq_yield();
    }
    atomic_fetch_sub(&sh->writers_left, 1);
    return NULL;
}

/* Reads keys already inserted (below a writer's progress) while the
 * tables grow: each must be found, with its value. */
static void *grow_reader(void *arg)
{
    grow_arg *a = arg;
    grow_shared *sh = a->sh;
    uint32_t seed = (uint32_t)a->id * 1103515245u + 12345;
    long n = 0;
    while (atomic_load(&sh->writers_left) > 0 || n < 1000) {
        int wi = (int)(sq_test_rnd(&seed) % GROW_WRITERS);
        long done = atomic_load(&sh->progress[wi]);
        if (done == 0) {
            sq_yield();
            continue;
        }
        long i = (long)(sq_test_rnd(&seed) % (uint32_t)done);
        char key[32];
        grow_key(key, sizeof key, wi, i);
        long val = -1;
        int rc = sq_shardmap_get(&sh->m, key, &val, sizeof val, NULL, NULL);
        if (rc == -ENOENT)
            atomic_fetch_add(&sh->misses, 1);
        else if (rc != 0 || val != i * 7 + wi)
            atomic_fetch_add(&sh->wrong, 1);
        n++;
        if ((n & 31) == 0)
            sq_yield();
    }
    atomic_fetch_add(&sh->reads, n);
    return NULL;
}

static void *growth_root(void *arg)
{
    (void)arg;
    static grow_shared sh;
    int rounds = SQ_TEST_SLOW ? 2 : 3;
    for (int r = 0; r < rounds; r++) {
        memset(&sh, 0, sizeof sh);
        sh.per_writer = SQ_TEST_SLOW ? 2000 : 5000;
        sq_shardmap_opts o = {.shards = (size_t)1 << (r % 3),
                              .flags = SQ_SHARDMAP_NO_EVENTS};
        CHECK_EQ(sq_shardmap_init(&sh.m, &o), 0);
        atomic_store(&sh.writers_left, GROW_WRITERS);
        /* Writers: 3 tasks and a thread; readers: 2 tasks and a thread. */
        sq_task t[GROW_WRITERS + GROW_READERS];
        pthread_t th[2];
        grow_arg a[GROW_WRITERS + GROW_READERS];
        for (int i = 0; i < GROW_WRITERS + GROW_READERS; i++)
            a[i] = (grow_arg){&sh, i < GROW_WRITERS ? i : i - GROW_WRITERS};
        CHECK_EQ(pthread_create(&th[0], NULL, grow_writer, &a[0]), 0);
        CHECK_EQ(pthread_create(&th[1], NULL, grow_reader, &a[4]), 0);
        for (int i = 1; i < GROW_WRITERS + GROW_READERS; i++)
            if (i != 4)
                CHECK_EQ(sq_spawn(&t[i], i < GROW_WRITERS ? grow_writer
                                                          : grow_reader,
                                  &a[i], NULL),
                         0);
        for (int i = 1; i < GROW_WRITERS + GROW_READERS; i++)
            if (i != 4)
                CHECK_EQ(sq_join(t[i], NULL), 0);
        CHECK_EQ(pthread_join(th[0], NULL), 0);
        CHECK_EQ(pthread_join(th[1], NULL), 0);

        CHECK_EQ(atomic_load(&sh.misses), 0);
        CHECK_EQ(atomic_load(&sh.wrong), 0);
        CHECK(atomic_load(&sh.reads) >= 3000);
        long total = sh.per_writer * GROW_WRITERS;
        CHECK_EQ(sq_shardmap_size(&sh.m), total);
        for (int wi = 0; wi < GROW_WRITERS; wi++)
            for (long i = 0; i < sh.per_writer; i++) {
                char key[32];
                grow_key(key, sizeof key, wi, i);
                long val = -1;
                CHECK_EQ(sq_shardmap_get(&sh.m, key, &val, sizeof val, NULL,
                                         NULL),
                         0);
                CHECK_EQ(val, i * 7 + wi);
            }
        sq_shardmap_stats st;
        CHECK_EQ(sq_shardmap_stats_get(&sh.m, &st), 0);
        /* The tables grew from 8 slots a shard to about one per key; a
         * race can leave a shard a few inserts past a load of one until
         * its next insert (at most one per writer). */
        CHECK(st.buckets + (size_t)GROW_WRITERS * st.shards >= (size_t)total);
        size_t doublings = 0;
        for (size_t b = 8; b < (size_t)total / st.shards / 2; b *= 2)
            doublings++;
        CHECK(st.grows >= doublings * st.shards);
        CHECK_EQ(st.changes, total);
        CHECK_EQ(sq_shardmap_destroy(&sh.m), 0);
    }
    return NULL;
}

TEST(tables_grow_under_load_and_readers_always_find_inserted_keys)
{
    sq_test_run(2, growth_root, NULL);
}

/* --------------------------------------------------------- change events */

#define HOT_KEYS 3
#define HOT_TASKS 6
#define HOT_THREADS 4

typedef struct hot_shared {
    sq_shardmap m;
    long iters;
} hot_shared;

typedef struct hot_arg {
    hot_shared *sh;
    int id;
    long sets, deletes;
} hot_arg;

/* Writers hammering the same few keys: the race between one writer's
 * unlock and its publication and the next writer's is what the
 * publication turn must order. */
static void *hot_writer(void *arg)
{
    hot_arg *a = arg;
    uint32_t seed = (uint32_t)a->id * 16807u + 3;
    for (long i = 0; i < a->sh->iters; i++) {
        char key[32];
        key_of(key, sizeof key, (int)(sq_test_rnd(&seed) % HOT_KEYS));
        if (sq_test_rnd(&seed) % 4 == 0) {
            if (sq_shardmap_delete(&a->sh->m, key, NULL) == 0)
                a->deletes++;
        } else {
            CHECK_EQ(sq_shardmap_set(&a->sh->m, key, &i, sizeof i, NULL), 0);
            a->sets++;
        }
    }
    return NULL;
}

typedef struct sub_arg {
    sq_broadcast_rx rx; /* subscribed before the writers start */
    order o;
    long received;
    uint64_t missed;
    int end; /* the last receive's result */
    bool slow;
} sub_arg;

/* Receives until end of stream (-EPIPE), checking the order per key. */
static void *subscriber(void *arg)
{
    sub_arg *s = arg;
    sq_shardmap_event ev;
    for (;;) {
        uint64_t missed = 0;
        int rc = sq_shardmap_recv(&s->rx, &ev, &missed);
        if (rc == -EOVERFLOW) {
            s->missed += missed;
            continue;
        }
        if (rc) {
            s->end = rc;
            break;
        }
        order_see(&s->o, &ev);
        s->received++;
        if (s->slow && (s->received & 3) == 0)
            sq_sleep(20 * SQ_USEC);
    }
    CHECK_EQ(sq_shardmap_unsubscribe(&s->rx), 0);
    return NULL;
}

typedef struct events_cfg {
    size_t ring; /* 0: every event fits */
    bool slow;   /* subscribers that sleep every 4 events */
} events_cfg;

/* Writers (tasks and threads) race on a few keys while four subscribers
 * (two tasks, two threads) receive until the end of the stream.  Each
 * sees every key's versions strictly rising, and received + missed ==
 * published, exactly; with a ring that holds everything, missed is 0
 * and the counts of sets and deletes are exact. */
static void *events_order_root(void *arg)
{
    events_cfg *cfg = arg;
    static hot_shared sh;
    static hot_arg w[HOT_TASKS + HOT_THREADS];
    static sub_arg subs[4];
    int rounds = SQ_TEST_SLOW ? 3 : 6;
    for (int r = 0; r < rounds; r++) {
        memset(&sh, 0, sizeof sh);
        sh.iters = SQ_TEST_SLOW ? 600 : 2000;
        long most = sh.iters * (HOT_TASKS + HOT_THREADS);
        sq_shardmap_opts o = {.shards = (size_t)1 << (r % 2),
                              .events = cfg->ring ? cfg->ring : (size_t)most};
        CHECK_EQ(sq_shardmap_init(&sh.m, &o), 0);
        memset(subs, 0, sizeof subs);
        for (int i = 0; i < 4; i++) {
            CHECK_EQ(sq_shardmap_subscribe(&sh.m, &subs[i].rx), 0);
            subs[i].slow = cfg->slow;
        }
        sq_task st[2];
        pthread_t sth[2];
        CHECK_EQ(sq_spawn(&st[0], subscriber, &subs[0], NULL), 0);
        CHECK_EQ(sq_spawn(&st[1], subscriber, &subs[1], NULL), 0);
        CHECK_EQ(pthread_create(&sth[0], NULL, subscriber, &subs[2]), 0);
        CHECK_EQ(pthread_create(&sth[1], NULL, subscriber, &subs[3]), 0);

        memset(w, 0, sizeof w);
        for (int i = 0; i < HOT_TASKS + HOT_THREADS; i++)
            w[i] = (hot_arg){.sh = &sh, .id = r * 100 + i};
        crew_run(HOT_TASKS, HOT_THREADS, hot_writer, w, sizeof w[0]);
        long sets = 0, deletes = 0;
        for (int i = 0; i < HOT_TASKS + HOT_THREADS; i++) {
            sets += w[i].sets;
            deletes += w[i].deletes;
        }
        sq_shardmap_close_events(&sh.m);
        CHECK_EQ(sq_join(st[0], NULL), 0);
        CHECK_EQ(sq_join(st[1], NULL), 0);
        CHECK_EQ(pthread_join(sth[0], NULL), 0);
        CHECK_EQ(pthread_join(sth[1], NULL), 0);
        for (int i = 0; i < 4; i++) {
            CHECK_EQ(subs[i].end, -EPIPE);
            CHECK_EQ(subs[i].o.bad, 0); /* per-key version order */
            CHECK_EQ(subs[i].received + (long)subs[i].missed,
                     sets + deletes);
            if (!cfg->ring) { /* kept up: every event, no gap */
                CHECK_EQ(subs[i].missed, 0);
                CHECK_EQ(subs[i].o.sets, sets);
                CHECK_EQ(subs[i].o.deletes, deletes);
            }
        }
        CHECK_EQ(sq_shardmap_destroy(&sh.m), 0);
    }
    return NULL;
}

TEST(events_arrive_in_version_order_per_key_exactly_once)
{
    events_cfg cfg = {0, false};
    sq_test_run(2, events_order_root, &cfg);
}

TEST(slow_subscribers_lag_but_count_every_event_and_keep_the_order)
{
    events_cfg cfg = {16, true};
    sq_test_run(2, events_order_root, &cfg);
}

TEST(a_lagging_subscriber_learns_exactly_how_many_it_missed)
{
    sq_shardmap m;
    sq_shardmap_opts o = {.events = 8};
    CHECK_EQ(sq_shardmap_init(&m, &o), 0);
    sq_broadcast_rx rx;
    CHECK_EQ(sq_shardmap_set(&m, "key-0", "x", 1, NULL), 0); /* not seen */
    CHECK_EQ(sq_shardmap_subscribe(&m, &rx), 0);
    uint64_t vers[100];
    for (int i = 0; i < 100; i++) {
        char key[32];
        key_of(key, sizeof key, i % 5);
        CHECK_EQ(sq_shardmap_set(&m, key, &i, sizeof i, &vers[i]), 0);
    }
    sq_shardmap_event ev;
    uint64_t missed = 0;
    CHECK_EQ(sq_shardmap_try_recv(&rx, &ev, &missed), -EOVERFLOW);
    CHECK_EQ(missed, 92);
    for (int i = 92; i < 100; i++) {
        CHECK_EQ(sq_shardmap_try_recv(&rx, &ev, &missed), 0);
        CHECK_EQ(ev.kind, SQ_SHARDMAP_EV_SET);
        CHECK_EQ(ev.version, vers[i]);
        CHECK_EQ(key_index(&ev), i % 5);
    }
    CHECK_EQ(sq_shardmap_try_recv(&rx, &ev, &missed), -EAGAIN);
    uint64_t vd;
    CHECK_EQ(sq_shardmap_delete(&m, "key-3", &vd), 0);
    CHECK_EQ(sq_shardmap_delete(&m, "key-3", NULL), -ENOENT); /* no event */
    CHECK_EQ(sq_shardmap_cas(&m, "key-2", 1, "y", 1, NULL), -ESTALE);
    CHECK_EQ(sq_shardmap_try_recv(&rx, &ev, &missed), 0);
    CHECK_EQ(ev.kind, SQ_SHARDMAP_EV_DELETE);
    CHECK_EQ(ev.version, vd);
    CHECK(strcmp(ev.key, "key-3") == 0);
    CHECK_EQ(sq_shardmap_try_recv(&rx, &ev, &missed), -EAGAIN);
    int64_t d;
    CHECK_EQ(sq_deadline_in(1 * SQ_MSEC, &d), 0);
    CHECK_EQ(sq_shardmap_recv_until(&rx, &ev, &missed, d), -ETIMEDOUT);
    CHECK_EQ(sq_shardmap_unsubscribe(&rx), 0);
    CHECK_EQ(sq_shardmap_destroy(&m), 0);
}

/* ----------------------------------------------------- two-phase update */

typedef struct incr {
    sq_shardmap *m;
    long calls;
    bool interfere; /* first call: another writer changes the key */
    bool sleep;     /* wait inside the decision */
    int ret;        /* what to return (PUT, KEEP, REMOVE, error) */
    uint64_t out;
} incr;

/* Adds one to an 8-byte counter (absent: 0). */
static int incr_fn(void *arg, const char *key, const void *old,
                   size_t old_len, uint64_t old_version,
                   const void **new_value, size_t *new_len)
{
    incr *c = arg;
    c->calls++;
    uint64_t x = 0;
    if (old) {
        CHECK_EQ(old_len, sizeof x);
        CHECK(old_version > 0);
        memcpy(&x, old, sizeof x);
    } else {
        CHECK_EQ(old_version, 0);
    }
    if (c->interfere && c->calls == 1) {
        uint64_t y = 1000;
        CHECK_EQ(sq_shardmap_set(c->m, key, &y, sizeof y, NULL), 0);
    }
    if (c->sleep)
        CHECK_EQ(sq_sleep(10 * SQ_USEC), 0); /* waits: no lock is held */
    c->out = x + 1;
    *new_value = &c->out;
    *new_len = sizeof c->out;
    return c->ret;
}

static uint64_t counter(sq_shardmap *m, const char *key)
{
    uint64_t x = 0;
    int rc = sq_shardmap_get(m, key, &x, sizeof x, NULL, NULL);
    CHECK(rc == 0 || rc == -ENOENT);
    return x;
}

TEST(two_phase_update_rechecks_the_version_and_retries)
{
    sq_shardmap m;
    CHECK_EQ(sq_shardmap_init(&m, NULL), 0);
    uint64_t v, vs;

    /* Absent: the decision sees nothing, PUT inserts. */
    incr c = {.m = &m, .ret = SQ_SHARDMAP_PUT};
    CHECK_EQ(sq_shardmap_update(&m, "n", incr_fn, &c, 0, &v), 0);
    CHECK_EQ(c.calls, 1);
    CHECK_EQ(counter(&m, "n"), 1);
    CHECK_EQ(sq_shardmap_get(&m, "n", NULL, 0, NULL, &vs), -ENOBUFS);
    CHECK_EQ(v, vs);

    /* Another writer between the read and the write: with one attempt,
     * the conflict is reported and its write stands. */
    c = (incr){.m = &m, .interfere = true, .ret = SQ_SHARDMAP_PUT};
    CHECK_EQ(sq_shardmap_update(&m, "n", incr_fn, &c, 1, &v), -ESTALE);
    CHECK_EQ(c.calls, 1);
    CHECK_EQ(counter(&m, "n"), 1000);
    /* With more attempts: the second decides on what the other wrote. */
    c = (incr){.m = &m, .interfere = true, .ret = SQ_SHARDMAP_PUT};
    CHECK_EQ(sq_shardmap_update(&m, "n", incr_fn, &c, 0, &v), 0);
    CHECK_EQ(c.calls, 2);
    CHECK_EQ(counter(&m, "n"), 1001);
    /* The same race on an absent key (the insert conflicts). */
    c = (incr){.m = &m, .interfere = true, .ret = SQ_SHARDMAP_PUT};
    CHECK_EQ(sq_shardmap_update(&m, "fresh", incr_fn, &c, 3, &v), 0);
    CHECK_EQ(c.calls, 2);
    CHECK_EQ(counter(&m, "fresh"), 1001);

    /* KEEP: nothing written, the version seen is returned. */
    CHECK_EQ(sq_shardmap_get(&m, "n", NULL, 0, NULL, &vs), -ENOBUFS);
    c = (incr){.m = &m, .ret = SQ_SHARDMAP_KEEP};
    CHECK_EQ(sq_shardmap_update(&m, "n", incr_fn, &c, 0, &v), 0);
    CHECK_EQ(v, vs);
    CHECK_EQ(counter(&m, "n"), 1001);
    /* REMOVE: deleted, only if unchanged; of an absent key: nothing. */
    c = (incr){.m = &m, .interfere = true, .ret = SQ_SHARDMAP_REMOVE};
    CHECK_EQ(sq_shardmap_update(&m, "n", incr_fn, &c, 0, &v), 0);
    CHECK_EQ(c.calls, 2);
    CHECK(v > vs);
    CHECK_EQ(sq_shardmap_get(&m, "n", NULL, 0, NULL, NULL), -ENOENT);
    c = (incr){.m = &m, .ret = SQ_SHARDMAP_REMOVE};
    CHECK_EQ(sq_shardmap_update(&m, "n", incr_fn, &c, 0, &v), 0);
    CHECK_EQ(v, 0);
    /* A decision's error is returned as is; nothing written. */
    c = (incr){.m = &m, .ret = -EPROTO};
    CHECK_EQ(sq_shardmap_update(&m, "n", incr_fn, &c, 0, &v), -EPROTO);
    c = (incr){.m = &m, .ret = 42};
    CHECK_EQ(sq_shardmap_update(&m, "n", incr_fn, &c, 0, &v), -EINVAL);
    CHECK_EQ(sq_shardmap_get(&m, "n", NULL, 0, NULL, NULL), -ENOENT);
    CHECK_EQ(sq_shardmap_destroy(&m), 0);
}

/* A large value goes through the update's own buffer growth. */
static int append_fn(void *arg, const char *key, const void *old,
                     size_t old_len, uint64_t old_version,
                     const void **new_value, size_t *new_len)
{
    (void)key;
    (void)old_version;
    char *buf = arg;
    if (old)
        memcpy(buf, old, old_len);
    memset(buf + old_len, 'a' + (int)(old_len % 26), 100);
    *new_value = buf;
    *new_len = old_len + 100;
    return SQ_SHARDMAP_PUT;
}

TEST(two_phase_update_copes_with_growing_values)
{
    sq_shardmap m;
    CHECK_EQ(sq_shardmap_init(&m, NULL), 0);
    char *buf = malloc(5000);
    for (int i = 0; i < 40; i++)
        CHECK_EQ(sq_shardmap_update(&m, "big", append_fn, buf, 0, NULL), 0);
    void *copy;
    size_t len;
    CHECK_EQ(sq_shardmap_get_copy(&m, "big", &copy, &len, NULL), 0);
    CHECK_EQ(len, 4000);
    for (size_t i = 0; i < len; i++)
        CHECK_EQ(((char *)copy)[i], 'a' + (int)((i / 100 * 100) % 26));
    free(copy);
    free(buf);
    CHECK_EQ(sq_shardmap_destroy(&m), 0);
}

#define UPD_TASKS 10
#define UPD_THREADS 3
#define UPD_KEYS 4

typedef struct upd_arg {
    sq_shardmap *m;
    int id;
    long iters;
    long done[UPD_KEYS];
    long calls;
} upd_arg;

static void *upd_worker(void *arg)
{
    upd_arg *a = arg;
    uint32_t seed = (uint32_t)a->id * 69069u + 1;
    for (long i = 0; i < a->iters; i++) {
        int k = (int)(sq_test_rnd(&seed) % UPD_KEYS);
        char key[32];
        key_of(key, sizeof key, k);
        incr c = {.m = a->m, .ret = SQ_SHARDMAP_PUT, .sleep = (i % 16) == 0};
        CHECK_EQ(sq_shardmap_update(a->m, key, incr_fn, &c, 0, NULL), 0);
        a->calls += c.calls;
        a->done[k]++;
    }
    return NULL;
}

typedef struct findings {
    atomic_int n;
    char first[2048];
} findings;

static void count_finding(unsigned finding, const char *text, void *arg)
{
    findings *f = arg;
    (void)finding;
    if (atomic_fetch_add(&f->n, 1) == 0)
        snprintf(f->first, sizeof f->first, "%s", text);
}

static void *updates_root(void *arg)
{
    (void)arg;
    static upd_arg a[UPD_TASKS + UPD_THREADS];
    int rounds = SQ_TEST_SLOW ? 2 : 4;
    for (int r = 0; r < rounds; r++) {
        sq_shardmap m;
        sq_shardmap_opts o = {.shards = (size_t)1 << (r % 3),
                              .flags = SQ_SHARDMAP_NO_EVENTS};
        CHECK_EQ(sq_shardmap_init(&m, &o), 0);
        for (int i = 0; i < UPD_TASKS + UPD_THREADS; i++)
            a[i] = (upd_arg){.m = &m, .id = r * 100 + i,
                             .iters = SQ_TEST_SLOW ? 200 : 500};
        crew_run(UPD_TASKS, UPD_THREADS, upd_worker, a, sizeof a[0]);
        long total = 0, calls = 0;
        for (int k = 0; k < UPD_KEYS; k++) {
            long want = 0;
            for (int i = 0; i < UPD_TASKS + UPD_THREADS; i++)
                want += a[i].done[k];
            char key[32];
            key_of(key, sizeof key, k);
            CHECK_EQ(counter(&m, key), want);
            total += want;
        }
        for (int i = 0; i < UPD_TASKS + UPD_THREADS; i++)
            calls += a[i].calls;
        CHECK_EQ(total, (long)(UPD_TASKS + UPD_THREADS) * a[0].iters);
        CHECK(calls >= total); /* conflicts cost extra decisions */
        CHECK_EQ(sq_shardmap_destroy(&m), 0);
    }
    return NULL;
}

/* Racing two-phase updates whose decisions wait (sleep) lose no
 * increment; with the held-across-wait and order checks on, nothing is
 * reported: the decisions run with no shard lock held. */
TEST(racing_two_phase_updates_lose_nothing_and_wait_outside_locks)
{
    sq_check_config saved, cfg = {
        .findings = SQ_CHECK_HELD_ACROSS_WAIT | SQ_CHECK_LOCK_ORDER};
    sq_check_get_config(&saved);
    static findings f;
    memset(&f, 0, sizeof f);
    sq_check_set_reporter(count_finding, &f);
    int rc = sq_check_configure(&cfg);
    CHECK(rc == 0 || rc == -ENOTSUP);

    sq_test_run(2, updates_root, NULL);

    if (rc == 0)
        CHECK_EQ(sq_check_configure(&saved), 0);
    sq_check_set_reporter(NULL, NULL);
    if (atomic_load(&f.n))
        fprintf(stderr, "%s\n", f.first);
    CHECK_EQ(atomic_load(&f.n), 0);
}

/* ------------------------------------------------------------ cancel storm */

#define STORM_TASKS 24
#define STORM_THREADS 2

typedef struct storm_shared {
    sq_shardmap m;
    atomic_bool stop;
    long max_ops;
} storm_shared;

typedef struct storm_arg {
    storm_shared *sh;
    int id;
    long n;
    logent *log; /* the changes that returned 0 */
    long cancelled;
} storm_arg;

static void *storm_worker(void *arg)
{
    storm_arg *a = arg;
    storm_shared *sh = a->sh;
    uint32_t seed = (uint32_t)a->id * 2891336453u + 1;
    for (long i = 0; i < sh->max_ops && !atomic_load(&sh->stop); i++) {
        int k = (int)(sq_test_rnd(&seed) % 2);
        char key[32];
        key_of(key, sizeof key, k);
        uint64_t id = (uint64_t)a->id << 32 | (uint64_t)i, v;
        int rc;
        uint32_t kind = SQ_SHARDMAP_EV_SET;
        if (sq_test_rnd(&seed) % 3 == 0) {
            rc = sq_shardmap_delete(&sh->m, key, &v);
            kind = SQ_SHARDMAP_EV_DELETE;
            if (rc == -ENOENT)
                continue;
        } else {
            rc = sq_shardmap_set(&sh->m, key, &id, sizeof id, &v);
        }
        if (rc == -ECANCELED) {
            a->cancelled++;
            break;
        }
        CHECK_EQ(rc, 0);
        a->log[a->n++] = (logent){(uint32_t)k, kind, v, id};
    }
    return NULL;
}

/* Tasks hammer two keys (with two plain threads) and are aborted at
 * random moments, many while waiting for a shard lock.  Whatever each
 * reported done was done and published once; whatever returned
 * -ECANCELED left no trace: the event stream is exactly the logged
 * changes, each key's value is that of its highest logged version, and
 * no lock is left held. */
static void *storm_root(void *arg)
{
    (void)arg;
    enum { W = STORM_TASKS + STORM_THREADS };
    static storm_shared sh;
    static storm_arg a[W];
    int rounds = SQ_TEST_SLOW ? 10 : 40;
    long max_ops = 400;
    logent *logs = malloc(sizeof *logs * (size_t)(W * max_ops));
    CHECK(logs != NULL);
    long cancelled = 0;
    uint32_t seed = 99;
    for (int r = 0; r < rounds; r++) {
        memset(&sh, 0, sizeof sh);
        sh.max_ops = max_ops;
        sq_shardmap_opts o = {.shards = 1, .events = (size_t)(W * max_ops)};
        CHECK_EQ(sq_shardmap_init(&sh.m, &o), 0);
        sq_broadcast_rx rx;
        CHECK_EQ(sq_shardmap_subscribe(&sh.m, &rx), 0);
        sq_task t[STORM_TASKS];
        pthread_t th[STORM_THREADS];
        for (int i = 0; i < W; i++) {
            a[i] = (storm_arg){.sh = &sh, .id = r * 100 + i,
                               .log = logs + (size_t)i * (size_t)max_ops};
            if (i < STORM_TASKS)
                CHECK_EQ(sq_spawn(&t[i], storm_worker, &a[i], NULL), 0);
            else
                CHECK_EQ(pthread_create(&th[i - STORM_TASKS], NULL,
                                        storm_worker, &a[i]),
                         0);
        }
        for (int i = 0; i < STORM_TASKS; i++) {
            for (uint32_t y = sq_test_rnd(&seed) % 4; y > 0; y--)
                sq_yield();
            CHECK_EQ(sq_abort(t[i]), 0);
        }
        for (int i = 0; i < STORM_TASKS; i++) {
            int rc = sq_join(t[i], NULL);
            CHECK(rc == 0 || rc == -ECANCELED);
        }
        atomic_store(&sh.stop, true);
        for (int i = 0; i < STORM_THREADS; i++)
            CHECK_EQ(pthread_join(th[i], NULL), 0);

        long nlog = 0;
        uint64_t best[2] = {0, 0}, best_id[2] = {0, 0};
        uint32_t best_kind[2] = {0, 0};
        for (int i = 0; i < W; i++) {
            cancelled += a[i].cancelled;
            nlog += a[i].n;
            for (long j = 0; j < a[i].n; j++) {
                logent *e = &a[i].log[j];
                if (e->version > best[e->key]) {
                    best[e->key] = e->version;
                    best_id[e->key] = e->id;
                    best_kind[e->key] = e->kind;
                }
            }
        }
        order od;
        memset(&od, 0, sizeof od);
        CHECK_EQ(drain(&rx, &od), nlog);
        CHECK_EQ(od.bad, 0);
        for (int k = 0; k < 2; k++) {
            CHECK_EQ(od.last[k], best[k]);
            char key[32];
            key_of(key, sizeof key, k);
            uint64_t val = 0, v = 0;
            int rc = sq_shardmap_get(&sh.m, key, &val, sizeof val, NULL, &v);
            if (best_kind[k] == SQ_SHARDMAP_EV_SET) {
                CHECK_EQ(rc, 0);
                CHECK_EQ(v, best[k]);
                CHECK_EQ(val, best_id[k]);
            } else {
                CHECK_EQ(rc, -ENOENT);
            }
        }
        CHECK_EQ(sq_shardmap_unsubscribe(&rx), 0);
        CHECK_EQ(sq_shardmap_destroy(&sh.m), 0); /* no lock left held */
    }
    (void)cancelled; /* how many were caught waiting: timing, not asserted */
    free(logs);
    return NULL;
}

TEST(cancelled_writers_change_and_publish_exactly_what_they_report)
{
    sq_test_run(2, storm_root, NULL);
}

/* --------------------------------------------- plain threads, no runtime */

#define PT_THREADS 4

typedef struct pt_arg {
    sq_shardmap *m;
    long iters;
    sub_arg *sub;
} pt_arg;

static void *pt_writer(void *arg)
{
    pt_arg *a = arg;
    for (long i = 0; i < a->iters; i++) {
        incr c = {.m = a->m, .ret = SQ_SHARDMAP_PUT};
        CHECK_EQ(sq_shardmap_update(a->m, "key-0", incr_fn, &c, 0, NULL), 0);
        uint64_t x = (uint64_t)i;
        CHECK_EQ(sq_shardmap_set(a->m, "key-1", &x, sizeof x, NULL), 0);
    }
    return NULL;
}

TEST(plain_threads_without_a_runtime_share_the_map_and_its_events)
{
    sq_shardmap m;
    long iters = SQ_TEST_SLOW ? 500 : 3000;
    sq_shardmap_opts o = {.events = (size_t)(2 * PT_THREADS * iters)};
    CHECK_EQ(sq_shardmap_init(&m, &o), 0);
    static sub_arg sub;
    memset(&sub, 0, sizeof sub);
    CHECK_EQ(sq_shardmap_subscribe(&m, &sub.rx), 0);
    pthread_t subth, th[PT_THREADS];
    CHECK_EQ(pthread_create(&subth, NULL, subscriber, &sub), 0);
    pt_arg a = {.m = &m, .iters = iters};
    for (int i = 0; i < PT_THREADS; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, pt_writer, &a), 0);
    for (int i = 0; i < PT_THREADS; i++)
        CHECK_EQ(pthread_join(th[i], NULL), 0);
    sq_shardmap_close_events(&m);
    CHECK_EQ(pthread_join(subth, NULL), 0);
    CHECK_EQ(counter(&m, "key-0"), PT_THREADS * iters);
    CHECK_EQ(sub.end, -EPIPE);
    CHECK_EQ(sub.missed, 0);
    CHECK_EQ(sub.o.bad, 0);
    CHECK_EQ(sub.o.count[0], PT_THREADS * iters);
    CHECK_EQ(sub.o.count[1], PT_THREADS * iters);
    CHECK_EQ(sq_shardmap_destroy(&m), 0);
}

/* ------------------------------------------------------ memory stays flat */

static size_t heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    return mallinfo2().uordblks;
#else
    return 0;
#endif
}

/* Insert, read, rewrite with other sizes and delete everything, many
 * times: once the tables have grown (first round), the heap in use after
 * each round is the same (checked where glibc tells, outside the
 * sanitizers); ASan's leak check covers the rest. */
TEST(memory_stays_flat_under_churn)
{
    sq_shardmap m;
    sq_shardmap_opts o = {.shards = 8, .events = 64};
    CHECK_EQ(sq_shardmap_init(&m, &o), 0);
    sq_broadcast_rx rx;
    CHECK_EQ(sq_shardmap_subscribe(&m, &rx), 0); /* events overwritten */
    int rounds = SQ_TEST_SLOW ? 6 : 20, n = 2000;
    size_t base = 0;
    unsigned char buf[600];
    memset(buf, 'z', sizeof buf);
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < n; i++) {
            char key[32];
            key_of(key, sizeof key, i);
            CHECK_EQ(sq_shardmap_set(&m, key, buf, (size_t)(i * 7 + r) % 300,
                                     NULL),
                     0);
        }
        for (int i = 0; i < n; i++) {
            char key[32];
            key_of(key, sizeof key, i);
            void *copy;
            CHECK_EQ(sq_shardmap_get_copy(&m, key, &copy, NULL, NULL), 0);
            free(copy);
            CHECK_EQ(sq_shardmap_set(&m, key, buf, (size_t)(i * 13 + r) % 600,
                                     NULL),
                     0);
        }
        char **keys;
        CHECK_EQ(sq_shardmap_keys(&m, &keys, NULL), 0);
        free(keys);
        for (int i = 0; i < n; i++) {
            char key[32];
            key_of(key, sizeof key, i);
            CHECK_EQ(sq_shardmap_delete(&m, key, NULL), 0);
        }
        CHECK_EQ(sq_shardmap_size(&m), 0);
        if (r == 1)
            base = heap_in_use();
        else if (r > 1 && !SQ_TEST_SANITIZER)
            CHECK(heap_in_use() <= base + 64 * 1024);
    }
    uint64_t missed = 0;
    sq_shardmap_event ev;
    CHECK_EQ(sq_shardmap_try_recv(&rx, &ev, &missed), -EOVERFLOW);
    CHECK_EQ(missed, (uint64_t)rounds * 3 * n - 64);
    CHECK_EQ(sq_shardmap_unsubscribe(&rx), 0);
    CHECK_EQ(sq_shardmap_destroy(&m), 0);
}
