/* The check layer's core: configuration (API and SQUIRREL_CHECK), the
 * contexts and their holds, the hooks the lower layers call, and the
 * reports.  The lock-order graph is in lockdep.c, the wait-for graph and
 * its watchdog in deadlock.c. */
#include "internal.h"

#include <ctype.h>
#include <signal.h>
#include <errno.h>
#include <execinfo.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

pthread_mutex_t sq__check_lock = PTHREAD_MUTEX_INITIALIZER;
sq_check_config sq__check_cfg;
sq__cctx *sq__check_contexts;

static sq_check_reporter reporter;
static void *reporter_arg;
static _Atomic uint64_t counts[5];

/* Holds of locks whose task has finished (locks are not owner-bound). */
static sq__cctx orphans = {.name = "finished tasks"};

/* ------------------------------------------------------------ contexts */

static SQ__TLS sq__cctx *tls_ctx;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void ctx_link(sq__cctx *c)
{
    c->prev = NULL;
    c->next = sq__check_contexts;
    if (c->next)
        c->next->prev = c;
    sq__check_contexts = c;
}

static void ctx_unlink(sq__cctx *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (sq__check_contexts == c)
        sq__check_contexts = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

/* Gives c's holds to the orphans and frees c.  Under the lock. */
static void ctx_retire(sq__cctx *c)
{
    while (c->holds) {
        sq__hold *h = c->holds;
        c->holds = h->cnext;
        h->owner = &orphans;
        h->cnext = orphans.holds;
        orphans.holds = h;
        orphans.nholds++;
    }
    ctx_unlink(c);
    free(c);
}

static void thread_ctx_free(void *p)
{
    pthread_mutex_lock(&sq__check_lock);
    ctx_retire(p);
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
    ctx_link(c);
    return c;
}

/* The caller's context if it has one (it has none until it first takes
 * a lock or names itself): waits and releases need not create one. */
static sq__cctx *current_if_any(void)
{
    sq__task *t = sq__task_current();
    return t ? *sq__task_check_slot(t) : tls_ctx;
}

/* Describes the calling task or thread for a report, context or not. */
static void add_self(sq__report *r, const sq__cctx *c);

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

static void hold_add(sq__cctx *c, sq__hold *h)
{
    h->owner = c;
    h->cnext = c->holds;
    c->holds = h;
    c->nholds++;
    size_t b = bucket_of(h->lock);
    h->hnext = buckets[b];
    buckets[b] = h;
}

static void hold_remove(sq__hold *h)
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

/* The hold of `lock` in `mode` to drop when it is released: the caller's
 * own if it has one (the usual case), else any (a hand-off). */
static sq__hold *hold_find(sq__cctx *me, const void *lock, int mode)
{
    sq__hold *any = NULL;
    for (sq__hold *h = buckets[bucket_of(lock)]; h; h = h->hnext) {
        if (h->lock != lock || h->mode != mode)
            continue;
        if (h->owner == me)
            return h;
        if (!any)
            any = h;
    }
    return any;
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

/* ------------------------------------------------------------- reports */

static int finding_index(unsigned f)
{
    for (int i = 0; i < 5; i++)
        if (f == 1u << i)
            return i;
    return 0;
}

static const char *finding_name(unsigned f)
{
    switch (f) {
    case SQ_CHECK_LOCK_ORDER: return "lock order inversion";
    case SQ_CHECK_HELD_ACROSS_WAIT: return "lock held across a wait";
    case SQ_CHECK_LONG_HOLD: return "lock held too long";
    case SQ_CHECK_LONG_WAIT: return "wait too long";
    case SQ_CHECK_DEADLOCK: return "deadlock";
    }
    return "finding";
}

void sq__report_init(sq__report *r, unsigned finding)
{
    r->finding = finding;
    r->buf = NULL;
    r->len = r->cap = 0;
    sq__report_add(r, "squirrel check: %s\n", finding_name(finding));
}

void sq__report_add(sq__report *r, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = r->cap ? vsnprintf(r->buf + r->len, r->cap - r->len, fmt, ap)
                       : vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (r->cap && (size_t)n < r->cap - r->len) {
            r->len += (size_t)n;
            return;
        }
        size_t cap = (r->cap ? r->cap * 2 : 512) + (size_t)n;
        char *b = realloc(r->buf, cap);
        if (!b)
            return; /* the report is cut short rather than lost */
        r->buf = b;
        r->cap = cap;
    }
}

void sq__report_backtrace(sq__report *r, int skip)
{
    void *frames[24];
    int n = backtrace(frames, 24);
    char **names = backtrace_symbols(frames, n);
    for (int i = skip + 1; i < n; i++) {
        if (names)
            sq__report_add(r, "      %s\n", names[i]);
        else
            sq__report_add(r, "      %p\n", frames[i]);
    }
    free(names);
}

void sq__report_age(sq__report *r, int64_t ns)
{
    if (ns < 10 * SQ_USEC)
        sq__report_add(r, "%lld ns", (long long)ns);
    else if (ns < 10 * SQ_MSEC)
        sq__report_add(r, "%lld us", (long long)(ns / SQ_USEC));
    else
        sq__report_add(r, "%lld ms", (long long)(ns / SQ_MSEC));
}

void sq__report_hold(sq__report *r, const char *what, const sq__hold *h,
                     int64_t now)
{
    sq__report_add(r, "  %s %s %s (%p) taken at %s, ", what,
                   h->mode == SQ__LOCK_SHARED ? "read lock" : "lock", h->cls,
                   h->lock, h->site);
    sq__report_age(r, now - h->since);
    sq__report_add(r, " ago\n");
}

void sq__report_emit(sq__report *r)
{
    atomic_fetch_add(&counts[finding_index(r->finding)], 1);
    const char *text = r->buf ? r->buf : "squirrel check: (no memory)\n";
    pthread_mutex_lock(&sq__check_lock);
    sq_check_reporter fn = reporter;
    void *arg = reporter_arg;
    bool abort_now = (sq__check_cfg.abort_on & r->finding) != 0;
    pthread_mutex_unlock(&sq__check_lock);
    if (fn) {
        fn(r->finding, text, arg);
    } else {
        /* One write, so reports from several threads do not interleave. */
        size_t len = strlen(text);
        while (len) {
            ssize_t w = write(STDERR_FILENO, text, len);
            if (w <= 0)
                break;
            text += w;
            len -= (size_t)w;
        }
    }
    free(r->buf);
    r->buf = NULL;
    if (abort_now)
        abort();
}

void sq__report_ctx(sq__report *r, const sq__cctx *c)
{
    sq__report_add(r, "%s", c->name);
    if (c->spawn_site)
        sq__report_add(r, " (spawned at %s)", c->spawn_site);
}

static void add_self(sq__report *r, const sq__cctx *c)
{
    if (c) {
        sq__report_ctx(r, c);
        return;
    }
    sq__task *t = sq__task_current();
    if (t) {
        sq__report_add(r, "task '%s' #%llu", sq__task_name_of(t),
                       (unsigned long long)sq__task_id_of(t));
        if (sq__task_site_of(t))
            sq__report_add(r, " (spawned at %s)", sq__task_site_of(t));
    } else {
        sq__report_add(r, "thread %ld", (long)gettid());
    }
}

static const struct {
    const char *key, *text;
} kinds[SQ__WAIT_NKINDS] = {
    [SQ__WAIT_OTHER] = {"other", "something"},
    [SQ__WAIT_MUTEX] = {"mutex", "a mutex"},
    [SQ__WAIT_RWLOCK] = {"rwlock", "a reader-writer lock"},
    [SQ__WAIT_SEM] = {"semaphore", "a semaphore"},
    [SQ__WAIT_NOTIFY] = {"notify", "a notify"},
    [SQ__WAIT_CHANNEL] = {"channel", "a channel"},
    [SQ__WAIT_BARRIER] = {"barrier", "a barrier"},
    [SQ__WAIT_ONCE] = {"once", "a once initialisation"},
    [SQ__WAIT_SLEEP] = {"sleep", "a sleep to end"},
    [SQ__WAIT_IO] = {"io", "I/O"},
    [SQ__WAIT_JOIN] = {"join", "a task to finish"},
    [SQ__WAIT_GROUP] = {"group", "a task group member"},
    [SQ__WAIT_BLOCKING] = {"blocking", "a blocking-pool job"},
};

const char *sq__wait_kind_key(int kind)
{
    return kind >= 0 && kind < SQ__WAIT_NKINDS && kinds[kind].key
               ? kinds[kind].key
               : "other";
}

const char *sq__wait_kind_text(int kind)
{
    return kind >= 0 && kind < SQ__WAIT_NKINDS && kinds[kind].text
               ? kinds[kind].text
               : "something";
}

/* --------------------------------------------------------------- hooks */

static bool on(unsigned finding)
{
    return (sq__check_cfg.findings & finding) != 0;
}

static void h_wait_begin(sq__waiter *w)
{
    int64_t now = sq_now();
    w->since = now;
    if (SQ__WAIT_IS_LOCK(w->kind))
        return; /* nesting: the order graph's business */
    pthread_mutex_lock(&sq__check_lock);
    if (!on(SQ_CHECK_HELD_ACROSS_WAIT)) {
        pthread_mutex_unlock(&sq__check_lock);
        return;
    }
    sq__cctx *c = current_if_any();
    bool found = false;
    sq__report r;
    for (sq__hold *h = c ? c->holds : NULL; h; h = h->cnext) {
        if (h->flags & SQ__LOCK_F_MAY_WAIT)
            continue;
        if (!found) {
            found = true;
            sq__report_init(&r, SQ_CHECK_HELD_ACROSS_WAIT);
            sq__report_add(&r, "  ");
            add_self(&r, c);
            sq__report_add(&r, "\n  waits for %s",
                           sq__wait_kind_text(w->kind));
            if (w->obj)
                sq__report_add(&r, " (%p)", w->obj);
            sq__report_add(&r, "\n");
        }
        sq__report_hold(&r, "while holding", h, now);
    }
    pthread_mutex_unlock(&sq__check_lock);
    if (!found)
        return;
    sq__report_add(&r, "  where it waits:\n");
    sq__report_backtrace(&r, 2);
    sq__report_emit(&r);
}

static void h_wait_end(sq__waiter *w, int rc)
{
    int64_t waited = sq_now() - w->since;
    pthread_mutex_lock(&sq__check_lock);
    /* Only waits for locks and semaphores: for a channel, a sleep, I/O or
     * a join a long wait is the normal state of an idle program. */
    bool long_wait = on(SQ_CHECK_LONG_WAIT) &&
                     (SQ__WAIT_IS_LOCK(w->kind) || w->kind == SQ__WAIT_SEM) &&
                     waited > sq__check_cfg.long_wait_ns;
    bool search = on(SQ_CHECK_DEADLOCK) && rc == -ETIMEDOUT &&
                  SQ__WAIT_IS_LOCK(w->kind);
    sq__report r;
    if (long_wait) {
        sq__report_init(&r, SQ_CHECK_LONG_WAIT);
        sq__report_add(&r, "  ");
        add_self(&r, current_if_any());
        sq__report_add(&r, "\n  waited for %s",
                       sq__wait_kind_text(w->kind));
        if (w->obj)
            sq__report_add(&r, " (%p)", w->obj);
        sq__report_add(&r, " for ");
        sq__report_age(&r, waited);
        sq__report_add(&r, " (threshold ");
        sq__report_age(&r, sq__check_cfg.long_wait_ns);
        sq__report_add(&r, ")%s\n  where it waited:\n",
                       rc == 0 ? "" : ", and gave up");
    }
    pthread_mutex_unlock(&sq__check_lock);
    if (long_wait) {
        sq__report_backtrace(&r, 2);
        sq__report_emit(&r);
    }
    if (search)
        sq__deadlock_search("a lock wait timed out");
}

static void h_lock_acquire(const void *lock, const char *cls, unsigned flags,
                           int mode, const char *site, bool trylock)
{
    (void)flags;
    pthread_mutex_lock(&sq__check_lock);
    sq__cctx *c = sq__check_current();
    sq__report *r = NULL;
    if (c) {
        cls = sq__class_of(lock, cls);
        if (!trylock) {
            c->acquiring = lock;
            c->acquiring_cls = cls;
            c->acquiring_mode = mode;
            c->acquiring_site = site ? site : "?";
        }
        if (on(SQ_CHECK_LOCK_ORDER))
            r = sq__lockdep_acquire(c, lock, cls, mode, site ? site : "?",
                                    trylock);
    }
    pthread_mutex_unlock(&sq__check_lock);
    if (r) {
        sq__report_emit(r);
        free(r);
    }
}

static void h_lock_acquired(const void *lock, const char *cls, unsigned flags,
                            int mode, const char *site)
{
    sq__hold *h = malloc(sizeof *h);
    int64_t now = sq_now();
    pthread_mutex_lock(&sq__check_lock);
    sq__cctx *c = sq__check_current();
    if (c) {
        c->acquiring = NULL;
        if (h) {
            h->lock = lock;
            h->cls = sq__class_of(lock, cls);
            h->flags = flags;
            h->mode = mode;
            h->site = site ? site : "?";
            h->since = now;
            hold_add(c, h);
            h = NULL;
        }
    }
    pthread_mutex_unlock(&sq__check_lock);
    free(h); /* only if there was no context to give it to */
}

static void h_lock_abandon(const void *lock, int mode)
{
    (void)mode;
    pthread_mutex_lock(&sq__check_lock);
    sq__cctx *c = current_if_any();
    if (c && c->acquiring == lock)
        c->acquiring = NULL;
    pthread_mutex_unlock(&sq__check_lock);
}

/* sq_check_get_hold_stats; under sq__check_lock. */
static sq_check_hold_stats hold_stats;

void sq_check_get_hold_stats(sq_check_hold_stats *out)
{
    pthread_mutex_lock(&sq__check_lock);
    *out = hold_stats;
    pthread_mutex_unlock(&sq__check_lock);
}

static void h_lock_release(const void *lock, int mode)
{
    int64_t now = sq_now();
    pthread_mutex_lock(&sq__check_lock);
    sq__cctx *c = current_if_any();
    sq__hold *h = hold_find(c, lock, mode);
    bool report = false;
    sq__report r;
    if (h) {
        hold_remove(h);
        uint64_t held = now > h->since ? (uint64_t)(now - h->since) : 0;
        hold_stats.holds++;
        hold_stats.hold_ns += held;
        if (held > hold_stats.max_hold_ns)
            hold_stats.max_hold_ns = held;
        if (on(SQ_CHECK_LONG_HOLD) &&
            now - h->since > sq__check_cfg.long_hold_ns) {
            report = true;
            sq__report_init(&r, SQ_CHECK_LONG_HOLD);
            sq__report_add(&r, "  ");
            sq__report_ctx(&r, h->owner);
            sq__report_add(&r, "\n");
            sq__report_hold(&r, "held", h, now);
            sq__report_add(&r, "  threshold ");
            sq__report_age(&r, sq__check_cfg.long_hold_ns);
            sq__report_add(&r, "; released by %s\n",
                           c == h->owner ? "its holder" : (c ? c->name : "?"));
        }
    }
    pthread_mutex_unlock(&sq__check_lock);
    free(h);
    if (report)
        sq__report_emit(&r);
}

static void h_lock_downgrade(const void *lock)
{
    pthread_mutex_lock(&sq__check_lock);
    sq__cctx *c = current_if_any();
    sq__hold *h = hold_find(c, lock, SQ__LOCK_EXCL);
    if (h)
        h->mode = SQ__LOCK_SHARED;
    pthread_mutex_unlock(&sq__check_lock);
}

static void h_task_exit(sq__task *t)
{
    void **slot = sq__task_check_slot(t);
    if (!*slot)
        return;
    pthread_mutex_lock(&sq__check_lock);
    ctx_retire(*slot);
    *slot = NULL;
    pthread_mutex_unlock(&sq__check_lock);
}

/* Unused when the hooks are compiled out (SQ_CHECKS=0). */
static const sq__check_hooks hooks __attribute__((unused)) = {
    .wait_begin = h_wait_begin,
    .wait_end = h_wait_end,
    .lock_acquire = h_lock_acquire,
    .lock_acquired = h_lock_acquired,
    .lock_abandon = h_lock_abandon,
    .lock_release = h_lock_release,
    .lock_downgrade = h_lock_downgrade,
    .task_exit = h_task_exit,
};

/* ------------------------------------------------------- configuration */

int sq_check_configure(const sq_check_config *c)
{
#if !SQ_CHECKS
    (void)c;
    return -ENOTSUP;
#else
    if (!c || (c->findings & ~SQ_CHECK_ALL) || (c->abort_on & ~SQ_CHECK_ALL) ||
        c->long_hold_ns < 0 || c->long_wait_ns < 0 || c->watchdog_ns < 0)
        return -EINVAL;
    sq_check_config n = *c;
    if (n.long_hold_ns == 0)
        n.long_hold_ns = SQ_SEC;
    if (n.long_wait_ns == 0)
        n.long_wait_ns = 10 * SQ_SEC;
    pthread_mutex_lock(&sq__check_lock);
    sq__check_cfg = n;
    pthread_mutex_unlock(&sq__check_lock);
    if (n.findings)
        atomic_store(&sq__check_hooks_on, &hooks); /* stays installed */
    return sq__watchdog_configure(
        (n.findings & SQ_CHECK_DEADLOCK) ? n.watchdog_ns : 0);
#endif
}

void sq_check_get_config(sq_check_config *out)
{
    pthread_mutex_lock(&sq__check_lock);
    *out = sq__check_cfg;
    pthread_mutex_unlock(&sq__check_lock);
}

void sq_check_set_reporter(sq_check_reporter fn, void *arg)
{
    pthread_mutex_lock(&sq__check_lock);
    reporter = fn;
    reporter_arg = arg;
    pthread_mutex_unlock(&sq__check_lock);
}

uint64_t sq_check_count(unsigned findings)
{
    uint64_t n = 0;
    for (int i = 0; i < 5; i++)
        if (findings & (1u << i))
            n += atomic_load(&counts[i]);
    return n;
}

/* "<number><unit>" into ns. */
static int parse_time(const char *s, size_t len, int64_t *out)
{
    char buf[32];
    if (len == 0 || len >= sizeof buf)
        return -EINVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || end == buf || v < 0)
        return -EINVAL;
    int64_t unit;
    if (!strcmp(end, "ns"))
        unit = 1;
    else if (!strcmp(end, "us"))
        unit = SQ_USEC;
    else if (!strcmp(end, "ms"))
        unit = SQ_MSEC;
    else if (!strcmp(end, "s"))
        unit = SQ_SEC;
    else
        return -EINVAL;
    if (v > INT64_MAX / unit)
        return -EINVAL;
    *out = v * unit;
    return 0;
}

