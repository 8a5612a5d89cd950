/* JSON Schema validation (sq_server/schema.h).
 *
 * A schema is compiled once into a tree of nodes (one per schema object,
 * $ref resolved to the node it names, so recursive schemas are cycles in
 * the tree), then every call validates against the tree: no keyword is
 * looked up by name at validation time.  Validation stops at the first
 * failure and reports where (a JSON pointer into the instance) and which
 * keyword failed. */
#include "sq_server/schema.h"

#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    T_NULL = 1, T_BOOLEAN = 2, T_OBJECT = 4, T_ARRAY = 8, T_NUMBER = 16,
    T_STRING = 32, T_INTEGER = 64,
};

typedef struct node node;

typedef struct prop {
    char *name;
    node *schema;
} prop;

typedef struct pattern_prop {
    regex_t re;
    node *schema;
} pattern_prop;

struct node {
    json_t *src;                 /* the schema object (of the root's tree) */
    int boolean;                 /* -1: an object schema; 0/1: false/true */
    unsigned types;              /* 0: any */
    json_t *enum_;
    json_t *const_;
    bool has_const;
    bool has_min, has_max, has_xmin, has_xmax, has_mult;
    double min, max, xmin, xmax, mult;
    long min_len, max_len;       /* -1: none */
    regex_t *pattern;
    prop *props;
    size_t nprops;
    json_t *required;
    node *additional;
    pattern_prop *pprops;
    size_t npprops;
    node *property_names;
    long min_props, max_props;
    json_t *dep_required;
    node *items;
    node **prefix;
    size_t nprefix;
    long min_items, max_items;
    bool unique;
    node *contains;
    long min_contains, max_contains;
    node **all_of, **any_of, **one_of;
    size_t nall, nany, none;
    node *not_, *if_, *then_, *else_;
    const char *ref;             /* the $ref text until resolved */
    node *ref_node;
};

struct sq_schema {
    json_t *root;
    node *top;
    node **all;                  /* every node, for lookup and freeing */
    size_t nall, capall;
};

typedef struct compiler {
    sq_schema *s;
    char *err;
    size_t errlen;
    bool failed;
} compiler;

