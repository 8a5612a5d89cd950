/* The context manager's private header (sq_server/ctx.h is its public
 * one).  The pieces, one file each:
 *
 *   version.c  ctx_ver: one version of a context, immutable once made,
 *              reference-counted (shared by the newest version in memory,
 *              the published state, the writer's queue and readers).
 *   index.c    the index: id -> context, 64 shards, each a shared state
 *              (squirrel/state.h) holding a sorted array; lookups read a
 *              snapshot without a lock held while they search, changes
 *              are two-phase copy-on-write updates of one shard.
 *   change.c   creating, updating, deleting, snapshots, restore: the
 *              two-phase installs into a context's newest version, and
 *              the queue to the writer.
 *   writer.c   the group-commit writer: one task, the store on the
 *              blocking pool, then publication and acknowledgements.
 *   read.c     reads, history, diff, list, listeners.
 *   manager.c  opening (load with a task processor), stopping, figures.
 *
 * A context (ctx_obj) has two views of its versions:
 *   head     the newest version made (maybe not yet durable), guarded by
 *            the context's lock; changes are computed from it and install
 *            the next one, in version order, into the writer's queue under
 *            that lock.
 *   pub      the newest durable version, a shared state whose listeners
 *            hear of every version; only the writer updates it, after the
 *            commit.  Readers read only pub.
 * So head.version >= pub.version, and a reader never sees a version a
 * crash could lose.
 *
 * Lock order: a context's lock is never held while taking another lock
 * of the manager (index shards, another context, the published state);
 * the writer queue's spin lock is taken under it (a push, no wait).
 */
#ifndef SQ_CTX_INT_H
#define SQ_CTX_INT_H

#include "sq_proto/jansson.h"
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "squirrel/list.h"
#include "squirrel/metrics.h"
#include "squirrel/runtime.h"
#include "squirrel/state.h"
#include "squirrel/sync.h"
#include "squirrel/watch.h"
#include "sq_base/spin.h"
#include "sq_server/ctx.h"
#include "store/store.h"

/* ---------------------------------------------------------------- versions */

typedef struct ctx_ver {
    atomic_long refs;
    uint64_t version;          /* 0: "not created yet" (a new context's pub) */
    json_t *doc, *meta;        /* immutable */
    char *doc_text, *meta_text;/* their compact JSON (what the store keeps) */
    size_t doc_len, meta_len;
    int64_t created_at, updated_at;
    int kind;                  /* enum sq_ctx_kind */
    bool deleted;              /* the tombstone a deletion publishes */
    char *actor;
} ctx_ver;

ctx_ver *ver_new(void);
ctx_ver *ver_ref(ctx_ver *v);
void ver_unref(ctx_ver *v);
/* Sets v's document (taken over) and its text; -EFBIG past max (0: no
 * limit), -ENOMEM.  Likewise the metadata. */
int ver_set_doc(ctx_ver *v, json_t *doc, size_t max);
int ver_set_meta(ctx_ver *v, json_t *meta, size_t max);
/* A version from what the store keeps (its document and metadata as JSON
 * text): NULL if memory runs out or a text is not JSON.  Never waits. */
ctx_ver *ver_from_store(uint64_t version, int64_t created_at, int64_t updated_at, int kind,
                        const char *actor, const char *doc, size_t doc_len,
                        const char *meta, size_t meta_len);

/* ---------------------------------------------------------------- contexts */

/* A snapshot or a recovery point, in memory (its document is in the
 * store).  `durable` once committed: only those are listed or used. */
typedef struct ctx_mark {
    char *name;                /* snapshots; NULL for recovery points */
    uint64_t version;
    int64_t at;
    const char *reason;        /* recovery points: "auto" or "manual" */
    bool durable;
} ctx_mark;

typedef struct ctx_marks {
    ctx_mark *v;
    size_t n, cap;
} ctx_marks;

int marks_add(ctx_marks *k, const char *name, uint64_t version, int64_t at,
              const char *reason, bool durable);
ctx_mark *marks_find_name(ctx_marks *k, const char *name);
ctx_mark *marks_find_version(ctx_marks *k, uint64_t version);
void marks_remove(ctx_marks *k, size_t i);
void marks_free(ctx_marks *k);
size_t marks_durable(const ctx_marks *k);

