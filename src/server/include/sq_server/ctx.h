/* squirreld's server layer: the context manager (docs/contexts.md).
 *
 * Named, versioned JSON documents that many tasks read and change at
 * once, kept durably in a store (src/server/store/store.h: SQLite by
 * default).  squirreld serves them as MCP tools and resources
 * (src/server/ctx/tools.c); this header is the manager itself, which the
 * tools, the tests and the benchmarks call.
 *
 * The rules it follows (the specification's):
 *  - No lock is held across a wait.  A context's lock guards its newest
 *    version in memory, taken for a few instructions; patches are computed
 *    without it (two-phase: read the newest version, compute, re-take the
 *    lock and install only if the version is still the one read).
 *  - Durable before acknowledged: a change is installed in memory, queued
 *    to the writer and acknowledged only once the writer has committed it.
 *    The writer (one task; SQLite runs on the blocking pool) commits every
 *    change waiting at that moment in one transaction: one sync for many
 *    changes (group commit).
 *  - Readers see only durable versions: what a read returns is the newest
 *    committed version, published by the writer after the commit, so a
 *    reader never sees a version that a crash could lose, and never goes
 *    backwards.  Per context, versions rise by exactly one per change, in
 *    memory and on disk.
 *  - Listeners hear of every change after the locks are released: each
 *    context is a shared state (squirrel/state.h) whose listeners get every
 *    version in order through bounded queues; a full queue drops its
 *    oldest entry (counted) or disconnects, as the listener chose, and the
 *    writer never waits for a listener.
 *
 * Calls are made from tasks of the runtime the manager was opened in.
 * Those that change something wait for the commit (a cancellation point:
 * -ECANCELED means the caller stopped waiting; the change may still be
 * committed).  Errors are negative errno codes and, in *err (may be NULL),
 * a precise code (enum sq_ctx_code) with the details.
 */
#ifndef SQ_SERVER_CTX_H
#define SQ_SERVER_CTX_H

#include "sq_proto/jansson.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squirrel/metrics.h"

typedef struct sq_ctx_mgr sq_ctx_mgr;

/* ---------------------------------------------------------------- limits */

/* Defaults of sq_ctx_opts (docs/contexts.md, "Limits"). */
#define SQ_CTX_DEFAULT_MAX_CONTEXTS 100000
#define SQ_CTX_DEFAULT_MAX_DOCUMENT_BYTES ((size_t)1 << 20)
#define SQ_CTX_DEFAULT_MAX_METADATA_BYTES ((size_t)64 << 10)
#define SQ_CTX_DEFAULT_MAX_SNAPSHOTS 64
#define SQ_CTX_DEFAULT_HISTORY_DEPTH 100
#define SQ_CTX_DEFAULT_RECOVERY_EVERY 100
#define SQ_CTX_DEFAULT_RECOVERY_KEEP 10
#define SQ_CTX_DEFAULT_MAX_BATCH 1024

/* Ids: 1..128 characters of [A-Za-z0-9._:~-], starting with a letter or a
 * digit (so that squirrel://context/{id} needs no escaping).  Snapshot
 * names: the same, at most 64. */
#define SQ_CTX_ID_MAX 128
#define SQ_CTX_NAME_MAX 64

/* One committed change, as the writer reports it (sq_ctx_opts.on_change). */
typedef struct sq_ctx_event {
    const char *id;
    uint64_t version;       /* the new version (deleted: the last one) */
    int kind;               /* enum sq_ctx_kind */
    bool created, deleted;
} sq_ctx_event;

