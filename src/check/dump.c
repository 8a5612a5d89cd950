/* The task dump: every task of every runtime, what each waits for, the
 * locks each holds, the plain threads that hold or want locks, and the
 * wait-for cycles, as text or JSON; on demand and on a signal.
 *
 * How it is taken, and the locks it takes.  First the tasks are copied
 * (sq__runtime_foreach, then sq__registry_foreach under each registry
 * shard's spin lock) with no check lock held; then, under sq__check_lock
 * alone, the copy is matched with the check contexts (by task address and
 * id, never by dereferencing a task again: its runtime may be gone by
 * then) and the whole text is written into memory; the output is written
 * to its file after every lock is released.  So the dump never holds
 * sq__check_lock together with a runtime lock, and needs no order between
 * them (the hooks take sq__check_lock with no runtime lock held, the
 * registry is walked with no check lock held).  It is a snapshot of a
 * moving system: a task may change state between the two steps.
 *
 * What a task waits for.  sq__task.waiting points at a waiter on the
 * waiting task's own stack, which the task may leave (and its stack be
 * freed, if it then finishes) while the dump reads it.  The waiter is
 * therefore copied with process_vm_readv on our own process, which fails
 * cleanly instead of faulting on unmapped memory and is a system call, so
 * no data race in the sanitizers' eyes; the copy is trusted only if it
 * names the task itself and `waiting` still points at it afterwards.
 * Where that call is refused (seccomp), a pipe is the copier instead
 * (write(2) also reports EFAULT).
 *
 * The signal path never formats in the handler: the handler writes one
 * byte to a pipe, and a thread of ours (every signal blocked) reads it and
 * writes the dump. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "squirrel/check.h"
#include "sq_base/json.h"

#include "context.h"
#include "deadlock.h"
#include "report.h"

/* ------------------------------------------------------ the task copy */

enum { W_NONE, W_KNOWN, W_UNREADABLE };

typedef struct dtask {
    const sq_runtime *rt;
    const sq__task *t;       /* identity only: never dereferenced later */
    uint64_t id;
    char name[SQ__TASK_NAME_MAX];
    const char *spawn_site;
    int state;               /* sq__task.state as read */
    int wait;                /* W_* */
    int kind;                /* the wait, if W_KNOWN */
    const void *obj;
    int64_t since;
    sq__cctx *ctx;           /* its check context, under sq__check_lock */
} dtask;

typedef struct druntime {
    const sq_runtime *rt;
    int nworkers;
    size_t first, n;         /* its tasks in the copy */
} druntime;

typedef struct dsnap {
    dtask *t;
    size_t n, cap;
    druntime *rt;
    size_t nrt, caprt;
    bool incomplete;         /* out of memory somewhere */
    int probe[2];            /* the pipe copier, if needed */
} dsnap;

/* How to copy memory that may vanish: 0 not tried, 1 process_vm_readv,
 * 2 through a pipe. */
static atomic_int copier;

static bool copy_by_pipe(dsnap *s, void *dst, const void *src, size_t len)
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
static bool copy_mem(dsnap *s, void *dst, const void *src, size_t len)
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
static void read_wait(dsnap *s, sq__task *t, dtask *d)
{
    d->wait = W_NONE;
    for (int tries = 0; tries < 3; tries++) {
        sq__waiter *w = sq__task_waiting_of(t);
        if (!w)
            return;
        sq__waiter copy;
        if (copy_mem(s, &copy, w, sizeof copy) && copy.task == t &&
            copy.kind >= 0 && copy.kind < SQ__WAIT_NKINDS &&
            sq__task_waiting_of(t) == w) {
            d->wait = W_KNOWN;
            d->kind = copy.kind;
            d->obj = copy.obj;
            d->since = copy.since;
            return;
        }
    }
    d->wait = W_UNREADABLE;
}

/* Under the registry shard's spin lock: copies, never waits (the
 * allocation aside). */
