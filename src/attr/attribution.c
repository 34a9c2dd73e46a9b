/*
 * attribution.c - IG, saliency, input x gradient and SmoothGrad over a
 * gradient oracle (see attribution.h for the math and the contract).
 *
 * Contents: one run's state; evaluating path points in chunks; finishing
 * samples; rounds of refinement and their convergence estimate;
 * attribution_run and attribution_run_targets (several targets sharing
 * each chunk's forward pass).  The options' names are in
 * attr_vocabulary.c, the baselines in baseline.c, the network adapter in
 * net_oracle.c, which classes targets= means in attr_targets.c.
 */
#include "attribution.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attr_internal.h"
#include "quadrature.h"

void attr_result_clear(struct attr_result *r)
{
	free(r->attr);
	free(r->logits);
	free(r->baseline);
	free(r->path);
	free(r->path_maps);
	free(r->path_steps);
	free(r->uncertainty);
	memset(r, 0, sizeof *r);
}

/* ---- one run's state ---- */

/* What differs between the targets of one run (the path, its forward
 * passes and the oracle's chunks are shared). */
struct target_state {
	int target;
	double f_input, f_baseline, running;
	double *G;
	float *prev_attr;
	float *sketches; /* the run's `sketches` for this target */
};

struct run {
	const struct grad_oracle *oracle;
	const struct attr_params *o;
	struct job_control *job;
	int batch, size, classes, target;
	size_t n, hw;                /* values and pixels of one image */
	int samples;                 /* SmoothGrad samples (1 without) */
	bool multiply_diff;          /* IG, input x gradient: attr = (x - x') * G */
	const float *x;              /* the input (caller's) */
	const float *base;           /* the baseline */
	float *rows;                 /* [batch][n] path inputs */
	bool by_position;            /* the oracle's forward_path, set up for x and the baseline */
	bool summed;                 /* ... and its backward_path: G comes from path_gradient */
	float *positions;            /* [batch] alpha of each row, by_position */
	float *row_weight;           /* [batch] w_k of each row, summed */
	double *row_sums;            /* [batch][2] backward_path's sums */
	float *grad;                 /* [batch][n] */
	float *logits, *d_logits;    /* [batch][classes] */
	double *outputs;             /* [batch] F_t of each row */
	int *row_sample, *row_point; /* [batch] */
	float *xs;                   /* [n] the current sample's (noisy) input */
	int xs_sample;               /* which sample xs holds, -1: none */
	double *G;                   /* [n] sum_k w_k dF/dx of the open sample */
	double *acc1, *acc2;         /* [n] sums of per-sample attr and attr^2 */
	double attr_norm2;           /* ||attr||^2 of the last finish_attr */
	double f_input, f_baseline;
	double running;  /* sum of w_k dF/dalpha so far (progress) */
	int done, total; /* evaluations, for progress */
	int evaluations;
	bool have_result; /* a completed round exists */
	double best_rel;  /* its relative completeness error */
	double best_l2;   /* and its convergence estimate */
	int rounds;       /* completed rounds */
	int samples_done; /* SmoothGrad samples folded into acc1/acc2 */
	float *prev_attr; /* [n] the previous round's attributions */
	struct attr_point *done_table; /* SmoothGrad: the table when the last sample finished */
	const float *round_attr;       /* a round's attributions, for its progress report */
	/* the trapezoid rule's calibrated estimate (estimate.c): each value's
	 * sketch bucket and sign, and the sketch of every point of the
	 * current rule, [points][path_sketch_buckets()] in path order (the
	 * current target's: select_target) */
	uint32_t *sketch_code;
	float *sketches;
	/* several targets (issue 16): the fields of target_state below are
	 * those of target `cur`; select_target swaps them with ts[] */
	int n_targets;
	int cur;
	struct target_state *ts; /* [n_targets], NULL with one target */
	/* summed with several targets: each target's own sum in the oracle
	 * (path_use_sum; [0] NULL: the oracle's own), or NULL: each target's
	 * share taken per chunk */
	float **path_sums;
	/* adaptive IG's trapezoid by stretches (stretch.c): each stretch's
	 * gradients, unweighted, so that refining one rescales only its own */
	int n_stretches;
	struct stretch stretch[STRETCH_MAX];
	double *ends[STRETCH_MAX + 1]; /* [n] the gradient at each stretch end */
	double *inner[STRETCH_MAX];    /* [n] the sum over its interior points */
	double *added[STRETCH_MAX];    /* [n] a round's new interior points */
	float *unc2[STRETCH_MAX];      /* [hw] its squared uncertainty per pixel */
	/* where eval_points adds point k's gradient, unweighted ([points]), or
	 * NULL: w_k times it into G */
	double **point_sum;
};

/* Make target t's state the run's (several targets only). */
static void select_target(struct run *r, int t)
{
	if (!r->ts || t == r->cur)
		return;
	r->ts[r->cur] = (struct target_state){.target = r->target,
	                                      .f_input = r->f_input,
	                                      .f_baseline = r->f_baseline,
	                                      .running = r->running,
	                                      .G = r->G,
	                                      .prev_attr = r->prev_attr,
	                                      .sketches = r->sketches};
	const struct target_state *n = &r->ts[t];
	r->target = n->target;
	r->f_input = n->f_input;
	r->f_baseline = n->f_baseline;
	r->running = n->running;
	r->G = n->G;
	r->prev_attr = n->prev_attr;
	r->sketches = n->sketches;
	r->cur = t;
}

/* The input of sample s: x itself, or x + N(0, (sigma * 255)^2) from a
 * stream seeded by (seed, s) so any sample can be regenerated alone. */
static void sample_input(struct run *r, int s)
{
	if (r->xs_sample == s)
		return;
	r->xs_sample = s;
	if (r->o->smooth == SMOOTH_NONE) {
		memcpy(r->xs, r->x, r->n * sizeof *r->xs);
		return;
	}
	uint64_t state =
	    (r->o->seed ^ 0x5D1A7E5A9C0FFEE5ull) + (uint64_t)(s + 1) * 0xD1B54A32D192ED03ull;
	double sd = r->o->smooth_sigma * 255.0;
	for (size_t i = 0; i < r->n; i += 2) {
		/* Box-Muller: u1 in (0, 1] keeps the log finite */
		double u1 = 1.0 - attr_uniform01(&state), u2 = attr_uniform01(&state);
		double rad = sqrt(-2.0 * log(u1)) * sd;
		r->xs[i] = r->x[i] + (float)(rad * cos(2.0 * M_PI * u2));
		if (i + 1 < r->n)
			r->xs[i + 1] = r->x[i + 1] + (float)(rad * sin(2.0 * M_PI * u2));
	}
}

double attr_target_output(enum output_kind output, const float *logits, int c, int t,
                          float *d_logits)
{
	if (output == OUTPUT_LOGIT) {
		if (d_logits) {
			memset(d_logits, 0, (size_t)c * sizeof *d_logits);
			d_logits[t] = 1.0f;
		}
		return logits[t];
	}
	/* softmax in double; d p_t / d z_j = p_t (delta_tj - p_j) */
	double mx = logits[0], z = 0;
	for (int j = 1; j < c; j++)
		mx = fmax(mx, logits[j]);
	for (int j = 0; j < c; j++)
		z += exp((double)logits[j] - mx);
	double pt = exp((double)logits[t] - mx) / z;
	if (output == OUTPUT_LOGPROB) {
		/* log p_t = z_t - logsumexp(z); d/dz_j = delta_tj - p_j */
		if (d_logits)
			for (int j = 0; j < c; j++)
				d_logits[j] = (float)((j == t) - exp((double)logits[j] - mx) / z);
		return (double)logits[t] - mx - log(z);
	}
	if (d_logits)
		for (int j = 0; j < c; j++) {
			double pj = exp((double)logits[j] - mx) / z;
			d_logits[j] = (float)(pt * ((j == t) - pj));
		}
	return pt;
}

