/* The structured snapshot (sq_check_snapshot_take), walked field by
 * field: a task holding a lock while it waits for a notify, one waiting
 * for that lock, a join, two tasks in a deadlock and a plain thread
 * holding a lock show up with the right state, wait, object, locks,
 * holders and cycle; the snapshot owns everything it points to (it
 * outlives the scene); a lock left held by a finished task is listed as
 * unowned; the renderings are pure functions of the snapshot; the
 * arguments are checked. */
#include "testlib.h"

#include "squirrel/check.h"
#include "squirrel/sync.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static atomic_int reports;

static void count_report(unsigned finding, const char *text, void *arg)
{
    (void)finding, (void)arg;
    fputs(text, stderr);
    atomic_fetch_add(&reports, 1);
}

static sq_check_config saved;

/* The hooks on (so holds are known) with only the deadlock finding (the
 * scene holds locks across waits on purpose) and no search but ours. */
static void checks_begin(void)
{
    sq_check_get_config(&saved);
    atomic_store(&reports, 0);
    sq_check_set_reporter(count_report, NULL);
    sq_check_config c = {.findings = SQ_CHECK_DEADLOCK};
    CHECK_EQ(sq_check_configure(&c), 0);
}

static void checks_end(void)
{
    CHECK_EQ(sq_check_configure(&saved), 0);
    sq_check_set_reporter(NULL, NULL);
    CHECK_EQ(atomic_load(&reports), 0);
}

/* ---------------------------------------------------------- finding */

static const sq_check_task *task_named(const sq_check_snapshot *s,
                                       const char *name)
{
    for (size_t r = 0; r < s->nruntimes; r++)
        for (size_t i = 0; i < s->runtimes[r].ntasks; i++)
            if (!strcmp(s->runtimes[r].tasks[i].name, name))
                return &s->runtimes[r].tasks[i];
    return NULL;
}

static const sq_check_context *thread_holding(const sq_check_snapshot *s,
                                              const void *lock)
{
    for (size_t i = 0; i < s->nthreads; i++)
        for (size_t k = 0; k < s->threads[i].nholds; k++)
            if (s->threads[i].holds[k].lock == lock)
                return &s->threads[i];
    return NULL;
}

static bool parked_in(const sq_check_snapshot *s, const char *name, int wait)
{
    const sq_check_task *t = task_named(s, name);
    return t && t->state == SQ_CHECK_TASK_PARKED && t->wait == wait;
}

/* ------------------------------------------------------------ scene */

typedef struct scene {
    sq_mutex held, dl1, dl2, tlock;
    sq_notify note;
    atomic_int holder_has, dl_ready, thread_has, thread_go;
    sq_task t[6];
    int holder_line;         /* where `holder` locks `held` */
    pthread_t th;
} scene;

static void *holder(void *arg)
{
    scene *s = arg;
    s->holder_line = __LINE__; CHECK_EQ(sq_mutex_lock(&s->held), 0);
    atomic_store(&s->holder_has, 1);
    CHECK_EQ(sq_notify_wait(&s->note), 0);
    CHECK_EQ(sq_mutex_unlock(&s->held), 0);
    return NULL;
}

static void *waiter(void *arg)
{
    scene *s = arg;
    CHECK_EQ(sq_mutex_lock(&s->held), 0);
    CHECK_EQ(sq_mutex_unlock(&s->held), 0);
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    sq_sleep(60 * SQ_SEC); /* until aborted */
    return NULL;
}

static void *joiner(void *arg)
{
    sq_task *t = arg;
    CHECK_EQ(sq_join(*t, NULL), -ECANCELED);
    return NULL;
}

typedef struct dl {
    scene *s;
    sq_mutex *first, *second;
    int rc;
} dl;

static void *deadlocker(void *arg)
{
    dl *d = arg;
    CHECK_EQ(sq_mutex_lock(d->first), 0);
    atomic_fetch_add(&d->s->dl_ready, 1);
    while (atomic_load(&d->s->dl_ready) < 2)
        sq_yield();
    d->rc = sq_mutex_lock(d->second);
    if (d->rc == 0)
        sq_mutex_unlock(d->second);
    CHECK_EQ(sq_mutex_unlock(d->first), 0);
    return NULL;
}

static void *lock_thread(void *arg)
{
    scene *s = arg;
    CHECK_EQ(sq_mutex_lock(&s->tlock), 0);
    atomic_store(&s->thread_has, 1);
    while (!atomic_load(&s->thread_go))
        sched_yield();
    CHECK_EQ(sq_mutex_unlock(&s->tlock), 0);
    return NULL;
}

