/* Monotonic and wall clock helpers; see clock.h. */
#include "common/clock.h"

#include <time.h>

uint64_t vkv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t vkv_now_ms(void)
{
    return vkv_now_ns() / 1000000ull;
}

uint64_t vkv_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}
