/* Server-sent events (sq_proto/sse.h).
 *
 * The text/event-stream format (WHATWG HTML, "Server-sent events"): an
 * event is a run of "field: value" lines ended by a blank line, and a
 * line may end with CR, LF or CRLF.  So a CR or LF inside a value would
 * end it: data is split into one "data:" line per line (the reader joins
 * them back with LF), and id and event, which are one line each, have
 * theirs written as spaces.  Lines are ended with LF alone.
 */
#include "sq_proto/sse.h"

#include <inttypes.h>
#include <string.h>

#include "oneline.h"

/* "name: value\n" with CR and LF in value written as spaces. */
static void field_line(sq__strbuf *b, const char *name, const char *value)
{
    sq__strbuf_puts(b, name);
    sq__strbuf_puts(b, ": ");
    sq__add_oneline(b, value);
    sq__strbuf_putc(b, '\n');
}

/* One "<prefix>line\n" per line of p[0..len), lines split at CR, LF and
 * CRLF; an empty line is written as the bare prefix name ("data:"), and
 * text ending with a line break ends with an empty line, so that the
 * reader's join gives the text back (line breaks as LF). */
static void split_lines(sq__strbuf *b, const char *prefix, const char *p,
                        size_t len)
{
    size_t plen = strlen(prefix);
    const char *end = p + len;
    for (;;) {
        const char *e = p;
        while (e < end && *e != '\r' && *e != '\n')
            e++;
        if (e > p) {
            sq__strbuf_add(b, prefix, plen);
            sq__strbuf_add(b, p, (size_t)(e - p));
        } else {
            sq__strbuf_add(b, prefix, plen - 1); /* no space after ':' */
        }
        sq__strbuf_putc(b, '\n');
        if (e == end)
            return;
        p = e + (e[0] == '\r' && e + 1 < end && e[1] == '\n' ? 2 : 1);
    }
}

void sq_sse_event(sq__strbuf *b, const char *id, const char *event,
                  int64_t retry_ms, const char *data, size_t len)
{
    if (id)
        field_line(b, "id", id);
    if (event)
        field_line(b, "event", event);
    if (retry_ms >= 0)
        sq__strbuf_printf(b, "retry: %" PRId64 "\n", retry_ms);
    split_lines(b, "data: ", data ? data : "", data ? len : 0);
    sq__strbuf_putc(b, '\n');
}

void sq_sse_comment(sq__strbuf *b, const char *text)
{
    text = text ? text : "";
    split_lines(b, ": ", text, strlen(text));
}
