/* The squirreld program itself, where the process matters: stdio to the
 * end of input and exit 0 with everything answered, SIGTERM and SIGINT
 * (exit 0), the "listening on" line each listener prints, and bad command
 * lines (exit 2 with a message). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcptest.h"

static char *err_line(mt_child *c)
{
    return mt_next(c->err);
}

/* Reads stderr to its end. */
static char *all_stderr(mt_child *c)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    char *line;
    while ((line = mt_next(c->err))) {
        sq__strbuf_puts(&b, line);
        sq__strbuf_putc(&b, '\n');
        free(line);
    }
    sq__strbuf_puts(&b, "");
    return sq__strbuf_take(&b);
}

MT_TEST(stdio_answers_everything_and_exits_0_at_end_of_input)
{
    static const char *const args[] = {"--stdio", "--fixtures", "bench", NULL};
    mt_child *c = mt_spawn(args);
    mt_init(c->io, "2025-11-25");
    enum { N = 30 };
    for (int i = 0; i < N; i++) {
        if (i % 2)
            mt_line(c->io, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":"
                           "{\"name\":\"sleep\",\"arguments\":{\"ms\":%d}}}", i, 10 * (i % 5));
        else
            mt_line(c->io, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":"
                           "{\"name\":\"echo\",\"arguments\":{\"text\":\"%d\"}}}", i, i);
    }
    /* 2026-07-28 requests too, on the same process. */
    mt_line(c->io, "{\"jsonrpc\":\"2.0\",\"id\":\"d\",\"method\":\"server/discover\","
                   "\"params\":{" MT_META "}}");
    mt_shut(c->io); /* end of input, at once */
    char seen[N] = {0};
    bool discovered = false;
    int n = 0;
    char *line;
    while ((line = mt_next(c->io))) {
        char *id = mt_raw_id(line);
        if (id && strcmp(id, "\"d\"") == 0) {
            discovered = strstr(line, "\"supportedVersions\":[\"2026-07-28\"]") != NULL;
        } else {
            int i = id ? atoi(id) : -1;
            CHECK(i >= 0 && i < N && !seen[i]);
            if (i >= 0 && i < N)
                seen[i] = 1;
            CHECK(strstr(line, "\"result\"") != NULL);
        }
        free(id);
        free(line);
        n++;
    }
    CHECK_EQ(n, N + 1);
    CHECK(discovered);
    CHECK_EQ(mt_child_wait(c, sq_now() + MT_WAIT), 0);
    mt_child_free(c);
}

/* stdout carries nothing but messages: every line is JSON-RPC (logs go
 * to stderr). */
MT_TEST(stdio_writes_only_messages_on_stdout)
{
    static const char *const args[] = {"--stdio", "--log-level", "debug", NULL};
    mt_child *c = mt_spawn(args);
    mt_line(c->io, "not json");
    char *got = mt_next(c->io);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,"
                    "\"message\":\"Parse error: not one JSON value\"}}");
    free(got);
    mt_init(c->io, "2025-06-18");
    mt_line(c->io, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}");
    mt_shut(c->io);
    char *line;
    int n = 0;
    while ((line = mt_next(c->io))) {
        json_t *j = json_loads(line, 0, NULL);
        CHECK(json_is_object(j) && json_is_string(json_object_get(j, "jsonrpc")));
        json_decref(j);
        free(line);
        n++;
    }
    CHECK_EQ(n, 1); /* tools/list (the parse error and initialize were read) */
    CHECK_EQ(mt_child_wait(c, sq_now() + MT_WAIT), 0);
    mt_child_free(c);
}

/* "squirreld: listening on URL": the port chosen for port 0. */
static int listening_port(mt_child *c, const char *scheme)
{
    char *line = err_line(c);
    int port = -1;
    char want[64];
    snprintf(want, sizeof want, "squirreld: listening on %s://127.0.0.1:", scheme);
    if (line && strncmp(line, want, strlen(want)) == 0) {
        char *end;
        port = (int)strtol(line + strlen(want), &end, 10);
        if (strcmp(scheme, "http") == 0 ? strcmp(end, "/mcp") != 0 : *end != '\0')
            port = -1;
    }
    if (port <= 0) {
        char *m = mt_fmt("not a listening line: %s", line ? line : "(none)");
        sq_test_fail(__FILE__, __LINE__, m);
        free(m);
    }
    free(line);
    return port;
}

/* The server behind the line answers. */
static void http_answers(int port)
{
    mt_server fake = {.http_port = port};
    int status;
    char *got = mt_post1(&fake, NULL,
                         "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
                         "\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},"
                         "\"clientInfo\":{\"name\":\"x\",\"version\":\"1\"}}}",
                         &status);
    CHECK_EQ(status, 200);
    CHECK(got && strstr(got, "\"serverInfo\""));
    free(got);
}

static void signal_exits_0(int sig)
{
    static const char *const args[] = {"--http", "127.0.0.1:0", NULL};
    mt_child *c = mt_spawn(args);
    int port = listening_port(c, "http");
    if (port > 0)
        http_answers(port);
    CHECK_EQ(kill(c->pid, sig), 0);
    CHECK_EQ(mt_child_wait(c, sq_now() + MT_WAIT), 0);
    mt_child_free(c);
}

MT_TEST(sigterm_on_http_server_exits_0)
{
    signal_exits_0(SIGTERM);
}

MT_TEST(sigint_on_http_server_exits_0)
{
    signal_exits_0(SIGINT);
}

/* A signal while a client is connected and a request runs: the server
 * still exits 0 (the request's grace period ends it). */
