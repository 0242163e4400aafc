/* dirsync — making a directory's entries durable.
 *
 * A file created, renamed or removed survives a crash only once its directory is synced as well as
 * the file itself (fsync(2) on Linux). The event log does it after making a segment, the store
 * after moving a migrated log into place.
 *
 * dir_sync() returns 0, or -1 with errno set (opening or syncing dir failed). Cost: an open, an
 * fsync and a close. */
#ifndef ENGAGED_DIRSYNC_H
#define ENGAGED_DIRSYNC_H

int dir_sync(const char *dir);

#endif
