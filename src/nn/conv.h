/*
 * conv.h - convolutions, forward and backward to the input, on oneDNN.
 *
 * Activations are NHWC ([n][h][w][c], channels innermost), or blocked
 * ([n][c/16][h][w][16], oneDNN's nChw16c) when the shape says so: the two
 * layouts oneDNN's kernels run at the cores' peak on, and blocked is the one
 * its Winograd kernels take (3x3 stride-1 layers from 14x14 outputs up,
 * both directions, in 0.5-0.8x the direct time; F(2x2,3x3) for forwards of
 * one image, whose weights are half the size).  Strided 1x1 convolutions
 * run as pointwise ones on the pixels they read.
 * Weights come in as PyTorch stores them, [c_out][c_in][k][k], and are
 * reordered once (at model load) into the layouts oneDNN picks for the
 * forward and the backward kernels.  A backward runs as oneDNN's
 * backward_data or, for Winograd and 1x1 stride-1 layers, as the forward
 * of the transposed kernel.
 *
 * A plan is one convolution at one batch size: it holds the two oneDNN
 * primitives (created once; oneDNN JIT-compiles kernels for the exact shape).
 * Plans run on OpenMP threads: a plan uses as many as omp_get_max_threads()
 * returned on the thread that created it, so create and run a plan with the
 * same omp_set_num_threads().  Plans never allocate while running: scratch
 * memory is the caller's (conv_plan_scratch_bytes).  Two threads may run
 * different plans over the same conv_weights at once; one plan is used by
 * one thread at a time.
 */
#ifndef IGSERVE_CONV_H
#define IGSERVE_CONV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct conv_shape {
	int n; /* batch */
	int c_in, h_in, w_in;
	int c_out, k, stride, pad;
	int h_out, w_out; /* (h_in + 2*pad - k) / stride + 1 */
	bool blocked;     /* input and output [n][c/16][h][w][16]; c_in, c_out multiples of 16 */
};

enum { CONV_BLOCK = 16 }; /* channels per block of a blocked activation */

/*
 * The arithmetic of the convolutions, chosen per model (its weights keep
 * what they were made with):
 *   CONV_PRECISION_FP32    float32 products and sums;
 *   CONV_PRECISION_BF16X3  split bfloat16: each float as the sum of two
 *                          bfloat16s, three of the four products taken (the
 *                          one dropped is below 2^-16 of the product) and
 *                          summed in float32, on the CPU's AMX units: logits
 *                          within 5e-6 of float32's, input gradients within
 *                          1e-2 relative L2; faster.  Stem and classifier
 *                          stay float32.
 *   CONV_PRECISION_AUTO    bf16x3 where the CPU has AMX, else fp32 (default).
 */
enum conv_precision { CONV_PRECISION_AUTO, CONV_PRECISION_FP32, CONV_PRECISION_BF16X3 };
/* "auto", "fp32", "bf16x3" <-> enum (-1 when unknown). */
int conv_precision_parse(const char *name);
const char *conv_precision_name(enum conv_precision p);
/* conv_precision_resolve - what `requested` means on this CPU (AUTO becomes
 * FP32 or BF16X3); BF16X3 on a CPU without AMX is IGS_ERR_BAD_OPTION. */
int conv_precision_resolve(enum conv_precision requested, enum conv_precision *resolved,
                           struct igs_error *err);

/* Whether blocked activations suit this CPU and arithmetic: oneDNN's
 * kernels for 16-channel blocks (and its Winograd) are AVX-512 ones; with
 * AVX2 only, NHWC is the layout it runs fast, and so it is for AMX (split
 * bf16). */
bool conv_blocked_layout_fits(enum conv_precision p);

/* Fill h_out and w_out from the other fields. */
void conv_shape_finish(struct conv_shape *s);

/* What the forward pass does after the convolution and the bias, and the
 * backward pass after conv^T (the latter only for weights that
 * conv_weights_fuse_backward). */
enum conv_epilogue {
	CONV_ADD_TO_OUT = 1 << 0,    /* out = conv(in) + bias + out (a residual already in out) */
	CONV_RELU = 1 << 1,          /* then out = max(0, out) */
	CONV_BACKWARD_ADD = 1 << 2,  /* d_in = conv^T(d_out) + d_in (a gradient already in d_in) */
	CONV_BACKWARD_MASK = 1 << 3, /* then d_in = mask ? d_in : 0 (a ReLU's backward) */
};