typedef struct sq_ctx_opts {
    /* The store: "sqlite:PATH" or "memory" (store.h).  Required. */
    const char *store;
    /* Limits; 0 means the default above. */
    size_t max_contexts;
    size_t max_document_bytes;  /* compact JSON text of a document */
    size_t max_metadata_bytes;  /* compact JSON text of the metadata */
    size_t max_snapshots;       /* named snapshots per context */
    size_t history_depth;       /* versions kept per context (>= 1) */
    size_t recovery_every;      /* a recovery point every N versions */
    size_t recovery_keep;       /* recovery points kept per context */
    size_t max_batch;           /* changes per transaction */
    /* Called by the writer after each change is committed and visible to
     * readers, in commit order (so in version order per context), with no
     * lock held.  Must not wait long (it delays the acknowledgements).
     * NULL: nobody is told. */
    void (*on_change)(void *arg, const sq_ctx_event *ev);
    /* Called once after a commit that created or deleted contexts. */
    void (*on_list_changed)(void *arg);
    /* Called by the writer when the store's health changes: ok false
     * (why: the store's sentence) when a commit fails, or a shared
     * store's database stops answering; ok true (why NULL) when it can
     * commit again.  While a store that is not shared is failed, changes
     * get SQ_CTX_STORE_FAILED; the writer tries it again after 1 s,
     * doubling to 30 s (a probe commit, or the next change), until it
     * commits.  Must not wait long.  NULL: nobody is told. */
    void (*on_store_health)(void *arg, bool ok, const char *why);
    void *arg;
} sq_ctx_opts;

/* ---------------------------------------------------------------- errors */

enum sq_ctx_code {
    SQ_CTX_OK = 0,
    SQ_CTX_INVALID_ID,          /* -EINVAL: not an id (see above) */
    SQ_CTX_INVALID_ARGUMENT,    /* -EINVAL: a bad argument (message says) */
    SQ_CTX_NOT_FOUND,           /* -ENOENT: no such context */
    SQ_CTX_ALREADY_EXISTS,      /* -EEXIST: current_version set */
    SQ_CTX_VERSION_MISMATCH,    /* -ESTALE: current_version set */
    SQ_CTX_INVALID_PATCH,       /* -EINVAL: op set (or -1) */
    SQ_CTX_PATCH_FAILED,        /* -ENOENT: a path that is not there; op set */
    SQ_CTX_TEST_FAILED,         /* -EDOM: a JSON Patch test; op set */
    SQ_CTX_TOO_LARGE,           /* -EFBIG: limit set */
    SQ_CTX_TOO_MANY_CONTEXTS,   /* -ENOSPC: limit set */
    SQ_CTX_TOO_MANY_SNAPSHOTS,  /* -ENOSPC: limit set */
    SQ_CTX_SNAPSHOT_EXISTS,     /* -EEXIST */
    SQ_CTX_SNAPSHOT_NOT_FOUND,  /* -ENOENT */
    SQ_CTX_RECOVERY_POINT_NOT_FOUND, /* -ENOENT */
    SQ_CTX_VERSION_UNAVAILABLE, /* -ENODATA: current_version, oldest_version */
    SQ_CTX_STORE_FAILED,        /* -EIO: the store failed; changes refused */
    SQ_CTX_STOPPING,            /* -ESHUTDOWN */
    SQ_CTX_CANCELLED,           /* -ECANCELED */
    SQ_CTX_NO_MEMORY,           /* -ENOMEM */
    SQ_CTX_NCODES
};

typedef struct sq_ctx_err {
    int code;                   /* enum sq_ctx_code */
    uint64_t current_version;
    uint64_t oldest_version;
    long op;                    /* the failing JSON Patch operation, or -1 */
    size_t limit;
    char message[256];
} sq_ctx_err;

/* The code's name as the MCP tools report it ("version_mismatch"). */
const char *sq_ctx_code_name(int code);

/* ---------------------------------------------------------------- life */

/* Opens the store opts->store names, checks it, loads every context
 * (documents are parsed by a task processor, a few at once) and starts
 * the writer task.  0 with *out, or a negative errno with a sentence in
 * err (the store's errors: store.h).  From a task; waits (the blocking
 * pool). */
int sq_ctx_open(sq_ctx_mgr **out, const sq_ctx_opts *opts, char *err,
                size_t errlen);

/* Stops taking changes (they get SQ_CTX_STOPPING), lets the writer commit
 * and acknowledge every change already queued, and waits for it to end.
 * Reads still work.  Idempotent.  Waits, with cancellation masked. */
void sq_ctx_stop(sq_ctx_mgr *m);

/* Stops m (as sq_ctx_stop) and frees it.  Listeners must have been
 * removed.  NULL is ignored. */
void sq_ctx_close(sq_ctx_mgr *m);

/* ---------------------------------------------------------------- kinds */

