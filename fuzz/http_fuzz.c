/* Fuzz target: the HTTP request path, from bytes on a connection to the
 * answers (src/proto/http.c, http_head.c with llhttp in strict mode,
 * http_write.c; src/server/http.c: the front door's checks, both eras'
 * POSTs, GET and DELETE, the answers as JSON or SSE).
 *
 * The input is what a client writes on one connection: any number of
 * pipelined requests, heads, chunked or Content-Length bodies, garbage.
 * A fresh server with the conformance fixtures serves it on a socketpair
 * exactly as it serves an accepted connection; the client half-closes
 * once every byte is written and every complete request it sent has had
 * its response (or the server has gone quiet), and reads until the
 * server closes.  What comes back must be well-formed HTTP/1.1 responses
 * (llhttp, strict, in response mode), never more of them than requests. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz.h"
#include "llhttp.h"

/* Pipelined requests beyond what the connection's reader queues (8)
 * would wait behind a streamed answer: not what this target is about. */
#define MAX_REQUESTS 6

typedef struct input {
    const uint8_t *data;
    size_t n;
    size_t expect;
} input;

static int count(llhttp_t *p)
{
    (*(size_t *)p->data)++;
    return 0;
}

static void check_responses(const fz_talk *t, size_t requests)
{
    llhttp_settings_t set;
    llhttp_settings_init(&set);
    set.on_message_complete = count;
    llhttp_t p;
    llhttp_init(&p, HTTP_RESPONSE, &set);
    size_t n = 0;
    p.data = &n;
    llhttp_errno_t e = llhttp_execute(&p, t->got.buf ? t->got.buf : "", t->got.len);
    if (e != HPE_OK && e != HPE_PAUSED_UPGRADE) {
        fprintf(stderr, "http_fuzz: the server wrote malformed HTTP: %s (%s) "
                        "at byte %zu\n",
                llhttp_errno_name(e), llhttp_get_error_reason(&p),
                (size_t)(llhttp_get_error_pos(&p) - t->got.buf));
        abort();
    }
    /* One answer per request, and one more for a request refused before
     * it was whole (400, 408, 413, 431, ...). */
    if (n > requests + 1) {
        fprintf(stderr, "http_fuzz: %zu responses to %zu requests\n", n, requests);
        abort();
    }
}

static void *body(void *arg)
{
    input *in = arg;
    sq_srv *s = fz_server("conformance");
    fz_talk t = {.kind = SQ_LISTEN_HTTP, .expect = in->expect};
    fz_converse(s, &t, in->data, in->n);
    check_responses(&t, in->expect);
    fz_talk_free(&t);
    fz_server_free(s);
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    input in = {data, n, fz_count_requests(data, n)};
    if (in.expect > MAX_REQUESTS)
        return -1; /* not kept in the corpus */
    fz_run(body, &in);
    return 0;
}
