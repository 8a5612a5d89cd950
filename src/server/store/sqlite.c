/* The SQLite backend of the store (store.h): one file, WAL mode,
 * synchronous=FULL, the file locked by this process for as long as it is
 * open.  docs/contexts.md ("Durability") explains the choices; in short:
 *  - WAL with synchronous=FULL: a commit returns once its frames are in
 *    the WAL and the WAL is synced, so a committed batch survives SIGKILL
 *    and power loss (with NORMAL it would survive a crash of squirreld,
 *    not of the machine).  One sync per commit, and the context manager
 *    commits many changes at once, so the sync is shared.
 *  - locking_mode=EXCLUSIVE: two squirreld on one file would each keep
 *    their own idea of the contexts in memory; the second is refused
 *    (-EBUSY) instead.  It also keeps the WAL index in memory (no -shm).
 *  - Opening checks before it writes anything: a file that is not SQLite,
 *    a SQLite file of another program, a schema newer than this build
 *    knows, or one that fails quick_check is an error and stays as it is.
 *  - The schema is versioned by PRAGMA user_version and migrated one step
 *    at a time, each step in its own transaction (migrations[] below).
 * Calls are serialised by a pthread mutex: they run on blocking-pool
 * threads (store.h), never on a worker. */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "SQCX" in PRAGMA application_id: a squirreld context store. */
#define APP_ID 0x53514358

/* Schema migrations: migrations[i] takes user_version i to i + 1.  Append
 * a step for every change of the schema (never edit a released one) and
 * raise SQ_STORE_SQLITE_SCHEMA in store.h. */
static const char *const migrations[SQ_STORE_SQLITE_SCHEMA] = {
    /* 0 -> 1: contexts, their versions, snapshots, recovery points. */
    "CREATE TABLE contexts ("
    "  id TEXT PRIMARY KEY,"
    "  created_at INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE versions ("
    "  id TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  at INTEGER NOT NULL,"
    "  kind INTEGER NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  meta TEXT NOT NULL,"
    "  doc TEXT NOT NULL,"
    "  PRIMARY KEY (id, version)"
    ") WITHOUT ROWID;"
    "CREATE TABLE snapshots ("
    "  id TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  at INTEGER NOT NULL,"
    "  doc TEXT NOT NULL,"
    "  PRIMARY KEY (id, name)"
    ") WITHOUT ROWID;"
    "CREATE TABLE recovery ("
    "  id TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  at INTEGER NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  doc TEXT NOT NULL,"
    "  PRIMARY KEY (id, version)"
    ") WITHOUT ROWID;",
};

enum {
    S_INS_CONTEXT, S_INS_VERSION, S_PRUNE, S_DEL_VERSIONS, S_DEL_SNAPSHOTS,
    S_DEL_RECOVERY, S_DEL_CONTEXT, S_INS_SNAPSHOT, S_INS_RECOVERY,
    S_PRUNE_RECOVERY, S_HISTORY, S_READ_VERSION, S_READ_SNAPSHOT,
    S_READ_RECOVERY, S_BEGIN, S_COMMIT, S_ROLLBACK, S_COUNT
};

