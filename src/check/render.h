/* The renderings of the check layer's public structures: the snapshot as
 * the task dump's text (render_text.c) and JSON (render_json.c), and a
 * wait-for cycle as the text both the dump and the deadlock report show.
 * They read only the structures they are given: no lock, no state. */
#ifndef SQ_CHECK_RENDER_H
#define SQ_CHECK_RENDER_H

#include "squirrel/check.h"
#include "sq_base/strbuf.h"

/* Appends the text of one cycle, each line after `indent`: for each step,
 * its task or thread, the hold through which the step before waits for
 * it, and what it waits for. */
void sq__cycle_text(sq__strbuf *b, const char *indent,
                    const sq_check_cycle *c);

/* Append the whole task dump of s. */
void sq__snapshot_text(sq__strbuf *b, const sq_check_snapshot *s);
void sq__snapshot_json(sq__strbuf *b, const sq_check_snapshot *s);

#endif
