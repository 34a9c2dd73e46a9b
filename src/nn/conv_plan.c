/*
 * conv_plan.c - a convolution at one batch size: its primitives, created
 * once, and the passes that run them (forward, backward to the input, the
 * ReLU masks taken in the split's read, the narrow-input backward).
 */
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_internal.h"
#include "layers.h"

/* One primitive with the memory objects it runs on (handles set per call). */
struct runner {
	dnnl_primitive_t prim;
	dnnl_memory_t in, weights, out, scratch,
	    bias;           /* forward: in = src; backward: in = diff_dst */
	dnnl_memory_t mask; /* the binary post-op's operand (CONV_BACKWARD_MASK), or NULL */
	int mask_arg;       /* its execution argument */
	size_t scratch_bytes;
	const char *impl;
};

struct conv_plan {
	struct conv_shape shape;
	int threads;         /* omp_get_max_threads() at creation */
	const float *narrow; /* weights for narrow_backward, or NULL */
	struct runner fwd, bwd;
	bool bwd_is_forward; /* bwd is a forward convolution (Winograd, conv_weights) */
	/* The scratch: first, for conv_subsampled(), the gathered input or the
	 * gradient to scatter (tmp_bytes); then, in split bf16, the split
	 * source of the primitive running (split_bytes); then oneDNN's.  Both
	 * 4 KiB-aligned. */
	size_t tmp_bytes, split_bytes;
	bool split_fwd, split_bwd; /* each primitive's source is split bf16 */
	size_t other_bytes;        /* of the weights' other layouts this plan runs on */
	dnnl_stream_t stream;
};

static void runner_free(struct runner *r)
{
	dnnl_memory_t mems[] = {r->in, r->weights, r->out, r->scratch, r->bias, r->mask};
	for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
		if (mems[i])
			dnnl_memory_destroy(mems[i]);
	if (r->prim)
		dnnl_primitive_destroy(r->prim);
	*r = (struct runner){0};
}

void conv_plan_close(struct conv_plan **pp)
{
	struct conv_plan *p = *pp;
	if (!p)
		return;
	runner_free(&p->fwd);
	runner_free(&p->bwd);
	if (p->stream)
		dnnl_stream_destroy(p->stream);
	free(p);
	*pp = NULL;
}

static size_t page_round(size_t bytes)
{
	return (bytes + 4095) & ~(size_t)4095;
}

/*
 * The weights the primitive `pd` runs on: the shared ones when their layout
 * is the one it wants, else the copy in that layout (struct other_layouts),
 * made on first use: reordered from the shared ones, or packed anew from
 * the plain ones for Winograd (whose layouts oneDNN cannot reorder out
 * of).  `backward`: the bwd weights.  *bytes: the copy's size, 0 shared.
 */
static int weights_for(const_dnnl_primitive_desc_t pd, const struct conv_weights *w, bool backward,
                       const float **data, size_t *bytes, struct igs_error *err)
{
	const struct packed *shared = backward ? &w->bwd : &w->fwd;
	const dnnl_memory_desc_t *want = conv_weights_md_of(pd);
	*bytes = 0;
	if (dnnl_memory_desc_equal(want, &shared->md)) {
		*data = shared->data;
		return 0;
	}
	int rc = 0;
	struct other_layouts *others = w->others;
	pthread_mutex_lock(&others->lock);
	struct other_layout *o = others->head;
	while (o && !(o->backward == backward && dnnl_memory_desc_equal(want, &o->packed.md)))
		o = o->next;
	if (!o) {
		o = calloc(1, sizeof *o);
		if (!o) {
			rc = igs_fail(err, IGS_ERR_NOMEM, "out of memory for convolution weights");
		} else if (w->plain) {
			struct conv_descs d = {.fwd = backward ? NULL : (dnnl_primitive_desc_t)pd,
			                       .bwd = backward ? (dnnl_primitive_desc_t)pd : NULL};
			rc = conv_pack_plain(
			    backward ? NULL : &o->packed, backward ? &o->packed : NULL, w->plain,
			    w->c_out, w->c_in, w->k, w->bwd_transposed, w->algos.split, &d, err);
		} else {
			rc = conv_packed_make(&o->packed, &shared->md, shared->data, want, err);
		}
		if (rc) {
			free(o);
			o = NULL;
		} else {
			o->backward = backward;
			o->next = others->head;
			others->head = o;
		}
	}
	if (o) {
		*data = o->packed.data;
		*bytes = o->packed.bytes;
	}
	pthread_mutex_unlock(&others->lock);
	return rc;
}

