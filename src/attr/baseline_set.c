/*
 * baseline_set.c - attributions averaged over several baselines: a set
 * named with '+' ("black+white") and baseline_samples draws of the noise
 * and blur baselines (expected-gradients style, Erion et al. 2021).
 *
 *   attr = (1/B) sum_b attr_b,   completeness against F(x) - (1/B) sum_b F(b)
 * (each attr_b's sum is F(x) - F(b) up to its own quadrature error, so the
 * mean's sum is F(x) minus the mean F(b)).
 *
 * Draws, reproducible from `seed`: a stream splitmix64 seeded with
 * seed ^ 0xB45E11E5 gives, per draw in order, one 64-bit value: for noise
 * it is the draw's noise seed (attribution_baseline's), for blur it gives
 * u in [0, 1) and sigma = blur_sigma * 2^(2u - 1), log-uniform in
 * [blur_sigma / 2, 2 blur_sigma] (capped at ATTR_BLUR_SIGMA_MAX): blurs
 * around the requested one, since a blur of sigma near 0 is x itself and
 * explains nothing.  Constant members (gray, black, white) count once.
 *
 * Each baseline is an ordinary run (attr_single_run) of the same target;
 * at a deadline the answer is the mean over the baselines finished (and a
 * run's own coarser answer when it stopped inside one).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <strings.h>

#include "attr_internal.h"
#include "attribution.h"

/* ---- the set as text ---- */

int attribution_baseline_set_parse(const char *text, struct attr_params *p)
{
	enum baseline_kind kinds[ATTR_BASELINE_SET_MAX];
	int count = 0;
	const char *s = text;
	for (;;) {
		size_t len = strcspn(s, "+");
		char name[16];
		if (len == 0 || len >= sizeof name || count == ATTR_BASELINE_SET_MAX)
			return -1;
		memcpy(name, s, len);
		name[len] = '\0';
		int b = attribution_baseline_parse(name);
		if (b < 0)
			return -1;
		kinds[count++] = (enum baseline_kind)b;
		s += len;
		if (!*s)
			break;
		s++; /* '+' */
	}
	p->baseline = kinds[0];
	p->baseline_count = count > 1 ? count : 0;
	memcpy(p->baselines, kinds, (size_t)count * sizeof *kinds);
	return 0;
}

void attribution_baseline_set_name(const struct attr_params *p, char *buf, size_t size)
{
	if (!size)
		return;
	buf[0] = '\0';
	int count = p->baseline_count > 1 ? p->baseline_count : 1;
	size_t used = 0;
	for (int i = 0; i < count; i++) {
		enum baseline_kind b = p->baseline_count > 1 ? p->baselines[i] : p->baseline;
		int w = snprintf(buf + used, size - used, "%s%s", i ? "+" : "",
		                 attribution_baseline_name(b));
		if (w < 0 || (size_t)w >= size - used)
			return;
		used += (size_t)w;
	}
}

static bool drawn(enum baseline_kind b)
{
	return b == BASELINE_NOISE || b == BASELINE_BLUR;
}

int attribution_baseline_set_size(const struct attr_params *p)
{
	int count = p->baseline_count > 1 ? p->baseline_count : 1, total = 0;
	for (int i = 0; i < count; i++) {
		enum baseline_kind b = p->baseline_count > 1 ? p->baselines[i] : p->baseline;
		total += drawn(b) && p->baseline_samples > 0 ? p->baseline_samples : 1;
	}
	return total;
}

/* ---- option checks of the new methods ---- */

