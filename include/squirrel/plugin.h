/* Squirrel: the plugin ABI of squirreld (docs/plugins.md).
 *
 * A plugin is a shared object that squirreld loads into its own process
 * (`squirreld --plugin FILE`, the config file's "plugins", or the admin
 * tool plugin_admin).  It exports one symbol, the descriptor
 *
 *     SQ_PLUGIN_DEFINE(.name = "hello", .version = "1.0.0",
 *                      .init = hello_init, ...);
 *
 * and from its callbacks it registers commands (MCP tools with schemas,
 * hooks, limits and a history), resources, resource templates and
 * prompts through the host's table of functions (sq_plugin_host), which
 * init receives.
 *
 * Plugins are trusted code.  A plugin runs in the server's process, with
 * its privileges, its memory and its runtime: it can read every session's
 * data, crash or hang the server, and nothing isolates it.  Load only
 * plugins you would build into the server.
 *
 * One runtime.  A plugin links the same shared library squirreld uses
 * (libsquirrel.so: CMake `Squirrel::squirrel`, pkg-config `squirrel`), so
 * it may use the whole Squirrel API: its tasks run on the server's
 * workers, its locks are seen by the run-time checks (SQUIRREL_CHECK), and
 * a call that waits suspends only its task.  It never blocks a worker
 * thread: blocking work goes to the blocking pool (sq_blocking_run).
 * JSON values are jansson's (json_t, libjansson.so.4, which squirreld
 * uses too): a plugin that touches them links jansson.
 *
 * Versions.  SQ_PLUGIN_ABI_VERSION is (major << 16) | minor.  The host
 * loads a plugin built for the same major and a minor no newer than its
 * own; every table and definition starts with its size, so a newer host
 * reads an older plugin's structs, and a plugin can test whether the
 * host's table has a function (SQ_PLUGIN_HOST_HAS).  A change that would
 * break a plugin built before it raises the major.
 *
 * Life of a plugin (each step visible in the resource squirrel://plugins):
 *
 *   registered    loaded (dlopen on the blocking pool) and its descriptor
 *                 checked; waiting for its dependencies
 *   initializing  init, then start, each in a task of its own with a
 *                 deadline (30 s by default)
 *   active        its commands, resources and prompts are served
 *   shutting down new calls wait (reload) or are refused (unload); calls
 *                 in flight finish; then stop, then destroy
 *   disabled      unloaded (the record stays, for the transitions)
 *   failed        a callback failed or passed its deadline, a dependency
 *                 failed, or the descriptor was refused; the reason says
 *                 which
 *
 * Plugins start in dependency order (a plugin after those it depends on)
 * and stop in the reverse order.  Commands a plugin registers during init
 * are listed at once, but their calls wait until it is active.  What it
 * registered is removed for it when it is unloaded: a plugin need not
 * remove anything itself.
 *
 * Callbacks run in tasks of the server's runtime.  Each may wait (it is a
 * task); each has the deadline above, after which its task is aborted
 * (its waits return -ECANCELED) and the plugin marked failed.  A callback
 * returns 0, or a negative errno on failure (init and start: the plugin
 * and every plugin that depends on it are marked failed; stop: logged).
 */
#ifndef SQUIRREL_PLUGIN_H
#define SQUIRREL_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SQ_PLUGIN_ABI_MAJOR 1
#define SQ_PLUGIN_ABI_MINOR 0
#define SQ_PLUGIN_ABI_VERSION ((SQ_PLUGIN_ABI_MAJOR << 16) | SQ_PLUGIN_ABI_MINOR)

/* The name of the one symbol a plugin exports. */
#define SQ_PLUGIN_SYMBOL "sq_plugin_descriptor"

struct json_t; /* jansson's */

/* The host's handle of one loaded plugin (opaque). */
typedef struct sq_plugin sq_plugin;
/* One call being served for the plugin: a command's call, a resource
 * read, a prompt (opaque; valid during the callback it is given to). */
