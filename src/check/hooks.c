/* The hooks the lower layers call on every wait and lock operation while
 * the checks are installed (sq__check_hooks in sq_runtime/iface.h): they
 * keep the contexts' holds (context.c), ask the lock-order graph
 * (lockdep.c) and the wait-for graph (deadlock.c), and make the
 * held-across-wait, long-hold and long-wait reports themselves. */
#include "hooks.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "context.h"
#include "deadlock.h"
#include "lockdep.h"
#include "report.h"

/* What the hooks look for; under sq__check_lock. */
static sq_check_config cfg;

static bool on(unsigned finding)
{
    return (cfg.findings & finding) != 0;
}

/* sq_check_get_hold_stats; under sq__check_lock. */
static sq_check_hold_stats hold_stats;

/* Describes the calling task or thread for a report, context or not. */
static void add_self(sq__report *r, const sq__cctx *c)
{
    if (c) {
        sq__put_who(&r->text, c->name, c->spawn_site);
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

static void report_hold(sq__report *r, const char *what, const sq__hold *h,
                        int64_t now)
{
    sq__put_hold(&r->text, "  ", what, h->mode == SQ__LOCK_SHARED, h->cls,
                 h->lock, h->site, now - h->since);
}

/* ---------------------------------------------------------------- waits */

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
    sq__cctx *c = sq__check_current_if_any();
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
                           sq__wait_text(sq__wait_public(w->kind)));
            if (w->obj)
                sq__report_add(&r, " (%p)", w->obj);
            sq__report_add(&r, "\n");
        }
        report_hold(&r, "while holding", h, now);
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
                     waited > cfg.long_wait_ns;
    bool search = on(SQ_CHECK_DEADLOCK) && rc == -ETIMEDOUT &&
                  SQ__WAIT_IS_LOCK(w->kind);
    sq__report r;
    if (long_wait) {
        sq__report_init(&r, SQ_CHECK_LONG_WAIT);
        sq__report_add(&r, "  ");
        add_self(&r, sq__check_current_if_any());
        sq__report_add(&r, "\n  waited for %s",
                       sq__wait_text(sq__wait_public(w->kind)));
        if (w->obj)
            sq__report_add(&r, " (%p)", w->obj);
        sq__report_add(&r, " for ");
        sq__put_age(&r.text, waited);
        sq__report_add(&r, " (threshold ");
        sq__put_age(&r.text, cfg.long_wait_ns);
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

/* ---------------------------------------------------------------- locks */

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
            sq__hold_add(c, h);
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
    sq__cctx *c = sq__check_current_if_any();
    if (c && c->acquiring == lock)
        c->acquiring = NULL;
    pthread_mutex_unlock(&sq__check_lock);
}

static void h_lock_release(const void *lock, int mode)
{
    int64_t now = sq_now();
    pthread_mutex_lock(&sq__check_lock);
    sq__cctx *c = sq__check_current_if_any();
    sq__hold *h = sq__hold_find(c, lock, mode);
    bool report = false;
    sq__report r;
    if (h) {
        sq__hold_remove(h);
        uint64_t held = now > h->since ? (uint64_t)(now - h->since) : 0;
        hold_stats.holds++;
        hold_stats.hold_ns += held;
        if (held > hold_stats.max_hold_ns)
            hold_stats.max_hold_ns = held;
        if (on(SQ_CHECK_LONG_HOLD) && now - h->since > cfg.long_hold_ns) {
            report = true;
            sq__report_init(&r, SQ_CHECK_LONG_HOLD);
            sq__report_add(&r, "  ");
            sq__put_who(&r.text, h->owner->name, h->owner->spawn_site);
            sq__report_add(&r, "\n");
            report_hold(&r, "held", h, now);
            sq__report_add(&r, "  threshold ");
            sq__put_age(&r.text, cfg.long_hold_ns);
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
    sq__cctx *c = sq__check_current_if_any();
    sq__hold *h = sq__hold_find(c, lock, SQ__LOCK_EXCL);
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
    sq__check_retire(*slot);
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

void sq__hooks_configure(const sq_check_config *c)
{
    pthread_mutex_lock(&sq__check_lock);
    cfg = *c;
    pthread_mutex_unlock(&sq__check_lock);
#if SQ_CHECKS
    if (c->findings)
        atomic_store(&sq__check_hooks_on, &hooks); /* stays installed */
#endif
}

void sq_check_get_hold_stats(sq_check_hold_stats *out)
{
    pthread_mutex_lock(&sq__check_lock);
    *out = hold_stats;
    pthread_mutex_unlock(&sq__check_lock);
}
