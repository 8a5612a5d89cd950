/* The snapshot (sq_check_snapshot_take): the tasks of every runtime,
 * copied without the checks' lock, then, under sq__check_lock alone,
 * matched with the checks' contexts (by task address and id) and joined
 * by their locks and the wait-for cycles (deadlock.c).  Everything is
 * copied into one arena owned by the snapshot, strings included, so the
 * caller may read it at leisure with no lock while the program goes on.
 *
 * The locks it takes.  The runtimes are walked with sq__runtime_foreach,
 * then each one's tasks with sq__registry_foreach under each registry
 * shard's spin lock, with no check lock held; sq__check_lock is taken
 * only afterwards, so it is never held together with a runtime lock and
 * needs no order with them (the hooks take it with no runtime lock
 * held).  A task is never dereferenced after its shard's lock is
 * released: the copy is matched by address and id only (its runtime may
 * be gone by then).
 *
 * What a task waits for.  A task's waiter (sq__task_waiting_of) lives on
 * the waiting task's own stack, which the task may leave (and its stack
 * be freed, if it then finishes) while we read it.  The waiter is
 * therefore copied with process_vm_readv on our own process, which fails
 * cleanly instead of faulting on unmapped memory and is a system call, so
 * no data race in the sanitizers' eyes; the copy is trusted only if it
 * names the task itself and the task still waits in it afterwards.
 * Where that call is refused (seccomp), a pipe is the copier instead
 * (write(2) also reports EFAULT). */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "squirrel/check.h"

#include "arena.h"
#include "context.h"
#include "deadlock.h"
#include "report.h"

/* ------------------------------------------------------ the task copy */

enum {
    COPY_NO_WAIT,           /* not waiting */
    COPY_WAIT,              /* waiting: kind, obj and since are set */
    COPY_WAIT_UNREADABLE,   /* waiting, the waiter could not be read */
};

typedef struct copied_task {
    const sq_runtime *rt;
    const sq__task *t;       /* identity only: never dereferenced later */
    uint64_t id;
    char name[SQ__TASK_NAME_MAX];
    const char *spawn_site;
    int state;               /* sq__task_state_of as read */
    int wait;                /* COPY_* */
    int kind;                /* the wait (enum sq__wait_kind) */
    const void *obj;
    int64_t since;           /* 0 if the checks were off as it began */
    void *user;              /* for the snapshot's own use */
} copied_task;

typedef struct copied_runtime {
    const sq_runtime *rt;
    int nworkers;
    size_t first, n;         /* its tasks in the copy, by id */
} copied_runtime;

typedef struct tasks_copy {
    copied_task *t;
    size_t n, cap;
    copied_runtime *rt;
    size_t nrt, caprt;
    copied_task **by_ptr;    /* t by task address */
    bool incomplete;         /* out of memory somewhere */
    int probe[2];            /* the pipe copier, if needed */
} tasks_copy;

/* How to copy memory that may vanish: 0 not tried, 1 process_vm_readv,
 * 2 through a pipe. */
static atomic_int copier;

static bool copy_by_pipe(tasks_copy *s, void *dst, const void *src,
                         size_t len)
{
    if (s->probe[0] < 0 && pipe2(s->probe, O_CLOEXEC | O_NONBLOCK) != 0)
        return false;
    ssize_t w = write(s->probe[1], src, len); /* len < PIPE_BUF: whole */
    if (w != (ssize_t)len)
        return false;
    return read(s->probe[0], dst, len) == (ssize_t)len;
}

/* Copies len bytes at src, which may be unmapped meanwhile: false if
 * they could not be read. */
