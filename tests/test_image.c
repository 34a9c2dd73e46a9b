/*
 * test_image.c - decoding and fitting images.
 *
 * Every input is made here: JPEGs with TurboJPEG's encoder, PNGs with
 * libpng's writer, so each variant (progressive, CMYK, palette + tRNS,
 * 16-bit, ...) is compared with the pixels it was made from.  Resampling is
 * checked against naive two-dimensional reference loops, and geometry by
 * resizing linear ramps, whose value at a pixel tells where it came from.
 */
#include <check.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "image.h"

/* ---- helpers -------------------------------------------------------------------------------- */

static uint32_t rng_state = 12345;

static uint32_t rnd(void)
{
	rng_state = rng_state * 1664525u + 1013904223u;
	return rng_state >> 8;
}

/* A smooth colorful picture, kind to JPEG: (h, w, 3). */
static uint8_t *smooth_rgb(int w, int h)
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

static uint8_t *random_bytes(size_t n)
{
	uint8_t *p = malloc(n);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
	return p;
}

static double mean_abs_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += abs((int)a[i] - (int)b[i]);
	return s / (double)n;
}

/* JPEG bytes of `pix` (pf layout), malloc'd; *len receives the size. */
static uint8_t *jpeg_encode(const uint8_t *pix, int w, int h, int pf, int subsamp, int quality,
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

static void mem_write(png_structp png, png_bytep data, png_size_t n)
{
	struct membuf *m = png_get_io_ptr(png);
	if (m->len + n > m->cap) {
		m->cap = (m->len + n) * 2;
		m->data = realloc(m->data, m->cap);
	}
	memcpy(m->data + m->len, data, n);
	m->len += n;
}

static void mem_flush(png_structp png)
{
	(void)png;
}

/*
 * png_encode - a PNG with the given IHDR; `rows` holds h rows of raw
 * samples (16-bit big-endian).  palette/trns may be NULL.  Returns malloc'd
 * bytes.
 */
static uint8_t *png_encode(int w, int h, int depth, int color_type, int interlace,
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

static int decode_ok(struct image *img, const uint8_t *data, size_t len, int w, int h)
{
	struct igs_error err = {0};
	int rc = image_decode(img, data, len, NULL, &err);
	ck_assert_msg(rc == 0, "decode failed (%d): %s", rc, err.message);
	ck_assert_int_eq(img->width, w);
	ck_assert_int_eq(img->height, h);
	ck_assert_ptr_nonnull(img->rgb);
	return rc;
}

static void expect_refusal(const uint8_t *data, size_t len, const struct image_limits *limits,
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

/* ---- sniffing ------------------------------------------------------------------------------- */

START_TEST(test_sniff)
{
	static const uint8_t jpg[] = {0xff, 0xd8, 0xff, 0xe0};
	static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0};
	static const uint8_t gif[] = "GIF89a\x01\x00\x01\x00";
	ck_assert_int_eq(image_sniff(jpg, sizeof(jpg)), IMAGE_FORMAT_JPEG);
	ck_assert_int_eq(image_sniff(png, sizeof(png)), IMAGE_FORMAT_PNG);
	ck_assert_int_eq(image_sniff(png, 7), IMAGE_FORMAT_UNKNOWN);
	ck_assert_int_eq(image_sniff(jpg, 2), IMAGE_FORMAT_UNKNOWN);
	ck_assert_int_eq(image_sniff(gif, sizeof(gif)), IMAGE_FORMAT_UNKNOWN);
	ck_assert_int_eq(image_sniff(NULL, 0), IMAGE_FORMAT_UNKNOWN);
}
END_TEST

/* ---- JPEG ----------------------------------------------------------------------------------- */

static void check_jpeg_roundtrip(int subsamp, int flags)
{
	const int w = 67, h = 45; /* not multiples of the MCU */
	uint8_t *src = smooth_rgb(w, h);
	size_t len;
	uint8_t *jpg = jpeg_encode(src, w, h, TJPF_RGB, subsamp, 95, flags, &len);
	struct image img;
	decode_ok(&img, jpg, len, w, h);
	double mae = mean_abs_diff(img.rgb, src, (size_t)w * h * 3);
	ck_assert_msg(mae < 3.0, "subsamp %d flags %d: mean abs error %.2f", subsamp, flags, mae);
	image_clear(&img);
	ck_assert_ptr_null(img.rgb);
	free(jpg);
	free(src);
}

START_TEST(test_jpeg_baseline_420)
{
	check_jpeg_roundtrip(TJSAMP_420, 0);
}
END_TEST

START_TEST(test_jpeg_baseline_444)
{
	check_jpeg_roundtrip(TJSAMP_444, 0);
}
END_TEST

START_TEST(test_jpeg_progressive)
{
	const int w = 40, h = 30;
	uint8_t *src = smooth_rgb(w, h);
	size_t len;
	uint8_t *jpg = jpeg_encode(src, w, h, TJPF_RGB, TJSAMP_420, 95, TJFLAG_PROGRESSIVE, &len);
	/* SOF2 marker: it really is progressive. */
	int sof2 = 0;
	for (size_t i = 0; i + 1 < len; i++)
		sof2 |= jpg[i] == 0xff && jpg[i + 1] == 0xc2;
	ck_assert(sof2);
	free(jpg);
	free(src);
	check_jpeg_roundtrip(TJSAMP_420, TJFLAG_PROGRESSIVE);
}
END_TEST

START_TEST(test_jpeg_grayscale)
{
	const int w = 50, h = 33;
	uint8_t *gray = malloc((size_t)w * h);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			gray[y * w + x] = (uint8_t)(30 + 3 * x + 2 * y);
	size_t len;
	uint8_t *jpg = jpeg_encode(gray, w, h, TJPF_GRAY, TJSAMP_GRAY, 95, 0, &len);
	struct image img;
	decode_ok(&img, jpg, len, w, h);
	double err = 0.0;
	for (int i = 0; i < w * h; i++) {
		ck_assert_int_eq(img.rgb[3 * i], img.rgb[3 * i + 1]);
		ck_assert_int_eq(img.rgb[3 * i], img.rgb[3 * i + 2]);
		err += abs(img.rgb[3 * i] - gray[i]);
	}
	ck_assert_msg(err / (w * h) < 2.0, "gray mean abs error %.2f", err / (w * h));
	image_clear(&img);
	free(jpg);
	free(gray);
}
END_TEST

/*
 * Inverted (Adobe) CMYK of an RGB color, the inverse of R = C*K/255:
 * K = max(R,G,B) (255 - black ink), C = R*255/K.
 */
static void rgb_to_inverted_cmyk(const uint8_t *rgb, uint8_t *cmyk)
{
	int k = rgb[0] > rgb[1] ? rgb[0] : rgb[1];
	k = k > rgb[2] ? k : rgb[2];
	cmyk[3] = (uint8_t)k;
	for (int c = 0; c < 3; c++)
		cmyk[c] = (uint8_t)(k ? (rgb[c] * 255 + k / 2) / k : 0);
}

START_TEST(test_jpeg_cmyk)
{
	const int w = 48, h = 40;
	uint8_t *src = smooth_rgb(w, h);
	/* A few saturated patches, the cases that show an inverted convention. */
	static const uint8_t patches[4][3] = {
	    {255, 0, 0}, {0, 255, 255}, {0, 0, 0}, {255, 255, 255}};
	for (int p = 0; p < 4; p++)
		for (int y = 0; y < 8; y++)
			for (int x = 0; x < 8; x++)
				memcpy(src + ((size_t)(8 + y) * w + 8 * p + x + 8) * 3, patches[p],
				       3);
	uint8_t *cmyk = malloc((size_t)w * h * 4);
	for (int i = 0; i < w * h; i++)
		rgb_to_inverted_cmyk(src + 3 * i, cmyk + 4 * i);
	size_t len;
	uint8_t *jpg = jpeg_encode(cmyk, w, h, TJPF_CMYK, TJSAMP_444, 98, 0, &len);

	/* The file really is a four-component (YCCK) JPEG. */
	tjhandle tj = tjInitDecompress();
	int hw, hh, ss, cs;
	ck_assert_int_eq(tjDecompressHeader3(tj, jpg, len, &hw, &hh, &ss, &cs), 0);
	ck_assert(cs == TJCS_YCCK || cs == TJCS_CMYK);
	tjDestroy(tj);

	struct image img;
	decode_ok(&img, jpg, len, w, h);
	double mae = mean_abs_diff(img.rgb, src, (size_t)w * h * 3);
	ck_assert_msg(mae < 3.0, "cmyk mean abs error %.2f", mae);
	/* The center of each patch keeps its color. */
	for (int p = 0; p < 4; p++) {
		const uint8_t *q = img.rgb + ((size_t)12 * w + 8 * p + 12) * 3;
		for (int c = 0; c < 3; c++)
			ck_assert_msg(abs(q[c] - patches[p][c]) <= 8,
			              "patch %d channel %d: %d vs %d", p, c, q[c], patches[p][c]);
	}
	image_clear(&img);
	free(jpg);
	free(cmyk);
	free(src);
}
END_TEST

/* A CMYK JPEG from another encoder (Pillow, Adobe marker, inverted samples,
 * no YCCK transform) decodes to what Pillow itself makes of it.  See
 * tests/fixtures/make_image_fixtures.py. */
START_TEST(test_jpeg_cmyk_fixture_matches_pillow)
{
	const char *dir = getenv("IGSERVE_FIXTURES");
	char jpg_path[1024], png_path[1024];
	struct image jpg, ref;
	struct igs_error err = {0};

	ck_assert_msg(dir != NULL, "IGSERVE_FIXTURES is not set (run through meson test)");
	snprintf(jpg_path, sizeof(jpg_path), "%s/image/cmyk_adobe.jpg", dir);
	snprintf(png_path, sizeof(png_path), "%s/image/cmyk_adobe_pil.png", dir);
	ck_assert_msg(image_load_file(&jpg, jpg_path, NULL, &err) == 0, "%s", err.message);
	ck_assert_msg(image_load_file(&ref, png_path, NULL, &err) == 0, "%s", err.message);
	ck_assert_int_eq(jpg.width, 48);
	ck_assert_int_eq(jpg.height, 32);
	ck_assert_int_eq(ref.width, 48);
	ck_assert_int_eq(ref.height, 32);
	int worst = 0;
	for (int i = 0; i < 48 * 32 * 3; i++) {
		int d = abs(jpg.rgb[i] - ref.rgb[i]);
		worst = d > worst ? d : worst;
	}
	ck_assert_msg(worst <= 2, "largest difference from Pillow: %d", worst);
	/* Pure cyan ink is (0, 255, 255) in RGB, not its inverse. */
	ck_assert_int_le(jpg.rgb[(4 * 48 + 4) * 3 + 0], 3);
	ck_assert_int_ge(jpg.rgb[(4 * 48 + 4) * 3 + 1], 252);
	image_clear(&jpg);
	image_clear(&ref);
}
END_TEST

/* ---- PNG ------------------------------------------------------------------------------------ */

/* Decode a PNG and compare with expected RGB exactly. */
static void check_png(const uint8_t *png, size_t len, int w, int h, const uint8_t *expect,
                      const char *what)
{
	struct image img;
	decode_ok(&img, png, len, w, h);
	for (int i = 0; i < w * h * 3; i++)
		ck_assert_msg(img.rgb[i] == expect[i], "%s: byte %d is %d, expected %d", what, i,
		              img.rgb[i], expect[i]);
	image_clear(&img);
}

START_TEST(test_png_8bit_rgb_and_rgba)
{
	const int w = 23, h = 17;
	for (int interlace = 0; interlace <= 1; interlace++) {
		uint8_t *rgb = random_bytes((size_t)w * h * 3);
		uint8_t *rgba = random_bytes((size_t)w * h * 4);
		uint8_t *expect = malloc((size_t)w * h * 3);
		for (int i = 0; i < w * h; i++)
			memcpy(expect + 3 * i, rgba + 4 * i, 3);
		/* Fully transparent pixels too: their stored colors must survive. */
		rgba[3] = 0;
		rgba[7] = 255;
		size_t len;
		int il = interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE;
		uint8_t *png = png_encode(w, h, 8, PNG_COLOR_TYPE_RGB, il, rgb, (size_t)w * 3, NULL,
		                          0, NULL, 0, &len);
		check_png(png, len, w, h, rgb, "rgb8");
		free(png);
		png = png_encode(w, h, 8, PNG_COLOR_TYPE_RGBA, il, rgba, (size_t)w * 4, NULL, 0,
		                 NULL, 0, &len);
		check_png(png, len, w, h, expect, "rgba8");
		free(png);
		free(expect);
		free(rgba);
		free(rgb);
	}
}
END_TEST

START_TEST(test_png_gray_and_gray_alpha)
{
	const int w = 19, h = 21;
	uint8_t *g = random_bytes((size_t)w * h);
	uint8_t *ga = random_bytes((size_t)w * h * 2);
	uint8_t *expect = malloc((size_t)w * h * 3);
	size_t len;

	for (int i = 0; i < w * h; i++)
		memset(expect + 3 * i, g[i], 3);
	uint8_t *png = png_encode(w, h, 8, PNG_COLOR_TYPE_GRAY, 0, g, w, NULL, 0, NULL, 0, &len);
	check_png(png, len, w, h, expect, "gray8");
	free(png);

	for (int i = 0; i < w * h; i++)
		memset(expect + 3 * i, ga[2 * i], 3);
	png = png_encode(w, h, 8, PNG_COLOR_TYPE_GRAY_ALPHA, 0, ga, (size_t)w * 2, NULL, 0, NULL, 0,
	                 &len);
	check_png(png, len, w, h, expect, "gray+alpha8");
	free(png);

	/* 1-bit gray: 0 and 255. */
	uint8_t *bits = calloc((size_t)h, (w + 7) / 8);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			int on = (x + y) % 3 == 0;
			if (on)
				bits[y * ((w + 7) / 8) + x / 8] |= (uint8_t)(0x80 >> (x % 8));
			memset(expect + 3 * (y * w + x), on ? 255 : 0, 3);
		}
	png =
	    png_encode(w, h, 1, PNG_COLOR_TYPE_GRAY, 0, bits, (w + 7) / 8, NULL, 0, NULL, 0, &len);
	check_png(png, len, w, h, expect, "gray1");
	free(png);
	free(bits);
	free(expect);
	free(ga);
	free(g);
}
END_TEST

START_TEST(test_png_palette)
{
	const int w = 16, h = 12, n = 37;
	png_color pal[37];
	uint8_t trns[37];
	for (int i = 0; i < n; i++) {
		pal[i].red = (png_byte)rnd();
		pal[i].green = (png_byte)rnd();
		pal[i].blue = (png_byte)rnd();
		trns[i] = (uint8_t)(i * 7); /* entry 0 fully transparent */
	}
	uint8_t *idx = malloc((size_t)w * h);
	uint8_t *expect = malloc((size_t)w * h * 3);
	for (int i = 0; i < w * h; i++) {
		idx[i] = (uint8_t)(rnd() % n);
		expect[3 * i + 0] = pal[idx[i]].red;
		expect[3 * i + 1] = pal[idx[i]].green;
		expect[3 * i + 2] = pal[idx[i]].blue;
	}
	size_t len;
	uint8_t *png =
	    png_encode(w, h, 8, PNG_COLOR_TYPE_PALETTE, 0, idx, w, pal, n, NULL, 0, &len);
	check_png(png, len, w, h, expect, "palette");
	free(png);
	png = png_encode(w, h, 8, PNG_COLOR_TYPE_PALETTE, 0, idx, w, pal, n, trns, n, &len);
	check_png(png, len, w, h, expect, "palette+tRNS");
	free(png);
	free(expect);
	free(idx);
}
END_TEST

/* 16-bit samples reach 8 bits as round(v * 255 / 65535): no gamma change. */
static uint8_t to8(unsigned v)
{
	return (uint8_t)((v * 255u + 32767u) / 65535u);
}

START_TEST(test_png_16bit)
{
	const int w = 13, h = 11;
	uint16_t *v = malloc(sizeof(*v) * w * h * 4);
	uint8_t *raw = malloc((size_t)w * h * 4 * 2);
	uint8_t *expect = malloc((size_t)w * h * 3);
	size_t len;

	for (int i = 0; i < w * h * 4; i++) {
		/* Half exact multiples of 257 (v8 * 257), half arbitrary. */
		v[i] = (uint16_t)(i % 2 ? rnd() : (rnd() % 256) * 257);
		raw[2 * i] = (uint8_t)(v[i] >> 8);
		raw[2 * i + 1] = (uint8_t)v[i];
	}
	for (int i = 0; i < w * h * 3; i++)
		expect[i] = to8(v[i]);
	uint8_t *png =
	    png_encode(w, h, 16, PNG_COLOR_TYPE_RGB, 0, raw, (size_t)w * 6, NULL, 0, NULL, 0, &len);
	check_png(png, len, w, h, expect, "rgb16");
	free(png);

	for (int i = 0; i < w * h; i++)
		memset(expect + 3 * i, to8(v[i]), 3);
	png = png_encode(w, h, 16, PNG_COLOR_TYPE_GRAY, 0, raw, (size_t)w * 2, NULL, 0, NULL, 0,
	                 &len);
	check_png(png, len, w, h, expect, "gray16");
	free(png);

	for (int i = 0; i < w * h; i++)
		for (int c = 0; c < 3; c++)
			expect[3 * i + c] = to8(v[4 * i + c]);
	png = png_encode(w, h, 16, PNG_COLOR_TYPE_RGBA, 0, raw, (size_t)w * 8, NULL, 0, NULL, 0,
	                 &len);
	check_png(png, len, w, h, expect, "rgba16");
	free(png);
	free(expect);
	free(raw);
	free(v);
}
END_TEST

/* ---- refusals ------------------------------------------------------------------------------- */

static uint8_t *small_jpeg(int w, int h, size_t *len)
{
	uint8_t *src = smooth_rgb(w, h);
	uint8_t *jpg = jpeg_encode(src, w, h, TJPF_RGB, TJSAMP_420, 90, 0, len);
	free(src);
	return jpg;
}

static uint8_t *small_png(int w, int h, size_t *len)
{
	uint8_t *src = random_bytes((size_t)w * h * 3);
	uint8_t *png =
	    png_encode(w, h, 8, PNG_COLOR_TYPE_RGB, 0, src, (size_t)w * 3, NULL, 0, NULL, 0, len);
	free(src);
	return png;
}

START_TEST(test_truncated_and_garbage)
{
	size_t jlen, plen;
	uint8_t *jpg = small_jpeg(64, 64, &jlen);
	uint8_t *png = small_png(64, 64, &plen);

	expect_refusal(jpg, jlen / 2, NULL, IGS_ERR_IMAGE_DECODE);
	expect_refusal(png, plen / 2, NULL, IGS_ERR_IMAGE_DECODE);
	expect_refusal(jpg, 3, NULL, IGS_ERR_IMAGE_DECODE);
	expect_refusal(png, 8, NULL, IGS_ERR_IMAGE_DECODE);
	/* Missing only the end-of-image marker still counts as truncated. */
	expect_refusal(jpg, jlen - 2, NULL, IGS_ERR_IMAGE_DECODE);

	/* Every cut of a whole file is refused, wherever it falls: in the
	 * headers, in the pixel data, or just before the end marker. */
	for (size_t cut = 0; cut < jlen + plen; cut++) {
		const uint8_t *data = cut < jlen ? jpg : png;
		size_t n = cut < jlen ? cut : cut - jlen;
		struct image img = {0};
		struct igs_error err = {0};
		int rc = image_decode(&img, data, n, NULL, &err);
		int want =
		    n < (cut < jlen ? 3u : 8u) ? IGS_ERR_UNSUPPORTED_MEDIA : IGS_ERR_IMAGE_DECODE;
		ck_assert_msg(rc == want, "%s cut at %zu of %zu: %d (%s)",
		              cut < jlen ? "jpeg" : "png", n, cut < jlen ? jlen : plen, rc,
		              err.message);
		ck_assert_ptr_null(img.rgb);
	}

	/* Right magic, garbage after it (many seeds: random bytes sometimes
	 * look like a header that ends early). */
	for (int k = 0; k < 200; k++) {
		uint8_t *rb = random_bytes(4096);
		memcpy(rb, jpg, 3);
		expect_refusal(rb, 4096, NULL, IGS_ERR_IMAGE_DECODE);
		memcpy(rb, png, 8);
		expect_refusal(rb, 4096, NULL, IGS_ERR_IMAGE_DECODE);
		free(rb);
	}
	uint8_t *junk = random_bytes(4096);
	memcpy(junk, jpg, 3);
	expect_refusal(junk, 4096, NULL, IGS_ERR_IMAGE_DECODE);
	memcpy(junk, png, 8);
	expect_refusal(junk, 4096, NULL, IGS_ERR_IMAGE_DECODE);
	/* Garbage from the first byte. */
	junk[0] = 0x00;
	expect_refusal(junk, 4096, NULL, IGS_ERR_UNSUPPORTED_MEDIA);
	expect_refusal(junk, 0, NULL, IGS_ERR_UNSUPPORTED_MEDIA);
	expect_refusal(NULL, 0, NULL, IGS_ERR_UNSUPPORTED_MEDIA);

	static const uint8_t gif[] = "GIF89a\x01\x00\x01\x00\x80\x00\x00";
	struct image img;
	struct igs_error err = {0};
	ck_assert_int_eq(image_decode(&img, gif, sizeof(gif), NULL, &err),
	                 IGS_ERR_UNSUPPORTED_MEDIA);
	ck_assert_ptr_nonnull(strstr(err.message, "JPEG or PNG"));

	/* The whole files do decode: the refusals above are about the cuts. */
	decode_ok(&img, jpg, jlen, 64, 64);
	image_clear(&img);
	decode_ok(&img, png, plen, 64, 64);
	image_clear(&img);
	free(junk);
	free(png);
	free(jpg);
}
END_TEST

START_TEST(test_pixel_limit)
{
	size_t jlen, plen;
	uint8_t *jpg = small_jpeg(20, 20, &jlen);
	uint8_t *png = small_png(20, 20, &plen);
	struct image_limits small = {.max_pixels = 100};
	struct image_limits exact = {.max_pixels = 400};
	struct image_limits one_less = {.max_pixels = 399};
	struct image img;
	struct igs_error err = {0};

	expect_refusal(jpg, jlen, &small, IGS_ERR_IMAGE_TOO_LARGE);
	expect_refusal(png, plen, &small, IGS_ERR_IMAGE_TOO_LARGE);
	expect_refusal(jpg, jlen, &one_less, IGS_ERR_IMAGE_TOO_LARGE);
	expect_refusal(png, plen, &one_less, IGS_ERR_IMAGE_TOO_LARGE);
	ck_assert_int_eq(image_decode(&img, png, plen, &small, &err), IGS_ERR_IMAGE_TOO_LARGE);
	ck_assert_msg(strstr(err.message, "20x20") && strstr(err.message, "100"), "message: %s",
	              err.message);
	ck_assert_int_eq(image_decode(&img, jpg, jlen, &exact, &err), 0);
	image_clear(&img);
	ck_assert_int_eq(image_decode(&img, png, plen, &exact, &err), 0);
	image_clear(&img);
	free(png);
	free(jpg);
}
END_TEST

static uint32_t crc32_naive(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
	}
	return ~c;
}

