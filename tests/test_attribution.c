/*
 * test_attribution.c - the IG / saliency / SmoothGrad core against models
 * whose answers are known in closed form:
 *   linear     F_j(x) = w_j . x + b_j        IG gives (x - x') * w_t exactly
 *   quadratic  F_0(x) = 1/2 sum a_i x_i^2 + c . x   the IG integrand is
 *              linear in alpha, so every rule of degree >= 1 is exact and
 *              left/right miss by exactly -/+ d'Ad / 2m
 *   cubic      F_0(x) = sum e_i x_i^3         integrand quadratic in alpha
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attribution.h"
#include "quadrature.h"

#include "toy_oracle.h"


static const enum quad_rule rules[] = {RULE_GAUSS_LEGENDRE, RULE_RIEMANN_LEFT, RULE_RIEMANN_RIGHT,
                                       RULE_RIEMANN_MIDDLE, RULE_RIEMANN_TRAPEZOID};
static const enum baseline_kind baselines[] = {BASELINE_GRAY, BASELINE_BLACK, BASELINE_WHITE,
                                               BASELINE_BLUR, BASELINE_NOISE};

/* ---- linear model: attr == (x - x') * w_t ---- */

START_TEST(test_linear_model_is_exact_for_every_rule_and_baseline)
{
	struct toy t;
	toy_init(&t, TOY_LINEAR);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	for (size_t r = 0; r < 5; r++)
		for (size_t bl = 0; bl < 5; bl++) {
			struct attr_params ro = opts(rules[r], 7, baselines[bl]);
			ro.target = 1;
			struct attr_result res;
			ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, NULL), 0);
			float base[N];
			ck_assert_int_eq(
			    attribution_baseline(baselines[bl], 1.5, 3, x, SIZE, base, NULL), 0);
			for (int i = 0; i < N; i++) {
				float expect = (float)(((double)x[i] - base[i]) * (float)t.w[1][i]);
				ck_assert_float_eq_tol(res.attr[i], expect,
				                       1e-6f * fabsf(expect) + 1e-30f);
				ck_assert_float_eq(res.baseline[i], base[i]);
			}
			ck_assert_double_lt(res.relative_error, 1e-5);
			ck_assert_int_eq(res.target, 1);
			ck_assert_int_eq(res.steps, 7);
			ck_assert_int_eq(res.path_count, 7);
			attr_result_clear(&res);
		}
	/* Weights of riemann_left are exact binary fractions: bit-exact. */
	struct attr_params ro = opts(RULE_RIEMANN_LEFT, 4, BASELINE_BLACK);
	struct attr_result res;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 2, NULL, &res, NULL), 0);
	for (int i = 0; i < N; i++)
		ck_assert_float_eq(res.attr[i], (float)((double)x[i] * (float)t.w[0][i]));
	attr_result_clear(&res);
	toy_free(&t);
}
END_TEST

/* ---- quadratic and cubic: completeness within the rule's error ---- */

START_TEST(test_quadratic_completeness_within_rule_error)
{
	struct toy t;
	toy_init(&t, TOY_QUADRATIC);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	for (size_t r = 0; r < 5; r++) {
		int m = 5;
		struct attr_params ro = opts(rules[r], m, BASELINE_GRAY);
		struct attr_result res;
		ck_assert_int_eq(attribution_run(&o, x, &ro, 3, NULL, &res, NULL), 0);
		double xd[N], bd[N], dad = 0;
		for (int i = 0; i < N; i++) {
			xd[i] = x[i];
			bd[i] = 127.5;
			dad += t.a[i] * (xd[i] - bd[i]) * (xd[i] - bd[i]);
		}
		double fi = toy_f(&t, 0, xd), fb = toy_f(&t, 0, bd);
		ck_assert_double_eq_tol(res.f_input, fi, 1e-4 * fabs(fi));
		ck_assert_double_eq_tol(res.f_baseline, fb, 1e-4 * fabs(fb));
		/* left sums (k/m) miss d'Ad/2 by d'Ad/2m, right overshoot it */
		double expect_delta = rules[r] == RULE_RIEMANN_LEFT    ? -dad / (2 * m)
		                      : rules[r] == RULE_RIEMANN_RIGHT ? dad / (2 * m)
		                                                       : 0.0;
		ck_assert_msg(fabs(res.delta - expect_delta) < 1e-5 * fabs(fi - fb) + 1e-4,
		              "rule %d delta %g expected %g", (int)rules[r], res.delta,
		              expect_delta);
		if (expect_delta != 0.0)
			ck_assert_double_gt(fabs(res.delta), 1e-3);
		/* the path table integrates to the same sum */
		double s = 0;
		for (int k = 0; k < res.path_count; k++)
			s += res.path[k].weight * res.path[k].path_derivative;
		ck_assert_double_eq_tol(s, res.sum, 1e-5 * fabs(res.sum) + 1e-6);
		attr_result_clear(&res);
	}
	toy_free(&t);
}
END_TEST

