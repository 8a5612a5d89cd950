/* The snapshot as the task dump's text (sq_check_dump), and a wait-for
 * cycle as the dump and the deadlock report show it.  Line formats of
 * single holds and durations are the reports' own (report.c). */
#include "render.h"

#include <errno.h>
#include <stdlib.h>

#include "report.h"

static void put_hold(sq__strbuf *b, const char *indent, const char *what,
                     const sq_check_hold *h)
{
    sq__put_hold(b, indent, what, h->shared, h->cls, h->lock, h->site,
                 h->age_ns);
}

void sq__cycle_text(sq__strbuf *b, const char *indent, const sq_check_cycle *c)
{
    size_t n = c->nsteps;
    for (size_t k = 0; k < n; k++) {
        const sq_check_cycle_step *in = &c->steps[(k + n - 1) % n];
        const sq_check_cycle_step *out = &c->steps[k];
        const sq_check_cycle_step *next = &c->steps[(k + 1) % n];
        sq__strbuf_printf(b, "%s  ", indent);
        sq__put_who(b, out->name, out->spawn_site);
        sq__strbuf_putc(b, '\n');
        /* How the step before waits for this one. */
        if (in->next_holds) {
            sq__strbuf_puts(b, indent);
            put_hold(b, "    ", "holds", in->next_holds);
        } else {
            sq__strbuf_printf(b, "%s    is queued for lock %s (%p) ahead of "
                                 "%s\n",
                              indent, in->cls, in->lock, in->name);
        }
        sq__strbuf_printf(b, "%s    waits for %s %s (%p) at %s, ", indent,
                          sq__mode_text(out->shared), out->cls, out->lock,
                          out->site);
        if (out->next_holds)
            sq__strbuf_printf(b, "held by %s\n", next->name);
        else
            sq__strbuf_printf(b, "queued behind the writer %s\n", next->name);
    }
}

/* The lock being taken, and who holds it. */
static void want_text(sq__strbuf *b, const sq_check_want *w,
                      const char *indent)
{
    sq__strbuf_printf(b, "%swants %s %s (%p) at %s", indent,
                      sq__mode_text(w->shared), w->cls ? w->cls : "?",
                      w->lock, w->site ? w->site : "?");
    for (size_t i = 0; i < w->nholders; i++) {
        const sq_check_hold *h = &w->holders[i];
        sq__strbuf_printf(b, "\n%s  held by %s as %s taken at %s, ", indent,
                          h->holder, sq__mode_text(h->shared), h->site);
        sq__put_age(b, h->age_ns);
        sq__strbuf_puts(b, " ago");
    }
    sq__strbuf_puts(b, w->nholders ? "\n"
                                   : "; no holder known to the checks\n");
}

static void locks_text(sq__strbuf *b, const sq_check_want *w,
                       const sq_check_hold *holds, size_t nholds)
{
    if (w)
        want_text(b, w, "      ");
    for (size_t i = 0; i < nholds; i++)
        put_hold(b, "      ", "holds", &holds[i]);
}

static void task_text(sq__strbuf *b, const sq_check_task *t)
{
    sq__strbuf_printf(b, "  task #%llu '%s' %s", (unsigned long long)t->id,
                      t->name, sq_check_task_state_name(t->state));
    if (t->wait == SQ_CHECK_WAIT_UNKNOWN) {
        sq__strbuf_puts(b, ", waiting (for what could not be read)");
    } else if (t->wait != SQ_CHECK_WAIT_NONE) {
        sq__strbuf_printf(b, ", waits for %s", sq__wait_text(t->wait));
        if (t->wait_object)
            sq__strbuf_printf(b, " (%p)", t->wait_object);
        if (t->joined)
            sq__strbuf_printf(b, ": task #%llu '%s'",
                              (unsigned long long)t->joined->id,
                              t->joined->name);
        if (t->waited_ns >= 0) {
            sq__strbuf_puts(b, " for ");
            sq__put_age(b, t->waited_ns);
        }
    }
    sq__strbuf_printf(b, "\n      spawned at %s\n",
                      t->spawn_site ? t->spawn_site : "?");
    locks_text(b, t->wants, t->holds, t->nholds);
}

static void context_text(sq__strbuf *b, const sq_check_context *c)
{
    sq__strbuf_puts(b, "  ");
    sq__put_who(b, c->name, c->spawn_site);
    sq__strbuf_putc(b, '\n');
    locks_text(b, c->wants, c->holds, c->nholds);
}

void sq__snapshot_text(sq__strbuf *b, const sq_check_snapshot *s)
{
    sq__strbuf_printf(b, "squirrel task dump: process %ld, %zu runtime%s\n",
                      s->pid, s->nruntimes, s->nruntimes == 1 ? "" : "s");
    for (size_t r = 0; r < s->nruntimes; r++) {
        const sq_check_runtime *rt = &s->runtimes[r];
        sq__strbuf_printf(b, "runtime %p, %d worker%s, %zu task%s:\n",
                          (const void *)rt->runtime, rt->workers,
                          rt->workers == 1 ? "" : "s", rt->ntasks,
                          rt->ntasks == 1 ? "" : "s");
        for (size_t i = 0; i < rt->ntasks; i++)
            task_text(b, &rt->tasks[i]);
    }
    if (s->nthreads)
        sq__strbuf_puts(b, "threads that hold or want locks:\n");
    for (size_t i = 0; i < s->nthreads; i++)
        context_text(b, &s->threads[i]);
    if (s->nother_tasks)
        sq__strbuf_puts(b, "tasks with locks that started after the list "
                           "above:\n");
    for (size_t i = 0; i < s->nother_tasks; i++)
        context_text(b, &s->other_tasks[i]);
    if (s->ncycles == 0)
        sq__strbuf_puts(b, "wait-for cycles (deadlocks): none\n");
    else
        sq__strbuf_printf(b, "wait-for cycles (deadlocks): %zu\n",
                          s->ncycles);
    for (size_t i = 0; i < s->ncycles; i++) {
        sq__strbuf_printf(b, "  cycle %zu:\n", i + 1);
        sq__cycle_text(b, "  ", &s->cycles[i]);
    }
    if (!s->complete)
        sq__strbuf_puts(b, "(incomplete: out of memory while taking the "
                           "dump)\n");
    sq__strbuf_puts(b, "end of the task dump\n");
}

int sq_check_snapshot_text(const sq_check_snapshot *s, char **out)
{
    if (!s || !out)
        return -EINVAL;
    sq__strbuf b = SQ__STRBUF_INIT;
    sq__snapshot_text(&b, s);
    *out = sq__strbuf_take(&b);
    return *out ? 0 : -ENOMEM;
}
