/* Contexts changed by other instances (shared stores only: PostgreSQL).
 *
 * The manager keeps every context in memory and computes changes from
 * that; with several instances on one database, another may change a
 * context first.  Two things keep the memory in line with the store:
 *  - the store refuses a change made from an outdated version (its
 *    compare-and-set: the op comes back `stale`), and
 *  - the store tells of the changes others commit (sq_store.on_external,
 *    from LISTEN/NOTIFY), or that it may have missed some (reconnected).
 * Either way the writer task reads the context again (refresh_id) and
 * installs what the store holds, as head and published version: the
 * versions in between are announced to the server one by one (on_change,
 * in version order, no gap: they are read from the store's history), and
 * every change of that context still queued, made from the old head, is
 * dropped (its `gen` is old) and computed again by its caller.
 *
 * Only the writer publishes, so a refresh never races with a commit of
 * this instance's own: versions reach the published state in order. */
#include "ctx_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- reading */

typedef struct reload_job {
    sq_store *st;
    const char *id;
    int rc;
    ctx_ver *v;
    ctx_marks snaps, rps;
} reload_job;

static int reload_fn(void *arg, const sq_store_ctx *c)
{
    reload_job *j = arg;
    ctx_ver *v = ver_from_store(c->version, c->created_at, c->updated_at, c->kind, c->actor,
                                c->doc, c->doc_len, c->meta, c->meta_len);
    if (!v)
        return -EPROTO; /* no memory, or not JSON */
    for (size_t i = 0; i < c->nsnapshots; i++)
        if (marks_add(&j->snaps, c->snapshots[i].name, c->snapshots[i].version,
                      c->snapshots[i].at, NULL, true) != 0)
            goto nomem;
    for (size_t i = 0; i < c->nrecovery; i++)
        if (marks_add(&j->rps, NULL, c->recovery[i].version, c->recovery[i].at,
                      c->recovery[i].reason, true) != 0)
            goto nomem;
    j->v = v;
    return 0;
nomem:
    ver_unref(v);
    return -ENOMEM;
}

static void *reload_main(void *arg)
{
    reload_job *j = arg;
    j->rc = j->st->vt->reload(j->st, j->id, reload_fn, j);
    return NULL;
}

/* The kinds of the versions low < v < high (for the announcements). */
typedef struct kinds_job {
    sq_store *st;
    const char *id;
    uint64_t low, high;
    uint64_t *ver;
    int *kind;
    size_t n, cap;
    int rc;
} kinds_job;

static int kinds_fn(void *arg, const sq_store_hist *h)
{
    kinds_job *j = arg;
    if (j->n == j->cap) {
        size_t cap = j->cap ? 2 * j->cap : 16;
        uint64_t *v = realloc(j->ver, cap * sizeof *v);
        if (v)
            j->ver = v;
        int *k = realloc(j->kind, cap * sizeof *k);
        if (k)
            j->kind = k;
        if (!v || !k)
            return -ENOMEM;
        j->cap = cap;
    }
    j->ver[j->n] = h->version;
    j->kind[j->n] = h->kind;
    j->n++;
    return 0;
}

static void *kinds_main(void *arg)
{
    kinds_job *j = arg;
    j->rc = j->st->vt->history(j->st, j->id, j->low, j->high - 1, j->high - j->low, kinds_fn,
                               j);
    return NULL;
}

/* ------------------------------------------------------- installing */

/* Replaces the durable marks of `have` by the store's (`from`, emptied),
 * keeping those of changes still on their way (not durable), which their
 * commit settles (or forgets). */
static void merge_marks(ctx_marks *have, ctx_marks *from, bool named)
{
    for (size_t i = 0; i < have->n; i++) {
        ctx_mark *k = &have->v[i];
        if (k->durable)
            continue;
        bool there = named ? marks_find_name(from, k->name) != NULL
                           : marks_find_version(from, k->version) != NULL;
        if (!there)
            marks_add(from, k->name, k->version, k->at, k->reason, false);
    }
    marks_free(have);
    *have = *from;
    *from = (ctx_marks){0};
}

