/*
 * model.c - a resident ResNet: opened from its weights file by the reader
 * for its format (model_safetensors.c, model_tfbundle.c), then described, counted and its
 * convolutions packed for the backend (conv.h); read-only afterwards.
 */
#include "model_internal.h"

#include <math.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "tfbundle.h"

static void conv_clear(struct conv_params *c)
{
	free(c->weight);
	free(c->bias);
	conv_weights_close(&c->packed);
	c->weight = c->bias = NULL;
}

static void affine_clear(struct affine_params *a)
{
	free(a->scale);
	free(a->shift);
	a->scale = a->shift = NULL;
}

static size_t conv_param_count(const struct conv_params *c)
{
	return (size_t)c->c_out * c->c_in * c->k * c->k + (c->bias ? (size_t)c->c_out : 0);
}

static void describe_architecture(struct model *m)
{
	struct model_info *info = &m->info;
	static const int standard_blocks[6][4] = {{2, 2, 2, 2},  {3, 4, 6, 3},  {3, 4, 6, 3},
	                                          {3, 4, 23, 3}, {3, 8, 36, 3}, {3, 24, 36, 3}};
	static const int standard_depth[6] = {18, 34, 50, 101, 152, 200};
	int total = 0;
	for (int s = 0; s < info->stages; s++)
		total += info->blocks[s];
	info->depth = total * (info->block == BLOCK_BOTTLENECK ? 3 : 2) + 2;

	const int expansion = info->block == BLOCK_BOTTLENECK ? 4 : 1;
	bool standard = info->stages == 4 && info->stem_width == 64;
	for (int s = 0; standard && s < 4; s++)
		standard = info->widths[s] == (64 << s) * expansion;
	bool known = false;
	for (int d = 0; standard && d < 6; d++) {
		if (standard_depth[d] != info->depth)
			continue;
		known = !memcmp(info->blocks, standard_blocks[d], sizeof standard_blocks[d]);
		if (standard_depth[d] == 34 && info->block != BLOCK_BASIC)
			known = false;
	}
	const char *base = info->family == FAMILY_TORCHVISION  ? "resnet"
	                   : info->family == FAMILY_TENSORFLOW ? "resnet_v2_"
	                                                       : "resnetv2_";
	if (known)
		snprintf(info->arch, sizeof info->arch, "%s%d", base, info->depth);
	else
		snprintf(info->arch, sizeof info->arch, "%s%d-custom", base, info->depth);
}

/* ===== packing ============================================================ */

/* The batch the packed weights' layouts are chosen for: attribution's
 * batch of path points (service.c's cap), where the time goes.  Plans for
 * other batches use the same layouts where oneDNN has a kernel for them. */
enum { PACK_BATCH = 4 };

/*
 * Hand one convolution to the backend (conv.h), which keeps its own copy of
 * the weights in the layouts its kernels want; the plain copy is dropped.
 * `h` is the side of the convolution's input at the default input size.
 */
static int pack_conv(struct conv_params *c, int *h, bool blocked, unsigned backward,
                     enum conv_precision precision, struct igs_error *err)
{
	struct conv_shape s = {.n = PACK_BATCH,
	                       .c_in = c->c_in,
	                       .h_in = *h,
	                       .w_in = *h,
	                       .c_out = c->c_out,
	                       .k = c->k,
	                       .stride = c->stride,
	                       .pad = c->pad,
	                       .blocked = blocked};
	conv_shape_finish(&s);
	int rc = conv_weights_open(&c->packed, c->weight, c->bias, &s, backward, precision, err);
	if (rc < 0)
		return rc;
	free(c->weight);
	free(c->bias);
	c->weight = c->bias = NULL;
	*h = s.h_out;
	return 0;
}

static bool fits_blocks(const struct conv_params *c)
{
	return c->c_in % CONV_BLOCK == 0 && c->c_out % CONV_BLOCK == 0;
}

/* Blocked activations (see struct model) when the CPU suits them and every
 * width allows them. */
static int activation_block(const struct model *m)
{
	if (!conv_blocked_layout_fits(m->info.precision) || m->stem.c_out % CONV_BLOCK)
		return 0;
	for (int b = 0; b < m->n_blocks; b++) {
		const struct block_params *blk = &m->blocks[b];
		for (int i = 0; i < blk->n_convs; i++)
			if (!fits_blocks(&blk->convs[i]))
				return 0;
		if (blk->has_downsample && !fits_blocks(&blk->downsample))
			return 0;
	}
	return CONV_BLOCK;
}

