/* The hooks the lower layers call (hooks.c), and the configuration they
 * read. */
#ifndef SQ_CHECK_HOOKS_H
#define SQ_CHECK_HOOKS_H

#include "squirrel/check.h"

/* Makes the hooks look for c's findings with c's thresholds (c complete:
 * defaults filled in), and installs them in the lower layers if any
 * finding is on; once installed they stay, so the holds stay exact.
 * Takes sq__check_lock.  Never waits. */
void sq__hooks_configure(const sq_check_config *c);

#endif
