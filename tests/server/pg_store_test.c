/* The PostgreSQL store (docs/postgres.md) against a real PostgreSQL 15 of
 * the test's own (pgtest.h): the store's work through the context manager
 * (and again after reopening), three managers on one database as three
 * squirreld would be, with 64 clients spread over them running the
 * compare-and-set counter storm (the final value equals the acknowledged
 * increments, versions gapless, every instance tells of every version in
 * order), and the database restarted in the middle of a storm (requests
 * fail fast while it is away, nothing acknowledged is lost, the instances
 * reconnect by themselves and catch up). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcptest.h"
#include "pgtest.h"
#include "sq_server/ctx.h"
#include "store.h"

/* -------------------------------------------------------- instances */

/* One manager and what its on_change told of context "counter". */
typedef struct inst {
    sq_ctx_mgr *m;
    uint64_t last;        /* the last version told */
    uint64_t told;        /* how many were told */
    uint64_t backwards;   /* versions told again, or older than the last */
    uint64_t gaps;        /* versions told after a gap */
    uint64_t unknown;     /* told without their kind (pruned from the
                           * history before this instance read them) */
} inst;

static void on_change(void *arg, const sq_ctx_event *ev)
{
    inst *in = arg;
    if (strcmp(ev->id, "counter") != 0 || ev->deleted)
        return;
    /* Called by the manager's writer only, one at a time. */
    if (ev->version <= in->last)
        in->backwards++;
    else if (ev->version != in->last + 1)
        in->gaps++;
    if (ev->kind == 0)
        in->unknown++;
    in->last = ev->version;
    in->told++;
}

static void inst_open(inst *in, const char *uri)
{
    memset(in, 0, sizeof *in);
    char err[256];
    sq_ctx_opts o = {.store = uri, .on_change = on_change, .arg = in};
    int rc = sq_ctx_open(&in->m, &o, err, sizeof err);
    if (rc)
        fprintf(stderr, "open %s: %s\n", uri, err);
    CHECK_EQ(rc, 0);
}

static json_t *num_doc(long long n)
{
    return json_pack("{s:I}", "n", (json_int_t)n);
}

/* ----------------------------------------------------------- basics */

MT_TEST(postgres_store_keeps_contexts)
{
    pg_server *pg = pg_start();
    if (!pg)
        return;
    inst a;
    inst_open(&a, pg->uri);
    sq_ctx_err e;
    json_t *d = num_doc(1);
    CHECK_EQ(sq_ctx_create(a.m, "doc", d, NULL, "t", NULL, &e), 0);
    json_decref(d);
    uint64_t v = 0;
    for (int i = 2; i <= 5; i++) {
        json_t *p = num_doc(i);
        sq_ctx_change c = {.id = "doc", .kind = SQ_CTX_REPLACE, .patch = p};
        CHECK_EQ(sq_ctx_update(a.m, &c, &v, &e), 0);
        json_decref(p);
    }
    CHECK_EQ(v, 5);
    uint64_t taken;
    CHECK_EQ(sq_ctx_snapshot(a.m, "doc", "five", 0, &taken, &e), 0);
    CHECK_EQ(taken, 5);
    /* A compare-and-set with an old version changes nothing. */
    json_t *p = num_doc(99);
    sq_ctx_change c = {.id = "doc", .kind = SQ_CTX_REPLACE, .patch = p, .expected_version = 3};
    CHECK_EQ(sq_ctx_update(a.m, &c, &v, &e), -ESTALE);
    CHECK_EQ(e.current_version, 5);
    json_decref(p);
    d = num_doc(7);
    CHECK_EQ(sq_ctx_create(a.m, "gone", d, NULL, "t", NULL, &e), 0);
    json_decref(d);
    CHECK_EQ(sq_ctx_delete(a.m, "gone", 0, NULL, &e), 0);
    char msg[128];
    CHECK_EQ(sq_ctx_store_status(a.m, msg, sizeof msg), 0);
    sq_ctx_close(a.m);

    /* Another instance (or a restart) loads what was committed. */
    inst b;
    inst_open(&b, pg->uri);
    sq_ctx_info info;
    CHECK_EQ(sq_ctx_get(b.m, "doc", 0, &info, &e), 0);
    CHECK_EQ(info.version, 5);
    CHECK_EQ(json_integer_value(json_object_get(info.document, "n")), 5);
    sq_ctx_info_clear(&info);
    CHECK_EQ(sq_ctx_get(b.m, "doc", 3, &info, &e), 0);
    CHECK_EQ(json_integer_value(json_object_get(info.document, "n")), 3);
    sq_ctx_info_clear(&info);
    CHECK_EQ(sq_ctx_get_mark(b.m, "doc", "five", 0, &info, &e), 0);
    CHECK_EQ(json_integer_value(json_object_get(info.document, "n")), 5);
    sq_ctx_info_clear(&info);
    CHECK_EQ(sq_ctx_get(b.m, "gone", 0, &info, &e), -ENOENT);
    CHECK_EQ(sq_ctx_restore(b.m, "doc", "five", 0, 0, "t", &v, &e), 0);
    CHECK_EQ(v, 6);
    sq_ctx_close(b.m);
    pg_stop(pg);
}

/* -------------------------------------------------------------- storm */

#define INSTANCES 3
#define CLIENTS 64

typedef struct storm {
    inst in[INSTANCES];
    int target;                 /* acknowledged increments to reach */
    atomic_int acked, failed, conflicts;
    atomic_int running;
} storm;

