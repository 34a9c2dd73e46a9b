/*
 * test_layers.c - the kernels of layers.c against independent references:
 *   - every forward against a naive direct loop (double accumulation);
 *   - every backward against a naive transposed loop, against central
 *     finite differences of the forward (ReLU kinks and max-pool ties that
 *     the step crosses are skipped, as ggml's test-backend-ops does), and,
 *     for the convolution, against the adjoint identity <Ax, y> = <x, A^T y>.
 * Buffers are malloc'ed at their exact size so AddressSanitizer sees any
 * overrun of a workspace.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "igserve/layers.h"
#include "igserve/team.h"

/* ------------------------------------------------------------- helpers */

static uint32_t rng_state = 12345u;

/* Every test starts from the same seed, forked or not (CK_FORK=no). */
static void reseed(void)
{
	rng_state = 12345u;
}

/* xorshift32: uniform in [-1, 1) */
static float frand(void)
{
	uint32_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	rng_state = x;
	return (float)((double)(x >> 8) / (double)(1u << 23) - 1.0);
}

static float *falloc(size_t count)
{
	float *p = malloc((count ? count : 1) * sizeof(float));
	ck_assert_ptr_nonnull(p);
	return p;
}

static double *dalloc(size_t count)
{
	double *p = calloc(count ? count : 1, sizeof(double));
	ck_assert_ptr_nonnull(p);
	return p;
}

static float *frandom(size_t count, float scale)
{
	float *p = falloc(count);
	for (size_t i = 0; i < count; i++)
		p[i] = frand() * scale;
	return p;
}

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

static double dot(const float *a, const float *b, size_t count)
{
	double s = 0.0;
	for (size_t i = 0; i < count; i++)
		s += (double)a[i] * b[i];
	return s;
}

/* Indices at which finite differences are taken: all of them, or an even
 * sample of at most `max_points`. */
static size_t fd_index(size_t j, size_t count, size_t max_points)
{
	if (count <= max_points)
		return j;
	return j * count / max_points;
}

static size_t fd_points(size_t count, size_t max_points)
{
	return count <= max_points ? count : max_points;
}

/* ------------------------------------------------------ shape helpers */

START_TEST(test_shapes_finish)
{
	/* ResNet's stem, a strided 3x3, a downsample, and the stem max pool */
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
	ck_assert_uint_eq(conv2d_workspace_floats(&a), (size_t)3 * 49 * 2 * 112 * 112);

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

	struct conv_shape c = {.n = 4,
	                       .c_in = 256,
	                       .h_in = 56,
	                       .w_in = 56,
	                       .c_out = 512,
	                       .k = 1,
	                       .stride = 2,
	                       .pad = 0};
	conv_shape_finish(&c);
	ck_assert_int_eq(c.h_out, 28);
	ck_assert_uint_eq(conv2d_workspace_floats(&c), (size_t)256 * 4 * 28 * 28);

	struct conv_shape d = {.n = 4,
	                       .c_in = 256,
	                       .h_in = 14,
	                       .w_in = 14,
	                       .c_out = 64,
	                       .k = 1,
	                       .stride = 1,
	                       .pad = 0};
	conv_shape_finish(&d);
	ck_assert_int_eq(d.h_out, 14);
	ck_assert_uint_eq(conv2d_workspace_floats(&d), 0);

	struct pool_shape p = {
	    .c = 64, .n = 1, .h_in = 112, .w_in = 111, .k = 3, .stride = 2, .pad = 1};
	pool_shape_finish(&p);
	ck_assert_int_eq(p.h_out, 56);
	ck_assert_int_eq(p.w_out, 56);
}
END_TEST

/* ----------------------------------------------------------- convolution */

#define CONV(n_, ci_, h_, w_, co_, k_, s_, p_)                                                     \
	{                                                                                          \
		.n = n_, .c_in = ci_, .h_in = h_, .w_in = w_, .c_out = co_, .k = k_, .stride = s_, \
		.pad = p_                                                                          \
	}