static bool copy_mem(tasks_copy *s, void *dst, const void *src,
                     size_t len)
{
    if (atomic_load_explicit(&copier, memory_order_relaxed) != 2) {
        struct iovec l = {dst, len}, r = {(void *)src, len};
        ssize_t n = process_vm_readv(getpid(), &l, 1, &r, 1, 0);
        if (n == (ssize_t)len) {
            atomic_store_explicit(&copier, 1, memory_order_relaxed);
            return true;
        }
        if (n >= 0 || errno == EFAULT || errno == ESRCH ||
            atomic_load_explicit(&copier, memory_order_relaxed) == 1)
            return false;
        atomic_store_explicit(&copier, 2, memory_order_relaxed);
    }
    return copy_by_pipe(s, dst, src, len);
}

/* What t waits for, into d (see the top of the file). */
static void read_wait(tasks_copy *s, sq__task *t, copied_task *d)
{
    d->wait = COPY_NO_WAIT;
    for (int tries = 0; tries < 3; tries++) {
        sq__waiter *w = sq__task_waiting_of(t);
        if (!w)
            return;
        sq__waiter copy;
        if (copy_mem(s, &copy, w, sizeof copy) && copy.task == t &&
            copy.kind >= 0 && copy.kind < SQ__WAIT_NKINDS &&
            sq__task_waiting_of(t) == w) {
            d->wait = COPY_WAIT;
            d->kind = copy.kind;
            d->obj = copy.obj;
            d->since = copy.since;
            return;
        }
    }
    d->wait = COPY_WAIT_UNREADABLE;
}

/* Under the registry shard's spin lock: copies, never waits (the
 * allocation aside). */
static void copy_task(sq__task *t, void *arg)
{
    tasks_copy *s = arg;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        copied_task *n = realloc(s->t, cap * sizeof *n);
        if (!n) {
            s->incomplete = true;
            return;
        }
        s->t = n;
        s->cap = cap;
    }
    copied_task *d = &s->t[s->n++];
    d->rt = s->rt[s->nrt - 1].rt;
    d->t = t;
    d->id = sq__task_id_of(t);
    memcpy(d->name, sq__task_name_of(t), sizeof d->name);
    d->name[sizeof d->name - 1] = '\0';
    d->spawn_site = sq__task_site_of(t);
    d->state = sq__task_state_of(t);
    d->user = NULL;
    read_wait(s, t, d);
}

static int cmp_task_id(const void *a, const void *b)
{
    const copied_task *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Under the list of runtimes' lock. */
static void copy_runtime(sq_runtime *rt, void *arg)
{
    tasks_copy *s = arg;
    if (s->nrt == s->caprt) {
        size_t cap = s->caprt ? 2 * s->caprt : 4;
        copied_runtime *n = realloc(s->rt, cap * sizeof *n);
        if (!n) {
            s->incomplete = true;
            return;
        }
        s->rt = n;
        s->caprt = cap;
    }
    copied_runtime *r = &s->rt[s->nrt++];
    r->rt = rt;
    r->nworkers = sq__runtime_workers(rt);
    r->first = s->n;
    sq__registry_foreach(rt, copy_task, s);
    r->n = s->n - r->first;
    qsort(s->t + r->first, r->n, sizeof *s->t, cmp_task_id);
}

/* The copy's tasks by address, to find a context's or a join's task. */
static int cmp_task_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)(*(copied_task *const *)a)->t;
    uintptr_t y = (uintptr_t)(*(copied_task *const *)b)->t;
    return x < y ? -1 : x > y;
}

/* Copies every task of every runtime into *s.  Call with no check lock:
 * it holds each registry shard's spin lock for its part. */
static void tasks_take(tasks_copy *s)
{
    *s = (tasks_copy){.probe = {-1, -1}};
    sq__runtime_foreach(copy_runtime, s);
    s->by_ptr = s->n ? malloc(s->n * sizeof *s->by_ptr) : NULL;
    if (s->by_ptr) {
        for (size_t i = 0; i < s->n; i++)
            s->by_ptr[i] = &s->t[i];
        qsort(s->by_ptr, s->n, sizeof *s->by_ptr, cmp_task_ptr);
    } else if (s->n) {
        s->incomplete = true;
    }
}