/* Publishes o's deletion by another instance. */
static void delete_local(sq_ctx_mgr *m, ctx_obj *o, bool *list_changed)
{
    ctx_ver *tomb = ver_new();
    if (!tomb)
        return;
    sq_mutex_lock_nocancel(&o->lock);
    uint64_t pub = atomic_load(&o->pub_version);
    tomb->version = pub + 1;
    tomb->deleted = true;
    tomb->kind = SQ_CTX_DELETE;
    tomb->created_at = o->head->created_at;
    tomb->updated_at = sq_ctx_now_ms();
    ver_unref(o->head);
    o->head = ver_ref(tomb);
    o->deleting = true;
    o->creating = false;
    atomic_fetch_add(&o->gen, 1);
    atomic_store(&o->dirty, false);
    sq_mutex_unlock(&o->lock);
    if (!atomic_exchange(&o->gone, true)) {
        idx_remove(&m->index, o);
        atomic_fetch_sub(&m->ncontexts, 1);
        obj_publish(o, ver_ref(tomb));
        if (pub > 0) {
            tell_version(m, o, pub, SQ_CTX_DELETE, false, true);
            *list_changed = true;
        }
    }
    ver_unref(tomb);
}

/* A context this instance did not know: into the index. */
static ctx_obj *insert_new(sq_ctx_mgr *m, const char *id, reload_job *j, bool *list_changed)
{
    ctx_obj *o = obj_new(id, ver_ref(j->v), true);
    if (!o) {
        ver_unref(j->v);
        return NULL;
    }
    o->snaps = j->snaps;
    o->rps = j->rps;
    j->snaps = (ctx_marks){0};
    j->rps = (ctx_marks){0};
    ctx_obj *ex = NULL;
    atomic_fetch_add(&m->ncontexts, 1);
    int rc = idx_insert(&m->index, o, &ex);
    if (rc) {
        /* A local create of the same id got there first: that object
         * becomes the store's context (the caller goes on with it). */
        atomic_fetch_sub(&m->ncontexts, 1);
        j->snaps = o->snaps;
        j->rps = o->rps;
        o->snaps = o->rps = (ctx_marks){0};
        obj_unref(o);
        return ex;
    }
    tell_version(m, o, j->v->version, j->v->kind, true, false);
    *list_changed = true;
    obj_unref(o);
    return NULL;
}

void refresh_id(sq_ctx_mgr *m, const char *id, uint64_t known, bool *list_changed)
{
    ctx_obj *o = idx_find(&m->index, id);
    if (o && known && atomic_load(&o->pub_version) >= known && !atomic_load(&o->dirty)) {
        obj_unref(o); /* already there (our own change, or told twice) */
        return;
    }
    reload_job j = {.st = m->store, .id = id};
    sq_store_run(m->store, reload_main, &j);
    if (j.rc == -ENOENT) {
        /* Not in the store: deleted elsewhere, unless it is a create of
         * ours on its way. */
        if (o && (atomic_load(&o->pub_version) > 0 || atomic_load(&o->dirty)))
            delete_local(m, o, list_changed);
        goto out;
    }
    if (j.rc || !j.v) {
        /* The store is away: nothing changes from the old head until it
         * is read (reconnecting compares everything). */
        if (o)
            atomic_store(&o->dirty, true);
        goto out;
    }
    int64_t created = 0;
    if (o) {
        sq_mutex_lock_nocancel(&o->lock);
        created = o->head->created_at;
        sq_mutex_unlock(&o->lock);
    }
    if (o && atomic_load(&o->pub_version) > 0 &&
        (created != j.v->created_at ||
         atomic_load(&o->pub_version) > j.v->version)) {
        /* Deleted and made again elsewhere. */
        delete_local(m, o, list_changed);
        obj_unref(o);
        o = NULL;
    }
    if (!o && !(o = insert_new(m, id, &j, list_changed)))
        goto out;
    uint64_t pub = atomic_load(&o->pub_version), v = j.v->version;
    if (v == pub && !atomic_load(&o->dirty)) {
        /* Nothing new: the changes queued here were made from this very
         * version and stay valid.  Only the marks may have moved. */
        sq_mutex_lock_nocancel(&o->lock);
        merge_marks(&o->snaps, &j.snaps, true);
        merge_marks(&o->rps, &j.rps, false);
        sq_mutex_unlock(&o->lock);
        goto out;
    }
    kinds_job k = {.st = m->store, .id = id, .low = pub, .high = v};
    if (v > pub + 1) {
        sq_store_run(m->store, kinds_main, &k);
        if (k.rc) {
            /* Without the versions in between, subscribers would miss
             * some: try again later rather than skip them. */
            atomic_store(&o->dirty, true);
            free(k.ver);
            free(k.kind);
            goto out;
        }
    }
    sq_mutex_lock_nocancel(&o->lock);
    ver_unref(o->head);
    o->head = ver_ref(j.v);
    o->creating = o->deleting = false;
    merge_marks(&o->snaps, &j.snaps, true);
    merge_marks(&o->rps, &j.rps, false);
    atomic_fetch_add(&o->gen, 1);
    atomic_store(&o->dirty, false);
    sq_mutex_unlock(&o->lock);
    if (v > pub) {
        /* Every version in between, oldest first, then the newest.  They
         * are consecutive (the store's compare-and-set makes version n+1
         * only from n), so each is told even if the history no longer
         * has it: an instance that fell further behind than the history
         * depth (other instances prune it as they write) tells those
         * with kind 0 ("unknown") rather than skip them.  k.ver is newest
         * first. */
        size_t i = k.n;
        for (uint64_t x = pub + 1; x < v; x++) {
            while (i > 0 && k.ver[i - 1] < x)
                i--;
            int kind = i > 0 && k.ver[i - 1] == x ? k.kind[i - 1] : 0;
            tell_version(m, o, x, kind, x == 1, false);
        }
        obj_publish(o, ver_ref(j.v));
        tell_version(m, o, v, j.v->kind, pub == 0, false);
        if (pub == 0)
            *list_changed = true;
    }
    free(k.ver);
    free(k.kind);
out:
    if (o)
        obj_unref(o);
    ver_unref(j.v);
    marks_free(&j.snaps);
    marks_free(&j.rps);
}

