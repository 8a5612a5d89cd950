/* The context manager's workloads (ctx.*) of shared/BENCHMARKS.md, in
 * process, durable in SQLite (WAL, synchronous=FULL: the context
 * manager's documented default) in a file next to this program (or in
 * $SQUIRREL_BENCH_DIR), on the disk the benchmark runs on, never tmpfs.
 *
 *  ctx.update.c1, ctx.update.c64: 1 or 64 tasks, each making 2,000
 *    compare-and-set updates over 1,000 contexts: read the context (its
 *    counter and version), merge-patch {"n": counter + 1} expecting that
 *    version, and on a version mismatch read again and retry.  Each
 *    update returns once durable.  Check: every counter equals the
 *    increments acknowledged for it and its version is one more, in
 *    memory and after reopening the store.  Figures: ns per update, p99
 *    latency of an update (retries included).
 *  ctx.sqlite_txn_each: the first 10,000 of the same changes written
 *    straight through the store (the same SQL the manager's writer runs),
 *    one transaction (one sync) per change: what a naive server does.
 *  ctx.sqlite_one_txn: the same 10,000 changes in one transaction: the
 *    limit.
 *  ctx.read_under_write: ctx.update.c64 with 64 reader tasks reading
 *    random contexts meanwhile.  Figures: ns per update, p99 read latency.
 */
#include "bench.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "squirrel/blocking.h"
#include "sq_server/ctx.h"
#include "store.h"

#define CTX_N 1000
#define CTX_PER_TASK 2000
#define CTX_SQL_N 10000
#define CTX_READERS 64

/* ------------------------------------------------------------ the file */

static void db_path(char *buf, size_t n)
{
    const char *dir = getenv("SQUIRREL_BENCH_DIR");
    char exe[PATH_MAX];
    if (!dir) {
        ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (k <= 0)
            bench_fail("cannot find the program's directory");
        exe[k] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        dir = exe;
    }
    if (snprintf(buf, n, "%s/ctx-bench-%d.db", dir, (int)getpid()) >= (int)n)
        bench_fail("the directory's path is too long");
}

static void db_remove(const char *path)
{
    char p[PATH_MAX + 8];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

static void ctx_name(char *buf, size_t n, long i)
{
    snprintf(buf, n, "c%04d", (int)(i % 10000));
}

/* ------------------------------------------------------------- latency */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double p99(int64_t *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_i64);
    return (double)v[(n * 99) / 100];
}

/* ------------------------------------------------------------- updates */

typedef struct upd_shared {
    sq_ctx_mgr *m;
    atomic_long counts[CTX_N];   /* acknowledged increments per context */
    int64_t *lat;                /* one per update */
    atomic_long writers_left;
    atomic_long retries;
} upd_shared;

typedef struct upd_task {
    upd_shared *sh;
    long index;
} upd_task;

static void *updater(void *arg)
{
    upd_task *t = arg;
    upd_shared *sh = t->sh;
    uint32_t rnd = (uint32_t)(t->index * 2654435761u + 1);
    for (long k = 0; k < CTX_PER_TASK; k++) {
        rnd ^= rnd << 13;
        rnd ^= rnd >> 17;
        rnd ^= rnd << 5;
        long i = (long)(rnd % CTX_N);
        char id[16];
        ctx_name(id, sizeof id, i);
        int64_t t0 = sq_now();
        for (;;) {
            json_t *doc;
            uint64_t v;
            bench_check(sq_ctx_peek(sh->m, id, &doc, &v), "sq_ctx_peek");
            json_int_t n = json_integer_value(json_object_get(doc, "n"));
            json_decref(doc);
            json_t *patch = json_pack("{s:I}", "n", n + 1);
            sq_ctx_change c = {.id = id, .kind = SQ_CTX_MERGE, .patch = patch,
                               .expected_version = v};
            sq_ctx_err e;
            int rc = sq_ctx_update(sh->m, &c, NULL, &e);
            json_decref(patch);
            if (rc == 0)
                break;
            if (rc != -ESTALE)
                bench_fail("update of %s: %s (%s)", id, sq_strerror(rc), e.message);
            atomic_fetch_add(&sh->retries, 1);
        }
        sh->lat[t->index * CTX_PER_TASK + k] = sq_now() - t0;
        atomic_fetch_add(&sh->counts[i], 1);
    }
    atomic_fetch_sub(&sh->writers_left, 1);
    return NULL;
}

typedef struct creator {
    sq_ctx_mgr *m;
    long from, to;
} creator;

