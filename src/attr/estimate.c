/*
 * estimate.c - the trapezoid rule's calibrated convergence estimate
 * (ATTR_ESTIMATOR_CELLS in attribution.h): how far the attributions of an
 * m-point rule are from the exact integral, from that rule and the coarser
 * one it refined, cell by cell.
 *
 * The model behind it.  A ReLU network's gradient is piecewise constant
 * along the path: it jumps by a vector J_b where a unit switches, at t_b.
 * On a cell of width h holding t_b at fraction u of it, the trapezoid rule
 * errs by J_b h (u - 1/2).  Refining a coarse cell (width q h) by q, the
 * fine and the coarse rule differ there by d_b = J_b h (j - (q - 1)/2),
 * j the fine sub-cell holding t_b.  With the switch points spread (u
 * uniform, j uniform and independent of u) and the jumps pointing different
 * ways, E||e||^2 = sum ||J_b||^2 h^2 / 12 and E||d||^2 = (q^2 - 1) times
 * that: ||e|| ~ ||d|| / sqrt(q^2 - 1).  (For q = 2 every |d_b| is exactly
 * ||J_b|| h / 2 >= the error's, so ||d|| itself bounds ||e||: the old
 * estimate, 1.7x the truth where switches are many.)
 *
 * The spread around that expectation shrinks with the number of cells
 * that carry the difference, n_eff = (sum a_c)^2 / sum a_c^2 over the
 * cells' ||d_c||^2 = a_c (few dominant switches: few effective cells, and
 * the estimate is inflated back toward the bound).  Squared relative
 * spreads: 0.8 for (u - 1/2)^2, cv_q^2 for (j - (q-1)/2)^2 (0 for q = 2).
 * The estimate is taken Z standard deviations above the expectation:
 *   E = ||fine - coarse|| / ||fine|| * sqrt((1 + Z sqrt((0.8 + cv_q^2)
 *       / n_eff)) / (q^2 - 1)),  at most 1 / (q - 1).
 * Measured against 1025- and 2049-point references (README, "How far from
 * the integral"), E is 1.0-1.7x the true error where the old one was
 * 1.3-2.2x.
 *
 * The cells' norms come from a count sketch (Charikar et al. 2002) of each
 * point's attribution step (x - x') * dF/dx: every value is added, with a
 * random sign, into one of SKETCH_BUCKETS buckets, so ||sketch(v)||^2
 * estimates ||v||^2 (relative spread sqrt(2 / buckets), 9% here) and a
 * cell's difference is the same combination of its points' sketches.  Its
 * error makes n_eff smaller on average, never larger: on the safe side.
 */
#include <math.h>
#include <stdlib.h>

#include "attr_internal.h"

#define SKETCH_BUCKETS 256
#define SPREAD_Z 3.0

int path_sketch_buckets(void)
{
	return SKETCH_BUCKETS;
}

uint32_t *path_sketch_codes(size_t n)
{
	uint32_t *code = malloc(n * sizeof *code);
	if (!code)
		return NULL;
	/* a fixed seed: the same request gives the same estimate */
	uint64_t state = 0x5ca1ab1eull;
	for (size_t i = 0; i < n; i++) {
		uint64_t z = attribution_splitmix64(&state);
		code[i] = (uint32_t)((z >> 1) % SKETCH_BUCKETS) << 1 | (uint32_t)(z & 1);
	}
	return code;
}

void path_sketch_add(const uint32_t *code, size_t n, const float *x, const float *base,
                     const float *g, double scale, float *row)
{
	double acc[SKETCH_BUCKETS] = {0};
	for (size_t i = 0; i < n; i++) {
		double v = x ? ((double)x[i] - base[i]) * g[i] : g[i];
		acc[code[i] >> 1] += code[i] & 1 ? v : -v;
	}
	for (int b = 0; b < SKETCH_BUCKETS; b++)
		row[b] += (float)(acc[b] * scale);
}

/* cv_q^2: the squared relative spread of (j - (q - 1)/2)^2, j uniform on
 * 0..q-1. */
static double subcell_spread(int q)
{
	double m1 = 0, m2 = 0;
	for (int j = 0; j < q; j++) {
		double v = (j - (q - 1) / 2.0) * (j - (q - 1) / 2.0);
		m1 += v / q;
		m2 += v * v / q;
	}
	return m1 > 0 ? m2 / (m1 * m1) - 1.0 : 0.0;
}

double path_cells_factor(const float *rows, int points, int q)
{
	int cells = q >= 2 ? (points - 1) / q * q : 0;
	if (q < 2 || cells < q || cells + 1 != points)
		return 1.0 / (q > 1 ? q - 1 : 1);
	const struct cell_span span = {.first = 0, .cells = cells, .q = q, .width = 1.0};
	double f;
	path_span_factors(rows, &span, 1, &f);
	return f;
}

void path_span_factors(const float *rows, const struct cell_span *spans, int count,
                       double *factor)
{
	const int K = SKETCH_BUCKETS;
	/* a_c = ||d_c||^2 / (q^2 - 1), the expected squared error of coarse
	 * cell c; d_c = h (the interior steps - (q - 1)/2 (the ends' steps)):
	 * the cell's fine weights minus its coarse ones */
	double sum = 0, sum2 = 0;
	for (int i = 0; i < count; i++) {
		const struct cell_span *sp = &spans[i];
		const int q = sp->q;
		for (int c = 0; q >= 2 && c < sp->cells / q; c++) {
			const float *s0 = rows + ((size_t)sp->first + (size_t)c * q) * K;
			const float *sq = s0 + (size_t)q * K;
			double a = 0;
			for (int b = 0; b < K; b++) {
				double d = -(q - 1) / 2.0 * ((double)s0[b] + sq[b]);
				for (int j = 1; j < q; j++)
					d += s0[(size_t)j * K + b];
				a += d * d;
			}
			a *= sp->width * sp->width / ((double)q * q - 1.0);
			sum += a;
			sum2 += a * a;
		}
	}
	double n_eff = sum2 > 0 ? sum * sum / sum2 : 0;
	for (int i = 0; i < count; i++) {
		const int q = spans[i].q;
		double bound = 1.0 / (q > 1 ? q - 1 : 1);
		if (q < 2 || !(n_eff > 0)) {
			factor[i] = bound;
			continue;
		}
		double f = sqrt((1.0 + SPREAD_Z * sqrt((0.8 + subcell_spread(q)) / n_eff)) /
		                ((double)q * q - 1.0));
		factor[i] = f < bound ? f : bound;
	}
}

/* u_p = c ||fine_p - coarse_p||, c the estimate's calibration, so that
 * ||u|| = relative_l2 ||fine||.  (c is the whole image's; a pixel's own
 * error is as uncertain as one cell's, but where the map is bright the
 * fine and the coarse rule disagree, and the error is there.) */
int path_uncertainty_map(const float *fine, const float *coarse, size_t hw, double calibration,
                         float **map)
{
	if (!*map && !(*map = malloc(hw * sizeof **map)))
		return -1;
	for (size_t p = 0; p < hw; p++) {
		double dp = 0;
		for (int c = 0; c < 3; c++) {
			double d = (double)fine[3 * p + c] - coarse[3 * p + c];
			dp += d * d;
		}
		(*map)[p] = (float)(calibration * sqrt(dp));
	}
	return 0;
}
