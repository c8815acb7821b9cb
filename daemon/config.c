/* vkvd configuration: defaults < INI file < VKV_* environment < flags. */
#include "daemon/config.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "store/backend.h"
#include "common/log.h"
#include "vkv/error.h"

/* How a setting's text becomes its field (struct setting). */
enum setting_kind {
    SK_STR,   /* text that must fit the char array; not empty unless .lo == 0 */
    SK_SIZE,  /* a byte size (vkvd_parse_size: 512M, 4G, ...) in [lo, hi] */
    SK_NUM,   /* a plain unsigned 32-bit number (parse_u32) in [lo, hi] */
    SK_BOOL,  /* yes | no | true | false | on | off | 1 | 0 (parse_bool) */
    SK_LEVEL, /* a log level name (vkv_log_parse_level) into an int */
};

/* The C type of an SK_SIZE/SK_NUM field, so one row can store into it. */
enum field_type { FT_U32, FT_U64, FT_INT, FT_LONG };
/* FIELD_TYPE(f): the field_type of vkvd_config's field f, found by the
 * compiler (clang-format does not know _Generic). */
/* clang-format off */
#define FIELD_TYPE(f)                                                                              \
    _Generic(((vkvd_config *)0)->f, uint32_t: FT_U32, uint64_t: FT_U64, int: FT_INT, long: FT_LONG)
/* clang-format on */
#define FIELD(f) .off = offsetof(vkvd_config, f)

/* Row helpers: a string field (nonempty: 1 refuses "", choices: the allowed
 * values as "a|b|c" or NULL, reject: characters it may not hold or NULL),
 * a size or number field in [l, h], a bool, a log level. */
#define S_STR(f, nonempty, ch, rej)                                                                \
    .kind = SK_STR, FIELD(f), .cap = sizeof(((vkvd_config *)0)->f), .lo = (nonempty),              \
    .choices = (ch), .reject = (rej)
#define S_SIZE(f, l, h) .kind = SK_SIZE, FIELD(f), .type = FIELD_TYPE(f), .lo = (l), .hi = (h)
#define S_NUM(f, l, h)  .kind = SK_NUM, FIELD(f), .type = FIELD_TYPE(f), .lo = (l), .hi = (h)
#define S_BOOL(f)       .kind = SK_BOOL, FIELD(f)
#define S_LEVEL(f)      .kind = SK_LEVEL, FIELD(f)

/* One row per setting: the flag/INI name, its environment variable, help,
 * and how its value is checked and stored (vkvd_config_set). */
struct setting {
    const char *name;
    const char *env;
    const char *help;
    enum setting_kind kind;
    size_t off;           /* offsetof the field in vkvd_config */
    size_t cap;           /* SK_STR: the field's size */
    enum field_type type; /* SK_SIZE, SK_NUM: the field's type */
    uint64_t lo, hi;      /* SK_SIZE, SK_NUM: the accepted range; SK_STR: lo = 1 refuses "" */
    const char *choices;  /* SK_STR: "a|b|c", the only values allowed, or NULL */
    const char *reject;   /* SK_STR: characters refused, or NULL */
};

