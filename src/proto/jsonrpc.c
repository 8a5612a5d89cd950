/* JSON-RPC 2.0 messages (sq_proto/jsonrpc.h).
 *
 * jansson parses and validates the text; a small scanner then finds the
 * exact text of each message's "id" member, so that it can be written
 * back unchanged.  The scanner runs only on text jansson accepted, with
 * duplicate keys refused, so the two always agree on which member is the
 * id. */
#include "sq_proto/jsonrpc.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ scanning */

typedef struct scan {
    const char *p, *end;
} scan;

static void skip_ws(scan *s)
{
    while (s->p < s->end &&
           (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* At '"': moves past the closing quote: the first quote after the
 * opening one that an even number of backslashes precede (memchr: the
 * strings are most of a message's bytes). */
static void skip_string(scan *s)
{
    const char *start = s->p + 1, *p = start;
    for (;;) {
        const char *q = p < s->end ? memchr(p, '"', (size_t)(s->end - p)) : NULL;
        if (!q) {
            s->p = s->end;
            return;
        }
        size_t bs = 0;
        while (q - bs > start && q[-1 - (ptrdiff_t)bs] == '\\')
            bs++;
        if (bs % 2 == 0) {
            s->p = q + 1;
            return;
        }
        p = q + 1;
    }
}

/* Moves past one value (valid JSON: nesting is counted, strings skipped). */
static void skip_value(scan *s)
{
    skip_ws(s);
    if (s->p >= s->end)
        return;
    char c = *s->p;
    if (c == '"') {
        skip_string(s);
    } else if (c == '{' || c == '[') {
        int depth = 0;
        while (s->p < s->end) {
            c = *s->p;
            if (c == '"') {
                skip_string(s);
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if ((c == '}' || c == ']') && --depth == 0) {
                s->p++;
                return;
            }
            s->p++;
        }
    } else {
        while (s->p < s->end && *s->p != ',' && *s->p != '}' && *s->p != ']' &&
               *s->p != ' ' && *s->p != '\t' && *s->p != '\n' && *s->p != '\r')
            s->p++;
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* True if the string literal [q, e) (quotes included) decodes to "id"
 * (a key may spell it with escapes). */
static bool literal_is_id(const char *q, const char *e)
{
    char out[3];
    size_t n = 0;
    for (const char *p = q + 1; p < e - 1; p++) {
        char c = *p;
        if (c == '\\') {
            if (p + 1 >= e - 1)
                return false;
            if (p[1] != 'u') /* \" \\ \/ \b ...: none of them is i or d */
                return false;
            if (p + 5 >= e)
                return false;
            int v = 0;
            for (int i = 2; i < 6; i++) {
                int h = hexval(p[i]);
                if (h < 0)
                    return false;
                v = v * 16 + h;
            }
            if (v > 0x7f)
                return false;
            c = (char)v;
            p += 5;
        }
        if (n == 2)
            return false;
        out[n++] = c;
    }
    return n == 2 && out[0] == 'i' && out[1] == 'd';
}

/* At '{': finds the "id" member's value; moves past the object. */
static bool find_id(scan *s, const char **start, const char **stop)
{
    bool found = false;
    s->p++; /* '{' */
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end || *s->p == '}') {
            s->p++;
            return found;
        }
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        const char *k = s->p;
        skip_string(s);
        bool is_id = literal_is_id(k, s->p);
        skip_ws(s);
        s->p++; /* ':' */
        skip_ws(s);
        const char *v = s->p;
        skip_value(s);
        if (is_id && !found) {
            *start = v;
            *stop = s->p;
            found = true;
        }
    }
}

static char *dup_span(const char *a, const char *b)
{
    size_t n = (size_t)(b - a);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, a, n);
        d[n] = '\0';
    }
    return d;
}

/* ------------------------------------------------------ classification */

static void classify(sq_rpc_msg *m)
{
    json_t *v = m->json;
    if (!json_is_object(v)) {
        m->kind = SQ_RPC_INVALID;
        m->why = "a message must be a JSON object";
        return;
    }
    json_t *ver = json_object_get(v, "jsonrpc");
    json_t *id = json_object_get(v, "id");
    json_t *method = json_object_get(v, "method");
    bool id_ok = id && (json_is_string(id) || json_is_integer(id));
    if (!json_is_string(ver) || strcmp(json_string_value(ver), "2.0") != 0) {
        m->kind = SQ_RPC_INVALID;
        m->why = "\"jsonrpc\" must be \"2.0\"";
        return;
    }
    if (method) {
        json_t *params = json_object_get(v, "params");
        if (!json_is_string(method)) {
            m->kind = SQ_RPC_INVALID;
            m->why = "\"method\" must be a string";
        } else if (params && !json_is_object(params) && !json_is_array(params)) {
            m->kind = SQ_RPC_INVALID;
            m->why = "\"params\" must be an object or an array";
        } else if (id && !id_ok) {
            m->kind = SQ_RPC_INVALID;
            m->why = "\"id\" must be a string or an integer";
        } else {
            m->kind = id ? SQ_RPC_REQUEST : SQ_RPC_NOTIFICATION;
            m->method = json_string_value(method);
            m->params = params;
        }
        return;
    }
    json_t *result = json_object_get(v, "result");
    json_t *error = json_object_get(v, "error");
    if (id && (!result != !error)) {
        m->kind = SQ_RPC_RESPONSE;
        m->result = result;
        m->error = error;
        return;
    }
    m->kind = SQ_RPC_INVALID;
    m->why = id ? "a response must have exactly one of \"result\" and \"error\""
                : "a message needs a \"method\", or an \"id\" and a result";
}

/* Fills m from value v whose text starts at s->p (an element or the
 * whole body).  Moves s past it. */
static int take(sq_rpc_msg *m, json_t *v, scan *s)
{
    memset(m, 0, sizeof *m);
    m->json = json_incref(v);
    skip_ws(s);
    const char *a, *b;
    if (s->p < s->end && *s->p == '{') {
        if (find_id(s, &a, &b)) {
            json_t *id = json_object_get(v, "id");
            if (json_is_string(id) || json_is_number(id)) {
                m->id = dup_span(a, b);
                if (!m->id)
                    return -ENOMEM;
            }
        }
    } else {
        skip_value(s);
    }
    classify(m);
    return 0;
}

/* Parses text already loaded as root (a reference, taken over). */
static int parse_root(const char *text, size_t len, json_t *root, sq_rpc_parsed *out);

int sq_rpc_parse(const char *text, size_t len, sq_rpc_parsed *out)
{
    return sq_rpc_parse_cached(text, len, NULL, out);
}

/* ------------------------------------------------------ the _meta cache */

/* True if the string literal [q, e) (quotes included) is exactly the
 * plain text `key` (no escapes: a key spelled with escapes is not found,
 * which only costs the cache a miss).  literal_is: key is a string
 * literal, whose length sizeof gives. */
static bool literal_is_n(const char *q, const char *e, const char *key, size_t n)
{
    return (size_t)(e - q) == n + 2 && memcmp(q + 1, key, n) == 0;
}
#define literal_is(q, e, key) literal_is_n(q, e, key, sizeof key - 1)

/* At '{': moves to the value of the first member spelled `key` and
 * returns true; false if there is none.  Exact on valid JSON (the only
 * case that counts: see sq_rpc_parse_cached).  to_member: key is a
 * string literal. */
static bool to_member_n(scan *s, const char *key, size_t n)
{
    if (s->p >= s->end || *s->p != '{')
        return false;
    s->p++;
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end || *s->p == '}')
            return false;
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p != '"')
            return false;
        const char *k = s->p;
        skip_string(s);
        bool hit = literal_is_n(k, s->p, key, n);
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return false;
        s->p++;
        skip_ws(s);
        if (hit)
            return true;
        skip_value(s);
    }
}
#define to_member(s, key) to_member_n(s, key, sizeof key - 1)

