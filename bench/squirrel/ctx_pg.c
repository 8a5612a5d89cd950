/* The ctx.* update workload with the PostgreSQL store (docs/postgres.md):
 * one, two and three instances (context managers, each with its own
 * connections, LISTEN and writer, as three squirreld would have) on one
 * database, beside ctx.update.c64 on SQLite (ctx.c).
 *
 *  ctx.pg.update.c64.iN: 64 tasks spread over N instances, each making
 *    CTX_PG_PER_TASK compare-and-set updates over 1,000 contexts (read,
 *    merge-patch {"n": n + 1} expecting that version, again on a
 *    mismatch); an update returns once PostgreSQL has committed it.
 *    Check: once every instance has caught up, every counter on every
 *    instance equals the increments acknowledged for it, version one
 *    more.  Figures: ns per update, p99 latency, updates per second.
 *
 * The database: $SQUIRREL_BENCH_PG (a postgresql:// URI) if set, else a
 * PostgreSQL 15 cluster of the benchmark's own, made with initdb in a
 * temporary directory (as `nobody` when run as root, fsync on, Unix
 * socket only) and removed at exit.  Each run uses fresh context ids. */
#include "bench.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sq_server/ctx.h"

#define PG_CTX_N 1000
#define CTX_PG_PER_TASK 100
#define PG_TASKS 64
#define PG_BIN "/usr/lib/postgresql/15/bin"

static char pg_uri[256];
static char pg_dir[64];

static void pg_stop(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "%s%s/pg_ctl -D %s/data -m fast -w stop >/dev/null 2>&1; rm -rf %s",
             geteuid() == 0 ? "runuser -u nobody -- " : "", PG_BIN, pg_dir, pg_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "ctx.pg: could not stop the cluster in %s\n", pg_dir);
}

/* Before the runtime exists: the database to use. */
static void pg_precheck(const bench_workload *w)
{
    (void)w;
    if (pg_uri[0])
        return;
    const char *env = getenv("SQUIRREL_BENCH_PG");
    if (env && *env) {
        snprintf(pg_uri, sizeof pg_uri, "%s", env);
        return;
    }
    if (access(PG_BIN "/initdb", X_OK) != 0)
        bench_fail("PostgreSQL 15 is not installed (apt-get install postgresql-15), and "
                   "SQUIRREL_BENCH_PG does not name a database");
    snprintf(pg_dir, sizeof pg_dir, "/tmp/sqbench-pg-XXXXXX");
    if (!mkdtemp(pg_dir))
        bench_fail("mkdtemp: %s", strerror(errno));
    const char *as = geteuid() == 0 ? "runuser -u nobody -- " : "";
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s"
             "%s%s/initdb -D %s/data -U squirrel -A trust -E UTF8 >%s/initdb.log 2>&1 && "
             "%s%s/pg_ctl -D %s/data -l %s/log -w -o \"-c listen_addresses='' -k %s "
             "-p 5432 -c max_connections=60\" start >/dev/null 2>&1",
             geteuid() == 0 ? "" : "true; ", as, PG_BIN, pg_dir, pg_dir, as, PG_BIN, pg_dir,
             pg_dir, pg_dir);
    if (geteuid() == 0) {
        char own[128];
        snprintf(own, sizeof own, "chown nobody: %s", pg_dir);
        if (system(own) != 0)
            bench_fail("cannot give %s to nobody", pg_dir);
    }
    if (system(cmd) != 0)
        bench_fail("cannot start PostgreSQL in %s (see its log there)", pg_dir);
    atexit(pg_stop);
    char host[128];
    size_t k = 0;
    for (const char *c = pg_dir; *c && k + 4 < sizeof host; c++) {
        if (*c == '/')
            k += (size_t)snprintf(host + k, sizeof host - k, "%%2F");
        else
            host[k++] = *c;
    }
    host[k] = '\0';
    snprintf(pg_uri, sizeof pg_uri, "postgresql://squirrel@/postgres?host=%s&port=5432", host);
}

/* ------------------------------------------------------------ the run */

typedef struct pg_shared {
    sq_ctx_mgr *m[3];
    int nm;
    long run;                        /* fresh ids per run */
    atomic_long counts[PG_CTX_N];
    int64_t *lat;
} pg_shared;

typedef struct pg_task {
    pg_shared *sh;
    long index;
} pg_task;

static void pg_id(char *buf, size_t n, long run, long i)
{
    snprintf(buf, n, "r%ld-c%04ld", run, i);
}