static void tasks_free(tasks_copy *s)
{
    free(s->by_ptr);
    free(s->t);
    free(s->rt);
    if (s->probe[0] >= 0) {
        close(s->probe[0]);
        close(s->probe[1]);
    }
}

/* The copied task whose address is t, or NULL. */
static copied_task *tasks_find(const tasks_copy *s, const void *t)
{
    copied_task key = {.t = t}, *k = &key;
    copied_task **p =
        s->by_ptr ? bsearch(&k, s->by_ptr, s->n, sizeof *s->by_ptr,
                            cmp_task_ptr)
                  : NULL;
    return p ? *p : NULL;
}

/* ------------------------------------------------- the public snapshot */

/* What the caller gets, and the arena behind it. */
typedef struct owned_snapshot {
    sq_check_snapshot pub;  /* first: the caller's pointer is to it */
    sq__arena arena;
} owned_snapshot;

typedef struct build {
    sq__arena *a;
    int64_t now;
} build;

/* ------------------------------------------------------------ locks */

static void hold_copy(build *B, sq_check_hold *out, const sq__hold *h)
{
    *out = (sq_check_hold){
        .lock = h->lock,
        .cls = sq__arena_str(B->a, h->cls),
        .shared = h->mode == SQ__LOCK_SHARED,
        .site = sq__arena_str(B->a, h->site),
        .age_ns = B->now - h->since,
        .holder = sq__arena_str(B->a, h->owner->name),
        .holder_task_id = h->owner->task ? h->owner->task_id : 0,
    };
}

/* c's holds, newest first, into an array of the arena (*n its length). */
static const sq_check_hold *holds_copy(build *B, const sq__cctx *c, size_t *n)
{
    sq_check_hold *out = sq__arena_array(B->a, (size_t)c->nholds,
                                         sizeof *out);
    size_t k = 0;
    for (const sq__hold *h = c->holds; out && h && k < (size_t)c->nholds;
         h = h->cnext)
        hold_copy(B, &out[k++], h);
    *n = k;
    return out;
}

/* The lock c is trying to take and its holders, or NULL. */
static const sq_check_want *want_copy(build *B, const sq__cctx *c)
{
    const void *lock = c->acquiring;
    if (!lock)
        return NULL;
    sq_check_want *w = sq__arena_array(B->a, 1, sizeof *w);
    if (!w)
        return NULL;
    *w = (sq_check_want){
        .lock = lock,
        .cls = sq__arena_str(B->a, c->acquiring_cls),
        .shared = c->acquiring_mode == SQ__LOCK_SHARED,
        .site = sq__arena_str(B->a, c->acquiring_site),
    };
    size_t n = 0;
    for (const sq__hold *h = sq__check_holds_of(lock); h; h = h->hnext)
        n += h->lock == lock;
    sq_check_hold *holders = sq__arena_array(B->a, n, sizeof *holders);
    if (!holders)
        return w;
    for (const sq__hold *h = sq__check_holds_of(lock); h; h = h->hnext)
        if (h->lock == lock)
            hold_copy(B, &holders[w->nholders++], h);
    w->holders = holders;
    return w;
}

static void context_copy(build *B, sq_check_context *out, const sq__cctx *c)
{
    out->name = sq__arena_str(B->a, c->name);
    out->task_id = c->task ? c->task_id : 0;
    out->spawn_site = sq__arena_str(B->a, c->spawn_site);
    out->wants = want_copy(B, c);
    out->holds = holds_copy(B, c, &out->nholds);
}

/* ------------------------------------------------------------ tasks */

static int state_of(int st)
{
    if ((st & 3) == SQ__T_PARKED && (st & SQ__T_NOTIFIED))
        return SQ_CHECK_TASK_QUEUED; /* woken, on its way to a run queue */
    switch (st & 3) {
    case SQ__T_QUEUED: return SQ_CHECK_TASK_QUEUED;
    case SQ__T_RUNNING: return SQ_CHECK_TASK_RUNNING;
    case SQ__T_PARKED: return SQ_CHECK_TASK_PARKED;
    default: return SQ_CHECK_TASK_DONE;
    }
}

