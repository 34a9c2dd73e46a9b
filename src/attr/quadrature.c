/*
 * quadrature.c - the five IG rules on [0, 1] and their refinement plan
 * (see quadrature.h for the formulas and why each plan was chosen).
 */
#include "quadrature.h"

#include <math.h>
#include <strings.h>

static const char *const rule_names[RULE_COUNT] = {
	[RULE_GAUSS_LEGENDRE] = "gausslegendre",   [RULE_RIEMANN_LEFT] = "riemann_left",
	[RULE_RIEMANN_RIGHT] = "riemann_right",    [RULE_RIEMANN_MIDDLE] = "riemann_middle",
	[RULE_RIEMANN_TRAPEZOID] = "riemann_trapezoid",
};

const char *quadrature_rule_name(enum quad_rule r)
{
	return (unsigned)r < RULE_COUNT ? rule_names[r] : "?";
}

int quadrature_rule_parse(const char *name)
{
	for (int r = 0; r < RULE_COUNT; r++)
		if (!strcasecmp(rule_names[r], name))
			return r;
	return -1;
}

int quadrature_min_points(enum quad_rule rule)
{
	return rule == RULE_RIEMANN_TRAPEZOID ? 2 : 1;
}

int quadrature_exact_degree(enum quad_rule rule, int m)
{
	switch (rule) {
	case RULE_GAUSS_LEGENDRE:
		return 2 * m - 1;
	case RULE_RIEMANN_MIDDLE:
	case RULE_RIEMANN_TRAPEZOID:
		return 1;
	case RULE_RIEMANN_LEFT:
	case RULE_RIEMANN_RIGHT:
		return 0;
	}
	return 0;
}

/* P_m'(x) by the three-term recurrence of the Legendre polynomials; *p
 * receives P_m(x). */
static double legendre_derivative(int m, double x, double *p)
{
	double p0 = 1.0, p1 = x;
	for (int j = 1; j < m; j++) {
		double p2 = ((2.0 * j + 1.0) * x * p1 - j * p0) / (j + 1.0);
		p0 = p1;
		p1 = p2;
	}
	/* p1 = P_m(x), p0 = P_{m-1}(x) */
	*p = p1;
	return m * (x * p1 - p0) / (x * x - 1.0);
}

/*
 * Gauss-Legendre on [-1, 1] by Newton's method on P_m, started from the
 * Tricomi-like guess cos(pi (i + 3/4) / (m + 1/2)) (Numerical Recipes'
 * gauleg).  Only the upper half is iterated; the rule is symmetric.
 * z[m], v[m] increasing.
 */
static void gauss_legendre(int m, double *z, double *v)
{
	int half = (m + 1) / 2;
	for (int i = 0; i < half; i++) {
		double x = cos(M_PI * (i + 0.75) / (m + 0.5)), p = 0;
		for (int iter = 0; iter < 100; iter++) {
			double dp = legendre_derivative(m, x, &p);
			double dx = p / dp;
			x -= dx;
			if (fabs(dx) <= 1e-16 * fmax(1.0, fabs(x)))
				break;
		}
		/* The derivative at the converged node gives the weight. */
		double dp = legendre_derivative(m, x, &p);
		double w = 2.0 / ((1.0 - x * x) * dp * dp);
		/* i-th largest node goes to the top, its mirror to the bottom. */
		z[m - 1 - i] = x;
		v[m - 1 - i] = w;
		z[i] = -x;
		v[i] = w;
	}
	if (m % 2 == 1)
		z[m / 2] = 0.0; /* exactly, not a Newton residue */
}

int quadrature_nodes(enum quad_rule rule, int m, double *alpha, double *weight,
                     struct igs_error *err)
{
	if (m < quadrature_min_points(rule) || m > QUADRATURE_MAX_POINTS)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "steps for %s must be %d..%d, got %d",
		                quadrature_rule_name(rule), quadrature_min_points(rule),
		                QUADRATURE_MAX_POINTS, m);
	switch (rule) {
	case RULE_GAUSS_LEGENDRE:
		gauss_legendre(m, alpha, weight);
		for (int k = 0; k < m; k++) {
			/* (1 + z)/2 written as (1 - |z|)/2 on the lower half keeps
			 * the mirror nodes exactly symmetric: a_k + a_{m-1-k} = 1. */
			double z = alpha[k];
			alpha[k] = z < 0 ? 0.5 * (1.0 + z) : 1.0 - 0.5 * (1.0 - z);
			weight[k] *= 0.5;
		}
		break;
	case RULE_RIEMANN_LEFT:
		for (int k = 0; k < m; k++) {
			alpha[k] = (double)k / m;
			weight[k] = 1.0 / m;
		}
		break;
	case RULE_RIEMANN_RIGHT:
		for (int k = 0; k < m; k++) {
			alpha[k] = (double)(k + 1) / m;
			weight[k] = 1.0 / m;
		}
		break;
	case RULE_RIEMANN_MIDDLE:
		for (int k = 0; k < m; k++) {
			alpha[k] = (k + 0.5) / m;
			weight[k] = 1.0 / m;
		}
		break;
	case RULE_RIEMANN_TRAPEZOID:
		for (int k = 0; k < m; k++) {
			alpha[k] = (double)k / (m - 1);
			weight[k] = 1.0 / (m - 1);
		}
		weight[0] *= 0.5;
		weight[m - 1] *= 0.5;
		break;
	default:
		return igs_fail(err, IGS_ERR_BAD_OPTION, "quadrature rule %d is unknown",
		                (int)rule);
	}
	return 0;
}

