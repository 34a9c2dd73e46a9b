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
 * the largest batch; convolution plans are created once per batch size, on
 * first use (or by net_workspace_prepare).
 */
#include "model_internal.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "layers.h"
#include "memory.h"

/* ===== workspace layout =================================================== */

/* Masks are 1 where the ReLU let its input through. */
struct block_buffers {
	uint8_t *preact_mask;    /* relu(norm1(x)) > 0, preact blocks only */
	uint8_t *hidden_mask[2]; /* outputs of convs[0..n_convs-2] > 0, as bits */
	uint8_t *out_mask;       /* block output > 0, when the block ends in a ReLU, as bits */
	struct conv_shape convs[3];
	struct conv_shape downsample;
};

/* Rotating activation buffers: the most one block needs.  A block takes its
 * input, its output, two hidden ones and, with pre-activation (ResNetV2),
 * one for relu(norm1(x)); the backward pass the same count. */
enum { N_ACT = 5 };

/* Constant images whose logits a workspace keeps: gray, black, white. */
enum { N_CONSTANT = 3 };

/* The convolution plans of one batch size, in the order conv_index() gives. */
struct batch_plans {
	struct conv_plan **convs;
};

struct net_workspace {
	const struct model *model;
	int max_batch, n; /* n: batch of the last forward */
	bool masks_kept;  /* the last forward kept what net_backward needs */
	int size;         /* input size the workspace was laid out for */
	int threads;      /* OpenMP threads every pass runs on */
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

/*
 * A layout pass that runs twice: once with base == NULL to count floats,
 * once to hand out pointers.  Keeps the sizes in exactly one place.
 */
struct carver {
	float *base;
	size_t used;
};

static float *carve(struct carver *cv, size_t count)
{
	/* 16-float (64-byte) alignment for every buffer. */
	size_t start = (cv->used + 15) & ~(size_t)15;
	cv->used = start + count;
	return cv->base ? cv->base + start : NULL;
}

static uint8_t *carve_mask(struct carver *cv, size_t count)
{
	return (uint8_t *)carve(cv, (count + sizeof(float) - 1) / sizeof(float));
}

static size_t max_size(size_t a, size_t b)
{
	return a > b ? a : b;
}

static void conv_geometry(struct conv_shape *s, const struct conv_params *c, int n, int h, int w,
                          bool blocked)
{
	*s = (struct conv_shape){.blocked = blocked,
	                         .n = n,
	                         .c_in = c->c_in,
	                         .h_in = h,
	                         .w_in = w,
	                         .c_out = c->c_out,
	                         .k = c->k,
	                         .stride = c->stride,
	                         .pad = c->pad};
	conv_shape_finish(s);
}

static bool uses_preactivation(const struct model *m)
{
	for (int b = 0; b < m->n_blocks; b++)
		if (m->blocks[b].preact)
			return true;
	return m->has_final_norm;
}

/* Whether block b's first convolution's backward adds the shortcut's
 * gradient and applies the input's ReLU (model_block_entry_backward). */
static bool fused_entry(const struct model *m, int b)
{
	return model_block_entry_backward(m, b) != 0;
}

/* Lay out every buffer for batch `n`; returns the float count. */
static size_t layout(struct net_workspace *ws, struct carver *cv, int n)
{
	const struct model *m = ws->model;
	const int S = ws->size;
	size_t max_act = (size_t)3 * n * S * S;

	ws->input = carve(cv, (size_t)3 * n * S * S);
	const bool blocked = m->act_block != 0;
	conv_geometry(&ws->stem, &m->stem, n, S, S, false);
	size_t stem_count = (size_t)ws->stem.c_out * n * ws->stem.h_out * ws->stem.w_out;
	max_act = max_size(max_act, stem_count);
	ws->path_ends = carve(cv, 2 * (stem_count / n));
	ws->path_unit = carve(cv, stem_count / n);
	ws->path_sum = carve(cv, stem_count / n);

	ws->pool = (struct maxpool_shape){.c = m->stem.c_out,
	                               .n = n,
	                               .h_in = ws->stem.h_out,
	                               .w_in = ws->stem.w_out,
	                               .k = 3,
	                               .stride = 2,
	                               .pad = 1,
	                               .out_block = m->act_block,
	                               .after_relu = m->stem.relu};
	maxpool_shape_finish(&ws->pool);
	size_t pool_count = (size_t)ws->pool.c * n * ws->pool.h_out * ws->pool.w_out;
	max_act = max_size(max_act, pool_count);
	/* argmax indices (into the stem's output) as int32 in float-sized slots. */
	ws->argmax = (int32_t *)carve(cv, pool_count);

	int h = ws->pool.h_out, w = ws->pool.w_out;
	size_t in_count = pool_count;
	/* What act[2] and act[3] must hold without pre-activation: the hidden
	 * activations (and their gradients), and a downsample's input gradient
	 * when the first convolution's backward cannot add onto it in place. */
	size_t max_hidden = 0;
	/* The block inputs whose mask a fused backward multiplies by, as bytes. */
	size_t max_entry_mask = 0;
	for (int b = 0; b < m->n_blocks; b++) {
		const struct block_params *blk = &m->blocks[b];
		struct block_buffers *bb = &ws->blocks[b];
		size_t out_count = 0;
		bb->preact_mask = blk->preact ? carve_mask(cv, in_count) : NULL;
		int hh = h, ww = w;
		for (int i = 0; i < blk->n_convs; i++) {
			conv_geometry(&bb->convs[i], &blk->convs[i], n, hh, ww, blocked);
			hh = bb->convs[i].h_out;
			ww = bb->convs[i].w_out;
			size_t count = (size_t)blk->convs[i].c_out * n * hh * ww;
			max_act = max_size(max_act, count);
			if (i < blk->n_convs - 1) {
				bb->hidden_mask[i] = carve_mask(cv, (count + 7) / 8);
				max_hidden = max_size(max_hidden, count);
			} else {
				out_count = count;
			}
		}
		if (blk->has_downsample && !fused_entry(m, b))
			max_hidden = max_size(max_hidden, in_count);
		if (blk->has_downsample)
			conv_geometry(&bb->downsample, &blk->downsample, n, h, w, blocked);
		bb->out_mask = blk->relu_out ? carve_mask(cv, (out_count + 7) / 8) : NULL;
		if (model_block_entry_backward(m, b) & CONV_BACKWARD_MASK)
			max_entry_mask = max_size(max_entry_mask, in_count);
		h = hh;
		w = ww;
		in_count = out_count;
	}
	ws->head_hw = h * w;
	ws->head_mask = m->has_final_norm ? carve_mask(cv, in_count) : NULL;
	ws->entry_mask = max_entry_mask ? carve_mask(cv, max_entry_mask) : NULL;
	ws->pooled = carve(cv, (size_t)n * m->info.features);
	ws->d_pooled = carve(cv, (size_t)n * m->info.features);
	/* Without pre-activation a block's input and output rotate through
	 * act[0] and act[1], its hidden activations stay in act[2] and act[3]
	 * (block_buffers_for), and so do the backward's (block_backward's t1,
	 * t2): those two need only hold the hidden sizes, in ResNet-50 half the
	 * largest.  Pre-activation rotates all five. */
	const bool preact = uses_preactivation(m);
	ws->n_act = preact ? N_ACT : N_ACT - 1;
	for (int i = 0; i < ws->n_act; i++)
		ws->act[i] = carve(cv, i < 2 || preact ? max_act : max_hidden);
	return cv->used;
}

/* ===== convolution plans ================================================== */

/* Plans are numbered: 0 the stem, then 4 per block (3 convs, downsample). */
static int conv_index(int block, int which)
{
	return 1 + 4 * block + which;
}
enum { DOWNSAMPLE = 3 };

static void batch_plans_free(struct net_workspace *ws, struct batch_plans *bp)
{
	if (!bp->convs)
		return;
	for (int i = 0; i < ws->n_convs; i++)
		conv_plan_close(&bp->convs[i]);
	free(bp->convs);
	bp->convs = NULL;
}

static void plans_free(struct net_workspace *ws)
{
	for (int n = 0; ws->plans && n < ws->max_batch; n++)
		batch_plans_free(ws, &ws->plans[n]);
	conv_plan_close(&ws->stem_linear);
	ws->unit_ready = false; /* made by stem_linear */
}

/* Grow the shared oneDNN scratch to what `p` needs. */
static int fit_scratch(struct net_workspace *ws, const struct conv_plan *p, struct igs_error *err)
{
	size_t need = conv_plan_scratch_bytes(p);
	if (need <= ws->scratch_bytes)
		return 0;
	free(ws->scratch);
	ws->scratch_bytes = 0;
	ws->scratch = memory_alloc_large(need);
	if (!ws->scratch)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory for %zu bytes of scratch", need);
	ws->scratch_bytes = need;
	return 0;
}

/* The ReLU mask of block b's input, or NULL when it came through none. */
static const uint8_t *input_mask(const struct net_workspace *ws, int b)
{
	return b > 0 ? ws->blocks[b - 1].out_mask : NULL;
}

/* The plan of `c` for `shape` (laid out for max_batch) at batch n;
 * `backward`: CONV_BACKWARD_* flags. */
static int plan_one(struct net_workspace *ws, struct conv_plan **out, const struct conv_params *c,
                    const struct conv_shape *shape, int n, bool residual, unsigned backward,
                    struct igs_error *err)
{
	struct conv_shape s = *shape;
	s.n = n;
	unsigned epilogue = (residual ? CONV_ADD_TO_OUT : 0) | (c->relu ? CONV_RELU : 0) | backward;
	int rc = conv_plan_open(out, c->packed, &s, epilogue, err);
	return rc < 0 ? rc : fit_scratch(ws, *out, err);
}

/* Create batch n's plans (shapes from layout() with n images). */
static int plans_create(struct net_workspace *ws, int n, struct igs_error *err)
{
	const struct model *m = ws->model;
	struct batch_plans *bp = &ws->plans[n - 1];
	bp->convs = calloc((size_t)ws->n_convs, sizeof *bp->convs);
	if (!bp->convs)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory for convolution plans");
	int rc = plan_one(ws, &bp->convs[0], &m->stem, &ws->stem, n, false, 0, err);
	for (int b = 0; b < m->n_blocks && rc == 0; b++) {
		const struct block_params *blk = &m->blocks[b];
		const struct block_buffers *bb = &ws->blocks[b];
		const unsigned entry = model_block_entry_backward(m, b);
		for (int i = 0; i < blk->n_convs && rc == 0; i++)
			rc = plan_one(ws, &bp->convs[conv_index(b, i)], &blk->convs[i],
			              &bb->convs[i], n, i == blk->n_convs - 1, i == 0 ? entry : 0,
			              err);
		if (blk->has_downsample && rc == 0)
			rc = plan_one(ws, &bp->convs[conv_index(b, DOWNSAMPLE)], &blk->downsample,
			              &bb->downsample, n, false, 0, err);
	}
	if (rc < 0)
		batch_plans_free(ws, bp);
	return rc;
}

/* ===== public: workspaces ================================================= */

size_t net_workspace_bytes_for(const struct model *m, int batch)
{
	struct net_workspace tmp = {.model = m, .size = m->info.input_size};
	struct block_buffers *bb = calloc((size_t)m->n_blocks, sizeof *bb);
	if (!bb)
		return 0;
	tmp.blocks = bb;
	struct carver cv = {0};
	size_t floats = layout(&tmp, &cv, batch);
	free(bb);
	return floats * sizeof(float) + sizeof tmp;
}

int net_workspace_open(struct net_workspace **out, const struct model *m, int max_batch,
                         struct igs_error *err)
{
	*out = NULL;
	if (max_batch < 1)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "batch size must be at least 1, got %d",
		                max_batch);
	struct net_workspace *ws = calloc(1, sizeof *ws);
	if (!ws)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory for a workspace");
	ws->model = m;
	ws->max_batch = max_batch;
	ws->size = m->info.input_size;
	ws->threads = 1;
	ws->n_convs = 1 + 4 * m->n_blocks;
	ws->blocks = calloc((size_t)m->n_blocks, sizeof *ws->blocks);
	ws->plans = calloc((size_t)max_batch, sizeof *ws->plans);
	ws->constant_logits = malloc((size_t)N_CONSTANT * m->info.classes * sizeof(float));
	struct carver count = {0};
	if (ws->blocks && ws->plans && ws->constant_logits)
		ws->arena_floats = layout(ws, &count, max_batch);
	if (ws->arena_floats)
		ws->arena = memory_alloc_large(ws->arena_floats * sizeof(float));
	if (!ws->arena) {
		size_t mib = ws->arena_floats * sizeof(float) >> 20;
		net_workspace_close(&ws);
		return igs_fail(err, IGS_ERR_NOMEM,
		                "out of memory for a %d-image workspace (%zu MiB)", max_batch, mib);
	}
	struct carver cv = {.base = ws->arena};
	layout(ws, &cv, max_batch);
	*out = ws;
	return 0;
}

