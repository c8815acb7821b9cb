/*
 * daemon/config.h - vkvd's settings: built-in defaults, then an optional INI
 * file (parsed by inih), then VKV_* environment variables, then command-line
 * flags; each later source overrides the earlier ones.
 */
#ifndef VKVD_CONFIG_H
#define VKVD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VKVD_PATH_MAX 512

/* session_quota's default: half the capacity, resolved at start. */
#define VKVD_QUOTA_AUTO UINT64_MAX

typedef struct vkvd_config {
    char rundir[VKVD_PATH_MAX];    /* socket directory (mode 0700) */
    char state_dir[VKVD_PATH_MAX]; /* LMDB cold tier lives in state_dir/cold */
    char backend[16];              /* auto | host | cuda */
    char policy[16];               /* eviction policy: lru | s3fifo */
    uint64_t capacity;             /* bytes of hot arena */
    uint64_t slab_size;            /* bytes per slab */
    uint32_t page_size;            /* arena page, power of two */
    uint64_t cold_max;             /* bytes bound of the cold tier; 0 disables it */
    uint64_t spill_queue;          /* bytes of spills queued to the writer, max */
    uint64_t session_quota;        /* bytes a session may pin + reserve; 0 = no
                                    * limit; VKVD_QUOTA_AUTO = capacity / 2 */
    uint32_t cold_sync_ms;         /* explicit LMDB sync interval */
    uint32_t cold_shards;          /* LMDB environments of a new cold tier */
    char cold_thread_policy[16];   /* the cold tier's threads: normal | batch | idle */
    uint32_t cold_thread_nice;     /* their nice value, 0..19 */
    uint32_t serve_slice_us;       /* CPU slice the request-serving threads ask
                                    * for (sched_setattr); 0 = kernel default */
    uint32_t lease_ttl_ms;
    uint32_t session_ttl_ms;
    uint32_t reap_interval_ms;
    bool spill_on_exit; /* SIGTERM spills hot entries to the cold tier */
    int metrics_port;   /* 0: no metrics endpoint */
    int log_level;      /* enum vkv_log_level */
    long allow_gid;     /* -1: only our own uid may connect; else also this gid */
    char config_file[VKVD_PATH_MAX];
    /* remote tier (docs/REMOTE.md); off while remote is "" */
    char remote[1024];          /* Redis Cluster seeds "redis://h:p[,h:p...]" */
    char remote_user[128];      /* ACL user ("" = default) */
    char remote_password[256];  /* AUTH password ("" = none); never printed */
    char remote_prefix[65];     /* Redis key prefix (default "vkv:") */
    uint64_t remote_ttl_s;      /* expiry of published keys, 0 = none */
    uint64_t remote_max_block;  /* bytes; larger blocks are not shared */
    uint64_t remote_queue;      /* bytes waiting to be published, max */
    uint32_t remote_piece;      /* bytes per Redis value */
    uint32_t remote_timeout_ms; /* connect/command timeout */
    uint32_t remote_wait_ms;    /* a LOOKUP/FETCH waits this long for the tier */
    uint32_t remote_miss_ms;    /* a remote miss/error is not asked again for this long */
    uint32_t remote_threads;
    bool remote_publish;         /* publish committed blocks (write-behind) */
    uint32_t lookup_index_slots; /* slots of the lookup index segment; 0 = none */
} vkvd_config;

/* Fills `cfg` with the built-in defaults, resolving the runtime and state
 * directories from XDG_RUNTIME_DIR / XDG_STATE_HOME / HOME / the uid. */
void vkvd_config_defaults(vkvd_config *cfg);

/* Loads settings from an INI file (section [vkvd], keys named as the long
 * flags with '-' or '_'). Returns 0, VKV_EIO (cannot open it) or VKV_EINVAL
 * (a bad line, section, key or value), after logging the file and line of
 * the first error. Unknown keys are errors. */
int vkvd_config_load_file(vkvd_config *cfg, const char *path);

/* Applies VKV_* environment variables (VKV_RUNDIR, VKV_STATE_DIR,
 * VKV_CAPACITY, ...; see docs/CONFIG.md). Returns 0 or VKV_EINVAL after
 * logging the variable. */
int vkvd_config_load_env(vkvd_config *cfg);

/* Sets one setting by its name ("capacity", "page-size", ...) from text.
 * Returns 0, VKV_ENOTFOUND for an unknown name, VKV_EINVAL for a bad value.
 * Logs nothing. */
int vkvd_config_set(vkvd_config *cfg, const char *name, const char *value);

/* Parses a size such as "512M", "4G", "65536" into bytes. Returns 0 or
 * VKV_EINVAL (junk, a sign, an unknown unit, overflow). */
int vkvd_parse_size(const char *text, uint64_t *out);

/* Checks cross-field constraints (page size power of two, slab a multiple of
 * pages, capacity >= one slab). Returns 0 or VKV_EINVAL after logging. */
int vkvd_config_validate(const vkvd_config *cfg);

/* vkvd_config_from_args's "done": it printed what was asked (--help,
 * --version, --check, --print-config) and the program should exit 0. */
#define VKVD_CONFIG_DONE 1

/* Parses argv fully (defaults, --config/VKV_CONFIG file, env, flags). Returns
 * 0 to run, VKVD_CONFIG_DONE, or VKV_EINVAL on a usage or configuration
 * error (already printed or logged). */
int vkvd_config_from_args(vkvd_config *cfg, int argc, char **argv);

/* Writes the effective configuration in INI form to `fp` (for --print-config). */
void vkvd_config_print(const vkvd_config *cfg, void *fp);

#endif