static const struct conv_shape conv_cases[] = {
    /*   n, c_in, h_in, w_in, c_out, k, stride, pad */
    CONV(1, 5, 6, 9, 7, 1, 1, 0),   /* pointwise: GEMM on the input itself */
    CONV(3, 6, 7, 10, 5, 1, 2, 0),  /* ResNet downsample, odd sizes */
    CONV(1, 3, 5, 8, 4, 3, 1, 1),   /* 3x3 same */
    CONV(3, 5, 9, 6, 6, 3, 2, 1),   /* 3x3 strided */
    CONV(2, 4, 6, 5, 3, 3, 1, 0),   /* 3x3 valid */
    CONV(1, 2, 8, 8, 3, 3, 2, 0),   /* strided valid, even size */
    CONV(3, 3, 13, 10, 5, 7, 2, 3), /* stem */
    CONV(1, 3, 4, 5, 2, 7, 2, 3),   /* stem on an input smaller than the kernel */
    CONV(2, 2, 2, 3, 3, 3, 1, 3),   /* pad > k/2: taps that only ever see padding */
    CONV(1, 2, 3, 4, 3, 1, 1, 1),   /* padded 1x1 takes the im2col path */
    CONV(2, 16, 14, 11, 19, 3, 1, 1),
};
#define N_CONV_CASES (sizeof conv_cases / sizeof conv_cases[0])

static struct conv_shape conv_case(size_t i)
{
	struct conv_shape s = conv_cases[i];
	conv_shape_finish(&s);
	return s;
}

static size_t conv_in_count(const struct conv_shape *s)
{
	return (size_t)s->c_in * s->n * s->h_in * s->w_in;
}

static size_t conv_out_count(const struct conv_shape *s)
{
	return (size_t)s->c_out * s->n * s->h_out * s->w_out;
}

static size_t conv_w_count(const struct conv_shape *s)
{
	return (size_t)s->c_out * s->c_in * s->k * s->k;
}

/* Direct convolution, 7 nested loops, padding by bounds test. */
static void naive_conv_forward(double *out, const float *in, const float *w, const float *bias,
                               const float *residual, int relu, const struct conv_shape *s)
{
	for (int co = 0; co < s->c_out; co++)
		for (int b = 0; b < s->n; b++)
			for (int oy = 0; oy < s->h_out; oy++)
				for (int ox = 0; ox < s->w_out; ox++) {
					double acc = bias ? bias[co] : 0.0;
					for (int ci = 0; ci < s->c_in; ci++)
						for (int ky = 0; ky < s->k; ky++)
							for (int kx = 0; kx < s->k; kx++) {
								int iy =
								    oy * s->stride - s->pad + ky;
								int ix =
								    ox * s->stride - s->pad + kx;
								if (iy < 0 || iy >= s->h_in ||
								    ix < 0 || ix >= s->w_in)
									continue;
								acc +=
								    (double)w[((co * s->c_in + ci) *
								                   s->k +
								               ky) *
								                  s->k +
								              kx] *
								    in[((ci * s->n + b) * s->h_in +
								        iy) *
								           s->w_in +
								       ix];
							}
					size_t o =
					    ((size_t)(co * s->n + b) * s->h_out + oy) * s->w_out +
					    ox;
					if (residual)
						acc += residual[o];
					out[o] = relu && acc < 0.0 ? 0.0 : acc;
				}
}

/* The transposed loop: every output gradient scattered back to the pixels
 * its window read. */