void net_workspace_close(struct net_workspace **wsp)
{
	struct net_workspace *ws = *wsp;
	if (!ws)
		return;
	plans_free(ws);
	free(ws->plans);
	free(ws->scratch);
	free(ws->arena);
	free(ws->blocks);
	free(ws->constant_logits);
	free(ws);
	*wsp = NULL;
}

int net_workspace_set_threads(struct net_workspace *ws, int threads, struct igs_error *err)
{
	if (threads < 1)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "threads must be at least 1, got %d",
		                threads);
	/* oneDNN sizes its kernels' work split when a plan is created. */
	if (threads != ws->threads)
		plans_free(ws);
	ws->threads = threads;
	return 0;
}

int net_workspace_threads(const struct net_workspace *ws)
{
	return ws->threads;
}

int net_workspace_prepare(struct net_workspace *ws, int n, struct igs_error *err)
{
	if (n < 1 || n > ws->max_batch)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "batch %d is outside 1..%d", n,
		                ws->max_batch);
	omp_set_num_threads(ws->threads);
	if (ws->plans[n - 1].convs)
		return 0;
	return plans_create(ws, n, err);
}

void net_workspace_release(struct net_workspace *ws)
{
	ws->path_ready = false;
	ws->unit_ready = false;
	memory_release_pages(ws->arena, ws->arena_floats * sizeof(float));
	memory_release_pages(ws->scratch, ws->scratch_bytes);
}

