/*
 * safetensors.h - read .safetensors files (tests/safetensors_writer.h writes them).
 *
 * The format, byte by byte:
 *   bytes 0..7      N, the header length, unsigned 64-bit little-endian
 *   bytes 8..8+N    a UTF-8 JSON object: for each tensor name
 *                     {"dtype": "F32", "shape": [d0, d1, ...],
 *                      "data_offsets": [begin, end]}
 *                   plus an optional "__metadata__" object of string values
 *   bytes 8+N..     the data buffer; offsets are relative to its start,
 *                   tensors are little-endian, C order, and must not overlap
 *
 * The file is read into memory whole (a file changed while it is read is
 * refused); every offset, shape and dtype is checked against the file size
 * before a tensor is exposed, so a tensor's bytes are always inside that
 * copy, and the SHA-256 is of exactly the bytes the tensors come from.
 */
#ifndef IGSERVE_SAFETENSORS_H
#define IGSERVE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define ST_MAX_DIMS 8

enum st_dtype {
	ST_BOOL, ST_U8, ST_I8, ST_I16, ST_U16, ST_F16, ST_BF16,
	ST_I32, ST_U32, ST_F32, ST_F64, ST_I64, ST_U64,
	ST_F8_E4M3, ST_F8_E5M2,
};

struct st_tensor {
	const char *name;        /* owned by the st_file */
	enum st_dtype dtype;
	int ndim;
	int64_t shape[ST_MAX_DIMS];
	int64_t numel;           /* product of shape (1 for a scalar) */
	const void *data;        /* inside the file's copy; valid until close */
	size_t nbytes;
};

struct st_file;

/*
 * safetensors_open - read `path` and validate its header.  On success *out
 * owns the copy and 0 is returned; on failure a negative code
 * (IGS_ERR_IO, IGS_ERR_FORMAT, IGS_ERR_NOMEM) and a message naming the file
 * and the problem.
 */
int safetensors_open(struct st_file **out, const char *path, struct igs_error *err);

/* safetensors_close - free the copy and all; sets *f to NULL.  NULL is fine. */
void safetensors_close(struct st_file **f);

size_t safetensors_count(const struct st_file *f);
/* Tensors in file order (by data offset). */
const struct st_tensor *safetensors_at(const struct st_file *f, size_t i);
/* NULL when there is no tensor of that name. */
const struct st_tensor *safetensors_find(const struct st_file *f, const char *name);
/* The whole file's SHA-256 as 64 lowercase hex digits. */
const char *safetensors_sha256(const struct st_file *f);
/* Value of __metadata__[key], or NULL. */
const char *safetensors_metadata(const struct st_file *f, const char *key);

/* Size of one element of a dtype in bytes. */
size_t safetensors_dtype_size(enum st_dtype dtype);
const char *safetensors_dtype_name(enum st_dtype dtype);

/*
 * safetensors_read_f32 - convert a floating tensor (F32, F16, BF16, F64) to
 * float32 into `dst` (numel floats, caller-owned).  IGS_ERR_FORMAT for other
 * dtypes.
 */
int safetensors_read_f32(const struct st_tensor *t, float *dst, struct igs_error *err);

#endif
