/* commit_loop.c - the commit loop that benchmarks/counts runs under callgrind and strace.
 *
 *   commit_loop [--extension LIBRARY] DATABASE SYNCHRONOUS ROW_BYTES WARMUP COMMITS WAIT_MS
 *
 * Opens DATABASE in WAL mode (through the `replicated` VFS when --extension names
 * libvfsreplication.so; VFS_REPLICATION_CONFIG names its config), sets `PRAGMA synchronous`
 * (NORMAL or FULL), commits WARMUP single-row INSERTs (autocommit, one prepared statement, a blob
 * of ROW_BYTES pseudo-random bytes each), then the measured part: COMMITS more of them and a
 * WAIT_MS sleep, so that the uploader's work for the last commits falls inside the part too.
 *
 * The measured part is marked for both tools:
 *   - strace: access() of two paths that do not exist, "/commit_loop-measure-begin" and
 *     "/commit_loop-measure-end", made by the writer thread (so they also name it);
 *   - callgrind: with COMMIT_LOOP_HANDSHAKE naming a folder, the writer creates FOLDER/begin and
 *     blocks reading the FIFO FOLDER/go until benchmarks/counts has zeroed every thread's counters
 *     (`callgrind_control -z`) and written a byte; the same with FOLDER/end and a dump of every
 *     thread (`callgrind_control -d`). Callgrind's client requests (CALLGRIND_ZERO_STATS and
 *     CALLGRIND_DUMP_STATS) would act on the writer thread alone, missing the uploader.
 * With COMMIT_LOOP_TIMING set, the loop prints the wall time and the writer thread's CPU time
 * (user and system) per measured commit on stderr.
 * With COMMIT_LOOP_REPLICA naming the file:// replica's directory, the loop prints on stderr the
 * number of files and bytes in it just before and just after the measured part (counted outside
 * the markers), the evidence that the uploader shipped during the part.
 */
#define _DEFAULT_SOURCE
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

static void check(int rc, sqlite3 *db, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "commit_loop: %s: %s (%d)\n", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), rc);
        exit(1);
    }
}

static uint64_t gRandom = 0x9e3779b97f4a7c15ull;

/* Fresh bytes for every row (xorshift64), so compression sees what a real row would give it. */
static void fill(unsigned char *buf, int n) {
    for (int i = 0; i < n; i += 8) {
        gRandom ^= gRandom << 13;
        gRandom ^= gRandom >> 7;
        gRandom ^= gRandom << 17;
        memcpy(buf + i, &gRandom, n - i < 8 ? (size_t)(n - i) : 8);
    }
}

static long long gFiles, gBytes;

static int countFile(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)path;
    (void)ftw;
    if (type == FTW_F) {
        gFiles++;
        gBytes += st->st_size;
    }
    return 0;
}

static void countReplica(const char *dir, long long *files, long long *bytes) {
    gFiles = gBytes = 0;
    if (dir) nftw(dir, countFile, 16, FTW_PHYS);
    *files = gFiles;
    *bytes = gBytes;
}

/* Tells benchmarks/counts the loop is at STEP (begin or end) and waits until it has acted. */
static void handshake(const char *dir, const char *step) {
    if (!dir) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, step);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) close(fd);
    snprintf(path, sizeof path, "%s/go", dir);
    fd = open(path, O_RDONLY); /* a FIFO: blocks until the script opens it to write */
    char byte;
    if (fd < 0 || read(fd, &byte, 1) != 1) {
        fprintf(stderr, "commit_loop: handshake at %s failed\n", step);
        exit(1);
    }
    close(fd);
}

static void commit(sqlite3 *db, sqlite3_stmt *insert, unsigned char *row, int rowBytes) {
    fill(row, rowBytes);
    check(sqlite3_bind_blob(insert, 1, row, rowBytes, SQLITE_STATIC), db, "bind");
    check(sqlite3_step(insert), db, "insert");
    check(sqlite3_reset(insert), db, "reset");
}