int attr_resolve_target(const struct attr_params *o, const float *logits, int classes)
{
	if (o->target >= 0)
		return o->target;
	const int first = o->first_default_target;
	int target = first > 0 && first < classes ? first : 0;
	for (int j = target + 1; j < classes; j++)
		if (logits[j] > logits[target])
			target = j;
	return target;
}

/* F_t of one logits row and its gradient on the logits (d_logits row). */
static double output_and_grad(const struct run *r, const float *logits, float *d_logits)
{
	return attr_target_output(r->o->output, logits, r->classes, r->target, d_logits);
}

static int check_job(struct run *r, struct igs_error *err)
{
	int rc = job_check(r->job, "attribution", err);
	if (rc == IGS_ERR_DEADLINE)
		igs_fail(err, rc, "attribution deadline passed after %d of %d gradient evaluations",
		         r->done, r->total);
	return rc;
}

static void report_progress(struct run *r)
{
	if (!r->job || !r->job->progress)
		return;
	/* Within the first estimate: the error of the partial sum so far;
	 * while refining: that of the last completed estimate (a half-done
	 * refinement's partial sum says nothing). */
	double want = r->f_input - r->f_baseline;
	double rel = r->have_result
	                 ? r->best_rel
	                 : fabs(r->running - want) / completeness_scale(want);
	const struct job_progress p = {.points_done = r->done,
	                               .points_total = r->total,
	                               .relative_error = rel,
	                               .relative_l2 = r->have_result ? r->best_l2 : NAN,
	                               .round = r->rounds,
	                               .attr = r->round_attr,
	                               .attr_size = r->round_attr ? r->size : 0};
	r->job->progress(r->job->progress_ctx, &p);
}

/* ---- evaluating path points ---- */

/* attr_s = (x_s - x') * G (or G) folded into acc1/acc2; G cleared. */
static void finish_sample(struct run *r, int s)
{
	sample_input(r, s);
	for (size_t i = 0; i < r->n; i++) {
		double a = r->multiply_diff ? ((double)r->xs[i] - r->base[i]) * r->G[i] : r->G[i];
		r->acc1[i] += a;
		r->acc2[i] += a * a;
		r->G[i] = 0;
	}
	r->samples_done++;
}

/* The notebook's views: the point's signed step (x_s - x') * g (or g)
 * of the current sample, times `inv` (1 / samples), added into step[n]. */
static void add_step(struct run *r, const float *restrict g, double inv, float *restrict step)
{
	for (size_t i = 0; i < r->n; i++) {
		double a = r->multiply_diff ? ((double)r->xs[i] - r->base[i]) * g[i] : g[i];
		step[i] += (float)(a * inv);
	}
}

/*
 * Evaluate `m` points (alpha, weight) for each of r->samples samples,
 * `batch` rows per oracle call.  Accumulates w_k dF/dx into G (point by
 * point, or summed by the oracle and added at the end); with SmoothGrad
 * each finished sample is folded into acc1/acc2.  tables[t][m],
 * maps_of[t][m][hw], sketches_of[t][m][buckets] and (the first target's
 * only) steps[m][n] receive target t's per-point rows, averaged over
 * samples (the last three may be NULL, as may an array's entry); they
 * must be zeroed by the caller.
 *
 * Several targets share each chunk's forward pass: one forward, then one
 * backward per target (the network keeps the forward's ReLU masks and
 * max-pool choices through a backward, which only overwrites the
 * activations, so a second backward with other d_logits is that of the
 * same forward).  With the oracle's summed path each target adds into its
 * own sum (path_sums), read at the end as with one target; an oracle
 * without path_use_sum has each target's share taken (path_gradient) after
 * its backward, before the next target's.
 */
static int eval_points(struct run *r, const double *alpha, const double *weight, int m,
                       struct attr_point *const *tables, float *const *maps_of, float *steps,
                       float *const *sketches_of, struct igs_error *err)
{
	const int T = r->n_targets;
	long total = (long)m * r->samples;
	int rc;
	for (long e0 = 0; e0 < total; e0 += r->batch) {
		if ((rc = check_job(r, err)))
			return rc;
		int nb = (int)(total - e0 < r->batch ? total - e0 : r->batch);
		for (int b = 0; b < nb; b++) {
			int s = (int)((e0 + b) / m), k = (int)((e0 + b) % m);
			r->row_sample[b] = s;
			r->row_point[b] = k;
			float a = (float)alpha[k];
			r->positions[b] = a;
			if (r->by_position)
				continue;
			sample_input(r, s);
			float *row = r->rows + (size_t)b * r->n;
			for (size_t i = 0; i < r->n; i++)
				row[i] = r->base[i] + a * (r->xs[i] - r->base[i]);
		}
		rc = r->by_position
		         ? r->oracle->forward_path(r->oracle->ctx, r->positions, nb, r->logits, err)
		         : r->oracle->forward(r->oracle->ctx, r->rows, nb, r->logits, err);
		if (rc)
			return rc;
		for (int t = 0; t < T; t++) {
			select_target(r, t);
			struct attr_point *table = tables[t];
			float *maps = maps_of ? maps_of[t] : NULL;
			float *steps_t = t == 0 ? steps : NULL;
			float *sketches = sketches_of ? sketches_of[t] : NULL;
			if (r->path_sums)
				r->oracle->path_use_sum(r->oracle->ctx, r->path_sums[t]);
			for (int b = 0; b < nb; b++) {
				r->outputs[b] =
				    output_and_grad(r, r->logits + (size_t)b * r->classes,
				                    r->d_logits + (size_t)b * r->classes);
				r->row_weight[b] = (float)weight[r->row_point[b]];
			}
			rc = r->summed ? r->oracle->backward_path(r->oracle->ctx, r->d_logits, nb,
			                                          r->row_weight, r->row_sums, err)
			               : r->oracle->backward(r->oracle->ctx, r->d_logits, nb,
			                                     r->grad, err);
			if (!rc && r->summed && T > 1 && !r->path_sums) {
				/* this target's share of the chunk, before the next
				 * target's backward adds to the oracle's sum */
				rc = r->oracle->path_gradient(r->oracle->ctx, r->grad, err);
				for (size_t i = 0; !rc && i < r->n; i++)
					r->G[i] += r->grad[i];
			}
			if (rc)
				return rc;
			for (int b = 0; b < nb; b++) {
				int s = r->row_sample[b], k = r->row_point[b];
				const float *restrict g = r->grad + (size_t)b * r->n;
				double w = weight[k], gsum = 0, deriv = 0;
				if (r->summed) {
					gsum = r->row_sums[2 * b];
					deriv = r->row_sums[2 * b + 1];
				} else {
					double *restrict G = r->point_sum ? r->point_sum[k] : r->G;
					double wg = r->point_sum ? 1.0 : w;
					sample_input(r, s);
					for (size_t i = 0; i < r->n; i++) {
						G[i] += wg * g[i];
						gsum += g[i];
						deriv += ((double)r->xs[i] - r->base[i]) * g[i];
					}
				}
				double inv = 1.0 / r->samples;
				struct attr_point *p = &table[k];
				p->alpha = alpha[k];
				p->weight = w;
				p->output += r->outputs[b] * inv;
				p->gradient_sum += gsum * inv;
				p->path_derivative += deriv * inv;
				r->running += w * deriv * inv;
				if (maps) {
					float *map = maps + (size_t)k * r->hw;
					for (size_t px = 0; px < r->hw; px++)
						map[px] += (float)((fabsf(g[3 * px]) +
						                    fabsf(g[3 * px + 1]) +
						                    fabsf(g[3 * px + 2])) *
						                   inv);
				}
				if (steps_t)
					add_step(r, g, inv, steps_t + (size_t)k * r->n);
				if (sketches)
					path_sketch_add(r->sketch_code, r->n,
					                r->multiply_diff ? r->xs : NULL, r->base, g, inv,
					                sketches + (size_t)k * path_sketch_buckets());
				if (r->acc1 && k == m - 1) {
					finish_sample(r, s);
					memcpy(r->done_table, table, (size_t)m * sizeof *table);
				}
			}
		}
		if (r->path_sums)
			r->oracle->path_use_sum(r->oracle->ctx, NULL);
		select_target(r, 0);
		r->done += nb;
		r->evaluations += nb;
		report_progress(r);
		if (r->job && r->job->yield)
			r->job->yield(r->job->yield_ctx);
	}
	for (int t = 0; r->summed && (T == 1 || r->path_sums) && t < T; t++) {
		/* the points' weighted gradient, all at once */
		select_target(r, t);
		if (r->path_sums)
			r->oracle->path_use_sum(r->oracle->ctx, r->path_sums[t]);
		rc = r->oracle->path_gradient(r->oracle->ctx, r->grad, err);
		if (r->path_sums)
			r->oracle->path_use_sum(r->oracle->ctx, NULL);
		if (rc)
			return rc;
		for (size_t i = 0; i < r->n; i++)
			r->G[i] += r->grad[i];
	}
	select_target(r, 0);
	return 0;
}

