/* JSON Pointer, JSON Patch, JSON Merge Patch and diff (sq_server/jsonpatch.h),
 * written from RFC 6901, RFC 6902 and RFC 7396.
 *
 * Inputs are never changed: merge patch copies each object on the path it
 * changes (sharing the rest with the target), JSON Patch applies to a
 * private deep copy and hands it over only if every operation succeeded. */
#include "sq_server/jsonpatch.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_base/strbuf.h"

/* ------------------------------------------------------------- equality */

bool sq_json_equal(const json_t *a, const json_t *b)
{
    if (a == b)
        return true;
    if (!a || !b)
        return false;
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    if (json_typeof(a) != json_typeof(b))
        return false;
    switch (json_typeof(a)) {
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *k;
        size_t klen;
        json_t *va;
        json_object_keylen_foreach((json_t *)a, k, klen, va) {
            json_t *vb = json_object_getn(b, k, klen);
            if (!vb || !sq_json_equal(va, vb))
                return false;
        }
        return true;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(a);
        if (n != json_array_size(b))
            return false;
        for (size_t i = 0; i < n; i++)
            if (!sq_json_equal(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b),
                      json_string_length(a)) == 0;
    default: /* true, false, null: same type is same value */
        return true;
    }
}

/* ------------------------------------------------------------- pointers */

/* One reference token of a pointer, unescaped (into a buffer of its own:
 * tokens are short, and keys may be anything). */
typedef struct token {
    char *s;
    size_t len;
} token;

/* Splits ptr into unescaped tokens: 0 with *toks (malloc'ed, each token's
 * text in one block after the array) and *n, -EINVAL, -ENOMEM. */
static int pointer_parse(const char *ptr, token **toks, size_t *n)
{
    *toks = NULL;
    *n = 0;
    if (!ptr)
        return -EINVAL;
    if (*ptr == '\0')
        return 0;
    if (*ptr != '/')
        return -EINVAL;
    size_t count = 0, len = strlen(ptr);
    for (const char *p = ptr; *p; p++)
        count += *p == '/';
    token *t = malloc(count * sizeof *t + len + count);
    if (!t)
        return -ENOMEM;
    char *out = (char *)(t + count);
    size_t i = 0;
    for (const char *p = ptr + 1;; p++) {
        t[i].s = out;
        const char *start = out;
        for (; *p && *p != '/'; p++) {
            if (*p == '~') {
                if (p[1] != '0' && p[1] != '1') {
                    free(t);
                    return -EINVAL;
                }
                *out++ = p[1] == '0' ? '~' : '/';
                p++;
            } else {
                *out++ = *p;
            }
        }
        t[i].len = (size_t)(out - start);
        *out++ = '\0';
        i++;
        if (!*p)
            break;
    }
    *toks = t;
    *n = count;
    return 0;
}

/* An array index token: a decimal without leading zeros ("0" is fine).
 * -1 if it is not one (or too large to be an index). */
static long array_index(const token *t)
{
    if (t->len == 0 || t->len > 18 || (t->len > 1 && t->s[0] == '0'))
        return -1;
    long v = 0;
    for (size_t i = 0; i < t->len; i++) {
        if (t->s[i] < '0' || t->s[i] > '9')
            return -1;
        v = v * 10 + (t->s[i] - '0');
    }
    return v;
}

static bool is_dash(const token *t)
{
    return t->len == 1 && t->s[0] == '-';
}

/* The child of v named by t, or NULL. */
static json_t *child(const json_t *v, const token *t)
{
    if (json_is_object(v))
        return json_object_getn(v, t->s, t->len);
    if (json_is_array(v)) {
        long i = array_index(t);
        return i >= 0 && (size_t)i < json_array_size(v)
                   ? json_array_get(v, (size_t)i)
                   : NULL;
    }
    return NULL;
}

int sq_json_pointer_get(const json_t *doc, const char *ptr, json_t **out)
{
    token *t;
    size_t n;
    int rc = pointer_parse(ptr, &t, &n);
    if (rc)
        return rc;
    const json_t *v = doc;
    for (size_t i = 0; i < n && v; i++)
        v = child(v, &t[i]);
    free(t);
    *out = (json_t *)v;
    return v ? 0 : -ENOENT;
}

