/* Reading contexts (sq_server/ctx.h): the newest durable version from
 * memory (the published state: one reference count, no lock held while
 * the caller uses it), older versions, snapshots and recovery points from
 * the store on the blocking pool, history, diff, listing, listeners. */
#include "ctx_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "squirrel/blocking.h"
#include "sq_server/jsonpatch.h"

/* ------------------------------------------------------------------ time */

int64_t sq_ctx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sq_ctx_time_text(int64_t ms, char *buf, size_t cap)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char day[40];
    gmtime_r(&s, &tm);
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    if (snprintf(buf, cap, "%s.%03dZ", day, (int)(ms % 1000)) >= (int)cap && cap)
        buf[cap - 1] = '\0';
}

const char *sq_ctx_kind_name(int kind)
{
    return kind == SQ_CTX_DELETE ? "delete" : sq_store_kind_name(kind);
}

/* ------------------------------------------------------------ the store */

typedef struct read_job {
    sq_store *st;
    const char *id, *name;
    uint64_t version;
    int which; /* 0 version, 1 snapshot, 2 recovery point */
    sq_store_doc *d;
    int rc;
} read_job;

static void *read_main(void *arg)
{
    read_job *j = arg;
    const sq_store_vtable *vt = j->st->vt;
    j->rc = j->which == 0   ? vt->read_version(j->st, j->id, j->version, j->d)
            : j->which == 1 ? vt->read_snapshot(j->st, j->id, j->name, j->d)
                            : vt->read_recovery(j->st, j->id, j->version, j->d);
    return NULL;
}

/* A store read is short (one indexed row): it is not abandoned when the
 * caller is aborted (the job would use the caller's memory), so
 * cancellation is masked while it runs. */
static int run_read(read_job *j)
{
    sq_cancel_mask();
    int rc = sq_store_run(j->st, read_main, j);
    sq_cancel_unmask();
    return rc ? rc : j->rc;
}

int store_read_version(sq_ctx_mgr *m, const char *id, uint64_t v, sq_store_doc *d)
{
    read_job j = {.st = m->store, .id = id, .version = v, .which = 0, .d = d};
    return run_read(&j);
}

int store_read_mark(sq_ctx_mgr *m, const char *id, const char *name, uint64_t v,
                    sq_store_doc *d)
{
    read_job j = {.st = m->store, .id = id, .name = name, .version = v,
                  .which = name ? 1 : 2, .d = d};
    return run_read(&j);
}

/* --------------------------------------------------------------- reading */

void sq_ctx_info_clear(sq_ctx_info *i)
{
    json_decref(i->document);
    json_decref(i->metadata);
    i->document = i->metadata = NULL;
}

static void err_reset(sq_ctx_err *err)
{
    if (err)
        *err = (sq_ctx_err){.code = SQ_CTX_OK, .op = -1};
}

/* The published version of a visible context, or NULL (not there, not
 * yet durably created, deleted). */
static ctx_ver *visible(sq_ctx_mgr *m, const char *id, sq_ctx_err *err, int *rc)
{
    *rc = 0;
    if (!sq_ctx_valid_id(id, false)) {
        *rc = ctx_fail(err, SQ_CTX_INVALID_ID, "context id \"%.140s\" is not valid", id ? id : "");
        return NULL;
    }
    ctx_obj *o = idx_find(&m->index, id);
    ctx_ver *v = o ? obj_pub(o) : NULL;
    obj_unref(o);
    if (v && (v->version == 0 || v->deleted)) {
        ver_unref(v);
        v = NULL;
    }
    if (!v)
        *rc = ctx_fail(err, SQ_CTX_NOT_FOUND, "no context \"%s\"", id);
    return v;
}

static void fill(sq_ctx_info *out, const ctx_ver *v)
{
    out->version = v->version;
    out->document = json_incref(v->doc);
    out->metadata = json_incref(v->meta);
    out->created_at = v->created_at;
    out->updated_at = v->updated_at;
    out->kind = v->kind;
}

