/* Dispatch (srv.h): one request, in its own task, from method to response
 * text, for both eras.  Everything that differs between the eras is in
 * this file, in the table of methods and in `decorate`/`era_code`:
 *  - which methods exist (legacy: initialize, ping, logging/setLevel,
 *    resources/subscribe|unsubscribe; 2026-07-28: server/discover,
 *    subscriptions/listen; removed methods answer -32601);
 *  - the result's envelope (2026-07-28: resultType on every result,
 *    ttlMs/cacheScope on cacheable ones, serverInfo in _meta);
 *  - error codes (resource not found: -32002 legacy, -32602 current);
 *  - multi-round requests (2026-07-28: an input_required result with a
 *    signed requestState; legacy: our own requests to the client, asked
 *    on the request's stream, then the handler again);
 *  - the log level (legacy: the session's; current: the request's).
 * Methods themselves are written once (methods.c). */
#include "methods.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ERA_L 1u
#define ERA_M 2u
#define ERA_BOTH (ERA_L | ERA_M)

typedef struct method {
    const char *name;
    unsigned eras;
    unsigned flags;
    sq_method_fn fn;
} method;

enum {
    M_CACHEABLE = 1u << 0,  /* ttlMs/cacheScope on its result */
    M_MRTR = 1u << 1,       /* may answer input_required */
    M_ANY_TIME = 1u << 2,   /* legacy: allowed before initialized */
};

static const method methods[] = {
    {"ping", ERA_L, M_ANY_TIME, sq_m_ping},
    {"logging/setLevel", ERA_L, 0, sq_m_set_level},
    {"tools/list", ERA_BOTH, M_CACHEABLE, sq_m_tools_list},
    {"tools/call", ERA_BOTH, M_MRTR, sq_m_tools_call},
    {"resources/list", ERA_BOTH, M_CACHEABLE, sq_m_resources_list},
    {"resources/templates/list", ERA_BOTH, M_CACHEABLE, sq_m_templates_list},
    {"resources/read", ERA_BOTH, M_CACHEABLE | M_MRTR, sq_m_resources_read},
    {"resources/subscribe", ERA_L, 0, sq_m_subscribe},
    {"resources/unsubscribe", ERA_L, 0, sq_m_unsubscribe},
    {"prompts/list", ERA_BOTH, M_CACHEABLE, sq_m_prompts_list},
    {"prompts/get", ERA_BOTH, M_MRTR, sq_m_prompts_get},
    {"completion/complete", ERA_BOTH, 0, sq_m_complete},
    {"server/discover", ERA_M, M_CACHEABLE, sq_m_discover},
    {"subscriptions/listen", ERA_M, 0, sq_m_listen},
    {"tasks/get", ERA_M, 0, sq_m_tasks_get},
    {"tasks/update", ERA_M, 0, sq_m_tasks_update},
    {"tasks/cancel", ERA_M, 0, sq_m_tasks_cancel},
};

static const method *find_method(const char *name)
{
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if (strcmp(methods[i].name, name) == 0)
            return &methods[i];
    return NULL;
}

bool sq_method_exists(const char *name, int era)
{
    const method *m = find_method(name);
    return m && (m->eras & (era == SQ_MCP_MODERN ? ERA_M : ERA_L));
}

/* ------------------------------------------------------------- errors */

void sq_req_error_text(sq_mcp_req *r, sq__strbuf *b, int code,
                       const char *message, json_t *data)
{
    r->failed = true;
    sq_rpc_write_error(b, r->id, code, message, data);
}

int sq_not_found(sq_mcp_req *r, const char *what, const char *uri)
{
    /* SEP-2164: -32602 with data.uri from 2026-07-28; -32002 before. */
    int code = r->era == SQ_MCP_MODERN ? SQ_RPC_INVALID_PARAMS
                                       : SQ_MCP_ERR_RESOURCE_NOT_FOUND_LEGACY;
    char msg[256];
    snprintf(msg, sizeof msg, "%s not found: %s", what, uri);
    return sq_mcp_fail(r, code, msg, json_pack("{s:s}", "uri", uri));
}

