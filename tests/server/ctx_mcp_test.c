/* The context manager over MCP (docs/contexts.md): the specification's
 * concurrent-access test (100 concurrent updates over 10 contexts), the
 * compare-and-set storm (64 clients incrementing one counter), tool
 * errors, the squirrel://context/{id} resources, subscribers (legacy
 * resources/subscribe and 2026-07-28 subscriptions/listen: every change,
 * in version order, to every subscriber; a stalled subscriber's bounded
 * queue costs the others nothing), and context_watch with progress,
 * timeout and cancellation.  The store is a SQLite file in a fresh
 * directory: every acknowledgement waited for a real commit. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcptest.h"
#include "sq_server/ctx.h"

/* ------------------------------------------------------------ fixture */

typedef struct fix {
    char dir[64];
    mt_server *m;
} fix;

static void fix_start(fix *f, size_t out_queue_bytes)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/ctx_mcp-%d-XXXXXX", (int)getpid());
    CHECK(mkdtemp(f->dir) != NULL);
    sq_srv_config c;
    mt_config(&c);
    free(c.store);
    c.store = mt_fmt("sqlite:%s/ctx.db", f->dir);
    if (out_queue_bytes)
        c.out_queue_bytes = out_queue_bytes;
    f->m = mt_start_with(&c);
    sq_srv_config_free(&c);
}

