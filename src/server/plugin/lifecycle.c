/* The life of plugins (sq_server/plugins.h): loading on the blocking
 * pool, checking descriptors, dependency order, the callbacks with their
 * deadlines, and load/unload/reload/shutdown.
 *
 * Every change runs with h->ops held (one at a time) and with the
 * calling task's cancellation masked: a change half done would leave a
 * plugin in no state at all. */
#include "plugin_int.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const state_names[] = {
    "registered", "initializing", "active", "shutting down", "disabled", "failed",
};

const char *sq_plugin_state_name(int st)
{
    return st >= 0 && st <= SQ_PLUGIN_FAILED ? state_names[st] : st < 0 ? "none" : "unknown";
}

int sq__plug_state(sq_plugin *p)
{
    return atomic_load(&p->st);
}

static void say(char *err, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t n, const char *fmt, ...)
{
    if (!err || !n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

/* The "plugins" health component: degraded while a plugin is failed,
 * the reason naming them (the first few). */
static void plug_health(sq_plugins *h)
{
    if (!h->health)
        return;
    char why[SQ_HEALTH_REASON_MAX] = "";
    size_t len = 0, failed = 0;
    sq_mutex_lock_nocancel(&h->lock);
    for (struct sq__link *l = h->plugins.head; l; l = l->next) {
        sq_plugin *q = sq__list_entry(l, sq_plugin, link);
        if (atomic_load(&q->st) != SQ_PLUGIN_FAILED)
            continue;
        if (len < sizeof why - 1) {
            int n = snprintf(why + len, sizeof why - len, "%s%s", failed ? ", " : "failed: ",
                             q->name);
            len += n > 0 ? (size_t)n : 0;
        }
        failed++;
    }
    sq_mutex_unlock(&h->lock);
    sq_health_set(h->health, failed ? SQ_HEALTH_DEGRADED : SQ_HEALTH_HEALTHY,
                  failed ? why : NULL);
}

void sq__plug_set_state(sq_plugin *p, int to, const char *fmt, ...)
{
    sq_plugins *h = p->h;
    char reason[512] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, sizeof reason, fmt, ap);
        va_end(ap);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sq_mutex_lock_nocancel(&h->lock);
    int from = atomic_load(&p->st);
    atomic_store(&p->st, to);
    if (fmt || to == SQ_PLUGIN_ACTIVE)
        snprintf(p->reason, sizeof p->reason, "%s", reason);
    plug_transition *t = &h->trans[(h->next_trans - 1) % PLUG_TRANSITIONS];
    t->seq = h->next_trans++;
    t->at_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    snprintf(t->plugin, sizeof t->plugin, "%s", p->name);
    t->from = from;
    t->to = to;
    snprintf(t->reason, sizeof t->reason, "%s", reason);
    sq_mutex_unlock(&h->lock);
    sq_srv_log(h->srv, to == SQ_PLUGIN_FAILED ? SQ_MCP_ERROR_LEVEL : SQ_MCP_INFO,
               "plugin", NULL, "plugin %s: %s -> %s%s%s", p->name,
               sq_plugin_state_name(from), sq_plugin_state_name(to),
               reason[0] ? ": " : "", reason);
    if (from == SQ_PLUGIN_FAILED || to == SQ_PLUGIN_FAILED)
        plug_health(h);
    sq__plug_notify(h);
}

/* ------------------------------------------------------------- loading */

typedef struct open_job {
    const char *file;
    void *dl;
    const sq_plugin_desc *desc;
    char err[400];
} open_job;

/* On the blocking pool: dlopen can read files, map them and run
 * constructors, all of which block the thread.  dlerror is per thread,
 * so it is read here. */
static void *open_main(void *arg)
{
    open_job *j = arg;
    j->dl = dlopen(j->file, RTLD_NOW | RTLD_LOCAL);
    if (!j->dl) {
        const char *e = dlerror();
        snprintf(j->err, sizeof j->err, "cannot load: %s", e ? e : "dlopen failed");
        return NULL;
    }
    dlerror();
    j->desc = dlsym(j->dl, SQ_PLUGIN_SYMBOL);
    if (!j->desc) {
        snprintf(j->err, sizeof j->err,
                 "not a plugin: it does not export the symbol %s (SQ_PLUGIN_DEFINE)",
                 SQ_PLUGIN_SYMBOL);
        dlclose(j->dl);
        j->dl = NULL;
    }
    return NULL;
}

static void *close_main(void *dl)
{
    dlclose(dl);
    return NULL;
}

static void unload_code(sq_plugin *p)
{
    if (!p->dl)
        return;
    if (!atomic_load(&p->abandoned))
        sq_blocking_run(close_main, p->dl, NULL);
    /* An abandoned plugin's code may still run: it stays mapped. */
    p->dl = NULL;
    p->desc = NULL;
}

static bool valid_plugin_name(const char *n)
{
    size_t len = n ? strnlen(n, 65) : 0;
    if (len == 0 || len > 64)
        return false;
    for (; *n; n++)
        if (!((*n >= 'a' && *n <= 'z') || (*n >= '0' && *n <= '9') || *n == '_' ||
              *n == '-'))
            return false;
    return true;
}

/* Checks the descriptor and copies what the host keeps of it: 0, or
 * -EINVAL with the reason in err. */
static int check_desc(sq_plugin *p, char *err, size_t n)
{
    const sq_plugin_desc *d = p->desc;
    unsigned major = d->abi_version >> 16, minor = d->abi_version & 0xffff;
    if (major != SQ_PLUGIN_ABI_MAJOR || minor > SQ_PLUGIN_ABI_MINOR) {
        say(err, n, "ABI version mismatch: the plugin was built for plugin ABI %u.%u, "
            "this server has %d.%d (rebuild it against this server's squirrel/plugin.h)",
            major, minor, SQ_PLUGIN_ABI_MAJOR, SQ_PLUGIN_ABI_MINOR);
        return -EINVAL;
    }
    size_t least = offsetof(sq_plugin_desc, destroy) + sizeof d->destroy;
    if (d->size < least) {
        say(err, n, "bad descriptor: its size %u is less than %zu", d->size, least);
        return -EINVAL;
    }
    memset(&p->d, 0, sizeof p->d);
    memcpy(&p->d, d, d->size < sizeof p->d ? d->size : sizeof p->d);
    if (!valid_plugin_name(p->d.name)) {
        say(err, n, "bad descriptor: the name must be 1-64 of [a-z0-9_-]");
        return -EINVAL;
    }
    if (!p->d.version) {
        say(err, n, "bad descriptor: plugin %s has no version", p->d.name);
        return -EINVAL;
    }
    size_t k = 0;
    while (p->d.depends && p->d.depends[k]) {
        if (!valid_plugin_name(p->d.depends[k]) || k == 32) {
            say(err, n, "bad descriptor: plugin %s: dependency %zu is not a plugin "
                "name (or more than 32)", p->d.name, k + 1);
            return -EINVAL;
        }
        k++;
    }
    char **deps = calloc(k + 1, sizeof *deps);
    char *version = strdup(p->d.version);
    if (!deps || !version) {
        free(deps);
        free(version);
        say(err, n, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < k; i++)
        deps[i] = strdup(p->d.depends[i]);
    /* squirrel://plugins reads them under the lock. */
    sq_mutex_lock_nocancel(&p->h->lock);
    char **old_deps = p->depends, *old_version = p->version;
    p->depends = deps;
    p->version = version;
    sq_mutex_unlock(&p->h->lock);
    for (char **x = old_deps; x && *x; x++)
        free(*x);
    free(old_deps);
    free(old_version);
    return 0;
}

/* Opens p's file and checks its descriptor: 0, or a negative errno with
 * the reason in err. */
static int open_plugin(sq_plugin *p, char *err, size_t n)
{
    open_job j = {.file = p->file};
    int rc = sq_blocking_run(open_main, &j, NULL);
    if (rc) {
        say(err, n, "cannot load: %s", sq_strerror(rc));
        return rc;
    }
    if (!j.dl) {
        say(err, n, "%s", j.err);
        return -ENOEXEC;
    }
    p->dl = j.dl;
    p->desc = j.desc;
    if ((rc = check_desc(p, err, n)) != 0) {
        unload_code(p);
        return rc;
    }
    return 0;
}

static sq_plugin *plugin_new(sq_plugins *h, const char *file)
{
    sq_plugin *p = calloc(1, sizeof *p);
    if (!p || !(p->file = strdup(file))) {
        free(p);
        return NULL;
    }
    p->h = h;
    /* Until the descriptor names it: the file's name. */
    const char *base = strrchr(file, '/');
    snprintf(p->name, sizeof p->name, "%s", base ? base + 1 : file);
    atomic_init(&p->st, -1); /* no state until the file is loaded */
    atomic_init(&p->refs, 1);
    return p;
}

static void plugin_free(sq_plugin *p)
{
    if (atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    for (char **x = p->depends; x && *x; x++)
        free(*x);
    free(p->depends);
    free(p->version);
    free(p->file);
    free(p);
}

/* The plugin named `name` that is not disabled or failed, or NULL
 * (under h->lock). */
static sq_plugin *live_named(sq_plugins *h, const char *name, sq_plugin *except)
{
    SQ__LIST_FOREACH(l, &h->plugins) {
        sq_plugin *q = sq__list_entry(l, sq_plugin, link);
        int st = atomic_load(&q->st);
        if (q != except && st != SQ_PLUGIN_DISABLED && st != SQ_PLUGIN_FAILED &&
            strcmp(q->name, name) == 0)
            return q;
    }
    return NULL;
}

/* Adds p to the list: its record stays for squirrel://plugins.  A
 * disabled or failed record of the same name is replaced. */
static void list_add(sq_plugins *h, sq_plugin *p)
{
    sq_plugin *old = NULL;
    sq_mutex_lock_nocancel(&h->lock);
    SQ__LIST_FOREACH(l, &h->plugins) {
        sq_plugin *q = sq__list_entry(l, sq_plugin, link);
        int st = atomic_load(&q->st);
        if ((st == SQ_PLUGIN_DISABLED || (st == SQ_PLUGIN_FAILED && !q->dl)) &&
            strcmp(q->file, p->file) == 0 && !atomic_load(&q->abandoned)) {
            old = q;
            break;
        }
    }
    if (old)
        sq__list_remove(&h->plugins, &old->link);
    sq__list_push_back(&h->plugins, &p->link);
    sq_mutex_unlock(&h->lock);
    if (old)
        plugin_free(old);
}

/* ----------------------------------------------------------- callbacks */

enum { CB_INIT, CB_START, CB_STOP, CB_DESTROY };
static const char *const cb_names[] = {"init", "start", "stop", "destroy"};

typedef struct cb_job {
    sq_plugin *p;
    int which;
    int rc;
    atomic_int refs;   /* the runner's and the task's: an abandoned task
                        * may end after the runner gave up on it */
} cb_job;

static void cb_unref(cb_job *j)
{
    if (atomic_fetch_sub(&j->refs, 1) == 1)
        free(j);
}

static void *cb_main(void *arg)
{
    cb_job *j = arg;
    sq_plugin *p = j->p;
    switch (j->which) {
    case CB_INIT:
        j->rc = p->d.init ? p->d.init(p, &sq__plugin_host, &p->state) : 0;
        break;
    case CB_START:
        j->rc = p->d.start ? p->d.start(p, p->state) : 0;
        break;
    case CB_STOP:
        j->rc = p->d.stop ? p->d.stop(p, p->state) : 0;
        break;
    default:
        if (p->d.destroy)
            p->d.destroy(p, p->state);
        j->rc = 0;
    }
    cb_unref(j);
    plugin_free(p); /* the task's reference */
    return NULL;
}

/* How long an aborted callback gets to notice before it is abandoned. */
static int64_t abandon_grace(const sq_plugins *h)
{
    int64_t g = h->timeout / 4;
    return g < 50 * SQ_MSEC ? 50 * SQ_MSEC : g > 2 * SQ_SEC ? 2 * SQ_SEC : g;
}

/* Runs callback `which` of p in a task of its own, until the deadline:
 * its return value, or -ETIMEDOUT (with why in err: it was aborted, and
 * perhaps abandoned). */
static int run_cb(sq_plugin *p, int which, char *err, size_t n)
{
    cb_job *j = calloc(1, sizeof *j);
    if (!j) {
        say(err, n, "out of memory");
        return -ENOMEM;
    }
    j->p = p;
    j->which = which;
    atomic_init(&j->refs, 2);
    atomic_fetch_add(&p->refs, 1); /* the task's */
    char tname[32];
    snprintf(tname, sizeof tname, "plugin:%.16s:%s", p->name, cb_names[which]);
    sq_spawn_opts o = {.name = tname};
    sq_task t;
    int rc = sq_spawn(&t, cb_main, j, &o);
    if (rc) {
        free(j);
        atomic_fetch_sub(&p->refs, 1);
        say(err, n, "%s could not run: %s", cb_names[which], sq_strerror(rc));
        return rc;
    }
    int64_t deadline = sq_now() + p->h->timeout;
    rc = sq_join_until(t, NULL, deadline);
    if (rc == -ETIMEDOUT) {
        sq_abort(t);
        rc = sq_join_until(t, NULL, sq_now() + abandon_grace(p->h));
        if (rc == -ETIMEDOUT) {
            sq_detach(t);
            atomic_store(&p->abandoned, true);
            say(err, n, "%s did not return within its deadline (%.0f ms) nor when "
                "aborted: abandoned (its task runs on; the plugin's code stays loaded)",
                cb_names[which], (double)p->h->timeout / 1e6);
        } else {
            say(err, n, "%s did not return within its deadline (%.0f ms): aborted",
                cb_names[which], (double)p->h->timeout / 1e6);
        }
        cb_unref(j);
        return -ETIMEDOUT;
    }
    rc = j->rc;
    cb_unref(j);
    if (rc)
        say(err, n, "%s failed: %s", cb_names[which],
            rc < 0 ? sq_strerror(rc) : "a non-zero return");
    return rc;
}

/* ----------------------------------------------------------- lifecycle */

/* Takes down what init and start made (p is failing or stopping):
 * stop (if it started), its registrations, destroy, its code. */
static void teardown(sq_plugin *p, bool started, int64_t deadline, char *err,
                     size_t n)
{
    sq__plug_remove_all(p, deadline);
    if (started && !atomic_load(&p->abandoned) &&
        run_cb(p, CB_STOP, err, n) != 0)
        sq_srv_log(p->h->srv, SQ_MCP_WARNING, "plugin", NULL, "plugin %s: %s",
                   p->name, err);
    if (p->inited && !atomic_load(&p->abandoned)) {
        char e2[300];
        if (run_cb(p, CB_DESTROY, e2, sizeof e2) != 0)
            sq_srv_log(p->h->srv, SQ_MCP_WARNING, "plugin", NULL, "plugin %s: %s",
                       p->name, e2);
    }
    p->inited = false;
    p->state = NULL;
    unload_code(p);
}

/* init, then start: active, or failed (everything it made taken down). */
static int activate(sq_plugin *p, char *err, size_t n)
{
    sq__plug_set_state(p, SQ_PLUGIN_INITIALIZING, NULL);
    int rc = run_cb(p, CB_INIT, err, n);
    if (rc == 0) {
        p->inited = true;
        rc = run_cb(p, CB_START, err, n);
        if (rc) {
            char e2[300];
            teardown(p, false, sq_now() + p->h->timeout, e2, sizeof e2);
        }
    } else {
        /* A failed init cleans up after itself; its registrations go. */
        char e2[300];
        teardown(p, false, sq_now() + p->h->timeout, e2, sizeof e2);
    }
    if (rc) {
        sq__plug_set_state(p, SQ_PLUGIN_FAILED, "%s", err);
        return rc < 0 ? rc : -EIO;
    }
    sq_mutex_lock_nocancel(&p->h->lock);
    p->started_seq = ++p->h->next_start;
    sq_mutex_unlock(&p->h->lock);
    sq__plug_set_state(p, SQ_PLUGIN_ACTIVE, NULL);
    sq__plug_resume_all(p);
    return 0;
}

/* Stops an active plugin: calls in flight into it finish (until
 * `deadline`, then they are aborted), then stop, destroy, unload; `to` is
 * its state afterwards. */
static void deactivate(sq_plugin *p, int to, int64_t deadline, const char *why)
{
    sq__plug_set_state(p, SQ_PLUGIN_SHUTTING_DOWN, "%s", why);
    char err[400] = "";
    teardown(p, true, deadline, err, sizeof err);
    if (atomic_load(&p->abandoned))
        sq__plug_set_state(p, SQ_PLUGIN_FAILED, "%s%scalls or callbacks did not end "
                           "when stopped: abandoned", err, err[0] ? "; " : "");
    else
        sq__plug_set_state(p, to, "%s", why);
}

/* The dependency of p that is not active, or NULL (under h->lock). */
static const char *missing_dep(sq_plugins *h, sq_plugin *p, sq_plugin **which)
{
    for (char **d = p->depends; d && *d; d++) {
        sq_plugin *q = NULL;
        SQ__LIST_FOREACH(l, &h->plugins) {
            sq_plugin *x = sq__list_entry(l, sq_plugin, link);
            if (x != p && strcmp(x->name, *d) == 0 &&
                (!q || atomic_load(&x->st) == SQ_PLUGIN_ACTIVE))
                q = x;
        }
        if (!q || atomic_load(&q->st) != SQ_PLUGIN_ACTIVE) {
            *which = q;
            return *d;
        }
    }
    *which = NULL;
    return NULL;
}

/* ------------------------------------------------------ start (ordered) */

/* Depth-first visit for the topological order: 0 done, 1 in progress. */
typedef struct topo {
    sq_plugin **v;       /* the plugins being started */
    size_t n;
    int *mark;           /* 0 unvisited, 1 on the path, 2 done */
    sq_plugin **order;
    size_t norder;
    size_t *path;        /* the current path (for naming a cycle) */
    size_t depth;
} topo;

static long index_of(topo *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i]->name, name) == 0)
            return (long)i;
    return -1;
}

