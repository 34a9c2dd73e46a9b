/* test_quadrature.c - the IG rules: the contract's formulas, exactness on
 * polynomials of each rule's degree, and the nested refinement plan. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "quadrature.h"

static const enum quad_rule all_rules[] = {RULE_GAUSS_LEGENDRE, RULE_RIEMANN_LEFT,
                                           RULE_RIEMANN_RIGHT, RULE_RIEMANN_MIDDLE,
                                           RULE_RIEMANN_TRAPEZOID};

/* sum_k w_k a_k^d, with a long-double accumulator */
static double integrate_monomial(const double *a, const double *w, int m, int d)
{
	long double s = 0;
	for (int k = 0; k < m; k++)
		s += (long double)w[k] * powl(a[k], d);
	return (double)s;
}

START_TEST(test_gauss_legendre_small_orders_match_closed_forms)
{
	double a[3], w[3];
	ck_assert_int_eq(quadrature_nodes(RULE_GAUSS_LEGENDRE, 1, a, w, NULL), 0);
	ck_assert_double_eq_tol(a[0], 0.5, 1e-15);
	ck_assert_double_eq_tol(w[0], 1.0, 1e-15);
	ck_assert_int_eq(quadrature_nodes(RULE_GAUSS_LEGENDRE, 2, a, w, NULL), 0);
	ck_assert_double_eq_tol(a[0], 0.5 * (1 - 1 / sqrt(3.0)), 1e-15);
	ck_assert_double_eq_tol(a[1], 0.5 * (1 + 1 / sqrt(3.0)), 1e-15);
	ck_assert_double_eq_tol(w[0], 0.5, 1e-15);
	ck_assert_double_eq_tol(w[1], 0.5, 1e-15);
	ck_assert_int_eq(quadrature_nodes(RULE_GAUSS_LEGENDRE, 3, a, w, NULL), 0);
	ck_assert_double_eq_tol(a[0], 0.5 * (1 - sqrt(0.6)), 1e-15);
	ck_assert_double_eq(a[1], 0.5);
	ck_assert_double_eq_tol(a[2], 0.5 * (1 + sqrt(0.6)), 1e-15);
	ck_assert_double_eq_tol(w[0], 5.0 / 18.0, 1e-15);
	ck_assert_double_eq_tol(w[1], 8.0 / 18.0, 1e-15);
	ck_assert_double_eq_tol(w[2], 5.0 / 18.0, 1e-15);
}
END_TEST

START_TEST(test_riemann_rules_follow_the_contract)
{
	double a[8], w[8];
	int m = 8;
	ck_assert_int_eq(quadrature_nodes(RULE_RIEMANN_LEFT, m, a, w, NULL), 0);
	for (int k = 0; k < m; k++) {
		ck_assert_double_eq(a[k], (double)k / m);
		ck_assert_double_eq(w[k], 1.0 / m);
	}
	ck_assert_int_eq(quadrature_nodes(RULE_RIEMANN_RIGHT, m, a, w, NULL), 0);
	for (int k = 0; k < m; k++)
		ck_assert_double_eq(a[k], (k + 1.0) / m);
	ck_assert_int_eq(quadrature_nodes(RULE_RIEMANN_MIDDLE, m, a, w, NULL), 0);
	for (int k = 0; k < m; k++)
		ck_assert_double_eq(a[k], (k + 0.5) / m);
	ck_assert_int_eq(quadrature_nodes(RULE_RIEMANN_TRAPEZOID, m, a, w, NULL), 0);
	for (int k = 0; k < m; k++) {
		ck_assert_double_eq(a[k], (double)k / (m - 1));
		double expect = (k == 0 || k == m - 1) ? 0.5 / (m - 1) : 1.0 / (m - 1);
		ck_assert_double_eq(w[k], expect);
	}
}
END_TEST

/* Every rule integrates monomials up to its degree exactly, and (for small
 * m, where it is not exact by accident) misses degree + 1. */
START_TEST(test_exact_on_polynomials_of_their_degree)
{
	static const int ms[] = {2, 3, 4, 5, 8, 13, 20};
	double a[20], w[20];
	for (size_t r = 0; r < sizeof all_rules / sizeof *all_rules; r++) {
		for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) {
			int m = ms[i];
			enum quad_rule rule = all_rules[r];
			ck_assert_int_eq(quadrature_nodes(rule, m, a, w, NULL), 0);
			int deg = quadrature_exact_degree(rule, m);
			for (int d = 0; d <= deg; d++)
				ck_assert_msg(fabs(integrate_monomial(a, w, m, d) - 1.0 / (d + 1)) <
				                  1e-13,
				              "rule %d m %d degree %d", (int)rule, m, d);
			if (rule == RULE_GAUSS_LEGENDRE && m > 5)
				continue; /* its error at degree 2m is below 1e-9 from m = 8 on */
			double miss = fabs(integrate_monomial(a, w, m, deg + 1) - 1.0 / (deg + 2));
			ck_assert_msg(miss > 1e-9, "rule %d m %d exact beyond degree %d", (int)rule,
			              m, deg);
		}
	}
}
END_TEST

