/*
 * test_paper_methods.c - Blur IG, Guided IG and baseline sets (issue 16).
 *
 *   - against PyTorch float64 implementations written from the papers
 *     (tests/fixtures/make_paper_methods.py) on the narrow tv_ig ResNet;
 *   - exact answers on the linear toy (any path's integral is (end - start) * w);
 *   - completeness within 5% on the trained demo model (models/demo);
 *   - identical results on repeat; black+white is exactly the mean of the
 *     black and the white attributions; baseline_samples reproducible for a
 *     seed and different for another; a deadline inside Blur IG's second
 *     round answers with the first; bad options are refused by name.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attribution.h"
#include "conv.h"
#include "json_render.h"
#include "png_encode.h"
#include "service.h"
#include <cjson/cJSON.h>
#include "image.h"
#include "model.h"
#include "request_options.h"
#include "safetensors.h"
#include "toy_oracle.h"

#define BATCH 3

static double rel_l2(const float *a, const float *ref, size_t n)
{
	double d = 0, f = 0;
	for (size_t i = 0; i < n; i++) {
		d += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
		f += (double)ref[i] * ref[i];
	}
	return sqrt(d / f);
}

static void fixture_path(char *buf, size_t n, const char *rel)
{
	const char *dir = getenv("IGSERVE_FIXTURES");
	snprintf(buf, n, "%s/%s", dir ? dir : "tests/fixtures", rel);
}

/* ---- a real network: tv_ig and the paper references ---- */

struct net {
	struct model *model;
	struct net_workspace *ws;
	struct grad_oracle oracle;
	int size;
	size_t n;
	float *pixels;
};

/* size 0: the model's own input size.  fp32 arithmetic (the references'
 * tolerances are float32's). */
static void net_open(struct net *t, const char *rel, int size)
{
	char path[4096];
	struct igs_error err = {0};
	const struct model_options arith = {.precision = CONV_PRECISION_FP32};
	fixture_path(path, sizeof path, rel);
	ck_assert_msg(model_open(&t->model, path, &arith, &err) == 0, "%s", err.message);
	if (size)
		ck_assert_int_eq(model_set_input_size(t->model, size, &err), 0);
	t->size = model_get_info(t->model)->input_size;
	t->n = (size_t)t->size * t->size * 3;
	ck_assert_int_eq(net_workspace_open(&t->ws, t->model, BATCH, &err), 0);
	attribution_net_oracle(&t->oracle, t->model, t->ws);
	t->pixels = NULL;
}

static void net_close(struct net *t)
{
	free(t->pixels);
	net_workspace_close(&t->ws);
	model_close(&t->model);
}

static float *read_tensor(struct st_file *f, const char *name, int64_t numel)
{
	const struct st_tensor *t = safetensors_find(f, name);
	ck_assert_msg(t != NULL, "fixture tensor %s missing", name);
	ck_assert_int_eq(t->numel, numel);
	float *v = malloc(sizeof *v * (size_t)numel);
	ck_assert_int_eq(safetensors_read_f32(t, v, NULL), 0);
	return v;
}

static void run_ok(const struct grad_oracle *o, const float *x, const struct attr_params *p,
                   struct attr_result *r)
{
	struct igs_error err = {0};
	ck_assert_msg(attribution_run(o, x, p, BATCH, NULL, r, &err) == 0, "%s", err.message);
}

static void check_case(struct net *t, struct st_file *cases, const char *name,
                       const struct attr_params *p, double tol)
{
	float *ref = read_tensor(cases, name, (int64_t)t->n);
	char fname[128];
	snprintf(fname, sizeof fname, "%s:f", name);
	float *f = read_tensor(cases, fname, 2);
	struct attr_result r;
	run_ok(&t->oracle, t->pixels, p, &r);
	double e = rel_l2(r.attr, ref, t->n);
	fprintf(stderr, "%-30s rel L2 to PyTorch %.2e  F(x) %.5f/%.5f  F(start) %.5f/%.5f\n", name,
	        e, r.f_input, f[0], r.f_baseline, f[1]);
	ck_assert_msg(e < tol, "%s: relative L2 %g to the PyTorch reference", name, e);
	ck_assert_double_eq_tol(r.f_input, f[0], 1e-4 * (1 + fabs(f[0])));
	ck_assert_double_eq_tol(r.f_baseline, f[1], 1e-4 * (1 + fabs(f[1])));
	ck_assert_int_eq(r.evaluations, p->steps);
	attr_result_clear(&r);
	free(ref);
	free(f);
}

