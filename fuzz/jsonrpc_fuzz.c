/* Fuzz target: the proto layer's JSON-RPC parser and writers
 * (src/proto/jsonrpc.c), on their own.
 *
 * Any bytes: sq_rpc_parse returns 0 or one of its documented errors, and
 * for every message it accepts, what the writers make of it parses back
 * as the message it should be, with the id's text written back byte for
 * byte (the id is never re-encoded: a response must match its request
 * exactly).  With the _meta cache (warmed by the input itself, and by the
 * inputs before it) the parse must give the same code and equal messages. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_proto/jsonrpc.h"

#define REQUIRE(cond)                                                        \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "jsonrpc_fuzz: %s:%d: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            abort();                                                         \
        }                                                                    \
    } while (0)

/* text parses as one message of `kind` whose id text is `id`. */
static void reparse(const sq__strbuf *b, enum sq_rpc_kind kind, const char *id)
{
    REQUIRE(!b->failed);
    sq_rpc_parsed p;
    REQUIRE(sq_rpc_parse(b->buf, b->len, &p) == 0);
    REQUIRE(!p.batch && p.n == 1);
    REQUIRE(memchr(b->buf, '\n', b->len) == NULL); /* one line */
    REQUIRE(p.msgs[0].kind == kind);
    if (id)
        REQUIRE(p.msgs[0].id && strcmp(p.msgs[0].id, id) == 0);
    sq_rpc_parsed_free(&p);
}

static void check(const sq_rpc_msg *m)
{
    REQUIRE(m->json);
    switch (m->kind) {
    case SQ_RPC_REQUEST:
    case SQ_RPC_NOTIFICATION:
        REQUIRE(m->method);
        REQUIRE(!m->params || json_is_object(m->params) || json_is_array(m->params));
        break;
    case SQ_RPC_RESPONSE:
        REQUIRE(!m->result != !m->error);
        break;
    case SQ_RPC_INVALID:
        REQUIRE(m->why);
        break;
    }
    /* A request's id comes back on its result and on an error. */
    sq__strbuf b = SQ__STRBUF_INIT;
    if (m->kind == SQ_RPC_REQUEST && m->id) {
        sq_rpc_write_result(&b, m->id, m->params);
        reparse(&b, SQ_RPC_RESPONSE, m->id);
        sq__strbuf_reset(&b);
        sq_rpc_write_error(&b, m->id, SQ_RPC_INVALID_PARAMS, m->method, m->params);
        reparse(&b, SQ_RPC_RESPONSE, m->id);
        sq__strbuf_reset(&b);
        sq_rpc_write_request(&b, m->id, m->method, m->params);
        reparse(&b, SQ_RPC_REQUEST, m->id);
        sq__strbuf_reset(&b);
    }
    if (m->kind == SQ_RPC_INVALID) {
        sq_rpc_write_error(&b, m->id, SQ_RPC_INVALID_REQUEST, m->why, NULL);
        reparse(&b, SQ_RPC_RESPONSE, m->id);
        sq__strbuf_reset(&b);
    }
    if (m->kind == SQ_RPC_NOTIFICATION) {
        sq_rpc_write_notification(&b, m->method, m->params);
        reparse(&b, SQ_RPC_NOTIFICATION, NULL);
        sq__strbuf_reset(&b);
    }
    sq__strbuf_free(&b);
}

/* The cached parse agrees with the plain one (rc and p are its). */
static void same_cached(const uint8_t *data, size_t n, int rc, const sq_rpc_parsed *p)
{
    static sq_rpc_meta_cache cache;
    if (cache.n == SQ_RPC_META_CACHE_N) /* full: room for new envelopes */
        sq_rpc_meta_cache_clear(&cache);
    for (int round = 0; round < 2; round++) { /* the second may hit */
        sq_rpc_parsed q;
        int qc = sq_rpc_parse_cached((const char *)data, n, &cache, &q);
        if (qc == -ENOMEM || rc == -ENOMEM)
            return;
        REQUIRE(qc == rc);
        if (qc != 0)
            continue;
        REQUIRE(q.n == p->n && q.batch == p->batch);
        for (size_t i = 0; i < q.n; i++) {
            REQUIRE(json_equal(q.msgs[i].json, p->msgs[i].json));
            REQUIRE(q.msgs[i].kind == p->msgs[i].kind);
            REQUIRE((q.msgs[i].id == NULL) == (p->msgs[i].id == NULL));
            REQUIRE(!q.msgs[i].id || strcmp(q.msgs[i].id, p->msgs[i].id) == 0);
        }
        sq_rpc_parsed_free(&q);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    sq_rpc_parsed p;
    int rc = sq_rpc_parse((const char *)data, n, &p);
    REQUIRE(rc == 0 || rc == SQ_RPC_PARSE_ERROR || rc == SQ_RPC_INVALID_REQUEST ||
            rc == -ENOMEM);
    same_cached(data, n, rc, &p);
    if (rc != 0)
        return 0;
    REQUIRE(p.batch || p.n == 1);
    for (size_t i = 0; i < p.n; i++)
        check(&p.msgs[i]);
    sq_rpc_parsed_free(&p);
    return 0;
}
