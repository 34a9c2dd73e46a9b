/*
 * test_convergence.c - the convergence estimate on a real network: the
 * trained demo shapes model (models/demo), held-out images, gray baseline.
 * The exact integral is stood in for by a 2049-point trapezoid (its own
 * error is about 7e-4, a tenth of the smallest error checked here), and
 * every figure is an attributions' relative L2 distance to it.
 *
 * What must hold (issue 14): the estimate is at least the true error and
 * at most 4 times it; adaptive IG at a tolerance gives attributions within
 * it; and the old stopping rule, completeness alone, is reproduced as the
 * failing case it was: it stops where the true error is over the tolerance.
 */
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attribution.h"
#include "image.h"
#include "model.h"
#include "request_options.h"

#define BATCH 4
#define REFERENCE_POINTS 2049

static const char *const images[] = {"circle_00.png", "square_00.png"};

struct demo {
	struct model *model;
	struct net_workspace *ws;
	struct grad_oracle oracle;
	int size;
	size_t n;
	float *pixels[2], *reference[2];
	int target[2];
};

static struct demo demo;

static double rel_l2(const float *a, const float *ref, size_t n)
{
	double d = 0, f = 0;
	for (size_t i = 0; i < n; i++) {
		d += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
		f += (double)ref[i] * ref[i];
	}
	return sqrt(d / f);
}

static void run(int image, const struct attr_params *p, struct attr_result *r)
{
	struct igs_error err = {0};
	ck_assert_msg(attribution_run(&demo.oracle, demo.pixels[image], p, BATCH, NULL, r, &err) == 0,
	              "%s", err.message);
}

static struct attr_params rule(enum quad_rule q, int steps, int image)
{
	struct attr_params p;
	attr_params_init(&p);
	p.rule = q;
	p.steps = steps;
	p.target = demo.target[image];
	return p;
}

static void demo_open(void)
{
	const char *fixtures = getenv("IGSERVE_FIXTURES");
	char path[4096];
	struct igs_error err = {0};
	snprintf(path, sizeof path, "%s/../../models/demo/shapes-resnet.safetensors",
	         fixtures ? fixtures : "tests/fixtures");
	ck_assert_msg(model_open(&demo.model, path, NULL, &err) == 0, "%s", err.message);
	demo.size = model_get_info(demo.model)->input_size;
	demo.n = (size_t)demo.size * demo.size * 3;
	ck_assert_int_eq(net_workspace_open(&demo.ws, demo.model, BATCH, &err), 0);
	attribution_net_oracle(&demo.oracle, demo.model, demo.ws);
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof path, "%s/shapes/heldout/%s", fixtures ? fixtures : "tests/fixtures",
		         images[i]);
		struct image img = {0};
		ck_assert_msg(image_load_file(&img, path, NULL, &err) == 0, "%s", err.message);
		ck_assert_int_eq(img.width, demo.size);
		demo.pixels[i] = malloc(demo.n * sizeof(float));
		for (size_t k = 0; k < demo.n; k++)
			demo.pixels[i][k] = img.rgb[k];
		image_clear(&img);
		/* the reference, for the top-1 class */
		struct attr_params p = rule(RULE_RIEMANN_TRAPEZOID, REFERENCE_POINTS, 0);
		p.target = -1;
		struct attr_result r;
		run(i, &p, &r);
		demo.target[i] = r.target;
		demo.reference[i] = malloc(demo.n * sizeof(float));
		memcpy(demo.reference[i], r.attr, demo.n * sizeof(float));
		fprintf(stderr, "%s: reference's own estimate %.2e\n", images[i], r.relative_l2);
		ck_assert_double_lt(r.relative_l2, 2e-3);
		attr_result_clear(&r);
	}
}

static void demo_close(void)
{
	for (int i = 0; i < 2; i++) {
		free(demo.pixels[i]);
		free(demo.reference[i]);
	}
	net_workspace_close(&demo.ws);
	model_close(&demo.model);
}