int main(int argc, char **argv) {
    const char *extension = NULL;
    if (argc > 2 && strcmp(argv[1], "--extension") == 0) {
        extension = argv[2];
        argv += 2;
        argc -= 2;
    }
    if (argc != 7) {
        fprintf(stderr, "usage: commit_loop [--extension LIBRARY] DATABASE SYNCHRONOUS ROW_BYTES WARMUP COMMITS WAIT_MS\n");
        return 2;
    }
    const char *path = argv[1], *synchronous = argv[2];
    int rowBytes = atoi(argv[3]), warmup = atoi(argv[4]), commits = atoi(argv[5]), waitMs = atoi(argv[6]);
    if (rowBytes < 1 || warmup < 0 || commits < 1 || waitMs < 0 ||
        (strcmp(synchronous, "NORMAL") != 0 && strcmp(synchronous, "FULL") != 0)) {
        fprintf(stderr, "commit_loop: bad arguments (SYNCHRONOUS is NORMAL or FULL, ROW_BYTES and COMMITS > 0)\n");
        return 2;
    }

    char uri[4096];
    if (extension) {
        /* The extension registers the `replicated` VFS when it is loaded into any connection. */
        sqlite3 *boot = NULL;
        check(sqlite3_open(":memory:", &boot), boot, "open :memory:");
        sqlite3_enable_load_extension(boot, 1);
        char *err = NULL;
        if (sqlite3_load_extension(boot, extension, NULL, &err) != SQLITE_OK) {
            fprintf(stderr, "commit_loop: load %s: %s\n", extension, err ? err : "?");
            return 1;
        }
        check(sqlite3_close(boot), NULL, "close :memory:");
        snprintf(uri, sizeof uri, "file:%s?vfs=replicated", path);
    } else {
        snprintf(uri, sizeof uri, "file:%s", path);
    }
    sqlite3 *db = NULL;
    check(sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, NULL), db, uri);
    /* The uploader reads the database for its first snapshot while the loop switches it to WAL:
     * without a busy timeout that switch can fail with SQLITE_BUSY, as in any app. */
    sqlite3_busy_timeout(db, 10000);
    char sql[256];
    snprintf(sql, sizeof sql,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, x BLOB)",
             synchronous);
    check(sqlite3_exec(db, sql, 0, 0, 0), db, "setup");
    sqlite3_stmt *insert = NULL;
    check(sqlite3_prepare_v2(db, "INSERT INTO t(x) VALUES (?1)", -1, &insert, NULL), db, "prepare");
    unsigned char *row = malloc((size_t)rowBytes);
    if (!row) return 1;

    for (int i = 0; i < warmup; i++) commit(db, insert, row, rowBytes);
    /* Let the uploader finish the warm-up's batches before the measured part starts. */
    if (waitMs) usleep((useconds_t)waitMs * 1000);

    const char *replica = getenv("COMMIT_LOOP_REPLICA");
    long long files0, bytes0, files1, bytes1;
    countReplica(replica, &files0, &bytes0);

    const char *sync = getenv("COMMIT_LOOP_HANDSHAKE");
    handshake(sync, "begin");
    (void)!access("/commit_loop-measure-begin", F_OK);
    struct timespec t0, t1, c0, c1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    for (int i = 0; i < commits; i++) commit(db, insert, row, rowBytes);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (getenv("COMMIT_LOOP_TIMING"))
        fprintf(stderr, "commit_loop: %.0f ns per commit, writer thread CPU %.0f ns per commit\n",
                ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / commits,
                ((double)(c1.tv_sec - c0.tv_sec) * 1e9 + (double)(c1.tv_nsec - c0.tv_nsec)) / commits);
    if (waitMs) usleep((useconds_t)waitMs * 1000);
    (void)!access("/commit_loop-measure-end", F_OK);
    handshake(sync, "end");
    countReplica(replica, &files1, &bytes1);
    if (replica)
        fprintf(stderr, "replica files: %lld -> %lld (%+lld files, %+lld KiB)\n", files0, files1, files1 - files0,
                (bytes1 - bytes0) / 1024);

    check(sqlite3_finalize(insert), db, "finalize");
    check(sqlite3_close(db), NULL, "close");
    free(row);
    return 0;
}