typedef struct client_arg {
    storm *s;
    int k;
} client_arg;

static void *client_main(void *arg)
{
    client_arg *a = arg;
    storm *s = a->s;
    sq_ctx_mgr *m = s->in[a->k % INSTANCES].m;
    while (atomic_load(&s->acked) < s->target) {
        json_t *doc;
        uint64_t ver;
        if (sq_ctx_peek(m, "counter", &doc, &ver) != 0) {
            sq_sleep(SQ_MSEC);
            continue;
        }
        json_int_t n = json_integer_value(json_object_get(doc, "n"));
        json_decref(doc);
        json_t *p = num_doc(n + 1);
        sq_ctx_change c = {.id = "counter", .kind = SQ_CTX_REPLACE, .patch = p,
                           .expected_version = ver};
        sq_ctx_err e;
        int rc = sq_ctx_update(m, &c, NULL, &e);
        json_decref(p);
        if (rc == 0)
            atomic_fetch_add(&s->acked, 1);
        else if (rc == -ESTALE)
            atomic_fetch_add(&s->conflicts, 1);
        else {
            /* The database is away: not acknowledged (it may or may not
             * have been committed); fail fast, try again a little later. */
            CHECK_EQ(e.code, SQ_CTX_STORE_FAILED);
            atomic_fetch_add(&s->failed, 1);
            sq_sleep(5 * SQ_MSEC);
        }
    }
    atomic_fetch_sub(&s->running, 1);
    return NULL;
}

/* Runs the storm; with `restart`, restarts the database when a third of
 * the target is acknowledged. */
static void run_storm(pg_server *pg, storm *s, bool restart)
{
    sq_task t[CLIENTS];
    client_arg args[CLIENTS];
    atomic_store(&s->running, CLIENTS);
    for (int i = 0; i < CLIENTS; i++) {
        args[i] = (client_arg){s, i};
        CHECK_EQ(sq_spawn(&t[i], client_main, &args[i], NULL), 0);
    }
    if (restart) {
        WAIT_UNTIL(atomic_load(&s->acked) >= s->target / 3);
        CHECK(pg_restart(pg));
    }
    for (int i = 0; i < CLIENTS; i++)
        sq_join(t[i], NULL);
}

static uint64_t counter_of(sq_ctx_mgr *m, json_int_t *n)
{
    json_t *doc;
    uint64_t v = 0;
    if (sq_ctx_peek(m, "counter", &doc, &v) != 0)
        return 0;
    *n = json_integer_value(json_object_get(doc, "n"));
    json_decref(doc);
    return v;
}

static void storm_test(bool restart)
{
    pg_server *pg = pg_start();
    if (!pg)
        return;
    storm *s = calloc(1, sizeof *s);
    s->target = restart ? 300 : 400;
    for (int i = 0; i < INSTANCES; i++)
        inst_open(&s->in[i], pg->uri);
    sq_ctx_err e;
    json_t *d = num_doc(0);
    CHECK_EQ(sq_ctx_create(s->in[0].m, "counter", d, NULL, "t", NULL, &e), 0);
    json_decref(d);
    /* The others hear of it. */
    for (int i = 1; i < INSTANCES; i++)
        WAIT_UNTIL(sq_ctx_peek(s->in[i].m, "counter", NULL, NULL) == 0);
    run_storm(pg, s, restart);
    int acked = atomic_load(&s->acked), failed = atomic_load(&s->failed);
    /* Every instance catches up with the last version. */
    json_int_t n0 = -1;
    uint64_t v0 = 0;
    WAIT_UNTIL(({
        bool same = true;
        v0 = counter_of(s->in[0].m, &n0);
        for (int i = 1; i < INSTANCES; i++) {
            json_int_t n = -1;
            same &= counter_of(s->in[i].m, &n) == v0 && n == n0;
        }
        same;
    }));
    /* Versions gapless: one per increment.  Every acknowledged increment
     * is there; without a restart there is nothing else, with one an
     * increment whose answer was lost may have been committed too. */
    CHECK_EQ(v0, (uint64_t)n0 + 1);
    if (!restart) {
        CHECK_EQ(n0, acked);
        CHECK_EQ(failed, 0);
    } else {
        CHECK(n0 >= acked);
        CHECK(n0 <= acked + failed);
        CHECK(failed > 0); /* the restart was seen */
    }
    for (int i = 0; i < INSTANCES; i++) {
        sq_ctx_close(s->in[i].m);
        /* Every version told, once, in order, by every instance, also
         * one that fell further behind than the history depth (then
         * those pruned before it read them are told without their
         * kind: counted and shown). */
        CHECK_EQ(s->in[i].last, v0);
        CHECK_EQ(s->in[i].backwards, 0);
        CHECK_EQ(s->in[i].gaps, 0);
        CHECK_EQ(s->in[i].told, v0);
        if (s->in[i].unknown)
            fprintf(stderr, "instance %d: %llu version(s) told without their kind\n", i,
                    (unsigned long long)s->in[i].unknown);
    }
    fprintf(stderr, "storm%s: %d acknowledged, %d conflicts, %d failed fast; final %lld\n",
            restart ? " with a database restart" : "", acked, atomic_load(&s->conflicts),
            failed, (long long)n0);
    free(s);
    pg_stop(pg);
}

MT_TEST(three_instances_cas_storm)
{
    storm_test(false);
}

MT_TEST(database_restart_mid_storm)
{
    storm_test(true);
}
