/* entry.c - entry point of libvfsreplication.so, the loadable SQLite extension.
 *
 * Loading it (sqlite3 CLI `.load`, Python's enable_load_extension, Ruby's sqlite3 gem,
 * Rails' `extensions:`) points the shim at the host's SQLite API table, registers the
 * `replicated` VFS and starts the in-process uploader configured by the file named in
 * VFS_REPLICATION_CONFIG. Without that variable, `SELECT vfs_replication_config('path')`
 * configures it; `vfs_replication_add(path, replica_url)` and `vfs_replication_remove(path)`
 * add and remove databases while it runs. It returns SQLITE_OK_LOAD_PERMANENTLY: a library holding a Swift runtime and
 * running threads must never be unloaded. Only this symbol is exported (exports.map).
 *
 * A load that fails (no config file, a bad config) must leave the host as it was: SQLite then
 * dlcloses the library, and a VFS, thread or atexit handler pointing into it would crash the
 * host at its next open or at exit. So the uploader starts last, only once everything else
 * succeeded; a failure takes the VFS and the SQL function out again; and the library pins
 * itself in memory first (RTLD_NODELETE), because the Swift runtime that read the config may
 * keep state pointing into it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sqlite3ext.h>
#include <stdlib.h>
#include <string.h>
SQLITE_EXTENSION_INIT3

#include "vfsextension.h"

/* From the shim and from the Swift side of the extension. */
extern void vr_set_api(const void *api);
extern int vr_vfs_register(void);
extern int vr_vfs_registered(void);
extern void vr_vfs_unregister(void);
extern int vr_extension_start(const char *configPath, char *err, int errLen);
extern int vr_extension_add(const char *path, const char *url, char *out, int outLen);
extern int vr_extension_remove(const char *path, char *err, int errLen);

static void configFunction(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const char *path = (const char *)sqlite3_value_text(argv[0]);
    if (!path) {
        sqlite3_result_error(ctx, "vfs_replication_config(path): path is NULL", -1);
        return;
    }
    char err[1024] = {0};
    if (vr_extension_start(path, err, (int)sizeof err) != 0) {
        sqlite3_result_error(ctx, err, -1);
        return;
    }
    sqlite3_result_text(ctx, path, -1, SQLITE_TRANSIENT);
}

/* vfs_replication_add(path, replica_url): replicates one more database while running (a
 * tenant's new database); returns its absolute path. */
static void addFunction(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const char *path = (const char *)sqlite3_value_text(argv[0]);
    const char *url = (const char *)sqlite3_value_text(argv[1]);
    if (!path || !url) {
        sqlite3_result_error(ctx, "vfs_replication_add(path, replica_url): an argument is NULL", -1);
        return;
    }
    char out[4096] = {0};
    if (vr_extension_add(path, url, out, (int)sizeof out) != 0) {
        sqlite3_result_error(ctx, out, -1);
        return;
    }
    sqlite3_result_text(ctx, out, -1, SQLITE_TRANSIENT);
}

/* vfs_replication_remove(path): ships what the database committed, then stops replicating it;
 * 1 if it was replicated, 0 if not. */
static void removeFunction(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const char *path = (const char *)sqlite3_value_text(argv[0]);
    if (!path) {
        sqlite3_result_error(ctx, "vfs_replication_remove(path): path is NULL", -1);
        return;
    }
    char err[1024] = {0};
    int rc = vr_extension_remove(path, err, (int)sizeof err);
    if (rc < 0) {
        sqlite3_result_error(ctx, err, -1);
        return;
    }
    sqlite3_result_int(ctx, rc);
}

/* Registers (or, with `remove`, takes out again) the extension's SQL functions on `db`. */
static int sqlFunctions(sqlite3 *db, int remove) {
    int rc = sqlite3_create_function_v2(db, "vfs_replication_config", 1, SQLITE_UTF8, 0, remove ? 0 : configFunction,
                                        0, 0, 0);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function_v2(db, "vfs_replication_add", 2, SQLITE_UTF8, 0, remove ? 0 : addFunction, 0, 0, 0);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function_v2(db, "vfs_replication_remove", 1, SQLITE_UTF8, 0, remove ? 0 : removeFunction, 0,
                                        0, 0);
    return rc;
}

/* Run by SQLite for every connection opened after a successful load (sqlite3_auto_extension):
 * the SQL functions then exist on the host's later connections too, e.g. after the CLI's .open. */
static int functionsOnNewConnection(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
    (void)pzErrMsg;
    (void)pApi;
    return sqlFunctions(db, 0);
}

/* Keeps this library mapped whatever SQLite does after a failed load (glibc: RTLD_NOLOAD with
 * RTLD_NODELETE marks the loaded object as never to be unloaded). */
static void pinLibrary(void) {
    Dl_info info;
    if (!dladdr((void *)&pinLibrary, &info) || !info.dli_fname) return;
    void *self = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    if (self) dlclose(self);
}

__attribute__((visibility("default"))) int sqlite3_vfsreplication_init(sqlite3 *db, char **pzErrMsg,
                                                                       const sqlite3_api_routines *pApi) {
    vr_set_api(pApi);
    pinLibrary();
    const int wasRegistered = vr_vfs_registered();
    int rc = vr_vfs_register();
    if (rc != SQLITE_OK) {
        if (pzErrMsg) *pzErrMsg = sqlite3_mprintf("vfsreplication: cannot register the replicated VFS (%d)", rc);
        return rc;
    }
    rc = sqlFunctions(db, 0);
    if (rc != SQLITE_OK) {
        sqlFunctions(db, 1);
        if (!wasRegistered) vr_vfs_unregister();
        return rc;
    }
    const char *config = getenv("VFS_REPLICATION_CONFIG");
    if (config && *config) {
        /* Reads and checks the config, then starts the uploader threads (only once it is valid). */
        char err[1024] = {0};
        if (vr_extension_start(config, err, (int)sizeof err) != 0) {
            sqlFunctions(db, 1);
            if (!wasRegistered) vr_vfs_unregister();
            if (pzErrMsg) *pzErrMsg = sqlite3_mprintf("vfsreplication: %s", err);
            return SQLITE_ERROR;
        }
    }
    sqlite3_auto_extension((void (*)(void))functionsOnNewConnection);
    return SQLITE_OK_LOAD_PERMANENTLY;
}
