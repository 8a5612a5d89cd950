/* The proto layer's private helper for text that must stay on one line
 * (HTTP header fields, SSE fields). */
#ifndef SQ_PROTO_ONELINE_H
#define SQ_PROTO_ONELINE_H

#include <string.h>

#include "sq_base/strbuf.h"

/* Appends s with each CR and LF written as a space: a value can then
 * never end its line and start another (header injection, response
 * splitting, a forged SSE field). */
static inline void sq__add_oneline(sq__strbuf *b, const char *s)
{
    for (;;) {
        size_t n = strcspn(s, "\r\n");
        sq__strbuf_add(b, s, n);
        if (!s[n])
            return;
        sq__strbuf_putc(b, ' ');
        s += n + 1;
    }
}

#endif
