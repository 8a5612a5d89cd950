/* Writing JSON text (sq_base/json.h). */
#include "sq_base/json.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0: no
 * overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len = c < 0xc2 ? 0 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf5 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if (len == 3 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0)))
        return 0;
    if (len == 4 && ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90)))
        return 0;
    return len;
}

void sq__json_strn(sq__strbuf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    sq__strbuf_putc(b, '"');
    while (p < end) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sq__strbuf_add(b, esc, 2);
            p++;
        } else if (c < 0x20) {
            sq__strbuf_printf(b, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            const unsigned char *run = p + 1; /* plain characters in one go */
            while (run < end && *run >= 0x20 && *run < 0x80 && *run != '"' &&
                   *run != '\\')
                run++;
            sq__strbuf_add(b, p, (size_t)(run - p));
            p = run;
        } else {
            size_t len = utf8_len(p, (size_t)(end - p));
            if (len) {
                sq__strbuf_add(b, p, len);
                p += len;
            } else {
                sq__strbuf_puts(b, "\\ufffd");
                p++;
            }
        }
    }
    sq__strbuf_putc(b, '"');
}

void sq__json_str(sq__strbuf *b, const char *s)
{
    if (!s)
        sq__strbuf_puts(b, "null");
    else
        sq__json_strn(b, s, strlen(s));
}

void sq__json_key(sq__strbuf *b, const char *key)
{
    sq__json_str(b, key);
    sq__strbuf_add(b, ": ", 2);
}

void sq__json_kv(sq__strbuf *b, const char *key, const char *v)
{
    sq__json_key(b, key);
    sq__json_str(b, v);
}

void sq__json_kptr(sq__strbuf *b, const char *key, const void *p)
{
    sq__json_key(b, key);
    sq__strbuf_printf(b, "\"%p\"", p);
}
