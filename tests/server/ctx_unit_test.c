/* The context manager itself (sq_server/ctx.h), called directly: ids and
 * limits, the three kinds of change and compare-and-set, snapshots,
 * recovery points and restores, history, diff, delete, listing, the
 * listeners' bounded queues, and the store's checks on opening (a
 * corrupt or newer-schema file is refused and left as it is). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "mcptest.h"
#include "sq_server/ctx.h"
#include "sq_server/jsonpatch.h"

/* ------------------------------------------------------------ helpers */

/* CHECK_EQ for calls too long to quote in its message. */
#define EXPECT(call, want)              \
    do {                                \
        long long rc_ = (call);         \
        CHECK_EQ(rc_, (want));          \
    } while (0)

static sq_ctx_mgr *open_with(const char *store, const sq_ctx_opts *base)
{
    sq_ctx_opts o = base ? *base : (sq_ctx_opts){0};
    o.store = store;
    sq_ctx_mgr *m = NULL;
    char err[512];
    int rc = sq_ctx_open(&m, &o, err, sizeof err);
    if (rc) {
        sq_test_fail(__FILE__, __LINE__, err);
        return NULL;
    }
    return m;
}

static sq_ctx_mgr *open_mem(const sq_ctx_opts *o)
{
    return open_with("memory", o);
}

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    if (!j)
        sq_test_fail(__FILE__, __LINE__, text);
    return j;
}

/* Creates id with the document text. */
static int create(sq_ctx_mgr *m, const char *id, const char *doc, sq_ctx_err *e)
{
    json_t *d = J(doc);
    int rc = sq_ctx_create(m, id, d, NULL, "test", NULL, e);
    json_decref(d);
    return rc;
}

static int update(sq_ctx_mgr *m, const char *id, int kind, const char *patch,
                  uint64_t expected, uint64_t *v, sq_ctx_err *e)
{
    json_t *p = J(patch);
    sq_ctx_change c = {.id = id, .kind = kind, .patch = p, .expected_version = expected,
                       .actor = "test"};
    int rc = sq_ctx_update(m, &c, v, e);
    json_decref(p);
    return rc;
}

/* The newest document of id equals the JSON text want, at version v. */
static bool doc_is(sq_ctx_mgr *m, const char *id, uint64_t v, const char *want)
{
    sq_ctx_info i;
    sq_ctx_err e;
    if (sq_ctx_get(m, id, 0, &i, &e) != 0) {
        sq_test_fail(__FILE__, __LINE__, e.message);
        return false;
    }
    char *got = json_dumps(i.document, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    bool good = CHECK_JSON(got, want);
    CHECK_EQ(i.version, v);
    if (i.version != v)
        good = false;
    free(got);
    sq_ctx_info_clear(&i);
    return good;
}

static char *dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
}

/* A fresh directory for store files (removed by rm_dir). */
static void tmp_dir(char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/ctx_unit-%d-XXXXXX", (int)getpid());
    CHECK(mkdtemp(buf) != NULL);
}

static void rm_dir(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ(system(cmd), 0);
}

/* ------------------------------------------------------------ ids, limits */

MT_TEST(ids_are_checked)
{
    CHECK(sq_ctx_valid_id("a", false));
    CHECK(sq_ctx_valid_id("agent-1.plan:v2~x_y", false));
    CHECK(sq_ctx_valid_id("0abc", false));
    CHECK(!sq_ctx_valid_id("", false));
    CHECK(!sq_ctx_valid_id("-a", false));
    CHECK(!sq_ctx_valid_id("a/b", false));
    CHECK(!sq_ctx_valid_id("a b", false));
    CHECK(!sq_ctx_valid_id("é", false));
    char longest[SQ_CTX_ID_MAX + 2];
    memset(longest, 'a', sizeof longest);
    longest[SQ_CTX_ID_MAX] = '\0';
    CHECK(sq_ctx_valid_id(longest, false));
    longest[SQ_CTX_ID_MAX] = 'a';
    longest[SQ_CTX_ID_MAX + 1] = '\0';
    CHECK(!sq_ctx_valid_id(longest, false));
    longest[SQ_CTX_NAME_MAX + 1] = '\0';
    CHECK(!sq_ctx_valid_id(longest, true));

    sq_ctx_mgr *m = open_mem(NULL);
    sq_ctx_err e;
    CHECK_EQ(create(m, "a/b", "{}", &e), -EINVAL);
    CHECK_EQ(e.code, SQ_CTX_INVALID_ID);
    CHECK(strstr(e.message, "a/b") != NULL || strstr(e.message, "id") != NULL);
    CHECK_STR(sq_ctx_code_name(e.code), "invalid_id");
    json_t *doc;
    uint64_t v;
    CHECK_EQ(sq_ctx_peek(m, "no/such", &doc, &v), -EINVAL);
    CHECK_EQ(sq_ctx_peek(m, "nosuch", &doc, &v), -ENOENT);
    sq_ctx_info i;
    CHECK_EQ(sq_ctx_get(m, "nosuch", 0, &i, &e), -ENOENT);
    CHECK_EQ(e.code, SQ_CTX_NOT_FOUND);
    CHECK_STR(sq_ctx_code_name(e.code), "not_found");
    CHECK_EQ(create(m, "one", "{\"a\":1}", &e), 0);
    CHECK_EQ(create(m, "one", "{}", &e), -EEXIST);
    CHECK_EQ(e.code, SQ_CTX_ALREADY_EXISTS);
    CHECK_EQ(e.current_version, 1);
    CHECK(doc_is(m, "one", 1, "{\"a\":1}"));
    sq_ctx_close(m);
}

