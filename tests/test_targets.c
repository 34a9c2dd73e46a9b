/*
 * test_targets.c - several targets in one run, output=logprob and the
 * faithfulness curves (issue 16), against independent references:
 *   - attribution_run_targets' answer for each target against a single
 *     run for that target, bit for bit: on the toy oracle, and on the
 *     network both with the stem-summed path and with path maps;
 *   - the shared forward passes counted on the toy;
 *   - logprob's gradient against central finite differences of log softmax
 *     of the toy's closed-form logits;
 *   - the deletion/insertion curves against a naive loop written here
 *     (selection-sort ranking, one image at a time, softmax in double), on
 *     the toy and on the trained demo model;
 *   - on the demo model (held-out shapes images, IG from gray), the
 *     deletion AUC below the insertion AUC for most images.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attribution.h"
#include "faithfulness.h"
#include "image.h"
#include "model.h"
#include "request_options.h"
#include "toy_oracle.h"

static struct attr_params multi(enum quad_rule rule, int steps, const int *targets, int n)
{
	struct attr_params p = opts(rule, steps, BASELINE_GRAY);
	p.target = -1;
	p.n_targets = n;
	for (int i = 0; i < n; i++)
		p.targets[i] = targets[i];
	return p;
}

/* NaN equals NaN here: the estimate is NaN when there is none. */
static bool same_double(double a, double b)
{
	return (isnan(a) && isnan(b)) || a == b;
}

static void assert_identical(const struct attr_result *a, const struct attr_result *b, size_t n)
{
	ck_assert_int_eq(a->target, b->target);
	ck_assert_int_eq(a->path_count, b->path_count);
	ck_assert_int_eq(a->steps, b->steps);
	ck_assert_int_eq(a->evaluations, b->evaluations);
	ck_assert_msg(!memcmp(a->attr, b->attr, n * sizeof *a->attr), "attributions differ");
	ck_assert_msg(!memcmp(a->path, b->path, (size_t)a->path_count * sizeof *a->path),
	              "path tables differ");
	ck_assert(same_double(a->sum, b->sum));
	ck_assert(same_double(a->f_input, b->f_input));
	ck_assert(same_double(a->f_baseline, b->f_baseline));
	ck_assert(same_double(a->relative_l2, b->relative_l2));
	ck_assert_str_eq(a->estimator, b->estimator);
	ck_assert(a->converged == b->converged);
}

/* ---- several targets on the toy ---- */

START_TEST(test_toy_targets_equal_single_runs)
{
	static const enum output_kind outputs[] = {OUTPUT_LOGIT, OUTPUT_PROBABILITY,
	                                           OUTPUT_LOGPROB};
	static const struct {
		enum attr_method method;
		enum quad_rule rule;
		int steps;
	} runs[] = {{ATTR_INTEGRATED_GRADIENTS, RULE_RIEMANN_TRAPEZOID, 17},
	            {ATTR_INTEGRATED_GRADIENTS, RULE_GAUSS_LEGENDRE, 12},
	            {ATTR_SALIENCY, RULE_GAUSS_LEGENDRE, 1},
	            {ATTR_INPUT_X_GRADIENT, RULE_GAUSS_LEGENDRE, 1}};
	const int targets[3] = {2, 0, 1};
	float x[N];
	test_image(x);
	for (size_t oi = 0; oi < 3; oi++)
		for (size_t ri = 0; ri < sizeof runs / sizeof runs[0]; ri++)
			for (int batch = 1; batch <= 5; batch += 4) {
				struct toy t;
				toy_init(&t, TOY_QUADRATIC);
				struct grad_oracle o;
				toy_oracle(&o, &t);
				struct attr_params p =
				    multi(runs[ri].rule, runs[ri].steps, targets, 3);
				p.method = runs[ri].method;
				p.output = outputs[oi];
				p.path_maps = ri == 0;
				struct attr_result outs[3];
				struct igs_error err = {0};
				ck_assert_msg(attribution_run_targets(&o, x, &p, batch, NULL, outs,
				                                      &err) == 0,
				              "%s", err.message);
				const int forwards = t.forward_calls, backwards = t.backward_calls;
				for (int k = 0; k < 3; k++) {
					struct attr_params q = p;
					q.n_targets = 0;
					q.target = targets[k];
					struct attr_result one;
					t.forward_calls = t.backward_calls = 0;
					ck_assert_int_eq(
					    attribution_run(&o, x, &q, batch, NULL, &one, &err), 0);
					/* the forward passes are shared, the backward ones not */
					ck_assert_int_eq(forwards, t.forward_calls);
					ck_assert_int_eq(backwards, 3 * t.backward_calls);
					assert_identical(&outs[k], &one, N);
					/* path maps: the first target's only */
					if (p.path_maps && k == 0)
						ck_assert(!memcmp(outs[k].path_maps, one.path_maps,
						                  (size_t)one.path_count * SIZE *
						                      SIZE * sizeof(float)));
					if (k > 0)
						ck_assert_ptr_null(outs[k].path_maps);
					attr_result_clear(&one);
					attr_result_clear(&outs[k]);
				}
				toy_free(&t);
			}
}
END_TEST

