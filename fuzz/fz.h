/* The fuzz targets' harness (fuzz/, docs/fuzzing.md).
 *
 * One runtime for the whole fuzzing process (one worker, made at the first
 * input), and for each input a fresh squirreld server core in it (no
 * listener: connections are socketpairs served with sq_srv_serve_conn),
 * stopped and freed before the input's run ends, so that libFuzzer's
 * leak check after each input sees everything the server allocated
 * given back.  Every wait is bounded: a server that never closes a
 * connection aborts the run (a hang is a bug too). */
#ifndef SQ_FZ_H
#define SQ_FZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sq_base/strbuf.h"
#include "sq_server/server.h"

/* Runs fn(arg) as a task of the harness's runtime and waits for it. */
void fz_run(void *(*fn)(void *), void *arg);

/* A server core with `fixtures` ("conformance" or "bench"), short
 * timeouts (so a request that waits for a client that never answers
 * ends soon) and a fixed state key.  Aborts if it cannot be made.  Call
 * from a task of fz_run. */
sq_srv *fz_server(const char *fixtures);
/* Stops (cancelling everything left at once) and frees it. */
void fz_server_free(sq_srv *s);

/* How a conversation ends its sending side once every byte is written:
 * at once (the stream transports answer what is in flight after end of
 * input), or once `expect` responses came back or the server went quiet
 * (HTTP, where end of input cuts the answers short). */
typedef struct fz_talk {
    int kind;               /* SQ_LISTEN_HTTP, SQ_LISTEN_TCP */
    size_t expect;          /* HTTP: responses to wait for */
    const char *until;      /* or NULL: half-close once this text came */
    sq__strbuf got;         /* what came back */
    size_t responses;       /* HTTP: complete responses seen */
} fz_talk;

/* Sends n bytes on a fresh connection that s serves as t->kind, reads
 * what comes back into t->got until the server closes the connection.
 * Aborts if it does not close within 20 s.  Call from a task of fz_run. */
void fz_converse(sq_srv *s, fz_talk *t, const void *data, size_t n);
void fz_talk_free(fz_talk *t);

/* The number of complete requests llhttp (strict, as the server's
 * reader) finds in data, up to the first error. */
size_t fz_count_requests(const void *data, size_t n);

/* The value of response header `name` (any case) of the first response
 * in text that has one, copied into out (NUL-terminated); false if none. */
bool fz_header(const char *text, size_t len, const char *name, char *out,
               size_t outlen);

#endif