size_t sq_json_pointer_escape(const char *key, char *buf, size_t cap)
{
    size_t need = 0;
    for (const char *p = key; *p; p++) {
        const char *rep = *p == '~' ? "~0" : *p == '/' ? "~1" : NULL;
        size_t k = rep ? 2 : 1;
        for (size_t j = 0; j < k; j++, need++)
            if (need + 1 < cap)
                buf[need] = rep ? rep[j] : *p;
    }
    if (cap)
        buf[need < cap ? need : cap - 1] = '\0';
    return need;
}

/* ----------------------------------------------------------- merge patch */

int sq_json_merge_patch(const json_t *target, const json_t *patch, json_t **out)
{
    *out = NULL;
    if (!json_is_object(patch)) {
        *out = json_incref((json_t *)patch);
        return 0;
    }
    /* A shallow copy: this level is new, its members are shared with the
     * target until a member is itself patched. */
    json_t *res = json_is_object(target) ? json_copy((json_t *)target) : json_object();
    if (!res)
        return -ENOMEM;
    const char *k;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)patch, k, klen, v) {
        if (json_is_null(v)) {
            json_object_deln(res, k, klen);
            continue;
        }
        json_t *merged;
        if (sq_json_merge_patch(json_object_getn(res, k, klen), v, &merged) != 0 ||
            json_object_setn_new(res, k, klen, merged) != 0) {
            json_decref(res);
            return -ENOMEM;
        }
    }
    *out = res;
    return 0;
}

/* ----------------------------------------------------------- JSON Patch */

