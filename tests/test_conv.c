/*
 * test_conv.c - the oneDNN convolutions of conv.c (NHWC activations, weights
 * [c_out][c_in][k][k]) against independent references:
 *   - the forward against a naive direct loop (double accumulation), with
 *     and without bias, under every epilogue;
 *   - backward-data against a naive transposed loop, and against the
 *     forward through the adjoint identity <Ax, y> = <x, A^T y>;
 *   - plans for shapes other than the one the weights were reordered for,
 *     plans on two OpenMP threads against one, caller-owned scratch, and
 *     the refusal of shapes that are not a convolution.
 * All of it twice: in float32 and in split bf16 (CONV_PRECISION_BF16X3, on
 * CPUs with AMX), which is also checked against a loop that takes the
 * same three bfloat16 products in double (test_split_bf16_products).
 * Outputs carry a guard zone after their end: oneDNN's JIT kernels are not
 * instrumented, so AddressSanitizer alone would not see them overrun.
 */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "layers.h"
#include "test_random.h"

/* ------------------------------------------------------------- helpers */

/* Floats past the end of every output buffer that must stay untouched. */
#define GUARD 64
#define GUARD_VALUE 1234.5f

/* An output buffer: `count` NaNs (so anything not written shows) and then
 * the guard zone. */
static float *outalloc(size_t count)
{
	float *p = falloc(count + GUARD);
	for (size_t i = 0; i < count; i++)
		p[i] = NAN;
	for (size_t i = 0; i < GUARD; i++)
		p[count + i] = GUARD_VALUE;
	return p;
}

static void assert_guard(const float *p, size_t count, const char *what)
{
	for (size_t i = 0; i < GUARD; i++)
		ck_assert_msg(p[count + i] == GUARD_VALUE, "%s: wrote %zu floats past the end",
		              what, i + 1);
}

/* |got - ref| <= tol * max|ref| everywhere (a NaN fails the comparison);
 * the message names the first element that is off. */
static void assert_close(const float *got, const double *ref, size_t count, double tol,
                         const char *what)
{
	double scale = 0.0;
	for (size_t i = 0; i < count; i++)
		scale = fmax(scale, fabs(ref[i]));
	ck_assert_msg(scale > 0.0, "%s: the reference is all zero", what);
	for (size_t i = 0; i < count; i++) {
		double err = fabs((double)got[i] - ref[i]);
		ck_assert_msg(err <= tol * scale,
		              "%s: element %zu is %.9g, expected %.9g (max |ref| %.4g)", what, i,
		              (double)got[i], ref[i], scale);
	}
}

/* The same between two float results (one taken as the reference). */
static void assert_close_f(const float *got, const float *ref, size_t count, double tol,
                           const char *what)
{
	double *r = dalloc(count);
	for (size_t i = 0; i < count; i++)
		r[i] = ref[i];
	assert_close(got, r, count, tol, what);
	free(r);
}

/* Scratch as the API asks for it: 64-byte aligned, at least 64 bytes (a
 * size aligned_alloc accepts), and full of NaN bytes so that a plan that
 * counts on zeroed scratch is caught. */
static void *scratch_alloc(const struct conv_plan *p)
{
	size_t bytes = conv_plan_scratch_bytes(p);
	bytes = bytes < 64 ? 64 : (bytes + 63) / 64 * 64;
	void *s = aligned_alloc(64, bytes);
	ck_assert_ptr_nonnull(s);
	memset(s, 0xff, bytes);
	return s;
}

/* ------------------------------------------------------ shapes, references */

#define CONV(n_, ci_, h_, w_, co_, k_, s_, p_)                                                     \
	{                                                                                          \
		.n = n_, .c_in = ci_, .h_in = h_, .w_in = w_, .c_out = co_, .k = k_, .stride = s_, \
		.pad = p_                                                                          \
	}
/* The same with blocked activations ([n][c/16][h][w][16], conv.h). */
#define CONVB(n_, ci_, h_, w_, co_, k_, s_, p_)                                                    \
	{                                                                                          \
		.n = n_, .c_in = ci_, .h_in = h_, .w_in = w_, .c_out = co_, .k = k_, .stride = s_, \
		.pad = p_, .blocked = true                                                         \
	}
static const struct conv_shape conv_cases[] = {
    /*   n, c_in, h_in, w_in, c_out, k, stride, pad */
    CONV(1, 5, 6, 9, 7, 1, 1, 0),    /* pointwise, channels off the 16 grid */
    CONV(3, 16, 7, 10, 24, 1, 2, 0), /* ResNet downsample, odd sizes */
    CONV(1, 64, 8, 8, 64, 1, 1, 0),  /* pointwise, full blocks */
    CONV(1, 16, 8, 8, 16, 3, 1, 1),  /* 3x3 same */
    CONV(3, 24, 9, 7, 5, 3, 1, 1),   /* 3x3 same, non-square, 24 -> 5 */
    CONV(3, 5, 9, 7, 16, 3, 2, 1),   /* 3x3 strided, non-square */
    CONV(1, 64, 10, 9, 64, 3, 2, 1), /* 3x3 strided, full blocks */
    CONV(3, 64, 9, 7, 64, 3, 1, 1),  /* a ResNet body conv, batch 3 */
    CONV(1, 3, 16, 16, 64, 7, 2, 3), /* stem */
    CONV(3, 3, 13, 10, 16, 7, 2, 3), /* stem, batch 3, odd sizes */
    CONV(1, 3, 4, 5, 8, 7, 2, 3),    /* stem on an input smaller than the kernel */
    CONV(2, 5, 2, 3, 6, 3, 1, 2),    /* pad > k/2: taps that only ever see padding */
    /* blocked: 28x28 and more outputs of a 3x3 stride 1 go by Winograd */
    CONVB(2, 16, 28, 28, 32, 3, 1, 1), /* Winograd, 16 -> 32 */
    CONVB(1, 32, 29, 30, 16, 3, 1, 1), /* Winograd, sides off the 4x4 tile grid */
    CONVB(3, 64, 9, 7, 64, 3, 1, 1),   /* direct 3x3 */
    CONVB(1, 64, 10, 9, 32, 3, 2, 1),  /* strided 3x3 */
    CONVB(3, 16, 7, 10, 32, 1, 2, 0),  /* downsample */
    CONVB(2, 32, 8, 8, 64, 1, 1, 0),   /* pointwise */
};
#define N_CONV_CASES ((int)(sizeof conv_cases / sizeof conv_cases[0]))

static struct conv_shape conv_case(int i)
{
	struct conv_shape s = conv_cases[i];
	conv_shape_finish(&s);
	return s;
}

static size_t in_count(const struct conv_shape *s)
{
	return (size_t)s->n * s->h_in * s->w_in * s->c_in;
}

static size_t out_count(const struct conv_shape *s)
{
	return (size_t)s->n * s->h_out * s->w_out * s->c_out;
}

static size_t w_count(const struct conv_shape *s)
{
	return (size_t)s->c_out * s->c_in * s->k * s->k;
}