START_TEST(test_toy_top_k_by_logit)
{
	struct toy t;
	toy_init(&t, TOY_QUADRATIC);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	double xd[N], f[CLASSES];
	for (int i = 0; i < N; i++)
		xd[i] = x[i];
	for (int j = 0; j < CLASSES; j++)
		f[j] = toy_f(&t, j, xd);
	/* the expected order, by a selection sort here */
	int want[CLASSES];
	bool used[CLASSES] = {0};
	for (int k = 0; k < CLASSES; k++) {
		int best = -1;
		for (int j = 0; j < CLASSES; j++)
			if (!used[j] && (best < 0 || f[j] > f[best]))
				best = j;
		used[best] = true;
		want[k] = best;
	}
	struct attr_params p = multi(RULE_GAUSS_LEGENDRE, 8, NULL, 0);
	p.n_targets = 3;
	p.targets_top = true;
	struct attr_result outs[3];
	struct igs_error err = {0};
	ck_assert_int_eq(attribution_run_targets(&o, x, &p, 4, NULL, outs, &err), 0);
	for (int k = 0; k < 3; k++) {
		ck_assert_int_eq(outs[k].target, want[k]);
		attr_result_clear(&outs[k]);
	}
	/* first_default_target leaves the classes below it out */
	p.n_targets = 2;
	p.first_default_target = 1;
	ck_assert_int_eq(attribution_run_targets(&o, x, &p, 4, NULL, outs, &err), 0);
	int k2 = 0;
	for (int k = 0; k < 3; k++)
		if (want[k] != 0)
			ck_assert_int_eq(outs[k2++].target, want[k]);
	attr_result_clear(&outs[0]);
	attr_result_clear(&outs[1]);
	toy_free(&t);
}
END_TEST

