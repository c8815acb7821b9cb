/* common/sched.h - a thread's own CPU scheduling attributes (Linux). */
#ifndef VKV_COMMON_SCHED_H
#define VKV_COMMON_SCHED_H

#include <stdint.h>

/* Scheduling class a thread asks for (sched(7)). */
enum vkv_sched_policy {
    VKV_SCHED_NORMAL = 0, /* SCHED_OTHER */
    VKV_SCHED_BATCH = 1,  /* SCHED_BATCH: never wakeup-preempts */
    VKV_SCHED_IDLE = 2,   /* SCHED_IDLE: lowest weight, preempted by any waking
                           * SCHED_OTHER thread */
};

/* Sets the calling thread's policy, nice value (-20..19) and fair-class
 * slice in one sched_setattr(2): slice_us > 0 asks for that slice (the
 * kernel clamps it to 100 us..100 ms; on EEVDF kernels, 6.12 and later, a
 * waking thread with a shorter slice than the running one preempts it),
 * 0 the kernel's default slice. Threads created afterwards inherit all
 * three. Needs no privilege unless nice goes below the current value.
 * Returns 0, or VKV_EPERM / VKV_EINVAL / VKV_ESYS with errno set (an
 * old kernel without sched_setattr, or without custom slices: VKV_EINVAL
 * or VKV_ESYS). */
int vkv_sched_set_self(int policy, int nice, uint32_t slice_us);

/* As vkv_sched_set_self, but never raises the calling thread's priority:
 * the nice value applied is the larger of `nice` and the thread's current
 * one (when it can be read), so the call needs no privilege (pass -20 to
 * keep the current value). Same returns. */
int vkv_sched_lower_self(int policy, int nice, uint32_t slice_us);

#endif
