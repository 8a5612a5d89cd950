/* The server (sq_server/server.h): its life, its listeners, and the
 * notifications that go to every session and listener when the registry
 * changes or a resource is updated. */
#include "methods.h"
#include "events.h"
#include "sq_server/cmd.h"
#include "sq_server/plugins.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "squirrel/check.h"

/* ----------------------------------------------------------- creating */

/* The configuration's `checks`: added to what SQUIRREL_CHECK switched on
 * (never less: a test run with all,abort keeps it). */
static int apply_checks(const char *words, char *err, size_t errlen)
{
    sq_check_config want, now;
    if (sq_check_parse(words, &want) != 0) {
        snprintf(err, errlen, "checks: cannot parse \"%s\" (docs/checks.md)", words);
        return -EINVAL;
    }
    sq_check_get_config(&now);
    if ((want.findings & ~now.findings) == 0 && (want.abort_on & ~now.abort_on) == 0)
        return 0;
    now.findings |= want.findings;
    now.abort_on |= want.abort_on;
    if (!now.watchdog_ns)
        now.watchdog_ns = want.watchdog_ns;
    int rc = sq_check_configure(&now);
    if (rc && rc != -ENOTSUP)
        snprintf(err, errlen, "checks: %s", sq_strerror(rc));
    return rc == -ENOTSUP ? 0 : rc;
}

typedef struct token_job {
    const char *path;
    char *token;
    int err;
} token_job;

