/*
 * network.c - forward and backward-to-input passes over a loaded model.
 *
 * Activations are NHWC ([N][H][W][C]) up to the stem's max-pool, then
 * blocked ([N][C/16][H][W][16]) when the model's widths, the CPU and the
 * arithmetic allow (model->act_block; split bf16 runs on NHWC), else NHWC
 * again; convolutions run on oneDNN through
 * conv.h, every other layer through layers.h, all on the calling thread's
 * OpenMP team (ws->threads).
 *
 * The backward pass to the input needs no weight gradients, so it needs
 * nothing of the forward's activations but where each ReLU was open and
 * where each max-pool window took its maximum.  The forward pass therefore
 * keeps a mask per ReLU output (one bit; a block output's mask is expanded
 * to bytes when oneDNN multiplies by it in the backward; the stem's ReLU is
 * in the max-pool's argmax instead) and the argmax, and runs its float
 * activations through four or five rotating buffers, which the backward
 * pass then reuses for its gradients.  Path points (IG) can skip the stem
 * convolution, which is affine in the pixels (net_path_start,
 * net_forward_path), and sum their gradients before it (net_backward_path).
 * Everything is carved from one allocation sized at workspace creation for
 * the largest batch (network_workspace.c); convolution plans are created
 * once per batch size, on first use (or by net_workspace_prepare).
 */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memory.h"
#include "network_internal.h"

/* ===== forward ============================================================ */

static const struct conv_plan *plan_of(const struct net_workspace *ws, int index)
{
	return ws->plans[ws->n - 1].convs[index];
}

static void conv_forward(struct net_workspace *ws, int index, float *out, const float *in)
{
	conv_plan_forward(plan_of(ws, index), out, in, ws->scratch);
}

/* The forward that also keeps in's ReLU mask, as bits (NULL: none). */
static void conv_forward_mask(struct net_workspace *ws, int index, float *out, const float *in,
                              uint8_t *in_bits)
{
	conv_plan_forward_mask(plan_of(ws, index), out, in, in_bits, ws->scratch);
}

static void conv_backward(struct net_workspace *ws, int index, float *d_in, const float *d_out,
                          const uint8_t *mask)
{
	conv_plan_backward_data(plan_of(ws, index), d_in, d_out, mask, ws->scratch);
}

/* The backward of d_out through its ReLU first (d_out_bits; NULL: none). */
static void conv_backward_masked(struct net_workspace *ws, int index, float *d_in, float *d_out,
                                 const uint8_t *d_out_bits, const uint8_t *mask)
{
	conv_plan_backward_data_masked(plan_of(ws, index), d_in, d_out, d_out_bits, mask,
	                               ws->scratch);
}

/* Re-derive every shape for batch n (buffers stay where max_batch put them:
 * an [n][H][W][C] tensor with a smaller n fits in the same space). */
static void set_batch(struct net_workspace *ws, int n)
{
	ws->n = n;
	ws->stem.n = n;
	ws->pool.n = n;
	for (int b = 0; b < ws->model->n_blocks; b++) {
		struct block_buffers *bb = &ws->blocks[b];
		for (int i = 0; i < 3; i++)
			bb->convs[i].n = n;
		bb->downsample.n = n;
	}
}

/* The current batch's activation of c channels and hw pixels per image. */
static struct act_shape act_of(const struct net_workspace *ws, int c, int hw)
{
	return (struct act_shape){.n = ws->n, .c = c, .hw = hw, .block = ws->model->act_block};
}

/* Pixels per image of a convolution's input: H*W. */
static int image_pixels_in(const struct conv_shape *s)
{
	return s->h_in * s->w_in;
}

/* Pixels of a convolution's input over the batch: N*H*W. */
static size_t pixels_in(const struct conv_shape *s)
{
	return (size_t)s->n * s->h_in * s->w_in;
}

static size_t count_of(const struct conv_shape *s)
{
	return (size_t)s->c_out * s->n * s->h_out * s->w_out;
}

/*
 * The activation buffers a block uses besides its input act[x]: the
 * output, the two hidden ones and (with pre-activation) the
 * pre-activation, in that order.  Without pre-activation x is 0 or 1, so
 * the hidden ones are act[2] and act[3] (which layout sizes for them).
 */
static void block_buffers_for(const struct net_workspace *ws, int x, int out[4])
{
	for (int i = 0, k = 0; i < ws->n_act; i++)
		if (i != x)
			out[k++] = i;
}

