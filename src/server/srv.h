/* The server layer's private header: the server, its sessions, requests
 * and outgoing queues, shared by the files of src/server/ (docs/server.md
 * explains the design; each file explains its part).
 *
 * The rules of the specification, as they apply here:
 *  - Every request runs as a task of its own; a transport's reader never
 *    waits for a request being handled.
 *  - No lock is held across a wait.  The locks below guard bookkeeping
 *    only (a table, a list); writing to a socket happens in a writer task
 *    that drains an outgoing queue, never under a lock.
 *  - Limits are semaphores, taken without waiting (a request over a limit
 *    is answered with an error at once).
 *  - Listeners (sessions, subscriptions) hear of changes after the
 *    registry's lock is released, through their queues, which are bounded
 *    in bytes: a slow listener loses messages (counted), never slows the
 *    one who changed something.
 */
#ifndef SQ_SERVER_SRV_H
#define SQ_SERVER_SRV_H

#include "sq_proto/jansson.h"
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squirrel/list.h"
#include "squirrel/runtime.h"
#include "squirrel/sync.h"
#include "sq_base/spin.h"
#include "sq_base/strbuf.h"
#include "sq_proto/jsonrpc.h"
#include "sq_server/mcp.h"
#include "sq_server/server.h"

/* The versions served, newest first. */
#define SQ_MCP_MODERN_VERSION "2026-07-28"
extern const char *const sq__legacy_versions[]; /* NULL-terminated */
bool sq__legacy_version_ok(const char *v);

/* ------------------------------------------------------ outgoing queue */

/* One message on its way out: a single-line JSON text. */
typedef struct sq_outmsg {
    struct sq__link link;
    uint64_t seq;          /* the queue's event number (from 1) */
    bool final;            /* the response that ends a request's stream */
    size_t len;
    char text[];           /* NUL-terminated */
} sq_outmsg;

/* Messages waiting for one writer (a connection's writer task, an HTTP
 * response being streamed).  Producers never wait: a push that would
 * pass `max_bytes` fails (-ENOBUFS, counted in `dropped`).  The writer
 * takes messages in order and waits with sq_outq_wait.  With `keep`
 * set, written messages are kept (up to max_bytes) for a replay
 * (Last-Event-ID). */
typedef struct sq_outq {
    sq__spin lock;
    struct sq__list msgs;       /* not yet taken by the writer */
    struct sq__list kept;       /* taken, kept for replay (keep only) */
    size_t bytes, kept_bytes, max_bytes;
    uint64_t next_seq;
    uint64_t dropped;
    bool keep;
    bool closed;                /* no more pushes (the reader is gone) */
    bool done;                  /* a final message was pushed */
    sq_notify ready;            /* the writer's wake-up */
    atomic_int refs;
    /* A legacy SSE stream kept in a shared store too (events.h): set by
     * sq_events_attach before the queue is shared; ev_broken (under
     * lock) once an event could not be handed to the store's writer:
     * later ones are not stored either, so what is stored has no gap. */
    struct sq_events *ev;
    char ev_session[40];
    uint64_t ev_stream;
    bool ev_broken;
} sq_outq;

sq_outq *sq_outq_new(size_t max_bytes, bool keep);
sq_outq *sq_outq_ref(sq_outq *q);
void sq_outq_unref(sq_outq *q);
/* Queues a copy of text (len bytes).  0, -ENOBUFS (over the byte limit),
 * -EPIPE (closed), -ENOMEM.  Never waits. */
int sq_outq_push(sq_outq *q, const char *text, size_t len, bool final);
/* Takes the oldest message (the caller frees it with free(), unless the
 * queue keeps it: then it stays the queue's), or NULL if none. */
sq_outmsg *sq_outq_take(sq_outq *q);
/* Waits until a message may be there (or the queue is closed) or the
 * deadline.  0, -ETIMEDOUT, -ECANCELED.  Spurious returns are allowed. */
int sq_outq_wait(sq_outq *q, int64_t deadline);
/* Closes q: pushes fail, the writer is woken. */
void sq_outq_close(sq_outq *q);
bool sq_outq_is_closed(sq_outq *q);
/* Wakes the writer (for a reason of its own, e.g. its connection died). */
void sq_outq_kick(sq_outq *q);
/* Calls fn for each kept message with seq > after, in order (under the
 * queue's lock: fn must not wait). */
void sq_outq_replay(sq_outq *q, uint64_t after,
                    void (*fn)(const sq_outmsg *m, void *arg), void *arg);

