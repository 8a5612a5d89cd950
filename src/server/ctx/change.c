/* Changing contexts (sq_server/ctx.h): create, update, delete, snapshots,
 * recovery points, restore.
 *
 * Every change follows the same steps (ctx_int.h explains head and pub):
 *  1. Read the context's newest version (head) under its lock, and let
 *     the lock go.
 *  2. Compute the next version from it with no lock held (a patch of a
 *     large document takes a while; nobody waits for it).
 *  3. Take the lock again.  If head is still the version read, install the
 *     next one as head and queue it to the writer, still under the lock,
 *     so a context's versions reach the writer in order; else go back to
 *     1 (another change came first).  After a few lost rounds the patch is
 *     computed under the lock, so a hot context cannot starve a change.
 *  4. Wait, holding nothing, for the writer to commit and acknowledge it.
 * A compare-and-set is checked in step 1 against head.  When head is not
 * yet durable, the mismatch is reported only once it is (settle()), so
 * the version an error names is one a reader can see. */
#include "ctx_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_server/jsonpatch.h"

/* Attempts at computing a change without the lock before it is computed
 * under it (a context changed by many at once). */
#define LOCKLESS_ATTEMPTS 3
/* History is pruned every this many versions (one range delete). */
#define PRUNE_EVERY 32

/* ---------------------------------------------------------------- errors */

static const char *const code_names[SQ_CTX_NCODES] = {
    [SQ_CTX_OK] = "ok",
    [SQ_CTX_INVALID_ID] = "invalid_id",
    [SQ_CTX_INVALID_ARGUMENT] = "invalid_argument",
    [SQ_CTX_NOT_FOUND] = "not_found",
    [SQ_CTX_ALREADY_EXISTS] = "already_exists",
    [SQ_CTX_VERSION_MISMATCH] = "version_mismatch",
    [SQ_CTX_INVALID_PATCH] = "invalid_patch",
    [SQ_CTX_PATCH_FAILED] = "patch_failed",
    [SQ_CTX_TEST_FAILED] = "test_failed",
    [SQ_CTX_TOO_LARGE] = "too_large",
    [SQ_CTX_TOO_MANY_CONTEXTS] = "too_many_contexts",
    [SQ_CTX_TOO_MANY_SNAPSHOTS] = "too_many_snapshots",
    [SQ_CTX_SNAPSHOT_EXISTS] = "snapshot_exists",
    [SQ_CTX_SNAPSHOT_NOT_FOUND] = "snapshot_not_found",
    [SQ_CTX_RECOVERY_POINT_NOT_FOUND] = "recovery_point_not_found",
    [SQ_CTX_VERSION_UNAVAILABLE] = "version_unavailable",
    [SQ_CTX_STORE_FAILED] = "store_failed",
    [SQ_CTX_STOPPING] = "stopping",
    [SQ_CTX_CANCELLED] = "cancelled",
    [SQ_CTX_NO_MEMORY] = "no_memory",
};

const char *sq_ctx_code_name(int code)
{
    return code >= 0 && code < SQ_CTX_NCODES && code_names[code] ? code_names[code]
                                                                  : "error";
}

int ctx_errno(int code)
{
    switch (code) {
    case SQ_CTX_OK: return 0;
    case SQ_CTX_NOT_FOUND: case SQ_CTX_PATCH_FAILED: case SQ_CTX_SNAPSHOT_NOT_FOUND:
    case SQ_CTX_RECOVERY_POINT_NOT_FOUND: return -ENOENT;
    case SQ_CTX_ALREADY_EXISTS: case SQ_CTX_SNAPSHOT_EXISTS: return -EEXIST;
    case SQ_CTX_VERSION_MISMATCH: return -ESTALE;
    case SQ_CTX_TEST_FAILED: return -EDOM;
    case SQ_CTX_TOO_LARGE: return -EFBIG;
    case SQ_CTX_TOO_MANY_CONTEXTS: case SQ_CTX_TOO_MANY_SNAPSHOTS: return -ENOSPC;
    case SQ_CTX_VERSION_UNAVAILABLE: return -ENODATA;
    case SQ_CTX_STORE_FAILED: return -EIO;
    case SQ_CTX_STOPPING: return -ESHUTDOWN;
    case SQ_CTX_CANCELLED: return -ECANCELED;
    case SQ_CTX_NO_MEMORY: return -ENOMEM;
    default: return -EINVAL;
    }
}

int ctx_fail(sq_ctx_err *err, int code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return ctx_errno(code);
}

static void err_reset(sq_ctx_err *err)
{
    if (err)
        *err = (sq_ctx_err){.code = SQ_CTX_OK, .op = -1};
}

/* ----------------------------------------------------------------- ids */

