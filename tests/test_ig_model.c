/*
 * test_ig_model.c - Integrated Gradients through the real engine
 * (model_open + net_forward/net_backward) against PyTorch float64
 * references from tests/fixtures/make_ig_fixtures.py: every quadrature rule,
 * every baseline, saliency, input x gradient and output=probability, on a
 * torchvision and a timm ResNetV2 narrow model.  And the Adebayo et al.
 * (2018) sanity check: re-drawing the top layers changes the attributions.
 * Everything in float32 and, on CPUs with AMX, in split bf16 (conv.h).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "attribution.h"
#include "base64.h"
#include "conv.h"
#include "model.h"
#include "png_encode.h"
#include "safetensors.h"
#include "service.h"
#include "json_render.h"
#include <cjson/cJSON.h>

#define BATCH 3 /* 16 points: five chunks and a remainder */

struct fixture {
	struct model *model;
	struct net_workspace *ws;
	struct grad_oracle oracle;
	struct st_file *cases;
	int size, target, steps;
	double blur_sigma;
	unsigned long long seed;
	float *pixels;
};

static void path_of(char *buf, size_t n, const char *file)
{
	const char *dir = getenv("IGSERVE_FIXTURES");
	snprintf(buf, n, "%s/ig/%s", dir ? dir : "tests/fixtures", file);
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

/*
 * How far apart two routes to the same numbers may be (by position or by
 * pixels, summed or per point, a constant baseline's kept logits): float32
 * rounding, or in split bf16 its coarser rounding of inputs that differ by
 * float32 rounding (each bfloat16 split may round the other way).  The
 * test case sets the arithmetic and this with it.
 */
static double route_tol = 1e-5;
/* The arithmetic the test case loads its models in. */
static struct model_options arith = {.precision = CONV_PRECISION_FP32};

static void use_fp32(void)
{
	arith.precision = CONV_PRECISION_FP32;
	route_tol = 1e-5;
}

static void use_bf16x3(void)
{
	arith.precision = CONV_PRECISION_BF16X3;
	route_tol = 1e-4;
}

static void fixture_open(struct fixture *fx, const char *name)
{
	char path[4096], file[256];
	struct igs_error err = {0};
	memset(fx, 0, sizeof *fx);
	snprintf(file, sizeof file, "%s.safetensors", name);
	path_of(path, sizeof path, file);
	ck_assert_msg(model_open(&fx->model, path, &arith, &err) == 0, "%s", err.message);
	snprintf(file, sizeof file, "%s.ig.safetensors", name);
	path_of(path, sizeof path, file);
	ck_assert_msg(safetensors_open(&fx->cases, path, &err) == 0, "%s", err.message);
	fx->size = atoi(safetensors_metadata(fx->cases, "input_size"));
	fx->target = atoi(safetensors_metadata(fx->cases, "target"));
	fx->steps = atoi(safetensors_metadata(fx->cases, "steps"));
	fx->blur_sigma = atof(safetensors_metadata(fx->cases, "blur_sigma"));
	fx->seed = strtoull(safetensors_metadata(fx->cases, "seed"), NULL, 10);
	ck_assert_int_eq(model_set_input_size(fx->model, fx->size, &err), 0);
	ck_assert_int_eq(net_workspace_open(&fx->ws, fx->model, BATCH, &err), 0);
	attribution_net_oracle(&fx->oracle, fx->model, fx->ws);
	ck_assert_int_eq(fx->oracle.size, fx->size);
	fx->pixels = read_tensor(fx->cases, "pixels", (int64_t)fx->size * fx->size * 3);
}

static void fixture_close(struct fixture *fx)
{
	free(fx->pixels);
	net_workspace_close(&fx->ws);
	model_close(&fx->model);
	safetensors_close(&fx->cases);
}

static double rel_l2(const float *a, const float *ref, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
		den += (double)ref[i] * ref[i];
	}
	return sqrt(num / den);
}

/* Options of a case named METHOD/BASELINE/OUTPUT, set through the same
 * parser as HTTP and CLI. */
