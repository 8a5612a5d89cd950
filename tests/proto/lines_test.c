/* Newline-delimited messages read with sq_lines: splitting, CRLF, the
 * last line, long lines skipped, reads of any size, deadlines and
 * cancellation that lose nothing. */
#include <stdatomic.h>
#include <string.h>

#include "proto_testutil.h"
#include "sq_proto/lines.h"

/* Reads the next line and checks it is `want` (NULL: end of stream). */
static void expect_line(sq_lines *l, const char *want)
{
    char *line = NULL;
    size_t len = 0;
    int rc = sq_lines_read(l, &line, &len, SQ_FOREVER);
    if (!want) {
        CHECK_EQ(rc, 0);
        return;
    }
    CHECK_EQ(rc, 1);
    if (rc == 1) {
        CHECK_EQ(len, strlen(want));
        CHECK(memcmp(line, want, len) == 0 && line[len] == '\0');
        if (len != strlen(want) || memcmp(line, want, len) != 0)
            fprintf(stderr, "    got [%.*s] want [%s]\n", (int)len, line, want);
    }
}

static void expect_rc(sq_lines *l, int want)
{
    char *line;
    size_t len;
    CHECK_EQ(sq_lines_read(l, &line, &len, SQ_FOREVER), want);
}

/* A reader over a connection that has carried `text` and then ended. */
static sq_lines *lines_of(conn *c, const char *text, size_t max_line)
{
    conn_open(c);
    send_str(c->cli, text);
    CHECK_EQ(sq_io_shutdown_write(c->cli), 0);
    sq_lines *l;
    CHECK_EQ(sq_lines_new(&l, c->srv, max_line), 0);
    return l;
}

TASK_TEST(lines_are_split_at_lf)
{
    conn c;
    sq_lines *l = lines_of(&c, "a\nbb\n{\"jsonrpc\":\"2.0\"}\nccc\n", 0);
    expect_line(l, "a");
    expect_line(l, "bb");
    expect_line(l, "{\"jsonrpc\":\"2.0\"}");
    expect_line(l, "ccc");
    expect_line(l, NULL);
    expect_line(l, NULL); /* and again */
    sq_lines_free(l);
    conn_close(&c);
}

TASK_TEST(a_cr_before_the_lf_is_stripped_and_others_kept)
{
    conn c;
    sq_lines *l = lines_of(&c, "a\r\nb\rc\r\nd\r\r\n\r\n", 0);
    expect_line(l, "a");
    expect_line(l, "b\rc");
    expect_line(l, "d\r"); /* only the CR of the CRLF */
    expect_line(l, "");
    expect_line(l, NULL);
    sq_lines_free(l);
    conn_close(&c);
}

TASK_TEST(empty_lines_are_lines)
{
    conn c;
    sq_lines *l = lines_of(&c, "\n\nx\n\n", 0);
    expect_line(l, "");
    expect_line(l, "");
    expect_line(l, "x");
    expect_line(l, "");
    expect_line(l, NULL);
    sq_lines_free(l);
    conn_close(&c);
}

TASK_TEST(a_last_line_without_lf_counts)
{
    conn c;
    sq_lines *l = lines_of(&c, "x\nlast", 0);
    expect_line(l, "x");
    expect_line(l, "last");
    expect_line(l, NULL);
    sq_lines_free(l);
    conn_close(&c);
    l = lines_of(&c, "cr at the end\r", 0);
    expect_line(l, "cr at the end");
    expect_line(l, NULL);
    sq_lines_free(l);
    conn_close(&c);
}

TASK_TEST(an_empty_stream_has_no_lines)
{
    conn c;
    sq_lines *l = lines_of(&c, "", 0);
    expect_line(l, NULL);
    sq_lines_free(l);
    conn_close(&c);
}

