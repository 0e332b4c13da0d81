/*
 * vfsreconcile.h - the reconcile decision: what the spool must do to catch up with the WAL.
 *
 * A pure function, no I/O: reconcile() in capture.c reads the wal-index header, the shared
 * state and (only when the decision asks for it) the WAL header, calls vr_reconcile_decide, and
 * executes the action. Exported so that tests can check every rule without files or processes.
 */
#ifndef VFSRECONCILE_H
#define VFSRECONCILE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vr_reconcile_action {
    VR_RECONCILE_NOTHING = 0,     /* the spool has everything the wal-index published */
    VR_RECONCILE_ADOPT_CLEAN,     /* the clean close matches and the WAL is empty: record its salts */
    VR_RECONCILE_RECORD_RESTART,  /* the WAL restarted (or is empty): record its salts, frame 0 */
    VR_RECONCILE_READ_WAL_HEADER, /* ask again with the WAL header's check results (walHeaderKnown) */
    VR_RECONCILE_CAPTURE,         /* capture frames firstFrame..mxFrame, chain seeded with seed1/2 */
    VR_RECONCILE_RESET,           /* start a new lineage (a RESET marker), for `reason` */
} vr_reconcile_action;

typedef struct vr_reconcile_input {
    /* The wal-index header as published (salts as numbers, as the WAL header spells them). */
    uint32_t idxSalt1, idxSalt2;
    uint32_t idxMxFrame;
    /* The shared state: the last captured WAL position and chain value. */
    int walValid;
    uint32_t walFrame;
    uint32_t walSalt1, walSalt2;
    uint32_t walCk1, walCk2;
    int cleanValid;   /* the last connection closed cleanly (WAL deleted) */
    int cleanMatches; /* ... and the database file is as it was then (read only when cleanValid) */
    int walOpen;      /* this connection has the WAL open through the replicated VFS */
    /* The WAL header (valid when walHeaderKnown). */
    int walHeaderKnown;
    uint32_t walMagic, walVersion;
    int walSaltsMatch; /* its salts are the wal-index's */
    uint32_t walCk1Header, walCk2Header; /* its checksum: the chain seed of frame 1 */
} vr_reconcile_input;

typedef struct vr_reconcile_decision {
    vr_reconcile_action action;
    /* Before the action: the clean close matched; record the WAL's salts at frame 0 (the
     * shared state is then as the rest of the decision assumes). */
    int adoptCleanFirst;
    uint32_t firstFrame, seed1, seed2; /* VR_RECONCILE_CAPTURE */
    const char *_Nullable reason;      /* VR_RECONCILE_RESET: why, for the log */
} vr_reconcile_decision;

vr_reconcile_decision vr_reconcile_decide(const vr_reconcile_input *_Nonnull in);

#ifdef __cplusplus
}
#endif
#endif