static void put_be16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	put_be16(p, v >> 16);
	put_be16(p + 2, v & 0xffff);
}

/* A header that claims 60000x60000 (3.6 gigapixels, 10.8 GB of RGB) is refused
 * from the header alone with the default limits. */
START_TEST(test_huge_header_refused)
{
	size_t jlen, plen;
	uint8_t *jpg = small_jpeg(16, 16, &jlen);
	uint8_t *png = small_png(16, 16, &plen);
	struct image img;
	struct igs_error err = {0};

	/* SOF0: ff c0, length(2), precision(1), height(2), width(2). */
	size_t sof = 0;
	for (size_t i = 2; i + 9 < jlen && !sof; i++)
		if (jpg[i] == 0xff && jpg[i + 1] == 0xc0)
			sof = i;
	ck_assert_uint_gt(sof, 0);
	put_be16(jpg + sof + 5, 60000);
	put_be16(jpg + sof + 7, 60000);
	expect_refusal(jpg, jlen, NULL, IGS_ERR_IMAGE_TOO_LARGE);
	ck_assert_int_eq(image_decode(&img, jpg, jlen, NULL, &err), IGS_ERR_IMAGE_TOO_LARGE);
	ck_assert_msg(strstr(err.message, "60000x60000") && strstr(err.message, "40000000"),
	              "message: %s", err.message);

	/* IHDR: length(4) "IHDR"(4) at 8, width at 16, height at 20, CRC at 29. */
	ck_assert_int_eq(memcmp(png + 12, "IHDR", 4), 0);
	put_be32(png + 16, 60000);
	put_be32(png + 20, 60000);
	put_be32(png + 29, crc32_naive(png + 12, 17));
	expect_refusal(png, plen, NULL, IGS_ERR_IMAGE_TOO_LARGE);
	ck_assert_int_eq(image_decode(&img, png, plen, NULL, &err), IGS_ERR_IMAGE_TOO_LARGE);
	ck_assert_msg(strstr(err.message, "60000x60000"), "message: %s", err.message);

	/* The same PNG with a bad CRC is a decode error, not a size error:
	 * the CRC fix above was needed and correct. */
	png[29] ^= 1;
	expect_refusal(png, plen, NULL, IGS_ERR_IMAGE_DECODE);

	/* Zero height in a JPEG header. */
	put_be16(jpg + sof + 5, 0);
	expect_refusal(jpg, jlen, NULL, IGS_ERR_IMAGE_DECODE);
	free(png);
	free(jpg);
}
END_TEST