int quadrature_default_factor(enum quad_rule rule)
{
	return rule == RULE_RIEMANN_MIDDLE ? 3 : 2;
}

void quadrature_refinement_by(enum quad_rule rule, int m, int factor, struct quad_refinement *out)
{
	const int k = factor;
	out->factor = k;
	switch (rule) {
	case RULE_RIEMANN_LEFT:
	case RULE_RIEMANN_RIGHT:
	case RULE_RIEMANN_MIDDLE:
		/* every spacing divided by k (the middle rule: k odd, so the old
		 * midpoints stay midpoints) */
		out->next_m = k * m;
		out->reuse_scale = 1.0 / k;
		out->new_points = (k - 1) * m;
		break;
	case RULE_RIEMANN_TRAPEZOID:
		/* each of the m-1 intervals cut into k */
		out->next_m = k * (m - 1) + 1;
		out->reuse_scale = 1.0 / k;
		out->new_points = (k - 1) * (m - 1);
		break;
	case RULE_GAUSS_LEGENDRE:
	default:
		out->next_m = k * m;
		out->reuse_scale = 0.0;
		out->new_points = k * m;
		break;
	}
}

void quadrature_refinement(enum quad_rule rule, int m, struct quad_refinement *out)
{
	quadrature_refinement_by(rule, m, quadrature_default_factor(rule), out);
}

int quadrature_refine_nodes_by(enum quad_rule rule, int m, int factor, double *alpha,
                               double *weight, struct igs_error *err)
{
	struct quad_refinement ref;
	const int k = factor;
	quadrature_refinement_by(rule, m, k, &ref);
	if (m < quadrature_min_points(rule) || k < 2 || ref.next_m > QUADRATURE_MAX_POINTS ||
	    (rule == RULE_RIEMANN_MIDDLE && k % 2 == 0))
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "%s cannot be refined from %d points by %d within %d points",
		                quadrature_rule_name(rule), m, k, QUADRATURE_MAX_POINTS);
	int n = 0;
	switch (rule) {
	case RULE_RIEMANN_LEFT:
	case RULE_RIEMANN_RIGHT:
		/* j/(km), j not a multiple of k (those are the old nodes) */
		for (int j = 1; j < k * m + (rule == RULE_RIEMANN_RIGHT); j++) {
			if (j % k == 0)
				continue;
			alpha[n] = (double)j / (k * m);
			weight[n++] = 1.0 / (k * m);
		}
		return 0;
	case RULE_RIEMANN_TRAPEZOID: {
		/* j/(k(m-1)) inside the old intervals: the new rule's interior weight */
		const int intervals = k * (m - 1);
		for (int j = 1; j < intervals; j++) {
			if (j % k == 0)
				continue;
			alpha[n] = (double)j / intervals;
			weight[n++] = 1.0 / intervals;
		}
		return 0;
	}
	case RULE_RIEMANN_MIDDLE:
		/* (j + 0.5)/(km) except the old midpoints, j = ik + (k-1)/2 */
		for (int j = 0; j < k * m; j++) {
			if (j % k == (k - 1) / 2)
				continue;
			alpha[n] = (j + 0.5) / (k * m);
			weight[n++] = 1.0 / (k * m);
		}
		return 0;
	case RULE_GAUSS_LEGENDRE:
	default:
		return quadrature_nodes(rule, ref.next_m, alpha, weight, err);
	}
}

int quadrature_refine_nodes(enum quad_rule rule, int m, double *alpha, double *weight,
                            struct igs_error *err)
{
	return quadrature_refine_nodes_by(rule, m, quadrature_default_factor(rule), alpha, weight,
	                                  err);
}

int quadrature_coarser(enum quad_rule rule, int m)
{
	int c = 0;
	switch (rule) {
	case RULE_RIEMANN_LEFT:
	case RULE_RIEMANN_RIGHT:
		c = m % 2 == 0 ? m / 2 : 0;
		break;
	case RULE_RIEMANN_TRAPEZOID:
		c = m % 2 == 1 ? (m + 1) / 2 : 0;
		break;
	case RULE_RIEMANN_MIDDLE:
		c = m % 3 == 0 ? m / 3 : 0;
		break;
	case RULE_GAUSS_LEGENDRE:
	default:
		return 0;
	}
	return c >= quadrature_min_points(rule) && c < m ? c : 0;
}
