/* common/fsutil.c - see fsutil.h. */
#include "common/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/errbuf.h"
#include "common/log.h"
#include "vkv/error.h"

/* See fsutil.h. */
int vkv_errno_code(int e)
{
    switch (e) {
    case EACCES:
    case EPERM:
    case EROFS:
        return VKV_EPERM;
    case ENOSPC:
    case EDQUOT:
        return VKV_ENOSPC;
    case ENOTDIR:
    case ENAMETOOLONG:
    case ELOOP:
        return VKV_EINVAL;
    case ENOMEM:
        return VKV_ENOMEM;
    default:
        return VKV_EIO;
    }
}

/* Creates `dir` and missing parents with mode 0700, component by
 * component: an existing component must be a directory (stat, so a
 * symlink to one counts), a missing one is created. Returns 0 or a VKV_E*
 * code with the failing component named in err. */
static int vkv_mkdirs(const char *dir, char *err, size_t errlen)
{
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path)
        return vkv_errbuf(err, errlen, VKV_EINVAL, "directory path '%.64s' is empty or too long",
                          dir);
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != 0)
            continue;
        char saved = path[i];
        path[i] = 0;
        struct stat sb;
        int e = 0;
        if (stat(path, &sb) != 0) {
            if (errno != ENOENT || (mkdir(path, 0700) != 0 && errno != EEXIST))
                e = errno;
        } else if (!S_ISDIR(sb.st_mode)) {
            e = ENOTDIR;
        }
        if (e != 0)
            return vkv_errbuf(err, errlen, vkv_errno_code(e),
                              "cannot create directory '%s' (at '%s'): %s", dir, path, strerror(e));
        path[i] = saved;
    }
    return 0;
}

/* The VKV_DIR_OWNED checks on an existing `dir`: a real directory, ours,
 * mode tightened to 0700. Returns 0 or a VKV_E* code with err set. */
static int vkv_dir_owned(const char *dir, char *err, size_t errlen)
{
    struct stat sb;
    if (lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return vkv_errbuf(err, errlen, VKV_EINVAL, "%s is not a directory", dir);
    if (sb.st_uid != getuid())
        return vkv_errbuf(err, errlen, VKV_EPERM,
                          "%s belongs to uid %u, not to us (uid %u): refusing to use it", dir,
                          (unsigned)sb.st_uid, (unsigned)getuid());
    if ((sb.st_mode & 077) != 0) {
        if (chmod(dir, 0700) != 0) {
            int e = errno;
            return vkv_errbuf(err, errlen, vkv_errno_code(e),
                              "%s is open to others and chmod failed: %s", dir, strerror(e));
        }
        VKV_WARN("%s was mode %03o; set it to 0700", dir, (unsigned)(sb.st_mode & 0777));
    }
    return 0;
}

/* See fsutil.h. */
int vkv_private_dir(const char *dir, unsigned flags, char *err, size_t errlen)
{
    if (dir == NULL)
        return vkv_errbuf(err, errlen, VKV_EINVAL, "no directory given");
    int rc = vkv_mkdirs(dir, err, errlen);
    if (rc == 0 && (flags & VKV_DIR_OWNED))
        rc = vkv_dir_owned(dir, err, errlen);
    if (rc != 0)
        return rc;
    if (access(dir, R_OK | W_OK | X_OK) != 0) {
        int e = errno;
        return vkv_errbuf(err, errlen, vkv_errno_code(e), "directory '%s' is not writable: %s", dir,
                          strerror(e));
    }
    return 0;
}

/* See fsutil.h. */
int vkv_lock_file(const char *path, int *fd, char *err, size_t errlen)
{
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0) {
        int e = errno;
        return vkv_errbuf(err, errlen, vkv_errno_code(e), "cannot open '%s': %s", path,
                          strerror(e));
    }
    if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(*fd);
        *fd = -1;
        if (e == EWOULDBLOCK)
            return vkv_errbuf(err, errlen, VKV_EBUSY, "'%s' is locked by another process (%s)",
                              path, strerror(e));
        return vkv_errbuf(err, errlen, VKV_EIO, "cannot lock '%s': %s", path, strerror(e));
    }
    return 0;
}
