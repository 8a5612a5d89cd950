/* Choosing a store by its spec (store.h), and the helpers every backend
 * shares. */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sq_store_open(const char *spec, sq_store **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc;
    if (spec && strncmp(spec, "sqlite:", 7) == 0 && spec[7]) {
        rc = sq__store_sqlite_open(spec + 7, out, err, errlen);
    } else if (spec && strcmp(spec, "memory") == 0) {
        rc = sq__store_sqlite_open(":memory:", out, err, errlen);
    } else {
        snprintf(err, errlen,
                 "unknown store \"%s\" (sqlite:PATH, or memory for one that keeps "
                 "nothing after the process ends)",
                 spec ? spec : "");
        return -EINVAL;
    }
    if (rc == 0 && !((*out)->spec = strdup(spec))) {
        (*out)->vt->close(*out);
        *out = NULL;
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
    }
    return rc;
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
