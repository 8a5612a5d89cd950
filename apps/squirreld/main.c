/* squirreld: the Model Context Protocol server.  This file is wiring only:
 * the command line, the configuration, signals, and the server library
 * (src/server) started on a Squirrel runtime.  docs/server.md is the
 * manual. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "squirrel/check.h"
#include "squirrel/runtime.h"
#include "sq_server/mcp.h"
#include "sq_server/server.h"

static const char usage[] =
    "usage: squirreld [--stdio] [--http HOST:PORT] [--unix PATH] [--tcp HOST:PORT]\n"
    "                 [--config FILE] [--token-file FILE] [--fixtures conformance]\n"
    "                 [--log-level LEVEL] [--store sqlite:PATH|postgresql://...|memory|none]\n"
    "                 [--admin HOST:PORT] [--no-request-metrics]\n"
    "                 [--plugin FILE]...\n"
    "  --stdio            serve MCP on stdin/stdout (newline-delimited JSON-RPC)\n"
    "  --http HOST:PORT   serve Streamable HTTP at http://HOST:PORT/mcp\n"
    "  --unix PATH        serve newline-delimited JSON-RPC on a Unix socket\n"
    "  --tcp HOST:PORT    serve newline-delimited JSON-RPC on TCP\n"
    "  --config FILE      read settings from a JSON file (docs/server.md)\n"
    "  --token-file FILE  require this bearer token on HTTP\n"
    "  --fixtures NAME    add test fixtures: conformance (the MCP conformance\n"
    "                     suite's), bench (the benchmark's echo tools) or\n"
    "                     monitor (bench, plus a contended lock and a stuck task)\n"
    "  --log-level LEVEL  debug, info, notice, warning, error, ... (stderr logs)\n"
    "  --store STORE      where contexts are kept: sqlite:PATH (default\n"
    "                     sqlite:squirreld.db, in the working directory),\n"
    "                     postgresql://... (a PostgreSQL database shared by\n"
    "                     several squirreld; docs/postgres.md), memory\n"
    "                     (nothing kept after exit), or none (no context tools)\n"
    "  --admin HOST:PORT  serve /metrics, /health, /debug/tasks, /debug/locks and\n"
    "                     /console there (else on the --http listeners)\n"
    "  --no-request-metrics  no per-request metrics (requests, latency, bytes)\n"
    "  --plugin FILE      load the plugin in FILE at start (repeatable;\n"
    "                     docs/plugins.md): plugins are trusted code\n"
    "With no transport flag: Streamable HTTP on 127.0.0.1:8808.  Port 0 picks a\n"
    "free port; each listener prints 'squirreld: listening on URL' on stderr.\n";

typedef struct app {
    sq_srv_config cfg;
    int sigfd;
    int status;
} app;

static int die(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "squirreld: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2;
}

static int parse_args(app *a, int argc, char **argv)
{
    sq_srv_config *c = &a->cfg;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
            fputs(usage, stdout);
            exit(0);
        }
        if (strcmp(f, "--stdio") == 0) {
            c->stdio = true;
            continue;
        }
        if (strcmp(f, "--no-request-metrics") == 0) {
            c->request_metrics = false;
            continue;
        }
        if (i + 1 >= argc) {
            fputs(usage, stderr);
            return die("%s needs a value%s", f, "");
        }
        const char *v = argv[++i];
        int rc = 0;
        if (strcmp(f, "--http") == 0)
            rc = sq_srv_config_add_listen(c, SQ_LISTEN_HTTP, v);
        else if (strcmp(f, "--tcp") == 0)
            rc = sq_srv_config_add_listen(c, SQ_LISTEN_TCP, v);
        else if (strcmp(f, "--unix") == 0)
            rc = sq_srv_config_add_listen(c, SQ_LISTEN_UNIX, v);
        else if (strcmp(f, "--admin") == 0)
            rc = sq_srv_config_add_listen(c, SQ_LISTEN_ADMIN, v);
        else if (strcmp(f, "--config") == 0) {
            char err[512];
            if (sq_srv_config_load(c, v, err, sizeof err) != 0)
                return die("%s%s", err, "");
        } else if (strcmp(f, "--token-file") == 0) {
            free(c->token_file);
            c->token_file = strdup(v);
        } else if (strcmp(f, "--fixtures") == 0) {
            if (strcmp(v, "conformance") != 0 && strcmp(v, "bench") != 0 &&
                strcmp(v, "monitor") != 0)
                return die("unknown fixtures '%s' (conformance, bench or monitor)%s", v, "");
            free(c->fixtures);
            c->fixtures = strdup(v);
        } else if (strcmp(f, "--store") == 0) {
            if (strcmp(v, "none") != 0 && strcmp(v, "memory") != 0 &&
                (strncmp(v, "sqlite:", 7) != 0 || !v[7]) &&
                strncmp(v, "postgresql://", 13) != 0 && strncmp(v, "postgres://", 11) != 0)
                return die("unknown store '%s' (sqlite:PATH, postgresql://..., memory or "
                           "none)%s", v, "");
            free(c->store);
            c->store = strdup(v);
        } else if (strcmp(f, "--plugin") == 0) {
            if (sq_srv_config_add_plugin(c, v) != 0)
                return die("--plugin: bad file '%s'%s", v, "");
        } else if (strcmp(f, "--log-level") == 0) {
            int l = sq_mcp_level_parse(v);
            if (l < 0)
                return die("unknown log level '%s' (debug, info, notice, warning, "
                           "error, critical, alert, emergency)%s", v, "");
            c->log_level = l;
        } else {
            fputs(usage, stderr);
            return die("unknown option '%s'%s", f, "");
        }
        if (rc)
            return die("%s: bad address '%s' (HOST:PORT, or a path for --unix)", f, v);
    }
    /* Durable by default: contexts go to a SQLite file in the working
     * directory unless --store or the config file says otherwise. */
    if (!c->store)
        c->store = strdup(SQ_SRV_DEFAULT_STORE);
    size_t served = 0;
    for (size_t i = 0; i < c->nlisten; i++)
        served += c->listen[i].kind != SQ_LISTEN_ADMIN;
    if (!c->stdio && served == 0) {
        char def[32];
        snprintf(def, sizeof def, "127.0.0.1:%d", SQ_SRV_DEFAULT_PORT);
        sq_srv_config_add_listen(c, SQ_LISTEN_HTTP, def);
    }
    return 0;
}

