/*
 * test_layers.c - the kernels of layers.c (NHWC) against independent
 * references (convolutions are in test_conv.c):
 *   - every forward against a naive direct loop (double accumulation);
 *   - every backward against a naive transposed loop, against central
 *     finite differences of the forward (ReLU kinks and max-pool ties that
 *     the step crosses are skipped, as ggml's test-backend-ops does), and
 *     against the adjoint identity <Ax, y> = <x, A^T y> where it is linear;
 *   - the same numbers on an OpenMP team of 3 as on one thread.
 * Buffers are malloc'ed at their exact size so AddressSanitizer sees any
 * overrun of a workspace.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "conv.h"
#include "layers.h"
#include "test_random.h"

/* ------------------------------------------------------------- helpers */

/* |got - ref| <= tol * (1 + |ref|) everywhere; the message names the first
 * element that is off. */
static void assert_close(const float *got, const double *ref, size_t count, double tol,
                         const char *what)
{
	for (size_t i = 0; i < count; i++) {
		double err = fabs((double)got[i] - ref[i]);
		ck_assert_msg(err <= tol * (1.0 + fabs(ref[i])),
		              "%s: element %zu is %.9g, expected %.9g", what, i, (double)got[i],
		              ref[i]);
	}
}

/* Central difference check.  fd and an hold `count` entries; entries with
 * skip[i] set are ignored, but at least `min_fraction` must be checked so
 * that skipping cannot turn a test green. */
static void assert_fd(const double *fd, const float *an, const int *skip, size_t count, double tol,
                      double min_fraction, const char *what)
{
	size_t checked = 0;
	for (size_t i = 0; i < count; i++) {
		if (skip[i])
			continue;
		checked++;
		double err = fabs(fd[i] - (double)an[i]);
		ck_assert_msg(err <= tol * (1.0 + fabs(fd[i])),
		              "%s: d/dx[%zu] analytic %.7g, finite difference %.7g", what, i,
		              (double)an[i], fd[i]);
	}
	ck_assert_msg((double)checked >= min_fraction * (double)count,
	              "%s: only %zu of %zu gradient entries checked", what, checked, count);
}

START_TEST(test_shapes_finish)
{
	/* ResNet's stem, a strided 3x3 on an odd width, and the stem max pool */
	struct conv_shape a = {.n = 2,
	                       .c_in = 3,
	                       .h_in = 224,
	                       .w_in = 224,
	                       .c_out = 64,
	                       .k = 7,
	                       .stride = 2,
	                       .pad = 3};
	conv_shape_finish(&a);
	ck_assert_int_eq(a.h_out, 112);
	ck_assert_int_eq(a.w_out, 112);

	struct conv_shape b = {.n = 1,
	                       .c_in = 128,
	                       .h_in = 56,
	                       .w_in = 57,
	                       .c_out = 128,
	                       .k = 3,
	                       .stride = 2,
	                       .pad = 1};
	conv_shape_finish(&b);
	ck_assert_int_eq(b.h_out, 28);
	ck_assert_int_eq(b.w_out, 29);

	struct maxpool_shape p = {
	    .c = 64, .n = 1, .h_in = 112, .w_in = 111, .k = 3, .stride = 2, .pad = 1};
	maxpool_shape_finish(&p);
	ck_assert_int_eq(p.h_out, 56);
	ck_assert_int_eq(p.w_out, 56);
}
END_TEST

/* ------------------------------------------------------------ elementwise */

/* The bit masks against the formula: counts off the byte grid, NaN and
 * signed zeros (not positive), 1 to 3 threads. */
START_TEST(test_relu_bits)
{
	const size_t counts[] = {1, 7, 8, 9, 1003, 4096};
	for (size_t t = 0; t < sizeof counts / sizeof counts[0]; t++)
		for (int threads = 1; threads <= 3; threads++) {
			const size_t count = counts[t];
			omp_set_num_threads(threads);
			float *x = frandom(count, 1.0f), *d = frandom(count, 1.0f);
			float *d0 = falloc(count);
			uint8_t *bits = malloc((count + 7) / 8);
			x[0] = 0.0f;
			if (count > 2) {
				x[1] = -0.0f;
				x[2] = NAN;
			}
			memcpy(d0, d, count * sizeof(float));
			relu_mask_bits(bits, x, count);
			for (size_t i = 0; i < count; i++)
				ck_assert_msg((bits[i / 8] >> (i % 8) & 1) == (x[i] > 0.0f),
				              "count %zu, %d threads: bit %zu", count, threads, i);
			relu_backward_bits(d, bits, count);
			for (size_t i = 0; i < count; i++)
				ck_assert_msg(d[i] == (x[i] > 0.0f ? d0[i] : 0.0f),
				              "count %zu, %d threads: d[%zu] = %g", count, threads,
				              i, (double)d[i]);
			/* and as bytes, for oneDNN's multiplication post-op */
			uint8_t *bytes = malloc(count + 1);
			bytes[count] = 0xee;
			relu_mask_bits_expand(bytes, bits, count);
			for (size_t i = 0; i < count; i++)
				ck_assert_msg(bytes[i] == (x[i] > 0.0f),
				              "count %zu: byte %zu is %d", count, i, bytes[i]);
			ck_assert_uint_eq(bytes[count], 0xee);
			free(x), free(d), free(d0), free(bits), free(bytes);
		}
	omp_set_num_threads(1);
}
END_TEST

