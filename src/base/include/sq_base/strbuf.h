/* Squirrel base layer: a growable string buffer.
 *
 * Appends never fail loudly: the first allocation failure marks the
 * buffer failed, every later append is then ignored, and the owner checks
 * once at the end (sq__strbuf_failed, or sq__strbuf_take returning NULL).
 * So code that writes a long text (a report, a dump, a response) has one
 * error check instead of one per line.  The text is always NUL-terminated
 * once anything was appended.  Never waits; not thread-safe (one owner).
 */
#ifndef SQ_BASE_STRBUF_H
#define SQ_BASE_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct sq__strbuf {
    char *buf;     /* NULL until the first append */
    size_t len;    /* bytes, without the NUL */
    size_t cap;
    bool failed;   /* an allocation failed: the text is incomplete */
} sq__strbuf;

#define SQ__STRBUF_INIT {NULL, 0, 0, false}

void sq__strbuf_init(sq__strbuf *b);
/* Frees the text and resets b to empty (not failed). */
void sq__strbuf_free(sq__strbuf *b);
/* Empties b, keeping its memory (and clearing `failed`). */
void sq__strbuf_reset(sq__strbuf *b);
/* Makes room for n more bytes; false (and b failed) if it cannot. */
bool sq__strbuf_reserve(sq__strbuf *b, size_t n);

void sq__strbuf_add(sq__strbuf *b, const void *p, size_t n);
void sq__strbuf_puts(sq__strbuf *b, const char *s);
void sq__strbuf_putc(sq__strbuf *b, char c);
void sq__strbuf_printf(sq__strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sq__strbuf_vprintf(sq__strbuf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static inline bool sq__strbuf_failed(const sq__strbuf *b)
{
    return b->failed;
}
/* The text so far ("" if none); valid until the next append. */
static inline const char *sq__strbuf_str(const sq__strbuf *b)
{
    return b->buf ? b->buf : "";
}

/* Hands the text over (malloc'ed, NUL-terminated; free it) and resets b.
 * NULL if b failed (its memory is freed) or could not allocate "". */
char *sq__strbuf_take(sq__strbuf *b);

#endif
