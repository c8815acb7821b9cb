/* The one error table: generated from VKV_ERRORS in vkv/error.h. */
#include "vkv/error.h"

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