static void visit(topo *t, size_t i)
{
    if (t->mark[i] == 2)
        return;
    if (t->mark[i] == 1) {
        /* A cycle: the path from i's place on it back to i. */
        char text[400] = "";
        size_t from = 0;
        while (from < t->depth && t->path[from] != i)
            from++;
        for (size_t k = from; k < t->depth; k++) {
            strncat(text, t->v[t->path[k]]->name, sizeof text - strlen(text) - 1);
            strncat(text, " -> ", sizeof text - strlen(text) - 1);
        }
        strncat(text, t->v[i]->name, sizeof text - strlen(text) - 1);
        for (size_t k = from; k < t->depth; k++) {
            sq_plugin *q = t->v[t->path[k]];
            if (atomic_load(&q->st) == SQ_PLUGIN_REGISTERED)
                sq__plug_set_state(q, SQ_PLUGIN_FAILED, "dependency cycle: %s", text);
        }
        return;
    }
    t->mark[i] = 1;
    t->path[t->depth++] = i;
    for (char **d = t->v[i]->depends; d && *d; d++) {
        long k = index_of(t, *d);
        if (k >= 0)
            visit(t, (size_t)k);
    }
    t->depth--;
    t->mark[i] = 2;
    t->order[t->norder++] = t->v[i];
}

