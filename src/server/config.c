/* The server's configuration (sq_server/server.h): defaults, the JSON
 * config file, copying.  docs/server.md, "Configuration", documents every
 * key. */
#include "srv.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void sq_srv_config_init(sq_srv_config *c)
{
    memset(c, 0, sizeof *c);
    c->log_level = SQ_MCP_INFO;
    c->max_message_bytes = (size_t)4 << 20;
    c->max_sessions = 10000;
    c->max_inflight_session = 64;
    c->max_inflight_total = 4096;
    c->session_idle = 30 * 60 * SQ_SEC;
    c->header_timeout = 10 * SQ_SEC;
    c->body_timeout = 30 * SQ_SEC;
    c->idle_timeout = 2 * 60 * SQ_SEC;
    c->request_timeout = 5 * 60 * SQ_SEC;
    c->grace = 10 * SQ_SEC;
    c->out_queue_bytes = (size_t)16 << 20;
    c->page_size = 100;
    c->state_ttl = 10 * 60 * SQ_SEC;
    c->server_name = strdup("squirreld");
    c->request_metrics = true;
    c->alert_interval = SQ_SEC;
    c->plugin_timeout = 30 * SQ_SEC;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

void sq_srv_config_free(sq_srv_config *c)
{
    for (size_t i = 0; i < c->nlisten; i++)
        free(c->listen[i].address);
    free(c->listen);
    free(c->token_file);
    free(c->fixtures);
    free_list(c->allowed_hosts, c->nallowed_hosts);
    free_list(c->allowed_origins, c->nallowed_origins);
    free(c->state_key_hex);
    free(c->server_name);
    free(c->instructions);
    free(c->store);
    free(c->alerts_json);
    free(c->checks);
    free_list(c->plugins, c->nplugins);
    memset(c, 0, sizeof *c);
}

static int dup_list(char ***dst, char *const *src, size_t n)
{
    *dst = n ? calloc(n, sizeof **dst) : NULL;
    if (n && !*dst)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!((*dst)[i] = strdup(src[i])))
            return -ENOMEM;
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int sq_srv_config_copy(sq_srv_config *d, const sq_srv_config *s)
{
    *d = *s;
    d->listen = NULL;
    d->nlisten = 0;
    int rc = 0;
    for (size_t i = 0; i < s->nlisten && rc == 0; i++)
        rc = sq_srv_config_add_listen(d, s->listen[i].kind, s->listen[i].address);
    d->token_file = dup_or_null(s->token_file);
    d->fixtures = dup_or_null(s->fixtures);
    d->state_key_hex = dup_or_null(s->state_key_hex);
    d->server_name = dup_or_null(s->server_name ? s->server_name : "squirreld");
    d->instructions = dup_or_null(s->instructions);
    d->store = dup_or_null(s->store);
    if (rc == 0 && s->store && !d->store)
        rc = -ENOMEM;
    d->alerts_json = dup_or_null(s->alerts_json);
    d->checks = dup_or_null(s->checks);
    if (rc == 0)
        rc = dup_list(&d->allowed_hosts, s->allowed_hosts, s->nallowed_hosts);
    if (rc == 0)
        rc = dup_list(&d->allowed_origins, s->allowed_origins, s->nallowed_origins);
    if (rc == 0)
        rc = dup_list(&d->plugins, s->plugins, s->nplugins);
    if (rc == 0 && ((s->token_file && !d->token_file) ||
                    (s->fixtures && !d->fixtures) || !d->server_name ||
                    (s->alerts_json && !d->alerts_json) || (s->checks && !d->checks)))
        rc = -ENOMEM;
    return rc;
}

int sq_srv_config_add_listen(sq_srv_config *c, int kind, const char *address)
{
    if (!address || !*address)
        return -EINVAL;
    if (kind != SQ_LISTEN_UNIX) {
        const char *colon = strrchr(address, ':');
        char *end;
        if (!colon || colon == address || !colon[1])
            return -EINVAL;
        long port = strtol(colon + 1, &end, 10);
        if (*end || port < 0 || port > 65535)
            return -EINVAL;
    }
    sq_srv_endpoint *l = realloc(c->listen, (c->nlisten + 1) * sizeof *l);
    if (!l)
        return -ENOMEM;
    c->listen = l;
    l[c->nlisten].kind = kind;
    if (!(l[c->nlisten].address = strdup(address)))
        return -ENOMEM;
    c->nlisten++;
    return 0;
}

int sq_srv_config_add_plugin(sq_srv_config *c, const char *path)
{
    if (!path || !*path)
        return -EINVAL;
    char **l = realloc(c->plugins, (c->nplugins + 1) * sizeof *l);
    if (!l)
        return -ENOMEM;
    c->plugins = l;
    if (!(l[c->nplugins] = strdup(path)))
        return -ENOMEM;
    c->nplugins++;
    return 0;
}

/* Plugins named in a config file: added to those given so far; a
 * relative path is taken from the file's directory. */
static int plugin_list(sq_srv_config *c, json_t *v, const char *file)
{
    if (!json_is_array(v))
        return -EINVAL;
    const char *slash = strrchr(file, '/');
    int dirlen = slash ? (int)(slash - file) : 0;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        const char *p = json_string_value(e);
        if (!p || !*p)
            return -EINVAL;
        char *full = NULL;
        if (p[0] != '/' && slash && asprintf(&full, "%.*s/%s", dirlen, file, p) < 0)
            return -ENOMEM;
        int rc = sq_srv_config_add_plugin(c, full ? full : p);
        free(full);
        if (rc)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------ the file */

static int bad(char *err, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

int sq_srv_parse_duration(const char *s, int64_t *out)
{
    if (!s)
        return -EINVAL;
    char *end;
    double x = strtod(s, &end);
    if (end == s || x < 0)
        return -EINVAL;
    double unit = strcmp(end, "ms") == 0 ? 1e6 : strcmp(end, "s") == 0 ? 1e9
                : strcmp(end, "m") == 0 ? 60e9 : strcmp(end, "h") == 0 ? 3600e9 : -1;
    if (unit < 0 || x * unit > 9e18)
        return -EINVAL;
    *out = (int64_t)(x * unit);
    return 0;
}

/* A duration: a number of milliseconds, or a string "<n>ms|s|m|h". */
static int duration(json_t *v, int64_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = json_integer_value(v) * SQ_MSEC;
        return 0;
    }
    return json_is_string(v) ? sq_srv_parse_duration(json_string_value(v), out)
                             : -EINVAL;
}

static int string_list(json_t *v, char ***out, size_t *n)
{
    if (!json_is_array(v))
        return -EINVAL;
    free_list(*out, *n);
    *out = NULL;
    *n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e))
            return -EINVAL;
        char **l = realloc(*out, (*n + 1) * sizeof *l);
        if (!l)
            return -ENOMEM;
        *out = l;
        if (!(l[*n] = strdup(json_string_value(e))))
            return -ENOMEM;
        (*n)++;
    }
    return 0;
}