/* Masks (bits) are made only when a backward pass will follow. */
static void keep_mask(uint8_t *bits, const float *x, size_t count, bool keep)
{
	if (keep && bits)
		relu_mask_bits(bits, x, count);
}

/* Block b's output mask is taken by block b + 1's first convolution as it
 * reads its input (conv_forward_mask), which is that output unless block
 * b + 1 pre-activates; the last block's, and those before pre-activated
 * blocks, after the block. */
static bool out_mask_by_next(const struct model *m, int b)
{
	return b + 1 < m->n_blocks && !m->blocks[b + 1].preact;
}

/* The bits convs[i] of block b writes of its input's ReLU mask as it reads
 * it (NULL: none): a hidden activation's, or for the first the previous
 * block's output mask when this block takes it. */
static uint8_t *input_bits(struct net_workspace *ws, int b, int i)
{
	if (i > 0)
		return ws->blocks[b].hidden_mask[i - 1];
	return b > 0 && out_mask_by_next(ws->model, b - 1) ? ws->blocks[b - 1].out_mask : NULL;
}

/* One residual block on act[x]; returns the index of its output buffer. */
static int block_forward(struct net_workspace *ws, int b, int x, bool keep)
{
	const struct block_params *blk = &ws->model->blocks[b];
	struct block_buffers *bb = &ws->blocks[b];
	int use[4];
	block_buffers_for(ws, x, use);
	/* The shortcut goes into the output first and the last conv adds onto
	 * it.  An identity shortcut is the input itself, so the output is
	 * written over the input, which nothing reads after the first conv. */
	const int out_index = blk->has_downsample ? use[0] : x;
	float *in = ws->act[x], *out = ws->act[out_index];
	float *hidden[2] = {ws->act[use[1]], ws->act[use[2]]};
	float *pre = blk->preact ? ws->act[use[3]] : NULL;

	const float *chain_in = in;
	if (blk->preact) {
		const struct act_shape as =
		    act_of(ws, blk->norm1.channels, image_pixels_in(&bb->convs[0]));
		affine_relu_forward(pre, keep ? bb->preact_mask : NULL, in, blk->norm1.scale,
		                    blk->norm1.shift, &as);
		chain_in = pre;
	}
	const size_t out_count = count_of(&bb->convs[blk->n_convs - 1]);
	if (blk->has_downsample)
		conv_forward(ws, net_conv_index(b, DOWNSAMPLE), out, chain_in);

	/* Each convolution takes the ReLU mask of its input as it reads it:
	 * the hidden activations', and the first the previous block's output
	 * mask (out_mask_by_next). */
	const float *h = chain_in;
	for (int i = 0; i < blk->n_convs; i++) {
		bool last = i == blk->n_convs - 1;
		float *dst = last ? out : hidden[i];
		conv_forward_mask(ws, net_conv_index(b, i), dst, h,
		                  keep ? input_bits(ws, b, i) : NULL);
		h = dst;
	}
	if (!out_mask_by_next(ws->model, b))
		keep_mask(bb->out_mask, out, out_count, keep);
	return out_index;
}

/* Everything after the stem convolution, whose output (after its ReLU) is
 * in act[0]; ws->n is the batch. */
static void forward_body(struct net_workspace *ws, float *logits, bool keep)
{
	const struct model *m = ws->model;
	const int n = ws->n;
	/* the stem's ReLU needs no mask: the max-pool's argmax covers it */
	maxpool_forward(ws->act[1], ws->argmax, ws->act[0], &ws->pool);

	int x = 1;
	for (int b = 0; b < m->n_blocks; b++) {
		x = block_forward(ws, b, x, keep);
		if (ws->yield)
			ws->yield(ws->yield_ctx);
	}
	const int C = m->info.features;
	const float *head = ws->act[x];
	const struct act_shape head_shape = act_of(ws, C, ws->head_hw);
	if (m->has_final_norm) {
		float *act = ws->act[(x + 1) % ws->n_act];
		affine_relu_forward(act, keep ? ws->head_mask : NULL, head, m->final_norm.scale,
		                    m->final_norm.shift, &head_shape);
		head = act;
	}
	avgpool_forward(ws->pooled, head, &head_shape);
	linear_forward(logits, ws->pooled, m->fc_weight, m->fc_bias, n, C, m->info.classes);
}