static void fix_stop(fix *f)
{
    mt_stop(f->m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    CHECK_EQ(system(cmd), 0);
}

/* A legacy client on TCP (or any mt_conn): requests one at a time, the
 * notifications that come meanwhile kept in order. */
typedef struct client {
    mt_conn *c;
    long next_id;
    json_t *notes;   /* notifications seen, in order */
} client;

static client *client_on(mt_conn *c)
{
    client *k = calloc(1, sizeof *k);
    k->c = c;
    k->notes = json_array();
    return k;
}

static client *client_new(fix *f)
{
    mt_conn *c = mt_tcp(f->m);
    mt_init(c, "2025-11-25");
    return client_on(c);
}

static void client_free(client *k)
{
    mt_close(k->c);
    json_decref(k->notes);
    free(k);
}

/* The next message (parsed), or NULL (the test has failed). */
static json_t *next_msg(client *k)
{
    char *line = mt_next(k->c);
    if (!line)
        return NULL;
    json_t *j = json_loads(line, 0, NULL);
    if (!j)
        sq_test_fail(__FILE__, __LINE__, line);
    free(line);
    return j;
}

/* Sends request `method` with params (taken over) and returns its
 * response (a new reference), keeping notifications that come first. */
static json_t *request(client *k, const char *method, json_t *params)
{
    long id = ++k->next_id;
    json_t *req = json_pack("{s:s,s:I,s:s,s:o}", "jsonrpc", "2.0", "id", (json_int_t)id,
                            "method", method, "params", params);
    char *text = json_dumps(req, JSON_COMPACT);
    mt_line(k->c, "%s", text);
    free(text);
    json_decref(req);
    for (;;) {
        json_t *j = next_msg(k);
        if (!j)
            return NULL;
        json_t *jid = json_object_get(j, "id");
        if (json_is_integer(jid) && json_integer_value(jid) == id)
            return j;
        json_array_append_new(k->notes, j);
    }
}

/* tools/call of `tool` with the arguments' JSON text: its result (a new
 * reference; NULL if the call itself failed, which fails the test). */
static json_t *call(client *k, const char *tool, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static json_t *call(client *k, const char *tool, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *args;
    CHECK(vasprintf(&args, fmt, ap) >= 0);
    va_end(ap);
    json_t *a = json_loads(args, 0, NULL);
    if (!a)
        sq_test_fail(__FILE__, __LINE__, args);
    free(args);
    json_t *resp = request(k, "tools/call", json_pack("{s:s,s:o}", "name", tool, "arguments", a));
    json_t *result = json_incref(json_object_get(resp, "result"));
    if (!result) {
        char *t = json_dumps(resp, JSON_COMPACT);
        sq_test_fail(__FILE__, __LINE__, t ? t : "no response");
        free(t);
    }
    json_decref(resp);
    return result;
}

/* CHECK_JSON of a value. */
#define CHECK_J(j, want)                                                   \
    do {                                                                   \
        char *t_ = json_dumps((j), JSON_COMPACT | JSON_ENCODE_ANY);        \
        CHECK_JSON(t_, (want));                                            \
        free(t_);                                                          \
    } while (0)

static bool is_error(json_t *result)
{
    return json_is_true(json_object_get(result, "isError"));
}

static json_t *sc(json_t *result)
{
    return json_object_get(result, "structuredContent");
}

static json_int_t sc_int(json_t *result, const char *key)
{
    return json_integer_value(json_object_get(sc(result), key));
}

static const char *sc_str(json_t *result, const char *key)
{
    return json_string_value(json_object_get(sc(result), key));
}

/* ------------------------------------------ 100 updates, 10 contexts */

typedef struct writer_arg {
    fix *f;
    int index;
    json_int_t version;   /* what the update was acknowledged as */
} writer_arg;

static void *one_writer(void *arg)
{
    writer_arg *w = arg;
    client *k = client_new(w->f);
    json_t *r = call(k, "context_update",
                     "{\"id\":\"shared-%d\",\"patch_type\":\"replace\","
                     "\"patch\":{\"writer\":%d,\"ctx\":%d}}",
                     w->index % 10, w->index, w->index % 10);
    CHECK(r && !is_error(r));
    w->version = sc_int(r, "version");
    json_decref(r);
    client_free(k);
    return NULL;
}

MT_TEST(hundred_concurrent_updates_over_ten_contexts)
{
    fix f;
    fix_start(&f, 0);
    client *k = client_new(&f);
    for (int i = 0; i < 10; i++) {
        json_t *r = call(k, "context_create", "{\"id\":\"shared-%d\",\"document\":{}}", i);
        CHECK(r && !is_error(r));
        CHECK_EQ(sc_int(r, "version"), 1);
        json_decref(r);
    }
    enum { W = 100 };
    writer_arg w[W];
    sq_task t[W];
    for (int i = 0; i < W; i++) {
        w[i] = (writer_arg){&f, i, 0};
        CHECK_EQ(sq_spawn(&t[i], one_writer, &w[i], &(sq_spawn_opts){.stack_size = 256 << 10}), 0);
    }
    for (int i = 0; i < W; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    for (int i = 0; i < 10; i++) {
        /* Every context holds what one of its writers wrote: the one
         * whose update made the newest version; the ten updates of a
         * context were acknowledged as versions 2..11, each once. */
        json_t *r = call(k, "context_get", "{\"id\":\"shared-%d\"}", i);
        CHECK(r && !is_error(r));
        CHECK_EQ(sc_int(r, "version"), 11);
        json_t *doc = json_object_get(sc(r), "document");
        int writer = (int)json_integer_value(json_object_get(doc, "writer"));
        CHECK_EQ(writer % 10, i);
        CHECK(writer >= 0 && writer < W);
        CHECK_EQ(json_integer_value(json_object_get(doc, "ctx")), i);
        CHECK_EQ(w[writer].version, 11);
        unsigned seen = 0;
        for (int j = i; j < W; j += 10) {
            CHECK(w[j].version >= 2 && w[j].version <= 11);
            seen |= 1u << w[j].version;
        }
        CHECK_EQ(seen, 0xffcu); /* 2..11 */
        CHECK(json_object_get(sc(r), "created_at") && json_object_get(sc(r), "updated_at"));
        CHECK(json_is_object(json_object_get(sc(r), "metadata")));
        json_decref(r);
    }
    client_free(k);
    fix_stop(&f);
}

/* ------------------------------------------------------- the CAS storm */

enum { CAS_CLIENTS = 64, CAS_EACH = 4 };

typedef struct cas_arg {
    fix *f;
    int acked;
    json_int_t versions[CAS_EACH];
    int mismatches;
} cas_arg;

static void *cas_client(void *arg)
{
    cas_arg *a = arg;
    client *k = client_new(a->f);
    json_t *r = call(k, "context_get", "{\"id\":\"counter\"}");
    json_int_t v = sc_int(r, "version");
    json_int_t n = json_integer_value(json_object_get(json_object_get(sc(r), "document"), "n"));
    json_decref(r);
    while (a->acked < CAS_EACH) {
        r = call(k, "context_update",
                 "{\"id\":\"counter\",\"patch_type\":\"merge\",\"patch\":{\"n\":%lld},"
                 "\"expected_version\":%lld}",
                 (long long)n + 1, (long long)v);
        if (!r)
            break;
        if (!is_error(r)) {
            a->versions[a->acked++] = sc_int(r, "version");
            CHECK_EQ(sc_int(r, "version"), v + 1);
            v++;
            n++;
        } else {
            /* A mismatch names the current version; read what it holds
             * (it may have moved on again: then the next try fails too). */
            CHECK_STR(sc_str(r, "error"), "version_mismatch");
            CHECK(sc_int(r, "current_version") > v);
            a->mismatches++;
            json_decref(r);
            r = call(k, "context_get", "{\"id\":\"counter\"}");
            v = sc_int(r, "version");
            n = json_integer_value(json_object_get(json_object_get(sc(r), "document"), "n"));
        }
        json_decref(r);
    }
    client_free(k);
    return NULL;
}

MT_TEST(cas_storm_counts_every_acknowledged_increment)
{
    fix f;
    fix_start(&f, 0);
    client *k = client_new(&f);
    json_t *r = call(k, "context_create", "{\"id\":\"counter\",\"document\":{\"n\":0}}");
    json_decref(r);
    static cas_arg a[CAS_CLIENTS];
    sq_task t[CAS_CLIENTS];
    for (int i = 0; i < CAS_CLIENTS; i++) {
        a[i] = (cas_arg){.f = &f};
        CHECK_EQ(sq_spawn(&t[i], cas_client, &a[i], &(sq_spawn_opts){.stack_size = 256 << 10}),
                 0);
    }
    for (int i = 0; i < CAS_CLIENTS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    enum { TOTAL = CAS_CLIENTS * CAS_EACH };
    /* Every increment acknowledged is in the counter, and the versions
     * acknowledged are 2..TOTAL+1, each exactly once: no gap, no
     * duplicate. */
    static bool seen[TOTAL + 2];
    memset(seen, 0, sizeof seen);
    int acked = 0, mismatches = 0;
    for (int i = 0; i < CAS_CLIENTS; i++) {
        acked += a[i].acked;
        mismatches += a[i].mismatches;
        for (int j = 0; j < a[i].acked; j++) {
            json_int_t v = a[i].versions[j];
            CHECK(v >= 2 && v <= TOTAL + 1);
            if (v >= 2 && v <= TOTAL + 1) {
                CHECK(!seen[v]);
                seen[v] = true;
            }
        }
    }
    CHECK_EQ(acked, TOTAL);
    r = call(k, "context_get", "{\"id\":\"counter\"}");
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(sc(r), "document"), "n")), TOTAL);
    CHECK_EQ(sc_int(r, "version"), TOTAL + 1);
    json_decref(r);
    /* The history holds the same sequence, newest first, without gaps. */
    json_int_t want = TOTAL + 1;
    const char *cursor = NULL;
    json_t *page = NULL;
    for (int pages = 0; pages < 20; pages++) {
        json_t *nr = cursor ? call(k, "context_history",
                                   "{\"id\":\"counter\",\"cursor\":\"%s\",\"limit\":50}", cursor)
                            : call(k, "context_history", "{\"id\":\"counter\",\"limit\":50}");
        json_decref(page);
        page = nr;
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(sc(page), "versions"), i, e) {
            CHECK_EQ(json_integer_value(json_object_get(e, "version")), want);
            CHECK_STR(json_string_value(json_object_get(e, "kind")), "merge");
            want--;
        }
        cursor = sc_str(page, "next_cursor");
        if (!cursor)
            break;
    }
    json_decref(page);
    CHECK_EQ(want, TOTAL + 1 - SQ_CTX_DEFAULT_HISTORY_DEPTH);
    (void)mismatches;
    client_free(k);
    fix_stop(&f);
}