START_TEST(test_against_pytorch)
{
	struct net t;
	net_open(&t, "ig/tv_ig.safetensors", 64);
	char path[4096];
	struct igs_error err = {0};
	struct st_file *cases;
	fixture_path(path, sizeof path, "ig/tv_ig.paper.safetensors");
	ck_assert_msg(safetensors_open(&cases, path, &err) == 0, "%s", err.message);
	t.pixels = read_tensor(cases, "pixels", (int64_t)t.n);
	int target = atoi(safetensors_metadata(cases, "target"));
	unsigned long long seed = strtoull(safetensors_metadata(cases, "seed"), NULL, 10);

	static const struct {
		const char *name;
		double sigma;
		int steps;
	} blur[] = {{"blur_ig/50/24", 50, 24}, {"blur_ig/8/16", 8, 16}};
	for (size_t c = 0; c < sizeof blur / sizeof blur[0]; c++) {
		struct attr_params p;
		attr_params_init(&p);
		p.method = ATTR_BLUR_IG;
		p.blur_max_sigma = blur[c].sigma;
		p.steps = blur[c].steps;
		p.target = target;
		check_case(&t, cases, blur[c].name, &p, 1e-3);
	}
	static const struct {
		const char *name;
		int steps;
		double fraction, max_dist;
	} guided[] = {{"guided_ig/noise/0.25/0.02/16", 16, 0.25, 0.02},
	              {"guided_ig/noise/0.1/0.1/12", 12, 0.1, 0.1}};
	for (size_t c = 0; c < sizeof guided / sizeof guided[0]; c++) {
		struct attr_params p;
		attr_params_init(&p);
		p.method = ATTR_GUIDED_IG;
		p.baseline = BASELINE_NOISE;
		p.seed = seed;
		p.steps = guided[c].steps;
		p.guided_fraction = guided[c].fraction;
		p.guided_max_dist = guided[c].max_dist;
		p.target = target;
		check_case(&t, cases, guided[c].name, &p, 1e-3);
	}
	safetensors_close(&cases);
	net_close(&t);
}
END_TEST

/* Repeat: bit-identical.  Baseline sets: black+white == (black + white) / 2. */
START_TEST(test_repeat_and_baseline_mean)
{
	struct net t;
	net_open(&t, "ig/tv_ig.safetensors", 64);
	char path[4096];
	struct igs_error err = {0};
	struct st_file *cases;
	fixture_path(path, sizeof path, "ig/tv_ig.paper.safetensors");
	ck_assert_msg(safetensors_open(&cases, path, &err) == 0, "%s", err.message);
	t.pixels = read_tensor(cases, "pixels", (int64_t)t.n);
	safetensors_close(&cases);

	const enum attr_method methods[] = {ATTR_BLUR_IG, ATTR_GUIDED_IG};
	for (int mi = 0; mi < 2; mi++) {
		struct attr_params p;
		attr_params_init(&p);
		p.method = methods[mi];
		p.steps = 12;
		struct attr_result a, b;
		run_ok(&t.oracle, t.pixels, &p, &a);
		run_ok(&t.oracle, t.pixels, &p, &b);
		ck_assert_msg(!memcmp(a.attr, b.attr, t.n * sizeof *a.attr), "%s differs on repeat",
		              attribution_method_name(p.method, p.rule));
		ck_assert_double_eq(a.sum, b.sum);
		attr_result_clear(&a);
		attr_result_clear(&b);
	}

	const enum attr_method set_methods[] = {ATTR_INTEGRATED_GRADIENTS, ATTR_GUIDED_IG};
	for (int mi = 0; mi < 2; mi++) {
		struct attr_params p;
		attr_params_init(&p);
		p.method = set_methods[mi];
		p.steps = 8;
		struct attr_result black, white, both;
		p.baseline = BASELINE_BLACK;
		run_ok(&t.oracle, t.pixels, &p, &black);
		p.baseline = BASELINE_WHITE;
		run_ok(&t.oracle, t.pixels, &p, &white);
		ck_assert_int_eq(attribution_baseline_set_parse("black+white", &p), 0);
		ck_assert_int_eq(attribution_baseline_set_size(&p), 2);
		run_ok(&t.oracle, t.pixels, &p, &both);
		for (size_t i = 0; i < t.n; i++) {
			double mean = ((double)black.attr[i] + white.attr[i]) / 2;
			ck_assert_msg(both.attr[i] == (float)mean, "%zu: %.9g vs mean %.9g", i,
			              both.attr[i], mean);
		}
		ck_assert_double_eq_tol(both.f_baseline, (black.f_baseline + white.f_baseline) / 2,
		                        1e-12);
		ck_assert_double_eq(both.f_input, black.f_input);
		ck_assert_int_eq(both.evaluations, black.evaluations + white.evaluations);
		ck_assert_int_eq(both.baselines_done, 2);
		ck_assert_int_eq(both.target, black.target);
		attr_result_clear(&black);
		attr_result_clear(&white);
		attr_result_clear(&both);
	}
	net_close(&t);
}
END_TEST