int sq_plugins_start(sq_plugins *h, char *const *files, size_t n)
{
    if (n == 0)
        return 0;
    sq_cancel_mask();
    sq_sem_acquire(&h->ops, 1);
    int failed = 0;
    sq_plugin **v = calloc(n, sizeof *v);
    topo t = {.v = v, .mark = calloc(n, sizeof(int)),
              .order = calloc(n, sizeof *v), .path = calloc(n, sizeof(size_t))};
    if (!v || !t.mark || !t.order || !t.path) {
        failed = (int)n;
        goto out;
    }
    /* Load them all first: registered, or failed. */
    for (size_t i = 0; i < n; i++) {
        sq_plugin *p = plugin_new(h, files[i]);
        if (!p) {
            failed++;
            continue;
        }
        char err[400];
        list_add(h, p);
        int rc = open_plugin(p, err, sizeof err);
        if (rc == 0) {
            sq_mutex_lock_nocancel(&h->lock);
            bool dup = live_named(h, p->d.name, p) != NULL;
            if (!dup)
                snprintf(p->name, sizeof p->name, "%s", p->d.name);
            sq_mutex_unlock(&h->lock);
            if (dup) {
                snprintf(err, sizeof err, "a plugin named %s is loaded already", p->d.name);
                unload_code(p);
                rc = -EEXIST;
            }
        }
        if (rc) {
            sq__plug_set_state(p, SQ_PLUGIN_FAILED, "%s: %s", p->file, err);
            continue;
        }
        sq__plug_set_state(p, SQ_PLUGIN_REGISTERED, "loaded from %s", p->file);
        v[t.n++] = p;
    }
    /* Dependencies: missing ones, then cycles, then the order. */
    for (size_t i = 0; i < t.n; i++)
        for (char **d = v[i]->depends; d && *d; d++) {
            bool here = index_of(&t, *d) >= 0;
            sq_mutex_lock_nocancel(&h->lock);
            bool live = here || live_named(h, *d, NULL);
            sq_mutex_unlock(&h->lock);
            if (!live && atomic_load(&v[i]->st) == SQ_PLUGIN_REGISTERED)
                sq__plug_set_state(v[i], SQ_PLUGIN_FAILED,
                                   "missing dependency: %s depends on %s, which is "
                                   "not loaded", v[i]->name, *d);
        }
    for (size_t i = 0; i < t.n; i++)
        visit(&t, i);
    /* Start in order; a plugin whose dependency is not active fails. */
    for (size_t i = 0; i < t.norder; i++) {
        sq_plugin *p = t.order[i];
        if (atomic_load(&p->st) != SQ_PLUGIN_REGISTERED) {
            unload_code(p);
            continue;
        }
        sq_plugin *dep;
        sq_mutex_lock_nocancel(&h->lock);
        const char *miss = missing_dep(h, p, &dep);
        char depwhy[520] = "";
        if (miss && dep)
            snprintf(depwhy, sizeof depwhy, "%s", dep->reason);
        sq_mutex_unlock(&h->lock);
        if (miss) {
            sq__plug_set_state(p, SQ_PLUGIN_FAILED, "its dependency %s %s%s%s", miss,
                               dep ? "failed" : "is not loaded", depwhy[0] ? ": " : "",
                               depwhy);
            unload_code(p);
            continue;
        }
        char err[400];
        activate(p, err, sizeof err);
    }
    for (size_t i = 0; i < t.n; i++)
        if (atomic_load(&v[i]->st) != SQ_PLUGIN_ACTIVE)
            failed++;
out:
    free(v);
    free(t.mark);
    free(t.order);
    free(t.path);
    sq_sem_release(&h->ops, 1);
    sq_cancel_unmask();
    return failed;
}

