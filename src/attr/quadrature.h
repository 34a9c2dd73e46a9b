/*
 * quadrature.h - nodes and weights on [0, 1] for the path integral of
 * Integrated Gradients (Sundararajan et al. 2017, eq. 3), and the plan by
 * which adaptive IG refines them.
 *
 *   attr_i = (x_i - x'_i) * sum_k w_k * dF(x' + a_k (x - x'))/dx_i
 *
 * The five rules are those of the contract:
 *   gausslegendre      a_k = (1 + z_k)/2, w_k = v_k/2 (Legendre nodes z, weights v on [-1, 1])
 *   riemann_left       a_k = k/m,         k = 0..m-1, w = 1/m
 *   riemann_right      a_k = k/m,         k = 1..m,   w = 1/m
 *   riemann_middle     a_k = (k + 0.5)/m, k = 0..m-1, w = 1/m
 *   riemann_trapezoid  a_k = k/(m-1),     k = 0..m-1, w = 1/(m-1), halved at both ends
 * Nodes are returned in increasing order of a.
 *
 * Refinement (adaptive IG).  Every Riemann rule has a nested refinement
 * whose new nodes are disjoint from the old ones, and whose old weights all
 * scale by one common factor r, so the weighted gradient sum G = sum w_k g_k
 * already computed is reused as r * G and only the new nodes are evaluated:
 *   left, right:  m -> 2m     (k/m = 2k/2m),             r = 1/2
 *   trapezoid:    m -> 2m - 1 (m-1 intervals halved),    r = 1/2
 *   middle:       m -> 3m     (midpoints of thirds),     r = 1/3
 * Gauss-Legendre nodes are not nested; its plan doubles the order and
 * re-evaluates every node (r = 0).  It is still the default: its error on
 * the smooth parts of the path falls much faster than any Riemann rule's,
 * so it usually converges at the first or second order tried, and the
 * discarded work is at most half of the total.
 */
#ifndef IGSERVE_QUADRATURE_H
#define IGSERVE_QUADRATURE_H

#include "error.h"

/* The rules, by their contract names (method=...). */
enum quad_rule {
	RULE_GAUSS_LEGENDRE,
	RULE_RIEMANN_LEFT,
	RULE_RIEMANN_RIGHT,
	RULE_RIEMANN_MIDDLE,
	RULE_RIEMANN_TRAPEZOID,
};
enum { RULE_COUNT = RULE_RIEMANN_TRAPEZOID + 1 };

/* "gausslegendre", "riemann_left", ...; "?" when out of range. */
const char *quadrature_rule_name(enum quad_rule r);
/* The rule named `name` (case-insensitive), or -1. */
int quadrature_rule_parse(const char *name);

#define QUADRATURE_MAX_POINTS 4096

/*
 * quadrature_nodes - fill alpha[m] and weight[m] (caller-owned) with the
 * rule's nodes on [0, 1], increasing.  m is 1..QUADRATURE_MAX_POINTS
 * (trapezoid: 2..); otherwise IGS_ERR_BAD_OPTION naming the rule.
 * Gauss-Legendre nodes come from Newton's method on P_m in double and are
 * accurate to a few ulps for every m in range.
 */
int quadrature_nodes(enum quad_rule rule, int m, double *alpha, double *weight,
                     struct igs_error *err);

/* The smallest valid point count of a rule (2 for the trapezoid, else 1). */
int quadrature_min_points(enum quad_rule rule);

/* The degree of polynomials the m-point rule integrates exactly:
 * 2m-1 (Gauss-Legendre), 1 (middle, trapezoid), 0 (left, right). */
int quadrature_exact_degree(enum quad_rule rule, int m);

/*
 * One refinement step: from m points to `next_m`.  `reuse_scale` is r
 * above (0: nothing is reused, start over).  When r > 0 the new nodes are
 * those of quadrature_nodes(rule, next_m) that are not nodes of the m-point
 * rule; they are given by quadrature_refine_nodes.
 */
struct quad_refinement {
	int next_m;
	double reuse_scale;
	int new_points; /* next_m - m when reused, next_m otherwise */
	int factor;     /* the spacing ratio (Gauss-Legendre: the order ratio) */
};

void quadrature_refinement(enum quad_rule rule, int m, struct quad_refinement *out);

/*
 * The same with the spacing divided by `factor` (>= 2; odd for the middle
 * rule): left/right/middle go to factor * m points, the trapezoid to
 * factor * (m - 1) + 1, every old point kept with r = 1/factor;
 * Gauss-Legendre to factor * m points, nothing kept.  Adaptive IG picks the
 * factor from the observed rate of convergence.  quadrature_refinement is
 * this with the default factor (3 for the middle rule, else 2).
 */
int quadrature_default_factor(enum quad_rule rule);
void quadrature_refinement_by(enum quad_rule rule, int m, int factor, struct quad_refinement *out);
int quadrature_refine_nodes_by(enum quad_rule rule, int m, int factor, double *alpha,
                               double *weight, struct igs_error *err);

/*
 * quadrature_refine_nodes - the new nodes and their weights (in the
 * next_m-point rule) of the refinement from m, increasing; alpha and
 * weight hold ref->new_points doubles (caller-owned).
 */
int quadrature_refine_nodes(enum quad_rule rule, int m, double *alpha, double *weight,
                            struct igs_error *err);

/*
 * quadrature_coarser - the point count c whose refinement is the m-point
 * rule while reusing every point (quadrature_refinement(rule, c).next_m
 * == m with reuse_scale > 0): (m + 1)/2 for the trapezoid with m odd, m/2
 * for left and right with m even, m/3 for the middle rule with 3 | m.
 * 0 when there is none (Gauss-Legendre; other m).  The m-point rule's
 * points then hold a complete coarser rule, so the two can be compared
 * without evaluating anything more.
 */
int quadrature_coarser(enum quad_rule rule, int m);

#endif
