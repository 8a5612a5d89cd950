/* Versions (ctx_ver), contexts (ctx_obj) and their marks: the objects the
 * context manager shares between tasks (ctx_int.h).  A version is made
 * by one task, then only read; its last reference frees it, wherever that
 * happens (never under a lock of the manager: the published state
 * releases its values outside its locks). */
#include "ctx_int.h"

#include "sq_server/jsonpatch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

ctx_ver *ver_new(void)
{
    ctx_ver *v = calloc(1, sizeof *v);
    if (v)
        atomic_init(&v->refs, 1);
    return v;
}

ctx_ver *ver_ref(ctx_ver *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    return v;
}

void ver_unref(ctx_ver *v)
{
    if (!v || atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
        return;
    json_decref(v->doc);
    json_decref(v->meta);
    free(v->doc_text);
    free(v->meta_text);
    free(v->actor);
    free(v);
}

/* The compact text of j into *text, *len; -EFBIG past max (0: none). */
static int set_text(json_t *j, size_t max, char **text, size_t *len)
{
    if (max && sq_json_text_size(j, max) > max)
        return -EFBIG;
    char *t = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!t)
        return -ENOMEM;
    size_t n = strlen(t);
    if (max && n > max) { /* the estimate was short (it should not be) */
        free(t);
        return -EFBIG;
    }
    free(*text);
    *text = t;
    *len = n;
    return 0;
}

int ver_set_doc(ctx_ver *v, json_t *doc, size_t max)
{
    json_decref(v->doc);
    v->doc = doc;
    return set_text(doc, max, &v->doc_text, &v->doc_len);
}

int ver_set_meta(ctx_ver *v, json_t *meta, size_t max)
{
    json_decref(v->meta);
    v->meta = meta;
    return set_text(meta, max, &v->meta_text, &v->meta_len);
}

ctx_ver *ver_from_store(uint64_t version, int64_t created_at, int64_t updated_at, int kind,
                        const char *actor, const char *doc, size_t doc_len,
                        const char *meta, size_t meta_len)
{
    json_error_t je;
    ctx_ver *v = ver_new();
    if (!v)
        return NULL;
    v->version = version;
    v->created_at = created_at;
    v->updated_at = updated_at;
    v->kind = kind;
    v->actor = strdup(actor ? actor : "");
    json_t *d = json_loadb(doc, doc_len, JSON_DECODE_ANY, &je);
    json_t *mt = json_loadb(meta, meta_len, 0, &je);
    if (!d || !mt || !v->actor || ver_set_doc(v, d, 0) || ver_set_meta(v, mt, 0)) {
        if (!v->doc)
            json_decref(d);
        if (!v->meta)
            json_decref(mt);
        ver_unref(v);
        return NULL;
    }
    return v;
}

/* ------------------------------------------------------------------ marks */

int marks_add(ctx_marks *k, const char *name, uint64_t version, int64_t at,
              const char *reason, bool durable)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 4;
        ctx_mark *v = realloc(k->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        k->v = v;
        k->cap = cap;
    }
    char *n = NULL;
    if (name && !(n = strdup(name)))
        return -ENOMEM;
    /* Snapshots are kept by name, recovery points by version: both
     * sorted, so lists come out in order. */
    size_t i = k->n;
    while (i > 0 && (name ? strcmp(k->v[i - 1].name, name) > 0
                          : k->v[i - 1].version > version))
        i--;
    memmove(&k->v[i + 1], &k->v[i], (k->n - i) * sizeof *k->v);
    k->v[i] = (ctx_mark){.name = n, .version = version, .at = at,
                         .reason = reason && strcmp(reason, "manual") == 0 ? "manual" : "auto",
                         .durable = durable};
    k->n++;
    return 0;
}

ctx_mark *marks_find_name(ctx_marks *k, const char *name)
{
    for (size_t i = 0; i < k->n; i++)
        if (k->v[i].name && strcmp(k->v[i].name, name) == 0)
            return &k->v[i];
    return NULL;
}

ctx_mark *marks_find_version(ctx_marks *k, uint64_t version)
{
    for (size_t i = 0; i < k->n; i++)
        if (k->v[i].version == version)
            return &k->v[i];
    return NULL;
}

void marks_remove(ctx_marks *k, size_t i)
{
    free(k->v[i].name);
    memmove(&k->v[i], &k->v[i + 1], (k->n - i - 1) * sizeof *k->v);
    k->n--;
}

void marks_free(ctx_marks *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->v[i].name);
    free(k->v);
    k->v = NULL;
    k->n = k->cap = 0;
}

size_t marks_durable(const ctx_marks *k)
{
    size_t n = 0;
    for (size_t i = 0; i < k->n; i++)
        n += k->v[i].durable;
    return n;
}

/* --------------------------------------------------------------- contexts */

static void pub_destroy(void *value, void *user)
{
    (void)user;
    ver_unref(value);
}

ctx_obj *obj_new(const char *id, ctx_ver *v, bool loaded)
{
    ctx_obj *o = calloc(1, sizeof *o);
    ctx_ver *absent = loaded ? ver_ref(v) : ver_new();
    if (!o || !absent || !(o->id = strdup(id))) {
        ver_unref(absent);
        free(o);
        return NULL;
    }
    sq_state_ops ops = {.destroy = pub_destroy};
    if (sq_state_init(&o->pub, absent, &ops) != 0) {
        ver_unref(absent);
        free(o->id);
        free(o);
        return NULL;
    }
    atomic_init(&o->refs, 1);
    sq_mutex_init_named(&o->lock, "ctx.head");
    o->head = v;
    o->creating = !loaded;
    atomic_init(&o->pub_version, loaded ? v->version : 0);
    atomic_init(&o->gone, false);
    return o;
}

ctx_obj *obj_ref(ctx_obj *o)
{
    atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
    return o;
}

void obj_unref(ctx_obj *o)
{
    if (!o || atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) != 1)
        return;
    /* The last reference: nobody updates or listens any more. */
    sq_state_destroy(&o->pub);
    sq_mutex_destroy(&o->lock);
    ver_unref(o->head);
    marks_free(&o->snaps);
    marks_free(&o->rps);
    free(o->id);
    free(o);
}

ctx_ver *obj_pub(ctx_obj *o)
{
    sq_state_snap *s;
    /* A read waits only for the instant an update swaps the snapshot: an
     * aborted reader does that wait too, rather than fail. */
    if (sq_state_read(&o->pub, &s) != 0) {
        sq_cancel_mask();
        sq_state_read(&o->pub, &s);
        sq_cancel_unmask();
    }
    ctx_ver *v = ver_ref((ctx_ver *)sq_state_snap_value(s));
    sq_state_snap_release(s);
    return v;
}

static int set_pub(const void *cur, void **next, void *arg)
{
    (void)cur;
    *next = arg;
    return 0;
}

int obj_publish(ctx_obj *o, ctx_ver *v)
{
    int rc = sq_state_update(&o->pub, set_pub, v, NULL);
    if (rc) {
        ver_unref(v);
        return rc;
    }
    atomic_store_explicit(&o->pub_version, v->version, memory_order_release);
    return 0;
}
