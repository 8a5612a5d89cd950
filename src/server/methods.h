/* The methods of MCP as squirreld serves them (methods.c), called by
 * dispatch.c.  Each returns SQ_MCP_OK with *result, SQ_MCP_INPUT_REQUIRED
 * (multi-round methods) or SQ_MCP_ERROR (sq_mcp_fail). */
#ifndef SQ_SERVER_METHODS_H
#define SQ_SERVER_METHODS_H

#include "srv.h"

#define SQ_SRV_VERSION "0.1.0"

typedef int (*sq_method_fn)(sq_mcp_req *r, json_t **result);

int sq_m_ping(sq_mcp_req *r, json_t **result);
int sq_m_set_level(sq_mcp_req *r, json_t **result);
int sq_m_tools_list(sq_mcp_req *r, json_t **result);
int sq_m_tools_call(sq_mcp_req *r, json_t **result);
int sq_m_resources_list(sq_mcp_req *r, json_t **result);
int sq_m_templates_list(sq_mcp_req *r, json_t **result);
int sq_m_resources_read(sq_mcp_req *r, json_t **result);
int sq_m_subscribe(sq_mcp_req *r, json_t **result);
int sq_m_unsubscribe(sq_mcp_req *r, json_t **result);
int sq_m_prompts_list(sq_mcp_req *r, json_t **result);
int sq_m_prompts_get(sq_mcp_req *r, json_t **result);
int sq_m_complete(sq_mcp_req *r, json_t **result);
int sq_m_discover(sq_mcp_req *r, json_t **result);
int sq_m_listen(sq_mcp_req *r, json_t **result);
int sq_m_tasks_get(sq_mcp_req *r, json_t **result);
int sq_m_tasks_update(sq_mcp_req *r, json_t **result);
int sq_m_tasks_cancel(sq_mcp_req *r, json_t **result);

/* True if `name` is a method of that era (dispatch.c's table). */
bool sq_method_exists(const char *name, int era);
/* Fails r with the era's "resource not found" (dispatch.c). */
int sq_not_found(sq_mcp_req *r, const char *what, const char *uri);
/* {name, title, version}: the server's Implementation object (a new
 * reference to one shared by every answer: never modify it). */
json_t *sq_server_info(sq_srv *s);
/* Encodes s's 2026-07-28 result envelope once (s->env_meta,
 * s->env_complete); left NULL if memory runs out (then each answer
 * carries its own).  Never waits. */
void sq_srv_envelope_init(sq_srv *s);
/* The server's capabilities in an era (methods.c). */
json_t *sq_server_caps(sq_srv *s, int era);
/* The result of a legacy initialize for the version the client asked,
 * with the negotiated version in *version (static). */
json_t *sq_initialize_result(sq_srv *s, const char *asked, const char **version);

#endif