typedef struct sq_plugin_call sq_plugin_call;

/* What handlers return (the values of the server's SQ_MCP_*). */
enum {
    SQ_PLUGIN_OK = 0,             /* *result is set */
    SQ_PLUGIN_INPUT_REQUIRED = 1, /* *result asks the client for input */
    SQ_PLUGIN_ERROR = -1,         /* an error set with host->fail */
};

/* Log levels (RFC 5424 order, least severe first), as MCP names them. */
enum {
    SQ_PLUGIN_DEBUG, SQ_PLUGIN_INFO, SQ_PLUGIN_NOTICE, SQ_PLUGIN_WARNING,
    SQ_PLUGIN_ERROR_LEVEL, SQ_PLUGIN_CRITICAL, SQ_PLUGIN_ALERT,
    SQ_PLUGIN_EMERGENCY
};

/* ---------------------------------------------------------- definitions */

/* A command's stages (docs/commands.md): pre-hooks, validation of the
 * arguments against input_schema, execute, post-hooks, cleanup. */
typedef int (*sq_plugin_execute_fn)(sq_plugin_call *c, struct json_t *args,
                                    void *data, struct json_t **result);
typedef int (*sq_plugin_hook_fn)(sq_plugin_call *c, void *data);
typedef void (*sq_plugin_cleanup_fn)(sq_plugin_call *c, void *data);

/* Command flags. */
enum {
    SQ_PLUGIN_CMD_HIDDEN = 1u << 0,  /* callable, not listed */
    SQ_PLUGIN_CMD_NO_WAIT = 1u << 1, /* over max_concurrent: fail at once */
    SQ_PLUGIN_CMD_NO_HISTORY = 1u << 2,
};

typedef struct sq_plugin_command {
    uint32_t size;             /* sizeof(sq_plugin_command) */
    const char *name;          /* a tool name: 1-128 of [A-Za-z0-9_.-] */
    const char *title;         /* may be NULL */
    const char *description;
    struct json_t *input_schema;  /* object schema, JSON Schema 2020-12 */
    struct json_t *output_schema; /* NULL, or structuredContent's schema */
    struct json_t *annotations;   /* NULL or MCP ToolAnnotations */
    sq_plugin_execute_fn execute;
    sq_plugin_hook_fn pre;     /* may be NULL; non-zero refuses the call */
    sq_plugin_hook_fn post;    /* may be NULL; non-zero fails the call */
    sq_plugin_cleanup_fn cleanup; /* may be NULL; always runs */
    void *data;
    void (*release)(void *data);  /* when no call uses data any more */
    uint32_t flags;            /* SQ_PLUGIN_CMD_* */
    uint32_t max_concurrent;   /* calls at once; 0: no limit */
    int64_t timeout_ns;        /* per call; 0: none of its own */
    const char *const *redact; /* argument names or JSON pointers the
                                * history hides; "*": all.  NULL-ended */
} sq_plugin_command;

typedef int (*sq_plugin_read_fn)(sq_plugin_call *c, const char *uri,
                                 void *data, struct json_t **result);
typedef int (*sq_plugin_prompt_fn)(sq_plugin_call *c, struct json_t *args,
                                   void *data, struct json_t **result);

/* A resource: read returns a ReadResourceResult ({"contents": [...]}). */
typedef struct sq_plugin_resource {
    uint32_t size;
    const char *uri;
    const char *name;
    const char *title;
    const char *description;
    const char *mime_type;
    sq_plugin_read_fn read;
    void *data;
    void (*release)(void *data);
} sq_plugin_resource;

/* A resource template (RFC 6570, simple {var} only): reads of URIs it
 * matches go to read. */
typedef struct sq_plugin_template {
    uint32_t size;
    const char *uri_template;
    const char *name;
    const char *title;
    const char *description;
    const char *mime_type;
    sq_plugin_read_fn read;
    void *data;
    void (*release)(void *data);
} sq_plugin_template;