static void snap_task(sq__task *t, void *arg)
{
    dsnap *s = arg;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        dtask *n = realloc(s->t, cap * sizeof *n);
        if (!n) {
            s->incomplete = true;
            return;
        }
        s->t = n;
        s->cap = cap;
    }
    dtask *d = &s->t[s->n++];
    d->rt = s->rt[s->nrt - 1].rt;
    d->t = t;
    d->id = sq__task_id_of(t);
    memcpy(d->name, sq__task_name_of(t), sizeof d->name);
    d->name[sizeof d->name - 1] = '\0';
    d->spawn_site = sq__task_site_of(t);
    d->state = sq__task_state_of(t);
    d->ctx = NULL;
    read_wait(s, t, d);
}

static int cmp_task_id(const void *a, const void *b)
{
    const dtask *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Under the list of runtimes' lock. */
static void snap_runtime(sq_runtime *rt, void *arg)
{
    dsnap *s = arg;
    if (s->nrt == s->caprt) {
        size_t cap = s->caprt ? 2 * s->caprt : 4;
        druntime *n = realloc(s->rt, cap * sizeof *n);
        if (!n) {
            s->incomplete = true;
            return;
        }
        s->rt = n;
        s->caprt = cap;
    }
    druntime *r = &s->rt[s->nrt++];
    r->rt = rt;
    r->nworkers = sq__runtime_workers(rt);
    r->first = s->n;
    sq__registry_foreach(rt, snap_task, s);
    r->n = s->n - r->first;
    qsort(s->t + r->first, r->n, sizeof *s->t, cmp_task_id);
}

static void snap_free(dsnap *s)
{
    free(s->t);
    free(s->rt);
    if (s->probe[0] >= 0) {
        close(s->probe[0]);
        close(s->probe[1]);
    }
}

/* The copy's tasks by address, to find a context's or a join's task. */
static int cmp_task_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)(*(dtask *const *)a)->t;
    uintptr_t y = (uintptr_t)(*(dtask *const *)b)->t;
    return x < y ? -1 : x > y;
}

static dtask *find_task(dtask **by_ptr, size_t n, const void *t)
{
    dtask key = {.t = t}, *k = &key;
    dtask **p = by_ptr ? bsearch(&k, by_ptr, n, sizeof *by_ptr, cmp_task_ptr)
                       : NULL;
    return p ? *p : NULL;
}

/* ---------------------------------------------------------- the names */

static const char *state_name(int st)
{
    if ((st & 3) == SQ__T_PARKED && (st & SQ__T_NOTIFIED))
        return "queued"; /* woken, on its way to a run queue */
    switch (st & 3) {
    case SQ__T_QUEUED: return "queued";
    case SQ__T_RUNNING: return "running";
    case SQ__T_PARKED: return "parked";
    default: return "done";
    }
}

static const char *mode_key(int mode)
{
    return sq__mode_key(mode == SQ__LOCK_SHARED);
}

/* ------------------------------------------------------------ writing */

typedef struct dout {
    sq__strbuf b;   /* the text */
    int64_t now;
    bool json;
    dtask **by_ptr; /* the copy by task address */
    size_t n;
} dout;

#define put(o, ...) sq__strbuf_printf(&(o)->b, __VA_ARGS__)
#define put_age(o, ns) sq__put_age(&(o)->b, (ns))
#define put_kv(o, key, v) sq__json_kv(&(o)->b, (key), (v))
#define put_ptr(o, key, p) sq__json_kptr(&(o)->b, (key), (p))

/* ------------------------------------------------ locks: text and JSON */

static void hold_json(dout *o, const sq__hold *h)
{
    put(o, "{");
    put_ptr(o, "lock", h->lock);
    put(o, ", ");
    put_kv(o, "class", h->cls);
    put(o, ", \"mode\": \"%s\", ", mode_key(h->mode));
    put_kv(o, "site", h->site);
    put(o, ", \"age_ns\": %lld}", (long long)(o->now - h->since));
}

static void holds(dout *o, const sq__cctx *c, const char *indent)
{
    if (o->json) {
        put(o, "\"holds\": [");
        for (const sq__hold *h = c ? c->holds : NULL; h; h = h->cnext) {
            hold_json(o, h);
            if (h->cnext)
                put(o, ", ");
        }
        put(o, "]");
        return;
    }
    for (const sq__hold *h = c ? c->holds : NULL; h; h = h->cnext) {
        put(o, "%sholds %s %s (%p) taken at %s, ", indent,
            sq__mode_text(h->mode == SQ__LOCK_SHARED), h->cls, h->lock, h->site);
        put_age(o, o->now - h->since);
        put(o, " ago\n");
    }
}

