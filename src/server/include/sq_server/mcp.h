/* squirreld's server layer: what the implementations of tools, resources,
 * resource templates and prompts see (the fixtures, the context manager,
 * the commands, plugins through their host API).
 *
 * A handler is called in the request's own task, once per request (for a
 * multi-round request, once per round).  It may wait (locks, channels,
 * I/O, the blocking pool): every such wait is a cancellation point, and a
 * request cancelled by its client (notifications/cancelled, or on HTTP in
 * the 2026-07-28 era, the response stream closed) or past its deadline
 * sees -ECANCELED there; whatever it returns then is dropped, never sent.
 *
 * Both protocol eras call the same handler: the server turns its result
 * into the era's wire form (docs/server.md, "Eras").  A handler returns
 *   SQ_MCP_OK              *result is the method's result object
 *                          (CallToolResult, ReadResourceResult,
 *                          GetPromptResult; owned by the server now);
 *   SQ_MCP_INPUT_REQUIRED  *result is {"inputRequests": {key: {method,
 *                          params}}, "state": <any JSON>}: the request
 *                          needs the client's answers (elicitation,
 *                          sampling, roots).  The server asks the client
 *                          (2026-07-28: an input_required result with the
 *                          state signed into requestState; legacy: real
 *                          server-to-client requests) and calls the
 *                          handler again with sq_mcp_input() answering
 *                          each key and sq_mcp_state() giving the state
 *                          back, verified;
 *   SQ_MCP_ERROR           a JSON-RPC error set with sq_mcp_fail.
 * A tool's own failure is not a protocol error: return SQ_MCP_OK with an
 * isError result (sq_mcp_tool_error).
 */
#ifndef SQ_SERVER_MCP_H
#define SQ_SERVER_MCP_H

#include "sq_proto/jansson.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sq_srv sq_srv;
typedef struct sq_mcp_req sq_mcp_req;

enum { SQ_MCP_OK = 0, SQ_MCP_INPUT_REQUIRED = 1, SQ_MCP_ERROR = -1 };

/* The protocol eras (per request). */
enum sq_mcp_era { SQ_MCP_LEGACY = 1, SQ_MCP_MODERN = 2 };

/* squirreld's own JSON-RPC error codes, outside the range the MCP
 * specification reserves (-32768..-32000). */
enum {
    SQ_MCP_ERR_BUSY = -31001,      /* a limit on requests in flight */
    SQ_MCP_ERR_DEADLINE = -31002,  /* the per-request deadline passed */
    SQ_MCP_ERR_SHUTDOWN = -31003,  /* the server is stopping */
    SQ_MCP_ERR_NOT_INITIALIZED = -31004, /* legacy: before initialize */
    /* MCP's own */
    SQ_MCP_ERR_RESOURCE_NOT_FOUND_LEGACY = -32002,
    SQ_MCP_ERR_HEADER_MISMATCH = -32020,
    SQ_MCP_ERR_MISSING_CAPABILITY = -32021,
    SQ_MCP_ERR_UNSUPPORTED_VERSION = -32022,
};

/* Logging levels (RFC 5424 order, least severe first). */
enum sq_mcp_level {
    SQ_MCP_DEBUG, SQ_MCP_INFO, SQ_MCP_NOTICE, SQ_MCP_WARNING, SQ_MCP_ERROR_LEVEL,
    SQ_MCP_CRITICAL, SQ_MCP_ALERT, SQ_MCP_EMERGENCY, SQ_MCP_NLEVELS
};
const char *sq_mcp_level_name(int level);
/* The level named `name`, or -1. */
int sq_mcp_level_parse(const char *name);

/* ------------------------------------------------------- the request */

sq_srv *sq_mcp_server(const sq_mcp_req *r);
int sq_mcp_era(const sq_mcp_req *r);
/* The protocol version the request runs under ("2025-11-25", ...). */
const char *sq_mcp_version(const sq_mcp_req *r);
/* The client's capabilities (borrowed, read-only, an object) and whether
 * it declared one, by a dotted path: "sampling", "elicitation",
 * "elicitation.url", "roots", "extensions.io.modelcontextprotocol/tasks"
 * (the last part may contain dots when it is an extension id: see the
 * implementation). */