/* ------------------------------------------------------------ run time */

static sq_plugin *find_live(sq_plugins *h, const char *name)
{
    sq_mutex_lock_nocancel(&h->lock);
    sq_plugin *p = name ? live_named(h, name, NULL) : NULL;
    sq_mutex_unlock(&h->lock);
    return p;
}

/* Takes the right to change plugins; -ESHUTDOWN once shut down. */
static int ops_enter(sq_plugins *h, char *err, size_t n)
{
    sq_cancel_mask();
    sq_sem_acquire(&h->ops, 1);
    if (h->shut) {
        sq_sem_release(&h->ops, 1);
        sq_cancel_unmask();
        say(err, n, "the server is stopping");
        return -ESHUTDOWN;
    }
    return 0;
}

static void ops_leave(sq_plugins *h)
{
    sq_sem_release(&h->ops, 1);
    sq_cancel_unmask();
}

int sq_plugins_load(sq_plugins *h, const char *file, char *err, size_t n)
{
    if (!file || !*file) {
        say(err, n, "no file given");
        return -EINVAL;
    }
    int rc = ops_enter(h, err, n);
    if (rc)
        return rc;
    sq_plugin *p = plugin_new(h, file);
    if (!p) {
        ops_leave(h);
        say(err, n, "out of memory");
        return -ENOMEM;
    }
    list_add(h, p);
    char why[400];
    rc = open_plugin(p, why, sizeof why);
    if (rc == 0) {
        sq_mutex_lock_nocancel(&h->lock);
        bool dup = live_named(h, p->d.name, p) != NULL;
        if (!dup)
            snprintf(p->name, sizeof p->name, "%s", p->d.name);
        sq_mutex_unlock(&h->lock);
        if (dup) {
            snprintf(why, sizeof why, "a plugin named %s is loaded already", p->d.name);
            unload_code(p);
            rc = -EEXIST;
        }
    }
    if (rc == 0) {
        sq_plugin *dep;
        sq_mutex_lock_nocancel(&h->lock);
        const char *miss = missing_dep(h, p, &dep);
        if (miss)
            snprintf(why, sizeof why, "missing dependency: %s depends on %s, which is "
                     "not active", p->name, miss);
        sq_mutex_unlock(&h->lock);
        if (miss) {
            unload_code(p);
            rc = -ENOENT;
        }
    }
    if (rc) {
        sq__plug_set_state(p, SQ_PLUGIN_FAILED, "%s: %s", file, why);
        say(err, n, "%s: %s", file, why);
        ops_leave(h);
        return rc;
    }
    sq__plug_set_state(p, SQ_PLUGIN_REGISTERED, "loaded from %s", file);
    rc = activate(p, why, sizeof why);
    if (rc)
        say(err, n, "plugin %s: %s", p->name, why);
    ops_leave(h);
    return rc;
}

