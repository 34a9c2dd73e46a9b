/*
 * image_orient.c - phone photos stored sideways: the EXIF Orientation tag
 * (TIFF tag 0x0112 in IFD0 of a JPEG's APP1 "Exif" segment) and the turn
 * or flip that shows the image upright, applied before the image is fitted
 * to the model.  The tag's values (EXIF 2.3, table 4), by where the stored
 * 0th row and 0th column are when the image is seen upright:
 *   1 top, left (as stored)      5 left, top (transposed)
 *   2 top, right (mirrored)      6 right, top (turn 90 degrees clockwise)
 *   3 bottom, right (turned 180) 7 right, bottom (transversed)
 *   4 bottom, left (flipped)     8 left, bottom (turn 90 counter-clockwise)
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

static unsigned get16(const uint8_t *p, bool big)
{
	return big ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}

static uint32_t get32(const uint8_t *p, bool big)
{
	return big ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
	           : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* The Orientation of a TIFF structure (an Exif payload after "Exif\0\0"). */
static int tiff_orientation(const uint8_t *t, size_t n)
{
	if (n < 8)
		return 1;
	bool big;
	if (t[0] == 'M' && t[1] == 'M')
		big = true;
	else if (t[0] == 'I' && t[1] == 'I')
		big = false;
	else
		return 1;
	if (get16(t + 2, big) != 42)
		return 1;
	uint32_t ifd = get32(t + 4, big);
	if (ifd > n - 2 || ifd < 8)
		return 1;
	unsigned entries = get16(t + ifd, big);
	for (unsigned i = 0; i < entries; i++) {
		size_t e = (size_t)ifd + 2 + (size_t)i * 12;
		if (e + 12 > n)
			return 1;
		if (get16(t + e, big) != 0x0112)
			continue;
		/* SHORT, count 1: the value sits in the first two bytes */
		if (get16(t + e + 2, big) != 3 || get32(t + e + 4, big) != 1)
			return 1;
		unsigned v = get16(t + e + 8, big);
		return v >= 1 && v <= 8 ? (int)v : 1;
	}
	return 1;
}

int image_jpeg_orientation(const void *data, size_t len)
{
	const uint8_t *p = data;
	if (len < 4 || p[0] != 0xFF || p[1] != 0xD8)
		return 1;
	size_t at = 2;
	/* marker segments up to the first scan; Exif is APP1 near the start */
	while (at + 4 <= len) {
		if (p[at] != 0xFF)
			return 1;
		uint8_t marker = p[at + 1];
		if (marker == 0xFF) { /* fill byte */
			at++;
			continue;
		}
		if (marker == 0xDA || marker == 0xD9)
			return 1;
		size_t seg = (size_t)p[at + 2] << 8 | p[at + 3];
		if (seg < 2 || at + 2 + seg > len)
			return 1;
		const uint8_t *payload = p + at + 4;
		size_t n = seg - 2;
		if (marker == 0xE1 && n >= 6 && !memcmp(payload, "Exif\0\0", 6))
			return tiff_orientation(payload + 6, n - 6);
		at += 2 + seg;
	}
	return 1;
}

int image_orient(struct image *img, int orientation, struct igs_error *err)
{
	if (orientation < 2 || orientation > 8)
		return 0;
	const int W = img->width, H = img->height;
	const bool swap = orientation >= 5;
	const int ow = swap ? H : W, oh = swap ? W : H;
	uint8_t *out = malloc((size_t)W * H * 3);
	if (!out)
		return igs_fail(err, IGS_ERR_NOMEM, "image: out of memory turning the image upright");
	for (int y = 0; y < oh; y++)
		for (int x = 0; x < ow; x++) {
			int sx, sy; /* the stored pixel shown at (x, y) */
			switch (orientation) {
			case 2: sx = W - 1 - x; sy = y; break;
			case 3: sx = W - 1 - x; sy = H - 1 - y; break;
			case 4: sx = x; sy = H - 1 - y; break;
			case 5: sx = y; sy = x; break;
			case 6: sx = y; sy = H - 1 - x; break;
			case 7: sx = W - 1 - y; sy = H - 1 - x; break;
			default: sx = W - 1 - y; sy = x; break; /* 8 */
			}
			memcpy(out + ((size_t)y * ow + x) * 3, img->rgb + ((size_t)sy * W + sx) * 3, 3);
		}
	free(img->rgb);
	img->rgb = out;
	img->width = ow;
	img->height = oh;
	return 0;
}