enum sq_ctx_kind {
    SQ_CTX_CREATE = 1,
    SQ_CTX_REPLACE = 2,         /* the patch is the new document */
    SQ_CTX_MERGE = 3,           /* RFC 7396 JSON Merge Patch */
    SQ_CTX_JSON_PATCH = 4,      /* RFC 6902 JSON Patch */
    SQ_CTX_RESTORE = 5,
    SQ_CTX_DELETE = 6,          /* (events only) */
};

/* "create", "replace", "merge", "json", "restore", "delete". */
const char *sq_ctx_kind_name(int kind);

/* ------------------------------------------------------------- changing */

/* Creates context id with document `doc` (any JSON value) and metadata
 * `meta` (an object, or NULL for {}), both copied, as version 1; actor
 * (may be NULL) is recorded as who made it.  Waits until it is durable.
 * 0 (and *created_at, may be NULL, in ms since the epoch), or an error:
 * SQ_CTX_INVALID_ID, INVALID_ARGUMENT, ALREADY_EXISTS (with its current
 * version), TOO_LARGE, TOO_MANY_CONTEXTS, STORE_FAILED, STOPPING,
 * CANCELLED, NO_MEMORY.  A create of an id whose deletion is being
 * committed waits for that commit first. */
int sq_ctx_create(sq_ctx_mgr *m, const char *id, json_t *doc, json_t *meta,
                  const char *actor, int64_t *created_at, sq_ctx_err *err);

/* A change of a document. */
typedef struct sq_ctx_change {
    const char *id;
    int kind;                   /* SQ_CTX_REPLACE, MERGE or JSON_PATCH */
    json_t *patch;              /* borrowed */
    uint64_t expected_version;  /* compare-and-set; 0: none */
    json_t *metadata;           /* new metadata (an object), or NULL */
    const char *actor;          /* who; may be NULL */
} sq_ctx_change;

/* Applies c to the newest version of its context, making the next
 * version, and waits until it is durable: 0 with *version (may be NULL).
 * With an expected version, nothing changes unless the newest version is
 * that one: SQ_CTX_VERSION_MISMATCH with current_version (if the newest
 * version was still being committed, the error comes once it is durable,
 * and names it).  A patch that fails (SQ_CTX_INVALID_PATCH,
 * PATCH_FAILED, TEST_FAILED, TOO_LARGE) changes nothing.  Also
 * INVALID_ID, INVALID_ARGUMENT, NOT_FOUND, STORE_FAILED, STOPPING,
 * CANCELLED, NO_MEMORY.  Two-phase: the patch is computed without the
 * context's lock and installed only if no other change came between (else
 * computed again; after a few tries, under the lock). */
int sq_ctx_update(sq_ctx_mgr *m, const sq_ctx_change *c, uint64_t *version,
                  sq_ctx_err *err);

/* Deletes id (with everything it has: history, snapshots, recovery
 * points), if its version is expected_version (0: any).  Waits until it
 * is durable; *last_version (may be NULL) gets the version deleted.
 * Errors as sq_ctx_update. */
int sq_ctx_delete(sq_ctx_mgr *m, const char *id, uint64_t expected_version,
                  uint64_t *last_version, sq_ctx_err *err);

/* Takes the named snapshot `name` of version `version` of id (0: the
 * newest; else one still in the history).  Waits until it is durable;
 * *taken (may be NULL) gets the version kept.  SQ_CTX_SNAPSHOT_EXISTS,
 * TOO_MANY_SNAPSHOTS, VERSION_UNAVAILABLE, and sq_ctx_update's. */
int sq_ctx_snapshot(sq_ctx_mgr *m, const char *id, const char *name,
                    uint64_t version, uint64_t *taken, sq_ctx_err *err);

/* Takes a recovery point of the newest version of id now (besides the
 * automatic ones, every recovery_every versions; the newest
 * recovery_keep are kept).  *version gets its version (taking one of a
 * version that has one already just names it).  Errors as
 * sq_ctx_update. */
int sq_ctx_recovery_point(sq_ctx_mgr *m, const char *id, uint64_t *version,
                          sq_ctx_err *err);

