/* The server tests' library (tests/server/): squirreld's server started in
 * process, clients for each of its transports, the squirreld program as a
 * child process, and exact comparison of what comes back.
 *
 *  - mt_server: a server in the calling task's runtime, with the bench
 *    fixtures (echo, sleep) and two test tools of its own (`gate`, a call
 *    that waits until the test lets it through and records whether it was
 *    cancelled; `blob`, a call whose answer is n bytes of text), listening
 *    on HTTP, TCP and a Unix socket, on 127.0.0.1 only.
 *  - mt_conn: newline-delimited JSON-RPC over TCP, a Unix socket, or stdio
 *    (the server's sq_srv_serve_stdio on a pair of pipes, or a child's).
 *  - mt_http: HTTP/1.1 over a socket: raw bytes out; responses parsed by
 *    llhttp in response mode (Content-Length, chunked, closed-delimited,
 *    pipelined), their bodies as JSON or as server-sent events.
 *  - mt_child: the squirreld binary with its stdin, stdout and stderr.
 *
 * Every wait is bounded (MT_WAIT, 30 s): a server that never answers
 * fails the test instead of hanging it.  Everything here is called from
 * tasks of the runtime that runs the test.
 */
#ifndef SQ_MCPTEST_H
#define SQ_MCPTEST_H

#include "sq_proto/jansson.h"
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "llhttp.h"
#include "sq_base/strbuf.h"
#include "sq_server/mcp.h"
#include "sq_server/server.h"
#include "squirrel/io.h"
#include "squirrel/runtime.h"
#include "squirrel/sync.h"
#include "testlib.h"

/* How long any one wait for the server may take before the test fails. */
#define MT_WAIT (30 * SQ_SEC)