/* ------------------------------------------------------------ requests */

enum { SQ_REQ_RUNNING, SQ_REQ_DONE, SQ_REQ_CANCELLED };

typedef struct sq_sess sq_sess;
typedef struct sq_batch sq_batch;

/* The requests in flight of one client (a legacy session, or a stream
 * connection's requests of the 2026-07-28 era): for
 * notifications/cancelled, for ending them all, and the semaphore that
 * limits them.  Reference-counted: each request holds one. */
typedef struct sq_tracker {
    sq_mutex lock;              /* the list; never held across a wait */
    struct sq__list reqs;       /* sq_mcp_req.link */
    sq_sem inflight;            /* max_inflight_session permits */
    size_t count;               /* listed (under lock) */
    sq_notify empty;            /* signalled when count drops to 0 */
    atomic_int refs;
} sq_tracker;
sq_tracker *sq_tracker_new(int permits);
sq_tracker *sq_tracker_ref(sq_tracker *t);
void sq_tracker_unref(sq_tracker *t);
/* Admits r: takes a permit of t and of the server (without waiting) and
 * lists it.  0; SQ_MCP_ERR_BUSY when a limit is reached; -EEXIST when
 * its id is in flight already. */
int sq_tracker_admit(sq_tracker *t, sq_mcp_req *r);
/* Cancels the request whose canonical id is key, if any; all of them
 * with key NULL. */
void sq_tracker_cancel(sq_tracker *t, const char *key);
/* Requests listed now. */
size_t sq_tracker_count(sq_tracker *t);
/* Cancels the listen requests among them (subscriptions/listen). */
void sq_tracker_cancel_listens(sq_tracker *t);
/* Waits until no request is listed, or deadline: 0, -ETIMEDOUT,
 * -ECANCELED. */
int sq_tracker_wait_empty(sq_tracker *t, int64_t deadline);

struct sq_mcp_req {
    sq_srv *srv;
    sq_sess *sess;              /* legacy: its session (a reference) */
    int era;
    char version[16];
    json_t *caps;               /* client capabilities (a reference) */
    int log_level;              /* minimum level sent, -1: none */
    char *method;
    json_t *params;             /* a reference; never NULL (an object) */
    json_t *msg;                /* the whole message params is part of */
    char *id;                   /* raw id text */
    char *key;                  /* canonical id (for cancellation) */
    json_t *progress_token;     /* a reference, or NULL */
    double last_progress;
    json_t *inputs;             /* inputResponses of this round */
    json_t *state;              /* verified state of the previous round */
    json_t *err_data;
    struct sq_taskrec *taskrec; /* a tools/call turned into a task */
    int err_code;
    char *err_msg;
    /* Where its messages go.  `lock` orders the check of `state` with
     * the push, so nothing is sent once the request is cancelled. */
    sq__spin lock;
    atomic_int phase;           /* SQ_REQ_* */
    sq_outq *out;               /* a reference */
    sq_batch *batch;            /* legacy batch collecting its response */
    int64_t deadline;
    sq_task task;               /* its task (joinable; under `lock`) */
    bool has_task;
    bool started;               /* its task has begun (under `lock`): a
                                 * task aborted before it starts never
                                 * runs, so only a started one is aborted */
    bool listen;                /* a subscriptions/listen stream */
    sq_tracker *trk;            /* where it is listed (a reference) */
    bool trk_left;              /* it left trk early (a task) */
    bool permits_given_back;    /* its in-flight permits (trk_left or
                                 * just before its answer) */
    struct sq__link link;       /* in trk->reqs */
    struct sq__link dl_link;    /* in the server's deadline wheel */
    int dl_slot;                /* -1: not in the wheel */
    /* Monitoring (monitor.c): when it started, whether its answer is an
     * error, and its place in the list of requests in flight. */
    int64_t started_at;
    bool failed;                /* answered with a JSON-RPC error */
    bool mon_listed;
    struct sq__link mon_link;
    atomic_int refs;
};

/* Creates a request for message m (taken over: m is emptied), in `era`
 * with `version` and `caps` (referenced), sending to out (referenced). */
sq_mcp_req *sq_req_new(sq_srv *s, sq_rpc_msg *m, int era, const char *version,
                       json_t *caps, sq_outq *out);
void sq_req_unref(sq_mcp_req *r);
sq_mcp_req *sq_req_ref(sq_mcp_req *r);
/* Pushes a related message (a notification, a request to the client) if
 * the request is still running.  0, -ECANCELED, or sq_outq_push's error.
 * Never waits. */
