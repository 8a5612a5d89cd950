/* Newline-delimited messages (sq_proto/lines.h).
 *
 * The buffer holds the bytes read and not yet returned, [start, end); the
 * LF search resumes where it stopped (`scan`), so a line that arrives one
 * byte per read costs linear time.  A line is returned in place: its LF
 * (or the CR before it) becomes its NUL, and the bytes stay where they are
 * until the next call, which is when the buffer is compacted.  Nothing is
 * consumed by a read that fails, which is what makes the reader cancel
 * safe.
 *
 * A line longer than max_line is not kept: once the buffer holds more
 * than a line may (without its LF), the bytes are dropped as they come
 * ("skipping") until the LF, and the call that meets the LF returns
 * -EMSGSIZE, once for the whole line.  So memory stays within max_line
 * plus one read, whatever the peer sends.
 */
#include "sq_proto/lines.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "squirrel/io.h"

#define DEFAULT_MAX_LINE ((size_t)4 * 1024 * 1024)
#define FIRST_CAP ((size_t)4096)

struct sq_lines {
    struct sq_io *io;
    size_t max_line;
    char *buf;
    size_t cap, start, end, scan;
    bool skipping; /* dropping the rest of a line over max_line */
    bool eof;
};

int sq_lines_new(sq_lines **out, struct sq_io *io, size_t max_line)
{
    sq_lines *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->io = io;
    l->max_line = max_line ? max_line : DEFAULT_MAX_LINE;
    if (l->max_line > SIZE_MAX / 4) /* no overflow in the sums below */
        l->max_line = SIZE_MAX / 4;
    /* A line's bytes, its CR and LF, and room for its NUL. */
    l->cap = l->max_line + 3 < FIRST_CAP ? l->max_line + 3 : FIRST_CAP;
    if (!(l->buf = malloc(l->cap))) {
        free(l);
        return -ENOMEM;
    }
    *out = l;
    return 0;
}

void sq_lines_free(sq_lines *l)
{
    if (!l)
        return;
    free(l->buf);
    free(l);
}

/* Drops the returned bytes and makes room for a read, growing the buffer
 * (up to what a line of max_line needs) only when one line fills it.
 * -ENOMEM. */
static int make_room(sq_lines *l)
{
    if (l->start > 0 && (l->start == l->end || l->end == l->cap - 1)) {
        memmove(l->buf, l->buf + l->start, l->end - l->start);
        l->end -= l->start;
        l->scan -= l->start;
        l->start = 0;
    }
    if (l->end < l->cap - 1) /* the last byte is kept for a NUL */
        return 0;
    /* Full of one line, yet not over max_line (sq_lines_read would be
     * skipping it): so the buffer is below its largest size. */
    size_t limit = l->max_line + 3;
    size_t cap = l->cap * 2 < limit ? l->cap * 2 : limit;
    char *b = realloc(l->buf, cap);
    if (!b)
        return -ENOMEM;
    l->buf = b;
    l->cap = cap;
    return 0;
}

/* Returns the line [from, e) (e: its LF, or the end of the stream)
 * without a CR at its end, NUL-terminated in place. */
static int line_at(sq_lines *l, size_t from, size_t e, char **line,
                   size_t *len)
{
    size_t n = e - from;
    if (n > 0 && l->buf[e - 1] == '\r')
        n--;
    if (n > l->max_line)
        return -EMSGSIZE;
    l->buf[from + n] = '\0';
    *line = l->buf + from;
    *len = n;
    return 1;
}

int sq_lines_read(sq_lines *l, char **line, size_t *len, int64_t deadline)
{
    for (;;) {
        char *lf = memchr(l->buf + l->scan, '\n', l->end - l->scan);
        if (lf) {
            size_t e = (size_t)(lf - l->buf), from = l->start;
            l->start = l->scan = e + 1;
            if (l->skipping) {
                l->skipping = false;
                return -EMSGSIZE;
            }
            return line_at(l, from, e, line, len);
        }
        l->scan = l->end;
        /* No LF yet: is the line too long already?  One of max_line bytes
         * may still have its CR to come, so max_line + 1 bytes ending
         * with a CR are kept. */
        size_t have = l->end - l->start;
        if (have > l->max_line + 1 ||
            (have == l->max_line + 1 && l->buf[l->end - 1] != '\r'))
            l->skipping = true;
        if (l->skipping)
            l->start = l->scan = l->end; /* drop what came of it */
        if (l->eof) {
            if (l->skipping) {
                l->skipping = false;
                return -EMSGSIZE;
            }
            if (l->start == l->end)
                return 0;
            size_t from = l->start;
            l->start = l->scan = l->end;
            return line_at(l, from, l->end, line, len);
        }
        int rc = make_room(l);
        if (rc)
            return rc;
        ssize_t n = sq_io_read_until(l->io, l->buf + l->end,
                                     l->cap - 1 - l->end, deadline);
        if (n < 0)
            return (int)n;
        if (n == 0)
            l->eof = true;
        l->end += (size_t)n;
    }
}
