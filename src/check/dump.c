/* The task dump: a snapshot (snapshot.c) rendered as text or JSON
 * (render_text.c, render_json.c), on demand and on a signal.
 *
 * The signal path never formats in the handler: the handler writes one
 * byte to a pipe, and a thread of ours (every signal blocked) reads it,
 * takes the snapshot and writes the dump. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "squirrel/check.h"

/* The whole dump as a malloc'ed string, or NULL (out of memory). */
static char *dump_text(bool json)
{
    sq_check_snapshot *s;
    if (sq_check_snapshot_take(&s) != 0)
        return NULL;
    char *text = NULL;
    if (json)
        sq_check_snapshot_json(s, &text);
    else
        sq_check_snapshot_text(s, &text);
    sq_check_snapshot_free(s);
    return text;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int sq_check_dump_string(bool json, char **out)
{
    if (!out)
        return -EINVAL;
    *out = dump_text(json);
    return *out ? 0 : -ENOMEM;
}

int sq_check_dump(int fd, bool json)
{
    if (fd < 0)
        return -EBADF;
    char *text = dump_text(json);
    if (!text)
        return -ENOMEM;
    int rc = write_all(fd, text, strlen(text));
    free(text);
    return rc;
}

/* ------------------------------------------------------ on a signal */

/* The pipe from the handler to the dump thread: made once, kept for the
 * life of the process (a handler may still be running on some thread
 * when the signal is given back, so its pipe must stay valid). */
static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static int sig_pipe[2] = {-1, -1};   /* under sig_lock */
static atomic_int sig_wfd = -1;      /* sig_pipe[1], for the handler */
static atomic_int sig_out = -1;      /* where the dumps go */
static int sig_no;                   /* the signal we hold, or 0 */
static struct sigaction sig_prev;    /* what it did before */
static pthread_t sig_thread;
static bool sig_thread_on;

static void on_signal(int signo)
{
    (void)signo;
    int saved = errno;
    char b = 'd';
    ssize_t w = write(atomic_load_explicit(&sig_wfd, memory_order_relaxed),
                      &b, 1); /* a full pipe already has a dump coming */
    (void)w;
    errno = saved;
}

static void *sig_main(void *arg)
{
    (void)arg;
    int rfd = sig_pipe[0];
    for (;;) {
        char buf[64];
        ssize_t n = read(rfd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL;
        if (memchr(buf, 'd', (size_t)n)) {
            char *text = dump_text(false);
            if (text)
                write_all(atomic_load(&sig_out), text, strlen(text));
            free(text);
        }
        if (memchr(buf, 'q', (size_t)n))
            return NULL;
    }
}

/* Starts the dump thread.  Under sig_lock. */
static int sig_thread_start(void)
{
    if (sig_pipe[0] < 0) {
        if (pipe2(sig_pipe, O_CLOEXEC) != 0)
            return -errno;
        fcntl(sig_pipe[1], F_SETFL, O_NONBLOCK); /* the handler never blocks */
        atomic_store(&sig_wfd, sig_pipe[1]);
    }
    /* Bytes left by a handler that ran as the last thread stopped. */
    struct pollfd p = {.fd = sig_pipe[0], .events = POLLIN};
    char buf[64];
    while (poll(&p, 1, 0) == 1 && read(sig_pipe[0], buf, sizeof buf) > 0)
        ;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&sig_thread, NULL, sig_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc)
        return -rc;
    sig_thread_on = true;
    return 0;
}

/* Stops the dump thread, after a dump in progress.  Under sig_lock. */
static void sig_thread_stop(void)
{
    char q = 'q';
    while (write(sig_pipe[1], &q, 1) != 1) {
        struct pollfd p = {.fd = sig_pipe[1], .events = POLLOUT};
        poll(&p, 1, 10); /* full of requests the thread is draining */
    }
    pthread_join(sig_thread, NULL);
    sig_thread_on = false;
}

int sq_check_dump_on_signal(int signo, int fd)
{
    if (signo < 0 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP)
        return -EINVAL;
    if (signo && fd < 0)
        return -EBADF;
    pthread_mutex_lock(&sig_lock);
    int rc = 0;
    if (signo == 0) {
        if (sig_no) {
            sigaction(sig_no, &sig_prev, NULL);
            sig_no = 0;
        }
        if (sig_thread_on)
            sig_thread_stop();
        pthread_mutex_unlock(&sig_lock);
        return 0;
    }
    atomic_store(&sig_out, fd);
    if (!sig_thread_on && (rc = sig_thread_start()) != 0) {
        pthread_mutex_unlock(&sig_lock);
        return rc;
    }
    if (sig_no != signo) {
        struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
        sigemptyset(&sa.sa_mask);
        struct sigaction prev;
        if (sigaction(signo, &sa, &prev) != 0) {
            rc = -errno;
        } else {
            if (sig_no)
                sigaction(sig_no, &sig_prev, NULL);
            sig_no = signo;
            sig_prev = prev;
        }
    }
    if (rc && !sig_no)
        sig_thread_stop();
    pthread_mutex_unlock(&sig_lock);
    return rc;
}
