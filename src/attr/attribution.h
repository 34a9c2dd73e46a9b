/*
 * attribution.h - Integrated Gradients, saliency, input x gradient and
 * SmoothGrad, written against a gradient oracle so the same code runs the
 * real network, a linear model (attr == (x - x') * w exactly) and a
 * quadratic one (completeness) in the tests.
 *
 * Integrated Gradients (Sundararajan et al. 2017, eq. 1), in pixel space:
 *   attr_i = (x_i - x'_i) * sum_k w_k * dF_t(x' + a_k (x - x'))/dx_i
 * with (a_k, w_k) from quadrature.h.  F_t is the target's logit, or its
 * softmax probability with output=probability, whose gradient on the
 * logits is p_t (e_t - p) (passed to the oracle's backward as d_logits).
 *
 * Memory is bounded by design: path points go through the oracle in
 * chunks of at most `batch` images; the weighted gradient sum is
 * accumulated in double over [size][size][3]; nothing grows with steps
 * except the per-point table (and the optional per-point maps).
 */
#ifndef IGSERVE_ATTRIBUTION_H
#define IGSERVE_ATTRIBUTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "job.h"
#include "quadrature.h"

struct model;
struct net_workspace;

/* ---- what to compute ---- */

enum attr_method {
	ATTR_INTEGRATED_GRADIENTS, /* IG with the quadrature `rule` */
	ATTR_SALIENCY,             /* plain gradient dF/dx */
	ATTR_INPUT_X_GRADIENT,     /* x * dF/dx */
	ATTR_BLUR_IG,              /* Blur IG (blur_ig.c): the path from a blur of x to x */
	ATTR_GUIDED_IG,            /* Guided IG (guided_ig.c): an adaptive path from x' */
};

enum baseline_kind {
	BASELINE_GRAY,
	BASELINE_BLACK,
	BASELINE_WHITE,
	BASELINE_BLUR,
	BASELINE_NOISE,
};
enum { BASELINE_COUNT = BASELINE_NOISE + 1 };

enum smooth_kind { SMOOTH_NONE, SMOOTH_GRAD, SMOOTH_GRAD_SQ, SMOOTH_VARGRAD };
enum { SMOOTH_COUNT = SMOOTH_VARGRAD + 1 };

/* logprob: log softmax of the target, whose gradient on the logits is
 * e_t - p (issue 16). */
enum output_kind { OUTPUT_LOGIT, OUTPUT_PROBABILITY, OUTPUT_LOGPROB };
enum { OUTPUT_COUNT = OUTPUT_LOGPROB + 1 };

/* The blur baseline's largest sigma: its kernel has 2 ceil(3 sigma) + 1 taps
 * per pixel and pass (601 here; at 1000 it was 6001, seconds of CPU for a
 * blur that is by then the image's mean anyway). */
#define ATTR_BLUR_SIGMA_MAX 100.0

/* The most members of a baseline set ("black+white+noise"). */
#define ATTR_BASELINE_SET_MAX 8
/* Most classes one request may explain at once (targets=). */
#define ATTR_TARGETS_MAX 16

