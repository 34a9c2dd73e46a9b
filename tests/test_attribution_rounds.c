/*
 * test_attribution_rounds.c - IG in rounds: adaptive refinement, the
 * convergence estimate, progress, and the best answer so far at a
 * deadline, on the toy models of toy_oracle.h whose integrals are known.
 */
#include <check.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "attribution.h"
#include "quadrature.h"
#include "toy_oracle.h"

/* ---- adaptive IG ---- */

/* The exact attributions of the quadratic toy: its IG integrand is linear
 * in alpha, so the one-point midpoint rule integrates it exactly. */
static void exact_quadratic(const struct grad_oracle *o, const float *x, float *exact)
{
	struct attr_params e = opts(RULE_RIEMANN_MIDDLE, 1, BASELINE_BLACK);
	struct attr_result r;
	ck_assert_int_eq(attribution_run(o, x, &e, 4, NULL, &r, NULL), 0);
	memcpy(exact, r.attr, sizeof(float) * N);
	attr_result_clear(&r);
}

static double rel_l2(const float *a, const float *ref)
{
	double d = 0, f = 0;
	for (int i = 0; i < N; i++) {
		d += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
		f += (double)ref[i] * ref[i];
	}
	return sqrt(d / f);
}

START_TEST(test_adaptive_refines_until_tolerance)
{
	struct toy t;
	toy_init(&t, TOY_QUADRATIC);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N], exact[N];
	test_image(x);
	exact_quadratic(&o, x, exact);
	/* left sums miss the linear integrand by exactly (g(1) - g(0)) / 2m:
	 * the attributions' error halves per doubling */
	struct attr_params ro = opts(RULE_RIEMANN_LEFT, 2, BASELINE_BLACK);
	struct attr_result first;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &first, NULL), 0);
	double e2 = rel_l2(first.attr, exact); /* at m = 2 */
	ck_assert_double_gt(e2, 1e-3);
	/* 2 points nest a 1-point rule: the estimate is there at once; with
	 * the errors aligned it is the true error, but relative to the
	 * computed attributions' norm (smaller than the exact ones': left sums
	 * fall short), so a little above */
	ck_assert_str_eq(first.estimator, ATTR_ESTIMATOR_SUBRULE);
	ck_assert_double_ge(first.relative_l2, e2);
	ck_assert_double_le(first.relative_l2, 1.5 * e2);
	ro.tolerance = e2 / 10.0; /* needs m >= 20 (the error is e2 * 2 / m) */
	struct attr_result res;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, NULL), 0);
	ck_assert(res.adaptive);
	ck_assert(res.converged);
	/* the factor comes from the observed rate (exactly 1/m here) and the
	 * expected points: from 2 points, 2 -> 4 (the default factor) -> 12
	 * (the tolerance is 5x away: x2 and x3 both fall short, costing about
	 * 6.25 m either way, and the tie goes to the larger) -> 24 (x2 is
	 * enough with probability 0.88 and expects 2.2 m, x3 costs 3 m) */
	ck_assert_int_eq(res.steps, 24);
	ck_assert_int_eq(res.evaluations, 24); /* nested: every point evaluated once */
	const int M = res.steps;
	double em = rel_l2(res.attr, exact);
	ck_assert_double_le(em, ro.tolerance);
	ck_assert_double_eq_tol(em, e2 * 2 / M, e2 * 1e-3);
	ck_assert_double_ge(res.relative_l2, em);
	ck_assert_double_le(res.relative_l2, 1.05 * em);
	ck_assert_double_le(res.relative_l2, ro.tolerance);
	ck_assert_double_le(res.relative_error, ro.tolerance);
	/* same table and attributions as a direct M-point run */
	struct attr_params direct = opts(RULE_RIEMANN_LEFT, M, BASELINE_BLACK);
	struct attr_result d;
	ck_assert_int_eq(attribution_run(&o, x, &direct, 4, NULL, &d, NULL), 0);
	ck_assert_int_eq(res.path_count, M);
	for (int k = 0; k < M; k++) {
		ck_assert_double_eq(res.path[k].alpha, d.path[k].alpha);
		ck_assert_double_eq_tol(res.path[k].weight, d.path[k].weight, 1e-17);
		ck_assert_double_eq_tol(res.path[k].output, d.path[k].output, 1e-9);
	}
	for (int i = 0; i < N; i++)
		ck_assert_float_eq_tol(res.attr[i], d.attr[i], 1e-5f * fabsf(d.attr[i]) + 1e-9f);
	/* the plain M-point run nests M/2 (factor 2, not 7): its estimate is
	 * of the same error, from another coarse rule */
	ck_assert_double_ge(d.relative_l2, em);
	ck_assert_double_le(d.relative_l2, 1.05 * em);
	attr_result_clear(&res);
	attr_result_clear(&d);

	/* max_steps stops it short, converged false */
	ro.tolerance = 1e-12;
	ro.max_steps = 16;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, NULL), 0);
	ck_assert(!res.converged);
	ck_assert_int_eq(res.steps, 16);
	attr_result_clear(&res);
	attr_result_clear(&first);
	toy_free(&t);

	/* Gauss-Legendre on the cubic: 1 point is not exact, 2 are; every
	 * order is evaluated afresh (1 + 2 + 4: the 4-point rule confirms the
	 * 2-point one, the estimate being the orders' difference) */
	toy_init(&t, TOY_CUBIC);
	toy_oracle(&o, &t);
	ro = opts(RULE_GAUSS_LEGENDRE, 1, BASELINE_BLACK);
	ro.tolerance = 1e-4;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, NULL), 0);
	ck_assert(res.converged);
	ck_assert_str_eq(res.estimator, ATTR_ESTIMATOR_ORDER);
	ck_assert_int_eq(res.steps, 4);
	ck_assert_int_eq(res.evaluations, 7);
	ck_assert_int_eq(res.path_count, 4);
	ck_assert_double_le(res.relative_l2, 1e-5);
	attr_result_clear(&res);
	toy_free(&t);
}
END_TEST

