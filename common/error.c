/* The one error table: generated from VKV_ERRORS in vkv/error.h; and vkv_fail
 * (fail.h), the one "format a reason, return the code" helper. */
#include "vkv/error.h"

#include <stdio.h>

#include "fail.h"

const char *vkv_strerror(int err)
{
    switch (err) {
#define VKV_ERR_CASE_(name, value, msg)                                                            \
    case value:                                                                                    \
        return msg;
        VKV_ERRORS(VKV_ERR_CASE_)
#undef VKV_ERR_CASE_
    default:
        return "unknown error";
    }
}

const char *vkv_errname(int err)
{
    switch (err) {
#define VKV_ERR_NAME_(name, value, msg)                                                            \
    case value:                                                                                    \
        return #name;
        VKV_ERRORS(VKV_ERR_NAME_)
#undef VKV_ERR_NAME_
    default:
        return "VKV_E?";
    }
}

/* See fail.h. */
int vkv_vfail(char *err, size_t errlen, int code, const char *fmt, va_list ap)
{
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    return code;
}

/* See fail.h. */
int vkv_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vkv_vfail(err, errlen, code, fmt, ap);
    va_end(ap);
    return code;
}
