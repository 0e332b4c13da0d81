/* sqlite_api.h - every SQLite call in the shim goes through the `sqlite3_api` table.
 *
 * Why: the same code runs linked into a Swift program (the table is filled from libsqlite3 by
 * the CVFSSQLiteLink target) and inside a loadable extension, where it must use the host's
 * SQLite (Ruby's or Python's may carry their own) and must not link libsqlite3 at all
 * (docs/ARCHITECTURE.md, "Processes and packaging"). */
#ifndef VFSSHIM_SQLITE_API_H
#define VFSSHIM_SQLITE_API_H
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT3

/* No log message once the process exits (see vr_process_exit_begin in vfsshim.h): the host's
 * log callback may point into a main() that has returned. */
int vr_process_exiting(void);
#undef sqlite3_log
#define sqlite3_log(...) (vr_process_exiting() ? (void)0 : sqlite3_api->log(__VA_ARGS__))

/* Fills sqlite3_api from the linked libsqlite3 when a program links CVFSSQLiteLink; absent
 * (NULL) in the loadable extension, whose entry point sets the table instead. */
extern void vr_link_sqlite(void) __attribute__((weak));

/* Makes sure sqlite3_api is set; returns 0 or -1. */
int vr_ensure_api(void);
#endif
