/* JSON-RPC messages: classification, ids written back exactly as sent,
 * the standard errors, and single-line output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_proto/jsonrpc.h"
#include "testlib.h"

static sq_rpc_parsed parse(const char *text, int want_rc)
{
    sq_rpc_parsed p;
    int rc = sq_rpc_parse(text, strlen(text), &p);
    CHECK_EQ(rc, want_rc);
    return p;
}

static void check_result_line(const char *raw_id, const char *want)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    json_t *r = json_pack("{s:i}", "x", 1);
    sq_rpc_write_result(&b, raw_id, r);
    json_decref(r);
    if (strcmp(sq__strbuf_str(&b), want) != 0) {
        fprintf(stderr, "got  %s\nwant %s\n", sq__strbuf_str(&b), want);
        CHECK(!"result line differs");
    }
    sq__strbuf_free(&b);
}

TEST(ids_are_written_back_byte_for_byte)
{
    const char *ids[] = {
        "7", "\"abc\"", "\"a\\u0062c\"", "9007199254740993",
        "-9223372036854775808", "1700000000000", "\"\\n\\\"\"", "0",
    };
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        char text[256], want[256];
        snprintf(text, sizeof text,
                 "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":%s}", ids[i]);
        sq_rpc_parsed p = parse(text, 0);
        CHECK_EQ(p.n, 1);
        CHECK_EQ(p.msgs[0].kind, SQ_RPC_REQUEST);
        CHECK(p.msgs[0].id && strcmp(p.msgs[0].id, ids[i]) == 0);
        snprintf(want, sizeof want,
                 "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"x\":1}}", ids[i]);
        check_result_line(p.msgs[0].id, want);
        sq_rpc_parsed_free(&p);
    }
}

TEST(the_id_is_found_whatever_its_place_and_spelling)
{
    sq_rpc_parsed p = parse("{ \"params\" : {\"id\": 5, \"x\": [1, {\"id\": 6}]},"
                            "  \"\\u0069d\"  :  \"real\" , \"method\":\"m\","
                            " \"jsonrpc\":\"2.0\"}", 0);
    CHECK_EQ(p.msgs[0].kind, SQ_RPC_REQUEST);
    CHECK(p.msgs[0].id && strcmp(p.msgs[0].id, "\"real\"") == 0);
    CHECK(strcmp(p.msgs[0].method, "m") == 0);
    CHECK(json_is_object(p.msgs[0].params));
    sq_rpc_parsed_free(&p);
}

TEST(kinds_are_told_apart)
{
    sq_rpc_parsed p = parse("{\"jsonrpc\":\"2.0\",\"method\":\"n\"}", 0);
    CHECK_EQ(p.msgs[0].kind, SQ_RPC_NOTIFICATION);
    CHECK(p.msgs[0].id == NULL);
    sq_rpc_parsed_free(&p);

    p = parse("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}", 0);
    CHECK_EQ(p.msgs[0].kind, SQ_RPC_RESPONSE);
    CHECK(p.msgs[0].result && !p.msgs[0].error);
    sq_rpc_parsed_free(&p);

    p = parse("{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":1,\"message\":\"x\"}}", 0);
    CHECK_EQ(p.msgs[0].kind, SQ_RPC_RESPONSE);
    CHECK(p.msgs[0].error && !p.msgs[0].result);
    sq_rpc_parsed_free(&p);

    const char *invalid[] = {
        "{\"jsonrpc\":\"1.0\",\"method\":\"m\",\"id\":1}",
        "{\"method\":\"m\",\"id\":1}",
        "{\"jsonrpc\":\"2.0\",\"method\":5,\"id\":1}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":null}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":{}}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":3}",
        "{\"jsonrpc\":\"2.0\",\"id\":1}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":1,\"error\":{}}",
    };
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        p = parse(invalid[i], 0);
        CHECK_EQ(p.msgs[0].kind, SQ_RPC_INVALID);
        CHECK(p.msgs[0].why != NULL);
        sq_rpc_parsed_free(&p);
    }
    /* An invalid message keeps a readable id, for its error. */
    p = parse("{\"jsonrpc\":\"1.0\",\"method\":\"m\",\"id\":\"k\"}", 0);
    CHECK(p.msgs[0].id && strcmp(p.msgs[0].id, "\"k\"") == 0);
    sq_rpc_parsed_free(&p);
}

