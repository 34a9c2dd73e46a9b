/*
 * guided_ig.c - Guided IG (Kapishnikov et al. 2021, "Guided Integrated
 * Gradients: an Adaptive Path Method for Removing Noise"): the path from
 * the baseline x' to x is chosen as it goes, moving first the features
 * whose gradient is smallest, so the path avoids the directions in which
 * the model is steep (and noisy).
 *
 * Step s = 1..m (m = steps) evaluates the gradient g at the current point
 * and then moves features until the L1 distance to x is l1_total (1 - s/m):
 * features that fell behind alpha_min = s/m - max_dist are first pulled up
 * to it; then, repeatedly, the `fraction` of features with the smallest
 * |g| (the lower `fraction` quantile, features already at their upper
 * bound alpha_max = s/m + max_dist excluded) move toward that bound, all
 * the way or by the share gamma that closes the gap exactly.  Each move
 * adds (x_new - x_old) * g to the attributions (the path integral's left
 * Riemann sum), so completeness is against F(x) - F(x').  max_dist 0 is IG
 * on the straight line with the left rule; 1 is unbounded Guided IG.
 *
 * Deterministic: no randomness; ties at the quantile all move (|g| <=
 * threshold), as in PAIR saliency's implementation.  Sequential (one
 * point per oracle call: each point depends on the last gradient), and no
 * partial answer at a deadline (half a path explains nothing).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attr_internal.h"
#include "attribution.h"

/* Guards the inner loop against a gap float rounding cannot close. */
#define GUIDED_MAX_MOVES_PER_STEP 100000

static void swap_d(double *a, double *b)
{
	double t = *a;
	*a = *b;
	*b = t;
}

/* The k-th smallest of v[0..n-1] (0-based; v is reordered): quickselect
 * with a three-way partition around a median-of-three pivot,
 * deterministic. */
static double select_kth(double *v, size_t n, size_t k)
{
	long lo = 0, hi = (long)n - 1, kk = (long)k;
	while (lo < hi) {
		double a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi];
		double p = a < b ? (b < c ? b : a < c ? c : a) : (a < c ? a : b < c ? c : b);
		long lt = lo, i = lo, gt = hi;
		while (i <= gt) {
			if (v[i] < p)
				swap_d(&v[lt++], &v[i++]);
			else if (v[i] > p)
				swap_d(&v[i], &v[gt--]);
			else
				i++;
		}
		if (kk < lt)
			hi = lt - 1;
		else if (kk > gt)
			lo = gt + 1;
		else
			return p;
	}
	return v[kk];
}

static bool close_enough(double a, double b)
{
	/* math.isclose(a, b, rel_tol = abs_tol = 1e-9), as the reference */
	const double eps = 1e-9;
	return fabs(a - b) <= fmax(eps * fmax(fabs(a), fabs(b)), eps);
}