static void naive_conv_backward(double *d_in, const float *d_out, const float *w,
                                const struct conv_shape *s)
{
	memset(d_in, 0, conv_in_count(s) * sizeof(double));
	for (int co = 0; co < s->c_out; co++)
		for (int b = 0; b < s->n; b++)
			for (int oy = 0; oy < s->h_out; oy++)
				for (int ox = 0; ox < s->w_out; ox++) {
					double g = d_out[((size_t)(co * s->n + b) * s->h_out + oy) *
					                     s->w_out +
					                 ox];
					for (int ci = 0; ci < s->c_in; ci++)
						for (int ky = 0; ky < s->k; ky++)
							for (int kx = 0; kx < s->k; kx++) {
								int iy =
								    oy * s->stride - s->pad + ky;
								int ix =
								    ox * s->stride - s->pad + kx;
								if (iy < 0 || iy >= s->h_in ||
								    ix < 0 || ix >= s->w_in)
									continue;
								d_in[((ci * s->n + b) * s->h_in +
								      iy) *
								         s->w_in +
								     ix] +=
								    g *
								    w[((co * s->c_in + ci) * s->k +
								       ky) *
								          s->k +
								      kx];
							}
				}
}

/* Weights scaled like a trained net's (fan-in) so outputs stay O(1). */
static float *conv_weights(const struct conv_shape *s)
{
	return frandom(conv_w_count(s), 1.7f / sqrtf((float)(s->c_in * s->k * s->k)));
}

START_TEST(test_conv_forward_matches_direct_loop)
{
	for (size_t t = 0; t < N_CONV_CASES; t++) {
		struct conv_shape s = conv_case(t);
		size_t n_in = conv_in_count(&s), n_out = conv_out_count(&s);
		size_t n_col = conv2d_workspace_floats(&s);
		float *in = frandom(n_in, 1.0f), *w = conv_weights(&s);
		float *bias = frandom((size_t)s.c_out, 0.5f), *res = frandom(n_out, 1.0f);
		float *out = falloc(n_out), *col = n_col ? falloc(n_col) : NULL;
		double *ref = dalloc(n_out);
		/* bias on/off x residual none/separate/aliasing out x relu on/off */
		for (int v = 0; v < 12; v++) {
			int use_bias = v & 1, res_mode = (v >> 1) % 3, relu = v / 6;
			const float *b = use_bias ? bias : NULL;
			const float *r = NULL;
			for (size_t i = 0; i < n_out; i++)
				out[i] = NAN; /* must be overwritten unless it is the residual */
			if (res_mode == 1) {
				r = res;
			} else if (res_mode == 2) {
				memcpy(out, res, n_out * sizeof(float));
				r = out;
			}
			naive_conv_forward(ref, in, w, b, res_mode ? res : NULL, relu, &s);
			conv2d_forward(out, in, w, b, r, relu, &s, col);
			char what[160];
			snprintf(what, sizeof what,
			         "conv case %zu (k%d s%d p%d) bias %d residual %d relu %d", t, s.k,
			         s.stride, s.pad, use_bias, res_mode, relu);
			assert_close(out, ref, n_out, 1e-5, what);
		}
		free(in), free(w), free(bias), free(res), free(out), free(col), free(ref);
	}
}
END_TEST

START_TEST(test_conv_backward_matches_transposed_loop)
{
	for (size_t t = 0; t < N_CONV_CASES; t++) {
		struct conv_shape s = conv_case(t);
		size_t n_in = conv_in_count(&s), n_out = conv_out_count(&s);
		size_t n_col = conv2d_workspace_floats(&s);
		float *w = conv_weights(&s), *d_out = frandom(n_out, 1.0f);
		float *prior = frandom(n_in, 1.0f), *d_in = falloc(n_in);
		float *col = n_col ? falloc(n_col) : NULL;
		double *ref = dalloc(n_in);
		naive_conv_backward(ref, d_out, w, &s);
		char what[120];

		/* accumulate = 0 overwrites whatever was there, NaN included */
		for (size_t i = 0; i < n_in; i++)
			d_in[i] = NAN;
		conv2d_backward_data(d_in, d_out, w, &s, 0, col);
		snprintf(what, sizeof what, "conv case %zu (k%d s%d p%d) backward", t, s.k,
		         s.stride, s.pad);
		assert_close(d_in, ref, n_in, 1e-5, what);

		/* accumulate = 1 adds onto it */
		memcpy(d_in, prior, n_in * sizeof(float));
		conv2d_backward_data(d_in, d_out, w, &s, 1, col);
		for (size_t i = 0; i < n_in; i++)
			ref[i] += prior[i];
		snprintf(what, sizeof what, "conv case %zu (k%d s%d p%d) backward, accumulate", t,
		         s.k, s.stride, s.pad);
		assert_close(d_in, ref, n_in, 1e-5, what);
		free(w), free(d_out), free(prior), free(d_in), free(col), free(ref);
	}
}
END_TEST

