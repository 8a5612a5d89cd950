/* The figures of squirreld's components in /metrics (docs/monitoring.md):
 * the context manager's, the commands' and the plugins', emitted at each
 * scrape by the server's collector (monitor.c) from what each component
 * counts already, so that their hot paths gain nothing. */
#include "ctx/ctx_tools.h"
#include "cmd/cmd_int.h"
#include "plugin/plugin_int.h"
#include "events.h"
#include "mon.h"

#include <stdlib.h>

/* The context manager's own registry (sq_ctx_metrics) holds the
 * histograms: they are emitted again under the server's names. */
static void ctx_histogram(sq_metrics_sink *k, const sq_metrics_snapshot *snap,
                          const char *from, const char *name, const char *help)
{
    const sq_metric_family *f = sq_metrics_snapshot_find(snap, from);
    if (!f || f->type != SQ_METRIC_HISTOGRAM || f->nseries != 1)
        return;
    const sq_metric_series *x = &f->series[0];
    uint64_t *b = malloc((x->nbounds + 1) * sizeof *b);
    if (!b)
        return;
    /* The snapshot's buckets are cumulative; emitting wants them not. */
    for (size_t i = 0; i <= x->nbounds; i++)
        b[i] = x->buckets[i] - (i ? x->buckets[i - 1] : 0);
    sq_metrics_emit_histogram(k, &(sq_metric_opts){.name = name, .help = help,
                                                   .divisor = f->divisor},
                              x->bounds, x->nbounds, b, x->sum);
    free(b);
}

static void collect_ctx(sq_metrics_sink *k, sq_srv *s)
{
    if (!s->ctx)
        return; /* --store none */
    sq_ctx_mgr *m = s->ctx->mgr;
    sq_ctx_stats st;
    sq_ctx_stats_get(m, &st);
    for (int kind = 0; kind <= SQ_CTX_DELETE; kind++) {
        const char *lab[] = {"kind", kind ? sq_ctx_kind_name(kind) : "mark", NULL};
        sq_metrics_emit_counter(k, &(sq_metric_opts){
            .name = "squirreld_context_changes_total", .labels = lab,
            .help = "Context changes committed, by kind (mark: snapshots and "
                    "recovery points)."}, st.by_kind[kind]);
    }
    const char *ok[] = {"outcome", "ok", NULL}, *failed[] = {"outcome", "failed", NULL};
    sq_metric_opts co = {.name = "squirreld_context_commits_total",
                         .help = "Store transactions, by outcome."};
    co.labels = ok;
    sq_metrics_emit_counter(k, &co, st.commits);
    co.labels = failed;
    sq_metrics_emit_counter(k, &co, st.commit_failures);
    sq_metrics_emit_counter(k, &(sq_metric_opts){
        .name = "squirreld_context_conflicts_total",
        .help = "Changes refused because the context was not at the expected version."},
        st.conflicts);
    sq_metrics_emit_gauge(k, &(sq_metric_opts){.name = "squirreld_contexts",
                                               .help = "Contexts now."},
                          (int64_t)st.contexts);
    sq_metrics_snapshot *snap = NULL;
    if (sq_metrics_snapshot_take(sq_ctx_metrics(m), &snap) == 0) {
        ctx_histogram(k, snap, "squirrel_ctx_batch_changes",
                      "squirreld_context_commit_batch_size", "Changes per store transaction.");
        ctx_histogram(k, snap, "squirrel_ctx_commit_seconds",
                      "squirreld_context_commit_duration_seconds",
                      "Time of one store transaction.");
        sq_metrics_snapshot_free(snap);
    }
}

static void collect_cmds(sq_metrics_sink *k, sq_srv *s)
{
    if (!s->cmds)
        return;
    cmd **all = NULL;
    size_t n = sq__cmd_all(s->cmds, &all);
    for (size_t i = 0; i < n; i++) {
        for (int o = 0; o < SQ_CMD_NOUTCOMES; o++) {
            const char *lab[] = {"command", all[i]->name, "outcome", sq_cmd_outcome_name(o),
                                 NULL};
            sq_metrics_emit_counter(k, &(sq_metric_opts){
                .name = "squirreld_command_calls_total", .labels = lab,
                .help = "Command calls ended, by command and outcome."},
                (uint64_t)atomic_load(&all[i]->outcomes[o]));
        }
        sq__cmd_unref(all[i]);
    }
    free(all);
}

static void collect_plugins(sq_metrics_sink *k, sq_srv *s)
{
    sq_plugins *h = s->plugins;
    if (!h)
        return;
    int64_t by_state[SQ_PLUGIN_FAILED + 1] = {0};
    sq_mutex_lock_nocancel(&h->lock);
    for (struct sq__link *l = h->plugins.head; l; l = l->next) {
        int st = atomic_load(&sq__list_entry(l, sq_plugin, link)->st);
        if (st >= 0 && st <= SQ_PLUGIN_FAILED)
            by_state[st]++;
    }
    sq_mutex_unlock(&h->lock);
    for (int st = 0; st <= SQ_PLUGIN_FAILED; st++) {
        const char *lab[] = {"state", sq_plugin_state_name(st), NULL};
        sq_metrics_emit_gauge(k, &(sq_metric_opts){
            .name = "squirreld_plugins", .labels = lab,
            .help = "Plugins loaded, by lifecycle state."}, by_state[st]);
    }
}

/* The legacy SSE events kept in a shared store (events.c). */
static void collect_events(sq_metrics_sink *k, sq_srv *s)
{
    uint64_t n[3];
    if (!sq_events_counts(s, &n[0], &n[1], &n[2]))
        return;
    static const char *const outcome[] = {"stored", "refused", "given_up"};
    for (int i = 0; i < 3; i++) {
        const char *lab[] = {"outcome", outcome[i], NULL};
        sq_metrics_emit_counter(k, &(sq_metric_opts){
            .name = "squirreld_stream_events_total", .labels = lab,
            .help = "Events of resumable legacy SSE streams written for the shared store, by "
                    "outcome."}, n[i]);
    }
}

void sq__mon_components(sq_metrics_sink *k, sq_srv *s)
{
    collect_ctx(k, s);
    collect_cmds(k, s);
    collect_plugins(k, s);
    collect_events(k, s);
}