/* baseline_samples: the same seed gives the same draws, another seed others. */
START_TEST(test_baseline_samples_seeded)
{
	struct toy toy;
	toy_init(&toy, TOY_QUADRATIC);
	struct grad_oracle o;
	toy_oracle(&o, &toy);
	float x[N];
	test_image(x);
	for (int kind = 0; kind < 2; kind++) {
		struct attr_params p =
		    opts(RULE_RIEMANN_MIDDLE, 6, kind ? BASELINE_BLUR : BASELINE_NOISE);
		p.baseline_samples = 4;
		p.seed = 11;
		struct attr_result a, b, c;
		run_ok(&o, x, &p, &a);
		run_ok(&o, x, &p, &b);
		p.seed = 12;
		run_ok(&o, x, &p, &c);
		ck_assert_int_eq(a.baselines_done, 4);
		ck_assert_int_eq(a.evaluations, 4 * 6);
		ck_assert(!memcmp(a.attr, b.attr, sizeof x));
		ck_assert(memcmp(a.attr, c.attr, sizeof x) != 0);
		ck_assert(memcmp(a.baseline, c.baseline, sizeof x) != 0);
		/* the mean baseline is not any single draw's (seed 11 itself) */
		struct attr_params one = opts(RULE_RIEMANN_MIDDLE, 6, p.baseline);
		one.seed = 11;
		struct attr_result d;
		run_ok(&o, x, &one, &d);
		ck_assert(memcmp(a.baseline, d.baseline, sizeof x) != 0);
		/* completeness against the mean F(b), as each run's is against its own */
		ck_assert_double_lt(a.relative_error, 0.05);
		attr_result_clear(&a);
		attr_result_clear(&b);
		attr_result_clear(&c);
		attr_result_clear(&d);
	}
	toy_free(&toy);
}
END_TEST

/* The linear toy: every path's integral is exactly (end - start) * w. */
START_TEST(test_linear_toy_exact)
{
	struct toy toy;
	toy_init(&toy, TOY_LINEAR);
	struct grad_oracle o;
	toy_oracle(&o, &toy);
	float x[N];
	test_image(x);
	struct attr_params p = opts(RULE_GAUSS_LEGENDRE, 9, BASELINE_NOISE);
	p.method = ATTR_BLUR_IG;
	p.blur_max_sigma = 3;
	struct attr_result r;
	run_ok(&o, x, &p, &r);
	for (int i = 0; i < N; i++) {
		double want = ((double)x[i] - r.baseline[i]) * toy.w[0][i];
		ck_assert_double_eq_tol(r.attr[i], want, 1e-4 * (1 + fabs(want)));
	}
	ck_assert_double_lt(r.relative_error, 1e-5);
	ck_assert_str_eq(r.estimator, ATTR_ESTIMATOR_SUBRULE);
	ck_assert_int_eq(r.steps, 9);
	attr_result_clear(&r);

	p.method = ATTR_GUIDED_IG;
	p.steps = 7;
	run_ok(&o, x, &p, &r);
	float base[N];
	struct igs_error err = {0};
	ck_assert_int_eq(
	    attribution_baseline(BASELINE_NOISE, p.blur_sigma, p.seed, x, SIZE, base, &err), 0);
	for (int i = 0; i < N; i++) {
		double want = ((double)x[i] - base[i]) * toy.w[0][i];
		ck_assert_double_eq_tol(r.attr[i], want, 1e-4 * (1 + fabs(want)));
	}
	ck_assert_str_eq(r.estimator, ATTR_ESTIMATOR_NONE);
	ck_assert(isnan(r.relative_l2));
	attr_result_clear(&r);
	toy_free(&toy);
}
END_TEST

