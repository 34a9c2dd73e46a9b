/*
 * image_decode.c - turn uploaded bytes into 8-bit RGB pixels.
 *
 * JPEG goes through TurboJPEG (baseline, progressive, grayscale, CMYK/YCCK),
 * PNG through libpng's simplified API (any bit depth and color type; alpha
 * is read and dropped, so colors are the stored ones, never composited).
 * Both decoders report width x height from the header first: the byte
 * limit, the pixel limit and zero sizes are refused before any pixel buffer
 * is allocated.  A truncated file is an error, never a half-gray picture.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <turbojpeg.h>

#include "file.h"
#include "image.h"

/* ---- format sniffing ------------------------------------------------------------------------ */

enum image_format image_sniff(const void *data, size_t len)
{
	static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	const uint8_t *p = data;

	if (p == NULL)
		return IMAGE_FORMAT_UNKNOWN;
	/* SOI followed by the first marker's 0xff. */
	if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
		return IMAGE_FORMAT_JPEG;
	if (len >= sizeof(png_magic) && memcmp(p, png_magic, sizeof(png_magic)) == 0)
		return IMAGE_FORMAT_PNG;
	return IMAGE_FORMAT_UNKNOWN;
}

/* ---- limits --------------------------------------------------------------------------------- */

static size_t limit_bytes(const struct image_limits *limits)
{
	return limits && limits->max_bytes ? limits->max_bytes : IMAGE_DEFAULT_MAX_BYTES;
}

static uint64_t limit_pixels(const struct image_limits *limits)
{
	return limits && limits->max_pixels ? limits->max_pixels : IMAGE_DEFAULT_MAX_PIXELS;
}

/*
 * check_dimensions - refuse zero sizes and images over the pixel limit, and
 * make sure a buffer of width*height*channels bytes is addressable.
 */
static int check_dimensions(const char *what, uint64_t w, uint64_t h, int channels,
                            const struct image_limits *limits, struct igs_error *err)
{
	uint64_t max = limit_pixels(limits);

	if (w == 0 || h == 0)
		return igs_fail(err, IGS_ERR_IMAGE_DECODE,
		                "%s: image has zero size (%" PRIu64 "x%" PRIu64 ")", what, w, h);
	/* w, h < 2^32 from both formats, so w*h cannot overflow 64 bits. */
	if (w * h > max)
		return igs_fail(err, IGS_ERR_IMAGE_TOO_LARGE,
		                "%s: image is %" PRIu64 "x%" PRIu64 " = %" PRIu64
		                " pixels, over the limit of %" PRIu64 " pixels",
		                what, w, h, w * h, max);
	if (w > INT32_MAX / 4 || h > INT32_MAX || w * h > SIZE_MAX / (uint64_t)channels)
		return igs_fail(err, IGS_ERR_IMAGE_TOO_LARGE,
		                "%s: image of %" PRIu64 "x%" PRIu64 " is too large to address",
		                what, w, h);
	return 0;
}

/*
 * pack_rgb - squeeze `n` pixels of `channels` >= 3 bytes (RGB first) into
 * RGB in place and shrink the buffer.  Takes ownership of `buf`; returns the
 * (possibly moved) buffer, never NULL.
 */
static uint8_t *pack_rgb(uint8_t *buf, size_t n, int channels)
{
	for (size_t i = 0; i < n; i++) {
		buf[3 * i + 0] = buf[channels * i + 0];
		buf[3 * i + 1] = buf[channels * i + 1];
		buf[3 * i + 2] = buf[channels * i + 2];
	}
	uint8_t *smaller = realloc(buf, n * 3);
	return smaller ? smaller : buf;
}

/* ---- JPEG ----------------------------------------------------------------------------------- */

/*
 * cmyk_to_rgb - convert `n` CMYK pixels to RGB in place.  Adobe writes CMYK
 * JPEGs inverted (255 = no ink) and libjpeg-turbo hands the samples back as
 * stored, so R = C*K/255 and likewise for G (M) and B (Y); this is the
 * convention of libjpeg-turbo's own cmyk.h.  Returns the shrunk buffer.
 */
