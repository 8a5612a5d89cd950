/* A TCP echo server: one task per connection, an idle timeout per read.
 * Usage: echo_server [PORT]   (default 7007; try `nc 127.0.0.1 7007`)
 * With PORT 0 it serves one self-test client and exits (used by CTest). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "squirrel/runtime.h"

static void *serve(void *arg)
{
    sq_io *c = arg;
    char buf[4096];
    for (;;) {
        int64_t deadline;
        sq_deadline_in(60 * SQ_SEC, &deadline); /* idle connections close */
        ssize_t n = sq_io_read_until(c, buf, sizeof buf, deadline);
        if (n <= 0 || sq_io_write(c, buf, (size_t)n) != n)
            break;
    }
    sq_io_close(c);
    return NULL;
}

static void *self_test(void *arg)
{
    int port = (int)(intptr_t)arg;
    sq_io *c;
    char buf[6] = {0};
    if (sq_tcp_connect(&c, "127.0.0.1", port) != 0)
        return NULL;
    sq_io_write(c, "hello", 5);
    ssize_t n = sq_io_read(c, buf, 5);
    sq_io_close(c);
    return (void *)(intptr_t)(n == 5 && strcmp(buf, "hello") == 0);
}

static void *root(void *arg)
{
    int port = (int)(intptr_t)arg;
    sq_io *l;
    int rc = sq_tcp_listen(&l, "127.0.0.1", port, 128);
    if (rc) {
        fprintf(stderr, "listen: %s\n", sq_strerror(rc));
        return NULL;
    }
    sq_task tester;
    if (port == 0)
        sq_spawn(&tester, self_test, (void *)(intptr_t)sq_io_local_port(l), NULL);
    else
        printf("echoing on 127.0.0.1:%d\n", sq_io_local_port(l));
    for (int served = 0; port != 0 || served < 1; served++) {
        sq_io *c;
        if (sq_io_accept(l, &c) != 0)
            break;
        sq_spawn(NULL, serve, c, NULL);
    }
    void *ok = NULL;
    if (port == 0)
        sq_join(tester, &ok);
    sq_io_close(l);
    return ok;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 7007;
    void *ok = NULL;
    int rc = sq_run(root, (void *)(intptr_t)port, NULL, &ok);
    return rc == 0 && (port != 0 || ok) ? 0 : 1;
}
