/* Contexts and holds (context.h): the record of each task and thread
 * that takes task-aware locks, the hash table of holds by lock, locks
 * passed from one task to another (sq_check_lock_transfer, _adopt), and
 * the names of classless locks. */
#include "context.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "squirrel/check.h"

pthread_mutex_t sq__check_lock = PTHREAD_MUTEX_INITIALIZER;
struct sq__list sq__check_contexts = SQ__LIST_INIT;

/* Holds of locks whose task has finished (locks are not owner-bound). */
sq__cctx sq__check_finished = {.name = "finished tasks"};
/* Holds passed on and not yet adopted. */
sq__cctx sq__check_transit = {.name = "nobody (in transit)"};

/* ------------------------------------------------------------ contexts */

static SQ__TLS sq__cctx *tls_ctx;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

/* Gives every hold of `from` to `to`. */
static void holds_move(sq__cctx *from, sq__cctx *to)
{
    while (from->holds) {
        sq__hold *h = from->holds;
        from->holds = h->cnext;
        h->owner = to;
        h->cnext = to->holds;
        to->holds = h;
        to->nholds++;
    }
    from->nholds = 0;
}

void sq__check_retire(sq__cctx *c)
{
    holds_move(c, &sq__check_finished);
    sq__list_remove(&sq__check_contexts, &c->link);
    free(c);
}

/* A thread's context, at the thread's exit. */
static void thread_ctx_free(void *p)
{
    pthread_mutex_lock(&sq__check_lock);
    sq__check_retire(p);
    pthread_mutex_unlock(&sq__check_lock);
}

static void tls_key_make(void)
{
    pthread_key_create(&tls_key, thread_ctx_free);
}

sq__cctx *sq__check_current(void)
{
    sq__task *t = sq__task_current();
    if (t && *sq__task_check_slot(t))
        return *sq__task_check_slot(t);
    if (!t && tls_ctx)
        return tls_ctx;
    sq__cctx *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (t) {
        c->task = t;
        c->task_id = sq__task_id_of(t);
        c->spawn_site = sq__task_site_of(t);
        snprintf(c->name, sizeof c->name, "task '%s' #%llu",
                 sq__task_name_of(t), (unsigned long long)c->task_id);
        *sq__task_check_slot(t) = c;
    } else {
        snprintf(c->name, sizeof c->name, "thread %ld", (long)gettid());
        pthread_once(&tls_once, tls_key_make);
        pthread_setspecific(tls_key, c);
        tls_ctx = c;
    }
    sq__list_push_front(&sq__check_contexts, &c->link);
    return c;
}

sq__cctx *sq__check_current_if_any(void)
{
    sq__task *t = sq__task_current();
    return t ? *sq__task_check_slot(t) : tls_ctx;
}

/* ----------------------------------------------------------- the holds */

#define NBUCKETS 1024
static sq__hold *buckets[NBUCKETS];

static size_t bucket_of(const void *lock)
{
    uintptr_t x = (uintptr_t)lock;
    x ^= x >> 17;
    x *= 0x9e3779b97f4a7c15ull;
    return (size_t)(x >> 40) % NBUCKETS;
}

sq__hold *sq__check_holds_of(const void *lock)
{
    for (sq__hold *h = buckets[bucket_of(lock)]; h; h = h->hnext)
        if (h->lock == lock)
            return h;
    return NULL;
}

void sq__hold_add(sq__cctx *c, sq__hold *h)
{
    h->owner = c;
    h->cnext = c->holds;
    c->holds = h;
    c->nholds++;
    size_t b = bucket_of(h->lock);
    h->hnext = buckets[b];
    buckets[b] = h;
}

void sq__hold_remove(sq__hold *h)
{
    sq__cctx *c = h->owner;
    for (sq__hold **p = &c->holds; *p; p = &(*p)->cnext)
        if (*p == h) {
            *p = h->cnext;
            c->nholds--;
            break;
        }
    for (sq__hold **p = &buckets[bucket_of(h->lock)]; *p; p = &(*p)->hnext)
        if (*p == h) {
            *p = h->hnext;
            break;
        }
}

sq__hold *sq__hold_find(sq__cctx *me, const void *lock, int mode)
{
    sq__hold *transit = NULL, *any = NULL;
    for (sq__hold *h = buckets[bucket_of(lock)]; h; h = h->hnext) {
        if (h->lock != lock || h->mode != mode)
            continue;
        if (h->owner == me)
            return h;
        if (h->owner == &sq__check_transit && !transit)
            transit = h;
        if (!any)
            any = h;
    }
    return transit ? transit : any;
}

/* Moves h from its owner to c (the hash table is unchanged: same lock).
 * Unused when the checks are compiled out (SQ_CHECKS=0). */
static __attribute__((unused)) void hold_move(sq__hold *h, sq__cctx *c)
{
    sq__cctx *from = h->owner;
    for (sq__hold **p = &from->holds; *p; p = &(*p)->cnext)
        if (*p == h) {
            *p = h->cnext;
            from->nholds--;
            break;
        }
    h->owner = c;
    h->cnext = c->holds;
    c->holds = h;
    c->nholds++;
}

/* ---------------------------------------------------- passing locks on */

int sq_check_lock_transfer(const void *lock)
{
#if !SQ_CHECKS
    (void)lock;
    return -ENOTSUP;
#else
    if (!lock)
        return -EINVAL;
    pthread_mutex_lock(&sq__check_lock);
    sq__cctx *me = sq__check_current_if_any();
    sq__hold *h = NULL;
    for (h = me ? me->holds : NULL; h; h = h->cnext) /* newest first */
        if (h->lock == lock)
            break;
    if (h)
        hold_move(h, &sq__check_transit);
    pthread_mutex_unlock(&sq__check_lock);
    return h ? 0 : -ENOENT;
#endif
}

int sq_check_lock_adopt(const void *lock)
{
#if !SQ_CHECKS
    (void)lock;
    return -ENOTSUP;
#else
    if (!lock)
        return -EINVAL;
    pthread_mutex_lock(&sq__check_lock);
    sq__hold *h = sq__check_transit.holds;
    while (h && h->lock != lock)
        h = h->cnext;
    sq__cctx *me = h ? sq__check_current() : NULL;
    if (me)
        hold_move(h, me);
    pthread_mutex_unlock(&sq__check_lock);
    return !h ? -ENOENT : me ? 0 : -ENOMEM;
#endif
}

/* ------------------------------------------------------------- classes */

/* Locks initialised without a class get "lock@<address>", interned here
 * so the string outlives any report or graph node that names it. */
#define NANON 4096
static struct {
    const void *lock;
    char name[32];
} anon[NANON];
static size_t nanon;

const char *sq__class_of(const void *lock, const char *cls)
{
    if (cls)
        return cls;
    for (size_t i = 0; i < nanon; i++)
        if (anon[i].lock == lock)
            return anon[i].name;
    if (nanon == NANON)
        return "lock@(unnamed)";
    anon[nanon].lock = lock;
    snprintf(anon[nanon].name, sizeof anon[nanon].name, "lock@%p", lock);
    return anon[nanon++].name;
}