/* A memory object for argument `what` of `pd`, its handle set at run time. */
static dnnl_status_t arg_memory(dnnl_memory_t *m, const_dnnl_primitive_desc_t pd, dnnl_query_t what)
{
	const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, 0);
	return dnnl_memory_create(m, md, conv_engine(), DNNL_MEMORY_NONE);
}

static int runner_create(struct runner *r, const_dnnl_primitive_desc_t pd, bool forward,
                         const float *weights, const float *bias, int mask_arg,
                         struct igs_error *err)
{
	int rc = 0;
	TRY(dnnl_primitive_create(&r->prim, pd), "convolution primitive");
	TRY(arg_memory(&r->in, pd, forward ? dnnl_query_src_md : dnnl_query_diff_dst_md),
	    "activation memory");
	TRY(arg_memory(&r->out, pd, forward ? dnnl_query_dst_md : dnnl_query_diff_src_md),
	    "activation memory");
	TRY(arg_memory(&r->weights, pd, dnnl_query_weights_md), "weight memory");
	TRY(dnnl_memory_set_data_handle(r->weights, (void *)weights), "weight memory");
	TRY(arg_memory(&r->scratch, pd, dnnl_query_scratchpad_md), "scratch memory");
	r->scratch_bytes = dnnl_memory_desc_get_size(
	    dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
	if (bias) {
		/* The bias is the second weights argument of a forward convolution. */
		const dnnl_memory_desc_t *bmd =
		    dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
		TRY(dnnl_memory_create(&r->bias, bmd, conv_engine(), (void *)bias), "bias memory");
	}
	if (mask_arg) {
		/* the binary post-op's operand: a mask shaped as the output */
		r->mask_arg = mask_arg;
		const dnnl_memory_desc_t *mmd =
		    dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, mask_arg);
		TRY(dnnl_memory_create(&r->mask, mmd, conv_engine(), DNNL_MEMORY_NONE),
		    "mask memory");
	}
	r->impl = conv_impl_name(pd);
out:
	return rc;
}

