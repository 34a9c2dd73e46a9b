/*
 * conv_test_support.h - what the convolution tests (test_conv.c,
 * test_conv_shapes.c, test_conv_bf16.c) share: guarded output buffers,
 * comparisons, the shapes, naive direct and transposed loops, and plans run
 * in the arithmetic a test case sets (`arith`).  Outputs carry a guard zone
 * after their end: oneDNN's JIT kernels are not instrumented, so
 * AddressSanitizer alone would not see them overrun.  Each test program is
 * one translation unit, so the helpers are static inline here.
 */
#ifndef IGSERVE_CONV_TEST_SUPPORT_H
#define IGSERVE_CONV_TEST_SUPPORT_H

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
static inline float *outalloc(size_t count)
{
	float *p = falloc(count + GUARD);
	for (size_t i = 0; i < count; i++)
		p[i] = NAN;
	for (size_t i = 0; i < GUARD; i++)
		p[count + i] = GUARD_VALUE;
	return p;
}

static inline void assert_guard(const float *p, size_t count, const char *what)
{
	for (size_t i = 0; i < GUARD; i++)
		ck_assert_msg(p[count + i] == GUARD_VALUE, "%s: wrote %zu floats past the end",
		              what, i + 1);
}

/* |got - ref| <= tol * max|ref| everywhere (a NaN fails the comparison);
 * the message names the first element that is off. */
static inline void assert_close(const float *got, const double *ref, size_t count, double tol,
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
static inline void assert_close_f(const float *got, const float *ref, size_t count, double tol,
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
static inline void *scratch_alloc(const struct conv_plan *p)
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

static inline struct conv_shape conv_case(int i)
{
	struct conv_shape s = conv_cases[i];
	conv_shape_finish(&s);
	return s;
}

static inline size_t in_count(const struct conv_shape *s)
{
	return (size_t)s->n * s->h_in * s->w_in * s->c_in;
}

static inline size_t out_count(const struct conv_shape *s)
{
	return (size_t)s->n * s->h_out * s->w_out * s->c_out;
}

static inline size_t w_count(const struct conv_shape *s)
{
	return (size_t)s->c_out * s->c_in * s->k * s->k;
}

static inline size_t in_index(const struct conv_shape *s, int b, int y, int x, int ci)
{
	return (((size_t)b * s->h_in + y) * s->w_in + x) * s->c_in + ci;
}

static inline size_t out_index(const struct conv_shape *s, int b, int y, int x, int co)
{
	return (((size_t)b * s->h_out + y) * s->w_out + x) * s->c_out + co;
}

static inline size_t w_index(const struct conv_shape *s, int co, int ci, int ky, int kx)
{
	return (((size_t)co * s->c_in + ci) * s->k + ky) * s->k + kx;
}

/* Weights scaled like a trained net's (fan-in) so outputs stay O(1). */
static inline float *random_weights(const struct conv_shape *s)
{
	return frandom(w_count(s), 1.7f / sqrtf((float)(s->c_in * s->k * s->k)));
}

/* Direct convolution then the epilogue: residual (the old out) added
 * before the ReLU.  Padding by bounds test. */
static inline void naive_forward(double *out, const float *in, const float *w, const float *bias,
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
static inline void naive_backward(double *d_in, const float *d_out, const float *w,
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

static inline void describe(char *buf, size_t size, const struct conv_shape *s, const char *what)
{
	snprintf(buf, size, "n%d %dx%dx%d -> %d k%d s%d p%d%s: %s", s->n, s->c_in, s->h_in, s->w_in,
	         s->c_out, s->k, s->stride, s->pad, s->blocked ? " blocked" : "", what);
}

/* Weights packed for plans with the CONV_BACKWARD_* epilogue `backward`. */
static inline struct conv_weights *weights_for_epilogue(const float *w, const float *bias,
                                                 const struct conv_shape *s, unsigned backward)
{
	struct conv_weights *cw = NULL;
	struct igs_error err = {0};
	int rc = conv_weights_open(&cw, w, bias, s, backward, arith, &err);
	ck_assert_msg(rc == 0, "conv_weights_open: %d %s", rc, err.message);
	ck_assert_ptr_nonnull(cw);
	return cw;
}

static inline struct conv_weights *weights_ok(const float *w, const float *bias,
                                       const struct conv_shape *s)
{
	return weights_for_epilogue(w, bias, s, 0);
}

static inline struct conv_plan *plan_ok(const struct conv_weights *cw, const struct conv_shape *s,
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
static inline float *blocked_copy(const float *nhwc, int n, int c, int h, int w)
{
	float *t = malloc((size_t)n * c * h * w * sizeof(float));
	ck_assert_ptr_nonnull(t);
	to_blocked(t, nhwc, n, c, h * w, CONV_BLOCK);
	return t;
}

/* conv_plan_forward on NHWC arrays whatever the plan's layout (out holds
 * the residual before the call). */
static inline void run_forward(const struct conv_plan *p, const struct conv_shape *s, float *out,
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
static inline void run_backward_masked(const struct conv_plan *p, const struct conv_shape *s, float *d_in,
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

static inline void run_backward(const struct conv_plan *p, const struct conv_shape *s, float *d_in,
                         const float *d_out, void *scratch)
{
	run_backward_masked(p, s, d_in, d_out, NULL, scratch);
}

/* Forward of `p` (epilogue `epi`) against the naive loop; `res` is what out
 * holds before the call when CONV_ADD_TO_OUT is set.  `scratch` NULL: a
 * fresh one. */
static inline void check_forward(const struct conv_plan *p, const struct conv_shape *s, unsigned epi,
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
static inline void check_backward(const struct conv_plan *p, const struct conv_shape *s,
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

/* ------------------------------------------------------------ refusals */

/* A shape that must be refused; stride 0 would divide by zero in
 * conv_shape_finish, so its outputs are set by hand. */
static inline struct conv_shape bad_shape(struct conv_shape s)
{
	if (s.stride > 0)
		conv_shape_finish(&s);
	else
		s.h_out = s.w_out = 1;
	return s;
}

static inline void assert_refused(int rc, const void *out, const struct igs_error *err, const char *what)
{
	ck_assert_msg(rc < 0, "%s: accepted (returned %d)", what, rc);
	ck_assert_msg(err->code == rc, "%s: err.code %d, returned %d", what, err->code, rc);
	ck_assert_msg(err->message[0] != '\0', "%s: no error message", what);
	ck_assert_msg(out == NULL, "%s: *out set on failure", what);
}

/* ------------------------------------------------- per-case arithmetic */

static inline void reseed_fp32(void)
{
	reseed();
	arith = CONV_PRECISION_FP32;
}

static inline void reseed_bf16x3(void)
{
	reseed();
	arith = CONV_PRECISION_BF16X3;
}


#endif
