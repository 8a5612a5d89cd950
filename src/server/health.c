/* Health (sq_server/monitor.h): the registry of components, each with a
 * status and a reason, and the overall status, the worst of them.  The
 * built-in components are computed when read: "server" (failed while it
 * stops, degraded when requests in flight pass 90% of the limit) and
 * "alerts" (degraded while a rule fires).  A spin lock guards the list
 * and each component's fields: held for a copy or an insertion, never
 * across anything that waits. */
#include "srv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct sq_health_component {
    sq_srv *srv;
    char name[64];
    int status;
    char reason[SQ_HEALTH_REASON_MAX + 1];
    struct sq__link link;
};

const char *sq_health_name(int status)
{
    switch (status) {
    case SQ_HEALTH_HEALTHY: return "healthy";
    case SQ_HEALTH_DEGRADED: return "degraded";
    case SQ_HEALTH_FAILED: return "failed";
    default: return "?";
    }
}

static bool name_ok(const char *n)
{
    size_t len = n ? strlen(n) : 0;
    if (len == 0 || len > 63)
        return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
            return false;
    return true;
}

/* Copies at most SQ_HEALTH_REASON_MAX bytes, never cutting a UTF-8
 * sequence. */
static void copy_reason(char *dst, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n > SQ_HEALTH_REASON_MAX) {
        n = SQ_HEALTH_REASON_MAX;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

int sq_health_register(sq_srv *s, const char *name, sq_health_component **out)
{
    *out = NULL;
    if (!name_ok(name) || strcmp(name, "server") == 0 || strcmp(name, "alerts") == 0)
        return name_ok(name) ? -EEXIST : -EINVAL;
    sq_health_component *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->srv = s;
    snprintf(c->name, sizeof c->name, "%s", name);
    sq_mon *m = s->mon;
    int rc = 0;
    sq__spin_lock(&m->h_lock);
    SQ__LIST_FOREACH(l, &m->comps) {
        if (strcmp(sq__list_entry(l, sq_health_component, link)->name, name) == 0)
            rc = -EEXIST;
    }
    if (rc == 0)
        sq__list_push_back(&m->comps, &c->link);
    sq__spin_unlock(&m->h_lock);
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int sq_health_set(sq_health_component *c, int status, const char *reason)
{
    if (!c || status < SQ_HEALTH_HEALTHY || status > SQ_HEALTH_FAILED)
        return -EINVAL;
    sq_mon *m = c->srv->mon;
    char r[SQ_HEALTH_REASON_MAX + 1];
    copy_reason(r, reason);
    sq__spin_lock(&m->h_lock);
    int was = c->status;
    c->status = status;
    memcpy(c->reason, r, sizeof r);
    sq__spin_unlock(&m->h_lock);
    if (was != status)
        sq_srv_log(c->srv,
                   status == SQ_HEALTH_FAILED     ? SQ_MCP_ERROR_LEVEL
                   : status == SQ_HEALTH_DEGRADED ? SQ_MCP_WARNING
                                                  : SQ_MCP_INFO,
                   "health", NULL, "%s: %s -> %s%s%s", c->name, sq_health_name(was),
                   sq_health_name(status), r[0] ? ": " : "", r);
    return 0;
}

void sq_health_unregister(sq_health_component *c)
{
    if (!c)
        return;
    sq_mon *m = c->srv->mon;
    sq__spin_lock(&m->h_lock);
    sq__list_remove(&m->comps, &c->link);
    sq__spin_unlock(&m->h_lock);
    free(c);
}

void sq_health_free_all(sq_srv *s)
{
    sq_mon *m = s->mon;
    SQ__LIST_FOREACH_SAFE(l, &m->comps) {
        sq_health_component *c = sq__list_entry(l, sq_health_component, link);
        sq__list_remove(&m->comps, l);
        free(c);
    }
}

/* The built-in components, as (status, reason). */
static int server_status(sq_srv *s, char *reason, size_t n)
{
    reason[0] = '\0';
    if (atomic_load(&s->stopping)) {
        snprintf(reason, n, "stopping");
        return SQ_HEALTH_FAILED;
    }
    int64_t inflight = sq_mon_inflight(s), max = s->cfg.max_inflight_total;
    if (inflight * 10 >= max * 9) {
        snprintf(reason, n, "%lld of %lld requests in flight",
                 (long long)inflight, (long long)max);
        return SQ_HEALTH_DEGRADED;
    }
    return SQ_HEALTH_HEALTHY;
}

static int alerts_status(sq_srv *s, char *reason, size_t n)
{
    char names[SQ_HEALTH_REASON_MAX - 16];
    int firing = sq_alerts_firing(s, names, sizeof names);
    reason[0] = '\0';
    if (!firing)
        return SQ_HEALTH_HEALTHY;
    snprintf(reason, n, "firing: %s", names);
    return SQ_HEALTH_DEGRADED;
}

int sq_health_overall(sq_srv *s)
{
    char r[SQ_HEALTH_REASON_MAX + 1];
    int worst = server_status(s, r, sizeof r);
    int a = alerts_status(s, r, sizeof r);
    if (a > worst)
        worst = a;
    sq_mon *m = s->mon;
    sq__spin_lock(&m->h_lock);
    SQ__LIST_FOREACH(l, &m->comps) {
        int st = sq__list_entry(l, sq_health_component, link)->status;
        if (st > worst)
            worst = st;
    }
    sq__spin_unlock(&m->h_lock);
    return worst;
}

json_t *sq_health_json(sq_srv *s, int *overall)
{
    json_t *comps = json_array();
    char r[SQ_HEALTH_REASON_MAX + 1];
    int worst = server_status(s, r, sizeof r);
    json_array_append_new(comps, json_pack("{s:s,s:s,s:s}", "name", "server", "status",
                                           sq_health_name(worst), "reason", r));
    if (s->mon->nalerts) {
        int a = alerts_status(s, r, sizeof r);
        json_array_append_new(comps, json_pack("{s:s,s:s,s:s}", "name", "alerts",
                                               "status", sq_health_name(a), "reason", r));
        if (a > worst)
            worst = a;
    }
    /* Copied under the lock (fixed-size fields), made JSON after. */
    sq_mon *m = s->mon;
    size_t n = 0, cap = 0;
    sq_health_component *v = NULL;
    for (;;) {
        sq__spin_lock(&m->h_lock);
        size_t count = 0;
        SQ__LIST_FOREACH(l, &m->comps) count++;
        if (count <= cap) {
            n = 0;
            SQ__LIST_FOREACH(l, &m->comps) v[n++] = *sq__list_entry(l, sq_health_component, link);
            sq__spin_unlock(&m->h_lock);
            break;
        }
        sq__spin_unlock(&m->h_lock);
        free(v);
        cap = count + 4;
        if (!(v = malloc(cap * sizeof *v)))
            break;
    }
    for (size_t i = 0; v && i < n; i++) {
        json_array_append_new(comps, json_pack("{s:s,s:s,s:s}", "name", v[i].name,
                                               "status", sq_health_name(v[i].status),
                                               "reason", v[i].reason));
        if (v[i].status > worst)
            worst = v[i].status;
    }
    free(v);
    *overall = worst;
    return json_pack("{s:s,s:o}", "status", sq_health_name(worst), "components", comps);
}