/* ----------------------------------------------------------- decorate */

#define META_SERVER_INFO "io.modelcontextprotocol/serverInfo"

json_t *sq_server_info(sq_srv *s)
{
    /* Made once per server and shared by every answer (never modified:
     * sharing is safe, see sq_proto/jansson.h): building it for each
     * 2026-07-28 result cost that era ~3% of the server's CPU per call
     * (bench mcp.http_stateless.c32). */
    if (s->server_info)
        return json_incref(s->server_info);
    return json_pack("{s:s,s:s,s:s}", "name", s->cfg.server_name, "title",
                     "Squirrel MCP server", "version", SQ_SRV_VERSION);
}

void sq_srv_envelope_init(sq_srv *s)
{
    if (!s->server_info)
        return;
    char *info = json_dumps(s->server_info, JSON_COMPACT);
    if (!info)
        return;
    sq__strbuf meta = SQ__STRBUF_INIT, all = SQ__STRBUF_INIT;
    sq__strbuf_printf(&meta, "\"_meta\":{\"%s\":%s}", META_SERVER_INFO, info);
    sq__strbuf_printf(&all, "\"resultType\":\"complete\",%s", sq__strbuf_str(&meta));
    free(info);
    if (meta.failed || all.failed) {
        sq__strbuf_free(&meta);
        sq__strbuf_free(&all);
        return;
    }
    s->env_meta = meta.buf;
    s->env_complete = all.buf;
}

/* The era's envelope around a complete result.  With `text` (the answer
 * is written with sq_rpc_write_result_with) the members that are the same
 * in every answer (resultType "complete", a _meta of serverInfo only) are
 * not added to res but returned as the server's text, encoded once:
 * building and encoding them per answer cost the 2026-07-28 era about a
 * tenth of its server CPU per call (bench mcp.http_stateless.c32).  NULL:
 * nothing to add (everything is in res). */
static const char *decorate(sq_mcp_req *r, const method *m, json_t *res, bool text)
{
    if (r->era == SQ_MCP_LEGACY) {
        json_object_del(res, "resultType");
        json_object_del(res, "ttlMs");
        json_object_del(res, "cacheScope");
        return NULL;
    }
    bool typed = json_object_get(res, "resultType") != NULL;
    text = text && json_is_object(res);
    if (!typed && !text)
        json_object_set_new(res, "resultType", json_string("complete"));
    const char *type = typed ? json_string_value(json_object_get(res, "resultType"))
                             : "complete";
    if ((m->flags & M_CACHEABLE) && type && strcmp(type, "complete") == 0) {
        /* Lists change only with list_changed (which listeners hear); a
         * read may change at any time: handlers set their own. */
        if (!json_object_get(res, "ttlMs"))
            json_object_set_new(res, "ttlMs", json_integer(0));
        if (!json_object_get(res, "cacheScope"))
            json_object_set_new(res, "cacheScope", json_string("private"));
    }
    json_t *meta = json_object_get(res, "_meta");
    if (!meta && text && r->srv->env_meta)
        return typed ? r->srv->env_meta : r->srv->env_complete;
    if (!json_is_object(meta)) {
        meta = json_object();
        json_object_set_new(res, "_meta", meta);
    }
    if (!json_object_get(meta, META_SERVER_INFO))
        json_object_set_new(meta, META_SERVER_INFO, sq_server_info(r->srv));
    return text && !typed ? "\"resultType\":\"complete\"" : NULL;
}

/* ------------------------------------------------------ multiple rounds */

/* The capability an input request needs from the client. */
static const char *input_cap(const char *method)
{
    if (strcmp(method, "elicitation/create") == 0)
        return "elicitation";
    if (strcmp(method, "sampling/createMessage") == 0)
        return "sampling";
    if (strcmp(method, "roots/list") == 0)
        return "roots";
    return NULL;
}