TEST(parse_errors_and_non_messages)
{
    parse("{\"jsonrpc\":\"2.0\",", SQ_RPC_PARSE_ERROR);
    parse("", SQ_RPC_PARSE_ERROR);
    parse("{\"a\":1,\"a\":2}", SQ_RPC_PARSE_ERROR);          /* duplicate */
    parse("{\"id\":123456789012345678901234567890}", SQ_RPC_PARSE_ERROR);
    parse("\"\xff\"", SQ_RPC_PARSE_ERROR);                  /* not UTF-8 */
    parse("42", SQ_RPC_INVALID_REQUEST);
    parse("null", SQ_RPC_INVALID_REQUEST);
}

TEST(batches_keep_each_element_and_its_id)
{
    sq_rpc_parsed p = parse("[ {\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":\"x\"} ,"
                            "  7, {\"jsonrpc\":\"2.0\",\"method\":\"b\"},"
                            "  {\"jsonrpc\":\"2.0\",\"method\":\"c\",\"id\":[1,\"]\"]},"
                            "  {\"jsonrpc\":\"2.0\",\"method\":\"d\",\"id\":99} ]", 0);
    CHECK(p.batch);
    CHECK_EQ(p.n, 5);
    CHECK_EQ(p.msgs[0].kind, SQ_RPC_REQUEST);
    CHECK(strcmp(p.msgs[0].id, "\"x\"") == 0);
    CHECK_EQ(p.msgs[1].kind, SQ_RPC_INVALID);
    CHECK_EQ(p.msgs[2].kind, SQ_RPC_NOTIFICATION);
    CHECK_EQ(p.msgs[3].kind, SQ_RPC_INVALID);
    CHECK(p.msgs[3].id == NULL);
    CHECK_EQ(p.msgs[4].kind, SQ_RPC_REQUEST);
    CHECK(strcmp(p.msgs[4].id, "99") == 0);
    sq_rpc_parsed_free(&p);

    p = parse(" [ ] ", 0);
    CHECK(p.batch);
    CHECK_EQ(p.n, 0);
    sq_rpc_parsed_free(&p);
}

TEST(errors_and_notifications_are_single_lines)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    json_t *data = json_pack("{s:s}", "why", "line\nbreak");
    sq_rpc_write_error(&b, NULL, SQ_RPC_PARSE_ERROR, "Parse error:\n bad", data);
    CHECK(strcmp(sq__strbuf_str(&b),
                 "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,"
                 "\"message\":\"Parse error:\\n bad\",\"data\":{\"why\":"
                 "\"line\\nbreak\"}}}") == 0);
    sq__strbuf_reset(&b);
    sq_rpc_write_notification(&b, "notifications/progress", data);
    CHECK(strchr(sq__strbuf_str(&b), '\n') == NULL);
    CHECK(strstr(sq__strbuf_str(&b), "\"method\":\"notifications/progress\"") != NULL);
    CHECK(strstr(sq__strbuf_str(&b), "\"id\"") == NULL);
    sq__strbuf_reset(&b);
    sq_rpc_write_request(&b, "\"s-1\"", "ping", NULL);
    CHECK(strcmp(sq__strbuf_str(&b),
                 "{\"jsonrpc\":\"2.0\",\"id\":\"s-1\",\"method\":\"ping\"}") == 0);
    json_decref(data);
    sq__strbuf_free(&b);
}

/* ------------------------------------------------------ the _meta cache */

#define META "{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"," \
             "\"io.modelcontextprotocol/clientCapabilities\":{}}"