static void case_options(const struct fixture *fx, const char *name, struct request_options *o)
{
	char method[64], base[64], output[64];
	ck_assert_int_eq(sscanf(name, "%63[^/]/%63[^/]/%63s", method, base, output), 3);
	request_options_init(o);
	struct igs_error err = {0};
	ck_assert_msg(request_options_set(o, "method", method, 0, &err) == 0, "%s", err.message);
	ck_assert_msg(request_options_set(o, "baseline", base, 0, &err) == 0, "%s", err.message);
	ck_assert_msg(request_options_set(o, "output", output, 0, &err) == 0, "%s", err.message);
	o->attr.steps = fx->steps;
	o->attr.blur_sigma = fx->blur_sigma;
	o->attr.seed = fx->seed;
	o->attr.target = fx->target;
}

/* Every case in the file; returns how many were checked. */
static int check_all_cases(const char *model_name)
{
	struct fixture fx;
	fixture_open(&fx, model_name);
	size_t n = (size_t)fx.size * fx.size * 3;
	int checked = 0;
	for (size_t i = 0; i < safetensors_count(fx.cases); i++) {
		const char *name = safetensors_at(fx.cases, i)->name;
		if (!strchr(name, '/') || strchr(name, ':') || !strncmp(name, "baseline/", 9))
			continue;
		struct request_options o;
		case_options(&fx, name, &o);
		struct attr_result res;
		struct igs_error err = {0};
		ck_assert_msg(attribution_run(&fx.oracle, fx.pixels, &o.attr, BATCH, NULL, &res, &err) ==
		                  0,
		              "%s: %s", name, err.message);
		float *ref = read_tensor(fx.cases, name, (int64_t)n);
		char fname[128];
		snprintf(fname, sizeof fname, "%s:f", name);
		float *f = read_tensor(fx.cases, fname, 2);
		double e = rel_l2(res.attr, ref, n);
		fprintf(stderr,
		        "%s %-36s rel L2 %.2e  f_input %.6f (%.6f)  f_baseline %.6f (%.6f)\n",
		        model_name, name, e, res.f_input, f[0], res.f_baseline, f[1]);
		ck_assert_msg(e < 1e-2, "%s %s: relative L2 %g", model_name, name, e);
		ck_assert_msg(fabs(res.f_input - f[0]) <= 1e-4 * fmax(1.0, fabs(f[0])),
		              "%s %s: f_input %g, PyTorch %g", model_name, name, res.f_input, f[0]);
		ck_assert_msg(fabs(res.f_baseline - f[1]) <= 1e-4 * fmax(1.0, fabs(f[1])),
		              "%s %s: f_baseline %g, PyTorch %g", model_name, name, res.f_baseline,
		              f[1]);
		ck_assert_int_eq(res.target, fx.target);
		free(ref);
		free(f);
		attr_result_clear(&res);
		checked++;
	}
	fixture_close(&fx);
	return checked;
}

START_TEST(test_torchvision_every_rule_and_baseline)
{
	/* 5 rules (+ trapezoid on blur), 4 more baselines, saliency,
	 * input x gradient, probability */
	ck_assert_int_eq(check_all_cases("tv_ig"), 13);
}
END_TEST

START_TEST(test_timm_resnetv2)
{
	ck_assert_int_eq(check_all_cases("timm_ig"), 2);
}
END_TEST

/* Whether two runs' path tables agree: F, sum of the gradient and
 * dF/dalpha at every point, each within rel of its column's largest
 * magnitude (a sum near zero is as exact as its terms, not as itself). */
static void check_same_path(const struct attr_result *a, const struct attr_result *b, double rel,
                            const char *what)
{
	ck_assert_int_eq(a->path_count, b->path_count);
	double scale[3] = {0};
	for (int k = 0; k < b->path_count; k++) {
		const struct attr_point *q = &b->path[k];
		scale[0] = fmax(scale[0], fabs(q->output));
		scale[1] = fmax(scale[1], fabs(q->gradient_sum));
		scale[2] = fmax(scale[2], fabs(q->path_derivative));
	}
	for (int k = 0; k < a->path_count; k++) {
		const struct attr_point *p = &a->path[k], *q = &b->path[k];
		ck_assert_double_eq(p->alpha, q->alpha);
		const double got[3] = {p->output, p->gradient_sum, p->path_derivative};
		const double want[3] = {q->output, q->gradient_sum, q->path_derivative};
		for (int i = 0; i < 3; i++)
			ck_assert_msg(fabs(got[i] - want[i]) <= rel * scale[i],
			              "%s, point %d, column %d: %.9g against %.9g", what, k, i,
			              got[i], want[i]);
	}
}