START_TEST(test_conv_adjoint_identity)
{
	/* <conv(x), y> = <x, conv^T(y)>: the backward is the exact transpose
	 * of the forward, independently of any reference loop. */
	for (size_t t = 0; t < N_CONV_CASES; t++) {
		struct conv_shape s = conv_case(t);
		size_t n_in = conv_in_count(&s), n_out = conv_out_count(&s);
		size_t n_col = conv2d_workspace_floats(&s);
		float *w = conv_weights(&s), *x = frandom(n_in, 1.0f), *y = frandom(n_out, 1.0f);
		float *ax = falloc(n_out), *aty = falloc(n_in), *col = n_col ? falloc(n_col) : NULL;
		conv2d_forward(ax, x, w, NULL, NULL, 0, &s, col);
		conv2d_backward_data(aty, y, w, &s, 0, col);
		double lhs = dot(ax, y, n_out), rhs = dot(x, aty, n_in);
		double scale = 0.0;
		for (size_t i = 0; i < n_out; i++)
			scale += fabs((double)ax[i] * y[i]);
		ck_assert_msg(fabs(lhs - rhs) <= 1e-4 * scale,
		              "conv case %zu: <Ax,y> = %.9g but <x,A^T y> = %.9g", t, lhs, rhs);
		free(w), free(x), free(y), free(ax), free(aty), free(col);
	}
}
END_TEST

/* L = sum(d_out * relu(conv(x) + bias + residual)); pre receives the
 * pre-activation so the caller can see which ReLUs a step flipped. */
static double conv_relu_loss(float *pre, const float *x, const float *w, const float *bias,
                             const float *res, const float *d_out, const struct conv_shape *s,
                             float *col)
{
	conv2d_forward(pre, x, w, bias, res, 0, s, col);
	double l = 0.0;
	for (size_t i = 0; i < conv_out_count(s); i++)
		l += (double)d_out[i] * (pre[i] > 0.0f ? pre[i] : 0.0f);
	return l;
}