/* A deadline in Blur IG's second round: the first round's answer. */
START_TEST(test_blur_ig_deadline_keeps_first_round)
{
	struct toy toy;
	toy_init(&toy, TOY_QUADRATIC);
	struct grad_oracle o;
	toy_oracle(&o, &toy);
	float x[N];
	test_image(x);
	struct job_control job;
	job_init(&job);
	toy.job = &job;
	toy.expire_after = 2 + 2; /* the two ends, then into the first round */
	struct attr_params p = opts(RULE_GAUSS_LEGENDRE, 9, BASELINE_GRAY);
	p.method = ATTR_BLUR_IG;
	p.blur_max_sigma = 3;
	struct attr_result r;
	struct igs_error err = {0};
	/* batch 1: round one is 3 calls; the deadline passes during it */
	ck_assert_int_eq(attribution_run(&o, x, &p, 1, &job, &r, &err), IGS_ERR_DEADLINE);
	toy_free(&toy);
	toy_init(&toy, TOY_QUADRATIC);
	toy_oracle(&o, &toy);
	job_init(&job);
	toy.job = &job;
	toy.expire_after = 2 + 3 + 1; /* the first round done, one into the second */
	ck_assert_msg(attribution_run(&o, x, &p, 1, &job, &r, &err) == 0, "%s", err.message);
	ck_assert(r.deadline_hit);
	ck_assert(!r.converged);
	ck_assert_int_eq(r.steps, 3);
	ck_assert_int_eq(r.path_count, 3);
	attr_result_clear(&r);
	toy_free(&toy);
}
END_TEST

/* A deadline during a set's second baseline: the first baseline's answer. */
START_TEST(test_baseline_set_deadline)
{
	struct toy toy;
	toy_init(&toy, TOY_QUADRATIC);
	struct grad_oracle o;
	toy_oracle(&o, &toy);
	float x[N];
	test_image(x);
	struct attr_params p = opts(RULE_GAUSS_LEGENDRE, 4, BASELINE_BLACK);
	struct attr_result black;
	run_ok(&o, x, &p, &black);
	toy_free(&toy);

	toy_init(&toy, TOY_QUADRATIC);
	toy_oracle(&o, &toy);
	struct job_control job;
	job_init(&job);
	toy.job = &job;
	/* batch 2: each run is one call for its two ends and two for its points */
	toy.expire_after = 3 + 1;
	ck_assert_int_eq(attribution_baseline_set_parse("black+white", &p), 0);
	struct attr_result r;
	struct igs_error err = {0};
	ck_assert_msg(attribution_run(&o, x, &p, 2, &job, &r, &err) == 0, "%s", err.message);
	ck_assert(r.deadline_hit);
	ck_assert(!r.converged);
	ck_assert_int_eq(r.baselines_done, 1);
	ck_assert_int_eq(r.baselines_total, 2);
	ck_assert(!memcmp(r.attr, black.attr, sizeof x));
	ck_assert_double_eq(r.f_baseline, black.f_baseline);
	attr_result_clear(&r);
	attr_result_clear(&black);
	toy_free(&toy);
}
END_TEST

/* Completeness within 5% on the trained demo model, default options but
 * Guided IG's baseline: black (PAIR's default; from gray, the square's
 * F(x) - F(x') is a quarter of a logit and any path error is large
 * relative to it). */