/* The lock c is trying to take, and who holds it. */
static void wanted(dout *o, const sq__cctx *c, const char *indent)
{
    const void *lock = c->acquiring;
    if (o->json) {
        put(o, "{");
        put_ptr(o, "lock", lock);
        put(o, ", ");
        put_kv(o, "class", c->acquiring_cls);
        put(o, ", \"mode\": \"%s\", ", mode_key(c->acquiring_mode));
        put_kv(o, "site", c->acquiring_site);
        put(o, ", \"held_by\": [");
        bool first = true;
        for (const sq__hold *h = sq__check_holds_of(lock); h; h = h->hnext) {
            if (h->lock != lock)
                continue;
            put(o, "%s{", first ? "" : ", ");
            first = false;
            put_kv(o, "holder", h->owner->name);
            put(o, ", \"mode\": \"%s\", ", mode_key(h->mode));
            put_kv(o, "site", h->site);
            put(o, ", \"age_ns\": %lld}", (long long)(o->now - h->since));
        }
        put(o, "]}");
        return;
    }
    put(o, "%swants %s %s (%p) at %s", indent,
        sq__mode_text(c->acquiring_mode == SQ__LOCK_SHARED),
        c->acquiring_cls ? c->acquiring_cls : "?", lock,
        c->acquiring_site ? c->acquiring_site : "?");
    bool any = false;
    for (const sq__hold *h = sq__check_holds_of(lock); h; h = h->hnext) {
        if (h->lock != lock)
            continue;
        put(o, "\n%s  held by %s as %s taken at %s, ", indent, h->owner->name,
            sq__mode_text(h->mode == SQ__LOCK_SHARED), h->site);
        put_age(o, o->now - h->since);
        put(o, " ago");
        any = true;
    }
    put(o, any ? "\n" : "; no holder known to the checks\n");
}

/* ------------------------------------------------------------- tasks */

static void task_text(dout *o, const dtask *d)
{
    put(o, "  task #%llu '%s' %s", (unsigned long long)d->id, d->name,
        state_name(d->state));
    if (d->wait == W_UNREADABLE)
        put(o, ", waiting (for what could not be read)");
    if (d->wait == W_KNOWN) {
        put(o, ", waits for %s", sq__wait_kind_text(d->kind));
        if (d->obj)
            put(o, " (%p)", d->obj);
        const dtask *j = d->kind == SQ__WAIT_JOIN
                             ? find_task(o->by_ptr, o->n, d->obj)
                             : NULL;
        if (j)
            put(o, ": task #%llu '%s'", (unsigned long long)j->id, j->name);
        if (d->since) {
            put(o, " for ");
            put_age(o, o->now - d->since);
        }
    }
    put(o, "\n      spawned at %s\n", d->spawn_site ? d->spawn_site : "?");
    if (d->ctx && d->ctx->acquiring)
        wanted(o, d->ctx, "      ");
    holds(o, d->ctx, "      ");
}

static void task_json(dout *o, const dtask *d)
{
    put(o, "{\"id\": %llu, ", (unsigned long long)d->id);
    put_kv(o, "name", d->name);
    put(o, ", \"state\": \"%s\", ", state_name(d->state));
    put_kv(o, "spawned_at", d->spawn_site);
    put(o, ", \"waiting\": ");
    if (d->wait == W_NONE) {
        put(o, "null");
    } else if (d->wait == W_UNREADABLE) {
        put(o, "{\"kind\": \"unknown\"}");
    } else {
        put(o, "{\"kind\": \"%s\", ", sq__wait_kind_key(d->kind));
        if (d->obj)
            put_ptr(o, "object", d->obj);
        else
            put(o, "\"object\": null");
        if (d->since)
            put(o, ", \"for_ns\": %lld", (long long)(o->now - d->since));
        const dtask *j = d->kind == SQ__WAIT_JOIN
                             ? find_task(o->by_ptr, o->n, d->obj)
                             : NULL;
        if (j)
            put(o, ", \"task\": %llu", (unsigned long long)j->id);
        put(o, "}");
    }
    put(o, ", \"wants\": ");
    if (d->ctx && d->ctx->acquiring)
        wanted(o, d->ctx, NULL);
    else
        put(o, "null");
    put(o, ", ");
    holds(o, d->ctx, NULL);
    put(o, "}");
}