TASK_TEST(a_line_of_max_line_bytes_is_read_and_one_more_is_skipped)
{
    conn c;
    sq_lines *l = lines_of(&c, "12345678\n12345678\r\n123456789\nok\n"
                               "123456789\r\n1234567\r\r\n", 8);
    expect_line(l, "12345678");
    expect_line(l, "12345678");
    expect_rc(l, -EMSGSIZE);
    expect_line(l, "ok");
    expect_rc(l, -EMSGSIZE);
    expect_line(l, "1234567\r");
    expect_line(l, NULL);
    sq_lines_free(l);
    conn_close(&c);
}

TASK_TEST(a_long_line_is_skipped_once_and_reading_goes_on_after_it)
{
    conn c;
    sq__strbuf text = SQ__STRBUF_INIT;
    sq__strbuf_puts(&text, "short\n");
    for (int i = 0; i < 5000; i++)
        sq__strbuf_puts(&text, "xxxxxxxxxx\r");
    sq__strbuf_puts(&text, "\nafter\n");
    for (int i = 0; i < 100; i++) /* a long last line, without LF */
        sq__strbuf_puts(&text, "yyyyyyyyyy");
    sq_lines *l = lines_of(&c, text.buf, 64);
    expect_line(l, "short");
    expect_rc(l, -EMSGSIZE);
    expect_line(l, "after");
    expect_rc(l, -EMSGSIZE);
    expect_line(l, NULL);
    sq_lines_free(l);
    conn_close(&c);
    sq__strbuf_free(&text);
}

typedef struct feeder {
    sq_io *to, *reader_end;
    const char *text;
    size_t len;
    bool one_at_a_time;
} feeder;

/* Writes text, one byte per read of the reader if asked, then ends. */
static void *feed(void *arg)
{
    feeder *f = arg;
    if (!f->one_at_a_time) {
        send_bytes(f->to, f->text, f->len);
    } else {
        for (size_t i = 0; i < f->len; i++) {
            WAIT_UNTIL(pending(f->reader_end) == 0);
            send_bytes(f->to, f->text + i, 1);
        }
    }
    CHECK_EQ(sq_io_shutdown_write(f->to), 0);
    return NULL;
}

TASK_TEST(lines_delivered_one_byte_at_a_time_are_read_whole)
{
    conn c;
    conn_open(&c);
    const char *text = "alpha\r\nbeta\n\n{\"id\":1}\r\ntoo long to keep\nlast";
    feeder f = {c.cli, c.srv, text, strlen(text), true};
    sq_task t;
    CHECK_EQ(sq_spawn(&t, feed, &f, NULL), 0);
    sq_lines *l;
    CHECK_EQ(sq_lines_new(&l, c.srv, 10), 0);
    expect_line(l, "alpha");
    expect_line(l, "beta");
    expect_line(l, "");
    expect_line(l, "{\"id\":1}");
    expect_rc(l, -EMSGSIZE);
    expect_line(l, "last");
    expect_line(l, NULL);
    CHECK_EQ(sq_join(t, NULL), 0);
    sq_lines_free(l);
    conn_close(&c);
}

TASK_TEST(many_lines_in_large_writes_come_in_order)
{
    conn c;
    conn_open(&c);
    sq__strbuf text = SQ__STRBUF_INIT;
    enum { N = 20000 };
    for (int i = 0; i < N; i++)
        sq__strbuf_printf(&text, i % 2 ? "line %d\r\n" : "line %d\n", i);
    feeder f = {c.cli, c.srv, text.buf, text.len, false};
    sq_task t;
    CHECK_EQ(sq_spawn(&t, feed, &f, NULL), 0);
    sq_lines *l;
    CHECK_EQ(sq_lines_new(&l, c.srv, 0), 0);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        char want[32], *line;
        size_t len;
        snprintf(want, sizeof want, "line %d", i);
        if (sq_lines_read(l, &line, &len, SQ_FOREVER) == 1 && strcmp(line, want) == 0)
            ok++;
    }
    CHECK_EQ(ok, N);
    expect_line(l, NULL);
    CHECK_EQ(sq_join(t, NULL), 0);
    sq_lines_free(l);
    conn_close(&c);
    sq__strbuf_free(&text);
}