/* ---- finishing ---- */

/* attr from G (one sample) or from acc1/acc2 (SmoothGrad), then the
 * completeness report (sum in double over the float attributions). */
static void finish_attr(struct run *r, struct attr_result *out)
{
	if (!r->acc1) {
		sample_input(r, 0);
		for (size_t i = 0; i < r->n; i++)
			out->attr[i] =
			    (float)(r->multiply_diff ? ((double)r->xs[i] - r->base[i]) * r->G[i]
			                             : r->G[i]);
	} else {
		/* the finished samples: all of them, or fewer at a deadline */
		double inv = 1.0 / r->samples_done;
		for (size_t i = 0; i < r->n; i++) {
			double mean = r->acc1[i] * inv, sq = r->acc2[i] * inv;
			double v = r->o->smooth == SMOOTH_GRAD      ? mean
			           : r->o->smooth == SMOOTH_GRAD_SQ ? sq
			                                            : fmax(sq - mean * mean, 0.0);
			out->attr[i] = (float)v;
		}
	}
	double sum = 0, norm2 = 0;
	for (size_t i = 0; i < r->n; i++) {
		sum += out->attr[i];
		norm2 += (double)out->attr[i] * out->attr[i];
	}
	r->attr_norm2 = norm2;
	double want = r->f_input - r->f_baseline;
	out->sum = sum;
	out->f_input = r->f_input;
	out->f_baseline = r->f_baseline;
	out->delta = sum - want;
	out->relative_error = fabs(out->delta) / completeness_scale(want);
}

/* Merge two alpha-sorted tables into dst; from[k] says where row k came
 * from: i >= 0 for a[i], -1 - j for b[j]. */
static void merge_points(const struct attr_point *a, int na, const struct attr_point *b, int nb,
                         struct attr_point *dst, int *from)
{
	int i = 0, j = 0;
	for (int k = 0; k < na + nb; k++) {
		bool take_a = j >= nb || (i < na && a[i].alpha < b[j].alpha);
		dst[k] = take_a ? a[i] : b[j];
		from[k] = take_a ? i++ : -1 - j++;
	}
}

/* The per-point rows (maps or steps, `len` floats each) in merge_points'
 * order. */
static void merge_rows(const int *from, int count, const float *a, const float *b, float *dst,
                       size_t len)
{
	for (int k = 0; k < count; k++)
		memcpy(dst + (size_t)k * len,
		       from[k] >= 0 ? a + (size_t)from[k] * len : b + (size_t)(-1 - from[k]) * len,
		       len * sizeof *dst);
}

/* The per-point rows one target keeps (path maps, path steps, sketches)
 * through a refinement round: the new points' rows, and all points' in
 * merge_points' order when the old points stay. */
enum { ROW_KINDS = 3 };
struct round_rows {
	float **kept[ROW_KINDS]; /* the target's rows (*kept NULL: not kept) */
	size_t len[ROW_KINDS];   /* floats per point */
	float *fresh[ROW_KINDS], *merged[ROW_KINDS];
};

/* Room for np new points' rows and, with `merge`, for next_m merged ones;
 * false when out of memory (round_rows_close frees what was had). */
static bool round_rows_open(struct round_rows *rr, const struct run *r, float **maps,
                            float **steps, float **sketches, int np, int next_m, bool merge)
{
	*rr = (struct round_rows){.kept = {maps, steps, sketches},
	                          .len = {r->hw, r->n, (size_t)path_sketch_buckets()}};
	for (int a = 0; a < ROW_KINDS; a++) {
		if (!*rr->kept[a])
			continue;
		rr->fresh[a] = calloc((size_t)np * rr->len[a], sizeof *rr->fresh[a]);
		if (merge)
			rr->merged[a] = calloc((size_t)next_m * rr->len[a], sizeof *rr->merged[a]);
		if (!rr->fresh[a] || (merge && !rr->merged[a]))
			return false;
	}
	return true;
}

/* The round's rows become the target's: merged by `from` (next_m rows),
 * or with from NULL the new points' alone. */
static void round_rows_commit(struct round_rows *rr, const int *from, int next_m)
{
	for (int a = 0; a < ROW_KINDS; a++) {
		if (!*rr->kept[a])
			continue;
		float **taken = from ? &rr->merged[a] : &rr->fresh[a];
		if (from)
			merge_rows(from, next_m, *rr->kept[a], rr->fresh[a], rr->merged[a], rr->len[a]);
		free(*rr->kept[a]);
		*rr->kept[a] = *taken;
		*taken = NULL;
	}
}

static void round_rows_close(struct round_rows *rr)
{
	for (int a = 0; a < ROW_KINDS; a++) {
		free(rr->fresh[a]);
		free(rr->merged[a]);
	}
}

/* ---- rounds of refinement ---- */

/* A refinement round is done: its answer is the best so far, and the
 * progress report (with its preview) says so. */
static void round_completed(struct run *r, const struct attr_result *out)
{
	r->best_rel = out->relative_error;
	r->best_l2 = out->relative_l2;
	r->rounds++;
	r->round_attr = out->attr;
	report_progress(r);
	r->round_attr = NULL;
}

/* The convergence estimate (attribution.h): ||fine - coarse|| / ||fine||
 * / (q - 1). */
static double difference_estimate(const float *fine, const float *coarse, size_t n, double q)
{
	double d2 = 0, f2 = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)fine[i] - coarse[i];
		d2 += d * d;
		f2 += (double)fine[i] * fine[i];
	}
	if (!(f2 > 0))
		return d2 > 0 ? INFINITY : 0.0;
	return sqrt(d2 / f2) / (q - 1.0);
}

/*
 * The next refinement's factor (quadrature_refinement_by), from the
 * observed rate.  The estimate falls as m^-p, p measured between the last
 * two rounds (e_prev at spacing q_prev times coarser; clamped to [0.5, 2],
 * 1 before there are two), so factor k should bring it to e / k^p.  That
 * prediction is uncertain (the estimate wanders by about FACTOR_SPREAD in
 * log from round to round), and a round that falls short costs more: at
 * least another doubling, or about the whole way to the tolerance,
 * (e / tol)^(1/p) times m with a quarter's overshoot.  So each k from the
 * default to 4 is scored by its expected points, P(enough) k + P(short)
 * max(2k, 1.25 (e / tol)^(1/p)), with P from a normal model of
 * log(e / k^p) around log(tolerance); the cheapest wins, the larger on a
 * tie (fewer rounds).  (A
 * larger jump than 4 risks more overshoot than it saves.)  The default
 * factor when there is no estimate yet or only the completeness error is
 * short; smaller factors when max_steps would be passed.  Gauss-Legendre
 * doubles its order.
 */