int sq_check_parse(const char *spec, sq_check_config *out)
{
    if (!spec || !out)
        return -EINVAL;
    sq_check_config c = {0};
    bool abort_all = false;
    const char *p = spec;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && isspace((unsigned char)*p)) {
            p++;
            len--;
        }
        while (len && isspace((unsigned char)p[len - 1]))
            len--;
#define IS(word) (len == sizeof word - 1 && !memcmp(p, word, len))
#define HAS(word) (len > sizeof word - 1 && !memcmp(p, word, sizeof word - 1))
        if (len == 0)
            ;
        else if (IS("all"))
            c.findings |= SQ_CHECK_ALL;
        else if (IS("order"))
            c.findings |= SQ_CHECK_LOCK_ORDER;
        else if (IS("held"))
            c.findings |= SQ_CHECK_HELD_ACROSS_WAIT;
        else if (IS("long-hold"))
            c.findings |= SQ_CHECK_LONG_HOLD;
        else if (IS("long-wait"))
            c.findings |= SQ_CHECK_LONG_WAIT;
        else if (IS("deadlock"))
            c.findings |= SQ_CHECK_DEADLOCK;
        else if (IS("abort"))
            abort_all = true;
        else if (HAS("hold=")) {
            if (parse_time(p + 5, len - 5, &c.long_hold_ns))
                return -EINVAL;
        } else if (HAS("wait=")) {
            if (parse_time(p + 5, len - 5, &c.long_wait_ns))
                return -EINVAL;
        } else if (HAS("watchdog=")) {
            if (parse_time(p + 9, len - 9, &c.watchdog_ns))
                return -EINVAL;
        } else {
            return -EINVAL;
        }
#undef IS
#undef HAS
        p += len;
        while (*p && *p != ',')
            p++;
        if (*p == ',')
            p++;
    }
    if (abort_all)
        c.abort_on = c.findings;
    *out = c;
    return 0;
}

/* Reads SQUIRREL_CHECK before main.  The library's link interface forces
 * this object in (-u sq__check_autoinit, see CMakeLists.txt), so every
 * program built with Squirrel honours the variable. */
void sq__check_autoinit(void) __attribute__((constructor));
void sq__check_autoinit(void)
{
    const char *spec = getenv("SQUIRREL_CHECK");
    if (!spec || !*spec)
        return;
    sq_check_config c;
    int rc = sq_check_parse(spec, &c);
    if (rc == 0)
        rc = sq_check_configure(&c);
    /* And the task dump on SIGQUIT (Ctrl-\), as the JVM and Go do. */
    if (rc == 0 && c.findings)
        rc = sq_check_dump_on_signal(SIGQUIT, STDERR_FILENO);
    if (rc) {
        fprintf(stderr, "squirrel: SQUIRREL_CHECK=\"%s\": %s; checks off\n",
                spec, rc == -EINVAL ? "not understood (see docs/checks.md)"
                                    : sq_strerror(rc));
    }
}