bool sq_ctx_valid_id(const char *id, bool name)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > (name ? SQ_CTX_NAME_MAX : SQ_CTX_ID_MAX))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || !strchr("._:~-", c)))
            return false;
    }
    return true;
}

static int bad_id(sq_ctx_err *err, const char *id, bool name)
{
    return ctx_fail(err, name ? SQ_CTX_INVALID_ARGUMENT : SQ_CTX_INVALID_ID,
                    "%s \"%.140s\" is not valid: 1 to %d characters of A-Z a-z 0-9 . _ : ~ -, "
                    "starting with a letter or a digit",
                    name ? "snapshot name" : "context id", id ? id : "",
                    name ? SQ_CTX_NAME_MAX : SQ_CTX_ID_MAX);
}

/* Refuses changes once stopping or broken. */
static int refused(sq_ctx_mgr *m, sq_ctx_err *err)
{
    char why[200];
    if (m->shared && sq_store_status(m->store, why, sizeof why) != 0)
        return ctx_fail(err, SQ_CTX_STORE_FAILED, "%s", why);
    if (atomic_load(&m->broken)) {
        /* Past retry_at a change is let through: it is the store's trial
         * (writer.c), and clears this if it commits. */
        int64_t left = atomic_load(&m->retry_at) - sq_now();
        char msg[sizeof m->broken_msg];
        if (atomic_load(&m->fatal)) {
            ctx_broken_msg(m, msg, sizeof msg);
            return ctx_fail(err, SQ_CTX_STORE_FAILED,
                            "the store failed (%s): changes are refused until squirreld "
                            "restarts", msg);
        }
        if (left > 0) {
            ctx_broken_msg(m, msg, sizeof msg);
            return ctx_fail(err, SQ_CTX_STORE_FAILED,
                            "the store failed (%s): changes are refused; it is tried again "
                            "within %lld s", msg, (long long)((left + SQ_SEC - 1) / SQ_SEC));
        }
    }
    if (atomic_load(&m->stopping))
        return ctx_fail(err, SQ_CTX_STOPPING, "the server is stopping");
    return 0;
}

static int not_found(sq_ctx_err *err, const char *id)
{
    return ctx_fail(err, SQ_CTX_NOT_FOUND, "no context \"%s\"", id);
}

static ctx_obj *find(sq_ctx_mgr *m, const char *id, sq_ctx_err *err, int *rc)
{
    *rc = 0;
    if (!sq_ctx_valid_id(id, false)) {
        *rc = bad_id(err, id, false);
        return NULL;
    }
    ctx_obj *o = idx_find(&m->index, id);
    if (!o)
        *rc = not_found(err, id);
    return o;
}

/* ------------------------------------------------------------- settling */

int settle(sq_ctx_mgr *m, ctx_obj *o, uint64_t target, uint64_t gen)
{
    sq_watch_rx rx;
    sq_watch_subscribe(&m->settled, &rx);
    int rc = 0;
    while (atomic_load_explicit(&o->pub_version, memory_order_acquire) < target &&
           !atomic_load(&o->gone) && !atomic_load(&m->broken) &&
           atomic_load(&o->gen) == gen) {
        rc = sq_watch_changed(&rx);
        if (rc) {
            rc = rc == -EPIPE ? 0 : rc;
            break;
        }
        uint64_t epoch;
        sq_watch_read(&rx, &epoch, NULL);
    }
    sq_watch_rx_drop(&rx);
    return rc;
}

/* Reports a version mismatch with `current` (the head seen, which is
 * waited for until durable first). */
static int mismatch(sq_ctx_mgr *m, ctx_obj *o, uint64_t expected, uint64_t current,
                    uint64_t gen, sq_ctx_err *err)
{
    sq_counter_inc(m->m_conflicts);
    if (atomic_load(&o->pub_version) < current) {
        if (settle(m, o, current, gen) != 0)
            return ctx_fail(err, SQ_CTX_CANCELLED, "cancelled");
        if (atomic_load(&o->gone))
            return not_found(err, o->id);
        current = atomic_load(&o->pub_version);
    }
    int rc = ctx_fail(err, SQ_CTX_VERSION_MISMATCH,
                      "context \"%s\" is at version %llu, not %llu", o->id,
                      (unsigned long long)current, (unsigned long long)expected);
    if (err)
        err->current_version = current;
    return rc;
}

/* Waits for the pending change that makes o `creating` or `deleting` (the
 * caller has let the lock go): 0 to try again, or an error to return. */