int attr_methods_check_options(const struct attr_params *o, struct igs_error *err)
{
	bool set = o->baseline_count > 1 || o->baseline_samples > 0;
	if (o->baseline_count > ATTR_BASELINE_SET_MAX)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "baseline: at most %d baselines, got %d",
		                ATTR_BASELINE_SET_MAX, o->baseline_count);
	if (o->baseline_samples < 0 || o->baseline_samples > QUADRATURE_MAX_POINTS)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "baseline_samples must be 0..%d, got %d",
		                QUADRATURE_MAX_POINTS, o->baseline_samples);
	if (set && !attribution_method_uses_baseline(o->method))
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "baseline sets and baseline_samples need a method with a baseline "
		                "(integrated gradients or guided_ig), not %s",
		                attribution_method_name(o->method, o->rule));
	if (set && o->tolerance > 0)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "tolerance (adaptive IG) cannot be combined with a baseline set or "
		                "baseline_samples");
	if (set && o->smooth != SMOOTH_NONE)
		return igs_fail(
		    err, IGS_ERR_BAD_OPTION,
		    "smoothgrad cannot be combined with a baseline set or baseline_samples");
	if (o->baseline_samples > 0) {
		bool any = false;
		int count = o->baseline_count > 1 ? o->baseline_count : 1;
		for (int i = 0; i < count; i++)
			any |= drawn(o->baseline_count > 1 ? o->baselines[i] : o->baseline);
		if (!any)
			return igs_fail(
			    err, IGS_ERR_BAD_OPTION,
			    "baseline_samples draws noise or blur baselines: the baseline "
			    "must include noise or blur");
	}
	if (o->method == ATTR_BLUR_IG &&
	    (!(o->blur_max_sigma > 0) || o->blur_max_sigma > ATTR_BLUR_SIGMA_MAX))
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "blur_max_sigma must be in (0, %g], got %g", ATTR_BLUR_SIGMA_MAX,
		                o->blur_max_sigma);
	if (o->method == ATTR_GUIDED_IG) {
		if (!(o->guided_fraction > 0) || o->guided_fraction > 1)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "guided_fraction must be in (0, 1], got %g",
			                o->guided_fraction);
		if (!(o->guided_max_dist >= 0) || o->guided_max_dist > 1)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "guided_max_dist must be in [0, 1], got %g",
			                o->guided_max_dist);
	}
	if ((o->method == ATTR_BLUR_IG || o->method == ATTR_GUIDED_IG) &&
	    (o->smooth != SMOOTH_NONE || o->tolerance > 0))
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "%s takes no smoothgrad and no tolerance (adaptive refinement is "
		                "for integrated gradients)",
		                attribution_method_name(o->method, o->rule));
	return 0;
}

/* ---- the run ---- */

/* The job's progress while a set runs: the baselines' evaluations added up. */
struct set_progress {
	void (*progress)(void *ctx, const struct job_progress *p);
	void *ctx;
	int before, per_run, total; /* evaluations of the finished runs; of one; of all */
};

static void set_progress_report(void *ctx, const struct job_progress *p)
{
	const struct set_progress *s = ctx;
	struct job_progress q = *p;
	q.points_done = s->before + p->points_done;
	q.points_total = s->total;
	q.attr = NULL; /* one baseline's round is not the answer's */
	q.attr_size = 0;
	s->progress(s->ctx, &q);
}

/* The i-th baseline of the set: its params (kind, seed, blur sigma). */
static void baseline_params(const struct attr_params *o, struct attr_params *sub)
{
	*sub = *o;
	sub->baseline_count = 0;
	sub->baseline_samples = 0;
}