START_TEST(test_conv_relu_backward_matches_finite_differences)
{
	const float eps = 1e-2f;
	for (size_t t = 0; t < N_CONV_CASES; t++) {
		struct conv_shape s = conv_case(t);
		size_t n_in = conv_in_count(&s), n_out = conv_out_count(&s);
		size_t n_col = conv2d_workspace_floats(&s);
		float *x = frandom(n_in, 1.0f), *w = conv_weights(&s);
		float *bias = frandom((size_t)s.c_out, 0.3f), *res = frandom(n_out, 0.5f);
		float *d_out = frandom(n_out, 1.0f), *out = falloc(n_out), *g = falloc(n_out);
		float *pre_p = falloc(n_out), *pre_m = falloc(n_out), *d_in = falloc(n_in);
		float *col = n_col ? falloc(n_col) : NULL;

		/* A step of eps moves a pre-activation by at most eps * max|w|.
		 * Outputs that close to their ReLU kink get no gradient, so no
		 * step crosses a kink that matters (rather than skipping every
		 * input such an output reads, which in the small cases is most
		 * of them). */
		float w_max = 0.0f;
		for (size_t i = 0; i < conv_w_count(&s); i++)
			w_max = fmaxf(w_max, fabsf(w[i]));
		conv2d_forward(pre_p, x, w, bias, res, 0, &s, col);
		size_t zeroed = 0;
		for (size_t o = 0; o < n_out; o++)
			if (fabsf(pre_p[o]) <= 1.5f * eps * w_max) {
				d_out[o] = 0.0f;
				zeroed++;
			}
		ck_assert_uint_lt(zeroed, n_out / 4);

		/* analytic: relu_backward then the transposed convolution */
		conv2d_forward(out, x, w, bias, res, 1, &s, col);
		memcpy(g, d_out, n_out * sizeof(float));
		relu_backward(g, out, n_out);
		conv2d_backward_data(d_in, g, w, &s, 0, col);

		size_t points = fd_points(n_in, 150);
		double *fd = dalloc(points);
		float *an = falloc(points);
		int *skip = calloc(points, sizeof(int));
		for (size_t j = 0; j < points; j++) {
			size_t i = fd_index(j, n_in, 150);
			float x0 = x[i];
			x[i] = x0 + eps;
			double lp = conv_relu_loss(pre_p, x, w, bias, res, d_out, &s, col);
			x[i] = x0 - eps;
			double lm = conv_relu_loss(pre_m, x, w, bias, res, d_out, &s, col);
			x[i] = x0;
			for (size_t o = 0; o < n_out; o++)
				if (d_out[o] != 0.0f && (pre_p[o] > 0.0f) != (pre_m[o] > 0.0f))
					skip[j] = 1; /* crossed a kink after all: rounding */
			fd[j] = (lp - lm) / (2.0 * eps);
			an[j] = d_in[i];
		}
		char what[80];
		snprintf(what, sizeof what, "conv case %zu (k%d s%d p%d) + relu", t, s.k, s.stride,
		         s.pad);
		assert_fd(fd, an, skip, points, 1e-3, 0.95, what);
		free(x), free(w), free(bias), free(res), free(d_out), free(out), free(g);
		free(pre_p), free(pre_m), free(d_in), free(col), free(fd), free(an), free(skip);
	}
}
END_TEST

/* ------------------------------------------------------------ elementwise */

START_TEST(test_relu_backward)
{
	enum { COUNT = 1001 };
	float *d = frandom(COUNT, 1.0f), *out = frandom(COUNT, 1.0f);
	float *d0 = falloc(COUNT);
	out[3] = 0.0f; /* exactly at the kink: the gradient is taken as 0 */
	memcpy(d0, d, COUNT * sizeof(float));
	relu_backward(d, out, COUNT);
	for (int i = 0; i < COUNT; i++)
		ck_assert_float_eq(d[i], out[i] > 0.0f ? d0[i] : 0.0f);
	ck_assert_float_eq(d[3], 0.0f);
	free(d), free(out), free(d0);
}
END_TEST

