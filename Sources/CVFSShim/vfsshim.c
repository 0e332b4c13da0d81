/*
 * vfsshim.c - the `replicated` VFS.
 *
 * Written in the style of SQLite's own shims (ext/misc/cksumvfs.c, vfstrace.c): our file
 * object starts with sqlite3_file and is followed by the parent's file object; files that are
 * not replicated databases (temp files, journals of other databases) pass straight through.
 *
 * The commit is captured at the release of the WAL write lock (xShmLock slot 0, UNLOCK), after
 * SQLite wrote, synced and published the commit frame (CAPTURE.md: never at the commit frame's
 * xWrite, because cache-spill rewrites can still change earlier frames). The frames between the
 * last captured position and the published mxFrame are re-read from the WAL, validated (salts,
 * checksum chain), appended to the spool with one pwritev and the shared state is updated. The
 * same reconciliation runs when the write lock is taken (to pick up the commit of a writer that
 * died between publishing and spooling) and before the closing checkpoint.
 */
#include "vfsshim.h"
#include "internal.h"
#include "sqlite_api.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* Shared state (mmap'ed by every process)                                                    */

#define VR_STATE_MAGIC 0x56525354u /* 'VRST' */
#define VR_STATE_VERSION 1u
#define VR_STATE_SIZE 4096
#define VR_SEGMENT_TARGET (16ull << 20) /* roll to a new segment past this size */
#define VR_SEGMENT_MIN (256ull << 10)   /* ... or past a quarter of spool-max-bytes, not below this */
#define VR_RECLAIM_ROTATE (1ull << 20)  /* a fully shipped segment past this size rolls over */
#define VR_SPARES 4                     /* shipped segments kept for reuse (spool/spare-K.seg) */
#define VR_RESERVE_MAX (1ull << 20)     /* spool space is preallocated in chunks of up to this */
#define VR_RESERVE_MIN (64ull << 10)
#define VR_COPY_BUFFER (1u << 20)       /* frames copied per pread/pwritev */

typedef struct VRState {
    uint32_t magic;
    uint32_t version;
    _Atomic uint32_t seq; /* seqlock: odd while a writer updates */
    uint32_t pageSize;
    uint64_t lastTxid;
    uint64_t appendSeg;
    uint64_t appendOff;
    uint32_t walValid;
    uint32_t walFrame;
    uint32_t walSalt1;
    uint32_t walSalt2;
    uint32_t walCk1;
    uint32_t walCk2;
    uint32_t commitPages;
    uint32_t cleanValid;
    int64_t lastCommitMs;
    uint64_t cleanIno;
    uint64_t cleanSize;
    int64_t cleanMtimeNs;
    uint64_t shippedTxid;
    uint64_t shippedSeg;
    uint64_t shippedOff;
    uint64_t syncSeg;
    uint64_t syncOff;
    uint64_t captures;
    uint64_t resets;
    uint64_t spoolSyncs;
    /* Remote durability (appended in a later version: zero in older state files). */
    _Atomic uint32_t workGen;  /* futex: bumped when an uploader has work (a commit waits, a flush) */
    _Atomic uint32_t shipGen;  /* futex: bumped when shippedTxid moves */
    _Atomic uint64_t waitTxid; /* highest TXID a committer waits to see durable */
    _Atomic uint64_t txidFloor; /* the next TXID is above this (the replica is ahead of the spool) */
    uint64_t lineageId;         /* random, identifies this database's writer in replica files */
    /* Disk space (appended in a later version: zero in older state files). */
    uint64_t spoolLimit;        /* spool-max-bytes as the last process set it (0: none) */
    uint32_t spoolGrow;         /* ... and its spool-full (1: grow) */
    uint32_t spoolErrno;        /* the spool cannot be written: why (0: it can) */
    int64_t spoolErrorMs;       /* since when */
    uint64_t spoolFailures;     /* spool writes or reservations that failed (all processes) */
    uint32_t captureBehind;     /* 1: committed transactions are in the WAL but not yet spooled */
    uint32_t unused1;
    int64_t overLimitMs;        /* spool-full: grow went past spool-max-bytes then (0: within it) */
    uint64_t allocSeg;          /* bytes [appendOff, allocEnd) of segment allocSeg are preallocated */
    uint64_t allocEnd;
    /* Wake-up (appended in a later version: zero in older state files). */
    _Atomic uint32_t uploaderIdle; /* 1: the uploader sleeps until a commit wakes it (vr_db_idle_wait) */
} VRState;

_Static_assert(sizeof(VRState) <= VR_STATE_SIZE, "state fits its page");
_Static_assert(sizeof(vr_rec_header) == 64, "spool record header is 64 bytes");

struct vr_db {
    struct vr_db *pNext;
    char *zPath;  /* canonical database path */
    char *zDir;   /* X-vfsrepl */
    int stateFd;
    VRState *pState;
    int lockFd;   /* uploader.lock, -1 unless elected */
    /* Used only while holding the WAL write lock (or the closing checkpoint's exclusive lock),
     * which serializes every connection of every process on this database. */
    int segFd;
    uint64_t segNo;
    unsigned char *aBuf;
    /* The WAL bytes this process wrote while holding the write lock (frames of the current
     * transaction, spill rewrites included), so the commit is usually captured without reading
     * the WAL back. Reset whenever the write lock is taken or released. */
    unsigned char *aStage;
    int64_t stageStart, stageEnd;
    unsigned char walHdr[32]; /* the WAL header as this process last wrote it */
    int walHdrValid;
    /* Spool bound (0: none): at the bound, new write transactions get SQLITE_BUSY (so the app's
     * busy handler waits for the uploader to drain it) or, with spoolGrow, go on with a warning. */
    uint64_t spoolMax;
    int spoolGrow;
    int64_t lastSpoolWarnMs;
    int64_t lastTroubleWarnMs;
    int lastErrno;            /* errno of the last failed spool write, open or reservation */
    int noFallocate;          /* the filesystem cannot preallocate: space is not reserved */
    /* While holding the write lock: where this transaction's frames start in the WAL, and the
     * spool space they need (reserved as the WAL grows, before SQLite writes a frame). */
    int64_t txWalBase;
    int remote;               /* durability: remote (output gate at COMMIT_PHASETWO) */
    int64_t remoteTimeoutMs;
    /* Process-local (see vr_db_set_base_pending): main-file handles the host's connections have
     * open, whether this process's uploader still has to ship the database's base snapshot, and
     * whether a last close already waited for it in vain. */
    atomic_int hostOpens;
    atomic_int baseNeeded;
    atomic_ullong baseIdleTxid; /* UINT64_MAX: none */
    atomic_int closeWaitSpent;
};

#define VR_STAGE_SIZE (VR_COPY_BUFFER + 65536 + 64)

static pthread_mutex_t gMutex = PTHREAD_MUTEX_INITIALIZER;
static vr_db *gDbs = NULL;
static vr_stats gStats;

/* ------------------------------------------------------------------------------------------ */
/* fork() (vfsshim.h). The child handler runs in the only thread the child has, before fork()
 * returns there: it calls only close() and re-initializes the mutexes the prepare handler took
 * (a recursive mutex cannot be unlocked in the child: its owner's thread id changed). */

static pthread_mutex_t gProcessMutex = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static uint32_t gForkGen;
static int gForkPending; /* a child in which the fork hook has not run yet */
static void (*gForkHook)(void);
static pthread_once_t gForkOnce = PTHREAD_ONCE_INIT;
/* Read-held while an uploader has SQLite connections open; fork() takes it exclusively first (an
 * uploader holding it may still take gMutex, opening through the VFS). */
static pthread_rwlock_t gSqlHold = PTHREAD_RWLOCK_INITIALIZER;

static void forkPrepare(void) {
    pthread_rwlock_wrlock(&gSqlHold);
    pthread_mutex_lock(&gProcessMutex);
    pthread_mutex_lock(&gMutex);
}
static void forkParent(void) {
    pthread_mutex_unlock(&gMutex);
    pthread_mutex_unlock(&gProcessMutex);
    pthread_rwlock_unlock(&gSqlHold);
}
static void forkChild(void) {
    for (vr_db *p = gDbs; p; p = p->pNext) {
        if (p->lockFd >= 0) {
            close(p->lockFd); /* never LOCK_UN: that would release the parent's lock */
            p->lockFd = -1;
        }
    }
    __atomic_add_fetch(&gForkGen, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&gForkPending, 1, __ATOMIC_RELEASE);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&gProcessMutex, &attr);
    pthread_mutexattr_destroy(&attr);
    pthread_mutex_init(&gMutex, NULL);
    pthread_rwlock_init(&gSqlHold, NULL);
}
static void forkInstall(void) { pthread_atfork(forkPrepare, forkParent, forkChild); }

uint32_t vr_fork_generation(void) {
    pthread_once(&gForkOnce, forkInstall);
    return __atomic_load_n(&gForkGen, __ATOMIC_ACQUIRE);
}
void vr_set_fork_hook(void (*hook)(void)) {
    pthread_once(&gForkOnce, forkInstall);
    __atomic_store_n(&gForkHook, hook, __ATOMIC_RELEASE);
}
void vr_process_lock(void) {
    pthread_once(&gForkOnce, forkInstall);
    pthread_mutex_lock(&gProcessMutex);
}
void vr_process_unlock(void) { pthread_mutex_unlock(&gProcessMutex); }
/* Counts this thread's vr_fork_hold brackets: connections opened inside one are the
 * uploader's own, never a host's (vrOpen, vrClose). */
static __thread int tUploaderSql;
void vr_fork_hold_begin(void) {
    pthread_once(&gForkOnce, forkInstall);
    pthread_rwlock_rdlock(&gSqlHold);
    tUploaderSql++;
}
void vr_fork_hold_end(void) {
    tUploaderSql--;
    pthread_rwlock_unlock(&gSqlHold);
}

/* ------------------------------------------------------------------------------------------ */
/* Process exit (vfsshim.h). Once exit() runs, the host's main() has returned and whatever its
 * SQLite log callback points at may be gone (the sqlite3 CLI's lives in main()'s frame): from
 * then on the shim logs nothing and the library opens no SQLite connection. */

static atomic_int gExiting;
static atomic_llong gCloseWaitMs;

void vr_process_exit_begin(void) { atomic_store(&gExiting, 1); }
int vr_process_exiting(void) { return atomic_load_explicit(&gExiting, memory_order_relaxed); }
void vr_set_close_wait(int64_t ms) { atomic_store(&gCloseWaitMs, ms > 0 ? ms : 0); }

/* In a child that has not restarted its uploaders yet, lets the library do it (a plain load
 * otherwise). */
static void forkCheck(void) {
    if (__builtin_expect(__atomic_load_n(&gForkPending, __ATOMIC_RELAXED), 0) &&
        __atomic_exchange_n(&gForkPending, 0, __ATOMIC_ACQ_REL)) {
        void (*hook)(void) = __atomic_load_n(&gForkHook, __ATOMIC_ACQUIRE);
        if (hook) hook();
    }
}

static uint64_t nextTxid(VRState *s) {
    uint64_t floor = atomic_load(&s->txidFloor);
    return (s->lastTxid > floor ? s->lastTxid : floor) + 1;
}

/* Seqlock: odd while an update is in progress. Set parities explicitly (never toggle), so an
 * update cut short by kill -9 cannot leave the counter inverted for every later reader. */
static void stateBegin(VRState *s) {
    uint32_t v = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, v | 1u, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
}
static void stateEnd(VRState *s) {
    atomic_thread_fence(memory_order_seq_cst);
    uint32_t v = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, (v | 1u) + 1u, memory_order_release);
}

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                              */

