/*
 * vfs.c - the `replicated` VFS.
 *
 * Written in the style of SQLite's own shims (ext/misc/cksumvfs.c, vfstrace.c): our file
 * object (VRFile, internal.h) starts with sqlite3_file and is followed by the parent's file
 * object; files that are not replicated databases (temp files, journals of other databases) pass
 * straight through. Here: the io methods, the pragmas and file controls the shim answers or
 * refuses, open (and the switch of a database to WAL mode), delete (the clean close), and
 * registration. xShmLock is where the shim meets SQLite's WAL protocol: at the release of the
 * WAL write lock it calls the commit point, vr_capture_commit_point (capture.c); when the lock is
 * taken, vr_capture_write_lock_taken. The spool is spool.c, the shared state state.c, the
 * snapshot reader snapshot.c (internal.h lists every file).
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

static sqlite3_vfs gVfs;
static sqlite3_vfs *gParent;
sqlite3_io_methods gMethods;

static void vrLog(int rc, const char *fmt, const char *a, const char *b) {
    sqlite3_log(rc, fmt, a, b);
}

/* --- io methods ----------------------------------------------------------------------------- */

static int vrClose(sqlite3_file *pFile) {
    VRFile *p = (VRFile *)pFile;
    if (p->hostOpen && atomic_fetch_sub(&p->pDb->hostOpens, 1) == 1) vr_wait_base_at_last_close(p->pDb);
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
            int err = vr_spool_reserve(db, end);
            if (err) err = vr_spool_reserve_in(db, end, 4096); /* a nearly full disk: just what it needs */
            if (err) {
                vr_note_spool_trouble(db, err, "no space for the transaction's frames");
                if (!db->spoolGrow) return SQLITE_FULL;
            }
        }
    }
    int rc = ORIGFILE(pFile)->pMethods->xWrite(ORIGFILE(pFile), z, n, off);
    if (rc == SQLITE_OK && p->isWal && p->pMain && p->pMain->holdsWrite) vr_stage_write(p->pDb, z, n, off);
    return rc;
}
static int vrTruncate(sqlite3_file *pFile, sqlite3_int64 size) {
    VRFile *p = (VRFile *)pFile;
    if (p->isWal && p->pMain && size == 0) {
        /* A TRUNCATE checkpoint or journal_size_limit: frames are going away; the spool must be
         * durable first (docs/ARCHITECTURE.md, "What is durable when"). If it cannot be, the WAL
         * keeps them. */
        if (vr_sync_spool_or_warn(p->pMain->pDb, "before the WAL is truncated: the WAL keeps its frames") != 0)
            return SQLITE_IOERR_TRUNCATE;
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
                return a[0] ? SQLITE_OK : SQLITE_NOMEM;
            }
            if (isPragma(a, "replicated_durable_txid")) {
                vr_state_view v;
                vr_db_read_state(p->pDb, &v);
                a[0] = sqlite3_mprintf("%llu", (unsigned long long)v.shippedTxid);
                return a[0] ? SQLITE_OK : SQLITE_NOMEM;
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
                int rc = vr_reconcile(p);
                if (rc != SQLITE_OK) {
                    sqlite3_log(SQLITE_WARNING, "vfsreplication: %s: capture before checkpoint failed (%d)",
                                p->pDb->zPath, rc);
                    if (p->pDb->lastErrno) {
                        /* vrDelete keeps the WAL: its frames are spooled at the next open. */
                        VRState *s = p->pDb->pState;
                        stateBegin(s);
                        s->captureBehind = 1;
                        stateEnd(s);
                        vr_note_spool_trouble(p->pDb, p->pDb->lastErrno, "transactions wait in the WAL to be spooled");
                    }
                }
            }
            /* SQLite ignores what this file control returns: a spool that cannot be synced is
             * reported, and vrTruncate / vrDelete keep the WAL's frames until it can. */
            vr_sync_spool_or_warn(p->pDb, "before a checkpoint: a power loss could lose transactions");
            break;
        case SQLITE_FCNTL_CKPT_DONE:
            p->inCkpt = 0;
            break;
        case SQLITE_FCNTL_COMMIT_PHASETWO:
            if (p->pDb->remote && p->lastCommitTxid && p->lastCommitTxid != p->gateTxid) {
                p->gateTxid = p->lastCommitTxid;
                p->gateDurable = vr_wait_durable(p->pDb, p->gateTxid);
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
        /* The commit point (capture.c): the transaction is captured before the lock goes. */
        vr_capture_commit_point(p);
        return o->pMethods->xShmLock(o, offset, n, flags);
    }
    if (flags == (SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE) && p->pDb->spoolMax && !p->inCkpt &&
        vr_spool_over_limit(p->pDb)) {
        return SQLITE_BUSY; /* spool-full: block: the app's busy handler waits for the uploader */
    }
    int rc = o->pMethods->xShmLock(o, offset, n, flags);
    if (rc == SQLITE_OK && flags == (SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE)) {
        p->holdsWrite = 1;
        if (vr_capture_write_lock_taken(p)) {
            /* spool-full: block. The writer waits (SQLite's busy handler retries) until the spool
             * has space; nothing was written, so handing the lock back is all there is to undo. */
            p->holdsWrite = 0;
            stageReset(p->pDb);
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
        if (db && vr_sync_spool_or_warn(db, "at close: keeping the WAL") != 0) return SQLITE_IOERR_DELETE;
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
    if (rc == SQLITE_OK && db) vr_record_clean_close(db);
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