TASK_TEST(lines_are_read_from_a_pipe_too)
{
    sq_io *p[2];
    CHECK_EQ(sq_pipe(p), 0);
    send_str(p[1], "one\ntwo\r\nthree");
    sq_io_close(p[1]);
    sq_lines *l;
    CHECK_EQ(sq_lines_new(&l, p[0], 0), 0);
    expect_line(l, "one");
    expect_line(l, "two");
    expect_line(l, "three");
    expect_line(l, NULL);
    sq_lines_free(l);
    sq_io_close(p[0]);
}

TASK_TEST(a_partial_line_is_kept_across_a_timed_out_read)
{
    conn c;
    conn_open(&c);
    sq_lines *l;
    CHECK_EQ(sq_lines_new(&l, c.srv, 0), 0);
    send_str(c.cli, "first\npar");
    expect_line(l, "first");
    char *line;
    size_t len;
    int64_t dl;
    CHECK_EQ(sq_deadline_in(20 * SQ_MSEC, &dl), 0);
    CHECK_EQ(sq_lines_read(l, &line, &len, dl), -ETIMEDOUT);
    CHECK(sq_now() >= dl);
    send_str(c.cli, "tial\n");
    expect_line(l, "partial");
    sq_lines_free(l);
    conn_close(&c);
}

TASK_TEST(a_line_being_skipped_stays_skipped_across_a_timed_out_read)
{
    conn c;
    conn_open(&c);
    sq_lines *l;
    CHECK_EQ(sq_lines_new(&l, c.srv, 4), 0);
    send_str(c.cli, "much too long");
    char *line;
    size_t len;
    int64_t dl;
    CHECK_EQ(sq_deadline_in(20 * SQ_MSEC, &dl), 0);
    CHECK_EQ(sq_lines_read(l, &line, &len, dl), -ETIMEDOUT);
    send_str(c.cli, " still\nok\n");
    expect_rc(l, -EMSGSIZE);
    expect_line(l, "ok");
    sq_lines_free(l);
    conn_close(&c);
}

typedef struct waiting_reader {
    sq_lines *l;
    int rc;
    atomic_bool started;
} waiting_reader;

static void *read_one(void *arg)
{
    waiting_reader *w = arg;
    char *line;
    size_t len;
    atomic_store(&w->started, true);
    w->rc = sq_lines_read(w->l, &line, &len, SQ_FOREVER);
    return NULL;
}

TASK_TEST(a_cancelled_read_loses_nothing)
{
    conn c;
    conn_open(&c);
    waiting_reader w = {NULL, 1, false};
    CHECK_EQ(sq_lines_new(&w.l, c.srv, 0), 0);
    send_str(c.cli, "{\"half\":");
    sq_task t;
    CHECK_EQ(sq_spawn(&t, read_one, &w, NULL), 0);
    WAIT_UNTIL(atomic_load(&w.started) && pending(c.srv) == 0);
    CHECK_EQ(sq_abort(t), 0);
    sq_join(t, NULL);
    CHECK_EQ(w.rc, -ECANCELED);
    send_str(c.cli, "true}\n");
    expect_line(w.l, "{\"half\":true}");
    sq_lines_free(w.l);
    conn_close(&c);
}

/* A complete line already buffered is returned even past the deadline:
 * the deadline bounds waiting, not reading what is there. */
TASK_TEST(buffered_lines_are_returned_past_the_deadline)
{
    conn c;
    sq_lines *l = lines_of(&c, "a\nb\n", 0);
    expect_line(l, "a");
    char *line;
    size_t len;
    CHECK_EQ(sq_lines_read(l, &line, &len, 0), 1);
    CHECK(strcmp(line, "b") == 0);
    sq_lines_free(l);
    conn_close(&c);
}