static size_t in_index(const struct conv_shape *s, int b, int y, int x, int ci)
{
	return (((size_t)b * s->h_in + y) * s->w_in + x) * s->c_in + ci;
}

static size_t out_index(const struct conv_shape *s, int b, int y, int x, int co)
{
	return (((size_t)b * s->h_out + y) * s->w_out + x) * s->c_out + co;
}

static size_t w_index(const struct conv_shape *s, int co, int ci, int ky, int kx)
{
	return (((size_t)co * s->c_in + ci) * s->k + ky) * s->k + kx;
}

/* Weights scaled like a trained net's (fan-in) so outputs stay O(1). */
static float *random_weights(const struct conv_shape *s)
{
	return frandom(w_count(s), 1.7f / sqrtf((float)(s->c_in * s->k * s->k)));
}

/* Direct convolution then the epilogue: residual (the old out) added
 * before the ReLU.  Padding by bounds test. */
static void naive_forward(double *out, const float *in, const float *w, const float *bias,
                          const float *residual, int relu, const struct conv_shape *s)
{
	const size_t kk = (size_t)s->k * s->k; /* weight stride between c_in */
	for (int b = 0; b < s->n; b++)
		for (int oy = 0; oy < s->h_out; oy++)
			for (int ox = 0; ox < s->w_out; ox++)
				for (int co = 0; co < s->c_out; co++) {
					double acc = bias ? bias[co] : 0.0;
					for (int ky = 0; ky < s->k; ky++) {
						int iy = oy * s->stride - s->pad + ky;
						if (iy < 0 || iy >= s->h_in)
							continue;
						for (int kx = 0; kx < s->k; kx++) {
							int ix = ox * s->stride - s->pad + kx;
							if (ix < 0 || ix >= s->w_in)
								continue;
							const float *wp =
							    w + w_index(s, co, 0, ky, kx);
							const float *ip =
							    in + in_index(s, b, iy, ix, 0);
							for (int ci = 0; ci < s->c_in; ci++)
								acc += (double)wp[(size_t)ci * kk] *
								       ip[ci];
						}
					}
					size_t o = out_index(s, b, oy, ox, co);
					if (residual)
						acc += residual[o];
					out[o] = relu && acc < 0.0 ? 0.0 : acc;
				}
}

/* The transposed loop: every output gradient scattered back to the pixels
 * its window read. */
static void naive_backward(double *d_in, const float *d_out, const float *w,
                           const struct conv_shape *s)
{
	const size_t kk = (size_t)s->k * s->k;
	memset(d_in, 0, in_count(s) * sizeof(double));
	for (int b = 0; b < s->n; b++)
		for (int oy = 0; oy < s->h_out; oy++)
			for (int ox = 0; ox < s->w_out; ox++)
				for (int co = 0; co < s->c_out; co++) {
					double g = d_out[out_index(s, b, oy, ox, co)];
					for (int ky = 0; ky < s->k; ky++) {
						int iy = oy * s->stride - s->pad + ky;
						if (iy < 0 || iy >= s->h_in)
							continue;
						for (int kx = 0; kx < s->k; kx++) {
							int ix = ox * s->stride - s->pad + kx;
							if (ix < 0 || ix >= s->w_in)
								continue;
							const float *wp =
							    w + w_index(s, co, 0, ky, kx);
							double *dp =
							    d_in + in_index(s, b, iy, ix, 0);
							for (int ci = 0; ci < s->c_in; ci++)
								dp[ci] += g * wp[(size_t)ci * kk];
						}
					}
				}
}

/* The arithmetic the test case packs its weights in (its fixture sets it). */
static enum conv_precision arith = CONV_PRECISION_FP32;

static void describe(char *buf, size_t size, const struct conv_shape *s, const char *what)
{
	snprintf(buf, size, "n%d %dx%dx%d -> %d k%d s%d p%d%s: %s", s->n, s->c_in, s->h_in, s->w_in,
	         s->c_out, s->k, s->stride, s->pad, s->blocked ? " blocked" : "", what);
}

/* Weights packed for plans with the CONV_BACKWARD_* epilogue `backward`. */
static struct conv_weights *weights_for_epilogue(const float *w, const float *bias,
                                                 const struct conv_shape *s, unsigned backward)
{
	struct conv_weights *cw = NULL;
	struct igs_error err = {0};
	int rc = conv_weights_open(&cw, w, bias, s, backward, arith, &err);
	ck_assert_msg(rc == 0, "conv_weights_open: %d %s", rc, err.message);
	ck_assert_ptr_nonnull(cw);
	return cw;
}

static struct conv_weights *weights_ok(const float *w, const float *bias,
                                       const struct conv_shape *s)
{
	return weights_for_epilogue(w, bias, s, 0);
}

static struct conv_plan *plan_ok(const struct conv_weights *cw, const struct conv_shape *s,
                                 unsigned epilogue)
{
	struct conv_plan *p = NULL;
	struct igs_error err = {0};
	int rc = conv_plan_open(&p, cw, s, epilogue, &err);
	ck_assert_msg(rc == 0, "conv_plan_open (epilogue %u): %d %s", epilogue, rc, err.message);
	ck_assert_ptr_nonnull(p);
	return p;
}

/* Blocked shapes run on blocked copies of the NHWC arrays the tests keep. */
static float *blocked_copy(const float *nhwc, int n, int c, int h, int w)
{
	float *t = malloc((size_t)n * c * h * w * sizeof(float));
	ck_assert_ptr_nonnull(t);
	to_blocked(t, nhwc, n, c, h * w, CONV_BLOCK);
	return t;
}

/* conv_plan_forward on NHWC arrays whatever the plan's layout (out holds
 * the residual before the call). */
static void run_forward(const struct conv_plan *p, const struct conv_shape *s, float *out,
                        const float *in, void *scratch)
{
	if (!s->blocked) {
		conv_plan_forward(p, out, in, scratch);
		return;
	}
	float *bin = blocked_copy(in, s->n, s->c_in, s->h_in, s->w_in);
	float *bout = blocked_copy(out, s->n, s->c_out, s->h_out, s->w_out);
	conv_plan_forward(p, bout, bin, scratch);
	from_blocked(out, bout, s->n, s->c_out, s->h_out * s->w_out, CONV_BLOCK);
	free(bin), free(bout);
}

/* conv_plan_backward_data on NHWC arrays; `mask` (or NULL) one byte per
 * value of d_in, NHWC too. */
static void run_backward_masked(const struct conv_plan *p, const struct conv_shape *s, float *d_in,
                                const float *d_out, const uint8_t *mask, void *scratch)
{
	if (!s->blocked) {
		conv_plan_backward_data(p, d_in, d_out, mask, scratch);
		return;
	}
	const int hw_in = s->h_in * s->w_in;
	float *bout = blocked_copy(d_out, s->n, s->c_out, s->h_out, s->w_out);
	float *bin = blocked_copy(d_in, s->n, s->c_in, s->h_in, s->w_in);
	uint8_t *bmask = NULL;
	if (mask) {
		bmask = malloc((size_t)s->n * s->c_in * hw_in);
		for (int b = 0; b < s->n; b++)
			for (int px = 0; px < hw_in; px++)
				for (int ch = 0; ch < s->c_in; ch++)
					bmask[blocked_index(s->c_in, hw_in, CONV_BLOCK, b, px,
					                    ch)] =
					    mask[((size_t)b * hw_in + px) * s->c_in + ch];
	}
	conv_plan_backward_data(p, bin, bout, bmask, scratch);
	from_blocked(d_in, bin, s->n, s->c_in, hw_in, CONV_BLOCK);
	free(bin), free(bout), free(bmask);
}

