/* net.echo of shared/BENCHMARKS.md: an echo server on 127.0.0.1 and 100
 * client connections in the same runtime; each client sends a 64-byte
 * message and waits for its echo, 2,000 times, TCP_NODELAY on both sides.
 *
 * As in the peers, the clock covers the round trips only: the listener and
 * the 100 connections are set up first (an acceptor task accepts them and
 * spawns one echo task per connection), then the 100 client tasks are
 * spawned and joined.  Every echoed byte is compared with what was sent;
 * each message is distinct per client and round, so a misrouted or stale
 * echo is caught.  The server side checks it echoed exactly what the
 * clients sent, once they have closed their connections.
 */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

#define ECHO_CONNS 100
#define ECHO_ROUNDS 2000
#define ECHO_MSG 64

typedef struct echo_run {
    sq_io *listener;
    sq_task servers[ECHO_CONNS]; /* one echo task per accepted connection */
    sq_io *clients[ECHO_CONNS];
} echo_run;

/* Server side: write back whatever arrives, until end of stream.  Returns
 * the number of bytes echoed. */
static void *echo_server(void *arg)
{
    sq_io *c = arg;
    char buf[4096];
    long total = 0;
    for (;;) {
        ssize_t n = sq_io_read(c, buf, sizeof buf);
        bench_check(n, "server: sq_io_read");
        if (n == 0)
            break;
        ssize_t m = sq_io_write(c, buf, (size_t)n);
        bench_check(m, "server: sq_io_write");
        if (m != n)
            bench_fail("server: short write (%zd of %zd)", m, n);
        total += n;
    }
    sq_io_close(c);
    return (void *)(intptr_t)total;
}

static void *echo_acceptor(void *arg)
{
    echo_run *r = arg;
    for (int i = 0; i < ECHO_CONNS; i++) {
        sq_io *c;
        bench_check(sq_io_accept(r->listener, &c), "sq_io_accept");
        bench_check(sq_tcp_nodelay(c, 1), "server: sq_tcp_nodelay");
        bench_check(sq_spawn(&r->servers[i], echo_server, c, NULL),
                    "sq_spawn");
    }
    return NULL;
}

static void fill_msg(unsigned char *msg, int id, int round)
{
    uint32_t a = (uint32_t)id, b = (uint32_t)round;
    memcpy(msg, &a, 4);
    memcpy(msg + 4, &b, 4);
    for (int j = 8; j < ECHO_MSG; j++)
        msg[j] = (unsigned char)(id * 31 + round * 7 + j);
}

/* A client task's argument: its id and its connection. */
typedef struct echo_client_arg {
    int id;
    sq_io *conn;
} echo_client_arg;

static void *echo_client_task(void *arg)
{
    echo_client_arg *a = arg;
    unsigned char msg[ECHO_MSG], got[ECHO_MSG];
    for (int r = 0; r < ECHO_ROUNDS; r++) {
        fill_msg(msg, a->id, r);
        ssize_t m = sq_io_write(a->conn, msg, ECHO_MSG);
        bench_check(m, "client: sq_io_write");
        if (m != ECHO_MSG)
            bench_fail("client %d round %d: short write (%zd)", a->id, r, m);
        size_t have = 0;
        while (have < ECHO_MSG) {
            ssize_t n = sq_io_read(a->conn, got + have, ECHO_MSG - have);
            bench_check(n, "client: sq_io_read");
            if (n == 0)
                bench_fail("client %d round %d: end of stream after %zu bytes",
                           a->id, r, have);
            have += (size_t)n;
        }
        if (memcmp(got, msg, ECHO_MSG) != 0)
            bench_fail("client %d round %d: echo differs from message", a->id,
                       r);
    }
    return (void *)(intptr_t)ECHO_ROUNDS;
}

static void echo_run_fn(const bench_workload *w, bench_run *out)
{
    (void)w;
    echo_run *r = calloc(1, sizeof *r);
    echo_client_arg *args = calloc(ECHO_CONNS, sizeof *args);
    sq_task *clients = calloc(ECHO_CONNS, sizeof *clients);
    if (!r || !args || !clients)
        bench_fail("out of memory");

    bench_check(sq_tcp_listen(&r->listener, "127.0.0.1", 0, 1024),
                "sq_tcp_listen");
    int port = sq_io_local_port(r->listener);
    bench_check(port, "sq_io_local_port");
    sq_task acceptor;
    bench_check(sq_spawn(&acceptor, echo_acceptor, r, NULL), "sq_spawn");
    for (int i = 0; i < ECHO_CONNS; i++) {
        bench_check(sq_tcp_connect(&r->clients[i], "127.0.0.1", port),
                    "sq_tcp_connect");
        bench_check(sq_tcp_nodelay(r->clients[i], 1), "client: sq_tcp_nodelay");
        args[i] = (echo_client_arg){.id = i, .conn = r->clients[i]};
    }
    bench_check(sq_join(acceptor, NULL), "sq_join(acceptor)");
    sq_io_close(r->listener);

    int64_t t0 = sq_now();
    for (int i = 0; i < ECHO_CONNS; i++)
        bench_check(sq_spawn(&clients[i], echo_client_task, &args[i], NULL),
                    "sq_spawn");
    long rounds = 0;
    for (int i = 0; i < ECHO_CONNS; i++) {
        void *res;
        bench_check(sq_join(clients[i], &res), "sq_join(client)");
        rounds += (long)(intptr_t)res;
    }
    out->ns = sq_now() - t0;

    for (int i = 0; i < ECHO_CONNS; i++)
        sq_io_close(r->clients[i]);
    long echoed = 0;
    for (int i = 0; i < ECHO_CONNS; i++) {
        void *res;
        bench_check(sq_join(r->servers[i], &res), "sq_join(server)");
        long n = (long)(intptr_t)res;
        if (n != (long)ECHO_ROUNDS * ECHO_MSG)
            bench_fail("server connection %d echoed %ld bytes, want %ld", i, n,
                       (long)ECHO_ROUNDS * ECHO_MSG);
        echoed += n;
    }
    if (rounds != (long)ECHO_CONNS * ECHO_ROUNDS)
        bench_fail("%ld round trips, want %ld", rounds,
                   (long)ECHO_CONNS * ECHO_ROUNDS);
    if (echoed != (long)ECHO_CONNS * ECHO_ROUNDS * ECHO_MSG)
        bench_fail("server echoed %ld bytes, want %ld", echoed,
                   (long)ECHO_CONNS * ECHO_ROUNDS * ECHO_MSG);
    free(clients);
    free(args);
    free(r);
}

static void echo_extras(const bench_summary *s, bench_line *line)
{
    bench_field(line, "rtt_per_sec", "%.0f",
                (double)s->w->ops / (s->ms / 1e3));
}

const bench_workload bench_net_workloads[] = {
    {.name = "net.echo",
     .ops = (uint64_t)ECHO_CONNS * ECHO_ROUNDS,
     .run = echo_run_fn,
     .extras = echo_extras},
    {.name = NULL},
};
