/* squirreld's server layer: monitoring, as the server's components see it
 * (docs/monitoring.md is the manual).
 *
 * Two small registries that every component of squirreld (the context
 * manager, the commands, the plugins, the server itself) reports to, and
 * that /health, /metrics, the alerts and the console read:
 *
 *  - Health components: a name and a status (healthy, degraded, failed,
 *    the original Squirrel's three) with a reason.  The overall status is
 *    the worst of them; /health answers 200 while it is healthy or
 *    degraded, 503 when it is failed.
 *  - Metric sources: the server's metrics registry (squirrel/metrics.h).
 *    A component creates its counters, gauges and histograms there, or
 *    adds a collector that emits its figures at each scrape.  Updates are
 *    lock-free; nothing a component does with it can stall a request.
 *
 * Label cardinality must stay bounded: never an id, a URI or a client's
 * name as a label value (a session id would make one series per session).
 * Names are documented in docs/monitoring.md, the context manager's,
 * commands' and plugins' among them (src/server/mon_components.c).
 */
#ifndef SQ_SERVER_MONITOR_H
#define SQ_SERVER_MONITOR_H

#include <stdint.h>

#include "squirrel/metrics.h"

typedef struct sq_srv sq_srv;

/* Health states, least severe first (the overall status is the max). */
enum sq_health_status {
    SQ_HEALTH_HEALTHY = 0,
    SQ_HEALTH_DEGRADED = 1,
    SQ_HEALTH_FAILED = 2,
};

/* "healthy", "degraded", "failed" ("?" out of range).  Never fails. */
const char *sq_health_name(int status);

typedef struct sq_health_component sq_health_component;

/* The longest reason kept (longer ones are cut, on a UTF-8 boundary). */
#define SQ_HEALTH_REASON_MAX 240

/* Registers a health component named `name` (1-63 of [A-Za-z0-9_.-];
 * copied), healthy with no reason.  Returns 0 with *out, -EINVAL (a bad
 * name), -EEXIST (the name is registered), -ENOMEM.  Never waits (a spin
 * lock held for a list insertion); callable from any task or thread. */
int sq_health_register(sq_srv *s, const char *name, sq_health_component **out);

/* Sets c's status and reason (NULL: none; copied).  A change is logged
 * (info when healthy again, warning when degraded, error when failed).
 * Returns 0 or -EINVAL (status out of range).  Never waits. */
int sq_health_set(sq_health_component *c, int status, const char *reason);

/* Removes c and frees it (NULL: nothing).  Never waits. */
void sq_health_unregister(sq_health_component *c);

/* The overall status now: the worst of every component (registered and
 * built-in: the server itself, the alerts).  Never waits. */
int sq_health_overall(sq_srv *s);

/* The server's metrics registry, where components put their metrics and
 * collectors (sq_counter_create(&c, sq_srv_metrics(s), ...),
 * sq_metrics_add_collector(sq_srv_metrics(s), ...)).  It lives as long
 * as the server: destroy your metrics and remove your collectors before
 * sq_srv_destroy.  Never NULL for a created server. */
sq_metrics *sq_srv_metrics(sq_srv *s);

#endif
