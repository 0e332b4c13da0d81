/*
 * vfsshim.h - the `replicated` SQLite VFS: a shim over the unix VFS that captures every
 * committed WAL transaction into a local spool beside the database.
 *
 * Why a shim: capturing inside SQLite's own file calls lets us see a commit the instant the
 * WAL write lock is released, without polling and without holding read transactions that
 * starve checkpoints (what a sidecar has to do). README.md and RELIABILITY.md say what it promises.
 *
 * Spool layout, beside the database `X`:
 *   X-vfsrepl/state          4 KiB, mmap'ed MAP_SHARED by every process: the TXID sequence,
 *                            the last captured WAL position and the uploader's progress.
 *   X-vfsrepl/spool/N.seg    segment files of records (vr_rec_header + raw WAL frames).
 *   X-vfsrepl/spool/spare-K.seg  shipped segments kept for reuse (vr_db_add_spare).
 *   X-vfsrepl/uploader.lock  flock()ed by the process that runs the uploader.
 */
#ifndef VFSSHIM_H
#define VFSSHIM_H

#include <stdint.h>
#include <stddef.h>

/* SQLite's handle types, declared without sqlite3.h: Swift code must reach SQLite only through
 * the vr_sql_* wrappers below (the loadable extension links no libsqlite3). */
typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;

