/*
 * safetensors_writer.c - write .safetensors files (tests and fixtures
 * only: igserve itself only reads them, safetensors.c).  The layout is the
 * one src/weights/safetensors.h describes; tensors are F32, F16 or BF16,
 * converted from float32 on write.
 */
#include "safetensors_writer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_JSON_INT 9007199254740992.0 /* 2^53 */

static void store_le16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)(v & 0xff);
	p[1] = (unsigned char)(v >> 8);
}

static void store_le32(unsigned char *p, uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	memcpy(p, &v, 4);
}

static void store_le64(unsigned char *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, 8);
}

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

/* binary32 -> binary16, round to nearest, ties to even; values from 65520
 * up overflow to inf (65520 is the tie between 65504 and 2^16), NaN stays a
 * quiet NaN. */
static uint16_t f32_to_f16(float f)
{
	uint32_t x = f32_bits(f);
	uint32_t sign = (x >> 16) & 0x8000;
	uint32_t ax = x & 0x7fffffffu;

	if (ax >= 0x7f800000u) /* inf or NaN */
		return (uint16_t)(sign | 0x7c00 |
		                  (ax > 0x7f800000u ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
	if (ax >= 0x477ff000u) /* >= 65520 */
		return (uint16_t)(sign | 0x7c00);
	if (ax < 0x38800000u) {
		/* below 2^-14: a half subnormal, in units of 2^-24.  value =
		 * m * 2^(e-150), so units = m >> (126 - e). */
		uint32_t e = ax >> 23;
		if (e < 102) /* < 2^-25: rounds to zero */
			return (uint16_t)sign;
		uint32_t m = (ax & 0x7fffff) | 0x800000;
		uint32_t shift = 126 - e; /* 14..24 */
		uint32_t q = m >> shift;
		uint32_t rem = m & ((1u << shift) - 1);
		uint32_t half = 1u << (shift - 1);
		if (rem > half || (rem == half && (q & 1)))
			q++; /* may carry into 0x400, the smallest normal: right */
		return (uint16_t)(sign | q);
	}
	/* normal: rebias, drop 13 mantissa bits; a carry rolls into the
	 * exponent, which is the correctly rounded result */
	uint32_t h = (ax >> 13) - (112u << 10);
	uint32_t rem = ax & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
		h++;
	return (uint16_t)(sign | h);
}

/* binary32 -> bfloat16, round to nearest, ties to even; NaN stays quiet NaN. */
static uint16_t f32_to_bf16(float f)
{
	uint32_t x = f32_bits(f);
	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((x >> 16) | 0x40);
	x += 0x7fff + ((x >> 16) & 1);
	return (uint16_t)(x >> 16);
}

/* Element count of a tensor to write, or -1 if its shape is invalid or its
 * byte size would not fit in 2^53 (the JSON offsets must stay exact). */
static int64_t write_numel(const struct st_write_tensor *w)
{
	if (w->ndim < 0 || w->ndim > ST_MAX_DIMS)
		return -1;
	uint64_t numel = 1;
	const uint64_t limit = (uint64_t)ST_MAX_JSON_INT / 8;
	for (int d = 0; d < w->ndim; d++) {
		if (w->shape[d] < 0)
			return -1;
		uint64_t v = (uint64_t)w->shape[d];
		if (v != 0 && numel > limit / v)
			return -1;
		numel *= v;
	}
	return (int64_t)numel;
}

/* Header JSON for `tensors`, laid out back to back in the given order,
 * padded with spaces to a multiple of 8 as the reference writer does.
 * Returns a malloc'ed string (caller frees) and its length in *len. */
static int build_header(char **out, size_t *len, const char *path,
                        const struct st_write_tensor *tensors, size_t n, struct igs_error *err)
{
	*out = NULL;
	cJSON *root = cJSON_CreateObject();
	if (!root)
		return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory for the header", path);
	uint64_t offset = 0;
	for (size_t i = 0; i < n; i++) {
		const struct st_write_tensor *w = &tensors[i];
		const char *name = w->name ? w->name : "";
		const char *why = NULL;
		int64_t numel = write_numel(w);
		if (!w->name)
			why = "has no name";
		else if (strcmp(name, "__metadata__") == 0)
			why = "uses the reserved name";
		else if (cJSON_GetObjectItemCaseSensitive(root, name))
			why = "appears twice";
		else if (w->dtype != ST_F32 && w->dtype != ST_F16 && w->dtype != ST_BF16)
			why = "has a dtype other than F32, F16, BF16";
		else if (numel < 0)
			why = "has an invalid shape";
		else if (numel > 0 && !w->data)
			why = "has no data";
		if (why) {
			cJSON_Delete(root);
			return igs_fail(err, IGS_ERR_FORMAT, "%s: cannot write tensor '%s': it %s",
			                path, name, why);
		}
		uint64_t end = offset + (uint64_t)numel * safetensors_dtype_size(w->dtype);
		/* Once added, every item is owned by `root`: one delete frees all. */
		cJSON *entry = cJSON_CreateObject();
		if (entry && !cJSON_AddItemToObject(root, name, entry)) {
			cJSON_Delete(entry);
			entry = NULL;
		}
		bool ok =
		    entry && cJSON_AddStringToObject(entry, "dtype", safetensors_dtype_name(w->dtype));
		cJSON *shape = ok ? cJSON_AddArrayToObject(entry, "shape") : NULL;
		for (int d = 0; shape && d < w->ndim; d++)
			ok = ok &&
			     cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)w->shape[d]));
		cJSON *offs = ok && shape ? cJSON_AddArrayToObject(entry, "data_offsets") : NULL;
		ok = ok && offs && cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset)) &&
		     cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)end));
		if (!ok) {
			cJSON_Delete(root);
			return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory for the header", path);
		}
		offset = end;
		if (offset > (uint64_t)ST_MAX_JSON_INT) {
			cJSON_Delete(root);
			return igs_fail(err, IGS_ERR_FORMAT, "%s: tensors total over 2^53 bytes",
			                path);
		}
	}
	char *json = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!json)
		return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory for the header", path);
	size_t jlen = strlen(json);
	size_t padded = (jlen + 7) / 8 * 8;
	char *buf = realloc(json, padded + 1);
	if (!buf) {
		free(json);
		return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory for the header", path);
	}
	memset(buf + jlen, ' ', padded - jlen);
	buf[padded] = '\0';
	*out = buf;
	*len = padded;
	return 0;
}

