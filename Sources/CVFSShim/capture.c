/*
 * capture.c - capturing committed WAL transactions into the spool.
 *
 * The commit is captured at the release of the WAL write lock (vr_capture_commit_point, called
 * by vrShmLock in vfs.c), after SQLite wrote, synced and published the commit frame (see
 * docs/ARCHITECTURE.md, "The commit point": never at the commit frame's xWrite, because
 * cache-spill rewrites can still change earlier frames). The frames between the last captured position and the published mxFrame are taken
 * from what this process staged as it wrote them under the write lock (vr_stage_write in
 * internal.h: inline, as it runs at every WAL write), or
 * re-read from the WAL and verified (salts, checksum chain), appended to the spool with one
 * pwritev per transaction, and the shared state is updated once per commit. The same
 * reconciliation runs when the write lock is taken (to pick up the commit of a writer that died
 * between publishing and spooling) and before the closing checkpoint. What reconcile does is
 * decided by vr_reconcile_decide (include/vfsreconcile.h), a pure function; the records are
 * written by spool.c, the shared state is state.c's.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>

/* ------------------------------------------------------------------------------------------ */
/* The WAL format                                                                             */

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

/* ------------------------------------------------------------------------------------------ */
/* Clean closes and lineage resets                                                            */

static int cleanCloseMatches(vr_db *db) {
    VRState *s = db->pState;
    if (!s->cleanValid) return 0;
    struct stat st;
    if (vr_sys_stat(db->zPath, &st) != 0) return 0;
    int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return (uint64_t)st.st_ino == s->cleanIno && (uint64_t)st.st_size == s->cleanSize && mt == s->cleanMtimeNs;
}

