/* exit_host.c - a SQLite host that ends the way the sqlite3 CLI does, for ExtensionTests.
 *
 * The CLI hands SQLite a log callback whose argument lives in main()'s stack frame; once main()
 * returns, exit() runs the atexit handlers on that same stack, so a log message from then on
 * reads a dead frame and often crashes the process. This host makes that hazard certain
 * instead of likely: from the moment main() returns, any log message, and any file SQLite opens
 * through the "unix" VFS (which the replicated VFS sits on), ends the process with exit status
 * 70 and a line on stderr saying what ran too late.
 *
 *   exit_host LIBRARY DATABASE ROWS     (VFS_REPLICATION_CONFIG names the config)
 *
 * Loads the extension, opens DATABASE through the `replicated` VFS, commits ROWS inserts one by
 * one, closes the connection and returns from main().
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile int gMainReturned;
static sqlite3_vfs *gUnix;
static int (*gUnixOpen)(sqlite3_vfs *, sqlite3_filename, sqlite3_file *, int, int *);

static void tooLate(const char *what, const char *detail) {
    char line[1024];
    int n = snprintf(line, sizeof line, "exit_host: %s after main() returned: %s\n", what, detail ? detail : "");
    if (n > 0) (void)!write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    _exit(70);
}

static void logCallback(void *arg, int code, const char *msg) {
    (void)arg;
    if (gMainReturned) tooLate("SQLite log message", msg);
    fprintf(stderr, "exit_host: sqlite log (%d) %s\n", code, msg);
}

static int guardOpen(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags, int *outFlags) {
    if (gMainReturned) tooLate("SQLite opened a file", name);
    return gUnixOpen(vfs, name, file, flags, outFlags);
}

static int check(int rc, sqlite3 *db, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "exit_host: %s: %s (%d)\n", what, db ? sqlite3_errmsg(db) : "", rc);
        exit(1);
    }
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: exit_host LIBRARY DATABASE ROWS\n");
        return 2;
    }
    sqlite3_config(SQLITE_CONFIG_LOG, logCallback, NULL);
    sqlite3_initialize();
    /* Every open SQLite makes reaches the "unix" VFS, the replicated VFS's included: watch it
     * there (a test's liberty: the VFS object is SQLite's own, patched in place). */
    gUnix = sqlite3_vfs_find("unix");
    if (!gUnix) return 1;
    gUnixOpen = gUnix->xOpen;
    gUnix->xOpen = guardOpen;

    sqlite3 *boot = NULL;
    check(sqlite3_open(":memory:", &boot), boot, "open :memory:");
    sqlite3_enable_load_extension(boot, 1);
    char *err = NULL;
    if (sqlite3_load_extension(boot, argv[1], NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "exit_host: load %s: %s\n", argv[1], err ? err : "?");
        return 1;
    }
    char uri[4096];
    snprintf(uri, sizeof uri, "file:%s?vfs=replicated", argv[2]);
    sqlite3 *db = NULL;
    check(sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, NULL), db, uri);
    check(sqlite3_exec(db, "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)", 0, 0, 0), db,
          "create");
    int rows = atoi(argv[3]);
    for (int i = 0; i < rows; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "INSERT INTO t(x) VALUES ('row %d')", i);
        check(sqlite3_exec(db, sql, 0, 0, 0), db, "insert");
    }
    check(sqlite3_close(db), NULL, "close");
    check(sqlite3_close(boot), NULL, "close :memory:");
    gMainReturned = 1;
    return 0;
}
