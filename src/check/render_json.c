/* The snapshot and the lock-order graph as JSON (the forms check.h
 * documents), written with the base layer's JSON writer. */
#include "render.h"

#include <errno.h>
#include <stdlib.h>

#include "sq_base/json.h"

#include "report.h"

/* ", " before every item but the first. */
static void sep(sq__strbuf *b, size_t i)
{
    if (i)
        sq__strbuf_puts(b, ", ");
}

static void put_mode(sq__strbuf *b, bool shared)
{
    sq__strbuf_printf(b, "\"mode\": \"%s\", ", sq__mode_key(shared));
}

static void hold_json(sq__strbuf *b, const sq_check_hold *h)
{
    sq__strbuf_putc(b, '{');
    sq__json_kptr(b, "lock", h->lock);
    sq__strbuf_puts(b, ", ");
    sq__json_kv(b, "class", h->cls);
    sq__strbuf_puts(b, ", ");
    put_mode(b, h->shared);
    sq__json_kv(b, "site", h->site);
    sq__strbuf_printf(b, ", \"age_ns\": %lld}", (long long)h->age_ns);
}

static void want_json(sq__strbuf *b, const sq_check_want *w)
{
    if (!w) {
        sq__strbuf_puts(b, "null");
        return;
    }
    sq__strbuf_putc(b, '{');
    sq__json_kptr(b, "lock", w->lock);
    sq__strbuf_puts(b, ", ");
    sq__json_kv(b, "class", w->cls);
    sq__strbuf_puts(b, ", ");
    put_mode(b, w->shared);
    sq__json_kv(b, "site", w->site);
    sq__strbuf_puts(b, ", \"held_by\": [");
    for (size_t i = 0; i < w->nholders; i++) {
        const sq_check_hold *h = &w->holders[i];
        sep(b, i);
        sq__strbuf_putc(b, '{');
        sq__json_kv(b, "holder", h->holder);
        sq__strbuf_puts(b, ", ");
        put_mode(b, h->shared);
        sq__json_kv(b, "site", h->site);
        sq__strbuf_printf(b, ", \"age_ns\": %lld}", (long long)h->age_ns);
    }
    sq__strbuf_puts(b, "]}");
}

/* "wants": ..., "holds": [...] */
static void locks_json(sq__strbuf *b, const sq_check_want *w,
                       const sq_check_hold *holds, size_t nholds)
{
    sq__strbuf_puts(b, ", \"wants\": ");
    want_json(b, w);
    sq__strbuf_puts(b, ", \"holds\": [");
    for (size_t i = 0; i < nholds; i++) {
        sep(b, i);
        hold_json(b, &holds[i]);
    }
    sq__strbuf_putc(b, ']');
}

static void task_json(sq__strbuf *b, const sq_check_task *t)
{
    sq__strbuf_printf(b, "{\"id\": %llu, ", (unsigned long long)t->id);
    sq__json_kv(b, "name", t->name);
    sq__strbuf_printf(b, ", \"state\": \"%s\", ",
                      sq_check_task_state_name(t->state));
    sq__json_kv(b, "spawned_at", t->spawn_site);
    sq__strbuf_puts(b, ", \"waiting\": ");
    if (t->wait == SQ_CHECK_WAIT_NONE) {
        sq__strbuf_puts(b, "null");
    } else if (t->wait == SQ_CHECK_WAIT_UNKNOWN) {
        sq__strbuf_puts(b, "{\"kind\": \"unknown\"}");
    } else {
        sq__strbuf_printf(b, "{\"kind\": \"%s\", ", sq__wait_key(t->wait));
        if (t->wait_object)
            sq__json_kptr(b, "object", t->wait_object);
        else
            sq__strbuf_puts(b, "\"object\": null");
        if (t->waited_ns >= 0)
            sq__strbuf_printf(b, ", \"for_ns\": %lld",
                              (long long)t->waited_ns);
        if (t->joined)
            sq__strbuf_printf(b, ", \"task\": %llu",
                              (unsigned long long)t->joined->id);
        sq__strbuf_putc(b, '}');
    }
    locks_json(b, t->wants, t->holds, t->nholds);
    sq__strbuf_putc(b, '}');
}

static void context_json(sq__strbuf *b, const sq_check_context *c)
{
    sq__strbuf_putc(b, '{');
    sq__json_kv(b, "name", c->name);
    if (c->task_id)
        sq__strbuf_printf(b, ", \"task_id\": %llu",
                          (unsigned long long)c->task_id);
    sq__strbuf_puts(b, ", ");
    sq__json_kv(b, "spawned_at", c->spawn_site);
    locks_json(b, c->wants, c->holds, c->nholds);
    sq__strbuf_putc(b, '}');
}

