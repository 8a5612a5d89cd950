/* Creating sq_io handles: adopting descriptors, TCP, Unix sockets, pipes. */
#include "io_internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static sq_runtime *current_rt(void)
{
    return sq_runtime_current();
}

static int wrap(int fd, bool is_socket, sq_io **out)
{
    sq_runtime *rt = current_rt();
    if (!rt)
        return -EPERM;
    int rc = sq__io_new(rt, fd, out);
    if (rc == 0)
        (*out)->is_socket = is_socket;
    return rc;
}

int sq_io_adopt(sq_io **out, int fd)
{
    if (!current_rt())
        return -EPERM;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -EBADF;
    int old_fl = fl, old_fd = fcntl(fd, F_GETFD);
    if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
        fcntl(fd, F_SETFD, old_fd | FD_CLOEXEC) != 0)
        return -errno;
    int type = 0;
    socklen_t len = sizeof type;
    bool sock = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
    int rc = wrap(fd, sock, out);
    if (rc) { /* leave the fd as we found it */
        fcntl(fd, F_SETFL, old_fl);
        fcntl(fd, F_SETFD, old_fd);
    }
    return rc;
}

/* Parses a numeric address; NULL means `any` (listen) or loopback. */
static int make_addr(const char *host, int port, bool listen,
                     struct sockaddr_storage *ss, socklen_t *len)
{
    if (port < 0 || port > 65535)
        return -EINVAL;
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (!host) {
        in4->sin_family = AF_INET;
        in4->sin_addr.s_addr = htonl(listen ? INADDR_ANY : INADDR_LOOPBACK);
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof *in4;
    } else if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof *in4;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
    } else {
        return -EINVAL; /* names need DNS: resolve on the blocking pool */
    }
    return 0;
}

static int listen_on(int domain, const struct sockaddr *a, socklen_t len,
                     int backlog, sq_io **out)
{
    if (!current_rt())
        return -EPERM;
    int fd = socket(domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (domain != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a, len) != 0 || listen(fd, backlog > 0 ? backlog : 128) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    int rc = wrap(fd, true, out);
    if (rc)
        close(fd);
    return rc;
}

static int connect_to(int domain, const struct sockaddr *a, socklen_t len,
                      int64_t deadline, sq_io **out)
{
    if (deadline < 0)
        return -EINVAL;
    int fd = socket(domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    sq_io *io;
    int rc = wrap(fd, true, &io);
    if (rc) {
        close(fd);
        return rc;
    }
    if ((rc = sq__io_enter(io, deadline)) != 0) {
        sq_io_close(io);
        return rc;
    }
    uint32_t seen = atomic_load(&io->wr_seq);
    if (connect(fd, a, len) != 0) {
        rc = -errno;
        if (rc == -EINPROGRESS) {
            rc = sq__io_wait(io, true, seen, deadline);
            int err = 0;
            socklen_t el = sizeof err;
            if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0)
                rc = -err;
        }
    }
    sq__io_unref(io);
    if (rc) {
        sq_io_close(io);
        return rc;
    }
    *out = io;
    return 0;
}

int sq_tcp_listen(sq_io **out, const char *host, int port, int backlog)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = make_addr(host, port, true, &ss, &len);
    if (rc)
        return rc;
    return listen_on(ss.ss_family, (struct sockaddr *)&ss, len, backlog, out);
}

int sq_tcp_connect_until(sq_io **out, const char *host, int port,
                         int64_t deadline)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = make_addr(host, port, false, &ss, &len);
    if (rc)
        return rc;
    if (port == 0)
        return -EINVAL;
    return connect_to(ss.ss_family, (struct sockaddr *)&ss, len, deadline, out);
}

int sq_tcp_connect(sq_io **out, const char *host, int port)
{
    return sq_tcp_connect_until(out, host, port, SQ_FOREVER);
}

int sq_tcp_nodelay(sq_io *io, int on)
{
    if (!io)
        return -EINVAL;
    int v = on != 0;
    return setsockopt(io->fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) == 0
               ? 0
               : -errno;
}

int sq_io_local_port(const sq_io *io)
{
    if (!io)
        return -EINVAL;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(io->fd, (struct sockaddr *)&ss, &len) != 0)
        return -errno;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EINVAL;
}

static int unix_addr(const char *path, struct sockaddr_un *a)
{
    if (!path || strlen(path) >= sizeof a->sun_path)
        return -EINVAL;
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strcpy(a->sun_path, path);
    return 0;
}

int sq_unix_listen(sq_io **out, const char *path, int backlog)
{
    struct sockaddr_un a;
    int rc = unix_addr(path, &a);
    return rc ? rc
              : listen_on(AF_UNIX, (struct sockaddr *)&a, sizeof a, backlog,
                          out);
}

int sq_unix_connect(sq_io **out, const char *path)
{
    struct sockaddr_un a;
    int rc = unix_addr(path, &a);
    return rc ? rc
              : connect_to(AF_UNIX, (struct sockaddr *)&a, sizeof a,
                           SQ_FOREVER, out);
}

int sq_pipe(sq_io *ends[2])
{
    if (!current_rt())
        return -EPERM;
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return -errno;
    int rc = wrap(fds[0], false, &ends[0]);
    if (rc) {
        close(fds[0]);
        close(fds[1]);
        return rc;
    }
    rc = wrap(fds[1], false, &ends[1]);
    if (rc) {
        sq_io_close(ends[0]);
        close(fds[1]);
    }
    return rc;
}
