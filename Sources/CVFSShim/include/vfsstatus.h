/*
 * vfsstatus.h - what status tools (vfs-status, the dashboard) need from C, from any process and
 * without registering a database: whether an uploader holds a database's lock, and a page-exact
 * copy of a read transaction's snapshot for `vfs-status --verify`.
 *
 * Why C: the lock probe must not create the lock file (a status tool changes nothing), and the
 * backup API and sqlite3_db_config are reached through the SQLite API table (sqlite_api.h), which
 * Swift cannot call directly (function-like macros, a variadic function).
 */
#ifndef VFSSTATUS_H
#define VFSSTATUS_H

#include "vfsshim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Probes `<stateDir>/uploader.lock` without taking it from anyone: a shared, non-blocking flock
 * on a new read-only descriptor, released at once. Returns 1 if a process holds the lock (an
 * uploader is alive; its pid, as it wrote it, in *pid, else 0), 0 if nobody does or the file does
 * not exist, or a negative errno. In a process that is itself the uploader the probe also
 * answers 1 (flock locks belong to open file descriptions). */
int vr_status_probe_uploader(const char *_Nonnull stateDir, int *_Nonnull pid);

/* Turns off the checkpoint SQLite runs when the last connection to a WAL database closes
 * (SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE), so a status connection never checkpoints or deletes the
 * WAL behind the replicated VFS's back. Returns an SQLite result code. */
int vr_status_no_checkpoint_on_close(sqlite3 *_Nonnull db);

/* Copies the main database of `src`, as its open read transaction sees it (or a new one), into
 * a new file at `destPath` with the default VFS (sqlite3_backup_step(-1)). Returns an SQLite
 * result code; on failure a message in errBuf. The copy's page 1 differs from the source in the
 * header fields the backup rewrites (change counter, size, schema cookie, version-valid-for,
 * SQLite version: bytes 24-31, 40-43, 92-99). https://www.sqlite.org/backup.html */
int vr_status_backup(sqlite3 *_Nonnull src, const char *_Nonnull destPath, char *_Nonnull errBuf, size_t errLen);

#ifdef __cplusplus
}
#endif
#endif
