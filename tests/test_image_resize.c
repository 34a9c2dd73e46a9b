/*
 * test_image_resize.c - resampling and fitting images (decoding: test_image.c).
 *
 * Resampling is checked against naive two-dimensional reference loops, and
 * geometry by resizing linear ramps, whose value at a pixel tells where it
 * came from.
 */
#include "image_test_support.h"

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
	Suite *s = suite_create("image-resize");
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
