/* powerloss.c - an LD_PRELOAD shim for power-loss tests.
 *
 * Models a machine whose page cache is lost: whatever a process wrote to a file under
 * POWERLOSS_ROOT survives a "power cut" only if the file was fsync()ed or fdatasync()ed
 * afterwards. At every such sync it copies the file's current bytes into POWERLOSS_SHADOW; the
 * test then replaces each file under the root with its shadow copy (or deletes it when it was
 * never synced) to simulate the restart after the cut. The granularity is the whole file at the
 * last sync (a real disk may also keep some unsynced writes: that only makes the test easier).
 * Built by the test with `cc -shared -fPIC`; never part of the product. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void shadow(int fd) {
    const char *root = getenv("POWERLOSS_ROOT"), *dir = getenv("POWERLOSS_SHADOW");
    if (!root || !dir) return;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = 0;
    size_t rl = strlen(root);
    if (strncmp(path, root, rl) != 0 || path[rl] != '/') return;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    char name[PATH_MAX], tmp[PATH_MAX + 8];
    size_t j = 0;
    for (const char *p = path + rl + 1; *p && j < sizeof name - 4; p++) {
        if (*p == '/') { name[j++] = '%'; name[j++] = '2'; name[j++] = 'F'; }
        else name[j++] = *p;
    }
    name[j] = 0;
    char dst[PATH_MAX * 2];
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    int in = open(path, O_RDONLY | O_CLOEXEC);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (in >= 0 && out >= 0) {
        char buf[1 << 16];
        ssize_t r;
        while ((r = read(in, buf, sizeof buf)) > 0) {
            if (write(out, buf, (size_t)r) != r) break;
        }
        rename(tmp, dst);
    }
    if (in >= 0) close(in);
    if (out >= 0) close(out);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int rc = real(fd);
    if (rc == 0) { int e = errno; shadow(fd); errno = e; }
    return rc;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int rc = real(fd);
    if (rc == 0) { int e = errno; shadow(fd); errno = e; }
    return rc;
}