static const char *const sql[S_COUNT] = {
    [S_INS_CONTEXT] = "INSERT INTO contexts (id, created_at) VALUES (?1, ?2)",
    [S_INS_VERSION] = "INSERT INTO versions (id, version, at, kind, actor, meta, doc) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_PRUNE] = "DELETE FROM versions WHERE id = ?1 AND version < ?2",
    [S_DEL_VERSIONS] = "DELETE FROM versions WHERE id = ?1",
    [S_DEL_SNAPSHOTS] = "DELETE FROM snapshots WHERE id = ?1",
    [S_DEL_RECOVERY] = "DELETE FROM recovery WHERE id = ?1",
    [S_DEL_CONTEXT] = "DELETE FROM contexts WHERE id = ?1",
    [S_INS_SNAPSHOT] = "INSERT INTO snapshots (id, name, version, at, doc) "
                       "VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_INS_RECOVERY] = "INSERT OR REPLACE INTO recovery (id, version, at, reason, doc) "
                       "VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_PRUNE_RECOVERY] = "DELETE FROM recovery WHERE id = ?1 AND version NOT IN "
                         "(SELECT version FROM recovery WHERE id = ?1 "
                         " ORDER BY version DESC LIMIT ?2)",
    [S_HISTORY] = "SELECT version, at, kind, actor FROM versions "
                  "WHERE id = ?1 AND version > ?2 AND version <= ?3 "
                  "ORDER BY version DESC LIMIT ?4",
    [S_READ_VERSION] = "SELECT version, at, kind, doc, meta FROM versions "
                       "WHERE id = ?1 AND version = ?2",
    [S_READ_SNAPSHOT] = "SELECT version, at, 0, doc, NULL FROM snapshots "
                        "WHERE id = ?1 AND name = ?2",
    [S_READ_RECOVERY] = "SELECT version, at, 0, doc, NULL FROM recovery "
                        "WHERE id = ?1 AND version = ?2",
    [S_BEGIN] = "BEGIN",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
};

typedef struct sqlite_store {
    sq_store base;
    sqlite3 *db;
    pthread_mutex_t lock;
    sqlite3_stmt *st[S_COUNT];
} sqlite_store;

