/* Three squirreld processes on one PostgreSQL database (docs/postgres.md),
 * as behind a load balancer: 64 MCP clients spread over them run the
 * compare-and-set counter storm (context_get, then context_update with
 * expected_version, again on a mismatch) while a subscriber on each
 * instance that stays reads its resources/updated notifications.  In the
 * middle of it one instance is killed with SIGKILL and, later, the
 * database is stopped like a crash and started again.  Then:
 *  - every acknowledged increment is there (the final value is at least
 *    the acknowledged count, and at most that plus the increments whose
 *    answer never came: those of the killed instance's clients and those
 *    failed while the database was away);
 *  - versions are gapless: the last version is the value + 1;
 *  - the clients of the surviving instances carried on, and every
 *    subscriber on them heard of every version, in order, with no gap;
 *  - an instance started again afterwards loads the same final state. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcptest.h"
#include "pgtest.h"

#define NODES 3
#define CLIENTS 64
#define TARGET 300

/* ------------------------------------------------------------ squirreld */

typedef struct node {
    mt_child *ch;
    int port;
} node;

static bool node_start(node *n, const char *uri)
{
    const char *args[] = {"--tcp", "127.0.0.1:0", "--store", uri, NULL};
    n->ch = mt_spawn(args);
    n->port = mt_child_port(n->ch, "tcp");
    return n->port > 0;
}

/* ------------------------------------------------------------- clients */

/* A legacy-era client on TCP that outlives its server (the server may be
 * killed): `dead` once the connection ends. */
typedef struct client {
    mt_conn *c;
    long id;
    bool dead;
} client;

static client *client_new(int port)
{
    mt_server fake = {.tcp_port = port};
    client *k = calloc(1, sizeof *k);
    k->c = mt_tcp(&fake);
    mt_init(k->c, "2025-11-25");
    return k;
}

static void client_free(client *k)
{
    mt_close(k->c);
    free(k);
}

/* The response to a request (a new reference), or NULL once dead;
 * notifications that come meanwhile go to fn. */
static json_t *rpc(client *k, const char *method, json_t *params,
                   void (*fn)(void *, json_t *), void *arg)
{
    long id = ++k->id;
    json_t *req = json_pack("{s:s,s:I,s:s,s:o}", "jsonrpc", "2.0", "id", (json_int_t)id,
                            "method", method, "params", params);
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    size_t n = strlen(text);
    text[n] = '\n';
    ssize_t w = sq_io_write(k->c->wr, text, n + 1);
    free(text);
    if (w != (ssize_t)(n + 1)) {
        k->dead = true;
        return NULL;
    }
    for (;;) {
        char *line = mt_next_until(k->c, sq_now() + MT_WAIT);
        if (!line) {
            if (!k->c->eof)
                CHECK(!"no answer from squirreld in time");
            k->dead = true;
            return NULL;
        }
        json_t *j = json_loads(line, 0, NULL);
        free(line);
        json_t *jid = json_object_get(j, "id");
        if (json_is_integer(jid) && json_integer_value(jid) == id)
            return j;
        if (fn)
            fn(arg, j);
        json_decref(j);
    }
}

static json_t *tool(client *k, const char *name, json_t *args)
{
    json_t *r = rpc(k, "tools/call", json_pack("{s:s,s:o}", "name", name, "arguments", args),
                    NULL, NULL);
    json_t *res = json_incref(json_object_get(r, "result"));
    json_decref(r);
    return res;
}

static json_t *sc(json_t *result)
{
    return json_object_get(result, "structuredContent");
}

/* ---------------------------------------------------------------- storm */

typedef struct storm {
    node nodes[NODES];
    atomic_int acked, conflicts, failed, unknown, running;
    atomic_bool stop_subs;
    atomic_llong final_version;
} storm;

typedef struct client_arg {
    storm *s;
    int k;
} client_arg;

static void *client_main(void *arg)
{
    client_arg *a = arg;
    storm *s = a->s;
    client *k = client_new(s->nodes[a->k % NODES].port);
    while (!k->dead && atomic_load(&s->acked) < TARGET) {
        json_t *r = tool(k, "context_get", json_pack("{s:s}", "id", "counter"));
        if (!r)
            break;
        if (json_is_true(json_object_get(r, "isError"))) {
            json_decref(r); /* the database is away: a read may fail too */
            sq_sleep(5 * SQ_MSEC);
            continue;
        }
        json_int_t v = json_integer_value(json_object_get(sc(r), "version"));
        json_int_t n = json_integer_value(
            json_object_get(json_object_get(sc(r), "document"), "n"));
        json_decref(r);
        r = tool(k, "context_update",
                 json_pack("{s:s,s:s,s:{s:I},s:I}", "id", "counter", "patch_type", "replace",
                           "patch", "n", n + 1, "expected_version", v));
        if (!r) {
            atomic_fetch_add(&s->unknown, 1); /* its answer never came */
            break;
        }
        const char *err = json_string_value(json_object_get(sc(r), "error"));
        if (!json_is_true(json_object_get(r, "isError"))) {
            CHECK_EQ(json_integer_value(json_object_get(sc(r), "version")), v + 1);
            atomic_fetch_add(&s->acked, 1);
        } else if (err && strcmp(err, "version_mismatch") == 0) {
            atomic_fetch_add(&s->conflicts, 1);
        } else {
            /* store_failed: not acknowledged; it may have been committed */
            atomic_fetch_add(&s->failed, 1);
            sq_sleep(5 * SQ_MSEC);
        }
        json_decref(r);
    }
    client_free(k);
    atomic_fetch_sub(&s->running, 1);
    return NULL;
}