/* Restores id to snapshot `snapshot`, or (snapshot NULL) to the recovery
 * point of version `recovery_point`: the document becomes the one kept
 * there, as a new version (history is never rewritten; the metadata stays
 * as it is).  expected_version, actor and *version as sq_ctx_update.
 * SQ_CTX_SNAPSHOT_NOT_FOUND, RECOVERY_POINT_NOT_FOUND, and
 * sq_ctx_update's. */
int sq_ctx_restore(sq_ctx_mgr *m, const char *id, const char *snapshot,
                   uint64_t recovery_point, uint64_t expected_version,
                   const char *actor, uint64_t *version, sq_ctx_err *err);

/* --------------------------------------------------------------- reading */

/* A version of a context.  document and metadata are new references
 * (sq_ctx_info_clear releases them); they must not be changed.  They are
 * shared with the manager's own trees: release them with
 * sq_ctx_info_clear (sq_proto/jansson.h's atomic counting), and put a
 * copy (json_deep_copy), not a reference, into a JSON value of your own,
 * whose members libjansson releases out of ThreadSanitizer's sight. */
typedef struct sq_ctx_info {
    uint64_t version;
    json_t *document;
    json_t *metadata;           /* NULL for snapshots, recovery points */
    int64_t created_at;         /* ms since the epoch */
    int64_t updated_at;         /* when this version was made */
    int kind;                   /* the change that made it */
} sq_ctx_info;

void sq_ctx_info_clear(sq_ctx_info *i);

/* Reads version `version` of id (0: the newest, from memory; an older one
 * from the history in the store, on the blocking pool).  0, or
 * SQ_CTX_INVALID_ID, NOT_FOUND, VERSION_UNAVAILABLE (not kept, or not
 * made yet: current_version and oldest_version say what is), STORE_FAILED,
 * CANCELLED.  Only durable versions are ever returned. */
int sq_ctx_get(sq_ctx_mgr *m, const char *id, uint64_t version,
               sq_ctx_info *out, sq_ctx_err *err);

/* The newest version of id, from memory: doc (a new reference, may be
 * NULL) and version; never waits for a change or the store (the cheap
 * read, for hot paths).  0, -ENOENT, -EINVAL (bad id). */
int sq_ctx_peek(sq_ctx_mgr *m, const char *id, json_t **doc, uint64_t *version);

/* Reads snapshot `name`, or (name NULL) the recovery point of version
 * `recovery_point`, of id.  Errors as sq_ctx_get, plus
 * SQ_CTX_SNAPSHOT_NOT_FOUND, RECOVERY_POINT_NOT_FOUND. */
int sq_ctx_get_mark(sq_ctx_mgr *m, const char *id, const char *name,
                    uint64_t recovery_point, sq_ctx_info *out, sq_ctx_err *err);

/* The snapshots ([{name, version, created_at}], by name) and recovery
 * points ([{version, created_at, reason}], oldest first) of id that are
 * durable: new arrays in *snapshots and *recovery (either may be NULL).
 * Errors: INVALID_ID, NOT_FOUND, NO_MEMORY. */
int sq_ctx_marks(sq_ctx_mgr *m, const char *id, json_t **snapshots,
                 json_t **recovery, sq_ctx_err *err);

/* A page of id's history, newest first: the versions below `before` (0:
 * from the newest) among the last history_depth, at most `limit`, as
 * [{version, at, kind, by}] in *entries (a new array), and in *next the
 * `before` of the next page (0: no more).  Errors as sq_ctx_get. */
int sq_ctx_history(sq_ctx_mgr *m, const char *id, uint64_t before, size_t limit,
                   json_t **entries, uint64_t *next, sq_ctx_err *err);

/* The difference from version `from` to version `to` of id as a JSON
 * Patch (RFC 6902; a new array in *patch).  Errors as sq_ctx_get. */
int sq_ctx_diff(sq_ctx_mgr *m, const char *id, uint64_t from, uint64_t to,
                json_t **patch, sq_ctx_err *err);

