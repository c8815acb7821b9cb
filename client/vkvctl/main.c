/*
 * vkvctl - inspect and manage a running vkvd.
 *
 *   vkvctl [--rundir DIR] [--json] [--color auto|always|never] COMMAND [ARGS]
 *
 * Commands: status, stats, ls, namespaces, show, evict, delete, flush,
 * verify, export, top, ping. `vkvctl help` and `vkvctl COMMAND --help`
 * describe each; see also the man page (docs/vkvctl.1). `--json` (before or
 * after the command) prints one JSON value per result with stable field
 * names (docs/vkvctl.1 lists them).
 *
 * What `ls` prints can be pasted back: a KEY argument is any unique prefix
 * of at least 8 hex digits of a key (as git and docker take ids), resolved
 * through LIST against every entry, and `--ns` takes the full namespace, a
 * unique prefix of it (a shortened one as `ls` prints it, "..." included)
 * or the model part alone. Without `--ns` a key prefix is looked up in every
 * namespace. An ambiguous prefix lists its candidates and exits 2.
 *
 * Human output fits the terminal (TIOCGWINSZ; $COLUMNS when stdout is not
 * one) and is coloured only on a terminal (never with NO_COLOR set).
 *
 * Exit codes: 0 ok, 1 the daemon answered an error (or `verify` found corrupt
 * entries), 2 usage error (an ambiguous or too short prefix included), 3
 * cannot reach the daemon, 4 not found, 5 local I/O error (export could not
 * write its file).
 *
 * This file: the global options, the command table, dispatch and the admin
 * session; each command lives in its own file (vkvctl.h lists them).
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "client/client_internal.h"
#include "client/vkvctl/vkvctl.h"
#include "vkv/vkv.h"

struct vkvctl_globals vkvctl;

/* Whether colour is wanted on fd: `when` is "always", "never" or "auto"
 * (a terminal, NO_COLOR unset or empty, TERM not "dumb"). */
static int want_color(const char *when, int fd)
{
    if (!strcmp(when, "always"))
        return 1;
    if (!strcmp(when, "never"))
        return 0;
    const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");
    if (nc && *nc)
        return 0;
    if (term && !strcmp(term, "dumb"))
        return 0;
    return isatty(fd);
}

/* Width of stdout's terminal (TIOCGWINSZ), else $COLUMNS, else 0 (unlimited). */
static unsigned term_width(void)
{
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *cols = getenv("COLUMNS");
    long v = cols ? strtol(cols, NULL, 10) : 0;
    return v > 0 && v < 100000 ? (unsigned)v : 0;
}

/* Connects an admin session. */
static int connect_admin(vkv_client **c)
{
    vkv_options o = {0};
    o.rundir = vkvctl.rundir;
    o.admin = 1;
    o.name = "vkvctl";
    o.timeout_ms = 10000;
    int rc = vkv_connect(&o, c);
    if (rc) {
        char msg[800];
        char dir[512];
        vkvc_default_rundir(vkvctl.rundir, dir, sizeof dir);
        snprintf(msg, sizeof msg, "cannot reach vkvd at %s/vkvd.sock: %s", dir, vkv_strerror(rc));
        return vkvctl_fail(rc, msg);
    }
    return 0;
}