START_TEST(test_affine_relu)
{
	const int channels = 5;
	const size_t pixels = 37; /* N*H*W, deliberately odd */
	const size_t count = channels * pixels;
	float *in = frandom(count, 2.0f), *scale = frandom(channels, 1.5f);
	float *shift = frandom(channels, 0.5f), *out = falloc(count), *d_out = frandom(count, 1.0f);
	float *d_in = falloc(count), *prior = frandom(count, 1.0f), *inplace = falloc(count);
	double *ref = dalloc(count);
	uint8_t *mask = malloc(count);
	const struct act_shape as = {.n = 1, .c = channels, .hw = (int)pixels};

	affine_relu_forward(out, mask, in, scale, shift, &as);
	for (size_t i = 0; i < pixels; i++)
		for (int c = 0; c < channels; c++) {
			double v = (double)in[i * channels + c] * scale[c] + shift[c];
			ref[i * channels + c] = v > 0.0 ? v : 0.0;
		}
	assert_close(out, ref, count, 1e-6, "affine_relu_forward");
	for (size_t i = 0; i < count; i++)
		ck_assert_int_eq(mask[i], out[i] > 0.0f);

	/* in place, as a model may run it */
	memcpy(inplace, in, count * sizeof(float));
	affine_relu_forward(inplace, NULL, inplace, scale, shift, &as);
	ck_assert_mem_eq(inplace, out, count * sizeof(float));

	/* backward against the formula, writing and accumulating */
	affine_relu_backward(d_in, d_out, mask, scale, &as, 0);
	for (size_t i = 0; i < pixels; i++)
		for (int c = 0; c < channels; c++)
			ref[i * channels + c] = out[i * channels + c] > 0.0f
			                            ? (double)d_out[i * channels + c] * scale[c]
			                            : 0.0;
	assert_close(d_in, ref, count, 1e-6, "affine_relu_backward");
	memcpy(d_in, prior, count * sizeof(float));
	affine_relu_backward(d_in, d_out, mask, scale, &as, 1);
	for (size_t i = 0; i < count; i++)
		ref[i] += prior[i];
	assert_close(d_in, ref, count, 1e-6, "affine_relu_backward accumulate");

	/* and against finite differences, away from kinks */
	affine_relu_backward(d_in, d_out, mask, scale, &as, 0);
	const float eps = 1e-2f;
	double *fd = dalloc(count);
	int *skip = calloc(count, sizeof(int));
	for (size_t i = 0; i < count; i++) {
		int c = (int)(i % channels);
		double pre_p = (double)(in[i] + eps) * scale[c] + shift[c];
		double pre_m = (double)(in[i] - eps) * scale[c] + shift[c];
		skip[i] = (pre_p > 0.0) != (pre_m > 0.0);
		float x0 = in[i];
		in[i] = x0 + eps;
		affine_relu_forward(out, NULL, in, scale, shift, &as);
		double lp = dot(out, d_out, count);
		in[i] = x0 - eps;
		affine_relu_forward(out, NULL, in, scale, shift, &as);
		double lm = dot(out, d_out, count);
		in[i] = x0;
		fd[i] = (lp - lm) / (2.0 * eps);
	}
	assert_fd(fd, d_in, skip, count, 1e-3, 0.8, "affine_relu finite differences");
	free(in), free(scale), free(shift), free(out), free(d_out), free(d_in), free(prior);
	free(inplace), free(ref), free(fd), free(skip), free(mask);
}
END_TEST

/* ---------------------------------------------------------------- pooling */

#define POOL(c_, n_, h_, w_, k_, s_, p_)                                                           \
	{                                                                                          \
		.c = c_, .n = n_, .h_in = h_, .w_in = w_, .k = k_, .stride = s_, .pad = p_         \
	}
static const struct maxpool_shape pool_cases[] = {
    /*   c, n, h_in, w_in, k, stride, pad */
    POOL(3, 2, 9, 12, 3, 2, 1), /* ResNet's stem pool */
    POOL(2, 1, 8, 6, 2, 2, 0),   POOL(4, 3, 5, 7, 3, 1, 1),
    POOL(1, 2, 2, 3, 3, 2, 1),   /* windows mostly padding */
    POOL(32, 2, 9, 12, 3, 2, 1), /* two channel blocks (blocked output) */
    /* TensorFlow 'SAME' (the official ResNet v2 stem pool): even sides pad
     * 0 before and 1 after, odd sides 1 and 1 */
    {.c = 3, .n = 2, .h_in = 10, .w_in = 9, .k = 3, .stride = 2, .same = true},
    {.c = 32, .n = 1, .h_in = 12, .w_in = 12, .k = 3, .stride = 2, .same = true},
    {.c = 2, .n = 1, .h_in = 7, .w_in = 8, .k = 2, .stride = 2, .same = true},
};
#define N_POOL_CASES (sizeof pool_cases / sizeof pool_cases[0])

static size_t pool_in_count(const struct maxpool_shape *s)
{
	return (size_t)s->c * s->n * s->h_in * s->w_in;
}

static size_t pool_out_count(const struct maxpool_shape *s)
{
	return (size_t)s->c * s->n * s->h_out * s->w_out;
}

/* Direct max pool over NHWC: padding is -inf, strict > so the first
 * maximum in row-major window order wins.  gap (or NULL) receives each
 * window's margin between its maximum and the runner-up. */