#define FACTOR_SPREAD 0.15

static int next_factor(const struct run *r, enum quad_rule rule, int m, double e_prev, double e,
                       int q_prev)
{
	const struct attr_params *o = r->o;
	const int k0 = quadrature_default_factor(rule), step = rule == RULE_RIEMANN_MIDDLE ? 2 : 1;
	if (rule == RULE_GAUSS_LEGENDRE || !isfinite(e) || !(e > o->tolerance))
		return k0;
	double p = 1.0;
	if (isfinite(e_prev) && e_prev > e && e > 0 && q_prev >= 2)
		p = fmin(fmax(log(e_prev / e) / log((double)q_prev), 0.5), 2.0);
	int best = k0;
	double best_cost = INFINITY;
	for (int k = k0; k <= 4; k += step) {
		struct quad_refinement ref;
		quadrature_refinement_by(rule, m, k, &ref);
		if (ref.next_m > o->max_steps || ref.next_m > QUADRATURE_MAX_POINTS)
			break;
		double z = log(o->tolerance * pow(k, p) / e) / FACTOR_SPREAD;
		double enough = 0.5 * erfc(-z / sqrt(2.0)); /* P(the estimate falls within) */
		double all_the_way = 1.25 * pow(e / o->tolerance, 1.0 / p);
		double cost = enough * k + (1.0 - enough) * fmax(2.0 * k, all_the_way);
		if (cost <= best_cost) {
			best_cost = cost;
			best = k;
		}
	}
	return best;
}

/*
 * Rounds after the first: refine the rule (quadrature_refinement) from m
 * points, evaluating only the new points when the rule is nested.  Plain
 * IG stops at `final_m`; adaptive IG (final_m == 0) once relative_l2 and
 * relative_error are both within the tolerance or the next rule would
 * pass max_steps.  outs[t] holds target t's last completed round, so a
 * deadline mid-round returns it with converged = false.  (Adaptive IG has
 * one target: check_options.)
 */
static int run_rounds(struct run *r, enum quad_rule rule, int m, int final_m,
                      struct attr_result *outs, struct igs_error *err)
{
	const struct attr_params *o = r->o;
	const int T = r->n_targets;
	struct attr_result *out = &outs[0];
	bool adaptive = final_m == 0;
	int limit = adaptive ? o->max_steps : final_m;
	double e_prev = NAN;
	int q_prev = 0; /* the factor of the last round */
	int rc = 0;
	for (;;) {
		if (adaptive && out->relative_l2 <= o->tolerance &&
		    out->relative_error <= o->tolerance)
			break;
		if (!adaptive && m >= final_m)
			break;
		struct quad_refinement ref;
		int factor = adaptive ? next_factor(r, rule, m, e_prev, out->relative_l2, q_prev)
		                      : quadrature_default_factor(rule);
		quadrature_refinement_by(rule, m, factor, &ref);
		if (ref.next_m > limit || ref.next_m > QUADRATURE_MAX_POINTS)
			break;
		size_t np = (size_t)ref.new_points;
		double *na = malloc(np * sizeof *na), *nw = malloc(np * sizeof *nw);
		int *from = malloc((size_t)ref.next_m * sizeof *from);
		struct attr_point *nt[ATTR_TARGETS_MAX] = {0}, *merged[ATTR_TARGETS_MAX] = {0};
		struct round_rows rows[ATTR_TARGETS_MAX] = {0};
		float *new_maps[ATTR_TARGETS_MAX], *new_sketches[ATTR_TARGETS_MAX];
		bool ok = na && nw && from;
		for (int t = 0; t < T; t++) {
			nt[t] = calloc(np, sizeof *nt[t]);
			merged[t] = calloc((size_t)ref.next_m, sizeof *merged[t]);
			ok = ok && nt[t] && merged[t];
			select_target(r, t);
			ok = round_rows_open(&rows[t], r, &outs[t].path_maps, &outs[t].path_steps,
			                     &r->sketches, ref.new_points, ref.next_m,
			                     ref.reuse_scale > 0) &&
			     ok;
			new_maps[t] = rows[t].fresh[0];
			new_sketches[t] = rows[t].fresh[2];
		}
		select_target(r, 0);
		if (!ok) {
			rc = igs_fail(err, IGS_ERR_NOMEM, "IG refinement: out of memory at %d points",
			              ref.next_m);
			goto round_done;
		}
		if ((rc = quadrature_refine_nodes_by(rule, m, factor, na, nw, err)))
			goto round_done;
		/* adaptive progress counts to this round's end: the total grows
		 * as rounds are added (plain IG's is its m from the start) */
		if (adaptive)
			r->total = r->done + ref.new_points;
		/* reuse: G and the running sum scale by r; otherwise start over */
		for (int t = 0; t < T; t++) {
			select_target(r, t);
			for (size_t i = 0; i < r->n; i++)
				r->G[i] *= ref.reuse_scale;
			r->running *= ref.reuse_scale;
		}
		select_target(r, 0);
		rc = eval_points(r, na, nw, ref.new_points, nt, new_maps, rows[0].fresh[1],
		                 new_sketches, err);
		if (rc == IGS_ERR_DEADLINE) {
			for (int t = 0; t < T; t++)
				outs[t].deadline_hit = true;
			rc = 0;
			goto round_done;
		}
		if (rc)
			goto round_done;
		e_prev = out->relative_l2;
		for (int t = 0; t < T; t++) {
			struct attr_result *ot = &outs[t];
			select_target(r, t);
			if (ref.reuse_scale > 0) {
				for (int k = 0; k < ot->path_count; k++)
					ot->path[k].weight *= ref.reuse_scale;
				merge_points(ot->path, ot->path_count, nt[t], ref.new_points, merged[t],
				             from);
				round_rows_commit(&rows[t], from, ref.next_m);
				free(ot->path);
				ot->path = merged[t];
				merged[t] = NULL;
			} else {
				round_rows_commit(&rows[t], NULL, ref.next_m);
				free(ot->path);
				ot->path = nt[t];
				nt[t] = NULL;
			}
			ot->path_count = ref.next_m;
			ot->steps = ref.next_m;
			memcpy(r->prev_attr, ot->attr, r->n * sizeof *r->prev_attr);
			finish_attr(r, ot);
			/* relative_l2 = ||attr - prev|| / ||attr|| times `calibration` */
			double calibration;
			if (r->sketches && ref.reuse_scale > 0) {
				calibration = path_cells_factor(r->sketches, ref.next_m, factor);
				ot->relative_l2 =
				    difference_estimate(ot->attr, r->prev_attr, r->n, 2.0) * calibration;
				ot->estimator = ATTR_ESTIMATOR_CELLS;
			} else {
				calibration = 1.0 / (factor - 1.0);
				ot->relative_l2 =
				    difference_estimate(ot->attr, r->prev_attr, r->n, factor);
				ot->estimator =
				    ref.reuse_scale > 0 ? ATTR_ESTIMATOR_SUBRULE : ATTR_ESTIMATOR_ORDER;
			}
			if (!rc && path_uncertainty_map(ot->attr, r->prev_attr, r->hw, calibration,
			                                &ot->uncertainty))
				rc = igs_fail(err, IGS_ERR_NOMEM,
				              "IG refinement: out of memory for the uncertainty map");
		}
		select_target(r, 0);
		m = ref.next_m;
		q_prev = factor;
		round_completed(r, out);
	round_done:
		free(na);
		free(nw);
		free(from);
		for (int t = 0; t < T; t++) {
			free(nt[t]);
			free(merged[t]);
			round_rows_close(&rows[t]);
		}
		if (rc || out->deadline_hit)
			break;
	}
	for (int t = 0; t < T; t++) {
		struct attr_result *ot = &outs[t];
		if (adaptive)
			ot->converged = !ot->deadline_hit && ot->relative_l2 <= o->tolerance &&
			                ot->relative_error <= o->tolerance;
		else
			ot->converged = !ot->deadline_hit;
	}
	return rc;
}