MT_TEST(limits_are_enforced)
{
    sq_ctx_opts o = {.max_contexts = 3, .max_document_bytes = 64, .max_metadata_bytes = 32,
                     .max_snapshots = 2};
    sq_ctx_mgr *m = open_mem(&o);
    sq_ctx_err e;
    char big[200];
    snprintf(big, sizeof big, "{\"s\":\"%0100d\"}", 0);
    CHECK_EQ(create(m, "big", big, &e), -EFBIG);
    CHECK_EQ(e.code, SQ_CTX_TOO_LARGE);
    CHECK_EQ(e.limit, 64);
    CHECK_EQ(sq_ctx_count(m), 0);

    json_t *d = J("{}"), *meta = J("{\"note\":\"this metadata is longer than 32 bytes\"}");
    CHECK_EQ(sq_ctx_create(m, "meta", d, meta, NULL, NULL, &e), -EFBIG);
    CHECK_EQ(e.code, SQ_CTX_TOO_LARGE);
    json_t *arr = J("[1]");
    CHECK_EQ(sq_ctx_create(m, "meta", d, arr, NULL, NULL, &e), -EINVAL);
    CHECK_EQ(e.code, SQ_CTX_INVALID_ARGUMENT);
    json_decref(arr);
    json_decref(meta);
    json_decref(d);

    CHECK_EQ(create(m, "c1", "{}", &e), 0);
    CHECK_EQ(create(m, "c2", "{}", &e), 0);
    CHECK_EQ(create(m, "c3", "{}", &e), 0);
    CHECK_EQ(create(m, "c4", "{}", &e), -ENOSPC);
    CHECK_EQ(e.code, SQ_CTX_TOO_MANY_CONTEXTS);
    CHECK_EQ(e.limit, 3);
    CHECK_EQ(sq_ctx_count(m), 3);

    /* A change that would pass the size limit is refused, and changes
     * nothing. */
    uint64_t v;
    EXPECT(update(m, "c1", SQ_CTX_MERGE, big, 0, &v, &e), -EFBIG);
    CHECK_EQ(e.code, SQ_CTX_TOO_LARGE);
    CHECK(doc_is(m, "c1", 1, "{}"));

    CHECK_EQ(sq_ctx_snapshot(m, "c1", "s1", 0, NULL, &e), 0);
    CHECK_EQ(sq_ctx_snapshot(m, "c1", "s2", 0, NULL, &e), 0);
    CHECK_EQ(sq_ctx_snapshot(m, "c1", "s3", 0, NULL, &e), -ENOSPC);
    CHECK_EQ(e.code, SQ_CTX_TOO_MANY_SNAPSHOTS);
    CHECK_EQ(sq_ctx_snapshot(m, "c1", "s1", 0, NULL, &e), -EEXIST);
    CHECK_EQ(e.code, SQ_CTX_SNAPSHOT_EXISTS);

    /* Deleting makes room. */
    CHECK_EQ(sq_ctx_delete(m, "c2", 0, NULL, &e), 0);
    CHECK_EQ(create(m, "c4", "{}", &e), 0);
    sq_ctx_close(m);
}

/* ------------------------------------------------------------ changes */