/* A subscriber: the versions of "counter" it is told of, in order. */
typedef struct sub {
    storm *s;
    client *k;
    json_int_t *v;
    size_t n;
} sub;

static void note(void *arg, json_t *msg)
{
    sub *b = arg;
    if (strcmp(json_string_value(json_object_get(msg, "method")) ?: "",
               "notifications/resources/updated") != 0)
        return;
    json_t *meta = json_object_get(json_object_get(msg, "params"), "_meta");
    b->v = realloc(b->v, (b->n + 1) * sizeof *b->v);
    b->v[b->n++] = json_integer_value(json_object_get(meta, "squirrel/version"));
}

static void *sub_main(void *arg)
{
    sub *b = arg;
    for (;;) {
        long long want = atomic_load(&b->s->final_version);
        if (want && b->n && b->v[b->n - 1] >= want)
            break;
        char *line = mt_next_until(b->k->c, sq_now() + 100 * SQ_MSEC);
        if (!line) {
            if (b->k->c->eof)
                break;
            continue;
        }
        json_t *j = json_loads(line, 0, NULL);
        free(line);
        note(b, j);
        json_decref(j);
    }
    return NULL;
}

MT_TEST(instances_share_one_database_through_a_kill_and_a_restart)
{
    pg_server *pg = pg_start();
    if (!pg)
        return;
    storm *s = calloc(1, sizeof *s);
    for (int i = 0; i < NODES; i++)
        CHECK(node_start(&s->nodes[i], pg->uri));
    client *setup = client_new(s->nodes[0].port);
    json_t *r = tool(setup, "context_create",
                     json_pack("{s:s,s:{s:i}}", "id", "counter", "document", "n", 0));
    CHECK(r && !json_is_true(json_object_get(r, "isError")));
    json_decref(r);
    /* A subscriber on each instance that will stay (1 and 2), once that
     * instance knows the context. */
    sub subs[NODES - 1];
    sq_task st[NODES - 1];
    for (int i = 0; i < NODES - 1; i++) {
        client *k = client_new(s->nodes[i + 1].port);
        for (;;) {
            r = tool(k, "context_get", json_pack("{s:s}", "id", "counter"));
            bool there = r && !json_is_true(json_object_get(r, "isError"));
            json_decref(r);
            if (there)
                break;
            sq_sleep(SQ_MSEC);
        }
        json_t *resp = rpc(k, "resources/subscribe",
                           json_pack("{s:s}", "uri", "squirrel://context/counter"), NULL, NULL);
        CHECK(json_object_get(resp, "result") != NULL);
        json_decref(resp);
        subs[i] = (sub){.s = s, .k = k};
        CHECK_EQ(sq_spawn(&st[i], sub_main, &subs[i], NULL), 0);
    }
    sq_task t[CLIENTS];
    client_arg args[CLIENTS];
    atomic_store(&s->running, CLIENTS);
    for (int i = 0; i < CLIENTS; i++) {
        args[i] = (client_arg){s, i};
        CHECK_EQ(sq_spawn(&t[i], client_main, &args[i], NULL), 0);
    }
    WAIT_UNTIL(atomic_load(&s->acked) >= TARGET / 4);
    kill(s->nodes[0].ch->pid, SIGKILL);
    WAIT_UNTIL(atomic_load(&s->acked) >= TARGET / 2);
    CHECK(pg_restart(pg));
    for (int i = 0; i < CLIENTS; i++)
        sq_join(t[i], NULL);
    int acked = atomic_load(&s->acked);
    int unknown = atomic_load(&s->unknown) + atomic_load(&s->failed);

    /* The final state, from a survivor (once it answers again). */
    client *k = client_new(s->nodes[1].port);
    json_int_t v = 0, n = 0;
    WAIT_UNTIL(({
        r = tool(k, "context_get", json_pack("{s:s}", "id", "counter"));
        bool ok = r && !json_is_true(json_object_get(r, "isError"));
        if (ok) {
            v = json_integer_value(json_object_get(sc(r), "version"));
            n = json_integer_value(json_object_get(json_object_get(sc(r), "document"), "n"));
        }
        json_decref(r);
        ok;
    }));
    CHECK_EQ(v, n + 1);
    CHECK(n >= acked);
    CHECK(n <= acked + unknown);
    atomic_store(&s->final_version, v);
    for (int i = 0; i < NODES - 1; i++) {
        sq_join(st[i], NULL);
        /* Every version after the subscription, in order, no gap. */
        CHECK(subs[i].n > 0);
        for (size_t j = 1; j < subs[i].n; j++)
            CHECK_EQ(subs[i].v[j], subs[i].v[j - 1] + 1);
        CHECK_EQ(subs[i].n ? subs[i].v[subs[i].n - 1] : 0, v);
        client_free(subs[i].k);
        free(subs[i].v);
    }
    /* The killed instance, started again, loads the same state. */
    mt_child_free(s->nodes[0].ch);
    CHECK(node_start(&s->nodes[0], pg->uri));
    client *k0 = client_new(s->nodes[0].port);
    r = tool(k0, "context_get", json_pack("{s:s}", "id", "counter"));
    CHECK_EQ(json_integer_value(json_object_get(sc(r), "version")), v);
    json_decref(r);
    fprintf(stderr,
            "instances: %d acknowledged, %d conflicts, %d failed while the database was "
            "away, %d unanswered (killed); final %lld\n",
            acked, atomic_load(&s->conflicts), atomic_load(&s->failed),
            atomic_load(&s->unknown), (long long)n);
    client_free(k0);
    client_free(k);
    client_free(setup);
    for (int i = 0; i < NODES; i++)
        mt_child_free(s->nodes[i].ch);
    free(s);
    pg_stop(pg);
}
