/*
 * test_model.c - the engine against PyTorch, at narrow and full width.
 *
 * 1. tests/fixtures/engine/: narrow ResNets of both families and both
 *    block types with float64 PyTorch logits and input gradients
 *    (tests/fixtures/make_engine_fixtures.py).  Logits within 1e-4 of the
 *    largest logit, gradients within 1e-2 relative L2.
 * 2. Full width: random resnet50 / resnetv2_50 weights written by this test
 *    in both namings, loaded, run forward and backward; in float32 the
 *    gradient is checked against a central finite difference along random
 *    directions, in split bf16 (conv.h) logits and gradients against the
 *    float32 ones of the same weights.
 * 3. Loader refusals: names and shapes that are not a ResNet, and the CLI's
 *    exit status and message for broken weights files.
 */
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conv.h"
#include "model.h"
#include "safetensors.h"
#include "safetensors_writer.h"

static char tmpdir[256];

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/igserve-test-model-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
}

static const char *fixture(const char *name)
{
	static char path[1024];
	const char *dir = getenv("IGSERVE_FIXTURES");
	snprintf(path, sizeof path, "%s/engine/%s", dir ? dir : "tests/fixtures", name);
	return path;
}

/* Read a float tensor from a case file into a malloc'ed array. */
static float *case_tensor(struct st_file *f, const char *name, int64_t *numel)
{
	const struct st_tensor *t = safetensors_find(f, name);
	ck_assert_msg(t != NULL, "case file lacks '%s'", name);
	float *data = malloc((size_t)t->numel * sizeof(float));
	ck_assert_int_eq(safetensors_read_f32(t, data, NULL), 0);
	if (numel)
		*numel = t->numel;
	return data;
}

/* ===== 1. narrow models against PyTorch float64 =========================== */

static const struct {
	const char *name;
	enum model_family family;
	enum block_kind block;
	int blocks[4];
} variants[] = {
    {"tv_basic", FAMILY_TORCHVISION, BLOCK_BASIC, {2, 1, 1, 1}},
    {"tv_bottleneck", FAMILY_TORCHVISION, BLOCK_BOTTLENECK, {1, 2, 1, 1}},
    {"timm_bottleneck", FAMILY_TIMM_RESNETV2, BLOCK_BOTTLENECK, {1, 2, 1, 1}},
    {"timm_basic", FAMILY_TIMM_RESNETV2, BLOCK_BASIC, {1, 1, 2, 1}},
};

static void compare_with_pytorch(int _i, int threads);

START_TEST(test_matches_pytorch)
{
	compare_with_pytorch(_i, 1);
}
END_TEST

/* OpenMP teams splitting every layer must give the same numbers. */
START_TEST(test_matches_pytorch_threads)
{
	compare_with_pytorch(_i, 2);
	compare_with_pytorch(_i, 3);
}
END_TEST