int conv_plan_open(struct conv_plan **out, const struct conv_weights *w,
                   const struct conv_shape *shape, unsigned epilogue, struct igs_error *err)
{
	*out = NULL;
	struct conv_shape s = *shape;
	int rc = conv_check_shape(&s, err);
	if (rc)
		return rc;
	conv_shape_finish(&s);
	if (s.c_in != w->c_in || s.c_out != w->c_out || s.k != w->k || s.stride != w->stride ||
	    s.pad != w->pad)
		return igs_fail(err, IGS_ERR_INTERNAL,
		                "convolution plan %d -> %d k%d s%d p%d does not match its weights "
		                "%d -> %d k%d s%d p%d",
		                s.c_in, s.c_out, s.k, s.stride, s.pad, w->c_in, w->c_out, w->k,
		                w->stride, w->pad);
	const unsigned known = CONV_ADD_TO_OUT | CONV_RELU | CONV_BACKWARD_ADD | CONV_BACKWARD_MASK;
	if (epilogue & ~known)
		return igs_fail(err, IGS_ERR_INTERNAL, "unknown convolution epilogue flags 0x%x",
		                epilogue);
	if ((epilogue & (CONV_BACKWARD_ADD | CONV_BACKWARD_MASK)) && !conv_weights_fuse_backward(w))
		return igs_fail(err, IGS_ERR_INTERNAL,
		                "a %dx%d stride-%d convolution's backward takes no epilogue", w->k,
		                w->k, w->stride);
	struct conv_plan *p = calloc(1, sizeof *p);
	if (!p)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory for a convolution plan");
	p->shape = s;
	p->threads = omp_get_max_threads();
	p->narrow = w->narrow;
	struct conv_descs d = {0};
	const float *fwd_w = NULL, *bwd_w = NULL;
	p->bwd_is_forward = w->bwd_transposed;
	if (conv_subsampled(&s))
		p->tmp_bytes = page_round((size_t)s.n * s.h_out * s.w_out * s.c_in * sizeof(float));
	const struct conv_shape ks = conv_kernel_shape(&s);
	p->split_fwd = w->algos.split;
	p->split_bwd = w->algos.split && w->bwd_transposed;
	const size_t fwd_values = (size_t)ks.n * ks.h_in * ks.w_in * ks.c_in;
	const size_t bwd_values = (size_t)s.n * s.h_out * s.w_out * s.c_out;
	const size_t split_values = p->split_bwd && bwd_values > fwd_values ? bwd_values
	                            : p->split_fwd                          ? fwd_values
	                                                                    : 0;
	p->split_bytes = page_round(split_values * SPLIT_PARTS * sizeof(uint16_t));
	rc = conv_descs_create(&d, &ks, w->bias != NULL, epilogue, &w->algos, &w->fwd.md,
	                       &w->bwd.md, err);
	size_t fwd_other = 0, bwd_other = 0;
	if (!rc)
		rc = weights_for(d.fwd, w, false, &fwd_w, &fwd_other, err);
	if (!rc)
		rc = weights_for(d.bwd, w, true, &bwd_w, &bwd_other, err);
	p->other_bytes = fwd_other + bwd_other;
	if (!rc)
		rc = runner_create(&p->fwd, d.fwd, true, fwd_w, w->bias, 0, err);
	/* the mask multiplies after the sum when both are there */
	const int mask_arg =
	    epilogue & CONV_BACKWARD_MASK
	        ? DNNL_ARG_ATTR_MULTIPLE_POST_OP(epilogue & CONV_BACKWARD_ADD ? 1 : 0) |
	              DNNL_ARG_SRC_1
	        : 0;
	if (!rc)
		rc = runner_create(&p->bwd, d.bwd, w->bwd_transposed, bwd_w, NULL, mask_arg, err);
	if (!rc) {
		dnnl_status_t st =
		    dnnl_stream_create(&p->stream, conv_engine(), dnnl_stream_default_flags);
		if (st != dnnl_success)
			rc = conv_dnnl_fail(err, st, "stream");
	}
	conv_descs_free(&d);
	if (rc) {
		conv_plan_close(&p);
		return rc;
	}
	*out = p;
	return 0;
}

/* Whether the backward pass goes by narrow_backward: images for every thread. */
static bool use_narrow(const struct conv_plan *p)
{
	return p->narrow && p->shape.n >= p->threads;
}

static size_t narrow_scratch_floats(const struct conv_plan *p)
{
	const struct conv_shape *s = &p->shape;
	return (size_t)p->threads * NARROW_BAND_ROWS * s->w_out * s->k * s->k * s->c_in;
}

size_t conv_plan_scratch_bytes(const struct conv_plan *p)
{
	size_t bytes = p->fwd.scratch_bytes > p->bwd.scratch_bytes ? p->fwd.scratch_bytes
	                                                           : p->bwd.scratch_bytes;
	if (use_narrow(p) && narrow_scratch_floats(p) * sizeof(float) > bytes)
		bytes = narrow_scratch_floats(p) * sizeof(float);
	return p->tmp_bytes + p->split_bytes + bytes;
}

size_t conv_plan_other_layout_bytes(const struct conv_plan *p)
{
	return p->other_bytes;
}

const char *conv_plan_forward_impl(const struct conv_plan *p)
{
	return p->fwd.impl ? p->fwd.impl : "unknown";
}

const char *conv_plan_backward_impl(const struct conv_plan *p)
{
	if (use_narrow(p))
		return "igserve:gemm_col2im";
	return p->bwd.impl ? p->bwd.impl : "unknown";
}