static const struct setting g_settings[] = {
    {"rundir", "VKV_RUNDIR",
     "socket directory, mode 0700 (default $XDG_RUNTIME_DIR/vkv or /tmp/vkv-$UID)",
     S_STR(rundir, 1, NULL, NULL)},
    {"state-dir", "VKV_STATE_DIR",
     "state directory; the cold tier is state-dir/cold (default $XDG_STATE_HOME/vkv)",
     S_STR(state_dir, 1, NULL, NULL)},
    {"backend", "VKV_BACKEND", "memory backend: auto | host | cuda (default auto)",
     S_STR(backend, 1, "auto|host|cuda", NULL)},
    {"capacity", "VKV_CAPACITY", "hot arena bytes, e.g. 1G (default 1G)",
     S_SIZE(capacity, 0, UINT64_MAX)},
    {"slab-size", "VKV_SLAB_SIZE", "bytes per slab (default 256M)",
     S_SIZE(slab_size, 0, UINT64_MAX)},
    {"page-size", "VKV_PAGE_SIZE", "arena page bytes, power of two (default 256K)",
     S_SIZE(page_size, 0, UINT32_MAX)},
    {"policy", "VKV_POLICY", "eviction policy: lru | s3fifo (default s3fifo)",
     S_STR(policy, 1, "lru|s3fifo", NULL)},
    {"cold-max", "VKV_COLD_MAX", "cold tier (LMDB) bound in bytes; 0 disables it (default 16G)",
     S_SIZE(cold_max, 0, UINT64_MAX)},
    {"cold-shards", "VKV_COLD_SHARDS",
     "LMDB environments of a new cold tier, each with its own writer, 1..16 (default 2; an "
     "existing tier keeps its count)",
     S_NUM(cold_shards, 1, 16)},
    {"cold-sync-ms", "VKV_COLD_SYNC_MS", "interval of explicit LMDB syncs (default 1000)",
     S_NUM(cold_sync_ms, 1, UINT32_MAX)},
    {"cold-thread-policy", "VKV_COLD_THREAD_POLICY",
     "scheduling policy of the cold tier's threads: normal | batch | idle (default normal)",
     S_STR(cold_thread_policy, 1, "normal|batch|idle", NULL)},
    {"cold-thread-nice", "VKV_COLD_THREAD_NICE",
     "nice value of the cold tier's threads, 0..19 (default 10)", S_NUM(cold_thread_nice, 0, 19)},
    {"serve-slice-us", "VKV_SERVE_SLICE_US",
     "CPU slice the event loop and nanomsg threads ask for, us (the kernel clamps it to "
     "100..100000); 0 = the kernel's (default 0)",
     S_NUM(serve_slice_us, 0, 100000)},
    {"lease-ttl-ms", "VKV_LEASE_TTL_MS", "lease lifetime (default 30000)",
     S_NUM(lease_ttl_ms, 1, UINT32_MAX)},
    {"spill-queue", "VKV_SPILL_QUEUE",
     "bytes of evicted blocks waiting for the LMDB writer at most (default 64M)",
     S_SIZE(spill_queue, 0, UINT64_MAX)},
    {"session-quota", "VKV_SESSION_QUOTA",
     "bytes one session may pin and reserve at once; 0 = no limit (default: half the capacity)",
     S_SIZE(session_quota, 0, UINT64_MAX)},
    {"session-ttl-ms", "VKV_SESSION_TTL_MS",
     "silent sessions are reaped after this (default 120000)",
     S_NUM(session_ttl_ms, 1, UINT32_MAX)},
    {"reap-interval-ms", "VKV_REAP_INTERVAL_MS",
     "how often dead sessions are looked for (default 1000)",
     S_NUM(reap_interval_ms, 1, UINT32_MAX)},
    {"spill-on-exit", "VKV_SPILL_ON_EXIT",
     "spill hot entries to the cold tier at SIGTERM: yes | no (default yes)",
     S_BOOL(spill_on_exit)},
    {"metrics-port", "VKV_METRICS_PORT",
     "serve Prometheus metrics on 127.0.0.1:PORT; 0 = off (default 0)",
     S_NUM(metrics_port, 0, 65535)},
    {"log-level", "VKV_LOG_LEVEL", "error | warn | info | debug (default info)",
     S_LEVEL(log_level)},
    {"allow-gid", "VKV_ALLOW_GID", "also accept clients of this group id (default: own uid only)",
     S_NUM(allow_gid, 0, UINT32_MAX)},
    {"remote", "VKV_REMOTE",
     "remote tier: Redis Cluster seeds redis://host:port[,host:port...]; \"\" = off (default off)",
     S_STR(remote, 0, NULL, NULL)},
    {"remote-user", "VKV_REMOTE_USER", "Redis ACL user for AUTH (default: the default user)",
     S_STR(remote_user, 0, NULL, NULL)},
    {"remote-password", "VKV_REMOTE_PASSWORD",
     "Redis password for AUTH (prefer the env var or a 0600 config file)",
     S_STR(remote_password, 0, NULL, NULL)},
    {"remote-prefix", "VKV_REMOTE_PREFIX", "prefix of every Redis key (default vkv:)",
     S_STR(remote_prefix, 1, NULL, "{}")},
    {"remote-ttl", "VKV_REMOTE_TTL",
     "seconds published blocks live in Redis; 0 = no expiry (default 86400)",
     S_NUM(remote_ttl_s, 0, UINT32_MAX)},
    {"remote-max-block", "VKV_REMOTE_MAX_BLOCK", "largest block shared, bytes (default 256M)",
     S_SIZE(remote_max_block, 1, UINT64_MAX)},
    {"remote-queue", "VKV_REMOTE_QUEUE",
     "bytes of committed blocks waiting to be published at most; more are dropped (default 256M)",
     S_SIZE(remote_queue, 1, UINT64_MAX)},
    {"remote-piece-size", "VKV_REMOTE_PIECE_SIZE", "bytes per Redis value (default 2M)",
     S_SIZE(remote_piece, 1, UINT32_MAX)},
    {"remote-timeout-ms", "VKV_REMOTE_TIMEOUT_MS",
     "Redis connect and per-command timeout: a whole reply (default 1000)",
     S_NUM(remote_timeout_ms, 1, UINT32_MAX)},
    {"remote-wait-ms", "VKV_REMOTE_WAIT_MS",
     "a LOOKUP or FETCH waits this long for the remote tier, then answers locally (default 2000)",
     S_NUM(remote_wait_ms, 1, UINT32_MAX)},
    {"remote-miss-ms", "VKV_REMOTE_MISS_MS",
     "a key the remote tier missed or failed is not asked again for this long (default 1000)",
     S_NUM(remote_miss_ms, 1, UINT32_MAX)},
    {"remote-threads", "VKV_REMOTE_THREADS", "remote tier I/O threads (default 2)",
     S_NUM(remote_threads, 1, 32)},
    {"remote-publish", "VKV_REMOTE_PUBLISH",
     "publish committed blocks to the remote tier: yes | no (default yes)", S_BOOL(remote_publish)},
    {"lookup-index-slots", "VKV_LOOKUP_INDEX_SLOTS",
     "slots of the shared-memory LOOKUP index (3/4 usable); 0 = off (default 131072)",
     S_NUM(lookup_index_slots, 0, 1u << 28)},
};
#define N_SETTINGS (sizeof g_settings / sizeof g_settings[0])

