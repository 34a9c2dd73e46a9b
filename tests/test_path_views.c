/*
 * test_path_views.c - the notebook's views (issue 15, item 5):
 *   - the per-point signed steps s_k against closed forms: the linear toy
 *     (dF/dx = w exactly, so s_k = (x - x') * w at every point) and the
 *     quadratic one (dF/dx_i = a_i x_i + c_i at the point);
 *   - sum_k w_k s_k == the attributions, through every rule, refinement
 *     rounds (the merged rows), adaptive IG and SmoothGrad's mean;
 *   - the step maps and the per-channel deviation heatmaps, PNG-encoded and
 *     decoded with libpng, against a naive loop of heatmap.h's formulas
 *     (median by a full sort, NumPy's definition);
 *   - the options: path_views parsing, defaults, the cap.
 * tests/check_path_views.py checks the CLI's files against NumPy.
 */
#include <check.h>
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "attribution.h"
#include "heatmap.h"
#include "path_views.h"
#include "png_encode.h"
#include "quadrature.h"
#include "request_options.h"

#include "toy_oracle.h"

static const enum quad_rule rules[] = {RULE_GAUSS_LEGENDRE, RULE_RIEMANN_LEFT, RULE_RIEMANN_RIGHT,
                                       RULE_RIEMANN_MIDDLE, RULE_RIEMANN_TRAPEZOID};
static const enum baseline_kind baselines[] = {BASELINE_GRAY, BASELINE_BLACK, BASELINE_WHITE,
                                               BASELINE_BLUR, BASELINE_NOISE};

/* ---- the steps against closed forms ---- */

START_TEST(test_linear_steps_are_difference_times_weights)
{
	struct toy t;
	toy_init(&t, TOY_LINEAR);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	for (size_t r = 0; r < 5; r++)
		for (size_t b = 0; b < 5; b++) {
			struct attr_params ro = opts(rules[r], 7, baselines[b]);
			ro.target = 2;
			ro.path_steps = true;
			struct attr_result res;
			ck_assert_int_eq(attribution_run(&o, x, &ro, 3, NULL, &res, NULL), 0);
			ck_assert_ptr_nonnull(res.path_steps);
			ck_assert_ptr_null(res.path_maps); /* only what was asked */
			ck_assert_int_eq(res.path_count, 7);
			float base[N];
			ck_assert_int_eq(
			    attribution_baseline(baselines[b], 1.5, 3, x, SIZE, base, NULL), 0);
			for (int k = 0; k < res.path_count; k++)
				for (int i = 0; i < N; i++) {
					float want =
					    (float)(((double)x[i] - base[i]) * (float)t.w[2][i]);
					ck_assert_float_eq(res.path_steps[(size_t)k * N + i], want);
				}
			attr_result_clear(&res);
		}
	toy_free(&t);
}
END_TEST

/* The quadratic toy's gradient changes along the path: each row must be
 * its own point's, in alpha order, also after refinement merged rows. */
START_TEST(test_quadratic_steps_follow_the_path)
{
	struct toy t;
	toy_init(&t, TOY_QUADRATIC);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	static const struct {
		enum quad_rule rule;
		int steps;
	} cases[] = {{RULE_GAUSS_LEGENDRE, 6},
	             {RULE_RIEMANN_TRAPEZOID, 9},
	             {RULE_RIEMANN_MIDDLE, 9},
	             {RULE_RIEMANN_LEFT, 8},
	             {RULE_GAUSS_LEGENDRE, 16}};
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		struct attr_params ro = opts(cases[c].rule, cases[c].steps, BASELINE_WHITE);
		ro.path_steps = true;
		ro.path_maps = true; /* both kinds of rows through the merges */
		struct attr_result res;
		ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, NULL), 0);
		ck_assert_int_eq(res.path_count, cases[c].steps);
		double alpha[64], weight[64];
		ck_assert_int_eq(
		    quadrature_nodes(cases[c].rule, cases[c].steps, alpha, weight, NULL), 0);
		for (int k = 0; k < res.path_count; k++) {
			ck_assert_double_eq_tol(res.path[k].alpha, alpha[k], 1e-12);
			for (int px = 0; px < SIZE * SIZE; px++) {
				double m = 0;
				for (int ch = 0; ch < 3; ch++) {
					int i = px * 3 + ch;
					double pt = 255.0 + (float)alpha[k] * (x[i] - 255.0f);
					double g = toy_grad(&t, 0, i, pt);
					double want = (x[i] - 255.0) * g;
					m += fabs(g);
					ck_assert_double_eq_tol(res.path_steps[(size_t)k * N + i],
					                        want, 1e-5 * fabs(want) + 1e-7);
				}
				ck_assert_double_eq_tol(res.path_maps[(size_t)k * SIZE * SIZE + px],
				                        m, 1e-5 * m + 1e-9);
			}
		}
		attr_result_clear(&res);
	}
	toy_free(&t);
}
END_TEST