static void scene_start(scene *s, dl *d1, dl *d2)
{
    sq_spawn_opts o = {.name = "holder"};
    CHECK_EQ(sq_spawn(&s->t[0], holder, s, &o), 0);
    WAIT_UNTIL(atomic_load(&s->holder_has));
    o.name = "waiter";
    CHECK_EQ(sq_spawn(&s->t[1], waiter, s, &o), 0);
    o.name = "sleeper";
    CHECK_EQ(sq_spawn(&s->t[2], sleeper, s, &o), 0);
    o.name = "joiner";
    CHECK_EQ(sq_spawn(&s->t[3], joiner, &s->t[2], &o), 0);
    o.name = "dl-1";
    CHECK_EQ(sq_spawn(&s->t[4], deadlocker, d1, &o), 0);
    o.name = "dl-2";
    CHECK_EQ(sq_spawn(&s->t[5], deadlocker, d2, &o), 0);
    CHECK_EQ(pthread_create(&s->th, NULL, lock_thread, s), 0);
    WAIT_UNTIL(atomic_load(&s->thread_has));
}

/* Every task of the scene in its wait, as a snapshot sees it. */
static bool settled(const sq_check_snapshot *s)
{
    const sq_check_task *w = task_named(s, "waiter");
    const sq_check_task *d1 = task_named(s, "dl-1");
    const sq_check_task *d2 = task_named(s, "dl-2");
    return parked_in(s, "holder", SQ_CHECK_WAIT_NOTIFY) &&
           parked_in(s, "waiter", SQ_CHECK_WAIT_MUTEX) &&
           parked_in(s, "sleeper", SQ_CHECK_WAIT_SLEEP) &&
           parked_in(s, "joiner", SQ_CHECK_WAIT_JOIN) &&
           parked_in(s, "dl-1", SQ_CHECK_WAIT_MUTEX) &&
           parked_in(s, "dl-2", SQ_CHECK_WAIT_MUTEX) && w->wants &&
           d1->wants && d2->wants;
}

static void scene_stop(scene *s, dl *d1, dl *d2)
{
    sq_notify_one(&s->note);
    CHECK_EQ(sq_abort(s->t[2]), 0); /* the sleeper, and so the joiner */
    CHECK_EQ(sq_abort(s->t[4]), 0); /* dl-1: dl-2 then gets its lock */
    for (int i = 0; i < 6; i++)
        sq_join(s->t[i], NULL);
    CHECK_EQ(d1->rc, -ECANCELED);
    CHECK_EQ(d2->rc, 0);
    atomic_store(&s->thread_go, 1);
    pthread_join(s->th, NULL);
}

/* -------------------------------------------------- walking a snapshot */

static void check_tasks(const sq_check_snapshot *snap, scene *s)
{
    const sq_check_task *h = task_named(snap, "holder");
    const sq_check_task *w = task_named(snap, "waiter");
    const sq_check_task *sl = task_named(snap, "sleeper");
    const sq_check_task *j = task_named(snap, "joiner");
    const sq_check_task *root = task_named(snap, "root");
    CHECK(h && w && sl && j && root);
    if (!h || !w || !sl || !j || !root)
        return;
    CHECK_EQ(root->state, SQ_CHECK_TASK_RUNNING);
    CHECK_EQ(root->wait, SQ_CHECK_WAIT_NONE);
    CHECK(root->wants == NULL);
    CHECK_EQ(root->nholds, 0);

    /* The holder: its wait, its one hold, taken where it was. */
    CHECK_EQ(h->id, s->t[0].id);
    CHECK(h->wait_object == &s->note);
    CHECK(h->waited_ns >= 0 && h->waited_ns <= snap->now_ns);
    CHECK(strstr(h->spawn_site, "snapshot_test.c:") != NULL);
    CHECK_EQ(h->nholds, 1);
    char site[256];
    snprintf(site, sizeof site, "snapshot_test.c:%d", s->holder_line);
    if (h->nholds == 1) {
        const sq_check_hold *x = &h->holds[0];
        CHECK(x->lock == &s->held);
        CHECK(!strcmp(x->cls, "snap.held"));
        CHECK(!x->shared);
        CHECK(strstr(x->site, site) != NULL);
        CHECK(x->age_ns >= 0);
        CHECK_EQ(x->holder_task_id, h->id);
        CHECK(strstr(x->holder, "'holder'") != NULL);
    }

    /* The waiter wants that lock, held by the holder (and holds none). */
    CHECK(w->wait_object == &s->held);
    CHECK_EQ(w->nholds, 0);
    if (w->wants) {
        CHECK(w->wants->lock == &s->held);
        CHECK(!strcmp(w->wants->cls, "snap.held"));
        CHECK(!w->wants->shared);
        CHECK_EQ(w->wants->nholders, 1);
        if (w->wants->nholders == 1)
            CHECK_EQ(w->wants->holders[0].holder_task_id, h->id);
    }

    /* The join points at the sleeper's entry of the same snapshot. */
    CHECK(j->joined == sl);
    CHECK(j->wait_object != NULL);
    CHECK(sl->joined == NULL);
    CHECK(sl->wait_object == NULL);

    /* Tasks of a runtime come by id. */
    for (size_t r = 0; r < snap->nruntimes; r++) {
        CHECK_EQ(snap->runtimes[r].workers, 2);
        for (size_t i = 1; i < snap->runtimes[r].ntasks; i++)
            CHECK(snap->runtimes[r].tasks[i - 1].id <
                  snap->runtimes[r].tasks[i].id);
    }
}