/* "contexts": {"max_contexts": N, ...}: the context manager's limits,
 * positive integers. */
static int ctx_limits(json_t *v, struct sq_srv_ctx_limits *l, char *err, size_t errlen,
                      const char *path)
{
    static const struct {
        const char *key;
        size_t off;
    } keys[] = {
        {"max_contexts", offsetof(struct sq_srv_ctx_limits, max_contexts)},
        {"max_document_bytes", offsetof(struct sq_srv_ctx_limits, max_document_bytes)},
        {"max_metadata_bytes", offsetof(struct sq_srv_ctx_limits, max_metadata_bytes)},
        {"max_snapshots", offsetof(struct sq_srv_ctx_limits, max_snapshots)},
        {"history_depth", offsetof(struct sq_srv_ctx_limits, history_depth)},
        {"recovery_every", offsetof(struct sq_srv_ctx_limits, recovery_every)},
        {"recovery_keep", offsetof(struct sq_srv_ctx_limits, recovery_keep)},
    };
    if (!json_is_object(v))
        return bad(err, errlen, "%s: \"contexts\" must be an object", path);
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        size_t i = 0;
        while (i < sizeof keys / sizeof *keys && strcmp(keys[i].key, k) != 0)
            i++;
        if (i == sizeof keys / sizeof *keys)
            return bad(err, errlen, "%s: unknown key \"contexts.%s\"", path, k);
        if (!json_is_integer(x) || json_integer_value(x) < 1)
            return bad(err, errlen, "%s: \"contexts.%s\" must be a positive integer", path, k);
        *(size_t *)((char *)l + keys[i].off) = (size_t)json_integer_value(x);
    }
    return 0;
}

static int set_string(json_t *v, char **out)
{
    if (!json_is_string(v))
        return -EINVAL;
    free(*out);
    *out = strdup(json_string_value(v));
    return *out ? 0 : -ENOMEM;
}