/* A context that is not a task of the copy: a plain thread, or a task
 * spawned after the copy was taken. */
static void ctx_text(dout *o, const sq__cctx *c)
{
    put(o, "  %s", c->name);
    if (c->spawn_site)
        put(o, " (spawned at %s)", c->spawn_site);
    put(o, "\n");
    if (c->acquiring)
        wanted(o, c, "      ");
    holds(o, c, "      ");
}

static void ctx_json(dout *o, const sq__cctx *c)
{
    put(o, "{");
    put_kv(o, "name", c->name);
    if (c->task)
        put(o, ", \"task_id\": %llu", (unsigned long long)c->task_id);
    put(o, ", ");
    put_kv(o, "spawned_at", c->spawn_site);
    put(o, ", \"wants\": ");
    if (c->acquiring)
        wanted(o, c, NULL);
    else
        put(o, "null");
    put(o, ", ");
    holds(o, c, NULL);
    put(o, "}");
}

/* ------------------------------------------------------------- cycles */

typedef struct dcycles {
    dout *o;
    int n;
} dcycles;

static void cycle_out(const sq__dl_step *s, int n, void *arg)
{
    dcycles *cy = arg;
    dout *o = cy->o;
    if (!o->json) {
        /* The report's text of the cycle, indented under its title. */
        put(o, "  cycle %d:\n", ++cy->n);
        sq__deadlock_describe(&o->b, "  ", s, n, o->now);
        return;
    }
    put(o, "%s[", cy->n++ ? ", " : "");
    for (int k = 0; k < n; k++) {
        const sq__cctx *c = s[k].ctx;
        put(o, "%s{", k ? ", " : "");
        put_kv(o, "context", c->name);
        if (c->task)
            put(o, ", \"task_id\": %llu", (unsigned long long)c->task_id);
        put(o, ", ");
        put_kv(o, "spawned_at", c->spawn_site);
        put(o, ", \"waits_for\": {");
        put_ptr(o, "lock", s[k].lock);
        put(o, ", ");
        put_kv(o, "class", s[k].cls);
        put(o, ", \"mode\": \"%s\", ", mode_key(s[k].mode));
        put_kv(o, "site", s[k].site);
        put(o, ", \"queued_behind_writer\": %s}}",
            s[k].hold ? "false" : "true");
    }
    put(o, "]");
}

/* ------------------------------------------------------------ the dump */