static void compare_with_pytorch(int _i, int threads)
{
	char weights[64], cases[64];
	snprintf(weights, sizeof weights, "%s.safetensors", variants[_i].name);
	snprintf(cases, sizeof cases, "%s.case.safetensors", variants[_i].name);

	struct igs_error err = {0};
	struct model *m = NULL;
	int rc = model_open(&m, fixture(weights), NULL, &err);
	ck_assert_msg(rc == 0, "load %s: %s", weights, err.message);
	const struct model_info *info = model_get_info(m);
	ck_assert_int_eq(info->family, variants[_i].family);
	ck_assert_int_eq(info->block, variants[_i].block);
	ck_assert_int_eq(info->stages, 4);
	ck_assert_int_eq(memcmp(info->blocks, variants[_i].blocks, sizeof variants[_i].blocks), 0);
	ck_assert_int_eq(info->classes, 10);
	ck_assert_int_eq(model_set_input_size(m, 64, &err), 0);

	struct st_file *cf = NULL;
	ck_assert_int_eq(safetensors_open(&cf, fixture(cases), &err), 0);
	int64_t npix, nlog;
	float *pixels = case_tensor(cf, "pixels", &npix);
	float *ref_logits = case_tensor(cf, "logits", &nlog);
	float *ref_grad = case_tensor(cf, "grad", NULL);
	float *targets = case_tensor(cf, "targets", NULL);
	const int n = 3, classes = 10;
	const size_t per_image = 64 * 64 * 3;
	ck_assert_int_eq(npix, n * (int64_t)per_image);

	struct net_workspace *ws = NULL;
	ck_assert_int_eq(net_workspace_open(&ws, m, n, &err), 0);
	ck_assert_int_eq(net_workspace_set_threads(ws, threads, &err), 0);
	ck_assert_int_eq(net_workspace_threads(ws), threads);
	float logits[30], d_logits[30] = {0};
	ck_assert_int_eq(net_forward(ws, pixels, n, logits), 0);

	float max_ref = 0, max_diff = 0;
	for (int i = 0; i < n * classes; i++) {
		max_ref = fmaxf(max_ref, fabsf(ref_logits[i]));
		max_diff = fmaxf(max_diff, fabsf(logits[i] - ref_logits[i]));
	}
	ck_assert_msg(max_diff <= 1e-4f * max_ref, "%s: logits off by %g (largest logit %g)",
	              variants[_i].name, max_diff, max_ref);

	for (int i = 0; i < n; i++)
		d_logits[i * classes + (int)targets[i]] = 1.0f;
	float *grad = malloc(npix * sizeof(float));
	ck_assert_int_eq(net_backward(ws, d_logits, grad), 0);
	for (int i = 0; i < n; i++) {
		double num = 0, den = 0;
		for (size_t j = 0; j < per_image; j++) {
			double d = (double)grad[i * per_image + j] - ref_grad[i * per_image + j];
			num += d * d;
			den += (double)ref_grad[i * per_image + j] * ref_grad[i * per_image + j];
		}
		double rel = sqrt(num / den);
		ck_assert_msg(den > 0 && rel <= 1e-2, "%s image %d: gradient relative L2 error %g",
		              variants[_i].name, i, rel);
	}

	/* Images share every kernel call: image 1 alone must give its row of the batch. */
	float single[10];
	ck_assert_int_eq(net_forward(ws, pixels + per_image, 1, single), 0);
	for (int c = 0; c < classes; c++)
		ck_assert_float_eq_tol(single[c], logits[classes + c], 1e-4f * max_ref);

	/* After its pages go back to the system, the workspace still computes the same. */
	net_workspace_release(ws);
	float again[30];
	ck_assert_int_eq(net_forward(ws, pixels, n, again), 0);
	ck_assert_int_eq(memcmp(again, logits, sizeof again), 0);

	/* Inference alone gives the same logits, and keeps nothing to go back through. */
	memset(again, 0, sizeof again);
	ck_assert_int_eq(net_infer(ws, pixels, n, again), 0);
	ck_assert_int_eq(memcmp(again, logits, sizeof again), 0);
	ck_assert_int_eq(net_backward(ws, d_logits, grad), IGS_ERR_BAD_OPTION);

	/* Constant images' logits are net_infer's, kept: four values cycle
	 * through the three slots, and each answer, kept or computed anew,
	 * is the one the image gives. */
	const float values[] = {127.5f, 0.0f, 255.0f, 127.5f, 50.0f, 0.0f, 127.5f};
	for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
		for (size_t j = 0; j < per_image; j++)
			pixels[j] = values[v];
		float want[10], got[10];
		ck_assert_int_eq(net_infer(ws, pixels, 1, want), 0);
		ck_assert_int_eq(net_constant_logits(ws, values[v], got), 0);
		ck_assert_msg(!memcmp(got, want, sizeof got), "%s: constant %g: logits differ",
		              variants[_i].name, (double)values[v]);
	}
	ck_assert_int_eq(net_backward(ws, d_logits, grad), IGS_ERR_BAD_OPTION);

	net_workspace_close(&ws);
	ck_assert_ptr_null(ws);
	free(grad);
	free(pixels);
	free(ref_logits);
	free(ref_grad);
	free(targets);
	safetensors_close(&cf);
	model_close(&m);
	ck_assert_ptr_null(m);
}

/* ===== threads sharing one model ========================================== */

struct thread_job {
	const struct model *model;
	const float *pixels; /* [3][64][64][3] */
	float logits[30];
	float grad[64 * 64 * 3];
	int rc;
};

/* Each thread: its own workspace, the same read-only model, 20 rounds. */
static void *run_model(void *arg)
{
	struct thread_job *job = arg;
	struct net_workspace *ws = NULL;
	job->rc = net_workspace_open(&ws, job->model, 3, NULL);
	float d_logits[30] = {0};
	d_logits[3] = 1;
	float *grad = malloc(3 * 64 * 64 * 3 * sizeof(float));
	for (int r = 0; r < 20 && job->rc == 0; r++) {
		job->rc = net_forward(ws, job->pixels, 3, job->logits);
		if (job->rc == 0)
			job->rc = net_backward(ws, d_logits, grad);
	}
	memcpy(job->grad, grad, sizeof job->grad);
	free(grad);
	net_workspace_close(&ws);
	return NULL;
}

START_TEST(test_threads_share_a_model)
{
	struct model *m = NULL;
	ck_assert_int_eq(model_open(&m, fixture("timm_bottleneck.safetensors"), NULL, NULL), 0);
	ck_assert_int_eq(model_set_input_size(m, 64, NULL), 0);
	struct st_file *cf = NULL;
	ck_assert_int_eq(safetensors_open(&cf, fixture("timm_bottleneck.case.safetensors"), NULL),
	                 0);
	float *pixels = case_tensor(cf, "pixels", NULL);

	struct thread_job jobs[4];
	pthread_t threads[4];
	for (int t = 0; t < 4; t++) {
		jobs[t] = (struct thread_job){.model = m, .pixels = pixels};
		ck_assert_int_eq(pthread_create(&threads[t], NULL, run_model, &jobs[t]), 0);
	}
	for (int t = 0; t < 4; t++)
		ck_assert_int_eq(pthread_join(threads[t], NULL), 0);
	/* Same inputs, same model: every thread must get bit-identical answers. */
	for (int t = 0; t < 4; t++) {
		ck_assert_int_eq(jobs[t].rc, 0);
		ck_assert_int_eq(memcmp(jobs[t].logits, jobs[0].logits, sizeof jobs[0].logits), 0);
		ck_assert_int_eq(memcmp(jobs[t].grad, jobs[0].grad, sizeof jobs[0].grad), 0);
	}
	free(pixels);
	safetensors_close(&cf);
	model_close(&m);
}
END_TEST