static int fail(sq_jpatch_err *err, long op, const char *reason, int code,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int fail(sq_jpatch_err *err, long op, const char *reason, int code,
                const char *fmt, ...)
{
    if (err) {
        err->op = op;
        err->reason = reason;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Where an operation's path leads: the parent container and the last
 * token (or, for the root, parent NULL). */
typedef struct loc {
    token *toks;
    size_t n;
    json_t *parent;   /* borrowed from the working copy */
} loc;

/* Resolves everything but the last token of ptr in *root. */
static int locate(json_t *root, const char *ptr, loc *l)
{
    int rc = pointer_parse(ptr, &l->toks, &l->n);
    if (rc)
        return rc;
    l->parent = NULL;
    if (l->n == 0)
        return 0;
    json_t *v = root;
    for (size_t i = 0; i + 1 < l->n && v; i++)
        v = child(v, &l->toks[i]);
    if (!json_is_object(v) && !json_is_array(v)) {
        free(l->toks);
        l->toks = NULL;
        return -ENOENT;
    }
    l->parent = v;
    return 0;
}

static token *last(loc *l)
{
    return &l->toks[l->n - 1];
}

/* add: value (a reference, taken over) at l.  -ENOENT for a bad index. */
static int do_add(json_t **root, loc *l, json_t *value)
{
    if (l->n == 0) {
        json_decref(*root);
        *root = value;
        return 0;
    }
    token *t = last(l);
    if (json_is_object(l->parent))
        return json_object_setn_new(l->parent, t->s, t->len, value) ? -ENOMEM : 0;
    size_t len = json_array_size(l->parent);
    long i = is_dash(t) ? (long)len : array_index(t);
    if (i < 0 || (size_t)i > len) {
        json_decref(value);
        return -ENOENT;
    }
    return json_array_insert_new(l->parent, (size_t)i, value) ? -ENOMEM : 0;
}

/* remove: the value at l, handed to *taken (a reference) if not NULL. */
static int do_remove(loc *l, json_t **taken)
{
    if (l->n == 0)
        return -ENOENT; /* the whole document cannot be removed */
    token *t = last(l);
    json_t *v = child(l->parent, t);
    if (!v)
        return -ENOENT;
    if (taken)
        *taken = json_incref(v);
    if (json_is_object(l->parent))
        json_object_deln(l->parent, t->s, t->len);
    else
        json_array_remove(l->parent, (size_t)array_index(t));
    return 0;
}

static const char *member_str(json_t *op, const char *name)
{
    return json_string_value(json_object_get(op, name));
}

/* Is pointer a a proper prefix of pointer b (b inside a's value)? */
static bool proper_prefix(const char *a, const char *b)
{
    size_t n = strlen(a);
    return strncmp(a, b, n) == 0 && b[n] == '/';
}

/* Applies op number i to *root.  0 or a negative code (err filled). */
static int apply_op(json_t **root, json_t *op, long i, size_t max_bytes,
                    sq_jpatch_err *err)
{
    if (!json_is_object(op))
        return fail(err, i, "malformed", -EINVAL, "operation %ld is not an object", i);
    const char *name = member_str(op, "op");
    const char *path = member_str(op, "path");
    if (!name)
        return fail(err, i, "malformed", -EINVAL, "operation %ld has no \"op\" string", i);
    if (!path)
        return fail(err, i, "malformed", -EINVAL, "operation %ld has no \"path\" string", i);
    bool is_add = strcmp(name, "add") == 0, is_remove = strcmp(name, "remove") == 0;
    bool is_replace = strcmp(name, "replace") == 0, is_move = strcmp(name, "move") == 0;
    bool is_copy = strcmp(name, "copy") == 0, is_test = strcmp(name, "test") == 0;
    if (!is_add && !is_remove && !is_replace && !is_move && !is_copy && !is_test)
        return fail(err, i, "malformed", -EINVAL,
                    "operation %ld: unknown op \"%.40s\"", i, name);
    json_t *value = json_object_get(op, "value");
    if ((is_add || is_replace || is_test) && !value)
        return fail(err, i, "malformed", -EINVAL,
                    "operation %ld (%s) has no \"value\"", i, name);
    const char *from = member_str(op, "from");
    if ((is_move || is_copy) && !from)
        return fail(err, i, "malformed", -EINVAL,
                    "operation %ld (%s) has no \"from\" string", i, name);

    json_t *target;
    int rc;
    if (is_test) {
        rc = sq_json_pointer_get(*root, path, &target);
        if (rc == -EINVAL)
            return fail(err, i, "malformed", rc, "operation %ld: bad path \"%.80s\"", i, path);
        if (rc)
            return fail(err, i, "path_not_found", rc, "operation %ld (test): no value at \"%.80s\"",
                        i, path);
        if (!sq_json_equal(target, value))
            return fail(err, i, "test_failed", -EDOM,
                        "operation %ld (test): the value at \"%.80s\" differs", i, path);
        return 0;
    }

    /* The value that goes in: the op's own (copied: the patch stays the
     * caller's), or what `from` holds. */
    json_t *in = NULL;
    if (is_move || is_copy) {
        json_t *src;
        rc = sq_json_pointer_get(*root, from, &src);
        if (rc == -EINVAL)
            return fail(err, i, "malformed", rc, "operation %ld: bad from \"%.80s\"", i, from);
        if (rc)
            return fail(err, i, "path_not_found", rc,
                        "operation %ld (%s): no value at from \"%.80s\"", i, name, from);
        if (is_move && proper_prefix(from, path))
            return fail(err, i, "move_into_child", -ENOENT,
                        "operation %ld (move): \"%.80s\" is inside \"%.80s\"", i, path, from);
        if (is_move && strcmp(from, path) == 0)
            return 0; /* moving a value onto itself changes nothing */
        if (is_move) {
            loc fl;
            if ((rc = locate(*root, from, &fl)) != 0)
                return fail(err, i, "path_not_found", rc, "operation %ld (move): bad from", i);
            rc = do_remove(&fl, &in);
            free(fl.toks);
            if (rc)
                return fail(err, i, "path_not_found", rc,
                            "operation %ld (move): no value at from \"%.80s\"", i, from);
        } else {
            in = json_deep_copy(src);
        }
    } else if (is_add || is_replace) {
        in = json_deep_copy(value);
    }
    if ((is_add || is_replace || is_move || is_copy) && !in)
        return fail(err, i, "too_large", -ENOMEM, "out of memory");

    loc l;
    rc = locate(*root, path, &l);
    if (rc) {
        json_decref(in);
        return rc == -EINVAL
                   ? fail(err, i, "malformed", rc, "operation %ld: bad path \"%.80s\"", i, path)
                   : fail(err, i, "path_not_found", rc,
                          "operation %ld (%s): the parent of \"%.80s\" does not exist", i,
                          name, path);
    }
    if (is_remove) {
        rc = do_remove(&l, NULL);
    } else if (is_replace) {
        if (l.n > 0 && !child(l.parent, last(&l))) {
            json_decref(in);
            rc = -ENOENT;
        } else if (l.n > 0 && json_is_array(l.parent)) {
            rc = json_array_set_new(l.parent, (size_t)array_index(last(&l)), in) ? -ENOMEM : 0;
        } else {
            rc = do_add(root, &l, in);
        }
    } else {
        rc = do_add(root, &l, in);
    }
    free(l.toks);
    if (rc == -ENOMEM)
        return fail(err, i, "too_large", rc, "out of memory");
    if (rc)
        return fail(err, i, "path_not_found", rc, "operation %ld (%s): no place \"%.80s\"", i,
                    name, path);
    if (is_copy && max_bytes && sq_json_text_size(*root, max_bytes) > max_bytes)
        return fail(err, i, "too_large", -EFBIG,
                    "operation %ld (copy): the document would pass %zu bytes", i, max_bytes);
    return 0;
}

int sq_json_patch_apply(const json_t *doc, const json_t *patch, size_t max_bytes,
                        json_t **out, sq_jpatch_err *err)
{
    *out = NULL;
    if (err) {
        err->op = -1;
        err->reason = NULL;
        err->message[0] = '\0';
    }
    if (!json_is_array(patch))
        return fail(err, -1, "malformed", -EINVAL, "a JSON Patch is an array of operations");
    json_t *root = doc ? json_deep_copy(doc) : json_null();
    if (!root)
        return fail(err, -1, "too_large", -ENOMEM, "out of memory");
    for (size_t i = 0; i < json_array_size(patch); i++) {
        int rc = apply_op(&root, json_array_get(patch, i), (long)i, max_bytes, err);
        if (rc) {
            json_decref(root);
            return rc;
        }
    }
    *out = root;
    return 0;
}

/* ----------------------------------------------------------------- diff */

static int add_op(json_t *ops, const char *op, const char *path, json_t *value)
{
    json_t *o = value ? json_pack("{s:s,s:s,s:O}", "op", op, "path", path, "value", value)
                      : json_pack("{s:s,s:s}", "op", op, "path", path);
    return o && json_array_append_new(ops, o) == 0 ? 0 : -ENOMEM;
}

static int diff_into(json_t *ops, const json_t *a, const json_t *b, sq__strbuf *path);

/* path + "/" + token, for the duration of fn. */
static int with_token(sq__strbuf *path, const char *tok, json_t *ops, const json_t *a,
                      const json_t *b)
{
    size_t keep = path->len;
    char small[128];
    size_t need = sq_json_pointer_escape(tok, small, sizeof small);
    sq__strbuf_putc(path, '/');
    if (need < sizeof small) {
        sq__strbuf_add(path, small, need);
    } else {
        char *big = malloc(need + 1);
        if (!big)
            return -ENOMEM;
        sq_json_pointer_escape(tok, big, need + 1);
        sq__strbuf_add(path, big, need);
        free(big);
    }
    if (path->failed)
        return -ENOMEM;
    int rc;
    if (!a)
        rc = add_op(ops, "add", path->buf, (json_t *)b);
    else if (!b)
        rc = add_op(ops, "remove", path->buf, NULL);
    else
        rc = diff_into(ops, a, b, path);
    path->len = keep;
    if (path->buf)
        path->buf[keep] = '\0';
    return rc;
}

static int diff_into(json_t *ops, const json_t *a, const json_t *b, sq__strbuf *path)
{
    if (sq_json_equal(a, b))
        return 0;
    const char *here = sq__strbuf_str(path);
    if (json_is_object(a) && json_is_object(b)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v)
            if (!json_object_get(b, k) && with_token(path, k, ops, v, NULL))
                return -ENOMEM;
        json_object_foreach((json_t *)b, k, v)
            if (with_token(path, k, ops, json_object_get(a, k), v))
                return -ENOMEM;
        return 0;
    }
    if (json_is_array(a) && json_is_array(b)) {
        /* Index by index over the common length, then the tail; unless a
         * replacement says it in fewer operations. */
        json_t *sub = json_array();
        if (!sub)
            return -ENOMEM;
        size_t la = json_array_size(a), lb = json_array_size(b), common = la < lb ? la : lb;
        char idx[24];
        int rc = 0;
        for (size_t i = 0; i < common && !rc; i++) {
            snprintf(idx, sizeof idx, "%zu", i);
            rc = with_token(path, idx, sub, json_array_get(a, i), json_array_get(b, i));
        }
        for (size_t i = la; i > lb && !rc; i--) { /* from the end: indexes stay valid */
            snprintf(idx, sizeof idx, "%zu", i - 1);
            rc = with_token(path, idx, sub, json_array_get(a, i - 1), NULL);
        }
        for (size_t i = la; i < lb && !rc; i++) {
            snprintf(idx, sizeof idx, "%zu", i);
            rc = with_token(path, idx, sub, NULL, json_array_get(b, i));
        }
        if (!rc && json_array_size(sub) > 1 && json_array_size(sub) >= lb)
            rc = add_op(ops, "replace", sq__strbuf_str(path), (json_t *)b);
        else if (!rc)
            rc = json_array_extend(ops, sub) ? -ENOMEM : 0;
        json_decref(sub);
        return rc;
    }
    return add_op(ops, "replace", here, (json_t *)b);
}

json_t *sq_json_diff(const json_t *from, const json_t *to)
{
    json_t *ops = json_array();
    sq__strbuf path = SQ__STRBUF_INIT;
    sq__strbuf_reserve(&path, 64);
    if (path.buf)
        path.buf[0] = '\0';
    if (!ops || path.failed || diff_into(ops, from ? from : json_null(),
                                         to ? to : json_null(), &path) != 0) {
        json_decref(ops);
        ops = NULL;
    }
    sq__strbuf_free(&path);
    return ops;
}

/* ----------------------------------------------------------------- size */

/* Bytes of s as a JSON string literal (jansson's escapes: the two-letter
 * ones, \uXXXX for other control characters; UTF-8 as it is). */
static size_t string_size(const char *s, size_t n)
{
    size_t len = 2;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' ||
            c == '\r' || c == '\t')
            len += 2;
        else if (c < 0x20)
            len += 6;
        else
            len++;
    }
    return len;
}

