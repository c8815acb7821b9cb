/*
 * client/vkvctl/vkvctl.h - what vkvctl's files share; vkvctl's own header,
 * included by nothing outside client/vkvctl/. The exit codes, the global
 * options, the output helpers (output.c), the entry listing and --ns
 * resolution (scan.c), KEY resolution (resolve.c), fetching one block
 * (block.c) and one entry point per command (main.c's table).
 */
#ifndef VKV_VKVCTL_H
#define VKV_VKVCTL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/proto.h"
#include "vkv/vkv.h"

/* Exit codes (docs/vkvctl.1). */
enum {
    VKVCTL_EX_OK = 0,
    VKVCTL_EX_ERR = 1,      /* the daemon answered an error; verify found corruption */
    VKVCTL_EX_USAGE = 2,    /* usage error, an ambiguous or too short prefix included */
    VKVCTL_EX_CONN = 3,     /* cannot reach the daemon */
    VKVCTL_EX_NOTFOUND = 4, /* not found */
    VKVCTL_EX_IO = 5        /* local I/O error (export could not write its file) */
};

/* The global options, set once by main (main.c) before a command runs. */
struct vkvctl_globals {
    int json;           /* --json: one JSON value per result */
    const char *rundir; /* --rundir, or NULL: vkvd's default */
    int color;          /* 1: ANSI colours on stdout (decided once in main) */
    int color_err;      /* 1: ANSI colours on stderr */
    unsigned width;     /* columns of the terminal; 0 = unlimited (not a terminal) */
};
extern struct vkvctl_globals vkvctl;

/* ---- output (output.c) ---------------------------------------------------- */

/* ANSI escape for `code` ("1" bold, "32" green, ...) when colour is on for
 * stdout, else "". Static strings, never freed. */
const char *vkvctl_col(const char *code);

/* The reset sequence matching vkvctl_col(), or "". */
const char *vkvctl_rst(void);

/* Prints a cJSON object to stdout and frees it. */
void vkvctl_emit(cJSON *o);

/* Reports an error (as JSON when --json) and returns the exit code for it. */
int vkvctl_fail(int rc, const char *what);

/* Human size of b bytes written into the caller's buf[cap]; returns buf. */
const char *vkvctl_hsize(uint64_t b, char *buf, size_t cap);

/* Writes last-access time last_ms (ms since the epoch; 0: never) into the
 * caller's when[cap] as local "YYYY-MM-DD HH:MM:SS", or "-" for never. */
void vkvctl_format_when(uint64_t last_ms, char *when, size_t cap);

/* Prints (or, with --json, emits) that `what` is ambiguous, listing the
 * candidate lines cand[0..n) (each "KEY  NS" or "NS") and then hint (if
 * not NULL). Returns VKVCTL_EX_USAGE. */
int vkvctl_ambiguous(const char *what, const char *const *cand, size_t n, const char *hint);

/* ---- options and counters (main.c, status.c) --------------------------- */

/* Parses the options of a command that takes --ns NS, --help and, when
 * layers is not NULL, --layers (show, delete, export). Returns true to go on
 * (*ns set or NULL, optind at the first operand), else false with *ex the
 * exit code to return (help printed: VKVCTL_EX_OK; bad option:
 * VKVCTL_EX_USAGE after printing the usage to stderr). */
bool vkvctl_parse_ns_opts(int argc, char **argv, void (*usage)(FILE *), const char **ns,
                          int *layers, int *ex);

/* Fetches all counters; returns the reply (caller frees it with
 * vkvp_reply_free) or NULL after reporting, with the exit code in *ex. */
vkvp_reply *vkvctl_get_stats(vkv_client *c, int *ex);

/* Counter by name from a STATS reply (0 if absent); callers name it with
 * VKVD_COUNTER(name), checked against daemon/counters.h at compile time. */
uint64_t vkvctl_ctr(const vkvp_reply *rep, const char *name);

/* ---- listing every entry, and resolving what the user typed (scan.c) ----- */

/* One listed entry. e.ns and e.shape point into the scan that holds it. */
struct vkvctl_ent {
    vkvp_entry e;
    size_t ns_ix; /* index into scan.ns */
};

/* Entries listed through LIST (every page), with the namespaces interned.
 * Owns every string; release with vkvctl_scan_free. */
struct vkvctl_scan {
    struct vkvctl_ent *v;
    size_t n, cap;
    char **ns; /* distinct namespaces in order of first appearance, malloc'ed */
    size_t nns, nscap;
};

/* Frees everything a scan owns and zeroes it. */
void vkvctl_scan_free(struct vkvctl_scan *s);

/* Lists entries page by page (LIST with a cursor) into *s (zeroed first):
 * only namespace `ns` when not NULL (exact, as the daemon filters), only
 * tier `tier` ("hot"/"cold") when not NULL, and at most `max` entries when
 * max >= 0. Returns 0, or the exit code after reporting. */
int vkvctl_scan_entries(vkv_client *c, const char *ns, const char *tier, long max,
                        struct vkvctl_scan *s);

/* Length of the model part of namespace ns: the text before the first '@',
 * '|' or '#'. */
size_t vkvctl_ns_model_len(const char *ns);

/* Number of leading characters that tell namespace ix apart from every
 * other namespace of s (its whole length at most). */
size_t vkvctl_ns_unique_len(const struct vkvctl_scan *s, size_t ix);

/* Writes to out (VKVP_MAX_NS + 4 bytes) how `ls` prints namespace ix of s
 * in at most `avail` columns (0 = unlimited): whole when it fits; else
 * "HEAD...", "MODEL...PIECE..." or "HEAD...TAIL", the first such form that
 * fits and that vkvctl_resolve_ns maps back to this namespace alone; else
 * (too narrow) its shortest unique prefix and "...", wider than avail. */