MT_TEST(replace_merge_and_json_patch)
{
    sq_ctx_mgr *m = open_mem(NULL);
    sq_ctx_err e;
    uint64_t v = 0;
    CHECK_EQ(create(m, "doc", "{\"a\":1,\"b\":{\"c\":2,\"d\":3}}", &e), 0);

    EXPECT(update(m, "doc", SQ_CTX_REPLACE, "[1,2]", 0, &v, &e), 0);
    CHECK_EQ(v, 2);
    CHECK(doc_is(m, "doc", 2, "[1,2]"));
    EXPECT(update(m, "doc", SQ_CTX_REPLACE, "{\"a\":1,\"b\":{\"c\":2,\"d\":3}}", 0, &v, &e), 0);
    CHECK_EQ(v, 3);

    /* RFC 7396: null removes, objects merge, anything else replaces. */
    EXPECT(update(m, "doc", SQ_CTX_MERGE, "{\"a\":null,\"b\":{\"c\":5},\"e\":[1]}", 0, &v, &e), 0);
    CHECK_EQ(v, 4);
    CHECK(doc_is(m, "doc", 4, "{\"b\":{\"c\":5,\"d\":3},\"e\":[1]}"));

    /* RFC 6902, every operation, test included. */
    EXPECT(update(m, "doc", SQ_CTX_JSON_PATCH,
                    "[{\"op\":\"test\",\"path\":\"/b/c\",\"value\":5},"
                    "{\"op\":\"add\",\"path\":\"/e/-\",\"value\":2},"
                    "{\"op\":\"replace\",\"path\":\"/b/d\",\"value\":\"x\"},"
                    "{\"op\":\"move\",\"from\":\"/b/c\",\"path\":\"/c\"},"
                    "{\"op\":\"copy\",\"from\":\"/e\",\"path\":\"/f\"},"
                    "{\"op\":\"remove\",\"path\":\"/e/0\"},"
                    "{\"op\":\"add\",\"path\":\"/a~1b\",\"value\":true}]",
                    0, &v, &e), 0);
    CHECK_EQ(v, 5);
    CHECK(doc_is(m, "doc", 5, "{\"a/b\":true,\"b\":{\"d\":\"x\"},\"c\":5,\"e\":[2],\"f\":[1,2]}"));

    /* A failing test, a missing path, a malformed patch: each changes
     * nothing, even when operations before it succeeded. */
    EXPECT(update(m, "doc", SQ_CTX_JSON_PATCH,
                    "[{\"op\":\"add\",\"path\":\"/z\",\"value\":1},"
                    "{\"op\":\"test\",\"path\":\"/c\",\"value\":6}]", 0, &v, &e), -EDOM);
    CHECK_EQ(e.code, SQ_CTX_TEST_FAILED);
    CHECK_EQ(e.op, 1);
    CHECK_STR(sq_ctx_code_name(e.code), "test_failed");
    EXPECT(update(m, "doc", SQ_CTX_JSON_PATCH,
                    "[{\"op\":\"add\",\"path\":\"/z\",\"value\":1},"
                    "{\"op\":\"remove\",\"path\":\"/nothere\"}]", 0, &v, &e), -ENOENT);
    CHECK_EQ(e.code, SQ_CTX_PATCH_FAILED);
    CHECK_EQ(e.op, 1);
    EXPECT(update(m, "doc", SQ_CTX_JSON_PATCH, "[{\"op\":\"jump\",\"path\":\"/a\"}]", 0, &v,
                    &e), -EINVAL);
    CHECK_EQ(e.code, SQ_CTX_INVALID_PATCH);
    EXPECT(update(m, "doc", SQ_CTX_JSON_PATCH, "{\"op\":\"add\"}", 0, &v, &e), -EINVAL);
    CHECK_EQ(e.code, SQ_CTX_INVALID_PATCH);
    CHECK(doc_is(m, "doc", 5, "{\"a/b\":true,\"b\":{\"d\":\"x\"},\"c\":5,\"e\":[2],\"f\":[1,2]}"));

    EXPECT(update(m, "nosuch", SQ_CTX_MERGE, "{}", 0, &v, &e), -ENOENT);
    CHECK_EQ(e.code, SQ_CTX_NOT_FOUND);
    sq_ctx_close(m);
}

MT_TEST(compare_and_set)
{
    sq_ctx_mgr *m = open_mem(NULL);
    sq_ctx_err e;
    uint64_t v = 0;
    CHECK_EQ(create(m, "cas", "{\"n\":0}", &e), 0);
    EXPECT(update(m, "cas", SQ_CTX_MERGE, "{\"n\":1}", 1, &v, &e), 0);
    CHECK_EQ(v, 2);
    /* Expecting an old version: nothing changes, the error names the
     * current one. */
    EXPECT(update(m, "cas", SQ_CTX_MERGE, "{\"n\":99}", 1, &v, &e), -ESTALE);
    CHECK_EQ(e.code, SQ_CTX_VERSION_MISMATCH);
    CHECK_EQ(e.current_version, 2);
    CHECK_STR(sq_ctx_code_name(e.code), "version_mismatch");
    EXPECT(update(m, "cas", SQ_CTX_REPLACE, "{\"n\":99}", 7, &v, &e), -ESTALE);
    CHECK_EQ(e.current_version, 2);
    CHECK(doc_is(m, "cas", 2, "{\"n\":1}"));
    CHECK_EQ(sq_ctx_delete(m, "cas", 1, NULL, &e), -ESTALE);
    CHECK_EQ(e.current_version, 2);
    CHECK_EQ(sq_ctx_restore(m, "cas", "nosnap", 0, 0, NULL, &v, &e), -ENOENT);
    CHECK_EQ(e.code, SQ_CTX_SNAPSHOT_NOT_FOUND);
    uint64_t last = 0;
    CHECK_EQ(sq_ctx_delete(m, "cas", 2, &last, &e), 0);
    CHECK_EQ(last, 2);
    sq_ctx_close(m);
}