static uint8_t *cmyk_to_rgb(uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = buf + 4 * i;
		unsigned c = p[0], m = p[1], y = p[2], k = p[3];
		/* (x*k + 127) / 255: x*k/255 rounded to nearest. */
		buf[3 * i + 0] = (uint8_t)((c * k + 127) / 255);
		buf[3 * i + 1] = (uint8_t)((m * k + 127) / 255);
		buf[3 * i + 2] = (uint8_t)((y * k + 127) / 255);
	}
	uint8_t *smaller = realloc(buf, n * 3);
	return smaller ? smaller : buf;
}

/*
 * jpeg_count_scans - the number of SOS markers libjpeg would meet before
 * EOI, by walking the marker segments and the entropy-coded data between
 * them as libjpeg reads them: a segment is skipped by its length, entropy
 * data runs to the next 0xFF that is not a stuffed 0x00, a fill 0xFF or a
 * restart marker, and stray bytes between markers are skipped to the next
 * 0xFF (libjpeg warns there, and the decoder refuses warnings).  Never
 * counts fewer scans than the decoder would run.
 */
static size_t jpeg_count_scans(const uint8_t *data, size_t len)
{
	size_t pos = 2, scans = 0; /* after SOI */
	while (pos < len) {
		if (data[pos] != 0xff) {
			pos++;
			continue;
		}
		while (pos < len && data[pos] == 0xff)
			pos++;
		if (pos >= len)
			break;
		uint8_t m = data[pos++];
		if (m == 0xd9) /* EOI */
			break;
		if (m == 0x00 || m == 0x01 || m == 0xd8 || (m >= 0xd0 && m <= 0xd7))
			continue; /* no length */
		if (len - pos < 2)
			break;
		size_t seg = (size_t)data[pos] << 8 | data[pos + 1];
		pos += seg < len - pos ? seg : len - pos;
		if (m != 0xda)
			continue;
		scans++;
		/* Entropy-coded data up to the next real marker. */
		while (pos + 1 < len) {
			if (data[pos] == 0xff && data[pos + 1] != 0x00 && data[pos + 1] != 0xff &&
			    !(data[pos + 1] >= 0xd0 && data[pos + 1] <= 0xd7))
				break;
			pos++;
		}
	}
	return scans;
}

/*
 * jpeg_check_scans - refuse a JPEG whose decoding would cost more than the
 * scan budget: each scan of a progressive file is a pass over the whole
 * coefficient buffer, so a 40-megapixel file of a few hundred KB could make
 * the decoder run 500 passes (TurboJPEG's own LIMITSCANS stops only at 500).
 * Encoders write up to a few dozen scans (libjpeg 10 for color, 6 for gray;
 * mozjpeg's optimized scripts a few more), so more than IMAGE_MAX_JPEG_SCANS
 * is refused, and so is a scans x pixels product over
 * IMAGE_MAX_JPEG_SCAN_PIXELS (25 scans at 40 megapixels).
 */
static int jpeg_check_scans(const uint8_t *data, size_t len, int w, int h, struct igs_error *err)
{
	size_t scans = jpeg_count_scans(data, len);
	uint64_t work = (uint64_t)scans * (uint64_t)w * (uint64_t)h;

	if (scans > IMAGE_MAX_JPEG_SCANS)
		return igs_fail(err, IGS_ERR_IMAGE_DECODE,
		                "jpeg: %zu scans, over the limit of %d scans per image", scans,
		                IMAGE_MAX_JPEG_SCANS);
	if (work > IMAGE_MAX_JPEG_SCAN_PIXELS)
		return igs_fail(err, IGS_ERR_IMAGE_DECODE,
		                "jpeg: %zu scans of %dx%d pixels = %" PRIu64
		                " scan-pixels, over the limit of %" PRIu64,
		                scans, w, h, work, (uint64_t)IMAGE_MAX_JPEG_SCAN_PIXELS);
	return 0;
}

