/* The context manager's store: where contexts are kept durably
 * (docs/contexts.md, "Durability").  A backend is a table of functions
 * (sq_store_vtable) behind one opaque handle; the context manager knows
 * only this header, so a second backend (PostgreSQL) is a new file here
 * and a line in sq_store_open, nothing else.
 *
 * What a backend keeps, per context (by id):
 *  - the context: its id and creation time;
 *  - its versions: one row per version (number, time, kind of change,
 *    who made it, metadata and document as JSON text), the newest of
 *    which is the context's current state; older ones are pruned as the
 *    manager says (the history depth);
 *  - named snapshots (a name, the version and its document);
 *  - recovery points (a version and its document, the newest few kept).
 *
 * How a backend waits (its vtable's flags):
 *  - by default every function BLOCKS the calling thread (SQLite: disk):
 *    call it from the blocking pool or a thread of its own, never from a
 *    worker;
 *  - SQ_STORE_TASK_WAITS: the functions wait as a task (PostgreSQL: the
 *    connection's socket is registered with the runtime's reactor), so
 *    they must be called from a task, and are cheap to call from one.
 * sq_store_run hides the difference: the context manager calls every
 * store function through it.  A backend serialises what must be; none
 * holds a Squirrel lock while it waits.
 *
 * Shared backends (SQ_STORE_SHARED: several squirreld on one database):
 *  - commit checks each change's precondition in the database (a new
 *    version is the successor of the stored one, a new context's id is
 *    free, a snapshot's name is free); an operation that fails it is
 *    marked `stale`, skipped with every later operation of the same id,
 *    and the rest commits;
 *  - the backend tells its owner of changes other instances made
 *    (sq_store.on_external) and can read one context again (reload) or
 *    every context's version (heads).
 *
 * Durability: commit returns 0 only once its whole batch is durable (for
 * SQLite: the WAL is synced), and a batch is atomic (all or nothing).
 * Within a batch, operations apply in order.
 *
 * Errors are negative errno codes; functions that can fail for a reason a
 * person must read take `err` (errlen bytes) and write it there.
 */
#ifndef SQ_STORE_STORE_H
#define SQ_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sq_store sq_store;

/* The kinds of change, as recorded with each version. */
enum sq_store_kind {
    SQ_STORE_KIND_CREATE = 1,
    SQ_STORE_KIND_REPLACE = 2,
    SQ_STORE_KIND_MERGE = 3,
    SQ_STORE_KIND_JSON = 4,      /* JSON Patch */
    SQ_STORE_KIND_RESTORE = 5,
};

/* The operations of a commit. */
enum sq_store_opcode {
    SQ_STORE_CREATE = 1,    /* a new context with its first version */
    SQ_STORE_PUT = 2,       /* a new version of an existing context */
    SQ_STORE_DELETE = 3,    /* the context and everything it has */
    SQ_STORE_SNAPSHOT = 4,  /* a named snapshot of one version */
    SQ_STORE_RECOVERY = 5,  /* a recovery point of one version */
};

/* One operation.  Pointers are borrowed for the duration of the call. */
typedef struct sq_store_op {
    int op;                 /* enum sq_store_opcode */
    const char *id;
    uint64_t version;       /* CREATE, PUT: the new version (CREATE: 1);
                             * SNAPSHOT, RECOVERY: the version kept */
    int64_t at;             /* ms since the epoch: when */
    int kind;               /* CREATE, PUT: enum sq_store_kind */
    const char *actor;      /* CREATE, PUT: who ("" if unknown) */
    const char *doc;        /* CREATE, PUT, SNAPSHOT, RECOVERY: JSON text */
    size_t doc_len;
    const char *meta;       /* CREATE, PUT: metadata, JSON text */
    size_t meta_len;
    const char *name;       /* SNAPSHOT: its name */
    /* PUT: versions below this one may be dropped (the history depth);
     * 0 keeps them.  RECOVERY: keep only the newest `keep` points. */
    uint64_t prune_below;
    size_t keep;
    const char *reason;     /* RECOVERY: "auto" or "manual" */
    /* Out (shared backends): set by commit when the operation's
     * precondition failed in the database and it was skipped.  DELETE's
     * `version` is the tombstone's (the last version + 1). */
    bool stale;
} sq_store_op;

/* A snapshot or recovery point, as loaded (no document). */
typedef struct sq_store_mark {
    const char *name;       /* snapshot name; NULL for a recovery point */
    uint64_t version;
    int64_t at;
    const char *reason;     /* recovery point: "auto" or "manual" */
} sq_store_mark;