void sq_rpc_meta_cache_clear(sq_rpc_meta_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].text);
        json_decref(c->e[i].value);
    }
    memset(c->e, 0, sizeof c->e);
    c->n = 0;
}

/* Where a body's params._meta member is. */
typedef struct meta_at {
    const char *cut;  /* where its text starts: after the value before it
                       * (so that the ',' goes with it), or after the '{' */
    const char *a;    /* its value's first byte */
    bool first;       /* it is params' first member */
} meta_at;

/* At params' '{': moves to the value of the member spelled "_meta",
 * noting where the member's text starts.  Strict: members separated by
 * exactly one ',', so that what lies between cut and a is exactly
 * [ws ',' ws] "_meta" ws ':' ws.  False if there is none. */
static bool to_meta(scan *s, meta_at *m)
{
    if (s->p >= s->end || *s->p != '{')
        return false;
    s->p++;
    m->cut = s->p;
    m->first = true;
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"')
            return false;
        const char *k = s->p;
        skip_string(s);
        bool hit = literal_is(k, s->p, "_meta");
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return false;
        s->p++;
        skip_ws(s);
        if (hit) {
            m->a = s->p;
            return true;
        }
        skip_value(s);
        m->cut = s->p;
        m->first = false;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ',')
            return false;
        s->p++;
    }
}