/* ===== 2. full-width models written here ================================== */

/* A deterministic generator for weights (xorshift64*). */
static uint64_t rng_state;
static double rng_uniform(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}
static float rng_normal(void)
{
	double u = rng_uniform() + 1e-12, v = rng_uniform();
	return (float)(sqrt(-2 * log(u)) * cos(2 * M_PI * v));
}

struct tensor_list {
	struct st_write_tensor t[400];
	float *data[400];
	char names[400][96];
	size_t n;
};

static void add_tensor(struct tensor_list *l, const char *name, int ndim, const int64_t *shape,
                       float mean, float spread, int uniform)
{
	size_t i = l->n++;
	ck_assert_uint_lt(i, 400);
	int64_t numel = 1;
	for (int d = 0; d < ndim; d++)
		numel *= shape[d];
	float *data = malloc((size_t)numel * sizeof(float));
	for (int64_t j = 0; j < numel; j++)
		data[j] = uniform ? mean + spread * (float)(2 * rng_uniform() - 1)
		                  : mean + spread * rng_normal();
	snprintf(l->names[i], sizeof l->names[i], "%s", name);
	l->t[i] = (struct st_write_tensor){
	    .name = l->names[i], .ndim = ndim, .data = data, .dtype = ST_F32};
	memcpy(l->t[i].shape, shape, (size_t)ndim * sizeof(int64_t));
	l->data[i] = data;
}

static void add_conv(struct tensor_list *l, const char *name, int c_out, int c_in, int k,
                     float gain)
{
	int64_t shape[4] = {c_out, c_in, k, k};
	add_tensor(l, name, 4, shape, 0, gain * sqrtf(2.0f / (float)(c_in * k * k)), 0);
}

static void add_bn(struct tensor_list *l, const char *prefix, int c)
{
	char name[128];
	int64_t shape[1] = {c};
	snprintf(name, sizeof name, "%s.weight", prefix);
	add_tensor(l, name, 1, shape, 1.0f, 0.3f, 1);
	snprintf(name, sizeof name, "%s.bias", prefix);
	add_tensor(l, name, 1, shape, 0.0f, 0.1f, 0);
	snprintf(name, sizeof name, "%s.running_mean", prefix);
	add_tensor(l, name, 1, shape, 0.0f, 0.2f, 0);
	snprintf(name, sizeof name, "%s.running_var", prefix);
	add_tensor(l, name, 1, shape, 1.25f, 0.5f, 1);
}

/* ResNet-50 weights in either naming, written to `path`. */
static void write_resnet50(const char *path, enum model_family family)
{
	struct tensor_list *l = calloc(1, sizeof *l);
	const int blocks[4] = {3, 4, 6, 3};
	const bool tv = family == FAMILY_TORCHVISION;
	char p[96], name[160];
	add_conv(l, tv ? "conv1.weight" : "stem.conv.weight", 64, 3, 7, 1);
	if (tv)
		add_bn(l, "bn1", 64);
	int c_in = 64;
	for (int s = 0; s < 4; s++) {
		int mid = 64 << s, out = mid * 4;
		for (int b = 0; b < blocks[s]; b++) {
			if (tv)
				snprintf(p, sizeof p, "layer%d.%d", s + 1, b);
			else
				snprintf(p, sizeof p, "stages.%d.blocks.%d", s, b);
			const int widths[3][3] = {{mid, c_in, 1}, {mid, mid, 3}, {out, mid, 1}};
			for (int k = 0; k < 3; k++) {
				if (!tv) {
					snprintf(name, sizeof name, "%s.norm%d", p, k + 1);
					add_bn(l, name, widths[k][1]);
				}
				snprintf(name, sizeof name, "%s.conv%d.weight", p, k + 1);
				/* Keep the residual stream from growing over 16 blocks. */
				add_conv(l, name, widths[k][0], widths[k][1], widths[k][2],
				         k == 2 ? 0.3f : 1);
				if (tv) {
					snprintf(name, sizeof name, "%s.bn%d", p, k + 1);
					add_bn(l, name, widths[k][0]);
				}
			}
			if (b == 0) {
				snprintf(
				    name, sizeof name,
				    tv ? "%s.downsample.0.weight" : "%s.downsample.conv.weight", p);
				add_conv(l, name, out, c_in, 1, 1);
				if (tv) {
					snprintf(name, sizeof name, "%s.downsample.1", p);
					add_bn(l, name, out);
				}
			}
			c_in = out;
		}
	}
	if (!tv)
		add_bn(l, "norm", 2048);
	int64_t fc2[2] = {1000, 2048}, fc4[4] = {1000, 2048, 1, 1}, b1[1] = {1000};
	add_tensor(l, tv ? "fc.weight" : "head.fc.weight", tv ? 2 : 4, tv ? fc2 : fc4, 0, 0.05f, 0);
	add_tensor(l, tv ? "fc.bias" : "head.fc.bias", 1, b1, 0, 0.1f, 0);
	struct igs_error err = {0};
	int rc = safetensors_write(path, l->t, l->n, &err);
	ck_assert_msg(rc == 0, "write %s: %s", path, err.message);
	for (size_t i = 0; i < l->n; i++)
		free(l->data[i]);
	free(l);
}