/* sum_k w_k s_k against attr, to float tolerance. */
static void assert_steps_sum_to_attr(const struct attr_result *res)
{
	double scale = 0;
	for (int i = 0; i < N; i++)
		scale = fmax(scale, fabs(res->attr[i]));
	ck_assert_double_gt(scale, 0);
	for (int i = 0; i < N; i++) {
		double s = 0;
		for (int k = 0; k < res->path_count; k++)
			s += res->path[k].weight * res->path_steps[(size_t)k * N + i];
		ck_assert_msg(fabs(s - res->attr[i]) <= 1e-5 * scale,
		              "value %d: weighted steps %.9g, attribution %.9g", i, s,
		              (double)res->attr[i]);
	}
}

START_TEST(test_weighted_steps_sum_to_attributions)
{
	struct toy t;
	toy_init(&t, TOY_CUBIC);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	/* every rule, plain: up to two refinement rounds merged */
	for (size_t r = 0; r < 5; r++) {
		struct attr_params ro = opts(rules[r], 12, BASELINE_NOISE);
		ro.path_steps = true;
		struct attr_result res;
		ck_assert_int_eq(attribution_run(&o, x, &ro, 5, NULL, &res, NULL), 0);
		assert_steps_sum_to_attr(&res);
		attr_result_clear(&res);
	}
	/* adaptive: rounds until the tolerance */
	struct attr_params ro = opts(RULE_RIEMANN_TRAPEZOID, 4, BASELINE_BLACK);
	ro.tolerance = 1e-3;
	ro.max_steps = 128;
	ro.path_steps = true;
	struct attr_result res;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 8, NULL, &res, NULL), 0);
	ck_assert_int_gt(res.path_count, 4);
	assert_steps_sum_to_attr(&res);
	attr_result_clear(&res);
	/* adaptive Gauss-Legendre: each order replaces the rows (nothing nests) */
	ro = opts(RULE_GAUSS_LEGENDRE, 4, BASELINE_GRAY);
	ro.tolerance = 1e-4;
	ro.max_steps = 64;
	ro.path_steps = true;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 8, NULL, &res, NULL), 0);
	ck_assert_int_eq(res.path_count, 8);
	assert_steps_sum_to_attr(&res);
	attr_result_clear(&res);
	/* SmoothGrad's mean: the steps are the samples' mean steps */
	ro = opts(RULE_GAUSS_LEGENDRE, 5, BASELINE_GRAY);
	ro.smooth = SMOOTH_GRAD;
	ro.smooth_samples = 3;
	ro.smooth_sigma = 0.1;
	ro.path_steps = true;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, NULL), 0);
	assert_steps_sum_to_attr(&res);
	attr_result_clear(&res);
	/* saliency's one step is the gradient; input x gradient's x * gradient */
	struct toy lin;
	toy_init(&lin, TOY_LINEAR);
	toy_oracle(&o, &lin);
	ro = opts(RULE_GAUSS_LEGENDRE, 5, BASELINE_GRAY);
	ro.path_steps = true;
	ro.method = ATTR_SALIENCY;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, NULL), 0);
	ck_assert_int_eq(res.path_count, 1);
	for (int i = 0; i < N; i++)
		ck_assert_float_eq(res.path_steps[i], (float)lin.w[0][i]);
	assert_steps_sum_to_attr(&res);
	attr_result_clear(&res);
	ro.method = ATTR_INPUT_X_GRADIENT;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, NULL), 0);
	for (int i = 0; i < N; i++)
		ck_assert_float_eq(res.path_steps[i], (float)((double)x[i] * (float)lin.w[0][i]));
	attr_result_clear(&res);
	toy_free(&lin);
	toy_free(&t);
}
END_TEST