struct attr_params {
	int target;                  /* -1: the top-1 class */
	int first_default_target;    /* 0; the top-1 default is taken among classes >= this
	                                (1 leaves out a background class 0) */
	enum attr_method method;     /* integrated gradients */
	enum quad_rule rule;         /* gausslegendre */
	int steps;                   /* 50 */
	enum baseline_kind baseline; /* gray */
	double blur_sigma;           /* 10 (input pixels), at most ATTR_BLUR_SIGMA_MAX */
	unsigned long long seed;     /* 0: noise baseline and SmoothGrad seed */
	double tolerance;            /* <= 0: off */
	int max_steps;               /* 512 */
	bool path_maps;              /* per-path-point gradient maps */
	enum output_kind output;     /* logit */
	enum smooth_kind smooth;     /* none */
	int smooth_samples;          /* 0 */
	double smooth_sigma;         /* 0.15 (fraction of the 0..255 range) */
	/* ---- the notebook's views (issue 15) ---- */
	bool path_steps; /* per-path-point signed attribution steps, RGB (path_steps below) */
	/* ---- Blur IG, Guided IG and baseline sets (issue 16) ---- */
	double blur_max_sigma;  /* 50: Blur IG's path starts at this blur (pixels, <= 100) */
	double guided_fraction; /* 0.25: Guided IG moves this fraction of features per move */
	double guided_max_dist; /* 0.02: how far (in alpha) Guided IG may leave the straight line */
	/* A baseline set ("black+white"): with baseline_count >= 2 the run is the
	 * mean over baselines[0..count-1] (baseline is then baselines[0]); 0 or
	 * 1: `baseline` alone. */
	int baseline_count;
	enum baseline_kind baselines[ATTR_BASELINE_SET_MAX];
	int baseline_samples; /* 0: off; N: N draws of each noise or blur member */
	/* ---- several targets (issue 16): attribution_run_targets ---- */
	int n_targets;                 /* 0: one target (`target`); else how many */
	bool targets_top;              /* the top n_targets classes (targets=topK) */
	int targets[ATTR_TARGETS_MAX]; /* the classes, without targets_top */
};

/* The defaults listed above. */
void attr_params_init(struct attr_params *p);

/* Contract names ("gray", "smoothgrad", "probability"), and back (-1 when
 * unknown; case-insensitive). */
/* path_maps keeps one map per point: at most this many points. */
#define ATTR_PATH_MAPS_MAX_POINTS 512
/* path_steps keeps three floats per pixel and point, three times a map:
 * at most this many points (77 MB at 224 x 224, about the maps' 103 MB at
 * their cap, before a refinement's merge briefly doubles it). */
#define ATTR_PATH_STEPS_MAX_POINTS 128

const char *attribution_baseline_name(enum baseline_kind b);
int attribution_baseline_parse(const char *name);
const char *attribution_smooth_name(enum smooth_kind k);
int attribution_smooth_parse(const char *name);
const char *attribution_output_name(enum output_kind k);
int attribution_output_parse(const char *name);

/* The method's name as answers report it: the rule's name for Integrated
 * Gradients ("gausslegendre"), else "saliency" or "input_x_gradient". */
const char *attribution_method_name(enum attr_method method, enum quad_rule rule);
/* A `method` option: a rule name (Integrated Gradients with that rule),
 * "integrated_gradients" or "ig" (the rule unchanged), "saliency",
 * "input_x_gradient".  Returns 0, or -1 when unknown (nothing changed). */
int attribution_method_parse(const char *name, enum attr_method *method, enum quad_rule *rule);

/*
 * A gradient oracle: forward then backward on the same batch, as
 * net_forward / net_backward.  `pixels` is [n][size][size][3] (0..255),
 * `logits` [n][classes]; backward receives d_logits [n][classes] and
 * writes grad [n][size][size][3] = sum_j d_logits[i][j] dlogit_ij/dx_i.
 * Both return 0 or a negative igs_code (and fill err).
 */