/* ---- adaptive trapezoid by stretches (stretch.c) ---- */

static double stretch_width(const struct stretch *st)
{
	return (st->hi - st->lo) / st->cells;
}

/* Every stretch's low end in the path table, each point's weight (a
 * stretch's interior w, an end half of each side's), and each stretch's
 * completeness error from the points' F and dF/dalpha. */
static void stretches_reweigh(struct run *r, struct attr_point *path, int count)
{
	for (int k = 0; k < count; k++)
		path[k].weight = 0;
	int first = 0;
	for (int s = 0; s < r->n_stretches; s++) {
		struct stretch *st = &r->stretch[s];
		double w = stretch_width(st), integral = 0;
		st->first = first;
		for (int j = 0; j <= st->cells; j++) {
			double wj = j == 0 || j == st->cells ? w / 2 : w;
			path[first + j].weight += wj;
			integral += wj * path[first + j].path_derivative;
		}
		/* the first stretch's low end is the baseline, whose F is
		 * known exactly (its node is just inside the path) */
		double f_lo = s == 0 ? r->f_baseline : path[first].output;
		st->completeness = integral - (path[first + st->cells].output - f_lo);
		first += st->cells;
	}
}

/* G = sum over stretches of w (ends / 2 + interior), the whole rule's
 * weighted gradient. */
static void stretches_assemble(struct run *r)
{
	memset(r->G, 0, r->n * sizeof *r->G);
	for (int s = 0; s < r->n_stretches; s++) {
		const double w = stretch_width(&r->stretch[s]);
		const double *lo = r->ends[s], *hi = r->ends[s + 1], *in = r->inner[s];
		for (size_t i = 0; i < r->n; i++)
			r->G[i] += w * (0.5 * (lo[i] + hi[i]) + in[i]);
	}
}

/* The first round's destinations: each stretch end's gradient alone, the
 * others into their stretch's interior sum. */
static void stretches_first_round(struct run *r, int m)
{
	for (int s = 0, first = 0; s < r->n_stretches; first += r->stretch[s++].cells) {
		r->point_sum[first] = r->ends[s];
		for (int j = 1; j < r->stretch[s].cells; j++)
			r->point_sum[first + j] = r->inner[s];
	}
	r->point_sum[m - 1] = r->ends[r->n_stretches];
}

/* The estimate of the whole rule from its stretches' (their squared errors
 * add) and the uncertainty map from theirs. */
static int stretches_estimate(struct run *r, struct attr_result *out)
{
	double est2 = 0, norm2 = r->attr_norm2;
	for (int s = 0; s < r->n_stretches; s++)
		est2 += r->stretch[s].est2;
	out->relative_l2 = norm2 > 0 ? sqrt(est2 / norm2) : est2 > 0 ? INFINITY : 0.0;
	out->estimator = ATTR_ESTIMATOR_CELLS;
	if (!out->uncertainty && !(out->uncertainty = malloc(r->hw * sizeof *out->uncertainty)))
		return -1;
	for (size_t p = 0; p < r->hw; p++) {
		double u = 0;
		for (int s = 0; s < r->n_stretches; s++)
			u += r->stretch[s].factor * r->stretch[s].factor * r->unc2[s][p];
		out->uncertainty[p] = (float)sqrt(u);
	}
	return 0;
}

/* Fold stretch s's new interior points (added[s], its cells already
 * multiplied by q) into its sum, keeping the difference they made:
 * ||d||^2 and per pixel (unc2[s]), uncalibrated. */
static void stretch_fold(struct run *r, int s, double w_old)
{
	struct stretch *st = &r->stretch[s];
	const double w_new = stretch_width(st);
	const double *lo = r->ends[s], *hi = r->ends[s + 1];
	double *in = r->inner[s];
	const double *add = r->added[s];
	double d2 = 0;
	for (size_t p = 0; p < r->hw; p++) {
		double up = 0;
		for (size_t i = 3 * p; i < 3 * p + 3; i++) {
			double e = 0.5 * (lo[i] + hi[i]), before = w_old * (e + in[i]);
			in[i] += add[i];
			double d = ((double)r->x[i] - r->base[i]) * (w_new * (e + in[i]) - before);
			up += d * d;
		}
		d2 += up;
		r->unc2[s][p] = (float)up;
	}
	st->d2 = d2;
}

/* Every stretch's calibration and estimate.  A stretch's cells are those
 * of its last refinement (by q_last), so the spread of the whole estimate
 * is pooled over every cell of the path, refined this round or before. */
static void stretches_calibrate(struct run *r)
{
	struct cell_span spans[STRETCH_MAX];
	double factor[STRETCH_MAX];
	int count = 0;
	for (int s = 0; s < r->n_stretches; s++) {
		const struct stretch *st = &r->stretch[s];
		if (st->q_last > 1)
			spans[count++] = (struct cell_span){.first = st->first,
			                                    .cells = st->cells,
			                                    .q = st->q_last,
			                                    .width = stretch_width(st)};
	}
	path_span_factors(r->sketches, spans, count, factor);
	for (int s = 0, i = 0; s < r->n_stretches; s++) {
		struct stretch *st = &r->stretch[s];
		if (st->q_last < 2)
			continue;
		st->factor = factor[i++];
		st->est2 = st->factor * st->factor * st->d2;
	}
}

/*
 * Adaptive IG's rounds for the trapezoid rule (run_rounds' other form):
 * each round refines the stretches stretch_plan picks, evaluating only
 * their new points, until relative_l2 and relative_error are both within
 * the tolerance or max_steps leaves no room.  A deadline mid-round
 * returns the last completed round with converged = false.
 */
