/* The history of calls (sq_server/cmd.h): a ring of the last N calls,
 * each with its arguments (redacted as its command says, and kept as
 * compact JSON text only up to a size, so the ring's memory is bounded:
 * N times that size at most), outcome, duration and error.
 *
 * An entry is made outside the lock; the lock (a task-aware mutex, never
 * held across a wait) covers swapping it into its slot, and the copy of
 * entries a reader takes. */
#include "cmd_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct entry {
    uint64_t seq;
    char *command;
    char *args;          /* compact JSON, or NULL: not kept (too large) */
    size_t args_len;     /* its length, also when not kept */
    int outcome;
    int64_t started_ms;  /* wall clock */
    int64_t duration_ns;
    char *error;         /* NULL if none */
    char *session;       /* the legacy session, or NULL */
    bool direct;         /* from the server or a plugin, not a client */
} entry;

struct cmd_history {
    sq_mutex lock;
    entry *ring;
    size_t size;         /* slots */
    uint64_t next;       /* the next entry's seq (from 1) */
    size_t arg_bytes;
};

cmd_history *sq__history_new(size_t size, size_t arg_bytes)
{
    cmd_history *h = calloc(1, sizeof *h);
    if (!h || !(h->ring = calloc(size, sizeof *h->ring))) {
        free(h);
        return NULL;
    }
    h->size = size;
    h->next = 1;
    h->arg_bytes = arg_bytes;
    sq_mutex_init_named(&h->lock, "cmd.history");
    return h;
}

static void entry_free(entry *e)
{
    free(e->command);
    free(e->args);
    free(e->error);
    free(e->session);
    memset(e, 0, sizeof *e);
}

void sq__history_free(cmd_history *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->size; i++)
        entry_free(&h->ring[i]);
    free(h->ring);
    sq_mutex_destroy(&h->lock);
    free(h);
}

size_t sq__history_size(cmd_history *h)
{
    return h->size;
}

/* ---------------------------------------------------------- redaction */

#define REDACTED "[redacted]"

/* Replaces the value at JSON pointer ptr ("/a/0/b") in v, if there. */
static void redact_pointer(json_t *v, const char *ptr)
{
    char tok[256];
    while (*ptr == '/' && v) {
        ptr++;
        size_t n = 0;
        for (; *ptr && *ptr != '/' && n < sizeof tok - 1; ptr++) {
            if (*ptr == '~' && (ptr[1] == '0' || ptr[1] == '1')) {
                tok[n++] = ptr[1] == '0' ? '~' : '/';
                ptr++;
            } else {
                tok[n++] = *ptr;
            }
        }
        tok[n] = '\0';
        bool last = *ptr != '/';
        if (json_is_object(v)) {
            if (last) {
                if (json_object_get(v, tok))
                    json_object_set_new(v, tok, json_string(REDACTED));
                return;
            }
            v = json_object_get(v, tok);
        } else if (json_is_array(v)) {
            char *end;
            unsigned long i = strtoul(tok, &end, 10);
            if (*end || !*tok || i >= json_array_size(v))
                return;
            if (last) {
                json_array_set_new(v, i, json_string(REDACTED));
                return;
            }
            v = json_array_get(v, i);
        } else {
            return;
        }
    }
}

/* The arguments as the history keeps them (malloc'ed compact JSON). */
static char *kept_args(const cmd_impl *i, json_t *args)
{
    /* A call refused before it was let in has no definition to say what
     * to hide: nothing of it is kept. */
    if (!i)
        return strdup("\"[not kept: the call was not let in]\"");
    if (i->redact_all)
        return strdup("\"" REDACTED "\"");
    if (!i->redact)
        return json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *copy = json_deep_copy(args);
    if (!copy)
        return NULL;
    for (char **r = i->redact; *r; r++) {
        if ((*r)[0] == '/')
            redact_pointer(copy, *r);
        else if (json_object_get(copy, *r))
            json_object_set_new(copy, *r, json_string(REDACTED));
    }
    char *text = json_dumps(copy, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(copy);
    return text;
}

/* -------------------------------------------------------------- adding */

void sq__history_add(cmd_history *h, const sq_cmd_call *c)
{
    entry e = {
        .outcome = c->outcome,
        .started_ms = c->started_wall_ms,
        .duration_ns = sq_now() - c->started,
        .direct = c->req == NULL,
    };
    e.command = strdup(c->cmd->name);
    e.args = kept_args(c->impl, c->args);
    e.args_len = e.args ? strlen(e.args) : 0;
    if (e.args_len > h->arg_bytes) {
        free(e.args);
        e.args = NULL;
    }
    if (c->message[0] && c->outcome != SQ_CMD_OK)
        e.error = strdup(c->message);
    const char *sid = c->req ? sq_mcp_session_id(c->req) : NULL;
    if (sid)
        e.session = strdup(sid);
    if (!e.command) {
        entry_free(&e);
        return; /* out of memory: the entry is lost, the call is not */
    }
    sq_mutex_lock_nocancel(&h->lock);
    e.seq = h->next++;
    entry *slot = &h->ring[(e.seq - 1) % h->size];
    entry old = *slot;
    *slot = e;
    sq_mutex_unlock(&h->lock);
    entry_free(&old);
}

/* ------------------------------------------------------------- reading */

static json_t *iso_ms(int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[64];
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
             tm.tm_sec, (int)(ms % 1000));
    return json_string(buf);
}

static json_t *entry_json(const entry *e)
{
    json_t *args = e->args ? json_loads(e->args, JSON_DECODE_ANY, NULL) : NULL;
    if (!args) {
        char note[64];
        snprintf(note, sizeof note, "[%zu bytes, not kept]", e->args_len);
        args = json_string(note);
    }
    json_t *o = json_pack("{s:I,s:s,s:o,s:s,s:o,s:f,s:s}", "seq", (json_int_t)e->seq,
                          "command", e->command, "arguments", args, "outcome",
                          sq_cmd_outcome_name(e->outcome), "started",
                          iso_ms(e->started_ms), "duration_ms",
                          (double)e->duration_ns / 1e6, "caller",
                          e->direct ? "server" : "client");
    if (o && e->error)
        json_object_set_new(o, "error", json_string(e->error));
    if (o && e->session)
        json_object_set_new(o, "session", json_string(e->session));
    return o;
}

json_t *sq__history_read(cmd_history *h, const char *name, int outcome,
                         size_t limit)
{
    json_t *out = json_array();
    if (!out)
        return NULL;
    /* JSON is built under the lock: a walk of at most `size` entries
     * with no wait in it; writers are held up for as long. */
    sq_mutex_lock_nocancel(&h->lock);
    uint64_t newest = h->next - 1;
    uint64_t oldest = newest >= h->size ? newest - h->size + 1 : 1;
    for (uint64_t s = newest; s >= oldest && s > 0; s--) {
        const entry *e = &h->ring[(s - 1) % h->size];
        if ((name && strcmp(e->command, name) != 0) ||
            (outcome >= 0 && e->outcome != outcome))
            continue;
        json_array_append_new(out, entry_json(e));
        if (limit && json_array_size(out) >= limit)
            break;
    }
    sq_mutex_unlock(&h->lock);
    return out;
}

json_t *sq_cmd_history(sq_cmds *sys, const char *name, int outcome, size_t limit)
{
    return sq__history_read(sys->history, name, outcome, limit);
}