json_t *sq_mcp_client_caps(const sq_mcp_req *r);
bool sq_mcp_client_has(const sq_mcp_req *r, const char *cap);
/* The legacy session's id (HTTP), or NULL. */
const char *sq_mcp_session_id(const sq_mcp_req *r);
/* The method and params of the request (borrowed, read-only: parts of
 * them, such as a 2026-07-28 request's _meta and the client capabilities
 * in it, are shared with other requests of the same connection). */
const char *sq_mcp_method(const sq_mcp_req *r);
json_t *sq_mcp_params(const sq_mcp_req *r);

/* Sends a progress notification if the request carried a progressToken
 * (else does nothing and returns 0).  progress must rise from one call to
 * the next (-EINVAL otherwise); total < 0 means unknown; message may be
 * NULL.  Dropped once the request has been answered or cancelled
 * (-ECANCELED).  Never waits. */
int sq_mcp_progress(sq_mcp_req *r, double progress, double total,
                    const char *message);

/* Sends a notifications/message at `level` if the request's log level
 * lets it through (legacy: the session's logging/setLevel; 2026-07-28:
 * the request's _meta logLevel, none if absent); data is borrowed.
 * Returns 0 (sent or filtered), -ECANCELED after the response.  Never
 * waits. */
int sq_mcp_log(sq_mcp_req *r, int level, const char *logger, json_t *data);

/* The client's answer to the input request `key` of the previous round
 * (borrowed), or NULL; and the state the handler gave back then (borrowed,
 * verified), or NULL in the first round. */
json_t *sq_mcp_input(const sq_mcp_req *r, const char *key);
json_t *sq_mcp_state(const sq_mcp_req *r);

/* Sets the JSON-RPC error the handler's SQ_MCP_ERROR stands for; data is
 * stolen (may be NULL).  Returns SQ_MCP_ERROR, for `return sq_mcp_fail(...)`. */
int sq_mcp_fail(sq_mcp_req *r, int code, const char *message, json_t *data);

/* The request's deadline (sq_now clock). */
int64_t sq_mcp_deadline(const sq_mcp_req *r);

/* Turns the tools/call being handled into a task (the 2026-07-28 era's
 * extension io.modelcontextprotocol/tasks, for a tool flagged
 * SQ_MCP_TASK_OPTIONAL or SQ_MCP_TASK_REQUIRED whose caller declared the
 * extension): the client gets a CreateTaskResult at once, and the handler
 * goes on in the background; what it returns becomes the task's outcome
 * (tasks/get), an SQ_MCP_INPUT_REQUIRED parks the task in input_required
 * until tasks/update answers it, and tasks/cancel cancels it (its waits
 * return -ECANCELED).  A task no longer belongs to its client's
 * connection: it outlives it, without the request deadline, until its
 * time to live ends.  Progress and log messages of a task are not sent.
 * Returns 0 (now a task), -ENOTSUP (not possible for this request: the
 * handler goes on synchronously), -EALREADY, -ENOMEM.  Never waits. */
int sq_mcp_task_start(sq_mcp_req *r);

/* ---------------------------------------------------- result builders */

/* {"content":[{"type":"text","text":text}]}; NULL if out of memory. */
json_t *sq_mcp_text_result(const char *text);
/* The same with "isError": true: a tool's own failure. */
json_t *sq_mcp_tool_error(const char *text);

/* ---------------------------------------------------------- the registry */

typedef int (*sq_mcp_tool_fn)(sq_mcp_req *r, json_t *args, void *data,
                              json_t **result);
typedef int (*sq_mcp_read_fn)(sq_mcp_req *r, const char *uri, void *data,
                              json_t **result);
typedef int (*sq_mcp_prompt_fn)(sq_mcp_req *r, json_t *args, void *data,
                                json_t **result);
/* Completion: fills *values (a new array of strings, at most 100) for
 * argument `name` whose partial value is `value`; `context` is the
 * already resolved arguments (borrowed, may be NULL). */
typedef int (*sq_mcp_complete_fn)(sq_mcp_req *r, const char *name,
                                  const char *value, json_t *context,
                                  void *data, json_t **values);

enum {
    SQ_MCP_HIDDEN = 1u << 0,        /* callable but not listed */
    SQ_MCP_TASK_OPTIONAL = 1u << 1, /* may run as a task (2026 tasks ext.) */
    SQ_MCP_TASK_REQUIRED = 1u << 2, /* must run as a task */
    /* The arguments are validated against input_schema (compiled when the
     * tool is added: sq_server/schema.h) before the handler runs; a call
     * that does not conform gets a tool error naming the failing path and
     * rule, and the handler is not called. */
    SQ_MCP_VALIDATE = 1u << 3,
};