static void naive_maxpool(double *out, int32_t *argmax, double *gap, const float *in,
                          const struct maxpool_shape *s)
{
	const int C = s->c;
	int py = s->pad, px = s->pad;
	if (s->same) { /* TensorFlow's rule, as tf.nn.max_pool documents it */
		const int oh = (int)ceil((double)s->h_in / s->stride);
		const int ow = (int)ceil((double)s->w_in / s->stride);
		ck_assert_int_eq(s->h_out, oh);
		ck_assert_int_eq(s->w_out, ow);
		py = (oh - 1) * s->stride + s->k - s->h_in;
		px = (ow - 1) * s->stride + s->k - s->w_in;
		py = py > 0 ? py / 2 : 0;
		px = px > 0 ? px / 2 : 0;
	}
	for (int b = 0; b < s->n; b++)
		for (int oy = 0; oy < s->h_out; oy++)
			for (int ox = 0; ox < s->w_out; ox++)
				for (int c = 0; c < C; c++) {
					double best = -INFINITY, second = -INFINITY;
					int32_t best_i = -1;
					for (int ky = 0; ky < s->k; ky++)
						for (int kx = 0; kx < s->k; kx++) {
							int iy = oy * s->stride - py + ky;
							int ix = ox * s->stride - px + kx;
							double v = -INFINITY;
							int32_t idx = -1;
							if (iy >= 0 && iy < s->h_in && ix >= 0 &&
							    ix < s->w_in) {
								idx =
								    ((b * s->h_in + iy) * s->w_in +
								     ix) *
								        C +
								    c;
								v = in[idx];
							}
							if (v > best) {
								second = best;
								best = v;
								best_i = idx;
							} else if (idx >= 0 && v > second) {
								second = v;
							}
						}
					size_t o =
					    (((size_t)b * s->h_out + oy) * s->w_out + ox) * C + c;
					out[o] = best;
					argmax[o] = best_i;
					if (gap)
						gap[o] = best - second;
				}
}

static void check_maxpool_forward(const float *in, const struct maxpool_shape *s, const char *what)
{
	size_t n_out = pool_out_count(s);
	float *out = falloc(n_out);
	int32_t *am = malloc(n_out * sizeof(int32_t)), *ref_am = malloc(n_out * sizeof(int32_t));
	double *ref = dalloc(n_out);
	naive_maxpool(ref, ref_am, NULL, in, s);
	maxpool_forward(out, am, in, s);
	for (size_t i = 0; i < n_out; i++) {
		ck_assert_msg(out[i] == ref[i], "%s: out[%zu] = %g, expected %g", what, i,
		              (double)out[i], ref[i]);
		ck_assert_msg(am[i] == ref_am[i], "%s: argmax[%zu] = %d, expected %d", what, i,
		              (int)am[i], (int)ref_am[i]);
		ck_assert_float_eq(in[am[i]], out[i]);
	}
	free(out), free(am), free(ref_am), free(ref);
}

START_TEST(test_maxpool_forward)
{
	for (size_t t = 0; t < N_POOL_CASES; t++) {
		struct maxpool_shape s = pool_cases[t];
		maxpool_shape_finish(&s);
		size_t n_in = pool_in_count(&s);
		float *in = falloc(n_in);
		char what[80];

		for (size_t i = 0; i < n_in; i++)
			in[i] = frand();
		snprintf(what, sizeof what, "maxpool case %zu random", t);
		check_maxpool_forward(in, &s, what);

		/* many ties: the first maximum must win */
		for (size_t i = 0; i < n_in; i++)
			in[i] = floorf(frand() * 1.5f);
		snprintf(what, sizeof what, "maxpool case %zu ties", t);
		check_maxpool_forward(in, &s, what);

		/* all negative: a zero padding would win, -inf padding must not */
		for (size_t i = 0; i < n_in; i++)
			in[i] = -1.0f - fabsf(frand());
		snprintf(what, sizeof what, "maxpool case %zu negative", t);
		check_maxpool_forward(in, &s, what);

		/* a NaN propagates (as in PyTorch) instead of hiding */
		int32_t *am = malloc(pool_out_count(&s) * sizeof(int32_t));
		float *out = falloc(pool_out_count(&s));
		in[n_in - 1] = NAN;
		maxpool_forward(out, am, in, &s);
		size_t last = pool_out_count(&s) - 1; /* its window holds the last pixel */
		ck_assert_msg(isnan(out[last]), "maxpool case %zu: NaN did not propagate", t);
		ck_assert_int_eq(am[last], (int32_t)(n_in - 1));
		free(in), free(am), free(out);
	}
}
END_TEST

