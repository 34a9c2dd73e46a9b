/*
 * file.h - whole files in and out, with the checks every caller needs.
 */
#ifndef IGSERVE_FILE_H
#define IGSERVE_FILE_H

#include <stddef.h>

#include "error.h"

/*
 * file_read_all - the whole of `path` into *out (malloc'd, one NUL byte
 * after the data so text can be parsed in place; caller frees), its length
 * in *len.  Only regular files: a FIFO, a device or a directory is
 * IGS_ERR_IO without blocking on it.  More than `max_bytes` (0: no limit)
 * is IGS_ERR_TOO_LARGE, found without reading the rest.  Messages start
 * with the path.  On error *out is NULL.
 */
int file_read_all(const char *path, size_t max_bytes, unsigned char **out, size_t *len,
                  struct igs_error *err);

/* file_write_bytes - write `len` bytes to `path` (created, or truncated
 * when it exists); IGS_ERR_IO naming it. */
int file_write_bytes(const char *path, const void *data, size_t len, struct igs_error *err);

/*
 * file_write_atomic - write `len` bytes so that `path` either keeps what it
 * was or holds all of them: into a new file beside it (created
 * exclusively, never through a symlink), flushed, then renamed over
 * `path`.  A crash leaves at most a stray `path.tmp-PID`.  IGS_ERR_IO
 * naming the path.
 */
int file_write_atomic(const char *path, const void *data, size_t len, struct igs_error *err);

/* file_exists - whether `path` names something (lstat: a dangling symlink
 * counts). */
int file_exists(const char *path);

/*
 * file_write_new - write `len` bytes to `path`, which must not exist yet:
 * created exclusively (O_CREAT | O_EXCL, so never through a symbolic link,
 * dangling or not, and never over an existing file).  IGS_ERR_IO naming it;
 * "already exists" when something is there.  A failed write removes the
 * file it created.
 */
int file_write_new(const char *path, const void *data, size_t len, struct igs_error *err);

#endif