static void *pg_updater(void *arg)
{
    pg_task *t = arg;
    pg_shared *sh = t->sh;
    sq_ctx_mgr *m = sh->m[t->index % sh->nm];
    uint32_t rnd = (uint32_t)(t->index * 2654435761u + 1);
    for (long k = 0; k < CTX_PG_PER_TASK; k++) {
        rnd ^= rnd << 13;
        rnd ^= rnd >> 17;
        rnd ^= rnd << 5;
        long i = (long)(rnd % PG_CTX_N);
        char id[32];
        pg_id(id, sizeof id, sh->run, i);
        int64_t t0 = sq_now();
        for (;;) {
            json_t *doc;
            uint64_t v;
            bench_check(sq_ctx_peek(m, id, &doc, &v), "sq_ctx_peek");
            json_int_t n = json_integer_value(json_object_get(doc, "n"));
            json_decref(doc);
            json_t *patch = json_pack("{s:I}", "n", n + 1);
            sq_ctx_change c = {.id = id, .kind = SQ_CTX_MERGE, .patch = patch,
                               .expected_version = v};
            sq_ctx_err e;
            int rc = sq_ctx_update(m, &c, NULL, &e);
            json_decref(patch);
            if (rc == 0)
                break;
            if (rc != -ESTALE)
                bench_fail("update of %s: %s (%s)", id, sq_strerror(rc), e.message);
        }
        sh->lat[t->index * CTX_PG_PER_TASK + k] = sq_now() - t0;
        atomic_fetch_add(&sh->counts[i], 1);
    }
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Whether m holds every counter as acknowledged (false: not yet). */
static bool caught_up(pg_shared *sh, sq_ctx_mgr *m, bool fail)
{
    for (long i = 0; i < PG_CTX_N; i++) {
        char id[32];
        pg_id(id, sizeof id, sh->run, i);
        json_t *doc;
        uint64_t v;
        if (sq_ctx_peek(m, id, &doc, &v) != 0) {
            if (fail)
                bench_fail("%s missing", id);
            return false;
        }
        long n = (long)json_integer_value(json_object_get(doc, "n"));
        json_decref(doc);
        long want = atomic_load(&sh->counts[i]);
        if (n != want || v != (uint64_t)want + 1) {
            if (fail)
                bench_fail("%s holds n=%ld at version %llu, want n=%ld", id, n,
                           (unsigned long long)v, want);
            return false;
        }
    }
    return true;
}

static void pg_run(const bench_workload *w, bench_run *out)
{
    static long runs;
    pg_shared *sh = calloc(1, sizeof *sh);
    sh->lat = calloc(PG_TASKS * CTX_PG_PER_TASK, sizeof *sh->lat);
    if (!sh || !sh->lat)
        bench_fail("out of memory");
    sh->nm = (int)w->param;
    sh->run = (long)getpid() * 1000 + runs++;
    for (int k = 0; k < sh->nm; k++) {
        char err[512];
        sq_ctx_opts o = {.store = pg_uri};
        if (sq_ctx_open(&sh->m[k], &o, err, sizeof err) != 0)
            bench_fail("opening %s: %s", pg_uri, err);
    }
    json_t *doc = json_pack("{s:i}", "n", 0);
    for (long i = 0; i < PG_CTX_N; i++) {
        char id[32];
        pg_id(id, sizeof id, sh->run, i);
        sq_ctx_err e;
        if (sq_ctx_create(sh->m[i % sh->nm], id, doc, NULL, "bench", NULL, &e) != 0)
            bench_fail("create %s: %s", id, e.message);
    }
    json_decref(doc);
    /* Every instance knows every context before the clock starts. */
    for (int k = 0; k < sh->nm; k++)
        while (!caught_up(sh, sh->m[k], false))
            sq_sleep(SQ_MSEC);
    pg_task t[PG_TASKS];
    sq_task h[PG_TASKS];
    int64_t t0 = sq_now();
    for (long i = 0; i < PG_TASKS; i++) {
        t[i] = (pg_task){sh, i};
        bench_check(sq_spawn(&h[i], pg_updater, &t[i], NULL), "sq_spawn");
    }
    for (long i = 0; i < PG_TASKS; i++)
        bench_check(sq_join(h[i], NULL), "sq_join");
    out->ns = sq_now() - t0;
    int64_t deadline = sq_now() + 30 * SQ_SEC;
    for (int k = 0; k < sh->nm; k++)
        while (!caught_up(sh, sh->m[k], sq_now() > deadline))
            sq_sleep(SQ_MSEC);
    caught_up(sh, sh->m[0], true);
    size_t n = PG_TASKS * CTX_PG_PER_TASK;
    qsort(sh->lat, n, sizeof *sh->lat, cmp_i64);
    out->metric = (double)sh->lat[n * 99 / 100];
    for (int k = 0; k < sh->nm; k++)
        sq_ctx_close(sh->m[k]);
    free(sh->lat);
    free(sh);
}

static void pg_extras(const bench_summary *s, bench_line *line)
{
    bench_field(line, "p99_ns", "%.0f", s->metric);
    bench_field(line, "updates_per_sec", "%.0f", 1e9 / s->ns_per_op);
}

const bench_workload bench_ctx_pg_workloads[] = {
    {.name = "ctx.pg.update.c64.i1", .ops = PG_TASKS * CTX_PG_PER_TASK, .param = 1,
     .max_runs = 5, .precheck = pg_precheck, .run = pg_run, .extras = pg_extras},
    {.name = "ctx.pg.update.c64.i2", .ops = PG_TASKS * CTX_PG_PER_TASK, .param = 2,
     .max_runs = 5, .precheck = pg_precheck, .run = pg_run, .extras = pg_extras},
    {.name = "ctx.pg.update.c64.i3", .ops = PG_TASKS * CTX_PG_PER_TASK, .param = 3,
     .max_runs = 5, .precheck = pg_precheck, .run = pg_run, .extras = pg_extras},
    {.name = NULL},
};
