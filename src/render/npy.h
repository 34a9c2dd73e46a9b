/*
 * npy.h - NumPy .npy v1.0 files of float32, little-endian, C order.
 *
 * Layout: "\x93NUMPY", version 1 0, header length (uint16 little-endian),
 * then the header dict
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (H, W, 3), }
 * padded with spaces and ended by '\n' so the data starts at a multiple of
 * 64 bytes, then the values.
 */
#ifndef IGSERVE_NPY_H
#define IGSERVE_NPY_H

#include <stddef.h>

#include "error.h"

#define NPY_MAX_DIMS 8

/*
 * npy_encode_f32 - the .npy bytes of data with shape[ndim] (1..NPY_MAX_DIMS
 * dims).  *out is malloc'ed (caller frees), *len its size.
 */
int npy_encode_f32(const float *data, const size_t *shape, int ndim, unsigned char **out,
                   size_t *len, struct igs_error *err);

/* npy_write_f32 - the same, written to `path`; IGS_ERR_IO naming it. */
int npy_write_f32(const char *path, const float *data, const size_t *shape, int ndim,
                  struct igs_error *err);

#endif
