/* The PostgreSQL backend of the store (store.h; docs/postgres.md): one
 * database shared by every squirreld that names it.
 *
 *  - Waits as a task (SQ_STORE_TASK_WAITS): libpq in non-blocking mode on
 *    the runtime's reactor (pg_conn.c), so a query suspends its task, not
 *    a worker and not a blocking-pool thread.
 *  - A pool of PG_POOL connections, made when first needed; a call waits
 *    for one until PG_ACQUIRE_WAIT has passed (-ETIMEDOUT).
 *  - Group commit and compare-and-set by the database: commit is one call
 *    of squirrel_commit (pg_schema.h), one transaction and one round trip
 *    per batch, whose conditional updates refuse a change another
 *    instance made first (the op is marked stale).
 *  - A keeper task holds one more connection that LISTENs for the changes
 *    every instance announces (NOTIFY at commit), and tells the owner of
 *    the others' (sq_store.on_external).  Its connection is the store's
 *    health: lost, it is reported at once (status, and calls fail fast
 *    with -ENOTCONN instead of waiting), and remade with backoff
 *    (PG_BACKOFF_MIN doubling to PG_BACKOFF_MAX); once back, the owner is
 *    told to compare everything (changes made meanwhile had no listener).
 *  - Nothing acknowledged is lost: commit returns 0 only when PostgreSQL
 *    has committed (synchronous_commit as the server is configured: on by
 *    default, which makes a commit durable); a commit whose answer was
 *    lost returns an error, its outcome unknown to the caller, which then
 *    reads the context again. */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pg_conn.h"
#include "pg_schema.h"
#include "pg_store.h"
#include "sq_base/spin.h"
#include "sq_base/strbuf.h"
#include "sq_proto/jansson.h"
#include "squirrel/runtime.h"
#include "squirrel/sync.h"

/* Connections for queries (the keeper has one more). */
#define PG_POOL 4
/* How long a call waits for a free connection. */
#define PG_ACQUIRE_WAIT (5 * SQ_SEC)
/* How long connecting, and any one query, may take. */
#define PG_CONNECT_WAIT (5 * SQ_SEC)
#define PG_QUERY_WAIT (30 * SQ_SEC)
#define PG_BACKOFF_MIN (50 * SQ_MSEC)
#define PG_BACKOFF_MAX (2 * SQ_SEC)

typedef struct pg_store {
    sq_store base;
    char *conninfo;
    char origin[24];             /* this instance, in the notifications */
    sq_sem permits;              /* PG_POOL */
    sq__spin lock;               /* free[], down_msg */
    pg_conn conns[PG_POOL];
    bool busy[PG_POOL];
    uint64_t epoch_of[PG_POOL];  /* `epoch` when conns[i] was made */
    atomic_uint_fast64_t epoch;  /* bumped when the keeper reconnects */
    atomic_bool down;            /* the keeper's connection is lost */
    char down_msg[256];
    sq_task keeper;
    bool keeper_started;
    pg_conn listen;              /* the keeper's */
    atomic_uint_fast64_t reconnects;
} pg_store;

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

/* ----------------------------------------------------------- the pool */

static void set_down(pg_store *s, const char *why)
{
    sq__spin_lock(&s->lock);
    snprintf(s->down_msg, sizeof s->down_msg, "%s", why);
    sq__spin_unlock(&s->lock);
    atomic_store(&s->down, true);
}

/* Fails fast while the database is known to be away. */
static int check_up(pg_store *s, char *err, size_t errlen)
{
    if (!atomic_load(&s->down))
        return 0;
    sq__spin_lock(&s->lock);
    say(err, errlen, -ENOTCONN, "the PostgreSQL database does not answer (%s); reconnecting",
        s->down_msg);
    sq__spin_unlock(&s->lock);
    return -ENOTCONN;
}

