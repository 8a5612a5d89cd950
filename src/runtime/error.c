#include "squirrel/error.h"

#include <string.h>

/* strerror() is not thread-safe and strerror_r() has two incompatible
 * variants; the codes Squirrel returns are few, so name them here (in
 * Squirrel's words), and ask glibc's strerrordesc_np for the rest. */
const char *sq_strerror(int code)
{
    switch (code) {
    case 0: return "success";
    case -EINVAL: return "invalid argument";
    case -ENOMEM: return "out of memory";
    case -ECANCELED: return "operation cancelled";
    case -ETIMEDOUT: return "deadline expired";
    case -ESHUTDOWN: return "runtime is shutting down";
    case -EPERM: return "not allowed outside a Squirrel task";
    case -EBUSY: return "resource busy";
    case -EOVERFLOW: return "value too large (deadline overflow)";
    case -EBADF: return "handle closed";
    case -EAGAIN: return "try again";
    case -EPIPE: return "broken pipe";
    case -ECONNRESET: return "connection reset by peer";
    case -ECONNREFUSED: return "connection refused";
    case -EADDRINUSE: return "address already in use";
    case -ENOENT: return "no such file or directory";
    case -ESRCH: return "no such task";
    case -EDEADLK: return "operation would deadlock";
    case -EMFILE: return "too many open files";
    case -ENOSPC: return "no space left";
    case -EEXIST: return "already exists";
    case -ENOTCONN: return "not connected";
    case -EINTR: return "interrupted";
    default: {
        /* Any other errno value (a user's job may return -EIO): glibc's
         * static, thread-safe description. */
        const char *d = code < 0 ? strerrordesc_np(-code) : NULL;
        return d ? d : "unknown error";
    }
    }
}