START_TEST(test_cubic_gauss_legendre_exact_midpoint_not)
{
	struct toy t;
	toy_init(&t, TOY_CUBIC);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	struct attr_params ro = opts(RULE_GAUSS_LEGENDRE, 2, BASELINE_BLACK);
	struct attr_result res;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 8, NULL, &res, NULL), 0);
	ck_assert_double_lt(res.relative_error, 1e-5);
	attr_result_clear(&res);
	/* midpoint on the integrand 3 e d^3 a^2: error -sum(e d^3)/(4 m^2) */
	ro = opts(RULE_RIEMANN_MIDDLE, 2, BASELINE_BLACK);
	ck_assert_int_eq(attribution_run(&o, x, &ro, 8, NULL, &res, NULL), 0);
	double ed3 = 0;
	for (int i = 0; i < N; i++)
		ed3 += t.e[i] * (double)x[i] * x[i] * x[i];
	ck_assert_double_eq_tol(res.delta, -ed3 / 16.0, 1e-4 * fabs(ed3));
	ck_assert_double_gt(res.relative_error, 1e-3);
	attr_result_clear(&res);
	toy_free(&t);
}
END_TEST

/* ---- the path table ---- */

START_TEST(test_path_table_matches_direct_evaluation)
{
	struct toy t;
	toy_init(&t, TOY_QUADRATIC);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	struct attr_params ro = opts(RULE_GAUSS_LEGENDRE, 6, BASELINE_WHITE);
	ro.path_maps = true;
	struct attr_result res;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, NULL), 0);
	double alpha[6], weight[6];
	ck_assert_int_eq(quadrature_nodes(RULE_GAUSS_LEGENDRE, 6, alpha, weight, NULL), 0);
	ck_assert_ptr_nonnull(res.path_maps);
	for (int k = 0; k < 6; k++) {
		const struct attr_point *p = &res.path[k];
		ck_assert_double_eq(p->alpha, alpha[k]);
		ck_assert_double_eq(p->weight, weight[k]);
		double pt[N], gs = 0, pd = 0;
		for (int i = 0; i < N; i++)
			pt[i] = 255.0 + (float)alpha[k] * (x[i] - 255.0f);
		for (int i = 0; i < N; i++) {
			double g = toy_grad(&t, 0, i, pt[i]);
			gs += g;
			pd += (x[i] - 255.0) * g;
		}
		ck_assert_double_eq_tol(p->output, toy_f(&t, 0, pt), 1e-4 * fabs(p->output) + 1e-4);
		ck_assert_double_eq_tol(p->gradient_sum, gs, 1e-5 * fabs(gs) + 1e-6);
		ck_assert_double_eq_tol(p->path_derivative, pd, 1e-5 * fabs(pd) + 1e-6);
		for (int px = 0; px < SIZE * SIZE; px++) {
			double m = 0;
			for (int c = 0; c < 3; c++)
				m += fabs(toy_grad(&t, 0, px * 3 + c, pt[px * 3 + c]));
			ck_assert_double_eq_tol(res.path_maps[k * SIZE * SIZE + px], m,
			                        1e-5 * m + 1e-9);
		}
	}
	attr_result_clear(&res);
	toy_free(&t);
}
END_TEST

