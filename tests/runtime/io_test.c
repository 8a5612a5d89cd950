/* I/O: an echo server with 1,000 concurrent connections, deadlines,
 * end of stream, Unix sockets, pipes, vectored I/O, closing. */
#include "testlib.h"
#include "squirrel/io.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void *echo_conn(void *arg)
{
    sq_io *c = arg;
    char buf[4096];
    for (;;) {
        ssize_t n = sq_io_read(c, buf, sizeof buf);
        if (n <= 0)
            break;
        if (sq_io_write(c, buf, (size_t)n) != n)
            break;
    }
    sq_io_close(c);
    return NULL;
}

static void *echo_server(void *arg)
{
    sq_io *l = arg;
    for (;;) {
        sq_io *c;
        int rc = sq_io_accept(l, &c);
        if (rc == -ECANCELED || rc == -EBADF)
            return NULL;
        if (rc == 0)
            CHECK_EQ(sq_spawn(NULL, echo_conn, c, NULL), 0);
    }
}

enum { CONNS = 1000, ROUNDS = 20, MSG = 100 };
static atomic_long bytes_ok, conns_ok;

static void *echo_client(void *arg)
{
    int port = (int)(intptr_t)arg;
    sq_io *c;
    int rc = sq_tcp_connect(&c, "127.0.0.1", port);
    CHECK_EQ(rc, 0);
    if (rc)
        return NULL;
    CHECK_EQ(sq_tcp_nodelay(c, 1), 0);
    uint64_t seed = sq_task_id() * 0x9e3779b97f4a7c15ull;
    char out[MSG], in[MSG];
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < MSG; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            out[i] = (char)(seed >> 56);
        }
        CHECK_EQ(sq_io_write(c, out, MSG), MSG);
        size_t got = 0;
        while (got < MSG) {
            ssize_t n = sq_io_read(c, in + got, MSG - got);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        CHECK_EQ(got, MSG);
        if (memcmp(in, out, MSG) == 0)
            atomic_fetch_add(&bytes_ok, MSG);
    }
    CHECK_EQ(sq_io_shutdown_write(c), 0);
    char tail;
    CHECK_EQ(sq_io_read(c, &tail, 1), 0); /* server closed: end of stream */
    sq_io_close(c);
    atomic_fetch_add(&conns_ok, 1);
    return NULL;
}

static void *echo_root(void *arg)
{
    (void)arg;
    sq_io *l;
    CHECK_EQ(sq_tcp_listen(&l, "127.0.0.1", 0, 1024), 0);
    int port = sq_io_local_port(l);
    CHECK(port > 0);
    sq_task server;
    CHECK_EQ(sq_spawn(&server, echo_server, l, NULL), 0);
    sq_group *g;
    CHECK_EQ(sq_group_create(&g), 0);
    for (int i = 0; i < CONNS; i++)
        CHECK_EQ(sq_group_spawn(g, echo_client, (void *)(intptr_t)port, NULL,
                                NULL), 0);
    CHECK_EQ(sq_group_wait_all(g), 0);
    sq_group_destroy(g);
    CHECK_EQ(sq_abort(server), 0);
    CHECK_EQ(sq_join(server, NULL), -ECANCELED);
    sq_io_close(l);
    return NULL;
}

TEST(echo_server_with_1000_concurrent_connections_every_byte_checked)
{
    raise_fd_limit();
    atomic_store(&bytes_ok, 0);
    atomic_store(&conns_ok, 0);
    sq_test_run(2, echo_root, NULL);
    CHECK_EQ(atomic_load(&conns_ok), CONNS);
    CHECK_EQ(atomic_load(&bytes_ok), (long)CONNS * ROUNDS * MSG);
}

static void *delayed_writer(void *arg)
{
    sq_io *w = arg;
    sq_sleep(5 * SQ_MSEC);
    CHECK_EQ(sq_io_write(w, "late", 4), 4);
    return NULL;
}

