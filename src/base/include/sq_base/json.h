/* Squirrel base layer: writing JSON text into a string buffer.
 *
 * For the layers below the server (the check layer's dump, the metrics),
 * which must not depend on a JSON library: they only ever write JSON,
 * and this is the one place that knows how to quote it.  The server
 * reads and writes JSON with jansson.  Never waits; errors are the
 * buffer's (sq__strbuf_failed).
 */
#ifndef SQ_BASE_JSON_H
#define SQ_BASE_JSON_H

#include "sq_base/strbuf.h"

/* Appends s as a JSON string: quotes, escapes, and U+FFFD for each byte
 * that is not part of valid UTF-8, so the output is always valid JSON.
 * NULL is written as null. */
void sq__json_str(sq__strbuf *b, const char *s);
/* The same for n bytes (NUL bytes are escaped as \u0000). */
void sq__json_strn(sq__strbuf *b, const char *s, size_t n);
/* Appends "key": (key is written as sq__json_str writes it). */
void sq__json_key(sq__strbuf *b, const char *key);
/* Appends "key": followed by the string value v (null for NULL). */
void sq__json_kv(sq__strbuf *b, const char *key, const char *v);
/* Appends "key": "0x..." for an address (the form the dump uses). */
void sq__json_kptr(sq__strbuf *b, const char *key, const void *p);

#endif
