/*
 * state.c - the shared state of each replicated database, and the process around it.
 *
 * X-vfsrepl/state is one page mmap'ed MAP_SHARED by every process using the database: the TXID
 * sequence, the last captured WAL position, the uploader's progress. Writers update it under a
 * seqlock (stateBegin/stateEnd in internal.h); vr_db_read_state reads a consistent copy. Here
 * also: the registry of databases this process has (vr_db), the futexes committers and uploaders
 * wait on, the uploader election (flock of uploader.lock), fork() and process-exit handling.
 * The VFS is in vfs.c, the capture in capture.c, the spool in spool.c (see internal.h).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

pthread_mutex_t gMutex = PTHREAD_MUTEX_INITIALIZER;
vr_db *gDbs = NULL;
vr_stats gStats;

/* ------------------------------------------------------------------------------------------ */
/* fork() (vfsshim.h). The child handler runs in the only thread the child has, before fork()
 * returns there: it calls only close() and re-initializes the mutexes the prepare handler took
 * (a recursive mutex cannot be unlocked in the child: its owner's thread id changed). */

static pthread_mutex_t gProcessMutex = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static uint32_t gForkGen;
int gForkPending; /* a child in which the fork hook has not run yet */
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
            vr_sys_close(p->lockFd); /* never LOCK_UN: that would release the parent's lock */
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

/* forkCheck (internal.h) saw a child whose hook has not run: the first caller runs it. */
void vr_fork_run_hook(void) {
    if (__atomic_exchange_n(&gForkPending, 0, __ATOMIC_ACQ_REL)) {
        void (*hook)(void) = __atomic_load_n(&gForkHook, __ATOMIC_ACQUIRE);
        if (hook) hook();
    }
}

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
__thread int tUploaderSql;
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

/* ------------------------------------------------------------------------------------------ */
/* Database registry and state                                                                 */

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

/* Closes the state file after a failed open (the flock taken for initialization goes with it). */
static int openStateFailed(int fd, void *map) {
    if (map) vr_sys_munmap(map, VR_STATE_SIZE);
    vr_sys_flock(fd, LOCK_UN);
    vr_sys_close(fd);
    return -1;
}