/*
 * The estimate is conservative and not grossly so where the error is known
 * exactly: on the cubic toy (integrand quadratic in alpha) the rules'
 * errors fall as m^-1 (left, right) or m^-2 (middle, trapezoid), the
 * coarse rule's error is about q or q^2 times the fine one, and the
 * estimate is 0.9 to 4 times the true error.  Gauss-Legendre's 2-point rule is exact there.
 */
START_TEST(test_estimate_brackets_the_true_error)
{
	struct toy t;
	toy_init(&t, TOY_CUBIC);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N], exact[N];
	test_image(x);
	struct attr_params e = opts(RULE_GAUSS_LEGENDRE, 2, BASELINE_GRAY);
	struct attr_result r;
	ck_assert_int_eq(attribution_run(&o, x, &e, 4, NULL, &r, NULL), 0);
	ck_assert_str_eq(r.estimator, ATTR_ESTIMATOR_NONE);
	ck_assert(isnan(r.relative_l2));
	memcpy(exact, r.attr, sizeof exact);
	attr_result_clear(&r);
	static const struct {
		enum quad_rule rule;
		int m;
	} cases[] = {{RULE_RIEMANN_LEFT, 8},      {RULE_RIEMANN_LEFT, 64},
	             {RULE_RIEMANN_RIGHT, 16},    {RULE_RIEMANN_MIDDLE, 9},
	             {RULE_RIEMANN_MIDDLE, 81},   {RULE_RIEMANN_TRAPEZOID, 9},
	             {RULE_RIEMANN_TRAPEZOID, 65}};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		struct attr_params p = opts(cases[c].rule, cases[c].m, BASELINE_GRAY);
		ck_assert_int_eq(attribution_run(&o, x, &p, 4, NULL, &r, NULL), 0);
		double truth = rel_l2(r.attr, exact);
		ck_assert_str_eq(r.estimator, p.rule == RULE_RIEMANN_TRAPEZOID
		                                  ? ATTR_ESTIMATOR_CELLS
		                                  : ATTR_ESTIMATOR_SUBRULE);
		/* first-order rules with perfectly aligned errors (left, right)
		 * can sit a few percent below: the coarse error is a little
		 * under q times the fine one at finite m */
		ck_assert_msg(r.relative_l2 >= 0.9 * truth && r.relative_l2 <= 4.01 * truth,
		              "%s %d: estimate %g, true error %g", quadrature_rule_name(p.rule),
		              p.steps, r.relative_l2, truth);
		ck_assert_int_eq(r.evaluations, p.steps); /* nothing evaluated twice */
		attr_result_clear(&r);
	}
	/* no coarser rule among 10 trapezoid points: no estimate */
	struct attr_params p = opts(RULE_RIEMANN_TRAPEZOID, 10, BASELINE_GRAY);
	ck_assert_int_eq(attribution_run(&o, x, &p, 4, NULL, &r, NULL), 0);
	ck_assert(isnan(r.relative_l2));
	ck_assert_str_eq(r.estimator, ATTR_ESTIMATOR_NONE);
	attr_result_clear(&r);
	toy_free(&t);
}
END_TEST