/* Copies src into a fixed buffer; VKV_EINVAL when it is empty or does not
 * fit. */
static int set_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n == 0 || n >= cap)
        return VKV_EINVAL;
    memcpy(dst, src, n + 1);
    return 0;
}

int vkvd_parse_size(const char *text, uint64_t *out)
{
    if (!text || !*text)
        return VKV_EINVAL;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || text[0] == '-')
        return VKV_EINVAL;
    unsigned shift = 0;
    if (*end) {
        switch (*end) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        case 't':
        case 'T':
            shift = 40;
            break;
        default:
            return VKV_EINVAL;
        }
        end++;
        if (*end == 'i')
            end++;
        if (*end == 'B' || *end == 'b')
            end++;
        if (*end)
            return VKV_EINVAL;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return VKV_EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

/* Parses an unsigned 32-bit integer into *out; false on junk or overflow. */
static bool parse_u32(const char *text, uint32_t *out)
{
    uint64_t v;
    if (!text || strpbrk(text, "kKmMgGtT"))
        return false;
    if (vkvd_parse_size(text, &v) != 0 || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* Parses yes/no/true/false/on/off/1/0 into *out; false for anything else. */
static bool parse_bool(const char *text, bool *out)
{
    if (!strcasecmp(text, "yes") || !strcasecmp(text, "true") || !strcmp(text, "1") ||
        !strcasecmp(text, "on")) {
        *out = true;
        return true;
    }
    if (!strcasecmp(text, "no") || !strcasecmp(text, "false") || !strcmp(text, "0") ||
        !strcasecmp(text, "off")) {
        *out = false;
        return true;
    }
    return false;
}

/* Normalizes a setting name: '_' -> '-', lower case, into buf. */
static void norm_name(const char *name, char *buf, size_t cap)
{
    size_t i = 0;
    for (; name[i] && i + 1 < cap; i++) {
        char c = name[i];
        buf[i] = c == '_' ? '-' : (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    buf[i] = '\0';
}

/* True if `value` is one of the '|'-separated words of `choices`. */
static bool one_of(const char *value, const char *choices)
{
    size_t len = strlen(value);
    for (const char *w = choices; *w;) {
        size_t wl = strcspn(w, "|");
        if (wl == len && !strncmp(w, value, len))
            return true;
        w += wl + (w[wl] == '|');
    }
    return false;
}

/* Stores v into the integer field at `field` of C type `type` (v is in the
 * row's range, which fits the type). */
static void store_int(void *field, enum field_type type, uint64_t v)
{
    switch (type) {
    case FT_U32:
        *(uint32_t *)field = (uint32_t)v;
        break;
    case FT_U64:
        *(uint64_t *)field = v;
        break;
    case FT_INT:
        *(int *)field = (int)v;
        break;
    case FT_LONG:
        *(long *)field = (long)v;
        break;
    }
}

/* Checks `value` against setting row `s` and stores it into cfg's field.
 * Returns 0 or VKV_EINVAL (cfg unchanged). */
static int setting_apply(vkvd_config *cfg, const struct setting *s, const char *value)
{
    char *field = (char *)cfg + s->off;
    uint64_t v = 0;
    uint32_t u;

    switch (s->kind) {
    case SK_STR:
        if ((s->choices && !one_of(value, s->choices)) || (s->reject && strpbrk(value, s->reject)))
            return VKV_EINVAL;
        if (!s->lo && !*value) {
            field[0] = '\0';
            return 0;
        }
        return set_str(field, s->cap, value);
    case SK_BOOL:
        return parse_bool(value, (bool *)field) ? 0 : VKV_EINVAL;
    case SK_LEVEL: {
        int l = vkv_log_parse_level(value);
        if (l < 0)
            return VKV_EINVAL;
        *(int *)field = l;
        return 0;
    }
    case SK_SIZE:
        if (vkvd_parse_size(value, &v) != 0)
            return VKV_EINVAL;
        break;
    case SK_NUM:
        if (!parse_u32(value, &u))
            return VKV_EINVAL;
        v = u;
        break;
    }
    if (v < s->lo || v > s->hi)
        return VKV_EINVAL;
    store_int(field, s->type, v);
    return 0;
}

/* See config.h: finds the row of the normalized name in g_settings and
 * applies it (setting_apply). */
int vkvd_config_set(vkvd_config *cfg, const char *name, const char *value)
{
    char n[64];
    norm_name(name, n, sizeof n);
    if (!value)
        return VKV_EINVAL;
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (!strcmp(n, g_settings[i].name))
            return setting_apply(cfg, &g_settings[i], value);
    return VKV_ENOTFOUND;
}

void vkvd_config_defaults(vkvd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    const char *xrd = getenv("XDG_RUNTIME_DIR");
    if (xrd && *xrd && access(xrd, W_OK) == 0)
        snprintf(cfg->rundir, sizeof cfg->rundir, "%s/vkv", xrd);
    else
        snprintf(cfg->rundir, sizeof cfg->rundir, "/tmp/vkv-%u", (unsigned)getuid());
    const char *xsh = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    if (xsh && *xsh)
        snprintf(cfg->state_dir, sizeof cfg->state_dir, "%s/vkv", xsh);
    else if (home && *home)
        snprintf(cfg->state_dir, sizeof cfg->state_dir, "%s/.local/state/vkv", home);
    else
        snprintf(cfg->state_dir, sizeof cfg->state_dir, "/tmp/vkv-state-%u", (unsigned)getuid());
    snprintf(cfg->backend, sizeof cfg->backend, "auto");
    snprintf(cfg->policy, sizeof cfg->policy, "s3fifo");
    cfg->capacity = 1ull << 30;
    cfg->slab_size = 256ull << 20;
    cfg->page_size = 256u << 10;
    cfg->cold_max = 16ull << 30;
    cfg->cold_sync_ms = 1000;
    cfg->cold_shards = 2;
    snprintf(cfg->cold_thread_policy, sizeof cfg->cold_thread_policy, "normal");
    cfg->cold_thread_nice = 10;
    cfg->lease_ttl_ms = 30000;
    cfg->session_quota = VKVD_QUOTA_AUTO;
    cfg->spill_queue = 64ull << 20;
    cfg->session_ttl_ms = 120000;
    cfg->reap_interval_ms = 1000;
    cfg->spill_on_exit = true;
    cfg->metrics_port = 0;
    cfg->log_level = vkv_log_level();
    cfg->allow_gid = -1;
    snprintf(cfg->remote_prefix, sizeof cfg->remote_prefix, "vkv:");
    cfg->remote_ttl_s = 86400;
    cfg->remote_max_block = 256ull << 20;
    cfg->remote_queue = 256ull << 20;
    cfg->remote_piece = 2u << 20;
    cfg->remote_timeout_ms = 1000;
    cfg->remote_wait_ms = 2000;
    cfg->remote_miss_ms = 1000;
    cfg->remote_threads = 2;
    cfg->remote_publish = true;
    cfg->lookup_index_slots = 131072;
}

struct ini_ctx {
    vkvd_config *cfg;
    const char *path;
    int failed;
};

/* inih callback: accepts only section [vkvd] (or no section). */
static int cfg_ini_handler(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *c = user;
    if (section[0] && strcmp(section, "vkvd") != 0) {
        VKV_ERROR("%s: unknown section [%s]", c->path, section);
        c->failed = 1;
        return 0;
    }
    int rv = vkvd_config_set(c->cfg, name, value);
    if (rv == VKV_ENOTFOUND)
        VKV_ERROR("%s: unknown setting '%s'", c->path, name);
    else if (rv != 0)
        VKV_ERROR("%s: bad value '%s' for '%s'", c->path, value, name);
    if (rv) {
        c->failed = 1;
        return 0;
    }
    return 1;
}

int vkvd_config_load_file(vkvd_config *cfg, const char *path)
{
    struct ini_ctx c = {cfg, path, 0};
    int rv = ini_parse(path, cfg_ini_handler, &c);
    if (rv == -1) {
        VKV_ERROR("cannot open config file %s: %s", path, strerror(errno));
        return VKV_EIO;
    }
    if (rv != 0 || c.failed) {
        if (rv > 0)
            VKV_ERROR("%s:%d: invalid line", path, rv);
        return VKV_EINVAL;
    }
    return 0;
}

int vkvd_config_load_env(vkvd_config *cfg)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const char *v = getenv(g_settings[i].env);
        if (!v)
            continue;
        if (vkvd_config_set(cfg, g_settings[i].name, v) != 0) {
            VKV_ERROR("bad value '%s' in %s", v, g_settings[i].env);
            return VKV_EINVAL;
        }
    }
    return 0;
}

int vkvd_config_validate(const vkvd_config *cfg)
{
    if (cfg->page_size < 4096 || (cfg->page_size & (cfg->page_size - 1))) {
        VKV_ERROR("page-size %u must be a power of two >= 4096", cfg->page_size);
        return VKV_EINVAL;
    }
    if (cfg->slab_size < cfg->page_size || cfg->slab_size % cfg->page_size) {
        VKV_ERROR("slab-size must be a positive multiple of page-size");
        return VKV_EINVAL;
    }
    if (cfg->capacity < cfg->slab_size) {
        VKV_ERROR("capacity (%llu) must hold at least one slab (%llu)",
                  (unsigned long long)cfg->capacity, (unsigned long long)cfg->slab_size);
        return VKV_EINVAL;
    }
    if (cfg->capacity / cfg->slab_size > 1024) {
        VKV_ERROR("capacity / slab-size must be <= 1024 slabs");
        return VKV_EINVAL;
    }
    return 0;
}

/* Prints usage for vkvd to `fp`. */
static void usage(FILE *fp)
{
    fprintf(fp, "usage: vkvd [options]\n\n"
                "The vkv cache daemon: serves 1-bit visual KV blocks to worker processes.\n"
                "With no options it serves on the embedded defaults.\n\n"
                "options (each also settable as VKV_<NAME> in the environment or NAME = value\n"
                "under [vkvd] in the --config file; flags win over env, env over file):\n");
    for (size_t i = 0; i < N_SETTINGS; i++)
        fprintf(fp, "  --%-18s %s\n", g_settings[i].name, g_settings[i].help);
    fprintf(fp, "  --%-18s %s\n", "config FILE", "INI file (also VKV_CONFIG)");
    fprintf(fp, "  --%-18s %s\n", "print-config", "print the effective settings and exit");
    fprintf(fp, "  --%-18s %s\n", "check",
            "validate the configuration (--config file, env, flags) and exit: 0 ok, 2 not");
    fprintf(fp, "  --%-18s %s\n", "help", "this text");
    fprintf(fp, "  --%-18s %s\n", "version", "print the version");
}

/* Option codes of vkvd's flags beyond the settings; setting i is
 * OPT_SETTING0 + i. */
enum { OPT_CONFIG = 1000, OPT_PRINT, OPT_HELP, OPT_VERSION, OPT_CHECK, OPT_SETTING0 = 2000 };
#define N_OPTIONS (N_SETTINGS + 6) /* the settings, 5 flags, the terminator */

/* Fills opts[N_OPTIONS] for getopt_long: one --NAME per setting, then
 * --config, --print-config, --help, --version, --check. */
static void build_options(struct option *opts)
{
    size_t k = 0;
    for (size_t i = 0; i < N_SETTINGS; i++)
        opts[k++] =
            (struct option){g_settings[i].name, required_argument, NULL, OPT_SETTING0 + (int)i};
    opts[k++] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
    opts[k++] = (struct option){"print-config", no_argument, NULL, OPT_PRINT};
    opts[k++] = (struct option){"help", no_argument, NULL, OPT_HELP};
    opts[k++] = (struct option){"version", no_argument, NULL, OPT_VERSION};
    opts[k++] = (struct option){"check", no_argument, NULL, OPT_CHECK};
    opts[k] = (struct option){0, 0, 0, 0};
}

/* What the first pass over argv found. */
struct first_pass {
    const char *file; /* --config, else VKV_CONFIG, or NULL; points into argv or environ */
    int print, check; /* --print-config, --check */
};

/* First pass over argv: finds --config and the informational flags, and
 * answers --help and --version itself. Returns 0, VKVD_CONFIG_DONE, or
 * VKV_EINVAL after printing a usage error. */
static int scan_flags(int argc, char **argv, const struct option *opts, struct first_pass *fp)
{
    int c;
    fp->file = getenv("VKV_CONFIG");
    fp->print = fp->check = 0;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == OPT_CONFIG)
            fp->file = optarg;
        else if (c == OPT_PRINT)
            fp->print = 1;
        else if (c == OPT_CHECK)
            fp->check = 1;
        else if (c == OPT_HELP || c == 'h') {
            usage(stdout);
            return VKVD_CONFIG_DONE;
        } else if (c == OPT_VERSION) {
            printf("vkvd %s\n", VKV_VERSION_STRING);
            return VKVD_CONFIG_DONE;
        } else if (c == '?') {
            fprintf(stderr, "vkvd: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return VKV_EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vkvd: unexpected argument '%s'\n", argv[optind]);
        return VKV_EINVAL;
    }
    return 0;
}

/* Second pass over argv: applies each setting flag to cfg. Returns 0, or
 * VKV_EINVAL after printing the bad value. */
static int apply_flags(vkvd_config *cfg, int argc, char **argv, const struct option *opts)
{
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c >= OPT_SETTING0 && c < OPT_SETTING0 + (int)N_SETTINGS) {
            const struct setting *s = &g_settings[c - OPT_SETTING0];
            if (vkvd_config_set(cfg, s->name, optarg) != 0) {
                fprintf(stderr, "vkvd: bad value '%s' for --%s\n", optarg, s->name);
                return VKV_EINVAL;
            }
        }
    }
    return 0;
}