/* Path points by position (the network oracle's forward_path: the stem's
 * outputs interpolated) give the attributions that points as pixels give,
 * whether the points' gradients are summed before the stem (backward_path,
 * the default) or each goes back to its pixels; positions without a
 * started path, or more than the workspace holds, are refused. */
START_TEST(test_points_by_position_match_pixels)
{
	struct fixture fx;
	fixture_open(&fx, "tv_ig");
	size_t n = (size_t)fx.size * fx.size * 3;
	struct request_options o;
	case_options(&fx, "gausslegendre/gray/logit", &o);
	struct grad_oracle per_point = fx.oracle, by_pixels = fx.oracle;
	ck_assert(fx.oracle.backward_path != NULL);
	per_point.backward_path = NULL;
	per_point.path_gradient = NULL;
	by_pixels.path_start = NULL;
	by_pixels.forward_path = NULL;
	struct attr_result a, b, c;
	ck_assert_int_eq(attribution_run(&fx.oracle, fx.pixels, &o.attr, BATCH, NULL, &a, NULL), 0);
	ck_assert_int_eq(attribution_run(&by_pixels, fx.pixels, &o.attr, BATCH, NULL, &b, NULL), 0);
	ck_assert_int_eq(attribution_run(&per_point, fx.pixels, &o.attr, BATCH, NULL, &c, NULL), 0);
	double e = rel_l2(a.attr, b.attr, n);
	ck_assert_msg(e < route_tol, "by position vs by pixels: relative L2 %g", e);
	e = rel_l2(a.attr, c.attr, n);
	ck_assert_msg(e < route_tol, "summed vs per point: relative L2 %g", e);
	check_same_path(&a, &b, route_tol, "summed vs by pixels");
	check_same_path(&a, &c, route_tol, "summed vs per point");
	ck_assert_double_eq_tol(a.sum, c.sum, route_tol * fabs(c.sum));
	/* a position outside a started path is refused, not computed */
	float logits[3 * 1000], alpha[1] = {0.5f};
	struct net_workspace *fresh = NULL;
	ck_assert_int_eq(net_workspace_open(&fresh, fx.model, 1, NULL), 0);
	ck_assert_int_eq(net_forward_path(fresh, alpha, 1, logits), IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(net_path_start(fresh, fx.pixels, fx.pixels), 0);
	ck_assert_int_eq(net_forward_path(fresh, alpha, 2, logits), IGS_ERR_BAD_OPTION);
	net_workspace_close(&fresh);
	attr_result_clear(&a);
	attr_result_clear(&b);
	attr_result_clear(&c);
	fixture_close(&fx);
}
END_TEST

/* A constant baseline's logits come from the oracle's kept ones
 * (constant_logits): the same F(x') and attributions as a forward of the
 * baseline image gives, run after run. */
START_TEST(test_constant_baseline_logits)
{
	struct fixture fx;
	fixture_open(&fx, "tv_ig");
	size_t n = (size_t)fx.size * fx.size * 3;
	ck_assert(fx.oracle.constant_logits != NULL);
	struct grad_oracle plain = fx.oracle;
	plain.constant_logits = NULL;
	static const enum baseline_kind kinds[] = {BASELINE_GRAY, BASELINE_BLACK, BASELINE_WHITE,
	                                           BASELINE_GRAY};
	for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
		struct request_options o;
		case_options(&fx, "gausslegendre/gray/logit", &o);
		o.attr.baseline = kinds[k];
		struct attr_result a, b;
		ck_assert_int_eq(attribution_run(&fx.oracle, fx.pixels, &o.attr, BATCH, NULL, &a, NULL),
		                 0);
		ck_assert_int_eq(attribution_run(&plain, fx.pixels, &o.attr, BATCH, NULL, &b, NULL), 0);
		ck_assert_msg(fabs(a.f_baseline - b.f_baseline) <=
		                  route_tol * fmax(1.0, fabs(b.f_baseline)),
		              "baseline %d: F(x') %.9g kept, %.9g computed", (int)kinds[k],
		              a.f_baseline, b.f_baseline);
		ck_assert_double_eq_tol(a.f_input, b.f_input,
		                        route_tol * fmax(1.0, fabs(b.f_input)));
		double e = rel_l2(a.attr, b.attr, n);
		ck_assert_msg(e < route_tol, "baseline %d: attributions %g apart", (int)kinds[k],
		              e);
		attr_result_clear(&a);
		attr_result_clear(&b);
	}
	fixture_close(&fx);
}
END_TEST