static int decode_jpeg(struct image *out, const uint8_t *data, size_t len,
                       const struct image_limits *limits, struct igs_error *err)
{
	tjhandle tj = tjInitDecompress();
	uint8_t *buf = NULL;
	int w = 0, h = 0, subsamp = -1, colorspace = -1, rc;

	if (tj == NULL)
		return igs_fail(err, IGS_ERR_NOMEM, "jpeg: cannot create a decoder: %s",
		                tjGetErrorStr2(NULL));
	if (len > ULONG_MAX) {
		rc = igs_fail(err, IGS_ERR_TOO_LARGE, "jpeg: %zu bytes is too large", len);
		goto done;
	}
	if (tjDecompressHeader3(tj, data, (unsigned long)len, &w, &h, &subsamp, &colorspace) < 0) {
		rc =
		    igs_fail(err, IGS_ERR_IMAGE_DECODE, "jpeg: bad header: %s", tjGetErrorStr2(tj));
		goto done;
	}
	/*
	 * TurboJPEG 2.1 returns success without touching the outputs when the
	 * data ends before a frame header (libjpeg then sees "tables only"), so
	 * w and h start at 0 and no frame means no image.
	 */
	if (w <= 0 || h <= 0 || colorspace < 0) {
		rc = igs_fail(err, IGS_ERR_IMAGE_DECODE,
		              "jpeg: no frame header: the file is truncated or holds only tables");
		goto done;
	}
	int cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
	int channels = cmyk ? 4 : 3;
	rc = check_dimensions("jpeg", (uint64_t)(w < 0 ? 0 : w), (uint64_t)(h < 0 ? 0 : h),
	                      channels, limits, err);
	if (rc < 0)
		goto done;
	rc = jpeg_check_scans(data, len, w, h, err);
	if (rc < 0)
		goto done;

	size_t n = (size_t)w * (size_t)h;
	buf = malloc(n * channels);
	if (buf == NULL) {
		rc = igs_fail(err, IGS_ERR_NOMEM, "jpeg: no memory for %dx%d pixels", w, h);
		goto done;
	}
	/*
	 * STOPONWARNING: a truncated file only raises a libjpeg warning (and
	 * would be padded with gray); we refuse it.  LIMITSCANS caps the scans of
	 * a progressive file, which otherwise cost unbounded CPU.
	 */
	int flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS | TJFLAG_ACCURATEDCT;
	if (tjDecompress2(tj, data, (unsigned long)len, buf, w, 0, h, cmyk ? TJPF_CMYK : TJPF_RGB,
	                  flags) < 0) {
		rc = igs_fail(err, IGS_ERR_IMAGE_DECODE, "jpeg: cannot decode%s: %s",
		              tjGetErrorCode(tj) == TJERR_WARNING ? " (truncated or damaged)" : "",
		              tjGetErrorStr2(tj));
		goto done;
	}
	out->width = w;
	out->height = h;
	out->rgb = cmyk ? cmyk_to_rgb(buf, n) : buf;
	buf = NULL;
	rc = 0;
done:
	free(buf);
	tjDestroy(tj);
	return rc;
}

/* ---- PNG ------------------------------------------------------------------------------------ */

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * png_has_end - whether the chunks after the signature run up to an IEND.
 * libpng's simplified reader accepts a file cut right after its last IDAT;
 * we refuse every cut file, as for JPEG.  (Bytes after IEND are ignored.)
 */
static int png_has_end(const uint8_t *data, size_t len)
{
	size_t pos = 8;
	while (len - pos >= 12) {
		uint32_t n = be32(data + pos);
		if (memcmp(data + pos + 4, "IEND", 4) == 0)
			return 1;
		if (n > len - pos - 12)
			return 0;
		pos += 12 + (size_t)n;
	}
	return 0;
}

