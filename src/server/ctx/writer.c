/* The group-commit writer (ctx_int.h): one task that takes every change
 * queued at that moment (up to max_batch), commits them in one store
 * transaction on the blocking pool (SQLite never runs on a worker), then,
 * in queue order:
 *   1. publishes each change (the context's published state: readers see
 *      it from now on, and its listeners are told, after every lock of
 *      the manager is released; deletions leave the index first),
 *   2. tells the server (on_change: resource-updated notifications),
 *   3. wakes everyone waiting for a change to settle, and
 *   4. acknowledges each change (its oneshot).
 * So an acknowledged change is durable and visible, and what a reader sees
 * is never a version a crash could lose.  While a batch commits, the next
 * one gathers: one sync serves every change that arrived meanwhile.
 *
 * If the store fails, the batch is rolled back by the store, every change
 * of it (and every later one) fails with -EIO, and the manager refuses
 * changes from then on (the versions in memory ahead of the store are
 * never published).  Reads go on. */
#include "ctx_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ctx_change *change_new(ctx_obj *o, int op, ctx_ver *v)
{
    ctx_change *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    atomic_init(&c->refs, 2); /* the caller's and the writer's */
    c->obj = o ? obj_ref(o) : NULL;
    c->op = op;
    c->ver = v;
    if (o)
        c->gen = atomic_load(&o->gen);
    sq_oneshot_init(&c->done);
    return c;
}

void change_unref(ctx_change *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (c->obj)
        obj_unref(c->obj);
    ver_unref(c->ver);
    free(c->name);
    free(c);
}

int writer_submit(sq_ctx_mgr *m, ctx_change *c)
{
    c->queued = sq_now();
    sq__spin_lock(&m->qlock);
    if (m->writer_done) {
        sq__spin_unlock(&m->qlock);
        return -ESHUTDOWN;
    }
    sq__list_push_back(&m->queue, &c->link);
    sq__spin_unlock(&m->qlock);
    sq_notify_one(&m->wake);
    return 0;
}

int change_wait(ctx_change *c)
{
    int rc = sq_oneshot_recv(&c->done, NULL);
    if (rc) {
        /* We stop waiting; the writer still commits and drops its own
         * reference (its send then fails, harmlessly). */
        sq_oneshot_close_recv(&c->done);
        return -ECANCELED;
    }
    return c->status;
}

/* ---------------------------------------------------------------- commit */

typedef struct commit_job {
    sq_store *store;
    sq_store_op *ops;
    size_t n;
    int rc;
    char err[200];
} commit_job;

static void *commit_main(void *arg)
{
    commit_job *j = arg;
    j->rc = j->store->vt->commit(j->store, j->ops, j->n, j->err, sizeof j->err);
    return NULL;
}

/* The store operation(s) of c into ops; returns how many (1 or 2). */
static size_t ops_of(sq_ctx_mgr *m, const ctx_change *c, sq_store_op *ops)
{
    const ctx_ver *v = c->ver;
    sq_store_op *o = &ops[0];
    *o = (sq_store_op){.op = c->op, .id = c->obj->id};
    switch (c->op) {
    case SQ_STORE_DELETE:
        o->version = v->version; /* the tombstone's: a shared store checks it */
        return 1;
    case SQ_STORE_CREATE:
    case SQ_STORE_PUT:
        o->version = v->version;
        o->at = c->op == SQ_STORE_CREATE ? v->created_at : v->updated_at;
        o->kind = v->kind;
        o->actor = v->actor;
        o->doc = v->doc_text;
        o->doc_len = v->doc_len;
        o->meta = v->meta_text;
        o->meta_len = v->meta_len;
        o->prune_below = c->prune_below;
        break;
    case SQ_STORE_SNAPSHOT:
    case SQ_STORE_RECOVERY:
        o->version = v->version;
        o->at = c->at;
        o->doc = v->doc_text;
        o->doc_len = v->doc_len;
        o->name = c->name;
        o->reason = c->reason;
        o->keep = m->o.recovery_keep;
        return 1;
    default:
        return 1;
    }
    if (!c->auto_rp)
        return 1;
    ops[1] = (sq_store_op){.op = SQ_STORE_RECOVERY, .id = c->obj->id,
                           .version = v->version, .at = v->updated_at,
                           .doc = v->doc_text, .doc_len = v->doc_len,
                           .reason = "auto", .keep = m->o.recovery_keep};
    return 2;
}

