/* The index of contexts (ctx_int.h): 64 shards chosen by a hash of the id,
 * each a shared state (squirrel/state.h) whose value is an immutable
 * array of context references sorted by id.
 *
 * Why shards of shared state rather than the patterns layer's sharded map
 * (squirrel/shardmap.h): that map copies values in and out as bytes,
 * which is right for data but not for a context, a live object with a
 * lock and listeners that a reader must hold a reference to.  Here a
 * lookup takes the shard's current snapshot (a reference count under the
 * state's read lock, held for a few instructions), searches it with no
 * lock held, and counts a reference to the context while the snapshot
 * keeps it alive.  A create or delete is the state's two-phase update: a
 * need() check on a snapshot (is the id there?), then the copy-on-write
 * under the shard's update lock after checking again.  The copy costs
 * O(contexts / 64) pointers, paid by creates and deletes only; reads and
 * changes of documents never copy.  Listing walks the shards' snapshots
 * in id order (a merge of 64 sorted arrays) holding no lock at all. */
#include "ctx_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct shard_val {
    size_t n;
    ctx_obj *items[]; /* sorted by id; one reference each */
} shard_val;

static void shard_destroy(void *value, void *user)
{
    (void)user;
    shard_val *v = value;
    for (size_t i = 0; i < v->n; i++)
        obj_unref(v->items[i]);
    free(v);
}

static shard_val *shard_alloc(size_t n)
{
    shard_val *v = malloc(sizeof *v + n * sizeof v->items[0]);
    if (v)
        v->n = n;
    return v;
}

/* FNV-1a: ids are short, and an attacker who picks ids to crowd one shard
 * only slows creates in that shard (the arrays are sorted, not hashed). */
static size_t shard_of(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h >> 58); /* 64 shards */
}

int idx_init(ctx_index *x)
{
    sq_state_ops ops = {.destroy = shard_destroy};
    for (int i = 0; i < CTX_SHARDS; i++) {
        shard_val *v = shard_alloc(0);
        if (!v || sq_state_init(&x->shard[i], v, &ops) != 0) {
            free(v);
            while (i-- > 0)
                sq_state_destroy(&x->shard[i]);
            return -ENOMEM;
        }
    }
    return 0;
}

void idx_destroy(ctx_index *x)
{
    for (int i = 0; i < CTX_SHARDS; i++)
        sq_state_destroy(&x->shard[i]);
}

/* Binary search: the index of id, or where it would go. */
static size_t search(const shard_val *v, const char *id, bool *found)
{
    size_t lo = 0, hi = v->n;
    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v->items[mid]->id, id);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The shard's current snapshot (an aborted reader still takes it: the
 * wait is only for an update's swap). */
static sq_state_snap *snap_of(sq_state *st)
{
    sq_state_snap *s;
    if (sq_state_read(st, &s) != 0) {
        sq_cancel_mask();
        sq_state_read(st, &s);
        sq_cancel_unmask();
    }
    return s;
}

ctx_obj *idx_find(ctx_index *x, const char *id)
{
    sq_state_snap *s = snap_of(&x->shard[shard_of(id)]);
    const shard_val *v = sq_state_snap_value(s);
    bool found;
    size_t i = search(v, id, &found);
    ctx_obj *o = found ? obj_ref(v->items[i]) : NULL;
    sq_state_snap_release(s);
    return o;
}

/* ------------------------------------------------------------- changes */

typedef struct edit {
    ctx_obj *add;       /* insert this (the index takes a reference) */
    ctx_obj *remove;    /* or remove this */
    ctx_obj *existing;  /* insert: what was found instead (a reference) */
} edit;

static bool need(const void *cur, void *arg)
{
    const shard_val *v = cur;
    edit *e = arg;
    bool found;
    size_t i = search(v, e->add ? e->add->id : e->remove->id, &found);
    if (e->add) {
        if (found && !e->existing)
            e->existing = obj_ref(v->items[i]);
        return !found;
    }
    return found && v->items[i] == e->remove;
}

static int update(const void *cur, void **next, void *arg)
{
    const shard_val *v = cur;
    edit *e = arg;
    bool found;
    size_t i = search(v, e->add ? e->add->id : e->remove->id, &found);
    shard_val *n = shard_alloc(e->add ? v->n + 1 : v->n - 1);
    if (!n)
        return -ENOMEM;
    if (e->add) {
        memcpy(n->items, v->items, i * sizeof *n->items);
        n->items[i] = e->add;
        memcpy(n->items + i + 1, v->items + i, (v->n - i) * sizeof *n->items);
    } else {
        memcpy(n->items, v->items, i * sizeof *n->items);
        memcpy(n->items + i, v->items + i + 1, (v->n - i - 1) * sizeof *n->items);
    }
    /* The new array holds its own reference to every context in it; the
     * old one drops its own when its last reader lets it go. */
    for (size_t j = 0; j < n->n; j++)
        obj_ref(n->items[j]);
    *next = n;
    return 0;
}