/* --------------------------------------------- tools, errors, resources */

MT_TEST(tools_report_failed_preconditions_as_tool_errors)
{
    fix f;
    fix_start(&f, 0);
    client *k = client_new(&f);
    json_t *r = call(k, "context_create",
                     "{\"id\":\"t\",\"document\":{\"a\":1},\"metadata\":{\"owner\":\"me\"}}");
    CHECK(!is_error(r));
    json_decref(r);
    r = call(k, "context_update",
             "{\"id\":\"t\",\"patch_type\":\"json\",\"expected_version\":1,"
             "\"patch\":[{\"op\":\"test\",\"path\":\"/a\",\"value\":1},"
             "{\"op\":\"add\",\"path\":\"/b\",\"value\":2}]}");
    CHECK(!is_error(r));
    CHECK_J(sc(r), "{\"id\":\"t\",\"version\":2}");
    json_decref(r);

    r = call(k, "context_update",
             "{\"id\":\"t\",\"patch_type\":\"merge\",\"patch\":{},\"expected_version\":1}");
    CHECK(is_error(r));
    CHECK_STR(sc_str(r, "error"), "version_mismatch");
    CHECK_EQ(sc_int(r, "current_version"), 2);
    json_decref(r);
    r = call(k, "context_update",
             "{\"id\":\"t\",\"patch_type\":\"json\","
             "\"patch\":[{\"op\":\"test\",\"path\":\"/a\",\"value\":2}]}");
    CHECK(is_error(r));
    CHECK_STR(sc_str(r, "error"), "test_failed");
    CHECK_EQ(sc_int(r, "op"), 0);
    json_decref(r);
    r = call(k, "context_get", "{\"id\":\"nope\"}");
    CHECK(is_error(r));
    CHECK_STR(sc_str(r, "error"), "not_found");
    json_decref(r);
    r = call(k, "context_create", "{\"id\":\"bad id\",\"document\":1}");
    CHECK(is_error(r));
    CHECK_STR(sc_str(r, "error"), "invalid_id");
    json_decref(r);
    r = call(k, "context_update", "{\"id\":\"t\",\"patch_type\":\"xml\",\"patch\":1}");
    CHECK(is_error(r));
    CHECK_STR(sc_str(r, "error"), "invalid_argument");
    json_decref(r);

    /* Snapshot, restore, diff, delete through the tools. */
    r = call(k, "context_snapshot", "{\"id\":\"t\",\"name\":\"two\"}");
    CHECK(!is_error(r));
    CHECK_EQ(sc_int(r, "version"), 2);
    json_decref(r);
    r = call(k, "context_update", "{\"id\":\"t\",\"patch_type\":\"replace\",\"patch\":[]}");
    json_decref(r);
    r = call(k, "context_restore", "{\"id\":\"t\",\"snapshot\":\"two\"}");
    CHECK(!is_error(r));
    CHECK_EQ(sc_int(r, "version"), 4);
    json_decref(r);
    r = call(k, "context_get", "{\"id\":\"t\"}");
    CHECK_J(json_object_get(sc(r), "document"), "{\"a\":1,\"b\":2}");
    CHECK_J(json_object_get(sc(r), "metadata"),
               "{\"owner\":\"me\"}");
    json_decref(r);
    r = call(k, "context_get", "{\"id\":\"t\",\"version\":3}");
    CHECK_J(json_object_get(sc(r), "document"), "[]");
    json_decref(r);
    r = call(k, "context_diff", "{\"id\":\"t\",\"from\":1,\"to\":2}");
    CHECK(!is_error(r));
    CHECK_J(json_object_get(sc(r), "patch"),
               "[{\"op\":\"add\",\"path\":\"/b\",\"value\":2}]");
    json_decref(r);
    r = call(k, "context_restore", "{\"id\":\"t\",\"recovery_point\":50}");
    CHECK(is_error(r));
    CHECK_STR(sc_str(r, "error"), "recovery_point_not_found");
    json_decref(r);

    /* The resource of a context, and the list of them. */
    json_t *resp = request(k, "resources/read", json_pack("{s:s}", "uri", "squirrel://context/t"));
    json_t *content = json_array_get(json_object_get(json_object_get(resp, "result"), "contents"), 0);
    CHECK_STR(json_string_value(json_object_get(content, "text")), "{\"a\":1,\"b\":2}");
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(content, "_meta"),
                                                "squirrel/version")), 4);
    json_decref(resp);
    for (int i = 0; i < 5; i++)
        json_decref(call(k, "context_create", "{\"id\":\"p-%d\",\"document\":%d}", i, i));
    r = call(k, "context_list", "{\"prefix\":\"p-\",\"limit\":2}");
    CHECK_EQ(json_array_size(json_object_get(sc(r), "contexts")), 2);
    char *cur = strdup(sc_str(r, "next_cursor"));
    json_decref(r);
    r = call(k, "context_list", "{\"prefix\":\"p-\",\"cursor\":\"%s\"}", cur);
    free(cur);
    json_t *items = json_object_get(sc(r), "contexts");
    CHECK_EQ(json_array_size(items), 3);
    CHECK_STR(json_string_value(json_object_get(json_array_get(items, 0), "id")), "p-2");
    CHECK(sc_str(r, "next_cursor") == NULL);
    json_decref(r);
    resp = request(k, "resources/list", json_object());
    json_t *res = json_object_get(json_object_get(resp, "result"), "resources");
    size_t ctx_uris = 0, i;
    json_t *it;
    json_array_foreach(res, i, it)
        if (strncmp(json_string_value(json_object_get(it, "uri")), "squirrel://context/", 19) == 0)
            ctx_uris++;
    CHECK_EQ(ctx_uris, 6);
    json_decref(resp);
    r = call(k, "context_delete", "{\"id\":\"t\",\"expected_version\":3}");
    CHECK(is_error(r));
    CHECK_EQ(sc_int(r, "current_version"), 4);
    json_decref(r);
    r = call(k, "context_delete", "{\"id\":\"t\",\"expected_version\":4}");
    CHECK(!is_error(r));
    json_decref(r);
    resp = request(k, "resources/read", json_pack("{s:s}", "uri", "squirrel://context/t"));
    CHECK(json_object_get(resp, "error") != NULL);
    json_decref(resp);
    client_free(k);
    fix_stop(&f);
}