START_TEST(test_demo_completeness)
{
	struct net t;
	net_open(&t, "../../models/demo/shapes-resnet.safetensors", 0);
	/* the four examples (on held-out square_00 the square's F(x) - F(black)
	 * is 0.01 logits: no ratio to it means anything) */
	static const char *const images[] = {"circle", "square", "triangle", "cross"};
	for (int im = 0; im < 4; im++) {
		char path[4096], rel[128];
		snprintf(rel, sizeof rel, "../../models/demo/examples/%s.png", images[im]);
		fixture_path(path, sizeof path, rel);
		struct image img = {0};
		struct igs_error err = {0};
		ck_assert_msg(image_load_file(&img, path, NULL, &err) == 0, "%s", err.message);
		ck_assert_int_eq(img.width, t.size);
		float *x = malloc(t.n * sizeof *x);
		for (size_t k = 0; k < t.n; k++)
			x[k] = img.rgb[k];
		image_clear(&img);
		const enum attr_method methods[] = {ATTR_BLUR_IG, ATTR_GUIDED_IG};
		for (int mi = 0; mi < 2; mi++) {
			struct attr_params p;
			attr_params_init(&p);
			p.method = methods[mi];
			if (p.method == ATTR_GUIDED_IG)
				p.baseline = BASELINE_BLACK;
			struct attr_result r;
			run_ok(&t.oracle, x, &p, &r);
			fprintf(stderr,
			        "demo %s %s: completeness %.4f (sum %.4f, F(x) - F(start) %.4f)\n",
			        images[im], attribution_method_name(p.method, p.rule),
			        r.relative_error, r.sum, r.f_input - r.f_baseline);
			ck_assert_msg(r.relative_error < 0.05, "%s %s: completeness error %g",
			              images[im], attribution_method_name(p.method, p.rule),
			              r.relative_error);
			attr_result_clear(&r);
		}
		free(x);
	}
	net_close(&t);
}
END_TEST

/* Through the service and the JSON renderer: the method's fields. */
static cJSON *attribute_json(struct service *svc, struct service_worker *w,
                             const unsigned char *png, size_t len, const char *const *kv)
{
	struct request_options o;
	request_options_init(&o);
	struct igs_error err = {0};
	for (; *kv; kv += 2)
		ck_assert_msg(request_options_set(&o, kv[0], kv[1], 0, &err) == 0, "%s",
		              err.message);
	o.heatmaps = 0;
	struct job_control job;
	job_init(&job);
	struct attribute_result res;
	ck_assert_msg(service_attribute(w, png, len, &o, &job, &res, &err) == 0, "%s", err.message);
	char *text = json_render_attribute(svc, &res);
	attribute_result_clear(&res);
	ck_assert_ptr_nonnull(text);
	cJSON *doc = cJSON_Parse(text);
	free(text);
	ck_assert_ptr_nonnull(doc);
	return doc;
}

static const cJSON *item(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItem(o, key);
	ck_assert_msg(v != NULL, "JSON has no %s", key);
	return v;
}

