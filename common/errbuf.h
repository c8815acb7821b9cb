/* common/errbuf.h - "format a reason into the caller's buffer, return the
 * code": the one helper for functions that report why they failed. */
#ifndef VKV_COMMON_ERRBUF_H
#define VKV_COMMON_ERRBUF_H

#include <stdarg.h>
#include <stddef.h>

/* Formats fmt into err[0..errlen) (always NUL-terminated, truncated to
 * fit) when err is non-NULL and errlen > 0, and returns `code` unchanged,
 * so a caller can write `return vkv_errbuf(err, len, VKV_EIO, "...", ...)`.
 * Logs nothing; err is the caller's buffer and stays theirs. */
int vkv_errbuf(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* vkv_errbuf with a va_list (consumed). */
int vkv_verrbuf(char *err, size_t errlen, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

#endif