/* ------------------------------------------------------- subscribers */

enum { SUB_WRITERS = 4, SUB_EACH = 25, SUB_N = SUB_WRITERS * SUB_EACH };

typedef struct sub_writer {
    fix *f;
    int index;
} sub_writer;

static void *sub_write(void *arg)
{
    sub_writer *w = arg;
    client *k = client_new(w->f);
    for (int j = 0; j < SUB_EACH; j++) {
        json_t *r = call(k, "context_update",
                         "{\"id\":\"watched\",\"patch_type\":\"merge\",\"patch\":{\"w%d\":%d}}",
                         w->index, j);
        CHECK(r && !is_error(r));
        json_decref(r);
    }
    client_free(k);
    return NULL;
}

/* The version of a notifications/resources/updated for the watched
 * context, else 0. */
static json_int_t updated_version(json_t *msg)
{
    if (!json_is_string(json_object_get(msg, "method")) ||
        strcmp(json_string_value(json_object_get(msg, "method")),
               "notifications/resources/updated") != 0)
        return 0;
    json_t *p = json_object_get(msg, "params");
    if (strcmp(json_string_value(json_object_get(p, "uri")), "squirrel://context/watched") != 0)
        return 0;
    return json_integer_value(json_object_get(json_object_get(p, "_meta"), "squirrel/version"));
}

