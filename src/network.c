/*
 * network.c - forward and backward-to-input passes over a loaded model.
 *
 * Activations are CNHW ([C][N][H][W]) so each convolution over the whole
 * batch is one GEMM (layers.h).  The forward pass keeps every activation
 * the backward pass needs (ReLU outputs as masks, max-pool argmax); the
 * backward pass needs no weight gradients, so it never keeps conv inputs
 * for their own sake.  All buffers are carved from one allocation sized at
 * workspace creation for the largest batch.
 */
#include "model_internal.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "igserve/layers.h"
#include "igserve/team.h"
#include "igserve/winograd.h"

/* ===== workspace layout =================================================== */

struct block_buffers {
	float *preact;             /* relu(norm1(x)), preact blocks only */
	float *hidden[2];          /* outputs of convs[0..n_convs-2] (post-ReLU) */
	float *out;                /* block output */
	struct conv_shape convs[3];
	struct conv_shape downsample;
};

struct net_workspace {
	const struct model *model;
	int max_batch, n;            /* n: batch of the last forward */
	int size;                    /* input size the workspace was laid out for */
	float *arena;
	size_t arena_floats;
	int32_t *argmax;

	float *input;                /* [3][n][S][S] normalized */
	struct conv_shape stem;
	float *stem_out;
	struct pool_shape pool;
	float *pool_out;
	struct block_buffers *blocks;
	float *head_act;             /* relu(norm(x)) for ResNetV2; else NULL */
	int head_hw;
	float *pooled;               /* [n][features] */
	float *d_pooled;             /* [n][features] */
	float *col;                  /* im2col / col2im workspace */
	float *grad[5];              /* scratch gradients, each max_act floats */
	size_t max_act;
	struct team *team;           /* threads that run each pass; NULL: the caller alone */
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

static size_t max_size(size_t a, size_t b)
{
	return a > b ? a : b;
}

static void conv_geometry(struct conv_shape *s, const struct conv_params *c, int n, int h, int w)
{
	*s = (struct conv_shape){.n = n, .c_in = c->c_in, .h_in = h, .w_in = w, .c_out = c->c_out,
	                         .k = c->k, .stride = c->stride, .pad = c->pad};
	conv_shape_finish(s);
}

/* Scratch a convolution needs, whichever algorithm runs it. */
static size_t conv_scratch(const struct conv_shape *s)
{
	size_t im2col = conv2d_workspace_floats(s);
	return winograd_applies(s) ? max_size(im2col, winograd_workspace_floats(s)) : im2col;
}

/* Lay out every buffer for batch `n`; returns the float count. */
static size_t layout(struct net_workspace *ws, struct carver *cv, int n)
{
	const struct model *m = ws->model;
	const int S = ws->size;
	size_t max_act = 0, max_col = 0;

	ws->input = carve(cv, (size_t)3 * n * S * S);
	conv_geometry(&ws->stem, &m->stem, n, S, S);
	size_t stem_count = (size_t)ws->stem.c_out * n * ws->stem.h_out * ws->stem.w_out;
	ws->stem_out = carve(cv, stem_count);
	max_act = max_size(max_act, stem_count);
	max_col = max_size(max_col, conv_scratch(&ws->stem));

	ws->pool = (struct pool_shape){.c = m->stem.c_out, .n = n, .h_in = ws->stem.h_out,
	                               .w_in = ws->stem.w_out, .k = 3, .stride = 2, .pad = 1};
	pool_shape_finish(&ws->pool);
	size_t pool_count = (size_t)ws->pool.c * n * ws->pool.h_out * ws->pool.w_out;
	ws->pool_out = carve(cv, pool_count);
	max_act = max_size(max_act, pool_count);

	int h = ws->pool.h_out, w = ws->pool.w_out;
	size_t in_count = pool_count;
	for (int b = 0; b < m->n_blocks; b++) {
		const struct block_params *blk = &m->blocks[b];
		struct block_buffers *bb = &ws->blocks[b];
		size_t out_count = 0;
		if (blk->preact)
			bb->preact = carve(cv, in_count);
		int hh = h, ww = w;
		for (int i = 0; i < blk->n_convs; i++) {
			conv_geometry(&bb->convs[i], &blk->convs[i], n, hh, ww);
			hh = bb->convs[i].h_out;
			ww = bb->convs[i].w_out;
			size_t count = (size_t)blk->convs[i].c_out * n * hh * ww;
			max_act = max_size(max_act, count);
			max_col = max_size(max_col, conv_scratch(&bb->convs[i]));
			if (i < blk->n_convs - 1)
				bb->hidden[i] = carve(cv, count);
			else
				out_count = count;
		}
		if (blk->has_downsample) {
			conv_geometry(&bb->downsample, &blk->downsample, n, h, w);
			max_col = max_size(max_col, conv_scratch(&bb->downsample));
		}
		bb->out = carve(cv, out_count);
		h = hh;
		w = ww;
		in_count = out_count;
	}
	ws->head_hw = h * w;
	ws->head_act = m->has_final_norm ? carve(cv, in_count) : NULL;
	ws->pooled = carve(cv, (size_t)n * m->info.features);
	ws->d_pooled = carve(cv, (size_t)n * m->info.features);
	ws->col = carve(cv, max_col);
	ws->max_act = max_size(max_act, (size_t)3 * n * S * S);
	for (int i = 0; i < 5; i++)
		ws->grad[i] = carve(cv, ws->max_act);
	/* argmax indices live in the arena too, as int32 in float-sized slots. */
	ws->argmax = (int32_t *)carve(cv, pool_count);
	return cv->used;
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

int net_workspace_create(struct net_workspace **out, const struct model *m, int max_batch,
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
	ws->blocks = calloc((size_t)m->n_blocks, sizeof *ws->blocks);
	struct carver count = {0};
	if (ws->blocks)
		ws->arena_floats = layout(ws, &count, max_batch);
	if (ws->blocks)
		ws->arena = aligned_alloc(64, ((ws->arena_floats * sizeof(float)) + 63) & ~(size_t)63);
	if (!ws->blocks || !ws->arena) {
		size_t mib = ws->arena_floats * sizeof(float) >> 20;
		net_workspace_free(&ws);
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory for a %d-image workspace (%zu MiB)",
		                max_batch, mib);
	}
	struct carver cv = {.base = ws->arena};
	layout(ws, &cv, max_batch);
	*out = ws;
	return 0;
}

void net_workspace_free(struct net_workspace **wsp)
{
	struct net_workspace *ws = *wsp;
	if (!ws)
		return;
	team_free(&ws->team);
	free(ws->arena);
	free(ws->blocks);
	free(ws);
	*wsp = NULL;
}

int net_workspace_set_threads(struct net_workspace *ws, int threads, struct igs_error *err)
{
	team_free(&ws->team);
	if (threads <= 1)
		return 0;
	return team_create(&ws->team, threads, err);
}

int net_workspace_threads(const struct net_workspace *ws)
{
	return team_size(ws->team);
}

void net_workspace_release(struct net_workspace *ws)
{
	/* madvise wants whole pages: trim the arena to the pages inside it. */
	const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = ((uintptr_t)ws->arena + page - 1) & ~(page - 1);
	uintptr_t end = ((uintptr_t)(ws->arena + ws->arena_floats)) & ~(page - 1);
	if (end > start)
		madvise((void *)start, end - start, MADV_DONTNEED);
}

size_t net_workspace_bytes(const struct net_workspace *ws)
{
	return ws->arena_floats * sizeof(float) + sizeof *ws;
}

/* ===== forward ============================================================ */

/*
 * Both passes run on every thread of the workspace's team at once (see
 * team.h): each function below does this thread's share (`p`) of a layer,
 * and par_sync() separates a layer from the next one that reads it.
 */

/*
 * Winograd pays for its transforms only when its 16 GEMMs are wide enough:
 * with few tiles (late layers, small batches) packing the transformed
 * filters 16 times costs more than the multiplications it saves.
 * IGSERVE_WINOGRAD_MIN_TILES overrides the threshold (bench/ tunes it).
 */
static size_t winograd_min_tiles(void)
{
	static atomic_size_t cached = SIZE_MAX;
	size_t v = atomic_load(&cached);
	if (v == SIZE_MAX) {
		const char *env = getenv("IGSERVE_WINOGRAD_MIN_TILES");
		v = env ? (size_t)strtoull(env, NULL, 10) : 0;
		atomic_store(&cached, v);
	}
	return v;
}

static bool use_winograd(const struct conv_params *c, const struct conv_shape *s)
{
	size_t tiles = (size_t)s->n * ((s->h_out + 1) / 2) * ((s->w_out + 1) / 2);
	return c->winograd && winograd_applies(s) && tiles >= winograd_min_tiles();
}

/* One convolution, by Winograd when the model prepared its filters. */
static void conv_forward(struct net_workspace *ws, const struct conv_params *c,
                         const struct conv_shape *s, float *out, const float *in,
                         const float *residual, const struct par *p)
{
	if (use_winograd(c, s))
		winograd_conv3x3_forward_par(out, in, c->winograd, c->bias, residual, c->relu, s,
		                             ws->col, p);
	else
		conv2d_forward_par(out, in, c->weight, c->bias, residual, c->relu, s, ws->col, p);
	par_sync(p);
}

static void conv_backward(struct net_workspace *ws, const struct conv_params *c,
                          const struct conv_shape *s, float *d_in, const float *d_out,
                          int accumulate, const struct par *p)
{
	if (use_winograd(c, s))
		winograd_conv3x3_backward_data_par(d_in, d_out, c->winograd, s, accumulate, ws->col,
		                                   p);
	else
		conv2d_backward_data_par(d_in, d_out, c->weight, s, accumulate, ws->col, p);
	par_sync(p);
}

/* Re-derive every shape for batch n (buffers stay where max_batch put them:
 * a [C][n][H][W] tensor with a smaller n fits in the same space). */
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

static size_t count_of(const struct conv_shape *s)
{
	return (size_t)s->c_out * s->n * s->h_out * s->w_out;
}

/* dst[i] = src[i] (add 0) or dst[i] += src[i] (add 1), this thread's part. */
static void copy_par(float *dst, const float *src, size_t count, int add, const struct par *p)
{
	size_t lo, hi;
	par_range_size(p, count, &lo, &hi);
	if (add)
		for (size_t i = lo; i < hi; i++)
			dst[i] += src[i];
	else
		memcpy(dst + lo, src + lo, (hi - lo) * sizeof(float));
	par_sync(p);
}

static void block_forward(struct net_workspace *ws, const struct block_params *blk,
                          struct block_buffers *bb, const float *x, const struct par *p)
{
	const size_t plane_in = (size_t)bb->convs[0].n * bb->convs[0].h_in * bb->convs[0].w_in;
	const float *chain_in = x;
	if (blk->preact) {
		affine_relu_forward_par(bb->preact, x, blk->norm1.scale, blk->norm1.shift,
		                        blk->norm1.channels, plane_in, p);
		par_sync(p);
		chain_in = bb->preact;
	}
	/* The shortcut goes into `out` first; the last conv then adds onto it. */
	if (blk->has_downsample)
		conv_forward(ws, &blk->downsample, &bb->downsample, bb->out, chain_in, NULL, p);
	else
		copy_par(bb->out, x, count_of(&bb->convs[blk->n_convs - 1]), 0, p);