/* Checks the complete cfg and answers --check and --print-config. Returns 0
 * to run, VKVD_CONFIG_DONE, or VKV_EINVAL after logging. */
static int finish_config(const vkvd_config *cfg, const struct first_pass *fp)
{
    if (vkvd_config_validate(cfg) != 0)
        return VKV_EINVAL;
    if (fp->check && !vkvs_backend_built(cfg->backend)) { /* vkvd_server_open would refuse it */
        VKV_ERROR("backend '%s': this build has no CUDA", cfg->backend);
        return VKV_EINVAL;
    }
    if (fp->check) {
        printf("vkvd: configuration ok (%s%s, environment and flags)\n",
               cfg->config_file[0] ? "file " : "no config file",
               cfg->config_file[0] ? cfg->config_file : "");
        return VKVD_CONFIG_DONE;
    }
    if (fp->print) {
        vkvd_config_print(cfg, stdout);
        return VKVD_CONFIG_DONE;
    }
    return 0;
}

/* See config.h: defaults, a first pass for --config and the informational
 * flags (scan_flags), the file, the environment, the setting flags
 * (apply_flags), then the checks and answers (finish_config). */
int vkvd_config_from_args(vkvd_config *cfg, int argc, char **argv)
{
    struct option opts[N_OPTIONS];
    struct first_pass fp;
    int rv;

    build_options(opts);
    vkvd_config_defaults(cfg);
    if ((rv = scan_flags(argc, argv, opts, &fp)) != 0)
        return rv;
    if (fp.file && *fp.file) {
        if (set_str(cfg->config_file, sizeof cfg->config_file, fp.file) != 0 ||
            vkvd_config_load_file(cfg, fp.file) != 0)
            return VKV_EINVAL;
    }
    if (vkvd_config_load_env(cfg) != 0)
        return VKV_EINVAL;
    if (apply_flags(cfg, argc, argv, opts) != 0)
        return VKV_EINVAL;
    return finish_config(cfg, &fp);
}