static void run_backward(const struct conv_plan *p, const struct conv_shape *s, float *d_in,
                         const float *d_out, void *scratch)
{
	run_backward_masked(p, s, d_in, d_out, NULL, scratch);
}

/* Forward of `p` (epilogue `epi`) against the naive loop; `res` is what out
 * holds before the call when CONV_ADD_TO_OUT is set.  `scratch` NULL: a
 * fresh one. */
static void check_forward(const struct conv_plan *p, const struct conv_shape *s, unsigned epi,
                          const float *in, const float *w, const float *bias, const float *res,
                          void *scratch, const char *what)
{
	size_t n_out = out_count(s);
	float *out = outalloc(n_out);
	double *ref = dalloc(n_out);
	void *own = scratch ? NULL : scratch_alloc(p);
	if (epi & CONV_ADD_TO_OUT)
		memcpy(out, res, n_out * sizeof(float));
	naive_forward(ref, in, w, bias, epi & CONV_ADD_TO_OUT ? res : NULL, !!(epi & CONV_RELU), s);
	run_forward(p, s, out, in, scratch ? scratch : own);
	assert_close(out, ref, n_out, 1e-5, what);
	assert_guard(out, n_out, what);
	free(out), free(ref), free(own);
}

/* backward_data of `p` against the transposed loop, d_in prefilled with NaN. */
static void check_backward(const struct conv_plan *p, const struct conv_shape *s,
                           const float *d_out, const float *w, void *scratch, const char *what)
{
	size_t n_in = in_count(s);
	float *d_in = outalloc(n_in);
	double *ref = dalloc(n_in);
	void *own = scratch ? NULL : scratch_alloc(p);
	naive_backward(ref, d_out, w, s);
	run_backward(p, s, d_in, d_out, scratch ? scratch : own);
	assert_close(d_in, ref, n_in, 1e-5, what);
	assert_guard(d_in, n_in, what);
	free(d_in), free(ref), free(own);
}

/* ------------------------------------------------------------------ tests */

START_TEST(test_shape_finish)
{
	/* against the formula evaluated here, not against constants */
	for (int t = 0; t < N_CONV_CASES; t++) {
		struct conv_shape s = conv_cases[t];
		s.h_out = s.w_out = -7;
		conv_shape_finish(&s);
		ck_assert_int_eq(s.h_out, (s.h_in + 2 * s.pad - s.k) / s.stride + 1);
		ck_assert_int_eq(s.w_out, (s.w_in + 2 * s.pad - s.k) / s.stride + 1);
		ck_assert_int_eq(s.n, conv_cases[t].n); /* only the outputs change */
		ck_assert_int_eq(s.c_out, conv_cases[t].c_out);
	}
}
END_TEST

static const unsigned epilogues[] = {0, CONV_RELU, CONV_ADD_TO_OUT, CONV_ADD_TO_OUT | CONV_RELU};

static void forward_case(int t)
{
	struct conv_shape s = conv_case(t);
	float *in = frandom(in_count(&s), 1.0f), *w = random_weights(&s);
	float *bias = frandom((size_t)s.c_out, 0.5f), *res = frandom(out_count(&s), 1.0f);
	for (int use_bias = 0; use_bias < 2; use_bias++) {
		const float *b = use_bias ? bias : NULL;
		struct conv_weights *cw = weights_ok(w, b, &s);
		for (size_t e = 0; e < sizeof epilogues / sizeof epilogues[0]; e++) {
			struct conv_plan *p = plan_ok(cw, &s, epilogues[e]);
			char what[160], tag[64];
			snprintf(tag, sizeof tag, "forward, bias %d, add %d, relu %d", use_bias,
			         !!(epilogues[e] & CONV_ADD_TO_OUT), !!(epilogues[e] & CONV_RELU));
			describe(what, sizeof what, &s, tag);
			check_forward(p, &s, epilogues[e], in, w, b, res, NULL, what);
			conv_plan_close(&p);
			ck_assert_ptr_null(p);
		}
		conv_weights_close(&cw);
		ck_assert_ptr_null(cw);
	}
	free(in), free(w), free(bias), free(res);
}

START_TEST(test_forward_matches_direct_loop)
{
	for (int t = 0; t < N_CONV_CASES; t++)
		forward_case(t);
}
END_TEST

static void backward_case(int t)
{
	struct conv_shape s = conv_case(t);
	float *w = random_weights(&s), *bias = frandom((size_t)s.c_out, 0.5f);
	float *d_out = frandom(out_count(&s), 1.0f);
	/* The forward's bias and epilogue must not leak into backward_data: the
	 * plain plan and one with all of them give the same conv^T. */
	for (int all = 0; all < 2; all++) {
		struct conv_weights *cw = weights_ok(w, all ? bias : NULL, &s);
		struct conv_plan *p = plan_ok(cw, &s, all ? CONV_ADD_TO_OUT | CONV_RELU : 0);
		char what[160];
		describe(what, sizeof what, &s,
		         all ? "backward_data, plan with bias, add and relu" : "backward_data");
		check_backward(p, &s, d_out, w, NULL, what);
		conv_plan_close(&p);
		conv_weights_close(&cw);
	}
	free(w), free(bias), free(d_out);
}

START_TEST(test_backward_matches_transposed_loop)
{
	for (int t = 0; t < N_CONV_CASES; t++)
		backward_case(t);
}
END_TEST

static void adjoint_case(int t)
{
	/* <conv(x), y> = <x, conv^T(y)>: the backward is the exact transpose of
	 * the forward, independently of any reference loop. */
	struct conv_shape s = conv_case(t);
	size_t n_in = in_count(&s), n_out = out_count(&s);
	float *w = random_weights(&s), *x = frandom(n_in, 1.0f), *y = frandom(n_out, 1.0f);
	float *ax = outalloc(n_out), *aty = outalloc(n_in);
	struct conv_weights *cw = weights_ok(w, NULL, &s);
	struct conv_plan *p = plan_ok(cw, &s, 0);
	void *scratch = scratch_alloc(p);
	run_forward(p, &s, ax, x, scratch);
	run_backward(p, &s, aty, y, scratch);
	double lhs = dot(ax, y, n_out), rhs = dot(x, aty, n_in);
	/* rounding is relative to the terms, not to their (cancelling) sum */
	double scale = 0.0, scale2 = 0.0;
	for (size_t i = 0; i < n_out; i++)
		scale += fabs((double)ax[i] * y[i]);
	for (size_t i = 0; i < n_in; i++)
		scale2 += fabs((double)x[i] * aty[i]);
	scale = fmax(scale, scale2);
	ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * scale,
	              "case %d: <Ax,y> = %.9g but <x,A^T y> = %.9g (scale %.4g)", t, lhs, rhs,
	              scale);
	assert_guard(ax, n_out, "adjoint forward");
	assert_guard(aty, n_in, "adjoint backward");
	conv_plan_close(&p);
	conv_weights_close(&cw);
	free(w), free(x), free(y), free(ax), free(aty), free(scratch);
}

