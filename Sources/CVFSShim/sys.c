/* sys.c - system call wrappers that retry EINTR, and the io_uring facade.
 *
 * liburing.h is included only here (STYLE.md: importing it next to curl or Glibc in Swift breaks
 * the build). io_uring carries batched work off the commit path: the uploader's LTX writes with a
 * linked fsync. When io_uring_setup is refused (old kernels, seccomp sandboxes) the same calls
 * fall back to pwrite + fsync, and vr_io_uring_available() says which path is in use. */
#include "vfsshim.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int vr_sys_open(const char *path, int flags, mode_t mode) {
    int fd;
    do {
        fd = open(path, flags, mode);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

int vr_sys_fsync(int fd) {
    int rc;
    do {
        rc = fsync(fd);
    } while (rc != 0 && errno == EINTR);
    return rc == 0 ? 0 : errno;
}

static int pwriteAll(int fd, const void *buf, size_t len, int64_t off) {
    const char *p = buf;
    while (len > 0) {
        ssize_t w = pwrite(fd, p, len, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        p += w;
        len -= (size_t)w;
        off += w;
    }
    return 0;
}

/* One ring per thread: the uploader threads never share one. */
static __thread struct io_uring tRing;
static __thread int tRingState; /* 0 = untried, 1 = ready, -1 = refused */
static int gUringRefused = -1;  /* process-wide answer once known */

/* fork(): the child's copy of the forking thread's ring (the only thread it has) is never used:
 * the ring's mappings are not inherited (io_uring_ring_dontfork) and its descriptor is closed, so
 * a ring is set up afresh if that thread writes again. Other threads do not exist in the child. */
static pthread_once_t gRingForkOnce = PTHREAD_ONCE_INIT;
static void ringForkChild(void) {
    if (tRingState == 1) {
        close(tRing.ring_fd);
        tRingState = 0;
    }
}
static void ringForkInstall(void) { pthread_atfork(NULL, NULL, ringForkChild); }

static int ringReady(void) {
    if (tRingState == 0) {
        pthread_once(&gRingForkOnce, ringForkInstall);
        int rc = io_uring_queue_init(8, &tRing, 0);
        if (rc == 0) (void)io_uring_ring_dontfork(&tRing);
        tRingState = rc == 0 ? 1 : -1;
        __atomic_store_n(&gUringRefused, rc == 0 ? 0 : 1, __ATOMIC_RELAXED);
    }
    return tRingState == 1;
}

int vr_io_uring_available(void) {
    int known = __atomic_load_n(&gUringRefused, __ATOMIC_RELAXED);
    if (known < 0) return ringReady();
    return known == 0;
}

int vr_io_write_and_sync(int fd, const void *buf, size_t len, int64_t off, int *usedUring) {
    if (usedUring) *usedUring = 0;
    if (len > (1u << 30) || !ringReady()) {
        int rc = pwriteAll(fd, buf, len, off);
        return rc ? rc : vr_sys_fsync(fd);
    }
    struct io_uring_sqe *sqe = io_uring_get_sqe(&tRing);
    if (!sqe) return EAGAIN;
    io_uring_prep_write(sqe, fd, buf, (unsigned)len, (uint64_t)off);
    sqe->flags |= IOSQE_IO_LINK;
    sqe->user_data = 1;
    sqe = io_uring_get_sqe(&tRing);
    io_uring_prep_fsync(sqe, fd, 0);
    sqe->user_data = 2;
    int rc = io_uring_submit(&tRing);
    if (rc < 0) return -rc;
    int result = 0;
    size_t written = 0;
    for (int i = 0; i < 2; i++) {
        struct io_uring_cqe *cqe;
        do {
            rc = io_uring_wait_cqe(&tRing, &cqe);
        } while (rc == -EINTR);
        if (rc < 0) return -rc;
        if (cqe->user_data == 1) {
            if (cqe->res < 0) result = -cqe->res;
            else written = (size_t)cqe->res;
        } else if (cqe->res < 0 && result == 0 && cqe->res != -ECANCELED) {
            result = -cqe->res;
        }
        io_uring_cqe_seen(&tRing, cqe);
    }
    if (usedUring) *usedUring = 1;
    if (result) return result;
    if (written < len) {
        /* short write: finish synchronously */
        int r2 = pwriteAll(fd, (const char *)buf + written, len - written, off + (int64_t)written);
        return r2 ? r2 : vr_sys_fsync(fd);
    }
    return 0;
}
