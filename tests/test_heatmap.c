/*
 * test_heatmap.c - heatmaps against naive recomputations, PNG round trips
 * through libpng's reader, the viridis colormap, .npy bytes and base64
 * known answers.
 */
#include <check.h>
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "heatmap.h"
#include "npy.h"
#include "png_encode.h"
#include "file.h"
#include "service.h"

#define S 16
#define HW (S * S)
#define N (HW * 3)

static uint64_t rng = 12345;
static double urand(void) /* [0, 1) */
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(rng >> 11) * 0x1.0p-53;
}

static void make_attr(float *a)
{
	for (int i = 0; i < N; i++)
		a[i] = (float)((urand() - 0.4) * 3.0);
	a[17] = 40.0f; /* an outlier the 99th percentile clips */
}

static uint8_t byte_of(double v) /* the documented quantization */
{
	if (!(v > 0))
		return 0;
	if (v >= 1)
		return 255;
	return (uint8_t)floor(255.0 * v + 0.5);
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* numpy.quantile(v, q) with the default linear rule */
static double np_quantile(const double *v, int n, double q)
{
	double *s = malloc(sizeof *s * n);
	memcpy(s, v, sizeof *s * n);
	qsort(s, n, sizeof *s, cmpd);
	double h = q * (n - 1);
	int lo = (int)h;
	double r = lo + 1 < n ? s[lo] + (h - lo) * (s[lo + 1] - s[lo]) : s[lo];
	free(s);
	return r;
}

/* decode PNG bytes with libpng's simplified API into 8-bit pixels */
static uint8_t *png_decode(const unsigned char *data, size_t len, int *w, int *h, int *channels)
{
	png_image img;
	memset(&img, 0, sizeof img);
	img.version = PNG_IMAGE_VERSION;
	ck_assert(png_image_begin_read_from_memory(&img, data, len));
	*channels = (img.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
	img.format = *channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
	uint8_t *px = malloc(PNG_IMAGE_SIZE(img));
	ck_assert(png_image_finish_read(&img, NULL, px, 0, NULL));
	*w = (int)img.width;
	*h = (int)img.height;
	return px;
}

/* render, encode, decode: what a client sees */
static uint8_t *render_roundtrip(unsigned bit, const float *attr, const float *input, int *ch)
{
	struct heatmap_image im;
	ck_assert_int_eq(heatmap_render(bit, attr, S, input, &im, NULL), 0);
	unsigned char *png;
	size_t len;
	ck_assert_int_eq(png_encode(im.pixels, im.width, im.height, im.channels, &png, &len, NULL),
	                 0);
	int w, h;
	uint8_t *px = png_decode(png, len, &w, &h, ch);
	ck_assert_int_eq(w, S);
	ck_assert_int_eq(h, S);
	ck_assert_int_eq(*ch, im.channels);
	ck_assert_mem_eq(px, im.pixels, (size_t)w * h * *ch);
	free(png);
	heatmap_image_clear(&im);
	return px;
}

START_TEST(test_normalized_deviation_channels)
{
	float a[N];
	make_attr(a);
	int ch;
	double lo = a[0], hi = a[0];
	for (int i = 0; i < N; i++) {
		lo = fmin(lo, a[i]);
		hi = fmax(hi, a[i]);
	}
	uint8_t *px = render_roundtrip(HEATMAP_NORMALIZED, a, NULL, &ch);
	ck_assert_int_eq(ch, 3);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(px[i], byte_of((a[i] - lo) / (hi - lo)));
	free(px);

	double d[N];
	for (int i = 0; i < N; i++)
		d[i] = a[i];
	double med = np_quantile(d, N, 0.5), maxdev = 0;
	for (int i = 0; i < N; i++)
		maxdev = fmax(maxdev, fabs(d[i] - med));
	px = render_roundtrip(HEATMAP_DEVIATION, a, NULL, &ch);
	int saturated = 0;
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(px[i], byte_of(fabs(d[i] - med) * 2 / maxdev));
		saturated += px[i] == 255;
	}
	ck_assert_int_gt(saturated, 0);
	free(px);

	static const unsigned bits[3] = {HEATMAP_CHANNEL_R, HEATMAP_CHANNEL_G, HEATMAP_CHANNEL_B};
	for (int c = 0; c < 3; c++) {
		px = render_roundtrip(bits[c], a, NULL, &ch);
		ck_assert_int_eq(ch, 1);
		double clo = a[c], chi = a[c];
		for (int p = 0; p < HW; p++) {
			clo = fmin(clo, a[3 * p + c]);
			chi = fmax(chi, a[3 * p + c]);
		}
		for (int p = 0; p < HW; p++)
			ck_assert_int_eq(px[p], byte_of((a[3 * p + c] - clo) / (chi - clo)));
		free(px);
	}
}
END_TEST

static void naive_magnitude(const float *a, double *m01)
{
	double m[HW];
	for (int p = 0; p < HW; p++)
		m[p] = fabs(a[3 * p]) + fabs(a[3 * p + 1]) + fabs(a[3 * p + 2]);
	double p99 = np_quantile(m, HW, 0.99);
	for (int p = 0; p < HW; p++)
		m01[p] = fmin(m[p] / p99, 1.0);
}

START_TEST(test_magnitude_and_overlay)
{
	float a[N], input[N];
	make_attr(a);
	for (int i = 0; i < N; i++)
		input[i] = (float)floor(urand() * 256);
	double m01[HW];
	naive_magnitude(a, m01);
	int ch;
	uint8_t *px = render_roundtrip(HEATMAP_MAGNITUDE, a, NULL, &ch);
	ck_assert_int_eq(ch, 1);
	ck_assert_int_eq(px[17 / 3], 255); /* the outlier, clipped */
	for (int p = 0; p < HW; p++)
		ck_assert_int_le(abs(px[p] - byte_of(m01[p])), 1); /* float vs double sums */
	free(px);
	px = render_roundtrip(HEATMAP_OVERLAY, a, input, &ch);
	ck_assert_int_eq(ch, 3);
	for (int p = 0; p < HW; p++) {
		uint8_t col[3];
		heatmap_colormap(m01[p], col);
		double al = 0.2 + 0.6 * m01[p];
		for (int c = 0; c < 3; c++)
			ck_assert_int_le(
			    abs(px[3 * p + c] -
			        byte_of(((1 - al) * input[3 * p + c] + al * col[c]) / 255)),
			    2);
	}
	free(px);
	struct igs_error err = {0};
	struct heatmap_image im;
	ck_assert_int_eq(heatmap_render(HEATMAP_OVERLAY, a, S, NULL, &im, &err), IGS_ERR_INTERNAL);
	ck_assert_int_eq(heatmap_render(1u << 20, a, S, NULL, &im, &err), IGS_ERR_BAD_OPTION);
}
END_TEST

START_TEST(test_constant_attributions_draw_black)
{
	float a[N];
	for (int i = 0; i < N; i++)
		a[i] = 0.25f;
	static const unsigned bits[] = {HEATMAP_NORMALIZED, HEATMAP_DEVIATION, HEATMAP_CHANNEL_G};
	for (size_t b = 0; b < 3; b++) {
		struct heatmap_image im;
		ck_assert_int_eq(heatmap_render(bits[b], a, S, NULL, &im, NULL), 0);
		for (int i = 0; i < im.width * im.height * im.channels; i++)
			ck_assert_int_eq(im.pixels[i], 0);
		heatmap_image_clear(&im);
	}
	for (int i = 0; i < N; i++)
		a[i] = 0;
	struct heatmap_image im;
	ck_assert_int_eq(heatmap_render(HEATMAP_MAGNITUDE, a, S, NULL, &im, NULL), 0);
	for (int i = 0; i < HW; i++)
		ck_assert_int_eq(im.pixels[i], 0);
	heatmap_image_clear(&im);
}
END_TEST

/* An upload over HEATMAP_OVERLAY_FULL_MAX_SIDE is drawn reduced: an upload
 * that is an exact 2x2 enlargement of a 4096 x 64 picture gives, byte for
 * byte, that picture's overlay (area averaging of 2x2 equal pixels is
 * exact, and the geometry scales by 2). */
START_TEST(test_overlay_full_capped)
{
	const int w = HEATMAP_OVERLAY_FULL_MAX_SIDE, h = 64;
	float a[N];
	make_attr(a);
	struct image small = {.width = w, .height = h, .rgb = malloc((size_t)w * h * 3)};
	struct image big = {.width = 2 * w, .height = 2 * h, .rgb = malloc((size_t)w * h * 12)};
	for (size_t i = 0; i < (size_t)w * h * 3; i++)
		small.rgb[i] = (uint8_t)(urand() * 256);
	for (int y = 0; y < 2 * h; y++)
		for (int x = 0; x < 2 * w; x++)
			memcpy(big.rgb + ((size_t)y * 2 * w + x) * 3,
			       small.rgb + ((size_t)(y / 2) * w + x / 2) * 3, 3);
	/* letterbox of the small picture into S x S */
	double sc = (double)S / w;
	struct image_geometry gs = {.src_width = w, .src_height = h, .size = S,
	                            .scale_x = sc, .scale_y = sc,
	                            .offset_x = 0, .offset_y = (S - h * sc) / 2};
	struct image_geometry gb = gs;
	gb.src_width = 2 * w;
	gb.src_height = 2 * h;
	gb.scale_x = gb.scale_y = sc / 2;
	struct heatmap_image fs, fb;
	ck_assert_int_eq(heatmap_render_overlay_full(a, S, &small, &gs, &fs, NULL), 0);
	ck_assert_int_eq(heatmap_render_overlay_full(a, S, &big, &gb, &fb, NULL), 0);
	ck_assert_int_eq(fb.width, w);
	ck_assert_int_eq(fb.height, h);
	ck_assert_mem_eq(fb.pixels, fs.pixels, (size_t)w * h * 3);
	heatmap_image_clear(&fs);
	heatmap_image_clear(&fb);
	free(small.rgb);
	free(big.rgb);

	/* the sizes: aspect kept, long side the maximum, never below 1 */
	int ow, oh;
	heatmap_overlay_full_size(6000, 4000, &ow, &oh);
	ck_assert_int_eq(ow, 4096);
	ck_assert_int_eq(oh, 2731);
	heatmap_overlay_full_size(40, 1000000, &ow, &oh);
	ck_assert_int_eq(ow, 1);
	ck_assert_int_eq(oh, 4096);
	heatmap_overlay_full_size(4096, 300, &ow, &oh);
	ck_assert_int_eq(ow, 4096);
	ck_assert_int_eq(oh, 300);
	/* what png_encode refuses is known before encoding */
	struct igs_error err = {0};
	ck_assert_int_eq(png_encode_check(4096, 4096, 3, &err), 0);
	ck_assert_int_eq(png_encode_check(PNG_ENCODE_MAX_SIDE + 1, 2, 3, &err), IGS_ERR_BAD_OPTION);
	ck_assert_ptr_nonnull(strstr(err.message, "100001x2"));
	ck_assert_int_eq(png_encode_check(4, 4, 2, &err), IGS_ERR_BAD_OPTION);
}
END_TEST

START_TEST(test_overlay_full_resolution)
{
	float a[N], input[N];
	make_attr(a);
	/* identity geometry: the same image as the overlay */
	struct image orig = {.width = S, .height = S, .rgb = malloc(N)};
	for (int i = 0; i < N; i++)
		orig.rgb[i] = (uint8_t)(urand() * 256);
	for (int i = 0; i < N; i++)
		input[i] = orig.rgb[i];
	struct image_geometry g = {
	    .src_width = S, .src_height = S, .size = S, .scale_x = 1, .scale_y = 1};
	struct heatmap_image full, ov;
	ck_assert_int_eq(heatmap_render_overlay_full(a, S, &orig, &g, &full, NULL), 0);
	ck_assert_int_eq(heatmap_render(HEATMAP_OVERLAY, a, S, input, &ov, NULL), 0);
	ck_assert_int_eq(full.width, S);
	ck_assert_mem_eq(full.pixels, ov.pixels, N);
	heatmap_image_clear(&full);
	heatmap_image_clear(&ov);
	free(orig.rgb);

	/* a 2S x S upload cropped to its middle S x S (scale 1, offset -S/2):
	 * the left and right quarters were never seen and show at half
	 * brightness; the middle is the overlay */
	struct image wide = {.width = 2 * S, .height = S, .rgb = malloc(2 * N)};
	for (int i = 0; i < 2 * N; i++)
		wide.rgb[i] = (uint8_t)(urand() * 256);
	for (int y = 0; y < S; y++)
		for (int x = 0; x < S; x++)
			for (int c = 0; c < 3; c++)
				input[(y * S + x) * 3 + c] =
				    wide.rgb[(y * 2 * S + x + S / 2) * 3 + c];
	g = (struct image_geometry){.src_width = 2 * S,
	                            .src_height = S,
	                            .size = S,
	                            .scale_x = 1,
	                            .scale_y = 1,
	                            .offset_x = -S / 2.0};
	ck_assert_int_eq(heatmap_render_overlay_full(a, S, &wide, &g, &full, NULL), 0);
	ck_assert_int_eq(heatmap_render(HEATMAP_OVERLAY, a, S, input, &ov, NULL), 0);
	ck_assert_int_eq(full.width, 2 * S);
	for (int y = 0; y < S; y++)
		for (int x = 0; x < 2 * S; x++)
			for (int c = 0; c < 3; c++) {
				int got = full.pixels[(y * 2 * S + x) * 3 + c];
				if (x < S / 2 || x >= S / 2 + S)
					ck_assert_int_eq(got,
					                 wide.rgb[(y * 2 * S + x) * 3 + c] / 2);
				else
					ck_assert_int_eq(got,
					                 ov.pixels[(y * S + x - S / 2) * 3 + c]);
			}
	heatmap_image_clear(&full);
	heatmap_image_clear(&ov);
	free(wide.rgb);
}
END_TEST

START_TEST(test_scalar_maps)
{
	float v[HW];
	for (int p = 0; p < HW; p++)
		v[p] = (float)(p * 0.1);
	struct heatmap_image im;
	ck_assert_int_eq(heatmap_render_scalar(v, S, S, 12.8, &im, NULL), 0);
	for (int p = 0; p < HW; p++)
		ck_assert_int_eq(im.pixels[p], byte_of(p * 0.1 / 12.8));
	ck_assert_int_eq(im.pixels[HW - 1], 255);
	heatmap_image_clear(&im);
}
END_TEST

/* luminance rises monotonically; known viridis values at 0, 0.5, 1 */
START_TEST(test_colormap_viridis)
{
	double prev = -1;
	for (int i = 0; i <= 255; i++) {
		uint8_t c[3];
		heatmap_colormap(i / 255.0, c);
		double y = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
		ck_assert_msg(y >= prev - 0.5, "luminance drops at %d: %g < %g", i, y, prev);
		prev = fmax(prev, y);
	}
	static const struct {
		double t;
		int rgb[3];
	} known[] = {{0, {68, 1, 84}}, {0.5, {33, 145, 140}}, {1, {253, 231, 37}}};
	for (int k = 0; k < 3; k++) {
		uint8_t c[3];
		heatmap_colormap(known[k].t, c);
		for (int ch = 0; ch < 3; ch++)
			ck_assert_int_le(abs(c[ch] - known[k].rgb[ch]), 4);
	}
	uint8_t lo[3], hi[3], below[3], above[3];
	heatmap_colormap(0, lo);
	heatmap_colormap(-3, below);
	heatmap_colormap(1, hi);
	heatmap_colormap(7, above);
	ck_assert_mem_eq(lo, below, 3);
	ck_assert_mem_eq(hi, above, 3);
}
END_TEST

START_TEST(test_png_roundtrip_and_errors)
{
	for (int ch = 1; ch <= 3; ch += 2) {
		int w = 37, h = 5;
		uint8_t *px = malloc((size_t)w * h * ch);
		for (int i = 0; i < w * h * ch; i++)
			px[i] = (uint8_t)(urand() * 256);
		unsigned char *png;
		size_t len;
		ck_assert_int_eq(png_encode(px, w, h, ch, &png, &len, NULL), 0);
		ck_assert_mem_eq(png, "\x89PNG\r\n\x1a\n", 8);
		int dw, dh, dch;
		uint8_t *back = png_decode(png, len, &dw, &dh, &dch);
		ck_assert_int_eq(dw, w);
		ck_assert_int_eq(dh, h);
		ck_assert_int_eq(dch, ch);
		ck_assert_mem_eq(back, px, (size_t)w * h * ch);
		free(back);
		free(png);
		free(px);
	}
	struct igs_error err = {0};
	unsigned char *png;
	size_t len;
	uint8_t one = 0;
	ck_assert_int_eq(png_encode(&one, 0, 1, 1, &png, &len, &err), IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(png_encode(&one, 1, 1, 2, &png, &len, &err), IGS_ERR_BAD_OPTION);
	ck_assert_ptr_null(png);
	ck_assert_int_eq(file_write_bytes("/nonexistent-dir/x.png", &one, 1, &err), IGS_ERR_IO);
	ck_assert(strstr(err.message, "/nonexistent-dir/x.png") != NULL);
}
END_TEST

START_TEST(test_npy_bytes)
{
	float v[224 * 2];
	for (int i = 0; i < 224 * 2; i++)
		v[i] = (float)i - 0.5f;
	size_t shape[3] = {224, 224, 3};
	unsigned char *b;
	size_t len;
	/* header only matters here: feed a big-enough buffer of the real size */
	float *big = calloc(224 * 224 * 3, sizeof *big);
	big[0] = 1.0f;
	big[224 * 224 * 3 - 1] = -2.5f;
	ck_assert_int_eq(npy_encode_f32(big, shape, 3, &b, &len, NULL), 0);
	static const char dict[] =
	    "{'descr': '<f4', 'fortran_order': False, 'shape': (224, 224, 3), }";
	ck_assert_mem_eq(b, "\x93NUMPY\x01\x00", 8);
	size_t hlen = b[8] | (size_t)b[9] << 8;
	ck_assert_uint_eq((10 + hlen) % 64, 0);
	ck_assert_uint_eq(hlen, 118); /* 10 + 118 = 128 */
	ck_assert_mem_eq(b + 10, dict, sizeof dict - 1);
	for (size_t i = 10 + sizeof dict - 1; i < 10 + hlen - 1; i++)
		ck_assert_int_eq(b[i], ' ');
	ck_assert_int_eq(b[10 + hlen - 1], '\n');
	ck_assert_uint_eq(len, 128 + 224 * 224 * 3 * 4);
	ck_assert_mem_eq(b + 128, "\x00\x00\x80\x3f", 4);     /* 1.0f LE */
	ck_assert_mem_eq(b + len - 4, "\x00\x00\x20\xc0", 4); /* -2.5f LE */
	free(b);
	free(big);
	/* one dimension: NumPy writes the tuple as (n,) */
	size_t s1[1] = {3};
	ck_assert_int_eq(npy_encode_f32(v, s1, 1, &b, &len, NULL), 0);
	static const char dict1[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
	ck_assert_mem_eq(b + 10, dict1, sizeof dict1 - 1);
	ck_assert_uint_eq(len, 128 + 12); /* 10 + 59-character dict + newline > 64 */
	free(b);
	struct igs_error err = {0};
	ck_assert_int_eq(npy_encode_f32(v, s1, 0, &b, &len, &err), IGS_ERR_INTERNAL);
	ck_assert_int_eq(npy_write_f32("/nonexistent-dir/a.npy", v, s1, 1, &err), IGS_ERR_IO);
}
END_TEST

/* RFC 4648 section 10 test vectors, and decoding back */
START_TEST(test_base64_known_answers)
{
	static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	for (int i = 0; i < 7; i++) {
		char *e = base64_encode_alloc(in[i], strlen(in[i]));
		ck_assert_str_eq(e, out[i]);
		ck_assert_uint_eq(base64_encoded_len(strlen(in[i])), strlen(out[i]));
		unsigned char d[16];
		size_t n;
		ck_assert_int_eq(base64_decode(e, strlen(e), d, &n), 0);
		ck_assert_uint_eq(n, strlen(in[i]));
		ck_assert_mem_eq(d, in[i], n);
		free(e);
	}
	unsigned char all[256], d[256];
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	char *e = base64_encode_alloc(all, 256);
	ck_assert(strncmp(e, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v",
	                  64) == 0);
	size_t n;
	ck_assert_int_eq(base64_decode(e, strlen(e), d, &n), 0);
	ck_assert_uint_eq(n, 256);
	ck_assert_mem_eq(d, all, 256);
	free(e);
	ck_assert_int_eq(base64_decode("Zm9", 3, d, &n), -1);
	ck_assert_int_eq(base64_decode("Zm9*", 4, d, &n), -1);
	ck_assert_int_eq(base64_decode("Z===", 4, d, &n), -1);
	ck_assert_int_eq(base64_decode("Zg==Zg==", 8, d, &n), -1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("heatmap");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_normalized_deviation_channels);
	tcase_add_test(tc, test_magnitude_and_overlay);
	tcase_add_test(tc, test_constant_attributions_draw_black);
	tcase_add_test(tc, test_overlay_full_resolution);
	tcase_add_test(tc, test_overlay_full_capped);
	tcase_add_test(tc, test_scalar_maps);
	tcase_add_test(tc, test_colormap_viridis);
	tcase_add_test(tc, test_png_roundtrip_and_errors);
	tcase_add_test(tc, test_npy_bytes);
	tcase_add_test(tc, test_base64_known_answers);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
