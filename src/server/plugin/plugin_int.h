/* The plugin host's private header (sq_server/plugins.h is its interface,
 * squirrel/plugin.h the plugins' ABI, docs/plugins.md the manual).
 *
 *  - host.c       the table of functions plugins call (sq_plugin_host)
 *  - items.c      what a plugin registers: commands, resources, templates,
 *                 prompts, and the wrappers that call into the plugin
 *  - lifecycle.c  loading, the callbacks and their deadlines, dependency
 *                 order, load/unload/reload, shutdown
 *  - admin.c      the resource squirrel://plugins and the command
 *                 plugin_admin
 *
 * Locks: h->lock (a task-aware mutex) guards the list of plugins, each
 * plugin's state and its lists of items, and the transitions; it is
 * never held across a wait.  Changes to plugins are serialized by
 * h->ops, a semaphore of one permit (held across waits: a semaphore is
 * not a lock, and nothing waits for it under a lock).
 */
#ifndef SQ_SERVER_PLUGIN_INT_H
#define SQ_SERVER_PLUGIN_INT_H

#include <stdatomic.h>

#include "squirrel/plugin.h"
#include "sq_server/cmd.h"
#include "sq_server/plugins.h"
#include "srv.h"

/* Something a plugin registered other than a command (those are in the
 * command system): a resource, template or prompt, with the plugin's
 * definition.  Reference-counted: the plugin's list and the registry's
 * entry each hold one. */
typedef struct plug_item {
    struct sq_plugin *p;
    int kind;                  /* SQ_ENTRY_RESOURCE, _TEMPLATE, _PROMPT */
    char *key;                 /* URI, URI template or name */
    union {
        sq_plugin_resource res;
        sq_plugin_template tmpl;
        sq_plugin_prompt prompt;
    } def;
    atomic_int calls;          /* in the plugin's code now */
    atomic_int refs;
    atomic_bool closed;        /* being removed: calls are refused */
    struct sq__link link;      /* in p->items (under h->lock) */
} plug_item;

/* A command of a plugin: the command system's data for it. */
typedef struct plug_cmd {
    struct sq_plugin *p;
    sq_plugin_command def;     /* the plugin's definition (its pointers) */
} plug_cmd;

/* A name the plugin registered a command under. */
typedef struct plug_name {
    char *name;
    bool fresh;                /* registered again during a reload */
    struct sq__link link;
} plug_name;

struct sq_plugin {
    sq_plugins *h;
    char *file;
    char name[72];             /* the descriptor's, or the file's until then */
    char *version;
    char **depends;            /* NULL-terminated copies */
    void *dl;                  /* dlopen handle, or NULL */
    const sq_plugin_desc *desc;
    sq_plugin_desc d;          /* the descriptor, as this host reads it */
    void *state;               /* what init gave */
    /* Under h->lock: */
    atomic_int st;             /* enum sq_plugin_state (written under lock) */
    char reason[512];
    struct sq__list items;     /* plug_item.link */
    struct sq__list cmds;      /* plug_name.link */
    atomic_bool reloading;
    bool inited;               /* init returned 0: destroy is due */
    atomic_bool abandoned;     /* a callback or call never ended: no dlclose */
    uint64_t started_seq;      /* order of activation (stop: reverse) */
    /* The host's list and each callback's task hold one: an abandoned
     * callback's task frees the record if it ends after the host. */
    atomic_int refs;
    struct sq__link link;      /* in h->plugins */
};

typedef struct plug_transition {
    uint64_t seq;
    int64_t at_ms;             /* wall clock */
    char plugin[72];
    int from, to;
    char reason[200];
} plug_transition;

#define PLUG_TRANSITIONS 256

struct sq_plugins {
    sq_srv *srv;
    int64_t timeout;           /* each callback's deadline */
    sq_mutex lock;
    struct sq__list plugins;   /* sq_plugin.link */
    plug_transition trans[PLUG_TRANSITIONS];
    uint64_t next_trans;       /* from 1 */
    uint64_t next_start;
    sq_sem ops;                /* one change at a time */
    /* "plugins" health: degraded while one is failed (lifecycle.c). */
    struct sq_health_component *health;
    bool shut;
};

/* One call into the plugin (squirrel/plugin.h's sq_plugin_call): a
 * command's stage (cmd set), or a read or prompt (req set). */
struct sq_plugin_call {
    sq_plugin *p;
    sq_cmd_call *cmd;
    sq_mcp_req *req;
    void *user;
};

extern const sq_plugin_host sq__plugin_host;

/* lifecycle.c */
/* Moves p to state `to` (recording the transition, logging it, telling
 * subscribers of squirrel://plugins).  reason may be NULL. */
void sq__plug_set_state(sq_plugin *p, int to, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int sq__plug_state(sq_plugin *p);

/* items.c */
int sq__plug_add_command(sq_plugin *p, const sq_plugin_command *def);
int sq__plug_remove_command(sq_plugin *p, const char *name);
/* def is one of sq_plugin_resource/_template/_prompt (size: this host's
 * sizeof; min: the least a plugin's may be). */
int sq__plug_add_item(sq_plugin *p, int kind, const void *def, size_t size,
                      size_t min);
int sq__plug_remove_item(sq_plugin *p, int kind, const char *key);
/* Removes every item and command of p, calls in flight finishing first
 * (until deadline; past it they are aborted, and p is abandoned if they
 * still do not end).  Calls the plugin's release functions. */
void sq__plug_remove_all(sq_plugin *p, int64_t deadline);
/* Reload: pauses every command of p (calls in flight finish), puts a
 * placeholder in place of each definition (releasing the plugin's, while
 * its code is loaded) and removes its other items. */
void sq__plug_park(sq_plugin *p, int64_t deadline);
/* After a reload's init and start: commands that were not registered
 * again are removed; the rest are let in again. */
void sq__plug_unpark(sq_plugin *p);
/* Lets p's commands in (the plugin became active). */
void sq__plug_resume_all(sq_plugin *p);
/* p's command names, as a JSON array. */
json_t *sq__plug_command_names(sq_plugin *p);

/* admin.c */
int sq__plug_admin_register(sq_plugins *h);
void sq__plug_notify(sq_plugins *h);

#endif
