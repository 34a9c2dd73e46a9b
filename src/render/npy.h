/*
 * npy.h - NumPy .npy v1.0 files of float32 or float16, little-endian,
 * C order.
 *
 * Layout: "\x93NUMPY", version 1 0, header length (uint16 little-endian),
 * then the header dict
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (H, W, 3), }
 * ('<f2' for float16)
 * padded with spaces and ended by '\n' so the data starts at a multiple of
 * 64 bytes, then the values.
 */
#ifndef IGSERVE_NPY_H
#define IGSERVE_NPY_H

#include <stddef.h>
#include <stdint.h>

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

/* ---- the encodings of an answer's attributions (raw=...) ---- */

enum npy_format {
	NPY_FORMAT_F32, /* raw=npy: float32 [H, W, 3] */
	NPY_FORMAT_F16, /* raw=npy16: float16 [H, W, 3], rounded to nearest even */
	NPY_FORMAT_MAP, /* raw=map: float32 [H, W], a[y][x][0] + a[y][x][1] + a[y][x][2] */
};

/* "npy", "npy16", "map"; parse (case-insensitive): the format, or -1. */
const char *npy_format_name(enum npy_format f);
int npy_format_parse(const char *s);

/* IEEE binary16 of f, rounded to nearest even; overflow to infinity, NaN
 * kept NaN. */
uint16_t npy_half_from_float(float f);

/* npy_encode_f16 - as npy_encode_f32, the values as float16. */
int npy_encode_f16(const float *data, const size_t *shape, int ndim, unsigned char **out,
                   size_t *len, struct igs_error *err);

/*
 * npy_encode_attributions - attr [size][size][3] in format `f` (above) as
 * .npy bytes; *out malloc'ed.
 */
int npy_encode_attributions(const float *attr, int size, enum npy_format f, unsigned char **out,
                            size_t *len, struct igs_error *err);

#endif
