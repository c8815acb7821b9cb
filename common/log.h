/*
 * common/log.h - a small leveled logger to stderr.
 *
 * Lines look like "2026-11-29T12:00:00.123Z vkvd[1234] warn: message".
 * The level threshold is process-wide; set it once at start (vkv_log_init)
 * or leave the default (info, or VKV_LOG_LEVEL from the environment).
 * Thread-safe: each line is formatted into a local buffer and written with a
 * single write(2).
 */
#ifndef VKV_COMMON_LOG_H
#define VKV_COMMON_LOG_H

#include <stdarg.h>

enum vkv_log_level {
    VKV_LOG_ERROR = 0,
    VKV_LOG_WARN = 1,
    VKV_LOG_INFO = 2,
    VKV_LOG_DEBUG = 3,
};

/* Sets the program tag printed on each line (pointer kept, not copied: pass a
 * string literal or one that outlives logging) and the level threshold. */
void vkv_log_init(const char *tag, int level);

/* Sets only the threshold. */
void vkv_log_set_level(int level);

/* Returns the current threshold. */
int vkv_log_level(void);

/* Parses "error|warn|info|debug" (or a digit) into a level; -1 if unknown. */
int vkv_log_parse_level(const char *s);

/* Formats and writes one line at `level` if it passes the threshold. */
void vkv_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define VKV_ERROR(...) vkv_log(VKV_LOG_ERROR, __VA_ARGS__)
#define VKV_WARN(...)  vkv_log(VKV_LOG_WARN, __VA_ARGS__)
#define VKV_INFO(...)  vkv_log(VKV_LOG_INFO, __VA_ARGS__)
#define VKV_DEBUG(...)                                                                             \
    do {                                                                                           \
        if (vkv_log_level() >= VKV_LOG_DEBUG)                                                      \
            vkv_log(VKV_LOG_DEBUG, __VA_ARGS__);                                                   \
    } while (0)

#endif