#ifdef __cplusplus
extern "C" {
#endif

/* Name of the VFS this shim registers. */
#define VR_VFS_NAME "replicated"

/* Spool record kinds. */
#define VR_REC_FRAMES 1u   /* nFrame raw WAL frames (24-byte header + page) of one transaction */
#define VR_REC_COMMIT 2u   /* the transaction `txid` is committed; frames precede it */
#define VR_REC_RESET 3u    /* lineage break: the database changed outside the shim; snapshot needed */
#define VR_REC_SNAPSHOT 4u /* reserved (older versions: a snapshot marker) */

#define VR_REC_MAGIC 0x56525331u  /* 'VRS1': older versions; hdrCrc covers the header only */
#define VR_SPARES_MAX 4 /* spare segments (spool/spare-1.seg ... spare-4.seg): vr_db_add_spare */
#define VR_REC_MAGIC2 0x56525332u /* 'VRS2': hdrCrc also covers the segment number (see below) */

/* Flags of a FRAMES record. */
#define VR_FRAMES_BIGENDIAN_CKSUM 1u

/* One spool record header (64 bytes, native byte order: the spool never leaves the machine). */
typedef struct vr_rec_header {
    uint32_t magic;
    uint16_t kind;
    uint16_t flags;
    uint64_t txid;
    uint32_t nFrame;      /* FRAMES: frames following; COMMIT: frames in the whole transaction */
    uint32_t pageSize;
    uint32_t salt1;       /* WAL salts, big-endian values as in the WAL header */
    uint32_t salt2;
    uint32_t ck1;         /* FRAMES: checksum chain seed; COMMIT/RESET/SNAPSHOT: checksum at walFrame */
    uint32_t ck2;
    uint32_t firstFrame;  /* FRAMES: WAL index of the first frame; COMMIT: first frame of the txn */
    uint32_t walFrame;    /* COMMIT: commit frame; RESET/SNAPSHOT: WAL position (mxFrame) */
    int64_t timestampMs;  /* COMMIT/RESET/SNAPSHOT: wall-clock time, ms since the epoch */
    uint32_t commitPages; /* COMMIT/RESET/SNAPSHOT: database size in pages */
    uint32_t hdrCrc;      /* CRC-32C of the bytes before this field */
} vr_rec_header;

/* A copy of the shared state, read consistently (seqlock). */
typedef struct vr_state_view {
    uint64_t lastTxid;       /* last TXID assigned (0 = none yet) */
    uint64_t appendSeg;      /* current append segment */
    uint64_t appendOff;      /* committed end of the spool in appendSeg */
    uint64_t shippedTxid;    /* last TXID durable in the replica */
    uint64_t shippedSeg;     /* spool position the uploader has consumed */
    uint64_t shippedOff;
    uint64_t syncSeg;        /* spool position known durable (fsynced) */
    uint64_t syncOff;
    uint32_t pageSize;
    uint32_t commitPages;    /* database size in pages after lastTxid */
    int64_t lastCommitMs;
    uint32_t walValid;
    uint32_t walFrame;
    uint32_t walSalt1;
    uint32_t walSalt2;
    uint64_t captures;       /* transactions captured (all processes) */
    uint64_t resets;         /* lineage breaks recorded */
    uint64_t spoolSyncs;     /* group fsyncs of the spool */
    uint64_t lineageId;      /* random id of this database's writer, stored in its LTX files */
    /* Disk space (zero in state files of older versions). */
    uint64_t spoolLimit;     /* spool-max-bytes as the last process set it (0: none) */
    uint32_t spoolGrow;      /* its spool-full: 1 = grow, 0 = block */
    uint32_t spoolErrno;     /* the spool cannot be written right now: the errno (0: it can) */
    int64_t spoolErrorMs;    /* ... since then (ms since the epoch) */
    uint64_t spoolFailures;  /* spool writes/reservations that failed, all processes, ever */
    uint32_t captureBehind;  /* 1: committed transactions wait in the WAL to be spooled */
    int64_t overLimitMs;     /* spool-full: grow went past spool-max-bytes at this time (0: within) */
    uint64_t reservedBytes;  /* spool space preallocated past the committed end */
    uint32_t cleanValid;     /* the last connection closed cleanly; the file was then: */
    uint64_t cleanIno;
    uint64_t cleanSize;
    int64_t cleanMtimeNs;
} vr_state_view;

typedef struct vr_db vr_db; /* opaque: one replicated database in this process */

/* Registers the `replicated` VFS (never as the default) over the default VFS.
 * Idempotent. Returns an SQLite result code. */
int vr_vfs_register(void);
/* Whether the VFS is registered now (1) or not (0). */
int vr_vfs_registered(void);
/* Takes the VFS out of SQLite's list again (the loadable extension, when its load fails after
 * registering it). Only safe while no database is open through it. */
void vr_vfs_unregister(void);

/* Declares that `dbPath` is replicated; creates its state directory. Must precede any open of
 * that database through the VFS: opening an unregistered database fails with SQLITE_CANTOPEN.
 * On failure returns non-zero and writes a message into errBuf. */
int vr_db_register(const char *_Nonnull dbPath, char *_Nonnull errBuf, size_t errLen);

/* Finds a registered database by path (canonicalized the same way as at registration). */
vr_db *_Nullable vr_db_lookup(const char *_Nonnull dbPath);

/* The canonical database path and state directory of a registered database. */
const char *_Nonnull vr_db_path(vr_db *_Nonnull db);
const char *_Nonnull vr_db_state_dir(vr_db *_Nonnull db);

/* Reads the shared state consistently. */
void vr_db_read_state(vr_db *_Nonnull db, vr_state_view *_Nonnull out);

/* Reads the state of the database whose state directory (`<db>-vfsrepl`) is given, from any
 * process, without registering it or creating anything. Returns 0 or an errno (ENOENT: never
 * replicated; EINVAL: not a state file). */
int vr_state_read_file(const char *_Nonnull stateDir, vr_state_view *_Nonnull out);

/* Records the uploader's progress: `txid` is durable in the replica and the spool up to
 * (seg, off) is consumed. Only the elected uploader calls this. */
void vr_db_set_shipped(vr_db *_Nonnull db, uint64_t txid, uint64_t seg, uint64_t off);

/* durability: remote. A commit returns only when the uploader (in any process) has made it
 * durable in the replica, or after `timeoutMs` (then SQLite's log says so and
 * `PRAGMA replicated_last_commit` answers "<txid> not-durable"); concurrent committers share one
 * upload. The wait happens after the write lock is released (SQLITE_FCNTL_COMMIT_PHASETWO), so
 * other writers go on meanwhile. */
void vr_db_set_durability(vr_db *_Nonnull db, int remote, int64_t timeoutMs);
/* For the uploader: the work generation (futex) and moving it (the pool's bell rings too). */
uint32_t vr_db_work_gen(vr_db *_Nonnull db);
void vr_db_kick(vr_db *_Nonnull db);

/* Uploader pool (Sources/VFSReplication/Upload/UploaderPool.swift; docs/ARCHITECTURE.md
 * "Uploader pool"). A pool of a few threads serves many databases and sleeps on one futex: the
 * bell of its home database's state. vr_db_set_bell names that home (its state file) in this
 * database's shared state, or no pool (NULL); a committer of any process that wakes the
 * database's idle uploader, and every kick, rings the named bell. Returns 0 or an errno. */
int vr_db_set_bell(vr_db *_Nonnull db, vr_db *_Nullable home);
/* The home's bell: its generation, waiting for it to move (or the timeout), ringing it. */
uint32_t vr_db_bell_gen(vr_db *_Nonnull home);
void vr_db_bell_wait(vr_db *_Nonnull home, uint32_t gen, int64_t timeoutMs);
void vr_db_bell_ring(vr_db *_Nonnull home);
/* Parks the database: its next published transaction clears the flag and rings the bell.
 * Returns 0 (not parked) if a transaction after `seenTxid` is already published. */
int vr_db_park(vr_db *_Nonnull db, uint64_t seenTxid);
/* Unparks it (the pool runs a turn for it). */
void vr_db_unpark(vr_db *_Nonnull db);

/* Names the calling thread (the kernel keeps 15 bytes), for `top -H` and /proc. */
void vr_thread_set_name(const char *_Nonnull name);
/* Makes every TXID assigned from now on greater than `floor` (the replica holds TXIDs this
 * spool never assigned, e.g. after a power loss rolled the local state back). */
void vr_db_raise_txid_floor(vr_db *_Nonnull db, uint64_t floor);
/* Highest TXID a committer waits to see durable (remote durability). */
uint64_t vr_db_wait_txid(vr_db *_Nonnull db);

/* Bounds the spool on disk: at `maxBytes` (0: no bound) of unshipped spool plus its
 * preallocated reserve, a new write transaction gets SQLITE_BUSY (the app's busy timeout then
 * waits for the uploader to drain it), or with `grow` goes on past the bound with a warning in
 * SQLite's log. The same choice applies when the spool cannot be written (disk full): `block`
 * refuses the write lock (SQLITE_BUSY) or fails the transaction's WAL write (SQLITE_FULL) before
 * it commits; `grow` commits, keeps the frames in the WAL (no WAL restart while the spool is
 * behind) and spools them once space returns. Data is never dropped. */
void vr_db_set_spool_limit(vr_db *_Nonnull db, uint64_t maxBytes, int grow);
/* Bytes of spool not yet shipped. */
uint64_t vr_db_spool_pending(vr_db *_Nonnull db);
/* Frees the disk blocks of a segment's bytes [from, to) (whole 4 KiB blocks inside the range),
 * keeping its size: the uploader reclaims what it shipped of the segment still being appended
 * to. Returns 0 or an errno (EOPNOTSUPP where the filesystem cannot punch holes). */
int vr_spool_punch(const char *_Nonnull path, uint64_t from, uint64_t to);

/* Continues a lineage from a restore: if nothing was ever captured for this database, the
 * TXID sequence and the shipped position start at `txid`, and the database file must still be
 * the restored one (inode, size, mtime) when it is first written. Returns 1 if adopted. */
int vr_db_adopt(vr_db *_Nonnull db, uint64_t txid, uint64_t ino, uint64_t size, int64_t mtimeNs);

/* fsyncs the spool up to its current end if anything is unsynced. Returns 0 or an errno. */
int vr_db_sync_spool(vr_db *_Nonnull db);

/* Path of spool segment `seg` into buf. */
void vr_db_segment_path(vr_db *_Nonnull db, uint64_t seg, char *_Nonnull buf, size_t len);

/* Spare segments: instead of unlinking a shipped segment, the uploader may keep it as a spare
 * (spool/spare-K.seg, at most 4), which the next rotation renames to the new segment's name, so
 * that appends overwrite written, cached blocks instead of allocating fresh pages. Returns 1 if
 * segment `seg` became a spare, 0 if not (no free slot, or it is gone: the caller unlinks it).
 * The writer takes a spare and the uploader adds or drops one by renames that never replace a
 * file, so they need no lock between them. */
int vr_db_add_spare(vr_db *_Nonnull db, uint64_t seg);
/* The same for any file of the spool's filesystem (a pre-touched one: see SpareSegments.swift). */
int vr_db_offer_spare(vr_db *_Nonnull db, const char *_Nonnull path);
/* How many spare segments there are now. */
int vr_db_spare_count(vr_db *_Nonnull db);
/* Where a spare is prepared before it is offered. */
void vr_db_spare_temp_path(vr_db *_Nonnull db, char *_Nonnull buf, size_t len);
/* The size at which the spool rolls over to a new segment. */
uint64_t vr_db_segment_target(vr_db *_Nonnull db);
/* Removes every spare segment (an idle database gives their disk space back). */
void vr_db_drop_spares(vr_db *_Nonnull db);

/* Tries to become the uploader of this database (non-blocking flock on uploader.lock).
 * Returns 1 if this process now holds the lock (or already held it), 0 if another does. */
int vr_db_try_elect(vr_db *_Nonnull db);
void vr_db_resign(vr_db *_Nonnull db);

/* Asks the uploader (in whichever process holds the lock) to ship up to `txid` now rather than at
 * its max-delay: raises the shared wait mark a remote-durability committer raises, and wakes it. */
void vr_db_request_ship(vr_db *_Nonnull db, uint64_t txid);

/* --- fork() ---------------------------------------------------------------------------------
 * A forked child has one thread (the one that called fork) and a copy of every descriptor and
 * private mapping. The shim's pthread_atfork handlers keep its mutexes consistent, close the
 * child's copy of an elected uploader.lock descriptor (close, never flock(LOCK_UN): a flock lock
 * belongs to the open file description the parent still uses, and a copy kept open would keep
 * the lock alive after the parent dies) and count the fork. The state mapping is MAP_SHARED and
 * spool segments are written at explicit offsets under the WAL write lock, so both stay valid. */

/* Forks this process descends from since the shim was loaded (0 in the process that loaded it).
 * A plain load: the library compares it to the generation its uploaders were started in. */
uint32_t vr_fork_generation(void);
/* Called once in a forked child, from the first open of a database through the VFS or the first
 * write transaction there (not from the commit), so the library restarts its uploaders in the
 * new process. The hook may take vr_process_lock and start threads; it must not use SQLite. */
void vr_set_fork_hook(void (*_Nullable hook)(void));
/* A process-wide recursive mutex that is consistent in a forked child (the atfork handlers hold
 * it across fork and re-initialize it in the child). The library guards the objects it rebuilds
 * after a fork with it: a Foundation lock another thread held at fork time stays locked forever. */
void vr_process_lock(void);
void vr_process_unlock(void);
/* Brackets an uploader's use of SQLite connections (a snapshot). fork() waits until none is open:
 * SQLite's process-wide lock bookkeeping (unix inode and shm lists) copied into a child would
 * otherwise show a connection that does not exist there, holding locks that block its writers. */
void vr_fork_hold_begin(void);
void vr_fork_hold_end(void);

/* Process exit. The loadable extension calls vr_process_exit_begin first thing in its exit
 * handler: by then the host's main() has returned, and SQLite calls its log callback with
 * whatever main() left (the sqlite3 CLI passes a pointer into main()'s frame, which exit()'s
 * own frames overwrite: a log message then crashes the host). From then on the shim logs
 * nothing and the library's vr_sql_* calls refuse to run (VR_SQL_EXITING). */
void vr_process_exit_begin(void);
int vr_process_exiting(void);
/* How long (ms, 0: never, the default) the host's last connection to close a database waits for
 * this process's uploader to ship the database's base snapshot, which needs SQLite and so cannot
 * be taken at exit. The loadable extension sets it to its exit-flush timeout. */
void vr_set_close_wait(int64_t ms);
/* Set by the uploader in this process. `needed`: it still has to ship the base snapshot (the
 * lineage start), or has not looked yet; 0 once shipped, or when another process uploads.
 * `idleAtTxid`: its last attempt found nothing to snapshot (no database yet, not in WAL mode)
 * while the last TXID was this; a close waits only once a commit came since. UINT64_MAX: none. */
void vr_db_set_base_pending(vr_db *_Nonnull db, int needed, uint64_t idleAtTxid);

/* Records a lineage break (RESET) at the current WAL position with the next TXID; `w` must hold
 * the write lock (inside BEGIN IMMEDIATE). The uploader uses it, rarely, when it needs a TXID
 * above the replica's for a snapshot and no new commit brings one. */
int vr_db_force_reset(sqlite3 *_Nonnull w);

/* Reads up to `n` bytes from the start of a database file through SQLite's "unix" VFS; returns
 * how many (0 for an empty file) or -1 when it cannot be opened or read. Never open() and close()
 * a database file directly in a process that may have it open with SQLite: close() drops every
 * POSIX lock the process holds on the file, SQLite's included, and another process may then
 * checkpoint and delete the WAL under a live connection. The unix VFS defers that close while
 * locks are held. Once the process exits (vr_process_exit_begin) it reads with plain system
 * calls instead. */
int vr_file_read_prefix(const char *_Nonnull path, void *_Nonnull buf, int n);

/* Snapshot support, without ever taking the write lock (application writers are never blocked).
 * The uploader opens a connection through the VFS, marks it with the file control
 * VR_FCNTL_SNAPSHOT_READER, starts a read transaction (BEGIN; SELECT ...) and calls
 * vr_snapshot_begin: the shim saw the wal-index header when the read mark was taken, which is
 * the reader's snapshot. Its WAL position (salts, frame) matches the COMMIT (or RESET) record of
 * the TXID it represents in the spool. Pages are read through the reader's own files; a
 * checkpoint cannot overwrite them while the read transaction is open. */
#define VR_FCNTL_SNAPSHOT_READER 0x56520001
typedef struct vr_snapshot vr_snapshot;
int vr_snapshot_begin(sqlite3 *_Nonnull reader, vr_snapshot *_Nullable *_Nonnull out, char *_Nonnull errBuf,
                      size_t errLen);
uint32_t vr_snapshot_page_size(vr_snapshot *_Nonnull s);
uint32_t vr_snapshot_commit(vr_snapshot *_Nonnull s);
/* The reader's WAL position: mxFrame and salts (big-endian values as in the WAL header). */
uint32_t vr_snapshot_wal_frame(vr_snapshot *_Nonnull s);
uint32_t vr_snapshot_salt1(vr_snapshot *_Nonnull s);
uint32_t vr_snapshot_salt2(vr_snapshot *_Nonnull s);
/* Reads page `pgno` (1-based) as of the snapshot into buf (pageSize bytes). */
int vr_snapshot_read_page(vr_snapshot *_Nonnull s, uint32_t pgno, void *_Nonnull buf);
void vr_snapshot_end(vr_snapshot *_Nonnull s);

/* SQLite's WAL checksum over n bytes (n multiple of 8), chained from s[0], s[1]. */
void vr_wal_checksum(int bigEndian, const void *_Nonnull data, size_t n, uint32_t *_Nonnull s);
/* CRC-32C used for spool record headers. */
uint32_t vr_crc32c(uint32_t crc, const void *_Nonnull data, size_t n);

/* Whether `h` is a sound record header of spool segment `segment`. Segment files are recycled
 * (a shipped segment becomes a later one, so that appends overwrite cached pages instead of
 * allocating fresh ones), and a recycled file still holds the older segment's records past the
 * committed end: a VRS2 header's CRC covers its segment's number, so such a record never passes
 * for one of the segment it now sits in. VRS1 headers (written before recycling existed, never
 * recycled) are checked as they were written. */
int vr_rec_valid(const vr_rec_header *_Nonnull h, uint64_t segment);

/* Test hooks: counts of VFS events in this process. */
typedef struct vr_stats {
    uint64_t captures;
    uint64_t framesCaptured;
    uint64_t resets;
    uint64_t refusedWrites;
} vr_stats;
void vr_get_stats(vr_stats *_Nonnull out);

/* Plain-syscall or io_uring batched writes for the uploader (write + fsync linked).
 * Returns 0 or an errno. `usedUring` says which path ran. */
int vr_io_write_and_sync(int fd, const void *_Nonnull buf, size_t len, int64_t off, int *_Nullable usedUring);
/* 1 if io_uring is usable in this process, 0 if refused (the fallback is then used). */
int vr_io_uring_available(void);

/* --- SQLite through the API table ----------------------------------------------------------- */
enum {
    VR_SQL_OK = 0,
    VR_SQL_BUSY = 5,
    VR_SQL_EMPTY = 16,
    VR_SQL_ROW = 100,
    VR_SQL_DONE = 101,
    VR_SQL_EXITING = 0x10000, /* refused: the process is exiting (vr_process_exit_begin) */
    VR_OPEN_READONLY = 0x1,
    VR_OPEN_READWRITE = 0x2,
    VR_OPEN_CREATE = 0x4,
    VR_OPEN_URI = 0x40,
};
/* Sets the API table (the loadable extension's entry point). */
void vr_set_api(const void *_Nonnull api);
int vr_sql_open(const char *_Nonnull path, int flags, const char *_Nullable vfs, sqlite3 *_Nullable *_Nonnull out);
int vr_sql_close(sqlite3 *_Nullable db);
int vr_sql_exec(sqlite3 *_Nonnull db, const char *_Nonnull sql);
const char *_Nonnull vr_sql_errmsg(sqlite3 *_Nullable db);
int vr_sql_busy_timeout(sqlite3 *_Nonnull db, int ms);
int vr_sql_prepare(sqlite3 *_Nonnull db, const char *_Nonnull sql, sqlite3_stmt *_Nullable *_Nonnull out);
int vr_sql_step(sqlite3_stmt *_Nonnull stmt);
const char *_Nullable vr_sql_column_text(sqlite3_stmt *_Nonnull stmt, int i);
int64_t vr_sql_column_int64(sqlite3_stmt *_Nonnull stmt, int i);
int vr_sql_finalize(sqlite3_stmt *_Nullable stmt);
const char *_Nonnull vr_sql_libversion(void);
int vr_sql_file_control(sqlite3 *_Nonnull db, int op, void *_Nullable arg);

#ifdef __cplusplus
}
#endif
#endif
