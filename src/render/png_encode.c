/*
 * png_encode.c - PNG bytes in memory through libpng's write callbacks.
 *
 * libpng reports errors by longjmp; everything that must be freed after a
 * jump lives in `struct membuf` or is volatile, so the cleanup path sees it.
 */
#include "png_encode.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct membuf {
	unsigned char *data;
	size_t len, cap;
	int oom;
	char message[160];
};

static void mem_write(png_structp png, png_bytep bytes, png_size_t n)
{
	struct membuf *b = png_get_io_ptr(png);
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		unsigned char *d = realloc(b->data, cap);
		if (!d) {
			b->oom = 1;
			png_error(png, "out of memory");
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, bytes, n);
	b->len += n;
}

static void mem_flush(png_structp png)
{
	(void)png;
}

static void on_error(png_structp png, png_const_charp msg)
{
	struct membuf *b = png_get_error_ptr(png);
	snprintf(b->message, sizeof b->message, "%s", msg);
	png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg;
}

int png_encode_check(int width, int height, int channels, struct igs_error *err)
{
	if (width < 1 || height < 1 || width > PNG_ENCODE_MAX_SIDE ||
	    height > PNG_ENCODE_MAX_SIDE || (channels != 1 && channels != 3 && channels != 4))
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "png: cannot encode %dx%d with %d channels (sides 1..%d, 1, 3 or 4 "
		                "channels)",
		                width, height, channels, PNG_ENCODE_MAX_SIDE);
	return 0;
}

int png_encode(const uint8_t *pixels, int width, int height, int channels, unsigned char **out,
               size_t *len, struct igs_error *err)
{
	*out = NULL;
	*len = 0;
	int bad = png_encode_check(width, height, channels, err);
	if (bad)
		return bad;
	struct membuf b = {0};
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &b, on_error, on_warning);
	if (!png)
		return igs_fail(err, IGS_ERR_NOMEM, "png: out of memory");
	png_infop info = png_create_info_struct(png);
	if (!info) {
		png_destroy_write_struct(&png, NULL);
		return igs_fail(err, IGS_ERR_NOMEM, "png: out of memory");
	}
	if (setjmp(png_jmpbuf(png))) {
		png_destroy_write_struct(&png, &info);
		free(b.data);
		if (b.oom)
			return igs_fail(err, IGS_ERR_NOMEM, "png: out of memory");
		return igs_fail(err, IGS_ERR_INTERNAL, "png: libpng failed: %s", b.message);
	}
	png_set_write_fn(png, &b, mem_write, mem_flush);
	png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
	             channels == 4   ? PNG_COLOR_TYPE_RGB_ALPHA
	             : channels == 3 ? PNG_COLOR_TYPE_RGB
	                             : PNG_COLOR_TYPE_GRAY,
	             PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	/* heatmaps are smooth: level 6 costs little over 1 and halves the bytes */
	png_set_compression_level(png, 6);
	png_write_info(png, info);
	size_t stride = (size_t)width * channels;
	for (int y = 0; y < height; y++)
		png_write_row(png, (png_const_bytep)(pixels + (size_t)y * stride));
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	*out = b.data;
	*len = b.len;
	return 0;
}