/* Plain runs of every nesting rule: estimate in [1, 4] x the true error. */
START_TEST(test_estimate_against_the_reference)
{
	static const struct {
		enum quad_rule rule;
		int m;
	} cases[] = {{RULE_RIEMANN_TRAPEZOID, 17}, {RULE_RIEMANN_TRAPEZOID, 65},
	             {RULE_RIEMANN_TRAPEZOID, 257}, {RULE_RIEMANN_LEFT, 32},
	             {RULE_RIEMANN_RIGHT, 64},      {RULE_RIEMANN_MIDDLE, 27},
	             {RULE_RIEMANN_MIDDLE, 81}};
	for (int i = 0; i < 2; i++)
		for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
			struct attr_params p = rule(cases[c].rule, cases[c].m, i);
			struct attr_result r;
			run(i, &p, &r);
			double truth = rel_l2(r.attr, demo.reference[i], demo.n);
			fprintf(stderr, "%s %s %d: estimate %.3e true %.3e (x%.2f), completeness %.2e\n",
			        images[i], quadrature_rule_name(p.rule), p.steps, r.relative_l2, truth,
			        r.relative_l2 / truth, r.relative_error);
			ck_assert_str_eq(r.estimator, p.rule == RULE_RIEMANN_TRAPEZOID
			                                  ? ATTR_ESTIMATOR_CELLS
			                                  : ATTR_ESTIMATOR_SUBRULE);
			ck_assert_msg(r.relative_l2 >= truth && r.relative_l2 <= 4 * truth,
			              "%s %s %d: estimate %g, true error %g", images[i],
			              quadrature_rule_name(p.rule), p.steps, r.relative_l2, truth);
			attr_result_clear(&r);
		}
}
END_TEST

/* Adaptive IG with the request defaults (the trapezoid from 15 points):
 * within the tolerance, and the estimate brackets the truth. */
START_TEST(test_adaptive_meets_the_tolerance)
{
	static const double tolerances[] = {0.01, 0.02};
	for (int i = 0; i < 2; i++)
		for (int t = 0; t < 2; t++) {
			struct request_options o;
			request_options_init(&o);
			char tol[32];
			snprintf(tol, sizeof tol, "%g", tolerances[t]);
			ck_assert_int_eq(request_options_set(&o, "tolerance", tol, 0, NULL), 0);
			ck_assert_int_eq(request_options_set(&o, "max_steps", "1024", 0, NULL), 0);
			request_options_resolve(&o);
			ck_assert_int_eq(o.attr.rule, ATTR_ADAPTIVE_RULE);
			ck_assert_int_eq(o.attr.steps, ATTR_ADAPTIVE_START_POINTS);
			o.attr.target = demo.target[i];
			struct attr_result r;
			run(i, &o.attr, &r);
			double truth = rel_l2(r.attr, demo.reference[i], demo.n);
			fprintf(stderr, "%s tolerance %g: %d points, estimate %.3e, true %.3e\n",
			        images[i], tolerances[t], r.steps, r.relative_l2, truth);
			ck_assert(r.converged);
			ck_assert_double_le(r.relative_l2, tolerances[t]);
			ck_assert_double_le(r.relative_error, tolerances[t]);
			ck_assert_double_le(truth, tolerances[t]);
			ck_assert_double_ge(r.relative_l2, truth);
			ck_assert_double_le(r.relative_l2, 4 * truth);
			ck_assert_int_eq(r.evaluations, r.steps); /* nested: nothing twice */
			attr_result_clear(&r);
		}
}
END_TEST

/* Adaptive IG refines the path stretch by stretch, so its rule is a
 * trapezoid over uneven nodes.  Checked against a naive loop: each node's
 * gradient by a forward and backward of its own pixels, weighted by the
 * trapezoid rule over the returned nodes' spacing (half of each
 * neighbouring cell), summed in double. */