static void cfail(compiler *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void cfail(compiler *c, const char *fmt, ...)
{
    if (c->failed)
        return;
    c->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------- regexes */

/* Translates the ECMA-262 escapes POSIX lacks (\d \w \s and their
 * negations) and refuses what POSIX cannot do.  Returns 0 or -1. */
static int compile_regex(const char *src, regex_t *re, compiler *c)
{
    size_t n = strlen(src);
    char *out = malloc(n * 12 + 1), *o = out;
    if (!out) {
        cfail(c, "out of memory");
        return -1;
    }
    for (const char *p = src; *p; p++) {
        if (p[0] == '(' && p[1] == '?') {
            free(out);
            cfail(c, "pattern \"%s\": lookaround and (?...) groups are not supported", src);
            return -1;
        }
        if ((p[0] == '*' || p[0] == '+' || p[0] == '?' || p[0] == '}') && p[1] == '?') {
            free(out);
            cfail(c, "pattern \"%s\": lazy quantifiers are not supported", src);
            return -1;
        }
        if (*p != '\\' || !p[1]) {
            *o++ = *p;
            continue;
        }
        p++;
        const char *rep = NULL;
        switch (*p) {
        case 'd': rep = "[0-9]"; break;
        case 'D': rep = "[^0-9]"; break;
        case 'w': rep = "[A-Za-z0-9_]"; break;
        case 'W': rep = "[^A-Za-z0-9_]"; break;
        case 's': rep = "[[:space:]]"; break;
        case 'S': rep = "[^[:space:]]"; break;
        case 'n': rep = "\n"; break;
        case 't': rep = "\t"; break;
        default:
            if (*p >= '1' && *p <= '9') {
                free(out);
                cfail(c, "pattern \"%s\": backreferences are not supported", src);
                return -1;
            }
            *o++ = '\\';
            *o++ = *p;
            continue;
        }
        size_t k = strlen(rep);
        memcpy(o, rep, k);
        o += k;
    }
    *o = '\0';
    int rc = regcomp(re, out, REG_EXTENDED | REG_NOSUB);
    free(out);
    if (rc) {
        cfail(c, "pattern \"%s\" is not a regular expression this validator supports", src);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ compiling */

static node *compile(compiler *c, json_t *j);

static bool number_of(json_t *j, double *out)
{
    if (!json_is_number(j))
        return false;
    *out = json_number_value(j);
    return true;
}

static long count_of(compiler *c, json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return -1;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        cfail(c, "%s must be a non-negative integer", key);
        return -1;
    }
    return (long)json_integer_value(v);
}

static unsigned type_bit(const char *t)
{
    static const struct { const char *n; unsigned b; } map[] = {
        {"null", T_NULL}, {"boolean", T_BOOLEAN}, {"object", T_OBJECT},
        {"array", T_ARRAY}, {"number", T_NUMBER}, {"string", T_STRING},
        {"integer", T_INTEGER},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (strcmp(map[i].n, t) == 0)
            return map[i].b;
    return 0;
}

static node **compile_list(compiler *c, json_t *a, const char *key, size_t *n)
{
    if (!json_is_array(a) || json_array_size(a) == 0) {
        cfail(c, "%s must be a non-empty array of schemas", key);
        return NULL;
    }
    *n = json_array_size(a);
    node **l = calloc(*n, sizeof *l);
    if (!l) {
        cfail(c, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < *n; i++)
        l[i] = compile(c, json_array_get(a, i));
    return l;
}

static const char *const ignored[] = {
    "title", "description", "default", "examples", "format", "$schema", "$id",
    "$comment", "deprecated", "readOnly", "writeOnly", "$anchor", "$defs",
    "definitions", "contentMediaType", "contentEncoding", NULL,
};
static const char *const refused[] = {
    "$dynamicRef", "$dynamicAnchor", "unevaluatedProperties", "unevaluatedItems",
    "dependentSchemas", "contentSchema", "$vocabulary", "$recursiveRef",
    "$recursiveAnchor", NULL,
};

static bool in(const char *const *list, const char *k)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], k) == 0)
            return true;
    return false;
}

static node *compile(compiler *c, json_t *j)
{
    if (c->failed)
        return NULL;
    node *n = calloc(1, sizeof *n);
    sq_schema *s = c->s;
    if (!n || (s->nall == s->capall &&
               !(s->all = realloc(s->all, (s->capall = s->capall ? 2 * s->capall : 16) *
                                              sizeof *s->all)))) {
        free(n);
        cfail(c, "out of memory");
        return NULL;
    }
    s->all[s->nall++] = n;
    n->src = j;
    n->min_len = n->max_len = n->min_props = n->max_props = -1;
    n->min_items = n->max_items = n->min_contains = n->max_contains = -1;
    if (json_is_boolean(j)) {
        n->boolean = json_is_true(j);
        return n;
    }
    n->boolean = -1;
    if (!json_is_object(j)) {
        cfail(c, "a schema must be an object or a boolean");
        return n;
    }
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        if (c->failed)
            break;
        if (in(refused, k)) {
            cfail(c, "the keyword %s is not supported", k);
        } else if (strcmp(k, "$schema") == 0) {
            const char *d = json_string_value(v);
            if (!d || (strcmp(d, "https://json-schema.org/draft/2020-12/schema") != 0 &&
                       strcmp(d, "https://json-schema.org/draft/2020-12/schema#") != 0))
                cfail(c, "$schema %s: only the 2020-12 dialect is supported",
                      d ? d : "(not a string)");
        } else if (strcmp(k, "$defs") == 0 || strcmp(k, "definitions") == 0) {
            const char *dk;
            json_t *dv;
            json_object_foreach(v, dk, dv)
                compile(c, dv);
        } else if (in(ignored, k) || strncmp(k, "x-", 2) == 0) {
            continue;
        } else if (strcmp(k, "type") == 0) {
            if (json_is_string(v)) {
                n->types = type_bit(json_string_value(v));
            } else if (json_is_array(v)) {
                size_t i;
                json_t *t;
                json_array_foreach(v, i, t)
                    n->types |= json_is_string(t) ? type_bit(json_string_value(t)) : 0;
            }
            if (!n->types)
                cfail(c, "type must name JSON types (null, boolean, object, array, "
                         "number, string, integer)");
        } else if (strcmp(k, "enum") == 0) {
            if (!json_is_array(v))
                cfail(c, "enum must be an array");
            n->enum_ = v;
        } else if (strcmp(k, "const") == 0) {
            n->const_ = v;
            n->has_const = true;
        } else if (strcmp(k, "minimum") == 0) {
            n->has_min = number_of(v, &n->min) || (cfail(c, "minimum must be a number"), false);
        } else if (strcmp(k, "maximum") == 0) {
            n->has_max = number_of(v, &n->max) || (cfail(c, "maximum must be a number"), false);
        } else if (strcmp(k, "exclusiveMinimum") == 0) {
            n->has_xmin = number_of(v, &n->xmin) ||
                          (cfail(c, "exclusiveMinimum must be a number"), false);
        } else if (strcmp(k, "exclusiveMaximum") == 0) {
            n->has_xmax = number_of(v, &n->xmax) ||
                          (cfail(c, "exclusiveMaximum must be a number"), false);
        } else if (strcmp(k, "multipleOf") == 0) {
            n->has_mult = number_of(v, &n->mult) && n->mult > 0;
            if (!n->has_mult)
                cfail(c, "multipleOf must be a number above 0");
        } else if (strcmp(k, "minLength") == 0) {
            n->min_len = count_of(c, j, k);
        } else if (strcmp(k, "maxLength") == 0) {
            n->max_len = count_of(c, j, k);
        } else if (strcmp(k, "pattern") == 0) {
            if (!json_is_string(v)) {
                cfail(c, "pattern must be a string");
                continue;
            }
            n->pattern = malloc(sizeof *n->pattern);
            if (!n->pattern || compile_regex(json_string_value(v), n->pattern, c) != 0) {
                free(n->pattern);
                n->pattern = NULL;
            }
        } else if (strcmp(k, "properties") == 0) {
            if (!json_is_object(v)) {
                cfail(c, "properties must be an object");
                continue;
            }
            n->props = calloc(json_object_size(v) + 1, sizeof *n->props);
            const char *pk;
            json_t *pv;
            json_object_foreach(v, pk, pv) {
                n->props[n->nprops].name = strdup(pk);
                n->props[n->nprops++].schema = compile(c, pv);
            }
        } else if (strcmp(k, "required") == 0) {
            size_t i;
            json_t *r;
            bool ok = json_is_array(v);
            json_array_foreach(v, i, r) ok &= json_is_string(r);
            if (!ok)
                cfail(c, "required must be an array of strings");
            n->required = v;
        } else if (strcmp(k, "additionalProperties") == 0) {
            n->additional = compile(c, v);
        } else if (strcmp(k, "patternProperties") == 0) {
            if (!json_is_object(v)) {
                cfail(c, "patternProperties must be an object");
                continue;
            }
            n->pprops = calloc(json_object_size(v) + 1, sizeof *n->pprops);
            const char *pk;
            json_t *pv;
            json_object_foreach(v, pk, pv) {
                if (compile_regex(pk, &n->pprops[n->npprops].re, c) != 0)
                    break;
                n->pprops[n->npprops++].schema = compile(c, pv);
            }
        } else if (strcmp(k, "propertyNames") == 0) {
            n->property_names = compile(c, v);
        } else if (strcmp(k, "minProperties") == 0) {
            n->min_props = count_of(c, j, k);
        } else if (strcmp(k, "maxProperties") == 0) {
            n->max_props = count_of(c, j, k);
        } else if (strcmp(k, "dependentRequired") == 0) {
            if (!json_is_object(v))
                cfail(c, "dependentRequired must be an object of arrays");
            n->dep_required = v;
        } else if (strcmp(k, "items") == 0) {
            n->items = compile(c, v);
        } else if (strcmp(k, "prefixItems") == 0) {
            n->prefix = compile_list(c, v, k, &n->nprefix);
        } else if (strcmp(k, "minItems") == 0) {
            n->min_items = count_of(c, j, k);
        } else if (strcmp(k, "maxItems") == 0) {
            n->max_items = count_of(c, j, k);
        } else if (strcmp(k, "uniqueItems") == 0) {
            n->unique = json_is_true(v);
        } else if (strcmp(k, "contains") == 0) {
            n->contains = compile(c, v);
        } else if (strcmp(k, "minContains") == 0) {
            n->min_contains = count_of(c, j, k);
        } else if (strcmp(k, "maxContains") == 0) {
            n->max_contains = count_of(c, j, k);
        } else if (strcmp(k, "allOf") == 0) {
            n->all_of = compile_list(c, v, k, &n->nall);
        } else if (strcmp(k, "anyOf") == 0) {
            n->any_of = compile_list(c, v, k, &n->nany);
        } else if (strcmp(k, "oneOf") == 0) {
            n->one_of = compile_list(c, v, k, &n->none);
        } else if (strcmp(k, "not") == 0) {
            n->not_ = compile(c, v);
        } else if (strcmp(k, "if") == 0) {
            n->if_ = compile(c, v);
        } else if (strcmp(k, "then") == 0) {
            n->then_ = compile(c, v);
        } else if (strcmp(k, "else") == 0) {
            n->else_ = compile(c, v);
        } else if (strcmp(k, "$ref") == 0) {
            if (!json_is_string(v) || json_string_value(v)[0] != '#')
                cfail(c, "$ref %s: only references within the schema (\"#...\") "
                         "are supported",
                      json_is_string(v) ? json_string_value(v) : "(not a string)");
            else
                n->ref = json_string_value(v);
        }
        /* Unknown keywords are annotations in 2020-12: ignored. */
    }
    return n;
}

