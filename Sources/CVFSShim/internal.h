/* internal.h - helpers shared by the shim's C files (not exported to Swift). */
#ifndef VFSSHIM_INTERNAL_H
#define VFSSHIM_INTERNAL_H
#include <sys/types.h>

/* System calls through one place: EINTR is retried, failures keep errno. */
int vr_sys_open(const char *path, int flags, mode_t mode);
/* Returns 0 or errno (also left in errno). */
int vr_sys_fsync(int fd);

#endif