bool vkvctl_parse_ns_opts(int argc, char **argv, void (*usage)(FILE *), const char **ns,
                          int *layers, int *ex)
{
    static const struct option opts[] = {{"ns", required_argument, NULL, 'n'},
                                         {"layers", no_argument, NULL, 'y'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    int o;
    *ns = NULL;
    optind = 1;
    while ((o = getopt_long(argc, argv, "n:h", opts, NULL)) != -1) {
        if (o == 'n') {
            *ns = optarg;
        } else if (o == 'y' && layers) {
            *layers = 1;
        } else if (o == 'h') {
            usage(stdout);
            *ex = VKVCTL_EX_OK;
            return false;
        } else {
            usage(stderr);
            *ex = VKVCTL_EX_USAGE;
            return false;
        }
    }
    return true;
}

/* One command of the table: its name, entry point and one-line help. */
struct command {
    const char *name;
    int (*fn)(vkv_client *, int, char **);
    const char *help;
    const char *usage; /* printed by `vkvctl COMMAND --help` when fn does not parse options */
};

static const struct command g_cmds[] = {
    {"status", vkvctl_cmd_status,
     "backend, capacity and use per tier, hit rate, sessions [--watch]", NULL},
    {"stats", vkvctl_cmd_stats, "every counter of the daemon",
     "usage: vkvctl stats\n  Every STATS counter of the daemon (name value).\n"},
    {"ls", vkvctl_cmd_ls,
     "list entries [--ns NS] [--tier T] [--sort recency|size|hits] [--limit N] [--long] [-q]",
     NULL},
    {"namespaces", vkvctl_cmd_namespaces, "namespaces with entry counts and bytes [--quiet]", NULL},
    {"show", vkvctl_cmd_show, "one entry: [--ns NS] [--layers] KEY", NULL},
    {"evict", vkvctl_cmd_evict, "evict [--ns NS] KEY... | --all [--to cold|drop]", NULL},
    {"delete", vkvctl_cmd_delete, "delete [--ns NS] KEY...", NULL},
    {"flush", vkvctl_cmd_flush, "spill every hot entry to the cold tier", NULL},
    {"verify", vkvctl_cmd_verify, "check the cold tier's checksums [--drop]", NULL},
    {"export", vkvctl_cmd_export, "export [--ns NS] KEY OUT.safetensors (decoded tensors)", NULL},
    {"top", vkvctl_cmd_top, "live rates [--once | --iterations N] [--interval-ms MS]", NULL},
    {"ping", vkvctl_cmd_ping, "check that vkvd answers",
     "usage: vkvctl ping\n  Round trip to vkvd.\n"},
};
#define NCMDS (sizeof g_cmds / sizeof g_cmds[0])

/* Top-level usage. */
static void usage(FILE *fp)
{
    fprintf(fp, "usage: vkvctl [--rundir DIR] [--json] [--color auto|always|never] COMMAND "
                "[ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < NCMDS; i++)
        fprintf(fp, "  %-10s %s\n", g_cmds[i].name, g_cmds[i].help);
    fprintf(fp, "\nKEY: any unique prefix of >= 8 hex digits (the KEY column of ls). NS: the\n"
                "full namespace, a unique prefix of it, or its model part.\n"
                "`vkvctl COMMAND --help` describes one command; man vkvctl for all.\n"
                "exit codes: 0 ok, 1 daemon error (verify: corrupt entries found), 2 usage\n"
                "            (also an ambiguous prefix), 3 daemon unreachable, 4 not found,\n"
                "            5 local I/O error\n");
}

/* Reads the options before the command (--json, --rundir, --color, --help)
 * into the globals and *color (points into argv or a static string), and
 * the index of the command into *first. Returns true to go on; else false
 * with the exit code in *ex (help printed: VKVCTL_EX_OK; an unknown option or a
 * bad --color: VKVCTL_EX_USAGE after saying so). */
static bool parse_globals(int argc, char **argv, int *first, const char **color, int *ex)
{
    int i = 1;
    *color = "auto";
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--json"))
            vkvctl.json = 1;
        else if (!strcmp(argv[i], "--rundir") && i + 1 < argc)
            vkvctl.rundir = argv[++i];
        else if (!strncmp(argv[i], "--color=", 8) || !strncmp(argv[i], "--colour=", 9))
            *color = strchr(argv[i], '=') + 1;
        else if ((!strcmp(argv[i], "--color") || !strcmp(argv[i], "--colour")) && i + 1 < argc)
            *color = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            *ex = VKVCTL_EX_OK;
            return false;
        } else {
            fprintf(stderr, "vkvctl: unknown option %s\n", argv[i]);
            usage(stderr);
            *ex = VKVCTL_EX_USAGE;
            return false;
        }
    }
    if (strcmp(*color, "auto") && strcmp(*color, "always") && strcmp(*color, "never")) {
        fprintf(stderr, "vkvctl: --color takes auto, always or never, not '%s'\n", *color);
        *ex = VKVCTL_EX_USAGE;
        return false;
    }
    *first = i;
    return true;
}

/* The command named `name` in g_cmds, or NULL. */
static const struct command *find_command(const char *name)
{
    for (size_t k = 0; k < NCMDS; k++)
        if (!strcmp(name, g_cmds[k].name))
            return &g_cmds[k];
    return NULL;
}

/* Prints the usage of cmd to stdout, with no daemon (its usage text, or
 * its own --help given argv[0..argc)). Returns its exit code. */
static int command_help(const struct command *cmd, int argc, char **argv)
{
    if (cmd->usage) {
        fputs(cmd->usage, stdout);
        return VKVCTL_EX_OK;
    }
    return cmd->fn(NULL, argc, argv);
}

/* `vkvctl` alone or `vkvctl help [COMMAND]`: args[0..n) are "help" and
 * what follows it (n == 0: no command given). Returns the exit code. */
static int cmd_help(int n, char **args)
{
    const struct command *cmd = n > 1 ? find_command(args[1]) : NULL;
    if (cmd) { /* vkvctl help COMMAND */
        char *hv[] = {args[1], "--help", NULL};
        return command_help(cmd, 2, hv);
    }
    usage(n == 0 ? stderr : stdout);
    return n == 0 ? VKVCTL_EX_USAGE : VKVCTL_EX_OK;
}

/* Runs cmd with its arguments args[0..n) (args[0] its name). --json and
 * --help may follow the command: --json is taken out here so that the
 * commands' option parsers never see it, --help describes the command
 * without a daemon. Connects to vkvd only to run it. Returns the exit
 * code. */
static int run_command(const struct command *cmd, int n, char **args)
{
    int sub_argc = 0, want_help = 0, ex;
    char **sub = calloc((size_t)n + 1, sizeof *sub); /* borrows args' strings */
    if (!sub)
        return vkvctl_fail(VKV_ENOMEM, NULL);
    for (int j = 0; j < n; j++) {
        if (j > 0 && !strcmp(args[j], "--json")) {
            vkvctl.json = 1;
            continue;
        }
        if (j > 0 && (!strcmp(args[j], "--help") || !strcmp(args[j], "-h")))
            want_help = 1;
        sub[sub_argc++] = args[j];
    }
    if (want_help) {
        ex = command_help(cmd, sub_argc, sub);
    } else if (cmd->usage && sub_argc > 1) {
        fputs(cmd->usage, stderr);
        ex = VKVCTL_EX_USAGE;
    } else {
        vkv_client *c = NULL;
        ex = connect_admin(&c);
        if (!ex) {
            ex = cmd->fn(c, sub_argc, sub);
            vkv_close(c);
        }
    }
    free(sub);
    return ex;
}

/* Entry point: the global options, then one command. Returns its exit code. */
int main(int argc, char **argv)
{
    int i, ex;
    const char *color;
    if (!parse_globals(argc, argv, &i, &color, &ex))
        return ex;
    vkvctl.color = want_color(color, STDOUT_FILENO);
    vkvctl.color_err = want_color(color, STDERR_FILENO);
    vkvctl.width = term_width();
    if (i < argc && !strcmp(argv[i], "ns")) /* short for namespaces */
        argv[i] = "namespaces";
    if (i >= argc || !strcmp(argv[i], "help"))
        return cmd_help(argc - i, argv + i);
    const struct command *cmd = find_command(argv[i]);
    if (cmd)
        return run_command(cmd, argc - i, argv + i);
    fprintf(stderr, "vkvctl: unknown command '%s'\n", argv[i]);
    usage(stderr);
    return VKVCTL_EX_USAGE;
}
