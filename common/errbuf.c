/* common/errbuf.c - see errbuf.h. */
#include "common/errbuf.h"

#include <stdio.h>

/* See errbuf.h. */
int vkv_verrbuf(char *err, size_t errlen, int code, const char *fmt, va_list ap)
{
    if (err != NULL && errlen > 0)
        vsnprintf(err, errlen, fmt, ap);
    return code;
}

/* See errbuf.h. */
int vkv_errbuf(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vkv_verrbuf(err, errlen, code, fmt, ap);
    va_end(ap);
    return code;
}