	const float *h = chain_in;
	for (int i = 0; i < blk->n_convs; i++) {
		const struct conv_params *c = &blk->convs[i];
		bool last = i == blk->n_convs - 1;
		float *dst = last ? bb->out : bb->hidden[i];
		conv_forward(ws, c, &bb->convs[i], dst, h, last ? bb->out : NULL, p);
		h = dst;
	}
}

struct pass_args {
	struct net_workspace *ws;
	const float *pixels;
	float *logits;
	const float *d_logits;
	float *grad_pixels;
};

static void forward_pass(void *arg, const struct par *p)
{
	struct pass_args *a = arg;
	struct net_workspace *ws = a->ws;
	const struct model *m = ws->model;
	const int n = ws->n, S = ws->size;

	normalize_forward_par(ws->input, a->pixels, n, S, S, m->info.mean, m->info.std, p);
	par_sync(p);
	conv_forward(ws, &m->stem, &ws->stem, ws->stem_out, ws->input, NULL, p);
	maxpool_forward_par(ws->pool_out, ws->argmax, ws->stem_out, &ws->pool, p);
	par_sync(p);

	const float *x = ws->pool_out;
	for (int b = 0; b < m->n_blocks; b++) {
		block_forward(ws, &m->blocks[b], &ws->blocks[b], x, p);
		x = ws->blocks[b].out;
	}
	const int C = m->info.features;
	if (m->has_final_norm) {
		affine_relu_forward_par(ws->head_act, x, m->final_norm.scale, m->final_norm.shift, C,
		                        (size_t)n * ws->head_hw, p);
		par_sync(p);
		x = ws->head_act;
	}
	avgpool_forward_par(ws->pooled, x, C, n, ws->head_hw, p);
	par_sync(p);
	if (p->tid == 0)
		linear_forward(a->logits, ws->pooled, m->fc_weight, m->fc_bias, n, C,
		               m->info.classes);
}

int net_forward(struct net_workspace *ws, const float *pixels, int n, float *logits)
{
	const struct model *m = ws->model;
	if (n < 1 || n > ws->max_batch || ws->size != m->info.input_size)
		return IGS_ERR_BAD_OPTION;
	set_batch(ws, n);
	struct pass_args args = {.ws = ws, .pixels = pixels, .logits = logits};
	team_run(ws->team, forward_pass, &args);
	return 0;
}

/* ===== backward =========================================================== */

/*
 * block_backward - d_x = d(block)/dx^T d_out.  d_out is consumed (masked in
 * place); t1, t2, t3 are scratch of max_act floats.
 */
static void block_backward(struct net_workspace *ws, const struct block_params *blk,
                           struct block_buffers *bb, float *d_out, float *d_x, float *t1,
                           float *t2, float *t3, const struct par *p)
{
	const int last = blk->n_convs - 1;
	if (blk->relu_out) {
		relu_backward_par(d_out, bb->out, count_of(&bb->convs[last]), p);
		par_sync(p);
	}
	/* d_out is now the gradient of (chain + shortcut). */

	/* Down the conv chain: g_i is the gradient of convs[i]'s output. */
	float *chain_grad = blk->preact ? t3 : d_x;  /* gradient of the chain's input */
	const float *g = d_out;
	float *bufs[2] = {t1, t2};
	for (int i = last; i >= 0; i--) {
		float *dst = i == 0 ? chain_grad : bufs[i % 2];
		conv_backward(ws, &blk->convs[i], &bb->convs[i], dst, g, 0, p);
		if (i > 0) {
			relu_backward_par(dst, bb->hidden[i - 1], count_of(&bb->convs[i - 1]), p);
			par_sync(p);
		}
		g = dst;
	}

	const size_t in_count = (size_t)bb->convs[0].c_in * bb->convs[0].n * bb->convs[0].h_in *
	                        bb->convs[0].w_in;
	if (blk->has_downsample)
		conv_backward(ws, &blk->downsample, &bb->downsample, chain_grad, d_out, 1, p);
	if (blk->preact) {
		const size_t plane = (size_t)bb->convs[0].n * bb->convs[0].h_in * bb->convs[0].w_in;
		affine_relu_backward_par(d_x, chain_grad, bb->preact, blk->norm1.scale,
		                         blk->norm1.channels, plane, 0, p);
		par_sync(p);
	}
	if (!blk->has_downsample)
		copy_par(d_x, d_out, in_count, 1, p);
}

static void backward_pass(void *arg, const struct par *p)
{
	struct pass_args *a = arg;
	struct net_workspace *ws = a->ws;
	const struct model *m = ws->model;
	const int n = ws->n, C = m->info.features, S = ws->size;

	if (p->tid == 0)
		linear_backward(ws->d_pooled, a->d_logits, m->fc_weight, n, C, m->info.classes);
	par_sync(p);
	float *g = ws->grad[0], *spare = ws->grad[1];
	avgpool_backward_par(g, ws->d_pooled, C, n, ws->head_hw, p);
	par_sync(p);
	if (m->has_final_norm) {
		affine_relu_backward_par(spare, g, ws->head_act, m->final_norm.scale, C,
		                         (size_t)n * ws->head_hw, 0, p);
		par_sync(p);
		float *t = g;
		g = spare;
		spare = t;
	}
	for (int b = m->n_blocks - 1; b >= 0; b--) {
		block_backward(ws, &m->blocks[b], &ws->blocks[b], g, spare, ws->grad[2], ws->grad[3],
		               ws->grad[4], p);
		float *t = g;
		g = spare;
		spare = t;
	}
	/* g: gradient of the max-pool output. */
	maxpool_backward_par(spare, g, ws->argmax, &ws->pool, p);
	par_sync(p);
	if (m->stem.relu) {
		relu_backward_par(spare, ws->stem_out, count_of(&ws->stem), p);
		par_sync(p);
	}
	conv_backward(ws, &m->stem, &ws->stem, g, spare, 0, p);
	normalize_backward_par(a->grad_pixels, g, n, S, S, m->info.std, p);
}

int net_backward(struct net_workspace *ws, const float *d_logits, float *grad_pixels)
{
	if (ws->n < 1)
		return IGS_ERR_BAD_OPTION;
	struct pass_args args = {.ws = ws, .d_logits = d_logits, .grad_pixels = grad_pixels};
	team_run(ws->team, backward_pass, &args);
	return 0;
}