/* Reads k's notifications (those already kept first) until the update of
 * version `last`: every version from `first` must come, once, in order. */
static void expect_versions(client *k, json_int_t first, json_int_t last, const char *sub_id)
{
    json_int_t want = first;
    size_t kept = 0;
    while (want <= last) {
        json_t *msg = kept < json_array_size(k->notes)
                          ? json_incref(json_array_get(k->notes, kept++))
                          : next_msg(k);
        if (!msg)
            return;
        json_int_t v = updated_version(msg);
        if (v) {
            CHECK_EQ(v, want);
            want = v + 1;
            if (sub_id) {
                json_t *meta = json_object_get(json_object_get(msg, "params"), "_meta");
                CHECK_STR(json_string_value(json_object_get(
                              meta, "io.modelcontextprotocol/subscriptionId")),
                          sub_id);
            }
        }
        json_decref(msg);
    }
    json_array_clear(k->notes);
}

static client *listener(fix *f, const char *id)
{
    client *k = client_on(mt_tcp(f->m));
    mt_line(k->c,
            "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"method\":\"subscriptions/listen\",\"params\":{"
            "\"notifications\":{\"resourceSubscriptions\":[\"squirrel://context/watched\"],"
            "\"resourcesListChanged\":true}," MT_META "}}",
            id);
    json_t *ack = next_msg(k);
    CHECK_STR(json_string_value(json_object_get(ack, "method")),
              "notifications/subscriptions/acknowledged");
    json_decref(ack);
    return k;
}