START_TEST(test_affine_relu)
{
	const int channels = 5;
	const size_t plane = 37; /* N*H*W, deliberately odd */
	const size_t count = channels * plane;
	float *in = frandom(count, 2.0f), *scale = frandom(channels, 1.5f);
	float *shift = frandom(channels, 0.5f), *out = falloc(count), *d_out = frandom(count, 1.0f);
	float *d_in = falloc(count), *prior = frandom(count, 1.0f), *inplace = falloc(count);
	double *ref = dalloc(count);

	affine_relu_forward(out, in, scale, shift, channels, plane);
	for (int c = 0; c < channels; c++)
		for (size_t i = 0; i < plane; i++) {
			double v = (double)in[c * plane + i] * scale[c] + shift[c];
			ref[c * plane + i] = v > 0.0 ? v : 0.0;
		}
	assert_close(out, ref, count, 1e-6, "affine_relu_forward");

	/* in place, as a model may run it */
	memcpy(inplace, in, count * sizeof(float));
	affine_relu_forward(inplace, inplace, scale, shift, channels, plane);
	ck_assert_mem_eq(inplace, out, count * sizeof(float));

	/* backward against the formula, writing and accumulating */
	affine_relu_backward(d_in, d_out, out, scale, channels, plane, 0);
	for (int c = 0; c < channels; c++)
		for (size_t i = 0; i < plane; i++)
			ref[c * plane + i] = out[c * plane + i] > 0.0f
			                         ? (double)d_out[c * plane + i] * scale[c]
			                         : 0.0;
	assert_close(d_in, ref, count, 1e-6, "affine_relu_backward");
	memcpy(d_in, prior, count * sizeof(float));
	affine_relu_backward(d_in, d_out, out, scale, channels, plane, 1);
	for (size_t i = 0; i < count; i++)
		ref[i] += prior[i];
	assert_close(d_in, ref, count, 1e-6, "affine_relu_backward accumulate");

	/* and against finite differences, away from kinks */
	affine_relu_backward(d_in, d_out, out, scale, channels, plane, 0);
	const float eps = 1e-2f;
	double *fd = dalloc(count);
	int *skip = calloc(count, sizeof(int));
	for (size_t i = 0; i < count; i++) {
		int c = (int)(i / plane);
		double pre_p = (double)(in[i] + eps) * scale[c] + shift[c];
		double pre_m = (double)(in[i] - eps) * scale[c] + shift[c];
		skip[i] = (pre_p > 0.0) != (pre_m > 0.0);
		float x0 = in[i];
		in[i] = x0 + eps;
		affine_relu_forward(out, in, scale, shift, channels, plane);
		double lp = dot(out, d_out, count);
		in[i] = x0 - eps;
		affine_relu_forward(out, in, scale, shift, channels, plane);
		double lm = dot(out, d_out, count);
		in[i] = x0;
		fd[i] = (lp - lm) / (2.0 * eps);
	}
	assert_fd(fd, d_in, skip, count, 1e-3, 0.8, "affine_relu finite differences");
	free(in), free(scale), free(shift), free(out), free(d_out), free(d_in), free(prior);
	free(inplace), free(ref), free(fd), free(skip);
}
END_TEST

/* ---------------------------------------------------------------- pooling */

#define POOL(c_, n_, h_, w_, k_, s_, p_)                                                           \
	{                                                                                          \
		.c = c_, .n = n_, .h_in = h_, .w_in = w_, .k = k_, .stride = s_, .pad = p_         \
	}
static const struct pool_shape pool_cases[] = {
    /*   c, n, h_in, w_in, k, stride, pad */
    POOL(3, 2, 9, 12, 3, 2, 1), /* ResNet's stem pool */
    POOL(2, 1, 8, 6, 2, 2, 0), POOL(4, 3, 5, 7, 3, 1, 1),
    POOL(1, 2, 2, 3, 3, 2, 1), /* windows mostly padding */
};
#define N_POOL_CASES (sizeof pool_cases / sizeof pool_cases[0])

static size_t pool_in_count(const struct pool_shape *s)
{
	return (size_t)s->c * s->n * s->h_in * s->w_in;
}

static size_t pool_out_count(const struct pool_shape *s)
{
	return (size_t)s->c * s->n * s->h_out * s->w_out;
}

/* Direct max pool: padding is -inf, strict > so the first maximum in
 * row-major window order wins.  gap (or NULL) receives each window's
 * margin between its maximum and the runner-up. */
