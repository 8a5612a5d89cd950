/* The context manager's life (sq_server/ctx.h): opening the store and
 * loading it, the writer, stopping, figures.
 *
 * Loading: the store hands every context over on the blocking pool (rows
 * copied as text); the documents are then parsed by a task processor
 * (squirrel/processor.h), a chunk of contexts per job and as many jobs at
 * once as there are workers, since parsing is the part of a large load
 * that costs CPU.  A document that does not parse fails the open: the
 * store is left as it is. */
#include "ctx_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "squirrel/blocking.h"
#include "squirrel/processor.h"

/* ------------------------------------------------------------------ load */

/* One context as read from the store, its texts copied. */
typedef struct row {
    char *id, *actor, *doc, *meta;
    size_t doc_len, meta_len;
    int64_t created_at, updated_at;
    uint64_t version;
    int kind;
    sq_store_mark *marks;   /* snapshots, then recovery points */
    char **mark_strs;
    size_t nsnaps, nrps;
} row;

typedef struct load_state {
    row *rows;
    size_t n, cap;
    ctx_obj **objs;
    char err[256];
    sq_store *store;
    int rc;
} load_state;

static void row_free(row *r)
{
    free(r->id);
    free(r->actor);
    free(r->doc);
    free(r->meta);
    for (size_t i = 0; i < r->nsnaps + r->nrps; i++)
        free(r->mark_strs[i]);
    free(r->marks);
    free(r->mark_strs);
}

static char *dupn(const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = '\0';
    }
    return c;
}

/* On the blocking pool: one context from the store. */
static int load_one(void *arg, const sq_store_ctx *c)
{
    load_state *ls = arg;
    if (ls->n == ls->cap) {
        size_t cap = ls->cap ? 2 * ls->cap : 256;
        row *r = realloc(ls->rows, cap * sizeof *r);
        if (!r)
            return -ENOMEM;
        ls->rows = r;
        ls->cap = cap;
    }
    row *r = &ls->rows[ls->n];
    memset(r, 0, sizeof *r);
    size_t nm = c->nsnapshots + c->nrecovery;
    r->id = strdup(c->id);
    r->actor = strdup(c->actor);
    r->doc = dupn(c->doc, c->doc_len);
    r->meta = dupn(c->meta, c->meta_len);
    r->marks = calloc(nm + 1, sizeof *r->marks);
    r->mark_strs = calloc(nm + 1, sizeof *r->mark_strs);
    ls->n++; /* counted now: row_free frees what was made */
    if (!r->id || !r->actor || !r->doc || !r->meta || !r->marks || !r->mark_strs)
        return -ENOMEM;
    r->doc_len = c->doc_len;
    r->meta_len = c->meta_len;
    r->created_at = c->created_at;
    r->updated_at = c->updated_at;
    r->version = c->version;
    r->kind = c->kind;
    for (size_t i = 0; i < nm; i++) {
        bool snap = i < c->nsnapshots;
        const sq_store_mark *k = snap ? &c->snapshots[i] : &c->recovery[i - c->nsnapshots];
        r->marks[i] = *k;
        r->mark_strs[i] = strdup(snap ? k->name : k->reason);
        if (!r->mark_strs[i])
            return -ENOMEM;
        if (snap) {
            r->nsnaps++;
            r->marks[i].name = r->mark_strs[i];
        } else {
            r->nrps++;
            r->marks[i].reason = r->mark_strs[i];
        }
    }
    return 0;
}

static void *load_main(void *arg)
{
    load_state *ls = arg;
    ls->rc = ls->store->vt->load(ls->store, load_one, ls, ls->err, sizeof ls->err);
    return NULL;
}

/* Contexts per parsing job. */
#define LOAD_CHUNK 256

typedef struct parse_arg {
    sq_ctx_mgr *m;
    load_state *ls;
} parse_arg;

static ctx_obj *obj_of(sq_ctx_mgr *m, const row *r)
{
    (void)m;
    ctx_ver *v = ver_from_store(r->version, r->created_at, r->updated_at, r->kind, r->actor,
                                r->doc, r->doc_len, r->meta, r->meta_len);
    if (!v)
        return NULL;
    ctx_obj *o = obj_new(r->id, v, true);
    if (!o) {
        ver_unref(v);
        return NULL;
    }
    for (size_t i = 0; i < r->nsnaps + r->nrps; i++) {
        const sq_store_mark *k = &r->marks[i];
        if (marks_add(i < r->nsnaps ? &o->snaps : &o->rps, k->name, k->version, k->at,
                      k->reason, true) != 0) {
            obj_unref(o);
            return NULL;
        }
    }
    return o;
}

static int parse_job(size_t index, void *arg, void **result)
{
    parse_arg *p = arg;
    (void)result;
    size_t end = (index + 1) * LOAD_CHUNK;
    if (end > p->ls->n)
        end = p->ls->n;
    for (size_t i = index * LOAD_CHUNK; i < end; i++)
        if (!(p->ls->objs[i] = obj_of(p->m, &p->ls->rows[i])))
            return -EPROTO;
    return 0;
}

