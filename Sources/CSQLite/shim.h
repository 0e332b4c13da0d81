#ifndef CSQLITE_SHIM_H
#define CSQLITE_SHIM_H
#include <sqlite3.h>

/* Swift cannot call variadic C functions or use SQLITE_TRANSIENT (a cast macro). */
static inline sqlite3_destructor_type csqlite_transient(void) { return SQLITE_TRANSIENT; }
static inline int csqlite_db_config_int(sqlite3 *_Nonnull db, int op, int value) {
    return sqlite3_db_config(db, op, value, (int *)0);
}
#endif
