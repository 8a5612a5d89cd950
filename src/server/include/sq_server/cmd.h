/* squirreld's server layer: the command system (docs/commands.md).
 *
 * A command is an MCP tool with more around it: a registry entry with
 * its input schema compiled once (sq_server/schema.h) and an optional
 * output schema, per-command limits (calls at once, a deadline), hooks,
 * and a history of its calls.  Registering or removing a command adds or
 * removes its tool, which sends list_changed to every client.
 *
 * Every call, whether from a client (tools/call) or from the server or a
 * plugin (sq_cmd_invoke), goes through the same stages:
 *
 *   admit     take one of the command's max_concurrent permits (an
 *             sq_sem), waiting for one until the call's deadline (the
 *             command's own flag SQ_CMD_NO_WAIT: fail at once instead);
 *   pre       the system's pre-hooks in the order added, then the
 *             command's own; any of them may refuse the call;
 *   validate  the arguments against the input schema: a failure names
 *             the path and the rule, and nothing runs;
 *   execute   the command;
 *   post      the command's post-hook, then the system's; then a result
 *             with structuredContent is checked against the output schema;
 *   cleanup   the command's cleanup, then the system's: always, also when
 *             an earlier stage failed, timed out or was cancelled.
 *
 * pre, validate, execute and post run in a task of their own (one per
 * call), so that the call's deadline and its caller's cancellation reach
 * them: at the deadline, or when the caller is cancelled (the client's
 * notifications/cancelled, the request's own deadline, the server
 * stopping), that task is aborted and its waiting calls return
 * -ECANCELED.  cleanup runs in the caller's task afterwards, with
 * cancellation masked, so that it can wait (it should not wait long).
 *
 * A call's outcome (enum sq_cmd_outcome) goes into the command's figures
 * and, with its arguments (redacted as the command says), its duration
 * and any error message, into the history: a ring of the last calls
 * (1,000 by default), read with the built-in `history` tool or the
 * resource squirrel://commands/history.
 *
 * Errors are negative errno codes.  Calls are made from tasks of the
 * server's runtime.
 */
#ifndef SQ_SERVER_CMD_H
#define SQ_SERVER_CMD_H

#include "sq_proto/jansson.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sq_server/mcp.h"

typedef struct sq_cmds sq_cmds;
typedef struct sq_cmd_call sq_cmd_call;

/* How a call ended. */
enum sq_cmd_outcome {
    SQ_CMD_OK,             /* executed; its result is not an error */
    SQ_CMD_ERROR,          /* executed and failed: an isError result, a
                            * protocol error, or a post-hook's failure */
    SQ_CMD_INVALID,        /* refused by the input schema */
    SQ_CMD_REFUSED,        /* refused by a pre-hook */
    SQ_CMD_BUSY,           /* no permit before the deadline */
    SQ_CMD_TIMEOUT,        /* the deadline passed while it ran */
    SQ_CMD_CANCELLED,      /* its caller was cancelled */
    SQ_CMD_UNAVAILABLE,    /* removed, or paused past the deadline */
    SQ_CMD_INPUT_REQUIRED, /* this round asked the client for input */
    SQ_CMD_BAD_OUTPUT,     /* structuredContent broke the output schema */
    SQ_CMD_NOUTCOMES
};
/* "ok", "error", "invalid", "refused", "busy", "timeout", "cancelled",
 * "unavailable", "input_required", "bad_output". */
const char *sq_cmd_outcome_name(int outcome);

/* Where a call is (sq_cmd_stage). */
enum sq_cmd_stage {
    SQ_CMD_STAGE_ADMIT, SQ_CMD_STAGE_PRE, SQ_CMD_STAGE_VALIDATE,
    SQ_CMD_STAGE_EXECUTE, SQ_CMD_STAGE_POST, SQ_CMD_STAGE_CLEANUP,
    SQ_CMD_STAGE_DONE
};

/* The command itself: as a tool handler (sq_server/mcp.h): SQ_MCP_OK
 * with *result a CallToolResult (an isError one for the command's own
 * failure), SQ_MCP_INPUT_REQUIRED (MCP calls only), or SQ_MCP_ERROR set
 * with sq_cmd_fail.  args is the call's arguments (an object; never
 * NULL); leave it unchanged. */
typedef int (*sq_cmd_exec_fn)(sq_cmd_call *c, json_t *args, void *data,
                              json_t **result);
/* A pre- or post-hook: 0 to go on; anything else stops the call (a
 * pre-hook: refused, a post-hook: failed), with the reason given by
 * sq_cmd_refuse, or a generic one. */
