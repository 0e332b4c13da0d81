/* link.c - connects the shim to the libsqlite3 a program links.
 *
 * The shim calls SQLite only through `sqlite3_api` (see CVFSShim/sqlite_api.h). Programs and
 * the Swift library product link this target, which points that table at the real functions;
 * the loadable extension leaves it out and gets the host's table instead. */
#define SQLITE_CORE 1 /* sqlite3ext.h: the struct, without the macros */
#include <sqlite3.h>
#include <sqlite3ext.h>
#include "vfssqlitelink.h"

extern const sqlite3_api_routines *sqlite3_api;

static sqlite3_api_routines gApi;

void vr_link_sqlite(void) {
    sqlite3_initialize();
    gApi.log = sqlite3_log;
    gApi.mprintf = sqlite3_mprintf;
    gApi.stricmp = sqlite3_stricmp;
    gApi.database_file_object = sqlite3_database_file_object;
    gApi.vfs_find = sqlite3_vfs_find;
    gApi.vfs_register = sqlite3_vfs_register;
    gApi.file_control = sqlite3_file_control;
    gApi.open_v2 = sqlite3_open_v2;
    gApi.close_v2 = sqlite3_close_v2;
    gApi.exec = sqlite3_exec;
    gApi.errmsg = sqlite3_errmsg;
    gApi.busy_timeout = sqlite3_busy_timeout;
    gApi.prepare_v2 = sqlite3_prepare_v2;
    gApi.step = sqlite3_step;
    gApi.column_text = sqlite3_column_text;
    gApi.column_int64 = sqlite3_column_int64;
    gApi.finalize = sqlite3_finalize;
    gApi.libversion = sqlite3_libversion;
    gApi.free = sqlite3_free;
    __atomic_store_n(&sqlite3_api, &gApi, __ATOMIC_RELEASE);
}