static int wait_pending(sq_ctx_mgr *m, ctx_obj *o, bool deleting, uint64_t gen,
                        sq_ctx_err *err)
{
    if (settle(m, o, deleting ? UINT64_MAX : 1, gen) != 0)
        return ctx_fail(err, SQ_CTX_CANCELLED, "cancelled");
    /* A shared store may have replaced the pending change by what another
     * instance did (gen): then look again. */
    if (atomic_load(&o->gone) || (deleting && atomic_load(&o->gen) == gen))
        return not_found(err, o->id);
    return refused(m, err);
}

/* Takes o's lock once no change is pending that makes o `creating` or
 * `deleting`, and the manager accepts changes: 0 with the lock held, or
 * an error (cancelled, not found, refused) with nothing held.  Waits (for
 * the lock and for the pending change); cancel-safe: on cancellation it
 * holds nothing and returns SQ_CTX_CANCELLED's code. */
static int lock_settled(sq_ctx_mgr *m, ctx_obj *o, sq_ctx_err *err)
{
    for (;;) {
        if (sq_mutex_lock(&o->lock) != 0)
            return ctx_fail(err, SQ_CTX_CANCELLED, "cancelled");
        if (o->creating || o->deleting) {
            bool del = o->deleting;
            uint64_t g = atomic_load(&o->gen);
            sq_mutex_unlock(&o->lock);
            int rc = wait_pending(m, o, del, g, err);
            if (rc)
                return rc;
            continue;
        }
        int rc = refused(m, err);
        if (rc)
            sq_mutex_unlock(&o->lock);
        return rc;
    }
}

/* The acknowledgement of c, as an error code. */
static int acknowledged(ctx_change *c, sq_ctx_mgr *m, sq_ctx_err *err)
{
    int rc = change_wait(c);
    if (rc == 0)
        return 0;
    if (rc == -ECANCELED)
        return ctx_fail(err, SQ_CTX_CANCELLED,
                        "cancelled while waiting for the commit (the change may still be "
                        "committed)");
    if (rc == -ESHUTDOWN)
        return ctx_fail(err, SQ_CTX_STOPPING, "the server is stopping");
    if (rc == -ESTALE)
        return rc; /* shared stores: the caller tries again */
    if (m->shared)
        return ctx_fail(err, SQ_CTX_STORE_FAILED,
                        "the commit failed: the database did not answer (the change may or "
                        "may not have been made; read the context again)");
    char msg[sizeof m->broken_msg];
    ctx_broken_msg(m, msg, sizeof msg);
    return ctx_fail(err, SQ_CTX_STORE_FAILED, "the store failed: %s", msg);
}

/* Shared stores: one more round after a change was found stale; an error
 * once it has happened too often in a row (the database keeps failing). */
#define STALE_ROUNDS 1000
static int stale_again(sq_ctx_mgr *m, int *rounds, sq_ctx_err *err)
{
    if (++*rounds > STALE_ROUNDS)
        return ctx_fail(err, SQ_CTX_STORE_FAILED,
                        "the change could not be committed: the store kept refusing it");
    return refused(m, err);
}

/* Shared stores: has the writer read id again (at least up to `known`),
 * and waits for that. */
static int refresh_wait(sq_ctx_mgr *m, const char *id, uint64_t known, sq_ctx_err *err)
{
    ctx_change *c = change_new(NULL, CTX_REFRESH, NULL);
    if (!c || !(c->name = strdup(id))) {
        if (c) {
            change_unref(c);
            change_unref(c);
        }
        return ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
    }
    c->at = (int64_t)known;
    int rc = writer_submit(m, c);
    if (rc) {
        change_unref(c);
        change_unref(c);
        return ctx_fail(err, SQ_CTX_STOPPING, "the server is stopping");
    }
    rc = change_wait(c);
    change_unref(c);
    return rc == -ECANCELED ? ctx_fail(err, SQ_CTX_CANCELLED, "cancelled") : 0;
}

/* ---------------------------------------------------------------- versions */

static char *dup_actor(const char *actor)
{
    return strdup(actor ? actor : "");
}

/* A version's metadata shared by the next one. */
static int share_meta(ctx_ver *next, const ctx_ver *base)
{
    next->meta = json_incref(base->meta);
    next->meta_len = base->meta_len;
    next->meta_text = malloc(base->meta_len + 1);
    if (!next->meta_text)
        return -ENOMEM;
    memcpy(next->meta_text, base->meta_text, base->meta_len + 1);
    return 0;
}

/* Checks metadata given by a caller: an object within the limit. */
static int check_meta(sq_ctx_mgr *m, json_t *meta, sq_ctx_err *err)
{
    if (!json_is_object(meta))
        return ctx_fail(err, SQ_CTX_INVALID_ARGUMENT, "metadata must be a JSON object");
    if (sq_json_text_size(meta, m->o.max_metadata_bytes) > m->o.max_metadata_bytes) {
        int rc = ctx_fail(err, SQ_CTX_TOO_LARGE, "metadata larger than %zu bytes",
                          m->o.max_metadata_bytes);
        if (err)
            err->limit = m->o.max_metadata_bytes;
        return rc;
    }
    return 0;
}