/*
 * Execution should not fail for a primitive that was created (oneDNN
 * validated the shapes then), but when it does (out of memory inside the
 * library, a bug) the request fails, not the process: the status is kept
 * per thread, the rest of the pass skips its primitives, and the network
 * pass returns IGS_ERR_INTERNAL (conv_take_failure).
 */
static _Thread_local dnnl_status_t exec_failure = dnnl_success;
static _Thread_local int inject_countdown;

int conv_take_failure(void)
{
	dnnl_status_t st = exec_failure;
	exec_failure = dnnl_success;
	return st == dnnl_success ? 0 : IGS_ERR_INTERNAL;
}

void conv_inject_failure(int n)
{
	inject_countdown = n > 0 ? n : 0;
}

static void run(const struct conv_plan *p, const struct runner *r, int in_arg, const void *in,
                int out_arg, void *out, const uint8_t *mask, void *scratch)
{
	dnnl_memory_set_data_handle(r->in, (void *)in);
	dnnl_memory_set_data_handle(r->out, out);
	dnnl_memory_set_data_handle(r->scratch, scratch);
	dnnl_exec_arg_t args[6] = {{in_arg, r->in},
	                           {DNNL_ARG_WEIGHTS, r->weights},
	                           {out_arg, r->out},
	                           {DNNL_ARG_SCRATCHPAD, r->scratch}};
	int nargs = 4;
	if (r->bias)
		args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, r->bias};
	if (r->mask) {
		dnnl_memory_set_data_handle(r->mask, (void *)mask);
		args[nargs++] = (dnnl_exec_arg_t){r->mask_arg, r->mask};
	}
	if (exec_failure != dnnl_success)
		return; /* the pass has failed already */
	dnnl_status_t st = inject_countdown > 0 && --inject_countdown == 0
	                       ? dnnl_runtime_error
	                       : dnnl_primitive_execute(r->prim, p->stream, nargs, args);
	if (st == dnnl_success)
		st = dnnl_stream_wait(p->stream);
	if (st != dnnl_success) {
		fprintf(stderr, "igserve: oneDNN convolution (%s) failed: status %d\n",
		        r->impl ? r->impl : "unknown", (int)st);
		exec_failure = st;
	}
}

/* Pixels of an activation as runs of `group` floats: NHWC one run of c per
 * pixel, blocked c/16 runs of 16 ([n][c/16][h][w][16]). */
static void pixel_runs(const struct conv_shape *s, int c, int *group, int *groups)
{
	*group = s->blocked ? 16 : c;
	*groups = s->blocked ? c / 16 : 1;
}

/* One pixel's run of g floats: blocked runs (16) as fixed-size moves,
 * which a memcpy call per 64 bytes made 1% of an attribution. */
static inline void copy_run(float *restrict dst, const float *restrict src, int g)
{
	if (g == 16)
		for (int k = 0; k < 16; k++)
			dst[k] = src[k];
	else
		memcpy(dst, src, (size_t)g * sizeof(float));
}

static inline void zero_run(float *dst, int g)
{
	if (g == 16)
		for (int k = 0; k < 16; k++)
			dst[k] = 0.0f;
	else
		memset(dst, 0, (size_t)g * sizeof(float));
}

/* tmp [n][h_out][w_out][c_in] (in the activation layout) = the pixels of
 * `in` a subsampled convolution reads. */
static void gather_strided(float *restrict tmp, const float *restrict in, const struct conv_plan *p)
{
	const struct conv_shape *s = &p->shape;
	int g, G;
	pixel_runs(s, s->c_in, &g, &G);
	const long rows = (long)s->n * G * s->h_out;
#pragma omp parallel for schedule(static) num_threads(p->threads)
	for (long r = 0; r < rows; r++) {
		const long plane = r / s->h_out; /* image and channel group */
		const int oy = (int)(r % s->h_out);
		const float *src =
		    in + ((size_t)plane * s->h_in + (size_t)oy * s->stride) * s->w_in * g;
		float *dst = tmp + (size_t)r * s->w_out * g;
		for (int ox = 0; ox < s->w_out; ox++)
			copy_run(dst + (size_t)ox * g, src + (size_t)ox * s->stride * g, g);
	}
}