START_TEST(test_answer_json)
{
	char path[4096];
	fixture_path(path, sizeof path, "ig/tv_ig.safetensors");
	struct service_config cfg = {.model_path = path, .input_size = 64, .max_batch = BATCH};
	struct igs_error err = {0};
	struct service *svc;
	struct service_worker *w;
	ck_assert_msg(service_open(&svc, &cfg, &err) == 0, "%s", err.message);
	ck_assert_msg(service_worker_open(&w, svc, &err) == 0, "%s", err.message);
	uint8_t rgb[64 * 64 * 3];
	for (size_t i = 0; i < sizeof rgb; i++)
		rgb[i] = (uint8_t)(i * 7 % 251);
	unsigned char *png;
	size_t len;
	ck_assert_int_eq(png_encode(rgb, 64, 64, 3, &png, &len, NULL), 0);

	const char *const guided[] = {"method", "guided_ig", "baseline", "black+white",
	                              "steps",  "8",         NULL};
	cJSON *doc = attribute_json(svc, w, png, len, guided);
	const cJSON *m = item(doc, "method");
	ck_assert_str_eq(item(m, "name")->valuestring, "guided_ig");
	ck_assert_str_eq(item(m, "baseline")->valuestring, "black+white");
	ck_assert_int_eq(item(m, "baselines")->valueint, 2);
	ck_assert_int_eq(item(m, "evaluations")->valueint, 16);
	ck_assert_double_eq(item(m, "guided_fraction")->valuedouble, 0.25);
	ck_assert_double_eq(item(m, "guided_max_dist")->valuedouble, 0.02);
	const cJSON *conv = item(doc, "convergence");
	ck_assert(cJSON_IsNull(item(conv, "relative_l2")));
	ck_assert_str_eq(item(conv, "estimator")->valuestring, "none");
	ck_assert_int_eq(cJSON_GetArraySize(item(doc, "path")), 8);
	cJSON_Delete(doc);

	const char *const blur[] = {"method", "blur_ig", "blur_max_sigma", "12", "steps",
	                            "9",      NULL};
	doc = attribute_json(svc, w, png, len, blur);
	m = item(doc, "method");
	ck_assert_str_eq(item(m, "name")->valuestring, "blur_ig");
	ck_assert(cJSON_IsNull(item(m, "baseline")));
	ck_assert_double_eq(item(m, "blur_max_sigma")->valuedouble, 12);
	conv = item(doc, "convergence");
	ck_assert(cJSON_IsNumber(item(conv, "relative_l2")));
	ck_assert_str_eq(item(conv, "estimator")->valuestring, "subrule_difference");
	const cJSON *path_rows = item(doc, "path");
	ck_assert_int_eq(cJSON_GetArraySize(path_rows), 9);
	/* increasing alpha, weights 1/m */
	double prev = -1;
	for (int k = 0; k < 9; k++) {
		const cJSON *row = cJSON_GetArrayItem(path_rows, k);
		double a = item(row, "alpha")->valuedouble;
		ck_assert_double_gt(a, prev);
		ck_assert_double_eq_tol(item(row, "weight")->valuedouble, 1.0 / 9, 1e-12);
		prev = a;
	}
	cJSON_Delete(doc);

	const char *const samples[] = {
	    "baseline", "noise",  "baseline_samples", "3", "seed", "9", "steps",
	    "4",        "method", "riemann_middle",   NULL};
	doc = attribute_json(svc, w, png, len, samples);
	m = item(doc, "method");
	ck_assert_str_eq(item(m, "baseline")->valuestring, "noise");
	ck_assert_int_eq(item(m, "baseline_samples")->valueint, 3);
	ck_assert_int_eq(item(m, "baselines")->valueint, 3);
	ck_assert_int_eq(item(m, "seed")->valueint, 9);
	ck_assert_int_eq(item(m, "evaluations")->valueint, 12);
	cJSON_Delete(doc);

	free(png);
	service_worker_close(&w);
	service_close(&svc);
}
END_TEST