static int too_large(sq_ctx_mgr *m, sq_ctx_err *err)
{
    int rc = ctx_fail(err, SQ_CTX_TOO_LARGE, "the document would be larger than %zu bytes",
                      m->o.max_document_bytes);
    if (err)
        err->limit = m->o.max_document_bytes;
    return rc;
}

/* Computes the next document from base; fills next (doc, text, meta). */
typedef int (*compute_fn)(sq_ctx_mgr *m, const ctx_ver *base, ctx_ver *next, void *arg,
                          sq_ctx_err *err);

typedef struct patch_arg {
    int kind;
    json_t *patch;
    json_t *meta;   /* new metadata or NULL */
} patch_arg;

static int compute_patch(sq_ctx_mgr *m, const ctx_ver *base, ctx_ver *next, void *arg,
                         sq_ctx_err *err)
{
    patch_arg *p = arg;
    json_t *doc = NULL;
    int rc = 0;
    if (p->kind == SQ_CTX_REPLACE || p->kind == SQ_CTX_RESTORE) {
        doc = p->kind == SQ_CTX_RESTORE ? json_incref(p->patch) : json_deep_copy(p->patch);
        rc = doc ? 0 : -ENOMEM;
    } else if (p->kind == SQ_CTX_MERGE) {
        rc = sq_json_merge_patch(base->doc, p->patch, &doc);
    } else {
        sq_jpatch_err je;
        rc = sq_json_patch_apply(base->doc, p->patch, m->o.max_document_bytes, &doc, &je);
        if (rc && rc != -ENOMEM) {
            int code = rc == -EDOM     ? SQ_CTX_TEST_FAILED
                       : rc == -EFBIG  ? SQ_CTX_TOO_LARGE
                       : rc == -ENOENT ? SQ_CTX_PATCH_FAILED
                                       : SQ_CTX_INVALID_PATCH;
            rc = ctx_fail(err, code, "%s", je.message);
            if (err) {
                err->op = je.op;
                if (code == SQ_CTX_TOO_LARGE)
                    err->limit = m->o.max_document_bytes;
            }
            return rc;
        }
    }
    if (rc)
        return ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
    rc = ver_set_doc(next, doc, m->o.max_document_bytes);
    if (rc == -EFBIG)
        return too_large(m, err);
    if (rc == 0)
        rc = p->meta ? ver_set_meta(next, json_deep_copy(p->meta), 0) : share_meta(next, base);
    return rc ? ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory") : 0;
}