/* Plans for batch n, the shapes set to it; a failure is an igs code. */
static int begin_pass(struct net_workspace *ws, int n, bool keep)
{
	if (n < 1 || n > ws->max_batch || ws->size != ws->model->info.input_size)
		return IGS_ERR_BAD_OPTION;
	int rc = net_workspace_prepare(ws, n, NULL);
	if (rc < 0)
		return rc;
	set_batch(ws, n);
	ws->masks_kept = keep;
	ws->on_path = false;
	return 0;
}

static int forward(struct net_workspace *ws, const float *pixels, int n, float *logits, bool keep)
{
	const struct model *m = ws->model;
	int rc = begin_pass(ws, n, keep);
	if (rc < 0)
		return rc;
	const int S = ws->size;
	normalize_forward(ws->input, pixels, n, S, S, m->info.mean, m->info.std);
	conv_forward(ws, 0, ws->act[0], ws->input);
	forward_body(ws, logits, keep);
	return conv_take_failure();
}

/* Values of one image's stem output. */
static size_t stem_count_per_image(const struct net_workspace *ws)
{
	return (size_t)ws->stem.c_out * ws->stem.h_out * ws->stem.w_out;
}

int net_path_start(struct net_workspace *ws, const float *x, const float *baseline)
{
	const struct model *m = ws->model;
	if (ws->size != m->info.input_size)
		return IGS_ERR_BAD_OPTION;
	omp_set_num_threads(ws->threads);
	ws->path_ready = false;
	ws->on_path = false;
	ws->path_sum_in_use = NULL;
	struct conv_shape one = ws->stem;
	one.n = 1;
	if (!ws->stem_linear) {
		int rc = conv_plan_open(&ws->stem_linear, m->stem.packed, &one, 0, NULL);
		if (rc == 0)
			rc = net_fit_scratch(ws, ws->stem_linear, NULL);
		if (rc < 0)
			return rc;
	}
	const int S = ws->size;
	const size_t count = stem_count_per_image(ws), values = (size_t)3 * S * S;
	const float *ends[2] = {baseline, x};
	for (int i = 0; i < 2; i++) {
		normalize_forward(ws->input, ends[i], 1, S, S, m->info.mean, m->info.std);
		conv_plan_forward(ws->stem_linear, ws->path_ends + i * count, ws->input,
		                  ws->scratch);
	}
	/* The unit response, a property of the model, once per workspace (and
	 * again after its pages went back): the stem is affine, s(p + 1) - s(p)
	 * is the same for every p; taken between normalized inputs 0 and
	 * 255 / (255 std) (pixel steps of 255, exact to float rounding of the
	 * bias) / 255.  path_sum serves as scratch for s(0). */
	if (!ws->unit_ready) {
		memset(ws->input, 0, values * sizeof *ws->input);
		conv_plan_forward(ws->stem_linear, ws->path_sum, ws->input, ws->scratch);
		for (size_t i = 0; i < values; i++)
			ws->input[i] = 1.0f / m->info.std[i % 3];
		conv_plan_forward(ws->stem_linear, ws->path_unit, ws->input, ws->scratch);
		for (size_t j = 0; j < count; j++)
			ws->path_unit[j] = (ws->path_unit[j] - ws->path_sum[j]) / 255.0f;
		ws->unit_ready = true;
	}
	memset(ws->path_sum, 0, count * sizeof *ws->path_sum);
	int rc = conv_take_failure();
	if (rc < 0) {
		ws->unit_ready = false; /* maybe computed from a failed pass */
		return rc;
	}
	ws->path_ready = true;
	return 0;
}

int net_forward_path(struct net_workspace *ws, const float *alpha, int n, float *logits)
{
	if (!ws->path_ready)
		return IGS_ERR_BAD_OPTION;
	int rc = begin_pass(ws, n, true);
	if (rc < 0)
		return rc;
	const size_t count = stem_count_per_image(ws);
	tensor_lerp(ws->act[0], ws->path_ends, ws->path_ends + count, alpha, n, count,
	            ws->model->stem.relu);
	forward_body(ws, logits, true);
	rc = conv_take_failure();
	if (rc < 0)
		return rc;
	ws->on_path = true;
	return 0;
}

int net_forward(struct net_workspace *ws, const float *pixels, int n, float *logits)
{
	return forward(ws, pixels, n, logits, true);
}

