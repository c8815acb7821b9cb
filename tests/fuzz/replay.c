/*
 * tests/fuzz/replay.c - the corpus-replay runner: a plain main() that feeds
 * every file named on the command line (directories are walked one level
 * deep, in sorted order) to the target's LLVMFuzzerTestOneInput once.
 *
 * Built in every configuration (gcc included) and registered as a unit test
 * per target, so CI replays the seed and regression corpora even without
 * clang. Exit status: 0 when every input ran (a failed property aborts), 1 on
 * an I/O error or when no input was found (an empty corpus is a mistake).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Reads the whole file `path` into a malloc'ed buffer of exactly its size
 * (so a sanitizer sees any read past the end); the caller frees *buf.
 * Returns 0 or -1 (errno-style message printed). */
static int read_file(const char *path, uint8_t **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    uint8_t *p = NULL;
    if (fseek(f, 0, SEEK_END) != 0)
        goto out;
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto out;
    p = malloc(n > 0 ? (size_t)n : 1);
    if (!p)
        goto out;
    if (n > 0 && fread(p, 1, (size_t)n, f) != (size_t)n)
        goto out;
    *buf = p;
    *len = (size_t)n;
    p = NULL;
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "replay: cannot read %s\n", path);
    free(p);
    fclose(f);
    return rc;
}

/* Runs one file through the target. Returns 0 or -1. */
static int run_file(const char *path)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (read_file(path, &buf, &len) != 0)
        return -1;
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
}

/* qsort comparator over directory entry names. */
static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of directory `dir` in name order; *count is
 * increased by the number run. Returns 0 or -1. */
static int run_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) {
                rc = -1;
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = -1;
            break;
        }
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        rc = run_file(path);
        if (rc == 0)
            (*count)++;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* Usage: replay PATH... (files or corpus directories). */
int main(int argc, char **argv)
{
    size_t count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        if (S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) != 0 : run_file(argv[i]) != 0)
            return 1;
        if (!S_ISDIR(st.st_mode))
            count++;
    }
    printf("replay: %zu inputs ran\n", count);
    return count ? 0 : 1;
}
