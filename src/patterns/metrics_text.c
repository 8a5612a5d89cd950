/* The Prometheus text exposition format 0.0.4 of a metrics snapshot.
 *
 *   # HELP name text          (\ and newline escaped; left out if empty)
 *   # TYPE name counter|gauge|histogram
 *   name{label="value",...} 42
 *   name_bucket{...,le="0.5"} 3    (cumulative, ascending, then le="+Inf")
 *   name_sum{...} 1.25
 *   name_count{...} 7
 *
 * Values are integers (written exactly) when the family's divisor is 1,
 * else raw / divisor as the shortest %g text that reads back as the same
 * double.  Bucket counts and _count are always exact integers.
 */
#include "squirrel/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct out {
    char *buf;
    size_t cap;   /* bytes of buf */
    size_t len;   /* bytes the text has so far (may exceed cap) */
    bool grow;    /* buf is malloc'ed and grows */
    bool oom;
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->grow) {
        if (o->oom)
            return;
        if (o->len + n + 1 > o->cap) {
            size_t nc = o->cap ? o->cap : 4096;
            while (o->len + n + 1 > nc)
                nc *= 2;
            char *nb = realloc(o->buf, nc);
            if (!nb) {
                o->oom = true;
                return;
            }
            o->buf = nb;
            o->cap = nc;
        }
        memcpy(o->buf + o->len, s, n);
    } else if (o->cap > 0 && o->len < o->cap - 1) {
        size_t room = o->cap - 1 - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

static void puts_(out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Writes s escaping backslash and newline, and the double quote too if
 * quote. */
static void put_escaped(out *o, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = NULL;
        if (*s == '\\')
            rep = "\\\\";
        else if (*s == '\n')
            rep = "\\n";
        else if (*s == '"' && quote)
            rep = "\\\"";
        if (rep) {
            put(o, run, (size_t)(s - run));
            put(o, rep, 2);
            run = s + 1;
        }
    }
    put(o, run, (size_t)(s - run));
}

/* The shortest %g text of x that reads back as x, with '.' as the decimal
 * point whatever the locale. */
static void put_double(out *o, double x)
{
    char b[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(b, sizeof b, "%.*g", p, x);
        if (strtod(b, NULL) == x)
            break;
    }
    for (char *c = b; *c; c++)
        if (!((*c >= '0' && *c <= '9') || *c == 'e' || *c == '-' ||
              *c == '+' || *c == 'i' || *c == 'n' || *c == 'f' ||
              *c == 'a'))
            *c = '.';
    puts_(o, b);
}

static void put_int(out *o, int64_t v, uint64_t divisor)
{
    if (divisor <= 1) {
        char b[24];
        snprintf(b, sizeof b, "%" PRId64, v);
        puts_(o, b);
    } else {
        put_double(o, (double)v / (double)divisor);
    }
}

static void put_uint(out *o, uint64_t v, uint64_t divisor)
{
    if (divisor <= 1) {
        char b[24];
        snprintf(b, sizeof b, "%" PRIu64, v);
        puts_(o, b);
    } else {
        put_double(o, (double)v / (double)divisor);
    }
}

/* name{labels[,le="..."]} with le the bound i of x (i == nbounds: +Inf),
 * or no le if i is (size_t)-1. */
static void put_series_name(out *o, const char *name, const char *suffix,
                            const sq_metric_series *x, size_t le,
                            uint64_t divisor)
{
    puts_(o, name);
    puts_(o, suffix);
    if (x->nlabels == 0 && le == (size_t)-1)
        return;
    put(o, "{", 1);
    for (size_t i = 0; i < x->nlabels; i++) {
        if (i)
            put(o, ",", 1);
        puts_(o, x->labels[2 * i]);
        put(o, "=\"", 2);
        put_escaped(o, x->labels[2 * i + 1], true);
        put(o, "\"", 1);
    }
    if (le != (size_t)-1) {
        if (x->nlabels)
            put(o, ",", 1);
        put(o, "le=\"", 4);
        if (le == x->nbounds)
            puts_(o, "+Inf");
        else
            put_int(o, x->bounds[le], divisor);
        put(o, "\"", 1);
    }
    put(o, "}", 1);
}

static const char *type_name(sq_metric_type t)
{
    switch (t) {
    case SQ_METRIC_COUNTER:
        return "counter";
    case SQ_METRIC_GAUGE:
        return "gauge";
    case SQ_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

static void render(out *o, const sq_metrics_snapshot *s)
{
    for (size_t i = 0; i < s->nfamilies; i++) {
        const sq_metric_family *f = &s->families[i];
        uint64_t div = f->divisor;
        if (f->help && *f->help) {
            puts_(o, "# HELP ");
            puts_(o, f->name);
            put(o, " ", 1);
            put_escaped(o, f->help, false);
            put(o, "\n", 1);
        }
        puts_(o, "# TYPE ");
        puts_(o, f->name);
        put(o, " ", 1);
        puts_(o, type_name(f->type));
        put(o, "\n", 1);
        for (size_t j = 0; j < f->nseries; j++) {
            const sq_metric_series *x = &f->series[j];
            switch (f->type) {
            case SQ_METRIC_COUNTER:
                put_series_name(o, f->name, "", x, (size_t)-1, div);
                put(o, " ", 1);
                put_uint(o, x->counter, div);
                put(o, "\n", 1);
                break;
            case SQ_METRIC_GAUGE:
                put_series_name(o, f->name, "", x, (size_t)-1, div);
                put(o, " ", 1);
                put_int(o, x->gauge, div);
                put(o, "\n", 1);
                break;
            case SQ_METRIC_HISTOGRAM:
                for (size_t b = 0; b <= x->nbounds; b++) {
                    put_series_name(o, f->name, "_bucket", x, b, div);
                    put(o, " ", 1);
                    put_uint(o, x->buckets[b], 1);
                    put(o, "\n", 1);
                }
                put_series_name(o, f->name, "_sum", x, (size_t)-1, div);
                put(o, " ", 1);
                put_int(o, x->sum, div);
                put(o, "\n", 1);
                put_series_name(o, f->name, "_count", x, (size_t)-1, div);
                put(o, " ", 1);
                put_uint(o, x->count, 1);
                put(o, "\n", 1);
                break;
            }
        }
    }
}

int sq_metrics_snapshot_render(const sq_metrics_snapshot *s, char *buf,
                               size_t cap, size_t *len)
{
    if (!s || (!buf && cap))
        return -EINVAL;
    out o = {.buf = buf, .cap = cap};
    render(&o, s);
    if (cap)
        buf[o.len < cap ? o.len : cap - 1] = 0;
    if (len)
        *len = o.len;
    return o.len < cap ? 0 : -ENOSPC;
}

int sq_metrics_snapshot_render_alloc(const sq_metrics_snapshot *s, char **res,
                                     size_t *len)
{
    if (!s || !res)
        return -EINVAL;
    out o = {.grow = true};
    render(&o, s);
    if (!o.oom && !o.buf) { /* nothing written: an empty string */
        o.buf = malloc(1);
        o.oom = !o.buf;
    }
    if (o.oom) {
        free(o.buf);
        return -ENOMEM;
    }
    o.buf[o.len] = 0;
    *res = o.buf;
    if (len)
        *len = o.len;
    return 0;
}

int sq_metrics_render(sq_metrics *reg, char *buf, size_t cap, size_t *len)
{
    if (!reg || (!buf && cap))
        return -EINVAL;
    sq_metrics_snapshot *s;
    int rc = sq_metrics_snapshot_take(reg, &s);
    if (rc)
        return rc;
    rc = sq_metrics_snapshot_render(s, buf, cap, len);
    sq_metrics_snapshot_free(s);
    return rc;
}

int sq_metrics_render_alloc(sq_metrics *reg, char **res, size_t *len)
{
    if (!reg || !res)
        return -EINVAL;
    sq_metrics_snapshot *s;
    int rc = sq_metrics_snapshot_take(reg, &s);
    if (rc)
        return rc;
    rc = sq_metrics_snapshot_render_alloc(s, res, len);
    sq_metrics_snapshot_free(s);
    return rc;
}