START_TEST(test_steps_cap)
{
	struct toy t;
	toy_init(&t, TOY_LINEAR);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	struct igs_error err = {0};
	struct attr_result res;
	struct attr_params ro =
	    opts(RULE_RIEMANN_LEFT, ATTR_PATH_STEPS_MAX_POINTS + 1, BASELINE_GRAY);
	ro.path_steps = true;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 8, NULL, &res, &err), IGS_ERR_BAD_OPTION);
	ck_assert_msg(strstr(err.message, "path_views") && strstr(err.message, "at most 128"), "%s",
	              err.message);
	ck_assert_ptr_null(res.attr);
	/* adaptive: max_steps counts */
	ro = opts(RULE_RIEMANN_TRAPEZOID, 8, BASELINE_GRAY);
	ro.tolerance = 0.01;
	ro.max_steps = 512;
	ro.path_steps = true;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 8, NULL, &res, &err), IGS_ERR_BAD_OPTION);
	ck_assert_msg(strstr(err.message, "512"), "%s", err.message);
	/* at the cap: fine; the gray maps keep their own, larger cap */
	ro = opts(RULE_RIEMANN_LEFT, ATTR_PATH_STEPS_MAX_POINTS, BASELINE_GRAY);
	ro.path_steps = true;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 64, NULL, &res, &err), 0);
	attr_result_clear(&res);
	ro = opts(RULE_RIEMANN_LEFT, ATTR_PATH_STEPS_MAX_POINTS + 1, BASELINE_GRAY);
	ro.path_maps = true;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 64, NULL, &res, &err), 0);
	ck_assert_ptr_null(res.path_steps);
	attr_result_clear(&res);
	toy_free(&t);
}
END_TEST

/* ---- the maps against a naive loop of the formulas ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* NumPy's median: the middle value, or the mean of the two middle ones. */
static double naive_median(const double *v, size_t n)
{
	double *s = malloc(n * sizeof *s);
	memcpy(s, v, n * sizeof *s);
	qsort(s, n, sizeof *s, cmp_double);
	double m = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	free(s);
	return m;
}

static uint8_t naive_byte(double v)
{
	v = v < 0 ? 0 : v > 1 ? 1 : v;
	return (uint8_t)floor(255.0 * v + 0.5);
}

/* min-max over all of v[n] */
static void naive_minmax(const double *v, size_t n, uint8_t *out)
{
	double lo = v[0], hi = v[0];
	for (size_t i = 0; i < n; i++) {
		lo = fmin(lo, v[i]);
		hi = fmax(hi, v[i]);
	}
	for (size_t i = 0; i < n; i++)
		out[i] = hi > lo ? naive_byte((v[i] - lo) / (hi - lo)) : 0;
}

/* |v - median| * 2 / max|v - median|, clipped */
static void naive_deviation(const double *v, size_t n, uint8_t *out)
{
	double med = naive_median(v, n), maxdev = 0;
	for (size_t i = 0; i < n; i++)
		maxdev = fmax(maxdev, fabs(v[i] - med));
	for (size_t i = 0; i < n; i++)
		out[i] = maxdev > 0 ? naive_byte(fabs(v[i] - med) * 2 / maxdev) : 0;
}