/* middle (tripling) and trapezoid (2m - 1) refinements converge too */
START_TEST(test_adaptive_middle_and_trapezoid)
{
	struct toy t;
	toy_init(&t, TOY_CUBIC);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	enum quad_rule rr[] = {RULE_RIEMANN_MIDDLE, RULE_RIEMANN_TRAPEZOID};
	for (int r = 0; r < 2; r++) {
		struct attr_params ro = opts(rr[r], 2, BASELINE_GRAY);
		ro.tolerance = 1e-3;
		struct attr_result res;
		ck_assert_int_eq(attribution_run(&o, x, &ro, 4, NULL, &res, NULL), 0);
		ck_assert(res.converged);
		ck_assert_double_le(res.relative_error, 1e-3);
		ck_assert_int_eq(res.evaluations, res.steps);
		ck_assert_int_gt(res.steps, 2);
		for (int k = 1; k < res.path_count; k++)
			ck_assert_double_gt(res.path[k].alpha, res.path[k - 1].alpha);
		double ws = 0;
		for (int k = 0; k < res.path_count; k++)
			ws += res.path[k].weight;
		ck_assert_double_eq_tol(ws, 1.0, 1e-12);
		attr_result_clear(&res);
	}
	toy_free(&t);
}
END_TEST

/* ---- job control ---- */

struct progress_log {
	int calls, last_done, last_total;
	bool monotonic;
};

static void on_progress(void *ctx, const struct job_progress *pr)
{
	struct progress_log *p = ctx;
	const int done = pr->points_done, total = pr->points_total;
	if (done <= p->last_done || done > total || !(pr->relative_error >= 0))
		p->monotonic = false;
	p->calls++;
	p->last_done = done;
	p->last_total = total;
}

