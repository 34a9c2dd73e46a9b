/*
 * network_workspace.c - a workspace: what one batch's passes need, carved
 * from one allocation sized once for the largest batch (activations and
 * gradients in rotating buffers, ReLU masks as bits, the max-pool's argmax,
 * the path's ends), and the convolution plans of each batch size, created
 * on first use or by net_workspace_prepare.
 */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memory.h"
#include "network_internal.h"

/* ===== workspace layout =================================================== */

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
bool net_fused_entry(const struct model *m, int b)
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
	                                  .same = m->pool_same,
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
		if (blk->has_downsample && !net_fused_entry(m, b))
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
int net_conv_index(int block, int which)
{
	return 1 + 4 * block + which;
}
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
int net_fit_scratch(struct net_workspace *ws, const struct conv_plan *p, struct igs_error *err)
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
const uint8_t *net_input_mask(const struct net_workspace *ws, int b)
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
	return rc < 0 ? rc : net_fit_scratch(ws, *out, err);
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
			rc = plan_one(ws, &bp->convs[net_conv_index(b, i)], &blk->convs[i],
			              &bb->convs[i], n, i == blk->n_convs - 1, i == 0 ? entry : 0,
			              err);
		if (blk->has_downsample && rc == 0)
			rc = plan_one(ws, &bp->convs[net_conv_index(b, DOWNSAMPLE)],
			              &blk->downsample, &bb->downsample, n, false, 0, err);
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

void net_workspace_set_yield(struct net_workspace *ws, void (*fn)(void *ctx), void *ctx)
{
	ws->yield = fn;
	ws->yield_ctx = ctx;
}
