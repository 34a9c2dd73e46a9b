/*
 * npy.c - .npy v1.0 writer for float32 and float16 arrays (format in npy.h).
 */
#include "npy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "file.h"

/* The header for `descr` and shape; the values are written by the caller
 * at *out + (*len - count * elem). */
static int encode_header(const char *descr, size_t elem, const size_t *shape, int ndim,
                         unsigned char **out, size_t *len, size_t *count_out,
                         struct igs_error *err);

int npy_encode_f32(const float *data, const size_t *shape, int ndim, unsigned char **out,
                   size_t *len, struct igs_error *err)
{
	size_t count;
	int rc = encode_header("<f4", 4, shape, ndim, out, len, &count, err);
	if (rc)
		return rc;
	/* little-endian whatever the host */
	unsigned char *p = *out + (*len - count * 4);
	for (size_t i = 0; i < count; i++) {
		uint32_t u;
		memcpy(&u, &data[i], 4);
		p[4 * i] = (unsigned char)u;
		p[4 * i + 1] = (unsigned char)(u >> 8);
		p[4 * i + 2] = (unsigned char)(u >> 16);
		p[4 * i + 3] = (unsigned char)(u >> 24);
	}
	return 0;
}

int npy_encode_f16(const float *data, const size_t *shape, int ndim, unsigned char **out,
                   size_t *len, struct igs_error *err)
{
	size_t count;
	int rc = encode_header("<f2", 2, shape, ndim, out, len, &count, err);
	if (rc)
		return rc;
	unsigned char *p = *out + (*len - count * 2);
	for (size_t i = 0; i < count; i++) {
		uint16_t h = npy_half_from_float(data[i]);
		p[2 * i] = (unsigned char)h;
		p[2 * i + 1] = (unsigned char)(h >> 8);
	}
	return 0;
}

uint16_t npy_half_from_float(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
	uint32_t exp = (x >> 23) & 0xff, mant = x & 0x7fffff;
	if (exp == 0xff) /* infinity, or NaN (kept quiet and non-zero) */
		return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 | (mant >> 13) : 0));
	int e = (int)exp - 127 + 15; /* the half's biased exponent */
	if (e >= 31)
		return (uint16_t)(sign | 0x7c00); /* too large: infinity */
	if (e <= 0) {
		/* subnormal half (or zero): the value is m * 2^-24 with m the
		 * 24-bit significand shifted right by 14 - e, rounded to even */
		if (e < -10)
			return sign; /* below half the smallest subnormal */
		uint32_t m = mant | 0x800000;
		int shift = 14 - e;
		uint32_t half = m >> shift, rest = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
		if (rest > mid || (rest == mid && (half & 1)))
			half++;
		return (uint16_t)(sign | half);
	}
	uint32_t h = ((uint32_t)e << 10) | (mant >> 13), rest = mant & 0x1fff;
	if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
		h++; /* a carry into the exponent is right, up to infinity */
	return (uint16_t)(sign | h);
}

const char *npy_format_name(enum npy_format f)
{
	return f == NPY_FORMAT_F16 ? "npy16" : f == NPY_FORMAT_MAP ? "map" : "npy";
}

int npy_format_parse(const char *s)
{
	if (!strcasecmp(s, "npy"))
		return NPY_FORMAT_F32;
	if (!strcasecmp(s, "npy16"))
		return NPY_FORMAT_F16;
	if (!strcasecmp(s, "map"))
		return NPY_FORMAT_MAP;
	return -1;
}

int npy_encode_attributions(const float *attr, int size, enum npy_format f, unsigned char **out,
                            size_t *len, struct igs_error *err)
{
	const size_t shape[3] = {(size_t)size, (size_t)size, 3};
	if (f == NPY_FORMAT_F16)
		return npy_encode_f16(attr, shape, 3, out, len, err);
	if (f != NPY_FORMAT_MAP)
		return npy_encode_f32(attr, shape, 3, out, len, err);
	size_t hw = (size_t)size * size;
	float *m = malloc(hw * sizeof *m);
	if (!m)
		return igs_fail(err, IGS_ERR_NOMEM, "npy: out of memory");
	for (size_t p = 0; p < hw; p++)
		m[p] = attr[3 * p] + attr[3 * p + 1] + attr[3 * p + 2];
	int rc = npy_encode_f32(m, shape, 2, out, len, err);
	free(m);
	return rc;
}

static int encode_header(const char *descr, size_t elem, const size_t *shape, int ndim,
                         unsigned char **out, size_t *len, size_t *count_out, struct igs_error *err)
{
	*out = NULL;
	*len = 0;
	if (ndim < 1 || ndim > NPY_MAX_DIMS)
		return igs_fail(err, IGS_ERR_INTERNAL, "npy: %d dimensions, expected 1..%d", ndim,
		                NPY_MAX_DIMS);
	char dict[256];
	int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
	                 descr);
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
	size_t total = padded + count * elem;
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
	*out = b;
	*len = total;
	*count_out = count;
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
