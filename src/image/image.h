/*
 * image.h - decode uploads (JPEG, PNG) and fit them to the model's input.
 *
 * Pixels are 8-bit RGB, HWC, rows top to bottom.  Limits are checked from
 * the file header before any pixel buffer is allocated.
 */
#ifndef IGSERVE_IMAGE_H
#define IGSERVE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define IMAGE_DEFAULT_MAX_BYTES (16u << 20)      /* 16 MiB */
#define IMAGE_DEFAULT_MAX_PIXELS 40000000ull      /* 40 megapixels */
/* A JPEG's decoding work: at most this many scans (SOS markers), and scans x
 * width x height at most IMAGE_MAX_JPEG_SCAN_PIXELS; refused before decoding. */
#define IMAGE_MAX_JPEG_SCANS 64
#define IMAGE_MAX_JPEG_SCAN_PIXELS 1000000000ull

struct image {
	int width, height;
	uint8_t *rgb;         /* width*height*3 bytes, owned; free with image_clear */
};

struct image_limits {
	size_t max_bytes;     /* 0: IMAGE_DEFAULT_MAX_BYTES */
	uint64_t max_pixels;  /* 0: IMAGE_DEFAULT_MAX_PIXELS */
};

enum image_format { IMAGE_FORMAT_UNKNOWN, IMAGE_FORMAT_JPEG, IMAGE_FORMAT_PNG };

/* Sniff the magic bytes. */
enum image_format image_sniff(const void *data, size_t len);

/*
 * image_decode - decode JPEG (baseline, progressive, grayscale, CMYK) or PNG
 * (8/16-bit, gray, gray+alpha, palette, RGB, RGBA; alpha dropped) into
 * out->rgb.  Errors: IGS_ERR_TOO_LARGE (bytes), IGS_ERR_UNSUPPORTED_MEDIA
 * (neither format), IGS_ERR_IMAGE_DECODE (truncated or corrupt),
 * IGS_ERR_IMAGE_TOO_LARGE (width*height over the pixel limit).  On error
 * out->rgb is NULL.  `limits` may be NULL for the defaults.
 */
int image_decode(struct image *out, const void *data, size_t len, const struct image_limits *limits,
                 struct igs_error *err);

/* Read a whole file and decode it (the CLI's path). */
int image_load_file(struct image *out, const char *path, const struct image_limits *limits,
                    struct igs_error *err);

void image_clear(struct image *img);

/*
 * image_jpeg_orientation - the EXIF Orientation (1-8) of a JPEG's bytes, 1
 * when there is none or it cannot be read (image_orient.c lists the
 * values).  image_orient - turn or flip `img` in place so that an image
 * stored with that orientation is upright (width and height swap for 5-8);
 * 1 and unknown values leave it.  image_decode applies both to JPEGs.
 */
int image_jpeg_orientation(const void *data, size_t len);
int image_orient(struct image *img, int orientation, struct igs_error *err);

enum resize_mode { RESIZE_LETTERBOX, RESIZE_CENTER_CROP, RESIZE_STRETCH };

/* "letterbox", "center-crop", "stretch" <-> enum; -1 when unknown. */
int image_resize_mode_parse(const char *name);
const char *image_resize_mode_name(enum resize_mode mode);

/*
 * Where the model input came from: input pixel (x, y), pixel centers at
 * (x + 0.5), corresponds to source coordinate
 *   src_x = (x + 0.5 - offset_x) / scale_x,  src_y likewise,
 * and input pixels outside [offset, offset + scale*src_size) are padding.
 */
struct image_geometry {
	int src_width, src_height, size;
	double scale_x, scale_y, offset_x, offset_y;
};

/*
 * image_fit - make a size x size RGB image from `in`.  An image already
 * size x size is copied pixel for pixel.  Otherwise:
 *   letterbox:   keep aspect, scale the longer side to `size`, center, pad with
 *                gray 127 (area averaging when shrinking, bicubic when enlarging);
 *   center-crop: scale the shorter side to size*256/224, crop the center;
 *   stretch:     scale each axis to `size`.
 * `geom` (may be NULL) receives the mapping back to the source image.
 */
int image_fit(struct image *out, const struct image *in, int size, enum resize_mode mode,
              struct image_geometry *geom, struct igs_error *err);

/* image_resize - resample to exactly w x h (area when shrinking an axis,
 * bicubic when enlarging). */
int image_resize(struct image *out, const struct image *in, int w, int h, struct igs_error *err);

/* The scratch memory image_resize and image_fit use for a w x h result, besides the result:
 * (h + 1) x w x 3 floats, independent of the source's size. */
size_t image_resize_scratch_bytes(int w, int h);

#endif