int sq_srv_config_load(sq_srv_config *c, const char *path, char *err,
                       size_t errlen)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return bad(err, errlen, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return bad(err, errlen, "%s: the configuration must be a JSON object", path);
    }
    int rc = 0;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        int64_t d;
        if (strcmp(k, "stdio") == 0) {
            rc = json_is_boolean(v) ? (c->stdio = json_is_true(v), 0) : -EINVAL;
        } else if (strcmp(k, "http") == 0 || strcmp(k, "tcp") == 0 ||
                   strcmp(k, "unix") == 0 || strcmp(k, "admin") == 0) {
            int kind = k[0] == 'h' ? SQ_LISTEN_HTTP : k[0] == 't' ? SQ_LISTEN_TCP
                     : k[0] == 'a' ? SQ_LISTEN_ADMIN : SQ_LISTEN_UNIX;
            json_t *list = json_is_string(v) ? json_pack("[O]", v) : json_incref(v);
            size_t i;
            json_t *a;
            rc = json_is_array(list) ? 0 : -EINVAL;
            json_array_foreach(list, i, a) {
                if (rc == 0)
                    rc = json_is_string(a)
                             ? sq_srv_config_add_listen(c, kind, json_string_value(a))
                             : -EINVAL;
            }
            json_decref(list);
        } else if (strcmp(k, "token_file") == 0) {
            rc = set_string(v, &c->token_file);
        } else if (strcmp(k, "fixtures") == 0) {
            rc = set_string(v, &c->fixtures);
        } else if (strcmp(k, "log_level") == 0) {
            int l = sq_mcp_level_parse(json_string_value(v));
            rc = l < 0 ? -EINVAL : (c->log_level = l, 0);
        } else if (strcmp(k, "max_message_bytes") == 0 ||
                   strcmp(k, "out_queue_bytes") == 0 || strcmp(k, "page_size") == 0) {
            json_int_t x = json_integer_value(v);
            rc = json_is_integer(v) && x > 0 ? 0 : -EINVAL;
            if (rc == 0)
                *(k[0] == 'm' ? &c->max_message_bytes
                  : k[0] == 'o' ? &c->out_queue_bytes : &c->page_size) = (size_t)x;
        } else if (strcmp(k, "max_sessions") == 0 ||
                   strcmp(k, "max_inflight_session") == 0 ||
                   strcmp(k, "max_inflight_total") == 0) {
            json_int_t x = json_integer_value(v);
            rc = json_is_integer(v) && x > 0 && x < (1 << 24) ? 0 : -EINVAL;
            if (rc == 0)
                *(strcmp(k, "max_sessions") == 0 ? &c->max_sessions
                  : strcmp(k, "max_inflight_session") == 0 ? &c->max_inflight_session
                                                           : &c->max_inflight_total) = (int)x;
        } else if (strcmp(k, "session_idle") == 0 || strcmp(k, "header_timeout") == 0 ||
                   strcmp(k, "body_timeout") == 0 || strcmp(k, "request_timeout") == 0 ||
                   strcmp(k, "idle_timeout") == 0 ||
                   strcmp(k, "grace") == 0 || strcmp(k, "state_ttl") == 0) {
            rc = duration(v, &d);
            if (rc == 0)
                *(strcmp(k, "session_idle") == 0     ? &c->session_idle
                  : strcmp(k, "header_timeout") == 0 ? &c->header_timeout
                  : strcmp(k, "body_timeout") == 0   ? &c->body_timeout
                  : strcmp(k, "idle_timeout") == 0   ? &c->idle_timeout
                  : strcmp(k, "request_timeout") == 0 ? &c->request_timeout
                  : strcmp(k, "grace") == 0          ? &c->grace
                                                     : &c->state_ttl) = d;
        } else if (strcmp(k, "allowed_hosts") == 0) {
            rc = string_list(v, &c->allowed_hosts, &c->nallowed_hosts);
        } else if (strcmp(k, "allowed_origins") == 0) {
            rc = string_list(v, &c->allowed_origins, &c->nallowed_origins);
        } else if (strcmp(k, "state_key") == 0) {
            rc = set_string(v, &c->state_key_hex);
        } else if (strcmp(k, "server_name") == 0) {
            rc = set_string(v, &c->server_name);
        } else if (strcmp(k, "instructions") == 0) {
            rc = set_string(v, &c->instructions);
        } else if (strcmp(k, "store") == 0) {
            rc = set_string(v, &c->store);
        } else if (strcmp(k, "contexts") == 0) {
            if ((rc = ctx_limits(v, &c->contexts, err, errlen, path)) != 0) {
                json_decref(root);
                return rc;
            }
        } else if (strcmp(k, "request_metrics") == 0) {
            rc = json_is_boolean(v) ? (c->request_metrics = json_is_true(v), 0) : -EINVAL;
        } else if (strcmp(k, "alert_interval") == 0) {
            rc = duration(v, &d);
            if (rc == 0)
                rc = d >= 10 * SQ_MSEC ? (c->alert_interval = d, 0) : -EINVAL;
        } else if (strcmp(k, "checks") == 0) {
            rc = set_string(v, &c->checks);
        } else if (strcmp(k, "alerts") == 0) {
            /* Checked in full when the server is made (alerts.c); kept as
             * text, which the public configuration can carry. */
            rc = json_is_array(v) ? 0 : -EINVAL;
            char *t = rc == 0 ? json_dumps(v, JSON_COMPACT) : NULL;
            if (rc == 0 && !t)
                rc = -ENOMEM;
            if (t) {
                free(c->alerts_json);
                c->alerts_json = t;
            }
        } else if (strcmp(k, "plugins") == 0) {
            rc = plugin_list(c, v, path);
        } else if (strcmp(k, "plugin_admin") == 0) {
            rc = json_is_boolean(v) ? (c->plugin_admin = json_is_true(v), 0) : -EINVAL;
        } else if (strcmp(k, "plugin_timeout") == 0) {
            rc = duration(v, &d);
            if (rc == 0)
                rc = d > 0 ? (c->plugin_timeout = d, 0) : -EINVAL;
        } else {
            json_decref(root);
            return bad(err, errlen, "%s: unknown key \"%s\"", path, k);
        }
        if (rc) {
            json_decref(root);
            return rc == -ENOMEM ? (snprintf(err, errlen, "out of memory"), rc)
                                 : bad(err, errlen, "%s: bad value for \"%s\"", path, k);
        }
    }
    json_decref(root);
    return 0;
}