START_TEST(test_adjoint_identity)
{
	for (int t = 0; t < N_CONV_CASES; t++)
		adjoint_case(t);
}
END_TEST

/* The weights are reordered for one shape (batch 1, the model's input size)
 * and a plan runs another: a batch, a tile, a smaller or larger image.  On
 * AVX-512 the first, second and fourth want other layouts than their
 * weights have. */
static const struct {
	struct conv_shape rep;
	int n, h, w;
} other_cases[] = {
    /* weights for,                      plan n, h_in, w_in */
    {CONV(1, 64, 56, 56, 64, 3, 1, 1), 3, 9, 7},    /* a small tile */
    {CONV(1, 64, 7, 7, 64, 3, 1, 1), 1, 28, 28},    /* a larger image */
    {CONV(1, 3, 224, 224, 64, 7, 2, 3), 2, 20, 18}, /* stem */
    {CONV(1, 64, 56, 56, 128, 1, 2, 0), 3, 10, 10}, /* downsample */
    {CONV(1, 24, 9, 9, 5, 3, 2, 1), 3, 31, 17},     /* odd channels, larger */
    {CONVB(1, 64, 56, 56, 64, 3, 1, 1), 3, 30, 28}, /* Winograd weights, a batch */
    {CONVB(1, 64, 56, 56, 64, 3, 1, 1), 1, 9, 7},   /* Winograd weights, a direct tile */
};
#define N_OTHER_CASES ((int)(sizeof other_cases / sizeof other_cases[0]))

static void other_shape_case(int t)
{
	struct conv_shape rep = other_cases[t].rep;
	conv_shape_finish(&rep);
	struct conv_shape s = rep;
	s.n = other_cases[t].n, s.h_in = other_cases[t].h, s.w_in = other_cases[t].w;
	conv_shape_finish(&s);
	float *in = frandom(in_count(&s), 1.0f), *w = random_weights(&s);
	float *bias = frandom((size_t)s.c_out, 0.5f), *res = frandom(out_count(&s), 1.0f);
	float *d_out = frandom(out_count(&s), 1.0f);
	struct conv_weights *cw = weights_ok(w, bias, &rep);
	for (size_t e = 0; e < sizeof epilogues / sizeof epilogues[0]; e += 3) {
		struct conv_plan *p = plan_ok(cw, &s, epilogues[e]);
		size_t private_bytes = conv_plan_other_layout_bytes(p); /* either is right */
		(void)private_bytes;
		char what[200], tag[100];
		snprintf(tag, sizeof tag, "weights for n1 %dx%d, forward epilogue %u", rep.h_in,
		         rep.w_in, epilogues[e]);
		describe(what, sizeof what, &s, tag);
		check_forward(p, &s, epilogues[e], in, w, bias, res, NULL, what);
		if (e == 0) {
			snprintf(tag, sizeof tag, "weights for n1 %dx%d, backward_data", rep.h_in,
			         rep.w_in);
			describe(what, sizeof what, &s, tag);
			check_backward(p, &s, d_out, w, NULL, what);
		}
		conv_plan_close(&p);
	}
	conv_weights_close(&cw);
	free(in), free(w), free(bias), free(res), free(d_out);
}

START_TEST(test_plan_for_other_shape)
{
	for (int t = 0; t < N_OTHER_CASES; t++)
		other_shape_case(t);
}
END_TEST

/* Forward (bias, residual, ReLU) and backward_data with a plan created and
 * run under omp_set_num_threads(threads). */
static void run_threads(float *out, float *d_in, const struct conv_weights *cw,
                        const struct conv_shape *s, const float *in, const float *res,
                        const float *d_out, int threads)
{
	omp_set_num_threads(threads);
	ck_assert_int_eq(omp_get_max_threads(), threads);
	struct conv_plan *p = plan_ok(cw, s, CONV_ADD_TO_OUT | CONV_RELU);
	void *scratch = scratch_alloc(p);
	memcpy(out, res, out_count(s) * sizeof(float));
	run_forward(p, s, out, in, scratch);
	run_backward(p, s, d_in, d_out, scratch);
	conv_plan_close(&p);
	free(scratch);
}

/* Big enough that oneDNN splits the work between the threads. */
static const struct conv_shape thread_cases[] = {
    CONV(2, 64, 28, 28, 64, 3, 1, 1),   CONV(2, 3, 56, 56, 64, 7, 2, 3),
    CONV(2, 64, 28, 28, 128, 1, 2, 0),  CONVB(2, 64, 28, 28, 64, 3, 1, 1), /* Winograd */
    CONVB(2, 64, 28, 28, 128, 1, 2, 0),
};
#define N_THREAD_CASES ((int)(sizeof thread_cases / sizeof thread_cases[0]))

static void threads_case(int t)
{
	struct conv_shape s = thread_cases[t];
	conv_shape_finish(&s);
	size_t n_in = in_count(&s), n_out = out_count(&s);
	float *in = frandom(n_in, 1.0f), *w = random_weights(&s);
	float *bias = frandom((size_t)s.c_out, 0.5f), *res = frandom(n_out, 1.0f);
	float *d_out = frandom(n_out, 1.0f);
	float *out1 = outalloc(n_out), *out2 = outalloc(n_out);
	float *d1 = outalloc(n_in), *d2 = outalloc(n_in);
	struct conv_weights *cw = weights_ok(w, bias, &s);
	int saved = omp_get_max_threads();
	run_threads(out1, d1, cw, &s, in, res, d_out, 1);
	run_threads(out2, d2, cw, &s, in, res, d_out, 2);
	omp_set_num_threads(saved);
	/* oneDNN may sum in another order on two threads: close, not equal */
	char what[160];
	describe(what, sizeof what, &s, "forward, 2 threads vs 1");
	assert_close_f(out2, out1, n_out, 1e-5, what);
	assert_guard(out1, n_out, what);
	assert_guard(out2, n_out, what);
	describe(what, sizeof what, &s, "backward_data, 2 threads vs 1");
	assert_close_f(d2, d1, n_in, 1e-5, what);
	assert_guard(d1, n_in, what);
	assert_guard(d2, n_in, what);
	conv_weights_close(&cw);
	free(in), free(w), free(bias), free(res), free(d_out);
	free(out1), free(out2), free(d1), free(d2);
}

START_TEST(test_two_threads_match_one)
{
	for (int t = 0; t < N_THREAD_CASES; t++)
		threads_case(t);
}
END_TEST

static const struct conv_shape scratch_cases[] = {
    CONV(2, 3, 21, 19, 64, 7, 2, 3),
    CONV(3, 5, 9, 7, 16, 3, 2, 1),
    CONV(2, 64, 12, 12, 64, 3, 1, 1),
    CONV(2, 24, 9, 8, 40, 1, 2, 0),
};
#define N_SCRATCH_CASES ((int)(sizeof scratch_cases / sizeof scratch_cases[0]))