/* im through png_encode, decoded back by libpng: its pixels (caller frees). */
static uint8_t *png_round_trip(const struct heatmap_image *im)
{
	unsigned char *png;
	size_t len;
	ck_assert_int_eq(
	    png_encode(im->pixels, im->width, im->height, im->channels, &png, &len, NULL), 0);
	png_image d;
	memset(&d, 0, sizeof d);
	d.version = PNG_IMAGE_VERSION;
	ck_assert(png_image_begin_read_from_memory(&d, png, len));
	ck_assert_int_eq((int)d.width, im->width);
	ck_assert_int_eq((int)d.height, im->height);
	ck_assert_int_eq(PNG_IMAGE_PIXEL_CHANNELS(d.format), im->channels);
	d.format = im->channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
	uint8_t *px = malloc(PNG_IMAGE_SIZE(d));
	ck_assert(png_image_finish_read(&d, NULL, px, 0, NULL));
	free(png);
	return px;
}

/* A signed map with ties, a skewed tail and an even count (the median
 * between two values). */
static void signed_values(float *v, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		double u = attribution_splitmix64(&seed) * 0x1.0p-64;
		v[i] = (float)(u < 0.1 ? 0.0 : (u - 0.3) * (u - 0.3) * (u - 0.3) * 1e-3);
	}
}

START_TEST(test_step_maps_decode_to_the_formulas)
{
	enum { S = 24, NV = S * S * 3 };
	float step[NV];
	double v[NV];
	uint8_t want[NV];
	for (uint64_t seed = 1; seed <= 4; seed++) {
		signed_values(step, NV, seed);
		for (int i = 0; i < NV; i++)
			v[i] = step[i];
		static const unsigned views[] = {PATH_VIEW_STEP_NORMALIZED,
		                                 PATH_VIEW_STEP_DEVIATION};
		for (int w = 0; w < 2; w++) {
			struct heatmap_image im;
			ck_assert_int_eq(path_view_render_step(views[w], step, S, &im, NULL), 0);
			ck_assert_int_eq(im.channels, 3);
			uint8_t *got = png_round_trip(&im);
			if (views[w] == PATH_VIEW_STEP_NORMALIZED)
				naive_minmax(v, NV, want);
			else
				naive_deviation(v, NV, want);
			for (int i = 0; i < NV; i++)
				ck_assert_msg(got[i] == want[i],
				              "view %s value %d: %d, expected %d",
				              path_view_name(views[w]), i, got[i], want[i]);
			free(got);
			heatmap_image_clear(&im);
		}
	}
	/* a constant step (x == x' there) draws black, not NaN */
	float flat[NV];
	for (int i = 0; i < NV; i++)
		flat[i] = 0.25f;
	struct heatmap_image im;
	ck_assert_int_eq(path_view_render_step(PATH_VIEW_STEP_DEVIATION, flat, S, &im, NULL), 0);
	for (int i = 0; i < NV; i++)
		ck_assert_int_eq(im.pixels[i], 0);
	heatmap_image_clear(&im);
	ck_assert_int_ne(path_view_render_step(PATH_VIEW_GRADIENT, flat, S, &im, NULL), 0);
}
END_TEST

START_TEST(test_channel_deviation_maps)
{
	enum { S = 17, HW = S * S }; /* odd: the median is one value */
	float a[HW * 3];
	signed_values(a, HW * 3, 9);
	/* channel b constant: black */
	for (int p = 0; p < HW; p++)
		a[3 * p + 2] = -1.5f;
	static const unsigned bits[] = {HEATMAP_CHANNEL_R_DEVIATION, HEATMAP_CHANNEL_G_DEVIATION,
	                                HEATMAP_CHANNEL_B_DEVIATION};
	static const char *const names[] = {"channel_r_deviation", "channel_g_deviation",
	                                    "channel_b_deviation"};
	for (int c = 0; c < 3; c++) {
		ck_assert_str_eq(heatmap_name(bits[c]), names[c]);
		ck_assert_uint_eq(heatmap_bit(names[c], strlen(names[c])), bits[c]);
		ck_assert(!(HEATMAP_DEFAULT & bits[c]));
		ck_assert(HEATMAP_ALL & bits[c]);
		double v[HW];
		uint8_t want[HW];
		for (int p = 0; p < HW; p++)
			v[p] = a[3 * p + c];
		naive_deviation(v, HW, want);
		struct heatmap_image im;
		ck_assert_int_eq(heatmap_render(bits[c], a, S, NULL, &im, NULL), 0);
		ck_assert_int_eq(im.channels, 1);
		uint8_t *got = png_round_trip(&im);
		int bright = 0;
		for (int p = 0; p < HW; p++) {
			ck_assert_msg(got[p] == want[p], "%s pixel %d: %d, expected %d", names[c],
			              p, got[p], want[p]);
			bright += got[p] == 255;
		}
		/* half the largest deviation already saturates: some pixels do,
		 * except in the constant channel */
		if (c < 2)
			ck_assert_int_gt(bright, 0);
		else
			ck_assert_int_eq(bright, 0);
		free(got);
		heatmap_image_clear(&im);
	}
}
END_TEST