static int say(char *err, size_t n, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int say(char *err, size_t n, int code, const char *fmt, ...)
{
    if (err && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* A SQLite result code as an errno. */
static int errno_of(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK: case SQLITE_DONE: case SQLITE_ROW: return 0;
    case SQLITE_NOMEM: return -ENOMEM;
    case SQLITE_BUSY: case SQLITE_LOCKED: return -EBUSY;
    case SQLITE_FULL: return -ENOSPC;
    case SQLITE_CANTOPEN: return -ENOENT;
    case SQLITE_READONLY: case SQLITE_PERM: case SQLITE_AUTH: return -EACCES;
    case SQLITE_CONSTRAINT: return -EEXIST;
    case SQLITE_NOTADB: case SQLITE_CORRUPT: case SQLITE_FORMAT: return -EPROTO;
    default: return -EIO;
    }
}

/* Runs SQL that returns no rows.  SQLite's code. */
static int exec(sqlite3 *db, const char *q)
{
    return sqlite3_exec(db, q, NULL, NULL, NULL);
}

/* The integer a one-row query returns (e.g. a pragma); SQLite's code. */
static int query_int(sqlite3 *db, const char *q, int64_t *out)
{
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(db, q, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        *out = 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc;
}

/* ---------------------------------------------------------- opening */

/* Reads the file's identity (without writing): 0, or an error in err. */
static int check_identity(sqlite3 *db, const char *path, int64_t *version,
                          char *err, size_t errlen)
{
    int64_t app = 0, tables = 0;
    int rc = query_int(db, "PRAGMA application_id", &app);
    if (rc == SQLITE_OK)
        rc = query_int(db, "PRAGMA user_version", version);
    if (rc == SQLITE_OK)
        rc = query_int(db, "SELECT count(*) FROM sqlite_schema", &tables);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return say(err, errlen, -EBUSY,
                   "%s is in use by another process (one squirreld per store)", path);
    if (rc != SQLITE_OK)
        return say(err, errlen, errno_of(rc) ? errno_of(rc) : -EIO,
                   "%s is not a usable SQLite database (%s); it was left as it is", path,
                   sqlite3_errmsg(db));
    if (app == 0 && *version == 0 && tables > 0)
        return say(err, errlen, -EPROTO,
                   "%s is a SQLite database of another program (it has tables and no "
                   "squirreld application id); it was left as it is", path);
    if (app != 0 && app != APP_ID)
        return say(err, errlen, -EPROTO,
                   "%s is a SQLite database of another program (application id %#llx); "
                   "it was left as it is", path, (unsigned long long)app);
    if (*version > SQ_STORE_SQLITE_SCHEMA)
        return say(err, errlen, -EPROTO,
                   "%s has schema version %lld, newer than this squirreld knows (%d): "
                   "a newer squirreld wrote it; it was left as it is", path,
                   (long long)*version, SQ_STORE_SQLITE_SCHEMA);
    if (app == 0 && *version != 0)
        return say(err, errlen, -EPROTO,
                   "%s has a schema version but no squirreld application id; it was "
                   "left as it is", path);
    return 0;
}

/* PRAGMA quick_check: 0 if "ok". */
static int check_integrity(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &s, NULL);
    if (rc != SQLITE_OK)
        return say(err, errlen, -EIO, "%s: integrity check failed: %s", path,
                   sqlite3_errmsg(db));
    rc = sqlite3_step(s);
    const char *res = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
    int out = 0;
    if (!res || strcmp(res, "ok") != 0)
        out = say(err, errlen, -EIO, "%s is corrupt (%s); it was left as it is", path,
                  res ? res : sqlite3_errmsg(db));
    sqlite3_finalize(s);
    return out;
}

/* Runs the migrations from `from` to the current schema, one transaction
 * each. */
static int migrate(sqlite3 *db, const char *path, int64_t from, char *err, size_t errlen)
{
    for (int64_t v = from; v < SQ_STORE_SQLITE_SCHEMA; v++) {
        char q[96];
        int rc = exec(db, "BEGIN");
        if (rc == SQLITE_OK && v == 0) {
            snprintf(q, sizeof q, "PRAGMA application_id = %d", APP_ID);
            rc = exec(db, q);
        }
        if (rc == SQLITE_OK)
            rc = exec(db, migrations[v]);
        if (rc == SQLITE_OK) {
            snprintf(q, sizeof q, "PRAGMA user_version = %lld", (long long)v + 1);
            rc = exec(db, q);
        }
        if (rc == SQLITE_OK)
            rc = exec(db, "COMMIT");
        if (rc != SQLITE_OK) {
            int e = say(err, errlen, errno_of(rc) ? errno_of(rc) : -EIO,
                        "%s: migrating the schema from version %lld failed: %s", path,
                        (long long)v, sqlite3_errmsg(db));
            exec(db, "ROLLBACK");
            return e;
        }
    }
    return 0;
}

/* Every context has a version (a file edited by hand, or damaged in a way
 * quick_check cannot see, may break that). */
static int check_contexts(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int64_t orphans = 0;
    int rc = query_int(db,
                       "SELECT count(*) FROM contexts c WHERE NOT EXISTS "
                       "(SELECT 1 FROM versions v WHERE v.id = c.id)",
                       &orphans);
    if (rc != SQLITE_OK)
        return say(err, errlen, -EIO, "%s: %s", path, sqlite3_errmsg(db));
    if (orphans)
        return say(err, errlen, -EIO,
                   "%s is inconsistent: %lld contexts without any version; it was "
                   "left as it is", path, (long long)orphans);
    return 0;
}

static void sqlite_close(sq_store *st);

static const sq_store_vtable sqlite_vt;

int sq__store_sqlite_open(const char *path, sq_store **out, char *err, size_t errlen)
{
    *out = NULL;
    bool memory = strcmp(path, ":memory:") == 0;
    sqlite_store *s = calloc(1, sizeof *s);
    if (!s)
        return say(err, errlen, -ENOMEM, "out of memory");
    s->base.vt = &sqlite_vt;
    pthread_mutex_init(&s->lock, NULL);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
    int e = 0;
    if (rc != SQLITE_OK) {
        e = say(err, errlen, errno_of(rc) ? errno_of(rc) : -EIO, "cannot open %s: %s", path,
                s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    int64_t version = 0;
    /* Exclusive before the first read: the lock is then never given back,
     * and WAL keeps its index in memory. */
    if (!memory && exec(s->db, "PRAGMA locking_mode = EXCLUSIVE") != SQLITE_OK) {
        e = say(err, errlen, -EIO, "%s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if ((e = check_identity(s->db, path, &version, err, errlen)) != 0)
        goto fail;
    if (!memory) {
        /* The file is ours (or new): now it may be written. */
        sqlite3_stmt *q;
        rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &q, NULL);
        const char *mode = NULL;
        if (rc == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
            mode = (const char *)sqlite3_column_text(q, 0);
        bool wal = mode && strcmp(mode, "wal") == 0;
        sqlite3_finalize(q);
        if (!wal) {
            e = say(err, errlen, sqlite3_errcode(s->db) == SQLITE_BUSY ? -EBUSY : -EIO,
                    "%s: cannot switch to WAL mode: %s", path, sqlite3_errmsg(s->db));
            goto fail;
        }
        /* Take the write lock now (kept until close): a second process is
         * told at once, not at its first change. */
        rc = exec(s->db, "BEGIN IMMEDIATE");
        if (rc == SQLITE_OK)
            rc = exec(s->db, "COMMIT");
        if (rc != SQLITE_OK) {
            e = say(err, errlen, (rc & 0xff) == SQLITE_BUSY ? -EBUSY : -EIO,
                    "%s is in use by another process (one squirreld per store): %s", path,
                    sqlite3_errmsg(s->db));
            goto fail;
        }
    }
    /* A checkpoint every 8,192 WAL pages (32 MiB) rather than SQLite's
     * 1,000: under a steady stream of group commits the same hot pages
     * are copied back to the database once per checkpoint, so fewer
     * checkpoints write (and sync) less (ctx.update.c64 gains ~12%).
     * The WAL file is cut back to 64 MiB after one. */
    if (exec(s->db, "PRAGMA synchronous = FULL") != SQLITE_OK ||
        exec(s->db, "PRAGMA cache_size = -16384") != SQLITE_OK ||
        exec(s->db, "PRAGMA wal_autocheckpoint = 8192") != SQLITE_OK ||
        exec(s->db, "PRAGMA journal_size_limit = 67108864") != SQLITE_OK ||
        exec(s->db, "PRAGMA foreign_keys = OFF") != SQLITE_OK) {
        e = say(err, errlen, -EIO, "%s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if (version > 0 && (e = check_integrity(s->db, path, err, errlen)) != 0)
        goto fail;
    if ((e = migrate(s->db, path, version, err, errlen)) != 0)
        goto fail;
    if ((e = check_contexts(s->db, path, err, errlen)) != 0)
        goto fail;
    for (int i = 0; i < S_COUNT; i++) {
        rc = sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        if (rc != SQLITE_OK) {
            e = say(err, errlen, -EIO, "%s: %s", path, sqlite3_errmsg(s->db));
            goto fail;
        }
    }
    *out = &s->base;
    return 0;
fail:
    sqlite_close(&s->base);
    return e;
}

static void sqlite_close(sq_store *st)
{
    sqlite_store *s = (sqlite_store *)st;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    if (s->db)
        sqlite3_close_v2(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s->base.spec);
    free(s);
}

/* ---------------------------------------------------------- loading */

/* A growable array of marks (snapshots or recovery points) with their
 * strings. */
typedef struct marks {
    sq_store_mark *m;
    char **strs;
    size_t n, cap;
} marks;

static void marks_clear(marks *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->strs[i]);
    k->n = 0;
}

static void marks_free(marks *k)
{
    marks_clear(k);
    free(k->m);
    free(k->strs);
}

static int marks_add(marks *k, const char *str, uint64_t version, int64_t at, bool named)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 8;
        sq_store_mark *m = realloc(k->m, cap * sizeof *m);
        if (m)
            k->m = m;
        char **s = realloc(k->strs, cap * sizeof *s);
        if (s)
            k->strs = s;
        if (!m || !s)
            return -ENOMEM;
        k->cap = cap;
    }
    char *copy = strdup(str ? str : "");
    if (!copy)
        return -ENOMEM;
    k->strs[k->n] = copy;
    k->m[k->n] = (sq_store_mark){.name = named ? copy : NULL, .version = version, .at = at,
                                 .reason = named ? NULL : copy};
    k->n++;
    return 0;
}

/* Collects the rows of a marks query (ordered by id) that belong to id,
 * stepping the cursor statement `q` (whose current row, if any, is the
 * first not yet used: *pending). */
static int collect_marks(sqlite3_stmt *q, bool *pending, const char *id, marks *k,
                         bool named)
{
    marks_clear(k);
    while (*pending) {
        const char *qid = (const char *)sqlite3_column_text(q, 0);
        int c = strcmp(qid ? qid : "", id);
        if (c > 0)
            break;
        if (c == 0) {
            const char *str = (const char *)sqlite3_column_text(q, 1);
            if (marks_add(k, str, (uint64_t)sqlite3_column_int64(q, 2),
                          sqlite3_column_int64(q, 3), named) != 0)
                return -ENOMEM;
        }
        int rc = sqlite3_step(q);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return errno_of(rc) ? errno_of(rc) : -EIO;
        *pending = rc == SQLITE_ROW;
    }
    return 0;
}

static int sqlite_load(sq_store *st, sq_store_load_fn fn, void *arg, char *err,
                       size_t errlen)
{
    sqlite_store *s = (sqlite_store *)st;
    sqlite3_stmt *q = NULL, *qs = NULL, *qr = NULL;
    marks snaps = {0}, recs = {0};
    int e = 0;
    pthread_mutex_lock(&s->lock);
    int rc = sqlite3_prepare_v2(
        s->db,
        "SELECT c.id, c.created_at, v.version, v.at, v.kind, v.actor, v.meta, v.doc "
        "FROM contexts c JOIN versions v ON v.id = c.id "
        "AND v.version = (SELECT max(version) FROM versions WHERE id = c.id) "
        "ORDER BY c.id",
        -1, &q, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(s->db,
                                "SELECT id, name, version, at FROM snapshots ORDER BY id, name",
                                -1, &qs, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(
            s->db, "SELECT id, reason, version, at FROM recovery ORDER BY id, version", -1,
            &qr, NULL);
    if (rc != SQLITE_OK) {
        e = say(err, errlen, -EIO, "loading the contexts: %s", sqlite3_errmsg(s->db));
        goto out;
    }
    int rs = sqlite3_step(qs), rr = sqlite3_step(qr);
    bool ps = rs == SQLITE_ROW, pr = rr == SQLITE_ROW;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        sq_store_ctx c = {
            .id = (const char *)sqlite3_column_text(q, 0),
            .created_at = sqlite3_column_int64(q, 1),
            .version = (uint64_t)sqlite3_column_int64(q, 2),
            .updated_at = sqlite3_column_int64(q, 3),
            .kind = sqlite3_column_int(q, 4),
            .actor = (const char *)sqlite3_column_text(q, 5),
            .meta = (const char *)sqlite3_column_text(q, 6),
            .meta_len = (size_t)sqlite3_column_bytes(q, 6),
            .doc = (const char *)sqlite3_column_text(q, 7),
            .doc_len = (size_t)sqlite3_column_bytes(q, 7),
        };
        if (!c.id || !c.doc || !c.meta) {
            e = say(err, errlen, -ENOMEM, "loading the contexts: out of memory");
            goto out;
        }
        if ((e = collect_marks(qs, &ps, c.id, &snaps, true)) != 0 ||
            (e = collect_marks(qr, &pr, c.id, &recs, false)) != 0) {
            say(err, errlen, e, "loading the contexts: %s", sqlite3_errmsg(s->db));
            goto out;
        }
        c.snapshots = snaps.m;
        c.nsnapshots = snaps.n;
        c.recovery = recs.m;
        c.nrecovery = recs.n;
        if (!c.actor)
            c.actor = "";
        if ((e = fn(arg, &c)) < 0)
            goto out;
        e = 0;
    }
    if (rc != SQLITE_DONE)
        e = say(err, errlen, errno_of(rc) ? errno_of(rc) : -EIO, "loading the contexts: %s",
                sqlite3_errmsg(s->db));
out:
    sqlite3_finalize(q);
    sqlite3_finalize(qs);
    sqlite3_finalize(qr);
    marks_free(&snaps);
    marks_free(&recs);
    pthread_mutex_unlock(&s->lock);
    return e;
}

/* ---------------------------------------------------------- committing */

static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void bind_text(sqlite3_stmt *s, int i, const char *t, size_t n)
{
    sqlite3_bind_text64(s, i, t ? t : "", t ? n : 0, SQLITE_STATIC, SQLITE_UTF8);
}

static int put_version(sqlite_store *s, const sq_store_op *o)
{
    sqlite3_stmt *q = s->st[S_INS_VERSION];
    sqlite3_bind_text(q, 1, o->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)o->version);
    sqlite3_bind_int64(q, 3, o->at);
    sqlite3_bind_int(q, 4, o->kind);
    sqlite3_bind_text(q, 5, o->actor ? o->actor : "", -1, SQLITE_STATIC);
    bind_text(q, 6, o->meta, o->meta_len);
    bind_text(q, 7, o->doc, o->doc_len);
    int rc = step_done(q);
    if (rc == SQLITE_OK && o->op == SQ_STORE_PUT && o->prune_below > 1) {
        q = s->st[S_PRUNE];
        sqlite3_bind_text(q, 1, o->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, (sqlite3_int64)o->prune_below);
        rc = step_done(q);
    }
    return rc;
}

static int by_id(sqlite_store *s, int which, const char *id)
{
    sqlite3_stmt *q = s->st[which];
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    return step_done(q);
}

static int apply(sqlite_store *s, const sq_store_op *o)
{
    sqlite3_stmt *q;
    int rc;
    switch (o->op) {
    case SQ_STORE_CREATE:
        q = s->st[S_INS_CONTEXT];
        sqlite3_bind_text(q, 1, o->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, o->at);
        rc = step_done(q);
        return rc == SQLITE_OK ? put_version(s, o) : rc;
    case SQ_STORE_PUT:
        return put_version(s, o);
    case SQ_STORE_DELETE:
        rc = by_id(s, S_DEL_VERSIONS, o->id);
        if (rc == SQLITE_OK)
            rc = by_id(s, S_DEL_SNAPSHOTS, o->id);
        if (rc == SQLITE_OK)
            rc = by_id(s, S_DEL_RECOVERY, o->id);
        if (rc == SQLITE_OK)
            rc = by_id(s, S_DEL_CONTEXT, o->id);
        return rc;
    case SQ_STORE_SNAPSHOT:
        q = s->st[S_INS_SNAPSHOT];
        sqlite3_bind_text(q, 1, o->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, o->name ? o->name : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, (sqlite3_int64)o->version);
        sqlite3_bind_int64(q, 4, o->at);
        bind_text(q, 5, o->doc, o->doc_len);
        return step_done(q);
    case SQ_STORE_RECOVERY:
        q = s->st[S_INS_RECOVERY];
        sqlite3_bind_text(q, 1, o->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, (sqlite3_int64)o->version);
        sqlite3_bind_int64(q, 3, o->at);
        sqlite3_bind_text(q, 4, o->reason ? o->reason : "auto", -1, SQLITE_STATIC);
        bind_text(q, 5, o->doc, o->doc_len);
        rc = step_done(q);
        if (rc == SQLITE_OK && o->keep) {
            q = s->st[S_PRUNE_RECOVERY];
            sqlite3_bind_text(q, 1, o->id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(q, 2, (sqlite3_int64)o->keep);
            rc = step_done(q);
        }
        return rc;
    default:
        return SQLITE_MISUSE;
    }
}

static int sqlite_commit(sq_store *st, sq_store_op *ops, size_t n, char *err,
                         size_t errlen)
{
    sqlite_store *s = (sqlite_store *)st;
    pthread_mutex_lock(&s->lock);
    int rc = step_done(s->st[S_BEGIN]);
    size_t i = 0;
    for (; rc == SQLITE_OK && i < n; i++)
        rc = apply(s, &ops[i]);
    if (rc == SQLITE_OK && n == 0) {
        /* A probe (store.h): a write that changes nothing, so that the
         * commit below really writes (the header page) and fails where a
         * change would. */
        char q[48];
        snprintf(q, sizeof q, "PRAGMA user_version = %d", SQ_STORE_SQLITE_SCHEMA);
        rc = exec(s->db, q);
    }
    if (rc == SQLITE_OK)
        rc = step_done(s->st[S_COMMIT]);
    int e = 0;
    if (rc != SQLITE_OK) {
        e = say(err, errlen, errno_of(rc) ? errno_of(rc) : -EIO,
                "committing %zu changes failed (at %zu: %s): %s", n, i ? i - 1 : 0,
                i && i <= n ? ops[i - 1].id : "-", sqlite3_errmsg(s->db));
        if (!sqlite3_get_autocommit(s->db))
            step_done(s->st[S_ROLLBACK]);
    }
    pthread_mutex_unlock(&s->lock);
    return e;
}

/* ---------------------------------------------------------- reading */

static int sqlite_history(sq_store *st, const char *id, uint64_t low, uint64_t high,
                          size_t limit, sq_store_hist_fn fn, void *arg)
{
    sqlite_store *s = (sqlite_store *)st;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *q = s->st[S_HISTORY];
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)low);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)(high > INT64_MAX ? INT64_MAX : high));
    sqlite3_bind_int64(q, 4, (sqlite3_int64)(limit > INT64_MAX ? INT64_MAX : limit));
    int rc, e = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        sq_store_hist h = {
            .version = (uint64_t)sqlite3_column_int64(q, 0),
            .at = sqlite3_column_int64(q, 1),
            .kind = sqlite3_column_int(q, 2),
            .actor = (const char *)sqlite3_column_text(q, 3),
        };
        if (!h.actor)
            h.actor = "";
        if ((e = fn(arg, &h)) < 0)
            break;
        e = 0;
    }
    if (e == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        e = errno_of(rc) ? errno_of(rc) : -EIO;
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    pthread_mutex_unlock(&s->lock);
    return e;
}

static char *dup_column(sqlite3_stmt *q, int i, size_t *len)
{
    const unsigned char *t = sqlite3_column_text(q, i);
    if (!t)
        return NULL;
    size_t n = (size_t)sqlite3_column_bytes(q, i);
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, t, n);
        c[n] = '\0';
        *len = n;
    }
    return c;
}