/* The baselines igserve builds equal the reference script's. */
START_TEST(test_baselines_match_reference)
{
	static const char *names[] = {"gray", "black", "white", "blur", "noise"};
	struct fixture fx;
	fixture_open(&fx, "tv_ig");
	size_t n = (size_t)fx.size * fx.size * 3;
	float *mine = malloc(sizeof *mine * n);
	for (int b = 0; b < 5; b++) {
		struct request_options o;
		request_options_init(&o);
		ck_assert_int_eq(request_options_set(&o, "baseline", names[b], 0, NULL), 0);
		ck_assert_int_eq(attribution_baseline(o.attr.baseline, fx.blur_sigma, fx.seed, fx.pixels,
		                                      fx.size, mine, NULL),
		                 0);
		char key[64];
		snprintf(key, sizeof key, "baseline/%s", names[b]);
		float *ref = read_tensor(fx.cases, key, (int64_t)n);
		for (size_t i = 0; i < n; i++)
			ck_assert_msg(fabsf(mine[i] - ref[i]) <= 1e-3f, "%s[%zu]: %g vs %g",
			              names[b], i, mine[i], ref[i]);
		free(ref);
	}
	free(mine);
	fixture_close(&fx);
}
END_TEST

/* Spearman rank correlation of a[n] and b[n] (no tie correction: the
 * values are continuous). */
static int *rank_order(const float *v, size_t n);
static const float *sort_keys;
static int by_key(const void *x, const void *y)
{
	float a = sort_keys[*(const int *)x], b = sort_keys[*(const int *)y];
	return (a > b) - (a < b);
}

static int *rank_order(const float *v, size_t n)
{
	int *idx = malloc(sizeof *idx * n), *rank = malloc(sizeof *rank * n);
	for (size_t i = 0; i < n; i++)
		idx[i] = (int)i;
	sort_keys = v;
	qsort(idx, n, sizeof *idx, by_key);
	for (size_t i = 0; i < n; i++)
		rank[idx[i]] = (int)i;
	free(idx);
	return rank;
}

static double spearman(const float *a, const float *b, size_t n)
{
	int *ra = rank_order(a, n), *rb = rank_order(b, n);
	double d2 = 0;
	for (size_t i = 0; i < n; i++)
		d2 += ((double)ra[i] - rb[i]) * ((double)ra[i] - rb[i]);
	free(ra);
	free(rb);
	return 1.0 - 6.0 * d2 / ((double)n * ((double)n * n - 1.0));
}

static void magnitude(const float *attr, size_t hw, float *m)
{
	for (size_t p = 0; p < hw; p++)
		m[p] = fabsf(attr[3 * p]) + fabsf(attr[3 * p + 1]) + fabsf(attr[3 * p + 2]);
}

/*
 * Adebayo et al. 2018, cascading randomization: with layer4 and fc re-drawn
 * the attributions of the same class must change markedly (an explanation
 * that ignored the top of the network would not).  The same model run twice
 * is the control: identical maps.
 */