/* Writes the dump into o->r.  Returns false if it is incomplete. */
static bool dump_render(dout *o, dsnap *s)
{
    bool complete = !s->incomplete;
    o->by_ptr = s->n ? malloc(s->n * sizeof *o->by_ptr) : NULL;
    if (o->by_ptr) {
        for (size_t i = 0; i < s->n; i++)
            o->by_ptr[i] = &s->t[i];
        qsort(o->by_ptr, s->n, sizeof *o->by_ptr, cmp_task_ptr);
        o->n = s->n;
    } else if (s->n) {
        complete = false;
    }

    pthread_mutex_lock(&sq__check_lock);
    /* Match the contexts with the copy; count the others. */
    size_t others = 0, threads = 0;
    SQ__LIST_FOREACH(it, &sq__check_contexts) {
        sq__cctx *c = sq__cctx_of(it);
        dtask *d = c->task ? find_task(o->by_ptr, o->n, c->task) : NULL;
        if (d && d->id == c->task_id)
            d->ctx = c;
        else if (c->task)
            others += c->holds || c->acquiring;
        else
            threads += c->holds || c->acquiring;
    }

    if (o->json) {
        put(o, "{\"pid\": %ld, \"now_ns\": %lld, \"runtimes\": [",
            (long)getpid(), (long long)o->now);
        for (size_t r = 0; r < s->nrt; r++) {
            druntime *rt = &s->rt[r];
            put(o, "%s{", r ? ", " : "");
            put_ptr(o, "runtime", rt->rt);
            put(o, ", \"workers\": %d, \"tasks\": [", rt->nworkers);
            for (size_t i = 0; i < rt->n; i++) {
                put(o, "%s", i ? ", " : "");
                task_json(o, &s->t[rt->first + i]);
            }
            put(o, "]}");
        }
        put(o, "], \"threads\": [");
        size_t k = 0;
        SQ__LIST_FOREACH(it, &sq__check_contexts) {
            sq__cctx *c = sq__cctx_of(it);
            if (!c->task && (c->holds || c->acquiring)) {
                put(o, "%s", k++ ? ", " : "");
                ctx_json(o, c);
            }
        }
        put(o, "], \"other_tasks\": [");
        k = 0;
        SQ__LIST_FOREACH(it, &sq__check_contexts) {
            sq__cctx *c = sq__cctx_of(it);
            dtask *d = c->task ? find_task(o->by_ptr, o->n, c->task) : NULL;
            if (c->task && !(d && d->id == c->task_id) &&
                (c->holds || c->acquiring)) {
                put(o, "%s", k++ ? ", " : "");
                ctx_json(o, c);
            }
        }
        put(o, "], \"cycles\": [");
    } else {
        put(o, "squirrel task dump: process %ld, %zu runtime%s\n",
            (long)getpid(), s->nrt, s->nrt == 1 ? "" : "s");
        for (size_t r = 0; r < s->nrt; r++) {
            druntime *rt = &s->rt[r];
            put(o, "runtime %p, %d worker%s, %zu task%s:\n", (void *)rt->rt,
                rt->nworkers, rt->nworkers == 1 ? "" : "s", rt->n,
                rt->n == 1 ? "" : "s");
            for (size_t i = 0; i < rt->n; i++)
                task_text(o, &s->t[rt->first + i]);
        }
        if (threads) {
            put(o, "threads that hold or want locks:\n");
            SQ__LIST_FOREACH(it, &sq__check_contexts)
                if (!sq__cctx_of(it)->task &&
                    (sq__cctx_of(it)->holds || sq__cctx_of(it)->acquiring))
                    ctx_text(o, sq__cctx_of(it));
        }
        if (others) {
            put(o, "tasks with locks that started after the list above:\n");
            SQ__LIST_FOREACH(it, &sq__check_contexts) {
                sq__cctx *c = sq__cctx_of(it);
                dtask *d = c->task ? find_task(o->by_ptr, o->n, c->task)
                                   : NULL;
                if (c->task && !(d && d->id == c->task_id) &&
                    (c->holds || c->acquiring))
                    ctx_text(o, c);
            }
        }
    }

    /* The cycles, written into a report of their own first so the text
     * form can say how many there are before listing them. */
    dout co = {.now = o->now, .json = o->json};
    dcycles cy = {.o = &co};
    int rc = sq__deadlock_each(cycle_out, &cy);
    pthread_mutex_unlock(&sq__check_lock);
    if (rc < 0)
        complete = false;

    if (o->json) {
        put(o, "%s", sq__strbuf_str(&co.b));
        put(o, "], \"complete\": %s}\n", complete ? "true" : "false");
    } else {
        if (cy.n == 0)
            put(o, "wait-for cycles (deadlocks): none\n");
        else
            put(o, "wait-for cycles (deadlocks): %d\n%s", cy.n,
                sq__strbuf_str(&co.b));
        if (!complete)
            put(o, "(incomplete: out of memory while taking the dump)\n");
        put(o, "end of the task dump\n");
    }
    if (sq__strbuf_failed(&co.b))
        complete = false;
    sq__strbuf_free(&co.b);
    free(o->by_ptr);
    o->by_ptr = NULL;
    return complete;
}