typedef struct sq_mcp_tool_def {
    const char *name;          /* 1-128 of [A-Za-z0-9_.-] */
    const char *title;         /* may be NULL */
    const char *description;
    json_t *input_schema;      /* an object schema (borrowed; copied) */
    json_t *output_schema;     /* NULL or an object schema */
    json_t *annotations;       /* NULL or ToolAnnotations */
    unsigned flags;            /* SQ_MCP_* */
    sq_mcp_tool_fn call;
    void *data;
    /* Called once the tool is removed and no call uses it any more (or at
     * server teardown); may be NULL. */
    void (*release)(void *data);
} sq_mcp_tool_def;

typedef struct sq_mcp_resource_def {
    const char *uri;
    const char *name;
    const char *title;
    const char *description;
    const char *mime_type;
    sq_mcp_read_fn read;
    void *data;
    void (*release)(void *data);
} sq_mcp_resource_def;

/* A resource template (RFC 6570, simple {var} expressions): a read of a
 * URI it matches goes to its `read`.  `list`, if not NULL, lists the
 * resources it currently has (for resources/list: a page of them after
 * `cursor` (NULL first), at most `limit`, as an array of Resource objects
 * in *items, and the cursor of the next page in *next, NULL at the end). */
typedef int (*sq_mcp_list_fn)(sq_mcp_req *r, const char *cursor, size_t limit,
                              void *data, json_t **items, char **next);
typedef struct sq_mcp_template_def {
    const char *uri_template;
    const char *name;
    const char *title;
    const char *description;
    const char *mime_type;
    sq_mcp_read_fn read;
    sq_mcp_list_fn list;
    sq_mcp_complete_fn complete;
    void *data;
    void (*release)(void *data);
} sq_mcp_template_def;

typedef struct sq_mcp_prompt_def {
    const char *name;
    const char *title;
    const char *description;
    json_t *arguments;         /* array of {name, description?, required?} */
    sq_mcp_prompt_fn get;
    sq_mcp_complete_fn complete;
    void *data;
    void (*release)(void *data);
} sq_mcp_prompt_def;

/* Adds to the server's registry (the definition is copied; JSON values
 * are referenced).  Sessions and listeners hear list_changed after the
 * change.  -EEXIST (same name or URI), -EINVAL (a bad name, no handler),
 * -ENOMEM.  Never waits long (a registry lock, never held across a
 * wait).  Callable from any task of the server's runtime. */
int sq_mcp_add_tool(sq_srv *s, const sq_mcp_tool_def *def);
int sq_mcp_add_resource(sq_srv *s, const sq_mcp_resource_def *def);
int sq_mcp_add_template(sq_srv *s, const sq_mcp_template_def *def);
int sq_mcp_add_prompt(sq_srv *s, const sq_mcp_prompt_def *def);
/* Removes by name (URI, URI template): calls in flight finish, new ones
 * see it gone.  -ENOENT.  Never waits long. */
int sq_mcp_remove_tool(sq_srv *s, const char *name);
int sq_mcp_remove_resource(sq_srv *s, const char *uri);
int sq_mcp_remove_template(sq_srv *s, const char *uri_template);
int sq_mcp_remove_prompt(sq_srv *s, const char *name);

/* Tells every subscriber of `uri` (legacy resources/subscribe, 2026
 * subscriptions/listen) that the resource changed.  Never waits; slow
 * subscribers lose notifications as docs/server.md says, never slow the
 * caller. */
void sq_mcp_resource_updated(sq_srv *s, const char *uri);

/* As sq_mcp_resource_updated, with `meta` (an object, borrowed and
 * copied; NULL for none) as the notification's params._meta, so that a
 * subscriber learns more than "it changed" (the context manager sends the
 * version a change made: a subscriber that sees a gap knows it missed
 * some).  On 2026-07-28 listen streams the subscription id is added to
 * it.  Never waits, as sq_mcp_resource_updated. */
void sq_mcp_resource_updated_meta(sq_srv *s, const char *uri, json_t *meta);

/* Tells every session and listener that asked for it that the list of
 * resources changed (notifications/resources/list_changed): for
 * components whose resource templates list resources that come and go.
 * Never waits (pushes into bounded queues). */
void sq_mcp_resources_list_changed(sq_srv *s);

#endif
