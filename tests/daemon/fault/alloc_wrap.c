/*
 * Allocation-failure injection for a test build of vkvd (vkvd_faulty).
 *
 * Linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc, so every
 * allocation made by vkv's own code in the daemon (store, proto, server,
 * cold tier glue; not the shared libraries nanomsg, msgpack-c, LMDB) goes
 * through here. Injection is armed with SIGUSR1 and disarmed with SIGUSR2, so
 * start-up completes normally; while armed, allocation number k fails when
 * k % VKV_FAULT_PERIOD == VKV_FAULT_PHASE (environment, defaults 7 and 0).
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);

static atomic_int g_armed;
static atomic_ulong g_count;
static atomic_ulong g_failed;
static unsigned long g_period = 7, g_phase;

/* True when this allocation must fail. */
static int fail_now(void)
{
    if (!g_armed)
        return 0;
    unsigned long k = atomic_fetch_add(&g_count, 1);
    if (k % g_period != g_phase)
        return 0;
    atomic_fetch_add(&g_failed, 1);
    errno = ENOMEM;
    return 1;
}

void *__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    return fail_now() ? NULL : __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}

/* SIGUSR1 arms, SIGUSR2 disarms (async-signal-safe: atomics only). */
static void on_signal(int sig)
{
    g_armed = sig == SIGUSR1;
}

/* Reads the schedule and installs the switches before main() runs. */
__attribute__((constructor)) static void fault_init(void)
{
    const char *p = getenv("VKV_FAULT_PERIOD"), *f = getenv("VKV_FAULT_PHASE");
    if (p && atol(p) > 0)
        g_period = (unsigned long)atol(p);
    if (f)
        g_phase = (unsigned long)atol(f) % g_period;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
}