static void scratch_case(int t)
{
	/* The caller's weight and bias arrays are scribbled over and freed
	 * before any plan exists: the weights must be a copy. */
	struct conv_shape s = scratch_cases[t];
	conv_shape_finish(&s);
	size_t n_w = w_count(&s);
	float *w = random_weights(&s), *bias = frandom((size_t)s.c_out, 0.5f);
	float *w_caller = falloc(n_w), *bias_caller = falloc((size_t)s.c_out);
	memcpy(w_caller, w, n_w * sizeof(float));
	memcpy(bias_caller, bias, (size_t)s.c_out * sizeof(float));
	struct conv_weights *cw = weights_ok(w_caller, bias_caller, &s);
	for (size_t i = 0; i < n_w; i++)
		w_caller[i] = NAN;
	for (int i = 0; i < s.c_out; i++)
		bias_caller[i] = NAN;
	free(w_caller), free(bias_caller);

	/* One scratch buffer, exactly what the plan asked for (rounded to 64
	 * bytes), NaN bytes at first and then whatever forward and backward
	 * left in it for each other. */
	float *in = frandom(in_count(&s), 1.0f), *res = frandom(out_count(&s), 1.0f);
	float *d_out = frandom(out_count(&s), 1.0f);
	struct conv_plan *p = plan_ok(cw, &s, CONV_ADD_TO_OUT | CONV_RELU);
	void *scratch = scratch_alloc(p);
	char what[160];
	for (int run = 0; run < 2; run++) {
		describe(what, sizeof what, &s, run ? "forward after backward_data" : "forward");
		check_forward(p, &s, CONV_ADD_TO_OUT | CONV_RELU, in, w, bias, res, scratch, what);
		describe(what, sizeof what, &s, "backward_data after forward");
		check_backward(p, &s, d_out, w, scratch, what);
	}
	conv_plan_close(&p);
	conv_weights_close(&cw);
	free(w), free(bias), free(in), free(res), free(d_out), free(scratch);
}

START_TEST(test_scratch_and_caller_weights)
{
	for (int t = 0; t < N_SCRATCH_CASES; t++)
		scratch_case(t);
}
END_TEST

/* A shape that must be refused; stride 0 would divide by zero in
 * conv_shape_finish, so its outputs are set by hand. */
static struct conv_shape bad_shape(struct conv_shape s)
{
	if (s.stride > 0)
		conv_shape_finish(&s);
	else
		s.h_out = s.w_out = 1;
	return s;
}

static void assert_refused(int rc, const void *out, const struct igs_error *err, const char *what)
{
	ck_assert_msg(rc < 0, "%s: accepted (returned %d)", what, rc);
	ck_assert_msg(err->code == rc, "%s: err.code %d, returned %d", what, err->code, rc);
	ck_assert_msg(err->message[0] != '\0', "%s: no error message", what);
	ck_assert_msg(out == NULL, "%s: *out set on failure", what);
}

START_TEST(test_bad_shapes_refused)
{
	static const struct {
		struct conv_shape s;
		const char *what;
	} bad_weights[] = {
	    {CONV(1, 0, 8, 8, 4, 3, 1, 1), "c_in 0"},
	    {CONV(1, 4, 8, 8, 0, 3, 1, 1), "c_out 0"},
	    {CONV(1, 4, 8, 8, 4, 0, 1, 1), "k 0"},
	    {CONV(1, 4, 8, 8, 4, 3, 0, 1), "stride 0"},
	    {CONV(1, 4, 8, 8, 4, 3, 1, -1), "pad -1"},
	    {CONV(1, 4, 5, 8, 4, 7, 1, 0), "kernel taller than the input"},
	    {CONV(1, 4, 8, 4, 4, 7, 1, 1), "kernel wider than the padded input"},
	    /* (6 - 7) / 2 + 1 is 1 in C's truncating division, but no window
	     * fits: h_out is 0 */
	    {CONV(1, 4, 6, 8, 4, 7, 2, 0), "kernel taller than the input, stride 2"},
	    {CONV(0, 4, 8, 8, 4, 3, 1, 1), "batch 0"},
	    {CONV(1, 4, 0, 8, 4, 3, 1, 1), "h_in 0"},
	    {CONVB(1, 16, 8, 8, 4, 3, 1, 1), "blocked with 4 output channels"},
	    {CONVB(1, 8, 8, 8, 16, 3, 1, 1), "blocked with 8 input channels"},
	};
	/* enough for every shape above even if it is not checked first */
	float *w = frandom(4096, 0.1f), *bias = frandom(64, 0.1f);
	for (size_t t = 0; t < sizeof bad_weights / sizeof bad_weights[0]; t++) {
		struct conv_shape s = bad_shape(bad_weights[t].s);
		struct conv_weights *cw = NULL;
		struct igs_error err = {0};
		char what[120];
		snprintf(what, sizeof what, "conv_weights_open, %s", bad_weights[t].what);
		assert_refused(conv_weights_open(&cw, w, bias, &s, 0, arith, &err), cw, &err, what);
		/* and without an error to fill */
		ck_assert_int_lt(conv_weights_open(&cw, w, bias, &s, 0, arith, NULL), 0);
		ck_assert_ptr_null(cw);
	}
	/* a backward epilogue for a kernel that takes none, or unknown flags */
	const struct {
		struct conv_shape s;
		unsigned backward;
	} bad_epilogues[] = {
	    {CONV(1, 16, 8, 8, 16, 3, 1, 1), CONV_BACKWARD_ADD},
	    {CONV(1, 16, 8, 8, 32, 1, 2, 0), CONV_BACKWARD_MASK},
	    {CONV(1, 16, 8, 8, 32, 1, 1, 0), CONV_RELU},
	};
	for (size_t t = 0; t < sizeof bad_epilogues / sizeof bad_epilogues[0]; t++) {
		struct conv_shape s = bad_epilogues[t].s;
		conv_shape_finish(&s);
		struct conv_weights *cw = NULL;
		struct igs_error err = {0};
		assert_refused(
		    conv_weights_open(&cw, w, bias, &s, bad_epilogues[t].backward, arith, &err), cw,
		    &err, "conv_weights_open with a backward epilogue it cannot take");
	}

	/* Plans: good weights, then shapes that are no convolution or not
	 * this one's. */
	struct conv_shape good = CONV(1, 4, 8, 8, 6, 3, 2, 1);
	conv_shape_finish(&good);
	struct conv_weights *cw = weights_ok(w, bias, &good);
	struct {
		struct conv_shape s;
		const char *what;
	} bad_plans[] = {
	    {good, "batch 0"},
	    {good, "h_in 0"},
	    {good, "w_in 0"},
	    {good, "c_in 5 against weights of 4"},
	    {good, "c_out 7 against 6"},
	    {good, "k 5 against 3"},
	    {good, "stride 1 against 2"},
	    {good, "pad 0 against 1"},
	};
	bad_plans[0].s.n = 0;
	bad_plans[1].s.h_in = 0;
	bad_plans[2].s.w_in = 0;
	bad_plans[3].s.c_in = 5;
	bad_plans[4].s.c_out = 7;
	bad_plans[5].s.k = 5;
	bad_plans[6].s.stride = 1;
	bad_plans[7].s.pad = 0;
	for (size_t t = 0; t < sizeof bad_plans / sizeof bad_plans[0]; t++) {
		struct conv_shape s = bad_shape(bad_plans[t].s);
		struct conv_plan *p = NULL;
		struct igs_error err = {0};
		char what[120];
		snprintf(what, sizeof what, "conv_plan_open, %s", bad_plans[t].what);
		assert_refused(conv_plan_open(&p, cw, &s, 0, &err), p, &err, what);
		ck_assert_int_lt(conv_plan_open(&p, cw, &s, 0, NULL), 0);
		ck_assert_ptr_null(p);
	}

	/* unpadded 5x5 weights, then a plan on an image smaller than the kernel
	 * (h_out -1, then w_out 0) */
	struct conv_shape k5 = CONV(1, 4, 8, 8, 6, 5, 1, 0);
	conv_shape_finish(&k5);
	struct conv_weights *cw5 = weights_ok(w, bias, &k5);
	for (int t = 0; t < 2; t++) {
		struct conv_shape s = k5;
		if (t)
			s.w_in = 4;
		else
			s.h_in = 3;
		conv_shape_finish(&s);
		struct conv_plan *p = NULL;
		struct igs_error err = {0};
		assert_refused(conv_plan_open(&p, cw5, &s, 0, &err), p, &err,
		               t ? "conv_plan_open, k 5 on 8 x 4"
		                 : "conv_plan_open, k 5 on 3 x 8");
	}
	conv_weights_close(&cw5);

	/* freeing nothing is fine */
	struct conv_plan *p = NULL;
	conv_weights_close(&cw);
	ck_assert_ptr_null(cw);
	conv_weights_close(&cw);
	conv_plan_close(&p);
	ck_assert_ptr_null(p);
	free(w), free(bias);
}
END_TEST