START_TEST(test_maxpool_backward)
{
	const float eps = 1e-2f;
	for (size_t t = 0; t < N_POOL_CASES; t++) {
		struct maxpool_shape s = pool_cases[t];
		maxpool_shape_finish(&s);
		size_t n_in = pool_in_count(&s), n_out = pool_out_count(&s);
		float *in = frandom(n_in, 1.0f), *out = falloc(n_out),
		      *d_out = frandom(n_out, 1.0f);
		float *d_in = falloc(n_in);
		int32_t *am = malloc(n_out * sizeof(int32_t)),
		        *am2 = malloc(n_out * sizeof(int32_t));
		double *ref = dalloc(n_in), *ref_out = dalloc(n_out), *gap = dalloc(n_out);

		/* A step of eps changes no window's winner when its margin
		 * exceeds 2 eps; near-tied windows get no gradient, so finite
		 * differences need not skip the inputs they read. */
		size_t zeroed = n_out;
		for (int draw = 0; draw < 100 && zeroed == n_out; draw++) {
			/* tiny cases may need another draw to leave a margin */
			for (size_t i = 0; i < n_in; i++)
				in[i] = frand();
			naive_maxpool(ref_out, am2, gap, in, &s);
			zeroed = 0;
			for (size_t o = 0; o < n_out; o++)
				zeroed += gap[o] <= 2.5 * eps;
		}
		ck_assert_uint_lt(zeroed, n_out); /* some gradient is left to check */
		for (size_t o = 0; o < n_out; o++)
			if (gap[o] <= 2.5 * eps)
				d_out[o] = 0.0f;

		maxpool_forward(out, am, in, &s);
		for (size_t i = 0; i < n_in; i++)
			d_in[i] = NAN; /* overwritten, never accumulated into */
		maxpool_backward(d_in, d_out, am, &s);

		/* transposed loop: each output gradient goes to the maximum the
		 * naive pool found */
		for (size_t o = 0; o < n_out; o++)
			ref[am2[o]] += d_out[o];
		assert_close(d_in, ref, n_in, 1e-6, "maxpool_backward scatter");

		/* finite differences at every input */
		double *fd = dalloc(n_in);
		int *skip = calloc(n_in, sizeof(int));
		for (size_t i = 0; i < n_in; i++) {
			float x0 = in[i];
			in[i] = x0 + eps;
			maxpool_forward(out, am2, in, &s);
			double lp = dot(out, d_out, n_out);
			in[i] = x0 - eps;
			maxpool_forward(out, am2, in, &s);
			double lm = dot(out, d_out, n_out);
			in[i] = x0;
			fd[i] = (lp - lm) / (2.0 * eps);
		}
		char what[80];
		snprintf(what, sizeof what, "maxpool case %zu finite differences", t);
		assert_fd(fd, d_in, skip, n_in, 1e-3, 1.0, what);
		free(in), free(out), free(d_out), free(d_in), free(am), free(am2), free(ref);
		free(ref_out), free(gap), free(fd), free(skip);
	}
}
END_TEST

START_TEST(test_avgpool)
{
	const int c = 7, n = 3, hw = 49;
	const size_t n_in = (size_t)c * n * hw, n_out = (size_t)n * c;
	float *in = frandom(n_in, 1.0f), *out = falloc(n_out), *d_out = frandom(n_out, 1.0f);
	float *d_in = falloc(n_in);
	double *ref = dalloc(n_in);

	const struct act_shape as = {.n = n, .c = c, .hw = hw};
	avgpool_forward(out, in, &as);
	for (int ci = 0; ci < c; ci++)
		for (int b = 0; b < n; b++) {
			double sum = 0.0;
			for (int i = 0; i < hw; i++)
				sum += in[((size_t)b * hw + i) * c + ci];
			ref[(size_t)b * c + ci] = sum / hw;
		}
	assert_close(out, ref, n_out, 1e-6, "avgpool_forward");

	for (size_t i = 0; i < n_in; i++)
		d_in[i] = NAN;
	avgpool_backward(d_in, d_out, &as);
	for (int ci = 0; ci < c; ci++)
		for (int b = 0; b < n; b++)
			for (int i = 0; i < hw; i++)
				ref[((size_t)b * hw + i) * c + ci] =
				    (double)d_out[(size_t)b * c + ci] / hw;
	assert_close(d_in, ref, n_in, 1e-6, "avgpool_backward");

	/* adjoint: <avg(x), y> = <x, avg^T(y)> */
	double lhs = dot(out, d_out, n_out), rhs = dot(in, d_in, n_in);
	ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * (1.0 + fabs(lhs)), "avgpool adjoint %g vs %g", lhs,
	              rhs);
	free(in), free(out), free(d_out), free(d_in), free(ref);
}
END_TEST

/* ---------------------------------------------------------- blocked layout */

/* Blocked kernels compute what the NHWC ones (checked above against the
 * formulas) compute, value for value, only elsewhere in memory; 3 threads
 * split 32 channels across block boundaries. */
START_TEST(test_blocked_affine_and_avgpool)
{
	enum { N = 2, C = 32, HW = 13, B = 16 };
	const size_t count = (size_t)N * C * HW;
	omp_set_num_threads(3);
	float *in = frandom(count, 2.0f), *scale = frandom(C, 1.5f), *shift = frandom(C, 0.5f);
	float *d_out = frandom(count, 1.0f), *pooled_g = frandom((size_t)N * C, 1.0f);
	float *out = falloc(count), *d_in = falloc(count), *in_b = falloc(count);
	float *out_b = falloc(count), *d_out_b = falloc(count), *d_in_b = falloc(count);
	float *conv = falloc(count), *pooled = falloc((size_t)N * C),
	      *pooled_b = falloc((size_t)N * C);
	uint8_t *mask = malloc(count), *mask_b = malloc(count);
	const struct act_shape nhwc = {.n = N, .c = C, .hw = HW},
	                       blk = {.n = N, .c = C, .hw = HW, .block = B};
	to_blocked(in_b, in, N, C, HW, B);
	to_blocked(d_out_b, d_out, N, C, HW, B);

	affine_relu_forward(out, mask, in, scale, shift, &nhwc);
	affine_relu_forward(out_b, mask_b, in_b, scale, shift, &blk);
	to_blocked(conv, out, N, C, HW, B);
	ck_assert_mem_eq(out_b, conv, count * sizeof(float));
	for (int i = 0; i < N; i++)
		for (int p = 0; p < HW; p++)
			for (int ch = 0; ch < C; ch++)
				ck_assert_int_eq(mask_b[blocked_index(C, HW, B, i, p, ch)],
				                 mask[((size_t)i * HW + p) * C + ch]);

	affine_relu_backward(d_in, d_out, mask, scale, &nhwc, 0);
	affine_relu_backward(d_in_b, d_out_b, mask_b, scale, &blk, 0);
	to_blocked(conv, d_in, N, C, HW, B);
	ck_assert_mem_eq(d_in_b, conv, count * sizeof(float));

	avgpool_forward(pooled, in, &nhwc);
	avgpool_forward(pooled_b, in_b, &blk);
	ck_assert_mem_eq(pooled_b, pooled, (size_t)N * C * sizeof(float));
	avgpool_backward(d_in, pooled_g, &nhwc);
	avgpool_backward(d_in_b, pooled_g, &blk);
	to_blocked(conv, d_in, N, C, HW, B);
	ck_assert_mem_eq(d_in_b, conv, count * sizeof(float));

	free(in), free(scale), free(shift), free(d_out), free(pooled_g), free(out), free(d_in);
	free(in_b), free(out_b), free(d_out_b), free(d_in_b), free(conv), free(pooled);
	free(pooled_b), free(mask), free(mask_b);
	omp_set_num_threads(1);
}
END_TEST

