/* The proto layer: newline-delimited messages over sq_io (the framing of
 * MCP's stdio transport, and of JSON-RPC over Unix and TCP sockets).
 * Nothing here knows about JSON. */
#ifndef SQ_PROTO_LINES_H
#define SQ_PROTO_LINES_H

#include <stddef.h>
#include <stdint.h>

#include "squirrel/runtime.h"

typedef struct sq_lines sq_lines;

/* A reader of lines from io (not owned), none longer than max_line bytes
 * (0 = 4 MiB).  -ENOMEM.  Never waits. */
int sq_lines_new(sq_lines **out, struct sq_io *io, size_t max_line);
void sq_lines_free(sq_lines *l);

/* Reads the next line: *line points at its bytes (without the LF and a
 * CR before it; NUL-terminated), valid until the next call.  Returns:
 *   1  a line (possibly empty); a last line without LF at end of stream
 *      counts as a line;
 *   0  end of stream;
 *  -EMSGSIZE  the line was longer than max_line: it is skipped up to and
 *      including its LF (reading it through), and the next call goes on
 *      after it;
 *  -ETIMEDOUT at deadline, -ECANCELED, or another negative errno of the
 *      read.  Cancel safe: nothing is lost on -ETIMEDOUT/-ECANCELED (a
 *      partial line stays buffered).
 * Waits for bytes (a cancellation point). */
int sq_lines_read(sq_lines *l, char **line, size_t *len, int64_t deadline);

#endif
