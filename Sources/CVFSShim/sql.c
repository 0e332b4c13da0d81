/* sql.c - the SQLite API table and thin wrappers the Swift side calls instead of importing
 * SQLite itself (so that the loadable extension's Swift code never links libsqlite3). */
#include "vfsshim.h"
#include "sqlite_api.h"

#include <stdio.h>
#include <string.h>

const sqlite3_api_routines *sqlite3_api = 0;

int vr_ensure_api(void) {
    if (sqlite3_api) return 0;
    if (vr_link_sqlite) vr_link_sqlite();
    return sqlite3_api ? 0 : -1;
}

void vr_set_api(const void *api) { sqlite3_api = api; }

/* Once the process exits, nothing runs SQLite for the library (vr_process_exit_begin): a
 * connection still open is left open, not closed, for the process ends anyway. */
int vr_sql_open(const char *path, int flags, const char *vfs, sqlite3 **out) {
    *out = NULL;
    if (vr_process_exiting()) return VR_SQL_EXITING;
    if (vr_ensure_api()) return SQLITE_MISUSE;
    return sqlite3_open_v2(path, out, flags, vfs);
}

int vr_sql_close(sqlite3 *db) { return vr_process_exiting() ? SQLITE_OK : sqlite3_close_v2(db); }

int vr_sql_exec(sqlite3 *db, const char *sql) {
    return vr_process_exiting() ? VR_SQL_EXITING : sqlite3_exec(db, sql, 0, 0, 0);
}

const char *vr_sql_errmsg(sqlite3 *db) { return db ? sqlite3_errmsg(db) : "out of memory"; }

int vr_sql_busy_timeout(sqlite3 *db, int ms) { return sqlite3_busy_timeout(db, ms); }

int vr_sql_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out) {
    if (vr_process_exiting()) {
        *out = NULL;
        return VR_SQL_EXITING;
    }
    return sqlite3_prepare_v2(db, sql, -1, out, 0);
}

int vr_sql_step(sqlite3_stmt *stmt) { return vr_process_exiting() ? VR_SQL_EXITING : sqlite3_step(stmt); }

const char *vr_sql_column_text(sqlite3_stmt *stmt, int i) { return (const char *)sqlite3_column_text(stmt, i); }

int64_t vr_sql_column_int64(sqlite3_stmt *stmt, int i) { return sqlite3_column_int64(stmt, i); }

int vr_sql_finalize(sqlite3_stmt *stmt) { return vr_process_exiting() ? SQLITE_OK : sqlite3_finalize(stmt); }

const char *vr_sql_libversion(void) { return vr_ensure_api() ? "unknown" : sqlite3_libversion(); }

int vr_sql_file_control(sqlite3 *db, int op, void *arg) {
    return vr_process_exiting() ? VR_SQL_EXITING : sqlite3_file_control(db, "main", op, arg);
}
