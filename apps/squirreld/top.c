/* squirreld-top: the console's live view in a terminal, for servers
 * without a browser.  It reads the same event stream as the web console
 * (/console/events: docs/monitoring.md) and redraws a screen per event:
 * health, alerts, request rate and latency, locks with their holders and
 * waiters, deadlocks, tasks, requests in flight, sessions.
 *
 *   squirreld-top [--token-file FILE] [--interval MS] [--once] URL
 *
 * URL is the server's (http://HOST:PORT, any path: /mcp, /console...).
 * The token comes from --token-file or $SQUIRRELD_TOKEN.  --once prints
 * one frame, without clearing the screen, and exits (0, or 1 if the
 * server could not be read).  A plain program: blocking sockets, no
 * runtime. */
#include "sq_proto/jansson.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static const char usage[] =
    "usage: squirreld-top [--token-file FILE] [--interval MS] [--once] URL\n"
    "  URL               the server: http://HOST:PORT (any path)\n"
    "  --token-file FILE the bearer token (else $SQUIRRELD_TOKEN)\n"
    "  --interval MS     how often the server sends a frame (200..10000; 1000)\n"
    "  --once            print one frame and exit\n";

static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *a;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) {
        fprintf(stderr, "squirreld-top: %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        fprintf(stderr, "squirreld-top: cannot connect to %s:%s: %s\n", host, port,
                strerror(errno));
    return fd;
}

static char *read_token(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "squirreld-top: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char buf[4096];
    char *t = fgets(buf, sizeof buf, f) ? strdup(buf) : NULL;
    fclose(f);
    if (t)
        t[strcspn(t, "\r\n")] = '\0';
    return t;
}

/* ------------------------------------------------------------ drawing */

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static long long num(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (long long)json_integer_value(v)
                              : (long long)json_number_value(v);
}

static void dur(char *b, size_t n, long long ms)
{
    if (ms < 0)
        snprintf(b, n, "-");
    else if (ms < 1000)
        snprintf(b, n, "%lld ms", ms);
    else if (ms < 60000)
        snprintf(b, n, "%.1f s", (double)ms / 1000);
    else if (ms < 3600000)
        snprintf(b, n, "%lld m %lld s", ms / 60000, ms / 1000 % 60);
    else
        snprintf(b, n, "%lld h %lld m", ms / 3600000, ms / 60000 % 60);
}

static bool color;

static const char *paint(const char *status)
{
    if (!color)
        return "";
    return strcmp(status, "healthy") == 0 ? "\033[32m"
         : strcmp(status, "degraded") == 0 || strcmp(status, "pending") == 0 ? "\033[33m"
         : "\033[31m";
}
#define RESET (color ? "\033[0m" : "")
#define BOLD (color ? "\033[1m" : "")

/* The history kept across frames: requests per second, p50, p99. */
static json_t *hist;

