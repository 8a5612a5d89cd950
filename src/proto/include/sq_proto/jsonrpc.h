/* The proto layer: JSON-RPC 2.0 messages, parsed and written with jansson.
 *
 * A request's id is kept as the exact JSON text the peer sent (a string
 * with its escapes, an integer of any size jansson accepts, ...) and
 * written back byte for byte: an id is never re-encoded.  Nothing here
 * knows about MCP.  Nothing waits.
 */
#ifndef SQ_PROTO_JSONRPC_H
#define SQ_PROTO_JSONRPC_H

#include "sq_proto/jansson.h"
#include <stdbool.h>
#include <stddef.h>

#include "sq_base/strbuf.h"

/* The standard error codes. */
enum {
    SQ_RPC_PARSE_ERROR = -32700,
    SQ_RPC_INVALID_REQUEST = -32600,
    SQ_RPC_METHOD_NOT_FOUND = -32601,
    SQ_RPC_INVALID_PARAMS = -32602,
    SQ_RPC_INTERNAL_ERROR = -32603,
};

enum sq_rpc_kind {
    SQ_RPC_REQUEST,       /* method and id */
    SQ_RPC_NOTIFICATION,  /* method, no id */
    SQ_RPC_RESPONSE,      /* id and result or error */
    SQ_RPC_INVALID,       /* not a JSON-RPC 2.0 message (see why) */
};

/* One message of a body or line. */
typedef struct sq_rpc_msg {
    enum sq_rpc_kind kind;
    json_t *json;        /* the message (a reference of its own) */
    const char *method;  /* requests, notifications: into json */
    json_t *params;      /* borrowed from json; NULL if absent */
    char *id;            /* the id's JSON text as received (malloc'ed),
                          * or NULL if there is none or it is not a
                          * string or a number */
    json_t *result;      /* responses: borrowed, one of the two */
    json_t *error;
    const char *why;     /* SQ_RPC_INVALID: what is wrong */
} sq_rpc_msg;

/* A parsed body or line: one message, or a batch (a JSON array). */
typedef struct sq_rpc_parsed {
    bool batch;
    size_t n;            /* messages (0 for an empty batch) */
    sq_rpc_msg *msgs;
} sq_rpc_parsed;

/* Parses text (len bytes, need not be NUL-terminated) into *out.
 * Returns 0, SQ_RPC_PARSE_ERROR if the text is not one JSON value
 * (duplicate keys, integers beyond 64 bits and invalid UTF-8 included),
 * SQ_RPC_INVALID_REQUEST if it is neither an object nor an array, or
 * -ENOMEM.  Each message is classified; an element of a batch that is
 * not a message is SQ_RPC_INVALID (its id, if readable, is kept). */
int sq_rpc_parse(const char *text, size_t len, sq_rpc_parsed *out);

/* The params._meta objects one peer sends, as text and parsed.  The
 * 2026-07-28 era puts the same envelope (protocol version, client
 * capabilities) in every request, and jansson parses about 13 ns a byte:
 * with a cache, a body whose params._meta is byte for byte a cached text
 * is parsed without it, and its message shares the cached object.
 *
 * The cache keeps the first SQ_RPC_META_CACHE_N distinct envelopes of at
 * most SQ_RPC_META_CACHE_MAX bytes it sees, until it is cleared; an entry
 * is never replaced (so the cache's own reference is dropped only by
 * sq_rpc_meta_cache_clear).  One per connection or stream; not for
 * concurrent use.  All-zero is empty.
 *
 * Sharing: a message parsed with a cache may have its params._meta in
 * common with the cache and with other messages of it, so:
 *  - it must not be changed (squirreld never changes a request's params);
 *  - a holder that frees such a message on another thread than the
 *    cache's takes a reference to params._meta before and drops it after
 *    the message: the object's last reference is then always dropped
 *    through sq_proto/jansson.h (ordered for other threads), never inside
 *    jansson's delete of a message, whose own counts are not. */
#define SQ_RPC_META_CACHE_N 4
#define SQ_RPC_META_CACHE_MAX 4096

typedef struct sq_rpc_meta_entry {
    char *text;
    size_t len;
    json_t *value;
} sq_rpc_meta_entry;

typedef struct sq_rpc_meta_cache {
    sq_rpc_meta_entry e[SQ_RPC_META_CACHE_N];
    size_t n;             /* entries in use */
    size_t hits;          /* bodies parsed with it */
} sq_rpc_meta_cache;

/* As sq_rpc_parse, with the same results and equal messages, using and
 * filling *cache (NULL: none).  Never waits. */
int sq_rpc_parse_cached(const char *text, size_t len, sq_rpc_meta_cache *cache,
                        sq_rpc_parsed *out);
/* Empties the cache (drops its references).  Never fails. */
void sq_rpc_meta_cache_clear(sq_rpc_meta_cache *cache);
void sq_rpc_parsed_free(sq_rpc_parsed *p);
/* Frees one message's contents (for messages taken out of a batch). */
void sq_rpc_msg_free(sq_rpc_msg *m);

/* Writes compact, single-line JSON (no newline inside) into b.  raw_id is
 * an id as sq_rpc_msg.id holds it (NULL writes null).  Values are
 * borrowed. */
void sq_rpc_write_result(sq__strbuf *b, const char *raw_id, json_t *result);
/* As sq_rpc_write_result, with `extra` (NULL: none): members already
 * encoded as JSON text ("\"k\":v,..." without braces) written into the
 * result, which must then be an object without those keys.  For members
 * that are the same in many answers, encoded once instead of each time. */
void sq_rpc_write_result_with(sq__strbuf *b, const char *raw_id, json_t *result,
                              const char *extra);
void sq_rpc_write_error(sq__strbuf *b, const char *raw_id, int code,
                        const char *message, json_t *data);
void sq_rpc_write_request(sq__strbuf *b, const char *raw_id,
                          const char *method, json_t *params);
void sq_rpc_write_notification(sq__strbuf *b, const char *method,
                               json_t *params);
/* Appends a JSON value compactly (single line). */
void sq_rpc_write_json(sq__strbuf *b, json_t *v);

#endif