static int load(sq_ctx_mgr *m, char *err, size_t errlen)
{
    load_state ls = {.store = m->store};
    int rc = sq_store_run(m->store, load_main, &ls);
    if (rc == 0 && ls.rc) {
        rc = ls.rc;
        snprintf(err, errlen, "%s", ls.err[0] ? ls.err : sq_strerror(rc));
    } else if (rc) {
        snprintf(err, errlen, "loading the contexts: %s", sq_strerror(rc));
    }
    if (rc == 0 && ls.n && !(ls.objs = calloc(ls.n, sizeof *ls.objs))) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
    }
    if (rc == 0 && ls.n) {
        parse_arg pa = {m, &ls};
        sq_process_report rep;
        size_t jobs = (ls.n + LOAD_CHUNK - 1) / LOAD_CHUNK;
        rc = sq_process(jobs, 2, parse_job, &pa, NULL, NULL, &rep);
        if (rc) {
            size_t at = rep.failed_index != SQ_JOB_NONE ? rep.failed_index * LOAD_CHUNK : 0;
            for (size_t i = at; i < ls.n && i < at + LOAD_CHUNK; i++)
                if (!ls.objs[i]) {
                    at = i;
                    break;
                }
            snprintf(err, errlen,
                     "%s: context \"%s\" holds a document or metadata that is not JSON "
                     "(or memory ran out); the store was left as it is",
                     m->store->spec, at < ls.n ? ls.rows[at].id : "?");
            rc = -EPROTO;
        }
    }
    if (rc == 0 && ls.n && (rc = idx_load(&m->index, ls.objs, ls.n)) != 0)
        snprintf(err, errlen, "out of memory");
    if (rc == 0)
        atomic_store(&m->ncontexts, ls.n);
    for (size_t i = 0; i < ls.n; i++) {
        if (ls.objs)
            obj_unref(ls.objs[i]); /* the index holds its own */
        row_free(&ls.rows[i]);
    }
    free(ls.objs);
    free(ls.rows);
    return rc;
}

/* ---------------------------------------------------------------- metrics */

