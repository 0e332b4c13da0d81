/*
 * spool.c - the spool beside each database: X-vfsrepl/spool/N.seg.
 *
 * A segment is a sequence of records (vr_rec_header, CRC-32C sealed, each FRAMES record followed
 * by raw WAL frames). Everything that appends, holds the WAL write lock (or the closing
 * checkpoint's exclusive lock), which serializes every process: the capture (capture.c) appends
 * FRAMES and COMMIT records; this file writes markers, opens and rolls segments over, reserves
 * disk space ahead of the commit (so the capture cannot fail for want of space), reports spool
 * trouble, punches out shipped bytes and makes the spool durable before SQLite may overwrite
 * WAL frames. The shared state it updates is in state.c; the VFS that calls it is vfs.c.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdio.h>

/* ------------------------------------------------------------------------------------------ */
/* Record format                                                                              */

uint32_t vr_crc_table[256];
static pthread_once_t crcOnce = PTHREAD_ONCE_INIT;
static void crcInit(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        vr_crc_table[i] = c;
    }
    int how = 1;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) how = 2;
#endif
    __atomic_store_n(&vr_crc_ready, how, __ATOMIC_RELEASE);
}
int vr_crc_ready;
int vr_crc_init(void) {
    pthread_once(&crcOnce, crcInit);
    return __atomic_load_n(&vr_crc_ready, __ATOMIC_ACQUIRE);
}
uint32_t vr_crc32c(uint32_t crc, const void *data, size_t n) { return crc32cInline(crc, data, n); }

/* ------------------------------------------------------------------------------------------ */
/* Segments                                                                                   */

void vr_db_segment_path(vr_db *db, uint64_t seg, char *buf, size_t len) {
    snprintf(buf, len, "%s/spool/%016llx.seg", db->zDir, (unsigned long long)seg);
}

int vr_rec_valid(const vr_rec_header *h, uint64_t segment) {
    if (h->magic == VR_REC_MAGIC2) return h->hdrCrc == recCrc(h, segment);
    if (h->magic == VR_REC_MAGIC) return h->hdrCrc == crc32cInline(0, h, offsetof(vr_rec_header, hdrCrc));
    return 0;
}

static uint64_t segmentTarget(vr_db *db);

/* Spare segments (vr_db_add_spare): shipped segments kept for reuse. */
static void spareSegmentPath(vr_db *db, int k, char *buf, size_t len) {
    snprintf(buf, len, "%s/spool/spare-%d.seg", db->zDir, k);
}

int vr_db_add_spare(vr_db *db, uint64_t seg) {
    char from[PATH_MAX];
    vr_db_segment_path(db, seg, from, sizeof from);
    return vr_db_offer_spare(db, from);
}

int vr_db_offer_spare(vr_db *db, const char *from) {
    char to[PATH_MAX];
    for (int k = 1; k <= VR_SPARES; k++) {
        spareSegmentPath(db, k, to, sizeof to);
        int rc = vr_sys_rename_noreplace(from, to);
        if (rc == 0) return 1;
        if (rc != EEXIST) return 0;
    }
    return 0;
}

int vr_db_spare_count(vr_db *db) {
    char path[PATH_MAX];
    int n = 0;
    struct stat st;
    for (int k = 1; k <= VR_SPARES; k++) {
        spareSegmentPath(db, k, path, sizeof path);
        if (vr_sys_stat(path, &st) == 0) n++;
    }
    return n;
}

void vr_db_spare_temp_path(vr_db *db, char *buf, size_t len) { snprintf(buf, len, "%s/spool/spare.tmp", db->zDir); }

uint64_t vr_db_segment_target(vr_db *db) { return segmentTarget(db); }

void vr_db_drop_spares(vr_db *db) {
    char path[PATH_MAX];
    for (int k = 1; k <= VR_SPARES; k++) {
        spareSegmentPath(db, k, path, sizeof path);
        (void)vr_sys_unlink(path); /* ENOENT: no spare in that slot */
    }
}

/* spoolOpenSegment (internal.h) when the open segment is not the append segment. */
int vr_spool_open_segment_slow(vr_db *db) {
    VRState *s = db->pState;
    if (db->segFd >= 0 && db->segNo == s->appendSeg) return 0;
    if (db->segFd >= 0) vr_sys_close(db->segFd);
    db->segFd = -1;
    char path[PATH_MAX];
    vr_db_segment_path(db, s->appendSeg, path, sizeof path);
    int fd = vr_sys_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return db->lastErrno = errno;
    db->segFd = fd;
    db->segNo = s->appendSeg;
    return 0;
}

/* Writes a marker record (RESET or SNAPSHOT) and commits it to the state. Caller holds the
 * write lock. */
int vr_spool_marker(vr_db *db, uint32_t kind, uint64_t txid, const WalIdxHdr *h, uint32_t pageSize,
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
    wakeIdleUploader(db);
    return 0;
}

int vr_spool_punch(const char *path, uint64_t from, uint64_t to) {
    from = (from + 4095) & ~4095ull;
    to &= ~4095ull;
    if (to <= from) return 0;
    int fd = vr_sys_open(path, O_WRONLY | O_CLOEXEC, 0);
    if (fd < 0) return errno;
    int rc = vr_sys_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(to - from));
    vr_sys_close(fd);
    return rc;
}

