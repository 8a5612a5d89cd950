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

/* SQ_LISTEN_ADMIN: HTTP serving only the monitoring endpoints (/metrics,
 * /health, /debug/..., /console); with one configured, the HTTP
 * listeners serve /mcp only. */
enum sq_listen_kind { SQ_LISTEN_HTTP, SQ_LISTEN_TCP, SQ_LISTEN_UNIX, SQ_LISTEN_ADMIN };

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
    /* The context manager's store (docs/contexts.md): "sqlite:PATH",
     * "memory", or NULL / "none" for no context manager (the library's
     * default; squirreld's is SQ_SRV_DEFAULT_STORE). */
    char *store;
    /* Its limits; 0 = the context manager's default (sq_server/ctx.h). */
    struct sq_srv_ctx_limits {
        size_t max_contexts, max_document_bytes, max_metadata_bytes,
            max_snapshots, history_depth, recovery_every, recovery_keep;
    } contexts;
    /* Monitoring (docs/monitoring.md). */
    bool request_metrics;       /* per-request metrics and the list of
                                 * requests in flight: true */
    char *alerts_json;          /* the alert rules (a JSON array), or NULL */
    int64_t alert_interval;     /* how often rules are evaluated: 1 s */
    char *checks;               /* SQUIRREL_CHECK words switched on at
                                 * start ("deadlock": lock holders and
                                 * waiters on /debug), or NULL */
    /* Plugins (docs/plugins.md): shared objects loaded at start, in
     * dependency order; the admin tool plugin_admin (off: it loads code
     * into the server); each plugin callback's deadline (30 s). */
    char **plugins;
    size_t nplugins;
    bool plugin_admin;
    int64_t plugin_timeout;
    /* Tests only (no flag, no config key): a request waits this long after
     * its answer went before it leaves its client's list (0: not at all),
     * which widens the window in which an answered request is still
     * listed: what it holds then must not be visible to its client. */
    int64_t test_linger;
} sq_srv_config;

/* squirreld's store when neither --store nor the config file names one. */
#define SQ_SRV_DEFAULT_STORE "sqlite:squirreld.db"

/* Fills c with the defaults.  Never fails or waits. */
void sq_srv_config_init(sq_srv_config *c);
/* Frees what c holds (strings, lists). */
void sq_srv_config_free(sq_srv_config *c);
/* Makes d a deep copy of s.  0 or -ENOMEM (d is then half made: free
 * it with sq_srv_config_free). */
int sq_srv_config_copy(sq_srv_config *d, const sq_srv_config *s);
/* Adds a listener.  0, -EINVAL (a bad address), -ENOMEM. */
int sq_srv_config_add_listen(sq_srv_config *c, int kind, const char *address);
/* Adds a plugin to load at start.  0, -EINVAL (empty), -ENOMEM. */
int sq_srv_config_add_plugin(sq_srv_config *c, const char *path);
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

/* Serves one connection that is already open (a socketpair, a socket
 * handed over by a supervisor) as a listener of `kind` would serve one
 * it accepted: SQ_LISTEN_HTTP speaks Streamable HTTP (SQ_LISTEN_ADMIN: the monitoring
 * endpoints only), SQ_LISTEN_TCP and
 * SQ_LISTEN_UNIX newline-delimited JSON-RPC.  Takes io over (closed when
 * the connection ends).  Runs in the calling task until the connection
 * ends: the peer closes it, a malformed request ends it, or the calling
 * task is cancelled (sq_srv_stop does not know this task: stop the
 * connection before the server).  Requests it started may outlive it as a listener's
 * would (legacy HTTP requests, tasks); sq_srv_stop ends those.  Returns
 * 0, or -EINVAL for an unknown kind (io is then closed).  Waits. */
int sq_srv_serve_conn(sq_srv *s, sq_io *io, int kind);

/* Stops the server: listeners stop accepting, requests in flight get
 * until `grace` (from now) to finish, then everything left is cancelled
 * and the call returns once every task of the server has ended.  Waits.
 * Idempotent. */
int sq_srv_stop(sq_srv *s, int64_t grace);

/* Frees a stopped server. */
void sq_srv_destroy(sq_srv *s);

/* The server's configuration (read-only). */
const sq_srv_config *sq_srv_config_of(const sq_srv *s);

/* Notifications dropped so far, over every client, because the client's
 * outgoing queue was full (out_queue_bytes: a client that does not read).
 * Never waits. */
uint64_t sq_srv_dropped(const sq_srv *s);

/* A structured log line on stderr (logfmt: ts, level, component, req,
 * msg), if level is at least the server's log level (s NULL: always).
 * One write(2) per line.  Never waits as a task (it writes stderr). */
void sq_srv_log(sq_srv *s, int level, const char *component, const char *req,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The fixtures (fixtures/): the conformance suite's tools, resources and
 * prompts; the benchmark's echo tools.  0 or a negative errno. */
int sq_fixtures_conformance(sq_srv *s);
int sq_fixtures_bench(sq_srv *s);
/* The monitoring fixtures (test-only): the bench tools plus tools that
 * make a contended lock, a stuck task, a deadlocked pair, and set a
 * health component's status (docs/monitoring.md, "Fixtures"). */
int sq_fixtures_monitor(sq_srv *s);

#endif