int net_infer(struct net_workspace *ws, const float *pixels, int n, float *logits)
{
	return forward(ws, pixels, n, logits, false);
}

int net_constant_logits(struct net_workspace *ws, float value, float *logits)
{
	const int classes = ws->model->info.classes;
	for (int i = 0; i < N_CONSTANT; i++)
		if (ws->constant[i].ready && ws->constant[i].value == value) {
			memcpy(logits, ws->constant_logits + (size_t)i * classes,
			       (size_t)classes * sizeof *logits);
			return 0;
		}
	const size_t values = (size_t)3 * ws->size * ws->size;
	float *pixels = malloc(values * sizeof *pixels);
	if (!pixels)
		return IGS_ERR_NOMEM;
	for (size_t i = 0; i < values; i++)
		pixels[i] = value;
	int rc = net_infer(ws, pixels, 1, logits);
	free(pixels);
	if (rc < 0)
		return rc;
	const int slot = ws->constant_next;
	ws->constant_next = (slot + 1) % N_CONSTANT;
	ws->constant[slot].value = value;
	ws->constant[slot].ready = true;
	memcpy(ws->constant_logits + (size_t)slot * classes, logits,
	       (size_t)classes * sizeof *logits);
	return 0;
}

/* ===== backward =========================================================== */

/*
 * block_backward - the gradient of the block's input, d(block)/dx^T d_out,
 * where d_out already went back through the block's output ReLU.  When x
 * itself came out of a ReLU (x_mask, the previous block's output mask), the
 * gradient goes back through it too, in the same pass as the shortcut's
 * add.  Returns where the gradient is: d_x, or d_out's buffer when the
 * first convolution added onto the identity shortcut's gradient in place
 * (fused_entry).  t1, t2, t3 are scratch (t3 is used, and
 * only there, with pre-activation).
 */
static float *block_backward(struct net_workspace *ws, int b, float *d_out, float *d_x,
                             const uint8_t *x_mask, float *t1, float *t2, float *t3)
{
	const struct block_params *blk = &ws->model->blocks[b];
	struct block_buffers *bb = &ws->blocks[b];
	const int last = blk->n_convs - 1;

	/* Down the conv chain to convs[0]'s output: g is the gradient of
	 * convs[i]'s output before its ReLU's backward (g_bits), which the
	 * next convolution applies as it reads g. */
	float *g = d_out;
	const uint8_t *g_bits = NULL;
	float *bufs[2] = {t1, t2};
	for (int i = last; i > 0; i--) {
		float *dst = bufs[i % 2];
		conv_backward_masked(ws, net_conv_index(b, i), dst, g, g_bits, NULL);
		g = dst;
		g_bits = bb->hidden_mask[i - 1];
	}

	const size_t pixels = pixels_in(&bb->convs[0]), in_count = bb->convs[0].c_in * pixels;
	if (net_fused_entry(ws->model, b)) {
		/* convs[0]'s backward adds onto the shortcut's gradient: d_out
		 * itself (read for the last time here) or the downsample's. */
		float *sum = d_out;
		if (blk->has_downsample) {
			conv_backward(ws, net_conv_index(b, DOWNSAMPLE), d_x, d_out, NULL);
			sum = d_x;
		}
		if (x_mask)
			relu_mask_bits_expand(ws->entry_mask, x_mask, in_count);
		conv_backward_masked(ws, net_conv_index(b, 0), sum, g, g_bits,
		                     x_mask ? ws->entry_mask : NULL);
		return sum;
	}

	float *chain_grad = blk->preact ? t3 : d_x; /* gradient of the chain's input */
	conv_backward_masked(ws, net_conv_index(b, 0), chain_grad, g, g_bits, NULL);
	/* The shortcut's gradient joins the chain's: d_out itself, or the
	 * downsample's (t1 is free again). */
	const float *shortcut_grad = d_out;
	if (blk->has_downsample) {
		conv_backward(ws, net_conv_index(b, DOWNSAMPLE), t1, d_out, NULL);
		shortcut_grad = t1;
	}
	if (blk->preact) {
		/* pre-activation: the downsample reads relu(norm1(x)) too */
		if (blk->has_downsample)
			tensor_add(chain_grad, shortcut_grad, in_count);
		const struct act_shape as =
		    act_of(ws, blk->norm1.channels, image_pixels_in(&bb->convs[0]));
		affine_relu_backward(d_x, chain_grad, bb->preact_mask, blk->norm1.scale, &as, 0);
		if (!blk->has_downsample)
			tensor_add(d_x, shortcut_grad, in_count);
		if (x_mask)
			relu_backward_bits(d_x, x_mask, in_count);
	} else if (x_mask) {
		tensor_add_masked_bits(d_x, shortcut_grad, x_mask, in_count);
	} else {
		tensor_add(d_x, shortcut_grad, in_count);
	}
	return d_x;
}

