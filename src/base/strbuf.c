/* The growable string buffer (sq_base/strbuf.h). */
#include "sq_base/strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

void sq__strbuf_init(sq__strbuf *b)
{
    b->buf = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

void sq__strbuf_free(sq__strbuf *b)
{
    free(b->buf);
    sq__strbuf_init(b);
}

void sq__strbuf_reset(sq__strbuf *b)
{
    b->len = 0;
    b->failed = false;
    if (b->buf)
        b->buf[0] = '\0';
}

bool sq__strbuf_reserve(sq__strbuf *b, size_t n)
{
    if (b->failed)
        return false;
    if (b->cap - b->len > n) /* room for n bytes and the NUL */
        return true;
    if (n > SIZE_MAX / 2 - b->len - 1) {
        b->failed = true;
        return false;
    }
    size_t need = b->len + n + 1, cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->buf, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->buf = p;
    b->cap = cap;
    return true;
}

void sq__strbuf_add(sq__strbuf *b, const void *p, size_t n)
{
    if (!sq__strbuf_reserve(b, n))
        return;
    if (n) /* p may be NULL then (an empty buffer's text) */
        memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

void sq__strbuf_puts(sq__strbuf *b, const char *s)
{
    sq__strbuf_add(b, s, strlen(s));
}

void sq__strbuf_putc(sq__strbuf *b, char c)
{
    sq__strbuf_add(b, &c, 1);
}

void sq__strbuf_vprintf(sq__strbuf *b, const char *fmt, va_list ap)
{
    if (b->failed)
        return;
    va_list again;
    va_copy(again, ap);
    /* Most appends fit in what is left: format once, into place. */
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    int n = vsnprintf(room ? b->buf + b->len : NULL, room, fmt, ap);
    if (n < 0) {
        b->failed = true;
    } else if ((size_t)n < room) {
        b->len += (size_t)n;
    } else if (sq__strbuf_reserve(b, (size_t)n)) {
        vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, again);
        b->len += (size_t)n;
    }
    va_end(again);
}

void sq__strbuf_printf(sq__strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sq__strbuf_vprintf(b, fmt, ap);
    va_end(ap);
}

char *sq__strbuf_take(sq__strbuf *b)
{
    if (b->failed) {
        sq__strbuf_free(b);
        return NULL;
    }
    char *s = b->buf ? b->buf : calloc(1, 1);
    sq__strbuf_init(b);
    return s;
}