START_TEST(test_byte_limit)
{
	size_t jlen;
	uint8_t *jpg = small_jpeg(16, 16, &jlen);
	struct image_limits lim = {.max_bytes = jlen - 1};
	struct image img;
	struct igs_error err = {0};

	expect_refusal(jpg, jlen, &lim, IGS_ERR_TOO_LARGE);
	lim.max_bytes = jlen;
	ck_assert_int_eq(image_decode(&img, jpg, jlen, &lim, &err), 0);
	image_clear(&img);
	/* The default limit is 16 MiB; the check comes before the magic. */
	uint8_t *big = calloc(1, IMAGE_DEFAULT_MAX_BYTES + 1);
	memcpy(big, jpg, jlen);
	expect_refusal(big, IMAGE_DEFAULT_MAX_BYTES + 1, NULL, IGS_ERR_TOO_LARGE);
	free(big);
	free(jpg);
}
END_TEST

/* ---- files ---------------------------------------------------------------------------------- */

static void write_temp(char *path, const void *data, size_t len)
{
	strcpy(path, "/tmp/igs_test_image_XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

START_TEST(test_load_file)
{
	size_t plen;
	uint8_t *png = small_png(31, 7, &plen);
	char path[64];
	struct image img, direct;
	struct igs_error err = {0};

	write_temp(path, png, plen);
	ck_assert_int_eq(image_load_file(&img, path, NULL, &err), 0);
	decode_ok(&direct, png, plen, 31, 7);
	ck_assert_int_eq(img.width, 31);
	ck_assert_int_eq(memcmp(img.rgb, direct.rgb, 31 * 7 * 3), 0);
	image_clear(&img);
	image_clear(&direct);

	struct image_limits lim = {.max_bytes = plen - 1};
	ck_assert_int_eq(image_load_file(&img, path, &lim, &err), IGS_ERR_TOO_LARGE);
	ck_assert_ptr_nonnull(strstr(err.message, path));
	ck_assert_ptr_null(img.rgb);
	lim.max_bytes = plen;
	ck_assert_int_eq(image_load_file(&img, path, &lim, &err), 0);
	image_clear(&img);
	unlink(path);

	/* A truncated file: the decode error names the file. */
	write_temp(path, png, plen / 2);
	ck_assert_int_eq(image_load_file(&img, path, NULL, &err), IGS_ERR_IMAGE_DECODE);
	ck_assert_ptr_nonnull(strstr(err.message, path));
	unlink(path);

	write_temp(path, png, 0);
	ck_assert_int_eq(image_load_file(&img, path, NULL, &err), IGS_ERR_UNSUPPORTED_MEDIA);
	unlink(path);

	ck_assert_int_eq(image_load_file(&img, "/nonexistent/dir/cat.jpg", NULL, &err), IGS_ERR_IO);
	ck_assert_ptr_nonnull(strstr(err.message, "/nonexistent/dir/cat.jpg"));
	ck_assert_ptr_null(img.rgb);
	free(png);
}
END_TEST

/* ---- resampling ----------------------------------------------------------------------------- */

static struct image make_image(int w, int h, uint8_t *rgb)
{
	struct image img = {.width = w, .height = h, .rgb = rgb};
	return img;
}

START_TEST(test_shrink_by_two_is_block_mean)
{
	const int w = 38, h = 26;
	struct image in = make_image(w, h, random_bytes((size_t)w * h * 3)), out;
	struct igs_error err = {0};

	ck_assert_int_eq(image_resize(&out, &in, w / 2, h / 2, &err), 0);
	ck_assert_int_eq(out.width, w / 2);
	ck_assert_int_eq(out.height, h / 2);
	for (int y = 0; y < h / 2; y++)
		for (int x = 0; x < w / 2; x++)
			for (int c = 0; c < 3; c++) {
				int s = 0;
				for (int dy = 0; dy < 2; dy++)
					for (int dx = 0; dx < 2; dx++)
						s +=
						    in.rgb[((2 * y + dy) * w + 2 * x + dx) * 3 + c];
				ck_assert_int_eq(out.rgb[(y * (w / 2) + x) * 3 + c], (s + 2) / 4);
			}
	image_clear(&out);
	image_clear(&in);
}
END_TEST

/* Naive area average: the mean of the source over the destination pixel's
 * rectangle, integrating pixel by pixel in 2-D. */
static double area_reference(const struct image *in, int w, int h, int x, int y, int c)
{
	double sx = (double)in->width / w, sy = (double)in->height / h;
	double x0 = x * sx, x1 = (x + 1) * sx, y0 = y * sy, y1 = (y + 1) * sy, s = 0.0;
	for (int j = 0; j < in->height; j++)
		for (int i = 0; i < in->width; i++) {
			double ox = fmin(x1, i + 1.0) - fmax(x0, (double)i);
			double oy = fmin(y1, j + 1.0) - fmax(y0, (double)j);
			if (ox > 0 && oy > 0)
				s += ox * oy * in->rgb[(j * in->width + i) * 3 + c];
		}
	return s / (sx * sy);
}

START_TEST(test_shrink_fractional_matches_area_reference)
{
	const int w = 41, h = 29, dw = 13, dh = 10;
	struct image in = make_image(w, h, random_bytes((size_t)w * h * 3)), out;
	struct igs_error err = {0};

	ck_assert_int_eq(image_resize(&out, &in, dw, dh, &err), 0);
	for (int y = 0; y < dh; y++)
		for (int x = 0; x < dw; x++)
			for (int c = 0; c < 3; c++) {
				double ref = area_reference(&in, dw, dh, x, y, c);
				int got = out.rgb[(y * dw + x) * 3 + c];
				ck_assert_msg(fabs(got - ref) <= 0.5 + 1e-3,
				              "(%d,%d,%d): %d vs %.3f", x, y, c, got, ref);
			}
	image_clear(&out);
	image_clear(&in);
}
END_TEST

/* Keys cubic with a = -0.75 (OpenCV INTER_CUBIC), written out on its own. */
static double keys(double t)
{
	t = fabs(t);
	if (t < 1)
		return 1.25 * t * t * t - 2.25 * t * t + 1;
	if (t < 2)
		return -0.75 * t * t * t + 3.75 * t * t - 6 * t + 3;
	return 0;
}

/* Naive bicubic: a 2-D sum over the 4x4 neighbourhood, edges repeated. */
static double cubic_reference(const struct image *in, int w, int h, int x, int y, int c)
{
	double fx = (x + 0.5) * in->width / w - 0.5, fy = (y + 0.5) * in->height / h - 0.5;
	int ix = (int)floor(fx), iy = (int)floor(fy);
	double s = 0.0;
	for (int j = iy - 1; j <= iy + 2; j++)
		for (int i = ix - 1; i <= ix + 2; i++) {
			int ci = i < 0 ? 0 : i >= in->width ? in->width - 1 : i;
			int cj = j < 0 ? 0 : j >= in->height ? in->height - 1 : j;
			s += keys(fx - i) * keys(fy - j) * in->rgb[(cj * in->width + ci) * 3 + c];
		}
	return s < 0 ? 0 : s > 255 ? 255 : s;
}

START_TEST(test_enlarge_matches_bicubic_reference)
{
	const int w = 7, h = 5, dw = 19, dh = 13;
	struct image in = make_image(w, h, random_bytes((size_t)w * h * 3)), out;
	struct igs_error err = {0};

	ck_assert_int_eq(image_resize(&out, &in, dw, dh, &err), 0);
	for (int y = 0; y < dh; y++)
		for (int x = 0; x < dw; x++)
			for (int c = 0; c < 3; c++) {
				double ref = cubic_reference(&in, dw, dh, x, y, c);
				int got = out.rgb[(y * dw + x) * 3 + c];
				ck_assert_msg(fabs(got - ref) <= 0.5 + 1e-3,
				              "(%d,%d,%d): %d vs %.3f", x, y, c, got, ref);
			}
	image_clear(&out);
	image_clear(&in);
}
END_TEST

START_TEST(test_mixed_axes)
{
	/* Shrink x (area), enlarge y (cubic): reference = area in x of the cubic
	 * in y, computed naively in 2-D. */
	const int w = 30, h = 6, dw = 10, dh = 15;
	struct image in = make_image(w, h, random_bytes((size_t)w * h * 3)), out;
	struct igs_error err = {0};

	ck_assert_int_eq(image_resize(&out, &in, dw, dh, &err), 0);
	for (int y = 0; y < dh; y++)
		for (int x = 0; x < dw; x++)
			for (int c = 0; c < 3; c++) {
				double fy = (y + 0.5) * h / dh - 0.5, ref = 0.0;
				int iy = (int)floor(fy);
				for (int j = iy - 1; j <= iy + 2; j++) {
					int cj = j < 0 ? 0 : j >= h ? h - 1 : j;
					for (int i = 3 * x; i < 3 * x + 3; i++)
						ref += keys(fy - j) / 3.0 *
						       in.rgb[(cj * w + i) * 3 + c];
				}
				ref = ref < 0 ? 0 : ref > 255 ? 255 : ref;
				int got = out.rgb[(y * dw + x) * 3 + c];
				ck_assert_msg(fabs(got - ref) <= 0.5 + 1e-3,
				              "(%d,%d,%d): %d vs %.3f", x, y, c, got, ref);
			}
	image_clear(&out);
	image_clear(&in);
}
END_TEST

START_TEST(test_enlarge_ramp_stays_linear)
{
	const int w = 16, h = 3, dw = 61;
	uint8_t *rgb = malloc((size_t)w * h * 3);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			memset(rgb + (y * w + x) * 3, 10 + 15 * x, 3);
	struct image in = make_image(w, h, rgb), out;
	struct igs_error err = {0};

	ck_assert_int_eq(image_resize(&out, &in, dw, h, &err), 0);
	for (int x = 0; x < dw; x++) {
		double sx = (x + 0.5) * w / dw - 0.5;
		if (sx < 1.0 || sx > w - 2.0)
			continue; /* the edge taps repeat the border pixel */
		/* Keys' a = -0.75 is not exactly linear-preserving (only a = -0.5
		 * is): it bends a unit ramp by at most ~0.05. */
		double expect = 10 + 15 * sx;
		for (int y = 0; y < h; y++)
			ck_assert_msg(fabs(out.rgb[(y * dw + x) * 3] - expect) <= 0.5 + 0.06 * 15,
			              "x %d: %d vs %.3f", x, out.rgb[(y * dw + x) * 3], expect);
	}
	image_clear(&out);
	image_clear(&in);
}
END_TEST

START_TEST(test_constant_stays_constant)
{
	static const int sizes[][2] = {{300, 400}, {448, 224}, {50, 40},
	                               {1, 1},     {3, 500},   {224, 100}};
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		int w = sizes[k][0], h = sizes[k][1];
		uint8_t *rgb = malloc((size_t)w * h * 3);
		for (int i = 0; i < w * h; i++) {
			rgb[3 * i] = 200;
			rgb[3 * i + 1] = 3;
			rgb[3 * i + 2] = 255;
		}
		struct image in = make_image(w, h, rgb), out;
		struct igs_error err = {0};
		for (int mode = RESIZE_LETTERBOX; mode <= RESIZE_STRETCH; mode++) {
			struct image_geometry g;
			ck_assert_int_eq(image_fit(&out, &in, 224, mode, &g, &err), 0);
			for (int y = 0; y < 224; y++)
				for (int x = 0; x < 224; x++) {
					const uint8_t *p = out.rgb + (y * 224 + x) * 3;
					double x0 = g.offset_x, x1 = x0 + lround(g.scale_x * w);
					double y0 = g.offset_y, y1 = y0 + lround(g.scale_y * h);
					int inside = x >= x0 && x < x1 && y >= y0 && y < y1;
					if (inside)
						ck_assert_msg(p[0] == 200 && p[1] == 3 &&
						                  p[2] == 255,
						              "%dx%d mode %d (%d,%d): %d %d %d", w,
						              h, mode, x, y, p[0], p[1], p[2]);
					else
						ck_assert_msg(
						    p[0] == 127 && p[1] == 127 && p[2] == 127,
						    "%dx%d mode %d pad (%d,%d)", w, h, mode, x, y);
				}
			image_clear(&out);
		}
		ck_assert_int_eq(image_resize(&out, &in, 97, 33, &err), 0);
		for (int i = 0; i < 97 * 33; i++)
			ck_assert(out.rgb[3 * i] == 200 && out.rgb[3 * i + 1] == 3 &&
			          out.rgb[3 * i + 2] == 255);
		image_clear(&out);
		image_clear(&in);
	}
}
END_TEST

/* ---- fitting -------------------------------------------------------------------------------- */

START_TEST(test_letterbox_wide)
{
	const int w = 448, h = 224;
	struct image in = make_image(w, h, random_bytes((size_t)w * h * 3)), out, half;
	struct image_geometry g;
	struct igs_error err = {0};

	ck_assert_int_eq(image_fit(&out, &in, 224, RESIZE_LETTERBOX, &g, &err), 0);
	ck_assert_int_eq(out.width, 224);
	ck_assert_int_eq(out.height, 224);
	ck_assert_int_eq(g.src_width, 448);
	ck_assert_int_eq(g.src_height, 224);
	ck_assert_int_eq(g.size, 224);
	ck_assert_double_eq(g.scale_x, 0.5);
	ck_assert_double_eq(g.scale_y, 0.5);
	ck_assert_double_eq(g.offset_x, 0.0);
	ck_assert_double_eq(g.offset_y, 56.0);
	ck_assert_int_eq(image_resize(&half, &in, 224, 112, &err), 0);
	for (int y = 0; y < 224; y++)
		for (int x = 0; x < 224; x++)
			for (int c = 0; c < 3; c++) {
				int got = out.rgb[(y * 224 + x) * 3 + c];
				if (y < 56 || y >= 168) {
					ck_assert_int_eq(got, 127);
				} else {
					/* 2x2 block mean of the source, as the geometry says. */
					int s = 0;
					for (int dy = 0; dy < 2; dy++)
						for (int dx = 0; dx < 2; dx++)
							s += in.rgb[((2 * (y - 56) + dy) * w +
							             2 * x + dx) *
							                3 +
							            c];
					ck_assert_int_eq(got, (s + 2) / 4);
					ck_assert_int_eq(got,
					                 half.rgb[((y - 56) * 224 + x) * 3 + c]);
				}
			}
	image_clear(&half);
	image_clear(&out);
	image_clear(&in);
}
END_TEST

/*
 * A linear ramp f(u, v) = a*u + b*v + c in continuous source coordinates
 * (pixel i holds f at its center i + 0.5): area averaging and Keys cubic
 * both reproduce it, so every interior input pixel must show f at the
 * source point that the geometry names.
 */
static void check_geometry(int w, int h, enum resize_mode mode, int size)
{
	const double a = 100.0 / w, b = 120.0 / h, c0 = 20.0;
	uint8_t *rgb = malloc((size_t)w * h * 3);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint8_t *p = rgb + ((size_t)y * w + x) * 3;
			p[0] = (uint8_t)lround(a * (x + 0.5) + b * (y + 0.5) + c0);
			p[1] = (uint8_t)lround(a * (x + 0.5) + c0);
			p[2] = (uint8_t)lround(b * (y + 0.5) + c0);
		}
	struct image in = make_image(w, h, rgb), out;
	struct image_geometry g;
	struct igs_error err = {0};

	ck_assert_int_eq(image_fit(&out, &in, size, mode, &g, &err), 0);
	/* Source quantization (0.5) and output rounding (0.5); enlarging adds
	 * the cubic's overshoot of the quantization noise (sum |w| < 1.3) and
	 * its slight bend of a ramp (0.06 per unit slope, see above). */
	double tol = 1.0 + 1e-3;
	if (g.scale_x > 1.0 || g.scale_y > 1.0)
		tol = 0.5 * 1.3 + 0.5 + 0.06 * (a + b) + 1e-3;
	int checked = 0;
	for (int y = 0; y < size; y++)
		for (int x = 0; x < size; x++) {
			double sx = (x + 0.5 - g.offset_x) / g.scale_x;
			double sy = (y + 0.5 - g.offset_y) / g.scale_y;
			/* Skip what the border clamping and the padding touch. */
			double mx = 2.0 + 1.0 / g.scale_x, my = 2.0 + 1.0 / g.scale_y;
			if (sx < mx || sx > w - mx || sy < my || sy > h - my)
				continue;
			const uint8_t *p = out.rgb + ((size_t)y * size + x) * 3;
			double e[3] = {a * sx + b * sy + c0, a * sx + c0, b * sy + c0};
			for (int k = 0; k < 3; k++)
				ck_assert_msg(
				    fabs(p[k] - e[k]) <= tol,
				    "%dx%d %s (%d,%d)[%d]: %d, expected %.2f at src (%.2f,%.2f)", w,
				    h, image_resize_mode_name(mode), x, y, k, p[k], e[k], sx, sy);
			checked++;
		}
	ck_assert_int_gt(checked, size * size / 4);
	image_clear(&out);
	image_clear(&in);
}