/* A page of the contexts whose id starts with prefix (NULL or ""
 * for all) and sorts after `after` (NULL: from the first), in id order,
 * at most limit: [{id, version, created_at, updated_at, metadata}] in
 * *items, and in *next (malloc'ed) the `after` of the next page, or NULL
 * at the end.  Ids with a change being committed are listed as they are
 * durably.  Errors: INVALID_ARGUMENT, NO_MEMORY.  Never waits for a
 * change. */
int sq_ctx_list(sq_ctx_mgr *m, const char *prefix, const char *after,
                size_t limit, json_t **items, char **next, sq_ctx_err *err);

/* Number of contexts (durable or being created).  Never waits. */
size_t sq_ctx_count(sq_ctx_mgr *m);

/* ------------------------------------------------------------- listening */

typedef struct sq_ctx_listener sq_ctx_listener;

typedef struct sq_ctx_listen_opts {
    size_t capacity;            /* notifications queued; 0 = 64 */
    /* What a full queue does: false (default) drops the oldest
     * notification (counted: sq_ctx_listener_dropped, and visible as a
     * gap in the versions), true disconnects the listener (its next call
     * returns -ECONNRESET once it has taken what is queued).  Either way
     * the writer never waits for it. */
    bool disconnect_when_full;
} sq_ctx_listen_opts;

/* Listens to the changes of id: every version after *start (may be
 * NULL: the version durable when it was registered) will be delivered,
 * in order.  0, or INVALID_ID, NOT_FOUND, NO_MEMORY.  Never waits for a
 * change. */
int sq_ctx_listen(sq_ctx_mgr *m, const char *id, const sq_ctx_listen_opts *o,
                  sq_ctx_listener **out, uint64_t *start, sq_ctx_err *err);

/* The next version: 0 with *version and *deleted (the context was
 * deleted: the last notification), -ETIMEDOUT at deadline (SQ_FOREVER:
 * none), -ECONNRESET (disconnected: its queue was full), -EPIPE (the
 * manager closed), -ECANCELED.  Waits. */
int sq_ctx_next(sq_ctx_listener *l, int64_t deadline, uint64_t *version,
                bool *deleted);

/* Notifications dropped so far (queue full, drop-oldest).  Never waits. */
uint64_t sq_ctx_listener_dropped(sq_ctx_listener *l);

/* Stops listening and frees l.  NULL is ignored.  Never waits. */
void sq_ctx_unlisten(sq_ctx_listener *l);

/* --------------------------------------------------------------- figures */

typedef struct sq_ctx_stats {
    uint64_t contexts;          /* now */
    uint64_t changes;           /* committed changes (all kinds) */
    uint64_t commits;           /* transactions committed */
    uint64_t commit_failures;
    uint64_t conflicts;         /* version mismatches reported */
    uint64_t retries;           /* two-phase installs that found a newer
                                 * version and computed again */
    uint64_t max_batch;         /* the largest transaction (changes) */
    /* Committed changes by kind (enum sq_ctx_kind; [0]: snapshots and
     * recovery points); they add up to `changes`. */
    uint64_t by_kind[SQ_CTX_DELETE + 1];
} sq_ctx_stats;

void sq_ctx_stats_get(sq_ctx_mgr *m, sq_ctx_stats *out);

/* The manager's metrics registry (squirrel/metrics.h): counters of
 * changes, commits, conflicts; histograms of commit time, batch size and
 * change latency; the number of contexts. */
sq_metrics *sq_ctx_metrics(sq_ctx_mgr *m);

/* --------------------------------------------------------------- helpers */

/* True if id is a valid context id (or, name true, snapshot name). */
bool sq_ctx_valid_id(const char *id, bool name);

/* now in ms since the epoch; and an RFC 3339 UTC text of ms
 * ("2026-01-02T03:04:05.678Z") into buf (at least 32 bytes). */
/* The health of the manager's store: 0, or a negative errno with a
 * sentence in msg (a shared store whose database does not answer:
 * -ENOTCONN, while it reconnects; changes then fail fast with
 * SQ_CTX_STORE_FAILED).  Never waits.  (Until squirreld has a health
 * registry, this is what a monitor asks.) */
int sq_ctx_store_status(sq_ctx_mgr *m, char *msg, size_t len);

int64_t sq_ctx_now_ms(void);
void sq_ctx_time_text(int64_t ms, char *buf, size_t cap);

#endif
