/*
 * test_image.c - decoding images (resampling and fitting: test_image_resize.c).
 *
 * Every input is made here: JPEGs with TurboJPEG's encoder, PNGs with
 * libpng's writer, so each variant (progressive, CMYK, palette + tRNS,
 * 16-bit, ...) is compared with the pixels it was made from
 * (image_test_support.h).
 */
#include "image_test_support.h"

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

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