/* The node compiled for schema object j, or NULL. */
static node *node_of(sq_schema *s, json_t *j)
{
    for (size_t i = 0; i < s->nall; i++)
        if (s->all[i]->src == j)
            return s->all[i];
    return NULL;
}

/* Walks a JSON pointer (after "#") from the root. */
static json_t *walk(json_t *root, const char *ptr)
{
    json_t *cur = root;
    while (*ptr == '/' && cur) {
        ptr++;
        char seg[256];
        size_t n = 0;
        while (*ptr && *ptr != '/' && n < sizeof seg - 1) {
            if (ptr[0] == '~' && ptr[1] == '1') {
                seg[n++] = '/';
                ptr += 2;
            } else if (ptr[0] == '~' && ptr[1] == '0') {
                seg[n++] = '~';
                ptr += 2;
            } else {
                seg[n++] = *ptr++;
            }
        }
        seg[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, seg);
        } else if (json_is_array(cur)) {
            char *end;
            long i = strtol(seg, &end, 10);
            cur = *end || i < 0 ? NULL : json_array_get(cur, (size_t)i);
        } else {
            cur = NULL;
        }
    }
    return *ptr ? NULL : cur;
}

static void resolve(compiler *c)
{
    sq_schema *s = c->s;
    for (size_t i = 0; i < s->nall && !c->failed; i++) {
        node *n = s->all[i];
        if (!n->ref)
            continue;
        const char *frag = n->ref + 1;
        json_t *target = NULL;
        if (*frag == '\0' || *frag == '/') {
            target = walk(s->root, frag);
        } else { /* an $anchor */
            for (size_t k = 0; k < s->nall && !target; k++) {
                json_t *a = json_object_get(s->all[k]->src, "$anchor");
                if (json_is_string(a) && strcmp(json_string_value(a), frag) == 0)
                    target = s->all[k]->src;
            }
        }
        n->ref_node = target ? node_of(s, target) : NULL;
        if (!n->ref_node)
            cfail(c, "$ref %s names nothing in the schema", n->ref);
    }
}

