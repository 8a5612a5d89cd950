/* The context manager's MCP side (tools.c: the handlers; tools_def.c: the
 * tools' definitions and schemas, and the component's start and stop,
 * called by the server). */
#ifndef SQ_CTX_TOOLS_H
#define SQ_CTX_TOOLS_H

#include "srv.h"
#include "sq_server/ctx.h"

/* The _meta keys of resource notifications and reads: the version a
 * change made, and its kind. */
#define CTX_META_VERSION "squirrel/version"
#define CTX_META_KIND "squirrel/kind"

typedef struct ctx_tools {
    sq_srv *srv;
    sq_ctx_mgr *mgr;
    size_t page;            /* list pages (the server's page_size) */
    /* "store" health: failed once a commit failed (the manager then
     * refuses changes until squirreld restarts). */
    sq_health_component *health;
} ctx_tools;

typedef struct ctx_tool_fn {
    const char *name;
    sq_mcp_tool_fn fn;
} ctx_tool_fn;
extern const ctx_tool_fn ctx_tool_fns[]; /* ends with a NULL name */

typedef struct ctx_resource_fns {
    sq_mcp_read_fn read;
    sq_mcp_list_fn list;
    sq_mcp_complete_fn complete;
    void (*on_change)(void *arg, const sq_ctx_event *ev);
    void (*on_list_changed)(void *arg);
} ctx_resource_fns;
extern const ctx_resource_fns ctx_resource;

#endif