/*
 * From d_logits back to the max-pool's output: returns the buffer holding
 * that gradient and sets *spare to a free one of the same size.
 */
static float *backward_body(struct net_workspace *ws, const float *d_logits, float **spare_out)
{
	omp_set_num_threads(ws->threads);
	const struct model *m = ws->model;
	const int n = ws->n, C = m->info.features;

	/* The forward's activations are dead: their buffers hold gradients now. */
	linear_backward(ws->d_pooled, d_logits, m->fc_weight, n, C, m->info.classes);
	float *g = ws->act[0], *spare = ws->act[1];
	const struct act_shape head_shape = act_of(ws, C, ws->head_hw);
	avgpool_backward(g, ws->d_pooled, &head_shape);
	if (m->has_final_norm) {
		affine_relu_backward(spare, g, ws->head_mask, m->final_norm.scale, &head_shape, 0);
		float *t = g;
		g = spare;
		spare = t;
	}
	/* Each block's output ReLU: the last one's here, the others' fused
	 * into the next block's backward (x_mask). */
	const struct block_buffers *top = &ws->blocks[m->n_blocks - 1];
	if (top->out_mask)
		relu_backward_bits(g, top->out_mask,
		                   count_of(&top->convs[m->blocks[m->n_blocks - 1].n_convs - 1]));
	for (int b = m->n_blocks - 1; b >= 0; b--) {
		/* act[4] exists (and is needed) only with pre-activation */
		float *d_x = block_backward(ws, b, g, spare, net_input_mask(ws, b), ws->act[2],
		                            ws->act[3], ws->act[4]);
		if (d_x == spare) {
			spare = g;
			g = d_x;
		}
		if (ws->yield)
			ws->yield(ws->yield_ctx);
	}
	*spare_out = spare;
	return g;
}

int net_backward(struct net_workspace *ws, const float *d_logits, float *grad_pixels)
{
	if (ws->n < 1 || !ws->masks_kept)
		return IGS_ERR_BAD_OPTION;
	const struct model *m = ws->model;
	float *spare;
	float *g = backward_body(ws, d_logits, &spare);
	maxpool_backward(spare, g, ws->argmax, &ws->pool);
	conv_backward(ws, 0, g, spare, NULL);
	normalize_backward(grad_pixels, g, ws->n, ws->size, ws->size, m->info.std);
	return conv_take_failure();
}

int net_backward_path(struct net_workspace *ws, const float *d_logits, const float *weight,
                      double *sums)
{
	if (!ws->on_path || !ws->path_ready)
		return IGS_ERR_BAD_OPTION;
	float *spare;
	const float *g = backward_body(ws, d_logits, &spare);
	const float *from = ws->path_ends, *to = from + stem_count_per_image(ws);
	float *sum = ws->path_sum_in_use ? ws->path_sum_in_use : ws->path_sum;
	maxpool_backward_sum(sum, sums, g, ws->argmax, weight, ws->path_unit, from, to, &ws->pool);
	return conv_take_failure();
}

int net_path_gradient(struct net_workspace *ws, float *grad_pixels)
{
	if (!ws->path_ready)
		return IGS_ERR_BAD_OPTION;
	int rc = net_workspace_prepare(ws, 1, NULL);
	if (rc < 0)
		return rc;
	const struct model *m = ws->model;
	const int S = ws->size;
	float *sum = ws->path_sum_in_use ? ws->path_sum_in_use : ws->path_sum;
	conv_plan_backward_data(ws->plans[0].convs[0], ws->input, sum, NULL, ws->scratch);
	normalize_backward(grad_pixels, ws->input, 1, S, S, m->info.std);
	memset(sum, 0, stem_count_per_image(ws) * sizeof *sum);
	return conv_take_failure();
}

size_t net_path_sum_count(const struct net_workspace *ws)
{
	return stem_count_per_image(ws);
}

void net_path_use_sum(struct net_workspace *ws, float *sum)
{
	ws->path_sum_in_use = sum;
}
