/*
 * faithfulness.h - how well attributions rank the pixels that matter:
 * deletion and insertion curves (Petsiuk et al. 2018, RISE), on the same
 * gradient oracle as the attributions (forward passes only).
 *
 * The pixels are ranked by m_p = sum over channels of |attr| (largest
 * first, ties to the lower index p = y * size + x).  At fraction
 * f_k = k / steps (k = 0..steps) the first c_k = floor(k * size^2 / steps)
 * pixels of the ranking are
 *   deletion:  replaced by the baseline (the rest stay the image's),
 *   insertion: the image's (the rest are the baseline's),
 * and the curve is the softmax probability of the target there.  AUC: the
 * trapezoid rule over the fractions, sum_k (p_k + p_{k+1}) / (2 steps).
 * A faithful map drops the probability early in deletion (low AUC) and
 * raises it early in insertion (high AUC).
 */
#ifndef IGSERVE_FAITHFULNESS_H
#define IGSERVE_FAITHFULNESS_H

#include <stdbool.h>

#include "attribution.h"

/* faithfulness= names: a set of these bits */
enum { FAITHFULNESS_DELETION = 1u, FAITHFULNESS_INSERTION = 2u };
#define FAITHFULNESS_DEFAULT_STEPS 16
#define FAITHFULNESS_MAX_STEPS 256

struct faithfulness_result {
	unsigned kinds; /* FAITHFULNESS_* computed (0: none) */
	int steps;
	double *deletion;                   /* [steps + 1] or NULL */
	double *insertion;                  /* [steps + 1] or NULL */
	double deletion_auc, insertion_auc; /* NaN for a curve not computed */
	int forward_passes;                 /* images run through the oracle */
	bool deadline_hit;                  /* the job's deadline came first: no curves (kinds 0) */
};

void faithfulness_result_clear(struct faithfulness_result *r);

/* The forward passes faithfulness_run makes: steps + 1 per curve. */
int faithfulness_forward_passes(unsigned kinds, int steps);

/* The ranking: order[size * size] pixel indices, largest m_p first. */
int faithfulness_order(const float *attr, int size, int *order, struct igs_error *err);

/* The trapezoid AUC of curve[steps + 1] over fractions 0..1. */
double faithfulness_auc(const double *curve, int steps);

/*
 * faithfulness_run - the curves in `kinds` for `target`, with `pixels`,
 * `baseline` and `attr` [size][size][3] (the oracle's size), `batch`
 * images per oracle->forward.  `job` (may be NULL) is checked between
 * batches; at its deadline the result has no curves and deadline_hit set
 * (returns 0: the attributions answered before it stay an answer).  On
 * error *out is empty.
 */
int faithfulness_run(const struct grad_oracle *oracle, const float *pixels, const float *baseline,
                     const float *attr, int target, unsigned kinds, int steps, int batch,
                     struct job_control *job, struct faithfulness_result *out,
                     struct igs_error *err);

#endif