START_TEST(test_geometry_maps_centers)
{
	check_geometry(448, 224, RESIZE_LETTERBOX, 224);
	check_geometry(300, 400, RESIZE_LETTERBOX, 224);
	check_geometry(150, 120, RESIZE_LETTERBOX, 224); /* enlarging */
	check_geometry(333, 250, RESIZE_CENTER_CROP, 224);
	check_geometry(300, 400, RESIZE_CENTER_CROP, 224);
	check_geometry(100, 60, RESIZE_CENTER_CROP, 224);
	check_geometry(100, 60, RESIZE_STRETCH, 224);
	check_geometry(500, 90, RESIZE_STRETCH, 224);
	check_geometry(640, 480, RESIZE_LETTERBOX, 32);
}
END_TEST

START_TEST(test_center_crop_300x400)
{
	const int w = 300, h = 400;
	struct image in = make_image(w, h, random_bytes((size_t)w * h * 3)), out, full;
	struct image_geometry g;
	struct igs_error err = {0};

	/* torchvision: Resize(256) -> 256x341, CenterCrop(224) at
	 * left round(16) = 16, top round(58.5) = 58 (half to even). */
	ck_assert_int_eq(image_fit(&out, &in, 224, RESIZE_CENTER_CROP, &g, &err), 0);
	ck_assert_double_eq_tol(g.scale_x, 256.0 / 300.0, 1e-12);
	ck_assert_double_eq_tol(g.scale_y, 341.0 / 400.0, 1e-12);
	ck_assert_double_eq(g.offset_x, -16.0);
	ck_assert_double_eq(g.offset_y, -58.0);
	/* Resizing the whole image and cropping gives the same pixels. */
	ck_assert_int_eq(image_resize(&full, &in, 256, 341, &err), 0);
	for (int y = 0; y < 224; y++)
		ck_assert_int_eq(memcmp(out.rgb + (size_t)y * 224 * 3,
		                        full.rgb + ((size_t)(y + 58) * 256 + 16) * 3, 224 * 3),
		                 0);
	image_clear(&full);
	image_clear(&out);
	image_clear(&in);
}
END_TEST