/* 1x1 stride-1 plans run their backward as a forward convolution with the
 * CONV_BACKWARD_* epilogue: d_in = mask ? conv^T(d_out) + d_in : 0, against
 * the transposed loop; other kernels refuse the epilogue. */
START_TEST(test_backward_epilogue)
{
	const struct conv_shape shapes[] = {
	    CONV(2, 24, 7, 9, 40, 1, 1, 0),
	    CONVB(3, 32, 6, 5, 64, 1, 1, 0),
	    CONVB(1, 64, 14, 14, 16, 1, 1, 0),
	};
	for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
		struct conv_shape s = shapes[t];
		conv_shape_finish(&s);
		size_t n_in = in_count(&s), n_out = out_count(&s);
		float *w = random_weights(&s), *d_out = frandom(n_out, 1.0f);
		float *prior = frandom(n_in, 1.0f), *d_in = outalloc(n_in);
		double *ref = dalloc(n_in);
		uint8_t *mask = malloc(n_in);
		for (size_t i = 0; i < n_in; i++)
			mask[i] = frand() > 0.0f;
		struct conv_weights *cw = weights_ok(w, NULL, &s);
		ck_assert(conv_weights_fuse_backward(cw));
		naive_backward(ref, d_out, w, &s);
		const unsigned epis[] = {CONV_BACKWARD_ADD, CONV_BACKWARD_MASK,
		                         CONV_BACKWARD_ADD | CONV_BACKWARD_MASK};
		for (size_t e = 0; e < 3; e++) {
			struct conv_plan *p = plan_ok(cw, &s, CONV_RELU | epis[e]);
			void *scratch = scratch_alloc(p);
			memcpy(d_in, prior, n_in * sizeof(float));
			bool add = epis[e] & CONV_BACKWARD_ADD,
			     masked = epis[e] & CONV_BACKWARD_MASK;
			run_backward_masked(p, &s, d_in, d_out, masked ? mask : NULL, scratch);
			double *want = dalloc(n_in);
			for (size_t i = 0; i < n_in; i++)
				want[i] =
				    masked && !mask[i] ? 0.0 : ref[i] + (add ? prior[i] : 0.0);
			char what[160], tag[64];
			snprintf(tag, sizeof tag, "backward epilogue add %d mask %d", add, masked);
			describe(what, sizeof what, &s, tag);
			assert_close(d_in, want, n_in, 1e-5, what);
			for (size_t i = 0; masked && i < n_in; i++)
				ck_assert_msg(mask[i] || d_in[i] == 0.0f, "%s: %zu not masked",
				              what, i);
			assert_guard(d_in, n_in, what);
			free(want), free(scratch);
			conv_plan_close(&p);
		}
		conv_weights_close(&cw);
		free(w), free(d_out), free(prior), free(d_in), free(ref), free(mask);
	}

	/* 3x3 and strided 1x1 backwards are no forward convolution */
	const struct conv_shape others[] = {CONVB(1, 16, 8, 8, 16, 3, 1, 1),
	                                    CONV(1, 16, 8, 8, 16, 3, 2, 1),
	                                    CONV(1, 16, 8, 8, 32, 1, 2, 0)};
	for (size_t t = 0; t < sizeof others / sizeof others[0]; t++) {
		struct conv_shape s = others[t];
		conv_shape_finish(&s);
		float *w = random_weights(&s);
		struct conv_weights *cw = weights_ok(w, NULL, &s);
		ck_assert(!conv_weights_fuse_backward(cw));
		struct conv_plan *p = NULL;
		struct igs_error err = {0};
		assert_refused(conv_plan_open(&p, cw, &s, CONV_BACKWARD_ADD, &err), p, &err,
		               "backward epilogue on a kernel without one");
		conv_weights_close(&cw);
		free(w);
	}
}
END_TEST

/*
 * Plans that want the weights in another layout (another epilogue, another
 * batch) share one copy, kept with the weights: however many plans, the
 * weights grow by one copy per layout; weights packed for the epilogue need
 * none for it.
 */
START_TEST(test_other_layouts_shared)
{
	struct conv_shape s = CONV(4, 48, 14, 14, 192, 1, 1, 0);
	conv_shape_finish(&s);
	const unsigned entry = CONV_BACKWARD_ADD | CONV_BACKWARD_MASK;
	float *w = random_weights(&s);
	struct conv_weights *cw = weights_ok(w, NULL, &s);
	const size_t before = conv_weights_bytes(cw);
	struct conv_plan *plans[3];
	for (int i = 0; i < 3; i++) {
		struct conv_shape t = s;
		t.n = i == 1 ? 1 : 4;
		plans[i] = plan_ok(cw, &t, entry);
	}
	const size_t other = conv_plan_other_layout_bytes(plans[0]);
	ck_assert_uint_eq(conv_plan_other_layout_bytes(plans[2]), other);
	const size_t grown = conv_weights_bytes(cw) - before;
	ck_assert_msg(grown == other + conv_plan_other_layout_bytes(plans[1]) || grown == other,
	              "weights grew by %zu for copies of %zu and %zu bytes", grown, other,
	              conv_plan_other_layout_bytes(plans[1]));
	for (int i = 0; i < 3; i++)
		conv_plan_close(&plans[i]);
	conv_weights_close(&cw);

	cw = weights_for_epilogue(w, NULL, &s, entry);
	struct conv_plan *p = plan_ok(cw, &s, entry);
	ck_assert_uint_eq(conv_plan_other_layout_bytes(p), 0);
	conv_plan_close(&p);
	conv_weights_close(&cw);
	free(w);
}
END_TEST

