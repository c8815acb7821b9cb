/*
 * common/fail.h - the one "format a reason, return the code" helper.
 *
 * Functions that report why they failed take a caller-owned buffer
 * (`char *err, size_t errlen`, either may be NULL/0) and return 0 or a
 * negative VKV_E* code. They end a failing path with
 *
 *     return vkv_fail(err, errlen, VKV_ECORRUPT, "tensor %s: bad shape", name);
 *
 * which writes the message (truncated to errlen - 1 bytes, always
 * NUL-terminated) and returns the code unchanged.
 */
#ifndef VKV_COMMON_FAIL_H
#define VKV_COMMON_FAIL_H

#include <stdarg.h>
#include <stddef.h>

/* Formats fmt into err[0..errlen) when err is non-NULL and errlen > 0, and
 * returns code. Reads only its arguments; err stays owned by the caller. */
int vkv_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* vkv_fail with a va_list (for wrappers that add their own prefix or log). */
int vkv_vfail(char *err, size_t errlen, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

#endif