static uint32_t get4(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int64_t nowMs(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Canonical path: realpath of the directory + the last component (the file may not exist). */
static char *canonicalPath(const char *zPath) {
    char dir[PATH_MAX], real[PATH_MAX];
    const char *slash = strrchr(zPath, '/');
    const char *base = slash ? slash + 1 : zPath;
    if (slash) {
        size_t n = (size_t)(slash - zPath);
        if (n == 0) n = 1; /* "/x" */
        if (n >= sizeof(dir)) return NULL;
        memcpy(dir, zPath, n);
        dir[n] = 0;
    } else {
        strcpy(dir, ".");
    }
    if (!realpath(dir, real)) return NULL;
    size_t need = strlen(real) + 1 + strlen(base) + 1;
    char *out = malloc(need);
    if (!out) return NULL;
    if (strcmp(real, "/") == 0) snprintf(out, need, "/%s", base);
    else snprintf(out, need, "%s/%s", real, base);
    return out;
}

void vr_wal_checksum(int bigEndian, const void *data, size_t n, uint32_t *s) {
    uint32_t s1 = s[0], s2 = s[1];
    const uint32_t *x = (const uint32_t *)data;
    const uint32_t *end = x + n / 4;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    int native = !bigEndian;
#else
    int native = bigEndian;
#endif
    if (native) {
        while (x < end) {
            s1 += x[0] + s2;
            s2 += x[1] + s1;
            x += 2;
        }
    } else {
        while (x < end) {
            s1 += __builtin_bswap32(x[0]) + s2;
            s2 += __builtin_bswap32(x[1]) + s1;
            x += 2;
        }
    }
    s[0] = s1;
    s[1] = s2;
}

static uint32_t crcTable[256];
static pthread_once_t crcOnce = PTHREAD_ONCE_INIT;
static void crcInit(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crcTable[i] = c;
    }
}
uint32_t vr_crc32c(uint32_t crc, const void *data, size_t n) {
    pthread_once(&crcOnce, crcInit);
    const unsigned char *p = data;
    crc = ~crc;
    while (n--) crc = crcTable[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint32_t recCrc(const vr_rec_header *h, uint64_t segment) {
    return vr_crc32c(vr_crc32c(0, &segment, sizeof segment), h, offsetof(vr_rec_header, hdrCrc));
}

/* Seals a record of segment `segment` (see vr_rec_valid). */
static void sealHeader(vr_rec_header *h, uint64_t segment) {
    h->magic = VR_REC_MAGIC2;
    h->hdrCrc = recCrc(h, segment);
}

int vr_rec_valid(const vr_rec_header *h, uint64_t segment) {
    if (h->magic == VR_REC_MAGIC2) return h->hdrCrc == recCrc(h, segment);
    if (h->magic == VR_REC_MAGIC) return h->hdrCrc == vr_crc32c(0, h, offsetof(vr_rec_header, hdrCrc));
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Database registry and state                                                                 */

static int openState(vr_db *db, char *err, size_t errLen) {
    char path[PATH_MAX];
    if (mkdir(db->zDir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errLen, "cannot create spool directory %s: %s", db->zDir, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/spool", db->zDir);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errLen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/state", db->zDir);
    int fd = vr_sys_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errLen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    /* flock serializes initialization between processes opening at the same time. */
    while (flock(fd, LOCK_EX) != 0 && errno == EINTR) {}
    struct stat st;
    if (fstat(fd, &st) != 0 || (st.st_size < VR_STATE_SIZE && ftruncate(fd, VR_STATE_SIZE) != 0)) {
        snprintf(err, errLen, "cannot size %s: %s", path, strerror(errno));
        flock(fd, LOCK_UN);
        close(fd);
        return -1;
    }
    void *p = mmap(NULL, VR_STATE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        snprintf(err, errLen, "cannot map %s: %s", path, strerror(errno));
        flock(fd, LOCK_UN);
        close(fd);
        return -1;
    }
    VRState *s = p;
    if (s->magic == 0) {
        memset(s, 0, sizeof *s);
        s->version = VR_STATE_VERSION;
        s->appendSeg = 1;
        s->shippedSeg = 1;
        s->syncSeg = 1;
        s->magic = VR_STATE_MAGIC;
        fsync(fd);
    } else if (s->magic != VR_STATE_MAGIC || s->version != VR_STATE_VERSION) {
        snprintf(err, errLen, "%s is not a VFSReplication state file (version %u)", path, s->version);
        munmap(p, VR_STATE_SIZE);
        flock(fd, LOCK_UN);
        close(fd);
        return -1;
    }
    if (s->lineageId == 0) {
        uint64_t id = 0;
        int rfd = vr_sys_open("/dev/urandom", O_RDONLY | O_CLOEXEC, 0);
        if (rfd >= 0) {
            if (read(rfd, &id, sizeof id) != (ssize_t)sizeof id) id = 0;
            close(rfd);
        }
        if (id == 0) id = ((uint64_t)getpid() << 32) ^ (uint64_t)nowMs() ^ (uint64_t)(uintptr_t)s;
        s->lineageId = id | 1; /* never 0: Litestream's files carry 0 */
        fsync(fd);
    }
    flock(fd, LOCK_UN);
    db->stateFd = fd;
    db->pState = s;
    return 0;
}

int vr_db_register(const char *zPath, char *err, size_t errLen) {
    pthread_once(&gForkOnce, forkInstall);
    char *canon = canonicalPath(zPath);
    if (!canon) {
        snprintf(err, errLen, "database %s: its directory does not exist (%s)", zPath, strerror(errno));
        return SQLITE_CANTOPEN;
    }
    pthread_mutex_lock(&gMutex);
    for (vr_db *p = gDbs; p; p = p->pNext) {
        if (strcmp(p->zPath, canon) == 0) {
            pthread_mutex_unlock(&gMutex);
            free(canon);
            return SQLITE_OK;
        }
    }
    vr_db *db = calloc(1, sizeof *db);
    size_t n = strlen(canon) + 16;
    db->zDir = malloc(n);
    db->aBuf = malloc(VR_COPY_BUFFER + 65536 + 64);
    db->aStage = malloc(VR_STAGE_SIZE);
    if (!db->zDir || !db->aBuf || !db->aStage) {
        free(db->aStage);
        pthread_mutex_unlock(&gMutex);
        free(db->zDir);
        free(db->aBuf);
        free(db);
        free(canon);
        snprintf(err, errLen, "out of memory");
        return SQLITE_NOMEM;
    }
    snprintf(db->zDir, n, "%s-vfsrepl", canon);
    db->zPath = canon;
    db->segFd = -1;
    db->lockFd = -1;
    if (openState(db, err, errLen) != 0) {
        pthread_mutex_unlock(&gMutex);
        free(db->aStage);
        free(db->zDir);
        free(db->aBuf);
        free(db);
        free(canon);
        return SQLITE_CANTOPEN;
    }
    db->pNext = gDbs;
    gDbs = db;
    pthread_mutex_unlock(&gMutex);
    return SQLITE_OK;
}

static vr_db *lookupCanonical(const char *canon) {
    pthread_mutex_lock(&gMutex);
    vr_db *p = gDbs;
    while (p && strcmp(p->zPath, canon) != 0) p = p->pNext;
    pthread_mutex_unlock(&gMutex);
    return p;
}

vr_db *vr_db_lookup(const char *zPath) {
    char *canon = canonicalPath(zPath);
    if (!canon) return NULL;
    vr_db *p = lookupCanonical(canon);
    free(canon);
    return p;
}

const char *vr_db_path(vr_db *db) { return db->zPath; }
const char *vr_db_state_dir(vr_db *db) { return db->zDir; }

void vr_db_read_state(vr_db *db, vr_state_view *o) {
    VRState *s = db->pState;
    for (int spins = 0;; spins++) {
        uint32_t a = atomic_load_explicit(&s->seq, memory_order_acquire);
        /* An update takes microseconds; one still "in progress" after this long belongs to a
         * process that died in it: read what is there rather than wait forever. */
        int stale = spins > 20000;
        if ((a & 1) && !stale) {
            sched_yield();
            continue;
        }
        o->lastTxid = s->lastTxid;
        o->appendSeg = s->appendSeg;
        o->appendOff = s->appendOff;
        o->shippedTxid = s->shippedTxid;
        o->shippedSeg = s->shippedSeg;
        o->shippedOff = s->shippedOff;
        o->syncSeg = s->syncSeg;
        o->syncOff = s->syncOff;
        o->pageSize = s->pageSize;
        o->commitPages = s->commitPages;
        o->lastCommitMs = s->lastCommitMs;
        o->walValid = s->walValid;
        o->walFrame = s->walFrame;
        o->walSalt1 = s->walSalt1;
        o->walSalt2 = s->walSalt2;
        o->captures = s->captures;
        o->resets = s->resets;
        o->spoolSyncs = s->spoolSyncs;
        o->lineageId = s->lineageId;
        o->spoolLimit = s->spoolLimit;
        o->spoolGrow = s->spoolGrow;
        o->spoolErrno = s->spoolErrno;
        o->spoolErrorMs = s->spoolErrorMs;
        o->spoolFailures = s->spoolFailures;
        o->captureBehind = s->captureBehind;
        o->overLimitMs = s->overLimitMs;
        o->reservedBytes = s->allocSeg == s->appendSeg && s->allocEnd > s->appendOff ? s->allocEnd - s->appendOff : 0;
        o->cleanValid = s->cleanValid;
        o->cleanIno = s->cleanIno;
        o->cleanSize = s->cleanSize;
        o->cleanMtimeNs = s->cleanMtimeNs;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->seq, memory_order_acquire) == a || stale) return;
    }
}

int vr_state_read_file(const char *stateDir, vr_state_view *o) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/state", stateDir);
    int fd = vr_sys_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < VR_STATE_SIZE) {
        close(fd);
        return EINVAL;
    }
    void *p = mmap(NULL, VR_STATE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return errno;
    VRState *s = p;
    if (s->magic != VR_STATE_MAGIC || s->version != VR_STATE_VERSION) {
        munmap(p, VR_STATE_SIZE);
        return EINVAL;
    }
    vr_db fake;
    memset(&fake, 0, sizeof fake);
    fake.pState = s;
    vr_db_read_state(&fake, o);
    munmap(p, VR_STATE_SIZE);
    return 0;
}

/* Shared futexes on the state mapping (no FUTEX_PRIVATE_FLAG: waiters are in other processes). */
static void futexWake(_Atomic uint32_t *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}
static void futexWait(_Atomic uint32_t *addr, uint32_t expected, int64_t timeoutMs) {
    if (timeoutMs <= 0) return;
    struct timespec ts = {.tv_sec = timeoutMs / 1000, .tv_nsec = (timeoutMs % 1000) * 1000000};
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, expected, &ts, NULL, 0);
}

void vr_db_set_shipped(vr_db *db, uint64_t txid, uint64_t seg, uint64_t off) {
    VRState *s = db->pState;
    stateBegin(s);
    s->shippedTxid = txid;
    s->shippedSeg = seg;
    s->shippedOff = off;
    stateEnd(s);
    atomic_fetch_add(&s->shipGen, 1);
    futexWake(&s->shipGen);
}

/* Called after a transaction or marker is published: wakes the uploader if it sleeps with
 * nothing to do. One futex call per idle period (the first commit after it), none while the
 * uploader has a batch open. The fence pairs with the one in vr_db_idle_wait: either the
 * committer sees the flag or the uploader sees the new TXID, never neither. */
static void wakeIdleUploader(VRState *s) {
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&s->uploaderIdle, memory_order_relaxed) && atomic_exchange(&s->uploaderIdle, 0)) {
        atomic_fetch_add(&s->workGen, 1);
        futexWake(&s->workGen);
    }
}

void vr_db_idle_wait(vr_db *db, uint32_t gen, uint64_t seenTxid, int64_t timeoutMs) {
    VRState *s = db->pState;
    atomic_store(&s->uploaderIdle, 1);
    atomic_thread_fence(memory_order_seq_cst);
    vr_state_view v;
    vr_db_read_state(db, &v);
    if (v.lastTxid == seenTxid) futexWait(&s->workGen, gen, timeoutMs);
    atomic_store(&s->uploaderIdle, 0);
}

uint32_t vr_db_work_gen(vr_db *db) { return atomic_load(&db->pState->workGen); }

void vr_db_wait_work(vr_db *db, uint32_t gen, int64_t timeoutMs) { futexWait(&db->pState->workGen, gen, timeoutMs); }

void vr_db_kick(vr_db *db) {
    atomic_fetch_add(&db->pState->workGen, 1);
    futexWake(&db->pState->workGen);
}

uint64_t vr_db_wait_txid(vr_db *db) { return atomic_load(&db->pState->waitTxid); }

void vr_db_set_base_pending(vr_db *db, int needed, uint64_t idleAtTxid) {
    atomic_store(&db->baseIdleTxid, idleAtTxid);
    atomic_store(&db->baseNeeded, needed ? 1 : 0);
}

static int basePending(vr_db *db) {
    if (!atomic_load(&db->baseNeeded)) return 0;
    uint64_t idle = atomic_load(&db->baseIdleTxid);
    return idle == UINT64_MAX || __atomic_load_n(&db->pState->lastTxid, __ATOMIC_ACQUIRE) != idle;
}

/* The host's last connection to the database is closing (vrClose): the process may exit next,
 * when its uploader can no longer use SQLite. If the base snapshot is still to be shipped, wait
 * for it here, where SQLite still works, bounded by vr_set_close_wait; once per process: a close
 * that waited in vain (a replica down) does not make the next one wait again. */