typedef struct ctx_obj {
    atomic_long refs;
    char *id;
    sq_mutex lock;             /* "ctx.head": the fields up to `pub` */
    ctx_ver *head;             /* the newest version made */
    bool creating;             /* in the index, its create not yet queued */
    bool deleting;             /* a deletion is queued */
    ctx_marks snaps;           /* named snapshots, by name */
    ctx_marks rps;             /* recovery points, oldest first */
    sq_state pub;              /* the newest durable version (ctx_ver *) */
    _Atomic uint64_t pub_version;
    atomic_bool gone;          /* deleted (or its create failed): out of
                                * the index for good */
    /* Shared stores (refresh.c): bumped, under the lock, whenever head is
     * replaced by what the store holds; a change queued before carries
     * the old value and is dropped by the writer (the caller computes it
     * again).  `dirty`: a commit of it failed with its outcome unknown;
     * its changes are dropped until it is read again. */
    _Atomic uint64_t gen;
    atomic_bool dirty;
} ctx_obj;

/* A new context with head `v` (taken over) and pub at "not created"
 * (or `pub`, for contexts loaded from the store: then head == pub). */
ctx_obj *obj_new(const char *id, ctx_ver *v, bool loaded);
ctx_obj *obj_ref(ctx_obj *o);
void obj_unref(ctx_obj *o);
/* The published version (a new reference; never NULL). */
ctx_ver *obj_pub(ctx_obj *o);
/* Sets the published version to v (a reference, taken over). */
int obj_publish(ctx_obj *o, ctx_ver *v);

/* ---------------------------------------------------------------- index */

#define CTX_SHARDS 64

typedef struct ctx_index {
    sq_state shard[CTX_SHARDS];
} ctx_index;

int idx_init(ctx_index *x);
void idx_destroy(ctx_index *x);
/* The context named id (a reference), or NULL.  Never waits long. */
ctx_obj *idx_find(ctx_index *x, const char *id);
/* Inserts o unless its id is there: 0, or -EEXIST with *existing (a
 * reference), -ENOMEM. */
int idx_insert(ctx_index *x, ctx_obj *o, ctx_obj **existing);
/* Removes o (if it is the entry of its id). */
void idx_remove(ctx_index *x, ctx_obj *o);
/* Inserts many (loading, before anyone else uses x); objs sorted or not. */
int idx_load(ctx_index *x, ctx_obj **objs, size_t n);
/* Visits, in id order, the contexts with the prefix after `after`,
 * calling fn until it returns non-zero (which is returned).  No lock is
 * held while fn runs. */
typedef int (*idx_visit_fn)(void *arg, ctx_obj *o);
int idx_walk(ctx_index *x, const char *prefix, const char *after,
             idx_visit_fn fn, void *arg);
/* Every context (references, in an array of *n: unref each, free). */
int idx_all(ctx_index *x, ctx_obj ***out, size_t *n);

/* ---------------------------------------------------------------- changes */

/* One change on its way to the store: made under the context's lock,
 * queued to the writer, acknowledged by it.  Two references: the
 * caller's (who waits on `done`) and the writer's. */
typedef struct ctx_change {
    struct sq__link link;
    atomic_int refs;
    ctx_obj *obj;              /* a reference */
    int op;                    /* enum sq_store_opcode, or CTX_REFRESH */
    ctx_ver *ver;              /* CREATE, PUT, DELETE (tombstone),
                                * SNAPSHOT, RECOVERY: the version */
    char *name;                /* SNAPSHOT */
    const char *reason;        /* RECOVERY */
    bool auto_rp;              /* PUT, CREATE: also a recovery point */
    uint64_t prune_below;
    int64_t at;                /* SNAPSHOT, RECOVERY: when */
    int64_t queued;            /* sq_now() when queued (latency) */
    uint64_t gen;              /* obj->gen when it was made */
    int status;                /* set by the writer before `done` */
    sq_oneshot done;
} ctx_change;

ctx_change *change_new(ctx_obj *o, int op, ctx_ver *v);
void change_unref(ctx_change *c);

/* Not a change: a request to the writer to read a context again from a
 * shared store (refresh.c); `name` is the id, `at` the version the store
 * is known to have reached (0: unknown), obj NULL; name NULL: every
 * context (after the store reconnected). */
#define CTX_REFRESH 0

