/* The seed's lock-contention test (seed.lock_contention.cN) of
 * shared/BENCHMARKS.md: a component holding a map of strings behind a
 * task-aware reader-writer lock; 100,000 operations, each spawned as its
 * own task that first takes a permit from a semaphore of N permits.
 * Operation i writes key-(i%100) = value-i when i is even and reads
 * key-(i%100) when i is odd, so every read misses.
 *
 * The map is the component's own: a fixed table of 128 chained buckets,
 * keys and values copied into malloc'd strings as the peers' String maps
 * do (a write replaces the value and frees the old one). */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "squirrel/rwlock.h"
#include "squirrel/sync.h"

#define SEED_OPS 100000
#define SEED_KEYS 100
#define SEED_BUCKETS 128

typedef struct seed_entry {
    struct seed_entry *next;
    char *key, *value;
} seed_entry;

/* The component under test. */
typedef struct seed_component {
    sq_rwlock lock;
    seed_entry *bucket[SEED_BUCKETS]; /* under lock */
    long writes;                      /* under lock (write side) */
} seed_component;

static unsigned long hash_str(const char *s)
{
    unsigned long h = 1469598103934665603UL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211UL;
    return h;
}

static seed_entry **find_slot(seed_component *c, const char *key)
{
    seed_entry **p = &c->bucket[hash_str(key) % SEED_BUCKETS];
    while (*p && strcmp((*p)->key, key) != 0)
        p = &(*p)->next;
    return p;
}

static char *copy_str(const char *s)
{
    char *d = strdup(s);
    if (!d)
        bench_fail("out of memory");
    return d;
}

static void component_write(seed_component *c, const char *key,
                            const char *value)
{
    char *v = copy_str(value);
    bench_check(sq_rwlock_write_lock(&c->lock), "sq_rwlock_write_lock");
    seed_entry **p = find_slot(c, key);
    char *old = NULL;
    if (*p) {
        old = (*p)->value;
        (*p)->value = v;
    } else {
        seed_entry *e = malloc(sizeof *e);
        if (!e)
            bench_fail("out of memory");
        e->next = NULL;
        e->key = copy_str(key);
        e->value = v;
        *p = e;
    }
    c->writes++;
    bench_check(sq_rwlock_write_unlock(&c->lock), "sq_rwlock_write_unlock");
    free(old);
}

/* Copies the value of key into buf (like the peers' cloned String);
 * returns false if key is absent. */
static bool component_read(seed_component *c, const char *key, char *buf,
                           size_t cap)
{
    bench_check(sq_rwlock_read_lock(&c->lock), "sq_rwlock_read_lock");
    seed_entry *e = *find_slot(c, key);
    if (e)
        snprintf(buf, cap, "%s", e->value);
    bench_check(sq_rwlock_read_unlock(&c->lock), "sq_rwlock_read_unlock");
    return e != NULL;
}

static void component_free(seed_component *c)
{
    for (int b = 0; b < SEED_BUCKETS; b++)
        for (seed_entry *e = c->bucket[b], *n; e; e = n) {
            n = e->next;
            free(e->key);
            free(e->value);
            free(e);
        }
}

enum { WROTE = 1, READ_HIT, READ_MISS };

typedef struct seed_shared {
    seed_component comp;
    sq_sem permits;
} seed_shared;

typedef struct seed_op {
    seed_shared *sh;
    long i;
} seed_op;

static void *seed_task(void *arg)
{
    seed_op *op = arg;
    seed_shared *sh = op->sh;
    bench_check(sq_sem_acquire(&sh->permits, 1), "sq_sem_acquire");
    char key[32], val[32];
    snprintf(key, sizeof key, "key-%ld", op->i % SEED_KEYS);
    intptr_t outcome;
    if (op->i % 2 == 0) {
        snprintf(val, sizeof val, "value-%ld", op->i);
        component_write(&sh->comp, key, val);
        outcome = WROTE;
    } else {
        outcome = component_read(&sh->comp, key, val, sizeof val) ? READ_HIT
                                                                   : READ_MISS;
    }
    bench_check(sq_sem_release(&sh->permits, 1), "sq_sem_release");
    return (void *)outcome;
}