static void waitForBaseAtLastClose(vr_db *db) {
    int64_t bound = atomic_load(&gCloseWaitMs);
    if (bound <= 0 || vr_process_exiting() || !basePending(db) || atomic_load(&db->closeWaitSpent)) return;
    int64_t deadline = nowMs() + bound;
    while (basePending(db)) {
        if (nowMs() >= deadline) {
            atomic_store(&db->closeWaitSpent, 1);
            return;
        }
        vr_db_kick(db);
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void vr_db_request_ship(vr_db *db, uint64_t txid) {
    VRState *s = db->pState;
    uint64_t cur = atomic_load(&s->waitTxid);
    while (cur < txid && !atomic_compare_exchange_weak(&s->waitTxid, &cur, txid)) {}
    vr_db_kick(db);
}

void vr_db_raise_txid_floor(vr_db *db, uint64_t floor) {
    VRState *s = db->pState;
    uint64_t cur = atomic_load(&s->txidFloor);
    while (cur < floor && !atomic_compare_exchange_weak(&s->txidFloor, &cur, floor)) {}
}

void vr_db_set_durability(vr_db *db, int remote, int64_t timeoutMs) {
    db->remote = remote;
    db->remoteTimeoutMs = timeoutMs > 0 ? timeoutMs : 10000;
}

/* Output gate: the commit is visible locally and the write lock is released; the committing
 * call waits here until the uploader (any process) reports it durable, or the timeout. */
static int waitDurable(vr_db *db, uint64_t target) {
    VRState *s = db->pState;
    uint64_t cur = atomic_load(&s->waitTxid);
    while (cur < target && !atomic_compare_exchange_weak(&s->waitTxid, &cur, target)) {}
    vr_db_kick(db);
    int64_t deadline = nowMs() + db->remoteTimeoutMs;
    for (;;) {
        uint32_t g = atomic_load(&s->shipGen);
        vr_state_view v;
        vr_db_read_state(db, &v);
        if (v.shippedTxid >= target) return 1;
        int64_t left = deadline - nowMs();
        if (left <= 0) return 0;
        futexWait(&s->shipGen, g, left < 100 ? left : 100);
    }
}

void vr_db_set_spool_limit(vr_db *db, uint64_t maxBytes, int grow) {
    db->spoolMax = maxBytes;
    db->spoolGrow = grow;
    /* In the shared state too, so that vfs-status (any process) judges against it. */
    VRState *s = db->pState;
    stateBegin(s);
    s->spoolLimit = maxBytes;
    s->spoolGrow = grow ? 1 : 0;
    stateEnd(s);
}

int vr_spool_punch(const char *path, uint64_t from, uint64_t to) {
    from = (from + 4095) & ~4095ull;
    to &= ~4095ull;
    if (to <= from) return 0;
    int fd = vr_sys_open(path, O_WRONLY | O_CLOEXEC, 0);
    if (fd < 0) return errno;
    int rc = 0;
    while (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(to - from)) != 0) {
        if (errno == EINTR) continue;
        rc = errno;
        break;
    }
    close(fd);
    return rc;
}

uint64_t vr_db_spool_pending(vr_db *db) {
    VRState *s = db->pState;
    uint64_t aSeg = s->appendSeg, aOff = s->appendOff, sSeg = s->shippedSeg, sOff = s->shippedOff;
    if (aSeg < sSeg || (aSeg == sSeg && aOff < sOff)) return 0;
    if (aSeg == sSeg) return aOff - sOff;
    uint64_t total = aOff;
    char path[PATH_MAX];
    for (uint64_t seg = sSeg; seg < aSeg; seg++) {
        struct stat st;
        vr_db_segment_path(db, seg, path, sizeof path);
        uint64_t size = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
        total += seg == sSeg ? (size > sOff ? size - sOff : 0) : size;
    }
    return total;
}

int vr_db_adopt(vr_db *db, uint64_t txid, uint64_t ino, uint64_t size, int64_t mtimeNs) {
    VRState *s = db->pState;
    /* A descriptor of its own: flock locks belong to open file descriptions, and stateFd's is
     * shared with every process forked from this one (the lock would not exclude them). */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/state", db->zDir);
    int lfd = vr_sys_open(path, O_RDWR | O_CLOEXEC, 0);
    if (lfd < 0) return 0;
    while (flock(lfd, LOCK_EX) != 0 && errno == EINTR) {}
    int adopted = 0;
    if (s->lastTxid == 0 && s->appendOff == 0 && s->appendSeg == 1) {
        stateBegin(s);
        s->lastTxid = txid;
        s->shippedTxid = txid;
        s->walValid = 1;
        s->walFrame = 0;
        s->walSalt1 = 0;
        s->walSalt2 = 0;
        s->cleanValid = 1;
        s->cleanIno = ino;
        s->cleanSize = size;
        s->cleanMtimeNs = mtimeNs;
        stateEnd(s);
        fsync(db->stateFd);
        adopted = 1;
    }
    close(lfd);
    return adopted;
}

void vr_db_segment_path(vr_db *db, uint64_t seg, char *buf, size_t len) {
    snprintf(buf, len, "%s/spool/%016llx.seg", db->zDir, (unsigned long long)seg);
}

static void spareSegmentPath(vr_db *db, int k, char *buf, size_t len) {
    snprintf(buf, len, "%s/spool/spare-%d.seg", db->zDir, k);
}

int vr_db_add_spare(vr_db *db, uint64_t seg) {
    char from[PATH_MAX], to[PATH_MAX];
    vr_db_segment_path(db, seg, from, sizeof from);
    for (int k = 1; k <= VR_SPARES; k++) {
        spareSegmentPath(db, k, to, sizeof to);
        if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) return 1;
        if (errno != EEXIST) return 0;
    }
    return 0;
}

void vr_db_drop_spares(vr_db *db) {
    char path[PATH_MAX];
    for (int k = 1; k <= VR_SPARES; k++) {
        spareSegmentPath(db, k, path, sizeof path);
        (void)unlink(path);
    }
}

int vr_db_sync_spool(vr_db *db) {
    VRState *s = db->pState;
    uint64_t endSeg = s->appendSeg, endOff = s->appendOff;
    uint64_t from = s->syncSeg;
    if (from == endSeg && s->syncOff == endOff) return 0;
    char path[PATH_MAX];
    for (uint64_t seg = from; seg <= endSeg; seg++) {
        int fd;
        int own = 0;
        if (seg == db->segNo && db->segFd >= 0) {
            fd = db->segFd;
        } else {
            vr_db_segment_path(db, seg, path, sizeof path);
            fd = vr_sys_open(path, O_RDONLY | O_CLOEXEC, 0);
            if (fd < 0) {
                if (errno == ENOENT) continue; /* already shipped and trimmed */
                return errno;
            }
            own = 1;
        }
        int rc = vr_sys_fsync(fd);
        if (own) close(fd);
        if (rc != 0) return rc;
    }
    if (vr_sys_fsync(db->stateFd) != 0) return errno;
    stateBegin(s);
    s->syncSeg = endSeg;
    s->syncOff = endOff;
    s->spoolSyncs++;
    stateEnd(s);
    return 0;
}

int vr_db_try_elect(vr_db *db) {
    pthread_mutex_lock(&gMutex);
    if (db->lockFd >= 0) {
        pthread_mutex_unlock(&gMutex);
        return 1;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/uploader.lock", db->zDir);
    int fd = vr_sys_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        pthread_mutex_unlock(&gMutex);
        return 0;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        pthread_mutex_unlock(&gMutex);
        return 0;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) == 0) (void)!pwrite(fd, pid, (size_t)n, 0);
    db->lockFd = fd;
    pthread_mutex_unlock(&gMutex);
    return 1;
}

void vr_db_resign(vr_db *db) {
    pthread_mutex_lock(&gMutex);
    if (db->lockFd >= 0) {
        flock(db->lockFd, LOCK_UN);
        close(db->lockFd);
        db->lockFd = -1;
    }
    pthread_mutex_unlock(&gMutex);
}

void vr_get_stats(vr_stats *out) {
    pthread_mutex_lock(&gMutex);
    *out = gStats;
    pthread_mutex_unlock(&gMutex);
}

static void statAdd(uint64_t *field, uint64_t n) { __atomic_fetch_add(field, n, __ATOMIC_RELAXED); }

/* ------------------------------------------------------------------------------------------ */
/* The VFS                                                                                    */

/* SQLite's wal-index header (src/wal.c WalIndexHdr), native byte order, in shm region 0. */
typedef struct WalIdxHdr {
    uint32_t iVersion;
    uint32_t unused;
    uint32_t iChange;
    uint8_t isInit;
    uint8_t bigEndCksum;
    uint16_t szPage;
    uint32_t mxFrame;
    uint32_t nPage;
    uint32_t aFrameCksum[2];
    uint32_t aSalt[2]; /* raw bytes from the WAL header */
    uint32_t aCksum[2];
} WalIdxHdr;
_Static_assert(sizeof(WalIdxHdr) == 48, "wal-index header is 48 bytes");

typedef struct VRFile VRFile;
struct VRFile {
    sqlite3_file base;     /* must be first */
    vr_db *pDb;            /* replicated database (main db and its WAL); NULL: pass-through */
    int isWal;
    VRFile *pMain;         /* WAL: its main database file */
    VRFile *pWal;          /* main db: its WAL file while open */
    volatile void *pShm0;  /* main db: wal-index region 0 as mapped by this connection */
    int lockLevel;         /* main db: current SQLite lock level */
    int holdsWrite;        /* main db: holds the WAL write lock */
    int inCkpt;            /* main db: between CKPT_START and CKPT_DONE */
    int isSnapReader;      /* main db: an uploader's snapshot connection (VR_FCNTL_SNAPSHOT_READER) */
    int snapValid;         /* the wal-index header seen when its read lock was last taken */
    int snapSlot;          /* which read mark (0: main file only) */
    WalIdxHdr snapHdr;
    uint64_t lastCommitTxid;  /* the TXID this connection last committed */
    int walSwitch;            /* main db: a PRAGMA journal_mode=WAL may take RESERVED (rollback mode) */
    uint64_t gateTxid;        /* the last commit the output gate waited for */
    int gateDurable;          /* ... and whether it was confirmed durable in time */
    int hostOpen;             /* main db: a host's connection (not the uploader's), counted in hostOpens */
    sqlite3_file *pReal;   /* parent's file object, right after this struct */
};

#define ORIGFILE(p) (((VRFile *)(p))->pReal)

static sqlite3_vfs gVfs;
static sqlite3_vfs *gParent;
static sqlite3_io_methods gMethods;

static void vrLog(int rc, const char *fmt, const char *a, const char *b) {
    sqlite3_log(rc, fmt, a, b);
}

/* Reads the wal-index header (copy 1) as published; returns 0 if both copies agree. */

static int readIdxHdr(VRFile *f, WalIdxHdr *h, uint32_t *nBackfill) {
    if (!f->pShm0) return -1;
    const volatile unsigned char *p = f->pShm0;
    WalIdxHdr h2;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    memcpy(h, (const void *)p, sizeof *h);
    memcpy(&h2, (const void *)(p + 48), sizeof h2);
    if (nBackfill) memcpy(nBackfill, (const void *)(p + 96), 4);
    if (memcmp(h, &h2, sizeof h2) != 0 || !h->isInit) return -1;
    return 0;
}

static uint32_t saltBE(uint32_t raw) { return get4((const unsigned char *)&raw); }

/* Appends records to the current segment; returns 0 or errno. */
static int spoolOpenSegment(vr_db *db) {
    VRState *s = db->pState;
    if (db->segFd >= 0 && db->segNo == s->appendSeg) return 0;
    if (db->segFd >= 0) close(db->segFd);
    db->segFd = -1;
    char path[PATH_MAX];
    vr_db_segment_path(db, s->appendSeg, path, sizeof path);
    int fd = vr_sys_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return db->lastErrno = errno;
    db->segFd = fd;
    db->segNo = s->appendSeg;
    return 0;
}