START_TEST(test_randomizing_top_layers_changes_attributions)
{
	struct fixture a, b;
	fixture_open(&a, "tv_ig");
	fixture_open(&b, "tv_ig_randtop");
	ck_assert_int_eq(a.target, b.target);
	size_t hw = (size_t)a.size * a.size, n = hw * 3;
	struct request_options o;
	request_options_init(&o);
	o.attr.steps = a.steps;
	o.attr.target = a.target;
	struct attr_result ra, ra2, rb;
	ck_assert_int_eq(attribution_run(&a.oracle, a.pixels, &o.attr, BATCH, NULL, &ra, NULL), 0);
	ck_assert_int_eq(attribution_run(&a.oracle, a.pixels, &o.attr, BATCH, NULL, &ra2, NULL), 0);
	ck_assert_int_eq(attribution_run(&b.oracle, b.pixels, &o.attr, BATCH, NULL, &rb, NULL), 0);
	float *ma = malloc(sizeof *ma * hw), *ma2 = malloc(sizeof *ma2 * hw),
	      *mb = malloc(sizeof *mb * hw);
	magnitude(ra.attr, hw, ma);
	magnitude(ra2.attr, hw, ma2);
	magnitude(rb.attr, hw, mb);
	/* Signed attributions are what changes; |attr| keeps a share of
	 * |x - x'|, the input's own structure, whatever the model (Adebayo et
	 * al. note the same for gradient x input), so it is only reported. */
	double rho_self = spearman(ra.attr, ra2.attr, n), rho = spearman(ra.attr, rb.attr, n);
	double rho_mag = spearman(ma, mb, hw);
	double diff = rel_l2(rb.attr, ra.attr, n);
	fprintf(stderr,
	        "randomized top: rank correlation %.3f (control %.3f, of |attr| %.3f), "
	        "relative L2 %.3f\n",
	        rho, rho_self, rho_mag, diff);
	ck_assert_double_eq_tol(rho_self, 1.0, 1e-9);
	ck_assert_double_lt(rho, 0.5);
	ck_assert_double_gt(diff, 0.5);
	/* and the randomized model still matches its own PyTorch reference */
	float *ref = read_tensor(b.cases, "gausslegendre/gray/logit", (int64_t)n);
	ck_assert_double_lt(rel_l2(rb.attr, ref, n), 1e-2);
	free(ref);
	free(ma);
	free(ma2);
	free(mb);
	attr_result_clear(&ra);
	attr_result_clear(&ra2);
	attr_result_clear(&rb);
	fixture_close(&a);
	fixture_close(&b);
}
END_TEST

/* Adaptive IG on the real engine: Gauss-Legendre refinement reaches a
 * tolerance the 16-point rule misses. */
START_TEST(test_adaptive_on_the_engine)
{
	struct fixture fx;
	fixture_open(&fx, "tv_ig");
	struct request_options o;
	request_options_init(&o);
	o.attr.steps = 4;
	o.attr.target = fx.target;
	o.attr.tolerance = 0.005;
	o.attr.max_steps = 512;
	struct attr_result r;
	ck_assert_int_eq(attribution_run(&fx.oracle, fx.pixels, &o.attr, BATCH, NULL, &r, NULL), 0);
	fprintf(stderr, "adaptive: %d steps, %d evaluations, relative error %.2e\n", r.steps,
	        r.evaluations, r.relative_error);
	ck_assert(r.converged);
	ck_assert_double_le(r.relative_error, 0.005);
	ck_assert_int_gt(r.steps, 4);
	/* the rounds' gradients summed before the stem (the default) or point
	 * by point: the same refinement */
	struct grad_oracle per_point = fx.oracle;
	per_point.backward_path = NULL;
	per_point.path_gradient = NULL;
	struct attr_result q;
	ck_assert_int_eq(attribution_run(&per_point, fx.pixels, &o.attr, BATCH, NULL, &q, NULL), 0);
	ck_assert_int_eq(q.steps, r.steps);
	ck_assert_int_eq(q.evaluations, r.evaluations);
	size_t n = (size_t)fx.size * fx.size * 3;
	double e = rel_l2(r.attr, q.attr, n);
	ck_assert_msg(e < route_tol, "adaptive, summed vs per point: relative L2 %g", e);
	check_same_path(&r, &q, route_tol, "adaptive, summed vs per point");
	attr_result_clear(&q);
	attr_result_clear(&r);
	fixture_close(&fx);
}
END_TEST

/* ---- service_attribute: the /attribute JSON ---- */

static double num(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	ck_assert_msg(cJSON_IsNumber(v), "JSON field %s is not a number", key);
	return v->valuedouble;
}

static unsigned char *decode_b64(const cJSON *v, size_t *len)
{
	ck_assert(cJSON_IsString(v));
	size_t n = strlen(v->valuestring);
	unsigned char *b = malloc(n / 4 * 3 + 3);
	ck_assert_int_eq(base64_decode(v->valuestring, n, b, len), 0);
	return b;
}