void vkvctl_ns_short(const struct vkvctl_scan *s, size_t ix, size_t avail, char *out);

/* Marks in mask[0..s->nns) the namespaces of s that `arg` (what the user
 * gave --ns) names: the exact name alone if there is one; else, when arg
 * holds "..." (a name `ls` shortened), those it matches with "..." standing
 * for any text; else those whose model part or fingerprint (text before
 * '#') is arg, or failing that those arg is a prefix of. Returns how many
 * it marked. */
size_t vkvctl_ns_candidates(const struct vkvctl_scan *s, const char *arg, char *mask);

/* Reports that `arg` names no namespace (VKVCTL_EX_NOTFOUND) or several of
 * them, those marked in mask (VKVCTL_EX_USAGE), and returns that exit code. */
int vkvctl_ns_report(const struct vkvctl_scan *s, const char *arg, const char *mask, size_t n);

/* Resolves `arg` (what the user gave --ns) to the one namespace of s it
 * names (vkvctl_ns_candidates). Returns its index, or (size_t)-1 after
 * reporting, with the exit code in *ex (VKVCTL_EX_NOTFOUND: none;
 * VKVCTL_EX_USAGE: several). */
size_t vkvctl_resolve_ns(const struct vkvctl_scan *s, const char *arg, int *ex);

/* ---- KEY arguments (resolve.c) ----------------------------------------- */

/* An entry a KEY argument resolved to: its whole key and namespace. */
struct vkvctl_target {
    vkv_key key;
    size_t ns_ix; /* into the scan */
};

/* Resolves KEY arguments args[0..n) (with --ns value ns_arg, or NULL: every
 * namespace) into out[0..n) through a full listing, kept in *s for the
 * namespace strings (caller frees it with vkvctl_scan_free, also on
 * failure). --ns may name several namespaces (a model part with two
 * codecs) as long as each key is then found in one of them.
 * Returns 0 or the exit code after reporting: VKVCTL_EX_USAGE for a
 * malformed, too short or ambiguous prefix, VKVCTL_EX_NOTFOUND when nothing
 * matches. With missing_ok, a whole key (64 digits) that matches nothing in
 * a namespace --ns resolved to is passed on as it is (the daemon then
 * counts 0), as all commands did before prefixes (so INFO still shows an
 * entry being written, which LIST leaves out). */
int vkvctl_resolve_keys(vkv_client *c, const char *ns_arg, char **args, int n,
                        struct vkvctl_scan *s, struct vkvctl_target *out, int missing_ok);

/* Hex digits `ls` prints per key: 16, more when two different keys of s
 * would share that prefix (so every printed prefix resolves). */
size_t vkvctl_key_show_len(const struct vkvctl_scan *s);

/* ---- one entry, one block (show.c, block.c) ----------------------------- */

/* Adds one entry (its strings may be unterminated wire strings) to a JSON
 * array, or prints it in the `show` form (one field per line). */
void vkvctl_show_entry(const vkvp_entry *e, cJSON *arr);

/* Opens a worker-like session in namespace ns (full), fetches key (a cold
 * block is restored first; the fetch counts as a hit), and hands the view
 * to fn(view, arg, err, errlen), which returns 0 or a VKV_E* code with a
 * message in err. Releases the lease and the session before returning.
 * Returns 0, or the exit code after reporting (VKVCTL_EX_IO when fn failed
 * with VKV_EIO). */
int vkvctl_with_block(const char *ns, const vkv_key *key,
                      int (*fn)(const vkv_view *, void *, char *, size_t), void *arg);

/* Describes the block in view layer by layer into the JSON object arg:
 * codec, shape, visual ranges, raw-token share, bytes per section, and
 * per layer its bytes and K/V scale statistics. fn of vkvctl_with_block. */
int vkvctl_block_layers(const vkv_view *view, void *arg, char *err, size_t errlen);

/* Prints what vkvctl_block_layers put in o for a person. */
void vkvctl_print_layers(const cJSON *o);

/* ---- the commands (main.c's table) -------------------------------------- */

/* Each runs `vkvctl NAME` with its arguments argv[0..argc) (argv[0] the
 * command's name, --json already taken out) over the admin session c (NULL
 * when main only asks it for --help) and returns the exit code. */
int vkvctl_cmd_status(vkv_client *c, int argc, char **argv);     /* status.c */
int vkvctl_cmd_stats(vkv_client *c, int argc, char **argv);      /* status.c */
int vkvctl_cmd_ping(vkv_client *c, int argc, char **argv);       /* status.c */
int vkvctl_cmd_top(vkv_client *c, int argc, char **argv);        /* top.c */
int vkvctl_cmd_ls(vkv_client *c, int argc, char **argv);         /* ls.c */
int vkvctl_cmd_namespaces(vkv_client *c, int argc, char **argv); /* ls.c */
int vkvctl_cmd_show(vkv_client *c, int argc, char **argv);       /* show.c */
int vkvctl_cmd_evict(vkv_client *c, int argc, char **argv);      /* evict.c */
int vkvctl_cmd_delete(vkv_client *c, int argc, char **argv);     /* evict.c */
int vkvctl_cmd_flush(vkv_client *c, int argc, char **argv);      /* evict.c */
int vkvctl_cmd_export(vkv_client *c, int argc, char **argv);     /* export.c */
int vkvctl_cmd_verify(vkv_client *c, int argc, char **argv);     /* verify.c */

#endif /* VKV_VKVCTL_H */