static void *read_deadlines(void *arg)
{
    (void)arg;
    sq_io *p[2];
    CHECK_EQ(sq_pipe(p), 0);
    char buf[8];
    /* A deadline that fires. */
    int64_t d;
    CHECK_EQ(sq_deadline_in(3 * SQ_MSEC, &d), 0);
    CHECK_EQ(sq_io_read_until(p[0], buf, sizeof buf, d), -ETIMEDOUT);
    CHECK(sq_now() >= d);
    /* One that does not: data arrives first. */
    sq_task t;
    CHECK_EQ(sq_spawn(&t, delayed_writer, p[1], NULL), 0);
    CHECK_EQ(sq_deadline_in(5 * SQ_SEC, &d), 0);
    CHECK_EQ(sq_io_read_until(p[0], buf, sizeof buf, d), 4);
    CHECK(memcmp(buf, "late", 4) == 0);
    CHECK_EQ(sq_join(t, NULL), 0);
    CHECK_EQ(sq_io_read_until(p[0], buf, sizeof buf, -1), -EINVAL);
    /* End of stream once the writer closes. */
    sq_io_close(p[1]);
    CHECK_EQ(sq_io_read(p[0], buf, sizeof buf), 0);
    sq_io_close(p[0]);
    return NULL;
}

TEST(read_deadlines_that_fire_and_that_do_not)
{
    sq_test_run(2, read_deadlines, NULL);
}

static void *write_to_closed_pipe(void *arg)
{
    (void)arg;
    sq_io *p[2];
    CHECK_EQ(sq_pipe(p), 0);
    sq_io_close(p[0]);
    CHECK_EQ(sq_io_write(p[1], "x", 1), -EPIPE); /* no SIGPIPE */
    sq_io_close(p[1]);
    return NULL;
}

TEST(write_to_closed_pipe_is_epipe_not_a_signal)
{
    sq_test_run(2, write_to_closed_pipe, NULL);
}

static void *blocked_reader(void *arg)
{
    sq_io *r = arg;
    char c;
    ssize_t n;
    while ((n = sq_io_read(r, &c, 1)) == -EBUSY) /* the test's probe */
        sq_sleep(SQ_MSEC);
    return (void *)(intptr_t)n;
}

static void *close_wakes_waiters(void *arg)
{
    (void)arg;
    sq_io *p[2];
    CHECK_EQ(sq_pipe(p), 0);
    sq_task t;
    CHECK_EQ(sq_spawn(&t, blocked_reader, p[0], NULL), 0);
    /* A second reader while one waits is refused (probe until the
     * spawned reader is the one waiting). */
    char c;
    int rc = 0;
    for (int i = 0; i < 1000 && rc != -EBUSY; i++) {
        sq_sleep(SQ_MSEC);
        int64_t d;
        CHECK_EQ(sq_deadline_in(SQ_MSEC, &d), 0);
        rc = (int)sq_io_read_until(p[0], &c, 1, d);
        CHECK(rc == -EBUSY || rc == -ETIMEDOUT);
    }
    CHECK_EQ(rc, -EBUSY);
    sq_io_close(p[0]);
    void *r;
    CHECK_EQ(sq_join(t, &r), 0);
    CHECK_EQ((intptr_t)r, -EBADF);
    sq_io_close(p[1]);
    return NULL;
}

TEST(closing_wakes_a_blocked_reader_with_ebadf)
{
    sq_test_run(2, close_wakes_waiters, NULL);
}

static void *unix_server(void *arg)
{
    sq_io *l = arg;
    sq_io *c;
    CHECK_EQ(sq_io_accept(l, &c), 0);
    char buf[64];
    struct iovec iov[2] = {{buf, 3}, {buf + 3, 61}};
    ssize_t n = sq_io_readv(c, iov, 2);
    CHECK_EQ(n, 11);
    CHECK(memcmp(buf, "hello world", 11) == 0);
    CHECK_EQ(sq_io_write(c, buf, (size_t)n), n);
    sq_io_close(c);
    return NULL;
}