/* A connection of the pool, connected: its index, or an error. */
static int acquire(pg_store *s, char *err, size_t errlen)
{
    int rc = check_up(s, err, errlen);
    if (rc)
        return rc;
    rc = sq_sem_acquire_until(&s->permits, 1, sq_now() + PG_ACQUIRE_WAIT);
    if (rc == -ETIMEDOUT)
        return say(err, errlen, rc, "no PostgreSQL connection free within %d s (the pool has %d)",
                   (int)(PG_ACQUIRE_WAIT / SQ_SEC), PG_POOL);
    if (rc)
        return say(err, errlen, rc, "waiting for a PostgreSQL connection: %s", sq_strerror(rc));
    int i;
    sq__spin_lock(&s->lock);
    for (i = 0; i < PG_POOL && s->busy[i]; i++)
        ;
    s->busy[i] = true;
    sq__spin_unlock(&s->lock);
    /* A connection made before the keeper last lost the database is dead
     * too (the server restarted), though libpq does not know it yet. */
    uint64_t epoch = atomic_load(&s->epoch);
    if (!pgc_ok(&s->conns[i]) || s->epoch_of[i] != epoch) {
        pgc_close(&s->conns[i]);
        s->epoch_of[i] = epoch;
        rc = pgc_connect(&s->conns[i], s->conninfo, sq_now() + PG_CONNECT_WAIT, err, errlen);
        if (rc) {
            sq__spin_lock(&s->lock);
            s->busy[i] = false;
            sq__spin_unlock(&s->lock);
            sq_sem_release(&s->permits, 1);
            return rc;
        }
    }
    return i;
}

static void release(pg_store *s, int i)
{
    sq__spin_lock(&s->lock);
    s->busy[i] = false;
    sq__spin_unlock(&s->lock);
    sq_sem_release(&s->permits, 1);
}

/* One query on a pool connection (params as text).  A read (`retry`)
 * that finds its connection lost is tried once more on a new one (the
 * server may have closed an idle connection); a commit never is: it may
 * have been done. */
static int query_once(pg_store *s, const char *sql, int nparams, const char *const *params,
                      int status, PGresult **res, char *err, size_t errlen)
{
    int i = acquire(s, err, errlen);
    if (i < 0)
        return i;
    int rc = pgc_query(&s->conns[i], sql, nparams, params, status, res,
                       sq_now() + PG_QUERY_WAIT, err, errlen);
    release(s, i);
    return rc;
}

static int query_how(pg_store *s, const char *sql, int nparams, const char *const *params,
                     int status, PGresult **res, char *err, size_t errlen, bool retry)
{
    char ebuf[256];
    if (!err) {
        err = ebuf;
        errlen = sizeof ebuf;
    }
    int rc = query_once(s, sql, nparams, params, status, res, err, errlen);
    if (rc == -ENOTCONN && retry)
        rc = query_once(s, sql, nparams, params, status, res, err, errlen);
    return rc;
}

int sq__pg_query(sq_store *st, const char *sql, int nparams, const char *const *params,
                 int status, PGresult **res, char *err, size_t errlen, bool retry)
{
    return query_how((pg_store *)st, sql, nparams, params, status, res, err, errlen, retry);
}

static int query(pg_store *s, const char *sql, int nparams, const char *const *params,
                 int status, PGresult **res, char *err, size_t errlen)
{
    return query_how(s, sql, nparams, params, status, res, err, errlen, true);
}

/* ------------------------------------------------------------- values */

static int64_t num(const PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static char *dup_value(const PGresult *r, int row, int col, size_t *len)
{
    size_t n = (size_t)PQgetlength(r, row, col);
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, PQgetvalue(r, row, col), n);
        c[n] = '\0';
        if (len)
            *len = n;
    }
    return c;
}

void sq__pg_json_str(sq__strbuf *b, const char *s, size_t len)
{
    sq__strbuf_putc(b, '"');
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    for (const unsigned char *e = p + (s ? len : 0); p < e; p++) {
        if (*p == '"' || *p == '\\') {
            sq__strbuf_putc(b, '\\');
            sq__strbuf_putc(b, (char)*p);
        } else if (*p < 0x20) {
            sq__strbuf_printf(b, "\\u%04x", *p);
        } else {
            sq__strbuf_putc(b, (char)*p);
        }
    }
    sq__strbuf_putc(b, '"');
}

/* JSON string text of s into b. */
static void put_str(sq__strbuf *b, const char *s)
{
    sq__pg_json_str(b, s, s ? strlen(s) : 0);
}