START_TEST(test_progress_deadline_cancel)
{
	struct toy t;
	toy_init(&t, TOY_QUADRATIC);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	struct attr_params ro = opts(RULE_GAUSS_LEGENDRE, 10, BASELINE_GRAY);
	struct progress_log log = {.monotonic = true};
	struct job_control job = {.progress = on_progress, .progress_ctx = &log};
	atomic_init(&job.cancelled, false);
	struct attr_result res;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, &job, &res, NULL), 0);
	ck_assert_int_eq(log.calls, 3); /* 4 + 4 + 2 */
	ck_assert_int_eq(log.last_done, 10);
	ck_assert_int_eq(log.last_total, 10);
	ck_assert(log.monotonic);
	attr_result_clear(&res);

	/* deadline passes during the run: 504, nothing returned */
	struct igs_error err = {0};
	t.job = &job;
	t.forward_calls = 0;
	t.expire_after = 2;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, &job, &res, &err), IGS_ERR_DEADLINE);
	ck_assert_ptr_null(res.attr);
	ck_assert_int_eq(t.forward_calls, 2);

	/* adaptive: the deadline in round 2 returns round 1's result */
	job.deadline = 0;
	t.forward_calls = 0;
	t.expire_after = 1 + 3 + 1; /* (x, x'), three chunks of round 1, one of round 2 */
	ro.tolerance = 1e-12;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, &job, &res, &err), 0);
	ck_assert(res.deadline_hit);
	ck_assert(!res.converged);
	ck_assert_int_eq(res.steps, 10);
	ck_assert_int_eq(res.path_count, 10);
	attr_result_clear(&res);

	/* plain nested IG: the deadline in the last round returns the rule
	 * nested in it (11 trapezoid points hold 6), not converged */
	struct attr_params tr = opts(RULE_RIEMANN_TRAPEZOID, 11, BASELINE_GRAY);
	job.deadline = 0;
	t.forward_calls = 0;
	t.expire_after = 1 + 2 + 1; /* (x, x'), the 6 points in two chunks, one more */
	ck_assert_int_eq(attribution_run(&o, x, &tr, 4, &job, &res, &err), 0);
	ck_assert(res.deadline_hit);
	ck_assert(!res.converged);
	ck_assert_int_eq(res.steps, 6);
	ck_assert_int_eq(res.path_count, 6);
	struct attr_result six;
	struct attr_params tr6 = opts(RULE_RIEMANN_TRAPEZOID, 6, BASELINE_GRAY);
	ck_assert_int_eq(attribution_run(&o, x, &tr6, 4, NULL, &six, NULL), 0);
	for (int i = 0; i < N; i++)
		ck_assert_float_eq_tol(res.attr[i], six.attr[i], 1e-5f * fabsf(six.attr[i]) + 1e-9f);
	attr_result_clear(&six);
	attr_result_clear(&res);
	/* ... and a deadline in its first round leaves nothing to answer */
	job.deadline = 0;
	t.forward_calls = 0;
	t.expire_after = 2;
	ck_assert_int_eq(attribution_run(&o, x, &tr, 4, &job, &res, &err), IGS_ERR_DEADLINE);
	ck_assert_ptr_null(res.attr);

	/* SmoothGrad: the samples finished before the deadline, averaged */
	struct attr_params sg = opts(RULE_GAUSS_LEGENDRE, 4, BASELINE_GRAY);
	sg.smooth = SMOOTH_GRAD;
	sg.smooth_samples = 5;
	sg.smooth_sigma = 0.1;
	job.deadline = 0;
	t.forward_calls = 0;
	t.expire_after = 1 + 2; /* (x, x'), then two samples of one chunk each */
	ck_assert_int_eq(attribution_run(&o, x, &sg, 4, &job, &res, &err), 0);
	ck_assert(res.deadline_hit);
	ck_assert(!res.converged);
	ck_assert_int_eq(res.samples, 2);
	struct attr_params sg2 = sg;
	sg2.smooth_samples = 2;
	struct attr_result two;
	ck_assert_int_eq(attribution_run(&o, x, &sg2, 4, NULL, &two, NULL), 0);
	ck_assert_int_eq(two.samples, 2);
	for (int i = 0; i < N; i++)
		ck_assert_float_eq_tol(res.attr[i], two.attr[i], 1e-5f * fabsf(two.attr[i]) + 1e-9f);
	for (int k = 0; k < 4; k++)
		ck_assert_double_eq_tol(res.path[k].output, two.path[k].output,
		                        1e-9 * fabs(two.path[k].output) + 1e-12);
	attr_result_clear(&two);
	attr_result_clear(&res);

	/* cancellation */
	job.deadline = 0;
	t.expire_after = 0;
	t.forward_calls = 0;
	t.cancel_after = 2;
	ro.tolerance = 0;
	ck_assert_int_eq(attribution_run(&o, x, &ro, 4, &job, &res, &err), IGS_ERR_CANCELLED);
	toy_free(&t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("attribution-rounds");
	TCase *tc = tcase_create("rounds");
	tcase_add_test(tc, test_adaptive_refines_until_tolerance);
	tcase_add_test(tc, test_estimate_brackets_the_true_error);
	tcase_add_test(tc, test_adaptive_middle_and_trapezoid);
	tcase_add_test(tc, test_progress_deadline_cancel);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