/* The max-pool reads NHWC and may write blocked: the same maxima and
 * argmax values, and a backward that scatters the same gradient. */
START_TEST(test_blocked_maxpool)
{
	enum { B = 16 };
	for (int threads = 1; threads <= 3; threads += 2) {
		omp_set_num_threads(threads);
		for (size_t t = 0; t < N_POOL_CASES; t++) {
			struct maxpool_shape s = pool_cases[t];
			if (s.c % B)
				continue;
			maxpool_shape_finish(&s);
			struct maxpool_shape sb = s;
			sb.out_block = B;
			const int hw = s.h_out * s.w_out;
			size_t n_in = pool_in_count(&s), n_out = pool_out_count(&s);
			float *in = frandom(n_in, 1.0f), *out = falloc(n_out),
			      *out_b = falloc(n_out);
			float *conv = falloc(n_out), *d_out = frandom(n_out, 1.0f);
			float *d_out_b = falloc(n_out), *d_in = falloc(n_in),
			      *d_in_b = falloc(n_in);
			int32_t *am = malloc(n_out * sizeof(int32_t)),
			        *am_b = malloc(n_out * sizeof(int32_t));
			maxpool_forward(out, am, in, &s);
			maxpool_forward(out_b, am_b, in, &sb);
			to_blocked(conv, out, s.n, s.c, hw, B);
			ck_assert_mem_eq(out_b, conv, n_out * sizeof(float));
			for (int i = 0; i < s.n; i++)
				for (int p = 0; p < hw; p++)
					for (int ch = 0; ch < s.c; ch++)
						ck_assert_int_eq(
						    am_b[blocked_index(s.c, hw, B, i, p, ch)],
						    am[((size_t)i * hw + p) * s.c + ch]);
			to_blocked(d_out_b, d_out, s.n, s.c, hw, B);
			maxpool_backward(d_in, d_out, am, &s);
			maxpool_backward(d_in_b, d_out_b, am_b, &sb);
			ck_assert_mem_eq(d_in_b, d_in, n_in * sizeof(float));
			free(in), free(out), free(out_b), free(conv), free(d_out), free(d_out_b);
			free(d_in), free(d_in_b), free(am), free(am_b);
		}
	}
	omp_set_num_threads(1);
}
END_TEST

/* ----------------------------------------------------------------- linear */

/* Each thread takes a slice of the classes or features; one image goes
 * through sgemv, several through sgemm. */
static void check_linear(int n, int threads)
{
	const int c = 37, classes = 11;
	omp_set_num_threads(threads);
	float *in = frandom((size_t)n * c, 1.0f), *w = frandom((size_t)classes * c, 0.3f);
	float *bias = frandom(classes, 0.5f), *out = falloc((size_t)n * classes);
	float *d_out = frandom((size_t)n * classes, 1.0f), *d_in = falloc((size_t)n * c);
	double *ref = dalloc((size_t)n * (c > classes ? c : classes));
	char what[96];

	for (int with_bias = 0; with_bias < 2; with_bias++) {
		for (int i = 0; i < n * classes; i++)
			out[i] = NAN;
		linear_forward(out, in, w, with_bias ? bias : NULL, n, c, classes);
		for (int b = 0; b < n; b++)
			for (int j = 0; j < classes; j++) {
				double acc = with_bias ? bias[j] : 0.0;
				for (int i = 0; i < c; i++)
					acc += (double)in[b * c + i] * w[j * c + i];
				ref[b * classes + j] = acc;
			}
		snprintf(what, sizeof what, "linear_forward n=%d, %d threads%s", n, threads,
		         with_bias ? "" : ", no bias");
		assert_close(out, ref, (size_t)n * classes, 1e-5, what);
	}

	/* dense d_out, then one or two classes per image (a logit's gradient) */
	float *d_sparse = falloc((size_t)n * classes);
	for (int i = 0; i < n * classes; i++)
		d_sparse[i] = 0.0f;
	for (int b = 0; b < n; b++) {
		d_sparse[b * classes + (3 * b) % classes] = 1.0f;
		if (b % 2)
			d_sparse[b * classes + classes - 1] = -0.5f;
	}
	for (int sparse = 0; sparse < 2; sparse++) {
		const float *g = sparse ? d_sparse : d_out;
		for (int i = 0; i < n * c; i++)
			d_in[i] = NAN;
		linear_backward(d_in, g, w, n, c, classes);
		for (int b = 0; b < n; b++)
			for (int i = 0; i < c; i++) {
				double acc = 0.0;
				for (int j = 0; j < classes; j++)
					acc += (double)g[b * classes + j] * w[j * c + i];
				ref[b * c + i] = acc;
			}
		snprintf(what, sizeof what, "linear_backward n=%d, %d threads%s", n, threads,
		         sparse ? ", one-hot rows" : "");
		assert_close(d_in, ref, (size_t)n * c, 1e-5, what);
	}
	free(d_sparse);
	linear_backward(d_in, d_out, w, n, c, classes);

	/* adjoint of the linear part */
	linear_forward(out, in, w, NULL, n, c, classes);
	double lhs = dot(out, d_out, (size_t)n * classes), rhs = dot(in, d_in, (size_t)n * c);
	ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * (1.0 + fabs(lhs)), "linear adjoint %g vs %g", lhs,
	              rhs);
	free(in), free(w), free(bias), free(out), free(d_out), free(d_in), free(ref);
	omp_set_num_threads(1);
}

