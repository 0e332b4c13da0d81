/* sys.c - system call wrappers that retry EINTR, and the io_uring facade.
 *
 * Every system call of the shim goes through here (internal.h lists them): EINTR is retried
 * where retrying is right, and failures report their errno.
 *
 * liburing.h is included only here (importing it next to curl or Glibc in Swift breaks
 * the build). io_uring carries batched work off the commit path: the uploader's LTX writes with a
 * linked fsync. When io_uring_setup is refused (old kernels, seccomp sandboxes) the same calls
 * fall back to pwrite + fsync, and vr_io_uring_available() says which path is in use. */
#include "vfsshim.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
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

int vr_sys_close(int fd) {
    /* Linux releases the descriptor before close() can fail with EINTR: retrying could close a
     * descriptor another thread has just been given. */
    if (close(fd) == 0 || errno == EINTR) return 0;
    return errno;
}

int vr_sys_flock(int fd, int op) {
    int rc;
    do {
        rc = flock(fd, op);
    } while (rc != 0 && errno == EINTR);
    return rc == 0 ? 0 : errno;
}

int vr_sys_fstat(int fd, struct stat *st) { return fstat(fd, st) == 0 ? 0 : errno; }

int vr_sys_stat(const char *path, struct stat *st) { return stat(path, st) == 0 ? 0 : errno; }

int vr_sys_mkdir(const char *path, mode_t mode) {
    if (mkdir(path, mode) == 0 || errno == EEXIST) return 0;
    return errno;
}

int vr_sys_ftruncate(int fd, off_t size) {
    int rc;
    do {
        rc = ftruncate(fd, size);
    } while (rc != 0 && errno == EINTR);
    return rc == 0 ? 0 : errno;
}

int vr_sys_truncate(const char *path, off_t size) {
    int rc;
    do {
        rc = truncate(path, size);
    } while (rc != 0 && errno == EINTR);
    return rc == 0 ? 0 : errno;
}

int vr_sys_fallocate(int fd, int mode, off_t off, off_t len) {
    int rc;
    do {
        rc = fallocate(fd, mode, off, len);
    } while (rc != 0 && errno == EINTR);
    return rc == 0 ? 0 : errno;
}

ssize_t vr_sys_read(int fd, void *buf, size_t n) {
    ssize_t got;
    do {
        got = read(fd, buf, n);
    } while (got < 0 && errno == EINTR);
    return got;
}

ssize_t vr_sys_pread(int fd, void *buf, size_t n, off_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t got = pread(fd, (char *)buf + done, n - done, off + (off_t)done);
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (got == 0) break;
        done += (size_t)got;
    }
    return (ssize_t)done;
}

int vr_sys_pwrite_all(int fd, const void *buf, size_t len, int64_t off) {
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

void *vr_sys_mmap_shared(int fd, size_t len, int writable) {
    void *p = mmap(NULL, len, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

void vr_sys_munmap(void *p, size_t len) { munmap(p, len); }

int vr_sys_rename_noreplace(const char *from, const char *to) {
    return renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0 ? 0 : errno;
}

int vr_sys_unlink(const char *path) { return unlink(path) == 0 ? 0 : errno; }

void vr_thread_set_name(const char *name) {
    char buf[16];
    snprintf(buf, sizeof buf, "%s", name);
    (void)pthread_setname_np(pthread_self(), buf);
}

void vr_sys_futex_wake(_Atomic uint32_t *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* A wake, a timeout or a signal all end the wait: every caller re-checks its condition. */
void vr_sys_futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t timeoutMs) {
    if (timeoutMs <= 0) return;
    struct timespec ts = {.tv_sec = timeoutMs / 1000, .tv_nsec = (timeoutMs % 1000) * 1000000};
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, expected, &ts, NULL, 0);
}

void vr_sys_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
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
        vr_sys_close(tRing.ring_fd);
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
        int rc = vr_sys_pwrite_all(fd, buf, len, off);
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
        int r2 = vr_sys_pwrite_all(fd, (const char *)buf + written, len - written, off + (int64_t)written);
        return r2 ? r2 : vr_sys_fsync(fd);
    }
    return 0;
}