/* Many tasks changing the same contexts: each change applies to the
 * newest version (nothing lost), versions rise by one per change. */
typedef struct inc_arg {
    sq_ctx_mgr *m;
    int index;
} inc_arg;

static void *incrementer(void *arg)
{
    inc_arg *a = arg;
    char id[16];
    snprintf(id, sizeof id, "k%d", a->index % 4);
    for (int k = 0; k < 25; k++) {
        /* A JSON Patch computed without the lock: it depends on nothing
         * but is applied to the newest version each time. */
        json_t *p = J("[{\"op\":\"add\",\"path\":\"/log/-\",\"value\":1}]");
        sq_ctx_change c = {.id = id, .kind = SQ_CTX_JSON_PATCH, .patch = p};
        sq_ctx_err e;
        CHECK_EQ(sq_ctx_update(a->m, &c, NULL, &e), 0);
        json_decref(p);
    }
    return NULL;
}

MT_TEST(concurrent_changes_lose_nothing)
{
    sq_ctx_mgr *m = open_mem(NULL);
    sq_ctx_err e;
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "k%d", i);
        CHECK_EQ(create(m, id, "{\"log\":[]}", &e), 0);
    }
    enum { T = 32 };
    inc_arg a[T];
    sq_task t[T];
    for (int i = 0; i < T; i++) {
        a[i] = (inc_arg){m, i};
        CHECK_EQ(sq_spawn(&t[i], incrementer, &a[i], NULL), 0);
    }
    for (int i = 0; i < T; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "k%d", i);
        json_t *doc;
        uint64_t v;
        CHECK_EQ(sq_ctx_peek(m, id, &doc, &v), 0);
        CHECK_EQ(json_array_size(json_object_get(doc, "log")), T / 4 * 25);
        CHECK_EQ(v, T / 4 * 25 + 1);
        json_decref(doc);
    }
    sq_ctx_stats st;
    sq_ctx_stats_get(m, &st);
    CHECK_EQ(st.changes, 4 + T * 25);
    CHECK(st.commits <= st.changes);
    sq_ctx_close(m);
}

/* ------------------------------------------------- snapshots, restore */

