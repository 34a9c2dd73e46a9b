/*
 * attr_internal.h - what the attribution module's files share and nothing
 * outside it needs.
 */
#ifndef IGSERVE_ATTR_INTERNAL_H
#define IGSERVE_ATTR_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attribution.h"

/* Uniform in [0, 1) with 53 bits from attribution_splitmix64: the noise
 * baseline's and SmoothGrad's draws. */
double attr_uniform01(uint64_t *state);

/* Whether the baseline is one value everywhere (gray, black, white), and
 * which: such a baseline's logits the oracle may keep between runs. */
bool attr_constant_baseline(enum baseline_kind kind, float *value);

/* ---- the calibrated estimate (estimate.c) ---- */

/* Buckets of a point's sketch: the row length path_sketch_add fills. */
int path_sketch_buckets(void);
/* Each value's bucket and sign, for images of n values (malloc'd). */
uint32_t *path_sketch_codes(size_t n);
/* row[path_sketch_buckets()] += scale * sketch of the step (x - base) * g
 * (x NULL: of g itself). */
void path_sketch_add(const uint32_t *code, size_t n, const float *x, const float *base,
                     const float *g, double scale, float *row);
/* The factor that turns ||fine - coarse|| / ||fine|| into the estimate,
 * from the sketches rows[points][buckets] of a trapezoid rule that
 * refined a coarser one by q (cells of q + 1 points, in path order). */
double path_cells_factor(const float *rows, int points, int q);
/* The same for stretches refined separately (stretch.c), each by its own
 * q: span i is `cells` fine cells of `width` from point `first` of rows,
 * cells / q coarse ones.  The spread is pooled over every coarse cell, so
 * factor[i] is span i's, with its q. */
struct cell_span {
	int first, cells, q;
	double width;
};
void path_span_factors(const float *rows, const struct cell_span *spans, int count,
                       double *factor);
/* The estimate pixel by pixel (attribution.h, attr_result.uncertainty):
 * calibration ||fine_p - coarse_p|| over the three channels ([hw][3] in),
 * with the factor the estimate multiplied ||fine - coarse|| / ||fine|| by;
 * *map ([hw]) is allocated when NULL.  -1 when out of memory. */
int path_uncertainty_map(const float *fine, const float *coarse, size_t hw, double calibration,
                         float **map);
/* What completeness errors are relative to: |F(x) - F(x')|, or 1 when
 * that vanishes (x' == x), so the number stays finite. */
static inline double completeness_scale(double f_delta)
{
	return fabs(f_delta) > 1e-12 ? fabs(f_delta) : 1.0;
}

/* ---- adaptive trapezoid by stretches (stretch.c) ---- */

#define STRETCH_MAX 16
#define STRETCH_FACTOR_MAX 2

struct stretch {
	double lo, hi;      /* its ends, in alpha */
	int cells;          /* its equal cells */
	int first;          /* the path table's index of its low end */
	int q;              /* the planned factor of this round (1: kept) */
	int q_last;         /* the factor of its last refinement (0: none) */
	bool refined;       /* in the last round */
	double d2;          /* ||fine - coarse||^2 of that refinement */
	double factor;      /* its calibration (path_span_factors) */
	double est2;        /* factor^2 d2, its estimated squared error in
	                     * attribution units; INFINITY before its first
	                     * refinement */
	double est2_before; /* est2 before that refinement */
	double completeness; /* its trapezoid of dF/dalpha - (F(hi) - F(lo)) */
};

struct stretch_goal {
	double tolerance;
	double attr_norm2; /* ||attr||^2 */
	double f_delta;    /* |F(x) - F(x')| (1 when that vanishes) */
	int room;          /* new points max_steps still allows */
};

/* s[] for a first round of `cells` equal cells: at most STRETCH_MAX
 * stretches of whole cells; returns their count. */
int stretch_layout(int cells, struct stretch *s);
/* The observed rate p of est2 ~ q^-2p (stretch.c). */
double stretch_rate(const struct stretch *s, int count);
/* Set each stretch's q for the next round; returns the new points (0:
 * nothing to refine within goal->room). */
int stretch_plan(struct stretch *s, int count, const struct stretch_goal *goal);

/* Gaussian blur of src into dst ([size][size][3], separable, edges
 * clamped, radius ceil(3 sigma)); sigma 0 copies.  sigma in [0,
 * ATTR_BLUR_SIGMA_MAX]. */
int attr_blur(const float *src, float *dst, int size, double sigma, struct igs_error *err);

/* F_t of one logits row (the logit, or the softmax probability) and, when
 * d_logits is not NULL, its gradient on the logits. */
double attr_target_output(enum output_kind output, const float *logits, int classes, int target,
                          float *d_logits);

/* The target the options name, or the top-1 class among those from
 * first_default_target on. */
int attr_resolve_target(const struct attr_params *o, const float *logits, int classes);

/* The run for one baseline (Integrated Gradients, saliency, input x
 * gradient, Guided IG), which baseline sets repeat; Blur IG has its own. */
int attr_single_run(const struct grad_oracle *oracle, const float *pixels,
                    const struct attr_params *o, int batch, struct job_control *job,
                    struct attr_result *out, struct igs_error *err);
int attr_ig_run(const struct grad_oracle *oracle, const float *pixels, const struct attr_params *o,
                int batch, struct job_control *job, struct attr_result *out, struct igs_error *err);
int attr_blur_ig_run(const struct grad_oracle *oracle, const float *pixels,
                     const struct attr_params *o, int batch, struct job_control *job,
                     struct attr_result *out, struct igs_error *err);
int attr_guided_ig_run(const struct grad_oracle *oracle, const float *pixels,
                       const struct attr_params *o, struct job_control *job,
                       struct attr_result *out, struct igs_error *err);
/* The mean over a baseline set (attribution.h); runs attr_single_run. */
int attr_baseline_set_run(const struct grad_oracle *oracle, const float *pixels,
                          const struct attr_params *o, int batch, struct job_control *job,
                          struct attr_result *out, struct igs_error *err);
/* The new methods' and baseline sets' option checks (0 or
 * IGS_ERR_BAD_OPTION naming the option). */
int attr_methods_check_options(const struct attr_params *o, struct igs_error *err);
/* targets= (attr_targets.c): IGS_ERR_BAD_OPTION naming what is wrong
 * with o's several targets for this oracle, or 0. */
int attr_check_targets(const struct grad_oracle *oracle, const struct attr_params *o,
                       struct igs_error *err);
/* The T classes to explain, from the input's logits: o->target (the top-1
 * when -1, among classes >= first_default_target) with one target;
 * o->targets, or the top T by logit (ties to the lower index), with
 * several. */
void attr_resolve_targets(const struct attr_params *o, const float *logits, int classes, int T,
                          int *out);

#endif
