/* common/fsutil.h - the file-system steps the daemon and the cold tier
 * share: a private directory, an exclusive lock file, errno to VKV_E*.
 *
 * Every int-returning function returns 0 or a negative VKV_E* code
 * (include/vkv/error.h) and, on failure, writes one line saying why into
 * err[0..errlen) when err is non-NULL (the buffer stays the caller's).
 * None of them logs, except the one warning vkv_private_dir gives when it
 * tightens a directory's mode. */
#ifndef VKV_COMMON_FSUTIL_H
#define VKV_COMMON_FSUTIL_H

#include <stddef.h>

/* vkv_private_dir flag: the directory itself (not a symlink to one) must
 * belong to getuid(); a mode open to group or others is tightened to 0700
 * (with a warning). Without it an existing directory (or symlink to one)
 * is used as it is, whoever owns it, as long as we may write to it. */
#define VKV_DIR_OWNED 1u

/* Maps an errno value from a file-system call to a VKV_E* code:
 * EACCES/EPERM/EROFS -> VKV_EPERM, ENOSPC/EDQUOT -> VKV_ENOSPC,
 * ENOTDIR/ENAMETOOLONG/ELOOP -> VKV_EINVAL, ENOMEM -> VKV_ENOMEM, anything
 * else VKV_EIO. */
int vkv_errno_code(int e);

/* Creates `dir` and its missing parents with mode 0700 (like mkdir -p;
 * existing components are kept as they are), then checks that `dir` is a
 * directory we may read, write and enter (plus, with VKV_DIR_OWNED, the
 * checks above). Returns 0, VKV_EINVAL (empty or too long a path, or a
 * component that is not a directory), VKV_EPERM (permission denied,
 * read-only file system, owned by another uid), VKV_ENOSPC, VKV_EIO. */
int vkv_private_dir(const char *dir, unsigned flags, char *err, size_t errlen);

/* Opens (creating, mode 0600, close-on-exec) the file `path` and takes an
 * exclusive, non-blocking flock on it: one process per directory. On
 * success *fd is the open descriptor, which the caller owns and closes to
 * release the lock. On failure *fd is -1. Returns 0, VKV_EBUSY (another
 * open file holds the lock), or the vkv_errno_code of open/flock. */
int vkv_lock_file(const char *path, int *fd, char *err, size_t errlen);

#endif