MT_TEST(snapshots_and_recovery_points)
{
    sq_ctx_opts o = {.recovery_every = 5, .recovery_keep = 3};
    sq_ctx_mgr *m = open_mem(&o);
    sq_ctx_err e;
    uint64_t v = 0, taken = 0;
    CHECK_EQ(create(m, "s", "{\"n\":1}", &e), 0);
    CHECK_EQ(sq_ctx_snapshot(m, "s", "first", 0, &taken, &e), 0);
    CHECK_EQ(taken, 1);
    CHECK_EQ(sq_ctx_snapshot(m, "s", "bad/name", 0, NULL, &e), -EINVAL);
    for (int n = 2; n <= 23; n++) {
        char p[32];
        snprintf(p, sizeof p, "{\"n\":%d}", n);
        EXPECT(update(m, "s", SQ_CTX_REPLACE, p, 0, &v, &e), 0);
        CHECK_EQ(v, (uint64_t)n);
    }
    /* An older version, still in the history, can be named too. */
    CHECK_EQ(sq_ctx_snapshot(m, "s", "at7", 7, &taken, &e), 0);
    CHECK_EQ(taken, 7);
    CHECK_EQ(sq_ctx_snapshot(m, "s", "later", 99, NULL, &e), -ENODATA);
    CHECK_EQ(e.code, SQ_CTX_VERSION_UNAVAILABLE);

    /* Snapshots are immutable copies: read back as they were. */
    sq_ctx_info i;
    CHECK_EQ(sq_ctx_get_mark(m, "s", "first", 0, &i, &e), 0);
    char *t = dump(i.document);
    CHECK_JSON(t, "{\"n\":1}");
    CHECK_EQ(i.version, 1);
    free(t);
    sq_ctx_info_clear(&i);
    CHECK_EQ(sq_ctx_get_mark(m, "s", "none", 0, &i, &e), -ENOENT);
    CHECK_EQ(e.code, SQ_CTX_SNAPSHOT_NOT_FOUND);

    /* Automatic recovery points every 5 versions, the last 3 kept (5, 10,
     * 15, 20: 5 went). */
    json_t *snaps, *rps;
    CHECK_EQ(sq_ctx_marks(m, "s", &snaps, &rps, &e), 0);
    CHECK_EQ(json_array_size(snaps), 2);
    CHECK_STR(json_string_value(json_object_get(json_array_get(snaps, 0), "name")), "at7");
    CHECK_STR(json_string_value(json_object_get(json_array_get(snaps, 1), "name")), "first");
    CHECK_EQ(json_array_size(rps), 3);
    for (size_t k = 0; k < 3; k++) {
        json_t *rp = json_array_get(rps, k);
        CHECK_EQ(json_integer_value(json_object_get(rp, "version")), (json_int_t)(10 + 5 * k));
        CHECK_STR(json_string_value(json_object_get(rp, "reason")), "auto");
    }
    json_decref(snaps);
    json_decref(rps);
    CHECK_EQ(sq_ctx_get_mark(m, "s", NULL, 5, &i, &e), -ENOENT);
    CHECK_EQ(e.code, SQ_CTX_RECOVERY_POINT_NOT_FOUND);
    CHECK_EQ(sq_ctx_get_mark(m, "s", NULL, 15, &i, &e), 0);
    t = dump(i.document);
    CHECK_JSON(t, "{\"n\":15}");
    free(t);
    sq_ctx_info_clear(&i);

    /* On demand: one of the newest version (23), pushing out 10. */
    uint64_t rpv = 0;
    CHECK_EQ(sq_ctx_recovery_point(m, "s", &rpv, &e), 0);
    CHECK_EQ(rpv, 23);
    CHECK_EQ(sq_ctx_marks(m, "s", NULL, &rps, &e), 0);
    CHECK_EQ(json_array_size(rps), 3);
    CHECK_EQ(json_integer_value(json_object_get(json_array_get(rps, 0), "version")), 15);
    CHECK_STR(json_string_value(json_object_get(json_array_get(rps, 2), "reason")), "manual");
    json_decref(rps);

    /* A restore is a new version; history is not rewritten. */
    CHECK_EQ(sq_ctx_restore(m, "s", "first", 0, 0, "test", &v, &e), 0);
    CHECK_EQ(v, 24);
    CHECK(doc_is(m, "s", 24, "{\"n\":1}"));
    CHECK_EQ(sq_ctx_restore(m, "s", NULL, 20, 24, "test", &v, &e), 0);
    CHECK_EQ(v, 25);
    CHECK(doc_is(m, "s", 25, "{\"n\":20}"));
    CHECK_EQ(sq_ctx_restore(m, "s", NULL, 20, 24, "test", &v, &e), -ESTALE);
    CHECK_EQ(e.current_version, 25);
    CHECK_EQ(sq_ctx_restore(m, "s", NULL, 4, 0, "test", &v, &e), -ENOENT);
    CHECK_EQ(e.code, SQ_CTX_RECOVERY_POINT_NOT_FOUND);
    CHECK_EQ(sq_ctx_get(m, "s", 23, &i, &e), 0);
    t = dump(i.document);
    CHECK_JSON(t, "{\"n\":23}");
    free(t);
    CHECK_EQ(i.kind, SQ_CTX_REPLACE);
    sq_ctx_info_clear(&i);
    CHECK_EQ(sq_ctx_get(m, "s", 24, &i, &e), 0);
    CHECK_EQ(i.kind, SQ_CTX_RESTORE);
    sq_ctx_info_clear(&i);
    sq_ctx_close(m);
}

/* ------------------------------------------------------ history, diff */

MT_TEST(history_depth_and_diff)
{
    sq_ctx_opts o = {.history_depth = 10};
    sq_ctx_mgr *m = open_mem(&o);
    sq_ctx_err e;
    uint64_t v;
    CHECK_EQ(create(m, "h", "{\"n\":1,\"keep\":\"x\"}", &e), 0);
    for (int n = 2; n <= 30; n++) {
        char p[32];
        snprintf(p, sizeof p, "{\"n\":%d}", n);
        EXPECT(update(m, "h", SQ_CTX_MERGE, p, 0, &v, &e), 0);
    }
    /* Versions 21..30 are kept, newest first, in pages. */
    json_t *entries;
    uint64_t next = 0, before = 0, want = 30;
    int pages = 0;
    do {
        CHECK_EQ(sq_ctx_history(m, "h", before, 4, &entries, &next, &e), 0);
        size_t k;
        json_t *it;
        json_array_foreach(entries, k, it) {
            CHECK_EQ(json_integer_value(json_object_get(it, "version")), (json_int_t)want);
            CHECK_STR(json_string_value(json_object_get(it, "kind")), "merge");
            CHECK_STR(json_string_value(json_object_get(it, "by")), "test");
            CHECK(json_object_get(it, "at") != NULL);
            want--;
        }
        json_decref(entries);
        before = next;
        pages++;
    } while (next && pages < 10);
    CHECK_EQ(want, 20);
    CHECK_EQ(pages, 3);

    sq_ctx_info i;
    CHECK_EQ(sq_ctx_get(m, "h", 25, &i, &e), 0);
    char *t = dump(i.document);
    CHECK_JSON(t, "{\"n\":25,\"keep\":\"x\"}");
    free(t);
    sq_ctx_info_clear(&i);
    CHECK_EQ(sq_ctx_get(m, "h", 5, &i, &e), -ENODATA);
    CHECK_EQ(e.code, SQ_CTX_VERSION_UNAVAILABLE);
    CHECK_EQ(e.current_version, 30);
    CHECK_EQ(e.oldest_version, 21);
    CHECK_EQ(sq_ctx_get(m, "h", 31, &i, &e), -ENODATA);

    /* The difference of two versions is a JSON Patch that takes one to
     * the other. */
    EXPECT(update(m, "h", SQ_CTX_REPLACE, "{\"n\":[1,2],\"new\":{\"a\":null}}", 0, &v, &e), 0);
    json_t *patch;
    CHECK_EQ(sq_ctx_diff(m, "h", 22, 31, &patch, &e), 0);
    sq_ctx_info from, to;
    CHECK_EQ(sq_ctx_get(m, "h", 22, &from, &e), 0);
    CHECK_EQ(sq_ctx_get(m, "h", 31, &to, &e), 0);
    json_t *applied = NULL;
    CHECK_EQ(sq_json_patch_apply(from.document, patch, 0, &applied, NULL), 0);
    CHECK(applied && sq_json_equal(applied, to.document));
    json_decref(applied);
    json_decref(patch);
    CHECK_EQ(sq_ctx_diff(m, "h", 31, 31, &patch, &e), 0);
    CHECK_EQ(json_array_size(patch), 0);
    json_decref(patch);
    CHECK_EQ(sq_ctx_diff(m, "h", 2, 31, &patch, &e), -ENODATA);
    sq_ctx_info_clear(&from);
    sq_ctx_info_clear(&to);
    sq_ctx_close(m);
}