START_TEST(test_linear)
{
	for (int threads = 1; threads <= 3; threads += 2) {
		check_linear(1, threads);
		check_linear(3, threads);
		check_linear(6, threads); /* more rows than one pass over the weights takes */
	}
}
END_TEST

/* ---------------------------------------------------------- preprocessing */

START_TEST(test_normalize)
{
	const int n = 2, h = 3, w = 5;
	const size_t count = (size_t)n * h * w * 3;
	const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
	float *pix = falloc(count), *out = falloc(count), *d_out = frandom(count, 1.0f);
	float *d_pix = falloc(count);
	double *ref = dalloc(count);
	for (size_t i = 0; i < count; i++)
		pix[i] = floorf((frand() + 1.0f) * 127.999f); /* 0..255 */
	pix[0] = 0.0f, pix[1] = 255.0f;

	normalize_forward(out, pix, n, h, w, mean, std);
	for (int b = 0; b < n; b++)
		for (int y = 0; y < h; y++)
			for (int x = 0; x < w; x++)
				for (int c = 0; c < 3; c++) {
					double p = pix[((b * h + y) * w + x) * 3 + c];
					ref[((b * h + y) * w + x) * 3 + c] =
					    (p / 255.0 - mean[c]) / std[c];
				}
	assert_close(out, ref, count, 1e-6, "normalize_forward");

	normalize_backward(d_pix, d_out, n, h, w, std);
	for (int b = 0; b < n; b++)
		for (int y = 0; y < h; y++)
			for (int x = 0; x < w; x++)
				for (int c = 0; c < 3; c++)
					ref[((b * h + y) * w + x) * 3 + c] =
					    d_out[((b * h + y) * w + x) * 3 + c] / (255.0 * std[c]);
	assert_close(d_pix, ref, count, 1e-6, "normalize_backward");

	/* finite differences in pixel units (the map is affine, so exact up
	 * to rounding) */
	const float eps = 1.0f;
	double *fd = dalloc(count);
	int *skip = calloc(count, sizeof(int));
	for (size_t i = 0; i < count; i++) {
		float p0 = pix[i];
		pix[i] = p0 + eps;
		normalize_forward(out, pix, n, h, w, mean, std);
		double lp = dot(out, d_out, count);
		pix[i] = p0 - eps;
		normalize_forward(out, pix, n, h, w, mean, std);
		double lm = dot(out, d_out, count);
		pix[i] = p0;
		fd[i] = (lp - lm) / (2.0 * eps);
	}
	assert_fd(fd, d_pix, skip, count, 1e-3, 1.0, "normalize finite differences");
	free(pix), free(out), free(d_out), free(d_pix), free(ref), free(fd), free(skip);
}
END_TEST

/* ---- an OpenMP team: the same numbers, bit for bit, as one thread ---- */

/* Every kernel over one set of inputs; outputs laid end to end in `out`. */
static void run_all_kernels(float *out, int threads)
{
	omp_set_num_threads(threads);
	reseed();
	struct maxpool_shape ps = {
	    .c = 67, .n = 2, .h_in = 23, .w_in = 21, .k = 3, .stride = 2, .pad = 1};
	maxpool_shape_finish(&ps);
	const size_t n_in = pool_in_count(&ps), n_out = pool_out_count(&ps);
	const int hw = ps.h_in * ps.w_in;
	float *x = frandom(n_in, 1.0f), *g = frandom(n_out, 1.0f), *scale = frandom(67, 1.0f);
	float *shift = frandom(67, 0.5f), *pooled = falloc(2 * 67);
	int32_t *am = malloc(n_out * sizeof(int32_t));
	float *o = out;

	maxpool_forward(o, am, x, &ps);
	o += n_out;
	maxpool_backward(o, g, am, &ps);
	o += n_in;
	const struct act_shape as = {.n = 2, .c = 67, .hw = hw};
	avgpool_forward(pooled, x, &as);
	memcpy(o, pooled, 2 * 67 * sizeof(float));
	o += 2 * 67;
	avgpool_backward(o, pooled, &as);
	o += n_in;
	uint8_t *mask = malloc(n_in);
	affine_relu_forward(o, mask, x, scale, shift, &as);
	affine_relu_backward(o + n_in, x, mask, scale, &as, 0);
	o += 2 * n_in;
	memcpy(o, x, n_in * sizeof(float));
	relu_mask_bits(mask, g, n_out);
	relu_backward_bits(o, mask, n_out);
	tensor_add(o, x, n_in);
	tensor_add_masked_bits(o, g, mask, n_out);
	relu_mask_bits_expand(mask + (n_out + 7) / 8, mask, n_out);
	for (size_t i = 0; i < n_out; i++)
		o[i] += mask[(n_out + 7) / 8 + i];
	o += n_in;
	free(mask);
	const float mean[3] = {0.5f, 0.4f, 0.3f}, std[3] = {0.2f, 0.25f, 0.3f};
	normalize_forward(o, x, 2, 7, 11, mean, std);
	normalize_backward(o + 2 * 7 * 11 * 3, x, 2, 7, 11, std);
	free(x), free(g), free(scale), free(shift), free(pooled), free(am);
	omp_set_num_threads(1);
}