/* ---------------------------------------------------------- everything */

typedef struct head {
    char *id;
    uint64_t version;
} head;

typedef struct heads_job {
    sq_store *st;
    head *h;
    size_t n, cap;
    int rc;
} heads_job;

static int heads_fn(void *arg, const char *id, uint64_t version)
{
    heads_job *j = arg;
    if (j->n == j->cap) {
        size_t cap = j->cap ? 2 * j->cap : 256;
        head *h = realloc(j->h, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        j->h = h;
        j->cap = cap;
    }
    if (!(j->h[j->n].id = strdup(id)))
        return -ENOMEM;
    j->h[j->n++].version = version;
    return 0;
}

static void *heads_main(void *arg)
{
    heads_job *j = arg;
    j->rc = j->st->vt->heads(j->st, heads_fn, j);
    return NULL;
}

static int head_cmp(const void *a, const void *b)
{
    return strcmp(((const head *)a)->id, ((const head *)b)->id);
}

void refresh_all(sq_ctx_mgr *m, bool *list_changed)
{
    heads_job j = {.st = m->store};
    sq_store_run(m->store, heads_main, &j);
    ctx_obj **all = NULL;
    size_t n = 0;
    if (j.rc == 0 && idx_all(&m->index, &all, &n) == 0) {
        qsort(j.h, j.n, sizeof *j.h, head_cmp);
        for (size_t i = 0; i < n; i++) {
            ctx_obj *o = all[i];
            head key = {.id = o->id};
            head *h = bsearch(&key, j.h, j.n, sizeof *j.h, head_cmp);
            if (!h ? atomic_load(&o->pub_version) > 0
                   : h->version != atomic_load(&o->pub_version) || atomic_load(&o->dirty))
                refresh_id(m, o->id, 0, list_changed);
            if (h)
                h->version = 0; /* known here */
        }
        for (size_t i = 0; i < j.n; i++)
            if (j.h[i].version)
                refresh_id(m, j.h[i].id, 0, list_changed);
    }
    for (size_t i = 0; i < n; i++)
        obj_unref(all[i]);
    free(all);
    for (size_t i = 0; i < j.n; i++)
        free(j.h[i].id);
    free(j.h);
}

/* ------------------------------------------------------------- requests */

void refresh_external(void *arg, const char *id, uint64_t version)
{
    sq_ctx_mgr *m = arg;
    if (id) {
        ctx_obj *o = idx_find(&m->index, id);
        bool known = o && version && atomic_load(&o->pub_version) >= version &&
                     !atomic_load(&o->dirty);
        if (o)
            obj_unref(o);
        if (known)
            return;
    }
    ctx_change *c = change_new(NULL, CTX_REFRESH, NULL);
    if (!c || (id && !(c->name = strdup(id)))) {
        if (c) {
            change_unref(c);
            change_unref(c);
        }
        return; /* out of memory: the next change of it repairs the gap */
    }
    c->at = (int64_t)version;
    if (writer_submit(m, c) != 0)
        change_unref(c);
    change_unref(c);
}
