/* The fuzz targets' harness (fz.h). */
#include "fz.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "llhttp.h"
#include "squirrel/io.h"
#include "squirrel/runtime.h"
#include "sq_server/mcp.h"

#define QUIET (15 * SQ_MSEC)  /* no bytes for this long: the server waits */
#define HARD (20 * SQ_SEC)    /* a connection lives at most this long */

static sq_runtime *rt;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void make_runtime(void)
{
    /* A peer that closes first must show up as EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    sq_runtime_opts o = {.workers = 1};
    if (sq_runtime_create(&rt, &o) != 0) {
        fprintf(stderr, "fuzz: no runtime\n");
        abort();
    }
}

void fz_run(void *(*fn)(void *), void *arg)
{
    pthread_once(&once, make_runtime);
    if (sq_runtime_block_on(rt, fn, arg, NULL) != 0) {
        fprintf(stderr, "fuzz: sq_runtime_block_on failed\n");
        abort();
    }
}

sq_srv *fz_server(const char *fixtures)
{
    sq_srv_config c;
    sq_srv_config_init(&c);
    c.fixtures = strdup(fixtures);
    c.log_level = SQ_MCP_NLEVELS; /* no logs on stderr */
    c.request_timeout = 2 * SQ_SEC;
    c.header_timeout = 2 * SQ_SEC;
    c.body_timeout = 2 * SQ_SEC;
    c.idle_timeout = 2 * SQ_SEC;
    c.grace = 20 * SQ_MSEC;
    /* States sealed for the seeds stay valid for as long as they are
     * kept (50 years). */
    c.state_ttl = (int64_t)50 * 365 * 24 * 3600 * SQ_SEC;
    /* A fixed key: a requestState sealed in one run opens in the next
     * (a reproducer replays). */
    c.state_key_hex = strdup("000102030405060708090a0b0c0d0e0f"
                             "101112131415161718191a1b1c1d1e1f");
    sq_srv *s;
    char err[256];
    int rc = sq_srv_create(&s, &c, err, sizeof err);
    sq_srv_config_free(&c);
    if (rc) {
        fprintf(stderr, "fuzz: server: %s\n", err);
        abort();
    }
    return s;
}

void fz_server_free(sq_srv *s)
{
    sq_srv_stop(s, 0);
    sq_srv_destroy(s);
}

/* ------------------------------------------------------- conversation */

typedef struct serving {
    sq_srv *s;
    sq_io *io;
    int kind;
} serving;

static void *serve_main(void *arg)
{
    serving *v = arg;
    sq_srv_serve_conn(v->s, v->io, v->kind);
    return NULL;
}

typedef struct writing {
    sq_io *io;
    const char *p;
    size_t n;
    fz_talk *t;
    bool done, shut;  /* tasks of one worker: plain flags suffice */
} writing;

/* Whether the client's side may end now: every byte written, and the
 * answers it waits for came. */
static bool may_shut(const writing *w)
{
    const fz_talk *t = w->t;
    if (!w->done || w->shut)
        return false;
    if (t->until)
        return t->got.buf && strstr(t->got.buf, t->until);
    return t->kind != SQ_LISTEN_HTTP || t->responses >= t->expect;
}

static void shut(writing *w)
{
    sq_io_shutdown_write(w->io);
    w->shut = true;
}

static bool write_all(sq_io *io, const char *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t k = sq_io_write(io, p + off, n - off);
        if (k <= 0)
            return false; /* the server closed first: what it read is enough */
        off += (size_t)k;
    }
    return true;
}

/* The client's answer to a request of the server (id "squirreld-N")
 * only means something once that request was made: the writer stops
 * before each such id until the server has sent it, the way a client
 * answers; for at most ANSWER_WAIT, and only while the server keeps
 * writing (ANSWER_QUIET without a byte: it is not about to ask).
 * The reader appends to `got`
 * in a task of the same one-worker runtime, so reading it here is safe. */
#define ANSWER_WAIT (50 * SQ_MSEC)
#define ANSWER_QUIET (5 * SQ_MSEC)
static const char answer_id[] = "\"id\":\"squirreld-";