/* Chunk size changes memory, never the numbers; rows per call <= batch. */
START_TEST(test_chunking_does_not_change_results)
{
	struct toy t;
	toy_init(&t, TOY_QUADRATIC);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	struct attr_params ro = opts(RULE_RIEMANN_TRAPEZOID, 11, BASELINE_NOISE);
	struct attr_result ref;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 1, NULL, &ref, NULL), 0);
	ck_assert_int_eq(t.max_rows_seen, 1);
	static const int batches[] = {2, 3, 7, 11, 64};
	for (size_t b = 0; b < 5; b++) {
		t.max_rows_seen = 0;
		t.forward_calls = 0;
		struct attr_result res;
		ck_assert_int_eq(attribution_run(&o, x, &ro, batches[b], NULL, &res, NULL), 0);
		ck_assert_int_le(t.max_rows_seen, batches[b]);
		/* one forward for (x, x'), then two rounds: the nested 6-point
		 * trapezoid and the 5 points that refine it to 11 */
		int nb = batches[b];
		ck_assert_int_eq(t.forward_calls, 1 + (6 + nb - 1) / nb + (5 + nb - 1) / nb);
		ck_assert_mem_eq(res.attr, ref.attr, sizeof(float) * N);
		ck_assert_double_eq(res.sum, ref.sum);
		attr_result_clear(&res);
	}
	attr_result_clear(&ref);
	toy_free(&t);
}
END_TEST

/* ---- baselines ---- */

START_TEST(test_baselines)
{
	float x[N], out[N], out2[N];
	test_image(x);
	ck_assert_int_eq(attribution_baseline(BASELINE_GRAY, 0, 0, x, SIZE, out, NULL), 0);
	ck_assert_float_eq(out[5], 127.5f);
	ck_assert_int_eq(attribution_baseline(BASELINE_BLACK, 0, 0, x, SIZE, out, NULL), 0);
	ck_assert_float_eq(out[N - 1], 0.0f);
	ck_assert_int_eq(attribution_baseline(BASELINE_WHITE, 0, 0, x, SIZE, out, NULL), 0);
	ck_assert_float_eq(out[0], 255.0f);

	/* splitmix64 known answer (seed 0: first output 0xE220A8397B1DCDAF) */
	uint64_t st = 0;
	ck_assert_uint_eq(attribution_splitmix64(&st), 0xE220A8397B1DCDAFull);
	/* noise: the documented draw, deterministic in the seed */
	ck_assert_int_eq(attribution_baseline(BASELINE_NOISE, 0, 99, x, SIZE, out, NULL), 0);
	st = 99;
	for (int i = 0; i < N; i++) {
		float u = (float)((double)(attribution_splitmix64(&st) >> 11) * 0x1.0p-53 * 255.0);
		ck_assert_float_eq(out[i], u);
		ck_assert(out[i] >= 0 && out[i] < 255);
	}
	ck_assert_int_eq(attribution_baseline(BASELINE_NOISE, 0, 100, x, SIZE, out2, NULL), 0);
	ck_assert(memcmp(out, out2, sizeof out) != 0);

	/* blur: against a direct 2-D convolution with clamped edges */
	double sigma = 1.3;
	ck_assert_int_eq(attribution_baseline(BASELINE_BLUR, sigma, 0, x, SIZE, out, NULL), 0);
	int rad = (int)ceil(3 * sigma);
	double norm = 0;
	for (int d = -rad; d <= rad; d++)
		norm += exp(-d * d / (2 * sigma * sigma));
	for (int y = 0; y < SIZE; y++)
		for (int xx = 0; xx < SIZE; xx++)
			for (int c = 0; c < 3; c++) {
				double s = 0;
				for (int dy = -rad; dy <= rad; dy++)
					for (int dx = -rad; dx <= rad; dx++) {
						int yy = y + dy < 0       ? 0
						         : y + dy >= SIZE ? SIZE - 1
						                          : y + dy;
						int xc = xx + dx < 0       ? 0
						         : xx + dx >= SIZE ? SIZE - 1
						                           : xx + dx;
						s += exp(-(dx * dx + dy * dy) /
						         (2 * sigma * sigma)) /
						     (norm * norm) * x[(yy * SIZE + xc) * 3 + c];
					}
				ck_assert_double_eq_tol(out[(y * SIZE + xx) * 3 + c], s, 1e-3);
			}
	struct igs_error err = {0};
	ck_assert_int_eq(attribution_baseline(BASELINE_BLUR, 0, 0, x, SIZE, out, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_str_eq(err.message, "blur_sigma must be in (0, 100], got 0");
}
END_TEST

/* ---- saliency, input x gradient, output = probability ---- */

START_TEST(test_saliency_and_input_x_gradient)
{
	struct toy t;
	toy_init(&t, TOY_LINEAR);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	struct attr_params ro = opts(RULE_GAUSS_LEGENDRE, 50, BASELINE_GRAY);
	ro.target = 2;
	ro.method = ATTR_SALIENCY;
	struct attr_result res;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, NULL), 0);
	ck_assert_int_eq(res.evaluations, 1);
	for (int i = 0; i < N; i++)
		ck_assert_float_eq(res.attr[i], (float)t.w[2][i]);
	attr_result_clear(&res);
	ro.method = ATTR_INPUT_X_GRADIENT;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, NULL), 0);
	for (int i = 0; i < N; i++)
		ck_assert_float_eq_tol(res.attr[i], x[i] * (float)t.w[2][i], 1e-6);
	/* x * grad is complete against the black baseline for a linear model */
	ck_assert_double_lt(res.relative_error, 1e-5);
	ck_assert_float_eq(res.baseline[0], 0.0f);
	attr_result_clear(&res);
	toy_free(&t);
}
END_TEST