/* Parses the body without its params._meta member, whose value is the
 * entry's text, and puts the entry's object there.  The member goes from
 * m->cut to the end of the value, b; a first member also takes the ','
 * after it (then a member must follow), or else must be the only one.
 *
 * Why this is exact: call the body T and the rest T'.  The entry's text
 * is a complete JSON object without duplicate keys (the params._meta of a
 * message jansson accepted).  If jansson accepts T' and finds params with
 * no _meta in it, T' is valid, and the scanner, exact on valid JSON, walks
 * T' up to cut as it walked T (the bytes before cut are the same; a number
 * or literal just before cut ends there in both, at a delimiter): so in T'
 * too, cut is right after a member value of params (or right after its
 * '{').  T is T' with [',' ws] "_meta" ws ':' ws OBJECT [ws ','] put back
 * at cut, which there makes a valid member (a separator after a value; a
 * member before the first one; or the only one): T is valid, and its
 * messages are T''s with params._meta added.  Anything else is a miss
 * (-EAGAIN): the caller parses the whole body.  jansson keeps members in
 * the order they came: _meta is params' last member here. */
static int parse_hit(const char *text, size_t len, const meta_at *m,
                     const sq_rpc_meta_entry *e, sq_rpc_parsed *out)
{
    const char *b = m->a + e->len, *resume = b;
    bool comma = false;
    if (m->first) {
        scan s = {b, text + len};
        skip_ws(&s);
        if (s.p < s.end && *s.p == ',') {
            comma = true;
            resume = s.p + 1;
        } else if (s.p >= s.end || *s.p != '}') {
            return -EAGAIN;
        }
    }
    size_t head = (size_t)(m->cut - text), tail = len - (size_t)(resume - text);
    size_t n = head + tail;
    char *t = malloc(n ? n : 1);
    if (!t)
        return -EAGAIN;
    memcpy(t, text, head);
    memcpy(t + head, resume, tail);
    json_error_t err;
    json_t *root = json_loadb(t, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    json_t *params = json_object_get(root, "params");
    if (json_is_object(root) && json_is_object(params) &&
        !json_object_get(params, "_meta") && (!comma || json_object_size(params) > 0) &&
        json_object_set(params, "_meta", e->value) == 0) {
        int rc = parse_root(t, n, root, out);
        free(t);
        return rc;
    }
    json_decref(root);
    free(t);
    return -EAGAIN;
}

int sq_rpc_parse_cached(const char *text, size_t len, sq_rpc_meta_cache *c,
                        sq_rpc_parsed *out)
{
    memset(out, 0, sizeof *out);
    /* Where params._meta is, and the entry its text is, if any.  A peer
     * that never sent an envelope pays for a memmem, not a scan. */
    meta_at m = {0};
    const char *b = NULL;
    const sq_rpc_meta_entry *hit = NULL;
    if (c && len > 8 && (c->n || memmem(text, len, "\"_meta\"", 7))) {
        scan s = {text, text + len};
        skip_ws(&s);
        if (to_member(&s, "params") && to_meta(&s, &m)) {
            for (size_t i = 0; i < c->n && !hit; i++)
                if (c->e[i].len <= (size_t)(s.end - m.a) &&
                    memcmp(m.a, c->e[i].text, c->e[i].len) == 0)
                    hit = &c->e[i];
            if (!hit) {
                skip_value(&s);
                b = s.p;
            }
        }
    }
    if (hit) {
        int rc = parse_hit(text, len, &m, hit, out);
        if (rc != -EAGAIN) {
            c->hits++;
            return rc;
        }
        memset(out, 0, sizeof *out);
    }
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!root)
        return SQ_RPC_PARSE_ERROR;
    /* A new envelope becomes an entry while there is room: this message's
     * own object, shared from now on (see sq_proto/jsonrpc.h). */
    json_t *meta = b && c->n < SQ_RPC_META_CACHE_N &&
                           (size_t)(b - m.a) <= SQ_RPC_META_CACHE_MAX && json_is_object(root)
                       ? json_object_get(json_object_get(root, "params"), "_meta")
                       : NULL;
    char *copy = json_is_object(meta) ? malloc((size_t)(b - m.a)) : NULL;
    if (copy) {
        memcpy(copy, m.a, (size_t)(b - m.a));
        c->e[c->n++] = (sq_rpc_meta_entry){copy, (size_t)(b - m.a), json_incref(meta)};
    }
    return parse_root(text, len, root, out);
}