static int64_t later(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

uint64_t oldest_kept(const sq_ctx_mgr *m, uint64_t current)
{
    return current > m->o.history_depth ? current - m->o.history_depth + 1 : 1;
}

/* The next version of a PUT, with its recovery point and pruning. */
static ctx_change *put_change(sq_ctx_mgr *m, ctx_obj *o, ctx_ver *next, int *rc)
{
    ctx_change *c = change_new(o, SQ_STORE_PUT, ver_ref(next));
    if (!c) {
        *rc = -ENOMEM;
        return NULL;
    }
    uint64_t v = next->version;
    if (v % PRUNE_EVERY == 0 && v > m->o.history_depth)
        c->prune_below = oldest_kept(m, v);
    if (v % m->o.recovery_every == 0 &&
        marks_add(&o->rps, NULL, v, next->updated_at, "auto", false) == 0)
        c->auto_rp = true;
    *rc = 0;
    return c;
}

/* Steps 1-4 of the top comment for a change of the document of o. */
static int change_doc(sq_ctx_mgr *m, ctx_obj *o, uint64_t expected, int kind,
                      compute_fn fn, void *arg, const char *actor, uint64_t *version,
                      sq_ctx_err *err)
{
    bool refreshed = false;
    int stale = 0;
    for (int attempt = 0;; attempt++) {
        int rc = lock_settled(m, o, err);
        if (rc)
            return rc;
        ctx_ver *base = ver_ref(o->head);
        if (expected && expected != base->version) {
            uint64_t g = atomic_load(&o->gen);
            sq_mutex_unlock(&o->lock);
            uint64_t cur = base->version;
            ver_unref(base);
            if (m->shared && expected > cur && !refreshed) {
                /* Another instance is ahead of what we know: read it. */
                refreshed = true;
                if ((rc = refresh_wait(m, o->id, expected, err)) != 0)
                    return rc;
                continue;
            }
            return mismatch(m, o, expected, cur, g, err);
        }
        bool locked = attempt >= LOCKLESS_ATTEMPTS;
        if (!locked)
            sq_mutex_unlock(&o->lock);

        ctx_ver *next = ver_new();
        if (next) {
            next->version = base->version + 1;
            next->created_at = base->created_at;
            next->updated_at = later(sq_ctx_now_ms(), base->updated_at);
            next->kind = kind;
            next->actor = dup_actor(actor);
        }
        rc = !next || !next->actor ? ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory")
                                   : fn(m, base, next, arg, err);
        if (!rc && !locked) {
            if (sq_mutex_lock(&o->lock) != 0) {
                rc = ctx_fail(err, SQ_CTX_CANCELLED, "cancelled");
            } else if (o->head != base || o->creating || o->deleting) {
                /* Another change came first: compute again from it. */
                sq_mutex_unlock(&o->lock);
                ver_unref(next);
                ver_unref(base);
                sq_counter_inc(m->m_retries);
                continue;
            }
            locked = rc == 0;
        }
        if (rc) {
            if (locked)
                sq_mutex_unlock(&o->lock);
            ver_unref(next);
            ver_unref(base);
            return rc;
        }
        /* Locked, head == base: install and queue, in version order. */
        ctx_change *c = put_change(m, o, next, &rc);
        if (c && (rc = writer_submit(m, c)) != 0) {
            if (c->auto_rp)
                marks_remove(&o->rps, (size_t)(marks_find_version(&o->rps, next->version) -
                                               o->rps.v));
            change_unref(c);
            change_unref(c);
            c = NULL;
        }
        if (c) {
            ver_unref(o->head);
            o->head = next; /* our reference */
            next = NULL;
        }
        sq_mutex_unlock(&o->lock);
        ver_unref(next);
        ver_unref(base);
        if (!c)
            return rc == -ESHUTDOWN ? ctx_fail(err, SQ_CTX_STOPPING, "the server is stopping")
                                    : ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
        uint64_t made = c->ver->version;
        rc = acknowledged(c, m, err);
        change_unref(c);
        if (rc == -ESTALE) {
            /* Another instance came first: compute again from its version
             * (the writer has read it), or look the id up again. */
            if (atomic_load(&o->gone))
                return -EAGAIN;
            if ((rc = stale_again(m, &stale, err)) != 0)
                return rc;
            continue;
        }
        if (rc == 0 && version)
            *version = made;
        return rc;
    }
}

/* ----------------------------------------------------------------- create */

static int create_once(sq_ctx_mgr *m, const char *id, json_t *doc, json_t *meta,
                       const char *actor, int64_t *created_at, sq_ctx_err *err)
{
    err_reset(err);
    if (!sq_ctx_valid_id(id, false))
        return bad_id(err, id, false);
    if (!doc)
        return ctx_fail(err, SQ_CTX_INVALID_ARGUMENT, "a document is required");
    int rc = refused(m, err);
    if (rc || (meta && (rc = check_meta(m, meta, err)) != 0))
        return rc;
    ctx_ver *v = ver_new();
    if (!v)
        return ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
    v->version = 1;
    v->created_at = v->updated_at = sq_ctx_now_ms();
    v->kind = SQ_CTX_CREATE;
    v->actor = dup_actor(actor);
    rc = ver_set_doc(v, json_deep_copy(doc), m->o.max_document_bytes);
    if (rc == 0)
        rc = ver_set_meta(v, meta ? json_deep_copy(meta) : json_object(), 0);
    if (rc || !v->actor) {
        ver_unref(v);
        return rc == -EFBIG ? too_large(m, err) : ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
    }
    /* A place among the contexts, taken before it shows in the index. */
    if (atomic_fetch_add(&m->ncontexts, 1) >= m->o.max_contexts) {
        atomic_fetch_sub(&m->ncontexts, 1);
        ver_unref(v);
        rc = ctx_fail(err, SQ_CTX_TOO_MANY_CONTEXTS, "there are %zu contexts already (the limit)",
                      m->o.max_contexts);
        if (err)
            err->limit = m->o.max_contexts;
        return rc;
    }
    ctx_obj *o = obj_new(id, v, false);
    if (!o) {
        atomic_fetch_sub(&m->ncontexts, 1);
        ver_unref(v);
        return ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
    }
    for (;;) {
        ctx_obj *ex;
        rc = idx_insert(&m->index, o, &ex);
        if (rc != -EEXIST)
            break;
        /* There already: durably (an error), or being created or deleted
         * (wait for that, then look again). */
        sq_mutex_lock_nocancel(&ex->lock);
        bool del = ex->deleting;
        bool pending = ex->creating || del || atomic_load(&ex->pub_version) == 0;
        uint64_t g = atomic_load(&ex->gen);
        sq_mutex_unlock(&ex->lock);
        if (pending) {
            int s = settle(m, ex, del ? UINT64_MAX : 1, g);
            obj_unref(ex);
            if (s) {
                rc = ctx_fail(err, SQ_CTX_CANCELLED, "cancelled");
                goto undo;
            }
            if ((rc = refused(m, err)) != 0)
                goto undo;
            continue;
        }
        uint64_t cur = atomic_load(&ex->pub_version);
        obj_unref(ex);
        rc = ctx_fail(err, SQ_CTX_ALREADY_EXISTS, "context \"%s\" exists (version %llu)", id,
                      (unsigned long long)cur);
        if (err)
            err->current_version = cur;
        goto undo;
    }
    if (rc) {
        rc = ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
        goto undo;
    }
    /* In the index: queue the create, and from now on others may change
     * it (they queue after it). */
    sq_mutex_lock_nocancel(&o->lock);
    ctx_change *c = change_new(o, SQ_STORE_CREATE, ver_ref(v));
    if (c && m->o.recovery_every == 1 &&
        marks_add(&o->rps, NULL, 1, v->created_at, "auto", false) == 0)
        c->auto_rp = true;
    rc = c ? writer_submit(m, c) : -ENOMEM;
    o->creating = false;
    sq_mutex_unlock(&o->lock);
    if (rc) {
        /* Never queued: take it out again, and wake whoever waits on it. */
        if (c) {
            change_unref(c);
            change_unref(c);
        }
        atomic_store(&o->gone, true);
        idx_remove(&m->index, o);
        atomic_fetch_sub(&m->ncontexts, 1);
        uint64_t e = 0;
        sq_watch_send(&m->settled, &e);
        obj_unref(o);
        return rc == -ESHUTDOWN ? ctx_fail(err, SQ_CTX_STOPPING, "the server is stopping")
                                : ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
    }
    obj_unref(o);
    rc = acknowledged(c, m, err);
    change_unref(c);
    if (rc == 0 && created_at)
        *created_at = v->created_at;
    return rc;
undo:
    atomic_fetch_sub(&m->ncontexts, 1);
    obj_unref(o);
    return rc;
}

/* Shared stores: a create that another instance's create of the same id
 * beat is tried again (and then finds the context there). */
int sq_ctx_create(sq_ctx_mgr *m, const char *id, json_t *doc, json_t *meta,
                  const char *actor, int64_t *created_at, sq_ctx_err *err)
{
    int rc, stale = 0;
    while ((rc = create_once(m, id, doc, meta, actor, created_at, err)) == -ESTALE)
        if ((rc = stale_again(m, &stale, err)) != 0)
            break;
    return rc;
}

/* ----------------------------------------------------------------- update */

int sq_ctx_update(sq_ctx_mgr *m, const sq_ctx_change *c, uint64_t *version, sq_ctx_err *err)
{
    err_reset(err);
    int rc;
    if (c->kind != SQ_CTX_REPLACE && c->kind != SQ_CTX_MERGE && c->kind != SQ_CTX_JSON_PATCH)
        return ctx_fail(err, SQ_CTX_INVALID_ARGUMENT,
                        "the patch type must be replace, merge or json");
    if (!c->patch)
        return ctx_fail(err, SQ_CTX_INVALID_ARGUMENT, "a patch is required");
    if (c->kind == SQ_CTX_JSON_PATCH && !json_is_array(c->patch))
        return ctx_fail(err, SQ_CTX_INVALID_PATCH,
                        "a JSON Patch (RFC 6902) is an array of operations");
    if (c->metadata && (rc = check_meta(m, c->metadata, err)) != 0)
        return rc;
    if ((rc = refused(m, err)) != 0)
        return rc;
    patch_arg p = {.kind = c->kind, .patch = c->patch, .meta = c->metadata};
    do {
        /* -EAGAIN: deleted and made again by another instance meanwhile. */
        ctx_obj *o = find(m, c->id, err, &rc);
        if (!o)
            return rc;
        rc = change_doc(m, o, c->expected_version, c->kind, compute_patch, &p, c->actor,
                        version, err);
        obj_unref(o);
    } while (rc == -EAGAIN);
    return rc;
}

/* ----------------------------------------------------------------- delete */

int sq_ctx_delete(sq_ctx_mgr *m, const char *id, uint64_t expected, uint64_t *last_version,
                  sq_ctx_err *err)
{
    err_reset(err);
    int rc = refused(m, err);
    if (rc)
        return rc;
    ctx_obj *o = find(m, id, err, &rc);
    if (!o)
        return rc;
    bool refreshed = false;
    int stale = 0;
    for (;;) {
        if ((rc = lock_settled(m, o, err)) != 0)
            break;
        uint64_t cur = o->head->version;
        if (expected && expected != cur) {
            uint64_t g = atomic_load(&o->gen);
            sq_mutex_unlock(&o->lock);
            if (m->shared && expected > cur && !refreshed) {
                refreshed = true;
                if ((rc = refresh_wait(m, o->id, expected, err)) != 0)
                    break;
                continue;
            }
            rc = mismatch(m, o, expected, cur, g, err);
            break;
        }
        ctx_ver *tomb = ver_new();
        ctx_change *c = tomb ? change_new(o, SQ_STORE_DELETE, tomb) : NULL;
        if (c) {
            tomb->version = cur + 1;
            tomb->deleted = true;
            tomb->kind = SQ_CTX_DELETE;
            tomb->created_at = o->head->created_at;
            tomb->updated_at = later(sq_ctx_now_ms(), o->head->updated_at);
            rc = writer_submit(m, c);
        } else {
            ver_unref(tomb);
            rc = -ENOMEM;
        }
        if (rc == 0) {
            o->deleting = true;
            ver_unref(o->head);
            o->head = ver_ref(tomb);
        }
        sq_mutex_unlock(&o->lock);
        if (rc) {
            if (c) {
                change_unref(c);
                change_unref(c);
            }
            rc = rc == -ESHUTDOWN ? ctx_fail(err, SQ_CTX_STOPPING, "the server is stopping")
                                  : ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
            break;
        }
        rc = acknowledged(c, m, err);
        change_unref(c);
        if (rc == -ESTALE) {
            /* Another instance changed or deleted it first. */
            if (atomic_load(&o->gone)) {
                rc = not_found(err, o->id);
                break;
            }
            if ((rc = stale_again(m, &stale, err)) != 0)
                break;
            continue;
        }
        if (rc == 0 && last_version)
            *last_version = cur;
        break;
    }
    obj_unref(o);
    return rc;
}

/* -------------------------------------------------------------- snapshots */

/* The version to keep: the head (0) or an older one read back. */
static int version_to_keep(sq_ctx_mgr *m, ctx_obj *o, uint64_t version, ctx_ver **out,
                           sq_ctx_err *err)
{
    *out = NULL;
    if (version == 0)
        return 0;
    sq_ctx_info info;
    int rc = sq_ctx_get(m, o->id, version, &info, err);
    if (rc)
        return rc;
    ctx_ver *v = ver_new();
    if (!v || (rc = ver_set_doc(v, info.document, 0)) != 0) {
        if (!v)
            json_decref(info.document);
        json_decref(info.metadata);
        ver_unref(v);
        return ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
    }
    json_decref(info.metadata);
    v->version = info.version;
    *out = v;
    return 0;
}

/* Queues a SNAPSHOT or RECOVERY change of o under its lock (held). */
static ctx_change *mark_change(sq_ctx_mgr *m, ctx_obj *o, int op, ctx_ver *v, const char *name,
                               const char *reason, int64_t at, int *rc)
{
    ctx_change *c = change_new(o, op, v);
    if (!c || (name && !(c->name = strdup(name)))) {
        if (c)
            change_unref(c), change_unref(c);
        else
            ver_unref(v);
        *rc = -ENOMEM;
        return NULL;
    }
    c->reason = reason;
    c->at = at;
    if ((*rc = writer_submit(m, c)) != 0) {
        change_unref(c);
        change_unref(c);
        return NULL;
    }
    return c;
}

static int snapshot_once(sq_ctx_mgr *m, const char *id, const char *name, uint64_t version,
                         uint64_t *taken, sq_ctx_err *err)
{
    err_reset(err);
    if (!sq_ctx_valid_id(name, true))
        return bad_id(err, name, true);
    int rc = refused(m, err);
    if (rc)
        return rc;
    ctx_obj *o = find(m, id, err, &rc);
    if (!o)
        return rc;
    ctx_ver *old;
    if ((rc = version_to_keep(m, o, version, &old, err)) != 0) {
        obj_unref(o);
        return rc;
    }
    ctx_change *c = NULL;
    for (;;) {
        if ((rc = lock_settled(m, o, err)) != 0)
            break;
        if (marks_find_name(&o->snaps, name)) {
            rc = ctx_fail(err, SQ_CTX_SNAPSHOT_EXISTS, "context \"%s\" has a snapshot \"%s\"",
                          id, name);
        } else if (o->snaps.n >= m->o.max_snapshots) {
            rc = ctx_fail(err, SQ_CTX_TOO_MANY_SNAPSHOTS,
                          "context \"%s\" has %zu snapshots (the limit)", id,
                          m->o.max_snapshots);
            if (err)
                err->limit = m->o.max_snapshots;
        } else {
            ctx_ver *v = old ? old : ver_ref(o->head);
            old = NULL;
            int64_t at = sq_ctx_now_ms();
            if (marks_add(&o->snaps, name, v->version, at, NULL, false) != 0) {
                ver_unref(v);
                rc = -ENOMEM;
            } else if (!(c = mark_change(m, o, SQ_STORE_SNAPSHOT, v, name, NULL, at, &rc))) {
                marks_remove(&o->snaps, (size_t)(marks_find_name(&o->snaps, name) - o->snaps.v));
            }
            if (rc)
                rc = rc == -ESHUTDOWN ? ctx_fail(err, SQ_CTX_STOPPING, "the server is stopping")
                                      : ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
        }
        sq_mutex_unlock(&o->lock);
        break;
    }
    ver_unref(old);
    if (c) {
        uint64_t kept = c->ver->version;
        rc = acknowledged(c, m, err);
        change_unref(c);
        if (rc == 0 && taken)
            *taken = kept;
    }
    obj_unref(o);
    return rc;
}

static int recovery_point_once(sq_ctx_mgr *m, const char *id, uint64_t *version,
                               sq_ctx_err *err)
{
    err_reset(err);
    int rc = refused(m, err);
    if (rc)
        return rc;
    ctx_obj *o = find(m, id, err, &rc);
    if (!o)
        return rc;
    ctx_change *c = NULL;
    uint64_t v = 0;
    for (;;) {
        if ((rc = lock_settled(m, o, err)) != 0)
            break;
        v = o->head->version;
        ctx_mark *k = marks_find_version(&o->rps, v);
        if (k && k->durable) {
            /* This version has one already. */
        } else if (k) {
            /* Being committed (taken with its version, or by another
             * call): durable once that version is. */
            uint64_t g = atomic_load(&o->gen);
            sq_mutex_unlock(&o->lock);
            if (settle(m, o, v, g) != 0)
                rc = ctx_fail(err, SQ_CTX_CANCELLED, "cancelled");
            else
                rc = refused(m, err);
            break;
        } else {
            int64_t at = sq_ctx_now_ms();
            if (marks_add(&o->rps, NULL, v, at, "manual", false) != 0)
                rc = -ENOMEM;
            else if (!(c = mark_change(m, o, SQ_STORE_RECOVERY, ver_ref(o->head), NULL,
                                       "manual", at, &rc)))
                marks_remove(&o->rps, (size_t)(marks_find_version(&o->rps, v) - o->rps.v));
            if (rc)
                rc = rc == -ESHUTDOWN ? ctx_fail(err, SQ_CTX_STOPPING, "the server is stopping")
                                      : ctx_fail(err, SQ_CTX_NO_MEMORY, "out of memory");
        }
        sq_mutex_unlock(&o->lock);
        break;
    }
    if (c) {
        rc = acknowledged(c, m, err);
        change_unref(c);
    }
    if (rc == 0 && version)
        *version = v;
    obj_unref(o);
    return rc;
}

int sq_ctx_snapshot(sq_ctx_mgr *m, const char *id, const char *name, uint64_t version,
                    uint64_t *taken, sq_ctx_err *err)
{
    int rc, stale = 0;
    while ((rc = snapshot_once(m, id, name, version, taken, err)) == -ESTALE)
        if ((rc = stale_again(m, &stale, err)) != 0)
            break;
    return rc;
}

int sq_ctx_recovery_point(sq_ctx_mgr *m, const char *id, uint64_t *version, sq_ctx_err *err)
{
    int rc, stale = 0;
    while ((rc = recovery_point_once(m, id, version, err)) == -ESTALE)
        if ((rc = stale_again(m, &stale, err)) != 0)
            break;
    return rc;
}

/* ----------------------------------------------------------------- restore */

int sq_ctx_restore(sq_ctx_mgr *m, const char *id, const char *snapshot,
                   uint64_t recovery_point, uint64_t expected, const char *actor,
                   uint64_t *version, sq_ctx_err *err)
{
    err_reset(err);
    if ((snapshot != NULL) == (recovery_point != 0))
        return ctx_fail(err, SQ_CTX_INVALID_ARGUMENT,
                        "restore from exactly one of a snapshot or a recovery point");
    int rc = refused(m, err);
    if (rc)
        return rc;
    sq_ctx_info kept;
    if ((rc = sq_ctx_get_mark(m, id, snapshot, recovery_point, &kept, err)) != 0)
        return rc;
    ctx_obj *o;
    patch_arg p = {.kind = SQ_CTX_RESTORE, .patch = kept.document};
    while ((o = find(m, id, err, &rc)) != NULL) {
        rc = change_doc(m, o, expected, SQ_CTX_RESTORE, compute_patch, &p, actor, version, err);
        obj_unref(o);
        if (rc != -EAGAIN)
            break;
    }
    sq_ctx_info_clear(&kept);
    return rc;
}