unsigned model_block_entry_backward(const struct model *m, int b)
{
	const struct block_params *blk = &m->blocks[b];
	const struct conv_params *c = &blk->convs[0];
	if (blk->preact || !conv_kernel_fuses_backward(c->k, c->stride, c->pad))
		return 0;
	/* the input came through a ReLU: the previous block's output one */
	const bool masked = b > 0 && m->blocks[b - 1].relu_out;
	return CONV_BACKWARD_ADD | (masked ? CONV_BACKWARD_MASK : 0);
}

/* Pack every convolution, walking the network's geometry at the default
 * size, each for the backward epilogue its plans take. */
static int pack_convs(struct model *m, struct igs_error *err)
{
	int h = m->info.input_size;
	const bool blocked = m->act_block != 0;
	const enum conv_precision p = m->info.precision;
	int rc = pack_conv(&m->stem, &h, false, 0, p, err);
	h = (h + 2 * 1 - 3) / 2 + 1; /* the 3x3 stride-2 max-pool (ceil(h/2), SAME too) */
	for (int b = 0; b < m->n_blocks && rc == 0; b++) {
		struct block_params *blk = &m->blocks[b];
		int ds = h;
		for (int i = 0; i < blk->n_convs && rc == 0; i++)
			rc = pack_conv(&blk->convs[i], &h, blocked,
			               i == 0 ? model_block_entry_backward(m, b) : 0, p, err);
		if (rc == 0 && blk->has_downsample)
			rc = pack_conv(&blk->downsample, &ds, blocked, 0, p, err);
	}
	return rc;
}

/* Name the architecture, count its parameters, choose the activations'
 * layout and pack every convolution. */
static int finish(struct model *m, struct igs_error *err)
{
	struct model_info *info = &m->info;
	describe_architecture(m);
	size_t params = conv_param_count(&m->stem) + (size_t)info->classes * (info->features + 1);
	for (int b = 0; b < m->n_blocks; b++) {
		const struct block_params *blk = &m->blocks[b];
		for (int c = 0; c < blk->n_convs; c++)
			params += conv_param_count(&blk->convs[c]);
		if (blk->has_downsample)
			params += conv_param_count(&blk->downsample);
		if (blk->preact)
			params += 2 * (size_t)blk->norm1.channels;
	}
	if (m->has_final_norm)
		params += 2 * (size_t)m->final_norm.channels;
	info->parameters = params;
	m->act_block = activation_block(m);
	return pack_convs(m, err);
}

int model_open(struct model **out, const char *path, const struct model_options *opt,
               struct igs_error *err)
{
	*out = NULL;
	enum conv_precision precision;
	int rc =
	    conv_precision_resolve(opt ? opt->precision : CONV_PRECISION_AUTO, &precision, err);
	if (rc < 0)
		return rc;
	struct model *m = calloc(1, sizeof *m);
	if (!m)
		return igs_fail(err, IGS_ERR_NOMEM, "%s: out of memory", path);
	m->info.precision = precision;
	rc = tfbundle_is_checkpoint(path) ? model_read_tfbundle(m, path, err)
	                                  : model_read_safetensors(m, path, err);
	if (rc == 0)
		rc = finish(m, err);
	if (rc < 0) {
		model_close(&m);
		return rc;
	}
#ifdef __GLIBC__
	/* Loading freed tens of MB of transient copies (tensors as read,
	 * transposed kernels) that glibc keeps in the heap; hand them back so
	 * the resident size is the model's. */
	malloc_trim(0);
#endif
	*out = m;
	return 0;
}

/* ===== public ============================================================= */

void model_close(struct model **mp)
{
	struct model *m = *mp;
	if (!m)
		return;
	conv_clear(&m->stem);
	for (int b = 0; m->blocks && b < m->n_blocks; b++) {
		struct block_params *blk = &m->blocks[b];
		affine_clear(&blk->norm1);
		for (int c = 0; c < 3; c++)
			conv_clear(&blk->convs[c]);
		conv_clear(&blk->downsample);
	}
	free(m->blocks);
	affine_clear(&m->final_norm);
	free(m->fc_weight);
	free(m->fc_bias);
	free(m);
	*mp = NULL;
}

const struct model_info *model_get_info(const struct model *m)
{
	return &m->info;
}

int model_set_input_size(struct model *m, int size, struct igs_error *err)
{
	if (size < 32 || size > 4096)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "input size must be 32..4096, got %d",
		                size);
	m->info.input_size = size;
	return 0;
}

int model_set_normalization(struct model *m, const float mean[3], const float std[3],
                            struct igs_error *err)
{
	for (int c = 0; c < 3; c++) {
		if (!isfinite(mean[c]) || !isfinite(std[c]) || !(std[c] > 0))
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "normalization needs finite means and positive stds");
	}
	memcpy(m->info.mean, mean, 3 * sizeof(float));
	memcpy(m->info.std, std, 3 * sizeof(float));
	return 0;
}