static void *write_main(void *arg)
{
    writing *w = arg;
    /* An empty input may come as a null pointer: no arithmetic on it. */
    const char *p = w->n ? w->p : "", *end = p + w->n;
    for (;;) {
        const char *a = memmem(p, (size_t)(end - p), answer_id, sizeof answer_id - 1);
        if (!a) {
            write_all(w->io, p, (size_t)(end - p));
            break;
        }
        const char *id = a + 6, *e = a + sizeof answer_id - 1;
        while (e < end && *e >= '0' && *e <= '9')
            e++;
        if (!write_all(w->io, p, (size_t)(a - p)))
            break;
        char want[48];
        snprintf(want, sizeof want, "%.*s\"", (int)(e - id < 40 ? e - id : 40), id);
        size_t seen = w->t->got.len;
        int64_t now = sq_now(), until = now + ANSWER_WAIT, moved = now;
        while (now < until && now - moved < ANSWER_QUIET) {
            if (w->t->got.buf && strstr(w->t->got.buf, want))
                break;
            sq_sleep(SQ_MSEC);
            now = sq_now();
            if (w->t->got.len != seen) {
                seen = w->t->got.len;
                moved = now;
            }
        }
        p = a;
        const char *next = a + 1;
        if (!write_all(w->io, p, (size_t)(next - p)))
            break;
        p = next;
    }
    w->done = true;
    if (may_shut(w))
        shut(w);
    return NULL;
}

static int on_response(llhttp_t *p)
{
    ((fz_talk *)p->data)->responses++;
    return 0;
}

void fz_converse(sq_srv *s, fz_talk *t, const void *data, size_t n)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        perror("fuzz: socketpair");
        abort();
    }
    sq_io *sio, *cli;
    if (sq_io_adopt(&sio, sv[0]) != 0 || sq_io_adopt(&cli, sv[1]) != 0) {
        fprintf(stderr, "fuzz: sq_io_adopt failed\n");
        abort();
    }
    serving v = {s, sio, t->kind};
    writing w = {.io = cli, .p = data, .n = n, .t = t};
    sq_task server, writer;
    if (sq_spawn(&server, serve_main, &v, NULL) != 0 ||
        sq_spawn(&writer, write_main, &w, NULL) != 0) {
        fprintf(stderr, "fuzz: spawn failed\n");
        abort();
    }
    llhttp_settings_t set;
    llhttp_settings_init(&set);
    set.on_message_complete = on_response;
    llhttp_t parser;
    llhttp_init(&parser, HTTP_RESPONSE, &set);
    parser.data = t;
    bool parsing = t->kind == SQ_LISTEN_HTTP;
    int64_t hard = sq_now() + HARD;
    char buf[4096];
    for (;;) {
        if (may_shut(&w))
            shut(&w);
        int64_t quiet = sq_now() + QUIET;
        ssize_t k = sq_io_read_until(cli, buf, sizeof buf,
                                     w.shut || quiet > hard ? hard : quiet);
        if (k > 0) {
            sq__strbuf_add(&t->got, buf, (size_t)k);
            if (parsing && llhttp_execute(&parser, buf, (size_t)k) != HPE_OK)
                parsing = false; /* counting stops; the quiet rule ends it */
            continue;
        }
        if (k != -ETIMEDOUT)
            break; /* closed (or reset): the conversation is over */
        if (sq_now() >= hard) {
            fprintf(stderr, "fuzz: the server did not close the connection "
                            "within %d s\n", (int)(HARD / SQ_SEC));
            abort();
        }
        if (!w.shut && w.done)
            shut(&w); /* quiet: it waits for the client */
    }
    sq_join(writer, NULL);
    sq_join(server, NULL);
    sq_io_close(cli);
    /* FZ_SHOW=1: what came back, for writing seeds and reading a
     * reproducer's run. */
    if (getenv("FZ_SHOW"))
        fprintf(stderr, "--- the server answered (%zu bytes):\n%.*s\n---\n", t->got.len,
                (int)t->got.len, t->got.buf ? t->got.buf : "");
}

void fz_talk_free(fz_talk *t)
{
    sq__strbuf_free(&t->got);
}

static int on_request(llhttp_t *p)
{
    (*(size_t *)p->data)++;
    return 0;
}

size_t fz_count_requests(const void *data, size_t n)
{
    llhttp_settings_t set;
    llhttp_settings_init(&set);
    set.on_message_complete = on_request;
    llhttp_t parser;
    llhttp_init(&parser, HTTP_REQUEST, &set);
    size_t count = 0;
    parser.data = &count;
    llhttp_execute(&parser, data, n);
    return count;
}

bool fz_header(const char *text, size_t len, const char *name, char *out,
               size_t outlen)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl + 1 < len; i++) {
        if ((i == 0 || text[i - 1] == '\n') && strncasecmp(text + i, name, nl) == 0 &&
            text[i + nl] == ':') {
            size_t a = i + nl + 1;
            while (a < len && text[a] == ' ')
                a++;
            size_t e = a;
            while (e < len && text[e] != '\r' && text[e] != '\n')
                e++;
            if (e - a >= outlen)
                return false;
            memcpy(out, text + a, e - a);
            out[e - a] = '\0';
            return true;
        }
    }
    return false;
}