START_TEST(test_threads_match_one_thread)
{
	struct maxpool_shape ps = {
	    .c = 67, .n = 2, .h_in = 23, .w_in = 21, .k = 3, .stride = 2, .pad = 1};
	maxpool_shape_finish(&ps);
	const size_t total =
	    pool_out_count(&ps) + 5 * pool_in_count(&ps) + 2 * 67 + 2 * (2 * 7 * 11 * 3);
	float *one = falloc(total), *three = falloc(total);
	run_all_kernels(one, 1);
	run_all_kernels(three, 3);
	for (size_t i = 0; i < total; i++)
		ck_assert_msg(memcmp(&one[i], &three[i], sizeof(float)) == 0,
		              "element %zu: %.9g on one thread, %.9g on three", i, (double)one[i],
		              (double)three[i]);
	free(one), free(three);
}
END_TEST

START_TEST(test_tensor_add)
{
	enum { COUNT = 1003 };
	float *a = frandom(COUNT, 1.0f), *b = frandom(COUNT, 1.0f);
	double *ref = dalloc(COUNT);
	for (int i = 0; i < COUNT; i++)
		ref[i] = (double)a[i] + b[i];
	tensor_add(a, b, COUNT);
	assert_close(a, ref, COUNT, 1e-7, "tensor_add");
	free(a), free(b), free(ref);
}
END_TEST

/* The add then the ReLU's backward, in one pass: exactly the two apart,
 * zeros (not -0 or NaN) where the mask is shut, on 3 threads, a count off
 * the byte grid. */
START_TEST(test_tensor_add_masked_bits)
{
	enum { COUNT = 1003 };
	omp_set_num_threads(3);
	float *a = frandom(COUNT, 1.0f), *b = frandom(COUNT, 1.0f), *x = frandom(COUNT, 1.0f);
	float *two = falloc(COUNT);
	uint8_t *bits = malloc((COUNT + 7) / 8);
	a[7] = -0.0f, b[7] = -0.0f, x[7] = 1.0f; /* -0 + -0 passes as -0 */
	a[8] = INFINITY, x[8] = -1.0f;           /* shut: 0, not inf * 0 */
	x[COUNT - 1] = 1.0f;                     /* the tail: one open, one shut */
	x[COUNT - 2] = -1.0f;
	relu_mask_bits(bits, x, COUNT);
	memcpy(two, a, COUNT * sizeof(float));
	tensor_add(two, b, COUNT);
	relu_backward_bits(two, bits, COUNT);
	tensor_add_masked_bits(a, b, bits, COUNT);
	ck_assert_mem_eq(a, two, COUNT * sizeof(float));
	ck_assert(signbit(a[7]) && a[7] == 0.0f);
	ck_assert(a[8] == 0.0f && !signbit(a[8]));
	ck_assert(a[COUNT - 2] == 0.0f && a[COUNT - 1] != 0.0f);
	free(a), free(b), free(x), free(two), free(bits);
	omp_set_num_threads(1);
}
END_TEST

/* A max-pool after a ReLU marks windows whose maximum is not positive with
 * argmax -1, so its backward is the plain one followed by the ReLU's. */
START_TEST(test_maxpool_after_relu)
{
	for (size_t t = 0; t < N_POOL_CASES; t++) {
		struct maxpool_shape s = pool_cases[t];
		maxpool_shape_finish(&s);
		struct maxpool_shape sr = s;
		sr.after_relu = true;
		size_t n_in = pool_in_count(&s), n_out = pool_out_count(&s);
		float *in = frandom(n_in, 1.0f), *out = falloc(n_out), *out_r = falloc(n_out);
		float *d_out = frandom(n_out, 1.0f), *d_in = falloc(n_in), *d_in_r = falloc(n_in);
		int32_t *am = malloc(n_out * sizeof(int32_t)),
		        *am_r = malloc(n_out * sizeof(int32_t));
		uint8_t *mask = malloc(n_in);
		for (size_t i = 0; i < n_in; i++)
			in[i] = in[i] > 0.0f ? in[i] : 0.0f; /* a ReLU's output: many zeros */
		/* and the first window (rows and columns 0-1 with padding) all zero */
		for (int y = 0; y < 2; y++)
			for (int x = 0; x < 2; x++)
				for (int c = 0; c < s.c; c++)
					in[((size_t)y * s.w_in + x) * s.c + c] = 0.0f;
		relu_mask_bits(mask, in, n_in);
		maxpool_forward(out, am, in, &s);
		maxpool_forward(out_r, am_r, in, &sr);
		ck_assert_mem_eq(out_r, out, n_out * sizeof(float));
		size_t shut = 0;
		for (size_t o = 0; o < n_out; o++) {
			ck_assert_int_eq(am_r[o], out[o] > 0.0f ? am[o] : -1);
			shut += am_r[o] < 0;
		}
		maxpool_backward(d_in, d_out, am, &s);
		relu_backward_bits(d_in, mask, n_in);
		maxpool_backward(d_in_r, d_out, am_r, &sr);
		ck_assert_mem_eq(d_in_r, d_in, n_in * sizeof(float));
		ck_assert_uint_gt(shut, 0);
		free(in), free(out), free(out_r), free(d_out), free(d_in), free(d_in_r);
		free(am), free(am_r), free(mask);
	}
}
END_TEST

