/* common/sched.c - see sched.h. */
#include "common/sched.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vkv/error.h"

/* The kernel's struct sched_attr (include/uapi/linux/sched/types.h, the
 * 56-byte VER1 layout); glibc before 2.41 has neither the type nor a
 * wrapper, and <linux/sched/types.h> clashes with glibc's sched_param. */
struct vkv_sched_attr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime; /* fair class: the requested slice, ns; 0 = default */
    uint64_t sched_deadline;
    uint64_t sched_period;
    uint32_t sched_util_min;
    uint32_t sched_util_max;
};

int vkv_sched_set_self(int policy, int nice, uint32_t slice_us)
{
#ifdef SYS_sched_setattr
    struct vkv_sched_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.sched_policy = policy == VKV_SCHED_IDLE    ? SCHED_IDLE
                     : policy == VKV_SCHED_BATCH ? SCHED_BATCH
                                                 : SCHED_OTHER;
    a.sched_nice = nice;
    a.sched_runtime = (uint64_t)slice_us * 1000u;
    if (syscall(SYS_sched_setattr, 0, &a, 0) == 0)
        return 0;
    return errno == EPERM ? VKV_EPERM : errno == EINVAL || errno == E2BIG ? VKV_EINVAL : VKV_ESYS;
#else
    (void)policy;
    (void)nice;
    (void)slice_us;
    errno = ENOSYS;
    return VKV_ESYS;
#endif
}

int vkv_sched_lower_self(int policy, int nice, uint32_t slice_us)
{
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    if (errno == 0 && cur > nice)
        nice = cur;
    return vkv_sched_set_self(policy, nice, slice_us);
}