static void naive_maxpool(double *out, int32_t *argmax, double *gap, const float *in,
                          const struct pool_shape *s)
{
	for (int p = 0; p < s->c * s->n; p++)
		for (int oy = 0; oy < s->h_out; oy++)
			for (int ox = 0; ox < s->w_out; ox++) {
				double best = -INFINITY, second = -INFINITY;
				int32_t best_i = -1;
				for (int ky = 0; ky < s->k; ky++)
					for (int kx = 0; kx < s->k; kx++) {
						int iy = oy * s->stride - s->pad + ky;
						int ix = ox * s->stride - s->pad + kx;
						double v = -INFINITY;
						int32_t idx = -1;
						if (iy >= 0 && iy < s->h_in && ix >= 0 &&
						    ix < s->w_in) {
							idx = (p * s->h_in + iy) * s->w_in + ix;
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
				size_t o = ((size_t)p * s->h_out + oy) * s->w_out + ox;
				out[o] = best;
				argmax[o] = best_i;
				if (gap)
					gap[o] = best - second;
			}
}

static void check_maxpool_forward(const float *in, const struct pool_shape *s, const char *what)
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
		struct pool_shape s = pool_cases[t];
		pool_shape_finish(&s);
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
		struct pool_shape s = pool_cases[t];
		pool_shape_finish(&s);
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

	avgpool_forward(out, in, c, n, hw);
	for (int ci = 0; ci < c; ci++)
		for (int b = 0; b < n; b++) {
			double sum = 0.0;
			for (int i = 0; i < hw; i++)
				sum += in[((size_t)ci * n + b) * hw + i];
			ref[(size_t)b * c + ci] = sum / hw; /* batch-major output */
		}
	assert_close(out, ref, n_out, 1e-6, "avgpool_forward");

	for (size_t i = 0; i < n_in; i++)
		d_in[i] = NAN;
	avgpool_backward(d_in, d_out, c, n, hw);
	for (int ci = 0; ci < c; ci++)
		for (int b = 0; b < n; b++)
			for (int i = 0; i < hw; i++)
				ref[((size_t)ci * n + b) * hw + i] =
				    (double)d_out[(size_t)b * c + ci] / hw;
	assert_close(d_in, ref, n_in, 1e-6, "avgpool_backward");

	/* adjoint: <avg(x), y> = <x, avg^T(y)> */
	double lhs = dot(out, d_out, n_out), rhs = dot(in, d_in, n_in);
	ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * (1.0 + fabs(lhs)), "avgpool adjoint %g vs %g", lhs,
	              rhs);
	free(in), free(out), free(d_out), free(d_in), free(ref);
}
END_TEST

/* ----------------------------------------------------------------- linear */

START_TEST(test_linear)
{
	const int n = 3, c = 37, classes = 11;
	float *in = frandom((size_t)n * c, 1.0f), *w = frandom((size_t)classes * c, 0.3f);
	float *bias = frandom(classes, 0.5f), *out = falloc((size_t)n * classes);
	float *d_out = frandom((size_t)n * classes, 1.0f), *d_in = falloc((size_t)n * c);
	double *ref = dalloc((size_t)n * (c > classes ? c : classes));

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
		assert_close(out, ref, (size_t)n * classes, 1e-5,
		             with_bias ? "linear_forward" : "linear_forward without bias");
	}

	for (int i = 0; i < n * c; i++)
		d_in[i] = NAN;
	linear_backward(d_in, d_out, w, n, c, classes);
	for (int b = 0; b < n; b++)
		for (int i = 0; i < c; i++) {
			double acc = 0.0;
			for (int j = 0; j < classes; j++)
				acc += (double)d_out[b * classes + j] * w[j * c + i];
			ref[b * c + i] = acc;
		}
	assert_close(d_in, ref, (size_t)n * c, 1e-5, "linear_backward");

	/* adjoint of the linear part */
	linear_forward(out, in, w, NULL, n, c, classes);
	double lhs = dot(out, d_out, (size_t)n * classes), rhs = dot(in, d_in, (size_t)n * c);
	ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * (1.0 + fabs(lhs)), "linear adjoint %g vs %g", lhs,
	              rhs);
	free(in), free(w), free(bias), free(out), free(d_out), free(d_in), free(ref);
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
					ref[((c * n + b) * h + y) * w + x] =
					    (p / 255.0 - mean[c]) / std[c]; /* HWC -> CNHW */
				}
	assert_close(out, ref, count, 1e-6, "normalize_forward");

	normalize_backward(d_pix, d_out, n, h, w, std);
	for (int b = 0; b < n; b++)
		for (int y = 0; y < h; y++)
			for (int x = 0; x < w; x++)
				for (int c = 0; c < 3; c++)
					ref[((b * h + y) * w + x) * 3 + c] =
					    d_out[((c * n + b) * h + y) * w + x] / (255.0 * std[c]);
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

/* ---- a team of threads: split by rows or by columns, same numbers ---- */

struct team_conv {
	const struct conv_shape *s;
	const float *in, *w, *bias, *res, *d_out;
	float *out, *d_in, *col;
};