static void put_raw(sq__strbuf *b, const char *t, size_t n)
{
    if (t && n)
        sq__strbuf_add(b, t, n);
    else
        sq__strbuf_puts(b, "null");
}

/* ------------------------------------------------------------ opening */

/* Runs the migrations from the stored version on one connection, in one
 * transaction under an advisory lock: a second squirreld starting at the
 * same time waits, then finds the work done.  A database written by a
 * newer squirreld is refused and left as it is. */
static int migrate(pg_store *s, char *err, size_t errlen)
{
    int nsteps = (int)(sizeof pg_migrations / sizeof *pg_migrations);
    int i = acquire(s, err, errlen);
    if (i < 0)
        return i;
    pg_conn *pc = &s->conns[i];
    int64_t dl = sq_now() + PG_QUERY_WAIT;
    PGresult *r = NULL;
    int rc = pgc_query(pc, "BEGIN", 0, NULL, PGRES_COMMAND_OK, &r, dl, err, errlen);
#define STEP(sql, want)                                                                \
    do {                                                                               \
        PQclear(r);                                                                    \
        r = NULL;                                                                      \
        if (rc == 0)                                                                   \
            rc = pgc_query(pc, sql, -1, NULL, want, &r, dl, err, errlen);              \
    } while (0)
    STEP("SELECT pg_advisory_xact_lock(5451534358)", PGRES_TUPLES_OK);
    STEP("CREATE TABLE IF NOT EXISTS squirrel_schema (version int NOT NULL)", PGRES_COMMAND_OK);
    STEP("SELECT coalesce(max(version), 0) FROM squirrel_schema", PGRES_TUPLES_OK);
    int64_t v = rc == 0 ? num(r, 0, 0) : 0;
    if (rc == 0 && v > SQ_STORE_PG_SCHEMA)
        rc = say(err, errlen, -EPROTO,
                 "the PostgreSQL database has squirreld schema version %" PRId64
                 ", newer than this squirreld knows (%d); it was left as it is",
                 v, SQ_STORE_PG_SCHEMA);
    for (; rc == 0 && v < SQ_STORE_PG_SCHEMA && v < nsteps; v++) {
        char q[96];
        STEP(pg_migrations[v], PGRES_COMMAND_OK);
        snprintf(q, sizeof q, "DELETE FROM squirrel_schema; INSERT INTO squirrel_schema "
                              "VALUES (%d)", (int)v + 1);
        STEP(q, PGRES_COMMAND_OK);
    }
    STEP("COMMIT", PGRES_COMMAND_OK);
#undef STEP
    PQclear(r);
    if (rc && pgc_ok(pc)) {
        PGresult *x = NULL;
        char e2[64];
        pgc_query(pc, "ROLLBACK", -1, NULL, PGRES_COMMAND_OK, &x, dl, e2, sizeof e2);
        PQclear(x);
    }
    release(s, i);
    return rc;
}

static void *keeper_main(void *arg);
static void pg_close(sq_store *st);
static const sq_store_vtable pg_vt;

static int listen_on(pg_store *s, char *err, size_t errlen)
{
    int rc = pgc_connect(&s->listen, s->conninfo, sq_now() + PG_CONNECT_WAIT, err, errlen);
    PGresult *r;
    if (rc == 0)
        rc = pgc_query(&s->listen, "LISTEN " PG_CHANNEL, 0, NULL, PGRES_COMMAND_OK, &r,
                       sq_now() + PG_QUERY_WAIT, err, errlen);
    if (rc == 0)
        PQclear(r);
    else
        pgc_close(&s->listen);
    return rc;
}