/* d_in = the gradient tmp [n][h_out][w_out][c_in] at the pixels a
 * subsampled convolution read, 0 elsewhere. */
static void scatter_strided(float *restrict d_in, const float *restrict tmp,
                            const struct conv_plan *p)
{
	const struct conv_shape *s = &p->shape;
	int g, G;
	pixel_runs(s, s->c_in, &g, &G);
	const long rows = (long)s->n * G * s->h_in;
#pragma omp parallel for schedule(static) num_threads(p->threads)
	for (long r = 0; r < rows; r++) {
		const long plane = r / s->h_in;
		const int iy = (int)(r % s->h_in);
		float *dst = d_in + (size_t)r * s->w_in * g;
		const int oy = iy / s->stride;
		if (iy % s->stride || oy >= s->h_out) {
			memset(dst, 0, (size_t)s->w_in * g * sizeof(float));
			continue;
		}
		const float *src = tmp + ((size_t)plane * s->h_out + oy) * s->w_out * g;
		for (int ix = 0; ix < s->w_in; ix++) {
			const int ox = ix / s->stride;
			if (ix % s->stride || ox >= s->w_out)
				zero_run(dst + (size_t)ix * g, g);
			else
				copy_run(dst + (size_t)ix * g, src + (size_t)ox * g, g);
		}
	}
}

/* The source a primitive runs on: `count` values of `c` channels per
 * pixel, split into the scratch's split part when `split` (with the masks
 * of split_rows_masked), else `values` themselves (and no masks). */
static const void *source(const struct conv_plan *p, const float *values, size_t count, int c,
                          bool split, const uint8_t *keep, uint8_t *positive, char *scratch)
{
	if (!split)
		return values;
	uint16_t *halves = (uint16_t *)(scratch + p->tmp_bytes);
	conv_split_rows_masked(halves, values, count / c, c, keep, positive, p->threads);
	return halves;
}

/* oneDNN's part of the scratch. */
static void *dnnl_scratch(const struct conv_plan *p, void *scratch)
{
	return (char *)scratch + p->tmp_bytes + p->split_bytes;
}

void conv_plan_forward_mask(const struct conv_plan *p, float *out, const float *in,
                            uint8_t *in_bits, void *scratch)
{
	const struct conv_shape *s = &p->shape;
	size_t count = (size_t)s->n * s->h_in * s->w_in * s->c_in;
	/* the mask in the split's read of `in`, when the split reads all of it */
	if (in_bits && (!p->split_fwd || p->tmp_bytes)) {
		relu_mask_bits(in_bits, in, count);
		in_bits = NULL;
	}
	if (p->tmp_bytes) {
		float *tmp = scratch;
		gather_strided(tmp, in, p);
		in = tmp;
		count = (size_t)s->n * s->h_out * s->w_out * s->c_in;
	}
	run(p, &p->fwd, DNNL_ARG_SRC,
	    source(p, in, count, s->c_in, p->split_fwd, NULL, in_bits, scratch), DNNL_ARG_DST, out,
	    NULL, dnnl_scratch(p, scratch));
}

void conv_plan_forward(const struct conv_plan *p, float *out, const float *in, void *scratch)
{
	conv_plan_forward_mask(p, out, in, NULL, scratch);
}

