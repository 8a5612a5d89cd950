/* Structured logs on stderr: one line per event, logfmt (key=value):
 *   ts=2026-12-07T05:09:29.123Z level=info component=http req=7 msg="..."
 * Each line is written with one write(2), so lines from several threads
 * never interleave. */
#include "srv.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void sq_srv_log(sq_srv *s, int level, const char *component, const char *req,
                const char *fmt, ...)
{
    if (s && level < s->cfg.log_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[1400];
    int n = snprintf(line, sizeof line,
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s component=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     sq_mcp_level_name(level), component ? component : "server");
    if (req && n > 0 && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, " req=%s", req);
    if (n > 0 && (size_t)n < sizeof line) {
        /* The message quoted, with quotes and newlines escaped. */
        n += snprintf(line + n, sizeof line - (size_t)n, " msg=\"");
        for (const char *p = msg; *p && (size_t)n < sizeof line - 4; p++) {
            if (*p == '"' || *p == '\\')
                line[n++] = '\\';
            line[n++] = *p == '\n' ? ' ' : *p;
        }
        line[n++] = '"';
        line[n++] = '\n';
    }
    if (n > 0)
        (void)!write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line);
}