static void *unix_sockets(void *arg)
{
    (void)arg;
    char path[64];
    snprintf(path, sizeof path, "/tmp/sq-test-%d.sock", (int)getpid());
    unlink(path);
    sq_io *l, *c;
    CHECK_EQ(sq_unix_listen(&l, path, 8), 0);
    CHECK_EQ(sq_unix_listen(&c, path, 8), -EADDRINUSE);
    sq_task t;
    CHECK_EQ(sq_spawn(&t, unix_server, l, NULL), 0);
    CHECK_EQ(sq_unix_connect(&c, path), 0);
    struct iovec iov[3] = {{"hello", 5}, {" ", 1}, {"world", 5}};
    CHECK_EQ(sq_io_writev(c, iov, 3), 11);
    char buf[16];
    size_t got = 0;
    while (got < 11) {
        ssize_t n = sq_io_read(c, buf + got, sizeof buf - got);
        CHECK(n > 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    CHECK(memcmp(buf, "hello world", 11) == 0);
    CHECK_EQ(sq_join(t, NULL), 0);
    sq_io_close(c);
    sq_io_close(l);
    unlink(path);
    CHECK_EQ(sq_unix_connect(&c, path), -ENOENT);
    return NULL;
}

TEST(unix_sockets_with_vectored_io)
{
    sq_test_run(2, unix_sockets, NULL);
}

static void *connect_errors(void *arg)
{
    (void)arg;
    sq_io *c;
    /* Port 1 on loopback is (nearly always) closed. */
    CHECK_EQ(sq_tcp_connect(&c, "127.0.0.1", 1), -ECONNREFUSED);
    CHECK_EQ(sq_tcp_connect(&c, "not-an-address", 80), -EINVAL);
    CHECK_EQ(sq_tcp_connect(&c, "127.0.0.1", 70000), -EINVAL);
    CHECK_EQ(sq_io_adopt(&c, -1), -EBADF);
    return NULL;
}

TEST(connect_errors_are_reported)
{
    sq_test_run(2, connect_errors, NULL);
    sq_io *c;
    CHECK_EQ(sq_tcp_connect(&c, "127.0.0.1", 80), -EPERM); /* no runtime */
}

/* A large transfer through a pipe exercises partial writes and waits for
 * writability. */
static void *bulk_writer(void *arg)
{
    sq_io *w = arg;
    static unsigned char big[1 << 20];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i * 31 + 7);
    CHECK_EQ(sq_io_write(w, big, sizeof big), (ssize_t)sizeof big);
    sq_io_close(w);
    return NULL;
}

static void *bulk(void *arg)
{
    (void)arg;
    sq_io *p[2];
    CHECK_EQ(sq_pipe(p), 0);
    sq_task t;
    CHECK_EQ(sq_spawn(&t, bulk_writer, p[1], NULL), 0);
    size_t total = 0, bad = 0;
    unsigned char buf[7000];
    for (;;) {
        ssize_t n = sq_io_read(p[0], buf, sizeof buf);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != (unsigned char)((total + (size_t)i) * 31 + 7))
                bad++;
        total += (size_t)n;
    }
    CHECK_EQ(total, 1 << 20);
    CHECK_EQ(bad, 0);
    CHECK_EQ(sq_join(t, NULL), 0);
    sq_io_close(p[0]);
    return NULL;
}

TEST(megabyte_through_a_pipe_intact)
{
    sq_test_run(2, bulk, NULL);
}

/* ------------------------------------------------------- byte streams */

/* 200 KB through a TCP connection in random pieces, read with a mix of
 * read sizes, vectored reads with few and many buffers, and reads whose
 * short deadline fires: the stream comes out whole and in order, and no
 * reader waits for data that is already there.  (It hung when a read
 * that drained the last bytes after the peer's FIN trusted the read hint
 * of io.c and waited for an edge that never comes.) */
#define AHEAD_BYTES 200000

static uint8_t ahead_byte(size_t i)
{
    return (uint8_t)(i * 7 + 3 + (i >> 9));
}

static void *ahead_writer(void *arg)
{
    sq_io *c = arg;
    uint8_t buf[512];
    uint32_t x = 99;
    size_t sent = 0;
    while (sent < AHEAD_BYTES) {
        size_t n = 1 + sq_test_rnd(&x) % 300;
        if (n > AHEAD_BYTES - sent)
            n = AHEAD_BYTES - sent;
        for (size_t i = 0; i < n; i++)
            buf[i] = ahead_byte(sent + i);
        CHECK_EQ(sq_io_write(c, buf, n), (ssize_t)n);
        sent += n;
        if (sq_test_rnd(&x) % 8 == 0)
            sq_yield();
    }
    CHECK_EQ(sq_io_shutdown_write(c), 0);
    return NULL;
}

