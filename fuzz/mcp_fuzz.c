/* Fuzz target: MCP message handling in both eras, through the server
 * core's dispatch (src/server/stream.c, dispatch.c, methods.c, era.c,
 * mrtr.c, tasks.c, the conformance fixtures' handlers).
 *
 * The input is what a client writes on a newline-delimited JSON-RPC
 * connection (the framing of stdio, TCP and Unix sockets): legacy
 * messages (initialize, then requests of the session) and 2026-07-28
 * ones (each with its _meta envelope) alike, batches too.  A fresh
 * server with the conformance fixtures serves it on a socketpair; the
 * client ends its input after the last byte, the server answers what is
 * in flight and closes.  Everything that comes back must be one JSON
 * object or array per line. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz.h"
#include "sq_proto/jsonrpc.h"

typedef struct input {
    const uint8_t *data;
    size_t n;
} input;

static void check_lines(const fz_talk *t)
{
    if (!t->got.len)
        return;
    const char *p = t->got.buf, *end = p + t->got.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            fprintf(stderr, "mcp_fuzz: the last line has no newline\n");
            abort();
        }
        sq_rpc_parsed m;
        int rc = sq_rpc_parse(p, (size_t)(nl - p), &m);
        if (rc != 0) {
            fprintf(stderr, "mcp_fuzz: the server wrote a line that is not "
                            "a JSON-RPC message (%d): %.*s\n",
                    rc, (int)(nl - p), p);
            abort();
        }
        sq_rpc_parsed_free(&m);
        p = nl + 1;
    }
}

static void *body(void *arg)
{
    input *in = arg;
    sq_srv *s = fz_server("conformance");
    fz_talk t = {.kind = SQ_LISTEN_TCP};
    fz_converse(s, &t, in->data, in->n);
    check_lines(&t);
    fz_talk_free(&t);
    fz_server_free(s);
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    input in = {data, n};
    fz_run(body, &in);
    return 0;
}
