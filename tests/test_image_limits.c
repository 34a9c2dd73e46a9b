/*
 * test_image_limits.c - the image stage's limits on one upload's work
 * (issue 13, findings 2 and 6).
 *
 *  - Resizing streams source rows: the result is byte for byte what the
 *    former two-pass algorithm gave (a full (source height x width) float
 *    intermediate, reproduced here as the reference), and the memory it
 *    needs does not grow with the source's height.
 *  - A JPEG's scans are counted before decoding: a valid progressive file
 *    with more scans than any encoder writes, or with too many scans for its
 *    pixels, is refused; one within the budget decodes to the same pixels as
 *    its baseline twin.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#include "image.h"

static uint32_t rng_state = 424242;

static uint32_t rnd(void)
{
	rng_state = rng_state * 1664525u + 1013904223u;
	return rng_state >> 8;
}

static uint8_t *random_bytes(size_t n)
{
	uint8_t *p = malloc(n);
	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
	return p;
}

/* ---- the former full-buffer resize, as the reference ---------------------------------------- */

/* The filter tables exactly as src/image/image_resize.c builds them. */
struct ref_axis {
	int *start, *count;
	size_t *off;
	float *wt;
};

static double ref_cubic(double x)
{
	const double a = -0.75;
	x = fabs(x);
	if (x <= 1.0)
		return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
	if (x < 2.0)
		return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
	return 0.0;
}