int sq__store_pg_open(const char *conninfo, sq_store **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!sq_runtime_current())
        return say(err, errlen, -EPERM, "the PostgreSQL store is opened from a task");
    pg_store *s = calloc(1, sizeof *s);
    if (!s || !(s->conninfo = strdup(conninfo))) {
        free(s);
        return say(err, errlen, -ENOMEM, "out of memory");
    }
    s->base.vt = &pg_vt;
    sq_sem_init(&s->permits, PG_POOL);
    for (int i = 0; i < PG_POOL; i++)
        s->conns[i].fd = -1;
    s->listen.fd = -1;
    /* An origin unique enough among the instances of one database: the
     * address of this store, the time and the process. */
    snprintf(s->origin, sizeof s->origin, "%" PRIx64,
             ((uint64_t)(uintptr_t)s * 2654435761u) ^ (uint64_t)sq_now() ^
                 ((uint64_t)getpid() << 40));
    /* Listen first: a change committed after this is announced to us, one
     * committed before is in what the owner loads. */
    int rc = listen_on(s, err, errlen);
    if (rc == 0)
        rc = migrate(s, err, errlen);
    if (rc == 0) {
        sq_spawn_opts so = {.name = "pg-keeper"};
        if ((rc = sq_spawn(&s->keeper, keeper_main, s, &so)) != 0)
            say(err, errlen, rc, "cannot start the PostgreSQL keeper: %s", sq_strerror(rc));
        else
            s->keeper_started = true;
    }
    if (rc) {
        pg_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return 0;
}

static void pg_close(sq_store *st)
{
    pg_store *s = (pg_store *)st;
    if (s->keeper_started) {
        sq_cancel_mask();
        sq_abort(s->keeper);
        sq_join(s->keeper, NULL);
        sq_cancel_unmask();
    }
    pgc_close(&s->listen);
    for (int i = 0; i < PG_POOL; i++)
        pgc_close(&s->conns[i]);
    sq_sem_destroy(&s->permits);
    free(s->conninfo);
    free(s->base.spec);
    free(s);
}

/* ------------------------------------------------------------ keeping */

/* Tells the owner of one notification ("ORIGIN VERSION ID"), unless it is
 * this instance's own. */
static void tell(pg_store *s, const char *payload)
{
    const char *sp1 = strchr(payload, ' ');
    const char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp2 || !sp2[1])
        return;
    if ((size_t)(sp1 - payload) == strlen(s->origin) &&
        memcmp(payload, s->origin, (size_t)(sp1 - payload)) == 0)
        return;
    sq_store_external_fn fn = __atomic_load_n(&s->base.on_external, __ATOMIC_ACQUIRE);
    if (fn)
        fn(s->base.external_arg, sp2 + 1, strtoull(sp1 + 1, NULL, 10));
}

/* Waits until the owner listens (it does right after opening). */
static int wait_owner(pg_store *s)
{
    while (!__atomic_load_n(&s->base.on_external, __ATOMIC_ACQUIRE)) {
        int rc = sq_sleep(SQ_MSEC);
        if (rc)
            return rc;
    }
    return 0;
}

static void *keeper_main(void *arg)
{
    pg_store *s = arg;
    if (wait_owner(s) != 0)
        return NULL;
    int64_t backoff = PG_BACKOFF_MIN;
    for (;;) {
        if (!pgc_ok(&s->listen)) {
            char why[256];
            int rc = listen_on(s, why, sizeof why);
            if (rc == -ECANCELED)
                return NULL;
            if (rc) {
                set_down(s, why);
                if (sq_sleep(backoff) != 0)
                    return NULL;
                backoff = backoff * 2 > PG_BACKOFF_MAX ? PG_BACKOFF_MAX : backoff * 2;
                continue;
            }
            backoff = PG_BACKOFF_MIN;
            atomic_fetch_add(&s->reconnects, 1);
            atomic_fetch_add(&s->epoch, 1);
            atomic_store(&s->down, false);
            /* Changes made while nobody listened: compare everything. */
            s->base.on_external(s->base.external_arg, NULL, 0);
        }
        uint32_t mark = sq_io_ready_mark(s->listen.io, 0);
        int rc = PQconsumeInput(s->listen.c) ? 0 : -ENOTCONN;
        PGnotify *n;
        while (rc == 0 && (n = PQnotifies(s->listen.c))) {
            tell(s, n->extra);
            PQfreemem(n);
        }
        if (rc == 0 && !pgc_readable(&s->listen)) /* more already there: read on */
            rc = pgc_wait_input(&s->listen, mark, SQ_FOREVER);
        if (rc == -ECANCELED)
            return NULL;
        if (rc) {
            char why[256];
            snprintf(why, sizeof why, "%s",
                     s->listen.c ? PQerrorMessage(s->listen.c) : "connection lost");
            size_t k = strlen(why);
            while (k && why[k - 1] == '\n')
                why[--k] = '\0';
            set_down(s, why[0] ? why : "connection lost");
            pgc_close(&s->listen);
        }
    }
}