/* Checks a handler's inputRequests against what the request's client
 * declared: 0, or SQ_MCP_ERROR with -32021 naming what is missing. */
static int check_inputs(sq_mcp_req *r, json_t *reqs)
{
    json_t *missing = json_object();
    const char *key;
    json_t *ir;
    json_object_foreach(reqs, key, ir) {
        const char *meth = json_string_value(json_object_get(ir, "method"));
        const char *cap = meth ? input_cap(meth) : NULL;
        if (!cap)
            return sq_mcp_fail(r, SQ_RPC_INTERNAL_ERROR,
                               "a handler asked the client for an unknown kind of input",
                               NULL);
        if (!sq_mcp_client_has(r, cap))
            json_object_set_new(missing, cap, json_object());
    }
    if (json_object_size(missing) == 0) {
        json_decref(missing);
        return 0;
    }
    return sq_mcp_fail(r, SQ_MCP_ERR_MISSING_CAPABILITY,
                       "the request needs a client capability it did not declare",
                       json_pack("{s:o}", "requiredCapabilities", missing));
}

/* What names a request for its state's binding: the tool, prompt or URI. */
static const char *request_name(sq_mcp_req *r)
{
    json_t *n = json_object_get(r->params, "name");
    if (!n)
        n = json_object_get(r->params, "uri");
    return json_is_string(n) ? json_string_value(n) : "";
}

/* 2026-07-28: takes inputResponses and requestState from the params.
 * 0, or SQ_MCP_ERROR. */
static int take_round(sq_mcp_req *r)
{
    json_t *in = json_object_get(r->params, "inputResponses");
    if (in && !json_is_object(in))
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS,
                           "inputResponses must be an object", NULL);
    json_t *st = json_object_get(r->params, "requestState");
    if (st) {
        if (!json_is_string(st) ||
            sq_mrtr_open(r->srv, r->method, request_name(r),
                         json_string_value(st), &r->state) != 0)
            return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS,
                               "requestState failed its integrity check "
                               "(tampered, expired, or made for another request)",
                               NULL);
    }
    r->inputs = in ? json_incref(in) : NULL;
    return 0;
}

/* 2026-07-28: the input_required result, with the state signed. */
static json_t *input_required(sq_mcp_req *r, json_t *ask)
{
    json_t *res = json_object();
    json_t *reqs = json_object_get(ask, "inputRequests");
    if (json_object_size(reqs))
        json_object_set(res, "inputRequests", reqs);
    json_t *state = json_object_get(ask, "state");
    if (state || !json_object_size(reqs)) {
        char *sealed = sq_mrtr_seal(r->srv, r->method, request_name(r), state);
        if (!sealed) {
            json_decref(res);
            return NULL;
        }
        json_object_set_new(res, "requestState", json_string(sealed));
        free(sealed);
    }
    json_object_set_new(res, "resultType", json_string("input_required"));
    return res;
}

/* Legacy: asks the client each input request on the request's stream and
 * collects the answers into r->inputs, the state into r->state, for the
 * next round.  0 or SQ_MCP_ERROR. */
static int ask_client(sq_mcp_req *r, json_t *ask)
{
    if (!r->sess)
        return sq_mcp_fail(r, SQ_RPC_INTERNAL_ERROR, "no session to ask", NULL);
    json_t *answers = json_object();
    const char *key;
    json_t *ir;
    json_object_foreach(json_object_get(ask, "inputRequests"), key, ir) {
        json_t *got = NULL;
        json_t *params = json_object_get(ir, "params");
        int rc = sq_sess_ask(r->sess, r, json_string_value(json_object_get(ir, "method")),
                             params, &got);
        if (rc == -EPROTO) {
            json_decref(answers);
            /* The client refused (a JSON-RPC error): the request fails
             * with its error. */
            json_t *code = json_object_get(got, "code");
            json_t *msg = json_object_get(got, "message");
            int c = json_is_integer(code) ? (int)json_integer_value(code)
                                          : SQ_RPC_INTERNAL_ERROR;
            sq_mcp_fail(r, c, json_is_string(msg) ? json_string_value(msg)
                                                  : "the client refused",
                        json_incref(json_object_get(got, "data")));
            json_decref(got);
            return SQ_MCP_ERROR;
        }
        if (rc != 0) {
            json_decref(answers);
            return sq_mcp_fail(r, SQ_RPC_INTERNAL_ERROR,
                               rc == -ETIMEDOUT ? "the client did not answer in time"
                                                : "the client could not be asked",
                               NULL);
        }
        json_object_set_new(answers, key, got);
    }
    json_decref(r->inputs);
    r->inputs = answers;
    json_decref(r->state);
    r->state = json_incref(json_object_get(ask, "state"));
    return 0;
}