/* A prompt: get returns a GetPromptResult. */
typedef struct sq_plugin_prompt {
    uint32_t size;
    const char *name;
    const char *title;
    const char *description;
    struct json_t *arguments;  /* [{name, description?, required?}] */
    sq_plugin_prompt_fn get;
    void *data;
    void (*release)(void *data);
} sq_plugin_prompt;

/* ------------------------------------------------------------- the host */

/* The host's functions.  Every function may be called from any task of
 * the server's runtime (the plugin's own tasks included) unless it says
 * otherwise; none may be called from a thread outside it.  Errors are
 * negative errno codes. */
typedef struct sq_plugin_host {
    uint32_t size;             /* sizeof(sq_plugin_host) of the host */
    uint32_t abi_version;      /* the host's SQ_PLUGIN_ABI_VERSION */
    const char *server_version;

    /* ---- the plugin itself */
    const char *(*name)(sq_plugin *p);
    /* A line in the server's log (stderr), component "plugin:<name>". */
    void (*log)(sq_plugin *p, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* ---- registering (from init, start, or later while active).  What
     * is registered belongs to the plugin: it goes when the plugin is
     * unloaded.  Definitions are copied; JSON values referenced.  0,
     * -EEXIST (the name or URI is taken), -EINVAL (a bad definition or
     * schema: the log says why), -ENOMEM, -ESHUTDOWN (shutting down). */
    int (*add_command)(sq_plugin *p, const sq_plugin_command *def);
    int (*add_resource)(sq_plugin *p, const sq_plugin_resource *def);
    int (*add_template)(sq_plugin *p, const sq_plugin_template *def);
    int (*add_prompt)(sq_plugin *p, const sq_plugin_prompt *def);
    /* Removes one of the plugin's own (by name, URI or URI template):
     * calls in flight finish first.  0, -ENOENT.  Waits. */
    int (*remove_command)(sq_plugin *p, const char *name);
    int (*remove_resource)(sq_plugin *p, const char *uri);
    int (*remove_template)(sq_plugin *p, const char *uri_template);
    int (*remove_prompt)(sq_plugin *p, const char *name);
    /* Tells subscribers that a resource changed.  Never waits. */
    void (*resource_updated)(sq_plugin *p, const char *uri);

    /* ---- inside a call (c as given to the callback) */
    /* Progress for the client, if it asked (else nothing).  Never waits. */
    int (*progress)(sq_plugin_call *c, double progress, double total,
                    const char *message);
    /* A notifications/message to the client at `level`, if its level
     * lets it through; data borrowed.  Never waits. */
    int (*notify)(sq_plugin_call *c, int level, struct json_t *data);
    /* Fails the call with a JSON-RPC error (data stolen, may be NULL).
     * Returns SQ_PLUGIN_ERROR, for `return host->fail(...)`. */
    int (*fail)(sq_plugin_call *c, int code, const char *message,
                struct json_t *data);
    /* The call's deadline (sq_now clock). */
    int64_t (*deadline)(sq_plugin_call *c);
    /* Whether the client declared a capability ("sampling",
     * "elicitation", "roots", "extensions.<id>"); false outside MCP. */
    bool (*client_has)(sq_plugin_call *c, const char *capability);
    /* Multi-round calls: the client's answer to input request `key`
     * (borrowed) and the state given back (borrowed), or NULL. */
    struct json_t *(*input)(sq_plugin_call *c, const char *key);
    struct json_t *(*state)(sq_plugin_call *c);
    /* A word the command's hooks, execute and cleanup share. */
    void *(*user)(sq_plugin_call *c);
    void (*set_user)(sq_plugin_call *c, void *user);
    /* Hooks: the reason a hook stops the call; returns -1. */
    int (*refuse)(sq_plugin_call *c, const char *reason);
    /* Post-hooks and cleanup: the result so far (borrowed) and the
     * outcome ("ok", "error", "timeout", ...; docs/commands.md). */
    struct json_t *(*result)(sq_plugin_call *c);
    const char *(*outcome)(sq_plugin_call *c);

    /* ---- other commands: calls a command of the server or of another
     * plugin through all its stages, in the calling task.  Returns 0 with
     * *result its CallToolResult (isError set when it failed), -ENOENT,
     * -ECANCELED, -ENOMEM.  Waits. */
    int (*call_command)(sq_plugin *p, const char *name, struct json_t *args,
                        int64_t deadline, struct json_t **result);

    /* ---- the context manager (docs/contexts.md): named, versioned JSON
     * documents.  Absent from hosts older than this header (test with
     * SQ_PLUGIN_HOST_HAS).  Each returns 0 or a negative errno, and on
     * failure a sentence in err (errlen bytes) that starts with the
     * manager's code name ("not_found: ...", "version_mismatch: ...");
     * -ENOTSUP when the server runs without contexts (--store none).
     * Errnos: -ENOENT (no such context), -EEXIST (create: it exists),
     * -ESTALE (patch: not at expect_version), -EINVAL, -EFBIG, -ENOSPC,
     * -EIO (the store failed), -ESHUTDOWN, -ECANCELED, -ENOMEM.  Waits
     * (changes are acknowledged once durable).  ctx_get gives a new
     * document (the caller's to change and release); documents and
     * patches passed in are borrowed (copied).  Changes are recorded as
     * made by "plugin:NAME". */
    int (*ctx_get)(sq_plugin *p, const char *id, struct json_t **document,
                   uint64_t *version, char *err, size_t errlen);
    int (*ctx_create)(sq_plugin *p, const char *id, struct json_t *document,
                      uint64_t *version, char *err, size_t errlen);
    /* A JSON Patch (RFC 6902) applied if the context is at expect_version
     * (0: whatever its version). */
    int (*ctx_patch)(sq_plugin *p, const char *id, struct json_t *patch,
                     uint64_t expect_version, uint64_t *version, char *err,
                     size_t errlen);
    int (*ctx_delete)(sq_plugin *p, const char *id, char *err, size_t errlen);
} sq_plugin_host;

/* Does the host's table have `field` (a newer plugin on an older host)? */
#define SQ_PLUGIN_HOST_HAS(host, field)                                   \
    ((host)->size >= offsetof(sq_plugin_host, field) + sizeof((host)->field) \
     && (host)->field != NULL)

/* ---------------------------------------------------------- the plugin */

typedef struct sq_plugin_desc {
    uint32_t abi_version;      /* SQ_PLUGIN_ABI_VERSION (the macro sets it) */
    uint32_t size;             /* sizeof(sq_plugin_desc) (likewise) */
    const char *name;          /* 1-64 of [a-z0-9_-], unique in the server */
    const char *version;       /* free text, e.g. "1.2.0" */
    const char *description;   /* may be NULL */
    /* The plugins it needs active before it starts: their names, ended by
     * NULL; NULL if none. */
    const char *const *depends;
    /* init: set up, register what it offers; *state is handed to the
     * other callbacks.  start: begin working (tasks ...).  stop: end
     * every task and wait it started (calls into it have ended already).
     * destroy: free what init made (never fails).  Any may be NULL. */
    int (*init)(sq_plugin *p, const sq_plugin_host *host, void **state);
    int (*start)(sq_plugin *p, void *state);
    int (*stop)(sq_plugin *p, void *state);
    void (*destroy)(sq_plugin *p, void *state);
} sq_plugin_desc;

/* Defines the descriptor: SQ_PLUGIN_DEFINE(.name = "x", .init = ...); */
#define SQ_PLUGIN_DEFINE(...)                                             \
    __attribute__((visibility("default"))) const sq_plugin_desc           \
        sq_plugin_descriptor = {.abi_version = SQ_PLUGIN_ABI_VERSION,     \
                                .size = sizeof(sq_plugin_desc), __VA_ARGS__}

#ifdef __cplusplus
}
#endif

#endif