static void sparkline(json_t *h, int col, int width)
{
    static const char *const bars[] = {" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
    size_t n = json_array_size(h), from = n > (size_t)width ? n - (size_t)width : 0;
    long long max = 0;
    for (size_t i = from; i < n; i++) {
        long long v = json_integer_value(json_array_get(json_array_get(h, i), (size_t)col));
        if (v > max)
            max = v;
    }
    for (size_t i = from; i < n; i++) {
        long long v = json_integer_value(json_array_get(json_array_get(h, i), (size_t)col));
        fputs(bars[max ? (int)(v * 8 / max) : 0], stdout);
    }
}

static void draw(json_t *st, bool once, int rows)
{
    json_t *srv = json_object_get(st, "server"), *health = json_object_get(st, "health");
    json_t *h = json_object_get(st, "history");
    if (json_is_true(json_object_get(st, "first")))
        json_array_clear(hist);
    long long last_t = json_array_size(hist)
        ? json_integer_value(json_array_get(json_array_get(hist, json_array_size(hist) - 1), 0))
        : -1;
    size_t i;
    json_t *v;
    json_array_foreach(h, i, v) {
        if (json_integer_value(json_array_get(v, 0)) > last_t)
            json_array_append(hist, v);
    }
    while (json_array_size(hist) > 300)
        json_array_remove(hist, 0);
    json_t *lastv = json_array_get(hist, json_array_size(hist) - 1);
    if (!once)
        fputs("\033[H\033[2J", stdout);
    char up[32], b1[32], b2[32];
    dur(up, sizeof up, num(srv, "uptime_s") * 1000);
    json_t *tasks = json_object_get(st, "tasks");
    printf("%ssquirreld%s %s %s  up %s  health %s%s%s  req/s %lld  in flight %lld  "
           "sessions %lld  tasks %lld\n",
           BOLD, RESET, str(srv, "name"), str(srv, "version"), up, paint(str(health, "status")),
           str(health, "status"), RESET, lastv ? (long long)json_integer_value(json_array_get(lastv, 1)) : 0,
           num(srv, "in_flight"), num(srv, "sessions"), num(tasks, "total"));
    json_array_foreach(json_object_get(health, "components"), i, v) {
        if (strcmp(str(v, "status"), "healthy") != 0)
            printf("  %s%s %s%s: %s\n", paint(str(v, "status")), str(v, "name"),
                   str(v, "status"), RESET, str(v, "reason"));
    }
    json_t *alerts = json_object_get(st, "alerts");
    json_array_foreach(alerts, i, v) {
        if (strcmp(str(v, "state"), "ok") == 0)
            continue;
        printf("  %sALERT %s %s%s  %s %s %g (now %g)\n", paint(str(v, "state")), str(v, "name"),
               str(v, "state"), RESET, str(v, "metric"), str(v, "op"),
               json_number_value(json_object_get(v, "threshold")),
               json_number_value(json_object_get(v, "value")));
    }
    printf("\n%srequests/s%s ", BOLD, RESET);
    sparkline(hist, 1, 60);
    if (lastv)
        printf("  p50 %.2f ms  p99 %.2f ms",
               (double)json_integer_value(json_array_get(lastv, 3)) / 1000,
               (double)json_integer_value(json_array_get(lastv, 4)) / 1000);
    printf("\n");
    int used = 5;
    json_t *cycles = json_object_get(st, "cycles");
    json_array_foreach(cycles, i, v) {
        printf("%sDEADLOCK%s:", color ? "\033[31;1m" : "", RESET);
        size_t k;
        json_t *s;
        json_array_foreach(v, k, s) printf(" %s waits for %s ->", str(s, "name"), str(s, "class"));
        printf(" back to the first\n");
        used++;
    }
    json_t *locks = json_object_get(st, "locks");
    printf("\n%sLOCKS%s (%zu held or wanted)%s\n", BOLD, RESET, json_array_size(locks),
           json_is_false(json_object_get(st, "checks_on"))
               ? ": the checks are off, no lock is known (\"checks\": \"deadlock\")" : "");
    used += 2;
    json_array_foreach(locks, i, v) {
        if (i >= 8)
            break;
        json_t *holders = json_object_get(v, "holders"), *waiters = json_object_get(v, "waiters");
        printf("  %s%s%s  held by", BOLD, str(v, "class"), RESET);
        size_t k;
        json_t *x;
        json_array_foreach(holders, k, x) {
            dur(b1, sizeof b1, num(x, "age_ms"));
            printf("%s %s (%s, %s)", k ? "," : "", str(x, "holder"), str(x, "mode"), b1);
        }
        if (!json_array_size(holders))
            printf(" nobody known");
        printf("\n");
        if (json_array_size(waiters)) {
            printf("      %swaiting%s:", color ? "\033[33m" : "", RESET);
            json_array_foreach(waiters, k, x) {
                dur(b1, sizeof b1, num(x, "for_ms"));
                printf("%s %s (%s)", k ? "," : "", str(x, "name"), b1);
            }
            printf("\n");
            used++;
        }
        used++;
    }
    json_t *tl = json_object_get(tasks, "list");
    printf("\n%sTASKS%s", BOLD, RESET);
    const char *k;
    json_object_foreach(json_object_get(tasks, "states"), k, v)
        printf("  %lld %s", (long long)json_integer_value(v), k);
    printf("\n  %-7s %-22s %-8s %-10s %-9s %s\n", "ID", "NAME", "STATE", "WAIT", "FOR",
           "HOLDS / WANTS");
    used += 3;
    json_t *rq = json_object_get(st, "requests");
    int reserve = 4 + (int)(json_array_size(json_object_get(rq, "list")) < 5
                                ? json_array_size(json_object_get(rq, "list")) : 5);
    json_array_foreach(tl, i, v) {
        if (!once && used >= rows - reserve)
            break;
        if (once && i >= 60)
            break;
        dur(b1, sizeof b1, num(v, "for_ms"));
        char hw[160] = "";
        size_t n = 0, j;
        json_t *x;
        json_array_foreach(json_object_get(v, "holds"), j, x)
            n += (size_t)snprintf(hw + n, n < sizeof hw ? sizeof hw - n : 0, "%sholds %s",
                                  n ? ", " : "", str(x, "class"));
        json_t *w = json_object_get(v, "wants");
        if (w && n < sizeof hw)
            snprintf(hw + n, sizeof hw - n, "%swants %s", n ? ", " : "", str(w, "class"));
        bool none = strcmp(str(v, "wait"), "none") == 0;
        printf("  %-7lld %-22.22s %-8s %-10s %-9s %s\n", num(v, "id"), str(v, "name"),
               str(v, "state"), none ? "" : str(v, "wait"), none ? "" : b1, hw);
        used++;
    }
    printf("\n%sREQUESTS IN FLIGHT%s %lld\n", BOLD, RESET, num(rq, "total"));
    json_array_foreach(json_object_get(rq, "list"), i, v) {
        if (i >= 5 && !once)
            break;
        dur(b2, sizeof b2, num(v, "age_ms"));
        printf("  %-26s id %-10s session %-8s %s\n", str(v, "method"), str(v, "id"),
               str(v, "session"), b2);
    }
    json_t *ss = json_object_get(st, "sessions");
    printf("%sSESSIONS%s %zu\n", BOLD, RESET, json_array_size(ss));
    fflush(stdout);
}

/* ------------------------------------------------------------- reading */

int main(int argc, char **argv)
{
    const char *url = NULL, *token_file = NULL;
    long interval = 1000;
    bool once = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--once") == 0)
            once = true;
        else if (strcmp(argv[i], "--token-file") == 0 && i + 1 < argc)
            token_file = argv[++i];
        else if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc)
            interval = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (argv[i][0] != '-' && !url)
            url = argv[i];
        else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (!url || strncmp(url, "http://", 7) != 0) {
        fputs(usage, stderr);
        return 2;
    }
    char host[256], port[16] = "80";
    const char *h = url + 7;
    size_t hl = strcspn(h, "/");
    if (hl >= sizeof host) {
        fputs("squirreld-top: URL too long\n", stderr);
        return 2;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *colon = host[0] == '[' ? strstr(host, "]:") : strrchr(host, ':');
    if (colon) {
        if (host[0] == '[')
            colon++;
        snprintf(port, sizeof port, "%s", colon + 1);
        *colon = '\0';
    }
    char *hostname = host;
    if (host[0] == '[') {
        hostname = host + 1;
        hostname[strcspn(hostname, "]")] = '\0';
    }
    char *token = token_file ? read_token(token_file)
                 : getenv("SQUIRRELD_TOKEN") ? strdup(getenv("SQUIRRELD_TOKEN")) : NULL;
    if (token_file && !token)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    color = !once && isatty(1);
    int fd = connect_to(hostname, port);
    if (fd < 0)
        return 1;
    char req[8192];
    int n = snprintf(req, sizeof req,
                     "GET /console/events?interval=%ld HTTP/1.0\r\nHost: %.*s\r\n"
                     "Accept: text/event-stream\r\n%s%s%s\r\n",
                     interval, (int)hl, h, token ? "Authorization: Bearer " : "",
                     token ? token : "", token ? "\r\n" : "");
    free(token);
    if (n <= 0 || (size_t)n >= sizeof req || write(fd, req, (size_t)n) != n) {
        fprintf(stderr, "squirreld-top: cannot send the request\n");
        return 1;
    }
    hist = json_array();
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    bool head = true;
    int frames = 0;
    for (;;) {
        if (len + 4096 > cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb)
                return 1;
            buf = nb;
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
        buf[len] = '\0';
        if (head) {
            char *end = strstr(buf, "\r\n\r\n");
            if (!end)
                continue;
            int status = 0;
            sscanf(buf, "HTTP/%*d.%*d %d", &status);
            if (status != 200) {
                fprintf(stderr, "squirreld-top: the server answered %d%s\n", status,
                        status == 401 ? " (a token is needed: --token-file)" : "");
                return 1;
            }
            end += 4;
            len -= (size_t)(end - buf);
            memmove(buf, end, len + 1);
            head = false;
        }
        /* Events end with a blank line; their data lines carry the JSON. */
        char *ev;
        while ((ev = strstr(buf, "\n\n")) != NULL) {
            *ev = '\0';
            char *data = strstr(buf, "data: ");
            if (data) {
                json_t *st = json_loads(data + 6, 0, NULL);
                if (st) {
                    int rows = 40;
                    struct winsize ws;
                    if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 10)
                        rows = ws.ws_row;
                    draw(st, once, rows);
                    json_decref(st);
                    frames++;
                }
            }
            size_t used = (size_t)(ev + 2 - buf);
            len -= used;
            memmove(buf, ev + 2, len + 1);
            if (once && frames)
                goto done;
        }
    }
done:
    close(fd);
    free(buf);
    json_decref(hist);
    if (!frames)
        fprintf(stderr, "squirreld-top: the stream ended without a frame\n");
    return frames ? 0 : 1;
}
