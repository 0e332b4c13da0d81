/* internal.h - what the shim's C files share (not exported to Swift).
 *
 * The shim is split by responsibility, as SQLite keeps os_unix.c and wal.c apart:
 *   vfs.c       the `replicated` VFS: its io methods, pragmas and file controls, open/delete,
 *               registration; calls the commit point at the WAL write-lock release
 *   capture.c   the wal-index header, reconcile (the decision is vr_reconcile_decide in
 *               include/vfsreconcile.h), frame capture, the commit point; the staging of WAL
 *               bytes written under the write lock is here below (inline, see vr_stage_write)
 *   spool.c     segments, records and markers, space reservation, rotation, hole punching, sync
 *   state.c     the shared state: seqlock updates, the registry of databases, futexes, uploader
 *               election, fork handling, process exit, the CRC and WAL checksums
 *   snapshot.c  the uploader's snapshot reader, vr_file_read_prefix, vr_db_force_reset
 *   sys.c       every system call, EINTR-safe and errno-reporting, and the io_uring facade
 *   sql.c, status.c  SQLite wrappers for Swift, and vfs-status's probes
 * Helpers on the commit path used across files are `static inline` here, so that the split
 * costs no call. */
#ifndef VFSSHIM_INTERNAL_H
#define VFSSHIM_INTERNAL_H
#include "vfsshim.h"
#include "vfsreconcile.h"
#include "sqlite_api.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

/* ------------------------------------------------------------------------------------------ */
/* System calls (sys.c). EINTR is retried. Calls that return a count or a descriptor return -1
 * with errno set; the others return 0 or the errno (also left in errno). */

int vr_sys_open(const char *path, int flags, mode_t mode);
int vr_sys_fsync(int fd);
int vr_sys_close(int fd); /* never retried: on Linux the descriptor is gone even after EINTR */
int vr_sys_flock(int fd, int op);
int vr_sys_fstat(int fd, struct stat *st);
int vr_sys_stat(const char *path, struct stat *st);
int vr_sys_mkdir(const char *path, mode_t mode); /* EEXIST counts as success */
int vr_sys_ftruncate(int fd, off_t size);
int vr_sys_truncate(const char *path, off_t size);
int vr_sys_fallocate(int fd, int mode, off_t off, off_t len);
ssize_t vr_sys_read(int fd, void *buf, size_t n);   /* one read: may be short */
ssize_t vr_sys_pread(int fd, void *buf, size_t n, off_t off); /* until n bytes or end of file */
int vr_sys_pwrite_all(int fd, const void *buf, size_t len, int64_t off);
/* Writes every byte of iov[0..n) at off (the iovec array is consumed). Inline, as the one
 * system call of the capture at every commit; the rest of the family is in sys.c. */