static void *create_some(void *arg)
{
    creator *c = arg;
    json_t *doc = json_pack("{s:i}", "n", 0);
    for (long i = c->from; i < c->to; i++) {
        char id[16];
        ctx_name(id, sizeof id, i);
        sq_ctx_err e;
        if (sq_ctx_create(c->m, id, doc, NULL, "bench", NULL, &e) != 0)
            bench_fail("create %s: %s", id, e.message);
    }
    json_decref(doc);
    return NULL;
}

static sq_ctx_mgr *open_mgr(const char *path)
{
    char spec[PATH_MAX + 16], err[512];
    snprintf(spec, sizeof spec, "sqlite:%s", path);
    sq_ctx_mgr *m;
    sq_ctx_opts o = {.store = spec};
    if (sq_ctx_open(&m, &o, err, sizeof err) != 0)
        bench_fail("opening %s: %s", spec, err);
    return m;
}

/* Creates the 1,000 contexts, 50 creators at once (so they commit in
 * groups too: set-up, not timed). */
static void create_all(sq_ctx_mgr *m)
{
    enum { K = 50 };
    creator c[K];
    sq_task t[K];
    for (long k = 0; k < K; k++) {
        c[k] = (creator){m, k * CTX_N / K, (k + 1) * CTX_N / K};
        bench_check(sq_spawn(&t[k], create_some, &c[k], NULL), "sq_spawn");
    }
    for (long k = 0; k < K; k++)
        bench_check(sq_join(t[k], NULL), "sq_join");
}

/* Every counter equals its acknowledged increments, version one more. */
static void check_counters(sq_ctx_mgr *m, upd_shared *sh, const char *when)
{
    long total = 0;
    for (long i = 0; i < CTX_N; i++) {
        char id[16];
        ctx_name(id, sizeof id, i);
        json_t *doc;
        uint64_t v;
        bench_check(sq_ctx_peek(m, id, &doc, &v), "sq_ctx_peek");
        long n = (long)json_integer_value(json_object_get(doc, "n"));
        json_decref(doc);
        long want = atomic_load(&sh->counts[i]);
        if (n != want || v != (uint64_t)want + 1)
            bench_fail("%s: %s holds n=%ld at version %llu, want n=%ld at %ld", when, id, n,
                       (unsigned long long)v, want, want + 1);
        total += n;
    }
    (void)total;
}

typedef struct rd_shared {
    sq_ctx_mgr *m;
    upd_shared *up;
    int64_t *lat[CTX_READERS];
    size_t n[CTX_READERS], cap[CTX_READERS];
} rd_shared;

typedef struct rd_task {
    rd_shared *sh;
    int index;
} rd_task;

/* Reads random contexts (the whole reply a get builds: document,
 * metadata, times) while the writers run, yielding between reads so the
 * writers are not starved of the two workers. */
static void *reader(void *arg)
{
    rd_task *t = arg;
    rd_shared *sh = t->sh;
    uint32_t rnd = (uint32_t)(t->index * 40503u + 7);
    while (atomic_load(&sh->up->writers_left) > 0) {
        rnd ^= rnd << 13;
        rnd ^= rnd >> 17;
        rnd ^= rnd << 5;
        char id[16];
        ctx_name(id, sizeof id, (long)(rnd % CTX_N));
        int64_t t0 = sq_now();
        sq_ctx_info info;
        sq_ctx_err e;
        if (sq_ctx_get(sh->m, id, 0, &info, &e) != 0)
            bench_fail("read %s: %s", id, e.message);
        int64_t dt = sq_now() - t0;
        if (!json_is_integer(json_object_get(info.document, "n")) ||
            json_integer_value(json_object_get(info.document, "n")) + 1 != (json_int_t)info.version)
            bench_fail("read %s: n does not match version %llu", id,
                       (unsigned long long)info.version);
        sq_ctx_info_clear(&info);
        int i = t->index;
        if (sh->n[i] == sh->cap[i]) {
            sh->cap[i] = sh->cap[i] ? 2 * sh->cap[i] : 4096;
            sh->lat[i] = realloc(sh->lat[i], sh->cap[i] * sizeof *sh->lat[i]);
            if (!sh->lat[i])
                bench_fail("out of memory");
        }
        sh->lat[i][sh->n[i]++] = dt;
        sq_yield();
    }
    return NULL;
}

/* Group commit as the last run saw it: changes per transaction. */
static double last_avg_batch;
static uint64_t last_max_batch;