int sq_req_emit(sq_mcp_req *r, const char *text, size_t len);
/* Sends the response (result or error, text built by the caller) unless
 * the request was cancelled: true if sent. */
bool sq_req_finish(sq_mcp_req *r, const char *text, size_t len);
/* Marks the request cancelled (nothing more is sent for it) and aborts
 * its task.  Safe to call more than once, and after it finished. */
void sq_req_cancel(sq_mcp_req *r);
/* Starts the request's task (limits are the caller's).  0, -ENOMEM,
 * -ESHUTDOWN. */
int sq_req_start(sq_mcp_req *r);
/* The canonical text of a JSON id (for matching notifications/cancelled
 * requestId against requests in flight); malloc'ed or NULL. */
char *sq_id_key(json_t *id);

/* The per-era work of one request, run in its task (dispatch.c): routes
 * the method, runs it and builds the response text into b. */
void sq_dispatch(sq_mcp_req *r, sq__strbuf *b);

/* ------------------------------------------------------ legacy batches */

/* A 2025-03-26 batch: the responses of its requests are collected and
 * sent as one array when the last one is in. */
struct sq_batch {
    sq__spin lock;
    int pending;
    sq__strbuf text;            /* "[resp,resp" so far */
    bool any;
    sq_outq *out;               /* where the array goes */
    atomic_int refs;
};
sq_batch *sq_batch_new(sq_outq *out, int n);
/* Adds one response (or none, for a cancelled request). */
void sq_batch_add(sq_batch *b, const char *text, size_t len);
void sq_batch_unref(sq_batch *b);

/* ------------------------------------------------------------ sessions */

/* A legacy session: made by initialize, on a stream connection (one per
 * connection) or by HTTP (by id).  Its fields after `lock` are guarded by
 * it; the rest are set at initialize and then only read. */
struct sq_sess {
    sq_srv *srv;
    char id[40];                /* HTTP: the Mcp-Session-Id; else "" */
    char version[16];           /* negotiated */
    json_t *caps;               /* client capabilities */
    json_t *client_info;
    bool http;
    atomic_bool initialized;    /* notifications/initialized seen */
    atomic_bool ended;
    atomic_int log_level;       /* logging/setLevel; default SQ_MCP_INFO */
    atomic_llong last_used;     /* sq_now of the last request */
    int64_t created;            /* sq_now at initialize */
    atomic_bool logs_asked;     /* logging/setLevel was called */
    sq_tracker *trk;            /* its requests in flight */
    sq_mutex lock;
    json_t *pending;            /* our requests to the client: id -> slot */
    json_t *subs;               /* subscribed URIs: uri -> true */
    uint64_t next_client_id;
    uint64_t next_stream;       /* HTTP: SSE stream numbers */
    json_t *streams;            /* HTTP: stream number -> sq_outq (kept) */
    sq_outq *unsolicited;       /* stream: the connection's queue; HTTP:
                                 * the GET stream's, or NULL */
    struct sq__link link;       /* in the server's list of sessions */
    atomic_int refs;
};

sq_sess *sq_sess_new(sq_srv *s, bool http);
sq_sess *sq_sess_ref(sq_sess *x);
void sq_sess_unref(sq_sess *x);
/* Ends the session: its requests are cancelled, its pending client
 * requests fail, it leaves the server's table.  Never waits. */
void sq_sess_end(sq_sess *x);
/* Delivers a client's response to our request (by its id); ignored if
 * nobody waits for it. */
void sq_sess_deliver(sq_sess *x, sq_rpc_msg *m);
/* Sends a request to the client on behalf of r and waits for its answer
 * until r's deadline: 0 with *result (a reference), or a negative errno
 * (-ECANCELED, -ETIMEDOUT, -EPROTO with *result the error object). */
int sq_sess_ask(sq_sess *x, sq_mcp_req *r, const char *method, json_t *params,
                json_t **result);
/* Pushes an unsolicited notification to the session (not tied to a
 * request): on its stream connection, or its HTTP GET stream.  Dropped
 * when there is none or it is full (counted). */
void sq_sess_notify(sq_sess *x, const char *text, size_t len);

/* ----------------------------------------------------- the server */

/* The registry's state (registry.c). */
typedef struct sq_registry sq_registry;
sq_registry *sq__registry_new(void);
void sq__registry_free(sq_registry *g);