static inline int vr_sys_pwritev_all(int fd, struct iovec *iov, int n, uint64_t off) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += iov[i].iov_len;
    while (total > 0) {
        ssize_t w = pwritev(fd, iov, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
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
void *vr_sys_mmap_shared(int fd, size_t len, int writable); /* NULL (errno set) on failure */
void vr_sys_munmap(void *p, size_t len);
/* Shared futexes (no FUTEX_PRIVATE_FLAG: waiters are in other processes). */
void vr_sys_futex_wake(_Atomic uint32_t *addr);
/* renameat2(RENAME_NOREPLACE) of two paths; returns 0 or errno. */
int vr_sys_rename_noreplace(const char *from, const char *to);
int vr_sys_unlink(const char *path);
void vr_sys_futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t timeoutMs);
void vr_sys_sleep_ms(int ms);

static inline int64_t nowMs(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------------------------ */
/* Shared state (mmap'ed by every process; state.c)                                          */

#define VR_STATE_MAGIC 0x56525354u /* 'VRST' */
#define VR_STATE_VERSION 1u
#define VR_STATE_SIZE 4096
#define VR_SEGMENT_TARGET (16ull << 20) /* roll to a new segment past this size */
#define VR_SEGMENT_MIN (256ull << 10)   /* ... or past a quarter of spool-max-bytes, not below this */
#define VR_RECLAIM_ROTATE (1ull << 20)  /* a fully shipped segment past this size rolls over */
#define VR_SPARES VR_SPARES_MAX          /* spare segments kept for reuse (spool/spare-K.seg) */
#define VR_RESERVE_MAX (1ull << 20)     /* spool space is preallocated in chunks of up to this */
#define VR_RESERVE_MIN (64ull << 10)
#define VR_COPY_BUFFER (1u << 20)       /* frames copied per pread/pwritev */
#define VR_STAGE_SIZE (VR_COPY_BUFFER + 65536 + 64)

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
    _Atomic uint32_t uploaderIdle; /* 1: the uploader is parked until a commit wakes it (vr_db_park) */
    /* Seqlock of the uploader's fields (shippedTxid, shippedSeg, shippedOff), which the elected
     * uploader writes without the WAL write lock: under `seq` its update could interleave with a
     * committer's, and a reader would take a half-written state for a whole one. */
    _Atomic uint32_t shipSeq;
    /* Uploader pool wake-up (appended in a later version: zero in older state files). A pool
     * serving many databases waits on one futex, the `bellGen` of its home database's state
     * (the first database it serves); each database it ships names that state file in
     * `bellPath`, and a committer that wakes the idle uploader also rings that bell (ringBell in
     * state.c). `bellToken` is 0 while no pool is named and changes whenever `bellPath` does. */
    _Atomic uint32_t bellGen;
    _Atomic uint32_t bellToken;
    char bellPath[1024];
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
    /* The bell this process last mapped for the database's pool (ringBell): the token it was
     * mapped for and its futex word. Mappings are never unmapped (a racing ringer may hold the
     * old word; one page per change of pool). */
    _Atomic uint32_t bellSeen;
    _Atomic(_Atomic uint32_t *) bellWord;
};

/* The registry (state.c): gMutex guards gDbs and gStats' snapshot. */
extern pthread_mutex_t gMutex;
extern vr_db *gDbs;
extern vr_stats gStats;

static inline void statAdd(uint64_t *field, uint64_t n) { __atomic_fetch_add(field, n, __ATOMIC_RELAXED); }

/* Seqlock: odd while an update is in progress. Set parities explicitly (never toggle), so an
 * update cut short by kill -9 cannot leave the counter inverted for every later reader. */
/* Reads shippedTxid, shippedSeg and shippedOff into `o` consistently (VRState.shipSeq; state.c). */
void vr_state_read_shipped(VRState *s, vr_state_view *o);

static inline void stateBegin(VRState *s) {
    uint32_t v = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, v | 1u, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
}
static inline void stateEnd(VRState *s) {
    atomic_thread_fence(memory_order_seq_cst);
    uint32_t v = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, (v | 1u) + 1u, memory_order_release);
}

static inline uint64_t nextTxid(VRState *s) {
    uint64_t floor = atomic_load(&s->txidFloor);
    return (s->lastTxid > floor ? s->lastTxid : floor) + 1;
}

/* fork() (state.c). In a child that has not restarted its uploaders yet, lets the library do it
 * (a plain load otherwise). */
extern int gForkPending;
void vr_fork_run_hook(void);
static inline void forkCheck(void) {
    if (__builtin_expect(__atomic_load_n(&gForkPending, __ATOMIC_RELAXED), 0)) vr_fork_run_hook();
}
/* Counts this thread's vr_fork_hold brackets: connections opened inside one are the uploader's
 * own, never a host's (vrOpen, vrClose). */
extern __thread int tUploaderSql;

/* The host's last connection to the database is closing: wait (bounded) for the base snapshot. */
void vr_wait_base_at_last_close(vr_db *db);
/* The output gate: waits until the uploader reports `target` durable, or the timeout; 1 if it did. */
int vr_wait_durable(vr_db *db, uint64_t target);

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                              */