static void team_conv_pass(void *arg, const struct par *p)
{
	struct team_conv *j = arg;
	conv2d_forward_par(j->out, j->in, j->w, j->bias, j->res, 1, j->s, j->col, p);
	par_sync(p);
	conv2d_backward_data_par(j->d_in, j->d_out, j->w, j->s, 1, j->col, p);
}

START_TEST(test_conv_team_matches_one_thread)
{
	/* n, c_in, h, w, c_out, k, stride, pad: wide outputs (split by columns),
	 * narrow ones (split by rows), pointwise and strided. */
	static const int shapes[][8] = {
		{2, 3, 13, 11, 5, 3, 1, 1}, {1, 40, 3, 3, 48, 3, 1, 1}, {3, 6, 7, 9, 4, 1, 1, 0},
		{1, 64, 2, 2, 70, 1, 1, 0}, {2, 5, 9, 8, 7, 1, 2, 0},   {1, 3, 15, 15, 8, 7, 2, 3},
	};
	const int *v = shapes[_i];
	struct conv_shape s = {.n = v[0], .c_in = v[1], .h_in = v[2], .w_in = v[3], .c_out = v[4],
	                       .k = v[5], .stride = v[6], .pad = v[7]};
	conv_shape_finish(&s);
	size_t n_in = (size_t)s.c_in * s.n * s.h_in * s.w_in;
	size_t n_out = (size_t)s.c_out * s.n * s.h_out * s.w_out;
	float *in = frandom(n_in, 1.0f), *w = conv_weights(&s), *bias = frandom((size_t)s.c_out, 0.5f);
	float *res = frandom(n_out, 1.0f), *d_out = frandom(n_out, 1.0f), *d_acc = frandom(n_in, 1.0f);
	float *out1 = falloc(n_out), *out3 = falloc(n_out), *d1 = falloc(n_in), *d3 = falloc(n_in);
	float *col = falloc(conv2d_workspace_floats(&s));
	memcpy(d1, d_acc, n_in * sizeof(float));
	memcpy(d3, d_acc, n_in * sizeof(float));
	conv2d_forward(out1, in, w, bias, res, 1, &s, col);
	conv2d_backward_data(d1, d_out, w, &s, 1, col);

	struct team *t = NULL;
	ck_assert_int_eq(team_create(&t, 3, NULL), 0);
	struct team_conv job = {.s = &s, .in = in, .w = w, .bias = bias, .res = res, .d_out = d_out,
	                        .out = out3, .d_in = d3, .col = col};
	team_run(t, team_conv_pass, &job);
	team_free(&t);
	for (size_t i = 0; i < n_out; i++)
		ck_assert_msg(fabsf(out1[i] - out3[i]) <= 1e-5f * (1 + fabsf(out1[i])), "out %zu", i);
	for (size_t i = 0; i < n_in; i++)
		ck_assert_msg(fabsf(d1[i] - d3[i]) <= 1e-5f * (1 + fabsf(d1[i])), "d_in %zu", i);
	free(in);
	free(w);
	free(bias);
	free(res);
	free(d_out);
	free(d_acc);
	free(out1);
	free(out3);
	free(d1);
	free(d3);
	free(col);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("layers");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, reseed, NULL);
	tcase_add_test(tc, test_shapes_finish);
	tcase_add_test(tc, test_conv_forward_matches_direct_loop);
	tcase_add_test(tc, test_conv_backward_matches_transposed_loop);
	tcase_add_test(tc, test_conv_adjoint_identity);
	tcase_add_test(tc, test_conv_relu_backward_matches_finite_differences);
	tcase_add_test(tc, test_relu_backward);
	tcase_add_test(tc, test_affine_relu);
	tcase_add_test(tc, test_maxpool_forward);
	tcase_add_test(tc, test_maxpool_backward);
	tcase_add_test(tc, test_avgpool);
	tcase_add_test(tc, test_linear);
	tcase_add_test(tc, test_normalize);
	tcase_add_loop_test(tc, test_conv_team_matches_one_thread, 0, 6);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
