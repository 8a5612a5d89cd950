/* Fuzz target: the proto layer's JSON-RPC parser and writers
 * (src/proto/jsonrpc.c), on their own.
 *
 * Any bytes: sq_rpc_parse returns 0 or one of its documented errors, and
 * for every message it accepts, what the writers make of it parses back
 * as the message it should be, with the id's text written back byte for
 * byte (the id is never re-encoded: a response must match its request
 * exactly). */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    sq_rpc_parsed p;
    int rc = sq_rpc_parse((const char *)data, n, &p);
    REQUIRE(rc == 0 || rc == SQ_RPC_PARSE_ERROR || rc == SQ_RPC_INVALID_REQUEST ||
            rc == -ENOMEM);
    if (rc != 0)
        return 0;
    REQUIRE(p.batch || p.n == 1);
    for (size_t i = 0; i < p.n; i++)
        check(&p.msgs[i]);
    sq_rpc_parsed_free(&p);
    return 0;
}
