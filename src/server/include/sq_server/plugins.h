/* squirreld's server layer: the plugin host (docs/plugins.md; the ABI a
 * plugin sees is the public header squirrel/plugin.h).
 *
 * The host keeps a record of every plugin it was asked to load, with its
 * state (registered, initializing, active, shutting down, disabled,
 * failed), the reason of a failure and every transition; the resource
 * squirrel://plugins shows them, and, when the configuration allows it
 * (plugin_admin), the command plugin_admin loads, unloads and reloads
 * plugins while the server runs.
 *
 * Loading (dlopen) runs on the blocking pool, never on a worker; every
 * plugin callback runs in a task of its own with the configured deadline
 * (plugin_timeout): one that does not return by then is aborted, and if
 * it still does not return it is abandoned (its task runs on, its code is
 * never unloaded) and the plugin marked failed.
 *
 * Operations that change plugins (start, load, unload, reload, shutdown)
 * are serialized: one at a time.  Errors are negative errno codes with a
 * sentence in err; calls are made from tasks of the server's runtime.
 */
#ifndef SQ_SERVER_PLUGINS_H
#define SQ_SERVER_PLUGINS_H

#include <stddef.h>

#include "sq_proto/jansson.h"
#include "sq_server/mcp.h"

typedef struct sq_plugins sq_plugins;

/* The lifecycle states (what squirrel://plugins calls them). */
enum sq_plugin_state {
    SQ_PLUGIN_REGISTERED, SQ_PLUGIN_INITIALIZING, SQ_PLUGIN_ACTIVE,
    SQ_PLUGIN_SHUTTING_DOWN, SQ_PLUGIN_DISABLED, SQ_PLUGIN_FAILED
};
/* "registered", "initializing", "active", "shutting down", "disabled",
 * "failed". */
const char *sq_plugin_state_name(int state);

/* Creates the host of server s (after its command system): registers
 * the resource squirrel://plugins and, if the configuration says
 * plugin_admin, the command plugin_admin.  0 or a negative errno.  Never
 * waits long. */
int sq_plugins_create(sq_plugins **out, sq_srv *s);

/* Loads the plugins in files (n of them) and starts them in dependency
 * order.  A plugin that cannot be loaded, whose descriptor is refused,
 * whose dependency is missing or part of a cycle, or whose init or start
 * fails, is marked failed (with the reason, also logged), and so are the
 * plugins that depend on it; the others start.  Returns how many failed.
 * Waits (the blocking pool, the callbacks). */
int sq_plugins_start(sq_plugins *h, char *const *files, size_t n);

/* At run time (the admin tool's actions).  Each waits, and returns 0 or
 * a negative errno with the reason in err:
 *  load    the plugin in `file`, whose dependencies must be active;
 *  unload  stops the plugin `name` (calls in flight into it finish, new
 *          ones are refused) and unloads it; refused while an active
 *          plugin depends on it;
 *  reload  the same, then loads its file again and starts it: calls that
 *          come meanwhile wait for it (until their deadline). */
int sq_plugins_load(sq_plugins *h, const char *file, char *err, size_t errlen);
int sq_plugins_unload(sq_plugins *h, const char *name, char *err, size_t errlen);
int sq_plugins_reload(sq_plugins *h, const char *name, char *err, size_t errlen);

/* Every plugin and the recent transitions, as squirrel://plugins shows
 * them (a new object). */
json_t *sq_plugins_describe(sq_plugins *h);

/* Stops every active plugin, in the reverse of the order they started,
 * and unloads them.  Waits.  Idempotent. */
void sq_plugins_shutdown(sq_plugins *h);
/* Frees the host (after sq_plugins_shutdown).  NULL is ignored. */
void sq_plugins_destroy(sq_plugins *h);

#endif
