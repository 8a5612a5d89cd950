/* Legacy-era SSE streams kept in a shared store (events.c; docs/postgres.md,
 * "The load balancer"), so that a client whose instance died can resume
 * a stream on another one.
 *
 * With a store that keeps event streams (PostgreSQL: sq_store_keeps_events)
 * every event of a resumable stream (a session's outgoing queue made with
 * keep, once attached here) is also written to the store by one writer
 * task per instance, which commits everything queued at that moment in
 * one round trip (group commit); nothing on the request path waits for
 * the database.  An event is "stored" (replayable from another instance)
 * once the batch it is in has committed.  A stream's stored events are a
 * prefix of its events: in order, without gaps (an event the writer
 * cannot take, its queue being full, stops the storing of that stream).
 * A session's events are deleted when it ends (DELETE, expiry; not when
 * the server stops: then they stay for a resumption elsewhere), and
 * events stored longer ago than the retention (the session idle timeout;
 * 30 min when sessions never expire) are pruned.  With any other store
 * (SQLite, memory) none of this runs: streams stay in memory only. */
#ifndef SQ_SERVER_EVENTS_H
#define SQ_SERVER_EVENTS_H

#include "srv.h"

/* Starts the writer if the server's store keeps event streams (sets
 * s->events; leaves it NULL otherwise).  Call it once the context
 * manager is started, from a task.  0, or -ENOMEM (err says what).
 * Never waits long. */
int sq_events_start(sq_srv *s, char *err, size_t errlen);
/* Commits what is queued (giving up on it if the store fails meanwhile),
 * then ends the writer; later events are not stored.  Call it from a
 * task once no request is left.  Waits for the writer; cancellation is
 * masked meanwhile.  Safe without sq_events_start. */
void sq_events_stop(sq_srv *s);
/* Frees what sq_events_start made (after sq_events_stop). */
void sq_events_free(sq_srv *s);

/* What the writer did so far: events stored (their batch committed),
 * refused at once (its queue was full or it had stopped), and given up
 * (their batch failed for good, or they came after one of their stream
 * that was).  False, with nothing set, without the writer.  Never waits. */
bool sq_events_counts(sq_srv *s, uint64_t *stored, uint64_t *refused, uint64_t *given_up);

/* Makes q, the queue of SSE stream `stream` of HTTP session `session`,
 * store its events from now on (nothing without s->events).  Call it
 * before q is shared with anyone who pushes.  Never waits. */
void sq_events_attach(sq_srv *s, sq_outq *q, const char *session, uint64_t stream);
/* Queues the deletion of every stored event of the session (it ended).
 * Never waits. */
void sq_events_session_ended(sq_srv *s, const char *session);

/* The replay of a stream from the store: its stored events with seq >
 * after, as SSE events with their ids ("<stream>-<seq>") appended to
 * sse, as long as their seqs follow on from `after` without a gap.  0;
 * -ENOENT when nothing at all is stored for that stream, or the event
 * right after `after` is no longer stored while later ones are (pruned),
 * or there is no such store; another negative errno when the store could
 * not be read.  Waits as a task for the database; cancellation is masked
 * while it does. */
int sq_events_replay(sq_srv *s, const char *session, uint64_t stream, uint64_t after,
                     sq__strbuf *sse);

/* For outq.c (sq_outq_push): an event of q's stream on its way to the
 * writer, made before the queue's lock is taken (NULL: out of memory),
 * then handed over under it with its seq (so that a stream's events
 * reach the writer in order): true if taken, false if refused (the
 * writer's queue is full, or it stopped; rec is freed then).  Free an
 * unused one with free().  sq__events_kick wakes the writer: call it
 * after the queue's lock is released, once something was taken.  Never
 * wait. */
typedef struct sq_events sq_events;
typedef struct sq_evrec sq_evrec;
sq_evrec *sq__events_rec_new(const sq_outq *q, const char *text, size_t len);
bool sq__events_put(sq_events *ev, sq_evrec *rec, uint64_t seq);
void sq__events_kick(sq_events *ev);

#endif