static int run_stretches(struct run *r, int m, struct attr_result *out, struct igs_error *err)
{
	const struct attr_params *o = r->o;
	const int S = r->n_stretches;
	const int most = o->max_steps < QUADRATURE_MAX_POINTS ? o->max_steps : QUADRATURE_MAX_POINTS;
	const double f_scale = completeness_scale(r->f_input - r->f_baseline);
	int rc = 0;
	while (!(out->relative_l2 <= o->tolerance && out->relative_error <= o->tolerance)) {
		const struct stretch_goal goal = {.tolerance = o->tolerance,
		                                  .attr_norm2 = r->attr_norm2,
		                                  .f_delta = f_scale,
		                                  .room = most - m};
		const int np = stretch_plan(r->stretch, S, &goal), next_m = m + np;
		if (np <= 0)
			break;
		double *na = malloc((size_t)np * sizeof *na), *nw = malloc((size_t)np * sizeof *nw);
		double **dest = malloc((size_t)np * sizeof *dest);
		int *from = malloc((size_t)next_m * sizeof *from);
		struct attr_point *nt = calloc((size_t)np, sizeof *nt);
		struct attr_point *merged = calloc((size_t)next_m, sizeof *merged);
		struct round_rows rows;
		bool ok = round_rows_open(&rows, r, &out->path_maps, &out->path_steps, &r->sketches,
		                          np, next_m, true) &&
		          na && nw && dest && from && nt && merged;
		for (int s = 0; ok && s < S; s++)
			if (r->stretch[s].q > 1 && !r->added[s])
				ok = (r->added[s] = malloc(r->n * sizeof *r->added[s])) != NULL;
		if (!ok) {
			rc = igs_fail(err, IGS_ERR_NOMEM, "IG refinement: out of memory at %d points",
			              next_m);
			goto round_done;
		}
		/* the new nodes, stretch by stretch: q - 1 in each cell */
		int k = 0;
		for (int s = 0; s < S; s++) {
			const struct stretch *st = &r->stretch[s];
			if (st->q < 2)
				continue;
			const double h = stretch_width(st);
			memset(r->added[s], 0, r->n * sizeof *r->added[s]);
			for (int j = 0; j < st->cells; j++)
				for (int i = 1; i < st->q; i++, k++) {
					na[k] = st->lo + (j + (double)i / st->q) * h;
					nw[k] = h / st->q;
					dest[k] = r->added[s];
				}
		}
		r->total = r->done + np;
		r->point_sum = dest;
		rc = eval_points(r, na, nw, np, &nt, &rows.fresh[0], rows.fresh[1], &rows.fresh[2],
		                 err);
		r->point_sum = NULL;
		if (rc == IGS_ERR_DEADLINE) {
			out->deadline_hit = true;
			rc = 0;
		}
		if (rc || out->deadline_hit)
			goto round_done;
		merge_points(out->path, m, nt, np, merged, from);
		round_rows_commit(&rows, from, next_m);
		free(out->path);
		out->path = merged;
		merged = NULL;
		out->path_count = out->steps = next_m;
		/* the refined stretches' new spacing and sums, then every
		 * stretch's estimate */
		for (int s = 0; s < S; s++) {
			struct stretch *st = &r->stretch[s];
			st->refined = st->q > 1;
			if (!st->refined)
				continue;
			double w_old = stretch_width(st);
			st->cells *= st->q;
			st->q_last = st->q;
			st->est2_before = st->est2;
			stretch_fold(r, s, w_old);
		}
		stretches_reweigh(r, out->path, next_m);
		stretches_calibrate(r);
		stretches_assemble(r);
		finish_attr(r, out);
		if (stretches_estimate(r, out)) {
			rc = igs_fail(err, IGS_ERR_NOMEM,
			              "IG refinement: out of memory for the uncertainty map");
			goto round_done;
		}
		m = next_m;
		round_completed(r, out);
	round_done:
		free(na);
		free(nw);
		free(dest);
		free(from);
		free(nt);
		free(merged);
		round_rows_close(&rows);
		if (rc || out->deadline_hit)
			break;
	}
	out->converged = !out->deadline_hit && out->relative_l2 <= o->tolerance &&
	                 out->relative_error <= o->tolerance;
	return rc;
}

/* The point count of plain IG's first round: the m-point rule's coarsest
 * nested rule, at most two refinements below m (two rounds give the
 * estimate and a fallback with its own; more would only add partial
 * chunks).  m itself when the rule nests none. */
static int first_round_points(enum quad_rule rule, int m)
{
	int start = m;
	for (int depth = 0; depth < 2; depth++) {
		int c = quadrature_coarser(rule, start);
		if (!c)
			break;
		start = c;
	}
	return start;
}

bool attribution_estimates(const struct attr_params *o)
{
	if (o->method != ATTR_INTEGRATED_GRADIENTS || o->smooth != SMOOTH_NONE ||
	    attribution_baseline_set_size(o) > 1 || o->baseline_count > 1)
		return false;
	return o->tolerance > 0 || first_round_points(o->rule, o->steps) != o->steps;
}

/* ---- attribution_run ---- */

static int check_options(const struct grad_oracle *oracle, const struct attr_params *o,
                         int batch, struct igs_error *err)
{
	if (batch < 1)
		return igs_fail(err, IGS_ERR_INTERNAL, "attribution batch must be >= 1, got %d",
		                batch);
	if (oracle->size < 1 || oracle->classes < 1)
		return igs_fail(err, IGS_ERR_INTERNAL,
		                "gradient oracle has no input or no classes");
	if (o->target < -1 || o->target >= oracle->classes)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "target %d is out of range 0..%d",
		                o->target, oracle->classes - 1);
	if (o->smooth != SMOOTH_NONE) {
		if (o->smooth_samples < 1 || o->smooth_samples > QUADRATURE_MAX_POINTS)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "smoothgrad_samples must be 1..%d with smoothgrad, got %d",
			                QUADRATURE_MAX_POINTS, o->smooth_samples);
		if (!(o->smooth_sigma >= 0) || o->smooth_sigma > 10)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "smoothgrad_sigma must be in [0, 10], got %g",
			                o->smooth_sigma);
	}
	bool ig = o->method == ATTR_INTEGRATED_GRADIENTS;
	bool adaptive = ig && o->tolerance > 0;
	if (adaptive && o->smooth != SMOOTH_NONE)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "tolerance (adaptive IG) cannot be combined with smoothgrad");
	if (o->path_maps) {
		int points = ig ? (adaptive && o->max_steps > o->steps ? o->max_steps : o->steps)
		             : attribution_method_is_path(o->method) ? o->steps
		                                                     : 1;
		if (points > ATTR_PATH_MAPS_MAX_POINTS)
			return igs_fail(
			    err, IGS_ERR_BAD_OPTION,
			    "path_maps allows at most %d path points, the request may use "
			    "%d (lower steps or max_steps)",
			    ATTR_PATH_MAPS_MAX_POINTS, points);
	}
	if (o->path_steps) {
		int points =
		    ig ? (adaptive && o->max_steps > o->steps ? o->max_steps : o->steps) : 1;
		if (points > ATTR_PATH_STEPS_MAX_POINTS)
			return igs_fail(
			    err, IGS_ERR_BAD_OPTION,
			    "path_views step_normalized and step_deviation allow at most "
			    "%d path points (an RGB map per point), the request may use "
			    "%d (lower steps or max_steps)",
			    ATTR_PATH_STEPS_MAX_POINTS, points);
	}
	return 0;
}

static void run_free(struct run *r)
{
	free(r->rows);
	free(r->grad);
	free(r->logits);
	free(r->d_logits);
	free(r->outputs);
	free(r->row_sample);
	free(r->row_point);
	free(r->positions);
	free(r->row_weight);
	free(r->row_sums);
	free(r->xs);
	select_target(r, 0);
	free(r->G);
	free(r->prev_attr);
	free(r->sketches);
	for (int t = 1; r->ts && t < r->n_targets; t++) {
		free(r->ts[t].G);
		free(r->ts[t].prev_attr);
		free(r->ts[t].sketches);
	}
	free(r->sketch_code);
	free(r->ts);
	if (r->path_sums) /* the oracle forgets the sums freed here */
		r->oracle->path_use_sum(r->oracle->ctx, NULL);
	for (int t = 1; r->path_sums && t < r->n_targets; t++)
		free(r->path_sums[t]);
	free(r->path_sums);
	free(r->acc1);
	free(r->acc2);
	free(r->done_table);
	for (int s = 0; s < r->n_stretches; s++) {
		free(r->inner[s]);
		free(r->added[s]);
		free(r->unc2[s]);
	}
	for (int s = 0; r->n_stretches && s <= r->n_stretches; s++)
		free(r->ends[s]);
	free(r->point_sum);
}

