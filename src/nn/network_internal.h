/*
 * network_internal.h - the workspace as network_workspace.c lays it out and
 * network.c's passes use it (model.h is the interface).
 */
#ifndef IGSERVE_NETWORK_INTERNAL_H
#define IGSERVE_NETWORK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "conv.h"
#include "layers.h"
#include "model_internal.h"

/* Rotating activation buffers: the most one block needs.  A block takes its
 * input, its output, two hidden ones and, with pre-activation (ResNetV2),
 * one for relu(norm1(x)); the backward pass the same count. */
enum { N_ACT = 5 };

/* The convolution plans of one batch size, in the order net_conv_index() gives. */
struct batch_plans {
	struct conv_plan **convs;
};

/* Masks are 1 where the ReLU let its input through. */
struct block_buffers {
	uint8_t *preact_mask;    /* relu(norm1(x)) > 0, preact blocks only */
	uint8_t *hidden_mask[2]; /* outputs of convs[0..n_convs-2] > 0, as bits */
	uint8_t *out_mask;       /* block output > 0, when the block ends in a ReLU, as bits */
	struct conv_shape convs[3];
	struct conv_shape downsample;
};

/* Constant images whose logits a workspace keeps: gray, black, white. */
enum { N_CONSTANT = 3 };

struct net_workspace {
	const struct model *model;
	int max_batch, n; /* n: batch of the last forward */
	bool masks_kept;  /* the last forward kept what net_backward needs */
	int size;         /* input size the workspace was laid out for */
	int threads;      /* OpenMP threads every pass runs on */
	void (*yield)(void *ctx); /* between blocks (net_workspace_set_yield) */
	void *yield_ctx;
	float *arena;
	size_t arena_floats;
	int32_t *argmax;

	float *input; /* [n][S][S][3] normalized */
	struct conv_shape stem;
	struct maxpool_shape pool;
	/* Path points: the stem's pre-activation output for one image at the
	 * baseline and at the input (net_path_start), and the stem plan that
	 * computes them (no ReLU, batch 1). */
	float *path_ends;
	bool path_ready;
	bool on_path; /* the last forward was net_forward_path */
	/* net_backward_path: the stem's output response to raising every
	 * pixel value by one, and the weighted sum of the path's gradients of
	 * the stem's output (one image each). */
	float *path_unit, *path_sum;
	/* net_path_use_sum: the caller's sum that backward_path and
	 * path_gradient use instead of path_sum (NULL: path_sum) */
	float *path_sum_in_use;
	bool unit_ready; /* path_unit holds the response (until the pages go back) */
	struct conv_plan *stem_linear;
	struct block_buffers *blocks;
	uint8_t *head_mask; /* relu(norm(x)) > 0 for ResNetV2; else NULL */
	/* A block output mask as bytes, for the fused backward that takes it
	 * (oneDNN's multiplication post-op); bytes for every block output were
	 * 24 MB at 4 ResNet-50 images, the bits 3. */
	uint8_t *entry_mask;
	int head_hw;
	float *pooled;   /* [n][features] */
	float *d_pooled; /* [n][features] */
	/* activations forward, gradients backward: act[0] and act[1] hold
	 * any activation, the rest (see layout) may be smaller */
	float *act[N_ACT];
	int n_act; /* how many this model uses: N_ACT with pre-activation, else 4 */

	/* net_constant_logits: the logits of constant images, by pixel value */
	struct {
		float value;
		bool ready;
	} constant[N_CONSTANT];
	float *constant_logits; /* [N_CONSTANT][classes] */
	int constant_next;      /* the slot the next new value takes */

	int n_convs;               /* stem + every block conv + downsamples */
	struct batch_plans *plans; /* [max_batch]; index n-1 */
	void *scratch;             /* oneDNN scratch, the largest any plan needs */
	size_t scratch_bytes;
};

bool net_fused_entry(const struct model *m, int b);

int net_conv_index(int block, int which);

enum { DOWNSAMPLE = 3 };

int net_fit_scratch(struct net_workspace *ws, const struct conv_plan *p, struct igs_error *err);

const uint8_t *net_input_mask(const struct net_workspace *ws, int b);

#endif