static int unavailable(sq_ctx_mgr *m, sq_ctx_err *err, const char *id, uint64_t want,
                       uint64_t cur)
{
    int rc = ctx_fail(err, SQ_CTX_VERSION_UNAVAILABLE,
                      "context \"%s\" has no version %llu (kept: %llu to %llu)", id,
                      (unsigned long long)want, (unsigned long long)oldest_kept(m, cur),
                      (unsigned long long)cur);
    if (err) {
        err->current_version = cur;
        err->oldest_version = oldest_kept(m, cur);
    }
    return rc;
}

/* Parses a document (and metadata) read back from the store. */
static int parse_doc(const sq_store_doc *d, sq_ctx_info *out, sq_ctx_err *err)
{
    json_error_t je;
    out->document = json_loadb(d->doc, d->doc_len, JSON_DECODE_ANY, &je);
    out->metadata = d->meta ? json_loadb(d->meta, d->meta_len, 0, &je) : NULL;
    if (!out->document || (d->meta && !out->metadata)) {
        sq_ctx_info_clear(out);
        return ctx_fail(err, SQ_CTX_STORE_FAILED, "the store holds a document that is not JSON");
    }
    out->version = d->version;
    out->updated_at = d->at;
    out->kind = d->kind;
    return 0;
}

int sq_ctx_get(sq_ctx_mgr *m, const char *id, uint64_t version, sq_ctx_info *out,
               sq_ctx_err *err)
{
    err_reset(err);
    memset(out, 0, sizeof *out);
    int rc;
    ctx_ver *v = visible(m, id, err, &rc);
    if (!v)
        return rc;
    if (version == 0 || version == v->version) {
        fill(out, v);
        ver_unref(v);
        return 0;
    }
    uint64_t cur = v->version;
    int64_t created = v->created_at;
    ver_unref(v);
    /* Only what is kept, and nothing newer than what readers see (the
     * store may be a batch ahead of the published versions). */
    if (version > cur || version < oldest_kept(m, cur))
        return unavailable(m, err, id, version, cur);
    sq_store_doc d;
    rc = store_read_version(m, id, version, &d);
    if (rc == -ENOENT)
        return unavailable(m, err, id, version, cur);
    if (rc)
        return ctx_fail(err, SQ_CTX_STORE_FAILED, "reading version %llu: %s",
                        (unsigned long long)version, sq_strerror(rc));
    rc = parse_doc(&d, out, err);
    sq_store_doc_free(&d);
    out->created_at = created;
    return rc;
}

int sq_ctx_peek(sq_ctx_mgr *m, const char *id, json_t **doc, uint64_t *version)
{
    int rc;
    ctx_ver *v = visible(m, id, NULL, &rc);
    if (!v)
        return rc;
    if (doc)
        *doc = json_incref(v->doc);
    if (version)
        *version = v->version;
    ver_unref(v);
    return 0;
}

int sq_ctx_get_mark(sq_ctx_mgr *m, const char *id, const char *name, uint64_t rp,
                    sq_ctx_info *out, sq_ctx_err *err)
{
    err_reset(err);
    memset(out, 0, sizeof *out);
    if (name && !sq_ctx_valid_id(name, true))
        return ctx_fail(err, SQ_CTX_SNAPSHOT_NOT_FOUND, "no snapshot \"%.80s\"", name);
    int rc;
    ctx_ver *v = visible(m, id, err, &rc);
    if (!v)
        return rc;
    int64_t created = v->created_at;
    ver_unref(v);
    ctx_obj *o = idx_find(&m->index, id);
    bool durable = false;
    if (o) {
        sq_mutex_lock_nocancel(&o->lock);
        ctx_mark *k = name ? marks_find_name(&o->snaps, name) : marks_find_version(&o->rps, rp);
        durable = k && k->durable;
        sq_mutex_unlock(&o->lock);
        obj_unref(o);
    }
    sq_store_doc d;
    rc = durable ? store_read_mark(m, id, name, rp, &d) : -ENOENT;
    if (rc == -ENOENT)
        return name ? ctx_fail(err, SQ_CTX_SNAPSHOT_NOT_FOUND,
                               "context \"%s\" has no snapshot \"%s\"", id, name)
                    : ctx_fail(err, SQ_CTX_RECOVERY_POINT_NOT_FOUND,
                               "context \"%s\" has no recovery point of version %llu", id,
                               (unsigned long long)rp);
    if (rc)
        return ctx_fail(err, SQ_CTX_STORE_FAILED, "reading: %s", sq_strerror(rc));
    rc = parse_doc(&d, out, err);
    sq_store_doc_free(&d);
    out->created_at = created;
    return rc;
}

