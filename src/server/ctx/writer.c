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
    c->obj = obj_ref(o);
    c->op = op;
    c->ver = v;
    sq_oneshot_init(&c->done);
    return c;
}

void change_unref(ctx_change *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
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
    const sq_store_op *ops;
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
    sq_cancel_mask();
    sq_mutex_lock_nocancel(&o->lock);
    sq_cancel_unmask();
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

static void tell(sq_ctx_mgr *m, const ctx_change *c)
{
    if (!m->o.on_change)
        return;
    sq_ctx_event ev = {
        .id = c->obj->id,
        .version = c->op == SQ_STORE_DELETE ? c->ver->version - 1 : c->ver->version,
        .kind = c->ver->kind,
        .created = c->op == SQ_STORE_CREATE,
        .deleted = c->op == SQ_STORE_DELETE,
    };
    m->o.on_change(m->o.arg, &ev);
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
            atomic_store(&m->broken, true);
            snprintf(m->broken_msg, sizeof m->broken_msg, "out of memory publishing a change");
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

/* ------------------------------------------------------------------- loop */

typedef struct writer {
    sq_ctx_mgr *m;
    ctx_change **batch;
    sq_store_op *ops;
    uint64_t epoch;
} writer;

static void commit_batch(writer *w, size_t n)
{
    sq_ctx_mgr *m = w->m;
    int rc = -EIO;
    if (!atomic_load(&m->broken)) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += ops_of(m, w->batch[i], &w->ops[k]);
        commit_job j = {.store = m->store, .ops = w->ops, .n = k};
        int64_t t0 = sq_now();
        /* The commit must finish even if this task were aborted: the store
         * job would go on using the batch. */
        sq_cancel_mask();
        rc = sq_blocking_run(commit_main, &j, NULL);
        sq_cancel_unmask();
        if (rc == 0)
            rc = j.rc;
        sq_histogram_observe(m->m_commit_ns, sq_now() - t0);
        if (rc) {
            snprintf(m->broken_msg, sizeof m->broken_msg, "%s",
                     j.err[0] ? j.err : sq_strerror(rc));
            atomic_store(&m->broken, true);
            sq_counter_inc(m->m_failures);
            if (m->o.on_store_failed)
                m->o.on_store_failed(m->o.arg, m->broken_msg);
        } else {
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
    bool list_changed = false;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            list_changed |= publish(m, w->batch[i]);
        else
            forget(m, w->batch[i]);
    }
    sq_gauge_set(m->m_contexts, (int64_t)atomic_load(&m->ncontexts));
    if (list_changed && m->o.on_list_changed)
        m->o.on_list_changed(m->o.arg);
    w->epoch++;
    sq_watch_send(&m->settled, &w->epoch);
    int64_t now = sq_now();
    for (size_t i = 0; i < n; i++) {
        ctx_change *c = w->batch[i];
        c->status = rc ? -EIO : 0;
        sq_histogram_observe(m->m_latency_ns, now - c->queued);
        sq_oneshot_send(&c->done, NULL);
        change_unref(c);
    }
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
            sq_notify_wait(&m->wake);
            continue;
        }
        commit_batch(w, n);
    }
    w->epoch++;
    sq_watch_send(&m->settled, &w->epoch);
    free(w->batch);
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
    w->batch = malloc(m->o.max_batch * sizeof *w->batch);
    w->ops = malloc(2 * m->o.max_batch * sizeof *w->ops);
    sq_spawn_opts so = {.name = "ctx-writer"};
    int rc = w->batch && w->ops ? sq_spawn(&m->writer, writer_main, w, &so) : -ENOMEM;
    if (rc) {
        free(w->batch);
        free(w->ops);
        free(w);
        return rc;
    }
    m->writer_started = true;
    return 0;
}