void vkvd_config_print(const vkvd_config *cfg, void *fpv)
{
    FILE *fp = fpv;
    static const char *lv[] = {"error", "warn", "info", "debug"};
    fprintf(fp, "[vkvd]\nrundir = %s\nstate-dir = %s\nbackend = %s\npolicy = %s\n", cfg->rundir,
            cfg->state_dir, cfg->backend, cfg->policy);
    fprintf(fp, "capacity = %llu\nslab-size = %llu\npage-size = %u\ncold-max = %llu\n",
            (unsigned long long)cfg->capacity, (unsigned long long)cfg->slab_size, cfg->page_size,
            (unsigned long long)cfg->cold_max);
    fprintf(fp,
            "cold-sync-ms = %u\nlease-ttl-ms = %u\nsession-ttl-ms = %u\nreap-interval-ms = %u\n",
            cfg->cold_sync_ms, cfg->lease_ttl_ms, cfg->session_ttl_ms, cfg->reap_interval_ms);
    fprintf(fp, "spill-on-exit = %s\nmetrics-port = %d\nlog-level = %s\n",
            cfg->spill_on_exit ? "yes" : "no", cfg->metrics_port,
            lv[cfg->log_level < 0   ? 0
               : cfg->log_level > 3 ? 3
                                    : cfg->log_level]);
    fprintf(fp, "spill-queue = %llu\ncold-shards = %u\n", (unsigned long long)cfg->spill_queue,
            cfg->cold_shards);
    fprintf(fp, "cold-thread-policy = %s\ncold-thread-nice = %u\nserve-slice-us = %u\n",
            cfg->cold_thread_policy, cfg->cold_thread_nice, cfg->serve_slice_us);
    fprintf(fp, "lookup-index-slots = %u\n", cfg->lookup_index_slots);
    fprintf(fp, "session-quota = %llu\n",
            (unsigned long long)(cfg->session_quota == VKVD_QUOTA_AUTO ? cfg->capacity / 2
                                                                       : cfg->session_quota));
    if (cfg->allow_gid >= 0)
        fprintf(fp, "allow-gid = %ld\n", cfg->allow_gid);
    if (cfg->remote[0]) {
        /* the password is never printed */
        fprintf(fp, "remote = %s\nremote-prefix = %s\nremote-ttl = %llu\n", cfg->remote,
                cfg->remote_prefix, (unsigned long long)cfg->remote_ttl_s);
        if (cfg->remote_user[0])
            fprintf(fp, "remote-user = %s\n", cfg->remote_user);
        fprintf(fp,
                "remote-max-block = %llu\nremote-queue = %llu\nremote-piece-size = %u\n"
                "remote-timeout-ms = %u\nremote-wait-ms = %u\nremote-miss-ms = %u\n"
                "remote-threads = %u\nremote-publish = %s\n",
                (unsigned long long)cfg->remote_max_block, (unsigned long long)cfg->remote_queue,
                cfg->remote_piece, cfg->remote_timeout_ms, cfg->remote_wait_ms, cfg->remote_miss_ms,
                cfg->remote_threads, cfg->remote_publish ? "yes" : "no");
    }
}