static int pg_status(sq_store *st, char *msg, size_t len)
{
    pg_store *s = (pg_store *)st;
    if (check_up(s, msg, len))
        return -ENOTCONN;
    if (msg && len)
        snprintf(msg, len, "ok (reconnected %llu times)",
                 (unsigned long long)atomic_load(&s->reconnects));
    return 0;
}

/* ------------------------------------------------------------ loading */

/* Marks parsed from the json_agg texts of a load row. */
typedef struct pg_marks {
    sq_store_mark *m;
    size_t n;
    json_t *j;
} pg_marks;

static int parse_marks(const char *text, bool named, pg_marks *k)
{
    k->j = json_loads(text, 0, NULL);
    if (!json_is_array(k->j))
        return -EPROTO;
    k->n = json_array_size(k->j);
    k->m = calloc(k->n + 1, sizeof *k->m);
    if (!k->m)
        return -ENOMEM;
    for (size_t i = 0; i < k->n; i++) {
        json_t *e = json_array_get(k->j, i);
        const char *str = json_string_value(json_array_get(e, 0));
        k->m[i] = (sq_store_mark){
            .name = named ? str : NULL,
            .reason = named ? NULL : str,
            .version = (uint64_t)json_integer_value(json_array_get(e, 1)),
            .at = (int64_t)json_integer_value(json_array_get(e, 2)),
        };
    }
    return 0;
}

static void marks_done(pg_marks *k)
{
    free(k->m);
    json_decref(k->j);
    *k = (pg_marks){0};
}

#define LOAD_SQL                                                                         \
    "SELECT c.id, c.created_at, v.version, v.at, v.kind, v.actor, v.meta, v.doc, "     \
    "(SELECT coalesce(json_agg(json_build_array(s.name, s.version, s.at) "              \
    "  ORDER BY s.name), '[]') FROM squirrel_snapshots s WHERE s.id = c.id), "          \
    "(SELECT coalesce(json_agg(json_build_array(r.reason, r.version, r.at) "            \
    "  ORDER BY r.version), '[]') FROM squirrel_recovery r WHERE r.id = c.id) "         \
    "FROM squirrel_contexts c JOIN squirrel_versions v "                                \
    "ON v.id = c.id AND v.version = c.version "

static int load_rows(PGresult *r, sq_store_load_fn fn, void *arg, char *err, size_t errlen)
{
    int rows = PQntuples(r), e = 0;
    for (int i = 0; i < rows && e == 0; i++) {
        pg_marks snaps = {0}, recs = {0};
        sq_store_ctx c = {
            .id = PQgetvalue(r, i, 0),
            .created_at = num(r, i, 1),
            .version = (uint64_t)num(r, i, 2),
            .updated_at = num(r, i, 3),
            .kind = (int)num(r, i, 4),
            .actor = PQgetvalue(r, i, 5),
            .meta = PQgetvalue(r, i, 6),
            .meta_len = (size_t)PQgetlength(r, i, 6),
            .doc = PQgetvalue(r, i, 7),
            .doc_len = (size_t)PQgetlength(r, i, 7),
        };
        if ((e = parse_marks(PQgetvalue(r, i, 8), true, &snaps)) == 0 &&
            (e = parse_marks(PQgetvalue(r, i, 9), false, &recs)) == 0) {
            c.snapshots = snaps.m;
            c.nsnapshots = snaps.n;
            c.recovery = recs.m;
            c.nrecovery = recs.n;
            e = fn(arg, &c);
            if (e > 0)
                e = 0;
        } else {
            say(err, errlen, e, "loading context \"%s\": bad marks", c.id);
        }
        marks_done(&snaps);
        marks_done(&recs);
    }
    return e;
}