/* The active plugins that depend on p, as text (empty if none; under
 * h->lock). */
static void dependents(sq_plugins *h, sq_plugin *p, char *out, size_t n)
{
    out[0] = '\0';
    SQ__LIST_FOREACH(l, &h->plugins) {
        sq_plugin *q = sq__list_entry(l, sq_plugin, link);
        if (atomic_load(&q->st) != SQ_PLUGIN_ACTIVE)
            continue;
        for (char **d = q->depends; d && *d; d++)
            if (strcmp(*d, p->name) == 0) {
                size_t len = strlen(out);
                snprintf(out + len, n - len, "%s%s", len ? ", " : "", q->name);
            }
    }
}

int sq_plugins_unload(sq_plugins *h, const char *name, char *err, size_t n)
{
    int rc = ops_enter(h, err, n);
    if (rc)
        return rc;
    sq_plugin *p = find_live(h, name);
    if (!p && name) {
        sq_mutex_lock_nocancel(&h->lock);
        SQ__LIST_FOREACH(l, &h->plugins) {
            sq_plugin *q = sq__list_entry(l, sq_plugin, link);
            if (atomic_load(&q->st) == SQ_PLUGIN_FAILED && strcmp(q->name, name) == 0)
                p = q;
        }
        sq_mutex_unlock(&h->lock);
    }
    /* A failed plugin whose code is closed already (nothing of it runs)
     * is unloaded by marking it disabled: so /health stops counting it. */
    if (p && atomic_load(&p->st) == SQ_PLUGIN_FAILED && !p->dl &&
        !atomic_load(&p->abandoned)) {
        sq__plug_set_state(p, SQ_PLUGIN_DISABLED, "unloaded (it had failed)");
        ops_leave(h);
        return 0;
    }
    if (!p || atomic_load(&p->st) != SQ_PLUGIN_ACTIVE) {
        say(err, n, "no active plugin named %s", name ? name : "(none)");
        ops_leave(h);
        return -ENOENT;
    }
    char deps[300];
    sq_mutex_lock_nocancel(&h->lock);
    dependents(h, p, deps, sizeof deps);
    sq_mutex_unlock(&h->lock);
    if (deps[0]) {
        say(err, n, "plugin %s is needed by %s: unload those first", p->name, deps);
        ops_leave(h);
        return -EBUSY;
    }
    deactivate(p, SQ_PLUGIN_DISABLED, sq_now() + h->timeout, "unloaded");
    ops_leave(h);
    return 0;
}