/* col2im of one band: add each output pixel's columns into the taps it read. */
static void add_columns(float *d_image, const float *col, const struct conv_shape *s, int oy0,
                        int rows)
{
	const int k = s->k, c = s->c_in, kkc = k * k * c;
	for (int r = 0; r < rows; r++) {
		const int oy = oy0 + r;
		for (int ox = 0; ox < s->w_out; ox++) {
			const float *cp = col + ((size_t)r * s->w_out + ox) * kkc;
			/* the kernel's columns inside the image: kx in [kx0, kx1) */
			const int x = ox * s->stride - s->pad;
			const int kx0 = x < 0 ? -x : 0;
			const int kx1 = x + k > s->w_in ? s->w_in - x : k;
			for (int ky = 0; ky < k; ky++) {
				const int iy = oy * s->stride - s->pad + ky;
				if (iy < 0 || iy >= s->h_in || kx0 >= kx1)
					continue;
				float *dst = d_image + ((size_t)iy * s->w_in + x + kx0) * c;
				const float *src = cp + ((size_t)ky * k + kx0) * c;
				/* taps of one kernel row are adjacent pixels: contiguous in NHWC */
				for (int j = 0; j < (kx1 - kx0) * c; j++)
					dst[j] += src[j];
			}
		}
	}
}

static void narrow_backward(const struct conv_plan *p, float *d_in, const float *d_out,
                            float *scratch)
{
	const struct conv_shape *s = &p->shape;
	const int kkc = s->k * s->k * s->c_in;
	const size_t image_in = (size_t)s->h_in * s->w_in * s->c_in;
	const size_t image_out = (size_t)s->h_out * s->w_out * s->c_out;
#pragma omp parallel num_threads(p->threads)
	{
		const int t = omp_get_thread_num(), nth = omp_get_num_threads();
		float *col = scratch + (size_t)t * NARROW_BAND_ROWS * s->w_out * kkc;
		for (int img = t; img < s->n; img += nth) {
			float *dx = d_in + (size_t)img * image_in;
			memset(dx, 0, image_in * sizeof(float));
			for (int oy = 0; oy < s->h_out; oy += NARROW_BAND_ROWS) {
				int rows = s->h_out - oy < NARROW_BAND_ROWS ? s->h_out - oy
				                                            : NARROW_BAND_ROWS;
				const float *g = d_out + (size_t)img * image_out +
				                 (size_t)oy * s->w_out * s->c_out;
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
				            rows * s->w_out, kkc, s->c_out, 1.0f, g, s->c_out,
				            p->narrow, kkc, 0.0f, col, kkc);
				add_columns(dx, col, s, oy, rows);
			}
		}
	}
}

void conv_plan_backward_data_masked(const struct conv_plan *p, float *d_in, float *d_out,
                                    const uint8_t *d_out_bits, const uint8_t *mask, void *scratch)
{
	const struct conv_shape *s = &p->shape;
	const size_t count = (size_t)s->n * s->h_out * s->w_out * s->c_out;
	/* the ReLU's backward in the split's read of d_out, else in place */
	if (d_out_bits && (!p->split_bwd || use_narrow(p))) {
		relu_backward_bits(d_out, d_out_bits, count);
		d_out_bits = NULL;
	}
	if (use_narrow(p)) {
		narrow_backward(p, d_in, d_out, scratch);
	} else if (p->tmp_bytes) {
		float *tmp = scratch;
		run(p, &p->bwd, DNNL_ARG_SRC,
		    source(p, d_out, count, s->c_out, p->split_bwd, d_out_bits, NULL, scratch),
		    DNNL_ARG_DST, tmp, NULL, dnnl_scratch(p, scratch));
		scatter_strided(d_in, tmp, p);
	} else if (p->bwd_is_forward) {
		run(p, &p->bwd, DNNL_ARG_SRC,
		    source(p, d_out, count, s->c_out, p->split_bwd, d_out_bits, NULL, scratch),
		    DNNL_ARG_DST, d_in, mask, dnnl_scratch(p, scratch));
	} else {
		run(p, &p->bwd, DNNL_ARG_DIFF_DST, d_out, DNNL_ARG_DIFF_SRC, d_in, NULL,
		    dnnl_scratch(p, scratch));
	}
}

void conv_plan_backward_data(const struct conv_plan *p, float *d_in, const float *d_out,
                             const uint8_t *mask, void *scratch)
{
	/* without bits d_out is only read */
	conv_plan_backward_data_masked(p, d_in, (float *)d_out, NULL, mask, scratch);
}