/*
 * maxpool_backward_sum against the naive pool's argmax and a transposed
 * loop: the weighted sum of the images' input gradients (added onto what
 * acc held) and each image's inner products with a probe and with to -
 * from.  Cases: the pool shapes, NHWC and blocked, after a ReLU or not, 18
 * images (more than one group of partial sums), 1 to 3 threads, and the
 * same sums on every run.
 */
static void check_maxpool_sum(struct maxpool_shape s, int threads, const char *what)
{
	maxpool_shape_finish(&s);
	omp_set_num_threads(threads);
	const int hw_out = s.h_out * s.w_out;
	const size_t n_in = pool_in_count(&s), n_out = pool_out_count(&s);
	const size_t image = n_in / (size_t)s.n;
	float *in = frandom(n_in, 1.0f), *out = falloc(n_out), *d_out = frandom(n_out, 1.0f);
	float *d_out_layout = falloc(n_out), *weight = frandom((size_t)s.n, 1.0f);
	float *probe = frandom(image, 1.0f), *from = frandom(image, 2.0f),
	      *to = frandom(image, 2.0f);
	float *acc = frandom(image, 1.0f), *acc2 = falloc(image);
	int32_t *am = malloc(n_out * sizeof(int32_t)), *am_ref = malloc(n_out * sizeof(int32_t));
	double *ref_out = dalloc(n_out), *ref_acc = dalloc(image);
	double *dots = dalloc(2 * (size_t)s.n), *dots2 = dalloc(2 * (size_t)s.n);
	double *ref_dots = dalloc(2 * (size_t)s.n), *scale = dalloc(2 * (size_t)s.n);

	naive_maxpool(ref_out, am_ref, NULL, in, &s);
	for (size_t j = 0; j < image; j++)
		ref_acc[j] = acc[j];
	memcpy(acc2, acc, image * sizeof(float));
	for (size_t o = 0; o < n_out; o++) {
		const int i = (int)(o / (n_out / (size_t)s.n));
		if (am_ref[o] < 0 || (s.after_relu && ref_out[o] <= 0.0))
			continue; /* padding only, or a ReLU that passed nothing */
		const size_t j = (size_t)am_ref[o] - (size_t)i * image;
		const double g = d_out[o];
		ref_acc[j] += (double)weight[i] * g;
		ref_dots[2 * i] += g * probe[j];
		ref_dots[2 * i + 1] += g * ((double)to[j] - from[j]);
		scale[2 * i] += fabs(g * probe[j]);
		scale[2 * i + 1] += fabs(g * ((double)to[j] - from[j]));
	}

	maxpool_forward(out, am, in, &s);
	if (s.out_block)
		to_blocked(d_out_layout, d_out, s.n, s.c, hw_out, s.out_block);
	else
		memcpy(d_out_layout, d_out, n_out * sizeof(float));
	maxpool_backward_sum(acc, dots, d_out_layout, am, weight, probe, from, to, &s);
	assert_close(acc, ref_acc, image, 1e-5, what);
	for (int k = 0; k < 2 * s.n; k++)
		ck_assert_msg(fabs(dots[k] - ref_dots[k]) <= 1e-6 * (1.0 + scale[k]),
		              "%s: image %d, sum %d: %.9g, expected %.9g", what, k / 2, k % 2,
		              dots[k], ref_dots[k]);
	maxpool_backward_sum(acc2, dots2, d_out_layout, am, weight, probe, from, to, &s);
	ck_assert_mem_eq(dots2, dots, 2 * (size_t)s.n * sizeof(double));

	free(in), free(out), free(d_out), free(d_out_layout), free(weight), free(probe);
	free(from), free(to), free(acc), free(acc2), free(am), free(am_ref), free(ref_out);
	free(ref_acc), free(dots), free(dots2), free(ref_dots), free(scale);
}

START_TEST(test_maxpool_backward_sum)
{
	char what[120];
	for (size_t t = 0; t < N_POOL_CASES; t++)
		for (int relu = 0; relu < 2; relu++)
			for (int threads = 1; threads <= 3; threads++) {
				struct maxpool_shape s = pool_cases[t];
				s.after_relu = relu;
				snprintf(what, sizeof what, "pool case %zu, relu %d, %d threads", t,
				         relu, threads);
				check_maxpool_sum(s, threads, what);
				if (s.c % 16 == 0) {
					s.out_block = 16;
					strcat(what, ", blocked");
					check_maxpool_sum(s, threads, what);
				}
			}
	/* more images than one group of partial sums */
	struct maxpool_shape many = pool_cases[4];
	many.n = 18;
	many.out_block = 16;
	check_maxpool_sum(many, 2, "18 images, blocked");
	many.out_block = 0;
	many.after_relu = true;
	check_maxpool_sum(many, 3, "18 images, NHWC, relu");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("layers");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, reseed, NULL);
	tcase_add_test(tc, test_shapes_finish);
	tcase_add_test(tc, test_relu_bits);
	tcase_add_test(tc, test_affine_relu);
	tcase_add_test(tc, test_maxpool_forward);
	tcase_add_test(tc, test_maxpool_backward);
	tcase_add_test(tc, test_avgpool);
	tcase_add_test(tc, test_blocked_affine_and_avgpool);
	tcase_add_test(tc, test_blocked_maxpool);
	tcase_add_test(tc, test_tensor_add_masked_bits);
	tcase_add_test(tc, test_maxpool_after_relu);
	tcase_add_test(tc, test_maxpool_backward_sum);
	tcase_add_test(tc, test_linear);
	tcase_add_test(tc, test_normalize);
	tcase_add_test(tc, test_tensor_add);
	tcase_add_test(tc, test_threads_match_one_thread);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
