/* spool_append.c - what one spool append costs, by how the segment file is prepared.
 *
 *   cc -O2 -o /tmp/spool_append benchmarks/spool_append.c && (cd SOME_EXT4_DIR && /tmp/spool_append)
 *
 * Appends 20,000 records of 4,248 bytes (a 4 KiB WAL frame between two 64-byte record headers,
 * as the shim writes one single-page commit), with an fdatasync every 1,000 appends (the spool
 * is synced before each checkpoint), into a file in the current directory that is:
 *   - fresh, preallocated with fallocate(KEEP_SIZE) in 1 MiB chunks (the shim before spares),
 *   - fresh, preallocated with a size-extending fallocate,
 *   - reused: written and synced before (a spare segment, see vr_db_add_spare),
 * written with pwritev, and the same three prepared files written through a shared mapping
 * (memcpy). Prints the mean, p50 and p99 of one append and the sync time per append, twice.
 * Not part of benchmarks/run: it measures the kernel's page cache, not our code. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

enum { REC = 4248, N = 20000, SYNC_EVERY = 1000 };
static unsigned char frame[4120], hdr[128];
static uint64_t now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec;
}
static int cmp(const void *a, const void *b) {
    uint64_t x = *(uint64_t *)a, y = *(uint64_t *)b;
    return x < y ? -1 : x > y;
}
static uint64_t lat[N];
static void report(const char *name, uint64_t total) {
    qsort(lat, N, sizeof lat[0], cmp);
    printf("%-40s mean %6.0f ns  p50 %6lu  p99 %7lu\n", name, (double)total / N, lat[N / 2], lat[N * 99 / 100]);
}
static const size_t CAP = (size_t)REC * N + 4096;

static void bench_pwritev(const char *name, int mode) {
    // mode 0: fallocate KEEP_SIZE 1 MiB chunks; 1: fallocate extends size; 2: recycled (file already written)
    unlink("spool_append.seg");
    int fd = open("spool_append.seg", O_RDWR | O_CREAT, 0644);
    if (mode == 2) {
        unsigned char *z = calloc(1, 1 << 20);
        for (size_t o = 0; o < CAP; o += 1 << 20) pwrite(fd, z, 1 << 20, o);
        fsync(fd);
        free(z);
    }
    uint64_t off = 0, alloc = 0, syncT = 0, t0 = now();
    for (int i = 0; i < N; i++) {
        uint64_t a = now();
        if (mode < 2 && off + REC > alloc) {
            fallocate(fd, mode == 0 ? FALLOC_FL_KEEP_SIZE : 0, alloc, 1 << 20);
            alloc += 1 << 20;
        }
        struct iovec iov[3] = {{hdr, 64}, {frame, 4120}, {hdr + 64, 64}};
        pwritev(fd, iov, 3, off);
        off += REC;
        lat[i] = now() - a;
        if (i % SYNC_EVERY == SYNC_EVERY - 1) { uint64_t b = now(); fdatasync(fd); syncT += now() - b; }
    }
    report(name, now() - t0 - syncT); printf("%40s sync per op %6.0f ns\n", "", (double)syncT / N);
    close(fd);
}

static void bench_mmap(const char *name, int mode) {
    // mode 0: fresh fallocated file, mapped; 1: recycled (written + synced before); 2: fresh + populate ahead
    unlink("spool_append.seg");
    int fd = open("spool_append.seg", O_RDWR | O_CREAT, 0644);
    fallocate(fd, 0, 0, CAP);
    if (mode == 1) {
        unsigned char *z = calloc(1, 1 << 20);
        for (size_t o = 0; o < CAP; o += 1 << 20) pwrite(fd, z, 1 << 20, o);
        fsync(fd);
        free(z);
    }
    unsigned char *m = mmap(NULL, CAP, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mode == 2) madvise(m, CAP, MADV_POPULATE_WRITE);
    uint64_t off = 0, syncT = 0, t0 = now();
    for (int i = 0; i < N; i++) {
        uint64_t a = now();
        memcpy(m + off, hdr, 64);
        memcpy(m + off + 64, frame, 4120);
        memcpy(m + off + 4184, hdr + 64, 64);
        off += REC;
        lat[i] = now() - a;
        if (i % SYNC_EVERY == SYNC_EVERY - 1) { uint64_t b = now(); fdatasync(fd); syncT += now() - b; }
    }
    report(name, now() - t0 - syncT); printf("%40s sync per op %6.0f ns\n", "", (double)syncT / N);
    munmap(m, CAP);
    close(fd);
}

int main(void) {
    memset(frame, 7, sizeof frame);
    memset(hdr, 9, sizeof hdr);
    for (int r = 0; r < 2; r++) {
        bench_pwritev("pwritev, fallocate KEEP_SIZE (today)", 0);
        bench_pwritev("pwritev, fallocate extends size", 1);
        bench_pwritev("pwritev, recycled cached pages", 2);
        bench_mmap("mmap memcpy, fresh fallocated", 0);
        bench_mmap("mmap memcpy, recycled", 1);
        bench_mmap("mmap memcpy, populated ahead", 2);
    }
    unlink("spool_append.seg");
    return 0;
}
