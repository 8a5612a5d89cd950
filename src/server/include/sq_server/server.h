/* squirreld's server layer: the server as a library (what apps/squirreld
 * wires together, and what the server's tests drive without main()).
 *
 * A server lives in one runtime; its calls are made from tasks of that
 * runtime unless a comment says otherwise.  docs/server.md describes the
 * behaviour, the limits and their defaults.
 */
#ifndef SQ_SERVER_SERVER_H
#define SQ_SERVER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squirrel/runtime.h"

typedef struct sq_srv sq_srv;

/* The default port of `squirreld` with no transport flag. */
#define SQ_SRV_DEFAULT_PORT 8808

enum sq_listen_kind { SQ_LISTEN_HTTP, SQ_LISTEN_TCP, SQ_LISTEN_UNIX };

typedef struct sq_srv_endpoint {
    int kind;               /* enum sq_listen_kind */
    char *address;          /* "HOST:PORT" (HTTP, TCP) or a path (Unix) */
} sq_srv_endpoint;

typedef struct sq_srv_config {
    /* Transports (the command line and the config file). */
    bool stdio;
    sq_srv_endpoint *listen;
    size_t nlisten;
    char *token_file;           /* bearer token for HTTP, or NULL */
    char *fixtures;             /* "conformance", "bench" or NULL */
    int log_level;              /* stderr logs: enum sq_mcp_level */
    /* Limits (docs/server.md lists them with their defaults). */
    size_t max_message_bytes;   /* 4 MiB: 413 / -32600 */
    int max_sessions;           /* 10,000: 503 */
    int max_inflight_session;   /* 64 */
    int max_inflight_total;     /* 4,096 */
    int64_t session_idle;       /* 30 min */
    int64_t header_timeout;     /* 10 s */
    int64_t body_timeout;       /* 30 s */
    int64_t idle_timeout;       /* HTTP keep-alive, between requests: 2 min */
    int64_t request_timeout;    /* 5 min */
    int64_t grace;              /* shutdown grace period: 10 s */
    size_t out_queue_bytes;     /* per client queue: 16 MiB */
    size_t page_size;           /* list pages: 100 */
    /* DNS rebinding: Host and Origin allow-lists (localhost, 127.0.0.1
     * and [::1] are always allowed; "*" allows any). */
    char **allowed_hosts;
    size_t nallowed_hosts;
    char **allowed_origins;
    size_t nallowed_origins;
    /* requestState: the HMAC key (hex, 64 digits) shared by instances,
     * or NULL for a random key per process. */
    char *state_key_hex;
    int64_t state_ttl;          /* 10 min */
    char *server_name;          /* "squirreld" */
    char *instructions;         /* NULL */
} sq_srv_config;

/* Fills c with the defaults.  Never fails or waits. */
void sq_srv_config_init(sq_srv_config *c);
/* Frees what c holds (strings, lists). */
void sq_srv_config_free(sq_srv_config *c);
/* Makes d a deep copy of s.  0 or -ENOMEM (d is then half made: free
 * it with sq_srv_config_free). */
int sq_srv_config_copy(sq_srv_config *d, const sq_srv_config *s);
/* Adds a listener.  0, -EINVAL (a bad address), -ENOMEM. */
int sq_srv_config_add_listen(sq_srv_config *c, int kind, const char *address);
/* Reads a JSON config file into c (docs/server.md, "Configuration"):
 * unknown keys and bad values are errors.  0, or a negative errno with a
 * message in err (errlen bytes).  Blocks the calling thread on the file:
 * call it before the runtime starts, or on the blocking pool. */
int sq_srv_config_load(sq_srv_config *c, const char *path, char *err,
                       size_t errlen);

/* Creates a server with config c (copied) in the calling task's runtime:
 * reads the token file, sets up the fixtures.  0, or a negative errno
 * with a message in err.  Waits on the blocking pool (the token file). */
int sq_srv_create(sq_srv **out, const sq_srv_config *c, char *err,
                  size_t errlen);

/* Starts the listener l: binds it and starts accepting in a task of its
 * own.  *url gets what it listens on (malloc'ed): http://HOST:PORT/mcp,
 * tcp://HOST:PORT, unix:PATH.  0 or a negative errno (-EADDRINUSE ...).
 * Never waits. */
int sq_srv_listen(sq_srv *s, const sq_srv_endpoint *l, char **url);

/* Serves MCP over stdio (newline-delimited JSON-RPC on in_fd/out_fd) in
 * the calling task, until end of input or sq_srv_stop.  Returns 0 or a
 * negative errno.  Waits (reads). */
int sq_srv_serve_stdio(sq_srv *s, int in_fd, int out_fd);

/* Stops the server: listeners stop accepting, requests in flight get
 * until `grace` (from now) to finish, then everything left is cancelled
 * and the call returns once every task of the server has ended.  Waits.
 * Idempotent. */
int sq_srv_stop(sq_srv *s, int64_t grace);

/* Frees a stopped server. */
void sq_srv_destroy(sq_srv *s);

/* The server's configuration (read-only). */
const sq_srv_config *sq_srv_config_of(const sq_srv *s);

/* A structured log line on stderr (logfmt: ts, level, component, req,
 * msg), if level is at least the server's log level (s NULL: always).
 * One write(2) per line.  Never waits as a task (it writes stderr). */
void sq_srv_log(sq_srv *s, int level, const char *component, const char *req,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The fixtures (fixtures/): the conformance suite's tools, resources and
 * prompts; the benchmark's echo tools.  0 or a negative errno. */
int sq_fixtures_conformance(sq_srv *s);
int sq_fixtures_bench(sq_srv *s);

#endif