static int ref_clamp(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

static void ref_axis_init(struct ref_axis *ax, int src, int full, int first, int n)
{
	double inv = (double)src / full;
	size_t cap = full < src ? (size_t)ceil(n * inv) + 2 * (size_t)n + 2 : 4 * (size_t)n;
	ax->start = malloc((size_t)n * sizeof(int));
	ax->count = malloc((size_t)n * sizeof(int));
	ax->off = malloc((size_t)n * sizeof(size_t));
	ax->wt = calloc(cap, sizeof(float));
	size_t used = 0;
	for (int k = 0; k < n; k++) {
		int i = first + k, cnt;
		float *wt = ax->wt + used;
		double sum = 0.0;
		if (full == src) {
			ax->start[k] = ref_clamp(i, 0, src - 1);
			wt[0] = 1.0f;
			cnt = 1;
			sum = 1.0;
		} else if (full < src) {
			double lo = i * inv, hi = (i + 1) * inv;
			int s0 = ref_clamp((int)floor(lo), 0, src - 1);
			cnt = 0;
			for (int s = s0; s < src && s < hi && used + cnt < cap; s++, cnt++) {
				double ov = fmin(hi, s + 1.0) - fmax(lo, (double)s);
				wt[cnt] = (float)(ov > 0.0 ? ov : 0.0);
				sum += wt[cnt];
			}
			ax->start[k] = s0;
		} else {
			double x = (i + 0.5) * inv - 0.5;
			int x0 = (int)floor(x);
			double f = x - x0;
			int lo = ref_clamp(x0 - 1, 0, src - 1);
			cnt = ref_clamp(x0 + 2, 0, src - 1) - lo + 1;
			for (int t = 0; t < 4; t++) {
				double w = ref_cubic(f - (t - 1));
				wt[ref_clamp(x0 - 1 + t, 0, src - 1) - lo] += (float)w;
				sum += w;
			}
			ax->start[k] = lo;
		}
		for (int t = 0; t < cnt; t++)
			wt[t] = (float)(wt[t] / sum);
		ax->count[k] = cnt;
		ax->off[k] = used;
		used += (size_t)cnt;
	}
}

static void ref_axis_free(struct ref_axis *ax)
{
	free(ax->start);
	free(ax->count);
	free(ax->off);
	free(ax->wt);
}

static uint8_t ref_byte(float v)
{
	v = floorf(v + 0.5f);
	return (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
}

/* Every source row resampled horizontally into floats, then each output row
 * summed down its column run: the window (x0, y0, w, h) of a full_w x full_h
 * resize. */
static uint8_t *ref_resize_region(const struct image *in, int full_w, int full_h, int x0, int y0,
                                  int w, int h)
{
	struct ref_axis ax, ay;
	size_t stride = (size_t)w * 3;
	ref_axis_init(&ax, in->width, full_w, x0, w);
	ref_axis_init(&ay, in->height, full_h, y0, h);
	float *tmp = malloc((size_t)in->height * stride * sizeof(float));
	uint8_t *out = malloc(stride * h);
	ck_assert_ptr_nonnull(tmp);
	for (int y = 0; y < in->height; y++) {
		const uint8_t *row = in->rgb + (size_t)y * in->width * 3;
		float *o = tmp + (size_t)y * stride;
		for (int x = 0; x < w; x++) {
			const uint8_t *p = row + (size_t)ax.start[x] * 3;
			const float *wt = ax.wt + ax.off[x];
			float r = 0.0f, g = 0.0f, b = 0.0f;
			for (int t = 0; t < ax.count[x]; t++) {
				r += wt[t] * p[3 * t + 0];
				g += wt[t] * p[3 * t + 1];
				b += wt[t] * p[3 * t + 2];
			}
			o[3 * x + 0] = r;
			o[3 * x + 1] = g;
			o[3 * x + 2] = b;
		}
	}
	for (int y = 0; y < h; y++) {
		const float *src = tmp + (size_t)ay.start[y] * stride;
		const float *wt = ay.wt + ay.off[y];
		for (size_t c = 0; c < stride; c++) {
			float v = 0.0f;
			for (int t = 0; t < ay.count[y]; t++)
				v += wt[t] * src[(size_t)t * stride + c];
			out[(size_t)y * stride + c] = ref_byte(v);
		}
	}
	free(tmp);
	ref_axis_free(&ax);
	ref_axis_free(&ay);
	return out;
}

/* ---- resize: same bytes, bounded memory ----------------------------------------------------- */

static void expect_resize_matches_reference(int sw, int sh, int dw, int dh)
{
	struct image in = {.width = sw, .height = sh, .rgb = random_bytes((size_t)sw * sh * 3)};
	struct image out;
	struct igs_error err = {0};

	ck_assert_msg(image_resize(&out, &in, dw, dh, &err) == 0, "%s", err.message);
	uint8_t *ref = ref_resize_region(&in, dw, dh, 0, 0, dw, dh);
	for (size_t i = 0; i < (size_t)dw * dh * 3; i++)
		ck_assert_msg(out.rgb[i] == ref[i], "%dx%d -> %dx%d: byte %zu is %d, reference %d",
		              sw, sh, dw, dh, i, out.rgb[i], ref[i]);
	free(ref);
	image_clear(&out);
	image_clear(&in);
}

START_TEST(test_resize_same_bytes_as_full_buffer)
{
	/* Shrinking, enlarging, mixed and same-size axes, odd sizes. */
	static const int cases[][4] = {
	    {41, 29, 13, 10}, {7, 5, 19, 13},   {30, 6, 10, 15},  {6, 30, 15, 10},
	    {1, 1, 5, 3},     {3, 1001, 7, 17}, {1001, 3, 17, 7}, {97, 89, 97, 31},
	    {89, 97, 31, 97}, {2, 2, 1, 1},     {257, 131, 224, 224}, {13, 640, 224, 224},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_resize_matches_reference(cases[i][0], cases[i][1], cases[i][2], cases[i][3]);
}
END_TEST

START_TEST(test_fit_same_bytes_as_full_buffer)
{
	/* Center-crop computes only its window: compare with the reference's
	 * window of the full resize, and stretch with the plain resize. */
	static const int sizes[][2] = {{300, 400}, {401, 257}, {33, 999}, {999, 33}, {100, 100}};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		int sw = sizes[i][0], sh = sizes[i][1], size = 224;
		struct image in = {.width = sw,
		                   .height = sh,
		                   .rgb = random_bytes((size_t)sw * sh * 3)};
		struct image out;
		struct image_geometry g;
		struct igs_error err = {0};

		ck_assert_int_eq(image_fit(&out, &in, size, RESIZE_CENTER_CROP, &g, &err), 0);
		int nw = (int)lround(g.scale_x * sw), nh = (int)lround(g.scale_y * sh);
		uint8_t *ref = ref_resize_region(&in, nw, nh, (int)-g.offset_x, (int)-g.offset_y,
		                                 size, size);
		ck_assert_int_eq(memcmp(out.rgb, ref, (size_t)size * size * 3), 0);
		free(ref);
		image_clear(&out);

		ck_assert_int_eq(image_fit(&out, &in, size, RESIZE_STRETCH, &g, &err), 0);
		ref = ref_resize_region(&in, size, size, 0, 0, size, size);
		ck_assert_int_eq(memcmp(out.rgb, ref, (size_t)size * size * 3), 0);
		free(ref);
		image_clear(&out);
		image_clear(&in);
	}
}
END_TEST

static long peak_rss_kb(void)
{
	struct rusage ru;
	ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
	return ru.ru_maxrss;
}

/*
 * A 10 x 2,000,000 image (60 MB of pixels; the former algorithm's
 * intermediate was 2,000,000 x 224 x 12 bytes = 5.4 GB) stretched and
 * center-cropped to 224: the peak resident size may grow by the result and
 * the scratch (224 x 225 x 12 bytes), not by anything proportional to the
 * source's height.  The bound (64 MB) leaves room for the allocator and
 * sanitizers' shadow memory and is still 80 times below the former need.
 */
START_TEST(test_fit_tall_image_memory_is_bounded)
{
	const int sw = 10, sh = 2000000;
	struct image in = {.width = sw, .height = sh, .rgb = malloc((size_t)sw * sh * 3)};
	ck_assert_ptr_nonnull(in.rgb);
	for (size_t i = 0; i < (size_t)sw * sh * 3; i++)
		in.rgb[i] = (uint8_t)(i * 7 % 251);
	ck_assert_uint_le(image_resize_scratch_bytes(224, 224), (size_t)225 * 224 * 12);

	long before = peak_rss_kb();
	for (int mode = RESIZE_CENTER_CROP; mode <= RESIZE_STRETCH; mode++) {
		struct image out;
		struct igs_error err = {0};
		ck_assert_msg(image_fit(&out, &in, 224, (enum resize_mode)mode, NULL, &err) == 0,
		              "%s", err.message);
		ck_assert_int_eq(out.width, 224);
		ck_assert_int_eq(out.height, 224);
		image_clear(&out);
	}
	long grown_kb = peak_rss_kb() - before;
	ck_assert_msg(grown_kb < 64 * 1024, "peak RSS grew by %ld KB resizing a 10x2000000 image",
	              grown_kb);
	image_clear(&in);
}
END_TEST

/* ---- JPEG scans ----------------------------------------------------------------------------- */

/* A gradient with some texture, so every AC band has coefficients. */
static uint8_t *texture(int w, int h, int comps)
{
	uint8_t *p = malloc((size_t)w * h * comps);
	ck_assert_ptr_nonnull(p);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			for (int c = 0; c < comps; c++)
				p[((size_t)y * w + x) * comps + c] =
				    (uint8_t)((x * (c + 1) + y * 3 + ((x * y) >> 3) * 5) & 0xff);
	return p;
}

/*
 * jpeg_with_scans - encode `pix` (gray when comps == 1, else RGB) with
 * libjpeg.  progressive: one DC scan for all components, then each
 * component's 63 AC coefficients in bands of `band` coefficients, one scan
 * per band (spectral selection only, so the coefficients are the baseline
 * file's).  Otherwise baseline.  Returns malloc'd bytes, *scans the count.
 */
static uint8_t *jpeg_with_scans(const uint8_t *pix, int w, int h, int comps, int progressive,
                                int band, size_t *len, int *scans)
{
	struct jpeg_compress_struct ci;
	struct jpeg_error_mgr jerr;
	unsigned char *mem = NULL;
	unsigned long mlen = 0;
	jpeg_scan_info script[1 + 3 * 63];
	int n = 0;

	ci.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&ci);
	jpeg_mem_dest(&ci, &mem, &mlen);
	ci.image_width = (JDIMENSION)w;
	ci.image_height = (JDIMENSION)h;
	ci.input_components = comps;
	ci.in_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_set_defaults(&ci);
	jpeg_set_quality(&ci, 90, TRUE);
	if (progressive) {
		script[n] = (jpeg_scan_info){.comps_in_scan = comps, .Ss = 0, .Se = 0};
		for (int c = 0; c < comps; c++)
			script[n].component_index[c] = c;
		n++;
		for (int c = 0; c < comps; c++)
			for (int ss = 1; ss <= 63; ss += band) {
				int se = ss + band - 1 > 63 ? 63 : ss + band - 1;
				script[n++] = (jpeg_scan_info){
				    .comps_in_scan = 1, .component_index = {c}, .Ss = ss, .Se = se};
			}
		ci.scan_info = script;
		ci.num_scans = n;
	} else {
		n = 1;
	}
	jpeg_start_compress(&ci, TRUE);
	while (ci.next_scanline < ci.image_height) {
		JSAMPROW row = (JSAMPROW)(pix + (size_t)ci.next_scanline * w * comps);
		jpeg_write_scanlines(&ci, &row, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	uint8_t *out = malloc(mlen);
	memcpy(out, mem, mlen);
	free(mem);
	*len = mlen;
	*scans = n;
	return out;
}

static void expect_scan_refusal(const uint8_t *jpg, size_t len, const char *words)
{
	struct image img;
	struct igs_error err = {0};
	int rc = image_decode(&img, jpg, len, NULL, &err);
	ck_assert_msg(rc == IGS_ERR_IMAGE_DECODE, "expected a refusal, got %d (%s)", rc,
	              err.message);
	ck_assert_ptr_null(img.rgb);
	ck_assert_msg(strstr(err.message, words) != NULL, "message '%s' lacks '%s'", err.message,
	              words);
}

START_TEST(test_jpeg_too_many_scans_refused)
{
	/* 1 + 3 x 63 = 190 scans, a valid file no encoder writes. */
	uint8_t *pix = texture(64, 48, 3);
	size_t len;
	int scans;
	uint8_t *jpg = jpeg_with_scans(pix, 64, 48, 3, 1, 1, &len, &scans);
	ck_assert_int_eq(scans, 190);
	expect_scan_refusal(jpg, len, "190 scans, over the limit of 64 scans");
	free(jpg);
	free(pix);
}
END_TEST

START_TEST(test_jpeg_scans_within_limit_decode_exactly)
{
	/* 64 scans (gray: DC + 63 single-coefficient bands) at 1000x1000 is
	 * within both limits, and decodes to the baseline twin's pixels. */
	const int w = 1000, h = 1000;
	uint8_t *pix = texture(w, h, 1);
	size_t plen, blen;
	int pscans, bscans;
	uint8_t *prog = jpeg_with_scans(pix, w, h, 1, 1, 1, &plen, &pscans);
	uint8_t *base = jpeg_with_scans(pix, w, h, 1, 0, 0, &blen, &bscans);
	struct image a, b;
	struct igs_error err = {0};

	ck_assert_int_eq(pscans, IMAGE_MAX_JPEG_SCANS);
	ck_assert_msg(image_decode(&a, prog, plen, NULL, &err) == 0, "%s", err.message);
	ck_assert_msg(image_decode(&b, base, blen, NULL, &err) == 0, "%s", err.message);
	ck_assert_int_eq(memcmp(a.rgb, b.rgb, (size_t)w * h * 3), 0);
	image_clear(&a);
	image_clear(&b);
	free(prog);
	free(base);
	free(pix);
}
END_TEST

START_TEST(test_jpeg_scans_times_pixels_refused)
{
	/* 64 scans at 4000x4000: 1.024e9 scan-pixels, over the budget of 1e9,
	 * though each limit alone (64 scans, 40 megapixels) is met. */
	const int w = 4000, h = 4000;
	uint8_t *pix = texture(w, h, 1);
	size_t len;
	int scans;
	uint8_t *jpg = jpeg_with_scans(pix, w, h, 1, 1, 1, &len, &scans);
	ck_assert_int_eq(scans, 64);
	expect_scan_refusal(jpg, len, "scan-pixels, over the limit of 1000000000");

	/* The same picture in 8 bands (1 + 8 = 9 scans) is within the budget. */
	free(jpg);
	jpg = jpeg_with_scans(pix, w, h, 1, 1, 8, &len, &scans);
	ck_assert_int_eq(scans, 9);
	struct image img;
	struct igs_error err = {0};
	ck_assert_msg(image_decode(&img, jpg, len, NULL, &err) == 0, "%s", err.message);
	image_clear(&img);
	free(jpg);
	free(pix);
}
END_TEST

START_TEST(test_jpeg_scans_hidden_in_junk_still_counted)
{
	/* Scans after a comment whose bytes look like markers, and fill bytes
	 * before markers, are still counted: splice a COM segment holding
	 * "\xff\xd9" (a fake EOI) right after SOI. */
	uint8_t *pix = texture(64, 48, 3);
	size_t len;
	int scans;
	uint8_t *jpg = jpeg_with_scans(pix, 64, 48, 3, 1, 1, &len, &scans);
	static const uint8_t com[] = {0xff, 0xfe, 0x00, 0x06, 0xff, 0xd9, 0xff, 0xd9};
	uint8_t *spliced = malloc(len + sizeof(com) + 3);
	memcpy(spliced, jpg, 2);
	memcpy(spliced + 2, com, sizeof(com));
	memset(spliced + 2 + sizeof(com), 0xff, 3); /* fill bytes before the next marker */
	memcpy(spliced + 5 + sizeof(com), jpg + 2, len - 2);
	expect_scan_refusal(spliced, len + sizeof(com) + 3, "190 scans");
	free(spliced);
	free(jpg);
	free(pix);
}
END_TEST

/* image_load_file reads regular files only: a FIFO without a writer is
 * refused at once (a blocking open would hang the test until its timeout). */
START_TEST(test_load_file_refuses_fifo)
{
	char dir[] = "/tmp/igs-fifo-XXXXXX", path[64];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/image.jpg", dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	struct image img;
	struct igs_error err = {0};
	ck_assert_int_eq(image_load_file(&img, path, NULL, &err), IGS_ERR_IO);
	ck_assert_ptr_null(img.rgb);
	ck_assert_msg(strstr(err.message, path) && strstr(err.message, "not a regular file"), "%s",
	              err.message);
	unlink(path);
	rmdir(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("image-limits");
	TCase *rs = tcase_create("resize");
	tcase_add_test(rs, test_resize_same_bytes_as_full_buffer);
	tcase_add_test(rs, test_fit_same_bytes_as_full_buffer);
	tcase_add_test(rs, test_fit_tall_image_memory_is_bounded);
	suite_add_tcase(s, rs);

	TCase *jp = tcase_create("jpeg-scans");
	tcase_add_test(jp, test_jpeg_too_many_scans_refused);
	tcase_add_test(jp, test_jpeg_scans_within_limit_decode_exactly);
	tcase_add_test(jp, test_jpeg_scans_times_pixels_refused);
	tcase_add_test(jp, test_jpeg_scans_hidden_in_junk_still_counted);
	tcase_add_test(jp, test_load_file_refuses_fifo);
	suite_add_tcase(s, jp);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