/* A tool, resource, template or prompt as the registry keeps it. */
typedef struct sq_entry {
    int kind;                   /* SQ_ENTRY_* */
    char *key;                  /* name, URI or URI template */
    json_t *desc;               /* what the list method returns for it */
    struct sq_schema *schema;   /* tools with SQ_MCP_VALIDATE: compiled */
    union {
        sq_mcp_tool_def tool;
        sq_mcp_resource_def resource;
        sq_mcp_template_def tmpl;
        sq_mcp_prompt_def prompt;
    } def;
    atomic_int refs;
} sq_entry;
enum { SQ_ENTRY_TOOL, SQ_ENTRY_RESOURCE, SQ_ENTRY_TEMPLATE, SQ_ENTRY_PROMPT,
       SQ_ENTRY_NKINDS };

/* Looks up an entry (a reference: sq_entry_unref it), or NULL. */
sq_entry *sq_registry_find(sq_srv *s, int kind, const char *key);
/* The template matching uri (a reference), or NULL. */
sq_entry *sq_registry_match(sq_srv *s, const char *uri);
void sq_entry_unref(sq_entry *e);
/* One page of a list: the entries after `cursor` (NULL: from the start;
 * an invalid cursor is -EINVAL) in name/URI order, at most the page
 * size, their descriptions appended to `items`, and the next page's
 * cursor in *next (NULL at the end).  Hidden entries are not listed. */
int sq_registry_page(sq_srv *s, int kind, const char *cursor, json_t *items,
                     char **next);
/* True if the registry holds anything of that kind (for capabilities). */
bool sq_registry_has(sq_srv *s, int kind);

/* Modern-era listeners (subscriptions/listen): their filters and queues. */
typedef struct sq_listener {
    sq_mcp_req *req;            /* the listen request (a reference) */
    bool tools, prompts, resources;
    json_t *uris;               /* URIs (object: uri -> true) or NULL */
    json_t *task_ids;           /* task ids (object: id -> true) or NULL */
    struct sq__link link;
} sq_listener;

#define SQ_DL_SLOTS 512 /* the deadline wheel: one slot per second */

struct sq_srv {
    sq_srv_config cfg;
    sq_runtime *rt;
    sq_registry *reg;
    unsigned char hmac_key[32];
    sq_sem inflight;            /* all requests in flight */
    sq_mutex lock;              /* sessions and listeners below */
    struct sq__list sessions;
    json_t *by_id;              /* HTTP session id -> sq_sess (pointer) */
    int nsessions;
    struct sq__list listeners;
    sq_group *tasks;            /* connection and request tasks */
    atomic_bool stopping;
    atomic_llong requests_total;
    atomic_llong dropped;       /* notifications dropped: queues full */
    json_t *server_info;        /* serverInfo (sq_server_info), shared */
    atomic_bool param_headers;  /* a tool with x-mcp-header arguments was
                                 * registered (ever): tools/call then checks
                                 * the Mcp-Param-* headers (http.c) */
    /* A 2026-07-28 result's envelope as JSON text, encoded once (see
     * decorate in dispatch.c): the _meta member with serverInfo, and
     * resultType "complete" before it.  NULL: built per answer. */
    char *env_meta, *env_complete;
    char *token;                /* bearer token, or NULL */
    size_t token_len;
    /* Requests' deadlines: a wheel of one-second slots, swept by the
     * reaper task (request.c). */
    sq__spin dl_lock;
    struct sq__list dl_wheel[SQ_DL_SLOTS];
    sq_notify dl_stop;
    /* Tasks by id (tasks.c). */
    sq_mutex task_lock;
    json_t *tasks_by_id;
    /* The context manager's tools and resources (ctx/), or NULL. */
    struct ctx_tools *ctx;
    /* Monitoring: metrics, health, alerts, history (monitor.c). */
    struct sq_mon *mon;
    bool has_admin;             /* an admin listener is configured: the
                                 * monitoring endpoints are there only */
    /* Components: the command system (cmd/) and the plugin host
     * (plugin/), made by sq_srv_create. */
    struct sq_cmds *cmds;
    struct sq_plugins *plugins;
    /* The writer of legacy SSE streams to a shared store (events.c), or
     * NULL (the store keeps no event streams). */
    struct sq_events *events;
};

/* Ends the HTTP sessions idle for longer than session_idle (at most 64
 * per call; the reaper calls it every second).  Never waits long. */