int attr_baseline_set_run(const struct grad_oracle *oracle, const float *pixels,
                          const struct attr_params *o, int batch, struct job_control *job,
                          struct attr_result *out, struct igs_error *err)
{
	memset(out, 0, sizeof *out);
	const int total = attribution_baseline_set_size(o);
	const size_t n = (size_t)oracle->size * oracle->size * 3;
	const size_t hw = (size_t)oracle->size * oracle->size;
	double *acc = calloc(n, sizeof *acc), *base_acc = calloc(n, sizeof *base_acc);
	if (!acc || !base_acc) {
		free(acc);
		free(base_acc);
		return igs_fail(err, IGS_ERR_NOMEM, "baseline set: out of memory");
	}
	struct set_progress sp = {0};
	void (*saved_progress)(void *, const struct job_progress *) = job ? job->progress : NULL;
	void *saved_ctx = job ? job->progress_ctx : NULL;
	if (job && job->progress) {
		sp = (struct set_progress){job->progress, job->progress_ctx, 0, o->steps,
		                           o->steps * total};
		job->progress = set_progress_report;
		job->progress_ctx = &sp;
	}
	uint64_t stream = o->seed ^ 0xB45E11E5ull;
	int members = o->baseline_count > 1 ? o->baseline_count : 1;
	int done = 0, rc = 0;
	double f_base_sum = 0, err_bound = 0; /* sum_b relative_l2_b ||attr_b|| */
	bool estimate = true, deadline = false, converged = true;
	struct attr_params sub;
	baseline_params(o, &sub);
	for (int mi = 0; mi < members && !rc && !deadline; mi++) {
		enum baseline_kind kind = o->baseline_count > 1 ? o->baselines[mi] : o->baseline;
		int draws = drawn(kind) && o->baseline_samples > 0 ? o->baseline_samples : 1;
		for (int d = 0; d < draws && !rc && !deadline; d++) {
			sub.baseline = kind;
			if (o->baseline_samples > 0 && kind == BASELINE_NOISE) {
				sub.seed = attribution_splitmix64(&stream);
			} else if (o->baseline_samples > 0 && kind == BASELINE_BLUR) {
				double u = attr_uniform01(&stream);
				sub.blur_sigma = fmin(o->blur_sigma * pow(2.0, 2.0 * u - 1.0),
				                      ATTR_BLUR_SIGMA_MAX);
			}
			struct attr_result r;
			rc = attr_single_run(oracle, pixels, &sub, batch, job, &r, err);
			if (rc == IGS_ERR_DEADLINE && done > 0) {
				deadline = true;
				rc = 0;
				break;
			}
			if (rc)
				break;
			if (done > 0 && r.path_count != out->path_count) {
				/* a run cut short by the deadline with a coarser rule:
				 * its table does not line up with the others' */
				attr_result_clear(&r);
				deadline = true;
				break;
			}
			if (done == 0) {
				/* the first run fixes the target and the shape of the answer */
				*out = r;
				sub.target = r.target;
				out->path_maps = r.path_maps;
				for (size_t i = 0; i < n; i++) {
					acc[i] = r.attr[i];
					base_acc[i] = r.baseline[i];
				}
				sp.per_run = r.evaluations;
				sp.total = r.evaluations * total;
			} else {
				for (size_t i = 0; i < n; i++) {
					acc[i] += r.attr[i];
					base_acc[i] += r.baseline[i];
				}
				for (int k = 0; k < out->path_count; k++) {
					out->path[k].alpha += r.path[k].alpha;
					out->path[k].output += r.path[k].output;
					out->path[k].gradient_sum += r.path[k].gradient_sum;
					out->path[k].path_derivative += r.path[k].path_derivative;
				}
				for (size_t i = 0;
				     out->path_maps && i < (size_t)out->path_count * hw; i++)
					out->path_maps[i] += r.path_maps[i];
				out->evaluations += r.evaluations;
			}
			double norm = 0;
			for (size_t i = 0; i < n; i++)
				norm += (double)r.attr[i] * r.attr[i];
			if (isfinite(r.relative_l2))
				err_bound += r.relative_l2 * sqrt(norm);
			else
				estimate = false;
			f_base_sum += r.f_baseline;
			converged &= r.converged;
			deadline |= r.deadline_hit;
			if (done > 0)
				attr_result_clear(&r);
			done++;
			sp.before += sp.per_run;
		}
	}
	if (job) {
		job->progress = saved_progress;
		job->progress_ctx = saved_ctx;
	}
	if (rc) {
		if (done > 0)
			attr_result_clear(out);
		free(acc);
		free(base_acc);
		return rc;
	}
	/* the means */
	double inv = 1.0 / done, sum = 0, norm = 0;
	for (size_t i = 0; i < n; i++) {
		out->attr[i] = (float)(acc[i] * inv);
		out->baseline[i] = (float)(base_acc[i] * inv);
		sum += out->attr[i];
		norm += (double)out->attr[i] * out->attr[i];
	}
	for (int k = 0; k < out->path_count; k++) {
		out->path[k].alpha *= inv;
		out->path[k].output *= inv;
		out->path[k].gradient_sum *= inv;
		out->path[k].path_derivative *= inv;
	}
	for (size_t i = 0; out->path_maps && i < (size_t)out->path_count * hw; i++)
		out->path_maps[i] = (float)(out->path_maps[i] * inv);
	out->f_baseline = f_base_sum * inv;
	out->sum = sum;
	double want = out->f_input - out->f_baseline;
	out->delta = sum - want;
	out->relative_error = fabs(out->delta) / completeness_scale(want);
	/* ||mean error|| <= mean ||error_b|| (the triangle inequality) */
	if (estimate && norm > 0) {
		out->relative_l2 = err_bound * inv / sqrt(norm);
	} else {
		out->relative_l2 = NAN;
		out->estimator = ATTR_ESTIMATOR_NONE;
	}
	/* the first run's map is not the mean's (attribution_estimates refuses
	 * uncertainty maps for sets) */
	free(out->uncertainty);
	out->uncertainty = NULL;
	out->deadline_hit = deadline;
	out->converged = converged && !deadline;
	out->baselines_done = done;
	out->baselines_total = total;
	free(acc);
	free(base_acc);
	return 0;
}