struct served {
	struct service *svc;
	struct service_worker *w;
	unsigned char *png;
	size_t png_len;
	struct fixture fx;
};

static void serve_open(struct served *sv)
{
	fixture_open(&sv->fx, "tv_ig");
	char path[4096];
	path_of(path, sizeof path, "tv_ig.safetensors");
	struct service_config cfg = {.model_path = path, .input_size = 64, .max_batch = BATCH};
	struct igs_error err = {0};
	ck_assert_msg(service_open(&sv->svc, &cfg, &err) == 0, "%s", err.message);
	ck_assert_msg(service_worker_open(&sv->w, sv->svc, &err) == 0, "%s", err.message);
	/* the fixture's integer pixels as a PNG: 64x64 is used pixel for pixel */
	size_t n = 64 * 64 * 3;
	uint8_t *rgb = malloc(n);
	for (size_t i = 0; i < n; i++)
		rgb[i] = (uint8_t)sv->fx.pixels[i];
	ck_assert_int_eq(png_encode(rgb, 64, 64, 3, &sv->png, &sv->png_len, NULL), 0);
	free(rgb);
}

static void serve_close(struct served *sv)
{
	free(sv->png);
	service_worker_close(&sv->w);
	service_close(&sv->svc);
	fixture_close(&sv->fx);
}

START_TEST(test_service_attribute_json)
{
	struct served sv;
	serve_open(&sv);
	struct request_options o;
	request_options_init(&o);
	o.attr.steps = 16;
	o.raw_npy = true;
	struct job_control job;
	job_init(&job);
	struct igs_error err = {0};
	struct attribute_result res;
	ck_assert_msg(service_attribute(sv.w, sv.png, sv.png_len, &o, &job, &res, &err) == 0, "%s",
	              err.message);
	/* the typed result, and the JSON rendered from it */
	ck_assert_int_eq(res.attr.steps, 16);
	ck_assert_int_eq(res.map_count, 7);
	ck_assert_ptr_null(res.path_maps);
	char *text = json_render_attribute(sv.svc, &res);
	ck_assert_ptr_nonnull(text);
	cJSON *doc = cJSON_Parse(text);
	free(text);
	ck_assert_ptr_nonnull(doc);
	const cJSON *target = cJSON_GetObjectItem(doc, "target");
	ck_assert_int_eq((int)num(target, "index"), sv.fx.target);
	ck_assert_str_eq(cJSON_GetObjectItem(target, "label")->valuestring, "class_7");
	const cJSON *method = cJSON_GetObjectItem(doc, "method");
	ck_assert_str_eq(cJSON_GetObjectItem(method, "name")->valuestring, "gausslegendre");
	ck_assert_str_eq(cJSON_GetObjectItem(method, "baseline")->valuestring, "gray");
	ck_assert(cJSON_IsNull(cJSON_GetObjectItem(method, "tolerance")));
	ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(method, "converged")));
	ck_assert_int_eq((int)num(method, "steps"), 16);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "predictions")), 5);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "path")), 16);
	const cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "path"), 0);
	ck_assert(num(row, "alpha") > 0 && num(row, "weight") > 0);
	num(row, "logit");
	num(row, "gradient_sum");
	const cJSON *comp = cJSON_GetObjectItem(doc, "completeness");
	float *f = read_tensor(sv.fx.cases, "gausslegendre/gray/logit:f", 2);
	ck_assert_double_eq_tol(num(comp, "f_input"), f[0], 1e-4);
	ck_assert_double_eq_tol(num(comp, "f_baseline"), f[1], 1e-4);
	ck_assert_double_eq_tol(num(comp, "delta"),
	                        num(comp, "sum") - (num(comp, "f_input") - num(comp, "f_baseline")),
	                        1e-9);
	free(f);
	/* 16 Gauss-Legendre points nest no coarser rule: no estimate, said so */
	const cJSON *conv = cJSON_GetObjectItem(doc, "convergence");
	ck_assert(cJSON_IsNull(cJSON_GetObjectItem(conv, "relative_l2")));
	ck_assert_str_eq(cJSON_GetObjectItem(conv, "estimator")->valuestring, "none");
	ck_assert_int_eq((int)num(conv, "points"), 16);
	const cJSON *timing = cJSON_GetObjectItem(doc, "timing_ms");
	static const char *tk[] = {"decode", "preprocess", "attribution", "heatmaps", "total"};
	for (int i = 0; i < 5; i++)
		ck_assert(num(timing, tk[i]) >= 0);

	/* the seven heatmaps decode as 64x64 PNGs */
	const cJSON *maps = cJSON_GetObjectItem(doc, "heatmaps");
	ck_assert_int_eq(cJSON_GetArraySize(maps), 7);
	const cJSON *m;
	cJSON_ArrayForEach(m, maps)
	{
		size_t len;
		unsigned char *png = decode_b64(m, &len);
		ck_assert_mem_eq(png, "\x89PNG\r\n\x1a\n", 8);
		ck_assert_int_eq(png[16] << 24 | png[17] << 16 | png[18] << 8 | png[19], 64);
		free(png);
	}

	/* attributions_npy: the reference within 1e-2, the result's own values */
	size_t len;
	unsigned char *npy = decode_b64(cJSON_GetObjectItem(doc, "attributions_npy"), &len);
	ck_assert_uint_eq(len, 128 + 64 * 64 * 3 * 4);
	float *ref = read_tensor(sv.fx.cases, "gausslegendre/gray/logit", 64 * 64 * 3);
	float *got = malloc(64 * 64 * 3 * sizeof *got);
	memcpy(got, npy + 128, 64 * 64 * 3 * sizeof *got);
	ck_assert_double_lt(rel_l2(got, ref, 64 * 64 * 3), 1e-2);
	ck_assert_mem_eq(got, res.attr.attr, 64 * 64 * 3 * sizeof *got);
	attribute_result_clear(&res);
	free(got);
	free(ref);
	free(npy);
	cJSON_Delete(doc);
	serve_close(&sv);
}
END_TEST