int idx_insert(ctx_index *x, ctx_obj *o, ctx_obj **existing)
{
    edit e = {.add = o};
    *existing = NULL;
    int rc = sq_state_update_if(&x->shard[shard_of(o->id)], need, update, &e, NULL);
    if (rc == 1) {
        obj_unref(e.existing); /* seen in phase one, gone by phase two */
        return 0;
    }
    if (rc == 0) {
        *existing = e.existing;
        return -EEXIST;
    }
    obj_unref(e.existing);
    return rc;
}

void idx_remove(ctx_index *x, ctx_obj *o)
{
    edit e = {.remove = o};
    /* Cancellation masked: a removal the writer starts must happen. */
    sq_cancel_mask();
    while (sq_state_update_if(&x->shard[shard_of(o->id)], need, update, &e, NULL) == -ENOMEM)
        sq_sleep(SQ_MSEC);
    sq_cancel_unmask();
}

static int cmp_obj(const void *a, const void *b)
{
    return strcmp((*(ctx_obj *const *)a)->id, (*(ctx_obj *const *)b)->id);
}

typedef struct bulk {
    ctx_obj **objs;
    size_t n;
} bulk;

static int load_update(const void *cur, void **next, void *arg)
{
    const shard_val *v = cur;
    bulk *b = arg;
    shard_val *n = shard_alloc(v->n + b->n);
    if (!n)
        return -ENOMEM;
    memcpy(n->items, v->items, v->n * sizeof *n->items);
    memcpy(n->items + v->n, b->objs, b->n * sizeof *n->items);
    qsort(n->items, n->n, sizeof *n->items, cmp_obj);
    for (size_t j = 0; j < n->n; j++)
        obj_ref(n->items[j]);
    *next = n;
    return 0;
}

int idx_load(ctx_index *x, ctx_obj **objs, size_t n)
{
    ctx_obj **by = malloc((n ? n : 1) * sizeof *by);
    if (!by)
        return -ENOMEM;
    int rc = 0;
    for (int s = 0; s < CTX_SHARDS && rc == 0; s++) {
        bulk b = {.objs = by, .n = 0};
        for (size_t i = 0; i < n; i++)
            if (shard_of(objs[i]->id) == (size_t)s)
                by[b.n++] = objs[i];
        if (b.n)
            rc = sq_state_update(&x->shard[s], load_update, &b, NULL);
    }
    free(by);
    return rc;
}

/* --------------------------------------------------------------- walking */

int idx_walk(ctx_index *x, const char *prefix, const char *after, idx_visit_fn fn,
             void *arg)
{
    sq_state_snap *snaps[CTX_SHARDS];
    const shard_val *vals[CTX_SHARDS];
    size_t pos[CTX_SHARDS];
    size_t plen = prefix ? strlen(prefix) : 0;
    /* Where each shard's part starts: after `after`, at the prefix. */
    const char *from = after && (!prefix || strcmp(after, prefix) >= 0) ? after : prefix;
    for (int s = 0; s < CTX_SHARDS; s++) {
        snaps[s] = snap_of(&x->shard[s]);
        vals[s] = sq_state_snap_value(snaps[s]);
        bool found = false;
        pos[s] = from ? search(vals[s], from, &found) : 0;
        if (found && from == after)
            pos[s]++;
    }
    int rc = 0;
    for (;;) {
        int best = -1;
        for (int s = 0; s < CTX_SHARDS; s++)
            if (pos[s] < vals[s]->n &&
                (best < 0 || strcmp(vals[s]->items[pos[s]]->id,
                                    vals[best]->items[pos[best]]->id) < 0))
                best = s;
        if (best < 0)
            break;
        ctx_obj *o = vals[best]->items[pos[best]++];
        if (plen && strncmp(o->id, prefix, plen) != 0)
            break; /* sorted: past the prefix, nothing more matches */
        if ((rc = fn(arg, o)) != 0)
            break;
    }
    for (int s = 0; s < CTX_SHARDS; s++)
        sq_state_snap_release(snaps[s]);
    return rc;
}

int idx_all(ctx_index *x, ctx_obj ***out, size_t *n)
{
    size_t total = 0, k = 0;
    sq_state_snap *snaps[CTX_SHARDS];
    for (int s = 0; s < CTX_SHARDS; s++) {
        snaps[s] = snap_of(&x->shard[s]);
        total += ((const shard_val *)sq_state_snap_value(snaps[s]))->n;
    }
    ctx_obj **all = malloc((total ? total : 1) * sizeof *all);
    for (int s = 0; s < CTX_SHARDS; s++) {
        const shard_val *v = sq_state_snap_value(snaps[s]);
        for (size_t i = 0; all && i < v->n; i++)
            all[k++] = obj_ref(v->items[i]);
        sq_state_snap_release(snaps[s]);
    }
    *out = all;
    *n = k;
    return all ? 0 : -ENOMEM;
}