/* Legacy rounds are bounded: a handler that keeps asking fails. */
#define LEGACY_ROUNDS 8

/* ------------------------------------------------------------ dispatch */

void sq_dispatch(sq_mcp_req *r, sq__strbuf *b)
{
    const method *m = find_method(r->method);
    unsigned era = r->era == SQ_MCP_MODERN ? ERA_M : ERA_L;
    if (!m || !(m->eras & era)) {
        char msg[200];
        snprintf(msg, sizeof msg, "Method not found: %.150s", r->method);
        sq_req_error_text(r, b, SQ_RPC_METHOD_NOT_FOUND, msg, NULL);
        return;
    }
    json_t *res = NULL;
    int rc = SQ_MCP_OK;
    if (r->era == SQ_MCP_MODERN && (m->flags & M_MRTR))
        rc = take_round(r) == 0 ? SQ_MCP_OK : SQ_MCP_ERROR;
    for (int round = 0; rc == SQ_MCP_OK; round++) {
        res = NULL;
        rc = m->fn(r, &res);
        if (rc != SQ_MCP_INPUT_REQUIRED)
            break;
        json_t *ask = res;
        res = NULL;
        if (r->taskrec) {
            /* A task asks through tasks/get and tasks/update. */
            rc = sq_task_wait_input(r, ask) == 0 ? SQ_MCP_OK : SQ_MCP_ERROR;
            json_decref(ask);
            if (rc == SQ_MCP_OK)
                continue;
            break;
        }
        if (!(m->flags & M_MRTR) || !json_is_object(ask)) {
            rc = sq_mcp_fail(r, SQ_RPC_INTERNAL_ERROR,
                             "input is required by a method that cannot ask for it",
                             NULL);
        } else if ((rc = check_inputs(r, json_object_get(ask, "inputRequests"))) == 0) {
            if (r->era == SQ_MCP_MODERN) {
                res = input_required(r, ask);
                rc = res ? SQ_MCP_OK : sq_mcp_fail(r, SQ_RPC_INTERNAL_ERROR,
                                                   "out of memory", NULL);
            } else if (round + 1 >= LEGACY_ROUNDS) {
                rc = sq_mcp_fail(r, SQ_RPC_INTERNAL_ERROR,
                                 "the request asked the client too many times", NULL);
            } else {
                rc = ask_client(r, ask);
                if (rc == 0) {
                    json_decref(ask);
                    continue; /* the next round, with the answers */
                }
            }
        }
        json_decref(ask);
        break;
    }
    if (r->taskrec) {
        /* Answered already (CreateTaskResult): the outcome is the task's. */
        if (rc == SQ_MCP_OK && res)
            decorate(r, m, res, false);
        sq_task_settle(r, rc, res);
    } else if (rc == SQ_MCP_OK && res) {
        sq_rpc_write_result_with(b, r->id, res, decorate(r, m, res, true));
    } else if (rc == SQ_MCP_OK) {
        sq_req_error_text(r, b, SQ_RPC_INTERNAL_ERROR, "no result", NULL);
    } else {
        if (!r->err_msg)
            sq_mcp_fail(r, SQ_RPC_INTERNAL_ERROR, "internal error", NULL);
        sq_req_error_text(r, b, r->err_code, r->err_msg, r->err_data);
    }
    json_decref(res);
}