/* Convert and write one tensor's data in chunks. */
static int write_data(FILE *fp, const struct st_write_tensor *w, size_t numel)
{
	enum { CHUNK = 4096 };
	unsigned char buf[CHUNK * 4];
	size_t esize = safetensors_dtype_size(w->dtype);
	for (size_t i = 0; i < numel; i += CHUNK) {
		size_t m = numel - i < CHUNK ? numel - i : CHUNK;
		for (size_t k = 0; k < m; k++) {
			float v = w->data[i + k];
			if (w->dtype == ST_F32)
				store_le32(buf + 4 * k, f32_bits(v));
			else if (w->dtype == ST_F16)
				store_le16(buf + 2 * k, f32_to_f16(v));
			else
				store_le16(buf + 2 * k, f32_to_bf16(v));
		}
		if (fwrite(buf, esize, m, fp) != m)
			return -1;
	}
	return 0;
}

/*
 * safetensors_write - see safetensors_writer.h.  Tensors and their data stay owned
 * by the caller.  The file appears at `path` complete or not at all: it is
 * written to a temporary file beside it, synced and renamed over `path`.
 */
int safetensors_write(const char *path, const struct st_write_tensor *tensors, size_t n,
                      struct igs_error *err)
{
	char *header = NULL;
	size_t hlen = 0;
	int rc = build_header(&header, &hlen, path, tensors, n, err);
	if (rc)
		return rc;

	size_t plen = strlen(path);
	char *tmp = malloc(plen + sizeof ".XXXXXX");
	if (!tmp) {
		free(header);
		return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory", path);
	}
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".XXXXXX", sizeof ".XXXXXX");
	int fd = mkstemp(tmp);
	if (fd < 0) {
		rc = igs_fail(err, IGS_ERR_IO, "%s: cannot create a temporary file: %s", path,
		              strerror(errno));
		free(tmp);
		free(header);
		return rc;
	}
	(void)fchmod(fd, 0644); /* mkstemp makes 0600; weights are not secret */
	FILE *fp = fdopen(fd, "wb");
	if (!fp) {
		rc = igs_fail(err, IGS_ERR_IO, "%s: cannot write %s: %s", path, tmp,
		              strerror(errno));
		close(fd);
		goto fail;
	}

	unsigned char lenbuf[8];
	store_le64(lenbuf, hlen);
	bool ok = fwrite(lenbuf, 1, 8, fp) == 8 && fwrite(header, 1, hlen, fp) == hlen;
	for (size_t i = 0; ok && i < n; i++)
		ok = write_data(fp, &tensors[i], (size_t)write_numel(&tensors[i])) == 0;
	ok = ok && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
	int write_errno = errno;
	if (fclose(fp) != 0 && ok) {
		ok = false;
		write_errno = errno;
	}
	if (!ok) {
		rc = igs_fail(err, IGS_ERR_IO, "%s: writing %s failed: %s", path, tmp,
		              strerror(write_errno));
		goto fail;
	}
	if (rename(tmp, path) != 0) {
		rc = igs_fail(err, IGS_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp,
		              strerror(errno));
		goto fail;
	}
	free(tmp);
	free(header);
	return 0;

fail:
	unlink(tmp);
	free(tmp);
	free(header);
	return rc;
}