/*
 * Path points by position (net_path_start, net_forward_path, the stem's
 * outputs interpolated) against net_forward on the interpolated pixels: the
 * same logits and input gradients up to float rounding, and no path points
 * before net_path_start.  Their gradients summed before the stem
 * (net_backward_path, net_path_gradient) against the weighted sum of the
 * points' own pixel gradients, and the per-point sums against loops over
 * those.  The workspace holds 2 images.  `logit_tol` (relative to the
 * largest logit) and `grad_tol` (relative L2): how far apart the two ways
 * to the points' logits and pixel gradients may be, rounding apart (ReLUs
 * and max-pool windows near a tie flip with it, more often with split
 * bf16's coarser rounding).
 */
static void check_path_points(const struct model *m, struct net_workspace *ws, const float *x,
                              const float *base, const char *arch, double logit_tol,
                              double grad_tol)
{
	enum { N = 2, CLASSES = 1000 };
	const size_t per_image = 224 * 224 * 3;
	const float alpha[N] = {0.3f, 1.0f};
	float *rows = malloc(N * per_image * sizeof(float));
	float *g_rows = malloc(N * per_image * sizeof(float));
	float *g_path = malloc(N * per_image * sizeof(float));
	float l_rows[N * CLASSES], l_path[N * CLASSES], d_logits[N * CLASSES] = {0};
	for (int i = 0; i < N; i++)
		for (size_t j = 0; j < per_image; j++)
			rows[i * per_image + j] = base[j] + alpha[i] * (x[j] - base[j]);
	d_logits[5] = 1;
	d_logits[CLASSES + 900] = 1;

	struct net_workspace *fresh = NULL;
	ck_assert_int_eq(net_workspace_open(&fresh, m, 1, NULL), 0);
	ck_assert_int_eq(net_forward_path(fresh, alpha, 1, l_path), IGS_ERR_BAD_OPTION);
	net_workspace_close(&fresh);

	ck_assert_int_eq(net_forward(ws, rows, N, l_rows), 0);
	ck_assert_int_eq(net_backward(ws, d_logits, g_rows), 0);
	const float weight[N] = {0.25f, -1.5f};
	double sums[2 * N];
	ck_assert_int_eq(net_backward_path(ws, d_logits, weight, sums), IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(net_path_start(ws, x, base), 0);
	ck_assert_int_eq(net_forward_path(ws, alpha, N, l_path), 0);
	ck_assert_int_eq(net_backward(ws, d_logits, g_path), 0);

	double scale = 0, worst = 0, diff = 0, norm = 0;
	for (int i = 0; i < N * CLASSES; i++) {
		scale = fmax(scale, fabs(l_rows[i]));
		worst = fmax(worst, fabs((double)l_path[i] - l_rows[i]));
	}
	ck_assert_msg(worst <= logit_tol * scale, "%s: path logits %g off (largest logit %g)", arch,
	              worst, scale);
	for (size_t j = 0; j < N * per_image; j++) {
		diff += ((double)g_path[j] - g_rows[j]) * ((double)g_path[j] - g_rows[j]);
		norm += (double)g_rows[j] * g_rows[j];
	}
	/* Rounding may flip a near-tie of the max-pool (ResNetV2 pools the
	 * stem's raw outputs), moving one window's gradient to its neighbour:
	 * about 4e-4 of relative L2 each; real differences would be O(1). */
	ck_assert_msg(norm > 0 && sqrt(diff / norm) <= grad_tol,
	              "%s: path gradients %g relative L2 from the pixels' ones", arch,
	              sqrt(diff / norm));

	/* summed before the stem: against g_path, the same points' gradients */
	float *g_sum = malloc(per_image * sizeof(float));
	ck_assert_int_eq(net_forward_path(ws, alpha, N, l_path), 0);
	ck_assert_int_eq(net_backward_path(ws, d_logits, weight, sums), 0);
	ck_assert_int_eq(net_path_gradient(ws, g_sum), 0);
	diff = norm = 0;
	for (size_t j = 0; j < per_image; j++) {
		double want =
		    weight[0] * (double)g_path[j] + weight[1] * (double)g_path[per_image + j];
		diff += (g_sum[j] - want) * (g_sum[j] - want);
		norm += want * want;
	}
	ck_assert_msg(norm > 0 && sqrt(diff / norm) <= 1e-5,
	              "%s: summed path gradient %g relative L2 from the points' sum", arch,
	              sqrt(diff / norm));
	for (int i = 0; i < N; i++) {
		const float *g = g_path + i * per_image;
		double sum = 0, along = 0, sum_abs = 0, along_abs = 0;
		for (size_t j = 0; j < per_image; j++) {
			sum += g[j];
			sum_abs += fabs(g[j]);
			along += ((double)x[j] - base[j]) * g[j];
			along_abs += fabs(((double)x[j] - base[j]) * g[j]);
		}
		ck_assert_msg(fabs(sums[2 * i] - sum) <= 1e-5 * sum_abs,
		              "%s: point %d: gradient sum %.9g, loop %.9g", arch, i, sums[2 * i],
		              sum);
		ck_assert_msg(fabs(sums[2 * i + 1] - along) <= 1e-5 * along_abs,
		              "%s: point %d: dF/dalpha %.9g, loop %.9g", arch, i, sums[2 * i + 1],
		              along);
	}
	/* the sum started over */
	ck_assert_int_eq(net_path_gradient(ws, g_sum), 0);
	for (size_t j = 0; j < per_image; j++)
		ck_assert_float_eq(g_sum[j], 0.0f);
	/* a second path on the workspace (the stem's unit response kept, and
	 * made again after the pages went back) gives the same sums */
	for (int round = 0; round < 2; round++) {
		double again[2 * N];
		if (round)
			net_workspace_release(ws);
		ck_assert_int_eq(net_path_start(ws, x, base), 0);
		ck_assert_int_eq(net_forward_path(ws, alpha, N, l_path), 0);
		ck_assert_int_eq(net_backward_path(ws, d_logits, weight, again), 0);
		ck_assert_msg(!memcmp(again, sums, sizeof again), "%s: path %d: sums differ", arch,
		              round + 2);
		ck_assert_int_eq(net_path_gradient(ws, g_sum), 0);
	}
	free(rows), free(g_rows), free(g_path), free(g_sum);
}

START_TEST(test_full_width_resnet50)
{
	const enum model_family family = _i ? FAMILY_TIMM_RESNETV2 : FAMILY_TORCHVISION;
	const char *arch = _i ? "resnetv2_50" : "resnet50";
	char path[400];
	make_tmpdir();
	snprintf(path, sizeof path, "%s/%s.safetensors", tmpdir, arch);
	rng_state = 0x9e3779b97f4a7c15ull + (uint64_t)_i;
	write_resnet50(path, family);

	struct igs_error err = {0};
	struct model *m = NULL;
	/* float32 arithmetic: the finite differences and the path checks below
	 * measure the backward's mathematics, not rounding */
	const struct model_options fp32 = {.precision = CONV_PRECISION_FP32};
	ck_assert_msg(model_open(&m, path, &fp32, &err) == 0, "%s", err.message);
	const struct model_info *info = model_get_info(m);
	ck_assert_str_eq(info->arch, arch);
	ck_assert_int_eq(info->depth, 50);
	ck_assert_int_eq(info->classes, 1000);
	ck_assert_int_eq(info->features, 2048);
	ck_assert_int_eq(info->input_size, 224);
	ck_assert_int_eq(strlen(info->sha256), 64);

	const int n = 2, classes = 1000;
	const size_t per_image = 224 * 224 * 3;
	float *pixels = malloc(n * per_image * sizeof(float));
	for (size_t i = 0; i < n * per_image; i++)
		pixels[i] = (float)(255 * rng_uniform());
	struct net_workspace *ws = NULL;
	ck_assert_int_eq(net_workspace_open(&ws, m, n, &err), 0);
	ck_assert_int_eq(net_workspace_set_threads(ws, 2, &err), 0);
	float *logits = malloc(n * classes * sizeof(float));
	float *d_logits = calloc(n * classes, sizeof(float));
	float *grad = malloc(n * per_image * sizeof(float));
	ck_assert_int_eq(net_forward(ws, pixels, n, logits), 0);
	float spread = 0;
	for (int i = 0; i < n * classes; i++) {
		ck_assert(isfinite(logits[i]));
		spread = fmaxf(spread, fabsf(logits[i] - logits[0]));
	}
	ck_assert_msg(spread > 1e-3f, "logits do not depend on the class");
	const int target[2] = {7, 993};
	d_logits[target[0]] = 1;
	d_logits[classes + target[1]] = 1;
	ck_assert_int_eq(net_backward(ws, d_logits, grad), 0);

	/*
	 * Directional derivative of image 0's target logit along a random
	 * direction v: (F(x + h v) - F(x - h v)) / 2h against <grad, v>.
	 * h of a quarter pixel keeps most ReLUs on their side.
	 */
	float *moved = malloc(per_image * sizeof(float));
	float *v = malloc(per_image * sizeof(float));
	for (size_t j = 0; j < per_image; j++)
		v[j] = rng_normal();
	const float h = 0.25f;
	float plus[1000], minus[1000];
	for (size_t j = 0; j < per_image; j++)
		moved[j] = pixels[j] + h * v[j];
	ck_assert_int_eq(net_forward(ws, moved, 1, plus), 0);
	for (size_t j = 0; j < per_image; j++)
		moved[j] = pixels[j] - h * v[j];
	ck_assert_int_eq(net_forward(ws, moved, 1, minus), 0);
	double fd = ((double)plus[target[0]] - minus[target[0]]) / (2 * h), dot = 0, norm = 0;
	for (size_t j = 0; j < per_image; j++) {
		dot += (double)grad[j] * v[j];
		norm += (double)grad[j] * grad[j];
	}
	ck_assert_msg(norm > 0, "gradient is zero");
	ck_assert_msg(fabs(fd - dot) <= 0.05 * fabs(dot) + 1e-6,
	              "%s: directional derivative %g by finite differences, %g by backward", arch,
	              fd, dot);

	check_path_points(m, ws, pixels, pixels + per_image, arch, 1e-5, 2e-3);

	free(moved);
	free(v);
	free(pixels);
	free(logits);
	free(d_logits);
	free(grad);
	net_workspace_close(&ws);
	model_close(&m);
	remove_tmpdir();
}
END_TEST

/*
 * Split bf16 against float32 on the same full-width weights: logits within
 * 1e-4 of the largest (measured ~5e-6), input gradients within 2e-2
 * relative L2 (measured 6-7e-3: ReLUs near zero that flip with the coarser
 * rounding), and the path points' checks.  Needs a CPU with AMX; the CI
 * machines have it.
 */
START_TEST(test_full_width_split_bf16)
{
	const enum model_family family = _i ? FAMILY_TIMM_RESNETV2 : FAMILY_TORCHVISION;
	const char *arch = _i ? "resnetv2_50" : "resnet50";
	struct igs_error err = {0};
	enum conv_precision resolved;
	if (conv_precision_resolve(CONV_PRECISION_BF16X3, &resolved, &err) != 0) {
		printf("test_full_width_split_bf16: not run: %s\n", err.message);
		return;
	}
	const struct model_options bf16x3 = {.precision = CONV_PRECISION_BF16X3};
	const struct model_options fp32 = {.precision = CONV_PRECISION_FP32};
	char path[400];
	make_tmpdir();
	snprintf(path, sizeof path, "%s/%s.safetensors", tmpdir, arch);
	rng_state = 0x51ed270b27a3c9e1ull + (uint64_t)_i;
	write_resnet50(path, family);
	struct model *split = NULL, *exact = NULL;
	ck_assert_msg(model_open(&split, path, &bf16x3, &err) == 0, "%s", err.message);
	ck_assert_msg(model_open(&exact, path, &fp32, &err) == 0, "%s", err.message);

	enum { N = 2, CLASSES = 1000 };
	const size_t per_image = 224 * 224 * 3;
	float *pixels = malloc(N * per_image * sizeof(float));
	for (size_t i = 0; i < N * per_image; i++)
		pixels[i] = (float)(255 * rng_uniform());
	struct net_workspace *ws_split = NULL, *ws_exact = NULL;
	ck_assert_int_eq(net_workspace_open(&ws_split, split, N, &err), 0);
	ck_assert_int_eq(net_workspace_open(&ws_exact, exact, N, &err), 0);
	ck_assert_int_eq(net_workspace_set_threads(ws_split, 2, &err), 0);
	float l_split[N * CLASSES], l_exact[N * CLASSES], d_logits[N * CLASSES] = {0};
	float *g_split = malloc(N * per_image * sizeof(float));
	float *g_exact = malloc(N * per_image * sizeof(float));
	ck_assert_int_eq(net_forward(ws_split, pixels, N, l_split), 0);
	ck_assert_int_eq(net_forward(ws_exact, pixels, N, l_exact), 0);
	double scale = 0, worst = 0;
	for (int i = 0; i < N * CLASSES; i++) {
		scale = fmax(scale, fabs(l_exact[i]));
		worst = fmax(worst, fabs((double)l_split[i] - l_exact[i]));
	}
	printf("%s: split bf16 logits within %.2g of float32's (largest %.3g)\n", arch, worst,
	       scale);
	ck_assert_msg(worst > 0, "%s: split bf16 logits equal float32's: not split?", arch);
	ck_assert_msg(worst <= 1e-4 * scale, "%s: split bf16 logits %g off (largest %g)", arch,
	              worst, scale);
	d_logits[7] = 1;
	d_logits[CLASSES + 993] = 1;
	ck_assert_int_eq(net_backward(ws_split, d_logits, g_split), 0);
	ck_assert_int_eq(net_backward(ws_exact, d_logits, g_exact), 0);
	double diff = 0, norm = 0;
	for (size_t j = 0; j < N * per_image; j++) {
		diff += ((double)g_split[j] - g_exact[j]) * ((double)g_split[j] - g_exact[j]);
		norm += (double)g_exact[j] * g_exact[j];
	}
	printf("%s: split bf16 gradients %.2g relative L2 from float32's\n", arch,
	       sqrt(diff / norm));
	ck_assert_msg(norm > 0 && sqrt(diff / norm) <= 2e-2,
	              "%s: split bf16 gradients %g relative L2 from float32's", arch,
	              sqrt(diff / norm));
	check_path_points(split, ws_split, pixels, pixels + per_image, arch, 1e-4, 1e-2);
	free(pixels);
	free(g_split);
	free(g_exact);
	net_workspace_close(&ws_split);
	net_workspace_close(&ws_exact);
	model_close(&split);
	model_close(&exact);
	remove_tmpdir();
}
END_TEST

/* ===== 3. refusals ======================================================== */

/* Copy a fixture's tensors to `path`, dropping `drop`, renaming `rename_from`
 * to `rename_to` (or, with rename_from NULL, adding an extra tensor named
 * rename_to) and flattening tensor `reshape` to [1, numel]. */
static void rewrite_fixture(const char *path, const char *drop, const char *rename_from,
                            const char *rename_to, const char *reshape)
{
	struct st_file *f = NULL;
	ck_assert_int_eq(safetensors_open(&f, fixture("tv_basic.safetensors"), NULL), 0);
	size_t count = safetensors_count(f), k = 0;
	struct st_write_tensor *out = calloc(count + 1, sizeof *out);
	float **data = calloc(count + 1, sizeof *data);
	for (size_t i = 0; i < count; i++) {
		const struct st_tensor *t = safetensors_at(f, i);
		if (t->dtype != ST_F32 || (drop && !strcmp(t->name, drop)))
			continue;
		data[k] = malloc((size_t)t->numel * sizeof(float) + 4);
		ck_assert_int_eq(safetensors_read_f32(t, data[k], NULL), 0);
		out[k] = (struct st_write_tensor){
		    .name = t->name, .ndim = t->ndim, .data = data[k], .dtype = ST_F32};
		memcpy(out[k].shape, t->shape, sizeof t->shape);
		if (rename_from && !strcmp(t->name, rename_from))
			out[k].name = rename_to;
		if (reshape && !strcmp(t->name, reshape)) {
			/* same element count, other shape: [a*b] -> [a, b] style split */
			out[k].ndim = 2;
			out[k].shape[0] = 1;
			out[k].shape[1] = t->numel;
		}
		k++;
	}
	if (!rename_from && rename_to) { /* an extra tensor the network would not use */
		out[k] = out[0];
		out[k].name = rename_to;
		data[k] = NULL;
		k++;
	}
	struct igs_error err = {0};
	ck_assert_msg(safetensors_write(path, out, k, &err) == 0, "%s", err.message);
	for (size_t i = 0; i < k; i++)
		free(data[i]);
	free(data);
	free(out);
	safetensors_close(&f);
}

static void expect_refusal(const char *path, int code, const char *needle)
{
	struct igs_error err = {0};
	struct model *m = NULL;
	int rc = model_open(&m, path, NULL, &err);
	ck_assert_int_eq(rc, code);
	ck_assert_ptr_null(m);
	ck_assert_msg(strstr(err.message, needle) != NULL, "message '%s' lacks '%s'", err.message,
	              needle);
	ck_assert_msg(strstr(err.message, path) != NULL, "message '%s' does not name the file",
	              err.message);
}

START_TEST(test_refuses_wrong_models)
{
	char path[400];
	make_tmpdir();
	snprintf(path, sizeof path, "%s/missing.safetensors", tmpdir);
	rewrite_fixture(path, "layer2.0.bn1.running_var", NULL, NULL, NULL);
	expect_refusal(path, IGS_ERR_MODEL, "missing tensor 'layer2.0.bn1.running_var'");

	snprintf(path, sizeof path, "%s/shape.safetensors", tmpdir);
	rewrite_fixture(path, NULL, NULL, NULL, "fc.weight");
	expect_refusal(path, IGS_ERR_MODEL, "'fc.weight' has shape [1, 320]");

	snprintf(path, sizeof path, "%s/extra.safetensors", tmpdir);
	rewrite_fixture(path, NULL, NULL, "layer9.0.conv1.weight", NULL);
	expect_refusal(path, IGS_ERR_MODEL, "unexpected tensor 'layer9.0.conv1.weight'");

	snprintf(path, sizeof path, "%s/family.safetensors", tmpdir);
	rewrite_fixture(path, NULL, "conv1.weight", "features.0.weight", NULL);
	expect_refusal(path, IGS_ERR_MODEL, "not a ResNet");

	snprintf(path, sizeof path, "%s/nofile.safetensors", tmpdir);
	struct model *m = NULL;
	ck_assert_int_eq(model_open(&m, path, NULL, NULL), IGS_ERR_IO);
	remove_tmpdir();
}
END_TEST

/* Run `igserve predict ARGS` (at most 6), expect exit status 1, and read
 * its stderr into text. */
static void cli_predict_fails(const char *const *args, char *text, size_t size)
{
	const char *bin = getenv("IGSERVE_BINARY");
	ck_assert_ptr_nonnull(bin);
	char log[512];
	snprintf(log, sizeof log, "%s/stderr.txt", tmpdir);
	const char *argv[9] = {bin, "predict"};
	for (int i = 0; args[i]; i++) {
		ck_assert_int_lt(i, 6);
		argv[2 + i] = args[i];
	}
	pid_t pid = fork();
	if (pid == 0) {
		if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout))
			_exit(99);
		execv(bin, (char *const *)argv);
		_exit(98);
	}
	int status = 0;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status), "igserve died of signal %d", WTERMSIG(status));
	ck_assert_int_eq(WEXITSTATUS(status), 1);
	FILE *f = fopen(log, "r");
	size_t len = fread(text, 1, size - 1, f);
	fclose(f);
	text[len] = '\0';
}