static inline uint32_t get4(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
/* A salt as the wal-index keeps it (the WAL header's bytes) as a number. */
static inline uint32_t saltBE(uint32_t raw) { return get4((const unsigned char *)&raw); }

/* CRC-32C (spool.c has the table): inline, as every record header is sealed with it (two per
 * commit). Where the CPU has SSE 4.2 its crc32 instruction does 8 bytes at a time (the same
 * Castagnoli polynomial, so the same values); the byte table is the fallback. By hand: it is 20
 * lines, and no library in the allowed set exposes CRC-32C. */
extern uint32_t vr_crc_table[256];
extern int vr_crc_ready; /* 0: not set up yet, 1: table, 2: crc32 instruction */
int vr_crc_init(void);
#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32cHw(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t c = (uint32_t)~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#endif
static inline uint32_t crc32cInline(uint32_t crc, const void *data, size_t n) {
    int how = __atomic_load_n(&vr_crc_ready, __ATOMIC_ACQUIRE);
    if (__builtin_expect(how == 0, 0)) how = vr_crc_init();
#if defined(__x86_64__)
    if (how == 2) return crc32cHw(crc, data, n);
#endif
    const unsigned char *p = data;
    crc = ~crc;
    while (n--) crc = vr_crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* A record header's CRC: VRS2 headers also cover the number of the segment they are written in
 * (see vr_rec_valid in vfsshim.h: segment files are reused). */
static inline uint32_t recCrc(const vr_rec_header *h, uint64_t segment) {
    return crc32cInline(crc32cInline(0, &segment, sizeof segment), h, offsetof(vr_rec_header, hdrCrc));
}

/* Seals a record of segment `segment`. */
static inline void sealHeader(vr_rec_header *h, uint64_t segment) {
    h->magic = VR_REC_MAGIC2;
    h->hdrCrc = recCrc(h, segment);
}

/* After a transaction or marker is published: wakes the uploader if it sleeps with nothing to
 * do (state.c). One futex call per idle period, none while the uploader has a batch open. The
 * fence pairs with the one in vr_db_park: either the committer sees the flag or the
 * uploader sees the new TXID, never neither. */
void vr_ring_bell(vr_db *db);
static inline void wakeIdleUploader(vr_db *db) {
    VRState *s = db->pState;
    atomic_thread_fence(memory_order_seq_cst);
    if (__builtin_expect(atomic_load_explicit(&s->uploaderIdle, memory_order_relaxed) != 0, 0) &&
        atomic_exchange(&s->uploaderIdle, 0)) {
        atomic_fetch_add(&s->workGen, 1);
        vr_sys_futex_wake(&s->workGen);
        vr_ring_bell(db);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Files of the VFS (vfs.c)                                                                   */

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

/* The VFS's io methods: a file whose pMethods is this is a VRFile. */
extern sqlite3_io_methods gMethods;

/* Reads the wal-index header (copy 1) as published; returns 0 if both copies agree. */
static inline int readIdxHdr(VRFile *f, WalIdxHdr *h, uint32_t *nBackfill) {
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

/* Database size in pages from the main file when the WAL is empty (snapshot.c). */
uint32_t vr_main_file_pages(VRFile *f, uint32_t pageSize);

/* ------------------------------------------------------------------------------------------ */
/* Capture (capture.c)                                                                        */

/* The commit point: called by vrShmLock as the WAL write lock is released by the connection
 * that holds it, after SQLite wrote, synced and published the commit frame. Captures the
 * transaction into the spool before anyone else can take the write lock. */
void vr_capture_commit_point(VRFile *f);
/* At the write-lock acquisition: catches up with a dead writer's commit, makes the spool durable
 * before a WAL restart, reserves space. Returns 1 when the writer must not go on (spool-full:
 * block), 0 otherwise. */
int vr_capture_write_lock_taken(VRFile *f);
/* Brings the spool up to date with the WAL as published in the wal-index. */
int vr_reconcile(VRFile *f);
/* Writes a RESET marker: the next shipment is a snapshot. */
int vr_reset_lineage(vr_db *db, VRFile *f, const WalIdxHdr *h, const char *why);
/* Staging: the capture takes the frames of this process's transaction from here rather than
 * reading the WAL back. Inline: vrWrite calls it at every WAL write. */
static inline void stageReset(vr_db *db) { db->stageStart = db->stageEnd = 0; }
/* Keeps a copy of WAL bytes written under the write lock (contiguous range; a write that does
 * not fit or is not contiguous restarts or drops the staging, and the capture reads the WAL). */
static inline void vr_stage_write(vr_db *db, const void *z, int n, sqlite3_int64 off) {
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
/* The last connection closed cleanly and the WAL is deleted: remember the main file as it is. */
void vr_record_clean_close(vr_db *db);

/* ------------------------------------------------------------------------------------------ */
/* Spool (spool.c)                                                                             */

int vr_spool_open_segment_slow(vr_db *db);
/* Makes the current segment the one open for appending; returns 0 or errno. */
static inline int spoolOpenSegment(vr_db *db) {
    if (db->segFd >= 0 && db->segNo == db->pState->appendSeg) return 0;
    return vr_spool_open_segment_slow(db);
}
/* Appends iov at off in the current segment; returns 0 or errno (kept in db->lastErrno). */
static inline int spoolWritev(vr_db *db, struct iovec *iov, int n, uint64_t off) {
    int rc = vr_sys_pwritev_all(db->segFd, iov, n, off);
    if (rc) db->lastErrno = rc;
    return rc;
}
/* Writes a marker record (RESET or SNAPSHOT) and commits it to the state. */
int vr_spool_marker(vr_db *db, uint32_t kind, uint64_t txid, const WalIdxHdr *h, uint32_t pageSize,
                    uint32_t commitPages);
/* At the write-lock acquisition: roll over if due and reserve space ahead. 0 or errno. */
int vr_spool_prepare(vr_db *db);
/* Before the write lock is taken, with spool-max-bytes: 1 when the writer must wait (BUSY). */
int vr_spool_over_limit(vr_db *db);
/* Reserve spool space up to `end` of the current segment (chunk: granularity). 0 or errno. */
int vr_spool_reserve_in(vr_db *db, uint64_t end, uint64_t chunk);
int vr_spool_reserve(vr_db *db, uint64_t end);
/* Spool bytes the WAL bytes [txWalBase, walEnd) need: frames plus record headers (a FRAMES
 * header per copy chunk and per transaction, a COMMIT header per transaction; a backlog of many
 * small transactions has a pair of headers per transaction, at most a quarter of its bytes). */
static inline uint64_t spoolNeed(vr_db *db, int64_t walEnd) {
    if (walEnd <= db->txWalBase) return 256;
    uint64_t len = (uint64_t)(walEnd - db->txWalBase);
    return len + 256 + (db->pState->captureBehind ? len / 4 : len / 256);
}
/* Where this writer's frames start in the WAL: after the captured ones. */
static inline void txBegin(vr_db *db) {
    VRState *s = db->pState;
    db->txWalBase = 32;
    if (s->walValid && s->pageSize) db->txWalBase = 32 + (int64_t)s->walFrame * (24 + (int64_t)s->pageSize);
}
/* The spool cannot be written / can again: the shared state and (rate-limited) the log say so. */
void vr_note_spool_trouble(vr_db *db, int err, const char *what);
void vr_note_spool_ok(vr_db *db);
/* vr_db_sync_spool, and a warning naming the database when it fails; returns 0 or errno. */
int vr_sync_spool_or_warn(vr_db *db, const char *when);

#endif