/* ------------------------------------------------------------- publishing */

/* Keeps the newest `keep` durable recovery points (under o's lock). */
static void prune_rps(ctx_marks *k, size_t keep)
{
    while (marks_durable(k) > keep)
        for (size_t i = 0; i < k->n; i++)
            if (k->v[i].durable) {
                marks_remove(k, i);
                break;
            }
}

/* Marks the snapshot (name) or recovery point (version) durable, or
 * (failed) forgets it. */
static void settle_mark(sq_ctx_mgr *m, ctx_obj *o, const char *name, uint64_t version,
                        bool failed)
{
    sq_mutex_lock_nocancel(&o->lock);
    ctx_marks *k = name ? &o->snaps : &o->rps;
    ctx_mark *x = name ? marks_find_name(k, name) : marks_find_version(k, version);
    if (x && failed && !x->durable)
        marks_remove(k, (size_t)(x - k->v));
    else if (x && !failed)
        x->durable = true;
    if (!name && !failed)
        prune_rps(k, m->o.recovery_keep);
    sq_mutex_unlock(&o->lock);
}

void tell_version(sq_ctx_mgr *m, ctx_obj *o, uint64_t version, int kind, bool created,
                  bool deleted)
{
    if (!m->o.on_change)
        return;
    sq_ctx_event ev = {
        .id = o->id,
        .version = version,
        .kind = kind,
        .created = created,
        .deleted = deleted,
    };
    m->o.on_change(m->o.arg, &ev);
}

void ctx_broken_msg(sq_ctx_mgr *m, char *buf, size_t n)
{
    sq__spin_lock(&m->msg_lock);
    snprintf(buf, n, "%s", m->broken_msg);
    sq__spin_unlock(&m->msg_lock);
}

/* The store cannot take changes (why): refused until retry_at (1 s after
 * the first failure, doubling to 30 s), or for good if fatal.  The
 * writer's only. */
static void set_broken(sq_ctx_mgr *m, const char *why, bool fatal)
{
    sq__spin_lock(&m->msg_lock);
    snprintf(m->broken_msg, sizeof m->broken_msg, "%s", why);
    sq__spin_unlock(&m->msg_lock);
    m->backoff = m->backoff ? m->backoff * 2 : SQ_SEC;
    if (m->backoff > 30 * SQ_SEC)
        m->backoff = 30 * SQ_SEC;
    atomic_store(&m->retry_at, sq_now() + m->backoff);
    if (fatal)
        atomic_store(&m->fatal, true);
    bool was = atomic_exchange(&m->broken, true);
    if (!was && m->o.on_store_health)
        m->o.on_store_health(m->o.arg, false, why);
}

/* A commit (or probe) went through: changes are taken again.  (Every
 * commit comes here: a plain load while healthy.) */
static void set_mended(sq_ctx_mgr *m)
{
    if (!atomic_load(&m->broken) || atomic_load(&m->fatal))
        return;
    m->backoff = 0;
    atomic_store(&m->broken, false);
    if (m->o.on_store_health)
        m->o.on_store_health(m->o.arg, true, NULL);
}

/* True if the writer may commit now: the store is not broken, or its
 * retry time has come. */
static bool may_commit(sq_ctx_mgr *m)
{
    return !atomic_load(&m->broken) ||
           (!atomic_load(&m->fatal) && sq_now() >= atomic_load(&m->retry_at));
}

static void tell(sq_ctx_mgr *m, const ctx_change *c)
{
    tell_version(m, c->obj, c->op == SQ_STORE_DELETE ? c->ver->version - 1 : c->ver->version,
                 c->ver->kind, c->op == SQ_STORE_CREATE, c->op == SQ_STORE_DELETE);
}