static void update_run(const bench_workload *w, bench_run *out)
{
    long tasks = w->param;
    bool readers = strstr(w->name, "read_under_write") != NULL;
    char path[PATH_MAX];
    db_path(path, sizeof path);
    db_remove(path);
    upd_shared *sh = calloc(1, sizeof *sh);
    upd_task *ut = calloc((size_t)tasks, sizeof *ut);
    sq_task *h = calloc((size_t)tasks, sizeof *h);
    rd_shared *rs = calloc(1, sizeof *rs);
    rd_task rt[CTX_READERS];
    sq_task rh[CTX_READERS];
    if (!sh || !ut || !h || !rs || !(sh->lat = calloc((size_t)tasks * CTX_PER_TASK, sizeof *sh->lat)))
        bench_fail("out of memory");
    sh->m = open_mgr(path);
    create_all(sh->m);
    atomic_store(&sh->writers_left, tasks);
    rs->m = sh->m;
    rs->up = sh;

    int64_t t0 = sq_now();
    for (long i = 0; i < tasks; i++) {
        ut[i] = (upd_task){sh, i};
        bench_check(sq_spawn(&h[i], updater, &ut[i], NULL), "sq_spawn");
    }
    for (int i = 0; readers && i < CTX_READERS; i++) {
        rt[i] = (rd_task){rs, i};
        bench_check(sq_spawn(&rh[i], reader, &rt[i], NULL), "sq_spawn");
    }
    for (long i = 0; i < tasks; i++)
        bench_check(sq_join(h[i], NULL), "sq_join");
    out->ns = sq_now() - t0;
    size_t nreads = 0;
    for (int i = 0; readers && i < CTX_READERS; i++) {
        bench_check(sq_join(rh[i], NULL), "sq_join");
        nreads += rs->n[i];
    }

    check_counters(sh->m, sh, "after the run");
    sq_ctx_stats st;
    sq_ctx_stats_get(sh->m, &st);
    last_avg_batch = st.commits ? (double)st.changes / (double)st.commits : 0;
    last_max_batch = st.max_batch;
    sq_ctx_close(sh->m);
    /* Durable: the same from the store. */
    sh->m = open_mgr(path);
    check_counters(sh->m, sh, "after reopening");
    sq_ctx_close(sh->m);
    db_remove(path);

    if (readers) {
        int64_t *all = malloc((nreads ? nreads : 1) * sizeof *all);
        if (!all)
            bench_fail("out of memory");
        size_t k = 0;
        for (int i = 0; i < CTX_READERS; i++) {
            memcpy(all + k, rs->lat[i], rs->n[i] * sizeof *all);
            k += rs->n[i];
            free(rs->lat[i]);
        }
        if (nreads == 0)
            bench_fail("no read was made while the writers ran");
        out->metric = p99(all, nreads);
        free(all);
    } else {
        out->metric = p99(sh->lat, (size_t)tasks * CTX_PER_TASK);
    }
    free(sh->lat);
    free(sh);
    free(ut);
    free(h);
    free(rs);
}

static void update_extras(const bench_summary *s, bench_line *line)
{
    bench_field(line, strstr(s->w->name, "read_under_write") ? "p99_read_ns" : "p99_ns",
                "%.0f", s->metric);
    bench_field(line, "updates_per_sec", "%.0f", 1e9 / s->ns_per_op);
    bench_field(line, "avg_batch", "%.1f", last_avg_batch);
    bench_field(line, "max_batch", "%llu", (unsigned long long)last_max_batch);
}

/* ------------------------------------------------- straight to SQLite */

typedef struct sql_job {
    const char *path;
    bool one_txn;
    int64_t ns;
    char err[512];
    int rc;
} sql_job;

