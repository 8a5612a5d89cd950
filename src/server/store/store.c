/* Choosing a store by its spec (store.h), running its calls where they
 * may wait, and the helpers every backend shares. */
#include "store.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "squirrel/blocking.h"
#include "squirrel/runtime.h"

typedef struct open_job {
    const char *spec;
    sq_store **out;
    char *err;
    size_t errlen;
    int rc;
} open_job;

static void *open_sqlite(void *arg)
{
    open_job *j = arg;
    const char *path = strcmp(j->spec, "memory") == 0 ? ":memory:" : j->spec + 7;
    j->rc = sq__store_sqlite_open(path, j->out, j->err, j->errlen);
    return NULL;
}

static void *close_main(void *arg)
{
    sq_store *st = arg;
    st->vt->close(st);
    return NULL;
}

static bool is_pg(const char *spec)
{
    return strncmp(spec, "postgresql://", 13) == 0 || strncmp(spec, "postgres://", 11) == 0;
}

int sq_store_open(const char *spec, sq_store **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc;
    if (spec && ((strncmp(spec, "sqlite:", 7) == 0 && spec[7]) || strcmp(spec, "memory") == 0)) {
        open_job j = {.spec = spec, .out = out, .err = err, .errlen = errlen};
        sq_cancel_mask();
        rc = sq_runtime_current() ? sq_blocking_run(open_sqlite, &j, NULL) : (open_sqlite(&j), 0);
        sq_cancel_unmask();
        if (rc == 0)
            rc = j.rc;
        else
            snprintf(err, errlen, "opening the store: %s", sq_strerror(rc));
    } else if (spec && is_pg(spec)) {
        rc = sq__store_pg_open(spec, out, err, errlen);
    } else {
        snprintf(err, errlen,
                 "unknown store \"%s\" (sqlite:PATH, postgresql://..., or memory for one "
                 "that keeps nothing after the process ends)",
                 spec ? spec : "");
        return -EINVAL;
    }
    if (rc == 0 && !((*out)->spec = strdup(spec))) {
        sq_store_run(*out, close_main, *out);
        *out = NULL;
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
    }
    return rc;
}

int sq_store_run(sq_store *st, void *(*fn)(void *), void *arg)
{
    sq_cancel_mask();
    int rc = 0;
    if ((st->vt->flags & SQ_STORE_TASK_WAITS) || !sq_runtime_current())
        fn(arg);
    else
        rc = sq_blocking_run(fn, arg, NULL);
    sq_cancel_unmask();
    return rc;
}

void sq_store_watch(sq_store *st, sq_store_external_fn fn, void *arg)
{
    st->external_arg = arg;
    __atomic_store_n(&st->on_external, fn, __ATOMIC_RELEASE);
}

int sq_store_status(sq_store *st, char *msg, size_t len)
{
    if (st->vt->status)
        return st->vt->status(st, msg, len);
    if (msg && len)
        snprintf(msg, len, "ok");
    return 0;
}

void sq_store_doc_free(sq_store_doc *d)
{
    free(d->doc);
    free(d->meta);
    d->doc = d->meta = NULL;
}

const char *sq_store_kind_name(int kind)
{
    switch (kind) {
    case SQ_STORE_KIND_CREATE: return "create";
    case SQ_STORE_KIND_REPLACE: return "replace";
    case SQ_STORE_KIND_MERGE: return "merge";
    case SQ_STORE_KIND_JSON: return "json";
    case SQ_STORE_KIND_RESTORE: return "restore";
    default: return "unknown";
    }
}

bool sq_store_keeps_events(const sq_store *st)
{
    return st && st->vt->events_write && st->vt->events_prune && st->vt->events_read;
}