/* The copied task d, without its locks (matched later). */
static void task_fill(build *B, sq_check_task *out, copied_task *d)
{
    *out = (sq_check_task){
        .id = d->id,
        .name = sq__arena_str(B->a, d->name),
        .state = state_of(d->state),
        .spawn_site = sq__arena_str(B->a, d->spawn_site),
        .wait = SQ_CHECK_WAIT_NONE,
        .waited_ns = -1,
    };
    if (d->wait == COPY_WAIT_UNREADABLE) {
        out->wait = SQ_CHECK_WAIT_UNKNOWN;
    } else if (d->wait == COPY_WAIT) {
        out->wait = sq__wait_public(d->kind);
        out->wait_object = d->obj;
        if (d->since)
            out->waited_ns = B->now - d->since;
    }
    d->user = out;
}

/* The runtimes and their tasks; joins resolved within the copy. */
static void runtimes_copy(build *B, sq_check_snapshot *s,
                          const tasks_copy *c)
{
    sq_check_runtime *rts = sq__arena_array(B->a, c->nrt, sizeof *rts);
    if (!rts)
        return;
    for (size_t r = 0; r < c->nrt; r++) {
        const copied_runtime *cr = &c->rt[r];
        rts[r].runtime = cr->rt;
        rts[r].workers = cr->nworkers;
        sq_check_task *t = sq__arena_array(B->a, cr->n, sizeof *t);
        if (!t)
            continue;
        for (size_t i = 0; i < cr->n; i++)
            task_fill(B, &t[i], &c->t[cr->first + i]);
        rts[r].tasks = t;
        rts[r].ntasks = cr->n;
    }
    s->runtimes = rts;
    s->nruntimes = c->nrt;
    for (size_t i = 0; i < c->n; i++) {
        copied_task *d = &c->t[i];
        sq_check_task *t = d->user;
        if (!t || d->wait != COPY_WAIT || d->kind != SQ__WAIT_JOIN)
            continue;
        copied_task *j = tasks_find(c, d->obj);
        if (j)
            t->joined = j->user;
    }
}

/* ------------------------------------------------- contexts, cycles */

/* The task of the copy that context x is, or NULL (a thread, or a task
 * that started after the copy). */
static copied_task *copied_of(const tasks_copy *c, const sq__cctx *x)
{
    copied_task *d = x->task ? tasks_find(c, x->task) : NULL;
    return d && d->id == x->task_id ? d : NULL;
}

static bool has_locks(const sq__cctx *x)
{
    return x->holds || x->acquiring;
}

/* Under sq__check_lock: the locks of the copied tasks, and the threads
 * and other tasks that hold or want locks. */
static void contexts_copy(build *B, sq_check_snapshot *s,
                          const tasks_copy *c)
{
    size_t nthreads = 0, nothers = 0;
    SQ__LIST_FOREACH(it, &sq__check_contexts) {
        sq__cctx *x = sq__cctx_of(it);
        copied_task *d = copied_of(c, x);
        sq_check_task *t = d ? d->user : NULL;
        if (t) {
            t->wants = want_copy(B, x);
            t->holds = holds_copy(B, x, &t->nholds);
        } else if (!d && has_locks(x)) {
            if (x->task)
                nothers++;
            else
                nthreads++;
        }
    }
    sq_check_context *th = sq__arena_array(B->a, nthreads, sizeof *th);
    sq_check_context *ot = sq__arena_array(B->a, nothers, sizeof *ot);
    SQ__LIST_FOREACH(it, &sq__check_contexts) {
        sq__cctx *x = sq__cctx_of(it);
        if (copied_of(c, x) || !has_locks(x))
            continue;
        if (!x->task && th)
            context_copy(B, &th[s->nthreads++], x);
        else if (x->task && ot)
            context_copy(B, &ot[s->nother_tasks++], x);
    }
    s->threads = th;
    s->other_tasks = ot;
}

