/*
 * model_internal.h - the resident network as model.c builds it and
 * network.c runs it.  Not part of the public headers.
 *
 * Every BatchNorm that directly follows a convolution is folded into that
 * convolution's weights and bias at load time.  Only pre-activation
 * BatchNorms (timm ResNetV2's norm1 and final norm, whose input also feeds
 * the shortcut) remain as a per-channel scale and shift, fused with ReLU.
 */
#ifndef IGSERVE_MODEL_INTERNAL_H
#define IGSERVE_MODEL_INTERNAL_H

#include <stdbool.h>

#include "conv.h"
#include "model.h"

struct conv_params {
	int c_in, c_out, k, stride, pad;
	float *weight;   /* [c_out][c_in][k][k], owned; NULL once packed */
	float *bias;     /* [c_out], owned; NULL when the conv has none or once packed */
	bool relu;       /* ReLU fused after bias (and residual) */
	struct conv_weights *packed; /* the weights as the convolution backend runs them (conv.h) */
};

struct affine_params {
	int channels;
	float *scale, *shift;  /* owned */
};

/*
 * A residual block: out = [relu](chain(x') + shortcut), where
 *   x' = relu(norm1(x)) for pre-activation blocks, x otherwise;
 *   chain = convs[0] .. convs[n_convs-1], every one but the last with ReLU;
 *   shortcut = downsample(x') when present, else x.
 */
struct block_params {
	bool preact;
	struct affine_params norm1;      /* preact only */
	int n_convs;                     /* 2 (basic) or 3 (bottleneck) */
	struct conv_params convs[3];
	bool has_downsample;
	struct conv_params downsample;
	bool relu_out;                   /* torchvision: ReLU after the add */
};

struct model {
	struct model_info info;
	struct conv_params stem;         /* torchvision: conv1+bn1+relu folded */
	int n_blocks;
	struct block_params *blocks;     /* stage by stage */
	bool pool_same;                  /* TensorFlow: the stem's max-pool pads 'SAME' */
	bool has_final_norm;             /* timm ResNetV2: norm + ReLU before pooling */
	struct affine_params final_norm;
	float *fc_weight;                /* [classes][features] */
	float *fc_bias;                  /* [classes] */
	/* Activations after the stem's max-pool are blocked by this many
	 * channels (conv.h's CONV_BLOCK) when every width is a multiple of it
	 * and conv_blocked_layout_fits(), else NHWC (0). */
	int act_block;
};

/*
 * The CONV_BACKWARD_* epilogue of block b's first convolution: in the
 * backward pass it adds the shortcut's gradient onto its output and applies
 * the ReLU of the block's input (the previous block's output, when that
 * ends in one) itself, one pass less per block.  Where the convolution
 * takes no post-ops (not 1x1 stride 1) or the block pre-activates, 0.
 */
unsigned model_block_entry_backward(const struct model *m, int b);

/*
 * The readers of weight formats.  Each fills an empty model (info.precision
 * set) from one file: info (family, normalization, stages, widths, classes,
 * features, input_size, sha256, path), the stem, the blocks and the head,
 * with every BatchNorm that follows a convolution folded into it; the
 * convolutions still plain (conv_params.weight), model.c packs them.
 * Errors name the file and the problem.
 */
int model_read_safetensors(struct model *m, const char *path, struct igs_error *err);
/* A TensorFlow checkpoint (TensorBundle V2) in the official ResNet v2 layout. */
int model_read_tfbundle(struct model *m, const char *path, struct igs_error *err);

#endif
