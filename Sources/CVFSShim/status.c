/* status.c - the lock probe and snapshot copy behind vfsstatus.h. Changes nothing of a
 * database's replication state: opens existing files read-only, never creates one (the backup
 * destination excepted). */
#include "vfsstatus.h"
#include "internal.h"
#include "sqlite_api.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int vr_status_probe_uploader(const char *stateDir, int *pid) {
    *pid = 0;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/uploader.lock", stateDir) >= (int)sizeof path) return -ENAMETOOLONG;
    int fd = vr_sys_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return errno == ENOENT ? 0 : -errno;
    int held;
    int rc = vr_sys_flock(fd, LOCK_SH | LOCK_NB);
    if (rc == 0) {
        /* Nobody holds it exclusively: no uploader. Let go at once so an uploader can be elected. */
        vr_sys_flock(fd, LOCK_UN);
        held = 0;
    } else if (rc == EWOULDBLOCK) {
        held = 1;
        char buf[32];
        ssize_t n = vr_sys_pread(fd, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = 0;
            *pid = atoi(buf);
        }
    } else {
        held = -rc;
    }
    vr_sys_close(fd);
    return held;
}

/* The SQLite functions used here. In the loadable extension the host's API table has them all;
 * a linked program's table (CVFSSQLiteLink) fills only what the shim itself calls, so a missing
 * entry is taken from the libsqlite3 the program links. */
typedef struct StatusApi {
    int (*db_config)(sqlite3 *, int, ...);
    int (*errcode)(sqlite3 *);
    sqlite3_backup *(*backup_init)(sqlite3 *, const char *, sqlite3 *, const char *);
    int (*backup_step)(sqlite3_backup *, int);
    int (*backup_finish)(sqlite3_backup *);
} StatusApi;

static int statusApi(StatusApi *a) {
    if (vr_ensure_api()) return SQLITE_MISUSE;
    a->db_config = sqlite3_api->db_config ? sqlite3_api->db_config : (int (*)(sqlite3 *, int, ...))dlsym(RTLD_DEFAULT, "sqlite3_db_config");
    a->errcode = sqlite3_api->errcode ? sqlite3_api->errcode : (int (*)(sqlite3 *))dlsym(RTLD_DEFAULT, "sqlite3_errcode");
    a->backup_init = sqlite3_api->backup_init
                         ? sqlite3_api->backup_init
                         : (sqlite3_backup * (*)(sqlite3 *, const char *, sqlite3 *, const char *)) dlsym(RTLD_DEFAULT, "sqlite3_backup_init");
    a->backup_step = sqlite3_api->backup_step ? sqlite3_api->backup_step : (int (*)(sqlite3_backup *, int))dlsym(RTLD_DEFAULT, "sqlite3_backup_step");
    a->backup_finish = sqlite3_api->backup_finish ? sqlite3_api->backup_finish : (int (*)(sqlite3_backup *))dlsym(RTLD_DEFAULT, "sqlite3_backup_finish");
    if (!a->db_config || !a->errcode || !a->backup_init || !a->backup_step || !a->backup_finish) return SQLITE_MISUSE;
    return SQLITE_OK;
}

int vr_status_no_checkpoint_on_close(sqlite3 *db) {
    StatusApi a;
    int rc = statusApi(&a);
    if (rc != SQLITE_OK) return rc;
    return a.db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)0);
}

int vr_status_backup(sqlite3 *src, const char *destPath, char *err, size_t errLen) {
    err[0] = 0;
    StatusApi a;
    int rc = statusApi(&a);
    if (rc != SQLITE_OK) {
        snprintf(err, errLen, "the SQLite backup API is not available");
        return rc;
    }
    sqlite3 *dest = NULL;
    rc = sqlite3_open_v2(destPath, &dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errLen, "cannot create %s: %s", destPath, dest ? sqlite3_errmsg(dest) : "out of memory");
        sqlite3_close_v2(dest);
        return rc;
    }
    sqlite3_backup *b = a.backup_init(dest, "main", src, "main");
    if (!b) {
        rc = a.errcode(dest);
        snprintf(err, errLen, "backup: %s", sqlite3_errmsg(dest));
        sqlite3_close_v2(dest);
        return rc;
    }
    rc = a.backup_step(b, -1);
    int rcFinish = a.backup_finish(b);
    if (rc == SQLITE_DONE) rc = rcFinish;
    if (rc != SQLITE_OK) snprintf(err, errLen, "backup: %s (SQLite result code %d)", sqlite3_errmsg(dest), rc);
    int rcClose = sqlite3_close_v2(dest);
    if (rc == SQLITE_OK && rcClose != SQLITE_OK) {
        rc = rcClose;
        snprintf(err, errLen, "closing %s (SQLite result code %d)", destPath, rc);
    }
    return rc;
}