static void check_thread_and_cycle(const sq_check_snapshot *snap, scene *s)
{
    const sq_check_context *th = thread_holding(snap, &s->tlock);
    CHECK(th != NULL);
    if (th) {
        CHECK_EQ(th->task_id, 0);
        CHECK(strncmp(th->name, "thread ", 7) == 0);
        CHECK(th->wants == NULL);
        CHECK(!strcmp(th->holds[0].cls, "snap.thread"));
    }
    CHECK_EQ(snap->nother_tasks, 0);

    const sq_check_task *d1 = task_named(snap, "dl-1");
    const sq_check_task *d2 = task_named(snap, "dl-2");
    CHECK_EQ(snap->ncycles, 1);
    if (snap->ncycles != 1 || !d1 || !d2)
        return;
    const sq_check_cycle *c = &snap->cycles[0];
    CHECK_EQ(c->nsteps, 2);
    if (c->nsteps != 2)
        return;
    /* Each step waits for the lock the next one holds. */
    for (size_t k = 0; k < 2; k++) {
        const sq_check_cycle_step *st = &c->steps[k];
        const sq_check_cycle_step *next = &c->steps[(k + 1) % 2];
        CHECK(st->task_id == d1->id || st->task_id == d2->id);
        CHECK(st->next_holds != NULL);
        if (!st->next_holds)
            continue;
        CHECK(st->next_holds->lock == st->lock);
        CHECK_EQ(st->next_holds->holder_task_id, next->task_id);
        const sq_check_task *t = st->task_id == d1->id ? d1 : d2;
        CHECK(t->wants && t->wants->lock == st->lock);
        CHECK(st->lock == (t == d1 ? (void *)&s->dl2 : (void *)&s->dl1));
    }
    CHECK(c->steps[0].task_id != c->steps[1].task_id);
}

static void *scene_root(void *arg)
{
    scene *s = arg;
    dl d1 = {s, &s->dl1, &s->dl2, 1}, d2 = {s, &s->dl2, &s->dl1, 1};
    scene_start(s, &d1, &d2);

    sq_check_snapshot *snap = NULL;
    for (int tries = 0; tries < 5000; tries++) {
        sq_check_snapshot_free(snap);
        CHECK_EQ(sq_check_snapshot_take(&snap), 0);
        if (!snap || settled(snap))
            break;
        sq_sleep(SQ_MSEC);
    }
    CHECK(snap && settled(snap));
    if (snap) {
        CHECK(snap->complete);
        CHECK_EQ(snap->pid, (long)getpid());
        CHECK(snap->now_ns > 0 && snap->now_ns <= sq_now());
        check_tasks(snap, s);
        check_thread_and_cycle(snap, s);
    }

    /* The renderings are functions of the snapshot alone. */
    char *a = NULL, *b = NULL;
    CHECK_EQ(sq_check_snapshot_text(snap, &a), 0);
    CHECK_EQ(sq_check_snapshot_text(snap, &b), 0);
    CHECK(a && b && !strcmp(a, b));
    CHECK(a && strstr(a, "'holder' parked, waits for a notify") != NULL);
    free(a);
    free(b);
    CHECK_EQ(sq_check_snapshot_json(snap, &a), 0);
    CHECK_EQ(sq_check_snapshot_json(snap, &b), 0);
    CHECK(a && b && !strcmp(a, b));
    CHECK(a && strstr(a, "\"class\": \"snap.held\"") != NULL);
    free(a);
    free(b);

    /* The snapshot outlives the scene: every string is its own. */
    scene_stop(s, &d1, &d2);
    if (snap)
        check_tasks(snap, s);
    sq_check_snapshot *after;
    CHECK_EQ(sq_check_snapshot_take(&after), 0);
    CHECK(task_named(after, "holder") == NULL);
    CHECK_EQ(after->ncycles, 0);
    CHECK(thread_holding(after, &s->tlock) == NULL);
    sq_check_snapshot_free(after);
    sq_check_snapshot_free(snap);
    return NULL;
}