MT_TEST(every_subscriber_gets_every_change_in_order)
{
    fix f;
    fix_start(&f, 0);
    client *w = client_new(&f);
    /* Two legacy sessions subscribed, two 2026-07-28 listen streams. */
    client *l1 = listener(&f, "L1"), *l2 = listener(&f, "L2");
    json_t *r = call(w, "context_create", "{\"id\":\"watched\",\"document\":{}}");
    json_decref(r);
    /* The listen streams hear of the creation (version 1) and, as they
     * asked for list changes, that a context came. */
    for (int i = 0; i < 2; i++) {
        int list_changed = 0, created = 0;
        for (int j = 0; j < 2; j++) {
            json_t *msg = next_msg(i ? l2 : l1);
            const char *method = json_string_value(json_object_get(msg, "method"));
            if (method && strcmp(method, "notifications/resources/list_changed") == 0)
                list_changed++;
            else if (updated_version(msg) == 1)
                created++;
            json_decref(msg);
        }
        CHECK_EQ(list_changed, 1);
        CHECK_EQ(created, 1);
    }
    client *s[2];
    for (int i = 0; i < 2; i++) {
        s[i] = client_new(&f);
        json_t *resp = request(s[i], "resources/subscribe",
                               json_pack("{s:s}", "uri", "squirrel://context/watched"));
        CHECK(json_object_get(resp, "result") != NULL);
        json_decref(resp);
    }
    sub_writer a[SUB_WRITERS];
    sq_task t[SUB_WRITERS];
    for (int i = 0; i < SUB_WRITERS; i++) {
        a[i] = (sub_writer){&f, i};
        CHECK_EQ(sq_spawn(&t[i], sub_write, &a[i], &(sq_spawn_opts){.stack_size = 256 << 10}), 0);
    }
    for (int i = 0; i < SUB_WRITERS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    expect_versions(s[0], 2, SUB_N + 1, NULL);
    expect_versions(s[1], 2, SUB_N + 1, NULL);
    expect_versions(l1, 2, SUB_N + 1, "L1");
    expect_versions(l2, 2, SUB_N + 1, "L2");
    /* A delete is a change too (its version is the last one). */
    r = call(w, "context_delete", "{\"id\":\"watched\"}");
    json_decref(r);
    for (int i = 0; i < 2; i++) {
        json_t *msg = next_msg(s[i]);
        CHECK_EQ(updated_version(msg), SUB_N + 1);
        CHECK_STR(json_string_value(json_object_get(
                      json_object_get(json_object_get(msg, "params"), "_meta"), "squirrel/kind")),
                  "delete");
        json_decref(msg);
    }
    for (int i = 0; i < 2; i++)
        client_free(s[i]);
    client_free(l1);
    client_free(l2);
    client_free(w);
    fix_stop(&f);
}

enum { STALL_N = 400 };

static void *read_all(void *arg)
{
    expect_versions(arg, 2, STALL_N + 1, NULL);
    return NULL;
}

/* A subscriber that stops reading: its connection's queue (out_queue_bytes,
 * 8 KiB here, behind a pipe shrunk to one page) fills and the notifications
 * that do not fit are dropped; the writer and the other subscriber go on.
 * Asserted by counts: all N updates acknowledged while it read nothing,
 * the reading subscriber got all N in order, the stalled one fewer, in
 * order, and once it reads again it gets the next change. */
MT_TEST(stalled_subscriber_does_not_slow_the_others)
{
    enum { N = STALL_N };
    fix f;
    fix_start(&f, 8192);
    client *w = client_new(&f);
    json_t *r = call(w, "context_create", "{\"id\":\"watched\",\"document\":{}}");
    json_decref(r);
    client *fast = client_new(&f);
    client *slow = client_on(mt_stdio(f.m));
    CHECK(fcntl(sq_io_fd(slow->c->rd), F_SETPIPE_SZ, 4096) >= 4096);
    mt_init(slow->c, "2025-11-25");
    client *subs[2] = {fast, slow};
    for (int i = 0; i < 2; i++) {
        json_t *resp = request(subs[i], "resources/subscribe",
                               json_pack("{s:s}", "uri", "squirrel://context/watched"));
        CHECK(json_object_get(resp, "result") != NULL);
        json_decref(resp);
    }
    /* N notifications are several times what the pipe and the queue
     * hold.  The other subscriber reads as they come. */
    sq_task reader;
    CHECK_EQ(sq_spawn(&reader, read_all, fast, &(sq_spawn_opts){.stack_size = 256 << 10}), 0);
    for (int j = 0; j < N; j++) {
        r = call(w, "context_update",
                 "{\"id\":\"watched\",\"patch_type\":\"replace\",\"patch\":%d}", j);
        CHECK(r && !is_error(r));
        json_decref(r);
    }
    CHECK_EQ(sq_join(reader, NULL), 0);
    /* The stalled one: what fitted, in order.  Every notification was
     * queued or dropped before its update was acknowledged, so the
     * answer to a ping comes after all that is left. */
    json_int_t last = 1, got = 0;
    json_t *pong = request(slow, "ping", json_object());
    CHECK(json_object_get(pong, "result") != NULL);
    json_decref(pong);
    size_t i;
    json_t *msg;
    json_array_foreach(slow->notes, i, msg) {
        json_int_t v = updated_version(msg);
        if (!v)
            continue;
        CHECK(v > last);
        last = v;
        got++;
    }
    json_array_clear(slow->notes);
    CHECK(got > 0);
    CHECK(got < N);
    /* Drop with a count: what it did not get was counted as dropped (the
     * other subscriber, on TCP, had room for everything). */
    CHECK_EQ(sq_srv_dropped(f.m->srv), N - got);
    /* Reading again, it hears of the next change. */
    r = call(w, "context_update", "{\"id\":\"watched\",\"patch_type\":\"replace\",\"patch\":-1}");
    json_decref(r);
    do {
        msg = next_msg(slow);
        if (!msg)
            break;
        last = updated_version(msg);
        json_decref(msg);
    } while (last == 0);
    CHECK_EQ(last, N + 2);
    expect_versions(fast, N + 2, N + 2, NULL);
    client_free(fast);
    client_free(slow);
    client_free(w);
    fix_stop(&f);
}

/* ------------------------------------------------------ context_watch */

MT_TEST(watch_reports_progress_and_returns_on_change)
{
    fix f;
    fix_start(&f, 0);
    client *k = client_new(&f), *w = client_new(&f);
    json_t *r = call(w, "context_create", "{\"id\":\"w\",\"document\":0}");
    json_decref(r);
    /* Past the version already: at once. */
    r = call(k, "context_watch", "{\"id\":\"w\",\"after_version\":0}");
    CHECK_EQ(sc_int(r, "version"), 1);
    CHECK(json_is_false(json_object_get(sc(r), "timed_out")));
    json_decref(r);
    /* A timeout. */
    r = call(k, "context_watch", "{\"id\":\"w\",\"after_version\":1,\"timeout_ms\":30}");
    CHECK(!is_error(r));
    CHECK(json_is_true(json_object_get(sc(r), "timed_out")));
    CHECK_EQ(sc_int(r, "version"), 1);
    json_decref(r);

    /* Waiting: progress every 10 ms; a change ends the wait. */
    mt_line(k->c, "{\"jsonrpc\":\"2.0\",\"id\":\"watch\",\"method\":\"tools/call\",\"params\":{"
                  "\"name\":\"context_watch\",\"arguments\":{\"id\":\"w\",\"after_version\":1,"
                  "\"progress_ms\":10},\"_meta\":{\"progressToken\":\"pt\"}}}");
    int progress = 0;
    double lastp = -1;
    while (progress < 3) {
        json_t *msg = next_msg(k);
        if (!msg)
            break;
        CHECK_STR(json_string_value(json_object_get(msg, "method")), "notifications/progress");
        json_t *p = json_object_get(msg, "params");
        CHECK_STR(json_string_value(json_object_get(p, "progressToken")), "pt");
        double pv = json_number_value(json_object_get(p, "progress"));
        CHECK(pv > lastp);
        lastp = pv;
        progress++;
        json_decref(msg);
    }
    r = call(w, "context_update", "{\"id\":\"w\",\"patch_type\":\"replace\",\"patch\":1}");
    json_decref(r);
    for (;;) {
        json_t *msg = next_msg(k);
        if (!msg)
            break;
        if (json_object_get(msg, "id")) {
            CHECK_STR(json_string_value(json_object_get(msg, "id")), "watch");
            json_t *res = json_object_get(msg, "result");
            CHECK_EQ(sc_int(res, "version"), 2);
            CHECK(json_is_false(json_object_get(sc(res), "timed_out")));
            json_decref(msg);
            break;
        }
        json_decref(msg);
    }

    /* Cancelled: never answered; the connection goes on. */
    mt_line(k->c, "{\"jsonrpc\":\"2.0\",\"id\":\"w2\",\"method\":\"tools/call\",\"params\":{"
                  "\"name\":\"context_watch\",\"arguments\":{\"id\":\"w\",\"after_version\":2,"
                  "\"progress_ms\":10},\"_meta\":{\"progressToken\":\"pt2\"}}}");
    json_t *msg = next_msg(k);
    CHECK_STR(json_string_value(json_object_get(msg, "method")), "notifications/progress");
    json_decref(msg);
    mt_line(k->c, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{"
                  "\"requestId\":\"w2\",\"reason\":\"test\"}}");
    /* Progress may still be on its way; the ping's answer comes, and no
     * answer to w2 comes before it or after it. */
    json_t *pong = request(k, "ping", json_object());
    CHECK(json_object_get(pong, "result") != NULL);
    json_decref(pong);
    size_t i;
    json_t *n;
    json_array_foreach(k->notes, i, n)
        CHECK(json_object_get(n, "id") == NULL);
    json_array_clear(k->notes);
    r = call(w, "context_update", "{\"id\":\"w\",\"patch_type\":\"replace\",\"patch\":2}");
    json_decref(r);
    pong = request(k, "ping", json_object());
    json_decref(pong);
    json_array_foreach(k->notes, i, n) {
        CHECK(json_object_get(n, "id") == NULL);
    }
    client_free(k);
    client_free(w);
    fix_stop(&f);
}