void vr_record_clean_close(vr_db *db) {
    VRState *s = db->pState;
    struct stat st;
    if (vr_sys_stat(db->zPath, &st) != 0) return;
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

int vr_reset_lineage(vr_db *db, VRFile *f, const WalIdxHdr *h, const char *why) {
    VRState *s = db->pState;
    uint32_t pageSize = h->szPage == 1 ? 65536 : h->szPage;
    uint32_t pages = h->mxFrame ? h->nPage : vr_main_file_pages(f, pageSize);
    if (pageSize == 0) pageSize = s->pageSize;
    sqlite3_log(SQLITE_NOTICE, "vfsreplication: %s: %s; the next shipment is a snapshot", db->zPath, why);
    statAdd(&gStats.resets, 1);
    return vr_spool_marker(db, VR_REC_RESET, nextTxid(s), h, pageSize, pages);
}

/* ------------------------------------------------------------------------------------------ */
/* Frame capture                                                                              */

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
    /* One clock read per capture: the COMMIT records' time and lastCommitMs (the transactions
     * of one capture are spooled within microseconds of each other). */
    const int64_t now = nowMs();

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
                    c->timestampMs = now;
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
                    /* publish the transaction to the shared state: once per commit */
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
                    s->lastCommitMs = now;
                    s->cleanValid = 0;
                    s->captures++;
                    stateEnd(s);
                    wakeIdleUploader(db);
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

/* ------------------------------------------------------------------------------------------ */
/* Reconcile                                                                                  */

static vr_reconcile_decision decided(vr_reconcile_action action, int adoptCleanFirst) {
    vr_reconcile_decision d = {.action = action, .adoptCleanFirst = adoptCleanFirst};
    return d;
}
static vr_reconcile_decision resetFor(const char *why, int adoptCleanFirst) {
    vr_reconcile_decision d = {.action = VR_RECONCILE_RESET, .adoptCleanFirst = adoptCleanFirst, .reason = why};
    return d;
}

/* The rules. Inlined into vr_reconcile, which runs at every commit; vr_reconcile_decide is the
 * same function for tests. */
static inline __attribute__((always_inline)) vr_reconcile_decision decide(const vr_reconcile_input *in) {
    int sameSalts = in->walValid && in->idxSalt1 == in->walSalt1 && in->idxSalt2 == in->walSalt2;

    /* the common case: nothing new */
    if (sameSalts && in->idxMxFrame == in->walFrame && !in->cleanValid) return decided(VR_RECONCILE_NOTHING, 0);

    /* What the shared state says once a matching clean close is adopted. */
    int walValid = in->walValid, adopt = 0;
    uint32_t walFrame = in->walFrame, walSalt1 = in->walSalt1, walSalt2 = in->walSalt2;
    if (in->cleanValid) {
        /* The last connection closed cleanly and the WAL was deleted: the database file must be
         * exactly as it was then (same inode, size and mtime), else someone changed it without
         * the shim (or a restore replaced it). */
        if (!in->cleanMatches) return resetFor("the database changed while it was closed", 0);
        adopt = 1;
        walValid = 1;
        walFrame = 0;
        walSalt1 = in->idxSalt1;
        walSalt2 = in->idxSalt2;
        if (in->idxMxFrame == 0) return decided(VR_RECONCILE_ADOPT_CLEAN, 1);
    }
    if (!walValid) return resetFor("no replication history for this database", adopt);
    sameSalts = in->idxSalt1 == walSalt1 && in->idxSalt2 == walSalt2;
    if (sameSalts && in->idxMxFrame == walFrame) return decided(VR_RECONCILE_NOTHING, adopt);
    /* A WAL restart (after every frame was checkpointed) bumps salt-1 by one. */
    int restarted = in->idxSalt1 == walSalt1 + 1;

    if (in->idxMxFrame == 0) {
        if (restarted || walFrame == 0) return decided(VR_RECONCILE_RECORD_RESTART, adopt);
        return resetFor("the WAL was reset outside the replicated VFS", adopt);
    }

    if (!in->walOpen) return resetFor("WAL not open through the replicated VFS", adopt);
    if (!in->walHeaderKnown) return decided(VR_RECONCILE_READ_WAL_HEADER, adopt);
    if ((in->walMagic & 0xFFFFFFFEu) != 0x377f0682u || in->walVersion != 3007000u) {
        return resetFor("unsupported WAL format", adopt);
    }
    if (!in->walSaltsMatch) return resetFor("WAL header does not match wal-index", adopt);

    vr_reconcile_decision d = decided(VR_RECONCILE_CAPTURE, adopt);
    if (sameSalts && in->idxMxFrame > walFrame && walFrame > 0) {
        d.firstFrame = walFrame + 1;
        d.seed1 = in->walCk1;
        d.seed2 = in->walCk2;
    } else if (walFrame == 0 || restarted) {
        d.firstFrame = 1;
        d.seed1 = in->walCk1Header;
        d.seed2 = in->walCk2Header;
    } else {
        return resetFor("the WAL does not continue the captured history", adopt);
    }
    return d;
}

vr_reconcile_decision vr_reconcile_decide(const vr_reconcile_input *in) { return decide(in); }

/* Brings the spool up to date with the WAL as published in the wal-index. Called while this
 * connection holds the WAL write lock, or during the closing checkpoint (exclusive lock). Reads
 * (wal-index header, shared state, and the WAL header only when the decision needs it), asks
 * vr_reconcile_decide, and does what it says. */
int vr_reconcile(VRFile *f) {
    vr_db *db = f->pDb;
    VRState *s = db->pState;
    WalIdxHdr h;
    if (readIdxHdr(f, &h, NULL) != 0) return SQLITE_OK; /* nothing published yet */

    /* (Segments rotate when the write lock is taken, before the spool space for the
     * transaction is reserved: see vr_spool_prepare.) */

    vr_reconcile_input in;
    in.idxSalt1 = saltBE(h.aSalt[0]);
    in.idxSalt2 = saltBE(h.aSalt[1]);
    in.idxMxFrame = h.mxFrame;
    in.walOpen = f->pWal != NULL;
    in.walHeaderKnown = 0;
    unsigned char whdr[32];
    vr_reconcile_decision d;
    for (;;) {
        in.walValid = (int)s->walValid;
        in.walFrame = s->walFrame;
        in.walSalt1 = saltBE(s->walSalt1);
        in.walSalt2 = saltBE(s->walSalt2);
        in.walCk1 = s->walCk1;
        in.walCk2 = s->walCk2;
        in.cleanValid = (int)s->cleanValid;
        in.cleanMatches = in.cleanValid && cleanCloseMatches(db);
        d = decide(&in);
        if (d.adoptCleanFirst) {
            stateBegin(s);
            s->cleanValid = 0;
            s->walValid = 1;
            s->walFrame = 0;
            memcpy(&s->walSalt1, &h.aSalt[0], 4);
            memcpy(&s->walSalt2, &h.aSalt[1], 4);
            stateEnd(s);
        }
        if (d.action != VR_RECONCILE_READ_WAL_HEADER) break;
        if (db->walHdrValid && memcmp(db->walHdr + 16, &h.aSalt[0], 8) == 0) {
            memcpy(whdr, db->walHdr, 32);
        } else {
            sqlite3_file *wal = ORIGFILE(f->pWal);
            int rc = wal->pMethods->xRead(wal, whdr, 32, 0);
            if (rc != SQLITE_OK) return rc;
        }
        in.walHeaderKnown = 1;
        in.walMagic = get4(whdr);
        in.walVersion = get4(whdr + 4);
        in.walSaltsMatch = memcmp(whdr + 16, &h.aSalt[0], 8) == 0;
        in.walCk1Header = get4(whdr + 24);
        in.walCk2Header = get4(whdr + 28);
    }

    switch (d.action) {
    case VR_RECONCILE_RECORD_RESTART:
        stateBegin(s);
        s->walFrame = 0;
        memcpy(&s->walSalt1, &h.aSalt[0], 4);
        memcpy(&s->walSalt2, &h.aSalt[1], 4);
        stateEnd(s);
        return SQLITE_OK;
    case VR_RECONCILE_RESET:
        return vr_reset_lineage(db, f, &h, d.reason);
    case VR_RECONCILE_CAPTURE: {
        int rc = captureFrames(db, f, &h, d.firstFrame, d.seed1, d.seed2, get4(whdr + 8), (int)(in.walMagic & 1));
        if (rc == SQLITE_CORRUPT) {
            return vr_reset_lineage(db, f, &h, "the WAL frames do not continue the captured history");
        }
        return rc;
    }
    default: /* NOTHING, ADOPT_CLEAN (done above) */
        return SQLITE_OK;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The commit point, and the write lock's acquisition                                         */

/* THE COMMIT POINT: the connection holding the WAL write lock releases it (vrShmLock), so the
 * transaction it committed is written, synced and published in the wal-index. This is where a
 * commit is captured: before anyone else can take the write lock. */
void vr_capture_commit_point(VRFile *p) {
    vr_db *db = p->pDb;
    uint64_t before = db->pState->lastTxid;
    db->lastErrno = 0;
    int rc = vr_reconcile(p);
    if (db->pState->lastTxid > before) p->lastCommitTxid = db->pState->lastTxid;
    if (rc != SQLITE_OK && db->lastErrno == 0 && !db->pState->captureBehind) {
        /* Not the spool's disk (the WAL could not be read back, say): as before, a new lineage. */
        sqlite3_log(SQLITE_WARNING,
                    "vfsreplication: %s: capturing the transaction failed (%d); the next shipment is a snapshot",
                    db->zPath, rc);
        WalIdxHdr h;
        if (readIdxHdr(p, &h, NULL) == 0) vr_reset_lineage(db, p, &h, "capture failed");
    } else if (rc != SQLITE_OK) {
        /* The commit is in the WAL and stays there: nothing restarts the WAL while the spool is
         * behind (read-mark locks in vrShmLock, the WAL kept at close), so the next writer (or the
         * uploader's probe) spools these frames, as their own transactions, once the spool can
         * be written again. A new lineage here would lose every restore point until then. */
        VRState *s = db->pState;
        stateBegin(s);
        s->captureBehind = 1;
        stateEnd(s);
        vr_note_spool_trouble(db, db->lastErrno, "a committed transaction waits in the WAL to be spooled");
    } else if (db->pState->spoolErrno || db->pState->captureBehind) {
        vr_note_spool_ok(db);
    }
    p->holdsWrite = 0;
    stageReset(db);
}

int vr_capture_write_lock_taken(VRFile *p) {
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
            int rc2 = vr_reconcile(p);
            if (rc2 != SQLITE_OK) {
                if (s->captureBehind || db->lastErrno) {
                    stateBegin(s);
                    s->captureBehind = 1;
                    stateEnd(s);
                    trouble = 1;
                    vr_note_spool_trouble(db, db->lastErrno, "committed transactions wait in the WAL to be spooled");
                } else {
                    sqlite3_log(rc2, "vfsreplication: %s: reconcile failed", db->zPath);
                }
            }
        }
        if (h.mxFrame > 0 && nBackfill == h.mxFrame) {
            vr_sync_spool_or_warn(db, "before the WAL may restart: a power loss could lose transactions the WAL "
                                      "no longer holds");
        }
    }
    /* Space for this transaction before it writes anything; see vr_spool_prepare and vrWrite. */
    if (!trouble && published) {
        int err = vr_spool_prepare(db);
        if (err) {
            trouble = 1;
            vr_note_spool_trouble(db, err, "no space to reserve for new transactions");
        } else if (s->spoolErrno && !s->captureBehind) {
            vr_note_spool_ok(db);
        }
    }
    txBegin(db);
    return trouble && !db->spoolGrow && !p->inCkpt;
}
