/*
 * png_encode.h - 8-bit gray, RGB or RGBA images to PNG bytes in memory (libpng).
 */
#ifndef IGSERVE_PNG_ENCODE_H
#define IGSERVE_PNG_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/*
 * png_encode - encode pixels [height][width][channels] (channels 1 gray,
 * 3 RGB or 4 RGBA)
 * as a PNG.  *out is malloc'ed (caller frees), *len its size.  Errors:
 * IGS_ERR_BAD_OPTION (bad dimensions), IGS_ERR_NOMEM, IGS_ERR_INTERNAL
 * (libpng failed, with its message).
 */
int png_encode(const uint8_t *pixels, int width, int height, int channels, unsigned char **out,
               size_t *len, struct igs_error *err);

/* The largest side png_encode takes. */
#define PNG_ENCODE_MAX_SIDE 100000

/* png_encode_check - 0 when png_encode takes width x height x channels,
 * else IGS_ERR_BAD_OPTION saying why: callers check before computing. */
int png_encode_check(int width, int height, int channels, struct igs_error *err);

#endif
