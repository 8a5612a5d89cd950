/* The proto layer: server-sent events (the text/event-stream format).
 * Builds events into a string buffer; sending them is the caller's.
 * Never waits. */
#ifndef SQ_PROTO_SSE_H
#define SQ_PROTO_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "sq_base/strbuf.h"

/* Appends one event: "id: <id>" if id is not NULL, "event: <event>" if
 * not NULL, "retry: <ms>" if retry_ms >= 0, then the data, one "data:"
 * line per line of it (a CR, LF or CRLF in data starts a new line; a
 * single-line JSON text is one line), then the blank line that ends the
 * event.  data may be empty (an event with an empty data line: the
 * priming event of MCP). */
void sq_sse_event(sq__strbuf *b, const char *id, const char *event,
                  int64_t retry_ms, const char *data, size_t len);

/* Appends a comment line (": text"), which readers ignore: a keep-alive. */
void sq_sse_comment(sq__strbuf *b, const char *text);

#endif
