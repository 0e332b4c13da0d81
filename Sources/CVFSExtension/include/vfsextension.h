#ifndef VFSEXTENSION_H
#define VFSEXTENSION_H
/* The loadable extension's entry point (SQLite derives the name from libvfsreplication.so). */
struct sqlite3;
struct sqlite3_api_routines;
int sqlite3_vfsreplication_init(struct sqlite3 *db, char **pzErrMsg, const struct sqlite3_api_routines *pApi);
#endif