static json_t *time_json(int64_t ms)
{
    char t[40];
    sq_ctx_time_text(ms, t, sizeof t);
    return json_string(t);
}

int sq_ctx_marks(sq_ctx_mgr *m, const char *id, json_t **snapshots, json_t **recovery,
                 sq_ctx_err *err)
{
    err_reset(err);
    int rc;
    ctx_ver *v = visible(m, id, err, &rc);
    if (!v)
        return rc;
    ver_unref(v);
    ctx_obj *o = idx_find(&m->index, id);
    if (!o)
        return ctx_fail(err, SQ_CTX_NOT_FOUND, "no context \"%s\"", id);
    json_t *s = json_array(), *r = json_array();
    sq_mutex_lock_nocancel(&o->lock);
    /* Copied out under the lock; the JSON is built after it. */
    size_t ns = o->snaps.n, nr = o->rps.n;
    ctx_mark *cs = malloc((ns + 1) * sizeof *cs), *cr = malloc((nr + 1) * sizeof *cr);
    if (cs && cr) {
        memcpy(cs, o->snaps.v, ns * sizeof *cs);
        memcpy(cr, o->rps.v, nr * sizeof *cr);
        for (size_t i = 0; i < ns; i++)
            cs[i].name = strdup(cs[i].name);
    }
    sq_mutex_unlock(&o->lock);
    obj_unref(o);
    for (size_t i = 0; cs && cr && i < ns; i++) {
        if (cs[i].durable && cs[i].name)
            json_array_append_new(s, json_pack("{s:s,s:I,s:o}", "name", cs[i].name, "version",
                                               (json_int_t)cs[i].version, "created_at",
                                               time_json(cs[i].at)));
        free(cs[i].name);
    }
    for (size_t i = 0; cs && cr && i < nr; i++)
        if (cr[i].durable)
            json_array_append_new(r, json_pack("{s:I,s:o,s:s}", "version",
                                               (json_int_t)cr[i].version, "created_at",
                                               time_json(cr[i].at), "reason", cr[i].reason));
    bool ok = cs && cr && s && r;
    free(cs);
    free(cr);
    if (!ok) {
        json_decref(s);
        json_decref(r);
        return ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
    }
    if (snapshots)
        *snapshots = s;
    else
        json_decref(s);
    if (recovery)
        *recovery = r;
    else
        json_decref(r);
    return 0;
}

/* ---------------------------------------------------------------- history */

typedef struct hist_arg {
    json_t *entries;
    uint64_t last;
} hist_arg;

static int hist_one(void *arg, const sq_store_hist *h)
{
    hist_arg *a = arg;
    a->last = h->version;
    return json_array_append_new(a->entries,
                                 json_pack("{s:I,s:o,s:s,s:s}", "version",
                                           (json_int_t)h->version, "at", time_json(h->at),
                                           "kind", sq_store_kind_name(h->kind), "by",
                                           h->actor)) == 0
               ? 0
               : -ENOMEM;
}

typedef struct hist_job {
    sq_store *st;
    const char *id;
    uint64_t low, high;
    size_t limit;
    hist_arg *a;
    int rc;
} hist_job;

