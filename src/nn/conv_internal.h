/*
 * conv_internal.h - what the convolution files share (conv.h is the
 * interface):
 *   conv_engine.c   the oneDNN engine, the CPU's instruction set, precision, shape checks
 *   conv_split.c    split bfloat16 sources and weights
 *   conv_desc.c     primitive descriptors: which kernel for which shape
 *   conv_weights.c  weights reordered per layout
 *   conv_plan.c     plans: primitives per batch size, and running them
 */
#ifndef IGSERVE_CONV_INTERNAL_H
#define IGSERVE_CONV_INTERNAL_H

#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conv.h"
#include "error.h"

dnnl_engine_t conv_engine(void);

bool conv_amx_available(void);

int conv_dnnl_fail(struct igs_error *err, dnnl_status_t st, const char *what);

#define TRY(call, what)                                                                            \
	do {                                                                                       \
		dnnl_status_t st_ = (call);                                                        \
		if (st_ != dnnl_success) {                                                         \
			rc = conv_dnnl_fail(err, st_, what);                                       \
			goto out;                                                                  \
		}                                                                                  \
	} while (0)

int conv_check_shape(const struct conv_shape *s, struct igs_error *err);

/* Inputs of at most this many channels have their own backward (narrow_backward). */
enum { NARROW_MAX_C_IN = 4, NARROW_BAND_ROWS = 4 };

/* A split bf16 tensor has three parts per float tensor: [hi | lo | hi]
 * along the channels of each pixel; its weights [W_hi | W_hi | W_lo]. */
enum { SPLIT_PARTS = 3 };

void conv_split_rows_masked(uint16_t *dst, const float *src, size_t rows, int c,
                            const uint8_t *keep, uint8_t *positive, int threads);

void conv_split_weights(uint16_t *dst, const float *w, size_t c_out, size_t k);

/*
 * What a plan runs: a forward_inference convolution, and for the backward
 * pass either oneDNN's backward_data or, with Winograd, a forward_inference
 * of the transposed convolution (see winograd_shape).
 */
struct conv_descs {
	dnnl_primitive_desc_t fwd, bwd;
};

void conv_descs_free(struct conv_descs *d);

/*
 * oneDNN's Winograd F(4x4, 3x3) (jit_wino_4x3, blocked layouts only) runs a
 * 3x3 stride-1 layer in 0.5-0.7x the time of the direct kernels from 14x14
 * outputs up, at batch 1 as at 4, but only as a forward_inference
 * primitive: its training forward and its backward_data are slower (at 7x7
 * by 2x).  The backward of a 3x3 stride-1 pad-1 convolution is itself such
 * a convolution, with the kernel flipped and the channels swapped, so it
 * runs as one.
 *
 * Winograd weights are 4x larger (36 values per 3x3 kernel) and each
 * direction needs its own, so where layers are wide it is spent where it
 * pays most per byte: both directions from 14x14 outputs up (in ResNet-50
 * the 14x14 layers' backward costs 35 MB for 2-3% of an attribution).  The
 * 7x7 layers stay direct: their Winograd weights (38 MB per layer and
 * direction) stream from memory in a pass, and an IG-50 got 5% slower.
 */
enum { WINOGRAD_FORWARD_MIN_PIXELS = 14 * 14, WINOGRAD_BACKWARD_MIN_PIXELS = 14 * 14 };

bool conv_winograd_shape(const struct conv_shape *s, int min_output_pixels);

bool conv_subsampled(const struct conv_shape *s);

struct conv_shape conv_kernel_shape(const struct conv_shape *s);

/* Which kernels a convolution's two passes run (chosen with its weights). */
struct conv_algos {
	bool winograd_fwd; /* the forward by Winograd */
	bool winograd_bwd; /* the backward by Winograd, as the transposed forward */
	bool split;        /* split bf16 (CONV_PRECISION_BF16X3): the forward, and the backward
	                      when it runs as the transposed forward */
};

bool conv_split_shape(const struct conv_shape *s, enum conv_precision p);

bool conv_algos_backward_transposed(const struct conv_algos *a, const struct conv_shape *s);

const dnnl_memory_desc_t *conv_weights_md_of(const_dnnl_primitive_desc_t pd);

const char *conv_impl_name(const_dnnl_primitive_desc_t pd);

int conv_descs_create(struct conv_descs *d, const struct conv_shape *s, bool bias,
                      unsigned epilogue, const struct conv_algos *algos,
                      const dnnl_memory_desc_t *fwd_md, const dnnl_memory_desc_t *bwd_md,
                      struct igs_error *err);

int conv_reorder(const dnnl_memory_desc_t *from_md, const void *from,
                 const dnnl_memory_desc_t *to_md, void *to, struct igs_error *err);

/* Weights in one layout: its descriptor and the reordered values. */
struct packed {
	dnnl_memory_desc_t md;
	float *data;
	size_t bytes;
};

int conv_packed_make(struct packed *p, const dnnl_memory_desc_t *from_md, const void *from,
                     const dnnl_memory_desc_t *to_md, struct igs_error *err);

struct conv_weights {
	int c_in, c_out, k, stride, pad;
	struct conv_algos algos;
	/* The backward runs as the transposed kernel's forward
	 * (algos_backward_transposed); bwd then holds the transposed kernel. */
	bool bwd_transposed;
	struct packed fwd, bwd;
	/* With Winograd only: the plain [c_out][c_in][k][k] weights, since
	 * oneDNN cannot reorder out of a Winograd layout and a plan for another
	 * batch may want another one. */
	float *plain;
	float *bias;   /* [c_out] or NULL */
	float *narrow; /* [c_out][k][k][c_in] when c_in <= NARROW_MAX_C_IN, else NULL */
	struct other_layouts *others;
};

/*
 * Weights in a layout other than fwd's or bwd's, made for the first plan
 * that runs on it (another batch size, an epilogue only another kernel
 * takes) and kept with the weights, so every plan that wants the layout
 * shares one copy: the servers' workspaces prepare batches 1-4 in every
 * worker, and a copy per plan was 120 MB in split bf16's ResNet-50.
 */
struct other_layout {
	struct packed packed;
	bool backward;
	struct other_layout *next;
};

struct other_layouts {
	pthread_mutex_t lock; /* plans are made on the workers' threads */
	struct other_layout *head;
};

int conv_pack_plain(struct packed *fwd, struct packed *bwd, const float *weight, int c_out,
                    int c_in, int k, bool transposed, bool split, const struct conv_descs *d,
                    struct igs_error *err);

#endif