START_TEST(test_toy_targets_refusals)
{
	struct toy t;
	toy_init(&t, TOY_QUADRATIC);
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	const int two[2] = {0, 1}, twice[2] = {1, 1}, far[2] = {0, CLASSES};
	struct attr_result outs[ATTR_TARGETS_MAX];
	struct igs_error err = {0};
	struct attr_params p = multi(RULE_RIEMANN_TRAPEZOID, 8, two, 2);
	p.tolerance = 0.01;
	ck_assert_int_eq(attribution_run_targets(&o, x, &p, 4, NULL, outs, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_ptr_nonnull(strstr(err.message, "tolerance"));
	ck_assert_ptr_null(outs[0].attr);
	p = multi(RULE_RIEMANN_TRAPEZOID, 8, two, 2);
	p.smooth = SMOOTH_GRAD;
	p.smooth_samples = 4;
	ck_assert_int_eq(attribution_run_targets(&o, x, &p, 4, NULL, outs, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_ptr_nonnull(strstr(err.message, "smoothgrad"));
	p = multi(RULE_RIEMANN_TRAPEZOID, 8, twice, 2);
	ck_assert_int_eq(attribution_run_targets(&o, x, &p, 4, NULL, outs, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_ptr_nonnull(strstr(err.message, "twice"));
	p = multi(RULE_RIEMANN_TRAPEZOID, 8, far, 2);
	ck_assert_int_eq(attribution_run_targets(&o, x, &p, 4, NULL, outs, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_ptr_nonnull(strstr(err.message, "out of range"));
	p = multi(RULE_RIEMANN_TRAPEZOID, 8, two, 2);
	p.target = 1;
	ck_assert_int_eq(attribution_run_targets(&o, x, &p, 4, NULL, outs, &err),
	                 IGS_ERR_BAD_OPTION);
	p = multi(RULE_RIEMANN_TRAPEZOID, 8, two, 2);
	p.targets_top = true;
	p.n_targets = CLASSES + 1 <= ATTR_TARGETS_MAX ? CLASSES + 1 : ATTR_TARGETS_MAX;
	ck_assert_int_eq(attribution_run_targets(&o, x, &p, 4, NULL, outs, &err),
	                 IGS_ERR_BAD_OPTION);
	/* attribution_run explains one target only */
	p = multi(RULE_RIEMANN_TRAPEZOID, 8, two, 2);
	ck_assert_int_eq(attribution_run(&o, x, &p, 4, NULL, outs, &err), IGS_ERR_INTERNAL);
	toy_free(&t);
}
END_TEST

/* ---- logprob ---- */

/* log softmax_t of the toy's logits at x, in double */
static double toy_logprob(const struct toy *t, int target, const double *x)
{
	double f[CLASSES], mx = -INFINITY, z = 0;
	for (int j = 0; j < CLASSES; j++)
		mx = fmax(mx, f[j] = toy_f(t, j, x));
	for (int j = 0; j < CLASSES; j++)
		z += exp(f[j] - mx);
	return f[target] - mx - log(z);
}

START_TEST(test_logprob_gradient_by_finite_differences)
{
	struct toy t;
	toy_init(&t, TOY_QUADRATIC);
	/* logits within a few units of each other: no class's softmax is
	 * saturated, so every target's gradient e_t - p is far from zero */
	for (int i = 0; i < N; i++) {
		for (int j = 0; j < CLASSES; j++)
			t.w[j][i] *= 0.05;
		t.a[i] *= 0.05;
		t.c[i] *= 0.05;
	}
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N];
	test_image(x);
	double xd[N];
	for (int i = 0; i < N; i++)
		xd[i] = x[i];
	for (int target = 0; target < CLASSES; target++) {
		struct attr_params p = opts(RULE_GAUSS_LEGENDRE, 1, BASELINE_GRAY);
		p.method = ATTR_SALIENCY;
		p.output = OUTPUT_LOGPROB;
		p.target = target;
		struct attr_result r;
		struct igs_error err = {0};
		ck_assert_int_eq(attribution_run(&o, x, &p, 4, NULL, &r, &err), 0);
		ck_assert_double_eq_tol(r.f_input, toy_logprob(&t, target, xd), 1e-6);
		double worst = 0, scale = 0;
		for (int i = 0; i < N; i++) {
			const double h = 0.5;
			double keep = xd[i];
			xd[i] = keep + h;
			double up = toy_logprob(&t, target, xd);
			xd[i] = keep - h;
			double down = toy_logprob(&t, target, xd);
			xd[i] = keep;
			double fd = (up - down) / (2 * h);
			worst = fmax(worst, fabs(fd - r.attr[i]));
			scale = fmax(scale, fabs(fd));
		}
		fprintf(stderr, "logprob target %d: p %.3f, |fd - grad| %.2e of %.2e\n", target,
		        exp(r.f_input), worst, scale);
		ck_assert_double_gt(scale, 1e-4);
		ck_assert_msg(worst <= 1e-4 * scale + 1e-9, "target %d: |fd - grad| %.3g of %.3g",
		              target, worst, scale);
		attr_result_clear(&r);
		/* IG of the log-probability is complete */
		p = opts(RULE_GAUSS_LEGENDRE, 32, BASELINE_BLACK);
		p.output = OUTPUT_LOGPROB;
		p.target = target;
		ck_assert_int_eq(attribution_run(&o, x, &p, 4, NULL, &r, &err), 0);
		ck_assert_double_lt(r.relative_error, 1e-4);
		attr_result_clear(&r);
	}
	ck_assert_str_eq(attribution_output_name(OUTPUT_LOGPROB), "logprob");
	ck_assert_int_eq(attribution_output_parse("LogProb"), OUTPUT_LOGPROB);
	toy_free(&t);
}
END_TEST

/* ---- faithfulness against a naive loop ---- */

/* The ranking by selection: the largest magnitude left, lowest index first. */
static void naive_order(const float *attr, int hw, int *order)
{
	bool *used = calloc((size_t)hw, sizeof *used);
	for (int k = 0; k < hw; k++) {
		int best = -1;
		double bm = -1;
		for (int p = 0; p < hw; p++) {
			double m =
			    fabsf(attr[3 * p]) + fabsf(attr[3 * p + 1]) + fabsf(attr[3 * p + 2]);
			if (!used[p] && m > bm) {
				bm = m;
				best = p;
			}
		}
		used[best] = true;
		order[k] = best;
	}
	free(used);
}

static double softmax_at(const float *logits, int classes, int t)
{
	double mx = -INFINITY, z = 0;
	for (int j = 0; j < classes; j++)
		mx = fmax(mx, logits[j]);
	for (int j = 0; j < classes; j++)
		z += exp(logits[j] - mx);
	return exp(logits[t] - mx) / z;
}

/* The curves one image at a time through o->forward; AUC by a plain sum. */
static void naive_curves(const struct grad_oracle *o, const float *x, const float *base,
                         const float *attr, int target, int steps, double *del, double *ins,
                         double aucs[2])
{
	const int hw = o->size * o->size, n = 3 * hw;
	int *order = malloc((size_t)hw * sizeof *order);
	float *img = malloc((size_t)n * sizeof *img);
	float *logits = malloc((size_t)o->classes * sizeof *logits);
	naive_order(attr, hw, order);
	aucs[0] = aucs[1] = 0;
	for (int pass = 0; pass < 2; pass++)
		for (int k = 0; k <= steps; k++) {
			int c = (int)((long long)k * hw / steps);
			/* mark the first c ranked pixels */
			for (int p = 0; p < hw; p++) {
				bool ranked = false;
				for (int i = 0; i < c; i++)
					ranked = ranked || order[i] == p;
				const float *src =
				    pass == 0 ? (ranked ? base : x) : (ranked ? x : base);
				for (int ch = 0; ch < 3; ch++)
					img[3 * p + ch] = src[3 * p + ch];
			}
			struct igs_error err = {0};
			ck_assert_int_eq(o->forward(o->ctx, img, 1, logits, &err), 0);
			(pass == 0 ? del : ins)[k] = softmax_at(logits, o->classes, target);
		}
	for (int k = 0; k < steps; k++) {
		aucs[0] += (del[k] + del[k + 1]) / 2 / steps;
		aucs[1] += (ins[k] + ins[k + 1]) / 2 / steps;
	}
	free(order);
	free(img);
	free(logits);
}

START_TEST(test_toy_faithfulness_against_naive)
{
	struct toy t;
	toy_init(&t, TOY_QUADRATIC);
	/* logits large enough that the probability moves */
	for (int j = 0; j < CLASSES; j++)
		for (int i = 0; i < N; i++)
			t.w[j][i] *= 5;
	struct grad_oracle o;
	toy_oracle(&o, &t);
	float x[N], base[N], attr[N];
	test_image(x);
	uint64_t s = 11;
	for (int i = 0; i < N; i++) {
		base[i] = 127.5f;
		/* few distinct values: many ties, broken by index */
		attr[i] = (float)((int)(attribution_splitmix64(&s) % 5) - 2);
	}
	static const int steps_list[] = {16, 5, 1, 64};
	for (size_t si = 0; si < 4; si++)
		for (int target = 0; target < CLASSES; target++) {
			int steps = steps_list[si];
			double *del = malloc((size_t)(steps + 1) * sizeof *del);
			double *ins = malloc((size_t)(steps + 1) * sizeof *ins);
			double aucs[2];
			naive_curves(&o, x, base, attr, target, steps, del, ins, aucs);
			struct faithfulness_result f;
			struct igs_error err = {0};
			ck_assert_int_eq(
			    faithfulness_run(&o, x, base, attr, target,
			                     FAITHFULNESS_DELETION | FAITHFULNESS_INSERTION, steps,
			                     3, NULL, &f, &err),
			    0);
			ck_assert_int_eq(f.forward_passes, 2 * (steps + 1));
			for (int k = 0; k <= steps; k++) {
				ck_assert_double_eq_tol(f.deletion[k], del[k], 1e-12);
				ck_assert_double_eq_tol(f.insertion[k], ins[k], 1e-12);
			}
			ck_assert_double_eq_tol(f.deletion_auc, aucs[0], 1e-12);
			ck_assert_double_eq_tol(f.insertion_auc, aucs[1], 1e-12);
			faithfulness_result_clear(&f);
			/* one curve alone is the same curve */
			ck_assert_int_eq(faithfulness_run(&o, x, base, attr, target,
			                                  FAITHFULNESS_INSERTION, steps, 4, NULL,
			                                  &f, &err),
			                 0);
			ck_assert_ptr_null(f.deletion);
			ck_assert(isnan(f.deletion_auc));
			ck_assert_int_eq(f.forward_passes, steps + 1);
			for (int k = 0; k <= steps; k++)
				ck_assert_double_eq_tol(f.insertion[k], ins[k], 1e-12);
			faithfulness_result_clear(&f);
			free(del);
			free(ins);
		}
	struct faithfulness_result f;
	struct igs_error err = {0};
	ck_assert_int_eq(
	    faithfulness_run(&o, x, base, attr, 0, FAITHFULNESS_DELETION, 0, 3, NULL, &f, &err),
	    IGS_ERR_BAD_OPTION);
	/* at the deadline: no curves, and not an error */
	struct job_control job;
	job_init(&job);
	job.deadline = 1e-9; /* long past */
	ck_assert_int_eq(
	    faithfulness_run(&o, x, base, attr, 0, FAITHFULNESS_DELETION, 8, 3, &job, &f, &err), 0);
	ck_assert(f.deadline_hit);
	ck_assert_ptr_null(f.deletion);
	ck_assert_int_eq(f.forward_passes, 0);
	faithfulness_result_clear(&f);
	job_init(&job);
	atomic_store(&job.cancelled, true);
	ck_assert_int_eq(
	    faithfulness_run(&o, x, base, attr, 0, FAITHFULNESS_DELETION, 8, 3, &job, &f, &err),
	    IGS_ERR_CANCELLED);
	/* ties everywhere: the pixels in index order */
	memset(attr, 0, sizeof attr);
	int order[SIZE * SIZE];
	ck_assert_int_eq(faithfulness_order(attr, SIZE, order, &err), 0);
	for (int p = 0; p < SIZE * SIZE; p++)
		ck_assert_int_eq(order[p], p);
	toy_free(&t);
}
END_TEST

/* ---- the options ---- */

START_TEST(test_options_and_evaluations)
{
	struct request_options o;
	struct igs_error err = {0};
	request_options_init(&o);
	ck_assert_int_eq(request_options_evaluations(&o), 50);
	ck_assert_int_eq(request_options_set(&o, "targets", "top3", 0, &err), 0);
	ck_assert(o.attr.targets_top);
	ck_assert_int_eq(o.attr.n_targets, 3);
	ck_assert_int_eq(request_options_evaluations(&o), 150); /* steps x targets */
	ck_assert_int_eq(request_options_set(&o, "faithfulness", "deletion,insertion", 0, &err), 0);
	ck_assert_uint_eq(o.faithfulness, FAITHFULNESS_DELETION | FAITHFULNESS_INSERTION);
	/* + 2 (16 + 1) forward passes per target */
	ck_assert_int_eq(request_options_evaluations(&o), 150 + 3 * 34);
	ck_assert_int_eq(request_options_set(&o, "faithfulness-steps", "4", 0, &err), 0);
	ck_assert_int_eq(request_options_evaluations(&o), 150 + 3 * 10);
	ck_assert_int_eq(request_options_set(&o, "targets", "7,2,5,0", 0, &err), 0);
	ck_assert(!o.attr.targets_top);
	ck_assert_int_eq(o.attr.n_targets, 4);
	ck_assert_int_eq(o.attr.targets[0], 7);
	ck_assert_int_eq(o.attr.targets[3], 0);
	ck_assert_int_eq(request_options_set(&o, "targets", "none", 0, &err), 0);
	ck_assert_int_eq(o.attr.n_targets, 0);
	ck_assert_int_eq(request_options_set(&o, "faithfulness", "none", 0, &err), 0);
	ck_assert_uint_eq(o.faithfulness, 0);
	ck_assert_int_eq(request_options_evaluations(&o), 50);
	ck_assert_int_eq(request_options_set(&o, "output", "logprob", 0, &err), 0);
	ck_assert_int_eq(o.attr.output, OUTPUT_LOGPROB);
	static const char *const bad[] = {
	    "top", "top17", "1,,2", ",1",
	    "1,",  "-1",    "1,1",  "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16",
	    "x"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ck_assert_msg(request_options_set(&o, "targets", bad[i], 0, &err) ==
		                  IGS_ERR_BAD_OPTION,
		              "targets=%s accepted", bad[i]);
		ck_assert_int_eq(o.attr.n_targets, 0); /* a refused value leaves none */
	}
	ck_assert_int_eq(request_options_set(&o, "faithfulness_steps", "257", 0, &err),
	                 IGS_ERR_BAD_OPTION);
}
END_TEST

/* ---- the trained demo model ---- */

#define BATCH 4
static const char *const heldout[] = {"circle_00.png", "circle_01.png",   "square_00.png",
                                      "square_01.png", "triangle_00.png", "triangle_01.png",
                                      "cross_00.png",  "cross_01.png"};
enum { HELDOUT = sizeof heldout / sizeof heldout[0] };

struct demo {
	struct model *model;
	struct net_workspace *ws;
	struct grad_oracle oracle;
	int size;
	size_t n;
	float *pixels[HELDOUT];
};
static struct demo demo;

static void demo_open(void)
{
	const char *fixtures = getenv("IGSERVE_FIXTURES");
	if (!fixtures)
		fixtures = "tests/fixtures";
	char path[4096];
	struct igs_error err = {0};
	snprintf(path, sizeof path, "%s/../../models/demo/shapes-resnet.safetensors", fixtures);
	ck_assert_msg(model_open(&demo.model, path, NULL, &err) == 0, "%s", err.message);
	demo.size = model_get_info(demo.model)->input_size;
	demo.n = (size_t)demo.size * demo.size * 3;
	ck_assert_int_eq(net_workspace_open(&demo.ws, demo.model, BATCH, &err), 0);
	attribution_net_oracle(&demo.oracle, demo.model, demo.ws);
	for (int i = 0; i < HELDOUT; i++) {
		snprintf(path, sizeof path, "%s/shapes/heldout/%s", fixtures, heldout[i]);
		struct image img = {0};
		ck_assert_msg(image_load_file(&img, path, NULL, &err) == 0, "%s", err.message);
		ck_assert_int_eq(img.width, demo.size);
		demo.pixels[i] = malloc(demo.n * sizeof(float));
		for (size_t k = 0; k < demo.n; k++)
			demo.pixels[i][k] = img.rgb[k];
		image_clear(&img);
	}
}

static void demo_close(void)
{
	for (int i = 0; i < HELDOUT; i++)
		free(demo.pixels[i]);
	net_workspace_close(&demo.ws);
	model_close(&demo.model);
}

/* Every one of top3 against a single run for its class, bit for bit: on
 * the summed path (each target's own sum in the workspace) and with path
 * maps (per-point gradients). */
START_TEST(test_demo_second_of_top3_equals_single)
{
	for (int maps = 0; maps < 2; maps++) {
		struct attr_params p = opts(RULE_RIEMANN_TRAPEZOID, 17, BASELINE_GRAY);
		p.target = -1;
		p.n_targets = 3;
		p.targets_top = true;
		p.path_maps = maps;
		p.output = maps ? OUTPUT_PROBABILITY : OUTPUT_LOGIT;
		struct attr_result outs[3];
		struct igs_error err = {0};
		ck_assert_msg(attribution_run_targets(&demo.oracle, demo.pixels[2], &p, BATCH, NULL,
		                                      outs, &err) == 0,
		              "%s", err.message);
		for (int k = 0; k < 3; k++) {
			struct attr_params q = p;
			q.n_targets = 0;
			q.targets_top = false;
			q.target = k == 0 ? -1 : outs[k].target;
			struct attr_result one;
			ck_assert_int_eq(attribution_run(&demo.oracle, demo.pixels[2], &q, BATCH,
			                                 NULL, &one, &err),
			                 0);
			ck_assert_int_eq(one.target, outs[k].target);
			ck_assert(outs[k].f_input == one.f_input);
			ck_assert(outs[k].f_baseline == one.f_baseline);
			ck_assert_int_eq(one.path_count, outs[k].path_count);
			for (int j = 0; j < one.path_count; j++)
				ck_assert(one.path[j].output == outs[k].path[j].output);
			assert_identical(&outs[k], &one, demo.n);
			attr_result_clear(&one);
		}
		ck_assert_int_ne(outs[0].target, outs[1].target);
		for (int k = 0; k < 3; k++)
			attr_result_clear(&outs[k]);
	}
}
END_TEST

/* An oracle that sums the path but keeps one sum: each target's share is
 * taken per chunk, the same attributions up to float rounding. */
START_TEST(test_demo_targets_without_own_sums)
{
	struct grad_oracle o = demo.oracle;
	o.path_use_sum = NULL;
	o.path_sum_count = NULL;
	struct attr_params p = opts(RULE_RIEMANN_TRAPEZOID, 17, BASELINE_GRAY);
	p.target = -1;
	p.n_targets = 3;
	p.targets_top = true;
	struct attr_result outs[3];
	struct igs_error err = {0};
	ck_assert_int_eq(attribution_run_targets(&o, demo.pixels[3], &p, BATCH, NULL, outs, &err),
	                 0);
	for (int k = 0; k < 3; k++) {
		struct attr_params q = p;
		q.n_targets = 0;
		q.targets_top = false;
		q.target = outs[k].target;
		struct attr_result one;
		ck_assert_int_eq(attribution_run(&o, demo.pixels[3], &q, BATCH, NULL, &one, &err),
		                 0);
		double d2 = 0, f2 = 0;
		for (size_t i = 0; i < demo.n; i++) {
			double d = (double)outs[k].attr[i] - one.attr[i];
			d2 += d * d;
			f2 += (double)one.attr[i] * one.attr[i];
		}
		fprintf(stderr, "one sum: target %d relative L2 difference to a single run %.2e\n",
		        one.target, sqrt(d2 / f2));
		ck_assert_double_lt(sqrt(d2 / f2), 1e-5);
		ck_assert_double_eq_tol(outs[k].sum, one.sum, 1e-5 * fabs(one.sum) + 1e-9);
		ck_assert(outs[k].f_input == one.f_input);
		attr_result_clear(&one);
		attr_result_clear(&outs[k]);
	}
}
END_TEST

START_TEST(test_demo_faithfulness)
{
	int below = 0;
	for (int i = 0; i < HELDOUT; i++) {
		struct attr_params p = opts(RULE_GAUSS_LEGENDRE, 16, BASELINE_GRAY);
		p.target = -1;
		struct attr_result r;
		struct igs_error err = {0};
		ck_assert_int_eq(
		    attribution_run(&demo.oracle, demo.pixels[i], &p, BATCH, NULL, &r, &err), 0);
		struct faithfulness_result f;
		ck_assert_int_eq(faithfulness_run(&demo.oracle, demo.pixels[i], r.baseline, r.attr,
		                                  r.target,
		                                  FAITHFULNESS_DELETION | FAITHFULNESS_INSERTION,
		                                  16, BATCH, NULL, &f, &err),
		                 0);
		fprintf(stderr, "%s (class %d): deletion AUC %.3f, insertion AUC %.3f\n",
		        heldout[i], r.target, f.deletion_auc, f.insertion_auc);
		below += f.deletion_auc < f.insertion_auc;
		if (i == 0) {
			/* against the naive loop: one image per forward pass */
			double del[17], ins[17], aucs[2];
			naive_curves(&demo.oracle, demo.pixels[i], r.baseline, r.attr, r.target, 16,
			             del, ins, aucs);
			for (int k = 0; k <= 16; k++) {
				ck_assert_double_eq_tol(f.deletion[k], del[k], 1e-5);
				ck_assert_double_eq_tol(f.insertion[k], ins[k], 1e-5);
			}
			ck_assert_double_eq_tol(f.deletion_auc, aucs[0], 1e-5);
			ck_assert_double_eq_tol(f.insertion_auc, aucs[1], 1e-5);
			/* the ends: the image itself and the baseline */
			ck_assert_double_eq_tol(f.deletion[0], f.insertion[16], 1e-6);
			ck_assert_double_eq_tol(f.deletion[16], f.insertion[0], 1e-6);
		}
		faithfulness_result_clear(&f);
		attr_result_clear(&r);
	}
	fprintf(stderr, "deletion AUC below insertion AUC for %d of %d images\n", below, HELDOUT);
	ck_assert_int_ge(below, HELDOUT * 3 / 4);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("targets");
	TCase *toy = tcase_create("toy");
	tcase_add_test(toy, test_toy_targets_equal_single_runs);
	tcase_add_test(toy, test_toy_top_k_by_logit);
	tcase_add_test(toy, test_toy_targets_refusals);
	tcase_add_test(toy, test_logprob_gradient_by_finite_differences);
	tcase_add_test(toy, test_toy_faithfulness_against_naive);
	tcase_add_test(toy, test_options_and_evaluations);
	suite_add_tcase(s, toy);
	TCase *net = tcase_create("demo");
	tcase_add_unchecked_fixture(net, demo_open, demo_close);
	tcase_set_timeout(net, 600);
	tcase_add_test(net, test_demo_second_of_top3_equals_single);
	tcase_add_test(net, test_demo_targets_without_own_sums);
	tcase_add_test(net, test_demo_faithfulness);
	suite_add_tcase(s, net);
	return s;
}

int main(void)
{
	SRunner *r = srunner_create(suite());
	srunner_run_all(r, CK_NORMAL);
	int failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