/* On AVX-512 (where oneDNN has it) a blocked 3x3 stride-1 layer runs both
 * directions by Winograd from 14x14 outputs up; 7x7 ones and NHWC ones run
 * directly.  The weights packed for a batch of 4
 * serve a batch of 1 unless oneDNN has no kernel for their layout there. */
START_TEST(test_winograd_chosen)
{
	if (!strstr(conv_backend(), "avx512"))
		return; /* oneDNN's Winograd is AVX-512 only: direct is right here */
	const struct {
		struct conv_shape s;
		bool fwd, bwd;
	} cases[] = {
	    {CONVB(4, 16, 28, 28, 16, 3, 1, 1), true, true},
	    {CONVB(4, 32, 14, 14, 16, 3, 1, 1), true, true},
	    {CONVB(4, 16, 7, 7, 16, 3, 1, 1), false, false},
	    {CONV(4, 16, 28, 28, 16, 3, 1, 1), false, false},
	};
	for (int t = 0; t < 4; t++) {
		struct conv_shape s = cases[t].s;
		conv_shape_finish(&s);
		float *w = random_weights(&s);
		struct conv_weights *cw = weights_ok(w, NULL, &s);
		for (int n = 4; n >= 1; n -= 3) {
			s.n = n;
			struct conv_plan *p = plan_ok(cw, &s, CONV_RELU);
			bool fwd = strstr(conv_plan_forward_impl(p), "wino") != NULL;
			bool bwd = strstr(conv_plan_backward_impl(p), "wino") != NULL;
			ck_assert_msg(fwd == cases[t].fwd && bwd == cases[t].bwd,
			              "case %d batch %d: forward %s, backward %s", t, n,
			              conv_plan_forward_impl(p), conv_plan_backward_impl(p));
			if (n == 4)
				ck_assert_uint_eq(conv_plan_other_layout_bytes(p), 0);
			conv_plan_close(&p);
		}
		conv_weights_close(&cw);
		free(w);
	}
}
END_TEST

static void queries_case(int t)
{
	struct conv_shape s = conv_case(t);
	float *w = random_weights(&s);
	struct conv_weights *cw = weights_ok(w, NULL, &s);
	/* both layouts hold every weight */
	ck_assert_uint_ge(conv_weights_bytes(cw), w_count(&s) * sizeof(float));
	struct conv_plan *p = plan_ok(cw, &s, CONV_RELU);
	const char *fwd = conv_plan_forward_impl(p), *bwd = conv_plan_backward_impl(p);
	ck_assert_ptr_nonnull(fwd);
	ck_assert_ptr_nonnull(bwd);
	ck_assert_msg(fwd[0] != '\0', "case %d: empty forward impl name", t);
	ck_assert_msg(bwd[0] != '\0', "case %d: empty backward impl name", t);
	conv_plan_close(&p);
	conv_weights_close(&cw);
	free(w);
}

START_TEST(test_queries)
{
	for (int t = 0; t < N_CONV_CASES; t++)
		queries_case(t);
}
END_TEST

/*
 * The ReLU masks a plan takes as it reads its source (conv_plan_forward_mask,
 * conv_plan_backward_data_masked) against the separate passes: the same
 * bits, and bit for bit the same outputs as the plan on the masked input.
 * Channels on and off the 16 grid (the split's vector and scalar paths), a
 * subsampled convolution (whose source is gathered first), NHWC shapes.
 */
START_TEST(test_masks_in_the_read)
{
	const struct conv_shape shapes[] = {
	    CONV(2, 32, 7, 9, 48, 1, 1, 0),
	    CONV(3, 24, 9, 7, 40, 3, 1, 1),
	    CONV(2, 16, 7, 10, 32, 1, 2, 0),
	};
	for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
		struct conv_shape s = shapes[t];
		conv_shape_finish(&s);
		const size_t n_in = in_count(&s), n_out = out_count(&s);
		float *w = random_weights(&s), *x = frandom(n_in, 1.0f), *g = frandom(n_out, 1.0f);
		struct conv_weights *cw = weights_ok(w, NULL, &s);
		struct conv_plan *p = plan_ok(cw, &s, 0);
		void *scratch = scratch_alloc(p);
		char what[160];
		describe(what, sizeof what, &s, "masks in the read");

		/* forward: in's bits, and the plain forward's output */
		uint8_t *bits = malloc((n_in + 7) / 8), *want_bits = malloc((n_in + 7) / 8);
		float *out = outalloc(n_out), *want = outalloc(n_out);
		relu_mask_bits(want_bits, x, n_in);
		conv_plan_forward(p, want, x, scratch);
		conv_plan_forward_mask(p, out, x, bits, scratch);
		ck_assert_msg(!memcmp(bits, want_bits, (n_in + 7) / 8), "%s: forward bits", what);
		ck_assert_msg(!memcmp(out, want, n_out * sizeof(float)), "%s: forward", what);
		assert_guard(out, n_out, what);

		/* backward: the gradient through the mask first */
		uint8_t *g_bits = malloc((n_out + 7) / 8);
		float *y = frandom(n_out, 1.0f);
		relu_mask_bits(g_bits, y, n_out);
		float *masked = malloc(n_out * sizeof(float)),
		      *g_copy = malloc(n_out * sizeof(float));
		memcpy(masked, g, n_out * sizeof(float));
		relu_backward_bits(masked, g_bits, n_out);
		memcpy(g_copy, g, n_out * sizeof(float));
		float *d_in = outalloc(n_in), *want_in = outalloc(n_in);
		conv_plan_backward_data(p, want_in, masked, NULL, scratch);
		conv_plan_backward_data_masked(p, d_in, g_copy, g_bits, NULL, scratch);
		ck_assert_msg(!memcmp(d_in, want_in, n_in * sizeof(float)), "%s: backward", what);
		assert_guard(d_in, n_in, what);

		conv_plan_close(&p);
		conv_weights_close(&cw);
		free(w), free(x), free(g), free(y), free(bits), free(want_bits), free(out),
		    free(want);
		free(g_bits), free(masked), free(g_copy), free(d_in), free(want_in), free(scratch);
	}
}
END_TEST

/* ------------------------------------------------------------ split bf16 */

/* x rounded to bfloat16's 8 significant bits, ties to even: written apart
 * from conv.c's bit manipulation, by frexp and nearbyint. */