/* attribution_run for T targets into outs[T] (T > 1: check_targets). */
static int run_targets(const struct grad_oracle *oracle, const float *pixels,
                       const struct attr_params *o, int T, int batch, struct job_control *job,
                       struct attr_result *outs, struct igs_error *err)
{
	memset(outs, 0, (size_t)T * sizeof *outs);
	struct attr_result *out = &outs[0];
	int rc = check_options(oracle, o, batch, err);
	if (rc)
		return rc;
	bool ig = o->method == ATTR_INTEGRATED_GRADIENTS;
	bool adaptive = ig && o->tolerance > 0;
	struct run r = {
	    .oracle = oracle,
	    .o = o,
	    .job = job,
	    .batch = batch,
	    .size = oracle->size,
	    .classes = oracle->classes,
	    .n = (size_t)oracle->size * oracle->size * 3,
	    .hw = (size_t)oracle->size * oracle->size,
	    .samples = o->smooth == SMOOTH_NONE ? 1 : o->smooth_samples,
	    .multiply_diff = o->method != ATTR_SALIENCY,
	    .x = pixels,
	    .xs_sample = -1,
	    .n_targets = T,
	};
	/* saliency and input x gradient are one point at alpha = 1 from a
	 * black baseline: x * grad is IG's one-step right Riemann sum */
	enum quad_rule rule = ig ? o->rule : RULE_RIEMANN_RIGHT;
	int final_m = ig ? o->steps : 1;
	/* rounds (IG on one straight path): plain IG starts at its coarsest
	 * nested rule, adaptive at the requested steps */
	bool rounds = ig && r.samples == 1;
	int m = rounds && !adaptive ? first_round_points(rule, final_m) : final_m;
	size_t B = (size_t)batch, C = (size_t)r.classes;
	double *alpha = malloc(sizeof *alpha * (size_t)(m > 0 ? m : 1));
	double *weight = malloc(sizeof *weight * (size_t)(m > 0 ? m : 1));
	r.rows = malloc(B * r.n * sizeof *r.rows);
	r.grad = malloc(B * r.n * sizeof *r.grad);
	r.logits = malloc((B < 2 ? 2 : B) * C * sizeof *r.logits);
	r.d_logits = malloc(B * C * sizeof *r.d_logits);
	r.outputs = malloc(B * sizeof *r.outputs);
	r.row_sample = malloc(B * sizeof *r.row_sample);
	r.row_point = malloc(B * sizeof *r.row_point);
	r.positions = malloc(B * sizeof *r.positions);
	r.row_weight = malloc(B * sizeof *r.row_weight);
	r.row_sums = malloc(2 * B * sizeof *r.row_sums);
	r.xs = malloc(r.n * sizeof *r.xs);
	r.G = calloc(r.n, sizeof *r.G);
	r.prev_attr = malloc(r.n * sizeof *r.prev_attr);
	bool ok = true;
	/* the trapezoid rule's refinements get the calibrated estimate, each
	 * target its own */
	bool sketched = rounds && rule == RULE_RIEMANN_TRAPEZOID && m > 0;
	const size_t sketch_len = (size_t)m * path_sketch_buckets();
	if (sketched) {
		r.sketch_code = path_sketch_codes(r.n);
		r.sketches = calloc(sketch_len, sizeof *r.sketches);
		ok = r.sketch_code && r.sketches;
	}
	/* adaptive trapezoid: refined by stretches (run_stretches) */
	bool stretched = sketched && adaptive && T == 1 && m >= 2;
	if (stretched) {
		r.n_stretches = stretch_layout(m - 1, r.stretch);
		r.point_sum = malloc((size_t)m * sizeof *r.point_sum);
		ok = ok && r.point_sum;
		for (int s = 0; ok && s <= r.n_stretches; s++) {
			ok = (r.ends[s] = calloc(r.n, sizeof *r.ends[s])) != NULL;
			if (ok && s < r.n_stretches)
				ok = (r.inner[s] = calloc(r.n, sizeof *r.inner[s])) &&
				     (r.unc2[s] = calloc(r.hw, sizeof *r.unc2[s]));
		}
		if (ok)
			stretches_first_round(&r, m);
	}
	if (T > 1) {
		r.ts = calloc((size_t)T, sizeof *r.ts);
		ok = ok && r.ts != NULL;
		for (int t = 1; ok && t < T; t++) {
			r.ts[t].G = calloc(r.n, sizeof *r.ts[t].G);
			r.ts[t].prev_attr = malloc(r.n * sizeof *r.ts[t].prev_attr);
			if (sketched)
				r.ts[t].sketches = calloc(sketch_len, sizeof *r.ts[t].sketches);
			ok = r.ts[t].G && r.ts[t].prev_attr && (!sketched || r.ts[t].sketches);
		}
	}
	if (o->smooth != SMOOTH_NONE) {
		r.acc1 = calloc(r.n, sizeof *r.acc1);
		r.acc2 = calloc(r.n, sizeof *r.acc2);
		r.done_table = calloc((size_t)m, sizeof *r.done_table);
	}
	for (int t = 0; ok && t < T; t++) {
		struct attr_result *ot = &outs[t];
		ot->attr = malloc(r.n * sizeof *ot->attr);
		ot->logits = malloc(C * sizeof *ot->logits);
		ot->baseline = malloc(r.n * sizeof *ot->baseline);
		ot->path = calloc((size_t)(m > 0 ? m : 1), sizeof *ot->path);
		/* path maps and steps: the first target's only (T of them could
		 * be GBs) */
		bool maps = o->path_maps && m > 0 && t == 0;
		bool steps = o->path_steps && m > 0 && t == 0;
		if (maps)
			ot->path_maps = calloc((size_t)m * r.hw, sizeof *ot->path_maps);
		if (steps)
			ot->path_steps = calloc((size_t)m * r.n, sizeof *ot->path_steps);
		ok = ot->attr && ot->logits && ot->baseline && ot->path && (!maps || ot->path_maps) &&
		     (!steps || ot->path_steps);
	}
	if (!ok || !alpha || !weight || !r.rows || !r.grad || !r.logits || !r.d_logits ||
	    !r.outputs || !r.row_sample || !r.row_point || !r.positions || !r.row_weight ||
	    !r.row_sums || !r.xs || !r.G || !r.prev_attr ||
	    (o->smooth != SMOOTH_NONE && (!r.acc1 || !r.acc2 || !r.done_table))) {
		rc = igs_fail(err, IGS_ERR_NOMEM, "attribution: out of memory for %d-image chunks",
		              batch);
		goto fail;
	}
	if ((rc = quadrature_nodes(rule, m, alpha, weight, err)))
		goto fail;
	if (stretched)
		alpha[0] = ATTR_ADAPTIVE_BASELINE_ALPHA;
	enum baseline_kind bk = ig ? o->baseline : BASELINE_BLACK;
	if ((rc = attribution_baseline(bk, o->blur_sigma, o->seed, pixels, r.size, out->baseline,
	                               err)))
		goto fail;
	r.base = out->baseline;
	for (int t = 0; t < T; t++) {
		struct attr_result *ot = &outs[t];
		if (t > 0)
			memcpy(ot->baseline, out->baseline, r.n * sizeof *ot->baseline);
		ot->size = r.size;
		ot->classes = r.classes;
		ot->adaptive = adaptive;
		ot->rule = rule;
		ot->relative_l2 = NAN;
		ot->estimator = ATTR_ESTIMATOR_NONE;
	}
	if ((rc = check_job(&r, err)))
		goto fail;