/* Parses text with and without the cache (warmed first by a message with
 * META); the two must agree: the same code and equal messages. */
static void same_with_cache(const char *text, bool want_hit)
{
    sq_rpc_meta_cache c = {0};
    sq_rpc_parsed w;
    const char *warm = "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"x\",\"params\":{\"_meta\":" META "}}";
    CHECK_EQ(sq_rpc_parse_cached(warm, strlen(warm), &c, &w), 0);
    CHECK_EQ(c.n, 1);
    sq_rpc_parsed_free(&w);
    size_t hits = c.hits;
    sq_rpc_parsed a, b;
    int ra = sq_rpc_parse(text, strlen(text), &a);
    int rb = sq_rpc_parse_cached(text, strlen(text), &c, &b);
    if (ra != rb)
        fprintf(stderr, "differs on %s: %d vs %d\n", text, ra, rb);
    CHECK_EQ(ra, rb);
    if (ra == 0) {
        CHECK_EQ(a.n, b.n);
        for (size_t i = 0; i < a.n && i < b.n; i++) {
            CHECK(json_equal(a.msgs[i].json, b.msgs[i].json));
            CHECK_EQ(a.msgs[i].kind, b.msgs[i].kind);
            CHECK((a.msgs[i].id == NULL) == (b.msgs[i].id == NULL));
            if (a.msgs[i].id && b.msgs[i].id)
                CHECK(strcmp(a.msgs[i].id, b.msgs[i].id) == 0);
        }
        /* A hit shares the cached object. */
        json_t *m = b.n == 1 ? json_object_get(b.msgs[0].params, "_meta") : NULL;
        if ((c.hits == hits + 1) != want_hit)
            fprintf(stderr, "hit or miss wrong on %s\n", text);
        CHECK_EQ(c.hits == hits + 1, want_hit);
        CHECK(!want_hit || m == c.e[0].value);
        sq_rpc_parsed_free(&a);
        sq_rpc_parsed_free(&b);
    } else {
        CHECK(!want_hit);
    }
    sq_rpc_meta_cache_clear(&c);
}

TEST(the_meta_cache_changes_nothing_but_the_work)
{
    /* Hits: the same envelope, wherever it sits in params. */
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":"
                    "{\"name\":\"echo\",\"arguments\":{\"t\":\"x\"},\"_meta\":" META "}}", true);
    same_with_cache("{\"params\":{\"_meta\":" META ",\"name\":\"e\"},\"jsonrpc\":\"2.0\","
                    "\"id\":\"a\",\"method\":\"m\"}", true);
    same_with_cache(" { \"jsonrpc\" : \"2.0\" , \"id\" : 1 , \"method\" : \"m\" , \"params\" : "
                    "{ \"_meta\" : " META " } } ", true);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":"
                    "{\"a\":1 , \"_meta\":" META "\t,\n\"b\":[2]}}", true);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":"
                    "{\"a\":true,\"_meta\":" META "}}", true);
    /* Misses that parse: another envelope, a key spelled with escapes,
     * the envelope's text inside a string or in another member. */
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"_meta\":{}}}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"\\u005fmeta\":" META "}}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"s\":\"\\\"_meta\\\":" "x\"}}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"a\":{\"_meta\":" META "}}}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"_meta\":" META "}", false);
    same_with_cache("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"_meta\":" META "}}]", false);
    /* Refused either way: duplicates, trailing bytes, bad values after the
     * envelope, a number glued to it, truncation. */
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"_meta\":" META ",\"_meta\":" META "}}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"_meta\":" META "}}x", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"_meta\":" META ",\"b\":tru}}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"_meta\":" META "5}}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"_meta\":" META, false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"x\":\"" "\"_meta\":" META "}}", false);
    /* Separators around a removed member: missing, doubled, trailing. */
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"_meta\":" META " \"b\":1}}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"_meta\":" META ",}}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"_meta\":" META ",,\"b\":1}}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"a\":1,\"_meta\":" META ",}}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"a\":1,,\"_meta\":" META "}}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"a\":1 \"_meta\":" META "}}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"a\":1\"_meta\":" META "}}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"a\":1,\"_meta\":" META "]}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"a\":1,\"_meta\":" META "}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"a\":1,\"_meta\":" META, false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"a\":1,\"_meta\":" META ",\"\\u005fmeta\":1}}", false);
    same_with_cache("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"a\":1,\"_meta\":" META "}} {}", false);
}