/* ---- the options ---- */

START_TEST(test_path_views_options)
{
	struct request_options o;
	struct igs_error err = {0};
	/* default: nothing per point; path_maps alone: the gradient maps only */
	request_options_init(&o);
	ck_assert_uint_eq(request_options_path_views(&o), 0);
	request_options_resolve(&o);
	ck_assert(!o.attr.path_maps && !o.attr.path_steps);
	ck_assert_int_eq(request_options_set(&o, "path_maps", "true", 0, &err), 0);
	request_options_resolve(&o);
	ck_assert(o.attr.path_maps && !o.attr.path_steps);
	/* naming views: those, path_maps or not; resolving twice changes nothing */
	request_options_init(&o);
	ck_assert_int_eq(request_options_set(&o, "path-views", "step_deviation", 0, &err), 0);
	ck_assert_uint_eq(request_options_path_views(&o), PATH_VIEW_STEP_DEVIATION);
	request_options_resolve(&o);
	request_options_resolve(&o);
	ck_assert(!o.attr.path_maps && o.attr.path_steps);
	request_options_init(&o);
	ck_assert_int_eq(request_options_set(&o, "path_views", "Gradient,step_normalized", 0, &err),
	                 0);
	ck_assert_uint_eq(o.path_views, PATH_VIEW_GRADIENT | PATH_VIEW_STEP_NORMALIZED);
	request_options_resolve(&o);
	ck_assert(o.attr.path_maps && o.attr.path_steps);
	ck_assert_int_eq(request_options_set(&o, "path_views", "all", 0, &err), 0);
	ck_assert_uint_eq(o.path_views, PATH_VIEW_ALL);
	/* bad values name themselves and the option */
	static const char *const bad[] = {"gradients", "step_normalized,bogus", "", ",", "none"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		request_options_init(&o);
		ck_assert_int_eq(request_options_set(&o, "path_views", bad[i], 0, &err),
		                 IGS_ERR_BAD_OPTION);
		ck_assert_msg(strstr(err.message, "path_views"), "%s", err.message);
		ck_assert_uint_eq(o.path_views, 0);
	}
	ck_assert_int_eq(request_options_set(&o, "path_views", "step_normalized,bogus", 0, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_msg(strstr(err.message, "'bogus'"), "%s", err.message);
	/* the channel deviation maps by name; not in the default set */
	request_options_init(&o);
	ck_assert_uint_eq(o.heatmaps, HEATMAP_DEFAULT);
	ck_assert_int_eq(
	    request_options_set(&o, "heatmaps", "channel_g_deviation,channel_r", 0, &err), 0);
	ck_assert_uint_eq(o.heatmaps, HEATMAP_CHANNEL_G_DEVIATION | HEATMAP_CHANNEL_R);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("path-views");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_linear_steps_are_difference_times_weights);
	tcase_add_test(tc, test_quadratic_steps_follow_the_path);
	tcase_add_test(tc, test_weighted_steps_sum_to_attributions);
	tcase_add_test(tc, test_steps_cap);
	tcase_add_test(tc, test_step_maps_decode_to_the_formulas);
	tcase_add_test(tc, test_channel_deviation_maps);
	tcase_add_test(tc, test_path_views_options);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
