/*
 * file.c - see file.h.
 */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int file_read_all(const char *path, size_t max_bytes, unsigned char **out, size_t *len,
                  struct igs_error *err)
{
	*out = NULL;
	*len = 0;
	/* O_NONBLOCK: opening a FIFO would otherwise wait for a writer. */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return igs_fail(err, IGS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		return igs_fail(err, IGS_ERR_IO, "%s: cannot read: %s", path, strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return igs_fail(err, IGS_ERR_IO, "%s: not a regular file", path);
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	size_t max = max_bytes ? max_bytes : SIZE_MAX - 1;
	/* The size fstat reports is a hint: the file may grow or shrink while
	 * it is read, so read until end of file, never past max + 1. */
	size_t cap = (size_t)st.st_size < max ? (size_t)st.st_size + 1 : max + 1;
	if (cap < 4096)
		cap = 4096;
	unsigned char *buf = malloc(cap + 1);
	size_t n = 0;
	int rc = buf ? 0 : igs_fail(err, IGS_ERR_NOMEM, "%s: out of memory reading the file", path);
	while (rc == 0) {
		if (n == cap) {
			size_t bigger = cap > max / 2 ? max + 1 : cap * 2;
			unsigned char *nb = realloc(buf, bigger + 1);
			if (!nb) {
				rc = igs_fail(err, IGS_ERR_NOMEM,
				              "%s: out of memory reading the file", path);
				break;
			}
			buf = nb;
			cap = bigger;
		}
		ssize_t got = read(fd, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc =
			    igs_fail(err, IGS_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
			break;
		}
		if (got == 0)
			break;
		n += (size_t)got;
		if (n > max)
			rc = igs_fail(err, IGS_ERR_TOO_LARGE,
			              "%s: file is over the limit of %zu bytes", path, max);
	}
	close(fd);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* Every byte to fd, through short writes and EINTR: 0, or the errno. */
static int write_all(int fd, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, p + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EIO;
		done += (size_t)n;
	}
	return 0;
}

int file_write_new(const char *path, const void *data, size_t len, struct igs_error *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
	if (fd < 0) {
		if (errno == EEXIST)
			return igs_fail(err, IGS_ERR_IO,
			                "%s: already exists (not overwritten; remove it or write "
			                "elsewhere)",
			                path);
		return igs_fail(err, IGS_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
	}
	int e = write_all(fd, data, len);
	if (close(fd) != 0 && e == 0)
		e = errno;
	if (e) {
		unlink(path);
		return igs_fail(err, IGS_ERR_IO, "%s: write failed: %s", path, strerror(e));
	}
	return 0;
}

int file_write_bytes(const char *path, const void *data, size_t len, struct igs_error *err)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return igs_fail(err, IGS_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
	size_t w = fwrite(data, 1, len, f);
	int close_rc = fclose(f);
	if (w != len || close_rc != 0)
		return igs_fail(err, IGS_ERR_IO, "%s: write failed: %s", path, strerror(errno));
	return 0;
}

int file_write_atomic(const char *path, const void *data, size_t len, struct igs_error *err)
{
	char tmp[4096];
	int n = snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof tmp)
		return igs_fail(err, IGS_ERR_IO, "%s: path too long", path);
	unlink(tmp); /* a stray from a crashed run of the same pid */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return igs_fail(err, IGS_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
	int e = write_all(fd, data, len);
	if (e == 0 && fsync(fd) != 0)
		e = errno;
	if (close(fd) != 0 && e == 0)
		e = errno;
	if (e) {
		unlink(tmp);
		return igs_fail(err, IGS_ERR_IO, "%s: write failed: %s", tmp, strerror(e));
	}
	if (rename(tmp, path) != 0) {
		e = errno;
		unlink(tmp);
		return igs_fail(err, IGS_ERR_IO, "%s: cannot rename into place: %s", path,
		                strerror(e));
	}
	return 0;
}

int file_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}