/* Publishes a committed change; true if the list of contexts changed. */
static bool publish(sq_ctx_mgr *m, ctx_change *c)
{
    ctx_obj *o = c->obj;
    switch (c->op) {
    case SQ_STORE_CREATE:
    case SQ_STORE_PUT:
        if (obj_publish(o, ver_ref(c->ver)) != 0) {
            /* Out of memory for the state's snapshot: durable, but the
             * readers would lag; stop taking changes rather than lie. */
            set_broken(m, "out of memory publishing a change", true);
        }
        if (c->auto_rp)
            settle_mark(m, o, NULL, c->ver->version, false);
        tell(m, c);
        return c->op == SQ_STORE_CREATE;
    case SQ_STORE_DELETE:
        /* Out of the index first: a create waiting for this deletion finds
         * the id free once woken. */
        idx_remove(&m->index, o);
        atomic_store(&o->gone, true);
        atomic_fetch_sub(&m->ncontexts, 1);
        obj_publish(o, ver_ref(c->ver));
        tell(m, c);
        return true;
    case SQ_STORE_SNAPSHOT:
        settle_mark(m, o, c->name, 0, false);
        return false;
    default:
        settle_mark(m, o, NULL, c->ver->version, false);
        return false;
    }
}

/* Undoes in memory what a change that was never committed did. */
static void forget(sq_ctx_mgr *m, ctx_change *c)
{
    ctx_obj *o = c->obj;
    if (c->op == SQ_STORE_CREATE) {
        atomic_store(&o->gone, true);
        idx_remove(&m->index, o);
        atomic_fetch_sub(&m->ncontexts, 1);
    } else if (c->op == SQ_STORE_SNAPSHOT) {
        settle_mark(m, o, c->name, 0, true);
    } else if (c->op == SQ_STORE_RECOVERY || c->auto_rp) {
        settle_mark(m, o, NULL, c->ver->version, true);
    }
}

/* Undoes the marks of a change dropped because its context was read again
 * (the context itself is now what the store holds). */
static void forget_marks(sq_ctx_mgr *m, ctx_change *c)
{
    ctx_obj *o = c->obj;
    if (c->op == SQ_STORE_SNAPSHOT)
        settle_mark(m, o, c->name, 0, true);
    else if (c->op == SQ_STORE_RECOVERY || c->auto_rp)
        settle_mark(m, o, NULL, c->ver->version, true);
}

/* Makes the changes of o queued so far stale (shared stores): its head is
 * about to be replaced by what the store holds. */
static void outdate(ctx_obj *o, bool dirty)
{
    sq_mutex_lock_nocancel(&o->lock);
    atomic_fetch_add(&o->gen, 1);
    if (dirty)
        atomic_store(&o->dirty, true);
    sq_mutex_unlock(&o->lock);
}

/* ------------------------------------------------------------------- loop */

typedef struct writer {
    sq_ctx_mgr *m;
    ctx_change **batch, **rest;
    sq_store_op *ops;
    sq_store_op scratch[2];
    uint64_t epoch;
    bool shared_ok;     /* a shared store's database answered, last seen */
} writer;

static void watch_shared(writer *w);

/* Shared stores: sorts the batch into what is committed and what is not.
 * Refresh requests are taken out (done after the commit); a change made
 * from a head that has since been replaced (gen), or of a context whose
 * last commit failed (dirty), is dropped as stale.  Returns how many
 * remain at the front of the batch (in order); the others follow. */
static size_t sort_batch(writer *w, size_t n, size_t *nstale)
{
    size_t keep = 0, stale = 0, tail = n;
    ctx_change **b = w->batch;
    ctx_change **rest = w->rest;
    for (size_t i = 0; i < n; i++) {
        ctx_change *c = b[i];
        if (c->op == CTX_REFRESH)
            rest[--tail] = c;
        else if (c->gen != atomic_load(&c->obj->gen) || atomic_load(&c->obj->dirty))
            rest[stale++] = c;
        else
            b[keep++] = c;
    }
    /* b = [kept][stale changes][refreshes] */
    for (size_t i = 0; i < stale; i++)
        b[keep + i] = rest[i];
    for (size_t i = tail; i < n; i++)
        b[keep + stale + (i - tail)] = rest[i];
    *nstale = stale;
    return keep;
}