/* Large orders: nodes increasing inside (0, 1), symmetric, weights summing
 * to 1, and low-degree moments still exact. */
START_TEST(test_gauss_legendre_large_orders)
{
	static const int ms[] = {50, 257, 1000, 4096};
	double *a = malloc(4096 * sizeof *a), *w = malloc(4096 * sizeof *w);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(w);
	for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) {
		int m = ms[i];
		ck_assert_int_eq(quadrature_nodes(RULE_GAUSS_LEGENDRE, m, a, w, NULL), 0);
		for (int k = 0; k < m; k++) {
			ck_assert(a[k] > 0 && a[k] < 1 && w[k] > 0);
			if (k)
				ck_assert(a[k] > a[k - 1]);
			ck_assert_double_eq_tol(a[k] + a[m - 1 - k], 1.0, 1e-15);
		}
		for (int d = 0; d <= 40; d++)
			ck_assert_msg(fabs(integrate_monomial(a, w, m, d) - 1.0 / (d + 1)) < 1e-12,
			              "m %d degree %d", m, d);
		/* a smooth non-polynomial: integral of exp on [0, 1] */
		long double s = 0;
		for (int k = 0; k < m; k++)
			s += (long double)w[k] * expl(a[k]);
		ck_assert_double_eq_tol((double)s, exp(1.0) - 1.0, 1e-12);
	}
	free(a);
	free(w);
}
END_TEST

START_TEST(test_bad_point_counts_fail)
{
	double a[4], w[4];
	struct igs_error err = {0};
	ck_assert_int_eq(quadrature_nodes(RULE_GAUSS_LEGENDRE, 0, a, w, &err), IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(quadrature_nodes(RULE_RIEMANN_TRAPEZOID, 1, a, w, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_str_eq(err.message, "steps for riemann_trapezoid must be 2..4096, got 1");
	ck_assert_int_eq(quadrature_nodes(RULE_RIEMANN_LEFT, 4097, a, w, &err), IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(quadrature_refine_nodes(RULE_RIEMANN_LEFT, 2049, a, w, &err),
	                 IGS_ERR_BAD_OPTION);
}
END_TEST

/* Old nodes (weights scaled by r) plus the new nodes are exactly the
 * next rule's nodes; Gauss-Legendre starts over at twice the order. */
START_TEST(test_refinement_reuses_old_nodes)
{
	static const int ms[] = {2, 3, 7, 16};
	double old_a[64], old_w[64], new_a[64], new_w[64], next_a[64], next_w[64];
	for (size_t r = 0; r < sizeof all_rules / sizeof *all_rules; r++) {
		for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) {
			enum quad_rule rule = all_rules[r];
			int m = ms[i];
			struct quad_refinement ref;
			quadrature_refinement(rule, m, &ref);
			ck_assert_int_eq(quadrature_nodes(rule, m, old_a, old_w, NULL), 0);
			ck_assert_int_eq(quadrature_refine_nodes(rule, m, new_a, new_w, NULL), 0);
			ck_assert_int_eq(quadrature_nodes(rule, ref.next_m, next_a, next_w, NULL),
			                 0);
			ck_assert(ref.next_m > m);
			if (ref.reuse_scale == 0) {
				ck_assert_int_eq(rule, RULE_GAUSS_LEGENDRE);
				ck_assert_int_eq(ref.new_points, ref.next_m);
				for (int k = 0; k < ref.next_m; k++)
					ck_assert_double_eq(new_a[k], next_a[k]);
				continue;
			}
			ck_assert_int_eq(ref.new_points, ref.next_m - m);
			/* merge: every node of next appears once, in old or new */
			int io = 0, in = 0;
			for (int k = 0; k < ref.next_m; k++) {
				if (io < m && fabs(old_a[io] - next_a[k]) < 1e-15) {
					ck_assert_double_eq_tol(old_w[io] * ref.reuse_scale,
					                        next_w[k], 1e-15);
					io++;
				} else {
					ck_assert_int_lt(in, ref.new_points);
					ck_assert_double_eq_tol(new_a[in], next_a[k], 1e-15);
					ck_assert_double_eq_tol(new_w[in], next_w[k], 1e-15);
					in++;
				}
			}
			ck_assert_int_eq(io, m);
			ck_assert_int_eq(in, ref.new_points);
		}
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("quadrature");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_gauss_legendre_small_orders_match_closed_forms);
	tcase_add_test(tc, test_riemann_rules_follow_the_contract);
	tcase_add_test(tc, test_exact_on_polynomials_of_their_degree);
	tcase_add_test(tc, test_gauss_legendre_large_orders);
	tcase_add_test(tc, test_bad_point_counts_fail);
	tcase_add_test(tc, test_refinement_reuses_old_nodes);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