struct grad_oracle {
	void *ctx;
	int size;
	int classes;
	int (*forward)(void *ctx, const float *pixels, int n, float *logits, struct igs_error *err);
	int (*backward)(void *ctx, const float *d_logits, int n, float *grad,
	                struct igs_error *err);
	/* Optional (both NULL when not offered): path points by position.
	 * path_start fixes the straight path from `baseline` to `x`;
	 * forward_path then does forward for the n points baseline + alpha[i]
	 * (x - baseline), as the network does cheaper than from their pixels
	 * (net_forward_path). */
	int (*path_start)(void *ctx, const float *x, const float *baseline, struct igs_error *err);
	int (*forward_path)(void *ctx, const float *alpha, int n, float *logits,
	                    struct igs_error *err);
	/* Optional with the two above: the path's gradients summed inside the
	 * oracle (net_backward_path).  backward_path does backward for the n
	 * points of the last forward_path, adding weight[i] times point i's
	 * gradient into a sum it keeps, and writes sums[2i] = sum_j dF_i/dx_j
	 * and sums[2i + 1] = sum_j (x_j - x'_j) dF_i/dx_j; path_gradient then
	 * writes that sum to grad [size][size][3] and starts it over. */
	int (*backward_path)(void *ctx, const float *d_logits, int n, const float *weight,
	                     double *sums, struct igs_error *err);
	int (*path_gradient)(void *ctx, float *grad, struct igs_error *err);
	/* Optional: logits [classes] of an image whose every pixel value is
	 * `value` (the gray, black and white baselines), which the oracle may
	 * keep between runs (net_constant_logits). */
	int (*constant_logits)(void *ctx, float value, float *logits, struct igs_error *err);
	/* Optional: forward's logits keeping nothing for a backward (net_infer,
	 * faster): the faithfulness curves' passes (faithfulness.h). */
	int (*infer)(void *ctx, const float *pixels, int n, float *logits, struct igs_error *err);
	/* Optional with backward_path: several sums over one path (several
	 * targets).  path_use_sum makes backward_path and path_gradient use
	 * `sum` (path_sum_count floats, caller-owned, zeroed) instead of the
	 * oracle's own sum (NULL: back to it; path_start goes back too). */
	size_t (*path_sum_count)(void *ctx);
	void (*path_use_sum)(void *ctx, float *sum);
};

/* The network as an oracle: forward/backward through `ws` (which must hold
 * at least the batch attribution_run is given).  Nothing is owned; `o` is
 * valid while m and ws are. */
void attribution_net_oracle(struct grad_oracle *o, const struct model *m, struct net_workspace *ws);

/* One row of the path table: the numbers the original notebook printed
 * for every step.  With SmoothGrad the rows average over the samples. */
struct attr_point {
	double alpha;           /* position on the path x' + alpha (x - x') */
	double weight;          /* quadrature weight in the final rule */
	double output;          /* F_t there: logit (or probability) */
	double gradient_sum;    /* sum_i dF_t/dx_i there */
	double path_derivative; /* dF_t/dalpha = sum_i (x_i - x'_i) dF_t/dx_i */
};

struct attr_result {
	float *attr;     /* [size][size][3] */
	float *logits;   /* [classes]: the input's logits (for predictions) */
	float *baseline; /* [size][size][3]: the baseline used (pixel space) */
	int size, classes;
	int target; /* resolved: the top-1 class when the option was -1 */
	double sum, f_input, f_baseline, delta, relative_error; /* completeness */
	struct attr_point *path;                                /* [path_count], increasing alpha */
	int path_count;
	/* [path_count][size][size]: sum over channels of |dF_t/dx| at each
	 * point (only with path_maps; NULL otherwise) */
	float *path_maps;
	/* [path_count][size][size][3]: the signed attribution step of each
	 * point, s_k = (x - x') * dF_t(x' + a_k (x - x'))/dx (the gradient
	 * itself for saliency), averaged over SmoothGrad's samples, so that
	 * sum_k weight_k s_k is the attributions (plain IG and SmoothGrad's
	 * mean).  Only with path_steps; NULL otherwise. */
	float *path_steps;
	enum quad_rule rule; /* the rule of the final answer (IG) */
	int steps;           /* points of the final rule */
	int evaluations;     /* gradient evaluations spent in all */
	int samples;         /* SmoothGrad samples averaged (fewer at a deadline) */
	/* The convergence report: an estimate of ||attr - attr_exact||_2 /
	 * ||attr_exact||_2 (attr_exact: the exact path integral), NaN when the
	 * points allow none, and the estimator's name (ATTR_ESTIMATOR_*). */
	double relative_l2;
	const char *estimator;
	/* [size][size]: the estimate pixel by pixel, ||e_p|| over the three
	 * channels of g (attr - attr_coarse), g scaled so that the map's L2
	 * norm is relative_l2 ||attr||: where the error the estimate counts
	 * lies.  With the estimate (run_rounds); NULL otherwise. */
	float *uncertainty;
	bool adaptive;     /* tolerance was on */
	bool converged;    /* adaptive: relative_l2 and relative_error <= tolerance;
	                    * otherwise: every requested point was evaluated */
	bool deadline_hit; /* stopped at the deadline with a coarser answer */
	/* baseline sets: baselines averaged, and how many were asked for (1
	 * without a set; fewer done at a deadline) */
	int baselines_done, baselines_total;
};