/* Every even key holds value-i for an even i with i % 100 == key (any of
 * the racing writers may have won); odd keys are absent. */
static void check_map(seed_component *c)
{
    long n = 0;
    for (int b = 0; b < SEED_BUCKETS; b++)
        for (seed_entry *e = c->bucket[b]; e; e = e->next)
            n++;
    if (n != SEED_KEYS / 2)
        bench_fail("map holds %ld keys, want %d", n, SEED_KEYS / 2);
    for (int k = 0; k < SEED_KEYS; k++) {
        char key[32];
        snprintf(key, sizeof key, "key-%d", k);
        seed_entry *e = *find_slot(c, key);
        if (k % 2 == 1) {
            if (e)
                bench_fail("odd key %s exists", key);
            continue;
        }
        if (!e)
            bench_fail("even key %s is missing", key);
        char *end;
        if (strncmp(e->value, "value-", 6) != 0)
            bench_fail("%s holds \"%s\"", key, e->value);
        long i = strtol(e->value + 6, &end, 10);
        if (*end || i < 0 || i >= SEED_OPS || i % 2 || i % SEED_KEYS != k)
            bench_fail("%s holds \"%s\"", key, e->value);
    }
}

static void seed_run(const bench_workload *w, bench_run *out)
{
    long permits = w->param;
    seed_shared *sh = calloc(1, sizeof *sh);
    seed_op *ops = malloc(SEED_OPS * sizeof *ops);
    sq_task *h = malloc(SEED_OPS * sizeof *h);
    if (!sh || !ops || !h)
        bench_fail("out of memory");
    sq_rwlock_init(&sh->comp.lock);
    bench_check(sq_sem_init(&sh->permits, (size_t)permits), "sq_sem_init");

    int64_t t0 = sq_now();
    for (long i = 0; i < SEED_OPS; i++) {
        ops[i] = (seed_op){.sh = sh, .i = i};
        bench_check(sq_spawn(&h[i], seed_task, &ops[i], NULL), "sq_spawn");
    }
    long writes = 0, hits = 0;
    for (long i = 0; i < SEED_OPS; i++) {
        void *r;
        bench_check(sq_join(h[i], &r), "sq_join");
        intptr_t o = (intptr_t)r;
        if (o == WROTE)
            writes++;
        else if (o == READ_HIT)
            hits++;
        else if (o != READ_MISS)
            bench_fail("operation %ld returned %ld", i, (long)o);
    }
    out->ns = sq_now() - t0;

    if (writes != SEED_OPS / 2 || sh->comp.writes != SEED_OPS / 2)
        bench_fail("%ld writes reported, %ld done, want %d", writes,
                   sh->comp.writes, SEED_OPS / 2);
    if (hits)
        bench_fail("%ld reads found a key; odd keys are never written", hits);
    if (sq_sem_available(&sh->permits) != (size_t)permits)
        bench_fail("permits lost: %zu of %ld available",
                   sq_sem_available(&sh->permits), permits);
    check_map(&sh->comp);
    bench_check(sq_rwlock_destroy(&sh->comp.lock), "sq_rwlock_destroy");
    bench_check(sq_sem_destroy(&sh->permits), "sq_sem_destroy");
    component_free(&sh->comp);
    free(h);
    free(ops);
    free(sh);
}

#define SEED(n)                                                          \
    {.name = "seed.lock_contention.c" #n, .ops = SEED_OPS, .param = (n), \
     .run = seed_run}

const bench_workload bench_seed_workloads[] = {
    SEED(1), SEED(2), SEED(4), SEED(8), SEED(16), SEED(32), {.name = NULL},
};