/* One context as loaded: its current (newest) version.  Everything is
 * borrowed for the duration of the callback. */
typedef struct sq_store_ctx {
    const char *id;
    int64_t created_at;
    uint64_t version;
    int64_t updated_at;     /* `at` of the newest version */
    int kind;
    const char *actor;
    const char *doc;
    size_t doc_len;
    const char *meta;
    size_t meta_len;
    const sq_store_mark *snapshots;   /* by name */
    size_t nsnapshots;
    const sq_store_mark *recovery;    /* oldest first */
    size_t nrecovery;
} sq_store_ctx;

/* Called once per context by load; a negative return stops the load and
 * is returned by it. */
typedef int (*sq_store_load_fn)(void *arg, const sq_store_ctx *c);

/* One version in the history (no document), newest first. */
typedef struct sq_store_hist {
    uint64_t version;
    int64_t at;
    int kind;
    const char *actor;
} sq_store_hist;
typedef int (*sq_store_hist_fn)(void *arg, const sq_store_hist *h);

/* A document read back: malloc'ed texts (free them with free()). */
typedef struct sq_store_doc {
    uint64_t version;
    int64_t at;
    int kind;
    char *doc;
    size_t doc_len;
    char *meta;             /* NULL for snapshots and recovery points */
    size_t meta_len;
} sq_store_doc;

/* One context's current version (heads). */
typedef int (*sq_store_head_fn)(void *arg, const char *id, uint64_t version);

/* One event of a legacy-era SSE stream (events_write, events_read): the
 * stream `stream` of HTTP session `session`, its `seq`-th message, whose
 * text (a JSON-RPC message) is data[0..len-1].  Borrowed for the call. */
typedef struct sq_store_event {
    const char *session;
    uint64_t stream;
    uint64_t seq;
    const char *data;
    size_t len;
} sq_store_event;
/* Called by events_read once per event, in seq order; a negative return
 * stops the read and is returned by it. */
typedef int (*sq_store_event_fn)(void *arg, const sq_store_event *e);

/* vtable flags */
#define SQ_STORE_TASK_WAITS 0x1   /* calls wait as a task, not a thread */
#define SQ_STORE_SHARED 0x2       /* several instances share the data */

typedef struct sq_store_vtable {
    const char *name;       /* "sqlite" */
    unsigned flags;         /* SQ_STORE_TASK_WAITS, SQ_STORE_SHARED */
    /* Calls fn for every context, in id order.  0, fn's negative value,
     * or an error (err says what). */
    int (*load)(sq_store *st, sq_store_load_fn fn, void *arg, char *err,
                size_t errlen);
    /* Applies ops[0..n-1] in one atomic, durable transaction: 0 once it
     * is durable; on any error nothing of it is applied (err says what).
     * n == 0 is a probe: a transaction that writes without changing
     * anything, 0 if a change could be committed now. */
    int (*commit)(sq_store *st, sq_store_op *ops, size_t n, char *err,
                  size_t errlen);
    /* The versions of id with low < version <= high, newest first, at
     * most limit of them.  0 or an error. */
    int (*history)(sq_store *st, const char *id, uint64_t low, uint64_t high,
                   size_t limit, sq_store_hist_fn fn, void *arg);
    /* Version `version` of id: 0, -ENOENT (not kept), an error. */
    int (*read_version)(sq_store *st, const char *id, uint64_t version,
                        sq_store_doc *out);
    /* Snapshot `name` of id: 0, -ENOENT, an error. */
    int (*read_snapshot)(sq_store *st, const char *id, const char *name,
                         sq_store_doc *out);
    /* The recovery point of id at `version`: 0, -ENOENT, an error. */
    int (*read_recovery)(sq_store *st, const char *id, uint64_t version,
                         sq_store_doc *out);
    /* Closes the store and frees st.  Everything committed stays. */
    void (*close)(sq_store *st);
    /* Shared backends only (NULL otherwise).  reload: context id as load
     * gives it (fn called once), -ENOENT if it is not there, an error.
     * heads: fn(id, version) for every context.  status: 0 while the
     * database answers, else a negative errno and a sentence in msg. */
    int (*reload)(sq_store *st, const char *id, sq_store_load_fn fn, void *arg);
    int (*heads)(sq_store *st, sq_store_head_fn fn, void *arg);
    int (*status)(sq_store *st, char *msg, size_t len);
    /* Event streams (docs/postgres.md, "The load balancer"): a backend
     * that keeps the legacy era's resumable SSE streams for the other
     * instances (PostgreSQL) has these; NULL otherwise (SQLite, memory:
     * the streams stay in the memory of their instance).
     * events_write: stores evs[0..n-1] (an event already stored is left
     * as it is) and deletes every stored event of the sessions
     * gone[0..ngone-1] (an event of those among evs is not stored), in
     * one transaction and one round trip: 0 once it has committed, or an
     * error (err says what; nothing of it was done, or, if the answer to
     * the commit was lost, perhaps all of it: calling it again with the
     * same arguments is harmless).
     * events_prune: deletes the events stored more than older_ms
     * milliseconds ago (the database's clock): 0 with *deleted, or an
     * error.
     * events_read: fn for each stored event of session's stream with
     * seq > after, in seq order: 0, -ENOENT when nothing at all is stored
     * for that stream (not even events at or before `after`), fn's
     * negative value, or an error. */
    int (*events_write)(sq_store *st, const sq_store_event *evs, size_t n,
                        const char *const *gone, size_t ngone, char *err, size_t errlen);
    int (*events_prune)(sq_store *st, int64_t older_ms, uint64_t *deleted);
    int (*events_read)(sq_store *st, const char *session, uint64_t stream, uint64_t after,
                       sq_store_event_fn fn, void *arg);
} sq_store_vtable;