static size_t size_rec(const json_t *v, size_t cap, size_t acc)
{
    if (cap && acc > cap)
        return acc;
    char num[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(v);
        acc += 2 + (n ? n - 1 : 0) + n; /* braces, commas, colons */
        const char *k;
        size_t klen;
        json_t *m;
        json_object_keylen_foreach((json_t *)v, k, klen, m) {
            acc = size_rec(m, cap, acc + string_size(k, klen));
            if (cap && acc > cap)
                break;
        }
        return acc;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        acc += 2 + (n ? n - 1 : 0);
        for (size_t i = 0; i < n && !(cap && acc > cap); i++)
            acc = size_rec(json_array_get(v, i), cap, acc);
        return acc;
    }
    case JSON_STRING:
        return acc + string_size(json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return acc + (size_t)snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT,
                                      json_integer_value(v));
    case JSON_REAL: {
        int n = snprintf(num, sizeof num, "%.17g", json_real_value(v));
        /* jansson adds ".0" to a real that prints like an integer */
        return acc + (size_t)n + (strpbrk(num, ".eE") ? 0 : 2);
    }
    case JSON_TRUE:
        return acc + 4;
    case JSON_FALSE:
        return acc + 5;
    default:
        return acc + 4;
    }
}

size_t sq_json_text_size(const json_t *v, size_t cap)
{
    return v ? size_rec(v, cap, 0) : 0;
}