static int make_metrics(sq_ctx_mgr *m)
{
    static const int64_t secs[] = {100 * SQ_USEC, 250 * SQ_USEC, 500 * SQ_USEC, SQ_MSEC,
                                   2 * SQ_MSEC, 5 * SQ_MSEC, 10 * SQ_MSEC, 25 * SQ_MSEC,
                                   100 * SQ_MSEC, SQ_SEC};
    static const int64_t sizes[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
    int rc = sq_metrics_create(&m->metrics);
    if (rc)
        return rc;
#define C(field, nm, hlp) \
    if (!rc) rc = sq_counter_create(&m->field, m->metrics, &(sq_metric_opts){.name = nm, .help = hlp})
    C(m_changes, "squirrel_ctx_changes_total", "Changes of contexts committed.");
    C(m_commits, "squirrel_ctx_commits_total", "Store transactions committed.");
    C(m_failures, "squirrel_ctx_commit_failures_total", "Store transactions that failed.");
    C(m_conflicts, "squirrel_ctx_conflicts_total", "Version mismatches reported.");
    C(m_retries, "squirrel_ctx_retries_total",
      "Changes computed again because another came first.");
#undef C
    if (!rc)
        rc = sq_gauge_create(&m->m_contexts, m->metrics,
                             &(sq_metric_opts){.name = "squirrel_ctx_contexts",
                                               .help = "Contexts."});
    if (!rc)
        rc = sq_histogram_create(&m->m_commit_ns, m->metrics,
                                 &(sq_metric_opts){.name = "squirrel_ctx_commit_seconds",
                                                   .help = "Time of one store transaction.",
                                                   .divisor = SQ_SEC},
                                 secs, sizeof secs / sizeof *secs);
    if (!rc)
        rc = sq_histogram_create(&m->m_latency_ns, m->metrics,
                                 &(sq_metric_opts){.name = "squirrel_ctx_change_seconds",
                                                   .help = "From queued to durable, per change.",
                                                   .divisor = SQ_SEC},
                                 secs, sizeof secs / sizeof *secs);
    if (!rc)
        rc = sq_histogram_create(&m->m_batch, m->metrics,
                                 &(sq_metric_opts){.name = "squirrel_ctx_batch_changes",
                                                   .help = "Changes per transaction."},
                                 sizes, sizeof sizes / sizeof *sizes);
    return rc;
}

/* ------------------------------------------------------------------ life */

static size_t or_default(size_t v, size_t d)
{
    return v ? v : d;
}

static void mgr_free(sq_ctx_mgr *m)
{
    idx_destroy(&m->index);
    if (m->store)
        m->store->vt->close(m->store);
    sq_watch_close(&m->settled);
    sq_watch_destroy(&m->settled);
    sq_metrics_destroy(m->metrics);
    free(m->store_spec);
    free(m);
}

typedef struct open_job {
    const char *spec;
    sq_store *store;
    char err[256];
    int rc;
} open_job;

static void *open_main(void *arg)
{
    open_job *j = arg;
    j->rc = sq_store_open(j->spec, &j->store, j->err, sizeof j->err);
    return NULL;
}

int sq_ctx_open(sq_ctx_mgr **out, const sq_ctx_opts *opts, char *err, size_t errlen)
{
    *out = NULL;
    sq_ctx_mgr *m = calloc(1, sizeof *m);
    if (!m || !opts || !opts->store || !(m->store_spec = strdup(opts->store))) {
        free(m);
        snprintf(err, errlen, !opts || !opts->store ? "no store given" : "out of memory");
        return !opts || !opts->store ? -EINVAL : -ENOMEM;
    }
    m->o = *opts;
    m->o.store = m->store_spec;
    m->o.max_contexts = or_default(opts->max_contexts, SQ_CTX_DEFAULT_MAX_CONTEXTS);
    m->o.max_document_bytes = or_default(opts->max_document_bytes,
                                         SQ_CTX_DEFAULT_MAX_DOCUMENT_BYTES);
    m->o.max_metadata_bytes = or_default(opts->max_metadata_bytes,
                                         SQ_CTX_DEFAULT_MAX_METADATA_BYTES);
    m->o.max_snapshots = or_default(opts->max_snapshots, SQ_CTX_DEFAULT_MAX_SNAPSHOTS);
    m->o.history_depth = or_default(opts->history_depth, SQ_CTX_DEFAULT_HISTORY_DEPTH);
    m->o.recovery_every = or_default(opts->recovery_every, SQ_CTX_DEFAULT_RECOVERY_EVERY);
    m->o.recovery_keep = or_default(opts->recovery_keep, SQ_CTX_DEFAULT_RECOVERY_KEEP);
    m->o.max_batch = or_default(opts->max_batch, SQ_CTX_DEFAULT_MAX_BATCH);
    m->rt = sq_runtime_current();
    uint64_t zero = 0;
    int rc = 0;
    if (!m->rt) {
        snprintf(err, errlen, "not in a runtime");
        rc = -EPERM;
    } else if (idx_init(&m->index) != 0 || sq_watch_init(&m->settled, sizeof zero, &zero) != 0 ||
               make_metrics(m) != 0) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
    }
    if (rc) {
        if (m->metrics)
            sq_metrics_destroy(m->metrics);
        free(m->store_spec);
        free(m);
        return rc;
    }
    sq_notify_init(&m->wake);
    open_job j = {.spec = m->store_spec};
    sq_cancel_mask();
    open_main(&j); /* sq_store_open waits as its backend does */
    sq_cancel_unmask();
    if (rc == 0 && j.rc) {
        rc = j.rc;
        snprintf(err, errlen, "%s", j.err);
    } else if (rc) {
        snprintf(err, errlen, "opening the store: %s", sq_strerror(rc));
    }
    m->store = j.store;
    if (rc == 0)
        rc = load(m, err, errlen);
    if (rc == 0 && (m->store->vt->flags & SQ_STORE_SHARED)) {
        /* Others' changes from now on (the store holds back what came
         * during the load, and what the load saw is told again harmlessly). */
        m->shared = true;
        sq_store_watch(m->store, refresh_external, m);
    }
    if (rc == 0 && (rc = writer_start(m)) != 0)
        snprintf(err, errlen, "cannot start the writer: %s", sq_strerror(rc));
    if (rc) {
        mgr_free(m);
        return rc;
    }
    sq_gauge_set(m->m_contexts, (int64_t)atomic_load(&m->ncontexts));
    *out = m;
    return 0;
}

void sq_ctx_stop(sq_ctx_mgr *m)
{
    if (!m || atomic_exchange(&m->stopping, true))
        return;
    sq_notify_one(&m->wake);
    if (m->writer_started) {
        sq_cancel_mask();
        sq_join(m->writer, NULL);
        sq_cancel_unmask();
        m->writer_started = false;
    }
}

void sq_ctx_close(sq_ctx_mgr *m)
{
    if (!m)
        return;
    sq_ctx_stop(m);
    if (m->writer_started) { /* stopped before by another call */
        sq_cancel_mask();
        sq_join(m->writer, NULL);
        sq_cancel_unmask();
    }
    mgr_free(m);
}

void sq_ctx_stats_get(sq_ctx_mgr *m, sq_ctx_stats *out)
{
    *out = (sq_ctx_stats){
        .contexts = atomic_load(&m->ncontexts),
        .changes = sq_counter_get(m->m_changes),
        .commits = sq_counter_get(m->m_commits),
        .commit_failures = sq_counter_get(m->m_failures),
        .conflicts = sq_counter_get(m->m_conflicts),
        .retries = sq_counter_get(m->m_retries),
        .max_batch = atomic_load(&m->max_batch),
    };
    for (int k = 0; k <= SQ_CTX_DELETE; k++)
        out->by_kind[k] = atomic_load(&m->by_kind[k]);
}

sq_metrics *sq_ctx_metrics(sq_ctx_mgr *m)
{
    return m->metrics;
}

sq_store *sq__ctx_store(sq_ctx_mgr *m)
{
    return m->store;
}

int sq_ctx_store_status(sq_ctx_mgr *m, char *msg, size_t len)
{
    return sq_store_status(m->store, msg, len);
}