typedef int (*sq_cmd_hook_fn)(sq_cmd_call *c, void *data);
/* A cleanup: runs whatever happened (sq_cmd_outcome says what). */
typedef void (*sq_cmd_cleanup_fn)(sq_cmd_call *c, void *data);

enum {
    /* Over max_concurrent: fail at once (busy) instead of waiting for a
     * permit until the deadline. */
    SQ_CMD_NO_WAIT = 1u << 0,
    /* Leave the calls of this command out of the history (its figures
     * still count them). */
    SQ_CMD_NO_HISTORY = 1u << 1,
    /* Registered paused (sq_cmd_pause): listed, its calls wait until
     * sq_cmd_resume (a plugin's commands, until the plugin is active). */
    SQ_CMD_START_PAUSED = 1u << 2,
};

typedef struct sq_cmd_def {
    const char *name;          /* a tool name: 1-128 of [A-Za-z0-9_.-] */
    const char *title;         /* may be NULL */
    const char *description;
    json_t *input_schema;      /* an object schema (borrowed; referenced) */
    json_t *output_schema;     /* NULL or an object schema */
    json_t *annotations;       /* NULL or ToolAnnotations */
    unsigned tool_flags;       /* SQ_MCP_HIDDEN, SQ_MCP_TASK_* */
    unsigned flags;            /* SQ_CMD_* */
    sq_cmd_exec_fn execute;
    sq_cmd_hook_fn pre;        /* may be NULL */
    sq_cmd_hook_fn post;       /* may be NULL */
    sq_cmd_cleanup_fn cleanup; /* may be NULL */
    void *data;
    /* Called once the command is removed (or replaced) and no call uses
     * this definition any more; may be NULL. */
    void (*release)(void *data);
    size_t max_concurrent;     /* calls at once; 0: no limit */
    int64_t timeout;           /* ns from the call's start; 0: the
                                * system's default (sq_cmds_opts) */
    /* Arguments the history keeps as "[redacted]": top-level names, or
     * JSON pointers ("/auth/token") for nested ones; "*" hides them all.
     * NULL-terminated (copied), or NULL. */
    const char *const *redact;
} sq_cmd_def;

typedef struct sq_cmds_opts {
    size_t history_size;       /* entries kept; 0: 1,000 */
    int64_t default_timeout;   /* for commands without one; 0: none (the
                                * request's own deadline still applies) */
    size_t history_arg_bytes;  /* arguments longer than this (compact
                                * JSON) are not kept; 0: 4 KiB */
} sq_cmds_opts;

/* ------------------------------------------------------------ the system */

/* Creates the command system of server s and registers the built-in
 * commands (help, history, status) and the history resource.  0 or a
 * negative errno.  From a task of s's runtime; never waits long. */
int sq_cmds_create(sq_cmds **out, sq_srv *s, const sq_cmds_opts *opts);
/* Frees it: every command must have been removed or the server stopped
 * (no call in flight).  NULL is ignored. */
void sq_cmds_destroy(sq_cmds *sys);
/* The command system of a server (made by sq_srv_create), or NULL. */
sq_cmds *sq_srv_cmds(sq_srv *s);
sq_srv *sq_cmds_server(sq_cmds *sys);

/* Adds a stage hook for every command: stage SQ_CMD_STAGE_PRE or
 * SQ_CMD_STAGE_POST (fn an sq_cmd_hook_fn) or SQ_CMD_STAGE_CLEANUP (fn
 * an sq_cmd_cleanup_fn, cast to sq_cmd_hook_fn).  Hooks are added while
 * the server is being set up, before calls: they are not guarded against
 * concurrent calls.  At most 16 per stage.  0, -EINVAL, -ENOSPC. */
int sq_cmd_hook_add(sq_cmds *sys, int stage, sq_cmd_hook_fn fn, void *data);

/* Adds a member `name` to the built-in status command's result: fn(data)
 * gives its value (a new reference, or NULL to leave it out) on every
 * call.  At most 4; while the server is set up.  0, -ENOSPC. */
int sq_cmds_status_add(sq_cmds *sys, const char *name, json_t *(*fn)(void *),
                       void *data);

/* ------------------------------------------------------------ commands */

/* Registers a command and its tool (the definition is copied, its JSON
 * referenced, its schemas compiled).  0; -EEXIST (a tool of that name),
 * -EINVAL (a bad definition or a schema the validator refuses: the
 * reason is in err, errlen bytes; err may be NULL), -ENOMEM.  Never waits
 * long. */
int sq_cmd_add(sq_cmds *sys, const sq_cmd_def *def, char *err, size_t errlen);