static int spoolWritev(vr_db *db, struct iovec *iov, int n, uint64_t off) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += iov[i].iov_len;
    while (total > 0) {
        ssize_t w = pwritev(db->segFd, iov, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return db->lastErrno = errno;
        }
        total -= (size_t)w;
        off += (uint64_t)w;
        while (n > 0 && (size_t)w >= iov[0].iov_len) {
            w -= (ssize_t)iov[0].iov_len;
            iov++;
            n--;
        }
        if (n > 0 && w > 0) {
            iov[0].iov_base = (char *)iov[0].iov_base + w;
            iov[0].iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Writes a marker record (RESET or SNAPSHOT) and commits it to the state. Caller holds the
 * write lock. */
static int spoolMarker(vr_db *db, uint32_t kind, uint64_t txid, const WalIdxHdr *h, uint32_t pageSize,
                       uint32_t commitPages) {
    VRState *s = db->pState;
    int rc = spoolOpenSegment(db);
    if (rc) return rc;
    vr_rec_header r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    r.txid = txid;
    r.pageSize = pageSize;
    r.walFrame = h ? h->mxFrame : 0;
    r.salt1 = h ? saltBE(h->aSalt[0]) : 0;
    r.salt2 = h ? saltBE(h->aSalt[1]) : 0;
    r.ck1 = h ? h->aFrameCksum[0] : 0;
    r.ck2 = h ? h->aFrameCksum[1] : 0;
    r.commitPages = commitPages;
    r.timestampMs = nowMs();
    sealHeader(&r, s->appendSeg);
    struct iovec iov = {.iov_base = &r, .iov_len = sizeof r};
    rc = spoolWritev(db, &iov, 1, s->appendOff);
    if (rc) return rc;
    stateBegin(s);
    s->appendOff += sizeof r;
    s->lastTxid = txid;
    if (h) {
        s->walValid = 1;
        s->walFrame = h->mxFrame;
        memcpy(&s->walSalt1, &h->aSalt[0], 4);
        memcpy(&s->walSalt2, &h->aSalt[1], 4);
        s->walCk1 = h->aFrameCksum[0];
        s->walCk2 = h->aFrameCksum[1];
    }
    s->commitPages = commitPages;
    if (pageSize) s->pageSize = pageSize;
    s->lastCommitMs = r.timestampMs;
    s->cleanValid = 0;
    if (kind == VR_REC_RESET) s->resets++;
    stateEnd(s);
    wakeIdleUploader(s);
    return 0;
}

/* Database size in pages from the main file when the WAL is empty. */
static uint32_t mainFilePages(VRFile *f, uint32_t pageSize) {
    unsigned char hdr[100];
    sqlite3_file *p = ORIGFILE(f);
    if (p->pMethods->xRead(p, hdr, 100, 0) != SQLITE_OK) return 0;
    uint32_t ps = ((uint32_t)hdr[16] << 8) | hdr[17];
    if (ps == 1) ps = 65536;
    if (pageSize == 0) pageSize = ps;
    uint32_t nHdr = get4(hdr + 28);
    if (nHdr > 0 && get4(hdr + 24) == get4(hdr + 92)) return nHdr;
    sqlite3_int64 sz = 0;
    if (p->pMethods->xFileSize(p, &sz) != SQLITE_OK || pageSize == 0) return 0;
    return (uint32_t)(sz / pageSize);
}

static int cleanCloseMatches(vr_db *db) {
    VRState *s = db->pState;
    if (!s->cleanValid) return 0;
    struct stat st;
    if (stat(db->zPath, &st) != 0) return 0;
    int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return (uint64_t)st.st_ino == s->cleanIno && (uint64_t)st.st_size == s->cleanSize && mt == s->cleanMtimeNs;
}

static void recordCleanClose(vr_db *db) {
    VRState *s = db->pState;
    struct stat st;
    if (stat(db->zPath, &st) != 0) return;
    stateBegin(s);
    s->cleanIno = (uint64_t)st.st_ino;
    s->cleanSize = (uint64_t)st.st_size;
    s->cleanMtimeNs = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    s->cleanValid = 1;
    s->walValid = 1;
    s->walFrame = 0;
    s->walSalt1 = 0;
    s->walSalt2 = 0;
    stateEnd(s);
}

static int resetLineage(vr_db *db, VRFile *f, const WalIdxHdr *h, const char *why) {
    VRState *s = db->pState;
    uint32_t pageSize = h->szPage == 1 ? 65536 : h->szPage;
    uint32_t pages = h->mxFrame ? h->nPage : mainFilePages(f, pageSize);
    if (pageSize == 0) pageSize = s->pageSize;
    sqlite3_log(SQLITE_NOTICE, "vfsreplication: %s: %s; the next shipment is a snapshot", db->zPath, why);
    statAdd(&gStats.resets, 1);
    return spoolMarker(db, VR_REC_RESET, nextTxid(s), h, pageSize, pages);
}

/* Copies WAL frames [first, h->mxFrame] into the spool as committed transactions.
 * seed: checksum chain value before `first`. */
static int captureFrames(vr_db *db, VRFile *f, const WalIdxHdr *h, uint32_t first, uint32_t seed1,
                         uint32_t seed2, uint32_t pageSize, int bigEnd) {
    VRState *s = db->pState;
    sqlite3_file *wal = ORIGFILE(f->pWal);
    const uint32_t frameSize = 24 + pageSize;
    uint32_t perChunk = VR_COPY_BUFFER / frameSize;
    if (perChunk == 0) perChunk = 1;
    unsigned char salts[8];
    memcpy(salts, &h->aSalt[0], 8);

    int rc = spoolOpenSegment(db);
    if (rc) return SQLITE_IOERR_WRITE;
    uint64_t off = s->appendOff;
    uint64_t txid = nextTxid(s);
    uint32_t ck[2] = {seed1, seed2};
    uint32_t txFirst = first, txFrames = 0;
    uint64_t nCommits = 0, nFrames = 0;

    enum { MAXIOV = 64 };
    vr_rec_header hdrs[MAXIOV / 2];
    struct iovec iov[MAXIOV];

    /* The whole range is staged when this process wrote it during this write lock. */
    int64_t rangeStart = 32 + (int64_t)(first - 1) * frameSize;
    int64_t rangeEnd = 32 + (int64_t)h->mxFrame * frameSize;
    int staged = db->stageEnd > db->stageStart && db->stageStart <= rangeStart && db->stageEnd >= rangeEnd;
    if (staged) perChunk = h->mxFrame - first + 1;

    for (uint32_t fr = first; fr <= h->mxFrame;) {
        uint32_t k = h->mxFrame - fr + 1;
        if (k > perChunk) k = perChunk;
        sqlite3_int64 walOff = 32 + (sqlite3_int64)(fr - 1) * frameSize;
        unsigned char *chunk;
        if (staged) {
            chunk = db->aStage + (walOff - db->stageStart);
        } else {
            rc = wal->pMethods->xRead(wal, db->aBuf, (int)(k * frameSize), walOff);
            if (rc != SQLITE_OK) return rc == SQLITE_IOERR_SHORT_READ ? SQLITE_CORRUPT : rc;
            chunk = db->aBuf;
        }
        int nIov = 0, nHdr = 0;
        uint32_t runStart = 0;
        uint32_t runCk[2] = {ck[0], ck[1]};
        for (uint32_t j = 0; j < k; j++) {
            unsigned char *fh = chunk + (size_t)j * frameSize;
            if (memcmp(fh + 8, salts, 8) != 0) return SQLITE_CORRUPT;
            if (staged) {
                /* Bytes this process handed to the WAL under this write lock, checksummed by
                 * SQLite as it wrote them: the header's cumulative checksum is the chain value.
                 * Recomputing it cost as much as SQLite's own checksum (benchmarks/counts); the
                 * uploader verifies the chain of every spooled frame anyway. */
                ck[0] = get4(fh + 16);
                ck[1] = get4(fh + 20);
            } else {
                /* Read back from the WAL (another process's frames, a dead writer's): verify. */
                vr_wal_checksum(bigEnd, fh, 8, ck);
                vr_wal_checksum(bigEnd, fh + 24, pageSize, ck);
                if (ck[0] != get4(fh + 16) || ck[1] != get4(fh + 20)) return SQLITE_CORRUPT;
            }
            txFrames++;
            uint32_t commit = get4(fh + 4);
            int last = (j == k - 1);
            if (commit != 0 || last) {
                /* a FRAMES record for frames runStart..j */
                vr_rec_header *r = &hdrs[nHdr++];
                memset(r, 0, sizeof *r);
                r->kind = VR_REC_FRAMES;
                r->txid = txid;
                r->nFrame = j - runStart + 1;
                r->pageSize = pageSize;
                r->salt1 = get4(salts);
                r->salt2 = get4(salts + 4);
                r->ck1 = runCk[0];
                r->ck2 = runCk[1];
                r->firstFrame = fr + runStart;
                r->flags = bigEnd ? VR_FRAMES_BIGENDIAN_CKSUM : 0;
                sealHeader(r, db->segNo);
                iov[nIov].iov_base = r;
                iov[nIov++].iov_len = sizeof *r;
                iov[nIov].iov_base = chunk + (size_t)runStart * frameSize;
                iov[nIov++].iov_len = (size_t)(j - runStart + 1) * frameSize;
                runStart = j + 1;
                runCk[0] = ck[0];
                runCk[1] = ck[1];
                if (commit != 0) {
                    vr_rec_header *c = &hdrs[nHdr++];
                    memset(c, 0, sizeof *c);
                    c->kind = VR_REC_COMMIT;
                    c->txid = txid;
                    c->nFrame = txFrames;
                    c->pageSize = pageSize;
                    c->salt1 = get4(salts);
                    c->salt2 = get4(salts + 4);
                    c->ck1 = ck[0];
                    c->ck2 = ck[1];
                    c->firstFrame = txFirst;
                    c->walFrame = fr + j;
                    c->commitPages = commit;
                    c->timestampMs = nowMs();
                    sealHeader(c, db->segNo);
                    iov[nIov].iov_base = c;
                    iov[nIov++].iov_len = sizeof *c;
                }
                {
                    uint64_t len = 0;
                    for (int i = 0; i < nIov; i++) len += iov[i].iov_len;
                    rc = spoolWritev(db, iov, nIov, off);
                    if (rc) return SQLITE_IOERR_WRITE;
                    off += len;
                    nIov = 0;
                    nHdr = 0;
                }
                if (commit != 0) {
                    /* publish the transaction to the shared state */
                    stateBegin(s);
                    s->appendOff = off;
                    s->lastTxid = txid;
                    s->walValid = 1;
                    s->walFrame = fr + j;
                    memcpy(&s->walSalt1, salts, 4);
                    memcpy(&s->walSalt2, salts + 4, 4);
                    s->walCk1 = ck[0];
                    s->walCk2 = ck[1];
                    s->commitPages = commit;
                    s->pageSize = pageSize;
                    s->lastCommitMs = nowMs();
                    s->cleanValid = 0;
                    s->captures++;
                    stateEnd(s);
                    wakeIdleUploader(s);
                    nCommits++;
                    nFrames += txFrames;
                    txid++;
                    txFirst = fr + j + 1;
                    txFrames = 0;
                }
            }
        }
        fr += k;
    }
    statAdd(&gStats.captures, nCommits);
    statAdd(&gStats.framesCaptured, nFrames);
    /* Everything up to the published mxFrame was captured, and it is what SQLite published. */
    if (txFrames != 0 || ck[0] != h->aFrameCksum[0] || ck[1] != h->aFrameCksum[1]) return SQLITE_CORRUPT;
    return SQLITE_OK;
}

/* Brings the spool up to date with the WAL as published in the wal-index. Called while this
 * connection holds the WAL write lock, or during the closing checkpoint (exclusive lock). */
static int reconcile(VRFile *f) {
    vr_db *db = f->pDb;
    VRState *s = db->pState;
    WalIdxHdr h;
    if (readIdxHdr(f, &h, NULL) != 0) return SQLITE_OK; /* nothing published yet */
    uint32_t salt1, salt2;
    memcpy(&salt1, &h.aSalt[0], 4);
    memcpy(&salt2, &h.aSalt[1], 4);
    int sameSalts = s->walValid && salt1 == s->walSalt1 && salt2 == s->walSalt2;

    /* the common case: nothing new */
    if (sameSalts && h.mxFrame == s->walFrame && !s->cleanValid) return SQLITE_OK;

    /* (Segments rotate when the write lock is taken, before the spool space for the
     * transaction is reserved: see spoolPrepare.) */

    if (s->cleanValid) {
        /* The last connection closed cleanly and the WAL was deleted: the database file must be
         * exactly as it was then (same inode, size and mtime), else someone changed it without
         * the shim (or a restore replaced it). */
        if (!cleanCloseMatches(db)) return resetLineage(db, f, &h, "the database changed while it was closed");
        stateBegin(s);
        s->cleanValid = 0;
        s->walValid = 1;
        s->walFrame = 0;
        s->walSalt1 = salt1;
        s->walSalt2 = salt2;
        stateEnd(s);
        if (h.mxFrame == 0) return SQLITE_OK;
    }
    if (!s->walValid) return resetLineage(db, f, &h, "no replication history for this database");
    sameSalts = salt1 == s->walSalt1 && salt2 == s->walSalt2;
    if (sameSalts && h.mxFrame == s->walFrame) return SQLITE_OK;
    /* A WAL restart (after every frame was checkpointed) bumps salt-1 by one. */
    int restarted = saltBE(salt1) == saltBE(s->walSalt1) + 1;

    if (h.mxFrame == 0) {
        if (restarted || s->walFrame == 0) {
            stateBegin(s);
            s->walFrame = 0;
            s->walSalt1 = salt1;
            s->walSalt2 = salt2;
            stateEnd(s);
            return SQLITE_OK;
        }
        return resetLineage(db, f, &h, "the WAL was reset outside the replicated VFS");
    }

    if (!f->pWal) return resetLineage(db, f, &h, "WAL not open through the replicated VFS");
    sqlite3_file *wal = ORIGFILE(f->pWal);
    unsigned char whdr[32];
    int rc = SQLITE_OK;
    if (db->walHdrValid && memcmp(db->walHdr + 16, &h.aSalt[0], 8) == 0) {
        memcpy(whdr, db->walHdr, 32);
    } else {
        rc = wal->pMethods->xRead(wal, whdr, 32, 0);
        if (rc != SQLITE_OK) return rc;
    }
    uint32_t magic = get4(whdr);
    if ((magic & 0xFFFFFFFEu) != 0x377f0682u || get4(whdr + 4) != 3007000u) {
        return resetLineage(db, f, &h, "unsupported WAL format");
    }
    int bigEnd = magic & 1;
    uint32_t pageSize = get4(whdr + 8);
    if (memcmp(whdr + 16, &h.aSalt[0], 8) != 0) return resetLineage(db, f, &h, "WAL header does not match wal-index");

    uint32_t first, ck1, ck2;
    if (sameSalts && h.mxFrame > s->walFrame && s->walFrame > 0) {
        first = s->walFrame + 1;
        ck1 = s->walCk1;
        ck2 = s->walCk2;
    } else if (s->walFrame == 0 || restarted) {
        first = 1;
        ck1 = get4(whdr + 24);
        ck2 = get4(whdr + 28);
    } else {
        return resetLineage(db, f, &h, "the WAL does not continue the captured history");
    }
    rc = captureFrames(db, f, &h, first, ck1, ck2, pageSize, bigEnd);
    if (rc == SQLITE_CORRUPT) {
        return resetLineage(db, f, &h, "the WAL frames do not continue the captured history");
    }
    return rc;
}


/* --- disk space ------------------------------------------------------------------------------ */

/* Segment size at which the spool rolls over to a new segment (at a transaction boundary, when
 * the write lock is taken). With a bound, small enough that shipped segments are unlinked long
 * before the bound is reached. */
static uint64_t segmentTarget(vr_db *db) {
    uint64_t t = db->spoolMax ? db->spoolMax / 4 : VR_SEGMENT_TARGET;
    if (t < VR_SEGMENT_MIN) t = VR_SEGMENT_MIN;
    return t > VR_SEGMENT_TARGET ? VR_SEGMENT_TARGET : t;
}

/* Preallocation granularity: one fallocate per chunk of spool, never one per commit. */
static uint64_t reserveChunk(vr_db *db) {
    uint64_t c = db->spoolMax ? db->spoolMax / 8 : VR_RESERVE_MAX;
    if (c < VR_RESERVE_MIN) c = VR_RESERVE_MIN;
    return c > VR_RESERVE_MAX ? VR_RESERVE_MAX : c;
}

/* The spool cannot be written: say so in the shared state (vfs-status, every process) and at
 * warning level in SQLite's log (at most every 10 s per process). */
static void noteSpoolTrouble(vr_db *db, int err, const char *what) {
    VRState *s = db->pState;
    if (err == 0) err = EIO;
    stateBegin(s);
    if (s->spoolErrno == 0) s->spoolErrorMs = nowMs();
    s->spoolErrno = (uint32_t)err;
    s->spoolFailures++;
    stateEnd(s);
    int64_t now = nowMs();
    if (now - db->lastTroubleWarnMs >= 10000) {
        db->lastTroubleWarnMs = now;
        sqlite3_log(SQLITE_WARNING,
                    "vfsreplication: %s: the spool in %s cannot be written (%s): %s; %s", db->zPath, db->zDir,
                    strerror(err), what,
                    db->spoolGrow ? "spool-full: grow: commits go on and stay in the WAL until the spool has space"
                                  : "spool-full: block: writers wait until the spool has space");
    }
}

/* The spool took a write again and holds everything the WAL published: clear the trouble. */
static void noteSpoolOk(vr_db *db) {
    VRState *s = db->pState;
    if (s->spoolErrno == 0 && s->captureBehind == 0) return;
    int64_t since = s->spoolErrorMs;
    stateBegin(s);
    s->spoolErrno = 0;
    s->spoolErrorMs = 0;
    s->captureBehind = 0;
    stateEnd(s);
    sqlite3_log(SQLITE_WARNING, "vfsreplication: %s: the spool is writable again and has caught up with the WAL "
                "(it could not be written for %lld ms)", db->zPath, (long long)(since ? nowMs() - since : 0));
}

/* Rolls over to a new segment (caller holds the write lock, at a transaction boundary). The old
 * segment is cut to its committed end, preallocated tail included, so readers can take an older
 * segment's size as its end. */
static int spoolRotate(vr_db *db) {
    VRState *s = db->pState;
    char path[PATH_MAX];
    vr_db_segment_path(db, s->appendSeg, path, sizeof path);
    if (truncate(path, (off_t)s->appendOff) != 0 && errno != ENOENT) return db->lastErrno = errno;
    if (s->allocSeg == s->appendSeg && s->allocEnd > s->appendOff) {
        /* truncate to the same size keeps blocks preallocated past the end on some filesystems */
        (void)vr_spool_punch(path, s->appendOff, s->allocEnd + 4095);
    }
    /* The next segment is a spare when the uploader left one (vr_db_add_spare): a shipped
     * segment whose blocks are written and whose pages are likely cached, so appends overwrite
     * them instead of allocating fresh pages (about half the cost per commit: benchmarks/README.md
     * "Spool appends"). What it still holds past the committed end is never taken for records
     * (vr_rec_valid). Renames never replace a file, so a spare the uploader removes at the same
     * moment is simply not there. */
    vr_db_segment_path(db, s->appendSeg + 1, path, sizeof path);
    for (int k = 1; k <= VR_SPARES; k++) {
        char spare[PATH_MAX];
        spareSegmentPath(db, k, spare, sizeof spare);
        if (renameat2(AT_FDCWD, spare, AT_FDCWD, path, RENAME_NOREPLACE) == 0 || errno != ENOENT) break;
    }
    stateBegin(s);
    s->appendSeg++;
    s->appendOff = 0;
    s->allocSeg = s->appendSeg;
    s->allocEnd = 0;
    stateEnd(s);
    return 0;
}

/* Makes sure bytes [appendOff, end) of the current segment have disk blocks (caller holds the
 * write lock), so that the capture at the write-lock release cannot fail for want of space.
 * Returns 0 or an errno. */
static int spoolReserveIn(vr_db *db, uint64_t end, uint64_t chunk) {
    VRState *s = db->pState;
    if (db->noFallocate || (s->allocSeg == s->appendSeg && s->allocEnd >= end)) return 0;
    int rc = spoolOpenSegment(db);
    if (rc) return rc;
    uint64_t from = s->allocSeg == s->appendSeg && s->allocEnd > s->appendOff ? s->allocEnd : s->appendOff;
    uint64_t to = (end + chunk - 1) / chunk * chunk;
    if (to <= from) return 0;
    while (fallocate(db->segFd, FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(to - from)) != 0) {
        if (errno == EINTR) continue;
        if (errno == EOPNOTSUPP || errno == ENOSYS) {
            /* Nothing to reserve with: captures then find a full disk only when they write. */
            db->noFallocate = 1;
            sqlite3_log(SQLITE_WARNING, "vfsreplication: %s: the filesystem of %s cannot preallocate; spool space "
                        "is not reserved before commits", db->zPath, db->zDir);
            return 0;
        }
        return db->lastErrno = errno;
    }
    stateBegin(s);
    s->allocSeg = s->appendSeg;
    s->allocEnd = to;
    stateEnd(s);
    return 0;
}
static int spoolReserve(vr_db *db, uint64_t end) { return spoolReserveIn(db, end, reserveChunk(db)); }

/* Spool bytes the WAL bytes [txWalBase, walEnd) need: frames plus record headers (a FRAMES
 * header per copy chunk and per transaction, a COMMIT header per transaction; a backlog of many
 * small transactions has a pair of headers per transaction, at most a quarter of its bytes). */
static uint64_t spoolNeed(vr_db *db, int64_t walEnd) {
    if (walEnd <= db->txWalBase) return 256;
    uint64_t len = (uint64_t)(walEnd - db->txWalBase);
    return len + 256 + (db->pState->captureBehind ? len / 4 : len / 256);
}

/* Where this writer's frames start in the WAL: after the captured ones. */
static void txBegin(vr_db *db) {
    VRState *s = db->pState;
    db->txWalBase = 32;
    if (s->walValid && s->pageSize) db->txWalBase = 32 + (int64_t)s->walFrame * (24 + (int64_t)s->pageSize);
}

/* At the write-lock acquisition, before the transaction writes anything (caller holds the
 * lock): roll over to a new segment if due, and reserve spool space ahead. Returns 0 or errno. */
static int spoolPrepare(vr_db *db) {
    VRState *s = db->pState;
    int shipped = s->shippedSeg == s->appendSeg && s->shippedOff == s->appendOff;
    if (s->appendOff >= segmentTarget(db) || (shipped && s->appendOff >= VR_RECLAIM_ROTATE)) {
        int rc = spoolRotate(db);
        if (rc) return rc;
    }
    uint64_t chunk = reserveChunk(db);
    uint64_t have = s->allocSeg == s->appendSeg && s->allocEnd > s->appendOff ? s->allocEnd - s->appendOff : 0;
    if (have >= chunk / 2 && s->allocSeg == s->appendSeg) return 0;
    if (spoolReserve(db, s->appendOff + chunk) == 0) return 0;
    /* A nearly full disk: a small transaction may still fit (vrWrite reserves the rest). */
    return have >= VR_RESERVE_MIN && s->allocSeg == s->appendSeg ? 0 : spoolReserveIn(db, s->appendOff + VR_RESERVE_MIN, 4096);
}

/* --- staging ------------------------------------------------------------------------------- */

static void stageReset(vr_db *db) { db->stageStart = db->stageEnd = 0; }

/* Keeps a copy of WAL bytes written under the write lock (contiguous range; a write that does
 * not fit or is not contiguous restarts or drops the staging, and the capture reads the WAL). */
static void stageWrite(vr_db *db, const void *z, int n, sqlite3_int64 off) {
    if (off == 0 && n == 32) {
        memcpy(db->walHdr, z, 32);
        db->walHdrValid = 1;
        return;
    }
    if (off < 32) return;
    int64_t end = off + n;
    if (db->stageEnd > db->stageStart && off >= db->stageStart && off <= db->stageEnd &&
        end - db->stageStart <= VR_STAGE_SIZE) {
        memcpy(db->aStage + (off - db->stageStart), z, (size_t)n);
        if (end > db->stageEnd) db->stageEnd = end;
    } else if ((size_t)n <= VR_STAGE_SIZE && db->stageEnd == db->stageStart) {
        memcpy(db->aStage, z, (size_t)n);
        db->stageStart = off;
        db->stageEnd = end;
    } else {
        /* not contiguous with what is staged: keep the earlier range invalid */
        db->stageStart = 0;
        db->stageEnd = -1;
    }
}

/* --- io methods ----------------------------------------------------------------------------- */

static int vrClose(sqlite3_file *pFile) {
    VRFile *p = (VRFile *)pFile;
    if (p->hostOpen && atomic_fetch_sub(&p->pDb->hostOpens, 1) == 1) waitForBaseAtLastClose(p->pDb);
    if (p->isWal && p->pMain && p->pMain->pWal == p) p->pMain->pWal = NULL;
    if (!p->isWal && p->pWal) p->pWal->pMain = NULL;
    int rc = ORIGFILE(pFile)->pMethods ? ORIGFILE(pFile)->pMethods->xClose(ORIGFILE(pFile)) : SQLITE_OK;
    return rc;
}
static int vrRead(sqlite3_file *pFile, void *z, int n, sqlite3_int64 off) {
    return ORIGFILE(pFile)->pMethods->xRead(ORIGFILE(pFile), z, n, off);
}
static int vrWrite(sqlite3_file *pFile, const void *z, int n, sqlite3_int64 off) {
    VRFile *p = (VRFile *)pFile;
    if (p->pDb && !p->isWal && !p->inCkpt && !p->pWal) {
        /* A main-file write outside a checkpoint: rollback-journal mode. Only the transaction
         * that switches the database to WAL mode (page 1, bytes 18/19 = 2) may pass. */
        const unsigned char *b = z;
        if (!(off == 0 && n >= 20 && b[18] == 2 && b[19] == 2)) {
            statAdd(&gStats.refusedWrites, 1);
            vrLog(SQLITE_IOERR_WRITE,
                  "vfsreplication: %s is not in WAL mode; the replicated VFS captures WAL transactions only "
                  "(run PRAGMA journal_mode=WAL first)%s",
                  p->pDb->zPath, "");
            return SQLITE_IOERR_WRITE;
        }
    }
    if (p->isWal && p->pMain && p->pMain->holdsWrite) {
        /* Spool space for this transaction's frames is reserved before SQLite writes them to
         * the WAL: with spool-full: block a transaction the spool could not hold fails here,
         * cleanly, before it commits (a fallocate per reserve chunk, not per write). */
        vr_db *db = p->pDb;
        if (off == 0 && n == 32) db->txWalBase = 32; /* this writer restarts the WAL */
        uint64_t end = db->pState->appendOff + spoolNeed(db, off + n);
        VRState *s = db->pState;
        if (!db->noFallocate && (s->allocSeg != s->appendSeg || s->allocEnd < end)) {
            int err = spoolReserve(db, end);
            if (err) err = spoolReserveIn(db, end, 4096); /* a nearly full disk: just what it needs */
            if (err) {
                noteSpoolTrouble(db, err, "no space for the transaction's frames");
                if (!db->spoolGrow) return SQLITE_FULL;
            }
        }
    }
    int rc = ORIGFILE(pFile)->pMethods->xWrite(ORIGFILE(pFile), z, n, off);
    if (rc == SQLITE_OK && p->isWal && p->pMain && p->pMain->holdsWrite) stageWrite(p->pDb, z, n, off);
    return rc;
}
static int vrTruncate(sqlite3_file *pFile, sqlite3_int64 size) {
    VRFile *p = (VRFile *)pFile;
    if (p->isWal && p->pMain && size == 0) {
        /* A TRUNCATE checkpoint or journal_size_limit: frames are going away; the spool must be
         * durable first (CAPTURE.md). */
        vr_db_sync_spool(p->pMain->pDb);
    }
    return ORIGFILE(pFile)->pMethods->xTruncate(ORIGFILE(pFile), size);
}
static int vrSync(sqlite3_file *pFile, int flags) {
    return ORIGFILE(pFile)->pMethods->xSync(ORIGFILE(pFile), flags);
}
static int vrFileSize(sqlite3_file *pFile, sqlite3_int64 *pSize) {
    return ORIGFILE(pFile)->pMethods->xFileSize(ORIGFILE(pFile), pSize);
}
static int vrLock(sqlite3_file *pFile, int eLock) {
    VRFile *p = (VRFile *)pFile;
    if (eLock == SQLITE_LOCK_RESERVED && p->pDb && !p->isWal && !p->pWal && !p->walSwitch) {
        /* A rollback-journal write transaction (a WAL writer never asks for RESERVED: its write
         * lock is in the wal-index): the database could not be switched to WAL at open (see
         * ensureWal). Refused here, before SQLite creates the journal, so nothing is left to roll
         * back and the database is never wedged. SQLite gives a VFS no way to put its own text
         * in a statement's error; SQLITE_READONLY ("attempt to write a readonly database") is
         * what the database is through this VFS until it is in WAL mode, and the log says why. */
        statAdd(&gStats.refusedWrites, 1);
        vrLog(SQLITE_READONLY,
              "vfsreplication: %s is in rollback-journal mode (another connection keeps it so); the replicated VFS "
              "writes WAL databases only: writes are refused until it is switched (PRAGMA journal_mode=WAL, or reopen "
              "it through the VFS once no other connection holds it)%s",
              p->pDb->zPath, "");
        return SQLITE_READONLY;
    }
    int rc = ORIGFILE(pFile)->pMethods->xLock(ORIGFILE(pFile), eLock);
    if (rc == SQLITE_OK) p->lockLevel = eLock;
    return rc;
}
static int vrUnlock(sqlite3_file *pFile, int eLock) {
    VRFile *p = (VRFile *)pFile;
    int rc = ORIGFILE(pFile)->pMethods->xUnlock(ORIGFILE(pFile), eLock);
    if (rc == SQLITE_OK) p->lockLevel = eLock;
    if (eLock <= SQLITE_LOCK_SHARED) p->walSwitch = 0;
    return rc;
}
static int vrCheckReservedLock(sqlite3_file *pFile, int *pResOut) {
    return ORIGFILE(pFile)->pMethods->xCheckReservedLock(ORIGFILE(pFile), pResOut);
}

static int isPragma(char **a, const char *name) { return a[1] && sqlite3_stricmp(a[1], name) == 0; }

static int vrFileControl(sqlite3_file *pFile, int op, void *pArg) {
    VRFile *p = (VRFile *)pFile;
    if (p->pDb && !p->isWal) {
        switch (op) {
        case VR_FCNTL_SNAPSHOT_READER:
            p->isSnapReader = 1;
            return SQLITE_OK;
        case SQLITE_FCNTL_PRAGMA: {
            char **a = pArg;
            if (isPragma(a, "journal_mode") && a[2] && sqlite3_stricmp(a[2], "wal") != 0) {
                a[0] = sqlite3_mprintf("vfsreplication: %s: journal_mode=%s is not supported; the replicated "
                                       "VFS requires journal_mode=WAL",
                                       p->pDb->zPath, a[2]);
                return SQLITE_ERROR;
            }
            if (isPragma(a, "journal_mode") && a[2] && !p->pWal) {
                /* The switch to WAL is the one rollback-journal transaction allowed (vrLock, and
                 * vrWrite lets only its page 1 through). Cleared when the lock drops to SHARED;
                 * a pragma prepared and never run leaves it set until then at most. */
                p->walSwitch = 1;
            }
            if (isPragma(a, "replicated_last_commit")) {
                /* What the output gate knows of this connection's last commit:
                 * "<txid> <durable|not-durable|local>" (durability: local never waits). */
                vr_state_view v;
                vr_db_read_state(p->pDb, &v);
                uint64_t t = p->lastCommitTxid;
                const char *state = v.shippedTxid >= t && t ? "durable"
                                    : !p->pDb->remote     ? "local"
                                    : (p->gateTxid == t && !p->gateDurable) ? "not-durable" : "pending";
                a[0] = sqlite3_mprintf("%llu %s", (unsigned long long)t, state);
                return SQLITE_OK;
            }
            if (isPragma(a, "replicated_durable_txid")) {
                vr_state_view v;
                vr_db_read_state(p->pDb, &v);
                a[0] = sqlite3_mprintf("%llu", (unsigned long long)v.shippedTxid);
                return SQLITE_OK;
            }
            if (isPragma(a, "locking_mode") && a[2] && sqlite3_stricmp(a[2], "exclusive") == 0) {
                a[0] = sqlite3_mprintf("vfsreplication: %s: locking_mode=EXCLUSIVE is not supported (it bypasses "
                                       "the WAL locks the replicated VFS captures commits at)",
                                       p->pDb->zPath);
                return SQLITE_ERROR;
            }
            break;
        }
        case SQLITE_FCNTL_CKPT_START:
            p->inCkpt = 1;
            if (!p->holdsWrite && p->lockLevel == SQLITE_LOCK_EXCLUSIVE && p->pShm0) {
                /* The closing checkpoint takes no shm locks: nobody else can write, so catch up
                 * with anything a dead writer published before the WAL goes away. */
                p->pDb->lastErrno = 0;
                int rc = reconcile(p);
                if (rc != SQLITE_OK) {
                    sqlite3_log(SQLITE_WARNING, "vfsreplication: %s: capture before checkpoint failed (%d)",
                                p->pDb->zPath, rc);
                    if (p->pDb->lastErrno) {
                        /* vrDelete keeps the WAL: its frames are spooled at the next open. */
                        VRState *s = p->pDb->pState;
                        stateBegin(s);
                        s->captureBehind = 1;
                        stateEnd(s);
                        noteSpoolTrouble(p->pDb, p->pDb->lastErrno, "transactions wait in the WAL to be spooled");
                    }
                }
            }
            vr_db_sync_spool(p->pDb);
            break;
        case SQLITE_FCNTL_CKPT_DONE:
            p->inCkpt = 0;
            break;
        case SQLITE_FCNTL_COMMIT_PHASETWO:
            if (p->pDb->remote && p->lastCommitTxid && p->lastCommitTxid != p->gateTxid) {
                p->gateTxid = p->lastCommitTxid;
                p->gateDurable = waitDurable(p->pDb, p->gateTxid);
                if (!p->gateDurable) {
                    sqlite3_log(SQLITE_WARNING,
                                "vfsreplication: %s: transaction %lld is committed locally but not confirmed durable "
                                "in the replica within %lld ms; it stays spooled and will be shipped",
                                p->pDb->zPath, (long long)p->gateTxid, (long long)p->pDb->remoteTimeoutMs);
                }
            }
            break;
        default:
            break;
        }
    }
    return ORIGFILE(pFile)->pMethods->xFileControl(ORIGFILE(pFile), op, pArg);
}
static int vrSectorSize(sqlite3_file *pFile) { return ORIGFILE(pFile)->pMethods->xSectorSize(ORIGFILE(pFile)); }
static int vrDeviceCharacteristics(sqlite3_file *pFile) {
    return ORIGFILE(pFile)->pMethods->xDeviceCharacteristics(ORIGFILE(pFile));
}
static int vrShmMap(sqlite3_file *pFile, int iPg, int pgsz, int bExtend, void volatile **pp) {
    VRFile *p = (VRFile *)pFile;
    int rc = ORIGFILE(pFile)->pMethods->xShmMap(ORIGFILE(pFile), iPg, pgsz, bExtend, pp);
    if (rc == SQLITE_OK && iPg == 0 && *pp) p->pShm0 = *pp;
    return rc;
}
static int vrShmLock(sqlite3_file *pFile, int offset, int n, int flags) {
    VRFile *p = (VRFile *)pFile;
    sqlite3_file *o = ORIGFILE(pFile);
    if (p->pDb && p->isSnapReader && offset >= 3 && n == 1 && flags == (SQLITE_SHM_LOCK | SQLITE_SHM_SHARED)) {
        /* A read mark: SQLite re-checks the header right after this lock and retries if it moved,
         * so the header seen at the last successful read lock is the reader's snapshot. */
        int rc = o->pMethods->xShmLock(o, offset, n, flags);
        if (rc == SQLITE_OK) {
            p->snapValid = readIdxHdr(p, &p->snapHdr, NULL) == 0;
            p->snapSlot = offset - 3;
        }
        return rc;
    }
    if (p->pDb && p->holdsWrite && offset == 4 && n > 1 && (flags & SQLITE_SHM_LOCK) &&
        (flags & SQLITE_SHM_EXCLUSIVE) && p->pDb->pState->captureBehind) {
        /* A writer (or RESTART/TRUNCATE checkpoint) wants read marks 1..N at once: that is how SQLite
         * restarts the WAL from frame 1, overwriting frames the spool has not taken yet. Busy
         * makes it append instead (and a checkpoint do what it can), as with a reader present. */
        return SQLITE_BUSY;
    }
    if (!p->pDb || offset != 0) return o->pMethods->xShmLock(o, offset, n, flags);
    if (flags == (SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE)) forkCheck();
    if (flags == (SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE) && p->holdsWrite) {
        /* The commit point: capture before anyone else can take the write lock. */
        vr_db *db = p->pDb;
        uint64_t before = db->pState->lastTxid;
        db->lastErrno = 0;
        int rc = reconcile(p);
        if (db->pState->lastTxid > before) p->lastCommitTxid = db->pState->lastTxid;
        if (rc != SQLITE_OK && db->lastErrno == 0 && !db->pState->captureBehind) {
            /* Not the spool's disk (the WAL could not be read back, say): as before, a new lineage. */
            sqlite3_log(SQLITE_WARNING,
                        "vfsreplication: %s: capturing the transaction failed (%d); the next shipment is a snapshot",
                        db->zPath, rc);
            WalIdxHdr h;
            if (readIdxHdr(p, &h, NULL) == 0) resetLineage(db, p, &h, "capture failed");
        } else if (rc != SQLITE_OK) {
            /* The commit is in the WAL and stays there: nothing restarts the WAL while the spool is
             * behind (read-mark locks below, the WAL kept at close), so the next writer (or the
             * uploader's probe) spools these frames, as their own transactions, once the spool can
             * be written again. A new lineage here would lose every restore point until then. */
            VRState *s = db->pState;
            stateBegin(s);
            s->captureBehind = 1;
            stateEnd(s);
            noteSpoolTrouble(db, db->lastErrno, "a committed transaction waits in the WAL to be spooled");
        } else if (db->pState->spoolErrno || db->pState->captureBehind) {
            noteSpoolOk(db);
        }
        p->holdsWrite = 0;
        stageReset(p->pDb);
        return o->pMethods->xShmLock(o, offset, n, flags);
    }
    if (flags == (SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE) && p->pDb->spoolMax && !p->inCkpt) {
        /* Bytes on disk: what is not shipped plus the reserve ahead of it (shipped bytes are
         * reclaimed by the uploader: old segments unlinked, the current one hole-punched). */
        vr_db *db = p->pDb;
        VRState *s = db->pState;
        uint64_t pending = vr_db_spool_pending(db);
        uint64_t reserve = s->allocSeg == s->appendSeg && s->allocEnd > s->appendOff ? s->allocEnd - s->appendOff : 0;
        if (pending + reserve >= db->spoolMax) {
            int64_t now = nowMs();
            if (now - db->lastSpoolWarnMs >= 10000) {
                db->lastSpoolWarnMs = now;
                sqlite3_log(SQLITE_WARNING,
                            "vfsreplication: %s: the spool holds %lld bytes not yet in the replica (limit %lld)%s",
                            db->zPath, (long long)(pending + reserve), (long long)db->spoolMax,
                            db->spoolGrow ? "; growing past the limit" : "; writers wait until the uploader drains it");
            }
            if (!db->spoolGrow) return SQLITE_BUSY;
            if (!s->overLimitMs) {
                stateBegin(s);
                s->overLimitMs = now;
                stateEnd(s);
            }
        } else if (s->overLimitMs) {
            stateBegin(s);
            s->overLimitMs = 0;
            stateEnd(s);
        }
    }
    int rc = o->pMethods->xShmLock(o, offset, n, flags);
    if (rc == SQLITE_OK && flags == (SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE)) {
        p->holdsWrite = 1;
        stageReset(p->pDb);
        /* Catch up with a writer that died between publishing its commit and spooling it, and make
         * the spool durable if this writer may restart the WAL (all frames backfilled). */
        WalIdxHdr h;
        uint32_t nBackfill = 0;
        vr_db *db = p->pDb;
        VRState *s = db->pState;
        int trouble = 0;
        db->lastErrno = 0;
        /* Without a valid wal-index header SQLite takes the write lock to run WAL recovery (and
         * retries on busy until SQLITE_PROTOCOL): never refuse it then. */
        int published = readIdxHdr(p, &h, &nBackfill) == 0;
        if (published) {
            int same = s->walValid && !s->cleanValid && memcmp(&h.aSalt[0], &s->walSalt1, 4) == 0 &&
                       memcmp(&h.aSalt[1], &s->walSalt2, 4) == 0 && h.mxFrame == s->walFrame;
            if (!same) {
                int rc2 = reconcile(p);
                if (rc2 != SQLITE_OK) {
                    if (s->captureBehind || db->lastErrno) {
                        stateBegin(s);
                        s->captureBehind = 1;
                        stateEnd(s);
                        trouble = 1;
                        noteSpoolTrouble(db, db->lastErrno, "committed transactions wait in the WAL to be spooled");
                    } else {
                        sqlite3_log(rc2, "vfsreplication: %s: reconcile failed", db->zPath);
                    }
                }
            }
            if (h.mxFrame > 0 && nBackfill == h.mxFrame) vr_db_sync_spool(db);
        }
        /* Space for this transaction before it writes anything; see spoolPrepare and vrWrite. */
        if (!trouble && published) {
            int err = spoolPrepare(db);
            if (err) {
                trouble = 1;
                noteSpoolTrouble(db, err, "no space to reserve for new transactions");
            } else if (s->spoolErrno && !s->captureBehind) {
                noteSpoolOk(db);
            }
        }
        txBegin(db);
        if (trouble && !db->spoolGrow && !p->inCkpt) {
            /* spool-full: block. The writer waits (SQLite's busy handler retries) until the spool
             * has space; nothing was written, so handing the lock back is all there is to undo. */
            p->holdsWrite = 0;
            stageReset(db);
            o->pMethods->xShmLock(o, offset, n, SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE);
            return SQLITE_BUSY;
        }
    }
    return rc;
}
static void vrShmBarrier(sqlite3_file *pFile) { ORIGFILE(pFile)->pMethods->xShmBarrier(ORIGFILE(pFile)); }
static int vrShmUnmap(sqlite3_file *pFile, int deleteFlag) {
    VRFile *p = (VRFile *)pFile;
    p->pShm0 = NULL;
    return ORIGFILE(pFile)->pMethods->xShmUnmap(ORIGFILE(pFile), deleteFlag);
}
static int vrFetch(sqlite3_file *pFile, sqlite3_int64 off, int n, void **pp) {
    return ORIGFILE(pFile)->pMethods->xFetch(ORIGFILE(pFile), off, n, pp);
}
static int vrUnfetch(sqlite3_file *pFile, sqlite3_int64 off, void *pPage) {
    return ORIGFILE(pFile)->pMethods->xUnfetch(ORIGFILE(pFile), off, pPage);
}

/* --- vfs methods ---------------------------------------------------------------------------- */

#define VR_WAL_SWITCH_BUSY_MS 1000 /* how long an open waits to switch a database to WAL */

/* A database opened read-write through the VFS must be in WAL mode: the shim captures WAL
 * transactions only, and a rollback-journal write it refused half-way would leave a hot journal
 * that only a connection outside the VFS could roll back. So a new (empty) database, or one in
 * rollback-journal mode (header bytes 18/19 = 1), is switched to WAL here, before SQLite reads
 * its header: a private connection through the parent VFS runs PRAGMA journal_mode=WAL, which is
 * SQLite's own conversion under SQLite's own locks (it needs the exclusive lock, so it cannot
 * disturb another connection, and it rolls back a hot journal first). When another connection
 * keeps the database in rollback mode the switch fails, nothing changes, and writes through this
 * VFS are refused at their first lock (vrLock), before any journal exists. A new database gets
 * SQLite's default page size and encoding (a later PRAGMA page_size finds it created). Opens
 * only: never on the commit path. */
static void ensureWal(const char *zName, sqlite3_file *real, int busyMs) {
    sqlite3_int64 size = 0;
    if (real->pMethods->xFileSize(real, &size) != SQLITE_OK) return;
    if (size > 0) {
        unsigned char h[20];
        if (size < 100 || real->pMethods->xRead(real, h, 20, 0) != SQLITE_OK) return;
        if (memcmp(h, "SQLite format 3", 16) != 0) return; /* not a database: SQLite will say so */
        if (h[18] == 2 && h[19] == 2) return;             /* WAL */
    }
    sqlite3 *c = NULL;
    char mode[16] = "";
    int rc = sqlite3_open_v2(zName, &c, SQLITE_OPEN_READWRITE | SQLITE_OPEN_PRIVATECACHE, gParent->zName);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(c, busyMs);
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(c, "PRAGMA journal_mode=WAL", -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            if (t) snprintf(mode, sizeof mode, "%s", (const char *)t);
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
    }
    if (rc == SQLITE_OK && sqlite3_stricmp(mode, "wal") == 0) {
        if (size > 0)
            sqlite3_log(SQLITE_NOTICE, "vfsreplication: %s was in rollback-journal mode; switched it to WAL", zName);
    } else {
        sqlite3_log(SQLITE_WARNING,
                    "vfsreplication: %s is not in WAL mode and could not be switched (%s); writes through the "
                    "replicated VFS are refused until it is",
                    zName, c ? sqlite3_errmsg(c) : "out of memory");
    }
    sqlite3_close_v2(c); /* close_v2: the API table a linked program fills has no plain close */
}

static int vrOpen(sqlite3_vfs *pVfs, sqlite3_filename zName, sqlite3_file *pFile, int flags, int *pOutFlags) {
    (void)pVfs;
    VRFile *p = (VRFile *)pFile;
    memset(p, 0, sizeof *p);
    p->pReal = (sqlite3_file *)&p[1];
    vr_db *db = NULL;
    VRFile *pMain = NULL;
    if ((flags & SQLITE_OPEN_MAIN_DB) && zName) {
        forkCheck();
        db = vr_db_lookup(zName);
        if (!db) {
            sqlite3_log(SQLITE_CANTOPEN,
                        "vfsreplication: database %s is opened with the replicated VFS but is not named in the "
                        "replication config",
                        zName);
            pFile->pMethods = NULL;
            return SQLITE_CANTOPEN;
        }
    } else if ((flags & SQLITE_OPEN_WAL) && zName) {
        sqlite3_file *m = sqlite3_database_file_object(zName);
        if (m && m->pMethods == &gMethods && ((VRFile *)m)->pDb) {
            pMain = (VRFile *)m;
            db = pMain->pDb;
        }
    }
    int rc = gParent->xOpen(gParent, zName, p->pReal, flags, pOutFlags);
    if (rc != SQLITE_OK) {
        pFile->pMethods = NULL;
        return rc;
    }
    /* The uploader's own connections try the switch once, without waiting: waiting for the
     * exclusive lock holds PENDING, and an app's write or schema read then fails with
     * SQLITE_BUSY if it has no busy handler (GRDB's default); a later round tries again. */
    if (db && !pMain && (flags & SQLITE_OPEN_READWRITE)) ensureWal(zName, p->pReal, tUploaderSql ? 0 : VR_WAL_SWITCH_BUSY_MS);
    p->pDb = db;
    if (db && !pMain && !tUploaderSql) {
        p->hostOpen = 1;
        atomic_fetch_add(&db->hostOpens, 1);
    }
    if (pMain) {
        p->isWal = 1;
        p->pMain = pMain;
        pMain->pWal = p;
    }
    pFile->pMethods = &gMethods;
    return SQLITE_OK;
}

static int vrDelete(sqlite3_vfs *pVfs, const char *zName, int syncDir) {
    (void)pVfs;
    size_t n = zName ? strlen(zName) : 0;
    vr_db *db = NULL;
    if (n > 4 && strcmp(zName + n - 4, "-wal") == 0) {
        char *main = sqlite3_mprintf("%.*s", (int)(n - 4), zName);
        if (main) {
            db = vr_db_lookup(main);
            sqlite3_free(main);
        }
        if (db) vr_db_sync_spool(db);
        if (db && db->pState->captureBehind) {
            /* The last connection closes while committed frames still wait to be spooled: keep
             * the WAL (SQLite ignores a failed delete at close). The next open recovers it, and
             * the spool takes those frames from it, so no transaction goes missing. */
            sqlite3_log(SQLITE_WARNING, "vfsreplication: %s: keeping the WAL at close: it holds transactions the "
                        "spool could not take yet", db->zPath);
            return SQLITE_IOERR_DELETE;
        }
    }
    int rc = gParent->xDelete(gParent, zName, syncDir);
    if (rc == SQLITE_OK && db) recordCleanClose(db);
    return rc;
}
static int vrAccess(sqlite3_vfs *v, const char *z, int flags, int *pRes) {
    (void)v;
    return gParent->xAccess(gParent, z, flags, pRes);
}
static int vrFullPathname(sqlite3_vfs *v, const char *z, int n, char *out) {
    (void)v;
    return gParent->xFullPathname(gParent, z, n, out);
}
static void *vrDlOpen(sqlite3_vfs *v, const char *z) {
    (void)v;
    return gParent->xDlOpen(gParent, z);
}
static void vrDlError(sqlite3_vfs *v, int n, char *z) {
    (void)v;
    gParent->xDlError(gParent, n, z);
}
static void (*vrDlSym(sqlite3_vfs *v, void *p, const char *z))(void) {
    (void)v;
    return gParent->xDlSym(gParent, p, z);
}
static void vrDlClose(sqlite3_vfs *v, void *p) {
    (void)v;
    gParent->xDlClose(gParent, p);
}
static int vrRandomness(sqlite3_vfs *v, int n, char *z) {
    (void)v;
    return gParent->xRandomness(gParent, n, z);
}
static int vrSleep(sqlite3_vfs *v, int us) {
    (void)v;
    return gParent->xSleep(gParent, us);
}
static int vrCurrentTime(sqlite3_vfs *v, double *t) {
    (void)v;
    return gParent->xCurrentTime(gParent, t);
}
static int vrGetLastError(sqlite3_vfs *v, int n, char *z) {
    (void)v;
    return gParent->xGetLastError ? gParent->xGetLastError(gParent, n, z) : 0;
}
static int vrCurrentTimeInt64(sqlite3_vfs *v, sqlite3_int64 *t) {
    (void)v;
    return gParent->xCurrentTimeInt64(gParent, t);
}
static int vrSetSystemCall(sqlite3_vfs *v, const char *z, sqlite3_syscall_ptr f) {
    (void)v;
    return gParent->xSetSystemCall(gParent, z, f);
}
static sqlite3_syscall_ptr vrGetSystemCall(sqlite3_vfs *v, const char *z) {
    (void)v;
    return gParent->xGetSystemCall(gParent, z);
}
static const char *vrNextSystemCall(sqlite3_vfs *v, const char *z) {
    (void)v;
    return gParent->xNextSystemCall(gParent, z);
}

/* Guards registration; gRegistered says whether gVfs is in SQLite's list now (the loadable
 * extension takes it out again when its load fails, see vr_vfs_unregister). */
static pthread_mutex_t gRegisterLock = PTHREAD_MUTEX_INITIALIZER;
static int gRegistered;

int vr_vfs_register(void) {
    pthread_mutex_t *const once = &gRegisterLock;
    pthread_mutex_lock(once);
    if (gRegistered) {
        pthread_mutex_unlock(once);
        return SQLITE_OK;
    }
    int rc = vr_ensure_api() == 0 ? SQLITE_OK : SQLITE_MISUSE;
    sqlite3_vfs *parent = rc == SQLITE_OK ? sqlite3_vfs_find("unix") : NULL;
    if (rc != SQLITE_OK || !parent) {
        pthread_mutex_unlock(once);
        return rc != SQLITE_OK ? rc : SQLITE_ERROR;
    }
    if (parent->iVersion < 3) {
        pthread_mutex_unlock(once);
        return SQLITE_ERROR;
    }
    gMethods = (sqlite3_io_methods){
        .iVersion = 3,
        .xClose = vrClose,
        .xRead = vrRead,
        .xWrite = vrWrite,
        .xTruncate = vrTruncate,
        .xSync = vrSync,
        .xFileSize = vrFileSize,
        .xLock = vrLock,
        .xUnlock = vrUnlock,
        .xCheckReservedLock = vrCheckReservedLock,
        .xFileControl = vrFileControl,
        .xSectorSize = vrSectorSize,
        .xDeviceCharacteristics = vrDeviceCharacteristics,
        .xShmMap = vrShmMap,
        .xShmLock = vrShmLock,
        .xShmBarrier = vrShmBarrier,
        .xShmUnmap = vrShmUnmap,
        .xFetch = vrFetch,
        .xUnfetch = vrUnfetch,
    };
    gVfs = (sqlite3_vfs){
        .iVersion = 3,
        .szOsFile = (int)sizeof(VRFile) + parent->szOsFile,
        .mxPathname = parent->mxPathname,
        .zName = VR_VFS_NAME,
        .xOpen = vrOpen,
        .xDelete = vrDelete,
        .xAccess = vrAccess,
        .xFullPathname = vrFullPathname,
        .xDlOpen = vrDlOpen,
        .xDlError = vrDlError,
        .xDlSym = vrDlSym,
        .xDlClose = vrDlClose,
        .xRandomness = vrRandomness,
        .xSleep = vrSleep,
        .xCurrentTime = vrCurrentTime,
        .xGetLastError = vrGetLastError,
        .xCurrentTimeInt64 = vrCurrentTimeInt64,
        .xSetSystemCall = vrSetSystemCall,
        .xGetSystemCall = vrGetSystemCall,
        .xNextSystemCall = vrNextSystemCall,
    };
    gParent = parent;
    rc = sqlite3_vfs_register(&gVfs, 0);
    gRegistered = rc == SQLITE_OK;
    pthread_mutex_unlock(once);
    return rc;
}

int vr_vfs_registered(void) {
    pthread_mutex_lock(&gRegisterLock);
    int registered = gRegistered;
    pthread_mutex_unlock(&gRegisterLock);
    return registered;
}

void vr_vfs_unregister(void) {
    pthread_mutex_lock(&gRegisterLock);
    if (gRegistered) sqlite3_vfs_unregister(&gVfs);
    gRegistered = 0;
    pthread_mutex_unlock(&gRegisterLock);
}

/* ------------------------------------------------------------------------------------------ */
/* Snapshots                                                                                   */

int vr_file_read_prefix(const char *path, void *buf, int n) {
    if (n <= 0) return -1;
    if (vr_process_exiting()) {
        /* No SQLite once the process exits (vr_process_exit_begin); the connections that a
         * close() here could unlock will not write again. */
        int fd = vr_sys_open(path, O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0) return -1;
        ssize_t got = pread(fd, buf, (size_t)n, 0);
        close(fd);
        return got < 0 ? -1 : (int)got;
    }
    if (vr_ensure_api()) return -1;
    sqlite3_vfs *ux = sqlite3_vfs_find("unix");
    if (!ux) return -1;
    sqlite3_file *f = calloc(1, (size_t)ux->szOsFile);
    if (!f) return -1;
    int outFlags = 0, got = -1;
    if (ux->xOpen(ux, path, f, SQLITE_OPEN_READONLY | SQLITE_OPEN_MAIN_DB, &outFlags) == SQLITE_OK) {
        sqlite3_int64 size = 0;
        if (f->pMethods->xFileSize(f, &size) == SQLITE_OK) {
            int want = size < n ? (int)size : n;
            got = want == 0 || f->pMethods->xRead(f, buf, want, 0) == SQLITE_OK ? want : -1;
        }
    }
    if (f->pMethods) f->pMethods->xClose(f); /* unix VFS: kept open while this process holds locks */
    free(f);
    return got;
}

int vr_db_force_reset(sqlite3 *w) {
    sqlite3_file *wf = NULL;
    if (sqlite3_file_control(w, "main", SQLITE_FCNTL_FILE_POINTER, &wf) != SQLITE_OK || !wf ||
        wf->pMethods != &gMethods)
        return SQLITE_MISUSE;
    VRFile *W = (VRFile *)wf;
    if (!W->pDb || !W->holdsWrite) return SQLITE_MISUSE;
    WalIdxHdr h;
    if (readIdxHdr(W, &h, NULL) != 0) memset(&h, 0, sizeof h);
    return resetLineage(W->pDb, W, &h, "the uploader starts a new lineage above the replica") == 0 ? SQLITE_OK
                                                                                                    : SQLITE_IOERR;
}

struct vr_snapshot {
    vr_db *db;
    VRFile *pMain;     /* the reader's main file */
    uint32_t pageSize;
    uint32_t commit;
    uint32_t mxFrame;  /* the reader's WAL position (for matching a TXID) */
    uint32_t salt1, salt2;
    int usesWal;       /* 0: the reader sees the main file only (every frame backfilled) */
    uint32_t *aFrame;  /* pgno -> latest frame index (0 = read from the main file) */
};

int vr_snapshot_begin(sqlite3 *r, vr_snapshot **out, char *err, size_t errLen) {
    *out = NULL;
    sqlite3_file *rf = NULL;
    if (sqlite3_file_control(r, "main", SQLITE_FCNTL_FILE_POINTER, &rf) != SQLITE_OK || !rf ||
        rf->pMethods != &gMethods) {
        snprintf(err, errLen, "the snapshot connection is not opened through the replicated VFS");
        return SQLITE_MISUSE;
    }
    VRFile *R = (VRFile *)rf;
    vr_db *db = R->pDb;
    if (!db || !R->isSnapReader || !R->snapValid) {
        snprintf(err, errLen, "the snapshot connection has no read transaction on a replicated database");
        return SQLITE_MISUSE;
    }
    const WalIdxHdr *h = &R->snapHdr;
    uint32_t pageSize = h->szPage == 1 ? 65536 : h->szPage;
    {
        unsigned char hdr[100];
        sqlite3_file *o = ORIGFILE(R);
        if (o->pMethods->xRead(o, hdr, 100, 0) == SQLITE_OK && pageSize == 0) {
            pageSize = ((uint32_t)hdr[16] << 8) | hdr[17];
            if (pageSize == 1) pageSize = 65536;
        }
    }
    if (pageSize == 0) {
        snprintf(err, errLen, "database %s is empty", db->zPath);
        return SQLITE_EMPTY;
    }
    int usesWal = R->snapSlot > 0 && h->mxFrame > 0;
    uint32_t commit = h->mxFrame > 0 ? h->nPage : mainFilePages(R, pageSize);
    if (commit == 0) {
        snprintf(err, errLen, "database %s is empty", db->zPath);
        return SQLITE_EMPTY;
    }
    vr_snapshot *snap = calloc(1, sizeof *snap);
    if (!snap) return SQLITE_NOMEM;
    snap->db = db;
    snap->pMain = R;
    snap->pageSize = pageSize;
    snap->commit = commit;
    snap->mxFrame = h->mxFrame;
    snap->salt1 = saltBE(h->aSalt[0]);
    snap->salt2 = saltBE(h->aSalt[1]);
    snap->usesWal = usesWal;
    if (usesWal) {
        if (!R->pWal) {
            free(snap);
            snprintf(err, errLen, "snapshot reader has no WAL open");
            return SQLITE_MISUSE;
        }
        snap->aFrame = calloc((size_t)commit + 1, sizeof(uint32_t));
        if (!snap->aFrame) {
            free(snap);
            return SQLITE_NOMEM;
        }
        /* Frame headers only, read in large chunks: pgno of every frame up to the reader's mark. */
        sqlite3_file *wal = ORIGFILE(R->pWal);
        const uint32_t frameSize = 24 + pageSize;
        uint32_t perChunk = VR_COPY_BUFFER / frameSize;
        if (perChunk == 0) perChunk = 1;
        unsigned char *buf = malloc((size_t)perChunk * frameSize);
        if (!buf) {
            vr_snapshot_end(snap);
            return SQLITE_NOMEM;
        }
        for (uint32_t fr = 1; fr <= snap->mxFrame;) {
            uint32_t k = snap->mxFrame - fr + 1;
            if (k > perChunk) k = perChunk;
            sqlite3_int64 off = 32 + (sqlite3_int64)(fr - 1) * frameSize;
            int rc = wal->pMethods->xRead(wal, buf, (int)(k * frameSize), off);
            if (rc != SQLITE_OK) {
                free(buf);
                vr_snapshot_end(snap);
                snprintf(err, errLen, "cannot read the WAL of %s", db->zPath);
                return rc;
            }
            for (uint32_t j = 0; j < k; j++) {
                uint32_t pg = get4(buf + (size_t)j * frameSize);
                if (pg >= 1 && pg <= commit) snap->aFrame[pg] = fr + j;
            }
            fr += k;
        }
        free(buf);
    }
    *out = snap;
    return SQLITE_OK;
}

uint32_t vr_snapshot_page_size(vr_snapshot *s) { return s->pageSize; }
uint32_t vr_snapshot_commit(vr_snapshot *s) { return s->commit; }
uint32_t vr_snapshot_wal_frame(vr_snapshot *s) { return s->mxFrame; }
uint32_t vr_snapshot_salt1(vr_snapshot *s) { return s->salt1; }
uint32_t vr_snapshot_salt2(vr_snapshot *s) { return s->salt2; }

int vr_snapshot_read_page(vr_snapshot *s, uint32_t pgno, void *buf) {
    if (pgno == 0 || pgno > s->commit) return SQLITE_RANGE;
    uint32_t fr = s->aFrame ? s->aFrame[pgno] : 0;
    if (fr) {
        sqlite3_file *wal = ORIGFILE(s->pMain->pWal);
        sqlite3_int64 off = 32 + (sqlite3_int64)(fr - 1) * (24 + s->pageSize) + 24;
        return wal->pMethods->xRead(wal, buf, (int)s->pageSize, off);
    }
    sqlite3_file *o = ORIGFILE(s->pMain);
    int rc = o->pMethods->xRead(o, buf, (int)s->pageSize, (sqlite3_int64)(pgno - 1) * s->pageSize);
    if (rc == SQLITE_IOERR_SHORT_READ) rc = SQLITE_OK; /* zero-filled by the unix VFS */
    return rc;
}

void vr_snapshot_end(vr_snapshot *s) {
    free(s->aFrame);
    free(s);
}