size_t net_workspace_bytes(const struct net_workspace *ws)
{
	/* weights in other layouts that plans asked for belong to the model */
	return ws->arena_floats * sizeof(float) + ws->scratch_bytes + sizeof *ws;
}

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
		conv_forward(ws, conv_index(b, DOWNSAMPLE), out, chain_in);

	/* Each convolution takes the ReLU mask of its input as it reads it:
	 * the hidden activations', and the first the previous block's output
	 * mask (out_mask_by_next). */
	const float *h = chain_in;
	for (int i = 0; i < blk->n_convs; i++) {
		bool last = i == blk->n_convs - 1;
		float *dst = last ? out : hidden[i];
		conv_forward_mask(ws, conv_index(b, i), dst, h, keep ? input_bits(ws, b, i) : NULL);
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
	for (int b = 0; b < m->n_blocks; b++)
		x = block_forward(ws, b, x, keep);
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
	return 0;
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
	struct conv_shape one = ws->stem;
	one.n = 1;
	if (!ws->stem_linear) {
		int rc = conv_plan_open(&ws->stem_linear, m->stem.packed, &one, 0, NULL);
		if (rc == 0)
			rc = fit_scratch(ws, ws->stem_linear, NULL);
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
		conv_backward_masked(ws, conv_index(b, i), dst, g, g_bits, NULL);
		g = dst;
		g_bits = bb->hidden_mask[i - 1];
	}

	const size_t pixels = pixels_in(&bb->convs[0]), in_count = bb->convs[0].c_in * pixels;
	if (fused_entry(ws->model, b)) {
		/* convs[0]'s backward adds onto the shortcut's gradient: d_out
		 * itself (read for the last time here) or the downsample's. */
		float *sum = d_out;
		if (blk->has_downsample) {
			conv_backward(ws, conv_index(b, DOWNSAMPLE), d_x, d_out, NULL);
			sum = d_x;
		}
		if (x_mask)
			relu_mask_bits_expand(ws->entry_mask, x_mask, in_count);
		conv_backward_masked(ws, conv_index(b, 0), sum, g, g_bits,
		                     x_mask ? ws->entry_mask : NULL);
		return sum;
	}

	float *chain_grad = blk->preact ? t3 : d_x; /* gradient of the chain's input */
	conv_backward_masked(ws, conv_index(b, 0), chain_grad, g, g_bits, NULL);
	/* The shortcut's gradient joins the chain's: d_out itself, or the
	 * downsample's (t1 is free again). */
	const float *shortcut_grad = d_out;
	if (blk->has_downsample) {
		conv_backward(ws, conv_index(b, DOWNSAMPLE), t1, d_out, NULL);
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
		float *d_x = block_backward(ws, b, g, spare, input_mask(ws, b), ws->act[2],
		                            ws->act[3], ws->act[4]);
		if (d_x == spare) {
			spare = g;
			g = d_x;
		}
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
	return 0;
}

int net_backward_path(struct net_workspace *ws, const float *d_logits, const float *weight,
                      double *sums)
{
	if (!ws->on_path || !ws->path_ready)
		return IGS_ERR_BAD_OPTION;
	float *spare;
	const float *g = backward_body(ws, d_logits, &spare);
	const float *from = ws->path_ends, *to = from + stem_count_per_image(ws);
	maxpool_backward_sum(ws->path_sum, sums, g, ws->argmax, weight, ws->path_unit, from, to,
	                     &ws->pool);
	return 0;
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
	conv_plan_backward_data(ws->plans[0].convs[0], ws->input, ws->path_sum, NULL, ws->scratch);
	normalize_backward(grad_pixels, ws->input, 1, S, S, m->info.std);
	memset(ws->path_sum, 0, stem_count_per_image(ws) * sizeof *ws->path_sum);
	return 0;
}
