/*
 * client/vkvctl/output.c - vkvctl's output helpers: colours, JSON values,
 * error reports and exit codes, human sizes and times, ambiguity reports.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/vkvctl/vkvctl.h"
#include "vkv/vkv.h"

const char *vkvctl_col(const char *code)
{
    if (!vkvctl.color)
        return "";
    if (!strcmp(code, "1"))
        return "\033[1m";
    if (!strcmp(code, "2"))
        return "\033[2m";
    if (!strcmp(code, "31"))
        return "\033[31m";
    if (!strcmp(code, "32"))
        return "\033[32m";
    if (!strcmp(code, "33"))
        return "\033[33m";
    if (!strcmp(code, "34"))
        return "\033[34m";
    if (!strcmp(code, "36"))
        return "\033[36m";
    return "";
}

const char *vkvctl_rst(void)
{
    return vkvctl.color ? "\033[0m" : "";
}

void vkvctl_emit(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        puts(s);
        free(s);
    }
    cJSON_Delete(o);
}

int vkvctl_fail(int rc, const char *what)
{
    int ex = rc == VKV_ECONN || rc == VKV_ETIMEDOUT ? VKVCTL_EX_CONN
             : rc == VKV_ENOTFOUND                  ? VKVCTL_EX_NOTFOUND
                                                    : VKVCTL_EX_ERR;
    if (vkvctl.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", vkv_errname(rc));
        cJSON_AddStringToObject(o, "message", what && *what ? what : vkv_strerror(rc));
        vkvctl_emit(o);
    } else {
        fprintf(stderr, "%svkvctl:%s %s\n", vkvctl.color_err ? "\033[31m" : "",
                vkvctl.color_err ? "\033[0m" : "", what && *what ? what : vkv_strerror(rc));
    }
    return ex;
}

const char *vkvctl_hsize(uint64_t b, char *buf, size_t cap)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
    return buf;
}

void vkvctl_format_when(uint64_t last_ms, char *when, size_t cap)
{
    snprintf(when, cap, "-");
    if (last_ms) {
        time_t t = (time_t)(last_ms / 1000);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(when, cap, "%Y-%m-%d %H:%M:%S", &tm);
    }
}

int vkvctl_ambiguous(const char *what, const char *const *cand, size_t n, const char *hint)
{
    if (vkvctl.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", "ambiguous");
        char msg[512];
        snprintf(msg, sizeof msg, "%s is ambiguous: %zu candidates", what, n);
        cJSON_AddStringToObject(o, "message", msg);
        cJSON *arr = cJSON_AddArrayToObject(o, "candidates");
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(cand[i]));
        vkvctl_emit(o);
        return VKVCTL_EX_USAGE;
    }
    fprintf(stderr, "vkvctl: %s is ambiguous; %zu candidates:\n", what, n);
    for (size_t i = 0; i < n && i < 20; i++)
        fprintf(stderr, "  %s\n", cand[i]);
    if (n > 20)
        fprintf(stderr, "  ... and %zu more\n", n - 20);
    if (hint)
        fprintf(stderr, "%s\n", hint);
    return VKVCTL_EX_USAGE;
}