static int parse_root(const char *text, size_t len, json_t *root, sq_rpc_parsed *out)
{
    int rc = 0;
    scan s = {text, text + len};
    skip_ws(&s);
    if (json_is_array(root)) {
        out->batch = true;
        out->n = json_array_size(root);
        if (out->n) {
            out->msgs = calloc(out->n, sizeof *out->msgs);
            if (!out->msgs) {
                rc = -ENOMEM;
                goto done;
            }
        }
        s.p++; /* '[' */
        for (size_t i = 0; i < out->n && rc == 0; i++) {
            skip_ws(&s);
            if (*s.p == ',')
                s.p++;
            rc = take(&out->msgs[i], json_array_get(root, i), &s);
        }
    } else if (json_is_object(root)) {
        out->n = 1;
        out->msgs = calloc(1, sizeof *out->msgs);
        rc = out->msgs ? take(&out->msgs[0], root, &s) : -ENOMEM;
    } else {
        rc = SQ_RPC_INVALID_REQUEST;
    }
done:
    json_decref(root);
    if (rc)
        sq_rpc_parsed_free(out);
    return rc;
}

void sq_rpc_msg_free(sq_rpc_msg *m)
{
    json_decref(m->json);
    free(m->id);
    memset(m, 0, sizeof *m);
}

void sq_rpc_parsed_free(sq_rpc_parsed *p)
{
    for (size_t i = 0; i < p->n && p->msgs; i++)
        sq_rpc_msg_free(&p->msgs[i]);
    free(p->msgs);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------- writing */

static int dump_cb(const char *buf, size_t size, void *data)
{
    sq__strbuf_add(data, buf, size);
    return 0;
}

void sq_rpc_write_json(sq__strbuf *b, json_t *v)
{
    if (!v) {
        sq__strbuf_puts(b, "null");
        return;
    }
    if (json_dump_callback(v, dump_cb, b, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
        b->failed = true;
}

static void head(sq__strbuf *b, const char *raw_id, bool with_id)
{
    sq__strbuf_puts(b, "{\"jsonrpc\":\"2.0\"");
    if (with_id) {
        sq__strbuf_puts(b, ",\"id\":");
        sq__strbuf_puts(b, raw_id ? raw_id : "null");
    }
}

void sq_rpc_write_result(sq__strbuf *b, const char *raw_id, json_t *result)
{
    sq_rpc_write_result_with(b, raw_id, result, NULL);
}

void sq_rpc_write_result_with(sq__strbuf *b, const char *raw_id, json_t *result,
                              const char *extra)
{
    head(b, raw_id, true);
    sq__strbuf_puts(b, ",\"result\":");
    sq_rpc_write_json(b, result);
    if (extra && json_is_object(result) && !b->failed && b->len &&
        b->buf[b->len - 1] == '}') {
        b->len--; /* the object's '}': the members go in before it */
        if (json_object_size(result))
            sq__strbuf_putc(b, ',');
        sq__strbuf_puts(b, extra);
        sq__strbuf_putc(b, '}');
    }
    sq__strbuf_putc(b, '}');
}

void sq_rpc_write_error(sq__strbuf *b, const char *raw_id, int code,
                        const char *message, json_t *data)
{
    head(b, raw_id, true);
    sq__strbuf_printf(b, ",\"error\":{\"code\":%d,\"message\":", code);
    json_t *m = json_string(message ? message : "");
    if (m)
        sq_rpc_write_json(b, m);
    else /* not UTF-8: say so rather than write invalid JSON */
        sq__strbuf_puts(b, "\"(unprintable error message)\"");
    json_decref(m);
    if (data) {
        sq__strbuf_puts(b, ",\"data\":");
        sq_rpc_write_json(b, data);
    }
    sq__strbuf_puts(b, "}}");
}

void sq_rpc_write_request(sq__strbuf *b, const char *raw_id,
                          const char *method, json_t *params)
{
    head(b, raw_id, true);
    sq__strbuf_puts(b, ",\"method\":");
    json_t *m = json_string(method);
    sq_rpc_write_json(b, m);
    json_decref(m);
    if (params) {
        sq__strbuf_puts(b, ",\"params\":");
        sq_rpc_write_json(b, params);
    }
    sq__strbuf_putc(b, '}');
}

void sq_rpc_write_notification(sq__strbuf *b, const char *method,
                               json_t *params)
{
    head(b, NULL, false);
    sq__strbuf_puts(b, ",\"method\":");
    json_t *m = json_string(method);
    sq_rpc_write_json(b, m);
    json_decref(m);
    if (params) {
        sq__strbuf_puts(b, ",\"params\":");
        sq_rpc_write_json(b, params);
    }
    sq__strbuf_putc(b, '}');
}