static void *ahead_reader(void *arg)
{
    sq_io *c = arg;
    uint8_t buf[1024];
    uint32_t x = 7;
    size_t got = 0;
    int timeouts = 0;
    for (;;) {
        ssize_t n;
        unsigned how = sq_test_rnd(&x) % 4;
        size_t want = 1 + sq_test_rnd(&x) % 200;
        if (how == 0) { /* vectored, few buffers */
            struct iovec v[3] = {{buf, want / 3}, {buf + want / 3, 1},
                                 {buf + want / 3 + 1, want}};
            n = sq_io_readv(c, v, 3);
        } else if (how == 1) { /* vectored, many buffers */
            struct iovec v[12];
            for (int i = 0; i < 12; i++)
                v[i] = (struct iovec){buf + i * 10, 10};
            n = sq_io_readv(c, v, 12);
        } else if (how == 2) { /* may time out: loses nothing */
            int64_t d;
            sq_deadline_in(20 * SQ_USEC, &d);
            n = sq_io_read_until(c, buf, want, d);
            if (n == -ETIMEDOUT) {
                timeouts++;
                continue;
            }
        } else {
            n = sq_io_read(c, buf, want);
        }
        CHECK(n >= 0);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != ahead_byte(got + (size_t)i)) {
                CHECK(buf[i] == ahead_byte(got + (size_t)i));
                return NULL;
            }
        got += (size_t)n;
    }
    CHECK_EQ(got, AHEAD_BYTES);
    return (void *)(uintptr_t)(got == AHEAD_BYTES);
}