/*
 * Convergence estimators.  Every Riemann rule's m points can hold a
 * complete coarser rule (quadrature_coarser), evaluated first; so can the
 * previous round of adaptive refinement.  With q the ratio of the two
 * rules' spacings (the refinement's factor: quadrature_refinement_by),
 *   relative_l2 = ||attr_m - attr_coarse||_2 / ||attr_m||_2 / (q - 1).
 * Why: a ReLU network's gradient is piecewise constant along the path, so
 * every rule's error falls as C/m (Gauss-Legendre's order buys nothing);
 * the coarse error is then about q times the fine one, and their
 * difference at least (q - 1) times it when the errors point the same way,
 * more when they do not: the estimate errs on the safe side.
 *   subrule_difference  the coarser rule is part of the points evaluated
 *   order_difference    Gauss-Legendre: the previous order of adaptive
 *                       refinement (m/2 points, all evaluated as well)
 *   subrule_cells       the trapezoid rule: the same difference calibrated
 *                       cell by cell, ||attr_m - attr_coarse|| / ||attr_m||
 *                       times a factor from the random-phase model of the
 *                       error and the number of cells carrying it
 *                       (estimate.c), between 1/sqrt(q^2 - 1) and 1/(q - 1)
 *   none                no coarser rule among the points (e.g. plain
 *                       Gauss-Legendre, an even trapezoid): relative_l2 NaN
 */
#define ATTR_ESTIMATOR_SUBRULE "subrule_difference"
#define ATTR_ESTIMATOR_ORDER "order_difference"
#define ATTR_ESTIMATOR_CELLS "subrule_cells"
#define ATTR_ESTIMATOR_NONE "none"

/* The rule and starting points adaptive IG uses when a request names
 * neither (chosen by measurement: README, Attribution). */
#define ATTR_ADAPTIVE_RULE RULE_RIEMANN_TRAPEZOID
#define ATTR_ADAPTIVE_START_POINTS 15
/* Where the adaptive trapezoid evaluates its baseline end: just inside
 * the path.  At a constant baseline (gray, black, white) the network's
 * comparisons tie (max pooling over equal values), so the gradient at
 * alpha = 0 itself is not the limit of the gradients beside it; on a
 * ResNet-50 it differs from them ten times more than neighbouring points
 * do, and its weight h/2 made the trapezoid err 2x on the first
 * stretch.  The integral does not see one point; the rule does.  1e-4 is
 * below any cell (max_steps <= 4096) and far above float rounding. */
#define ATTR_ADAPTIVE_BASELINE_ALPHA 1e-4

void attr_result_clear(struct attr_result *r);

/* Whether a run with `o` gives a convergence estimate and its
 * uncertainty map (short of a deadline before the second round): plain
 * Integrated Gradients on one baseline, adaptive or with a rule whose
 * points nest a coarser one. */
bool attribution_estimates(const struct attr_params *o);

/*
 * attribution_baseline - the baseline image x' in pixel space,
 * [size][size][3]: gray 127.5, black 0, white 255, blur (separable
 * Gaussian of x with `blur_sigma` pixels, edges clamped), noise (uniform
 * 0..255 from splitmix64 seeded with `seed`, one draw per value in HWC
 * order: u = (next() >> 11) * 2^-53 * 255).  `out` is caller-owned and must
 * not alias x.
 */