typedef struct cycles_copy {
    build *B;
    sq_check_cycle *out;
    size_t n, cap;
} cycles_copy;

/* Copies one cycle (its strings borrowed from the contexts). */
static void cycle_copy(const sq_check_cycle *c, sq__cctx *const *ctx,
                       void *arg)
{
    (void)ctx;
    cycles_copy *cc = arg;
    build *B = cc->B;
    if (cc->n == cc->cap) {
        size_t cap = cc->cap ? 2 * cc->cap : 8;
        sq_check_cycle *n = sq__arena_array(B->a, cap, sizeof *n);
        if (!n)
            return;
        for (size_t i = 0; i < cc->n; i++)
            n[i] = cc->out[i];
        cc->out = n;
        cc->cap = cap;
    }
    sq_check_cycle_step *st = sq__arena_array(B->a, c->nsteps, sizeof *st);
    sq_check_hold *h = sq__arena_array(B->a, c->nsteps, sizeof *h);
    if (!st || !h)
        return;
    for (size_t k = 0; k < c->nsteps; k++) {
        const sq_check_cycle_step *s = &c->steps[k];
        st[k] = (sq_check_cycle_step){
            .name = sq__arena_str(B->a, s->name),
            .task_id = s->task_id,
            .spawn_site = sq__arena_str(B->a, s->spawn_site),
            .lock = s->lock,
            .cls = sq__arena_str(B->a, s->cls),
            .shared = s->shared,
            .site = sq__arena_str(B->a, s->site),
        };
        if (s->next_holds) {
            h[k] = *s->next_holds;
            h[k].cls = sq__arena_str(B->a, h[k].cls);
            h[k].site = sq__arena_str(B->a, h[k].site);
            h[k].holder = sq__arena_str(B->a, h[k].holder);
            st[k].next_holds = &h[k];
        }
    }
    cc->out[cc->n++] = (sq_check_cycle){.nsteps = c->nsteps, .steps = st};
}

/* Holds no live context is charged with: in transit, then those of
 * finished tasks. */
static void unowned_copy(build *B, sq_check_snapshot *s)
{
    const sq__cctx *x[] = {&sq__check_transit, &sq__check_finished};
    size_t n = (size_t)(x[0]->nholds + x[1]->nholds);
    sq_check_hold *out = sq__arena_array(B->a, n, sizeof *out);
    for (size_t i = 0; out && i < 2; i++)
        for (const sq__hold *h = x[i]->holds; h && s->nunowned < n;
             h = h->cnext)
            hold_copy(B, &out[s->nunowned++], h);
    s->unowned = out;
}

/* ------------------------------------------------------------ the API */

int sq_check_snapshot_take(sq_check_snapshot **out)
{
    if (!out)
        return -EINVAL;
    owned_snapshot *o = calloc(1, sizeof *o);
    *out = o ? &o->pub : NULL;
    if (!o)
        return -ENOMEM;
    sq_check_snapshot *s = &o->pub;
    tasks_copy copy;
    tasks_take(&copy);
    build B = {.a = &o->arena, .now = sq_now()};
    s->pid = (long)getpid();
    s->now_ns = B.now;

    runtimes_copy(&B, s, &copy);
    cycles_copy cc = {.B = &B};
    pthread_mutex_lock(&sq__check_lock);
    contexts_copy(&B, s, &copy);
    unowned_copy(&B, s);
    int rc = sq__deadlock_each(B.now, cycle_copy, &cc);
    pthread_mutex_unlock(&sq__check_lock);
    s->cycles = cc.out;
    s->ncycles = cc.n;
    s->complete = !copy.incomplete && rc >= 0 && !o->arena.failed;
    tasks_free(&copy);
    return 0;
}

void sq_check_snapshot_free(sq_check_snapshot *s)
{
    if (!s)
        return;
    owned_snapshot *o = (owned_snapshot *)(void *)s;
    sq__arena_free(&o->arena);
    free(o);
}