/* Runs a read statement bound with (id, key) and copies its one row. */
static int read_doc(sqlite_store *s, int which, const char *id, const char *name,
                    uint64_t version, sq_store_doc *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *q = s->st[which];
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    if (name)
        sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(q, 2, (sqlite3_int64)version);
    int rc = sqlite3_step(q), e = 0;
    if (rc == SQLITE_ROW) {
        out->version = (uint64_t)sqlite3_column_int64(q, 0);
        out->at = sqlite3_column_int64(q, 1);
        out->kind = sqlite3_column_int(q, 2);
        out->doc = dup_column(q, 3, &out->doc_len);
        if (sqlite3_column_type(q, 4) != SQLITE_NULL)
            out->meta = dup_column(q, 4, &out->meta_len);
        if (!out->doc || (sqlite3_column_type(q, 4) != SQLITE_NULL && !out->meta)) {
            sq_store_doc_free(out);
            e = -ENOMEM;
        }
    } else {
        e = rc == SQLITE_DONE ? -ENOENT : errno_of(rc) ? errno_of(rc) : -EIO;
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    pthread_mutex_unlock(&s->lock);
    return e;
}

static int sqlite_read_version(sq_store *st, const char *id, uint64_t version,
                               sq_store_doc *out)
{
    return read_doc((sqlite_store *)st, S_READ_VERSION, id, NULL, version, out);
}

static int sqlite_read_snapshot(sq_store *st, const char *id, const char *name,
                                sq_store_doc *out)
{
    return read_doc((sqlite_store *)st, S_READ_SNAPSHOT, id, name, 0, out);
}

static int sqlite_read_recovery(sq_store *st, const char *id, uint64_t version,
                                sq_store_doc *out)
{
    return read_doc((sqlite_store *)st, S_READ_RECOVERY, id, NULL, version, out);
}

static const sq_store_vtable sqlite_vt = {
    .name = "sqlite",
    .load = sqlite_load,
    .commit = sqlite_commit,
    .history = sqlite_history,
    .read_version = sqlite_read_version,
    .read_snapshot = sqlite_read_snapshot,
    .read_recovery = sqlite_read_recovery,
    .close = sqlite_close,
};