sq_schema *sq_schema_compile(json_t *schema, char *err, size_t errlen)
{
    sq_schema *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->root = json_incref(schema);
    compiler c = {.s = s, .err = err, .errlen = errlen};
    s->top = compile(&c, schema);
    if (!c.failed)
        resolve(&c);
    if (c.failed) {
        sq_schema_free(s);
        return NULL;
    }
    return s;
}

void sq_schema_free(sq_schema *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nall; i++) {
        node *n = s->all[i];
        if (n->pattern) {
            regfree(n->pattern);
            free(n->pattern);
        }
        for (size_t k = 0; k < n->nprops; k++)
            free(n->props[k].name);
        free(n->props);
        for (size_t k = 0; k < n->npprops; k++)
            regfree(&n->pprops[k].re);
        free(n->pprops);
        free(n->prefix);
        free(n->all_of);
        free(n->any_of);
        free(n->one_of);
        free(n);
    }
    free(s->all);
    json_decref(s->root);
    free(s);
}

/* ----------------------------------------------------------- validating */

typedef struct vctx {
    char path[256];
    size_t len;
    sq_schema_error *e;
    bool quiet;                  /* inside anyOf/oneOf/not/if: no report */
} vctx;

static int fail(vctx *v, const char *rule, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(vctx *v, const char *rule, const char *fmt, ...)
{
    if (v->quiet || !v->e)
        return -1;
    snprintf(v->e->path, sizeof v->e->path, "%s", v->path);
    snprintf(v->e->rule, sizeof v->e->rule, "%s", rule);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->e->message, sizeof v->e->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* Appends a path segment (escaped as a JSON pointer); returns the old
 * length to restore. */
static size_t push(vctx *v, const char *seg)
{
    size_t old = v->len;
    if (v->len + 1 < sizeof v->path)
        v->path[v->len++] = '/';
    for (const char *p = seg; *p && v->len + 2 < sizeof v->path; p++) {
        if (*p == '~' || *p == '/') {
            v->path[v->len++] = '~';
            v->path[v->len++] = *p == '~' ? '0' : '1';
        } else {
            v->path[v->len++] = *p;
        }
    }
    v->path[v->len] = '\0';
    return old;
}

static void pop(vctx *v, size_t old)
{
    v->len = old;
    v->path[old] = '\0';
}

static unsigned type_of(json_t *i)
{
    switch (json_typeof(i)) {
    case JSON_NULL: return T_NULL;
    case JSON_TRUE:
    case JSON_FALSE: return T_BOOLEAN;
    case JSON_OBJECT: return T_OBJECT;
    case JSON_ARRAY: return T_ARRAY;
    case JSON_STRING: return T_STRING;
    case JSON_INTEGER: return T_INTEGER | T_NUMBER;
    case JSON_REAL: {
        double d = json_real_value(i);
        return d == floor(d) && fabs(d) < 9.007199254740992e15 ? T_INTEGER | T_NUMBER
                                                                : T_NUMBER;
    }
    }
    return 0;
}

static const char *type_names(unsigned t, char *buf, size_t n)
{
    static const char *const names[] = {"null", "boolean", "object", "array",
                                        "number", "string", "integer"};
    buf[0] = '\0';
    for (int i = 0; i < 7; i++)
        if (t & (1u << i)) {
            size_t l = strlen(buf);
            snprintf(buf + l, n - l, "%s%s", l ? " or " : "", names[i]);
        }
    return buf;
}

static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    return n;
}

static int check(const node *n, json_t *i, vctx *v);

/* Validates quietly: true if i conforms to n. */
static bool conforms(const node *n, json_t *i, vctx *v)
{
    bool q = v->quiet;
    v->quiet = true;
    int rc = check(n, i, v);
    v->quiet = q;
    return rc == 0;
}

static int check_number(const node *n, json_t *i, vctx *v)
{
    double x = json_number_value(i);
    if (n->has_min && x < n->min)
        return fail(v, "minimum", "must be at least %g", n->min);
    if (n->has_max && x > n->max)
        return fail(v, "maximum", "must be at most %g", n->max);
    if (n->has_xmin && x <= n->xmin)
        return fail(v, "exclusiveMinimum", "must be above %g", n->xmin);
    if (n->has_xmax && x >= n->xmax)
        return fail(v, "exclusiveMaximum", "must be below %g", n->xmax);
    if (n->has_mult) {
        double q = x / n->mult;
        if (fabs(q - round(q)) > 1e-9 * fmax(1.0, fabs(q)))
            return fail(v, "multipleOf", "must be a multiple of %g", n->mult);
    }
    return 0;
}

static int check_string(const node *n, json_t *i, vctx *v)
{
    const char *s = json_string_value(i);
    size_t chars = utf8_chars(s, json_string_length(i));
    if (n->min_len >= 0 && chars < (size_t)n->min_len)
        return fail(v, "minLength", "must be at least %ld characters long", n->min_len);
    if (n->max_len >= 0 && chars > (size_t)n->max_len)
        return fail(v, "maxLength", "must be at most %ld characters long", n->max_len);
    if (n->pattern && regexec(n->pattern, s, 0, NULL, 0) != 0)
        return fail(v, "pattern", "must match the pattern %s",
                    json_string_value(json_object_get(n->src, "pattern")));
    return 0;
}

static int check_object(const node *n, json_t *i, vctx *v)
{
    size_t count = json_object_size(i);
    if (n->min_props >= 0 && count < (size_t)n->min_props)
        return fail(v, "minProperties", "must have at least %ld properties", n->min_props);
    if (n->max_props >= 0 && count > (size_t)n->max_props)
        return fail(v, "maxProperties", "must have at most %ld properties", n->max_props);
    size_t k;
    json_t *r;
    json_array_foreach(n->required, k, r) {
        if (!json_object_get(i, json_string_value(r))) {
            size_t old = push(v, json_string_value(r));
            int rc = fail(v, "required", "is required");
            pop(v, old);
            return rc;
        }
    }
    const char *key;
    json_t *dep;
    json_object_foreach(n->dep_required, key, dep) {
        if (!json_object_get(i, key))
            continue;
        json_array_foreach(dep, k, r) {
            if (json_is_string(r) && !json_object_get(i, json_string_value(r))) {
                size_t old = push(v, json_string_value(r));
                int rc = fail(v, "dependentRequired", "is required when %s is given", key);
                pop(v, old);
                return rc;
            }
        }
    }
    json_t *val;
    json_object_foreach(i, key, val) {
        size_t old = push(v, key);
        int rc = 0;
        if (n->property_names) {
            json_t *name = json_string(key);
            if (!conforms(n->property_names, name, v))
                rc = fail(v, "propertyNames", "is not an allowed property name");
            json_decref(name);
        }
        bool matched = false;
        for (size_t p = 0; rc == 0 && p < n->nprops; p++)
            if (strcmp(n->props[p].name, key) == 0) {
                matched = true;
                rc = check(n->props[p].schema, val, v);
            }
        for (size_t p = 0; rc == 0 && p < n->npprops; p++)
            if (regexec(&n->pprops[p].re, key, 0, NULL, 0) == 0) {
                matched = true;
                rc = check(n->pprops[p].schema, val, v);
            }
        if (rc == 0 && !matched && n->additional) {
            if (n->additional->boolean == 0)
                rc = fail(v, "additionalProperties", "is not an allowed property");
            else
                rc = check(n->additional, val, v);
        }
        pop(v, old);
        if (rc)
            return rc;
    }
    return 0;
}

static int check_array(const node *n, json_t *i, vctx *v)
{
    size_t len = json_array_size(i);
    if (n->min_items >= 0 && len < (size_t)n->min_items)
        return fail(v, "minItems", "must have at least %ld items", n->min_items);
    if (n->max_items >= 0 && len > (size_t)n->max_items)
        return fail(v, "maxItems", "must have at most %ld items", n->max_items);
    for (size_t k = 0; k < len; k++) {
        const node *item = k < n->nprefix ? n->prefix[k] : n->items;
        if (!item)
            continue;
        char seg[24];
        snprintf(seg, sizeof seg, "%zu", k);
        size_t old = push(v, seg);
        int rc = item->boolean == 0 ? fail(v, "items", "no item is allowed here")
                                    : check(item, json_array_get(i, k), v);
        pop(v, old);
        if (rc)
            return rc;
    }
    if (n->unique) {
        /* O(n^2) comparisons: arguments are small. */
        for (size_t a = 0; a < len; a++)
            for (size_t b = a + 1; b < len; b++)
                if (json_equal(json_array_get(i, a), json_array_get(i, b)))
                    return fail(v, "uniqueItems", "items %zu and %zu are equal", a, b);
    }
    if (n->contains) {
        long hits = 0;
        for (size_t k = 0; k < len; k++)
            hits += conforms(n->contains, json_array_get(i, k), v);
        long min = n->min_contains >= 0 ? n->min_contains : 1;
        if (hits < min)
            return fail(v, "contains", "must contain at least %ld matching items", min);
        if (n->max_contains >= 0 && hits > n->max_contains)
            return fail(v, "maxContains", "must contain at most %ld matching items",
                        n->max_contains);
    }
    return 0;
}

static int check(const node *n, json_t *i, vctx *v)
{
    if (n->boolean == 1)
        return 0;
    if (n->boolean == 0)
        return fail(v, "false", "no value is allowed here");
    if (n->ref_node && check(n->ref_node, i, v) != 0)
        return -1;
    unsigned t = type_of(i);
    if (n->types && !(n->types & t)) {
        char buf[96];
        return fail(v, "type", "must be %s", type_names(n->types, buf, sizeof buf));
    }
    if (n->has_const && !json_equal(n->const_, i))
        return fail(v, "const", "must be the constant the schema gives");
    if (n->enum_) {
        bool found = false;
        size_t k;
        json_t *e;
        json_array_foreach(n->enum_, k, e) found |= json_equal(e, i);
        if (!found)
            return fail(v, "enum", "must be one of the values the schema lists");
    }
    int rc = 0;
    if (t & T_NUMBER)
        rc = check_number(n, i, v);
    else if (t == T_STRING)
        rc = check_string(n, i, v);
    else if (t == T_OBJECT)
        rc = check_object(n, i, v);
    else if (t == T_ARRAY)
        rc = check_array(n, i, v);
    if (rc)
        return rc;
    for (size_t k = 0; k < n->nall; k++)
        if (check(n->all_of[k], i, v) != 0)
            return -1;
    if (n->nany) {
        bool any = false;
        for (size_t k = 0; k < n->nany && !any; k++)
            any = conforms(n->any_of[k], i, v);
        if (!any)
            return fail(v, "anyOf", "must match at least one of the schemas anyOf lists");
    }
    if (n->none) {
        size_t hits = 0;
        for (size_t k = 0; k < n->none; k++)
            hits += conforms(n->one_of[k], i, v);
        if (hits != 1)
            return fail(v, "oneOf", "must match exactly one of the schemas oneOf lists "
                                    "(it matches %zu)", hits);
    }
    if (n->not_ && conforms(n->not_, i, v))
        return fail(v, "not", "must not match the schema not gives");
    if (n->if_) {
        if (conforms(n->if_, i, v)) {
            if (n->then_ && check(n->then_, i, v) != 0)
                return -1;
        } else if (n->else_ && check(n->else_, i, v) != 0) {
            return -1;
        }
    }
    return 0;
}

int sq_schema_validate(const sq_schema *s, json_t *instance, sq_schema_error *e)
{
    vctx v = {.e = e};
    v.path[0] = '\0';
    if (e)
        memset(e, 0, sizeof *e);
    return check(s->top, instance, &v);
}