	/* F at the input and at the baseline (and the target, from the input);
	 * logits has room for two rows whatever the batch.  A constant
	 * baseline's logits the oracle may have from an earlier run. */
	memcpy(r.rows, pixels, r.n * sizeof *r.rows);
	float constant;
	if (oracle->constant_logits && attr_constant_baseline(bk, &constant)) {
		rc = oracle->forward(oracle->ctx, r.rows, 1, r.logits, err);
		if (!rc)
			rc = oracle->constant_logits(oracle->ctx, constant, r.logits + C, err);
	} else if (B >= 2) {
		memcpy(r.rows + r.n, r.base, r.n * sizeof *r.rows);
		rc = oracle->forward(oracle->ctx, r.rows, 2, r.logits, err);
	} else {
		rc = oracle->forward(oracle->ctx, r.rows, 1, r.logits, err);
		if (!rc)
			rc = oracle->forward(oracle->ctx, r.base, 1, r.logits + C, err);
	}
	if (rc)
		goto fail;
	int targets[ATTR_TARGETS_MAX];
	attr_resolve_targets(o, r.logits, r.classes, T, targets);
	for (int t = T - 1; t >= 0; t--) {
		/* the state of every target; target 0's is the run's own */
		memcpy(outs[t].logits, r.logits, C * sizeof *outs[t].logits);
		r.target = outs[t].target = targets[t];
		r.f_input = output_and_grad(&r, r.logits, NULL);
		r.f_baseline = output_and_grad(&r, r.logits + C, NULL);
		if (t > 0)
			r.ts[t] = (struct target_state){.target = r.target,
			                                .f_input = r.f_input,
			                                .f_baseline = r.f_baseline,
			                                .G = r.ts[t].G,
			                                .prev_attr = r.ts[t].prev_attr,
			                                .sketches = r.ts[t].sketches};
	}

	/* One straight path (no SmoothGrad noise): points by position. */
	if (oracle->path_start && oracle->forward_path && r.samples == 1) {
		if ((rc = oracle->path_start(oracle->ctx, pixels, r.base, err)))
			goto fail;
		r.by_position = true;
		/* per-point maps, steps and sketches need each point's pixel
		 * gradient */
		r.summed = oracle->backward_path && oracle->path_gradient && !o->path_maps &&
		           !o->path_steps && !sketched && o->smooth == SMOOTH_NONE;
		if (r.summed && T > 1 && oracle->path_use_sum && oracle->path_sum_count) {
			/* each target's own sum, as a single run would keep it */
			size_t count = oracle->path_sum_count(oracle->ctx);
			r.path_sums = calloc((size_t)T, sizeof *r.path_sums);
			ok = r.path_sums != NULL;
			for (int t = 1; ok && t < T; t++)
				ok = (r.path_sums[t] = calloc(count, sizeof *r.path_sums[t])) !=
				     NULL;
			if (!ok) {
				rc = igs_fail(err, IGS_ERR_NOMEM,
				              "targets: out of memory for %d path sums", T);
				goto fail;
			}
		}
	}
	r.total = (rounds && !adaptive ? final_m : m) * r.samples;
	struct attr_point *tables[ATTR_TARGETS_MAX];
	float *maps[ATTR_TARGETS_MAX], *sketches[ATTR_TARGETS_MAX];
	for (int t = 0; t < T; t++) {
		tables[t] = outs[t].path;
		maps[t] = outs[t].path_maps;
		sketches[t] = t == 0 ? r.sketches : r.ts[t].sketches;
	}
	rc = eval_points(&r, alpha, weight, m, tables, o->path_maps ? maps : NULL, out->path_steps,
	                 sketched ? sketches : NULL, err);
	if (rc == IGS_ERR_DEADLINE && r.acc1 && r.samples_done > 0 && !o->path_maps &&
	    !o->path_steps) {
		/* SmoothGrad's best so far: the samples finished (their mean
		 * path table, kept at each sample's end) */
		memcpy(out->path, r.done_table, (size_t)m * sizeof *out->path);
		for (int k = 0; k < m; k++) {
			double scale = (double)r.samples / r.samples_done;
			out->path[k].output *= scale;
			out->path[k].gradient_sum *= scale;
			out->path[k].path_derivative *= scale;
		}
		out->deadline_hit = true;
		rc = 0;
	}
	if (rc)
		goto fail;
	if (stretched) {
		/* the first round went into the stretches' sums */
		free(r.point_sum);
		r.point_sum = NULL;
		stretches_reweigh(&r, out->path, m);
		stretches_assemble(&r);
	}
	for (int t = 0; t < T; t++) {
		struct attr_result *ot = &outs[t];
		ot->path_count = m;
		ot->steps = m;
		select_target(&r, t);
		finish_attr(&r, ot);
		ot->samples = r.acc1 ? r.samples_done : 1;
		ot->converged = !ot->deadline_hit;
	}
	select_target(&r, 0);
	r.have_result = true;
	r.best_rel = out->relative_error;
	r.best_l2 = NAN;
	r.rounds = 1;
	if (rounds && (adaptive || m < final_m)) {
		/* the first round's answer, for previews */
		r.round_attr = out->attr;
		report_progress(&r);
		r.round_attr = NULL;
	}
	if (stretched)
		rc = run_stretches(&r, m, out, err);
	else if (rounds)
		rc = run_rounds(&r, rule, m, adaptive ? 0 : final_m, outs, err);
	if (rc)
		goto fail;
	for (int t = 0; t < T; t++) {
		outs[t].evaluations = r.evaluations;
		outs[t].baselines_done = outs[t].baselines_total = 1;
	}
	free(alpha);
	free(weight);
	run_free(&r);
	return 0;
fail:
	free(alpha);
	free(weight);
	run_free(&r);
	for (int t = 0; t < T; t++)
		attr_result_clear(&outs[t]);
	return rc;
}

/* ---- dispatch ---- */

int attr_ig_run(const struct grad_oracle *oracle, const float *pixels, const struct attr_params *o,
                int batch, struct job_control *job, struct attr_result *out,
                struct igs_error *err)
{
	if (o->n_targets > 0) {
		memset(out, 0, sizeof *out);
		return igs_fail(err, IGS_ERR_INTERNAL,
		                "attribution_run explains one target: targets need "
		                "attribution_run_targets");
	}
	return run_targets(oracle, pixels, o, 1, batch, job, out, err);
}

int attr_single_run(const struct grad_oracle *oracle, const float *pixels,
                    const struct attr_params *o, int batch, struct job_control *job,
                    struct attr_result *out, struct igs_error *err)
{
	if (o->method == ATTR_GUIDED_IG) {
		memset(out, 0, sizeof *out);
		int rc = check_options(oracle, o, batch, err);
		return rc ? rc : attr_guided_ig_run(oracle, pixels, o, job, out, err);
	}
	return attr_ig_run(oracle, pixels, o, batch, job, out, err);
}

int attribution_run(const struct grad_oracle *oracle, const float *pixels,
                    const struct attr_params *o, int batch, struct job_control *job,
                    struct attr_result *out, struct igs_error *err)
{
	memset(out, 0, sizeof *out);
	int rc = attr_methods_check_options(o, err);
	if (!rc)
		rc = check_options(oracle, o, batch, err);
	if (rc)
		return rc;
	if (o->method == ATTR_BLUR_IG)
		return attr_blur_ig_run(oracle, pixels, o, batch, job, out, err);
	if (attribution_baseline_set_size(o) > 1 || o->baseline_count > 1)
		return attr_baseline_set_run(oracle, pixels, o, batch, job, out, err);
	return attr_single_run(oracle, pixels, o, batch, job, out, err);
}

int attribution_target_count(const struct attr_params *o)
{
	return o->n_targets > 0 ? o->n_targets : 1;
}

int attribution_run_targets(const struct grad_oracle *oracle, const float *pixels,
                            const struct attr_params *o, int batch, struct job_control *job,
                            struct attr_result *outs, struct igs_error *err)
{
	if (o->n_targets <= 0)
		return attribution_run(oracle, pixels, o, batch, job, outs, err);
	/* outs has attribution_target_count(o) entries: at most
	 * ATTR_TARGETS_MAX when that is refused */
	int count = o->n_targets < ATTR_TARGETS_MAX ? o->n_targets : ATTR_TARGETS_MAX;
	memset(outs, 0, (size_t)count * sizeof *outs);
	int rc = attr_methods_check_options(o, err);
	if (!rc)
		rc = attr_check_targets(oracle, o, err);
	if (rc)
		return rc;
	return run_targets(oracle, pixels, o, o->n_targets, batch, job, outs, err);
}