/*
 * conv_weights_open - reorder one convolution's weights for oneDNN.
 *   weight   [c_out][c_in][k][k], bias [c_out] or NULL (no bias).
 *   shape    a representative shape (the model's input size and usual
 *            batch): oneDNN picks the weight layouts for it;
 *   backward the CONV_BACKWARD_* epilogue its plans will mostly take (0 or
 *            a set conv_kernel_fuses_backward allows): with post-ops
 *            oneDNN may run another kernel on another layout;
 *   precision FP32 or BF16X3 (resolved: conv_precision_resolve).
 * Plans for other shapes or epilogues that want other layouts reorder a
 * copy, kept with the weights and shared (conv_plan_other_layout_bytes).
 * The caller's arrays are copied; they may be freed afterwards.
 */
struct conv_weights;
int conv_weights_open(struct conv_weights **out, const float *weight, const float *bias,
                      const struct conv_shape *shape, unsigned backward,
                      enum conv_precision precision, struct igs_error *err);
void conv_weights_close(struct conv_weights **w);
/* Bytes the reordered weights occupy (both layouts). */
size_t conv_weights_bytes(const struct conv_weights *w);
/* Whether plans of these weights take the CONV_BACKWARD_* epilogues: 1x1
 * stride-1 convolutions, whose backward runs as a forward convolution with
 * the transposed kernel (and oneDNN's post-ops); the same from the kernel's
 * size, stride and padding. */
bool conv_weights_fuse_backward(const struct conv_weights *w);
bool conv_kernel_fuses_backward(int k, int stride, int pad);

/* conv_plan_open - primitives for `shape` (h_out/w_out filled), `epilogue`
 * a set of enum conv_epilogue flags. */
struct conv_plan;
int conv_plan_open(struct conv_plan **out, const struct conv_weights *w,
                     const struct conv_shape *shape, unsigned epilogue, struct igs_error *err);
void conv_plan_close(struct conv_plan **p);

/* Scratch bytes conv_plan_forward/backward_data need (may be 0). */
size_t conv_plan_scratch_bytes(const struct conv_plan *p);

/* Bytes of the weight copy in another layout that this plan runs on (0
 * when it runs on the weights' own layouts).  Such copies belong to the
 * weights (counted by conv_weights_bytes), one per layout, shared by every
 * plan that wants it. */
size_t conv_plan_other_layout_bytes(const struct conv_plan *p);

/*
 * conv_plan_forward - out [n][h_out][w_out][c_out] =
 *     epilogue(conv(in [n][h_in][w_in][c_in], weight) + bias)
 * `scratch` holds at least conv_plan_scratch_bytes, 64-byte aligned.
 */
void conv_plan_forward(const struct conv_plan *p, float *out, const float *in, void *scratch);
/* The same, and the ReLU mask of `in` as bits into in_bits (or NULL):
 * relu_mask_bits (layers.h) of in, taken while the split bf16 source is
 * made from it, else apart. */
void conv_plan_forward_mask(const struct conv_plan *p, float *out, const float *in,
                            uint8_t *in_bits, void *scratch);

/*
 * conv_plan_backward_data - d_in [n][h_in][w_in][c_in] = conv^T(d_out), the
 * gradient of sum(d_out * conv(in)) with respect to in (the forward's
 * epilogue is not in it: the caller masks d_out by its ReLU first), then the
 * plan's CONV_BACKWARD_* epilogue: added to d_in, and masked by `mask`
 * (one byte per value of d_in, same layout; NULL without CONV_BACKWARD_MASK).
 * Without CONV_BACKWARD_ADD it overwrites d_in.
 */
void conv_plan_backward_data(const struct conv_plan *p, float *d_in, const float *d_out,
                             const uint8_t *mask, void *scratch);
/* The same for d_out through its ReLU first: relu_backward_bits (layers.h)
 * by d_out_bits (or NULL), taken while the split bf16 source is made from
 * d_out (d_out then unchanged), else in place on d_out. */
void conv_plan_backward_data_masked(const struct conv_plan *p, float *d_in, float *d_out,
                                    const uint8_t *d_out_bits, const uint8_t *mask, void *scratch);

/*
 * conv_take_failure - IGS_ERR_INTERNAL when a primitive execution failed on
 * the calling thread since the last call, else 0; clears it.  The plans'
 * passes return nothing, so a failure is recorded (and later executions on
 * the thread are skipped) until the network pass that ran them collects it
 * and fails its request instead of the process.
 */
int conv_take_failure(void);

/* For tests: the n-th primitive execution from now on the calling thread
 * fails (n >= 1; 0 cancels). */
void conv_inject_failure(int n);

/* The backend and the instruction set its kernels use, for the startup log:
 * "oneDNN 2.6.3, avx512_core". */
const char *conv_backend(void);

/* Implementation oneDNN chose ("brgconv:avx512_core", ...), for logs and bench. */
const char *conv_plan_forward_impl(const struct conv_plan *p);
const char *conv_plan_backward_impl(const struct conv_plan *p);

#endif
