/* Squirrel base layer: base64 (RFC 4648), standard and URL-safe.
 * Never waits; allocates the output. */
#ifndef SQ_BASE_BASE64_H
#define SQ_BASE_BASE64_H

#include <stdbool.h>
#include <stddef.h>

/* Encodes n bytes: the URL-safe alphabet without padding when url, else
 * the standard alphabet with padding.  Returns a malloc'ed NUL-terminated
 * string, or NULL if out of memory. */
char *sq__b64_encode(const void *p, size_t n, bool url);

/* Decodes s (len bytes) into a malloc'ed buffer (NUL-terminated, the NUL
 * not counted in *out_len).  url: the URL-safe alphabet, padding
 * optional; else the standard alphabet with exact padding.  Returns NULL
 * for anything that is not canonical base64 of that alphabet (bad
 * characters, bad padding, non-zero trailing bits) or out of memory. */
void *sq__b64_decode(const char *s, size_t len, bool url, size_t *out_len);

#endif