static int decode_png(struct image *out, const uint8_t *data, size_t len,
                      const struct image_limits *limits, struct igs_error *err)
{
	png_image png;
	int rc;

	memset(&png, 0, sizeof(png));
	png.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_memory(&png, data, len))
		return igs_fail(err, IGS_ERR_IMAGE_DECODE, "png: bad header: %s", png.message);
	rc = check_dimensions("png", png.width, png.height, 4, limits, err);
	if (rc < 0) {
		png_image_free(&png);
		return rc;
	}
	/*
	 * RGBA, then drop A: with RGB the library would composite onto a
	 * background.  Without gAMA/sRGB a 16-bit file would be taken as linear
	 * light and gamma-encoded on the way to 8 bits; files in the wild are
	 * sRGB, so keep their values (scaled to 8 bits) instead.
	 */
	png.format = PNG_FORMAT_RGBA;
	png.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;
	size_t n = (size_t)png.width * png.height;
	uint8_t *buf = malloc(n * 4);
	if (buf == NULL) {
		png_image_free(&png);
		return igs_fail(err, IGS_ERR_NOMEM, "png: no memory for %ux%u pixels", png.width,
		                png.height);
	}
	/* finish_read frees the png_image's internals on success and failure. */
	if (!png_image_finish_read(&png, NULL, buf, (png_int_32)(png.width * 4), NULL)) {
		free(buf);
		return igs_fail(err, IGS_ERR_IMAGE_DECODE, "png: cannot decode: %s", png.message);
	}
	if (!png_has_end(data, len)) {
		free(buf);
		return igs_fail(err, IGS_ERR_IMAGE_DECODE, "png: truncated: no IEND chunk");
	}
	out->width = (int)png.width;
	out->height = (int)png.height;
	out->rgb = pack_rgb(buf, n, 4);
	return 0;
}

/* ---- entry points --------------------------------------------------------------------------- */

int image_decode(struct image *out, const void *data, size_t len, const struct image_limits *limits,
                 struct igs_error *err)
{
	size_t max = limit_bytes(limits);

	out->width = out->height = 0;
	out->rgb = NULL;
	if (len > max)
		return igs_fail(err, IGS_ERR_TOO_LARGE,
		                "image: %zu bytes, over the limit of %zu bytes", len, max);
	if (data == NULL || len == 0)
		return igs_fail(err, IGS_ERR_UNSUPPORTED_MEDIA,
		                "image: empty input, expected a JPEG or PNG image");
	switch (image_sniff(data, len)) {
	case IMAGE_FORMAT_JPEG: {
		/* phone photos: upright before anything measures or fits them */
		int rc = decode_jpeg(out, data, len, limits, err);
		if (rc == 0 && (rc = image_orient(out, image_jpeg_orientation(data, len), err)))
			image_clear(out);
		return rc;
	}
	case IMAGE_FORMAT_PNG:
		return decode_png(out, data, len, limits, err);
	default:
		return igs_fail(err, IGS_ERR_UNSUPPORTED_MEDIA,
		                "image: unknown format, expected a JPEG or PNG image");
	}
}

int image_load_file(struct image *out, const char *path, const struct image_limits *limits,
                    struct igs_error *err)
{
	unsigned char *buf = NULL;
	size_t len = 0;

	out->width = out->height = 0;
	out->rgb = NULL;
	/* Regular files only (a FIFO would block), and never more than the
	 * byte limit is read. */
	int rc = file_read_all(path, limit_bytes(limits), &buf, &len, err);
	if (rc < 0)
		return rc;
	rc = image_decode(out, buf, len, limits, err);
	if (rc < 0 && err != NULL && rc != IGS_ERR_NOMEM) {
		/* Say which file was refused. */
		char msg[IGS_ERROR_MESSAGE_MAX];
		snprintf(msg, sizeof(msg), "%s", err->message);
		igs_fail(err, rc, "%s: %s", path, msg);
	}
	free(buf);
	return rc;
}

void image_clear(struct image *img)
{
	if (img == NULL)
		return;
	free(img->rgb);
	img->rgb = NULL;
	img->width = img->height = 0;
}