/* Options: names, limits, refusals. */
START_TEST(test_options)
{
	struct request_options o;
	struct igs_error err = {0};
	request_options_init(&o);
	ck_assert_int_eq(request_options_set(&o, "method", "blur_ig", 0, &err), 0);
	ck_assert_int_eq(o.attr.method, ATTR_BLUR_IG);
	ck_assert_str_eq(attribution_method_name(o.attr.method, o.attr.rule), "blur_ig");
	ck_assert_int_eq(request_options_set(&o, "blur-max-sigma", "20", 0, &err), 0);
	ck_assert_double_eq(o.attr.blur_max_sigma, 20);
	ck_assert_int_eq(request_options_set(&o, "blur_max_sigma", "101", 0, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(request_options_evaluations(&o), 50);

	request_options_init(&o);
	ck_assert_int_eq(request_options_set(&o, "method", "guided_ig", 0, &err), 0);
	ck_assert_int_eq(request_options_set(&o, "guided_fraction", "0.1", 0, &err), 0);
	ck_assert_int_eq(request_options_set(&o, "guided_fraction", "0", 0, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(request_options_set(&o, "guided_max_dist", "1", 0, &err), 0);
	ck_assert_int_eq(request_options_set(&o, "baseline", "black+white+noise", 0, &err), 0);
	ck_assert_int_eq(request_options_set(&o, "baseline_samples", "3", 0, &err), 0);
	/* black, white, three noise draws: 5 runs of 50 steps */
	ck_assert_int_eq(request_options_evaluations(&o), 250);
	char name[64];
	attribution_baseline_set_name(&o.attr, name, sizeof name);
	ck_assert_str_eq(name, "black+white+noise");
	struct request_limits lim = {.max_evaluations = 200};
	ck_assert_int_eq(request_options_check_limits(&o, true, &lim, &err), IGS_ERR_BAD_OPTION);
	ck_assert_msg(strstr(err.message, "250") && strstr(err.message, "--max-evaluations"), "%s",
	              err.message);

	ck_assert_int_eq(request_options_set(&o, "baseline", "black+bogus", 0, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_msg(strstr(err.message, "black+bogus"), "%s", err.message);
	ck_assert_int_eq(request_options_set(&o, "baseline", "black++white", 0, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(request_options_set(&o, "baseline",
	                                     "gray+gray+gray+gray+gray+gray+gray+gray+gray", 0,
	                                     &err),
	                 IGS_ERR_BAD_OPTION);

	/* refused at run time, by name */
	struct toy toy;
	toy_init(&toy, TOY_LINEAR);
	struct grad_oracle oracle;
	toy_oracle(&oracle, &toy);
	float x[N];
	test_image(x);
	struct attr_result r;
	struct attr_params p = opts(RULE_GAUSS_LEGENDRE, 8, BASELINE_GRAY);
	p.baseline_samples = 2; /* gray has nothing to draw */
	ck_assert_int_eq(attribution_run(&oracle, x, &p, 2, NULL, &r, &err), IGS_ERR_BAD_OPTION);
	ck_assert_msg(strstr(err.message, "baseline_samples"), "%s", err.message);
	p = opts(RULE_GAUSS_LEGENDRE, 8, BASELINE_GRAY);
	ck_assert_int_eq(attribution_baseline_set_parse("black+white", &p), 0);
	p.method = ATTR_BLUR_IG;
	ck_assert_int_eq(attribution_run(&oracle, x, &p, 2, NULL, &r, &err), IGS_ERR_BAD_OPTION);
	ck_assert_msg(strstr(err.message, "blur_ig"), "%s", err.message);
	p.method = ATTR_INTEGRATED_GRADIENTS;
	p.tolerance = 0.01;
	ck_assert_int_eq(attribution_run(&oracle, x, &p, 2, NULL, &r, &err), IGS_ERR_BAD_OPTION);
	ck_assert_msg(strstr(err.message, "tolerance"), "%s", err.message);
	p = opts(RULE_GAUSS_LEGENDRE, 8, BASELINE_GRAY);
	p.method = ATTR_GUIDED_IG;
	p.guided_fraction = 0;
	ck_assert_int_eq(attribution_run(&oracle, x, &p, 2, NULL, &r, &err), IGS_ERR_BAD_OPTION);
	ck_assert_msg(strstr(err.message, "guided_fraction"), "%s", err.message);
	toy_free(&toy);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("paper-methods");
	/* "toy": the closed-form models (quick, e.g. under valgrind with
	 * CK_RUN_CASE=toy); "network": the fixtures and the demo model */
	TCase *toy = tcase_create("toy");
	tcase_add_test(toy, test_options);
	tcase_add_test(toy, test_linear_toy_exact);
	tcase_add_test(toy, test_baseline_samples_seeded);
	tcase_add_test(toy, test_blur_ig_deadline_keeps_first_round);
	tcase_add_test(toy, test_baseline_set_deadline);
	suite_add_tcase(s, toy);
	TCase *tc = tcase_create("network");
	tcase_set_timeout(tc, 1200);
	tcase_add_test(tc, test_against_pytorch);
	tcase_add_test(tc, test_repeat_and_baseline_mean);
	tcase_add_test(tc, test_answer_json);
	tcase_add_test(tc, test_demo_completeness);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