/* ------------------------------------------------------- delete, list */

MT_TEST(delete_and_list)
{
    sq_ctx_mgr *m = open_mem(NULL);
    sq_ctx_err e;
    const char *ids[] = {"b-1", "a-2", "a-1", "b-2", "a-3", "c", "a-4"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        CHECK_EQ(create(m, ids[i], "{}", &e), 0);
    CHECK_EQ(sq_ctx_delete(m, "a-3", 0, NULL, &e), 0);
    CHECK_EQ(sq_ctx_delete(m, "a-3", 0, NULL, &e), -ENOENT);
    CHECK_EQ(e.code, SQ_CTX_NOT_FOUND);
    json_t *doc;
    uint64_t v;
    CHECK_EQ(sq_ctx_peek(m, "a-3", &doc, &v), -ENOENT);

    /* Pages of two, prefix "a-", in id order, until no cursor. */
    char *after = NULL, got[128] = "";
    int pages = 0;
    for (;;) {
        json_t *items;
        char *next = NULL;
        CHECK_EQ(sq_ctx_list(m, "a-", after, 2, &items, &next, &e), 0);
        size_t k;
        json_t *it;
        json_array_foreach(items, k, it) {
            strcat(got, json_string_value(json_object_get(it, "id")));
            strcat(got, " ");
            CHECK_EQ(json_integer_value(json_object_get(it, "version")), 1);
        }
        CHECK(json_array_size(items) <= 2);
        json_decref(items);
        free(after);
        after = next;
        if (++pages > 5 || !after)
            break;
    }
    CHECK_STR(got, "a-1 a-2 a-4 ");
    CHECK(pages == 2 || pages == 3);
    json_t *items;
    char *next;
    CHECK_EQ(sq_ctx_list(m, NULL, NULL, 100, &items, &next, &e), 0);
    CHECK_EQ(json_array_size(items), 6);
    CHECK(next == NULL);
    json_decref(items);
    CHECK_EQ(sq_ctx_list(m, "zz", NULL, 100, &items, &next, &e), 0);
    CHECK_EQ(json_array_size(items), 0);
    json_decref(items);

    /* A deleted id can be created again, from version 1. */
    CHECK_EQ(create(m, "a-3", "{\"again\":true}", &e), 0);
    CHECK(doc_is(m, "a-3", 1, "{\"again\":true}"));
    CHECK_EQ(sq_ctx_count(m), 7);
    sq_ctx_close(m);
}

/* ------------------------------------------------------------ listeners */

MT_TEST(listeners_get_every_version_in_order)
{
    sq_ctx_mgr *m = open_mem(NULL);
    sq_ctx_err e;
    CHECK_EQ(create(m, "l", "{\"n\":0}", &e), 0);
    sq_ctx_listener *a, *b;
    uint64_t sa, sb;
    CHECK_EQ(sq_ctx_listen(m, "l", &(sq_ctx_listen_opts){.capacity = 256}, &a, &sa, &e), 0);
    CHECK_EQ(sq_ctx_listen(m, "l", &(sq_ctx_listen_opts){.capacity = 256}, &b, &sb, &e), 0);
    CHECK_EQ(sa, 1);
    CHECK_EQ(sb, 1);
    for (int n = 1; n <= 100; n++) {
        char p[32];
        snprintf(p, sizeof p, "{\"n\":%d}", n);
        EXPECT(update(m, "l", SQ_CTX_MERGE, p, 0, NULL, &e), 0);
    }
    CHECK_EQ(sq_ctx_delete(m, "l", 0, NULL, &e), 0);
    sq_ctx_listener *ls[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        uint64_t want = 2, v;
        bool deleted = false;
        while (!deleted) {
            CHECK_EQ(sq_ctx_next(ls[k], sq_now() + MT_WAIT, &v, &deleted), 0);
            if (!deleted) {
                CHECK_EQ(v, want);
                want++;
            }
        }
        CHECK_EQ(want, 102);
        CHECK_EQ(sq_ctx_listener_dropped(ls[k]), 0);
        sq_ctx_unlisten(ls[k]);
    }
    sq_ctx_close(m);
}

/* The full-queue policies: a listener that takes nothing loses the oldest
 * notifications (counted) or is disconnected; the changes go on at full
 * speed and the other listener gets everything. */
MT_TEST(stalled_listener_does_not_hold_back_others)
{
    sq_ctx_mgr *m = open_mem(NULL);
    sq_ctx_err e;
    CHECK_EQ(create(m, "q", "{\"n\":0}", &e), 0);
    sq_ctx_listener *fast, *drop, *cut;
    CHECK_EQ(sq_ctx_listen(m, "q", &(sq_ctx_listen_opts){.capacity = 1000}, &fast, NULL, &e), 0);
    CHECK_EQ(sq_ctx_listen(m, "q", &(sq_ctx_listen_opts){.capacity = 8}, &drop, NULL, &e), 0);
    CHECK_EQ(sq_ctx_listen(m, "q", &(sq_ctx_listen_opts){.capacity = 8,
                                                          .disconnect_when_full = true},
                           &cut, NULL, &e), 0);
    enum { N = 200 };
    for (int n = 1; n <= N; n++) {
        char p[32];
        snprintf(p, sizeof p, "{\"n\":%d}", n);
        EXPECT(update(m, "q", SQ_CTX_MERGE, p, 0, NULL, &e), 0);
    }
    uint64_t v, want = 2;
    bool deleted;
    for (int n = 0; n < N; n++) {
        CHECK_EQ(sq_ctx_next(fast, sq_now() + MT_WAIT, &v, &deleted), 0);
        CHECK_EQ(v, want++);
    }
    /* Drop-oldest: the newest 8 are there, in order, and the rest were
     * counted as dropped. */
    uint64_t got = 0, last = 0;
    while (sq_ctx_next(drop, 0, &v, &deleted) == 0) {
        CHECK(v > last);
        last = v;
        got++;
    }
    CHECK_EQ(got, 8);
    CHECK_EQ(last, N + 1);
    CHECK_EQ(sq_ctx_listener_dropped(drop), N - 8);
    /* Disconnect: what was queued, then -ECONNRESET. */
    got = 0;
    int rc;
    while ((rc = sq_ctx_next(cut, 0, &v, &deleted)) == 0)
        got++;
    CHECK(got <= 8);
    CHECK_EQ(rc, -ECONNRESET);
    sq_ctx_unlisten(fast);
    sq_ctx_unlisten(drop);
    sq_ctx_unlisten(cut);
    sq_ctx_close(m);
}

/* ------------------------------------------------- the store on disk */

MT_TEST(sqlite_store_survives_reopening)
{
    char dir[64], spec[128];
    tmp_dir(dir, sizeof dir);
    snprintf(spec, sizeof spec, "sqlite:%s/ctx.db", dir);
    sq_ctx_opts o = {.recovery_every = 3};
    sq_ctx_mgr *m = open_with(spec, &o);
    sq_ctx_err e;
    uint64_t v;
    json_t *d = J("{\"n\":0}"), *meta = J("{\"owner\":\"t\"}");
    CHECK_EQ(sq_ctx_create(m, "p", d, meta, "test", NULL, &e), 0);
    json_decref(d);
    json_decref(meta);
    for (int n = 1; n <= 7; n++) {
        char p[32];
        snprintf(p, sizeof p, "{\"n\":%d}", n);
        EXPECT(update(m, "p", SQ_CTX_MERGE, p, 0, &v, &e), 0);
    }
    CHECK_EQ(sq_ctx_snapshot(m, "p", "snap", 4, NULL, &e), 0);
    CHECK_EQ(create(m, "gone", "1", &e), 0);
    CHECK_EQ(sq_ctx_delete(m, "gone", 0, NULL, &e), 0);
    sq_ctx_info before;
    CHECK_EQ(sq_ctx_get(m, "p", 0, &before, &e), 0);
    sq_ctx_close(m);

    m = open_with(spec, &o);
    CHECK_EQ(sq_ctx_count(m), 1);
    sq_ctx_info i;
    CHECK_EQ(sq_ctx_get(m, "p", 0, &i, &e), 0);
    CHECK_EQ(i.version, 8);
    CHECK(sq_json_equal(i.document, before.document));
    CHECK(sq_json_equal(i.metadata, before.metadata));
    CHECK_EQ(i.created_at, before.created_at);
    CHECK_EQ(i.updated_at, before.updated_at);
    sq_ctx_info_clear(&i);
    sq_ctx_info_clear(&before);
    CHECK_EQ(sq_ctx_get_mark(m, "p", "snap", 0, &i, &e), 0);
    char *t = dump(i.document);
    CHECK_JSON(t, "{\"n\":3}");
    free(t);
    sq_ctx_info_clear(&i);
    json_t *rps;
    CHECK_EQ(sq_ctx_marks(m, "p", NULL, &rps, &e), 0);
    CHECK_EQ(json_array_size(rps), 2); /* 3 and 6 */
    json_decref(rps);
    CHECK_EQ(sq_ctx_get(m, "p", 2, &i, &e), 0);
    t = dump(i.document);
    CHECK_JSON(t, "{\"n\":1}");
    free(t);
    sq_ctx_info_clear(&i);
    /* And it goes on from there, without a gap. */
    EXPECT(update(m, "p", SQ_CTX_MERGE, "{\"n\":8}", 8, &v, &e), 0);
    CHECK_EQ(v, 9);
    CHECK_EQ(sq_ctx_peek(m, "gone", &d, &v), -ENOENT);
    sq_ctx_close(m);
    rm_dir(dir);
}

/* The file's bytes, to check that a refused file was left as it was. */
static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 20);
    *n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static int open_fails(const char *spec, char *err, size_t n)
{
    sq_ctx_mgr *m = NULL;
    int rc = sq_ctx_open(&m, &(sq_ctx_opts){.store = spec}, err, n);
    if (rc == 0)
        sq_ctx_close(m);
    return rc;
}