int sq_plugins_reload(sq_plugins *h, const char *name, char *err, size_t n)
{
    int rc = ops_enter(h, err, n);
    if (rc)
        return rc;
    sq_plugin *p = find_live(h, name);
    if (!p || atomic_load(&p->st) != SQ_PLUGIN_ACTIVE) {
        say(err, n, "no active plugin named %s", name ? name : "(none)");
        ops_leave(h);
        return -ENOENT;
    }
    /* The old code: its commands paused (calls in flight finish, new ones
     * wait), then stopped and unloaded. */
    atomic_store(&p->reloading, true);
    sq__plug_set_state(p, SQ_PLUGIN_SHUTTING_DOWN, "reloading");
    char why[400] = "";
    sq__plug_park(p, sq_now() + h->timeout);
    if (!atomic_load(&p->abandoned) && run_cb(p, CB_STOP, why, sizeof why) != 0)
        sq_srv_log(h->srv, SQ_MCP_WARNING, "plugin", NULL, "plugin %s: %s", p->name, why);
    if (p->inited && !atomic_load(&p->abandoned)) {
        char e2[300];
        run_cb(p, CB_DESTROY, e2, sizeof e2);
    }
    p->inited = false;
    p->state = NULL;
    bool abandoned = atomic_load(&p->abandoned);
    unload_code(p);
    /* The new code, from the same file. */
    if (abandoned) {
        rc = -ETIMEDOUT;
        snprintf(why, sizeof why, "the old code did not stop: abandoned");
    } else {
        rc = open_plugin(p, why, sizeof why);
        if (rc == 0 && strcmp(p->d.name, p->name) != 0) {
            snprintf(why, sizeof why, "the file now holds plugin %s, not %s", p->d.name,
                     p->name);
            unload_code(p);
            rc = -EINVAL;
        }
    }
    if (rc == 0) {
        sq__plug_set_state(p, SQ_PLUGIN_REGISTERED, "reloaded from %s", p->file);
        rc = activate(p, why, sizeof why); /* failed: everything removed */
    } else {
        sq__plug_remove_all(p, sq_now());
        sq__plug_set_state(p, SQ_PLUGIN_FAILED, "reload: %s", why);
    }
    if (rc == 0)
        sq__plug_unpark(p);
    atomic_store(&p->reloading, false);
    if (rc)
        say(err, n, "plugin %s: reload failed: %s", name, why);
    ops_leave(h);
    return rc;
}