START_TEST(test_output_probability_gradient)
{
	struct toy t;
	toy_init(&t, TOY_LINEAR);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	struct attr_params ro = opts(RULE_GAUSS_LEGENDRE, 1, BASELINE_GRAY);
	ro.output = OUTPUT_PROBABILITY;
	ro.method = ATTR_SALIENCY;
	ro.target = 1;
	struct attr_result res;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 2, NULL, &res, NULL), 0);
	double xd[N], z[CLASSES], p[CLASSES], zs = 0;
	for (int i = 0; i < N; i++)
		xd[i] = x[i];
	for (int j = 0; j < CLASSES; j++)
		zs += exp(z[j] = toy_f(&t, j, xd));
	for (int j = 0; j < CLASSES; j++)
		p[j] = exp(z[j]) / zs;
	ck_assert_double_eq_tol(res.f_input, p[1], 1e-5);
	/* d p_1/dx = p_1 (w_1 - sum_j p_j w_j) */
	for (int i = 0; i < N; i++) {
		double g = t.w[1][i];
		for (int j = 0; j < CLASSES; j++)
			g -= p[j] * t.w[j][i];
		g *= p[1];
		ck_assert_double_eq_tol(res.attr[i], g, 1e-6 * fabs(g) + 1e-9);
	}
	attr_result_clear(&res);
	/* IG on the probability: complete with enough Gauss-Legendre points */
	ro.method = ATTR_INTEGRATED_GRADIENTS;
	ro.steps = 32;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 8, NULL, &res, NULL), 0);
	ck_assert_double_lt(res.relative_error, 1e-3);
	ck_assert_double_eq_tol(res.path[31].output, p[1], 0.05);
	attr_result_clear(&res);
	toy_free(&t);
}
END_TEST

/* ---- SmoothGrad ---- */