MT_TEST(corrupt_or_newer_store_is_refused)
{
    char dir[64], path[128], spec[140], err[512];
    tmp_dir(dir, sizeof dir);

    /* Not a database at all. */
    snprintf(path, sizeof path, "%s/garbage.db", dir);
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 512; i++)
        fputs("this is not a database ", f);
    fclose(f);
    size_t n0 = 0, n1 = 0;
    char *b0 = slurp(path, &n0);
    snprintf(spec, sizeof spec, "sqlite:%s", path);
    err[0] = '\0';
    int rc = open_fails(spec, err, sizeof err);
    CHECK(rc == -EIO || rc == -EPROTO);
    CHECK(strstr(err, path) != NULL);
    char *b1 = slurp(path, &n1);
    CHECK(n0 == n1 && memcmp(b0, b1, n0) == 0);
    free(b0);
    free(b1);

    /* A store written by a newer squirreld. */
    snprintf(path, sizeof path, "%s/newer.db", dir);
    snprintf(spec, sizeof spec, "sqlite:%s", path);
    sq_ctx_mgr *m = open_with(spec, NULL);
    sq_ctx_err e;
    CHECK_EQ(create(m, "x", "{}", &e), 0);
    sq_ctx_close(m);
    sqlite3 *db;
    CHECK_EQ(sqlite3_open(path, &db), SQLITE_OK);
    rc = sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL);
    CHECK_EQ(rc, SQLITE_OK);
    sqlite3_close(db);
    rc = open_fails(spec, err, sizeof err);
    CHECK_EQ(rc, -EPROTO);
    CHECK(strstr(err, "newer") != NULL);
    CHECK(strstr(err, "99") != NULL);

    /* Another program's SQLite file. */
    snprintf(path, sizeof path, "%s/other.db", dir);
    snprintf(spec, sizeof spec, "sqlite:%s", path);
    CHECK_EQ(sqlite3_open(path, &db), SQLITE_OK);
    rc = sqlite3_exec(db, "CREATE TABLE t(a); INSERT INTO t VALUES (1)", NULL, NULL, NULL);
    CHECK_EQ(rc, SQLITE_OK);
    sqlite3_close(db);
    rc = open_fails(spec, err, sizeof err);
    CHECK_EQ(rc, -EPROTO);
    CHECK(strstr(err, path) != NULL);
    CHECK_EQ(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *s;
    rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_schema", -1, &s, NULL);
    CHECK_EQ(rc, SQLITE_OK);
    CHECK_EQ(sqlite3_step(s), SQLITE_ROW);
    CHECK_EQ(sqlite3_column_int(s, 0), 1); /* nothing was added */
    sqlite3_finalize(s);
    sqlite3_close(db);

    CHECK_EQ(open_fails("nosuchkind:x", err, sizeof err), -EINVAL);
    rm_dir(dir);
}
