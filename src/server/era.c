/* The 2026-07-28 era's request envelope (srv.h), and the versions of the
 * legacy era.  Which era a message belongs to is decided per message:
 * one whose params._meta carries io.modelcontextprotocol/protocolVersion
 * is of the current era; any other is legacy (docs/server.md, "Eras"). */
#include "srv.h"

#include <string.h>

#define META_VERSION "io.modelcontextprotocol/protocolVersion"
#define META_CAPS "io.modelcontextprotocol/clientCapabilities"
#define META_LEVEL "io.modelcontextprotocol/logLevel"

const char *const sq__legacy_versions[] = {"2025-11-25", "2025-06-18",
                                           "2025-03-26", NULL};

bool sq__legacy_version_ok(const char *v)
{
    for (int i = 0; v && sq__legacy_versions[i]; i++)
        if (strcmp(v, sq__legacy_versions[i]) == 0)
            return true;
    return false;
}

bool sq_era_claims_modern(json_t *params, const sq_era_memo *memo)
{
    json_t *meta = json_object_get(params, "_meta");
    if (memo && memo->meta && meta == memo->meta)
        return true;
    return json_is_object(meta) && json_object_get(meta, META_VERSION) != NULL;
}

/* The checks of sq_era_envelope, on params._meta. */
static int envelope_of(json_t *meta, const char **version, json_t **caps, int *level,
                       const char **why, json_t **data)
{
    if (!json_is_object(meta)) {
        *why = "the request's params._meta is missing (2026-07-28 requests "
               "carry their protocol version and client capabilities there)";
        return SQ_RPC_INVALID_PARAMS;
    }
    json_t *v = json_object_get(meta, META_VERSION);
    if (!json_is_string(v)) {
        *why = "_meta lacks " META_VERSION " (a string)";
        return SQ_RPC_INVALID_PARAMS;
    }
    *version = json_string_value(v);
    json_t *c = json_object_get(meta, META_CAPS);
    if (!json_is_object(c)) {
        *why = "_meta lacks " META_CAPS " (an object)";
        return SQ_RPC_INVALID_PARAMS;
    }
    json_t *lvl = json_object_get(meta, META_LEVEL);
    *level = lvl ? sq_mcp_level_parse(json_string_value(lvl)) : -1;
    if (lvl && *level < 0) {
        *why = "_meta's " META_LEVEL " is not a logging level";
        return SQ_RPC_INVALID_PARAMS;
    }
    if (strcmp(json_string_value(v), SQ_MCP_MODERN_VERSION) != 0) {
        *why = "unsupported protocol version";
        *data = json_pack("{s:[s],s:s}", "supported", SQ_MCP_MODERN_VERSION,
                          "requested", json_string_value(v));
        return SQ_MCP_ERR_UNSUPPORTED_VERSION;
    }
    *caps = c;
    return 0;
}

int sq_era_envelope(json_t *params, const sq_rpc_meta_cache *cache, sq_era_memo *memo,
                    const char **version, json_t **caps, int *level, const char **why,
                    json_t **data)
{
    *data = NULL;
    *version = NULL;
    json_t *meta = json_object_get(params, "_meta");
    if (memo && memo->meta && meta == memo->meta) {
        *version = memo->version;
        *caps = memo->caps;
        *level = memo->level;
        return 0;
    }
    int code = envelope_of(meta, version, caps, level, why, data);
    /* Remembered only for an object the cache keeps alive until the
     * connection ends (so that the same address is the same object). */
    for (size_t i = 0; code == 0 && memo && cache && i < cache->n; i++)
        if (cache->e[i].value == meta)
            *memo = (sq_era_memo){meta, *version, *caps, *level};
    return code;
}