/* On the blocking pool: reads the token file (the first line, trimmed). */
static void *read_token(void *arg)
{
    token_job *j = arg;
    int fd = open(j->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        j->err = -errno;
        return NULL;
    }
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    j->err = n < 0 ? -errno : 0;
    close(fd);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    size_t len = strlen(buf);
    while (len && (buf[len - 1] == ' ' || buf[len - 1] == '\t'))
        buf[--len] = '\0';
    if (len == 0) {
        j->err = -ENODATA;
        return NULL;
    }
    j->token = strdup(buf);
    if (!j->token)
        j->err = -ENOMEM;
    return NULL;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int sq_srv_create(sq_srv **out, const sq_srv_config *c, char *err, size_t errlen)
{
    *out = NULL;
    sq_srv *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = sq_srv_config_copy(&s->cfg, c);
    s->rt = sq_runtime_current();
    s->reg = sq__registry_new();
    s->by_id = json_object();
    if (rc || !s->rt || !s->reg || !s->by_id) {
        snprintf(err, errlen, "%s", !s->rt ? "not in a runtime" : "out of memory");
        sq_srv_destroy(s);
        return !s->rt ? -EPERM : -ENOMEM;
    }
    sq_sem_init(&s->inflight, (size_t)s->cfg.max_inflight_total);
    sq_mutex_init_named(&s->lock, "server.sessions");
    sq_notify_init(&s->dl_stop);
    sq_mutex_init_named(&s->task_lock, "server.tasks");
    s->tasks_by_id = json_object();
    if (s->cfg.state_key_hex) {
        const char *h = s->cfg.state_key_hex;
        if (strlen(h) != 64) {
            snprintf(err, errlen, "state_key must be 64 hexadecimal digits");
            sq_srv_destroy(s);
            return -EINVAL;
        }
        for (int i = 0; i < 32; i++) {
            int hi = hexval(h[2 * i]), lo = hexval(h[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                snprintf(err, errlen, "state_key must be 64 hexadecimal digits");
                sq_srv_destroy(s);
                return -EINVAL;
            }
            s->hmac_key[i] = (unsigned char)(hi * 16 + lo);
        }
    } else if (getrandom(s->hmac_key, sizeof s->hmac_key, 0) !=
               (ssize_t)sizeof s->hmac_key) {
        snprintf(err, errlen, "no random bytes from the kernel");
        sq_srv_destroy(s);
        return -EIO;
    }
    if (s->cfg.token_file) {
        token_job j = {.path = s->cfg.token_file};
        rc = sq_blocking_run(read_token, &j, NULL);
        if (rc == 0)
            rc = j.err;
        if (rc) {
            snprintf(err, errlen, "token file %s: %s", s->cfg.token_file,
                     rc == -ENODATA ? "empty" : sq_strerror(rc));
            sq_srv_destroy(s);
            return rc;
        }
        s->token = j.token;
        s->token_len = strlen(j.token);
    }
    if ((rc = sq_group_create(&s->tasks)) != 0) {
        snprintf(err, errlen, "out of memory");
        sq_srv_destroy(s);
        return rc;
    }
    for (size_t i = 0; i < s->cfg.nlisten; i++)
        s->has_admin |= s->cfg.listen[i].kind == SQ_LISTEN_ADMIN;
    if ((s->cfg.checks && (rc = apply_checks(s->cfg.checks, err, errlen)) != 0) ||
        (rc = sq_mon_create(s, err, errlen)) != 0) {
        if (rc == -ENOMEM)
            snprintf(err, errlen, "out of memory");
        sq_srv_destroy(s);
        return rc;
    }
    if ((rc = sq_cmds_create(&s->cmds, s, NULL)) != 0) {
        snprintf(err, errlen, "the command system: %s", sq_strerror(rc));
        sq_srv_destroy(s);
        return rc;
    }
    if (s->cfg.fixtures) {
        if (strcmp(s->cfg.fixtures, "conformance") == 0)
            rc = sq_fixtures_conformance(s);
        else if (strcmp(s->cfg.fixtures, "bench") == 0)
            rc = sq_fixtures_bench(s);
        else if (strcmp(s->cfg.fixtures, "monitor") == 0)
            rc = sq_fixtures_monitor(s);
        else
            rc = -EINVAL;
        if (rc) {
            snprintf(err, errlen, "fixtures %s: %s", s->cfg.fixtures,
                     rc == -EINVAL ? "unknown (conformance, bench or monitor)" : sq_strerror(rc));
            sq_srv_destroy(s);
            return rc;
        }
    }
    /* The context manager (a store named in the configuration): loaded
     * before the first request can reach its tools. */
    if ((rc = sq_ctx_srv_start(s, err, errlen)) != 0 ||
        (rc = sq_events_start(s, err, errlen)) != 0) {
        sq_srv_destroy(s);
        return rc;
    }
    s->server_info = sq_server_info(s); /* NULL (no memory): made per call */
    sq_srv_envelope_init(s);
    if ((rc = sq_plugins_create(&s->plugins, s)) != 0) {
        snprintf(err, errlen, "the plugin host: %s", sq_strerror(rc));
        sq_srv_destroy(s);
        return rc;
    }
    /* A plugin that fails is logged and marked failed; the server runs. */
    sq_plugins_start(s->plugins, s->cfg.plugins, s->cfg.nplugins);
    sq_spawn_opts o = {.name = "mcp-deadlines"};
    if ((rc = sq_group_spawn(s->tasks, sq_req_reaper_main, s, &o, NULL)) != 0 ||
        (rc = sq_mon_start(s)) != 0) {
        snprintf(err, errlen, "cannot start: %s", sq_strerror(rc));
        sq_srv_destroy(s);
        return rc;
    }
    *out = s;
    return 0;
}

const sq_srv_config *sq_srv_config_of(const sq_srv *s)
{
    return &s->cfg;
}

uint64_t sq_srv_dropped(const sq_srv *s)
{
    return (uint64_t)atomic_load(&((sq_srv *)s)->dropped);
}

/* ---------------------------------------------------------- listening */

typedef struct listener {
    sq_srv *srv;
    sq_io *io;
    int kind;
} listener;

typedef struct conn_arg {
    sq_srv *srv;
    sq_io *io;
    int kind;
} conn_arg;

static void serve(sq_srv *s, sq_io *io, int kind)
{
    if (kind == SQ_LISTEN_HTTP || kind == SQ_LISTEN_ADMIN)
        sq_serve_http_conn(s, io, kind == SQ_LISTEN_ADMIN);
    else {
        sq_serve_stream_conn(s, io, false, NULL);
        sq_io_close(io);
    }
}

static void *conn_main(void *arg)
{
    conn_arg a = *(conn_arg *)arg;
    free(arg);
    serve(a.srv, a.io, a.kind);
    return NULL;
}

int sq_srv_serve_conn(sq_srv *s, sq_io *io, int kind)
{
    if (kind != SQ_LISTEN_HTTP && kind != SQ_LISTEN_ADMIN && kind != SQ_LISTEN_TCP &&
        kind != SQ_LISTEN_UNIX) {
        sq_io_close(io);
        return -EINVAL;
    }
    serve(s, io, kind);
    return 0;
}

static void *accept_main(void *arg)
{
    listener *l = arg;
    sq_srv *s = l->srv;
    while (!atomic_load(&s->stopping)) {
        sq_io *io;
        int rc = sq_io_accept(l->io, &io);
        if (rc == -ECANCELED || rc == -EBADF)
            break;
        if (rc) {
            /* Out of descriptors or memory: say so, back off a little,
             * and go on (the connections being served free some). */
            sq_srv_log(s, SQ_MCP_WARNING, "listen", NULL, "accept failed: %s",
                       sq_strerror(rc));
            if (sq_sleep(10 * SQ_MSEC) != 0)
                break;
            continue;
        }
        if (l->kind != SQ_LISTEN_UNIX)
            sq_tcp_nodelay(io, 1);
        conn_arg *a = malloc(sizeof *a);
        sq_spawn_opts o = {.name = l->kind == SQ_LISTEN_HTTP    ? "http-conn"
                                   : l->kind == SQ_LISTEN_ADMIN ? "admin-conn"
                                                                : "mcp-conn"};
        if (!a) {
            sq_io_close(io);
            continue;
        }
        *a = (conn_arg){s, io, l->kind};
        if (sq_group_spawn(s->tasks, conn_main, a, &o, NULL) != 0) {
            free(a);
            sq_io_close(io);
        }
    }
    sq_io_close(l->io);
    free(l);
    return NULL;
}

/* Splits "HOST:PORT" (HOST may be [v6]) into host and port. */
static int split_hostport(const char *a, char *host, size_t hn, int *port)
{
    const char *colon = strrchr(a, ':');
    if (!colon || colon == a)
        return -EINVAL;
    size_t n = (size_t)(colon - a);
    if (a[0] == '[' && colon[-1] == ']') {
        a++;
        n -= 2;
    }
    if (n >= hn)
        return -EINVAL;
    memcpy(host, a, n);
    host[n] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535 || colon[1] == '\0')
        return -EINVAL;
    *port = (int)p;
    return 0;
}

static int listen_unix(sq_io **io, const char *path)
{
    int rc = sq_unix_listen(io, path, 128);
    if (rc != -EADDRINUSE)
        return rc;
    /* A socket file left by a server that is gone: nobody answers on it,
     * so it is ours to replace.  One that answers is in use. */
    sq_io *probe;
    rc = sq_unix_connect(&probe, path);
    if (rc == 0) {
        sq_io_close(probe);
        return -EADDRINUSE;
    }
    if (rc != -ECONNREFUSED)
        return -EADDRINUSE;
    unlink(path);
    return sq_unix_listen(io, path, 128);
}

int sq_srv_listen(sq_srv *s, const sq_srv_endpoint *cfg, char **url)
{
    *url = NULL;
    sq_io *io;
    int rc;
    char host[256];
    int port = 0;
    if (cfg->kind == SQ_LISTEN_UNIX) {
        rc = listen_unix(&io, cfg->address);
    } else {
        if ((rc = split_hostport(cfg->address, host, sizeof host, &port)) != 0)
            return rc;
        rc = sq_tcp_listen(&io, host, port, 512);
    }
    if (rc)
        return rc;
    listener *l = malloc(sizeof *l);
    if (!l) {
        sq_io_close(io);
        return -ENOMEM;
    }
    *l = (listener){s, io, cfg->kind};
    sq__strbuf b = SQ__STRBUF_INIT;
    if (cfg->kind == SQ_LISTEN_UNIX) {
        sq__strbuf_printf(&b, "unix:%s", cfg->address);
    } else {
        bool v6 = strchr(host, ':') != NULL;
        bool http = cfg->kind == SQ_LISTEN_HTTP || cfg->kind == SQ_LISTEN_ADMIN;
        sq__strbuf_printf(&b, "%s://%s%s%s:%d%s", http ? "http" : "tcp",
                          v6 ? "[" : "", host, v6 ? "]" : "",
                          sq_io_local_port(io),
                          cfg->kind == SQ_LISTEN_HTTP    ? "/mcp"
                          : cfg->kind == SQ_LISTEN_ADMIN ? "/console" : "");
    }
    sq_spawn_opts o = {.name = "listener"};
    rc = b.failed ? -ENOMEM : sq_group_spawn(s->tasks, accept_main, l, &o, NULL);
    if (rc) {
        sq__strbuf_free(&b);
        sq_io_close(io);
        free(l);
        return rc;
    }
    *url = sq__strbuf_take(&b);
    return 0;
}

/* Standard input or output may be a regular file (a redirection), which
 * epoll cannot watch: then a thread of its own copies between the file
 * and a pipe, with plain blocking calls, and the server uses the pipe. */
typedef struct relay {
    int from, to;
    pthread_t thread;
} relay;

static void *relay_main(void *arg)
{
    relay *r = arg;
    char buf[65536];
    for (;;) {
        ssize_t n = read(r->from, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(r->to, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                goto done;
            off += w;
        }
    }
done:
    close(r->from);
    close(r->to);
    return NULL;
}

/* Adopts fd, or a pipe relayed to it; *rl is the relay to join (output)
 * or NULL. */
static int adopt_stdio(int fd, bool output, sq_io **io, relay **rl)
{
    *rl = NULL;
    int rc = sq_io_adopt(io, fd);
    if (rc != -EPERM)
        return rc;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -errno;
    relay *r = malloc(sizeof *r);
    if (!r) {
        close(p[0]);
        close(p[1]);
        return -ENOMEM;
    }
    *r = output ? (relay){.from = p[0], .to = fd} : (relay){.from = fd, .to = p[1]};
    if ((rc = sq_io_adopt(io, output ? p[1] : p[0])) != 0 ||
        (rc = -pthread_create(&r->thread, NULL, relay_main, r)) != 0) {
        close(p[0]);
        close(p[1]);
        free(r);
        return rc;
    }
    if (output) {
        *rl = r;
    } else {
        pthread_detach(r->thread); /* may block on a terminal: not waited */
    }
    return 0;
}

static void *join_relay(void *arg)
{
    relay *r = arg;
    pthread_join(r->thread, NULL);
    free(r);
    return NULL;
}

int sq_srv_serve_stdio(sq_srv *s, int in_fd, int out_fd)
{
    sq_io *in, *out;
    relay *rin, *rout;
    int rc = adopt_stdio(in_fd, false, &in, &rin);
    if (rc)
        return rc;
    if ((rc = adopt_stdio(out_fd, true, &out, &rout)) != 0) {
        sq_io_close(in);
        return rc;
    }
    sq_serve_stream_conn(s, in, true, out);
    sq_io_close(in);
    sq_io_close(out);
    if (rout) { /* everything written reaches the file before we return */
        sq_cancel_mask();
        sq_blocking_run(join_relay, rout, NULL);
        sq_cancel_unmask();
    }
    return 0;
}

/* ------------------------------------------------------------ stopping */

int sq_srv_stop(sq_srv *s, int64_t grace)
{
    if (atomic_exchange(&s->stopping, true))
        return 0;
    sq_cancel_mask();
    /* Requests in flight get until the grace period ends. */
    int64_t until = grace >= SQ_FOREVER - sq_now() ? SQ_FOREVER : sq_now() + grace;
    size_t total = (size_t)s->cfg.max_inflight_total;
    while (sq_sem_available(&s->inflight) < total && sq_now() < until) {
        /* Listen streams never end by themselves: they end now. */
        sq_mutex_lock_nocancel(&s->lock);
        SQ__LIST_FOREACH(l, &s->listeners) {
            sq_listener *x = sq__list_entry(l, sq_listener, link);
            sq__spin_lock(&x->req->lock);
            if (x->req->has_task)
                sq_abort(x->req->task);
            sq__spin_unlock(&x->req->lock);
        }
        sq_mutex_unlock(&s->lock);
        sq_sleep(5 * SQ_MSEC);
    }
    /* Plugins stop (newest first): calls still in them end or are
     * aborted at their deadline, then their stop and destroy run. */
    sq_plugins_shutdown(s->plugins);
    /* Then everything still there is cancelled: sessions end, the
     * listeners and connections stop. */
    for (;;) {
        sq_mutex_lock_nocancel(&s->lock);
        struct sq__link *l = s->sessions.head;
        sq_sess *x = l ? sq_sess_ref(sq__list_entry(l, sq_sess, link)) : NULL;
        sq_mutex_unlock(&s->lock);
        if (!x)
            break;
        sq_sess_end(x);
        sq_sess_unref(x);
    }
    sq_notify_one(&s->dl_stop);
    sq_group_cancel_all(s->tasks);
    sq_group_wait_all(s->tasks);
    while (sq_sem_available(&s->inflight) < total)
        sq_sleep(SQ_MSEC); /* request tasks of ended connections */
    /* No request is left: the stream events' writer and the context
     * manager commit what is queued. */
    sq_events_stop(s);
    sq_ctx_srv_stop(s);
    sq_cancel_unmask();
    return 0;
}

void sq_srv_destroy(sq_srv *s)
{
    if (!s)
        return;
    if (s->tasks)
        sq_group_destroy(s->tasks);
    /* The commands first: the registry's tool entries may still hold
     * them, and let go of them as it is freed. */
    sq_plugins_shutdown(s->plugins); /* after a failed create */
    sq_plugins_destroy(s->plugins);
    sq_cmds_destroy(s->cmds);
    /* The registry first: a tool's release may unregister its health
     * component. */
    sq__registry_free(s->reg);
    sq_events_stop(s); /* after a failed create */
    sq_events_free(s);
    sq_ctx_srv_free(s);
    sq_mon_destroy(s);
    json_decref(s->by_id);
    json_decref(s->server_info);
    free(s->env_meta);
    free(s->env_complete);
    if (s->tasks_by_id)
        sq_tasks_free(s);
    free(s->token);
    sq_srv_config_free(&s->cfg);
    free(s);
}

/* ------------------------------------------------------------- expiry */

void sq_srv_expire_sessions(sq_srv *s)
{
    if (s->cfg.session_idle <= 0)
        return;
    int64_t cutoff = sq_now() - s->cfg.session_idle;
    /* Collected under the lock (a walk, no wait), ended after it. */
    sq_sess *idle[64];
    int n = 0;
    sq_mutex_lock_nocancel(&s->lock);
    SQ__LIST_FOREACH(l, &s->sessions) {
        sq_sess *x = sq__list_entry(l, sq_sess, link);
        /* HTTP sessions only: a stream connection's session lives as long
         * as its connection.  A session with requests in flight or an
         * open GET stream is in use. */
        if (n < 64 && x->http && atomic_load(&x->last_used) < cutoff &&
            sq_sem_available(&x->trk->inflight) ==
                (size_t)s->cfg.max_inflight_session &&
            !x->unsolicited)
            idle[n++] = sq_sess_ref(x);
    }
    sq_mutex_unlock(&s->lock);
    for (int i = 0; i < n; i++) {
        sq_srv_log(s, SQ_MCP_INFO, "session", NULL, "session %s expired (idle)",
                   idle[i]->id);
        sq_sess_end(idle[i]);
        sq_sess_unref(idle[i]);
    }
}

/* ------------------------------------------------------- notifications */

static const char *list_changed_method(int kind)
{
    switch (kind) {
    case SQ_ENTRY_TOOL: return "notifications/tools/list_changed";
    case SQ_ENTRY_PROMPT: return "notifications/prompts/list_changed";
    default: return "notifications/resources/list_changed";
    }
}

#define META_SUB "io.modelcontextprotocol/subscriptionId"

/* Sends a notification to listener x, stamped with its subscription id. */
static void to_listener(sq_listener *x, const char *method, json_t *params)
{
    json_t *p = params ? json_deep_copy(params) : json_object();
    json_t *id = json_loads(x->req->id, JSON_DECODE_ANY, NULL);
    /* The subscription id joins whatever _meta the notification has. */
    json_t *meta = json_object_get(p, "_meta");
    if (json_is_object(meta))
        json_object_set_new(meta, META_SUB, id);
    else
        json_object_set_new(p, "_meta", json_pack("{s:o}", META_SUB, id));
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_rpc_write_notification(&b, method, p);
    json_decref(p);
    if (!b.failed && sq_req_emit(x->req, b.buf, b.len) == -ENOBUFS)
        atomic_fetch_add(&x->req->srv->dropped, 1);
    sq__strbuf_free(&b);
}

void sq_srv_list_changed(sq_srv *s, int kind)
{
    const char *method = list_changed_method(kind);
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_rpc_write_notification(&b, method, NULL);
    /* Pushes never wait: the table's lock is held only for the walk. */
    sq_mutex_lock_nocancel(&s->lock);
    SQ__LIST_FOREACH(l, &s->sessions) {
        sq_sess *x = sq__list_entry(l, sq_sess, link);
        if (atomic_load(&x->initialized))
            sq_sess_notify(x, b.buf, b.len);
    }
    SQ__LIST_FOREACH(l, &s->listeners) {
        sq_listener *x = sq__list_entry(l, sq_listener, link);
        bool want = kind == SQ_ENTRY_TOOL     ? x->tools
                    : kind == SQ_ENTRY_PROMPT ? x->prompts
                                              : x->resources;
        if (want)
            to_listener(x, method, NULL);
    }
    sq_mutex_unlock(&s->lock);
    sq__strbuf_free(&b);
}

void sq_mcp_resources_list_changed(sq_srv *s)
{
    sq_srv_list_changed(s, SQ_ENTRY_RESOURCE);
}

void sq_mcp_resource_updated(sq_srv *s, const char *uri)
{
    sq_mcp_resource_updated_meta(s, uri, NULL);
}

void sq_mcp_resource_updated_meta(sq_srv *s, const char *uri, json_t *meta)
{
    json_t *params = json_pack("{s:s}", "uri", uri);
    if (params && json_is_object(meta))
        json_object_set_new(params, "_meta", json_deep_copy(meta));
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_rpc_write_notification(&b, "notifications/resources/updated", params);
    sq_mutex_lock_nocancel(&s->lock);
    SQ__LIST_FOREACH(l, &s->sessions) {
        sq_sess *x = sq__list_entry(l, sq_sess, link);
        sq_mutex_lock_nocancel(&x->lock);
        bool sub = json_object_get(x->subs, uri) != NULL;
        sq_mutex_unlock(&x->lock);
        if (sub)
            sq_sess_notify(x, b.buf, b.len);
    }
    SQ__LIST_FOREACH(l, &s->listeners) {
        sq_listener *x = sq__list_entry(l, sq_listener, link);
        if (x->uris && json_object_get(x->uris, uri))
            to_listener(x, "notifications/resources/updated", params);
    }
    sq_mutex_unlock(&s->lock);
    json_decref(params);
    sq__strbuf_free(&b);
}
