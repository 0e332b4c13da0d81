#ifndef VFSSQLITELINK_H
#define VFSSQLITELINK_H
/* Fills the shim's SQLite API table from the libsqlite3 this program links. Called
 * automatically by the shim; declared here so the target has a public header. */
void vr_link_sqlite(void);
#endif