/* Told by a shared backend that another instance changed context `id`
 * (its stored version is now at least `version`), or, with id NULL,
 * that changes may have been missed (after reconnecting): compare
 * everything.  Called from a task of the backend; must not wait. */
typedef void (*sq_store_external_fn)(void *arg, const char *id, uint64_t version);

/* The handle; a backend's own struct starts with it. */
struct sq_store {
    const sq_store_vtable *vt;
    char *spec;             /* what it was opened with ("sqlite:PATH") */
    /* Set by the owner right after opening (shared backends call it). */
    sq_store_external_fn on_external;
    void *external_arg;
};

/* Sets st's handler of others' changes (shared backends start telling it
 * from then on; what came before is held back, not lost).  Never waits. */
void sq_store_watch(sq_store *st, sq_store_external_fn fn, void *arg);

/* Runs fn(arg), which calls st's functions: directly, in the calling task,
 * for a backend whose calls wait as a task; on the blocking pool for one
 * whose calls block (the caller's task waits for it).  Cancellation is
 * masked while fn runs (a store call is never abandoned half way).  0, or
 * the blocking pool's error (fn did not run). */
int sq_store_run(sq_store *st, void *(*fn)(void *), void *arg);

/* The store's health: 0, or a negative errno with a sentence in msg
 * (-ENOTCONN: the database does not answer; reconnecting).  Never
 * waits. */
int sq_store_status(sq_store *st, char *msg, size_t len);

/* Opens the store that spec names:
 *   "sqlite:PATH"   a SQLite file (created if missing; WAL mode; see
 *                   docs/contexts.md for the checks made on opening);
 *   "memory"        SQLite in memory: nothing survives the process
 *                   (tests, throw-away servers);
 *   "postgresql://..." or "postgres://..."  a PostgreSQL database (a libpq
 *                   connection URI; docs/postgres.md), shared by every
 *                   squirreld that names it.
 * 0 with *out, or a negative errno with a sentence in err: -EINVAL (an
 * unknown kind of store), -EBUSY (the file is in use by another process),
 * -EPROTO (not a squirreld store, or written by a newer version),
 * -EIO (corrupt, or an I/O error), -ENOMEM.  An existing file that fails
 * a check is never changed; -ENOTCONN (the database does not answer).
 * Call it from a task: it waits as the backend does (a blocking backend
 * is opened on the blocking pool). */
int sq_store_open(const char *spec, sq_store **out, char *err, size_t errlen);

/* The backends' constructors (sq_store_open calls them). */
int sq__store_sqlite_open(const char *path, sq_store **out, char *err,
                          size_t errlen);

int sq__store_pg_open(const char *conninfo, sq_store **out, char *err,
                      size_t errlen);

/* Whether st keeps event streams (its vtable has events_write,
 * events_prune and events_read).  Never waits. */
bool sq_store_keeps_events(const sq_store *st);

/* The current schema version of the SQLite backend. */
#define SQ_STORE_SQLITE_SCHEMA 1
/* ... and of the PostgreSQL one (its own sequence). */
#define SQ_STORE_PG_SCHEMA 2

/* Frees the texts of d. */
void sq_store_doc_free(sq_store_doc *d);

/* The name of a kind ("create", "replace", ...), or "unknown". */
const char *sq_store_kind_name(int kind);

#endif