/* Removes a command: new calls are refused (SQ_CMD_UNAVAILABLE, and once
 * its tool is gone, "unknown tool"), calls in flight finish; at the
 * deadline those still running are aborted, and it waits for them to
 * end.  Then the definition's release is called.  0, -ENOENT.  Waits
 * (with cancellation masked: it always completes). */
int sq_cmd_remove(sq_cmds *sys, const char *name, int64_t deadline);

/* Pauses a command: new calls wait (until it is resumed, or until their
 * deadline: SQ_CMD_UNAVAILABLE), and this waits until the calls in
 * flight have finished, aborting those still running at the deadline.
 * Its tool stays listed.  0, -ENOENT, -EALREADY (paused already).  Waits
 * (cancellation masked). */
int sq_cmd_pause(sq_cmds *sys, const char *name, int64_t deadline);
/* Replaces the definition of a paused command (a reload): the name must
 * match; the tool's listing changes if the description does.  The old
 * definition's release is called.  0, -ENOENT, -EBUSY (not paused),
 * -EINVAL (with err), -ENOMEM. */
int sq_cmd_replace(sq_cmds *sys, const sq_cmd_def *def, char *err,
                   size_t errlen);
/* Replaces the definition of a paused command with nothing in flight by
 * one with the same listing (schemas, title, description, limits) whose
 * execute is fn, without hooks, data or release; the old definition is
 * released now.  For a reload: the old code goes before it is unloaded,
 * while the command stays listed and its callers wait.  0, -ENOENT,
 * -EBUSY, -ENOMEM. */
int sq_cmd_stub(sq_cmds *sys, const char *name, sq_cmd_exec_fn fn);
/* Lets a paused command's calls in again (the waiting ones first).
 * 0, -ENOENT. */
int sq_cmd_resume(sq_cmds *sys, const char *name);

/* Calls a command from the server itself or a plugin, through every
 * stage, in the calling task.  The call's deadline is the earlier of
 * `deadline` and the command's timeout.  Returns the outcome (>= 0) with
 * *result its CallToolResult (a new reference; an isError one for every
 * outcome but SQ_CMD_OK, with structuredContent {"error": outcome name,
 * "message": ...}), or -ENOENT (no such command), -ECANCELED (the caller
 * was cancelled: the call was, and its cleanup ran), -ENOMEM.  Waits. */
int sq_cmd_invoke(sq_cmds *sys, const char *name, json_t *args, int64_t deadline,
                json_t **result);

/* The figures of one command, or of all ({name: figures}) with name NULL:
 * a new object, or NULL (-ENOENT).  Never waits long. */
json_t *sq_cmd_stats(sq_cmds *sys, const char *name);

/* ------------------------------------------------------------ the history */

/* The history, newest first: at most `limit` entries (0: all) of
 * command `name` (NULL: any) with outcome `outcome` (-1: any), as an
 * array of {seq, command, arguments, outcome, started, duration_ms,
 * error?, caller}.  A new array.  Never waits long. */
json_t *sq_cmd_history(sq_cmds *sys, const char *name, int outcome,
                       size_t limit);

/* -------------------------------------------------------- inside a call */

/* The MCP request the call serves, or NULL (sq_cmd_invoke). */
sq_mcp_req *sq_cmd_req(sq_cmd_call *c);
const char *sq_cmd_name(const sq_cmd_call *c);
/* The arguments (borrowed; an object). */
json_t *sq_cmd_args(sq_cmd_call *c);
/* Where the call is, and (from post-hooks and cleanup on) how it ended
 * so far. */
int sq_cmd_stage(const sq_cmd_call *c);
int sq_cmd_outcome(const sq_cmd_call *c);
/* The result so far (borrowed), or NULL; post-hooks may replace it
 * (new is stolen). */
json_t *sq_cmd_result(sq_cmd_call *c);
void sq_cmd_set_result(sq_cmd_call *c, json_t *result);
/* The call's deadline (sq_now clock; SQ_FOREVER if none). */
int64_t sq_cmd_deadline(const sq_cmd_call *c);
/* A word for hooks to share with the command and its cleanup. */
void *sq_cmd_user(const sq_cmd_call *c);
void sq_cmd_set_user(sq_cmd_call *c, void *user);
/* From a hook: the reason it stops the call (a tool error's text).
 * Returns -1, for `return sq_cmd_refuse(c, ...)`. */
int sq_cmd_refuse(sq_cmd_call *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* From execute: fails the call with a JSON-RPC error (MCP calls get it as
 * the response's error; direct calls an isError result with it); data is
 * stolen (may be NULL).  Returns SQ_MCP_ERROR. */
int sq_cmd_fail(sq_cmd_call *c, int code, const char *message, json_t *data);

#endif