START_TEST(test_stretches_make_a_trapezoid)
{
	int uneven = 0;
	for (int i = 0; i < 2; i++) {
		struct request_options o;
		request_options_init(&o);
		ck_assert_int_eq(request_options_set(&o, "tolerance", "0.01", 0, NULL), 0);
		ck_assert_int_eq(request_options_set(&o, "max_steps", "1024", 0, NULL), 0);
		request_options_resolve(&o);
		o.attr.target = demo.target[i];
		struct attr_result r;
		run(i, &o.attr, &r);
		const int m = r.path_count;
		ck_assert_int_eq(m, r.steps);
		/* the baseline end's node is just inside the path; its cell
		 * still starts at 0 */
		ck_assert_double_eq(r.path[0].alpha, ATTR_ADAPTIVE_BASELINE_ALPHA);
		ck_assert_double_eq_tol(r.path[m - 1].alpha, 1.0, 1e-12);
		double *G = calloc(demo.n, sizeof *G);
		float *row = malloc(demo.n * sizeof *row), *grad = malloc(demo.n * sizeof *grad);
		float logits[64], d_logits[64] = {0};
		ck_assert_int_le(demo.oracle.classes, 64);
		d_logits[r.target] = 1.0f;
		double total = 0, h_min = 1, h_max = 0;
		for (int k = 0; k < m; k++) {
			double at = k > 0 ? r.path[k].alpha : 0;
			double left = k > 0 ? at - (k > 1 ? r.path[k - 1].alpha : 0) : 0;
			double right = k < m - 1 ? r.path[k + 1].alpha - at : 0;
			if (k < m - 1) {
				ck_assert_double_gt(right, 0);
				h_min = fmin(h_min, right);
				h_max = fmax(h_max, right);
			}
			double w = (left + right) / 2;
			ck_assert_double_eq_tol(r.path[k].weight, w, 1e-12);
			total += w;
			for (size_t j = 0; j < demo.n; j++)
				row[j] = (float)(r.baseline[j] +
				                 r.path[k].alpha * (demo.pixels[i][j] - r.baseline[j]));
			struct igs_error err = {0};
			ck_assert_int_eq(demo.oracle.forward(demo.oracle.ctx, row, 1, logits, &err), 0);
			ck_assert_int_eq(demo.oracle.backward(demo.oracle.ctx, d_logits, 1, grad, &err),
			                 0);
			for (size_t j = 0; j < demo.n; j++)
				G[j] += w * grad[j];
		}
		ck_assert_double_eq_tol(total, 1.0, 1e-12);
		float *naive = malloc(demo.n * sizeof *naive);
		for (size_t j = 0; j < demo.n; j++)
			naive[j] = (float)(((double)demo.pixels[i][j] - r.baseline[j]) * G[j]);
		double gap = rel_l2(r.attr, naive, demo.n);
		fprintf(stderr, "%s: %d nodes (cells %.4f to %.4f), against the naive loop %.2e\n",
		        images[i], m, h_min, h_max, gap);
		/* float rounding of the two passes (by position and by pixels);
		 * one point's weight wrong by a cell would be 1e-2 */
		ck_assert_double_lt(gap, 1e-3);
		if (h_max > 1.5 * h_min)
			uneven++;
		free(naive);
		free(G);
		free(row);
		free(grad);
		attr_result_clear(&r);
	}
	/* square_00 at 0.01 refines some stretches and not others */
	ck_assert_int_ge(uneven, 1);
}
END_TEST

/* The attribution step (x - x') dF/dx at alpha on image i's straight path
 * from the gray baseline. */
static void step_at(int i, const float *baseline, double alpha, float *step)
{
	float *row = malloc(demo.n * sizeof *row), *grad = malloc(demo.n * sizeof *grad);
	float logits[64], d_logits[64] = {0};
	ck_assert_int_le(demo.oracle.classes, 64);
	d_logits[demo.target[i]] = 1.0f;
	for (size_t j = 0; j < demo.n; j++)
		row[j] = (float)(baseline[j] + alpha * (demo.pixels[i][j] - baseline[j]));
	struct igs_error err = {0};
	ck_assert_int_eq(demo.oracle.forward(demo.oracle.ctx, row, 1, logits, &err), 0);
	ck_assert_int_eq(demo.oracle.backward(demo.oracle.ctx, d_logits, 1, grad, &err), 0);
	for (size_t j = 0; j < demo.n; j++)
		step[j] = (float)(((double)demo.pixels[i][j] - baseline[j]) * grad[j]);
	free(row);
	free(grad);
}