/* The whole dump as a malloc'ed string, or NULL (out of memory). */
static char *dump_text(bool json)
{
    dsnap s = {.probe = {-1, -1}};
    sq__runtime_foreach(snap_runtime, &s);
    dout o = {.now = sq_now(), .json = json};
    dump_render(&o, &s);
    snap_free(&s);
    return sq__strbuf_take(&o.b); /* NULL if memory ran out */
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int sq_check_dump_string(bool json, char **out)
{
    if (!out)
        return -EINVAL;
    *out = dump_text(json);
    return *out ? 0 : -ENOMEM;
}

int sq_check_dump(int fd, bool json)
{
    if (fd < 0)
        return -EBADF;
    char *text = dump_text(json);
    if (!text)
        return -ENOMEM;
    int rc = write_all(fd, text, strlen(text));
    free(text);
    return rc;
}

/* ------------------------------------------------------ on a signal */

/* The pipe from the handler to the dump thread: made once, kept for the
 * life of the process (a handler may still be running on some thread
 * when the signal is given back, so its pipe must stay valid). */
static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static int sig_pipe[2] = {-1, -1};   /* under sig_lock */
static atomic_int sig_wfd = -1;      /* sig_pipe[1], for the handler */
static atomic_int sig_out = -1;      /* where the dumps go */
static int sig_no;                   /* the signal we hold, or 0 */
static struct sigaction sig_prev;    /* what it did before */
static pthread_t sig_thread;
static bool sig_thread_on;

static void on_signal(int signo)
{
    (void)signo;
    int saved = errno;
    char b = 'd';
    ssize_t w = write(atomic_load_explicit(&sig_wfd, memory_order_relaxed),
                      &b, 1); /* a full pipe already has a dump coming */
    (void)w;
    errno = saved;
}

static void *sig_main(void *arg)
{
    (void)arg;
    int rfd = sig_pipe[0];
    for (;;) {
        char buf[64];
        ssize_t n = read(rfd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL;
        if (memchr(buf, 'd', (size_t)n)) {
            char *text = dump_text(false);
            if (text)
                write_all(atomic_load(&sig_out), text, strlen(text));
            free(text);
        }
        if (memchr(buf, 'q', (size_t)n))
            return NULL;
    }
}

/* Starts the dump thread.  Under sig_lock. */
static int sig_thread_start(void)
{
    if (sig_pipe[0] < 0) {
        if (pipe2(sig_pipe, O_CLOEXEC) != 0)
            return -errno;
        fcntl(sig_pipe[1], F_SETFL, O_NONBLOCK); /* the handler never blocks */
        atomic_store(&sig_wfd, sig_pipe[1]);
    }
    /* Bytes left by a handler that ran as the last thread stopped. */
    struct pollfd p = {.fd = sig_pipe[0], .events = POLLIN};
    char buf[64];
    while (poll(&p, 1, 0) == 1 && read(sig_pipe[0], buf, sizeof buf) > 0)
        ;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&sig_thread, NULL, sig_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc)
        return -rc;
    sig_thread_on = true;
    return 0;
}

/* Stops the dump thread, after a dump in progress.  Under sig_lock. */
static void sig_thread_stop(void)
{
    char q = 'q';
    while (write(sig_pipe[1], &q, 1) != 1) {
        struct pollfd p = {.fd = sig_pipe[1], .events = POLLOUT};
        poll(&p, 1, 10); /* full of requests the thread is draining */
    }
    pthread_join(sig_thread, NULL);
    sig_thread_on = false;
}

int sq_check_dump_on_signal(int signo, int fd)
{
    if (signo < 0 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP)
        return -EINVAL;
    if (signo && fd < 0)
        return -EBADF;
    pthread_mutex_lock(&sig_lock);
    int rc = 0;
    if (signo == 0) {
        if (sig_no) {
            sigaction(sig_no, &sig_prev, NULL);
            sig_no = 0;
        }
        if (sig_thread_on)
            sig_thread_stop();
        pthread_mutex_unlock(&sig_lock);
        return 0;
    }
    atomic_store(&sig_out, fd);
    if (!sig_thread_on && (rc = sig_thread_start()) != 0) {
        pthread_mutex_unlock(&sig_lock);
        return rc;
    }
    if (sig_no != signo) {
        struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
        sigemptyset(&sa.sa_mask);
        struct sigaction prev;
        if (sigaction(signo, &sa, &prev) != 0) {
            rc = -errno;
        } else {
            if (sig_no)
                sigaction(sig_no, &sig_prev, NULL);
            sig_no = signo;
            sig_prev = prev;
        }
    }
    if (rc && !sig_no)
        sig_thread_stop();
    pthread_mutex_unlock(&sig_lock);
    return rc;
}