START_TEST(test_smoothgrad_deterministic_and_scaled)
{
	struct toy t;
	toy_init(&t, TOY_QUADRATIC);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	struct attr_params ro = opts(RULE_GAUSS_LEGENDRE, 4, BASELINE_GRAY);
	ro.method = ATTR_SALIENCY;
	ro.smooth = SMOOTH_VARGRAD;
	ro.smooth_samples = 200;
	ro.smooth_sigma = 0.1;
	struct attr_result a, b, c;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 16, NULL, &a, NULL), 0);
	ck_assert_int_eq(a.evaluations, 200);
	ck_assert_int_eq(attribution_run(&o, x, &ro, 5, NULL, &b, NULL), 0);
	ck_assert_mem_eq(a.attr, b.attr, sizeof(float) * N); /* same seed, any chunking */
	ro.seed = 4;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 16, NULL, &c, NULL), 0);
	ck_assert(memcmp(a.attr, c.attr, sizeof(float) * N) != 0);
	/* saliency of the quadratic: a_i (x_i + n) + c_i, so its variance over
	 * the noise is a_i^2 (0.1 * 255)^2; the mean ratio is 1 up to sampling */
	double ratio = 0;
	for (int i = 0; i < N; i++)
		ratio += a.attr[i] / (t.a[i] * t.a[i] * 25.5 * 25.5);
	ratio /= N;
	ck_assert_double_eq_tol(ratio, 1.0, 0.05);
	attr_result_clear(&a);
	attr_result_clear(&b);
	attr_result_clear(&c);

	/* sigma 0: smoothgrad = the plain method, smoothgrad_sq = its square,
	 * vargrad = 0 */
	ro.smooth_sigma = 0;
	ro.smooth_samples = 3;
	ro.method = ATTR_INTEGRATED_GRADIENTS;
	struct attr_result plain, sg, sq, var;
	struct attr_params p = ro;
	p.smooth = SMOOTH_NONE;
	ck_assert_int_eq(attribution_run(&o, x, &p, 4, NULL, &plain, NULL), 0);
	ro.smooth = SMOOTH_GRAD;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &sg, NULL), 0);
	ro.smooth = SMOOTH_GRAD_SQ;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &sq, NULL), 0);
	ro.smooth = SMOOTH_VARGRAD;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &var, NULL), 0);
	ck_assert_int_eq(sg.evaluations, 12);
	for (int i = 0; i < N; i++) {
		ck_assert_float_eq_tol(sg.attr[i], plain.attr[i], 1e-6f * fabsf(plain.attr[i]));
		ck_assert_float_eq_tol(sq.attr[i], plain.attr[i] * plain.attr[i],
		                       1e-5f * plain.attr[i] * plain.attr[i] + 1e-12f);
		ck_assert_float_eq_tol(var.attr[i], 0.0f, 1e-6f * plain.attr[i] * plain.attr[i]);
	}
	attr_result_clear(&plain);
	attr_result_clear(&sg);
	attr_result_clear(&sq);
	attr_result_clear(&var);
	toy_free(&t);
}
END_TEST

START_TEST(test_bad_options_and_oracle_errors)
{
	struct toy t;
	toy_init(&t, TOY_LINEAR);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	struct igs_error err = {0};
	struct attr_result res;
	struct attr_params ro = opts(RULE_GAUSS_LEGENDRE, 4, BASELINE_GRAY);
	ro.target = CLASSES;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, &err), IGS_ERR_BAD_OPTION);
	ck_assert_str_eq(err.message, "target 3 is out of range 0..2");
	ro = opts(RULE_GAUSS_LEGENDRE, 0, BASELINE_GRAY);
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, &err), IGS_ERR_BAD_OPTION);
	ro = opts(RULE_GAUSS_LEGENDRE, 4, BASELINE_GRAY);
	ro.smooth = SMOOTH_GRAD;
	ro.smooth_samples = 0;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, &err), IGS_ERR_BAD_OPTION);
	ro.smooth_samples = 4;
	ro.tolerance = 0.01;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, &err), IGS_ERR_BAD_OPTION);
	ro = opts(RULE_GAUSS_LEGENDRE, 1000, BASELINE_GRAY);
	ro.path_maps = true;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, &err), IGS_ERR_BAD_OPTION);
	ro = opts(RULE_GAUSS_LEGENDRE, 4, BASELINE_BLUR);
	ro.blur_sigma = -1;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, &err), IGS_ERR_BAD_OPTION);
	ro = opts(RULE_GAUSS_LEGENDRE, 4, BASELINE_GRAY);
	t.fail_forward_at = 2;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, &err), IGS_ERR_INTERNAL);
	ck_assert_str_eq(err.message, "toy forward failed on purpose");
	ck_assert_ptr_null(res.attr);
	toy_free(&t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("attribution");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_linear_model_is_exact_for_every_rule_and_baseline);
	tcase_add_test(tc, test_quadratic_completeness_within_rule_error);
	tcase_add_test(tc, test_cubic_gauss_legendre_exact_midpoint_not);
	tcase_add_test(tc, test_path_table_matches_direct_evaluation);
	tcase_add_test(tc, test_chunking_does_not_change_results);
	tcase_add_test(tc, test_baselines);
	tcase_add_test(tc, test_saliency_and_input_x_gradient);
	tcase_add_test(tc, test_output_probability_gradient);
	tcase_add_test(tc, test_smoothgrad_deterministic_and_scaled);
	tcase_add_test(tc, test_bad_options_and_oracle_errors);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