MT_TEST(sigterm_with_a_request_running_exits_0)
{
    static const char *const args[] = {"--tcp", "127.0.0.1:0", "--fixtures", "bench", NULL};
    mt_child *c = mt_spawn(args);
    int port = listening_port(c, "tcp");
    sq_io *io = NULL;
    if (port > 0)
        CHECK_EQ(sq_tcp_connect(&io, "127.0.0.1", port), 0);
    if (io) {
        mt_conn *k = mt_conn_of(io, io);
        mt_init(k, "2025-11-25");
        mt_line(k, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                   "{\"name\":\"sleep\",\"arguments\":{\"ms\":100}}}");
        mt_line(k, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}");
        free(mt_next(k)); /* the ping: the sleep is running */
        CHECK_EQ(kill(c->pid, SIGTERM), 0);
        /* The running request is answered within the grace period. */
        char *got = mt_next(k);
        CHECK(got && strstr(got, "slept 100 ms"));
        free(got);
        CHECK_EQ(mt_child_wait(c, sq_now() + MT_WAIT), 0);
        mt_close(k);
    }
    mt_child_free(c);
}

MT_TEST(stdio_and_sigterm_exits_0)
{
    static const char *const args[] = {"--stdio", NULL};
    mt_child *c = mt_spawn(args);
    mt_line(c->io, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
    char *got = mt_next(c->io);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");
    free(got);
    CHECK_EQ(kill(c->pid, SIGTERM), 0);
    CHECK_EQ(mt_child_wait(c, sq_now() + MT_WAIT), 0);
    mt_child_free(c);
}

MT_TEST(each_listener_prints_its_listening_line)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/mcptest-bin-%d.sock", (int)getpid());
    const char *const args[] = {"--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--unix",
                                path, NULL};
    mt_child *c = mt_spawn(args);
    int hp = listening_port(c, "http");
    int tp = listening_port(c, "tcp");
    CHECK(hp > 0 && tp > 0 && hp != tp);
    char *line = err_line(c);
    char *want = mt_fmt("squirreld: listening on unix:%s", path);
    CHECK_STR(line, want);
    free(want);
    free(line);
    if (hp > 0)
        http_answers(hp);
    CHECK_EQ(kill(c->pid, SIGTERM), 0);
    CHECK_EQ(mt_child_wait(c, sq_now() + MT_WAIT), 0);
    mt_child_free(c);
    unlink(path);
}

/* --------------------------------------------------------- bad flags */

/* squirreld returns 2 from main without freeing its configuration
 * (apps/squirreld/main.c, the parse_args error path): LeakSanitizer would
 * report that and change the exit code, so it is off for these runs. */
static void exits_2_saying(const char *const *args, const char *says)
{
    const char *asan = getenv("ASAN_OPTIONS");
    char *opt = mt_fmt("ASAN_OPTIONS=%s%sdetect_leaks=0", asan ? asan : "",
                       asan && *asan ? ":" : "");
    const char *const env[] = {opt, NULL};
    mt_child *c = mt_spawn_env(args, env);
    free(opt);
    mt_shut(c->io);
    char *err = all_stderr(c);
    if (!strstr(err, says)) {
        char *m = mt_fmt("stderr lacks \"%s\": %s", says, err);
        sq_test_fail(__FILE__, __LINE__, m);
        free(m);
    }
    free(err);
    CHECK(mt_expect_eof(c->io)); /* nothing on stdout */
    CHECK_EQ(mt_child_wait(c, sq_now() + MT_WAIT), 2);
    mt_child_free(c);
}

MT_TEST(bad_flags_exit_2_with_a_message)
{
    static const char *const unknown[] = {"--bogus", "x", NULL};
    exits_2_saying(unknown, "squirreld: unknown option '--bogus'");
    exits_2_saying(unknown, "usage: squirreld");
    /* Last on the line, an unknown flag is taken for one missing its
     * value (main.c checks for a value before the name): exit 2 all the
     * same. */
    static const char *const unknown_last[] = {"--bogus", NULL};
    exits_2_saying(unknown_last, "usage: squirreld");
    static const char *const no_value[] = {"--http", NULL};
    exits_2_saying(no_value, "squirreld: --http needs a value");
    static const char *const bad_addr[] = {"--http", "nonsense", NULL};
    exits_2_saying(bad_addr, "squirreld: --http: bad address 'nonsense' (HOST:PORT, or a "
                             "path for --unix)");
    static const char *const bad_port[] = {"--tcp", "127.0.0.1:99999", NULL};
    exits_2_saying(bad_port, "squirreld: --tcp: bad address '127.0.0.1:99999'");
    static const char *const fixtures[] = {"--fixtures", "nope", NULL};
    exits_2_saying(fixtures, "squirreld: unknown fixtures 'nope' (conformance, bench or monitor)");
    static const char *const level[] = {"--log-level", "loud", NULL};
    exits_2_saying(level, "squirreld: unknown log level 'loud'");
    static const char *const config[] = {"--config", "/nonexistent/squirreld.json", NULL};
    exits_2_saying(config, "squirreld: /nonexistent/squirreld.json");
}

MT_TEST(address_in_use_exits_1_with_a_message)
{
    /* A port taken by a listener of this process. */
    sq_io *l = NULL;
    CHECK_EQ(sq_tcp_listen(&l, "127.0.0.1", 0, 1), 0);
    int port = sq_io_local_port(l);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    const char *const args[] = {"--http", addr, NULL};
    mt_child *c = mt_spawn(args);
    char *err = all_stderr(c);
    char *want = mt_fmt("squirreld: cannot listen on %s: ", addr);
    CHECK(strstr(err, want) != NULL);
    free(want);
    free(err);
    CHECK_EQ(mt_child_wait(c, sq_now() + MT_WAIT), 1);
    mt_child_free(c);
    sq_io_close(l);
}