START_TEST(test_input_size_copied_exactly)
{
	struct image in = make_image(224, 224, random_bytes(224 * 224 * 3)), out;
	struct igs_error err = {0};
	for (int mode = RESIZE_LETTERBOX; mode <= RESIZE_STRETCH; mode++) {
		struct image_geometry g;
		ck_assert_int_eq(image_fit(&out, &in, 224, mode, &g, &err), 0);
		ck_assert_int_eq(memcmp(out.rgb, in.rgb, 224 * 224 * 3), 0);
		ck_assert_ptr_ne(out.rgb, in.rgb);
		ck_assert_double_eq(g.scale_x, 1.0);
		ck_assert_double_eq(g.scale_y, 1.0);
		ck_assert_double_eq(g.offset_x, 0.0);
		ck_assert_double_eq(g.offset_y, 0.0);
		image_clear(&out);
	}
	/* Same-size resize is a copy too. */
	ck_assert_int_eq(image_resize(&out, &in, 224, 224, &err), 0);
	ck_assert_int_eq(memcmp(out.rgb, in.rgb, 224 * 224 * 3), 0);
	image_clear(&out);
	image_clear(&in);
}
END_TEST

START_TEST(test_modes_and_bad_arguments)
{
	ck_assert_int_eq(image_resize_mode_parse("letterbox"), RESIZE_LETTERBOX);
	ck_assert_int_eq(image_resize_mode_parse("center-crop"), RESIZE_CENTER_CROP);
	ck_assert_int_eq(image_resize_mode_parse("stretch"), RESIZE_STRETCH);
	ck_assert_int_eq(image_resize_mode_parse("crop"), -1);
	ck_assert_int_eq(image_resize_mode_parse(""), -1);
	ck_assert_int_eq(image_resize_mode_parse(NULL), -1);
	for (int m = RESIZE_LETTERBOX; m <= RESIZE_STRETCH; m++)
		ck_assert_int_eq(image_resize_mode_parse(image_resize_mode_name(m)), m);

	struct image in = make_image(10, 10, random_bytes(300)), out;
	struct igs_error err = {0};
	ck_assert_int_eq(image_fit(&out, &in, 0, RESIZE_LETTERBOX, NULL, &err), IGS_ERR_BAD_OPTION);
	ck_assert_ptr_null(out.rgb);
	ck_assert_int_eq(image_fit(&out, &in, 224, (enum resize_mode)7, NULL, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(image_resize(&out, &in, 0, 5, &err), IGS_ERR_BAD_OPTION);
	ck_assert_ptr_null(out.rgb);
	struct image empty = {0};
	ck_assert_int_lt(image_fit(&out, &empty, 224, RESIZE_LETTERBOX, NULL, &err), 0);
	/* NULL geometry is allowed. */
	ck_assert_int_eq(image_fit(&out, &in, 224, RESIZE_STRETCH, NULL, &err), 0);
	image_clear(&out);
	image_clear(&in);
	image_clear(NULL);
}
END_TEST

/* A decoded JPEG through the whole path: decode then fit. */
START_TEST(test_decode_then_fit)
{
	size_t len;
	uint8_t *jpg = small_jpeg(320, 240, &len);
	struct image img, out;
	struct image_geometry g;
	struct igs_error err = {0};

	decode_ok(&img, jpg, len, 320, 240);
	ck_assert_int_eq(image_fit(&out, &img, 224, RESIZE_LETTERBOX, &g, &err), 0);
	ck_assert_double_eq(g.offset_x, 0.0);
	ck_assert_double_eq(g.offset_y, 28.0); /* 320x240 -> 224x168, (224-168)/2 */
	ck_assert_int_eq(out.rgb[0], 127);
	ck_assert_int_eq(out.rgb[(223 * 224 + 223) * 3], 127);
	image_clear(&out);
	image_clear(&img);
	free(jpg);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("image");
	TCase *dec = tcase_create("decode");
	tcase_add_test(dec, test_sniff);
	tcase_add_test(dec, test_jpeg_baseline_420);
	tcase_add_test(dec, test_jpeg_baseline_444);
	tcase_add_test(dec, test_jpeg_progressive);
	tcase_add_test(dec, test_jpeg_grayscale);
	tcase_add_test(dec, test_jpeg_cmyk);
	tcase_add_test(dec, test_jpeg_cmyk_fixture_matches_pillow);
	tcase_add_test(dec, test_png_8bit_rgb_and_rgba);
	tcase_add_test(dec, test_png_gray_and_gray_alpha);
	tcase_add_test(dec, test_png_palette);
	tcase_add_test(dec, test_png_16bit);
	tcase_add_test(dec, test_truncated_and_garbage);
	tcase_add_test(dec, test_pixel_limit);
	tcase_add_test(dec, test_huge_header_refused);
	tcase_add_test(dec, test_byte_limit);
	tcase_add_test(dec, test_load_file);
	suite_add_tcase(s, dec);

	TCase *rs = tcase_create("resize");
	tcase_add_test(rs, test_shrink_by_two_is_block_mean);
	tcase_add_test(rs, test_shrink_fractional_matches_area_reference);
	tcase_add_test(rs, test_enlarge_matches_bicubic_reference);
	tcase_add_test(rs, test_mixed_axes);
	tcase_add_test(rs, test_enlarge_ramp_stays_linear);
	tcase_add_test(rs, test_constant_stays_constant);
	tcase_add_test(rs, test_letterbox_wide);
	tcase_add_test(rs, test_geometry_maps_centers);
	tcase_add_test(rs, test_center_crop_300x400);
	tcase_add_test(rs, test_input_size_copied_exactly);
	tcase_add_test(rs, test_modes_and_bad_arguments);
	tcase_add_test(rs, test_decode_then_fit);
	suite_add_tcase(s, rs);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