static int openState(vr_db *db, char *err, size_t errLen) {
    char path[PATH_MAX];
    if (vr_sys_mkdir(db->zDir, 0755) != 0) {
        snprintf(err, errLen, "cannot create spool directory %s: %s", db->zDir, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/spool", db->zDir);
    if (vr_sys_mkdir(path, 0755) != 0) {
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
    if (vr_sys_flock(fd, LOCK_EX) != 0) {
        snprintf(err, errLen, "cannot lock %s: %s", path, strerror(errno));
        return openStateFailed(fd, NULL);
    }
    struct stat st;
    if (vr_sys_fstat(fd, &st) != 0 || (st.st_size < VR_STATE_SIZE && vr_sys_ftruncate(fd, VR_STATE_SIZE) != 0)) {
        snprintf(err, errLen, "cannot size %s: %s", path, strerror(errno));
        return openStateFailed(fd, NULL);
    }
    void *p = vr_sys_mmap_shared(fd, VR_STATE_SIZE, 1);
    if (!p) {
        snprintf(err, errLen, "cannot map %s: %s", path, strerror(errno));
        return openStateFailed(fd, NULL);
    }
    VRState *s = p;
    if (s->magic == 0) {
        memset(s, 0, sizeof *s);
        s->version = VR_STATE_VERSION;
        s->appendSeg = 1;
        s->shippedSeg = 1;
        s->syncSeg = 1;
        s->magic = VR_STATE_MAGIC;
        int rc = vr_sys_fsync(fd);
        if (rc) {
            snprintf(err, errLen, "cannot sync %s: %s", path, strerror(rc));
            return openStateFailed(fd, p);
        }
    } else if (s->magic != VR_STATE_MAGIC || s->version != VR_STATE_VERSION) {
        snprintf(err, errLen, "%s is not a VFSReplication state file (version %u)", path, s->version);
        return openStateFailed(fd, p);
    }
    if (s->lineageId == 0) {
        uint64_t id = 0;
        int rfd = vr_sys_open("/dev/urandom", O_RDONLY | O_CLOEXEC, 0);
        if (rfd >= 0) {
            if (vr_sys_read(rfd, &id, sizeof id) != (ssize_t)sizeof id) id = 0;
            vr_sys_close(rfd);
        }
        if (id == 0) id = ((uint64_t)getpid() << 32) ^ (uint64_t)nowMs() ^ (uint64_t)(uintptr_t)s;
        s->lineageId = id | 1; /* never 0: Litestream's files carry 0 */
        int rc = vr_sys_fsync(fd);
        if (rc) {
            snprintf(err, errLen, "cannot sync %s: %s", path, strerror(rc));
            return openStateFailed(fd, p);
        }
    }
    vr_sys_flock(fd, LOCK_UN);
    db->stateFd = fd;
    db->pState = s;
    return 0;
}

static void freeDb(vr_db *db) {
    free(db->aStage);
    free(db->zDir);
    free(db->aBuf);
    free(db->zPath);
    free(db);
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
    if (!db) {
        pthread_mutex_unlock(&gMutex);
        snprintf(err, errLen, "database %s: out of memory", canon);
        free(canon);
        return SQLITE_NOMEM;
    }
    db->zPath = canon;
    size_t n = strlen(canon) + 16;
    db->zDir = malloc(n);
    db->aBuf = malloc(VR_COPY_BUFFER + 65536 + 64);
    db->aStage = malloc(VR_STAGE_SIZE);
    if (!db->zDir || !db->aBuf || !db->aStage) {
        pthread_mutex_unlock(&gMutex);
        snprintf(err, errLen, "database %s: out of memory", canon);
        freeDb(db);
        return SQLITE_NOMEM;
    }
    snprintf(db->zDir, n, "%s-vfsrepl", canon);
    db->segFd = -1;
    db->lockFd = -1;
    if (openState(db, err, errLen) != 0) {
        pthread_mutex_unlock(&gMutex);
        freeDb(db);
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

/* The uploader's fields, under their own seqlock (see VRState.shipSeq). */
static void shipBegin(VRState *s) {
    uint32_t v = atomic_load_explicit(&s->shipSeq, memory_order_relaxed);
    atomic_store_explicit(&s->shipSeq, v | 1u, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
}
static void shipEnd(VRState *s) {
    atomic_thread_fence(memory_order_seq_cst);
    uint32_t v = atomic_load_explicit(&s->shipSeq, memory_order_relaxed);
    atomic_store_explicit(&s->shipSeq, (v | 1u) + 1u, memory_order_release);
}
/* A seqlock reader gives up waiting and reads what is there only when the counter has stayed
 * odd, at one value, for 2 s: that writer died in its update. A counter that keeps changing
 * belongs to a live writer, and the reader tries again however long it takes. (A count of
 * spins was not enough: on a loaded machine a reader that gave up after 20,000 yields copied a
 * torn state while the writer was alive, seen in the full test run: SharedStateTests.) */
static int seqStale(uint32_t a, uint32_t *lastOdd, int64_t *since) {
    if (!(a & 1)) return 0;
    int64_t now = nowMs();
    if (a != *lastOdd || *since == 0) {
        *lastOdd = a;
        *since = now;
        return 0;
    }
    return now - *since > 2000;
}

void vr_state_read_shipped(VRState *s, vr_state_view *o) {
    int64_t since = 0;
    uint32_t lastOdd = 0;
    for (;;) {
        uint32_t a = atomic_load_explicit(&s->shipSeq, memory_order_acquire);
        int stale = seqStale(a, &lastOdd, &since); /* a writer that died mid-update */
        if ((a & 1) && !stale) {
            sched_yield();
            continue;
        }
        o->shippedTxid = s->shippedTxid;
        o->shippedSeg = s->shippedSeg;
        o->shippedOff = s->shippedOff;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->shipSeq, memory_order_acquire) == a || stale) return;
    }
}

void vr_db_read_state(vr_db *db, vr_state_view *o) {
    VRState *s = db->pState;
    /* The shipped position first: it only moves forward and never passes the append position,
     * so reading the append position after it keeps shipped <= appended in the copy. */
    vr_state_read_shipped(s, o);
    int64_t since = 0;
    uint32_t lastOdd = 0;
    for (;;) {
        uint32_t a = atomic_load_explicit(&s->seq, memory_order_acquire);
        /* An update takes microseconds; one still "in progress" after 2 s belongs to a process
         * that died in it: read what is there rather than wait forever (seqStale). */
        int stale = seqStale(a, &lastOdd, &since);
        if ((a & 1) && !stale) {
            sched_yield();
            continue;
        }
        o->lastTxid = s->lastTxid;
        o->appendSeg = s->appendSeg;
        o->appendOff = s->appendOff;
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
    if (vr_sys_fstat(fd, &st) != 0 || st.st_size < VR_STATE_SIZE) {
        vr_sys_close(fd);
        return EINVAL;
    }
    void *p = vr_sys_mmap_shared(fd, VR_STATE_SIZE, 0);
    int mapErr = errno;
    vr_sys_close(fd);
    if (!p) return mapErr;
    VRState *s = p;
    if (s->magic != VR_STATE_MAGIC || s->version != VR_STATE_VERSION) {
        vr_sys_munmap(p, VR_STATE_SIZE);
        return EINVAL;
    }
    vr_db fake;
    memset(&fake, 0, sizeof fake);
    fake.pState = s;
    vr_db_read_state(&fake, o);
    vr_sys_munmap(p, VR_STATE_SIZE);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Futexes on the state mapping: the uploader's work signal and the shipped-TXID signal.      */

void vr_db_set_shipped(vr_db *db, uint64_t txid, uint64_t seg, uint64_t off) {
    VRState *s = db->pState;
    shipBegin(s);
    s->shippedTxid = txid;
    s->shippedSeg = seg;
    s->shippedOff = off;
    shipEnd(s);
    atomic_fetch_add(&s->shipGen, 1);
    vr_sys_futex_wake(&s->shipGen);
}

uint32_t vr_db_work_gen(vr_db *db) { return atomic_load(&db->pState->workGen); }

void vr_db_kick(vr_db *db) {
    atomic_fetch_add(&db->pState->workGen, 1);
    vr_sys_futex_wake(&db->pState->workGen);
    vr_ring_bell(db);
}

/* ------------------------------------------------------------------------------------------ */
/* The uploader pool's bell (see vr_db_set_bell in vfsshim.h).                                */

int vr_db_set_bell(vr_db *db, vr_db *home) {
    VRState *s = db->pState;
    char path[sizeof s->bellPath];
    if (home) {
        int n = snprintf(path, sizeof path, "%s/state", home->zDir);
        if (n < 0 || (size_t)n >= sizeof path) return ENAMETOOLONG;
        uint32_t token = atomic_load(&s->bellToken);
        if (token != 0 && strcmp(s->bellPath, path) == 0) return 0;
    }
    /* Token 0 while the path changes: a ringer that reads a torn path sees a token that moved. */
    uint32_t old = atomic_exchange(&s->bellToken, 0);
    if (!home) return 0;
    memcpy(s->bellPath, path, strlen(path) + 1);
    uint32_t next = old + 1;
    if (next == 0) next = 1;
    atomic_store(&s->bellToken, next);
    return 0;
}

/* Maps the state file a bell lives in; NULL if it cannot be (the committer then wakes only the
 * per-database futex, and the pool's own timers pick the commit up). */
static _Atomic uint32_t *mapBell(const char *path) {
    int fd = vr_sys_open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) return NULL;
    struct stat st;
    void *p = NULL;
    if (vr_sys_fstat(fd, &st) == 0 && st.st_size >= VR_STATE_SIZE) p = vr_sys_mmap_shared(fd, VR_STATE_SIZE, 1);
    vr_sys_close(fd);
    if (!p) return NULL;
    VRState *h = p;
    if (h->magic != VR_STATE_MAGIC || h->version != VR_STATE_VERSION) {
        vr_sys_munmap(p, VR_STATE_SIZE);
        return NULL;
    }
    return &h->bellGen;
}

/* Rings the bell named in the database's state, if any: one futex wake, plus, the first time
 * this process rings a given pool, an open and mmap of its home state (off the common path:
 * only when an idle uploader is woken). */
void vr_ring_bell(vr_db *db) {
    VRState *s = db->pState;
    uint32_t token = atomic_load(&s->bellToken);
    if (token == 0) return;
    _Atomic uint32_t *word = NULL;
    if (atomic_load(&db->bellSeen) == token) {
        word = atomic_load(&db->bellWord);
    } else {
        char path[sizeof s->bellPath];
        memcpy(path, s->bellPath, sizeof path);
        path[sizeof path - 1] = 0;
        if (atomic_load(&s->bellToken) != token) return; /* changing: the new pool looks itself */
        char own[sizeof s->bellPath];
        snprintf(own, sizeof own, "%s/state", db->zDir);
        word = strcmp(path, own) == 0 ? &s->bellGen : mapBell(path);
        atomic_store(&db->bellWord, word);
        atomic_store(&db->bellSeen, token);
    }
    if (!word) return;
    atomic_fetch_add(word, 1);
    vr_sys_futex_wake(word);
}

uint32_t vr_db_bell_gen(vr_db *home) { return atomic_load(&home->pState->bellGen); }

void vr_db_bell_wait(vr_db *home, uint32_t gen, int64_t timeoutMs) {
    vr_sys_futex_wait(&home->pState->bellGen, gen, timeoutMs);
}

void vr_db_bell_ring(vr_db *home) {
    atomic_fetch_add(&home->pState->bellGen, 1);
    vr_sys_futex_wake(&home->pState->bellGen);
}

int vr_db_park(vr_db *db, uint64_t seenTxid) {
    VRState *s = db->pState;
    atomic_store(&s->uploaderIdle, 1);
    atomic_thread_fence(memory_order_seq_cst);
    vr_state_view v;
    vr_db_read_state(db, &v);
    if (v.lastTxid != seenTxid) {
        atomic_store(&s->uploaderIdle, 0);
        return 0;
    }
    return 1;
}

void vr_db_unpark(vr_db *db) { atomic_store(&db->pState->uploaderIdle, 0); }

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
void vr_wait_base_at_last_close(vr_db *db) {
    int64_t bound = atomic_load(&gCloseWaitMs);
    if (bound <= 0 || vr_process_exiting() || !basePending(db) || atomic_load(&db->closeWaitSpent)) return;
    int64_t deadline = nowMs() + bound;
    while (basePending(db)) {
        if (nowMs() >= deadline) {
            atomic_store(&db->closeWaitSpent, 1);
            return;
        }
        vr_db_kick(db);
        vr_sys_sleep_ms(5);
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
int vr_wait_durable(vr_db *db, uint64_t target) {
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
        vr_sys_futex_wait(&s->shipGen, g, left < 100 ? left : 100);
    }
}

void vr_db_set_spool_limit(vr_db *db, uint64_t maxBytes, int grow) {
    db->spoolMax = maxBytes;
    db->spoolGrow = grow;
    /* In the shared state too, so that vfs-status (any process) judges against it. */
    VRState *s = db->pState;
    /* Not under the seqlock: any process sets these without the WAL write lock, each field on
     * its own is what a reader needs. */
    __atomic_store_n(&s->spoolLimit, maxBytes, __ATOMIC_RELAXED);
    __atomic_store_n(&s->spoolGrow, grow ? 1u : 0u, __ATOMIC_RELAXED);
}

int vr_db_adopt(vr_db *db, uint64_t txid, uint64_t ino, uint64_t size, int64_t mtimeNs) {
    VRState *s = db->pState;
    /* A descriptor of its own: flock locks belong to open file descriptions, and stateFd's is
     * shared with every process forked from this one (the lock would not exclude them). */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/state", db->zDir);
    int lfd = vr_sys_open(path, O_RDWR | O_CLOEXEC, 0);
    if (lfd < 0) return 0;
    if (vr_sys_flock(lfd, LOCK_EX) != 0) {
        vr_sys_close(lfd);
        return 0;
    }
    int adopted = 0;
    if (s->lastTxid == 0 && s->appendOff == 0 && s->appendSeg == 1) {
        shipBegin(s);
        s->shippedTxid = txid;
        shipEnd(s);
        stateBegin(s);
        s->lastTxid = txid;
        s->walValid = 1;
        s->walFrame = 0;
        s->walSalt1 = 0;
        s->walSalt2 = 0;
        s->cleanValid = 1;
        s->cleanIno = ino;
        s->cleanSize = size;
        s->cleanMtimeNs = mtimeNs;
        stateEnd(s);
        int rc = vr_sys_fsync(db->stateFd);
        if (rc) {
            /* Adopted in every process (the mapping is shared); only a power loss before the
             * next sync of the state would forget it, and then the next open starts afresh. */
            sqlite3_log(SQLITE_WARNING, "vfsreplication: %s: cannot sync %s after adopting the restore (%s)",
                        db->zPath, path, strerror(rc));
        }
        adopted = 1;
    }
    vr_sys_close(lfd);
    return adopted;
}

/* ------------------------------------------------------------------------------------------ */
/* Uploader election: the process holding uploader.lock runs the database's uploader.        */

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
    if (vr_sys_flock(fd, LOCK_EX | LOCK_NB) != 0) {
        vr_sys_close(fd);
        pthread_mutex_unlock(&gMutex);
        return 0;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    /* The pid is for people (and vfs-status): the lock is what elects. */
    if (vr_sys_ftruncate(fd, 0) == 0) (void)vr_sys_pwrite_all(fd, pid, (size_t)n, 0);
    db->lockFd = fd;
    pthread_mutex_unlock(&gMutex);
    return 1;
}

void vr_db_resign(vr_db *db) {
    pthread_mutex_lock(&gMutex);
    if (db->lockFd >= 0) {
        vr_sys_flock(db->lockFd, LOCK_UN);
        vr_sys_close(db->lockFd);
        db->lockFd = -1;
    }
    pthread_mutex_unlock(&gMutex);
}

void vr_get_stats(vr_stats *out) {
    pthread_mutex_lock(&gMutex);
    *out = gStats;
    pthread_mutex_unlock(&gMutex);
}