static int pg_load(sq_store *st, sq_store_load_fn fn, void *arg, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)st;
    PGresult *r;
    int rc = query(s, LOAD_SQL "ORDER BY c.id", 0, NULL, PGRES_TUPLES_OK, &r, err, errlen);
    if (rc)
        return rc;
    rc = load_rows(r, fn, arg, err, errlen);
    PQclear(r);
    return rc;
}

static int pg_reload(sq_store *st, const char *id, sq_store_load_fn fn, void *arg)
{
    pg_store *s = (pg_store *)st;
    PGresult *r;
    const char *p[] = {id};
    int rc = query(s, LOAD_SQL "WHERE c.id = $1", 1, p, PGRES_TUPLES_OK, &r, NULL, 0);
    if (rc)
        return rc;
    rc = PQntuples(r) == 0 ? -ENOENT : load_rows(r, fn, arg, NULL, 0);
    PQclear(r);
    return rc;
}

static int pg_heads(sq_store *st, sq_store_head_fn fn, void *arg)
{
    pg_store *s = (pg_store *)st;
    PGresult *r;
    int rc = query(s, "SELECT id, version FROM squirrel_contexts ORDER BY id", 0, NULL,
                   PGRES_TUPLES_OK, &r, NULL, 0);
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
        rc = fn(arg, PQgetvalue(r, i, 0), (uint64_t)num(r, i, 1));
        if (rc > 0)
            rc = 0;
    }
    PQclear(r);
    return rc;
}

/* ---------------------------------------------------------- committing */

static void put_op(sq__strbuf *b, const sq_store_op *o)
{
    sq__strbuf_printf(b, "{\"o\":%d,\"i\":", o->op);
    put_str(b, o->id);
    sq__strbuf_printf(b, ",\"v\":%" PRIu64 ",\"t\":%" PRId64, o->version, o->at);
    switch (o->op) {
    case SQ_STORE_CREATE:
    case SQ_STORE_PUT:
        sq__strbuf_printf(b, ",\"k\":%d,\"p\":%" PRIu64 ",\"a\":", o->kind, o->prune_below);
        put_str(b, o->actor);
        sq__strbuf_puts(b, ",\"m\":");
        put_raw(b, o->meta, o->meta_len);
        sq__strbuf_puts(b, ",\"d\":");
        put_raw(b, o->doc, o->doc_len);
        break;
    case SQ_STORE_SNAPSHOT:
        sq__strbuf_puts(b, ",\"n\":");
        put_str(b, o->name);
        sq__strbuf_puts(b, ",\"d\":");
        put_raw(b, o->doc, o->doc_len);
        break;
    case SQ_STORE_RECOVERY:
        sq__strbuf_printf(b, ",\"K\":%zu,\"r\":", o->keep);
        put_str(b, o->reason ? o->reason : "auto");
        sq__strbuf_puts(b, ",\"d\":");
        put_raw(b, o->doc, o->doc_len);
        break;
    default:
        break;
    }
    sq__strbuf_putc(b, '}');
}

static int pg_commit(sq_store *st, sq_store_op *ops, size_t n, char *err, size_t errlen)
{
    pg_store *s = (pg_store *)st;
    sq__strbuf b;
    sq__strbuf_init(&b);
    sq__strbuf_putc(&b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            sq__strbuf_putc(&b, ',');
        put_op(&b, &ops[i]);
        ops[i].stale = false;
    }
    sq__strbuf_putc(&b, ']');
    if (sq__strbuf_failed(&b)) {
        sq__strbuf_free(&b);
        return say(err, errlen, -ENOMEM, "out of memory");
    }
    const char *p[] = {sq__strbuf_str(&b), s->origin};
    PGresult *r;
    int rc = query_how(s, "SELECT squirrel_commit($1::json, $2)", 2, p, PGRES_TUPLES_OK, &r,
                       err, errlen, false);
    sq__strbuf_free(&b);
    if (rc)
        return rc;
    /* The stale ops' indexes, as an array literal: {1,4,7} */
    const char *t = PQgetvalue(r, 0, 0);
    for (const char *c = t; *c;) {
        if (*c >= '0' && *c <= '9') {
            char *end;
            unsigned long i = strtoul(c, &end, 10);
            if (i < n)
                ops[i].stale = true;
            c = end;
        } else {
            c++;
        }
    }
    PQclear(r);
    return 0;
}