uint64_t vr_db_spool_pending(vr_db *db) {
    VRState *s = db->pState;
    vr_state_view shipped;
    vr_state_read_shipped(s, &shipped);
    uint64_t aSeg = s->appendSeg, aOff = s->appendOff, sSeg = shipped.shippedSeg, sOff = shipped.shippedOff;
    if (aSeg < sSeg || (aSeg == sSeg && aOff < sOff)) return 0;
    if (aSeg == sSeg) return aOff - sOff;
    uint64_t total = aOff;
    char path[PATH_MAX];
    for (uint64_t seg = sSeg; seg < aSeg; seg++) {
        struct stat st;
        vr_db_segment_path(db, seg, path, sizeof path);
        uint64_t size = vr_sys_stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
        total += seg == sSeg ? (size > sOff ? size - sOff : 0) : size;
    }
    return total;
}

/* ------------------------------------------------------------------------------------------ */
/* Durability                                                                                 */

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
        if (own) vr_sys_close(fd);
        if (rc != 0) return rc;
    }
    int rc = vr_sys_fsync(db->stateFd);
    if (rc != 0) return rc;
    stateBegin(s);
    s->syncSeg = endSeg;
    s->syncOff = endOff;
    s->spoolSyncs++;
    stateEnd(s);
    return 0;
}

int vr_sync_spool_or_warn(vr_db *db, const char *when) {
    int rc = vr_db_sync_spool(db);
    if (rc) {
        int64_t now = nowMs();
        if (now - db->lastTroubleWarnMs >= 10000) {
            db->lastTroubleWarnMs = now;
            sqlite3_log(SQLITE_WARNING, "vfsreplication: %s: cannot sync the spool in %s (%s) %s", db->zPath,
                        db->zDir, strerror(rc), when);
        }
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Disk space                                                                                 */

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
void vr_note_spool_trouble(vr_db *db, int err, const char *what) {
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
void vr_note_spool_ok(vr_db *db) {
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
    int rc = vr_sys_truncate(path, (off_t)s->appendOff);
    if (rc != 0 && rc != ENOENT) return db->lastErrno = rc;
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
        if (vr_sys_rename_noreplace(spare, path) != ENOENT) break;
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
int vr_spool_reserve_in(vr_db *db, uint64_t end, uint64_t chunk) {
    VRState *s = db->pState;
    if (db->noFallocate || (s->allocSeg == s->appendSeg && s->allocEnd >= end)) return 0;
    int rc = spoolOpenSegment(db);
    if (rc) return rc;
    uint64_t from = s->allocSeg == s->appendSeg && s->allocEnd > s->appendOff ? s->allocEnd : s->appendOff;
    uint64_t to = (end + chunk - 1) / chunk * chunk;
    if (to <= from) return 0;
    rc = vr_sys_fallocate(db->segFd, FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(to - from));
    if (rc == EOPNOTSUPP || rc == ENOSYS) {
        /* Nothing to reserve with: captures then find a full disk only when they write. */
        db->noFallocate = 1;
        sqlite3_log(SQLITE_WARNING, "vfsreplication: %s: the filesystem of %s cannot preallocate; spool space "
                    "is not reserved before commits", db->zPath, db->zDir);
        return 0;
    }
    if (rc) return db->lastErrno = rc;
    stateBegin(s);
    s->allocSeg = s->appendSeg;
    s->allocEnd = to;
    stateEnd(s);
    return 0;
}
int vr_spool_reserve(vr_db *db, uint64_t end) { return vr_spool_reserve_in(db, end, reserveChunk(db)); }

/* At the write-lock acquisition, before the transaction writes anything (caller holds the
 * lock): roll over to a new segment if due, and reserve spool space ahead. Returns 0 or errno. */
int vr_spool_prepare(vr_db *db) {
    VRState *s = db->pState;
    int shipped = s->shippedSeg == s->appendSeg && s->shippedOff == s->appendOff;
    if (s->appendOff >= segmentTarget(db) || (shipped && s->appendOff >= VR_RECLAIM_ROTATE)) {
        int rc = spoolRotate(db);
        if (rc) return rc;
    }
    uint64_t chunk = reserveChunk(db);
    uint64_t have = s->allocSeg == s->appendSeg && s->allocEnd > s->appendOff ? s->allocEnd - s->appendOff : 0;
    if (have >= chunk / 2 && s->allocSeg == s->appendSeg) return 0;
    if (vr_spool_reserve(db, s->appendOff + chunk) == 0) return 0;
    /* A nearly full disk: a small transaction may still fit (vrWrite reserves the rest). */
    return have >= VR_RESERVE_MIN && s->allocSeg == s->appendSeg ? 0
                                                                 : vr_spool_reserve_in(db, s->appendOff + VR_RESERVE_MIN, 4096);
}

/* Before a write transaction takes the lock, with spool-max-bytes: 1 when the writer must wait
 * (SQLITE_BUSY; spool-full: block), 0 when it may go on (over the bound with spool-full: grow,
 * recorded in the shared state). Bytes on disk: what is not shipped plus the reserve ahead of it
 * (shipped bytes are reclaimed by the uploader: old segments unlinked, the current one
 * hole-punched). */
int vr_spool_over_limit(vr_db *db) {
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
        if (!db->spoolGrow) return 1;
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
    return 0;
}