int attr_guided_ig_run(const struct grad_oracle *oracle, const float *pixels,
                       const struct attr_params *o, struct job_control *job,
                       struct attr_result *out, struct igs_error *err)
{
	memset(out, 0, sizeof *out);
	const int size = oracle->size, classes = oracle->classes, m = o->steps;
	const size_t n = (size_t)size * size * 3, hw = (size_t)size * size;
	const double fraction = o->guided_fraction, max_dist = o->guided_max_dist;
	double *x = malloc(n * sizeof *x), *cur = malloc(n * sizeof *cur);
	double *attr = calloc(n, sizeof *attr), *key = malloc(n * sizeof *key);
	float *row = malloc(n * sizeof *row), *grad = malloc(n * sizeof *grad);
	float *logits = malloc(2 * (size_t)classes * sizeof *logits);
	float *d_logits = malloc((size_t)classes * sizeof *d_logits);
	out->attr = malloc(n * sizeof *out->attr);
	out->logits = malloc((size_t)classes * sizeof *out->logits);
	out->baseline = malloc(n * sizeof *out->baseline);
	out->path = calloc((size_t)m, sizeof *out->path);
	if (o->path_maps)
		out->path_maps = calloc((size_t)m * hw, sizeof *out->path_maps);
	int rc = 0;
	if (!x || !cur || !attr || !key || !row || !grad || !logits || !d_logits || !out->attr ||
	    !out->logits || !out->baseline || !out->path || (o->path_maps && !out->path_maps)) {
		rc = igs_fail(err, IGS_ERR_NOMEM, "guided_ig: out of memory");
		goto done;
	}
	if ((rc = attribution_baseline(o->baseline, o->blur_sigma, o->seed, pixels, size,
	                               out->baseline, err)))
		goto done;
	/* the ends: F(x) (and the target) and F(x') */
	rc = oracle->forward(oracle->ctx, pixels, 1, logits, err);
	if (!rc)
		rc = oracle->forward(oracle->ctx, out->baseline, 1, logits + classes, err);
	if (rc)
		goto done;
	memcpy(out->logits, logits, (size_t)classes * sizeof *logits);
	const int target = out->target = attr_resolve_target(o, logits, classes);
	const double f_input = attr_target_output(o->output, logits, classes, target, NULL);
	const double f_base =
	    attr_target_output(o->output, logits + classes, classes, target, NULL);
	const double want = f_input - f_base;
	double l1_total = 0;
	for (size_t i = 0; i < n; i++) {
		x[i] = pixels[i];
		cur[i] = out->baseline[i];
		l1_total += fabs(x[i] - cur[i]);
	}
	const float *base = out->baseline;
	double running = 0;
	for (int s = 0; s < m && l1_total > 0; s++) {
		if ((rc = job_check(job, "attribution", err))) {
			if (rc == IGS_ERR_DEADLINE)
				igs_fail(
				    err, rc,
				    "attribution deadline passed after %d of %d Guided IG steps "
				    "(a partial path has no answer)",
				    s, m);
			goto done;
		}
		double l1_here = 0;
		for (size_t i = 0; i < n; i++) {
			row[i] = (float)cur[i];
			l1_here += fabs(cur[i] - x[i]);
		}
		if ((rc = oracle->forward(oracle->ctx, row, 1, logits, err)))
			goto done;
		double f_here = attr_target_output(o->output, logits, classes, target, d_logits);
		if ((rc = oracle->backward(oracle->ctx, d_logits, 1, grad, err)))
			goto done;

		const double alpha = (s + 1.0) / m;
		const double a_min = fmax(alpha - max_dist, 0.0),
		             a_max = fmin(alpha + max_dist, 1.0);
		const double l1_target = l1_total * (1.0 - (s + 1.0) / m);
		double step_sum = 0; /* sum of this step's (x_new - x_old) * g */
		for (int moves = 0; moves < GUIDED_MAX_MOVES_PER_STEP; moves++) {
			/* features behind alpha_min come up to it */
			double l1_cur = 0;
			for (size_t i = 0; i < n; i++) {
				double diff = x[i] - base[i];
				if (diff != 0 && (cur[i] - base[i]) / diff < a_min) {
					double to = base[i] + diff * a_min;
					double d = (to - cur[i]) * grad[i];
					attr[i] += d;
					step_sum += d;
					cur[i] = to;
				}
				l1_cur += fabs(cur[i] - x[i]);
			}
			if (close_enough(l1_target, l1_cur))
				break;
			/* the lower `fraction` quantile of |g| among the features
			 * not yet at alpha_max (numpy's 'lower': index floor(q (n-1))) */
			for (size_t i = 0; i < n; i++) {
				double hi = base[i] + (x[i] - base[i]) * a_max;
				key[i] = cur[i] == hi ? INFINITY : fabs((double)grad[i]);
			}
			/* (select_kth reorders key; the selection recomputes it) */
			double threshold =
			    select_kth(key, n, (size_t)floor(fraction * (double)(n - 1)));
			double l1_s = 0;
			for (size_t i = 0; i < n; i++) {
				double hi = base[i] + (x[i] - base[i]) * a_max;
				double k = cur[i] == hi ? INFINITY : fabs((double)grad[i]);
				key[i] = k <= threshold && k != INFINITY ? 1.0 : 0.0;
				if (key[i] > 0)
					l1_s += fabs(cur[i] - hi);
			}
			double gamma = l1_s > 0 ? (l1_cur - l1_target) / l1_s : INFINITY;
			for (size_t i = 0; i < n; i++) {
				if (!(key[i] > 0))
					continue;
				double hi = base[i] + (x[i] - base[i]) * a_max;
				double to = gamma > 1.0 ? hi : cur[i] + (hi - cur[i]) * gamma;
				double d = (to - cur[i]) * grad[i];
				attr[i] += d;
				step_sum += d;
				cur[i] = to;
			}
			if (!(gamma > 1.0) || !(l1_s > 0))
				break;
		}
		running += step_sum;
		out->path[s] = (struct attr_point){.alpha = 1.0 - l1_here / l1_total,
		                                   .weight = 1.0 / m,
		                                   .output = f_here,
		                                   .path_derivative = step_sum * m};
		double gsum = 0;
		for (size_t i = 0; i < n; i++)
			gsum += grad[i];
		out->path[s].gradient_sum = gsum;
		if (out->path_maps) {
			float *map = out->path_maps + (size_t)s * hw;
			for (size_t px = 0; px < hw; px++)
				map[px] = fabsf(grad[3 * px]) + fabsf(grad[3 * px + 1]) +
				          fabsf(grad[3 * px + 2]);
		}
		out->evaluations++;
		if (job && job->progress) {
			const struct job_progress p = {
			    .points_done = s + 1,
			    .points_total = m,
			    .relative_error =
			        fabs(running - want) / completeness_scale(want),
			    .relative_l2 = NAN,
			};
			job->progress(job->progress_ctx, &p);
		}
		if (job && job->yield)
			job->yield(job->yield_ctx);
	}
	double sum = 0;
	for (size_t i = 0; i < n; i++) {
		out->attr[i] = (float)attr[i];
		sum += out->attr[i];
	}
	out->size = size;
	out->classes = classes;
	out->sum = sum;
	out->f_input = f_input;
	out->f_baseline = f_base;
	out->delta = sum - want;
	out->relative_error = fabs(out->delta) / completeness_scale(want);
	out->path_count = out->steps = m;
	out->rule = RULE_RIEMANN_LEFT;
	out->samples = 1;
	out->relative_l2 = NAN;
	out->estimator = ATTR_ESTIMATOR_NONE;
	out->converged = true;
	out->baselines_done = out->baselines_total = 1;
done:
	free(x);
	free(cur);
	free(attr);
	free(key);
	free(row);
	free(grad);
	free(logits);
	free(d_logits);
	if (rc)
		attr_result_clear(out);
	return rc;
}