int attribution_baseline(enum baseline_kind kind, double blur_sigma, uint64_t seed, const float *x,
                         int size, float *out, struct igs_error *err);

/*
 * Baseline sets (baseline_set.c).  attribution_baseline_set_parse reads
 * "black", "black+white", ... (at most ATTR_BASELINE_SET_MAX members) into
 * p->baseline, p->baselines and p->baseline_count; -1 (nothing changed) on
 * an unknown member or too many.  attribution_baseline_set_name writes the
 * set back as text ("black+white"; the single name without a set).
 * attribution_baseline_set_size: the baselines a run averages, counting
 * baseline_samples draws of each noise or blur member (1 without a set).
 */
int attribution_baseline_set_parse(const char *text, struct attr_params *p);
void attribution_baseline_set_name(const struct attr_params *p, char *buf, size_t size);
int attribution_baseline_set_size(const struct attr_params *p);
/* Whether the method's path starts at a baseline it takes from `baseline`
 * (Integrated Gradients, Guided IG). */
bool attribution_method_uses_baseline(enum attr_method method);
/* Whether the method integrates along a path and reports convergence (IG,
 * Blur IG, Guided IG). */
bool attribution_method_is_path(enum attr_method method);

/* splitmix64 (Steele et al. 2014): the PRNG of the noise baseline and of
 * SmoothGrad, exposed for tests. */
uint64_t attribution_splitmix64(uint64_t *state);

/*
 * attribution_run - attributions of `pixels` ([size][size][3], 0..255,
 * caller-owned) for the options in `o` (method, rule, steps, baseline,
 * blur_sigma, seed, tolerance, max_steps, output, smooth*, target,
 * path_maps, path_steps), evaluating at most `batch` images per oracle call.
 *
 * Integrated Gradients runs in rounds: the coarsest rule nested in the
 * request's points first, then each refinement's new points (plain IG:
 * up to the requested m; adaptive: until relative_l2 and relative_error
 * are both within the tolerance, or max_steps).  Each round after the
 * first gives the convergence estimate.
 *
 * `job` may be NULL.  Between chunks the function reports progress and
 * checks job->cancelled (IGS_ERR_CANCELLED) and job->deadline.  At the
 * deadline it returns the best complete answer so far: the last completed
 * round of IG, the finished samples of SmoothGrad, with converged = false
 * and deadline_hit = true; IGS_ERR_DEADLINE only when none is complete.
 *
 * On success *out owns its arrays (free with attr_result_clear); on error
 * *out is left empty.
 */
int attribution_run(const struct grad_oracle *oracle, const float *pixels,
                    const struct attr_params *o, int batch, struct job_control *job,
                    struct attr_result *out, struct igs_error *err);

/*
 * attribution_run_targets - attribution_run for several classes at once
 * (o->n_targets: o->targets, or the top n_targets by logit among classes
 * >= first_default_target, ties to the lower index), into
 * outs[attribution_target_count(o)], in that order.  The path, its points
 * and every chunk's forward pass are shared; each chunk then runs one
 * backward per target.  Target t's answer is, bit for bit, the one
 * attribution_run gives for target=targets[t] (the same passes and sums in
 * the same order; an oracle that sums the path but offers no
 * path_use_sum has each target's sum taken per chunk instead: the same up
 * to float rounding).  Methods: integrated
 * gradients, saliency, input x gradient; not with tolerance nor
 * SmoothGrad (IGS_ERR_BAD_OPTION).  Every out gets the same `evaluations`
 * (the points: forward passes); backward passes are that times the
 * targets.  With path_maps only outs[0] has path maps.  With n_targets 0
 * it is attribution_run into outs[0].  On
 * error every out is left empty.
 */
int attribution_run_targets(const struct grad_oracle *oracle, const float *pixels,
                            const struct attr_params *o, int batch, struct job_control *job,
                            struct attr_result *outs, struct igs_error *err);
/* The answers attribution_run_targets gives: n_targets, or 1. */
int attribution_target_count(const struct attr_params *o);

#endif