/* The contexts changed, in order: the updaters' generator. */
static long sql_next_ctx(uint32_t *rnd)
{
    *rnd ^= *rnd << 13;
    *rnd ^= *rnd >> 17;
    *rnd ^= *rnd << 5;
    return (long)(*rnd % CTX_N);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct loaded_check {
    uint64_t *versions;
    long seen;
    int rc;
} loaded_check;

static int check_loaded(void *arg, const sq_store_ctx *c)
{
    loaded_check *lc = arg;
    long i = strtol(c->id + 1, NULL, 10);
    char want[32];
    snprintf(want, sizeof want, "{\"n\":%llu}", (unsigned long long)(lc->versions[i] - 1));
    if (c->version != lc->versions[i] || c->doc_len != strlen(want) ||
        memcmp(c->doc, want, c->doc_len) != 0)
        lc->rc = -EPROTO;
    lc->seen++;
    return 0;
}

/* On the blocking pool: the whole workload, store calls and all. */
static void *sql_main(void *arg)
{
    sql_job *j = arg;
    char spec[PATH_MAX + 16];
    snprintf(spec, sizeof spec, "sqlite:%s", j->path);
    sq_store *st;
    if ((j->rc = sq_store_open(spec, &st, j->err, sizeof j->err)) != 0)
        return NULL;
    static char ids[CTX_N][16];
    uint64_t *versions = calloc(CTX_N, sizeof *versions);
    sq_store_op *ops = calloc(CTX_SQL_N > CTX_N ? CTX_SQL_N : CTX_N, sizeof *ops);
    char (*docs)[32] = calloc(CTX_SQL_N, sizeof *docs);
    if (!versions || !ops || !docs) {
        j->rc = -ENOMEM;
        goto out;
    }
    for (long i = 0; i < CTX_N; i++) {
        ctx_name(ids[i], sizeof ids[i], i);
        versions[i] = 1;
        ops[i] = (sq_store_op){.op = SQ_STORE_CREATE, .id = ids[i], .version = 1, .at = 1,
                               .kind = SQ_STORE_KIND_CREATE, .actor = "bench",
                               .doc = "{\"n\":0}", .doc_len = 7, .meta = "{}", .meta_len = 2};
    }
    if ((j->rc = st->vt->commit(st, ops, CTX_N, j->err, sizeof j->err)) != 0)
        goto out;
    /* The changes, made before the clock starts: what the manager hands
     * its store (a new version with its document and metadata). */
    uint32_t rnd = 1;
    for (long i = 0; i < CTX_SQL_N; i++) {
        long c = sql_next_ctx(&rnd);
        uint64_t v = ++versions[c];
        snprintf(docs[i], sizeof docs[i], "{\"n\":%llu}", (unsigned long long)(v - 1));
        ops[i] = (sq_store_op){.op = SQ_STORE_PUT, .id = ids[c], .version = v,
                               .at = (int64_t)i, .kind = SQ_STORE_KIND_MERGE, .actor = "",
                               .doc = docs[i], .doc_len = strlen(docs[i]), .meta = "{}",
                               .meta_len = 2};
    }
    int64_t t0 = now_ns();
    if (j->one_txn) {
        j->rc = st->vt->commit(st, ops, CTX_SQL_N, j->err, sizeof j->err);
    } else {
        for (long i = 0; i < CTX_SQL_N && j->rc == 0; i++)
            j->rc = st->vt->commit(st, &ops[i], 1, j->err, sizeof j->err);
    }
    j->ns = now_ns() - t0;
    if (j->rc == 0) {
        loaded_check lc = {.versions = versions};
        j->rc = st->vt->load(st, check_loaded, &lc, j->err, sizeof j->err);
        if (j->rc == 0 && (lc.rc || lc.seen != CTX_N)) {
            snprintf(j->err, sizeof j->err, "the store does not hold the changes made");
            j->rc = -EPROTO;
        }
    }
out:
    st->vt->close(st);
    free(versions);
    free(ops);
    free(docs);
    return NULL;
}

static void sql_extras(const bench_summary *s, bench_line *line)
{
    bench_field(line, "updates_per_sec", "%.0f", 1e9 / s->ns_per_op);
}

static void sql_run(const bench_workload *w, bench_run *out)
{
    char path[PATH_MAX];
    db_path(path, sizeof path);
    db_remove(path);
    sql_job j = {.path = path, .one_txn = w->param == 1};
    bench_check(sq_blocking_run(sql_main, &j, NULL), "sq_blocking_run");
    db_remove(path);
    if (j.rc)
        bench_fail("%s (%s)", j.err, sq_strerror(j.rc));
    out->ns = j.ns;
}

const bench_workload bench_ctx_workloads[] = {
    {.name = "ctx.update.c1", .ops = CTX_PER_TASK, .param = 1, .run = update_run,
     .extras = update_extras},
    {.name = "ctx.update.c64", .ops = 64 * CTX_PER_TASK, .param = 64, .run = update_run,
     .extras = update_extras},
    {.name = "ctx.sqlite_txn_each", .ops = CTX_SQL_N, .param = 0, .run = sql_run,
     .extras = sql_extras},
    {.name = "ctx.sqlite_one_txn", .ops = CTX_SQL_N, .param = 1, .run = sql_run,
     .extras = sql_extras},
    {.name = "ctx.read_under_write", .ops = 64 * CTX_PER_TASK, .param = 64,
     .run = update_run, .extras = update_extras},
    {.name = NULL},
};
