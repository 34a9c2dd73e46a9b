/*
 * safetensors_writer.h - write .safetensors files, for tests and fixtures.
 */
#ifndef IGSERVE_SAFETENSORS_WRITER_H
#define IGSERVE_SAFETENSORS_WRITER_H

#include "safetensors.h"

/* A tensor to write: float32 data, caller-owned. */
struct st_write_tensor {
	const char *name;
	int ndim;
	int64_t shape[ST_MAX_DIMS];
	const float *data;
	enum st_dtype dtype;     /* ST_F32, ST_F16 or ST_BF16: converted on write */
};

/* safetensors_write - write tensors (in the given order) to `path`. */
int safetensors_write(const char *path, const struct st_write_tensor *tensors, size_t n,
                      struct igs_error *err);

#endif
