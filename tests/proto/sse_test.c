/* Server-sent events: the bytes of an event, and events read back by a
 * reader that follows the WHATWG event-stream parsing rules. */
#include <string.h>

#include "sq_proto/sse.h"
#include "testlib.h"

static void expect(const sq__strbuf *b, const char *want)
{
    if (strcmp(sq__strbuf_str(b), want) != 0) {
        fprintf(stderr, "    got  [%s]\n    want [%s]\n", sq__strbuf_str(b), want);
        CHECK(!"event bytes differ");
    }
}

/* A reader of the event-stream format (WHATWG HTML 9.2.6): lines end at
 * CR, LF or CRLF; "field: value" with one space after the colon dropped;
 * data lines joined with LF; a blank line dispatches the event; a line
 * starting with ':' is a comment.  Collects the dispatched events. */
typedef struct event {
    char id[64], type[64], data[4096];
    long retry;
} event;

static int read_events(const char *p, size_t len, event *out, int max)
{
    int n = 0;
    event cur = {.retry = -1};
    size_t dlen = 0;
    bool has_data = false;
    const char *end = p + len;
    while (p < end) {
        const char *e = p;
        while (e < end && *e != '\r' && *e != '\n')
            e++;
        size_t l = (size_t)(e - p);
        if (l == 0) { /* blank line: dispatch */
            if (has_data && n < max) {
                if (dlen > 0 && cur.data[dlen - 1] == '\n')
                    dlen--;
                cur.data[dlen] = '\0';
                out[n++] = cur;
            }
            cur = (event){.retry = -1};
            dlen = 0;
            has_data = false;
        } else if (*p != ':') {
            const char *colon = memchr(p, ':', l);
            size_t fl = colon ? (size_t)(colon - p) : l;
            const char *v = colon ? colon + 1 : e;
            if (v < e && *v == ' ')
                v++;
            size_t vl = (size_t)(e - v);
            if (fl == 4 && memcmp(p, "data", 4) == 0) {
                memcpy(cur.data + dlen, v, vl);
                dlen += vl;
                cur.data[dlen++] = '\n';
                has_data = true;
            } else if (fl == 2 && memcmp(p, "id", 2) == 0) {
                snprintf(cur.id, sizeof cur.id, "%.*s", (int)vl, v);
            } else if (fl == 5 && memcmp(p, "event", 5) == 0) {
                snprintf(cur.type, sizeof cur.type, "%.*s", (int)vl, v);
            } else if (fl == 5 && memcmp(p, "retry", 5) == 0) {
                cur.retry = strtol(v, NULL, 10);
            }
        }
        p = e + (e < end && *e == '\r' && e + 1 < end && e[1] == '\n' ? 2 : 1);
    }
    return n;
}

TEST(an_event_has_id_event_retry_and_data_in_order)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_sse_event(&b, "7", "message", 1500, "{\"a\":1}", 7);
    expect(&b, "id: 7\nevent: message\nretry: 1500\ndata: {\"a\":1}\n\n");
    sq__strbuf_free(&b);
}

TEST(absent_fields_are_left_out)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_sse_event(&b, NULL, NULL, -1, "x", 1);
    expect(&b, "data: x\n\n");
    sq__strbuf_free(&b);
}

TEST(data_is_one_data_line_per_line_at_cr_lf_and_crlf)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    const char *d = "a\nb\rc\r\nd";
    sq_sse_event(&b, NULL, NULL, -1, d, strlen(d));
    expect(&b, "data: a\ndata: b\ndata: c\ndata: d\n\n");
    sq__strbuf_reset(&b);
    d = "\r\n\n\r";
    sq_sse_event(&b, NULL, NULL, -1, d, strlen(d));
    expect(&b, "data:\ndata:\ndata:\ndata:\n\n");
    sq__strbuf_free(&b);
}

TEST(empty_data_is_one_empty_data_line)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_sse_event(&b, "0", NULL, -1, "", 0); /* MCP's priming event */
    expect(&b, "id: 0\ndata:\n\n");
    sq__strbuf_reset(&b);
    sq_sse_event(&b, NULL, NULL, -1, NULL, 0);
    expect(&b, "data:\n\n");
    event ev[2];
    CHECK_EQ(read_events(b.buf, b.len, ev, 2), 1);
    CHECK(strcmp(ev[0].data, "") == 0);
    sq__strbuf_free(&b);
}

TEST(data_is_taken_by_length_not_by_nul)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_sse_event(&b, NULL, NULL, -1, "abcdef", 3);
    expect(&b, "data: abc\n\n");
    sq__strbuf_free(&b);
}

/* id and event are one line each: a line break in them would end the
 * field and start another, so it is written as a space. */
TEST(line_breaks_in_id_and_event_become_spaces)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_sse_event(&b, "1\ndata: forged", "a\r\nb", -1, "x", 1);
    expect(&b, "id: 1 data: forged\nevent: a  b\ndata: x\n\n");
    event ev[2];
    CHECK_EQ(read_events(b.buf, b.len, ev, 2), 1);
    CHECK(strcmp(ev[0].data, "x") == 0);
    CHECK(strcmp(ev[0].id, "1 data: forged") == 0);
    sq__strbuf_free(&b);
}

TEST(comments_are_lines_readers_ignore)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_sse_comment(&b, "keep-alive");
    expect(&b, ": keep-alive\n");
    sq__strbuf_reset(&b);
    sq_sse_comment(&b, "two\nlines");
    sq_sse_comment(&b, "");
    sq_sse_comment(&b, NULL);
    expect(&b, ": two\n: lines\n:\n:\n");
    sq_sse_event(&b, "9", NULL, -1, "after", 5);
    event ev[2];
    CHECK_EQ(read_events(b.buf, b.len, ev, 2), 1);
    CHECK(strcmp(ev[0].id, "9") == 0 && strcmp(ev[0].data, "after") == 0);
    sq__strbuf_free(&b);
}

/* Any data comes back from a conforming reader as it was sent, with each
 * CR or CRLF read as LF (the format has no other line break). */
TEST(random_data_reads_back_with_line_breaks_as_lf)
{
    static const char alphabet[] = {'a', ' ', ':', '\r', '\n', 'd', '{', '"'};
    uint32_t seed = 12345;
    for (int it = 0; it < 5000; it++) {
        char data[64], norm[64];
        size_t len = sq_test_rnd(&seed) % sizeof data, nl = 0;
        for (size_t i = 0; i < len; i++)
            data[i] = alphabet[sq_test_rnd(&seed) % sizeof alphabet];
        for (size_t i = 0; i < len; i++) {
            if (data[i] == '\r') {
                norm[nl++] = '\n';
                if (i + 1 < len && data[i + 1] == '\n')
                    i++;
            } else {
                norm[nl++] = data[i];
            }
        }
        norm[nl] = '\0';
        sq__strbuf b = SQ__STRBUF_INIT;
        sq_sse_comment(&b, "x");
        sq_sse_event(&b, "id1", "kind", 10, data, len);
        sq_sse_event(&b, NULL, NULL, -1, data, len);
        event ev[3];
        int n = read_events(b.buf, b.len, ev, 3);
        CHECK_EQ(n, 2);
        if (n == 2) {
            CHECK(strcmp(ev[0].data, norm) == 0);
            CHECK(strcmp(ev[1].data, norm) == 0);
            CHECK(strcmp(ev[0].id, "id1") == 0 && strcmp(ev[0].type, "kind") == 0);
            CHECK_EQ(ev[0].retry, 10);
        }
        sq__strbuf_free(&b);
    }
}