/* The CLI turns each refusal into a message naming the file and exit 1. */
static void expect_cli_failure(const char *model_path, const char *image)
{
	char text[2048];
	const char *args[] = {"--model", model_path, image, NULL};
	cli_predict_fails(args, text, sizeof text);
	ck_assert_msg(strstr(text, model_path) != NULL, "stderr '%s' does not name %s", text,
	              model_path);
}

/* An unknown --precision is refused, by name, before the model loads. */
static void expect_precision_refused(const char *image)
{
	char text[2048];
	const char *args[] = {"--precision", "fast", "--model", fixture("tv_basic.safetensors"),
	                      image,         NULL};
	cli_predict_fails(args, text, sizeof text);
	ck_assert_msg(strstr(text, "--precision") && strstr(text, "'fast'"),
	              "stderr '%s' does not name the flag and its value", text);
}

static void write_bytes(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

static void write_header_file(const char *path, const char *json, size_t data_len)
{
	size_t hlen = strlen(json);
	unsigned char *buf = calloc(1, 8 + hlen + data_len);
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
	memcpy(buf + 8, json, hlen);
	write_bytes(path, buf, 8 + hlen + data_len);
	free(buf);
}

START_TEST(test_cli_refuses_broken_files)
{
	make_tmpdir();
	char image[400], path[400];
	/* Any image will do: the model fails first. */
	snprintf(image, sizeof image, "%s/x.png", tmpdir);
	write_bytes(image, "\x89PNG", 4);

	snprintf(path, sizeof path, "%s/zero.safetensors", tmpdir);
	write_bytes(path, "", 0);
	expect_cli_failure(path, image);

	snprintf(path, sizeof path, "%s/past-end.safetensors", tmpdir);
	write_bytes(path, "\xff\xff\x00\x00\x00\x00\x00\x00{}", 10);
	expect_cli_failure(path, image);

	snprintf(path, sizeof path, "%s/json.safetensors", tmpdir);
	write_header_file(path, "{\"a\": [", 0);
	expect_cli_failure(path, image);

	snprintf(path, sizeof path, "%s/overlap.safetensors", tmpdir);
	write_header_file(path,
	                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
	                  12);
	expect_cli_failure(path, image);

	snprintf(path, sizeof path, "%s/range.safetensors", tmpdir);
	write_header_file(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
	                  8);
	expect_cli_failure(path, image);

	snprintf(path, sizeof path, "%s/dtype.safetensors", tmpdir);
	write_header_file(path, "{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}",
	                  8);
	expect_cli_failure(path, image);

	snprintf(path, sizeof path, "%s/missing.safetensors", tmpdir);
	rewrite_fixture(path, "fc.bias", NULL, NULL, NULL);
	expect_cli_failure(path, image);

	snprintf(path, sizeof path, "%s/shape.safetensors", tmpdir);
	rewrite_fixture(path, NULL, NULL, NULL, "layer3.0.conv1.weight");
	expect_cli_failure(path, image);

	snprintf(path, sizeof path, "%s/family.safetensors", tmpdir);
	rewrite_fixture(path, NULL, "fc.weight", "classifier.weight", NULL);
	expect_cli_failure(path, image);

	expect_precision_refused(image);
	remove_tmpdir();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("model");
	TCase *tc = tcase_create("pytorch");
	tcase_add_loop_test(tc, test_matches_pytorch, 0, 4);
	tcase_add_loop_test(tc, test_matches_pytorch_threads, 0, 4);
	tcase_add_test(tc, test_threads_share_a_model);
	suite_add_tcase(s, tc);
	TCase *refuse = tcase_create("refusals");
	tcase_add_test(refuse, test_refuses_wrong_models);
	tcase_add_test(refuse, test_cli_refuses_broken_files);
	suite_add_tcase(s, refuse);
	TCase *full = tcase_create("full-width");
	tcase_set_timeout(full, 600);
	tcase_add_loop_test(full, test_full_width_resnet50, 0, 2);
	tcase_add_loop_test(full, test_full_width_split_bf16, 0, 2);
	suite_add_tcase(s, full);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