/* A body of params._meta `meta`, parsed with c: whether it was a hit, and
 * its params._meta (borrowed from *p, which the caller frees). */
static bool parse_with(sq_rpc_meta_cache *c, const char *meta, sq_rpc_parsed *p)
{
    size_t size = strlen(meta) + 100;
    char *text = malloc(size);
    snprintf(text, size, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":"
                         "{\"name\":\"n\",\"_meta\":%s}}", meta);
    size_t hits = c->hits;
    CHECK_EQ(sq_rpc_parse_cached(text, strlen(text), c, p), 0);
    json_t *want = json_loads(meta, 0, NULL);
    CHECK(json_equal(json_object_get(p->msgs[0].params, "_meta"), want));
    json_decref(want);
    free(text);
    return c->hits == hits + 1;
}

TEST(the_meta_cache_keeps_its_first_envelopes_and_shares_them)
{
    sq_rpc_meta_cache c = {0};
    sq_rpc_parsed p[SQ_RPC_META_CACHE_N + 1], q;
    char metas[SQ_RPC_META_CACHE_N + 1][64];
    /* Distinct envelopes: the first N become entries, the next does not. */
    for (int i = 0; i <= SQ_RPC_META_CACHE_N; i++) {
        snprintf(metas[i], sizeof metas[i], "{\"io.modelcontextprotocol/logLevel\":\"l%d\"}", i);
        CHECK(!parse_with(&c, metas[i], &p[i]));
        CHECK_EQ(c.n, (size_t)(i < SQ_RPC_META_CACHE_N ? i + 1 : SQ_RPC_META_CACHE_N));
    }
    /* Each kept one hits, in any order, and its message shares the entry's
     * object, which is the first message's own (one object, three holders:
     * the cache and two messages). */
    for (int i = SQ_RPC_META_CACHE_N - 1; i >= 0; i--) {
        CHECK(parse_with(&c, metas[i], &q));
        json_t *m = json_object_get(q.msgs[0].params, "_meta");
        CHECK(m == c.e[i].value);
        CHECK(m == json_object_get(p[i].msgs[0].params, "_meta"));
        CHECK_EQ(m->refcount, 3);
        sq_rpc_parsed_free(&q);
    }
    /* The one that found no room is still parsed whole, every time. */
    CHECK(!parse_with(&c, metas[SQ_RPC_META_CACHE_N], &q));
    sq_rpc_parsed_free(&q);
    /* Clearing drops the cache's references only: the messages keep theirs. */
    json_t *first = json_object_get(p[0].msgs[0].params, "_meta");
    sq_rpc_meta_cache_clear(&c);
    CHECK_EQ(c.n, 0);
    CHECK_EQ(first->refcount, 1);
    for (int i = 0; i <= SQ_RPC_META_CACHE_N; i++)
        sq_rpc_parsed_free(&p[i]);
    /* An envelope longer than SQ_RPC_META_CACHE_MAX is never an entry. */
    size_t big = SQ_RPC_META_CACHE_MAX + 16;
    char *huge = malloc(big + 1);
    memcpy(huge, "{\"k\":\"", 6);
    memset(huge + 6, 'x', big - 8);
    memcpy(huge + big - 2, "\"}", 3);
    CHECK(!parse_with(&c, huge, &q));
    sq_rpc_parsed_free(&q);
    CHECK_EQ(c.n, 0);
    CHECK(!parse_with(&c, huge, &q));
    sq_rpc_parsed_free(&q);
    free(huge);
    sq_rpc_meta_cache_clear(&c);
}