static void *read_ahead(void *arg)
{
    (void)arg;
    for (int round = 0; round < 4; round++) {
        sq_io *l, *a, *b;
        CHECK_EQ(sq_tcp_listen(&l, "127.0.0.1", 0, 4), 0);
        CHECK_EQ(sq_tcp_connect(&a, "127.0.0.1", sq_io_local_port(l)), 0);
        CHECK_EQ(sq_io_accept(l, &b), 0);
        sq_task w, r;
        /* Each direction in turn, so either end's read path is used. */
        sq_io *from = round % 2 ? a : b, *to = round % 2 ? b : a;
        CHECK_EQ(sq_spawn(&w, ahead_writer, from, NULL), 0);
        CHECK_EQ(sq_spawn(&r, ahead_reader, to, NULL), 0);
        void *ok;
        CHECK_EQ(sq_join(r, &ok), 0);
        CHECK(ok == (void *)1);
        CHECK_EQ(sq_join(w, NULL), 0);
        sq_io_close(a);
        sq_io_close(b);
        sq_io_close(l);
    }

    /* Data already received is returned without waiting for more. */
    sq_io *l, *a, *b;
    CHECK_EQ(sq_tcp_listen(&l, "127.0.0.1", 0, 4), 0);
    CHECK_EQ(sq_tcp_connect(&a, "127.0.0.1", sq_io_local_port(l)), 0);
    CHECK_EQ(sq_io_accept(l, &b), 0);
    uint8_t out[100], in[100];
    for (int i = 0; i < 100; i++)
        out[i] = ahead_byte((size_t)i);
    CHECK_EQ(sq_io_write(a, out, 100), 100);
    size_t got = 0;
    while (got < 10) { /* the 100 bytes may arrive in pieces */
        ssize_t n = sq_io_read(b, in + got, 10 - got);
        CHECK(n > 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    while (got < 100) { /* no more data is coming: no read may wait */
        int64_t d;
        sq_deadline_in(SQ_SEC, &d);
        ssize_t n = sq_io_read_until(b, in + got, 7, d);
        CHECK(n > 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    CHECK(memcmp(in, out, 100) == 0);
    sq_io_close(a);
    int64_t d;
    sq_deadline_in(SQ_SEC, &d);
    CHECK_EQ(sq_io_read_until(b, in, 10, d), 0); /* end of stream */
    sq_io_close(b);
    sq_io_close(l);
    return NULL;
}

TEST(socket_stream_whole_and_in_order_with_mixed_reads)
{
    sq_test_run(2, read_ahead, NULL);
}

/* Read-ahead (io.c): a small read on a socket takes up to
 * SQ__READ_AHEAD (1 KB) more from the kernel in the same system call.
 * Those bytes come before any newer data, are returned without waiting
 * (even past the deadline), are never combined with a second system call,
 * and end of stream follows them. */
static int unread_in_kernel(sq_io *io)
{
    int n = -1;
    if (ioctl(sq_io_fd(io), FIONREAD, &n) != 0)
        return -1;
    return n;
}

static void *read_ahead_order(void *arg)
{
    (void)arg;
    sq_io *l, *a, *b;
    CHECK_EQ(sq_tcp_listen(&l, "127.0.0.1", 0, 4), 0);
    CHECK_EQ(sq_tcp_connect(&a, "127.0.0.1", sq_io_local_port(l)), 0);
    CHECK_EQ(sq_io_accept(l, &b), 0);
    uint8_t out[3000], in[3000];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = ahead_byte(i);

    CHECK_EQ(sq_io_write(a, out, 600), 600);
    WAIT_UNTIL(unread_in_kernel(b) == 600);
    CHECK_EQ(sq_io_read(b, in, 0), 0); /* a zero-length read takes nothing */
    CHECK_EQ(unread_in_kernel(b), 600);
    CHECK_EQ(sq_io_read(b, in, 10), 10);
    CHECK_EQ(unread_in_kernel(b), 0); /* the other 590 were read ahead */
    int64_t past = sq_now();
    CHECK_EQ(sq_io_read_until(b, in + 10, 100, past), 100);
    struct iovec v[2] = {{in + 110, 5}, {in + 115, 1000}};
    CHECK_EQ(sq_io_readv(b, v, 2), 490); /* what was read ahead, no more */
    CHECK(memcmp(in, out, 600) == 0);
    int64_t d;
    CHECK_EQ(sq_deadline_in(200 * SQ_USEC, &d), 0);
    CHECK_EQ(sq_io_read_until(b, in, 10, d), -ETIMEDOUT);

    /* The rest, then end of stream, read one byte at a time. */
    CHECK_EQ(sq_io_write(a, out + 600, 2400), 2400);
    CHECK_EQ(sq_io_shutdown_write(a), 0);
    size_t got = 600;
    for (;;) {
        ssize_t n = sq_io_read(b, in + got, 1);
        CHECK(n == 0 || n == 1);
        if (n != 1 || got == sizeof in)
            break;
        got++;
    }
    CHECK_EQ(got, sizeof out);
    CHECK(memcmp(in, out, sizeof out) == 0);
    CHECK_EQ(sq_io_read(b, in, 1), 0);
    CHECK_EQ(sq_io_read(b, in, 100), 0);
    sq_io_close(a);
    sq_io_close(b);
    sq_io_close(l);
    return NULL;
}

TEST(read_ahead_bytes_come_first_and_end_of_stream_follows)
{
    sq_test_run(2, read_ahead_order, NULL);
}

/* sq_io_ready_mark / sq_io_ready_wait_until: readiness of a socket that
 * something else reads (here, plain read() on the original descriptor,
 * with an sq_io adopted from a dup of it, as the PostgreSQL store does for
 * libpq).  No edge since the mark: the wait times out; bytes written by
 * the peer: it returns; an edge that came between the mark and the wait:
 * it returns at once; and the bytes are still there for the owner. */
static void *ready_root(void *arg)
{
    (void)arg;
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    sq_io *io;
    CHECK_EQ(sq_io_adopt(&io, dup(sv[0])), 0);
    for (int round = 0; round < 100; round++) {
        uint32_t mark = sq_io_ready_mark(io, 0);
        char c;
        CHECK_EQ(read(sv[0], &c, 1), -1); /* nothing yet (EAGAIN) */
        CHECK_EQ(sq_io_ready_wait_until(io, 0, mark, sq_now() + SQ_MSEC), -ETIMEDOUT);
        CHECK_EQ(write(sv[1], "x", 1), 1);
        CHECK_EQ(sq_io_ready_wait_until(io, 0, mark, sq_now() + 10 * SQ_SEC), 0);
        /* The edge is in: a second wait from the same mark returns at once. */
        CHECK_EQ(sq_io_ready_wait_until(io, 0, mark, sq_now()), 0);
        CHECK_EQ(read(sv[0], &c, 1), 1);
        CHECK_EQ(c, 'x');
    }
    sq_io_close(io);
    close(sv[0]);
    close(sv[1]);
    return NULL;
}

TEST(readiness_of_a_socket_read_by_someone_else)
{
    sq_test_run(2, ready_root, NULL);
}
