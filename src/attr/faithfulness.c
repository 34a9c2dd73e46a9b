/*
 * faithfulness.c - deletion and insertion curves over a gradient oracle
 * (see faithfulness.h for the definition).  Images are built a batch at a
 * time from the ranking, so memory is `batch` images whatever the steps.
 */
#include "faithfulness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void faithfulness_result_clear(struct faithfulness_result *r)
{
	free(r->deletion);
	free(r->insertion);
	memset(r, 0, sizeof *r);
}

int faithfulness_forward_passes(unsigned kinds, int steps)
{
	int curves = !!(kinds & FAITHFULNESS_DELETION) + !!(kinds & FAITHFULNESS_INSERTION);
	return curves * (steps + 1);
}

/* A pixel's rank key: qsort on (magnitude, index) pairs needs no context. */
struct ranked {
	float magnitude;
	int index;
};

/* largest magnitude first, ties to the lower index */
static int by_magnitude(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;
	if (x->magnitude != y->magnitude)
		return x->magnitude > y->magnitude ? -1 : 1;
	return (x->index > y->index) - (x->index < y->index);
}

int faithfulness_order(const float *attr, int size, int *order, struct igs_error *err)
{
	size_t hw = (size_t)size * size;
	struct ranked *keys = malloc(hw * sizeof *keys);
	if (!keys)
		return igs_fail(err, IGS_ERR_NOMEM, "faithfulness: out of memory");
	for (size_t p = 0; p < hw; p++) {
		const float *a = attr + 3 * p;
		keys[p] = (struct ranked){fabsf(a[0]) + fabsf(a[1]) + fabsf(a[2]), (int)p};
	}
	qsort(keys, hw, sizeof *keys, by_magnitude);
	for (size_t p = 0; p < hw; p++)
		order[p] = keys[p].index;
	free(keys);
	return 0;
}

double faithfulness_auc(const double *curve, int steps)
{
	double s = 0;
	for (int k = 0; k < steps; k++)
		s += 0.5 * (curve[k] + curve[k + 1]);
	return s / steps;
}

/* Softmax probability of class t in double. */
static double probability(const float *logits, int classes, int t)
{
	double mx = logits[0], z = 0;
	for (int j = 1; j < classes; j++)
		mx = fmax(mx, logits[j]);
	for (int j = 0; j < classes; j++)
		z += exp((double)logits[j] - mx);
	return exp((double)logits[t] - mx) / z;
}

int faithfulness_run(const struct grad_oracle *oracle, const float *pixels, const float *baseline,
                     const float *attr, int target, unsigned kinds, int steps, int batch,
                     struct job_control *job, struct faithfulness_result *out,
                     struct igs_error *err)
{
	memset(out, 0, sizeof *out);
	out->deletion_auc = out->insertion_auc = NAN;
	if (!(kinds & (FAITHFULNESS_DELETION | FAITHFULNESS_INSERTION)))
		return 0;
	if (steps < 1 || steps > FAITHFULNESS_MAX_STEPS)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "faithfulness_steps must be 1..%d, got %d",
		                FAITHFULNESS_MAX_STEPS, steps);
	if (target < 0 || target >= oracle->classes || batch < 1)
		return igs_fail(err, IGS_ERR_INTERNAL,
		                "faithfulness: target %d or batch %d invalid", target, batch);
	const int size = oracle->size;
	const size_t hw = (size_t)size * size, n = 3 * hw;
	int *order = malloc(hw * sizeof *order);
	float *rows = malloc((size_t)batch * n * sizeof *rows);
	float *logits = malloc((size_t)batch * oracle->classes * sizeof *logits);
	out->kinds = kinds & (FAITHFULNESS_DELETION | FAITHFULNESS_INSERTION);
	out->steps = steps;
	if (out->kinds & FAITHFULNESS_DELETION)
		out->deletion = malloc((size_t)(steps + 1) * sizeof *out->deletion);
	if (out->kinds & FAITHFULNESS_INSERTION)
		out->insertion = malloc((size_t)(steps + 1) * sizeof *out->insertion);
	int rc = 0;
	if (!order || !rows || !logits ||
	    ((out->kinds & FAITHFULNESS_DELETION) && !out->deletion) ||
	    ((out->kinds & FAITHFULNESS_INSERTION) && !out->insertion)) {
		rc = igs_fail(err, IGS_ERR_NOMEM, "faithfulness: out of memory");
		goto done;
	}
	if ((rc = faithfulness_order(attr, size, order, err)))
		goto done;
	/* The images, curve by curve, point by point: image e is curve
	 * e / (steps + 1) (deletion first) at k = e % (steps + 1). */
	const int per = steps + 1;
	const bool both = out->deletion && out->insertion;
	const int total = faithfulness_forward_passes(out->kinds, steps);
	for (int e0 = 0; e0 < total; e0 += batch) {
		if ((rc = job_check(job, "faithfulness", err)))
			goto done;
		int nb = total - e0 < batch ? total - e0 : batch;
		for (int b = 0; b < nb; b++) {
			int e = e0 + b, k = e % per;
			bool deleting = both ? e < per : out->deletion != NULL;
			/* first c pixels of the ranking from `front`, the rest from `back` */
			const float *front = deleting ? baseline : pixels;
			const float *back = deleting ? pixels : baseline;
			size_t c = (size_t)((long long)k * (long long)hw / steps);
			float *row = rows + (size_t)b * n;
			memcpy(row, back, n * sizeof *row);
			for (size_t i = 0; i < c; i++) {
				size_t p = (size_t)order[i];
				memcpy(row + 3 * p, front + 3 * p, 3 * sizeof *row);
			}
		}
		rc = oracle->infer ? oracle->infer(oracle->ctx, rows, nb, logits, err)
		                   : oracle->forward(oracle->ctx, rows, nb, logits, err);
		if (rc)
			goto done;
		for (int b = 0; b < nb; b++) {
			int e = e0 + b, k = e % per;
			bool deleting = both ? e < per : out->deletion != NULL;
			double p = probability(logits + (size_t)b * oracle->classes,
			                       oracle->classes, target);
			(deleting ? out->deletion : out->insertion)[k] = p;
		}
		out->forward_passes += nb;
		if (job && job->yield)
			job->yield(job->yield_ctx);
	}
	if (out->deletion)
		out->deletion_auc = faithfulness_auc(out->deletion, steps);
	if (out->insertion)
		out->insertion_auc = faithfulness_auc(out->insertion, steps);
done:
	free(order);
	free(rows);
	free(logits);
	if (rc)
		faithfulness_result_clear(out);
	if (rc == IGS_ERR_DEADLINE) {
		out->steps = steps;
		out->deletion_auc = out->insertion_auc = NAN;
		out->deadline_hit = true;
		rc = 0;
	}
	return rc;
}
