/* Leveled logging to stderr; see log.h. */
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *g_tag = "vkv";
static int g_level = -1; /* -1: not yet resolved from the environment */

int vkv_log_parse_level(const char *s)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (!s || !*s)
        return -1;
    if (s[0] >= '0' && s[0] <= '3' && s[1] == '\0')
        return s[0] - '0';
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return VKV_LOG_WARN;
    return -1;
}

int vkv_log_level(void)
{
    if (g_level < 0) {
        int l = vkv_log_parse_level(getenv("VKV_LOG_LEVEL"));
        g_level = l >= 0 ? l : VKV_LOG_INFO;
    }
    return g_level;
}

void vkv_log_init(const char *tag, int level)
{
    if (tag)
        g_tag = tag;
    if (level >= 0)
        g_level = level;
}

void vkv_log_set_level(int level)
{
    g_level = level;
}

void vkv_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (level > vkv_log_level())
        return;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, g_tag, (int)getpid(),
                     names[level < 0   ? 0
                           : level > 3 ? 3
                                       : level]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line - 1)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