/* ------------------------------------------------------------ shutdown */

void sq_plugins_shutdown(sq_plugins *h)
{
    if (!h)
        return;
    sq_cancel_mask();
    sq_sem_acquire(&h->ops, 1);
    if (!h->shut) {
        h->shut = true;
        /* Newest first: a plugin stops before those it depends on. */
        for (;;) {
            sq_plugin *last = NULL;
            sq_mutex_lock_nocancel(&h->lock);
            SQ__LIST_FOREACH(l, &h->plugins) {
                sq_plugin *q = sq__list_entry(l, sq_plugin, link);
                if (atomic_load(&q->st) == SQ_PLUGIN_ACTIVE &&
                    (!last || q->started_seq > last->started_seq))
                    last = q;
            }
            sq_mutex_unlock(&h->lock);
            if (!last)
                break;
            /* The server's grace period is over: calls still in the
             * plugin are aborted now. */
            deactivate(last, SQ_PLUGIN_DISABLED, sq_now(), "the server is stopping");
        }
    }
    sq_sem_release(&h->ops, 1);
    sq_cancel_unmask();
}

int sq_plugins_create(sq_plugins **out, sq_srv *s)
{
    sq_plugins *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    h->srv = s;
    const sq_srv_config *c = sq_srv_config_of(s);
    h->timeout = c->plugin_timeout > 0 ? c->plugin_timeout : 30 * SQ_SEC;
    h->next_trans = 1;
    sq_mutex_init_named(&h->lock, "plugin.table");
    sq_sem_init(&h->ops, 1);
    int rc = sq__plug_admin_register(h);
    if (rc == 0)
        rc = sq_health_register(s, "plugins", &h->health);
    if (rc) {
        sq_plugins_destroy(h);
        return rc;
    }
    *out = h;
    return 0;
}

void sq_plugins_destroy(sq_plugins *h)
{
    if (!h)
        return;
    for (;;) {
        struct sq__link *l = h->plugins.head;
        if (!l)
            break;
        sq__list_remove(&h->plugins, l);
        /* An abandoned callback's task may still use its record: then
         * it frees it as it ends. */
        plugin_free(sq__list_entry(l, sq_plugin, link));
    }
    sq_health_unregister(h->health);
    sq_sem_destroy(&h->ops);
    sq_mutex_destroy(&h->lock);
    free(h);
}
