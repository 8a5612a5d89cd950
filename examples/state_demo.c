/* The shared state manager: tasks update a configuration, a reader takes
 * a snapshot, a listener sees every version in order, and a two-phase
 * "set if unset" is won by exactly one task.  Exits 0 if all checks hold. */
#include <stdio.h>
#include <stdlib.h>

#include "squirrel/state.h"

typedef struct config {
    int workers;
    char owner[32];
} config;

static void config_free(void *v, void *user)
{
    (void)user;
    free(v);
}

static int config_copy(const void *src, void **dst, void *user)
{
    (void)user;
    config *c = malloc(sizeof *c);
    if (c)
        *c = *(const config *)src;
    *dst = c;
    return c ? 0 : -ENOMEM;
}

static const sq_state_ops ops = {config_free, config_copy, NULL};
static sq_state cfg;

/* These run under the update lock, on a fresh copy: short, never wait. */
static int add_worker(void *v, void *arg)
{
    (void)arg;
    ((config *)v)->workers++;
    return 0;
}

static int set_owner(void *v, void *arg)
{
    config *c = v;
    snprintf(c->owner, sizeof c->owner, "task %d", (int)(intptr_t)arg);
    return 0;
}

static bool no_owner(const void *v, void *arg)
{
    (void)arg;
    return !((const config *)v)->owner[0];
}

static void *worker(void *arg)
{
    for (int i = 0; i < 10; i++)
        sq_state_modify(&cfg, add_worker, NULL, NULL);
    /* Claim ownership if nobody has: no_owner is asked on a snapshot,
     * then again under the lock, so exactly one task wins. */
    int won = sq_state_modify_if(&cfg, no_owner, set_owner, arg, NULL);
    return (void *)(intptr_t)won; /* 1: this task set it */
}

static void *listener(void *arg)
{
    sq_state_listener *l = arg;
    uintptr_t seen = 0;
    sq_state_snap *s;
    while (sq_state_recv(l, &s) == 0) { /* -EPIPE once cfg is destroyed */
        /* WAIT policy: every version, in order, no gap. */
        if (sq_state_snap_version(s) == seen + 1)
            seen++;
        sq_state_snap_release(s); /* the value is freed with its last ref */
    }
    return (void *)seen; /* versions seen in order */
}

static void *root(void *arg)
{
    (void)arg;
    config *initial = calloc(1, sizeof *initial);
    if (!initial || sq_state_init(&cfg, initial, &ops) != 0)
        return (void *)1;
    /* 8 queued notifications; when full, updaters wait (up to 5 s). */
    sq_state_listen_opts lo = {.capacity = 8, .on_full = SQ_STATE_WAIT,
                               .wait_ns = 5 * SQ_SEC};
    sq_state_listener *l;
    sq_task lt, w[4];
    sq_state_listen(&cfg, &lo, &l, NULL);
    sq_spawn(&lt, listener, l, NULL);
    for (int i = 0; i < 4; i++)
        sq_spawn(&w[i], worker, (void *)(intptr_t)i, NULL);
    int winners = 0;
    for (int i = 0; i < 4; i++) {
        void *won;
        sq_join(w[i], &won);
        winners += (intptr_t)won == 1;
    }
    /* A reader: a consistent snapshot, no lock held while using it. */
    sq_state_snap *s;
    sq_state_read(&cfg, &s);
    const config *c = sq_state_snap_value(s);
    int ok = c->workers == 40 && c->owner[0] && winners == 1 &&
             sq_state_snap_version(s) == 41;
    sq_state_destroy(&cfg); /* the listener drains, then gets -EPIPE */
    void *seen;
    sq_join(lt, &seen);
    sq_state_unlisten(l);
    printf("version %d: %d workers, owner %s; the listener saw %d\n",
           (int)sq_state_snap_version(s), c->workers, c->owner,
           (int)(uintptr_t)seen);
    sq_state_snap_release(s); /* the snapshot outlived the state */
    return (void *)(intptr_t)!(ok && (uintptr_t)seen == 41);
}

int main(void)
{
    void *failed = (void *)1;
    int rc = sq_run(root, NULL, NULL, &failed);
    return rc == 0 && !failed ? 0 : 1;
}
