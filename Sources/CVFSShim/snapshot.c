/*
 * snapshot.c - reading a database as one connection sees it, for the uploader's snapshots.
 *
 * The uploader ships a full snapshot (a base, or after a lineage reset) from a read transaction
 * of its own connection through the VFS (VR_FCNTL_SNAPSHOT_READER): vrShmLock in vfs.c records
 * the wal-index header seen when that connection's read mark was taken, which is exactly its
 * snapshot; vr_snapshot_* then map every page to its newest frame up to that mark and read it
 * from the WAL or the main file. Also here: vr_file_read_prefix (a file's first bytes under the
 * unix VFS, whose POSIX locks a plain open/close could drop), and vr_db_force_reset (the
 * uploader's request for a new lineage, written by capture.c's vr_reset_lineage).
 */
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

/* Database size in pages from the main file when the WAL is empty. */
uint32_t vr_main_file_pages(VRFile *f, uint32_t pageSize) {
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

int vr_file_read_prefix(const char *path, void *buf, int n) {
    if (n <= 0) return -1;
    if (vr_process_exiting()) {
        /* No SQLite once the process exits (vr_process_exit_begin); the connections that a
         * close() here could unlock will not write again. */
        int fd = vr_sys_open(path, O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0) return -1;
        ssize_t got = vr_sys_pread(fd, buf, (size_t)n, 0);
        vr_sys_close(fd);
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
    return vr_reset_lineage(W->pDb, W, &h, "the uploader starts a new lineage above the replica") == 0 ? SQLITE_OK
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
    uint32_t commit = h->mxFrame > 0 ? h->nPage : vr_main_file_pages(R, pageSize);
    if (commit == 0) {
        snprintf(err, errLen, "database %s is empty", db->zPath);
        return SQLITE_EMPTY;
    }
    vr_snapshot *snap = calloc(1, sizeof *snap);
    if (!snap) {
        snprintf(err, errLen, "database %s: out of memory for the snapshot", db->zPath);
        return SQLITE_NOMEM;
    }
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
            snprintf(err, errLen, "database %s: out of memory for the snapshot's page map", db->zPath);
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
            snprintf(err, errLen, "database %s: out of memory for reading the WAL", db->zPath);
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
