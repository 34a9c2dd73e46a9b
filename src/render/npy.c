/*
 * npy.c - .npy v1.0 writer for float32 arrays (format in npy.h).
 */
#include "npy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"

int npy_encode_f32(const float *data, const size_t *shape, int ndim, unsigned char **out,
                   size_t *len, struct igs_error *err)
{
	*out = NULL;
	*len = 0;
	if (ndim < 1 || ndim > NPY_MAX_DIMS)
		return igs_fail(err, IGS_ERR_INTERNAL, "npy: %d dimensions, expected 1..%d", ndim,
		                NPY_MAX_DIMS);
	char dict[256];
	int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
	size_t count = 1;
	for (int d = 0; d < ndim; d++) {
		n += snprintf(dict + n, sizeof dict - (size_t)n, "%zu%s", shape[d],
		              ndim == 1      ? ","
		              : d + 1 < ndim ? ", "
		                             : "");
		count *= shape[d];
	}
	n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
	/* magic(6) + version(2) + header length(2) + dict + padding + '\n' */
	size_t header = 10 + (size_t)n + 1;
	size_t padded = (header + 63) / 64 * 64;
	size_t total = padded + count * 4;
	unsigned char *b = malloc(total);
	if (!b)
		return igs_fail(err, IGS_ERR_NOMEM, "npy: out of memory for %zu bytes", total);
	memcpy(b, "\x93NUMPY\x01\x00", 8);
	size_t hlen = padded - 10;
	b[8] = (unsigned char)(hlen & 0xff);
	b[9] = (unsigned char)(hlen >> 8);
	memcpy(b + 10, dict, (size_t)n);
	memset(b + 10 + n, ' ', padded - 10 - (size_t)n - 1);
	b[padded - 1] = '\n';
	/* little-endian whatever the host */
	unsigned char *p = b + padded;
	for (size_t i = 0; i < count; i++) {
		uint32_t u;
		memcpy(&u, &data[i], 4);
		p[4 * i] = (unsigned char)u;
		p[4 * i + 1] = (unsigned char)(u >> 8);
		p[4 * i + 2] = (unsigned char)(u >> 16);
		p[4 * i + 3] = (unsigned char)(u >> 24);
	}
	*out = b;
	*len = total;
	return 0;
}

int npy_write_f32(const char *path, const float *data, const size_t *shape, int ndim,
                  struct igs_error *err)
{
	unsigned char *bytes;
	size_t len;
	int rc = npy_encode_f32(data, shape, ndim, &bytes, &len, err);
	if (rc)
		return rc;
	rc = file_write_bytes(path, bytes, len, err);
	free(bytes);
	return rc;
}