/* Waits for SIGINT or SIGTERM (read from a signalfd: the signal is
 * blocked in every thread, so it is only ever read here). */
static void *signals_main(void *arg)
{
    app *a = arg;
    sq_io *io;
    if (sq_io_adopt(&io, a->sigfd) != 0)
        return NULL;
    struct signalfd_siginfo si;
    ssize_t n = sq_io_read(io, &si, sizeof si);
    sq_io_close(io);
    return n == (ssize_t)sizeof si ? (void *)(intptr_t)si.ssi_signo : NULL;
}

static void *stdio_main(void *arg)
{
    sq_srv *s = arg;
    sq_srv_serve_stdio(s, dup(0), dup(1));
    return NULL;
}

static void *root(void *arg)
{
    app *a = arg;
    char err[512];
    sq_srv *s;
    if (sq_srv_create(&s, &a->cfg, err, sizeof err) != 0) {
        fprintf(stderr, "squirreld: %s\n", err);
        a->status = 1;
        return NULL;
    }
    for (size_t i = 0; i < a->cfg.nlisten; i++) {
        char *url;
        int rc = sq_srv_listen(s, &a->cfg.listen[i], &url);
        if (rc) {
            fprintf(stderr, "squirreld: cannot listen on %s: %s\n",
                    a->cfg.listen[i].address, sq_strerror(rc));
            sq_srv_stop(s, 0);
            sq_srv_destroy(s);
            a->status = 1;
            return NULL;
        }
        fprintf(stderr, "squirreld: listening on %s\n", url);
        free(url);
    }
    fflush(stderr);
    /* Until a signal, or (with --stdio) the end of standard input. */
    sq_task sig, in;
    sq_spawn_opts so = {.name = "signals"};
    sq_spawn(&sig, signals_main, a, &so);
    bool have_stdio = false;
    if (a->cfg.stdio) {
        sq_spawn_opts io = {.name = "stdio"};
        have_stdio = sq_spawn(&in, stdio_main, s, &io) == 0;
    }
    if (have_stdio) {
        /* Whichever ends first: stdin closing, or a signal. */
        while (sq_join_until(in, NULL, sq_now() + 50 * SQ_MSEC) == -ETIMEDOUT) {
            void *got;
            if (sq_join_until(sig, &got, sq_now()) == 0) {
                sig.p = NULL;
                break;
            }
        }
    } else {
        sq_join(sig, NULL);
        sig.p = NULL;
    }
    sq_srv_log(NULL, SQ_MCP_INFO, "main", NULL, "stopping");
    sq_srv_stop(s, a->cfg.grace);
    if (sig.p) {
        sq_abort(sig);
        sq_join(sig, NULL);
    }
    if (have_stdio) {
        sq_abort(in);
        sq_join(in, NULL);
    }
    sq_srv_destroy(s);
    return NULL;
}

int main(int argc, char **argv)
{
    app a = {.status = 0};
    sq_srv_config_init(&a.cfg);
    int rc = parse_args(&a, argc, argv);
    if (rc)
        return rc;
    /* Writing to a client that went must be an error, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the runtime's threads inherit it */
    a.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (a.sigfd < 0) {
        perror("squirreld: signalfd");
        return 1;
    }
    /* Ctrl-\ (SIGQUIT): a dump of every task, what it waits for and which
     * locks it holds, on stderr. */
    sq_check_dump_on_signal(SIGQUIT, 2);
    rc = sq_run(root, &a, NULL, NULL);
    sq_srv_config_free(&a.cfg);
    if (rc) {
        fprintf(stderr, "squirreld: %s\n", sq_strerror(rc));
        return 1;
    }
    return a.status;
}