/* A test body run as the root task of a two-worker runtime. */
#define MT_TEST(name)                                                  \
    static void name##_body(void);                                     \
    static void *name##_task(void *arg)                                \
    {                                                                  \
        (void)arg;                                                     \
        name##_body();                                                 \
        return NULL;                                                   \
    }                                                                  \
    TEST(name) { sq_test_run(2, name##_task, NULL); }                  \
    static void name##_body(void)

/* The 2026-07-28 request envelope, as a member of params. */
#define MT_META                                                              \
    "\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"," \
    "\"io.modelcontextprotocol/clientCapabilities\":{}}"

/* ------------------------------------------------------- comparisons */

/* Structural comparison of the JSON text `got` with the JSON text `want`
 * (jansson's json_equal: member order does not matter, 1 and 1.0 differ).
 * Reports both texts on a mismatch, and a `got` that is NULL or not
 * JSON.  Returns whether they matched. */
bool mt_json_eq(const char *got, const char *want, const char *file, int line);
#define CHECK_JSON(got, want) mt_json_eq((got), (want), __FILE__, __LINE__)

/* The same for two JSON arrays whose order does not matter (a batch's
 * responses): each element of one equals a distinct element of the
 * other. */
bool mt_json_set_eq(const char *got, const char *want, const char *file, int line);
#define CHECK_JSON_SET(got, want) mt_json_set_eq((got), (want), __FILE__, __LINE__)

/* The exact text of the "id" member of the JSON object text `msg`
 * (malloc'ed), or NULL if it has none.  Scans the text itself: nothing is
 * re-encoded. */
char *mt_raw_id(const char *msg);
bool mt_id_is(const char *msg, const char *raw, const char *file, int line);
#define CHECK_ID(msg, raw) mt_id_is((msg), (raw), __FILE__, __LINE__)

bool mt_str_eq(const char *got, const char *want, const char *file, int line);
#define CHECK_STR(got, want) mt_str_eq((got), (want), __FILE__, __LINE__)

/* printf into a new string (for expected texts). */
char *mt_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------- the server in process */

typedef struct mt_server {
    sq_srv *srv;
    int http_port, tcp_port;
    int admin_port;          /* an SQ_LISTEN_ADMIN listener's, or 0 */
    char unix_path[108];
    /* The `gate` tool: each call takes one permit of `gate` (waiting for
     * it), counting entries, cancellations and passes. */
    sq_sem gate;
    atomic_int gate_entered, gate_cancelled, gate_passed;
} mt_server;

/* The configuration mt_start uses: the defaults, the bench fixtures, and
 * HTTP, TCP and Unix listeners on 127.0.0.1:0 and a fresh path.  Change
 * it, pass it to mt_start_with, free it with sq_srv_config_free. */
void mt_config(sq_srv_config *c);
mt_server *mt_start_with(const sq_srv_config *c);
mt_server *mt_start(void);
/* Stops the server (requests still running are cancelled at once) and
 * frees it.  Connections of the test should be closed first. */
void mt_stop(mt_server *m);
/* Lets n calls of `gate` through. */
void mt_gate_open(mt_server *m, int n);

/* ------------------------------------------ newline-delimited clients */

typedef struct mt_conn {
    sq_io *rd, *wr;          /* the same for a socket */
    sq__strbuf in;
    size_t off;
    bool eof;
    sq_task serve;           /* in-process stdio: the serving task */
    bool serving;
} mt_conn;

mt_conn *mt_tcp(mt_server *m);
mt_conn *mt_unix(mt_server *m);
/* The server's stdio transport (sq_srv_serve_stdio) on two pipes, served
 * by a task of its own until end of input. */
mt_conn *mt_stdio(mt_server *m);
/* A client over ios it now owns (rd may equal wr). */
mt_conn *mt_conn_of(sq_io *rd, sq_io *wr);

/* Writes bytes as they are. */
void mt_send(mt_conn *c, const char *bytes, size_t n);
/* Writes one line: the formatted text and '\n'. */
void mt_line(mt_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The next line (malloc'ed), or NULL at end of stream; a line that does
 * not come within MT_WAIT fails the test (NULL). */
char *mt_next(mt_conn *c);
/* As mt_next, but gives up quietly at deadline (NULL, eof not set). */
char *mt_next_until(mt_conn *c, int64_t deadline);
/* True if the stream ends (within MT_WAIT) with nothing more on it; a
 * line that comes instead is reported and fails the test. */
bool mt_expect_eof(mt_conn *c);
/* Ends what the client sends (shutdown of a socket's write side; closing
 * a pipe): the server reads end of input. */
void mt_shut(mt_conn *c);
/* Closes the client (in-process stdio: after its server task ends). */
void mt_close(mt_conn *c);

/* The legacy handshake at `version` with request id "init": checks the
 * answer, then sends notifications/initialized. */
void mt_init(mt_conn *c, const char *version);

/* ---------------------------------------------------------------- HTTP */

typedef struct mt_resp {
    int status;
    sq__strbuf head;         /* "name: value\n" per header, names lower-case */
    sq__strbuf body;
    bool headed, complete, keep_alive;
    size_t sse_off;          /* how far the body was read as events */
    struct mt_resp *next;
} mt_resp;

typedef struct mt_http {
    sq_io *io;
    int port;
    llhttp_t parser;
    llhttp_settings_t settings;
    bool in_value, eof, failed;
    mt_resp *first, *last, *cur, *given;
} mt_http;

mt_http *mt_http_open(mt_server *m);
/* The same to any HTTP port of 127.0.0.1 (a squirreld child's). */
mt_http *mt_http_at(int port);
void mt_http_close(mt_http *h);
/* Writes bytes as they are. */
void mt_http_raw(mt_http *h, const char *bytes, size_t n);
/* Writes a request to /mcp: Host 127.0.0.1:port, then for POST
 * Content-Type: application/json, Accept: application/json,
 * text/event-stream and Content-Length, then `headers` (lines each ended
 * by CRLF, or NULL), then the body. */
void mt_http_post(mt_http *h, const char *headers, const char *body);
void mt_http_get(mt_http *h, const char *headers);
void mt_http_delete(mt_http *h, const char *headers);
/* The next response, once its head is in (NULL, and the test fails, if
 * none comes). */
mt_resp *mt_http_next(mt_http *h);
/* Waits for the whole body of r; false if it does not come. */
bool mt_http_body(mt_http *h, mt_resp *r);
/* The value of header `name` (lower-case) of r, or NULL.  Points into
 * r->head, ended by '\n' (use mt_hdr_is to compare). */
char *mt_hdr(const mt_resp *r, const char *name);
bool mt_hdr_is(const mt_resp *r, const char *name, const char *want);
/* A 2026-07-28 tools/call of `tool` with `args` (JSON text), id 1, POSTed
 * to m's HTTP listener: the answer's body (malloc'd) and its status in
 * *status (NULL: not wanted). */
char *mt_call_modern(mt_server *m, const char *tool, const char *args, int *status);
/* GET path from port of 127.0.0.1 on a new connection, with `headers`
 * (CRLF-ended lines, or NULL): the body (malloc'd; NULL if no whole
 * response came) and its status in *status. */
char *mt_get(int port, const char *path, const char *headers, int *status);
/* True if the server closes the connection (within MT_WAIT) with no more
 * bytes: a response that comes instead fails the test. */
bool mt_http_expect_eof(mt_http *h);

/* One server-sent event. */
typedef struct mt_event {
    char *id, *event, *data;  /* NULL when the field was absent */
    long retry;               /* -1 when absent */
} mt_event;
/* The next event of r's body, waiting for it; false at the end of the
 * body (or if the server stops sending).  Comments are skipped. */
bool mt_sse_next(mt_http *h, mt_resp *r, mt_event *ev);
/* The next event that carries a message (non-empty data), as text. */
char *mt_sse_msg(mt_http *h, mt_resp *r);
void mt_event_free(mt_event *ev);

/* The JSON-RPC messages of a whole answer: the JSON body, or every
 * non-empty SSE data in order (NULL-terminated array of malloc'ed
 * strings; free with mt_msgs_free). */
char **mt_http_msgs(mt_http *h, mt_resp *r);
void mt_msgs_free(char **v);
/* The last of them (the response), malloc'ed, or NULL. */
char *mt_http_answer(mt_http *h, mt_resp *r);

/* POSTs body on a new connection and returns the answer's last message
 * (malloc'ed); *status gets the status (may be NULL). */
char *mt_post1(mt_server *m, const char *headers, const char *body, int *status);
char *mt_post_at(int port, const char *headers, const char *body, int *status);

/* A legacy session made by initialize at `version` (and then
 * notifications/initialized): its Mcp-Session-Id (malloc'ed). */
char *mt_session(mt_server *m, const char *version);
/* The header lines a legacy session's requests carry. */
char *mt_sess_headers(const char *sid, const char *version);
/* The header lines of a 2026-07-28 request: MCP-Protocol-Version,
 * Mcp-Method and (if name is not NULL) Mcp-Name. */
char *mt_modern_headers(const char *method, const char *name);

/* ----------------------------------------------------- squirreld itself */

typedef struct mt_child {
    pid_t pid;
    mt_conn *io;             /* its stdin (write) and stdout (read) */
    mt_conn *err;            /* its stderr (read) */
    int status;              /* wait status once reaped */
    bool reaped;
} mt_child;

/* Starts the squirreld binary with args (NULL-terminated, without
 * argv[0]), after "--store memory" (args may name another store). */
mt_child *mt_spawn(const char *const *args);
/* The same with environment entries ("NAME=value") set or replaced. */
mt_child *mt_spawn_env(const char *const *args, const char *const *env);
/* The port of its listener for scheme ("http", "tcp"), from the line
 * "listening on SCHEME://HOST:PORT" it prints on stderr (the lines before
 * it are read and dropped); 0 if its stderr ends first (mt_next's wait). */
int mt_child_port(mt_child *c, const char *scheme);
/* Waits for it to exit: its exit code, or 128 + the signal that killed
 * it, or -1 if it is still running at the deadline (then it is killed). */
int mt_child_wait(mt_child *c, int64_t deadline);
/* Kills it if it still runs, reaps it, closes everything.  One that had
 * ended by itself with a failure (a sanitizer's report, a check's abort:
 * not exit code 0, SIGKILL or SIGTERM) gets the end of its stderr printed,
 * so that a test failing on a closed connection says why. */
void mt_child_free(mt_child *c);

#endif