/* ------------------------------------------------------------- reading */

static int pg_history(sq_store *st, const char *id, uint64_t low, uint64_t high, size_t limit,
                      sq_store_hist_fn fn, void *arg)
{
    pg_store *s = (pg_store *)st;
    char lo[24], hi[24], lim[24];
    snprintf(lo, sizeof lo, "%" PRIu64, low);
    snprintf(hi, sizeof hi, "%" PRIu64, high > INT64_MAX ? (uint64_t)INT64_MAX : high);
    snprintf(lim, sizeof lim, "%zu", limit > INT64_MAX ? (size_t)INT64_MAX : limit);
    const char *p[] = {id, lo, hi, lim};
    PGresult *r;
    int rc = query(s,
                   "SELECT version, at, kind, actor FROM squirrel_versions WHERE id = $1 "
                   "AND version > $2 AND version <= $3 ORDER BY version DESC LIMIT $4",
                   4, p, PGRES_TUPLES_OK, &r, NULL, 0);
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
        sq_store_hist h = {.version = (uint64_t)num(r, i, 0), .at = num(r, i, 1),
                           .kind = (int)num(r, i, 2), .actor = PQgetvalue(r, i, 3)};
        rc = fn(arg, &h);
        if (rc > 0)
            rc = 0;
    }
    PQclear(r);
    return rc;
}

static int read_doc(pg_store *s, const char *sql, const char *id, const char *key,
                    sq_store_doc *out)
{
    memset(out, 0, sizeof *out);
    const char *p[] = {id, key};
    PGresult *r;
    int rc = query(s, sql, 2, p, PGRES_TUPLES_OK, &r, NULL, 0);
    if (rc)
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return -ENOENT;
    }
    out->version = (uint64_t)num(r, 0, 0);
    out->at = num(r, 0, 1);
    out->kind = (int)num(r, 0, 2);
    out->doc = dup_value(r, 0, 3, &out->doc_len);
    if (!PQgetisnull(r, 0, 4))
        out->meta = dup_value(r, 0, 4, &out->meta_len);
    if (!out->doc || (!PQgetisnull(r, 0, 4) && !out->meta)) {
        sq_store_doc_free(out);
        rc = -ENOMEM;
    }
    PQclear(r);
    return rc;
}

static int pg_read_version(sq_store *st, const char *id, uint64_t version, sq_store_doc *out)
{
    char v[24];
    snprintf(v, sizeof v, "%" PRIu64, version);
    return read_doc((pg_store *)st,
                    "SELECT version, at, kind, doc, meta FROM squirrel_versions "
                    "WHERE id = $1 AND version = $2",
                    id, v, out);
}

static int pg_read_snapshot(sq_store *st, const char *id, const char *name, sq_store_doc *out)
{
    return read_doc((pg_store *)st,
                    "SELECT version, at, 0, doc, NULL FROM squirrel_snapshots "
                    "WHERE id = $1 AND name = $2",
                    id, name, out);
}

static int pg_read_recovery(sq_store *st, const char *id, uint64_t version, sq_store_doc *out)
{
    char v[24];
    snprintf(v, sizeof v, "%" PRIu64, version);
    return read_doc((pg_store *)st,
                    "SELECT version, at, 0, doc, NULL FROM squirrel_recovery "
                    "WHERE id = $1 AND version = $2",
                    id, v, out);
}

static const sq_store_vtable pg_vt = {
    .name = "postgresql",
    .flags = SQ_STORE_TASK_WAITS | SQ_STORE_SHARED,
    .load = pg_load,
    .commit = pg_commit,
    .history = pg_history,
    .read_version = pg_read_version,
    .read_snapshot = pg_read_snapshot,
    .read_recovery = pg_read_recovery,
    .close = pg_close,
    .reload = pg_reload,
    .heads = pg_heads,
    .status = pg_status,
    .events_write = sq__pg_events_write,
    .events_prune = sq__pg_events_prune,
    .events_read = sq__pg_events_read,
};