static void commit_batch(writer *w, size_t n)
{
    sq_ctx_mgr *m = w->m;
    int rc = -EIO;
    size_t nstale = 0, ncommit = m->shared ? sort_batch(w, n, &nstale) : n;
    bool list_changed = false;
    if (may_commit(m) && ncommit) {
        size_t k = 0;
        for (size_t i = 0; i < ncommit; i++)
            k += ops_of(m, w->batch[i], &w->ops[k]);
        commit_job j = {.store = m->store, .ops = w->ops, .n = k};
        int64_t t0 = sq_now();
        /* The commit must finish even if this task were aborted: the store
         * job would go on using the batch. */
        rc = sq_store_run(m->store, commit_main, &j);
        if (rc == 0)
            rc = j.rc;
        sq_histogram_observe(m->m_commit_ns, sq_now() - t0);
        if (rc && m->shared) {
            /* The database is away (or refused the batch): the outcome is
             * unknown; the contexts are read again before they change.
             * (broken_msg stays as it is: requests read it meanwhile.) */
            sq_counter_inc(m->m_failures);
            for (size_t i = 0; i < ncommit; i++)
                outdate(w->batch[i]->obj, true);
        } else if (rc) {
            sq_counter_inc(m->m_failures);
            set_broken(m, j.err[0] ? j.err : sq_strerror(rc), false);
        } else {
            set_mended(m);
            sq_counter_inc(m->m_commits);
            sq_counter_add(m->m_changes, n);
            for (size_t i = 0; i < n; i++) {
                const ctx_change *c = w->batch[i];
                int kind = 0; /* snapshots, recovery points */
                if (c->op == SQ_STORE_DELETE)
                    kind = SQ_CTX_DELETE;
                else if (c->ver && (c->op == SQ_STORE_CREATE || c->op == SQ_STORE_PUT))
                    kind = c->ver->kind;
                if (kind < 0 || kind > SQ_CTX_DELETE)
                    kind = 0;
                atomic_fetch_add(&m->by_kind[kind], 1);
            }
            sq_histogram_observe(m->m_batch, (int64_t)n);
            unsigned long long max = atomic_load(&m->max_batch);
            while (n > max && !atomic_compare_exchange_weak(&m->max_batch, &max, n))
                ;
        }
    }
    /* Which ops the store found stale: their changes (an op of a change
     * is stale if any is; the first op of each change is what counts,
     * since the store skips every later op of that id). */
    size_t k = 0;
    for (size_t i = 0; i < ncommit; i++) {
        ctx_change *c = w->batch[i];
        size_t nops = ops_of(m, c, &w->scratch[0]);
        bool stale = rc == 0 && w->ops[k].stale;
        k += nops;
        if (stale) {
            sq_counter_inc(m->m_conflicts);
            /* Its head is not what the store holds: nothing more is made
             * from it until the context is read again. */
            outdate(c->obj, true);
            forget(m, c);
            c->status = -ESTALE;
        } else if (rc == 0) {
            list_changed |= publish(m, c);
            c->status = 0;
        } else {
            forget(m, c);
            c->status = -EIO;
        }
    }
    for (size_t i = ncommit; i < ncommit + nstale; i++) {
        forget_marks(m, w->batch[i]);
        w->batch[i]->status = -ESTALE;
    }
    /* Shared stores: read again what others changed, what was found stale,
     * and what failed; before acknowledging, so that a caller told
     * "stale" computes its change again from the store's version. */
    if (m->shared) {
        for (size_t i = 0; i < ncommit + nstale; i++) {
            ctx_change *c = w->batch[i];
            bool seen = c->status == 0;
            for (size_t p = 0; p < i && !seen; p++)
                seen = w->batch[p]->obj == c->obj && w->batch[p]->status != 0;
            if (!seen) /* once per context */
                refresh_id(m, c->obj->id, 0, &list_changed);
        }
        for (size_t i = ncommit + nstale; i < n; i++) {
            ctx_change *c = w->batch[i];
            if (c->name)
                refresh_id(m, c->name, c->at > 0 ? (uint64_t)c->at : 0, &list_changed);
            else
                refresh_all(m, &list_changed);
            c->status = 0;
        }
    }
    sq_gauge_set(m->m_contexts, (int64_t)atomic_load(&m->ncontexts));
    if (list_changed && m->o.on_list_changed)
        m->o.on_list_changed(m->o.arg);
    if (m->shared)
        watch_shared(w);
    w->epoch++;
    sq_watch_send(&m->settled, &w->epoch);
    int64_t now = sq_now();
    for (size_t i = 0; i < n; i++) {
        ctx_change *c = w->batch[i];
        sq_histogram_observe(m->m_latency_ns, now - c->queued);
        sq_oneshot_send(&c->done, NULL);
        change_unref(c);
    }
}