static void cycle_json(sq__strbuf *b, const sq_check_cycle *c)
{
    sq__strbuf_putc(b, '[');
    for (size_t k = 0; k < c->nsteps; k++) {
        const sq_check_cycle_step *s = &c->steps[k];
        sep(b, k);
        sq__strbuf_putc(b, '{');
        sq__json_kv(b, "context", s->name);
        if (s->task_id)
            sq__strbuf_printf(b, ", \"task_id\": %llu",
                              (unsigned long long)s->task_id);
        sq__strbuf_puts(b, ", ");
        sq__json_kv(b, "spawned_at", s->spawn_site);
        sq__strbuf_puts(b, ", \"waits_for\": {");
        sq__json_kptr(b, "lock", s->lock);
        sq__strbuf_puts(b, ", ");
        sq__json_kv(b, "class", s->cls);
        sq__strbuf_puts(b, ", ");
        put_mode(b, s->shared);
        sq__json_kv(b, "site", s->site);
        sq__strbuf_printf(b, ", \"queued_behind_writer\": %s}}",
                          s->next_holds ? "false" : "true");
    }
    sq__strbuf_putc(b, ']');
}

static void contexts_json(sq__strbuf *b, const sq_check_context *c, size_t n)
{
    sq__strbuf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        sep(b, i);
        context_json(b, &c[i]);
    }
    sq__strbuf_putc(b, ']');
}

void sq__snapshot_json(sq__strbuf *b, const sq_check_snapshot *s)
{
    sq__strbuf_printf(b, "{\"pid\": %ld, \"now_ns\": %lld, \"runtimes\": [",
                      s->pid, (long long)s->now_ns);
    for (size_t r = 0; r < s->nruntimes; r++) {
        const sq_check_runtime *rt = &s->runtimes[r];
        sep(b, r);
        sq__strbuf_putc(b, '{');
        sq__json_kptr(b, "runtime", rt->runtime);
        sq__strbuf_printf(b, ", \"workers\": %d, \"tasks\": [", rt->workers);
        for (size_t i = 0; i < rt->ntasks; i++) {
            sep(b, i);
            task_json(b, &rt->tasks[i]);
        }
        sq__strbuf_puts(b, "]}");
    }
    sq__strbuf_puts(b, "], \"threads\": ");
    contexts_json(b, s->threads, s->nthreads);
    sq__strbuf_puts(b, ", \"other_tasks\": ");
    contexts_json(b, s->other_tasks, s->nother_tasks);
    sq__strbuf_puts(b, ", \"cycles\": [");
    for (size_t i = 0; i < s->ncycles; i++) {
        sep(b, i);
        cycle_json(b, &s->cycles[i]);
    }
    sq__strbuf_printf(b, "], \"complete\": %s}\n",
                      s->complete ? "true" : "false");
}

int sq_check_snapshot_json(const sq_check_snapshot *s, char **out)
{
    if (!s || !out)
        return -EINVAL;
    sq__strbuf b = SQ__STRBUF_INIT;
    sq__snapshot_json(&b, s);
    *out = sq__strbuf_take(&b);
    return *out ? 0 : -ENOMEM;
}

/* ------------------------------------------------- the lock-order graph */

int sq_check_order_graph_json(const sq_check_order_graph *g, char **out)
{
    if (!g || !out)
        return -EINVAL;
    sq__strbuf b = SQ__STRBUF_INIT;
    sq__strbuf_puts(&b, "{\"classes\": [");
    for (size_t i = 0; i < g->nclasses; i++) {
        sep(&b, i);
        sq__strbuf_putc(&b, '{');
        sq__json_kv(&b, "name", g->classes[i].name);
        sq__strbuf_putc(&b, '}');
    }
    sq__strbuf_puts(&b, "], \"edges\": [");
    for (size_t i = 0; i < g->nedges; i++) {
        const sq_check_order_edge *e = &g->edges[i];
        sep(&b, i);
        sq__strbuf_putc(&b, '{');
        sq__json_kv(&b, "from", g->classes[e->from].name);
        sq__strbuf_puts(&b, ", ");
        sq__json_kv(&b, "to", g->classes[e->to].name);
        sq__strbuf_printf(&b, ", \"from_mode\": \"%s\", \"to_mode\": \"%s\", ",
                          sq__mode_key(e->from_shared),
                          sq__mode_key(e->to_shared));
        sq__json_kv(&b, "from_site", e->from_site);
        sq__strbuf_puts(&b, ", ");
        sq__json_kv(&b, "to_site", e->to_site);
        sq__strbuf_puts(&b, ", ");
        sq__json_kv(&b, "first_by", e->first_by);
        sq__strbuf_puts(&b, ", ");
        sq__json_kv(&b, "first_by_spawned_at", e->first_by_spawn_site);
        sq__strbuf_printf(&b, ", \"reported\": %s}",
                          e->reported ? "true" : "false");
    }
    const sq_check_order_stats *st = &g->stats;
    sq__strbuf_printf(&b,
                      "], \"stats\": {\"classes\": %zu, \"edges\": %zu, "
                      "\"chains\": %zu, \"validations\": %llu, "
                      "\"cached\": %llu, \"full\": %s}}\n",
                      st->classes, st->edges, st->chains,
                      (unsigned long long)st->validations,
                      (unsigned long long)st->cached,
                      st->full ? "true" : "false");
    *out = sq__strbuf_take(&b);
    return *out ? 0 : -ENOMEM;
}