static void *hist_main(void *arg)
{
    hist_job *j = arg;
    j->rc = j->st->vt->history(j->st, j->id, j->low, j->high, j->limit, hist_one, j->a);
    return NULL;
}

int sq_ctx_history(sq_ctx_mgr *m, const char *id, uint64_t before, size_t limit,
                   json_t **entries, uint64_t *next, sq_ctx_err *err)
{
    err_reset(err);
    *entries = NULL;
    *next = 0;
    int rc;
    ctx_ver *v = visible(m, id, err, &rc);
    if (!v)
        return rc;
    uint64_t cur = v->version;
    ver_unref(v);
    uint64_t low = oldest_kept(m, cur) - 1;
    uint64_t high = before && before - 1 < cur ? before - 1 : cur;
    hist_arg a = {.entries = json_array()};
    if (!a.entries)
        return ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
    if (limit == 0)
        limit = 100;
    hist_job j = {.st = m->store, .id = id, .low = low, .high = high, .limit = limit, .a = &a};
    if (high > low) {
        sq_cancel_mask();
        rc = sq_store_run(j.st, hist_main, &j);
        sq_cancel_unmask();
        if (rc == 0)
            rc = j.rc;
    }
    if (rc) {
        json_decref(a.entries);
        return ctx_fail(err, SQ_CTX_STORE_FAILED, "reading the history: %s", sq_strerror(rc));
    }
    if (json_array_size(a.entries) == limit && a.last > low + 1)
        *next = a.last;
    *entries = a.entries;
    return 0;
}

int sq_ctx_diff(sq_ctx_mgr *m, const char *id, uint64_t from, uint64_t to, json_t **patch,
                sq_ctx_err *err)
{
    *patch = NULL;
    if (from == 0 || to == 0)
        return ctx_fail(err, SQ_CTX_INVALID_ARGUMENT, "versions start at 1");
    sq_ctx_info a, b;
    int rc = sq_ctx_get(m, id, from, &a, err);
    if (rc)
        return rc;
    if ((rc = sq_ctx_get(m, id, to, &b, err)) != 0) {
        sq_ctx_info_clear(&a);
        return rc;
    }
    /* The patch's values would be shared subtrees of the versions' trees;
     * the caller gets a tree of its own, since members are released
     * inside libjansson, where ThreadSanitizer cannot see the reference
     * counts, and the last release of a shared tree must be visible. */
    json_t *d = sq_json_diff(a.document, b.document);
    *patch = d ? json_deep_copy(d) : NULL;
    json_decref(d);
    sq_ctx_info_clear(&a);
    sq_ctx_info_clear(&b);
    return *patch ? 0 : ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
}

/* ------------------------------------------------------------------ list */

typedef struct list_arg {
    json_t *items;
    size_t limit;
    char *next;
    int rc;
} list_arg;

static int list_one(void *arg, ctx_obj *o)
{
    list_arg *a = arg;
    ctx_ver *v = obj_pub(o);
    if (v->version == 0 || v->deleted) {
        ver_unref(v);
        return 0;
    }
    if (json_array_size(a->items) == a->limit) {
        /* One more is there: the page ends at the last one listed. */
        json_t *last = json_array_get(a->items, a->limit - 1);
        a->next = strdup(json_string_value(json_object_get(last, "id")));
        ver_unref(v);
        if (!a->next)
            a->rc = -ENOMEM;
        return 1;
    }
    /* A copy of the metadata: see sq_ctx_diff. */
    json_t *item = json_pack("{s:s,s:I,s:o,s:o,s:o}", "id", o->id, "version",
                             (json_int_t)v->version, "created_at", time_json(v->created_at),
                             "updated_at", time_json(v->updated_at), "metadata",
                             json_deep_copy(v->meta));
    ver_unref(v);
    if (!item || json_array_append_new(a->items, item) != 0) {
        a->rc = -ENOMEM;
        return 1;
    }
    return 0;
}