void sq_srv_expire_sessions(sq_srv *s);
/* Takes r off the deadline wheel: it runs until cancelled (listen). */
void sq_req_no_deadline(sq_mcp_req *r);
/* Tasks (tasks.c, the 2026-07-28 extension io.modelcontextprotocol/tasks).
 * The tasks of the server, by id; dispatch hands a task's outcome over
 * with sq_task_settle and waits in sq_task_wait_input for tasks/update. */
typedef struct sq_taskrec sq_taskrec;
#define SQ_TASKS_EXT "io.modelcontextprotocol/tasks"
void sq_task_settle(sq_mcp_req *r, int rc, json_t *result);
/* For a task whose handler asked for input: records the input requests
 * and waits for every answer (tasks/update).  0 with r->inputs set,
 * -ECANCELED (tasks/cancel, or the server stopping). */
int sq_task_wait_input(sq_mcp_req *r, json_t *ask);
/* Ends expired tasks (the reaper, every second). */
void sq_tasks_expire(sq_srv *s);
void sq_tasks_free(sq_srv *s);
/* Leaves r's tracker early (its permits back): a task outlives its
 * client's connection. */
void sq_req_detach_tracker(sq_mcp_req *r);

/* The context manager (ctx/tools_def.c): started by sq_srv_create when
 * the configuration names a store (it opens and loads the store, and
 * registers the context_* tools and the squirrel://context/{id}
 * template), stopped by sq_srv_stop once requests have ended (changes
 * still queued are committed), freed by sq_srv_destroy. */
int sq_ctx_srv_start(sq_srv *s, char *err, size_t errlen);
/* The context manager's store (store/store.h), or NULL without one. */
struct sq_store *sq_ctx_srv_store(sq_srv *s);
void sq_ctx_srv_stop(sq_srv *s);
void sq_ctx_srv_free(sq_srv *s);

/* The deadline reaper's task body (request.c). */
void *sq_req_reaper_main(void *srv);

/* Notifies every legacy session and modern listener entitled to it that
 * the list of `kind` changed (registry.c calls it after its lock). */
void sq_srv_list_changed(sq_srv *s, int kind);

/* The task body of a stream connection (stream.c) and HTTP connection
 * (http.c); they own io. */
void sq_serve_stream_conn(sq_srv *s, sq_io *io, bool is_stdio, sq_io *out_io);
void sq_serve_http_conn(sq_srv *s, sq_io *io, bool admin);


/* Modern era: classification and envelope (era.c). */

/* A connection's (or stream's) memory of its last valid envelope, kept
 * only while that envelope is one of its _meta cache's entries (shared,
 * unchanged and alive until the cache is cleared, so the same address is
 * the same envelope): a request that shares it is checked by a pointer
 * comparison.  All-zero is empty; it lives exactly as long as the cache
 * (both are members of the same connection). */
typedef struct sq_era_memo {
    json_t *meta;          /* the entry's object, or NULL */
    const char *version;
    json_t *caps;
    int level;
} sq_era_memo;

/* True if params carry the modern claim (_meta protocolVersion); memo
 * may be NULL.  Never waits. */
bool sq_era_claims_modern(json_t *params, const sq_era_memo *memo);
/* Validates a modern request's envelope: 0 with *version, *caps set
 * (borrowed) and *level (the _meta logLevel, -1 if none), or a JSON-RPC
 * error code with *why (and *data for -32022, a new reference).
 * *version is the version the request names whenever it names one (also
 * with -32022), else NULL.  With a memo and the cache the message was
 * parsed with (both may be NULL), a valid envelope that is a cache entry
 * is remembered, and checked again by address.  Never waits. */
int sq_era_envelope(json_t *params, const sq_rpc_meta_cache *cache, sq_era_memo *memo,
                    const char **version, json_t **caps, int *level, const char **why,
                    json_t **data);

/* requestState (mrtr.c): signs state for `method`+`name` into a string
 * (malloc'ed), and verifies one: 0 with *state (a reference), or
 * -EINVAL (tampered, expired, another request's). */
char *sq_mrtr_seal(sq_srv *s, const char *method, const char *name,
                   json_t *state);
int sq_mrtr_open(sq_srv *s, const char *method, const char *name,
                 const char *sealed, json_t **state);

/* A duration "<n>ms|s|m|h" (config.c): 0 or -EINVAL. */
int sq_srv_parse_duration(const char *s, int64_t *out);

/* Builds the response text of a request with a JSON-RPC error. */
void sq_req_error_text(sq_mcp_req *r, sq__strbuf *b, int code,
                       const char *message, json_t *data);

#include "mon.h"

#endif