/* ---------------------------------------------------------------- manager */

struct sq_ctx_mgr {
    sq_ctx_opts o;             /* with the defaults filled in */
    char *store_spec;
    sq_store *store;
    sq_runtime *rt;
    ctx_index index;
    atomic_size_t ncontexts;   /* durable or being created */

    /* The writer's queue (under qlock: a push, a take; never a wait). */
    sq__spin qlock;
    struct sq__list queue;
    bool writer_done;          /* under qlock: the writer has ended */
    sq_notify wake;
    sq_task writer;
    bool writer_started;
    atomic_bool stopping;
    atomic_bool broken;        /* the store failed: changes refused */
    bool shared;               /* the store is shared (SQ_STORE_SHARED):
                                * others change it too (refresh.c), and a
                                * failed commit does not break the manager */
    char broken_msg[256];      /* under msg_lock (the writer rewrites it
                                * on each failure, requests copy it) */
    sq__spin msg_lock;
    atomic_bool fatal;         /* broken for good (memory ran out while
                                * publishing): no retry */
    _Atomic int64_t retry_at;  /* broken, not fatal: changes are tried
                                * again from then (sq_now() clock) */
    int64_t backoff;           /* the writer's: the last wait, ns */
    /* Bumped after every commit (or failure): changes that must wait for
     * another change to be durable watch it. */
    sq_watch settled;

    /* Figures (lock-free). */
    sq_metrics *metrics;
    sq_counter *m_changes, *m_commits, *m_failures, *m_conflicts, *m_retries;
    sq_histogram *m_commit_ns, *m_batch, *m_latency_ns;
    sq_gauge *m_contexts;
    atomic_ullong max_batch;
    atomic_ullong by_kind[SQ_CTX_DELETE + 1]; /* sq_ctx_stats.by_kind */
};

/* The manager's store (manager.c; sq_ctx_srv_store).  Never waits. */
sq_store *sq__ctx_store(sq_ctx_mgr *m);

/* writer.c */
int writer_start(sq_ctx_mgr *m);
/* Copies the store's failure sentence into buf.  Never waits. */
void ctx_broken_msg(sq_ctx_mgr *m, char *buf, size_t n);
/* Queues c (the caller holds c->obj's lock, so a context's changes are
 * queued in version order): 0, or -ESHUTDOWN once the writer has
 * ended.  Never waits. */
int writer_submit(sq_ctx_mgr *m, ctx_change *c);
/* Waits for c's acknowledgement: its status, or -ECANCELED (the change
 * goes on; only the caller stopped waiting). */
int change_wait(ctx_change *c);

/* change.c: waits until o's published version reaches `target` (or o is
 * gone, or the store failed, or o's gen moved on from `gen`, read under
 * its lock: a shared store replaced its head).  0 or -ECANCELED. */
int settle(sq_ctx_mgr *m, ctx_obj *o, uint64_t target, uint64_t gen);

/* Errors: fills err (may be NULL) and returns the code's errno. */
int ctx_fail(sq_ctx_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int ctx_errno(int code);

/* Runs store reads on the blocking pool. */
int store_read_version(sq_ctx_mgr *m, const char *id, uint64_t v, sq_store_doc *d);
int store_read_mark(sq_ctx_mgr *m, const char *id, const char *name, uint64_t v,
                    sq_store_doc *d);

/* refresh.c (shared stores; run by the writer task only).  Reads id
 * again and brings its object in line with the store: versions other
 * instances made are published (on_change for each), a deletion is
 * published, a context made elsewhere enters the index.  *list_changed
 * is set when contexts came or went. */
void refresh_id(sq_ctx_mgr *m, const char *id, uint64_t known, bool *list_changed);
/* Compares every context with the store's heads, refreshing those that
 * differ. */
void refresh_all(sq_ctx_mgr *m, bool *list_changed);
/* The store's handler for others' changes (sq_store.on_external). */
void refresh_external(void *arg, const char *id, uint64_t version);
/* Tells the server of one version of o (on_change). */
void tell_version(sq_ctx_mgr *m, ctx_obj *o, uint64_t version, int kind, bool created,
                  bool deleted);

/* The first version still in the history of a context at `current`. */
uint64_t oldest_kept(const sq_ctx_mgr *m, uint64_t current);

#endif