/* Tries a broken store with a probe commit (no change): mended, or
 * broken again with a longer wait. */
static void probe(writer *w)
{
    sq_ctx_mgr *m = w->m;
    commit_job j = {.store = m->store, .ops = w->ops, .n = 0};
    int rc = sq_store_run(m->store, commit_main, &j);
    if (rc == 0)
        rc = j.rc;
    if (rc == 0)
        set_mended(m);
    else
        set_broken(m, j.err[0] ? j.err : sq_strerror(rc), false);
}

/* Shared stores: tells the owner when the database stops or starts
 * answering (the backend reconnects by itself). */
static void watch_shared(writer *w)
{
    sq_ctx_mgr *m = w->m;
    char why[200];
    bool ok = sq_store_status(m->store, why, sizeof why) == 0;
    if (ok != w->shared_ok) {
        w->shared_ok = ok;
        if (m->o.on_store_health)
            m->o.on_store_health(m->o.arg, ok, ok ? NULL : why);
    }
}

/* Nothing queued: waits for a change; meanwhile a broken store is
 * probed when its time comes, a shared one looked at every second. */
static void idle(writer *w)
{
    sq_ctx_mgr *m = w->m;
    int64_t until = SQ_FOREVER;
    if (m->shared) {
        watch_shared(w);
        until = sq_now() + SQ_SEC;
    } else if (atomic_load(&m->broken) && !atomic_load(&m->fatal)) {
        until = atomic_load(&m->retry_at);
    }
    if (sq_notify_wait_until(&m->wake, until) == -ETIMEDOUT && !m->shared &&
        may_commit(m) && atomic_load(&m->broken))
        probe(w);
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    sq_ctx_mgr *m = w->m;
    for (;;) {
        size_t n = 0;
        struct sq__link *l;
        sq__spin_lock(&m->qlock);
        while (n < m->o.max_batch && (l = sq__list_pop_front(&m->queue)))
            w->batch[n++] = sq__list_entry(l, ctx_change, link);
        bool done = n == 0 && atomic_load(&m->stopping);
        if (done)
            m->writer_done = true; /* later submits are refused */
        sq__spin_unlock(&m->qlock);
        if (done)
            break;
        if (n == 0) {
            idle(w);
            continue;
        }
        commit_batch(w, n);
    }
    w->epoch++;
    sq_watch_send(&m->settled, &w->epoch);
    free(w->batch);
    free(w->rest);
    free(w->ops);
    free(w);
    return NULL;
}

int writer_start(sq_ctx_mgr *m)
{
    writer *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->m = m;
    w->shared_ok = true;
    w->batch = malloc(m->o.max_batch * sizeof *w->batch);
    w->rest = malloc(m->o.max_batch * sizeof *w->rest);
    w->ops = malloc(2 * m->o.max_batch * sizeof *w->ops);
    sq_spawn_opts so = {.name = "ctx-writer"};
    int rc = w->batch && w->rest && w->ops ? sq_spawn(&m->writer, writer_main, w, &so)
                                           : -ENOMEM;
    if (rc) {
        free(w->rest);
        free(w->batch);
        free(w->ops);
        free(w);
        return rc;
    }
    m->writer_started = true;
    return 0;
}