int sq_ctx_list(sq_ctx_mgr *m, const char *prefix, const char *after, size_t limit,
                json_t **items, char **next, sq_ctx_err *err)
{
    err_reset(err);
    *items = NULL;
    *next = NULL;
    if (prefix && strlen(prefix) > SQ_CTX_ID_MAX)
        return ctx_fail(err, SQ_CTX_INVALID_ARGUMENT, "the prefix is longer than an id");
    list_arg a = {.items = json_array(), .limit = limit ? limit : 100};
    if (!a.items)
        return ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
    idx_walk(&m->index, prefix && *prefix ? prefix : NULL, after, list_one, &a);
    if (a.rc) {
        json_decref(a.items);
        free(a.next);
        return ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
    }
    *items = a.items;
    *next = a.next;
    return 0;
}

size_t sq_ctx_count(sq_ctx_mgr *m)
{
    return atomic_load(&m->ncontexts);
}

/* -------------------------------------------------------------- listeners */

struct sq_ctx_listener {
    ctx_obj *obj;
    sq_state_listener *l;
};

int sq_ctx_listen(sq_ctx_mgr *m, const char *id, const sq_ctx_listen_opts *o,
                  sq_ctx_listener **out, uint64_t *start, sq_ctx_err *err)
{
    err_reset(err);
    *out = NULL;
    int rc;
    ctx_ver *v = visible(m, id, err, &rc);
    if (!v)
        return rc;
    ver_unref(v);
    sq_ctx_listener *x = calloc(1, sizeof *x);
    ctx_obj *obj = idx_find(&m->index, id);
    if (!x || !obj) {
        free(x);
        obj_unref(obj);
        return !obj ? ctx_fail(err, SQ_CTX_NOT_FOUND, "no context \"%s\"", id)
                    : ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
    }
    sq_state_listen_opts lo = {
        .capacity = o && o->capacity ? o->capacity : 64,
        .on_full = o && o->disconnect_when_full ? SQ_STATE_DISCONNECT : SQ_STATE_DROP_OLDEST,
    };
    sq_state_snap *s;
    sq_cancel_mask();
    rc = sq_state_listen(&obj->pub, &lo, &x->l, &s);
    sq_cancel_unmask();
    if (rc) {
        obj_unref(obj);
        free(x);
        return ctx_fail(err, rc == -ENOMEM ? SQ_CTX_NO_MEMORY : SQ_CTX_INVALID_ARGUMENT,
                        "cannot listen: %s", sq_strerror(rc));
    }
    const ctx_ver *sv = sq_state_snap_value(s);
    bool gone = sv->deleted || sv->version == 0;
    if (start)
        *start = sv->version;
    sq_state_snap_release(s);
    if (gone) { /* deleted between the look and the registration */
        sq_state_unlisten(x->l);
        obj_unref(obj);
        free(x);
        return ctx_fail(err, SQ_CTX_NOT_FOUND, "no context \"%s\"", id);
    }
    x->obj = obj;
    *out = x;
    return 0;
}

int sq_ctx_next(sq_ctx_listener *l, int64_t deadline, uint64_t *version, bool *deleted)
{
    sq_state_snap *s;
    int rc = sq_state_recv_until(l->l, &s, deadline);
    if (rc)
        return rc;
    const ctx_ver *v = sq_state_snap_value(s);
    *deleted = v->deleted;
    *version = v->deleted ? v->version - 1 : v->version;
    sq_state_snap_release(s);
    return 0;
}

uint64_t sq_ctx_listener_dropped(sq_ctx_listener *l)
{
    return sq_state_listener_dropped(l->l);
}

void sq_ctx_unlisten(sq_ctx_listener *l)
{
    if (!l)
        return;
    sq_state_unlisten(l->l);
    obj_unref(l->obj);
    free(l);
}
