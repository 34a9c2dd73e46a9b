/*
 * fuzz_safetensors - safetensors_open on any file contents (written to a
 * memfd, opened by its /proc path as a regular file), then every floating
 * tensor read as float32.  Invariants: tensors lie inside the file; a
 * failure has a message.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	size_t done = 0;
	while (done < size) {
		ssize_t n = write(fd, data + done, size - done);
		if (n <= 0)
			abort();
		done += (size_t)n;
	}
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	struct st_file *f = NULL;
	struct igs_error err = {0};
	int rc = safetensors_open(&f, path, &err);
	close(fd);
	if (rc != 0) {
		if (f != NULL || err.message[0] == '\0')
			abort();
		return 0;
	}
	size_t total = 0;
	for (size_t i = 0; i < safetensors_count(f); i++) {
		const struct st_tensor *t = safetensors_at(f, i);
		total += t->nbytes;
		if (total > size || safetensors_find(f, t->name) == NULL)
			abort();
		if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 &&
		    t->dtype != ST_F64)
			continue;
		float *dst = malloc(t->numel ? (size_t)t->numel * sizeof *dst : 1);
		if (!dst)
			abort();
		if (safetensors_read_f32(t, dst, &err) != 0)
			abort();
		free(dst);
	}
	if (strlen(safetensors_sha256(f)) != 64)
		abort();
	safetensors_close(&f);
	return 0;
}