TEST(snapshot_shows_tasks_waits_locks_holders_threads_and_cycles)
{
    checks_begin();
    scene s = {.holder_has = 0};
    sq_mutex_init_named(&s.held, "snap.held");
    sq_mutex_init_named(&s.dl1, "snap.dl1");
    sq_mutex_init_named(&s.dl2, "snap.dl2");
    sq_mutex_init_named(&s.tlock, "snap.thread");
    sq_notify_init(&s.note);
    sq_test_run(2, scene_root, &s);
    checks_end();
}

/* ------------------------------------------------- a finished holder */

static void *lock_and_leave(void *arg)
{
    CHECK_EQ(sq_mutex_lock(arg), 0);
    return NULL; /* still holding it */
}

static size_t unowned_of(const sq_check_snapshot *s, const void *lock)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nunowned; i++)
        if (s->unowned[i].lock == lock) {
            CHECK(!strcmp(s->unowned[i].holder, "finished tasks"));
            CHECK_EQ(s->unowned[i].holder_task_id, 0);
            n++;
        }
    return n;
}

static void *leave_root(void *arg)
{
    sq_mutex *m = arg;
    sq_task t;
    CHECK_EQ(sq_spawn(&t, lock_and_leave, m, NULL), 0);
    CHECK_EQ(sq_join(t, NULL), 0);
    sq_check_snapshot *s;
    CHECK_EQ(sq_check_snapshot_take(&s), 0);
    CHECK_EQ(unowned_of(s, m), 1);
    sq_check_snapshot_free(s);
    CHECK_EQ(sq_mutex_unlock(m), 0); /* another task may unlock it */
    CHECK_EQ(sq_check_snapshot_take(&s), 0);
    CHECK_EQ(unowned_of(s, m), 0);
    sq_check_snapshot_free(s);
    return NULL;
}

TEST(a_lock_left_held_by_a_finished_task_is_listed_as_unowned)
{
    checks_begin();
    sq_mutex m;
    sq_mutex_init_named(&m, "snap.left");
    sq_test_run(1, leave_root, &m);
    CHECK_EQ(sq_mutex_destroy(&m), 0);
    checks_end();
}

/* ------------------------------------------------------ the API's edges */

TEST(snapshot_arguments_and_names)
{
    CHECK_EQ(sq_check_snapshot_take(NULL), -EINVAL);
    char *text = NULL;
    CHECK_EQ(sq_check_snapshot_text(NULL, &text), -EINVAL);
    CHECK_EQ(sq_check_snapshot_json(NULL, &text), -EINVAL);
    sq_check_snapshot_free(NULL);

    /* Without a runtime: no tasks, still a valid rendering. */
    sq_check_snapshot *s;
    CHECK_EQ(sq_check_snapshot_take(&s), 0);
    CHECK_EQ(s->nruntimes, 0);
    CHECK(s->complete);
    CHECK_EQ(sq_check_snapshot_text(s, NULL), -EINVAL);
    CHECK_EQ(sq_check_snapshot_text(s, &text), 0);
    CHECK(strstr(text, "0 runtimes\n") != NULL);
    CHECK(strstr(text, "end of the task dump\n") != NULL);
    free(text);
    sq_check_snapshot_free(s);

    CHECK(!strcmp(sq_check_task_state_name(SQ_CHECK_TASK_PARKED), "parked"));
    CHECK(!strcmp(sq_check_task_state_name(SQ_CHECK_TASK_DONE), "done"));
    CHECK(!strcmp(sq_check_task_state_name(4), "?"));
    CHECK(!strcmp(sq_check_task_state_name(-1), "?"));
    CHECK(!strcmp(sq_check_wait_kind_name(SQ_CHECK_WAIT_NONE), "none"));
    CHECK(!strcmp(sq_check_wait_kind_name(SQ_CHECK_WAIT_SEMAPHORE),
                  "semaphore"));
    CHECK(!strcmp(sq_check_wait_kind_name(SQ_CHECK_WAIT_BLOCKING),
                  "blocking"));
    CHECK(!strcmp(sq_check_wait_kind_name(SQ_CHECK_WAIT_BLOCKING + 1), "?"));
}
