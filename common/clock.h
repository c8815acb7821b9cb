/* common/clock.h - monotonic time helpers. */
#ifndef VKV_COMMON_CLOCK_H
#define VKV_COMMON_CLOCK_H

#include <stdint.h>

/* Monotonic clock in nanoseconds (CLOCK_MONOTONIC). */
uint64_t vkv_now_ns(void);

/* Monotonic clock in milliseconds. */
uint64_t vkv_now_ms(void);

/* Wall clock (CLOCK_REALTIME) in milliseconds since the Unix epoch. */
uint64_t vkv_wall_ms(void);

#endif