START_TEST(test_service_attribute_errors)
{
	struct served sv;
	serve_open(&sv);
	struct request_options o;
	request_options_init(&o);
	o.attr.steps = 4;
	struct attribute_result res;
	struct igs_error err = {0};
	ck_assert_int_eq(service_attribute(sv.w, "not an image", 12, &o, NULL, &res, &err),
	                 IGS_ERR_UNSUPPORTED_MEDIA);
	ck_assert_ptr_null(res.attr.attr);
	o.attr.target = 10;
	ck_assert_int_eq(service_attribute(sv.w, sv.png, sv.png_len, &o, NULL, &res, &err),
	                 IGS_ERR_BAD_OPTION);
	o.attr.target = -1;
	struct job_control job;
	job_init(&job);
	job.deadline = 1e-9;
	ck_assert_int_eq(service_attribute(sv.w, sv.png, sv.png_len, &o, &job, &res, &err),
	                 IGS_ERR_DEADLINE);
	ck_assert_ptr_null(res.maps);
	serve_close(&sv);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ig-model");
	/* every test in float32, and where the CPU has AMX in split bf16 */
	struct igs_error err = {0};
	enum conv_precision resolved;
	const bool split = conv_precision_resolve(CONV_PRECISION_BF16X3, &resolved, &err) == 0;
	if (!split)
		printf("test_ig_model: split bf16 not tested here: %s\n", err.message);
	for (int a = 0; a < (split ? 2 : 1); a++) {
		TCase *tc = tcase_create(a ? "bf16x3" : "fp32");
		tcase_add_checked_fixture(tc, a ? use_bf16x3 : use_fp32, NULL);
		tcase_set_timeout(tc, 300);
		tcase_add_test(tc, test_torchvision_every_rule_and_baseline);
		tcase_add_test(tc, test_timm_resnetv2);
		tcase_add_test(tc, test_points_by_position_match_pixels);
		tcase_add_test(tc, test_constant_baseline_logits);
		tcase_add_test(tc, test_baselines_match_reference);
		tcase_add_test(tc, test_randomizing_top_layers_changes_attributions);
		tcase_add_test(tc, test_adaptive_on_the_engine);
		tcase_add_test(tc, test_service_attribute_json);
		tcase_add_test(tc, test_service_attribute_errors);
		suite_add_tcase(s, tc);
	}
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