static double distance(const float *a, const float *b, size_t n)
{
	double d = 0;
	for (size_t j = 0; j < n; j++)
		d += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
	return sqrt(d);
}

/* At a constant baseline the network's comparisons tie, so the gradient at
 * alpha = 0 itself is not the limit of the gradients beside it, and a
 * trapezoid that weighs it h/2 errs by a share of it that shrinks only as
 * 1/m.  The adaptive trapezoid takes that node at
 * ATTR_ADAPTIVE_BASELINE_ALPHA instead.  Checked: the attribution step
 * moves much more from 0 to eps than from eps to 2 eps (19x on circle_00;
 * on a torchvision ResNet-50, 10x more than between any two neighbours of
 * a 1025-point path). */
START_TEST(test_baseline_node_is_inside)
{
	const double eps = ATTR_ADAPTIVE_BASELINE_ALPHA;
	float *baseline = malloc(demo.n * sizeof *baseline);
	float *s0 = malloc(demo.n * sizeof *s0), *s1 = malloc(demo.n * sizeof *s1);
	float *s2 = malloc(demo.n * sizeof *s2);
	struct igs_error err = {0};
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(attribution_baseline(BASELINE_GRAY, 0, 0, demo.pixels[i], demo.size,
		                                      baseline, &err),
		                 0);
		step_at(i, baseline, 0.0, s0);
		step_at(i, baseline, eps, s1);
		step_at(i, baseline, 2 * eps, s2);
		double at0 = distance(s0, s1, demo.n), in = distance(s1, s2, demo.n);
		fprintf(stderr, "%s: |s(0) - s(eps)| %.3e, |s(eps) - s(2 eps)| %.3e\n", images[i],
		        at0, in);
		ck_assert_double_gt(at0, 5 * in);
	}
	free(baseline);
	free(s0);
	free(s1);
	free(s2);
}
END_TEST

/* The old rule: refine (trapezoid, from 9 points) until the completeness
 * error alone is within the tolerance.  It can stop with attributions
 * further from the integral than the tolerance (measured: 2.7e-2 at 17
 * points on circle_00 at 0.01); where it does, the estimate says so. */
START_TEST(test_completeness_alone_stops_too_early)
{
	static const double tolerances[] = {0.01, 0.02, 0.05};
	int failures = 0;
	for (int i = 0; i < 2; i++)
		for (int t = 0; t < 3; t++) {
			const double tol = tolerances[t];
			for (int m = 9; m <= 1025; m = 2 * m - 1) {
				struct attr_params p = rule(RULE_RIEMANN_TRAPEZOID, m, i);
				struct attr_result r;
				run(i, &p, &r);
				bool stop = r.relative_error <= tol;
				if (stop) {
					double truth = rel_l2(r.attr, demo.reference[i], demo.n);
					fprintf(stderr,
					        "%s: completeness %.2e <= %g at %d points, true error "
					        "%.2e, estimate %.2e\n",
					        images[i], r.relative_error, tol, m, truth, r.relative_l2);
					if (truth > tol) {
						failures++;
						ck_assert_double_gt(r.relative_l2, tol);
					}
				}
				attr_result_clear(&r);
				if (stop)
					break;
			}
		}
	ck_assert_int_ge(failures, 2);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("convergence");
	TCase *tc = tcase_create("demo-model");
	tcase_add_unchecked_fixture(tc, demo_open, demo_close);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_estimate_against_the_reference);
	tcase_add_test(tc, test_adaptive_meets_the_tolerance);
	tcase_add_test(tc, test_completeness_alone_stops_too_early);
	tcase_add_test(tc, test_stretches_make_a_trapezoid);
	tcase_add_test(tc, test_baseline_node_is_inside);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
