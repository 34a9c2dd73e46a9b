/*
 * image_test_support.h - inputs made for the image tests (test_image.c,
 * test_image_resize.c): seeded bytes and smooth pictures, JPEGs from
 * TurboJPEG's encoder, PNGs from libpng's writer, and decoding checks.
 * Each test program is one translation unit, so the helpers are static
 * inline here.
 */
#ifndef IGSERVE_IMAGE_TEST_SUPPORT_H
#define IGSERVE_IMAGE_TEST_SUPPORT_H

#include <check.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "image.h"

static uint32_t rng_state = 12345;

static inline uint32_t rnd(void)
{
	rng_state = rng_state * 1664525u + 1013904223u;
	return rng_state >> 8;
}

/* A smooth colorful picture, kind to JPEG: (h, w, 3). */
static inline uint8_t *smooth_rgb(int w, int h)
{
	uint8_t *p = malloc((size_t)w * h * 3);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint8_t *q = p + ((size_t)y * w + x) * 3;
			q[0] = (uint8_t)(20 + 215 * x / (w - 1));
			q[1] = (uint8_t)(230 - 200 * y / (h - 1));
			q[2] = (uint8_t)(128 + 100 * sin(x * 0.05 + y * 0.03));
		}
	return p;
}

static inline uint8_t *random_bytes(size_t n)
{
	uint8_t *p = malloc(n);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
	return p;
}

static inline double mean_abs_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += abs((int)a[i] - (int)b[i]);
	return s / (double)n;
}

/* JPEG bytes of `pix` (pf layout), malloc'd; *len receives the size. */
static inline uint8_t *jpeg_encode(const uint8_t *pix, int w, int h, int pf, int subsamp, int quality,
                            int flags, size_t *len)
{
	tjhandle tj = tjInitCompress();
	unsigned char *jbuf = NULL;
	unsigned long jlen = 0;
	ck_assert_ptr_nonnull(tj);
	int rc = tjCompress2(tj, pix, w, 0, h, pf, &jbuf, &jlen, subsamp, quality, flags);
	ck_assert_msg(rc == 0, "tjCompress2: %s", tjGetErrorStr2(tj));
	uint8_t *out = malloc(jlen);
	memcpy(out, jbuf, jlen);
	*len = jlen;
	tjFree(jbuf);
	tjDestroy(tj);
	return out;
}

struct membuf {
	uint8_t *data;
	size_t len, cap;
};

static inline void mem_write(png_structp png, png_bytep data, png_size_t n)
{
	struct membuf *m = png_get_io_ptr(png);
	if (m->len + n > m->cap) {
		m->cap = (m->len + n) * 2;
		m->data = realloc(m->data, m->cap);
	}
	memcpy(m->data + m->len, data, n);
	m->len += n;
}

static inline void mem_flush(png_structp png)
{
	(void)png;
}

/*
 * png_encode - a PNG with the given IHDR; `rows` holds h rows of raw
 * samples (16-bit big-endian).  palette/trns may be NULL.  Returns malloc'd
 * bytes.
 */
static inline uint8_t *png_encode(int w, int h, int depth, int color_type, int interlace,
                           const uint8_t *rows, size_t row_bytes, const png_color *palette,
                           int npalette, const uint8_t *trns, int ntrns, size_t *len)
{
	struct membuf m = {0};
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = png_create_info_struct(png);
	png_bytep *rp = malloc(sizeof(*rp) * h);
	for (int y = 0; y < h; y++)
		rp[y] = (png_bytep)(rows + (size_t)y * row_bytes);
	if (setjmp(png_jmpbuf(png)))
		ck_abort_msg("libpng writer failed");
	png_set_write_fn(png, &m, mem_write, mem_flush);
	png_set_IHDR(png, info, w, h, depth, color_type, interlace, PNG_COMPRESSION_TYPE_DEFAULT,
	             PNG_FILTER_TYPE_DEFAULT);
	if (palette)
		png_set_PLTE(png, info, palette, npalette);
	if (trns)
		png_set_tRNS(png, info, trns, ntrns, NULL);
	png_set_rows(png, info, rp);
	png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
	png_destroy_write_struct(&png, &info);
	free(rp);
	*len = m.len;
	return m.data;
}

static inline int decode_ok(struct image *img, const uint8_t *data, size_t len, int w, int h)
{
	struct igs_error err = {0};
	int rc = image_decode(img, data, len, NULL, &err);
	ck_assert_msg(rc == 0, "decode failed (%d): %s", rc, err.message);
	ck_assert_int_eq(img->width, w);
	ck_assert_int_eq(img->height, h);
	ck_assert_ptr_nonnull(img->rgb);
	return rc;
}

static inline void expect_refusal(const uint8_t *data, size_t len, const struct image_limits *limits,
                           int code)
{
	struct image img = {.width = 7, .height = 7, .rgb = (uint8_t *)"x"};
	struct igs_error err = {0};
	int rc = image_decode(&img, data, len, limits, &err);
	ck_assert_msg(rc == code, "expected %d, got %d (%s)", code, rc, err.message);
	ck_assert_int_eq(err.code, code);
	ck_assert_ptr_null(img.rgb);
	ck_assert_msg(strlen(err.message) > 0, "no message");
}

/* Small inputs of either format. */
static inline uint8_t *small_jpeg(int w, int h, size_t *len)
{
	uint8_t *src = smooth_rgb(w, h);
	uint8_t *jpg = jpeg_encode(src, w, h, TJPF_RGB, TJSAMP_420, 90, 0, len);
	free(src);
	return jpg;
}

static inline uint8_t *small_png(int w, int h, size_t *len)
{
	uint8_t *src = random_bytes((size_t)w * h * 3);
	uint8_t *png =
	    png_encode(w, h, 8, PNG_COLOR_TYPE_RGB, 0, src, (size_t)w * 3, NULL, 0, NULL, 0, len);
	free(src);
	return png;
}

#endif