static double to_bf16(double x)
{
	if (x == 0.0)
		return 0.0;
	int e;
	const double m = frexp(x, &e); /* x = m 2^e, 0.5 <= |m| < 1 */
	return ldexp(nearbyint(ldexp(m, 8)), e - 8);
}

/* hi and lo parts of every value: v = hi + lo + (what bf16x3 drops) */
static void split_parts(const float *v, size_t count, float *hi, float *lo)
{
	for (size_t i = 0; i < count; i++) {
		hi[i] = (float)to_bf16(v[i]);
		lo[i] = (float)to_bf16((double)v[i] - hi[i]);
	}
}

/*
 * A split bf16 plan computes exactly hi(x) hi(w) + lo(x) hi(w) + hi(x) lo(w)
 * summed in float32: against that sum taken in double (three naive loops),
 * within float32 summation; against the float32 convolution it differs by
 * the dropped terms (nonzero, below 1e-5 of the largest output).  Its
 * kernels are AMX ones.  Forward and backward, 1x1, 3x3, strided.
 */
START_TEST(test_split_bf16_products)
{
	const struct conv_shape shapes[] = {
	    CONV(2, 24, 7, 9, 40, 1, 1, 0),
	    CONV(3, 64, 9, 7, 32, 3, 1, 1),
	    CONV(1, 64, 10, 9, 64, 3, 2, 1),
	    CONV(3, 16, 7, 10, 32, 1, 2, 0),
	};
	ck_assert_str_eq(conv_precision_name(arith), "bf16x3");
	for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
		struct conv_shape s = shapes[t];
		conv_shape_finish(&s);
		const size_t n_in = in_count(&s), n_out = out_count(&s), n_w = w_count(&s);
		float *w = random_weights(&s), *x = frandom(n_in, 1.0f), *g = frandom(n_out, 1.0f);
		float *x_hi = malloc(n_in * sizeof(float)), *x_lo = malloc(n_in * sizeof(float));
		float *w_hi = malloc(n_w * sizeof(float)), *w_lo = malloc(n_w * sizeof(float));
		float *g_hi = malloc(n_out * sizeof(float)), *g_lo = malloc(n_out * sizeof(float));
		split_parts(x, n_in, x_hi, x_lo);
		split_parts(w, n_w, w_hi, w_lo);
		split_parts(g, n_out, g_hi, g_lo);
		struct conv_weights *cw = weights_ok(w, NULL, &s);
		struct conv_plan *p = plan_ok(cw, &s, 0);
		char what[160];
		describe(what, sizeof what, &s, "split bf16");
		ck_assert_msg(strstr(conv_plan_forward_impl(p), "amx"), "%s: forward on %s", what,
		              conv_plan_forward_impl(p));
		void *scratch = scratch_alloc(p);

		/* forward */
		double *want = dalloc(n_out), *part = dalloc(n_out), *exact = dalloc(n_out);
		naive_forward(want, x_hi, w_hi, NULL, NULL, false, &s);
		naive_forward(part, x_lo, w_hi, NULL, NULL, false, &s);
		for (size_t i = 0; i < n_out; i++)
			want[i] += part[i];
		naive_forward(part, x_hi, w_lo, NULL, NULL, false, &s);
		for (size_t i = 0; i < n_out; i++)
			want[i] += part[i];
		naive_forward(exact, x, w, NULL, NULL, false, &s);
		float *out = outalloc(n_out);
		run_forward(p, &s, out, x, scratch);
		assert_close(out, want, n_out, 1e-6, what);
		double dropped = 0, scale = 0;
		for (size_t i = 0; i < n_out; i++) {
			dropped = fmax(dropped, fabs(out[i] - exact[i]));
			scale = fmax(scale, fabs(exact[i]));
		}
		ck_assert_msg(dropped > 0 && dropped <= 1e-5 * scale,
		              "%s: forward %g from float32's (largest %g)", what, dropped, scale);
		assert_guard(out, n_out, what);

		/* backward: the transposed products, the same three */
		double *want_b = dalloc(n_in), *part_b = dalloc(n_in);
		const bool same_size = s.stride == 1;
		naive_backward(want_b, g_hi, w_hi, &s);
		naive_backward(part_b, g_lo, w_hi, &s);
		for (size_t i = 0; i < n_in; i++)
			want_b[i] += part_b[i];
		naive_backward(part_b, g_hi, w_lo, &s);
		for (size_t i = 0; i < n_in; i++)
			want_b[i] += part_b[i];
		float *d_in = outalloc(n_in);
		run_backward(p, &s, d_in, g, scratch);
		if (same_size || s.k == 1) {
			ck_assert_msg(strstr(conv_plan_backward_impl(p), "amx"),
			              "%s: backward on %s", what, conv_plan_backward_impl(p));
			assert_close(d_in, want_b, n_in, 1e-6, what);
		} else {
			/* a strided 3x3's backward is oneDNN's float32 backward_data */
			naive_backward(want_b, g, w, &s);
			assert_close(d_in, want_b, n_in, 1e-6, what);
		}
		assert_guard(d_in, n_in, what);
		conv_plan_close(&p);
		conv_weights_close(&cw);
		free(w), free(x), free(g), free(x_hi), free(x_lo), free(w_hi), free(w_lo);
		free(g_hi), free(g_lo), free(want), free(part), free(exact), free(out);
		free(want_b), free(part_b), free(d_in), free(scratch);
	}
}
END_TEST

static void reseed_fp32(void)
{
	reseed();
	arith = CONV_PRECISION_FP32;
}

static void reseed_bf16x3(void)
{
	reseed();
	arith = CONV_PRECISION_BF16X3;
}

/* The tests that take whichever arithmetic the case sets. */
static void add_arithmetic_tests(TCase *tc)
{
	tcase_add_test(tc, test_forward_matches_direct_loop);
	tcase_add_test(tc, test_backward_matches_transposed_loop);
	tcase_add_test(tc, test_adjoint_identity);
	tcase_add_test(tc, test_plan_for_other_shape);
	tcase_add_test(tc, test_two_threads_match_one);
	tcase_add_test(tc, test_scratch_and_caller_weights);
	tcase_add_test(tc, test_queries);
	tcase_add_test(tc, test_backward_epilogue);
	tcase_add_test(tc, test_other_layouts_shared);
	tcase_add_test(tc, test_masks_in_the_read);
}

int main(void)
{
	Suite *s = suite_create("conv");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, reseed_fp32, NULL);
	tcase_add_test(tc, test_shape_finish);
	add_arithmetic_tests(tc);
	tcase_add_test(tc, test_bad_shapes_refused);
	tcase_add_test(tc, test_winograd_chosen);
	suite_add_tcase(s, tc);
	struct igs_error err = {0};
	enum conv_precision resolved;
	if (conv_precision_resolve(CONV_PRECISION_BF16X3, &resolved, &err) == 0) {
		TCase *split = tcase_create("bf16x3");
		tcase_add_checked_fixture(split, reseed_bf16x3, NULL);
		add_arithmetic_tests(split);
		tcase_add_test(split, test_split_bf16_products);
		suite_add_tcase(s, split);
	} else {
		printf("test_conv: split bf16 not tested here: %s\n", err.message);
	}
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
